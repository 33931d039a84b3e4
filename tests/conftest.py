"""Shared fixtures: the org-a -> org-b -> org-a bootstrap, run once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import Run, run_stack, stack_ref  # noqa: E402


class Bootstrap:
    """Each round feeds the previous round's exports to the other stack's reference."""

    def __init__(self):
        self.a1: Run = run_stack("org-a")
        self.b2: Run = run_stack("org-b", peer_outputs={stack_ref("org-a"): self.a1.outputs})
        self.a3: Run = run_stack("org-a", peer_outputs={stack_ref("org-b"): self.b2.outputs})
        # A further round on each stack, fed the final exports.
        self.b4: Run = run_stack("org-b", peer_outputs={stack_ref("org-a"): self.a3.outputs})
        self.a5: Run = run_stack("org-a", peer_outputs={stack_ref("org-b"): self.b4.outputs})


@pytest.fixture(scope="session")
def bootstrap() -> Bootstrap:
    return Bootstrap()

"""The test suite's mock harness: offline/harness.py, re-exported.

The harness lives in the ``offline`` package so that ``python -m offline.plan``
runs the program under exactly the mocks the tests use. Every name of
offline.harness is available here, private ones included (module
``__getattr__``). ``LAST_MONITOR`` is deliberately not copied: a run rebinds it
in offline.harness, so ``harness.LAST_MONITOR`` is read through to there and
always names the latest run's monitor.
"""

from __future__ import annotations

from offline import harness as _impl
from offline.harness import *  # noqa: F401,F403
from offline.harness import (  # noqa: F401  (the names tests import explicitly)
    PROJECT,
    QUICKSIGHT_IDS,
    ROOT,
    CloudMocks,
    RecordingMonitor,
    Registered,
    Run,
    run_stack,
    run_under_mocks,
    stack_config,
    stack_ref,
)

# The star import bound a copy of the value at import time; drop it so the
# module __getattr__ below answers with the current one.
del LAST_MONITOR  # noqa: F821


def __getattr__(name: str):
    return getattr(_impl, name)

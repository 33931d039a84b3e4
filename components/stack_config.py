"""Reading the stack's config values, scalars and structured alike."""

from __future__ import annotations

import json
from typing import Any, Callable

import pulumi


def config_reader(config: pulumi.Config | None = None) -> Callable[[str], Any]:
    """A ``get(key)`` that returns parsed objects/lists and plain strings."""
    config = config or pulumi.Config()

    def get(key: str) -> Any:
        raw = config.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # a plain string such as a region name

    return get

"""This stack's config values as the Pulumi engine hands them to the program.

Every key of the project's namespace is read, not only the ones the program
knows: model/stack_models.py refuses an undeclared or misspelt key (for
example `cleanrooms-collab:epsilon`) instead of letting it be ignored. The
engine passes config to the program as a map the SDK keeps in
pulumi.runtime.config (set_all_config); pulumi.Config has no way to list keys,
so the map is read there (the SDK's own config lookup reads the same map, then
PULUMI_CONFIG).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

import pulumi
from pulumi.runtime import config as runtime_config

from model.errors import ConfigError


def project_values(project: str) -> dict[str, Any]:
    """This project's keys (without the prefix): JSON values parsed, plain strings as they are."""
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{project}:"
    return {key[len(prefix):]: _parse(value) for key, value in raw.items() if key.startswith(prefix)}


def _parse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # a plain string such as a region name


class RefusedConfig(ConfigError, pulumi.RunError):
    """Bad config as pulumi.RunError: the engine shows its message, one line per problem, and no
    traceback (pulumi/errors.py: "a clean exit rather than the usual verbose unhandled error
    logic which emits the source program text and complete stack trace")."""


@contextmanager
def refusals_as_run_errors() -> Iterator[None]:
    """Around everything that decides what the stack declares: a refusal ends the run cleanly."""
    try:
        yield
    except ConfigError as exc:
        raise RefusedConfig(exc.key, exc.message, exc.more) from None

"""Helpers shared by the policies: unknown-safe property access, numbers, IAM documents, config.

Properties reach a policy wrapped in pulumi_policy's unknown-checking proxy:
reading a value that is unknown during preview raises UnknownValueError. A
resource policy may let that propagate (the engine then reports "can't run
policy during preview" as an advisory note), but a stack policy would lose
every other resource with it, so validators read props through ``plain()``,
which turns unknowns into the ``UNKNOWN`` marker and lets each check decide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Iterable

from pulumi_policy import PolicyConfigSchema
from pulumi_policy.proxy import (UNKNOWN_ARCHIVE_VALUE, UNKNOWN_ARRAY_VALUE, UNKNOWN_ASSET_VALUE,
                                 UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE,
                                 UNKNOWN_STRING_VALUE, UnknownValueError)

_SENTINELS = {UNKNOWN_ARCHIVE_VALUE, UNKNOWN_ARRAY_VALUE, UNKNOWN_ASSET_VALUE, UNKNOWN_BOOLEAN_VALUE,
              UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE}


class _Unknown:
    """A value the engine cannot know yet (preview of a new resource)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN or (isinstance(value, str) and value in _SENTINELS)


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """A plain dict/list copy of (proxied) properties, unknowns replaced by UNKNOWN."""
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        out = {}
        for key in list(value):
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        out_list = []
        for i in range(len(value)):
            try:
                out_list.append(plain(value[i]))
            except UnknownValueError:
                out_list.append(UNKNOWN)
        return out_list
    return value


def at(props: Any, path: str, default: Any = None) -> Any:
    """props by dotted path ('policy.v1.custom'); default when missing (UNKNOWN stays UNKNOWN)."""
    value = props
    for part in path.split("."):
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return default
    return value


def as_list(value: Any) -> list:
    """A list from a list, a single value, or nothing."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def number(value: Any) -> float | None:
    """Numbers arrive as floats through protobuf; strings too from some SDKs."""
    if isinstance(value, bool) or value is None or is_unknown(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value: Any) -> str:
    """3.0 -> '3' in messages."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def json_value(value: Any) -> Any:
    """Provider inputs arrive JSON-encoded (e.g. allowedAccountIds '["111111111111"]'); decode if so."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def where(resource_type: str, name: str) -> str:
    return f"{resource_type} '{name}'"


# --------------------------------------------------------------------------
# IAM / bucket policy documents


def policy_document(value: Any) -> Any:
    """A policy document (dict) from a JSON string or dict; UNKNOWN if unknown; None if absent/invalid."""
    if value is None or value == "":
        return None
    if is_unknown(value):
        return UNKNOWN
    if isinstance(value, str):
        if any(s in value for s in _SENTINELS):
            return UNKNOWN
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict):
        return value
    return None


def statements(document: Any) -> list[dict]:
    if not isinstance(document, dict):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def principals(statement: dict) -> list[str]:
    """Every principal value of a statement ('*' for Principal '*')."""
    principal = statement.get("Principal")
    if principal is None:
        return []
    if isinstance(principal, str):
        return [principal]
    out: list[str] = []
    if isinstance(principal, dict):
        for value in principal.values():
            out.extend(str(v) for v in as_list(value))
    return out


def condition_keys(statement: dict) -> set[str]:
    """Condition keys, lowercased (IAM condition keys are case-insensitive)."""
    keys: set[str] = set()
    condition = statement.get("Condition")
    if isinstance(condition, dict):
        for block in condition.values():
            if isinstance(block, dict):
                keys.update(k.lower() for k in block)
    return keys


def condition_values(statement: dict, key: str) -> list[Any]:
    values: list[Any] = []
    condition = statement.get("Condition")
    if isinstance(condition, dict):
        for block in condition.values():
            if isinstance(block, dict):
                for k, v in block.items():
                    if k.lower() == key.lower():
                        values.extend(as_list(v))
    return values


# --------------------------------------------------------------------------
# Policy config


def config_schema(properties: dict[str, dict], required: Iterable[str] = ()) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties, required=list(required) or None)


def settings(args: Any, schema: PolicyConfigSchema | None) -> dict[str, Any]:
    """The policy's config: schema defaults, then what the engine passed.

    The CLI already fills in defaults (ReconcilePolicyPackConfig) before
    Configure; taking them from the schema again keeps a direct call (tests,
    another runner) correct too.
    """
    values: dict[str, Any] = {}
    if schema is not None:
        for key, prop in schema.properties.items():
            if "default" in prop:
                values[key] = prop["default"]
    values.update(plain(dict(args.get_config() or {})))
    return values

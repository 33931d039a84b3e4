"""JSON files the project writes and reads back (the run journals), read through one typed pydantic model each.

A file that parses but holds the wrong shape (a string where an object was written, a key missing, a state no
writer uses) must stop the reader with one line naming the file and the key, never a traceback from code that
trusted it. ``problem`` gives that line's reason for the first error pydantic reports, in the words of the project's
other input errors: ``templates.customer_segments.error must be an object, got a string``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

# Strict: a string is not an integer, 1 is not true, an ISO string is a time only in a field typed as a time (JSON
# input). Keys a later writer adds are ignored.
STRICT = ConfigDict(strict=True, extra="ignore", defer_build=True)

_KINDS = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
          (list, "a list"), (dict, "an object"))

_MUST_BE = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object", "list_type": "a list",
    "datetime_type": "an ISO time string", "datetime_parsing": "an ISO time string",
    "datetime_from_date_parsing": "an ISO time string",
}


def must(condition: bool, message: str) -> None:
    """In a model's validator: fail with ``message``, said after the key path of the value being validated (a
    model validator of the whole file gives the path in the message)."""
    if not condition:
        raise PydanticCustomError("invalid", message)


def version_field(expected: int) -> Any:
    """The type of a file's ``version``: an integer, the one this runner reads (``describe`` says both)."""
    def check(version: int) -> int:
        must(version == expected, "is not this runner's")
        return version
    return Annotated[int, AfterValidator(check)]


def kind(value: Any) -> str:
    """The JSON name of a parsed value's type, with the value when it is a short one: ``a string ('soon')``."""
    name = next((name for types, name in _KINDS if isinstance(value, types)), type(value).__name__)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = repr(value)
        return f"{name} ({text if len(text) <= 40 else text[:35] + '...' + text[0]})"
    return name


def key_path(loc: Sequence[str | int]) -> str:
    """``("templates", "a", "queries", 0, "id")`` -> ``templates.a.queries[0].id``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def first_error(exc: ValidationError, first: Sequence[str] = ()) -> dict[str, Any]:
    """The error to report: one under a top-level key of ``first`` (a format or version that explains the rest)
    before any other, else the first pydantic found."""
    errors = exc.errors(include_url=False)
    rank = {key: i for i, key in enumerate(first)}
    return min(errors, key=lambda e: rank.get(e["loc"][0] if e["loc"] else "", len(rank)))


def describe(error: dict[str, Any], version: int | None = None) -> str:
    """One error as ``<key path> <what is wrong>``; ``version``: the one the runner reads, for an error in the
    file's ``version``."""
    where = key_path(error["loc"]) or "the file"
    kind_, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    if version is not None and error["loc"] == ("version",):
        return f"version {json.dumps(value)}, this runner reads version {version}"
    if kind_ == "invalid":
        return f"{key_path(error['loc'])} {error['msg']}" if error["loc"] else error["msg"]
    if kind_ == "json_invalid":
        return f"it is not JSON ({context.get('error', error['msg'])})"
    if kind_ == "missing":
        return f"{where} is missing"
    if kind_ == "literal_error":
        return f"{where} {value!r} is not one of {context.get('expected')}"
    if kind_ in _MUST_BE:
        if not error["loc"]:
            return f"it must be {_MUST_BE[kind_]}, not {kind(value)}"
        return f"{where} must be {_MUST_BE[kind_]}, got {kind(value)}"
    if kind_ == "greater_than_equal":
        return f"{where} must be >= {context.get('ge')}, got {value!r}"
    if kind_ == "too_short":
        return f"{where} must not be empty"
    return f"{where} {error['msg']}"


def problem(exc: ValidationError, version: int | None = None, first: Sequence[str] = ("format", "version")) -> str:
    """The reason to give for a file that ``exc`` refused: its format and version first (they explain every other
    difference), else the first error."""
    return describe(first_error(exc, first), version)

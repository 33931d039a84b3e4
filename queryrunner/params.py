"""Checking --param values against an analysis template's declared parameters.

Clean Rooms only rejects a bad parameter after the query has been queued (and,
for differential privacy, possibly after budget was considered), so the runner
checks names and types locally before anything is sent. Types are the
AnalysisParameter ParameterType enum of the botocore cleanrooms model.
"""
from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping

from queryrunner.outputs import Parameter

# ParameterValue in the service model: a string of at most 1000 characters.
MAX_VALUE_LEN = 1000

_INT_RANGES = {
    # Redshift/Spark widths; INTEGER types outside them would fail at run time.
    "TINYINT": (-(2**7), 2**7 - 1),
    "BYTE": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "SHORT": (-(2**15), 2**15 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
    "INT": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "LONG": (-(2**63), 2**63 - 1),
}
_DECIMAL_TYPES = {"DECIMAL", "NUMERIC", "REAL", "DOUBLE_PRECISION", "DOUBLE", "FLOAT"}
_STRING_TYPES = {"CHAR", "VARCHAR", "CHARACTER", "STRING"}
_BINARY_TYPES = {"VARBYTE", "BINARY"}
_TIMESTAMP_TYPES = {"TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMPTZ"}
_TIME_TYPES = {"TIME", "TIMETZ"}


class ParamError(Exception):
    """One or more parameter problems; nothing was sent (exit 2)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """['k=v', ...] -> {k: v}; the value may itself contain '='."""
    result: dict[str, str] = {}
    problems = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"--param {item!r} is not NAME=VALUE")
        elif name in result:
            problems.append(f"parameter {name!r} given twice")
        else:
            result[name] = value
    if problems:
        raise ParamError(problems)
    return result


def check_value(ptype: str, value: str) -> str | None:
    """Return None when `value` parses as `ptype`, else a short reason."""
    t = ptype.upper()
    if len(value) > MAX_VALUE_LEN:
        return f"longer than {MAX_VALUE_LEN} characters"
    if t in _INT_RANGES:
        try:
            n = int(value.strip(), 10)
        except ValueError:
            return f"not an integer ({t})"
        lo, hi = _INT_RANGES[t]
        if not lo <= n <= hi:
            return f"out of range for {t} [{lo}, {hi}]"
        return None
    if t in _DECIMAL_TYPES:
        try:
            d = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return f"not a number ({t})"
        if not d.is_finite():
            return f"not a finite number ({t})"
        return None
    if t == "BOOLEAN":
        return None if value.strip().lower() in ("true", "false") else "not a BOOLEAN (true or false)"
    if t == "DATE":
        try:
            dt.date.fromisoformat(value.strip())
        except ValueError:
            return "not a DATE (YYYY-MM-DD)"
        return None
    if t in _TIMESTAMP_TYPES:
        text = value.strip()
        # fromisoformat accepts a bare date too; a timestamp parameter needs a time.
        if len(text) <= 10:
            return f"not a {t} (YYYY-MM-DD HH:MM:SS[.ffffff])"
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            return f"not a {t} (YYYY-MM-DD HH:MM:SS[.ffffff])"
        return None
    if t in _TIME_TYPES:
        try:
            dt.time.fromisoformat(value.strip())
        except ValueError:
            return f"not a {t} (HH:MM:SS)"
        return None
    if t in _BINARY_TYPES:
        try:
            bytes.fromhex(value.strip())
        except ValueError:
            return f"not hexadecimal bytes ({t})"
        return None
    if t in _STRING_TYPES:
        return None
    # A type added to the service after this runner: let the service judge it.
    return None


def resolve(template: str, declared: Iterable[Parameter], given: Mapping[str, str]) -> dict[str, str]:
    """Validate `given` against `declared`, apply defaults, return what to send.

    Collects every problem first so that the analyst fixes them in one go.
    """
    declared = list(declared)
    by_name = {p.name: p for p in declared}
    problems = []
    for name in given:
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            problems.append(f"unknown parameter {name!r} for template {template!r} (declared: {known})")
    result: dict[str, str] = {}
    for p in declared:
        if p.name in given:
            value = given[p.name]
        elif p.default is not None:
            # Sent explicitly so the run (and `history`) shows what was used.
            value = str(p.default)
        else:
            problems.append(f"required parameter {p.name!r} ({p.type}) of template {template!r} not given")
            continue
        reason = check_value(p.type, value)
        if reason:
            problems.append(f"parameter {p.name!r}={value!r}: {reason}")
        else:
            result[p.name] = value.strip().lower() if p.type.upper() == "BOOLEAN" else value
    if problems:
        raise ParamError(problems)
    return result

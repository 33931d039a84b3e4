"""Reading the analyst stack's outputs (``pulumi stack output --json``).

The runner takes every id from the stack, never from the analyst's memory:
mixing up the collaboration id and the membership id is the classic mistake
(start_protected_query wants the *membership* id). Flags exist to override or
fill in single values, e.g. for a stack deployed before an output was added.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from queryrunner import checks

HOW_TO_GET = (
    "pipe the analyst stack's outputs in: `pulumi stack output --json --stack <analyst stack> | "
    "python -m queryrunner <command> ... --outputs -` (or save them to a file and pass --outputs FILE)"
)

# Flag that can stand in for an output key; None when only the stack can provide it.
FLAG_FOR_KEY = {
    "membership_id": "--membership-id",
    "collaboration_id": "--collaboration-id",
    "region": "--region",
    "results_bucket": "--results-bucket",
    "results_prefix": "--results-prefix",
    "result_format": "--result-format",
    "analysis_templates": None,
}


class OutputsError(Exception):
    """Stack outputs unusable; the message says what is missing and how to get it (exit 2)."""


def _result_format(value: Any) -> str | None:
    if isinstance(value, str) and value.upper() in ("CSV", "PARQUET"):
        return None
    got = checks.show(value) if isinstance(value, str) else checks.json_type(value)
    return f"must be CSV or PARQUET, got {got}"


# How each single-valued output (or the flag standing in for it) is checked; see queryrunner/checks.py.
VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "membership_id": checks.check_membership_id,
    "collaboration_id": checks.check_collaboration_id,
    "region": checks.check_region,
    "results_bucket": checks.check_bucket,
    "results_prefix": checks.check_prefix,
    "result_format": _result_format,
}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None = None


@dataclass(frozen=True)
class Template:
    name: str
    arn: str
    id: str
    parameters: tuple[Parameter, ...] = ()
    differential_privacy: bool = False


@dataclass
class Settings:
    """What the runner needs, resolved from outputs + flags."""

    raw: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        if self.overrides.get(key) is not None:
            return self.overrides[key]
        value = self.raw.get(key)
        return default if value is None else value

    def _missing(self, key: str) -> bool:
        value = self.get(key)
        return value is None or (isinstance(value, (str, dict)) and not value)

    def from_flag(self, key: str) -> bool:
        return self.overrides.get(key) is not None

    def label(self, key: str) -> str:
        """Who gave the value: the flag when one overrides the output, else the output key."""
        return FLAG_FOR_KEY[key] if self.from_flag(key) and FLAG_FOR_KEY.get(key) else f"stack output '{key}'"

    def check_flags(self) -> None:
        """Every value given by a flag is checked, used by this command or not: the analyst typed it."""
        for key in VALUE_CHECKS:
            if self.from_flag(key):
                checks.fail(FLAG_FOR_KEY[key], VALUE_CHECKS[key](self.overrides[key]))

    def check(self, keys: Iterable[str]) -> None:
        """Check the values of ``keys`` that are present (require_all reports missing ones)."""
        for key in keys:
            if not self._missing(key) or self.from_flag(key):
                problem = VALUE_CHECKS[key](self.get(key))
                if problem is not None:
                    error = checks.CheckError if self.from_flag(key) else OutputsError
                    raise error(f"{self.label(key)} {problem}")

    def require(self, key: str) -> Any:
        self.require_all([key])
        return self.get(key)

    def require_all(self, keys: list[str]) -> None:
        """Fail naming every missing key at once, each with the flag that can supply it."""
        missing = [k for k in keys if self._missing(k)]
        if not missing:
            return
        names = ", ".join(f"'{k}'" + (f" (or {FLAG_FOR_KEY[k]})" if FLAG_FOR_KEY.get(k) else "") for k in missing)
        why = ("no stack outputs were given" if not self.raw
               else "is this the analyst stack, deployed with the analyst role?")
        raise OutputsError(f"missing stack output{'s' if len(missing) > 1 else ''} {names}: {why}; {HOW_TO_GET}")

    @property
    def membership_id(self) -> str:
        return self.require("membership_id")

    @property
    def collaboration_id(self) -> str:
        return self.require("collaboration_id")

    @property
    def region(self) -> str:
        return self.require("region")

    @property
    def results_bucket(self) -> str:
        return self.require("results_bucket")

    @property
    def results_prefix(self) -> str:
        # Normalised so that keyPrefix never gets a double or leading slash.
        return str(self.require("results_prefix")).strip("/")

    @property
    def result_format(self) -> str:
        fmt = self.require("result_format")
        problem = _result_format(fmt)
        if problem:
            raise OutputsError(f"result_format {problem}")
        return fmt.upper()

    @property
    def quicksight(self) -> dict[str, str] | None:
        """The dashboard's dataset to refresh (None when the stack has no dashboard); checked whole."""
        qs = self.get("quicksight")
        if qs is None or qs == {}:
            return None
        shape = ('{"dataset_id": "<dataset id>", "aws_account_id": "<12 digits>", "template": "<template>", '
                 '"published_prefix": "<key prefix>"} or null')
        if not isinstance(qs, dict):
            raise OutputsError(f"stack output 'quicksight' must be an object {shape}, got {checks.json_type(qs)}; "
                               "fix the outputs or pass --no-refresh")
        where = "stack output 'quicksight."
        for key in ("dataset_id", "aws_account_id"):
            if not isinstance(qs.get(key), str) or not qs[key]:
                raise OutputsError(f"{where}{key}' must be a non-empty string, got "
                                   f"{checks.json_type(qs.get(key)) if key in qs else 'nothing'}; {shape}; "
                                   "fix the outputs or pass --no-refresh")
        checks.fail(f"{where}aws_account_id'", checks.check_account_id(qs["aws_account_id"]), OutputsError)
        for key in ("template", "dashboard_id"):
            if qs.get(key) is not None and not isinstance(qs[key], str):
                raise OutputsError(f"{where}{key}' must be a string, got {checks.json_type(qs[key])}")
        if qs.get("published_prefix") is not None:
            checks.fail(f"{where}published_prefix'", checks.check_prefix(qs["published_prefix"]), OutputsError)
        return qs

    def templates(self) -> dict[str, Template]:
        """The declared analysis templates, every field type-checked (an error names the key path)."""
        raw = self.require("analysis_templates")
        if not isinstance(raw, dict):
            raise OutputsError("stack output 'analysis_templates' must be an object {\"<template>\": {\"arn\": ..., "
                               f"\"id\": ..., \"parameters\": [...]}}, got {checks.json_type(raw)}")
        return {name: _template(name, spec) for name, spec in raw.items()}

    def template(self, name: str) -> Template:
        templates = self.templates()
        if name not in templates:
            known = ", ".join(sorted(templates)) or "(none)"
            raise OutputsError(f"unknown analysis template {name!r}; the stack declares: {known}")
        return templates[name]


def _template(name: str, spec: Any) -> Template:
    where = f"stack output 'analysis_templates.{name}"
    checks.fail(f"stack output 'analysis_templates': template name {checks.show(name)}",
                checks.check_template_name(name), OutputsError)
    if not isinstance(spec, dict):
        raise OutputsError(f"{where}' must be an object with \"arn\", \"id\" and \"parameters\", "
                           f"got {checks.json_type(spec)}")
    for key in ("arn", "id"):
        if key not in spec:
            raise OutputsError(f"{where}' is malformed (missing {key!r}): {HOW_TO_GET}")
        if not isinstance(spec[key], str) or not spec[key]:
            raise OutputsError(f"{where}.{key}' must be a non-empty string, got {checks.json_type(spec[key])}")
    checks.fail(f"{where}.arn'", checks.check_template_arn(spec["arn"]), OutputsError)
    dp = spec.get("differential_privacy", False)
    if dp is not None and not isinstance(dp, bool):
        raise OutputsError(f"{where}.differential_privacy' must be true or false, got {checks.json_type(dp)}")
    declared = spec.get("parameters")
    if declared is None:
        declared = []
    if not isinstance(declared, list):
        raise OutputsError(f"{where}.parameters' must be a list of objects "
                           f"{{\"name\": ..., \"type\": ..., \"default\": ...}}, got {checks.json_type(declared)}")
    params: list[Parameter] = []
    for i, p in enumerate(declared):
        at = f"{where}.parameters[{i}]"
        if not isinstance(p, dict):
            raise OutputsError(f"{at}' must be an object {{\"name\": \"<name>\", \"type\": \"<TYPE>\", "
                               f"\"default\": \"<value>\" or null}}, got {checks.json_type(p)}")
        for key in ("name", "type"):
            if not isinstance(p.get(key), str) or not p[key]:
                got = checks.json_type(p[key]) if key in p else "nothing"
                raise OutputsError(f"{at}.{key}' must be a non-empty string, got {got}")
        checks.fail(f"{at}.name'", checks.check_parameter_name(p["name"]), OutputsError)
        if p.get("default") is not None and not isinstance(p["default"], str):
            raise OutputsError(f"{at}.default' must be a string or null, got {checks.json_type(p['default'])}")
        if p["name"] in {q.name for q in params}:
            raise OutputsError(f"{at}.name' declares parameter {p['name']!r} twice")
        params.append(Parameter(p["name"], p["type"].upper(), p.get("default")))
    return Template(name=name, arn=spec["arn"], id=spec["id"], parameters=tuple(params),
                    differential_privacy=bool(dp))


def load_outputs(source: str | None, stdin: IO[str]) -> dict[str, Any]:
    """Parse `pulumi stack output --json` from stdin ('-') or a file (--outputs); {} when not given."""
    if source is None:
        return {}
    origin = "standard input" if source == "-" else checks.one_line(source)
    try:
        if source == "-":
            text = stdin.read()
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: {exc.strerror or exc}; "
                           f"{HOW_TO_GET}") from exc
    except UnicodeDecodeError as exc:
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: not UTF-8 text ({exc.reason} at "
                           f"byte {exc.start}); {HOW_TO_GET}") from exc
    except ValueError as exc:  # e.g. a NUL character in the path
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: {exc}; {HOW_TO_GET}") from exc
    if not text.strip():
        raise OutputsError(f"--outputs: no stack outputs on {origin}: {HOW_TO_GET}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"--outputs: stack outputs on {origin} are not JSON ({exc.msg}, line {exc.lineno} "
                           f"column {exc.colno}): {HOW_TO_GET}") from exc
    except RecursionError as exc:
        raise OutputsError(f"--outputs: stack outputs on {origin} are nested too deeply to be "
                           f"`pulumi stack output --json`: {HOW_TO_GET}") from exc
    if not isinstance(data, dict):
        raise OutputsError(f"--outputs: stack outputs on {origin} must be a JSON object, got "
                           f"{checks.json_type(data)}: {HOW_TO_GET}")
    return data

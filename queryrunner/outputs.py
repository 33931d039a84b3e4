"""Reading the analyst stack's outputs (``pulumi stack output --json``).

The runner takes every id from the stack, never from the analyst's memory:
mixing up the collaboration id and the membership id is the classic mistake
(start_protected_query wants the *membership* id). Flags exist to override or
fill in single values, e.g. for a stack deployed before an output was added.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any

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
        return self.get(key) in (None, "", {})

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
        fmt = str(self.require("result_format")).upper()
        if fmt not in ("CSV", "PARQUET"):
            raise OutputsError(f"result_format must be CSV or PARQUET, got {fmt!r}")
        return fmt

    @property
    def quicksight(self) -> dict[str, str] | None:
        qs = self.get("quicksight")
        if not qs:
            return None
        if not isinstance(qs, dict) or not qs.get("dataset_id") or not qs.get("aws_account_id"):
            raise OutputsError(
                "stack output 'quicksight' must be {\"dataset_id\": ..., \"aws_account_id\": ...}; "
                f"got {qs!r}: {HOW_TO_GET}, or pass --no-refresh"
            )
        return qs

    def templates(self) -> dict[str, Template]:
        raw = self.require("analysis_templates")
        if not isinstance(raw, dict):
            raise OutputsError(f"stack output 'analysis_templates' must be a mapping, got {type(raw).__name__}")
        result = {}
        for name, spec in raw.items():
            try:
                params = tuple(
                    Parameter(p["name"], str(p["type"]).upper(), p.get("default"))
                    for p in spec.get("parameters") or ()
                )
                result[name] = Template(
                    name=name,
                    arn=spec["arn"],
                    id=spec["id"],
                    parameters=params,
                    differential_privacy=bool(spec.get("differential_privacy", False)),
                )
            except (KeyError, TypeError, AttributeError) as exc:
                raise OutputsError(
                    f"stack output 'analysis_templates.{name}' is malformed (missing {exc}): {HOW_TO_GET}"
                ) from exc
        return result

    def template(self, name: str) -> Template:
        templates = self.templates()
        if name not in templates:
            known = ", ".join(sorted(templates)) or "(none)"
            raise OutputsError(f"unknown analysis template {name!r}; the stack declares: {known}")
        return templates[name]


def load_outputs(source: str | None, stdin: IO[str]) -> dict[str, Any]:
    """Parse `pulumi stack output --json` from stdin ('-') or a file; {} when not given."""
    if source is None:
        return {}
    try:
        if source == "-":
            text = stdin.read()
            origin = "standard input"
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
            origin = source
    except OSError as exc:
        raise OutputsError(f"cannot read stack outputs from {source}: {exc.strerror}; {HOW_TO_GET}") from exc
    if not text.strip():
        raise OutputsError(f"no stack outputs on {origin}: {HOW_TO_GET}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"stack outputs on {origin} are not JSON ({exc.msg}): {HOW_TO_GET}") from exc
    if not isinstance(data, dict):
        raise OutputsError(f"stack outputs on {origin} must be a JSON object: {HOW_TO_GET}")
    return data

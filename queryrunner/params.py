"""Checking --param values against an analysis template's declared parameters.

Clean Rooms only rejects a bad parameter after the query has been queued (and,
for differential privacy, possibly after budget was considered), so the runner
checks names and types locally before anything is sent, with the rules in
model/parameters.py.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from model.parameters import check_value
from queryrunner.outputs import Parameter


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


def resolve_jobs(templates: Iterable, given: Mapping[str, str], spread: bool) -> list[tuple]:
    """Each template with the parameters to send, every problem collected first.

    ``spread`` (run --all): a given parameter goes to every template that
    declares it, and one that no template declares is an error.
    """
    templates = list(templates)
    if spread:
        unknown = sorted(set(given) - {p.name for t in templates for p in t.parameters})
        if unknown:
            raise ParamError([f"unknown parameter {n!r}: no template declares it" for n in unknown])
    problems, jobs = [], []
    for template in templates:
        own = {k: v for k, v in given.items() if k in {p.name for p in template.parameters}} if spread else given
        try:
            jobs.append((template, resolve(template.name, template.parameters, own)))
        except ParamError as exc:
            problems += exc.problems
    if problems:
        raise ParamError(problems)
    return jobs

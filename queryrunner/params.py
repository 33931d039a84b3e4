"""Checking --param values against an analysis template's declared parameters.

Clean Rooms only rejects a bad parameter after the query has been queued (and,
for differential privacy, possibly after budget was considered), so the runner
checks names and types locally before anything is sent, with the rules in
model/parameters.py.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from model import windows

from model.parameters import check_value, to_python
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


# -- --window: the time window a template covers (model/windows.py) ----------------------------------------------
# A template over data that keeps arriving declares two TIMESTAMP parameters bound to its time column
# (``WHERE e.event_time >= :window_start AND e.event_time < :window_end``); `run NAME --window 1h` fills them.
WINDOW = windows.WINDOW


def window_bounds(text: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last whole window of this length before ``now`` (UTC), windows aligned on the Unix epoch: a run
    every hour with --window 1h covers each hour once, and two runs in one hour cover the same rows."""
    length = windows.parse_length(text)
    if length is None:
        raise ParamError([f"--window {text!r} must be a length such as 15m, 1h or 7d (minutes, hours or days, "
                          "at most 366d)"])
    return windows.bounds(length, now)


def with_window(given: Mapping[str, str], window: str | None, templates: Iterable, now: dt.datetime) -> dict:
    """``given`` with window_start and window_end for ``--window``; every template must declare both (TIMESTAMP)."""
    if window is None:
        return dict(given)
    start, end = window_bounds(window, now)
    problems = [f"--window and --param {name}: give one of them" for name in WINDOW if name in given]
    for template in templates:
        missing = windows_missing(template.parameters)
        if missing:
            problems.append(f"--window: template {template.name!r} does not declare {' and '.join(missing)} as "
                            "TIMESTAMP parameters (bound to its time column)")
    if problems:
        raise ParamError(problems)
    return {**given, "window_start": f"{start:%Y-%m-%d %H:%M:%S}", "window_end": f"{end:%Y-%m-%d %H:%M:%S}"}


def windows_missing(parameters) -> list[str]:
    """The window parameters a template does not declare as TIMESTAMP."""
    declared = {p.name: p.type.upper() for p in parameters}
    return [name for name in WINDOW if declared.get(name) not in ("TIMESTAMP", "TIMESTAMP_NTZ")]


def windowed(templates: Iterable) -> list:
    """The templates that declare a window parameter (window_start or window_end)."""
    return [t for t in templates if set(WINDOW) & {p.name for p in t.parameters}]


def check_retention(window: str | None, now: dt.datetime, retention: Mapping[str, Mapping[str, tuple[str, str]]],
                    tail: str, given: Mapping[str, str] | None = None) -> None:
    """UsageError, one line, when a window reaches back past the retention of a table a template reads.

    ``retention``: {template: {table: (its retention, where it is declared)}}. With ``--window`` the window is the
    last whole one before ``now``, so it starts ``windows.reach`` before now (more than its length); without it, a
    ``window_start`` given by hand (in ``given``) starts where it says. A table that keeps rows for a retention no
    longer holds the rows before now - retention, and the run would spend the budget on less than the window it
    names. The message names the flag, the window's start, the retention, where it is declared, and what passes.
    """
    from queryrunner import UsageError

    if window is not None:
        length = windows.parse_length(window)
        if length is None:
            return  # a bad --window: with_window says
        flag, (start, _) = f"--window {window}", windows.bounds(length, now)
        reach = windows.since(start, now)

        def fits(keeps: dt.timedelta) -> str:
            longest = windows.longest_within(keeps, now, window[-1])
            return (f"the longest window that starts within it now is --window {longest}" if longest else
                    "no window starts within it now")
    elif given and "window_start" in given and check_value("TIMESTAMP", given["window_start"]) is None:
        flag, start = f"--param window_start={given['window_start']}", windows.utc(
            to_python("TIMESTAMP", given["window_start"]))
        reach = windows.since(start, now)

        def fits(keeps: dt.timedelta) -> str:
            return f"give a window_start at or after {windows.utc(now) - keeps:%Y-%m-%d %H:%M:%S}"
    else:
        return  # no window (or a window_start that is not a time: resolve_jobs says)
    for template, tables in retention.items():
        for table, (text, where) in sorted(tables.items()):
            keeps = windows.parse_length(text, maximum=None)
            if keeps is None or reach <= keeps:
                continue
            raise UsageError(f"{flag}: template {template!r} would read table {table} from "
                             f"{start:%Y-%m-%d %H:%M:%S}, {_span(reach)} before now, but the table keeps rows for "
                             f"{text} ({where}); {fits(keeps)}; {tail}")


def _span(length: dt.timedelta) -> str:
    minutes = int(length.total_seconds()) // 60
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    return " ".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n) or "0m"

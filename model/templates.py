"""Analysis templates from data/queries/*.sql.

Each file is one template. Its header comments declare a description and
typed parameters, which the SQL references as ``:name``:

    -- description: Customers per age group and region.
    -- param: min_orders INTEGER default 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import sqlglot
from sqlglot import exp

from model.errors import ConfigError
from model.sql_columns import parse_template
from model.stackfiles import ROOT
from model.parameters import PARAMETER_TYPES, check_value
from model.stack_models import SQL_WORKERS, WORKER_TYPE

MAX_SQL_CHARS = 90_000  # AnalysisSource.Text maxLength
_NAME = re.compile(r"^[a-z0-9_]{1,128}$")
_PARAM_LINE = re.compile(r"^--\s*param:\s*(\w+)\s+(\w+)(?:\s+default\s+(.*?))?\s*$")
_PARAM_USE = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None


@dataclass(frozen=True)
class Compute:
    """Spark workers for a query (StartProtectedQuery computeConfiguration.worker)."""

    worker_type: str
    workers: int

    def export(self) -> dict:
        return {"workerType": self.worker_type, "workers": self.workers}


WORKER_TYPES = get_args(WORKER_TYPE)
_COMPUTE_LINE = re.compile(r"^--\s*compute:\s*(\S+)\s+(\S+)\s*$")


@dataclass(frozen=True)
class QueryTemplate:
    name: str
    description: str
    sql: str
    parameters: tuple[Parameter, ...]
    tables: tuple[str, ...]  # configured table association names the SQL reads
    path: Path
    compute: Compute | None = None
    """The template's own Spark compute (`-- compute: CR.4X 32`), over the stack's default."""


def parse_query(path: Path) -> QueryTemplate:
    name = path.stem
    where = shown_path(path)
    if not _NAME.match(name):
        raise _bad(where, f"template file name '{name}' must be lowercase letters, digits, '_'")
    text = path.read_text(encoding="utf-8")
    if len(text) > MAX_SQL_CHARS:
        raise _bad(where, f"SQL is {len(text)} characters; Clean Rooms allows {MAX_SQL_CHARS}")
    description, params, compute = "", [], None
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("-- description:"):
            description = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("-- compute:"):
            compute = _compute(stripped, f"{where}:{line_no}")
        elif stripped.startswith("-- param:"):
            at = f"{where}:{line_no}"
            match = _PARAM_LINE.match(stripped)
            if not match:
                raise _bad(at, f"cannot read {stripped!r}; expected '-- param: NAME TYPE [default VALUE]'")
            pname, ptype, default = match.groups()
            if ptype not in PARAMETER_TYPES:
                raise _bad(at, f"parameter '{pname}' has type {ptype}; allowed: {list(PARAMETER_TYPES)}")
            default = default.strip("'") if default is not None else None
            problem = None if default is None else check_value(ptype, default)
            if problem:
                raise _bad(at, f"default {default!r} of parameter '{pname}' is {problem}")
            if pname in {p.name for p in params}:
                raise _bad(at, f"parameter '{pname}' is declared twice")
            params.append(Parameter(pname, ptype, default))
    # Comment lines blanked, not removed, so errors keep the file's line numbers.
    body = "\n".join("" if l.strip().startswith("--") else l for l in text.splitlines())
    used = set(_PARAM_USE.findall(body))
    declared = {p.name for p in params}
    if used != declared:
        raise _bad(where, f"parameters used in the SQL {sorted(used)} differ from those declared "
                          f"in '-- param:' lines {sorted(declared)}")
    return QueryTemplate(name=name, description=description[:255], sql=text, parameters=tuple(params),
                         tables=referenced_tables(body, where), path=path, compute=compute)


def _compute(line: str, where: str) -> Compute:
    match = _COMPUTE_LINE.match(line)
    if not match:
        raise _bad(where, f"cannot read {line!r}; expected '-- compute: WORKER_TYPE WORKERS', e.g. "
                          "'-- compute: CR.4X 32'")
    worker_type, workers = match.groups()
    if worker_type not in WORKER_TYPES:
        raise _bad(where, f"worker type {worker_type!r}; allowed: {list(WORKER_TYPES)}")
    low, high = SQL_WORKERS
    if not workers.isdigit() or not low <= int(workers) <= high:
        raise _bad(where, f"{workers!r} workers; SQL queries take {low} to {high} (StartProtectedQuery)")
    return Compute(worker_type, int(workers))


def shown_path(path: Path) -> str:
    """A template's path as the user knows it: relative to the project when inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _bad(where: str, message: str) -> ConfigError:
    return ConfigError("analyst.queries", f"{where}: {message}")


def referenced_tables(sql: str, where: str = "analyst.queries") -> tuple[str, ...]:
    """Table names the SQL reads (CTE names excluded)."""
    # sqlglot reads ':name' placeholders as parameters in the Spark dialect.
    try:
        tree = parse_template(sql)
    except sqlglot.errors.ParseError as exc:
        # The structured error, not str(exc): that one carries ANSI underline codes.
        detail = exc.errors[0] if exc.errors else {}
        line = f":{detail['line']}" if detail.get("line") else ""
        raise _bad(f"{where}{line}", "SQL does not parse as Spark SQL: "
                          f"{detail.get('description') or 'syntax error'}") from None
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return tuple(sorted({t.name for t in tree.find_all(exp.Table)} - ctes))


def load_queries(directory: Path, names: list[str]) -> tuple[QueryTemplate, ...]:
    available = {p.stem: p for p in sorted(directory.glob("*.sql"))}
    chosen = names or list(available)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise ConfigError("analyst.queries", f"no such query {unknown}; available: {sorted(available)}")
    if len(chosen) > 25:
        raise ConfigError("analyst.queries", "a membership holds at most 25 analysis templates")
    return tuple(parse_query(available[n]) for n in chosen)


def published_prefix(template: str) -> str:
    """Where the query runner copies the latest successful result of a template.

    Clean Rooms writes every run under its own folder, so reading the results
    prefix would mix all runs; dashboards read only this prefix.
    """
    return f"published/{template}"

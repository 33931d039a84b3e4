"""The Clean Rooms validator: refuse an analysis template the service would refuse.

One validator for the Pulumi program (at preview, before any template is
declared) and the local clean room (before a template runs). One module per
rule family, each with its AWS documentation source at the top:

  tables      the tables are the collaboration's associated tables, the columns
              exist, all tables have a rule of one type
  access      the analyst may run the template on every table (allowed analyses)
  output      disallowed output columns (and every identifier) never reach the output
  thresholds  what minimum aggregation thresholds refuse outright
  privacy     the query structure differential privacy accepts, and what voids
              its guarantee (warned about: AWS runs it)

A refusal names the template file, the line, the table (and its owner) and the
rule, and says what would pass; a warning is written the same way. Checks
that need a table's rule are skipped while the rule is unknown (a partner that
has not deployed yet); the template then waits for that table anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlglot.errors import OptimizeError, ParseError

from model.collaboration import Collaboration
from model.errors import ConfigError
from model.templates import QueryTemplate, shown_path
from model.validator import access, output, privacy, tables, thresholds
from model.validator.analysis import Analysis, build, optimize_error_column, parse, parse_error_line, qualified


def _located(template: QueryTemplate, line: int | None, rule: str | None, table: str | None, owner: str | None,
             message: str) -> str:
    """One line: file:line: rule (table of owner): message."""
    where = shown_path(template.path) + (f":{line}" if line else "")
    named = f" ({table} of {owner})" if table and owner else (f" ({table})" if table else "")
    return f"{where}: {rule}{named}: {message}" if rule else f"{where}: {message}"


@dataclass(frozen=True)
class Refusal:
    template: QueryTemplate
    line: int | None
    rule: str
    message: str
    table: str | None = None
    owner: str | None = None

    def __str__(self) -> str:
        return _located(self.template, self.line, self.rule, self.table, self.owner, self.message)


@dataclass(frozen=True)
class Warning_:
    """What the service runs but should be looked at, or might accept or refuse (undocumented): said, not refused."""

    template: QueryTemplate
    message: str
    line: int | None = None
    rule: str | None = None
    table: str | None = None
    owner: str | None = None

    def __str__(self) -> str:
        return _located(self.template, self.line, self.rule, self.table, self.owner, self.message)


@dataclass
class Result:
    refusals: list[Refusal]
    warnings: list[Warning_]
    analysis: Analysis | None

    @property
    def ok(self) -> bool:
        return not self.refusals


def validate(template: QueryTemplate, collab: Collaboration) -> Result:
    try:
        tree = parse(template)
    except ParseError as exc:
        detail = exc.errors[0].get("description") if exc.errors else str(exc)
        return Result([Refusal(template, parse_error_line(exc), "SQL syntax", f"does not parse as Spark SQL: {detail}")],
                      [], None)
    unknown = tables.unknown_tables(template, tree, collab)
    if unknown:
        return Result([_refusal(template, f) for f in unknown], [], None)
    try:
        tree = qualified(tree, collab.schema())
    except OptimizeError as exc:
        return Result([_refusal(template, tables.column_error(tree, exc, optimize_error_column(exc), collab))], [], None)
    analysis = build(template, collab, tree)
    findings = []
    for family in (tables, access, output, thresholds, privacy):
        findings.extend(family.check(analysis))
    refusals = [_refusal(template, f) for f in findings if not f.warning]
    warnings = [Warning_(template, f.message, line=f.line, rule=f.rule, table=f.table, owner=f.owner)
                for f in findings if f.warning]
    return Result(refusals, warnings, analysis)


def check_templates(templates: Iterable[QueryTemplate], collab: Collaboration) -> list[str]:
    """Raise ConfigError listing every refusal, one per line; return the warnings."""
    refusals, warnings = [], []
    for template in templates:
        result = validate(template, collab)
        refusals += result.refusals
        warnings += [str(w) for w in result.warnings]
    if refusals:
        raise ConfigError("analyst.queries", "Clean Rooms would refuse these templates:\n"
                          + "\n".join(f"  {r}" for r in refusals))
    return warnings


def _refusal(template: QueryTemplate, finding) -> Refusal:
    return Refusal(template=template, line=finding.line, rule=finding.rule, message=finding.message,
                   table=finding.table, owner=finding.owner)


__all__ = ["Refusal", "Result", "check_templates", "validate"]

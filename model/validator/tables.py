"""Tables and columns.

Sources (AWS Clean Rooms User Guide):
- analysis-rules: "If there is no analysis rule configured, the configured table
  can be associated to collaborations but it can't be queried. Queries can only
  reference configured tables with the same analysis rule type."
- Set operations (Spark SQL reference, set operators: "the input relations
  must have the same number of columns and compatible data types for the
  respective columns"): each branch of a UNION, INTERSECT or EXCEPT has as
  many columns as the first, and a column is text, number, date/time or
  boolean in every branch alike (Spark would otherwise refuse the query, or
  silently turn numbers into text).
- create-analysis-template / API AnalysisSchema.referencedTables: a template
  names tables by their configured table association names; a query can read
  only tables associated with the collaboration, and only the columns the
  configured table allows (ConfiguredTable.allowedColumns: this project allows
  every column its schema.yaml declares).
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError

from model.collaboration import Collaboration
from model.sql_columns import HINTS
from model.templates import QueryTemplate
from model.validator.analysis import Analysis
from model.validator.finding import Finding, finding


def unknown_tables(template: QueryTemplate, tree: exp.Expression, collab: Collaboration) -> list[Finding]:
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    known = sorted(collab.tables)
    found = []
    for table in tree.find_all(exp.Table):
        if table.name in ctes or table.name in collab.tables:
            continue
        found.append(finding("associated tables", f"table '{table.name}' is not associated with the "
                             f"collaboration; its tables are {known}", table))
    return found


def column_error(tree: exp.Expression, error: OptimizeError, name: str | None, collab: Collaboration) -> Finding:
    node = next((c for c in tree.find_all(exp.Column) if c.name == name), None) if name else None
    if node is None:
        return finding("columns", f"{error}")
    qualifier = node.table
    sources = {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}
    if qualifier and sources.get(qualifier) in collab.tables:
        table = collab.tables[sources[qualifier]]
        return finding("columns", f"column '{name}' is not in table '{table.alias}'; its columns are "
                       f"{table.dataset.column_names}", node, table)
    having = sorted(alias for alias, t in collab.tables.items() if name in t.dataset.column_names)
    read = sorted({t.name for t in tree.find_all(exp.Table) if t.name in collab.tables})
    if any(t in having for t in read):
        return finding("columns", f"column '{name}' is ambiguous: tables {[t for t in read if t in having]} "
                       "all have it; qualify it with the table's alias", node)
    return finding("columns", f"column '{name}' is in none of the tables this query reads {read}", node)


def check(analysis: Analysis):
    # Every producer's config requires a rule, so a table without one is a
    # partner's whose rule is not known yet: nothing to compare.
    known_rules = {alias: t.rule.type for alias, t in analysis.tables.items() if t.rule is not None}
    if len(set(known_rules.values())) > 1:
        yield finding("analysis rule types", "queries can only reference configured tables with the same "
                      f"analysis rule type; these tables have {dict(sorted(known_rules.items()))}")
    for node in analysis.tree.walk():
        if isinstance(node, exp.SetOperation):
            yield from _set_operation(analysis, node)
    for name, line in analysis.tree.meta.get("hints", []):  # set aside by model/sql_columns.parse_template
        if name not in HINTS:
            yield Finding("query hint", f"'{name}' is not a hint Clean Rooms Spark SQL supports; it supports "
                          f"{', '.join(HINTS)} (sql-commands-hints-spark)", line=line)


_KINDS = {"varchar": "text", "char": "text", "string": "text", "date": "date/time", "timestamp": "date/time",
          "boolean": "boolean"}


def _set_operation(analysis: Analysis, node: exp.SetOperation):
    """Both sides of one set operation: the same number of columns, each of one kind of type."""
    left, right = _first_select(node.this), _first_select(node.expression)
    if left is None or right is None:
        return
    label = type(node).__name__.upper()
    if len(left.expressions) != len(right.expressions):
        yield finding("set operation", f"the branches of this {label} have {len(left.expressions)} and "
                      f"{len(right.expressions)} columns; every branch must have as many columns as the first "
                      "(sql-reference, Set operators)",
                      node.expression)
        return
    for position, (a, b) in enumerate(zip(left.expressions, right.expressions)):
        kinds = (_kind(analysis, a), _kind(analysis, b))
        if None not in kinds and kinds[0] != kinds[1]:
            yield finding("set operation", f"column {position + 1} of this {label} is {kinds[0]} "
                          f"('{a.alias_or_name}') in one branch and {kinds[1]} ('{b.alias_or_name}') in the other; "
                          "make both the same kind (CAST one of them): set operations allow no implicit conversion "
                          "between kinds (sql-reference, Set operators)", b)


def _first_select(node: exp.Expression) -> exp.Select | None:
    while isinstance(node, (exp.SetOperation, exp.Subquery)):
        node = node.this
    return node if isinstance(node, exp.Select) else None


def _kind(analysis: Analysis, projection: exp.Expression) -> str | None:
    """text, number, date/time or boolean for a projection that is a table's column; None if not plain."""
    node = projection.this if isinstance(projection, exp.Alias) else projection
    if isinstance(node, exp.Literal):
        return "text" if node.is_string else "number"
    if not isinstance(node, exp.Column):
        return None
    table = next((source.name for source in _sources(node) if source is not None), None)
    dataset = analysis.tables[table].dataset if table in analysis.tables else None
    declared = dataset.column(node.name) if dataset else None
    if declared is None:
        return None
    glue = declared.glue_type.split("(")[0]
    return _KINDS.get(glue, "number")


def _sources(column: exp.Column):
    """The base table a qualified column of a branch reads directly (None through a CTE or subquery)."""
    select = column.find_ancestor(exp.Select)
    for source in (select.args.get("from_"), *(select.args.get("joins") or [])) if select else ():
        table = source.this if source is not None else None
        if isinstance(table, exp.Table) and table.alias_or_name == column.table:
            yield table
    yield None

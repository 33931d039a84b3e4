"""Tables and columns.

Sources (AWS Clean Rooms User Guide):
- analysis-rules: "If there is no analysis rule configured, the configured table
  can be associated to collaborations but it can't be queried. Queries can only
  reference configured tables with the same analysis rule type."
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

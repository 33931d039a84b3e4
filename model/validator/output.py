"""Disallowed output columns: what may never reach the query's output.

Source (AWS Clean Rooms User Guide, disallowed-output-columns and
disallowed-columns): "Any reference to a disallowed column through
transformation, aliasing, or other means cannot appear in the final SELECT
(projection) of the query." The worked examples block a direct projection,
SELECT *, COUNT(age), an alias of COUNT(age) read from a subquery, a CTE
column, and a disallowed column used as a window's partition or sort key in
the final projection; the same columns may be used in joins, filters and
sort keys, and in the projections of CTEs and subqueries that the final
projection does not read.

This project adds every join_key and user_identifier column of a schema to
its table's disallowed output columns (model/config.py), so an identifier is
never output, aggregated or not: count rows with COUNT(*) instead.
"""

from __future__ import annotations

from sqlglot import exp

from model.validator.analysis import Analysis
from model.validator.finding import finding


def check(analysis: Analysis):
    # sql-commands-cache-table: "A cached table cannot reference a disallowed output column in its SELECT
    # clause": a CACHE TABLE (a CTE here, model/sql_columns.parse_template) is held to the final SELECT's rule.
    final = analysis.final_selects()
    cached = [s for cte in analysis.tree.find_all(exp.CTE) if cte.meta.get("cache_table") for s in _outputs(cte.this)]
    for select in [*final, *cached]:
        scope = _scope_of(analysis, select)
        for projection in select.expressions:
            for column in sorted(analysis.lineage(projection, scope), key=lambda c: (c.table, c.column)):
                table = analysis.table_of(column)
                if column.column not in table.disallowed_output:
                    continue
                role = table.dataset.column(column.column).role
                why = (f"a {role} column" if role in ("join_key", "user_identifier")
                       else "in the table's disallowedOutputColumns")
                if any(select is f for f in final):
                    yield finding("disallowed output column",
                                  f"output '{projection.alias_or_name}' is computed from '{column.column}', which "
                                  f"is {why} and may not appear in the final SELECT in any form (aggregated, "
                                  "transformed or aliased); count rows with COUNT(*) and use it only in "
                                  "joins and filters", projection, table)
                else:
                    yield finding("disallowed output column",
                                  f"CACHE TABLE column '{projection.alias_or_name}' is computed from "
                                  f"'{column.column}', which is {why}: a cached table may not select it "
                                  "(sql-commands-cache-table); use a CTE (WITH) instead", projection, table)


def _scope_of(analysis: Analysis, select):
    return next(s for s in analysis.scopes() if s.expression is select)


def _outputs(query: exp.Expression) -> list[exp.Select]:
    """The SELECTs whose projections are ``query``'s columns (every branch of a set operation)."""
    if isinstance(query, exp.SetOperation):
        return [*_outputs(query.this), *_outputs(query.expression)]
    if isinstance(query, exp.Subquery):
        return _outputs(query.this)
    return [query] if isinstance(query, exp.Select) else []

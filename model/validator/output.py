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

from model.validator.analysis import Analysis
from model.validator.finding import finding


def check(analysis: Analysis):
    for select in analysis.final_selects():
        scope = _scope_of(analysis, select)
        for projection in select.expressions:
            for column in sorted(analysis.lineage(projection, scope), key=lambda c: (c.table, c.column)):
                table = analysis.table_of(column)
                if column.column not in table.disallowed_output:
                    continue
                role = table.dataset.column(column.column).role
                why = (f"a {role} column" if role in ("join_key", "user_identifier")
                       else "in the table's disallowedOutputColumns")
                yield finding("disallowed output column",
                              f"output '{projection.alias_or_name}' is computed from '{column.column}', which is "
                              f"{why} and may not appear in the final SELECT in any form (aggregated, "
                              "transformed or aliased); count rows with COUNT(*) and use it only in "
                              "joins and filters", projection, table)


def _scope_of(analysis: Analysis, select):
    return next(s for s in analysis.scopes() if s.expression is select)

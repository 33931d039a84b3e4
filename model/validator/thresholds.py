"""What minimum aggregation thresholds (CUSTOM rules) refuse outright.

Rows that fall below a threshold are suppressed when the query runs
(localroom/engine.py); these are the queries the service refuses instead.
Sources (AWS Clean Rooms User Guide and API):
- custom-comparison-controls: "AWS Clean Rooms never allows a literal comparison
  on a column listed in identityColumns. That restriction comes from the
  threshold itself, so it applies whether or not you configure comparison
  controls." (the rejected example: WHERE user_id = 'U-88231')
- API AggregationThreshold.allowedAggregateExpressionType, COLUMNS_ONLY (what
  this project configures): "A query can aggregate only a direct column
  reference, such as SUM(amount), or a constant. Clean Rooms rejects a query that
  transforms a column and then aggregates it"; "This applies to the arguments
  of both aggregate and window functions."
- custom-sql-capabilities (Spark): "MIN, MAX, PERCENTILE, APPROX_PERCENTILE,
  MEDIAN, COLLECT_LIST, and COLLECT_SET must be combined with a qualifying
  aggregation (AVG, COUNT, SUM). They cannot be used as a standalone
  aggregation", and the constructs the same page marks unsupported when a
  threshold is set (UNSUPPORTED below).
"""

from __future__ import annotations

from sqlglot import exp

from model.validator.analysis import Analysis, aggregates_in, function_name, outside_subqueries, windows_in
from model.validator.finding import finding

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.In, exp.Between,
                exp.NullSafeEQ, exp.NullSafeNEQ)
_LITERALS = (exp.Literal, exp.Placeholder, exp.Null, exp.Boolean)
_QUALIFYING = (exp.Avg, exp.Count, exp.Sum)
_STANDALONE_REFUSED = (exp.Min, exp.Max, exp.Quantile, exp.ApproxQuantile, exp.Median, exp.ArrayAgg,
                       exp.ArrayUniqueAgg)

# custom-sql-capabilities, rows marked "No" for the Spark engine with thresholds.
UNSUPPORTED_NODES = {
    exp.Cube: "GROUP BY CUBE", exp.Rollup: "GROUP BY ROLLUP", exp.GroupingSets: "GROUPING SETS",
    exp.Exists: "EXISTS", exp.Lateral: "LATERAL", exp.Pivot: "PIVOT/UNPIVOT", exp.Except: "EXCEPT",
    exp.Intersect: "INTERSECT", exp.Offset: "OFFSET", exp.NullSafeEQ: "<=> (IS NOT DISTINCT FROM)",
    exp.AnyValue: "ANY_VALUE", exp.LogicalAnd: "BOOL_AND", exp.LogicalOr: "BOOL_OR",
}
UNSUPPORTED_FUNCTIONS = {
    "ARRAY_EXCEPT", "TO_CHAR", "TO_NUMBER", "DAYOFYEAR", "DATE_ADD", "ADD_MONTHS", "TRUNCATE", "CBRT", "PI",
    "RADIANS", "ACOS", "ASIN", "ATAN", "ATAN2", "COS", "COT", "SIN", "DEGREES", "REVERSE", "TRANSLATE",
    "REGEXP_COUNT", "REGEXP_INSTR", "SPLIT_PART", "FIRST", "FIRST_VALUE", "LAST", "LAST_VALUE", "NTH_VALUE",
    "CUME_DIST", "PERCENT_RANK", "NTILE", "AES_ENCRYPT", "AES_DECRYPT",
}


def check(analysis: Analysis):
    thresholded = {alias: t for alias, t in analysis.tables.items() if t.threshold}
    if not thresholded:
        return
    # What follows is a rule of every thresholded table's analysis rule: the finding names each of them
    # (not one picked by name), since any of them refuses the query.
    tables = [t for _, t in sorted(thresholded.items())]
    yield from _literal_comparisons(analysis, thresholded)
    yield from _aggregate_arguments(analysis, tables)
    yield from _standalone(analysis, tables)
    yield from _unsupported(analysis, tables)
    if any(t.differential_privacy for t in analysis.tables.values()):
        # Undocumented: the docs only say thresholds and DP don't combine in one
        # rule (custom-considerations). The local clean room applies both.
        yield finding("aggregation threshold", "AWS does not document whether one query may read a table under "
                      "a minimum aggregation threshold and one under differential privacy; the local clean "
                      "room applies both (rows below the threshold are suppressed, then noise is added)",
                      warning=True)


def _literal_comparisons(analysis: Analysis, thresholded):
    identities = {(alias, t.threshold[0]) for alias, t in thresholded.items()}
    for scope in analysis.scopes():
        for node in outside_subqueries(scope.expression):
            if not isinstance(node, _COMPARISONS):
                continue
            sides = [node.this, *(node.expressions or []), node.args.get("expression"),
                     node.args.get("low"), node.args.get("high")]
            sides = [s for s in sides if isinstance(s, exp.Expression)]
            if not any(isinstance(s, _LITERALS) for s in sides):
                continue
            for side in sides:
                for column in analysis.lineage(side, scope):
                    if (column.table, column.column) in identities:
                        table = analysis.tables[column.table]
                        yield finding("aggregation threshold", f"'{node.sql(dialect='spark')}' compares the "
                                      f"identity column '{column.column}' with a literal; Clean Rooms never allows "
                                      "that on a threshold's identity column", node, table)


def _aggregate_arguments(analysis: Analysis, tables):
    for scope in analysis.scopes():
        calls = aggregates_in(scope.expression) + [w.this for w in windows_in(scope.expression)]
        for call in calls:
            for argument in _arguments(call):
                if not isinstance(argument, (exp.Column, exp.Star, exp.Literal, exp.Placeholder)):
                    yield finding("aggregation threshold", f"'{call.sql(dialect='spark')}' aggregates an "
                                  "expression; with allowedAggregateExpressionType COLUMNS_ONLY a query may "
                                  "aggregate only a column or a constant", call, tables)


def _arguments(call: exp.Expression) -> list[exp.Expression]:
    this = call.this
    if isinstance(this, exp.Distinct):
        return list(this.expressions)
    return [a for a in (this, *call.expressions) if isinstance(a, exp.Expression)]


def _standalone(analysis: Analysis, tables):
    for select in analysis.final_selects():
        calls = [a for p in select.expressions for a in aggregates_in(p)]
        lonely = [c for c in calls if isinstance(c, _STANDALONE_REFUSED)]
        if lonely and not any(isinstance(c, _QUALIFYING) for c in calls):
            yield finding("aggregation threshold", f"{function_name(lonely[0])} needs a qualifying aggregation "
                          "(AVG, COUNT or SUM) beside it in the final SELECT", lonely[0], tables)


def _unsupported(analysis: Analysis, tables):
    with_ = analysis.tree.args.get("with_")
    if with_ is not None and with_.args.get("recursive"):
        yield finding("aggregation threshold", "WITH RECURSIVE is not supported with aggregation thresholds",
                      with_, tables)
    for node in analysis.tree.walk():
        name = UNSUPPORTED_NODES.get(type(node))
        if isinstance(node, exp.Join) and node.args.get("kind") in ("SEMI", "ANTI"):
            name = f"LEFT {node.args['kind']} JOIN"
        if isinstance(node, exp.Func) and function_name(node) in UNSUPPORTED_FUNCTIONS:
            name = function_name(node)
        if name:
            yield finding("aggregation threshold", f"{name} is not supported on the Spark engine when a "
                          "minimum aggregation threshold is set [custom-sql-capabilities]", node, tables)

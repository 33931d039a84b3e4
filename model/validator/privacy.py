"""The query structure differential privacy accepts.

Sources (AWS Clean Rooms User Guide):
- dp-sql-capabilities (Spark engine column): final SELECT "Supported
  aggregations: AVG, COUNT, COUNT DISTINCT, STDDEV, and SUM"; window functions
  and set operators "Not supported" in the final SELECT; "CTEs using
  differential privacy protected tables must result in data with user-level
  records"; window functions in CTEs need "the user identifier column in the
  window function's partition clause"; "You can have any subquery that
  references differential privacy relations in a FROM and JOIN clause only";
  "only JOIN functions that are equi-joins on user identifier columns are
  supported and are mandatory when querying two or more tables with
  differential privacy turned on"; "CROSS JOIN functions are not supported when
  combining two or more relations with differential privacy turned on"; in
  CTEs "EXISTS and IN can't be used", LIMIT/OFFSET are not supported and ORDER
  BY only in a window's partition clause; array functions and GROUPING
  SETS/ROLLUP/CUBE are not supported anywhere.
- custom-diff-privacy: "Common Table Expressions (CTEs) should emit the user
  identifier column if a table or CTE involve data protected by differential
  privacy. Filters, groupings, and aggregations should be done at the user level."
- differential-privacy, Considerations: "The member who can query can't join
  tables from two or more data providers when both have differential privacy
  turned on."
- dp-query-tips-examples: "aggregate functions in the final SELECT statement
  are run on user-level data", so the final SELECT must aggregate.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, ScopeType

from model.validator.analysis import Analysis, BaseColumn, aggregates_in, function_name, outside_subqueries, windows_in
from model.validator.finding import finding

RULE = "differential privacy"
_FINAL_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Stddev, exp.StddevSamp, exp.StddevPop)
_ANYWHERE = {exp.Cube: "GROUP BY CUBE", exp.Rollup: "GROUP BY ROLLUP", exp.GroupingSets: "GROUPING SETS"}


def check(analysis: Analysis):
    protected = {alias: t for alias, t in analysis.tables.items() if t.differential_privacy}
    if not protected:
        return
    first = protected[sorted(protected)[0]]
    owners = sorted({t.owner.name for t in protected.values()})
    if len(owners) > 1:
        yield finding(RULE, f"the query joins differentially private tables of {owners}; tables of two or more "
                      "data providers that both use differential privacy cannot be joined", None, first)
    user_ids = {BaseColumn(alias, t.user_identifier) for alias, t in protected.items()}
    yield from _final_select(analysis, first)
    for scope in analysis.scopes():
        if scope.is_root or not (analysis.base_tables(scope) & set(protected)):
            continue
        if scope.scope_type == ScopeType.SUBQUERY:
            yield finding(RULE, "a subquery that reads a differentially private table is allowed only in FROM "
                          "or JOIN, not in WHERE, HAVING or the SELECT list", scope.expression, first)
            continue
        yield from _user_level(analysis, scope, user_ids, first)
    for scope in analysis.scopes():
        yield from _joins(analysis, scope, set(protected), user_ids, first)
    for node in analysis.tree.walk():
        label = _ANYWHERE.get(type(node))
        if label is None and isinstance(node, exp.Func) and function_name(node).startswith("ARRAY"):
            label = f"array function {function_name(node)}"
        if label:
            yield finding(RULE, f"{label} is not supported in queries over differentially private tables",
                          node, first)


def _final_select(analysis: Analysis, table):
    if isinstance(analysis.root.expression, exp.SetOperation):
        yield finding(RULE, "set operators (UNION, INTERSECT, EXCEPT) are not supported in the final SELECT",
                      analysis.root.expression, table)
        return
    select = analysis.root.expression
    calls = [a for p in select.expressions for a in aggregates_in(p)]
    for call in calls:
        if not isinstance(call, _FINAL_AGGREGATES):
            yield finding(RULE, f"{function_name(call)} in the final SELECT: only COUNT, COUNT DISTINCT, SUM, AVG "
                          "and STDDEV are supported", call, table)
    for window in (w for p in select.expressions for w in windows_in(p)):
        yield finding(RULE, "window functions are not supported in the final SELECT", window, table)
    if not calls:
        yield finding(RULE, "the final SELECT must aggregate (COUNT, COUNT DISTINCT, SUM, AVG or STDDEV): "
                      "it would return user-level rows", select, table)
    elif not select.args.get("group"):
        plain = [p for p in select.expressions if not aggregates_in(p) and p.find(exp.Column)]
        if plain:
            yield finding(RULE, f"output '{plain[0].alias_or_name}' is neither aggregated nor grouped: "
                          "add it to GROUP BY or aggregate it", plain[0], table)


def _user_level(analysis: Analysis, scope: Scope, user_ids: set[BaseColumn], table):
    """A CTE or FROM subquery over protected data must keep one row per user."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return  # a set operation's branches are scopes of their own
    kind = "CTE" if scope.is_cte else "subquery"
    emitted = {c for p in select.expressions if not aggregates_in(p) for c in analysis.lineage(p, scope)}
    if not emitted & user_ids:
        yield finding(RULE, f"this {kind} reads a differentially private table but does not output the user "
                      f"identifier column ({', '.join(sorted(u.column for u in user_ids))}); CTEs must keep "
                      "user-level rows", select, table)
    group = select.args.get("group")
    if group is not None:
        grouped = {c for g in group.expressions for c in analysis.lineage(g, scope)}
        if not grouped & user_ids:
            yield finding(RULE, f"this {kind} groups without the user identifier column; groupings over "
                          "differentially private data must be at the user level", group, table)
    for window in windows_in(select):
        keys = {c for p in window.args.get("partition_by") or [] for c in analysis.lineage(p, scope)}
        if not keys & user_ids:
            yield finding(RULE, "window functions over differentially private data must PARTITION BY the user "
                          "identifier column", window, table)
    for clause, label in (("limit", "LIMIT"), ("offset", "OFFSET"), ("order", "ORDER BY")):
        if select.args.get(clause) is not None:
            yield finding(RULE, f"{label} is not supported in a {kind} that reads differentially private data",
                          select.args[clause], table)
    for node in outside_subqueries(select):
        if isinstance(node, (exp.Exists, exp.In)) and (isinstance(node, exp.Exists) or node.args.get("query")):
            yield finding(RULE, f"{'EXISTS' if isinstance(node, exp.Exists) else 'IN (subquery)'} cannot be used in "
                          "a CTE over differentially private data", node, table)


def _joins(analysis: Analysis, scope: Scope, protected: set[str], user_ids: set[BaseColumn], table):
    """Two protected relations in one FROM must be equi-joined on the user identifier."""
    select = scope.expression
    if not isinstance(select, exp.Select) or not select.args.get("joins"):
        return
    sources = scope.selected_sources
    from_source = select.args["from_"].this if select.args.get("from_") else None
    seen_protected = _is_protected(analysis, sources, from_source, protected)
    for join in select.args["joins"]:
        joined = _is_protected(analysis, sources, join.this, protected)
        if joined and seen_protected:
            on = join.args.get("on")
            if join.args.get("kind") == "CROSS" or on is None:
                yield finding(RULE, "CROSS JOIN (or a join without ON) of two differentially private relations "
                              "is not supported", join, table)
            elif not _equi_on_user_id(analysis, scope, on, user_ids):
                yield finding(RULE, f"joins between differentially private relations must be equi-joins on the "
                              f"user identifier column; '{on.sql(dialect='spark')}' is not", on, table)
        seen_protected = seen_protected or joined


def _is_protected(analysis: Analysis, sources, node, protected: set[str]) -> bool:
    if node is None:
        return False
    name = node.alias_or_name
    source = sources.get(name, (None, None))[1]
    if isinstance(source, exp.Table):
        return source.name in protected
    if isinstance(source, Scope):
        return bool(analysis.base_tables(source) & protected)
    return False


def _equi_on_user_id(analysis: Analysis, scope: Scope, on: exp.Expression, user_ids: set[BaseColumn]) -> bool:
    for eq in on.find_all(exp.EQ):
        left, right = analysis.lineage(eq.this, scope), analysis.lineage(eq.expression, scope)
        if left and right and left <= user_ids and right <= user_ids:
            return True
    return False

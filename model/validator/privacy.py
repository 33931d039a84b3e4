"""The query structure differential privacy accepts, and what voids its guarantee.

A query that reads at least one table under differential privacy (DP) must
follow AWS's "general-purpose query structure" everywhere, not only in the
final SELECT's list. Sources (AWS Clean Rooms User Guide; the page is named
in each message):

dp-sql-capabilities (the table, Spark engine; "CTEs" and "Final SELECT clause"
columns), row by row:
- Aggregate functions: in CTEs "supported with the condition that CTEs using
  differential privacy protected tables must result in data with user-level
  records ... `SELECT userIdentifierColumn...`"; final SELECT "Supported
  aggregations: AVG, COUNT, COUNT DISTINCT, STDDEV, and SUM" (the Spark list
  beside it names SUM DISTINCT and STDDEV_POP separately, so those are not
  among them; STDDEV_SAMP is STDDEV's synonym, "STDDEV_SAMP and STDDEV are
  synonyms"). Checked in the whole final SELECT: its list, HAVING, ORDER BY and
  window specifications (custom-diff-privacy: "HAVING COUNT | COUNT_DISTINCT |
  SUM | AVG | STDDEV | condition"; dp-query-tips-examples orders by
  COUNT(DISTINCT user_id)). Such an aggregate is released like an output: the
  local room evaluates it on its noised value and the budget counts it
  (model/budget.final_aggregates).
- Subqueries: "You can have any subquery that references differential privacy
  relations in a FROM and JOIN clause only."
- Join clauses: "only JOIN functions that are equi-joins on user identifier
  columns are supported and are mandatory when querying two or more tables with
  differential privacy turned on"; "CROSS JOIN functions are not supported when
  combining two or more relations with differential privacy turned on". The
  Spark list names "[JOIN] OR operator" as a construct; the condition allows
  none but equi-joins on the user identifier, so OR, non-equalities and
  equalities on other columns are refused in a join of two DP relations (they
  can go in WHERE). Lineage through CTEs and subqueries decides what a
  relation and a column are.
- Set operators: "Not supported" in the final SELECT (left as it is here).
- Window functions: in CTEs "the user identifier column in the window
  function's partition clause is required"; final SELECT "Not supported" (in
  any clause, QUALIFY included).
- Conditions: in CTEs "EXISTS and IN can't be used because they require
  subqueries".
- Array functions, Extended GROUP BY (GROUPING SETS, ROLLUP, CUBE): "Not
  supported" in both columns: anywhere in the query.
- Sort operation: in CTEs "an ORDER BY clause is only supported in a window
  function's partition clause"; Row limits: LIMIT, OFFSET "Not supported in
  CTEs using differential privacy protected tables".
- "Common alternatives for unsupported SQL constructs": LISTAGG,
  PERCENTILE_CONT, PERCENTILE_DISC as window functions; `$column ^ 2` (POWER);
  SYSDATE (CURRENT_DATE), `$column::integer` and convert(type, $column) (CAST);
  INTERVAL '1 SECOND' (INTERVAL '1' SECOND); USING and NATURAL joins ("ON clause
  should explicitly contain a join criterion"). TOP n and the `|/`, `||/`
  operators do not parse as Spark SQL, so the parser refuses them already.
custom-diff-privacy, "Query structure and syntax": "Common Table Expressions
  (CTEs) should emit the user identifier column if a table or CTE involve data
  protected by differential privacy. Filters, groupings, and aggregations
  should be done at the user level."
differential-privacy, Considerations: "The member who can query can't join
  tables from two or more data providers when both have differential privacy
  turned on." (The member who can receive results can't use differential
  privacy: a config check, model/config.py.)
dp-query-tips-examples: "aggregate functions in the final SELECT statement are
  run on user-level data", so the final SELECT must aggregate.

What voids the guarantee (warnings, not refusals). dp-limitations: "AWS Clean
Rooms Differential Privacy doesn't guarantee differential privacy when a SQL
query can result in overflow or invalid cast errors at run time", listing for
the Spark engine "AVG, SUM/SUM_DISTINCT; TO_TIMESTAMP, TO_DATE; ADD_MONTHS,
DATEADD, DATEDIFF; +, -, *, /, POWER; ||, CONCAT, REPEAT; window AVG, SUM" as
vulnerable to overflow and "The CAST data type formatting function is
vulnerable to invalid cast errors"; it recommends approving "analysis
templates that minimize the chances of such run-time errors". The
differential-privacy page says the service "protects against overflow or
invalid cast errors that make use of scalar functions or math operator symbols
in a malicious manner". Both pages have AWS run such templates (they are in
dp-sql-capabilities' supported lists), so refusing them would refuse what AWS
accepts: they are warned about, and charged like any run. Warned: those
constructs applied to row values (a column inside them), and CASTs that can
fail for some value of their input's type. Not warned: SUM and AVG of a plain
column (every DP query has them; only the producer's own values could make
them overflow, not anything the template adds), arithmetic over the released
aggregates of the final SELECT ("math functions on aggregate functions" act on
noised values), and TRY_CAST (it returns NULL instead of failing).
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, ScopeType
from sqlglot.tokens import TokenType

from model.validator.analysis import (DIALECT, Analysis, BaseColumn, function_name, outside_subqueries, parse,
                                      windows_in)
from model.validator.finding import Finding, finding

RULE = "differential privacy"
CAPABILITIES = "dp-sql-capabilities"
LIMITATIONS = "dp-limitations"

_FINAL = "COUNT, COUNT DISTINCT, SUM, AVG and STDDEV"
_FINAL_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Stddev, exp.StddevSamp)
_ANYWHERE = {exp.Cube: "GROUP BY CUBE", exp.Rollup: "GROUP BY ROLLUP", exp.GroupingSets: "GROUPING SETS"}
_CLAUSES = {"expressions": "the SELECT list", "having": "HAVING", "order": "ORDER BY", "qualify": "QUALIFY",
            "group": "GROUP BY", "where": "WHERE", "windows": "the WINDOW clause", "joins": "a JOIN"}
# "Common alternatives": window functions to write as aggregates with GROUP BY.
_WINDOW_ALTERNATIVES = {exp.GroupConcat: "LISTAGG", exp.PercentileCont: "PERCENTILE_CONT",
                        exp.PercentileDisc: "PERCENTILE_DISC"}

# dp-limitations, Spark column: vulnerable to overflow errors.
_OPERATORS = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/"}
_OVERFLOW_FUNCTIONS = {
    exp.Pow: "POWER", exp.DPipe: "||", exp.Concat: "CONCAT", exp.Repeat: "REPEAT", exp.AddMonths: "ADD_MONTHS",
    exp.DateAdd: "DATEADD", exp.TsOrDsAdd: "DATEADD", exp.TimestampAdd: "DATEADD", exp.DateDiff: "DATEDIFF",
    exp.TsOrDsDiff: "DATEDIFF", exp.TimestampDiff: "DATEDIFF", exp.StrToDate: "TO_DATE",
    exp.StrToTime: "TO_TIMESTAMP", exp.TsOrDsToDate: "TO_DATE",
}
_INTERVAL_IN_ONE_STRING = re.compile(r"^\s*[-+]?[\d.]+\s+[A-Za-z]")


def check(analysis: Analysis):
    protected = {alias: t for alias, t in analysis.tables.items() if t.differential_privacy}
    if not protected:
        return
    first = protected[sorted(protected)[0]]
    owners = sorted({t.owner.name for t in protected.values()})
    if len(owners) > 1:
        yield finding(RULE, f"the query joins differentially private tables of {owners}; tables of two or more "
                      "data providers that both use differential privacy cannot be joined: read the tables of "
                      "one of them only [differential-privacy, Considerations]", None, first)
    user_ids = {BaseColumn(alias, t.user_identifier) for alias, t in protected.items()}
    uid = "/".join(sorted({t.user_identifier for t in protected.values()}))
    context = _Context(analysis, protected, user_ids, uid, first)
    yield from _final_select(context)
    for scope in analysis.scopes():
        if scope.is_root:
            continue
        yield from _window_alternatives(context, scope)
        if not (analysis.base_tables(scope) & set(protected)):
            continue
        if scope.scope_type == ScopeType.SUBQUERY:
            yield finding(RULE, "a subquery that reads a differentially private table is allowed only in FROM "
                          "or JOIN, not in WHERE, HAVING or the SELECT list: join it as a CTE or a subquery in "
                          f"FROM that keeps the user identifier ({uid}) [{CAPABILITIES}]",
                          scope.expression, context.table_in(scope.expression, scope))
            continue
        if _branch_of_final(analysis, scope):
            continue  # the final SELECT's set operation is refused itself (_final_select): its branches are no CTEs
        yield from _user_level(context, scope)
        yield from _set_branches(context, scope)
    for scope in analysis.scopes():
        yield from _joins(context, scope)
    yield from _anywhere(context)
    yield from _tokens(context)
    yield from _runtime_errors(context)


def _set_branches(context: "_Context", scope: Scope):
    """A set operation over DP data (in a CTE or subquery) keeps the user identifier in one column of every
    branch that reads the DP table (NULL in a branch that does not): otherwise its rows are no longer a
    user's rows (custom-diff-privacy: CTEs "should emit the user identifier column"; dp-sql-capabilities:
    CTEs over DP tables "must result in data with user-level records")."""
    node = scope.expression
    if not isinstance(node, exp.SetOperation) or not scope.set_operation_scopes:
        return
    branches = _leaves(scope)
    analysis, protected = context.analysis, set(context.protected)
    reads = [bool(analysis.base_tables(inner) & protected) for _, inner in branches]
    width = min(len(select.expressions) for select, _ in branches)
    for position in range(width):
        fits = True
        for (select, inner), reading in zip(branches, reads):
            item = select.expressions[position]
            value = item.this if isinstance(item, exp.Alias) else item
            lineage = analysis.lineage(value, inner)
            fits &= (bool(lineage) and lineage <= context.user_ids) if reading else isinstance(value, exp.Null)
        if fits:
            return
    label = type(node).__name__.upper()
    yield finding(RULE, f"this {label} over differentially private data does not keep the user identifier "
                  f"({context.uid}) in one column of every branch: select it in the same position in each branch "
                  f"(NULL in a branch that does not read the table) [custom-diff-privacy]", node,
                  context.table_in(node, scope))


def _leaves(scope: Scope) -> list[tuple[exp.Select, Scope]]:
    if scope.set_operation_scopes:
        return [pair for child in scope.set_operation_scopes for pair in _leaves(child)]
    return [(scope.expression, scope)] if isinstance(scope.expression, exp.Select) else []


class _Context:
    """What every check of one query needs: the protected tables and their user identifier."""

    def __init__(self, analysis: Analysis, protected, user_ids: set[BaseColumn], uid: str, first):
        self.analysis, self.protected, self.user_ids, self.uid, self.first = analysis, protected, user_ids, uid, first

    def table_in(self, node: exp.Expression, scope: Scope | None):
        """The protected table ``node`` reads (through CTEs and subqueries), else the query's first one."""
        if scope is not None:
            for column in sorted(self.analysis.lineage(node, scope), key=lambda c: (c.table, c.column)):
                if column.table in self.protected:
                    return self.protected[column.table]
        for table in node.find_all(exp.Table):
            if table.name in self.protected:
                return self.protected[table.name]
        return self.first


# --------------------------------------------------------------------------
# The final SELECT


def _final_select(context: _Context):
    analysis = context.analysis
    if isinstance(analysis.root.expression, exp.SetOperation):
        yield finding(RULE, "set operators (UNION, INTERSECT, EXCEPT) are not supported in the final SELECT: "
                      f"put the set operation in a CTE of user-level rows and aggregate over it [{CAPABILITIES}]",
                      analysis.root.expression, context.first)
        return
    select = analysis.root.expression
    if not isinstance(select, exp.Select):
        return
    root = analysis.root
    for call in _released(select):
        problem = _final_aggregate_problem(call)
        if problem:
            name, instead = problem
            yield finding(RULE, f"{name} in {_clause(call, select)} of the final SELECT: only {_FINAL} are "
                          "supported there (an aggregate in HAVING or ORDER BY is released like an output); "
                          f"{instead} [{CAPABILITIES}, custom-diff-privacy]", call, context.table_in(call, root))
    for window in _windows(select):
        yield finding(RULE, f"window function '{_short(window)}' in {_clause(window, select)}: window functions "
                      "are not supported in the final SELECT; compute it in a CTE whose window partitions by "
                      f"{context.uid}, then aggregate that CTE [{CAPABILITIES}]", window,
                      context.table_in(window, root))
    calls = [a for p in select.expressions for a in _released(p)]
    if not calls:
        yield finding(RULE, f"the final SELECT must aggregate ({_FINAL.replace(' and ', ' or ')}): it would "
                      "return user-level rows; aggregate every output, e.g. COUNT(*) ... GROUP BY a dimension "
                      "[dp-query-tips-examples]", select, context.first)
    elif not select.args.get("group"):
        plain = [p for p in select.expressions if not _released(p) and p.find(exp.Column)]
        if plain:
            yield finding(RULE, f"output '{plain[0].alias_or_name}' is neither aggregated nor grouped: "
                          "add it to GROUP BY or aggregate it", plain[0], context.table_in(plain[0], root))


def _final_aggregate_problem(call: exp.AggFunc) -> tuple[str, str] | None:
    """(what, what would pass) for an aggregate the final SELECT does not support."""
    name = function_name(call)
    if isinstance(call, exp.StddevPop):
        return name, "use STDDEV (STDDEV_SAMP)"
    if not isinstance(call, _FINAL_AGGREGATES):
        return name, "use one of them, or compute it per user in a CTE that keeps the user identifier"
    if isinstance(call.this, exp.Distinct) and not isinstance(call, exp.Count):
        return f"{name}(DISTINCT ...)", \
            f"of the DISTINCT forms only COUNT(DISTINCT ...) is; use {name} without DISTINCT"
    return None


def _released(node: exp.Expression) -> list[exp.AggFunc]:
    """Aggregate calls of one scope's expression, a window's own function excluded."""
    return [n for n in outside_subqueries(node) if isinstance(n, exp.AggFunc) and not _windowed(n)]


def _windowed(node: exp.Expression) -> bool:
    parent = node.parent
    if isinstance(parent, exp.WithinGroup):
        parent = parent.parent
    return isinstance(parent, exp.Window)


def _windows(select: exp.Expression) -> list[exp.Window]:
    """Window function calls (not the named definitions of a WINDOW clause)."""
    return [w for w in windows_in(select) if w.arg_key != "windows"]


def _clause(node: exp.Expression, select: exp.Select) -> str:
    in_window = False
    while node.parent is not None and node.parent is not select:
        node = node.parent
        in_window = in_window or (isinstance(node, exp.Window) and node.parent is not select)
    where = _CLAUSES.get(node.arg_key, node.arg_key)
    return f"a window specification in {where}" if in_window else where


# --------------------------------------------------------------------------
# CTEs and subqueries over protected data


def _branch_of_final(analysis: Analysis, scope: Scope) -> bool:
    """Whether ``scope`` is a branch of the final SELECT's set operation (nested ones included)."""
    def branches(of: Scope):
        for child in of.set_operation_scopes:
            yield child
            yield from branches(child)
    return any(scope is b for b in branches(analysis.root))


def _user_level(context: _Context, scope: Scope):
    """A CTE or FROM subquery over protected data must keep one row per user."""
    analysis, user_ids, uid = context.analysis, context.user_ids, context.uid
    select = scope.expression
    if not isinstance(select, exp.Select):
        return  # a set operation's branches are scopes of their own
    table = context.table_in(select, scope)
    kind = "CTE" if scope.is_cte else "subquery"
    emitted = {c for p in select.expressions if not _released(p) for c in analysis.lineage(p, scope, window_keys=False)}
    if not emitted & user_ids:
        yield finding(RULE, f"this {kind} reads a differentially private table but does not output the user "
                      f"identifier column ({uid}); CTEs must keep user-level rows: select it first "
                      f"(SELECT {uid}, ...) [{CAPABILITIES}, custom-diff-privacy]", select, table)
    group = select.args.get("group")
    if group is not None:
        grouped = {c for g in group.expressions for c in analysis.lineage(g, scope)}
        if not grouped & user_ids:
            yield finding(RULE, f"this {kind} groups without the user identifier column; groupings over "
                          f"differentially private data must be at the user level: GROUP BY {uid}, ... "
                          "[custom-diff-privacy]", group, table)
    for window in _windows(select):
        keys = {c for p in _partition(window, select) for c in analysis.lineage(p, scope)}
        if not keys & user_ids:
            yield finding(RULE, "window functions over differentially private data must PARTITION BY the user "
                          f"identifier column: add {uid} to the PARTITION BY of '{_short(window)}' "
                          f"[{CAPABILITIES}]", window, table)
    for clause, label in (("limit", "LIMIT"), ("offset", "OFFSET"), ("order", "ORDER BY")):
        if select.args.get(clause) is not None:
            yield finding(RULE, f"{label} is not supported in a {kind} that reads differentially private data: "
                          "move it to the final SELECT (in a CTE, ORDER BY is allowed only inside a window's "
                          f"OVER clause) [{CAPABILITIES}]", select.args[clause], table)
    for node in outside_subqueries(select):
        if isinstance(node, (exp.Exists, exp.In)) and (isinstance(node, exp.Exists) or node.args.get("query")):
            yield finding(RULE, f"{'EXISTS' if isinstance(node, exp.Exists) else 'IN (subquery)'} cannot be used in "
                          "a CTE over differentially private data: join the subquery's relation instead "
                          f"[{CAPABILITIES}]", node, table)


def _partition(window: exp.Window, select: exp.Select) -> list[exp.Expression]:
    """A window's PARTITION BY, its named window's (WINDOW w AS (...)) when it has none of its own."""
    keys = list(window.args.get("partition_by") or [])
    name = window.args.get("alias")
    if not keys and name is not None:
        for spec in select.args.get("windows") or []:
            if spec.this is not None and spec.this.name == name.name:
                keys = list(spec.args.get("partition_by") or [])
    return keys


def _window_alternatives(context: _Context, scope: Scope):
    for window in _windows(scope.expression) if isinstance(scope.expression, exp.Select) else []:
        call = window.this.this if isinstance(window.this, exp.WithinGroup) else window.this
        name = _WINDOW_ALTERNATIVES.get(type(call))
        if name:
            yield finding(RULE, f"{name} is not supported as a window function in a query over differentially "
                          "private tables: use the equivalent aggregate with GROUP BY instead (in a CTE over "
                          f"protected data, GROUP BY {context.uid}, ...) [{CAPABILITIES}, Common alternatives]", window,
                          context.table_in(window, scope))


# --------------------------------------------------------------------------
# Joins between protected relations


def _joins(context: _Context, scope: Scope):
    """Two protected relations in one FROM must be equi-joined on the user identifier, and only on it."""
    select = scope.expression
    if not isinstance(select, exp.Select) or not select.args.get("joins"):
        return
    sources = scope.selected_sources
    from_source = select.args["from_"].this if select.args.get("from_") else None
    first = from_source.alias_or_name if _is_protected(context, sources, from_source) else None
    for join in select.args["joins"]:
        joined = _is_protected(context, sources, join.this)
        if joined and first is not None:
            yield from _join_condition(context, scope, join, first)
        elif joined:
            first = join.this.alias_or_name


def _join_condition(context: _Context, scope: Scope, join: exp.Join, left: str):
    uid = context.uid
    right = join.this.alias_or_name
    table = context.table_in(join.this, scope)
    wanted = f"ON {left}.{uid} = {right}.{uid}"
    on = join.args.get("on")
    if join.args.get("kind") == "CROSS" or on is None:
        yield finding(RULE, "CROSS JOIN (or a join without ON) of two differentially private relations is not "
                      f"supported: join them {wanted} [{CAPABILITIES}]", join, table)
        return
    text = _short(on)
    if isinstance(on, exp.Or) or on.find(exp.Or):
        yield finding(RULE, f"the join condition '{text}' uses OR; joins between differentially private relations "
                      f"must be equi-joins on the user identifier column only: join {wanted} and put other "
                      f"conditions in WHERE [{CAPABILITIES}]", on, table)
        return
    parts = _conjuncts(on)
    keyed = [p for p in parts if _user_id_equality(context, scope, p, right)]
    if not keyed:
        yield finding(RULE, "joins between differentially private relations must be equi-joins on the user "
                      f"identifier column; '{text}' is not: join {wanted} [{CAPABILITIES}]", on, table)
        return
    for part in parts:
        if any(part is k for k in keyed):
            continue
        what = ("an equality on other columns" if isinstance(part, exp.EQ) else "not an equality")
        yield finding(RULE, f"'{_short(part)}' in the join condition is {what}; joins between differentially "
                      f"private relations support only equi-joins on the user identifier column ({uid}): keep "
                      f"{_short(keyed[0])} and move '{_short(part)}' to WHERE [{CAPABILITIES}]", part, table)


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _user_id_equality(context: _Context, scope: Scope, part: exp.Expression, right: str) -> bool:
    """``a.uid = b.uid``: both sides computed from user identifiers only, of two relations, one the joined one."""
    if not isinstance(part, exp.EQ):
        return False
    sides = (part.this, part.expression)
    lineages = [context.analysis.lineage(side, scope) for side in sides]
    if not all(lineage and lineage <= context.user_ids for lineage in lineages):
        return False
    left_names, right_names = ({c.table for c in side.find_all(exp.Column)} for side in sides)
    return bool(left_names) and bool(right_names) and not (left_names & right_names) and \
        right in (left_names | right_names)


def _is_protected(context: _Context, sources, node) -> bool:
    if node is None:
        return False
    name = node.alias_or_name
    source = sources.get(name, (None, None))[1]
    if isinstance(source, exp.Table):
        return source.name in context.protected
    if isinstance(source, Scope):
        return bool(context.analysis.base_tables(source) & set(context.protected))
    return False


# --------------------------------------------------------------------------
# Constructs not supported anywhere in a query over protected tables


def _anywhere(context: _Context):
    analysis = context.analysis
    for node in analysis.tree.walk():
        label, instead = _ANYWHERE.get(type(node)), "group by the columns themselves"
        if label is None and isinstance(node, exp.Func) and function_name(node).startswith("ARRAY"):
            label, instead = f"array function {function_name(node)}", "compute it outside the clean room"
        elif isinstance(node, exp.BitwiseXor):
            label, instead = f"the ^ operator ('{_short(node)}')", "for a power use POWER(x, 2)"
        elif isinstance(node, exp.Anonymous) and function_name(node) == "SYSDATE":
            label, instead = "SYSDATE", "use CURRENT_DATE"
        if label:
            yield finding(RULE, f"{label} is not supported in queries over differentially private tables: "
                          f"{instead} [{CAPABILITIES}]", node, context.table_in(node, None))
    # qualify() rewrites USING and NATURAL into ON: read them from the template as written.
    for join in parse(analysis.template).find_all(exp.Join):
        how = "USING" if join.args.get("using") else ("NATURAL" if join.args.get("method") == "NATURAL" else None)
        if how:
            yield finding(RULE, f"{how} joins are not supported in queries over differentially private tables: "
                          f"write the join criterion in ON (e.g. ON a.{context.uid} = b.{context.uid}) "
                          f"[{CAPABILITIES}, Common alternatives]", join, context.table_in(join, None))


def _tokens(context: _Context):
    """What the parse no longer shows: `x::type`, CONVERT(...), INTERVAL 'n UNIT'."""
    from sqlglot.dialects.dialect import Dialect

    tokens = Dialect.get_or_raise(DIALECT).tokenize(context.analysis.template.sql)
    table = context.first
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        message = None
        if token.token_type == TokenType.DCOLON:
            message = "the :: cast operator is not supported in queries over differentially private tables: " \
                      "write CAST(x AS type)"
        elif token.text.upper() == "CONVERT" and following is not None and following.token_type == TokenType.L_PAREN:
            message = "CONVERT(...) is not supported in queries over differentially private tables: write " \
                      "CAST(x AS type)"
        elif token.token_type == TokenType.INTERVAL and following is not None and \
                following.token_type == TokenType.STRING and _INTERVAL_IN_ONE_STRING.match(following.text):
            amount, unit = following.text.split(maxsplit=1)
            message = f"INTERVAL '{following.text}' is not supported in queries over differentially private " \
                      f"tables: write INTERVAL '{amount}' {unit.upper()}"
        if message:
            yield Finding(RULE, f"{message} [{CAPABILITIES}, Common alternatives]", line=token.line,
                          table=table.alias, owner=table.owner.name)


# --------------------------------------------------------------------------
# dp-limitations: what AWS runs, but without the guarantee (warnings)


def _runtime_errors(context: _Context):
    analysis = context.analysis
    seen: set[tuple[int | None, str]] = set()
    for scope in analysis.scopes():
        for node in outside_subqueries(scope.expression):
            message = _runtime_error(context, scope, node)
            if message is None:
                continue
            found = finding(RULE, f"{message}; AWS runs the template and charges the privacy budget like any run, "
                            "but does not guarantee differential privacy for a query that can fail at run time "
                            f"(an error that depends on one user's rows tells about that user) [{LIMITATIONS}]",
                            node, context.table_in(node, scope), warning=True)
            if (found.line, found.message) not in seen:
                seen.add((found.line, found.message))
                yield found


def _runtime_error(context: _Context, scope: Scope, node: exp.Expression) -> str | None:
    if isinstance(node, exp.Cast):
        if node.args.get("safe") or not _reads_rows(node.this, scope):
            return None
        source = _base_type(context.analysis, node.this, scope)
        target = node.args["to"]
        if not _cast_can_fail(source, target):
            return None
        what = f"{source} values" if source else "its input"
        return (f"'{_short(node)}' converts {what} to {target.sql(dialect=DIALECT)}, which fails with an invalid "
                "cast error for values that do not convert; cast only to a type every value converts to (STRING, "
                "or a wider numeric type)")
    kind = _OPERATORS.get(type(node)) or _OVERFLOW_FUNCTIONS.get(type(node))
    if kind is None or not _reads_rows(node, scope):
        return None
    if isinstance(node, exp.TsOrDsToDate) and not (node.args.get("safe") or node.args.get("format")):
        return None  # the parser's own wrapper of DATEDIFF's arguments, not a TO_DATE of the template
    if type(node) in _OPERATORS:
        if type(_parent(node)) in _OPERATORS:
            return None  # one warning for a whole arithmetic expression
        if scope.is_root and _on_released_only(node):
            return None  # arithmetic on the final SELECT's (noised) aggregates
        operators = sorted({_OPERATORS[type(n)] for n in node.walk() if type(n) in _OPERATORS})
        return (f"'{_short(node)}' computes {' '.join(operators)} from row values, which can overflow at run time; "
                "compute it from the final SELECT's aggregates instead (e.g. SUM(x) * 2), or have the table "
                "owner review it")
    return (f"'{_short(node)}' ({kind}) can overflow at run time for some row values; leave it out of values "
            "computed from protected rows, or have the table owner review it")


def _reads_rows(node: exp.Expression, scope: Scope) -> bool:
    return any(isinstance(n, exp.Column) and n.table in scope.sources for n in outside_subqueries(node))


def _parent(node: exp.Expression) -> exp.Expression | None:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return parent


def _on_released_only(node: exp.Expression) -> bool:
    """Every column of ``node`` is inside an aggregate that ``node`` applies arithmetic to."""
    for column in (n for n in outside_subqueries(node) if isinstance(n, exp.Column)):
        inner = column.parent
        while inner is not None and inner is not node and not isinstance(inner, exp.AggFunc):
            inner = inner.parent
        if not isinstance(inner, exp.AggFunc) or _windowed(inner):
            return False
    return True


def _base_type(analysis: Analysis, node: exp.Expression, scope: Scope) -> str | None:
    """The Glue type of a column read as it is (through CTE and subquery projections), else None."""
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Column):
        return None
    source = scope.sources.get(node.table)
    if isinstance(source, exp.Table):
        table = analysis.tables.get(source.name)
        column = table.dataset.column(node.name) if table else None
        return column.glue_type if column else None
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select):
        for projection in source.expression.expressions:
            if projection.alias_or_name == node.name:
                inner = projection.this if isinstance(projection, exp.Alias) else projection
                return _base_type(analysis, inner, source)
    return None


_T = exp.DataType.Type
_INTEGERS = {_T.TINYINT: 3, _T.SMALLINT: 5, _T.INT: 10, _T.BIGINT: 19}  # decimal digits each can hold
_STRINGS = {_T.TEXT, _T.VARCHAR, _T.CHAR, _T.NVARCHAR, _T.NCHAR}


def _cast_can_fail(source: str | None, target: exp.DataType) -> bool:
    """Whether some value of type ``source`` (None: unknown) fails to convert to ``target``."""
    to = target.this
    if to in _STRINGS and not target.expressions:
        return False  # every value has a text form
    if source is None:
        return True
    kind = exp.DataType.build(source, dialect=DIALECT)
    if kind.this == to and kind.sql() == target.sql():
        return False
    if kind.this in _INTEGERS:
        if to in _INTEGERS:
            return _INTEGERS[kind.this] > _INTEGERS[to]
        if to in (_T.DOUBLE, _T.FLOAT):
            return False
        if to == _T.DECIMAL:
            return _INTEGERS[kind.this] > _decimal_digits(target)
        return to != _T.BOOLEAN
    if kind.this == _T.DECIMAL:
        if to in (_T.DOUBLE, _T.FLOAT):
            return False
        if to in _INTEGERS:  # the fraction is dropped; the integer part must fit
            return _decimal_digits(kind) >= _INTEGERS[to]
        return not (to == _T.DECIMAL and _decimal_digits(target) >= _decimal_digits(kind))
    if kind.this in (_T.DOUBLE, _T.FLOAT):
        return to != _T.DOUBLE
    if kind.this in (_T.DATE, _T.TIMESTAMP, _T.TIMESTAMPNTZ):
        return to not in (_T.DATE, _T.TIMESTAMP, _T.TIMESTAMPNTZ)
    if kind.this == _T.BOOLEAN:
        return to not in (_T.BOOLEAN, *_INTEGERS, _T.DOUBLE, _T.FLOAT)
    return True  # text to anything but text, and everything else


def _decimal_digits(kind: exp.DataType) -> int:
    """Digits before the point a DECIMAL(p, s) holds (Spark's default DECIMAL is (10, 0))."""
    params = [int(p.this.name) for p in kind.expressions] if kind.expressions else [10, 0]
    precision, scale = (params + [0])[:2]
    return precision - scale


def _short(node: exp.Expression, limit: int = 100) -> str:
    text = node.sql(dialect=DIALECT)
    return text if len(text) <= limit else text[:limit - 3] + "..."

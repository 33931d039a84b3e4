"""Running a validated template on DuckDB (or Spark) under the collaboration's rules.

The engine is a backend object (``DuckDB`` below by default; ``Spark`` in
localroom/spark.py): the plan writes its SQL in the backend's dialect.

A template that reads no protected table runs as written (transpiled from
Spark SQL to the engine's dialect by sqlglot, parameters bound as typed values). Otherwise
the final SELECT is split in two:

1. the aggregation, with every aggregate replaced by the parts the rules need:
   the exact value for thresholds; for differential privacy the counts and sums
   that noise is added to (AVG = SUM / COUNT, STDDEV from sums of squares) and
   the largest absolute value each sum adds (its sensitivity); and, per table
   under a minimum aggregation threshold, COUNT(DISTINCT identity column);
2. the original projections, HAVING, ORDER BY and LIMIT, evaluated over those
   parts after rows below a threshold are dropped and noise is added.

Sources for what is enforced: localroom/privacy.py (noise), and for thresholds
the User Guide's custom-min-agg-thresholds ("Minimum aggregation thresholds
ensure that each row in a SQL query result has at least N distinct data
subjects contributing to it"; rows that don't are suppressed) and
custom-considerations ("The minimum aggregation threshold is not enforced on
COUNT, COUNT(DISTINCT), or APPROX_COUNT_DISTINCT functions over a single table
with no grouping or join").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from localroom.privacy import Calibration
from model.budget import dp_type, final_aggregates
from model.collaboration import Collaboration
from model.datasets import Dataset, load_into
from model.validator.analysis import Analysis, BaseColumn, aggregates_in, build


class LocalLimitation(Exception):
    """A valid template whose protection the local clean room cannot reproduce (exit 1, nothing kept)."""


class RunFailed(Exception):
    """The engine failed while running the template (exit 1), e.g. an invalid cast in the data."""


@dataclass
class Noise:
    column: str
    aggregate: str
    sigma: float
    sensitivity: float


@dataclass
class Enforcement:
    suppressed_rows: int = 0
    thresholds: dict[str, int] = field(default_factory=dict)
    threshold_exempt: bool = False
    noise: list[Noise] = field(default_factory=list)
    user_contribution_limit: int | None = None
    usage: Counter = field(default_factory=Counter)
    seeded: bool = False


@dataclass
class LocalResult:
    table: pa.Table
    enforcement: Enforcement


class DuckDB:
    """The default backend: one in-memory DuckDB database, each table loaded once per process.

    A backend is what the Plan needs from an engine: ``load`` the datasets as
    tables named by their association names, run SQL of ``dialect`` with typed
    parameters into a pyarrow table (``sql``) or one value (``scalar``),
    ``materialize``/``drop`` an intermediate table, ``register``/``unregister``
    a pyarrow table, and ``rows_per_key``. ``errors`` are its failures while a
    template runs, ``message`` makes one line of them. localroom/spark.py is
    the other backend.
    """

    dialect = "duckdb"
    errors = (duckdb.Error,)

    def __init__(self):
        self.con = duckdb.connect()

    def load(self, tables: dict[str, Dataset]) -> dict[str, int]:
        """Read each dataset into a table named by its alias; the row counts (ConfigError names file and line)."""
        return {alias: load_into(self.con, dataset, alias) for alias, dataset in tables.items()}

    def rows_per_key(self, table: str, column: str) -> int:
        """The most rows any one value of ``table.column`` has."""
        quoted = '"' + column.replace('"', '""') + '"'
        # Grouped by a 64-bit hash of the key, which is faster on long keys; a collision can
        # only make the count larger, so this stays an upper bound (1 still proves uniqueness).
        return self.exec(f'SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM "{table}" '
                         f"WHERE {quoted} IS NOT NULL GROUP BY hash({quoted}))")[0][0]

    def sql(self, sql: str, params: dict[str, Any]) -> pa.Table:
        return self._relation(sql, params).to_arrow_table()

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        return self._relation(sql, params).fetchall()[0][0]

    def exec(self, sql: str, params: dict[str, Any] | None = None) -> list:
        return self.con.execute(sql, used_params(sql, self.dialect, params) or None).fetchall()

    def materialize(self, name: str, sql: str, params: dict[str, Any]) -> None:
        self.exec(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params)

    def drop(self, name: str) -> None:
        self.exec(f"DROP TABLE IF EXISTS {name}")

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def message(self, exc: Exception) -> str:
        return _first_line(exc)

    def _relation(self, sql: str, params: dict[str, Any]):
        return self.con.sql(sql, params=used_params(sql, self.dialect, params) or None)


class LocalCleanRoom:
    """The collaboration's tables in one engine (DuckDB unless another backend is given), each loaded once."""

    def __init__(self, collab: Collaboration, backend=None):
        self.collab = collab
        self.db = backend if backend is not None else DuckDB()
        self.loaded: dict[str, int] = {}
        self._rows_per_key: dict[tuple[str, str], int] = {}

    @property
    def dialect(self) -> str:
        """The SQL dialect sqlglot writes for the engine."""
        return self.db.dialect

    def rows_per_key(self, table: str, column: str) -> int:
        """The most rows any one value of ``table.column`` has (cached: the room loads each table once)."""
        if (table, column) not in self._rows_per_key:
            self._rows_per_key[(table, column)] = self.db.rows_per_key(table, column)
        return self._rows_per_key[(table, column)]

    def load(self, aliases) -> None:
        todo = {alias: self.collab.tables[alias].dataset for alias in sorted(aliases) if alias not in self.loaded}
        if todo:
            self.loaded.update(self.db.load(todo))

    def run(self, analysis: Analysis, params: dict[str, Any], noise, calibration: Calibration | None) -> LocalResult:
        self.load(analysis.tables)
        plan = Plan(analysis, self.dialect)
        try:
            if plan.direct:
                return LocalResult(self.db.sql(plan.direct_sql, params), Enforcement())
            return plan.execute(self, params, noise, calibration)
        except self.db.errors as exc:
            raise RunFailed(self.db.message(exc)) from None


def used_params(sql: str, dialect: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The values of ``params`` that ``sql`` has a marker for (both engines refuse a value without one)."""
    if not params:
        return {}
    used = {p.name for p in sqlglot.parse_one(sql, read=dialect).find_all(exp.Placeholder)}
    return {k: v for k, v in params.items() if k in used}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------
# The two-phase plan


_COUNTING = (exp.Count, exp.ApproxDistinct)


@dataclass
class _Aggregate:
    index: int
    node: exp.AggFunc
    kind: str  # COUNT, COUNT_DISTINCT, SUM, AVG, STDDEV, or RAW (no noise)
    argument: exp.Expression | None
    distinct: bool


class Plan:
    def __init__(self, analysis: Analysis, dialect: str):
        self.dialect = dialect
        tree = analysis.tree.copy()
        self.analysis = build(analysis.template, analysis.collab, tree)
        self.root = self.analysis.root
        read = self.analysis.base_tables(self.root)
        tables = self.analysis.tables
        self.thresholded = {a: tables[a] for a in sorted(read) if tables[a].threshold}
        self.protected = {a: tables[a] for a in sorted(read) if tables[a].differential_privacy}
        self.direct = not self.thresholded and not self.protected
        self.direct_sql = tree.sql(dialect=dialect) if self.direct else ""

    # -- building -----------------------------------------------------------
    def _select(self) -> exp.Select:
        select = self.root.expression
        if not isinstance(select, exp.Select):
            raise LocalLimitation("the local clean room cannot yet enforce thresholds or differential privacy on "
                                  "a set operation (UNION, ...) in the final SELECT; move it into a CTE")
        return select

    def execute(self, room: LocalCleanRoom, params, noise, calibration) -> LocalResult:
        select = self._select()
        enforcement = Enforcement(seeded=bool(getattr(noise, "seeded", False)))
        calls = final_aggregates(select)
        grouped = select.args.get("group") is not None
        if not calls and not grouped:
            if select.args.get("distinct"):
                select.set("group", exp.Group(expressions=[_unaliased(p).copy() for p in select.expressions]))
                select.set("distinct", None)
                grouped = True
            else:
                return self._row_level(room, select, params, enforcement)
        thresholds = dict(self.thresholded)
        if thresholds and _exempt(select, calls):
            enforcement.threshold_exempt = True
            thresholds = {}
        identities = {alias: self._identity(self.root, alias, t.threshold[0]) for alias, t in thresholds.items()}
        enforcement.thresholds = {alias: t.threshold[1] for alias, t in thresholds.items()}
        dp = bool(self.protected)
        user = None
        if dp:
            alias, table = next(iter(self.protected.items()))
            user = self._identity(self.root, alias, table.user_identifier)
        keyed = [*identities.values(), *([user] if user else [])]
        if keyed and all(self._rows_per_identity(room, select, e) == 1 for e in keyed):
            # Every identity (and user) is in at most one input row: COUNT(DISTINCT id) is COUNT(id)
            # and each user contributes one row, without counting per identity.
            return self._aggregate(room, select, params, noise, calibration, enforcement, grouped, identities,
                                   user, unique=True)
        try:
            renamed = _materialize(room, select, keyed, params)
            if renamed is not None:
                identities = dict(zip(identities, renamed))
                user = renamed[-1] if user is not None else None
            return self._aggregate(room, select, params, noise, calibration, enforcement, grouped, identities, user)
        finally:
            room.db.drop("__input")

    def _rows_per_identity(self, room: LocalCleanRoom, select: exp.Select, identity: exp.Expression) -> int | None:
        """An upper bound on the input rows one value of ``identity`` has, from the tables' key counts.

        Holds when the final SELECT reads base tables joined by column equalities
        that connect them all: each row of the identity's table meets at most
        the most rows any key of each other table's join column has. None when
        the shape is anything else (the exact count is taken instead).
        """
        sources = {alias: source for alias, (_, source) in self.root.selected_sources.items()}
        if not isinstance(identity, exp.Column) or identity.table not in sources or \
                not all(isinstance(s, exp.Table) for s in sources.values()):
            return None
        edges: list[tuple[tuple[str, str], tuple[str, str]]] = []
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is None or join.args.get("using"):
                return None
            for term in _conjuncts(on):
                if isinstance(term, exp.EQ) and isinstance(term.this, exp.Column) and \
                        isinstance(term.expression, exp.Column) and term.this.table != term.expression.table:
                    edges.append(((term.this.table, term.this.name), (term.expression.table, term.expression.name)))
        reached, frontier = {identity.table}, [identity.table]
        while frontier:
            here = frontier.pop()
            for a, b in edges:
                for (x, _), (y, _) in ((a, b), (b, a)):
                    if x == here and y not in reached:
                        reached.add(y)
                        frontier.append(y)
        if reached != set(sources):
            return None
        bound = room.rows_per_key(sources[identity.table].name, identity.name)
        for alias in set(sources) - {identity.table}:
            columns = {c for edge in edges for (a, c) in edge if a == alias}
            bound *= max(room.rows_per_key(sources[alias].name, c) for c in columns)
        return bound

    def _aggregate(self, room, select, params, noise, calibration, enforcement, grouped, identities, user,
                   unique: bool = False):
        calls = final_aggregates(select)
        aggregates = _classify(calls, user is not None)
        outputs = {a.index: _output_of(select, a.node) for a in aggregates}

        phase1 = _with_clauses(exp.Select(), select, ("with_", "from_", "joins", "where", "group"))
        groups = list(select.args["group"].expressions) if grouped else []
        projections = [exp.alias_(g.copy(), f"__g{i}") for i, g in enumerate(groups)]
        for agg in aggregates:
            projections += _components(agg)
        for k, (alias, identity) in enumerate(identities.items()):
            counted = identity.copy() if unique else exp.Distinct(expressions=[identity.copy()])
            projections.append(exp.alias_(exp.Count(this=counted), f"__t{k}"))
        phase1.set("expressions", projections)
        parts = room.db.sql(phase1.sql(dialect=self.dialect), params)
        if groups:  # DuckDB groups in parallel: a fixed order makes seeded noise land on the same rows
            parts = parts.sort_by([(f"__g{i}", "ascending") for i in range(len(groups))])

        keep = np.ones(parts.num_rows, dtype=bool)
        for k, alias in enumerate(identities):
            keep &= np.asarray(parts.column(f"__t{k}").to_numpy(zero_copy_only=False)) >= enforcement.thresholds[alias]
        enforcement.suppressed_rows = int((~keep).sum())
        parts = parts.filter(pa.array(keep))
        if user is not None:
            parts = self._add_noise(room, select, params, parts, aggregates, noise, calibration, enforcement,
                                    outputs, user, 1 if unique else None)

        phase2 = exp.Select()
        by_sql = {a.node.sql(): _value(a) for a in aggregates}
        group_names = [(g, f"__g{i}") for i, g in enumerate(groups)]

        def rewrite(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window) and node.sql() in by_sql:
                return by_sql[node.sql()].copy()
            for g, name in group_names:
                if node == g:
                    return exp.column(name)
            return node

        phase2.set("expressions", [p.transform(rewrite, copy=False) for p in select.expressions])
        phase2.set("from_", exp.From(this=exp.to_table("__parts")))
        if select.args.get("having") is not None:
            phase2.set("where", exp.Where(this=select.args["having"].this.transform(rewrite, copy=False)))
        for key in ("order", "limit", "offset", "distinct"):
            if select.args.get(key) is not None:
                value = select.args[key]
                phase2.set(key, value.transform(rewrite, copy=False) if isinstance(value, exp.Expression) else value)
        room.db.register("__parts", parts)
        try:
            table = room.db.sql(phase2.sql(dialect=self.dialect), params)
        finally:
            room.db.unregister("__parts")
        return LocalResult(table, enforcement)

    def _row_level(self, room, select, params, enforcement) -> LocalResult:
        """No aggregation: every output row comes from one input row, one identity."""
        if self.protected:
            raise LocalLimitation("a query over a differentially private table must aggregate")  # validator refuses
        enforcement.thresholds = {a: t.threshold[1] for a, t in self.thresholded.items()}
        sql = select.sql(dialect=self.dialect)
        enforcement.suppressed_rows = room.db.scalar(f"SELECT count(*) FROM ({sql}) AS __rows", params)
        return LocalResult(room.db.sql(f"SELECT * FROM ({sql}) AS __rows LIMIT 0", params), enforcement)

    # -- identities -----------------------------------------------------------
    def _identity(self, scope: Scope, table: str, column: str) -> exp.Expression:
        """An expression of ``scope`` that yields ``table.column`` for each input row."""
        for alias, (_, source) in scope.selected_sources.items():
            if isinstance(source, exp.Table) and source.name == table:
                return exp.column(column, table=alias)
        for alias, (_, source) in scope.selected_sources.items():
            if isinstance(source, Scope) and table in self.analysis.base_tables(source):
                return exp.column(self._projected(source, table, column), table=alias)
        raise LocalLimitation(f"cannot trace the identities of '{table}' to the final SELECT")

    def _projected(self, scope: Scope, table: str, column: str) -> str:
        """Name of a projection of ``scope`` carrying ``table.column``, added when needed."""
        select = scope.expression
        if not isinstance(select, exp.Select):
            raise LocalLimitation(f"cannot trace the identities of '{table}' through a set operation")
        wanted = {BaseColumn(table, column)}
        for projection in select.expressions:
            if isinstance(_unaliased(projection), exp.Column) and \
                    self.analysis.lineage(projection, scope) == wanted:
                return projection.alias_or_name
        if select.args.get("group") is not None or any(aggregates_in(p) for p in select.expressions):
            raise LocalLimitation(f"a CTE or subquery aggregates '{table}' without keeping its identity column "
                                  f"'{column}': the local clean room cannot count the identities behind each "
                                  "output row; select the column there or aggregate in the final SELECT")
        name = f"__cr_{table}_{column}"
        select.append("expressions", exp.alias_(self._identity(scope, table, column), name))
        return name

    # -- differential privacy ---------------------------------------------------
    def _contribution_limit(self, room, select, params, user: exp.Expression) -> int:
        """The most rows one user contributes to the query's input (the UCL, configure-differential-privacy)."""
        contributions = _with_clauses(exp.Select(expressions=[exp.alias_(user.copy(), "u"),
                                                              exp.alias_(exp.Count(this=exp.Star()), "c")]),
                                      select, ("with_", "from_", "joins", "where"))
        contributions.set("group", exp.Group(expressions=[user.copy()]))
        sql = contributions.sql(dialect=self.dialect)
        return room.db.scalar(f"SELECT max(c) FROM ({sql}) AS __contributions", params) or 1

    def _add_noise(self, room, select, params, parts: pa.Table, aggregates, noise, calibration: Calibration,
                   enforcement: Enforcement, outputs: dict[int, str], user: exp.Expression,
                   ucl: int | None) -> pa.Table:
        if ucl is None:
            ucl = self._contribution_limit(room, select, params, user)
        enforcement.user_contribution_limit = int(ucl)
        for agg in aggregates:
            enforcement.usage[agg.kind] += 1
            bound = 0.0
            if agg.kind in ("SUM", "AVG", "STDDEV"):
                column = parts.column(f"__m{agg.index}").to_numpy(zero_copy_only=False)
                bound = float(np.nanmax(column)) if len(column) and not np.all(np.isnan(column)) else 0.0
            for name, integer, sensitivity in _noisy_parts(agg, ucl, bound):
                values = parts.column(name).to_numpy(zero_copy_only=False)
                values = np.nan_to_num(values.astype(float)) if not integer else values.astype(np.int64)
                if integer:
                    scale = calibration.int_scale * sensitivity
                    noisy = np.maximum(noise.integers(values, scale), 0)  # post-processing: counts are never negative
                else:
                    scale = calibration.real_scale * sensitivity
                    noisy = noise.reals(values, scale)
                parts = parts.set_column(parts.schema.get_field_index(name), name, pa.array(noisy))
                enforcement.noise.append(Noise(column=outputs[agg.index], aggregate=_part_label(agg.kind, name),
                                               sigma=scale, sensitivity=sensitivity))
        return parts


def _materialize(room: LocalCleanRoom, select: exp.Select, extra: list[exp.Expression],
                 params) -> list[exp.Expression] | None:
    """Join and filter once into a temp table of the columns the final SELECT needs.

    The aggregation and the user-contribution count then both read __input
    instead of joining twice. ``select`` is rewritten to read it; the
    rewritten ``extra`` expressions are returned. None (nothing changed) when
    the final SELECT holds a subquery, which may refer to the joined rows.
    """
    keys = ("expressions", "group", "having", "order")
    parts = [p for key in keys for p in (select.args.get(key) if key == "expressions" else [select.args.get(key)])
             if p is not None]
    if any(isinstance(n, (exp.Select, exp.Subquery)) for p in parts for n in p.walk()):
        return None
    columns: dict[tuple[str, str], str] = {}
    for node in (*parts, *extra):
        for column in node.find_all(exp.Column):
            if column.table:
                columns.setdefault((column.table, column.name), f"__{column.table}__{column.name}")
    if not columns:
        return None
    source = exp.Select(expressions=[exp.alias_(exp.column(name, table=table), alias)
                                     for (table, name), alias in columns.items()])
    for key in ("with_", "from_", "joins", "where"):
        if select.args.get(key) is not None:
            source.set(key, select.args[key])
            select.set(key, None)
    room.db.materialize("__input", source.sql(dialect=room.dialect), params)
    select.set("from_", exp.From(this=exp.to_table("__input")))

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and (node.table, node.name) in columns:
            return exp.column(columns[(node.table, node.name)])
        return node

    select.set("expressions", [p.transform(rename, copy=False) for p in select.expressions])
    for key in ("group", "having", "order"):
        if select.args.get(key) is not None:
            select.set(key, select.args[key].transform(rename, copy=False))
    return [e.transform(rename) for e in extra]


def _with_clauses(target: exp.Select, select: exp.Select, keys: tuple[str, ...]) -> exp.Select:
    """``target`` with copies of ``select``'s clauses ``keys`` (those it has)."""
    for key in keys:
        value = select.args.get(key)
        if value is not None:
            target.set(key, [v.copy() for v in value] if isinstance(value, list) else value.copy())
    return target


def _conjuncts(node: exp.Expression):
    """The AND-ed terms of a condition."""
    if isinstance(node, exp.Paren):
        yield from _conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def _unaliased(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _exempt(select: exp.Select, calls) -> bool:
    """custom-considerations: counts over a single table with no grouping or join are not thresholded."""
    source = select.args.get("from_")
    single = source is not None and isinstance(source.this, exp.Table) and not select.args.get("joins")
    return single and select.args.get("group") is None and bool(calls) and all(isinstance(c, _COUNTING) for c in calls)


def _classify(calls, dp: bool) -> list[_Aggregate]:
    aggregates = []
    for index, node in enumerate(calls):
        this = node.this
        distinct = isinstance(this, exp.Distinct)
        argument = this.expressions[0] if distinct else (None if isinstance(this, exp.Star) else this)
        kind = (dp_type(node) or "RAW") if dp else "RAW"
        aggregates.append(_Aggregate(index, node, kind, argument, distinct))
    return aggregates


def _agg(cls, argument: exp.Expression | None, distinct: bool) -> exp.Expression:
    if argument is None:
        return cls(this=exp.Star())
    inner = argument.copy()
    return cls(this=exp.Distinct(expressions=[inner]) if distinct else inner)


def _components(agg: _Aggregate) -> list[exp.Expression]:
    i, x, d = agg.index, agg.argument, agg.distinct
    if agg.kind in ("RAW", "COUNT", "COUNT_DISTINCT"):
        return [exp.alias_(agg.node.copy(), f"__a{i}")]
    bound = exp.alias_(exp.Max(this=exp.Abs(this=exp.cast(x.copy(), "DOUBLE"))), f"__m{i}")
    total = exp.alias_(_agg(exp.Sum, exp.cast(x.copy(), "DOUBLE"), d), f"__a{i}_s")
    count = exp.alias_(_agg(exp.Count, x, d), f"__a{i}_c")
    if agg.kind == "SUM":
        return [exp.alias_(_agg(exp.Sum, exp.cast(x.copy(), "DOUBLE"), d), f"__a{i}"), bound]
    if agg.kind == "AVG":
        return [total, count, bound]
    square = exp.Mul(this=exp.cast(x.copy(), "DOUBLE"), expression=exp.cast(x.copy(), "DOUBLE"))
    return [total, exp.alias_(_agg(exp.Sum, square, d), f"__a{i}_q"), count, bound]


def _noisy_parts(agg: _Aggregate, ucl: int, bound: float) -> list[tuple[str, bool, float]]:
    """(column, is integer, sensitivity) of every part of one aggregate that gets noise."""
    i = agg.index
    if agg.kind in ("COUNT", "COUNT_DISTINCT"):
        return [(f"__a{i}", True, float(ucl))]
    if agg.kind == "SUM":
        return [(f"__a{i}", False, ucl * bound)]
    if agg.kind == "AVG":
        return [(f"__a{i}_s", False, ucl * bound), (f"__a{i}_c", True, float(ucl))]
    if agg.kind == "STDDEV":
        return [(f"__a{i}_s", False, ucl * bound), (f"__a{i}_q", False, ucl * bound * bound),
                (f"__a{i}_c", True, float(ucl))]
    return []


def _value(agg: _Aggregate) -> exp.Expression:
    """The aggregate's value in phase 2, from its (noisy) parts."""
    i = agg.index
    col = exp.column
    if agg.kind in ("AVG",):
        return exp.Div(this=col(f"__a{i}_s"),
                       expression=exp.Greatest(this=col(f"__a{i}_c"), expressions=[exp.Literal.number(1)]))
    if agg.kind == "STDDEV":
        n = exp.Greatest(this=col(f"__a{i}_c"), expressions=[exp.Literal.number(2)])
        mean_sq = exp.Div(this=exp.Mul(this=col(f"__a{i}_s"), expression=col(f"__a{i}_s")), expression=n.copy())
        var = exp.Div(this=exp.Paren(this=exp.Sub(this=col(f"__a{i}_q"), expression=mean_sq)),
                      expression=exp.Paren(this=exp.Sub(this=n.copy(), expression=exp.Literal.number(1))))
        return exp.Sqrt(this=exp.Greatest(this=var, expressions=[exp.Literal.number(0)]))
    return col(f"__a{i}")


def _output_of(select: exp.Select, node: exp.Expression) -> str:
    """The output column an aggregate feeds (HAVING or ORDER BY when it is only used there)."""
    for projection in select.expressions:
        if any(isinstance(n, exp.AggFunc) and n.sql() == node.sql() for n in projection.walk()):
            return projection.alias_or_name
    return "HAVING/ORDER BY"


def _part_label(kind: str, column: str) -> str:
    suffix = {"s": "sum", "c": "count", "q": "sum of squares"}.get(column.rsplit("_", 1)[-1], "")
    return f"{kind} ({suffix})" if kind in ("AVG", "STDDEV") and suffix else kind

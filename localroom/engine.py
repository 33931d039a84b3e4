"""Running a validated template on DuckDB (or Spark) under the collaboration's rules.

The engine is a backend object (``DuckDB`` below by default; ``Spark`` in
localroom/spark.py): the plan writes its SQL in the backend's dialect.

A template that reads no protected table runs as written (transpiled from
Spark SQL to the engine's dialect by sqlglot, parameters bound as typed values). Otherwise
the final SELECT is split in two:

1. the aggregation, with every aggregate replaced by the parts the rules need:
   the exact value and, per table under a minimum aggregation threshold,
   COUNT(DISTINCT identity column); or, for differential privacy, the counts
   and sums noise is added to, over the query's input clamped to declared
   bounds and truncated to the declared rows per user (localroom/bounds.py);
2. the original projections, HAVING, ORDER BY and LIMIT, evaluated over those
   parts after rows below a threshold are dropped and noise is added.

A query over a differentially private table releases only noisy values, and
every quantity the noise depends on is declared before the data is read
(``Plan.private``; localroom/privacy.py has the calibration and its sources).
Its groups are the declared cross product of the group keys' values, or those
a DP partition selection releases; its thresholds apply to noisy counts; a
failure of the engine is reported without its message (which can hold data
values) and is charged like a run (the caller reserves the budget first).

Sources for thresholds: the User Guide's custom-min-agg-thresholds ("Minimum
aggregation thresholds ensure that each row in a SQL query result has at least
N distinct data subjects contributing to it"; rows that don't are suppressed)
and custom-considerations ("The minimum aggregation threshold is not enforced
on COUNT, COUNT(DISTINCT), or APPROX_COUNT_DISTINCT functions over a single
table with no grouping or join").
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from localroom import intervals
from localroom.bounds import clamped, declared_domain, keyset, truncated, value_bounds
from localroom.privacy import Calibration, NoisePart, Selection, aggregate_noise, selection
from localroom.spark_semantics import for_duckdb, written
from model.budget import dp_type, final_aggregates
from model.collaboration import Collaboration
from model.datasets import Dataset, numeric_range
from model.validator.analysis import Analysis, BaseColumn, aggregates_in, build


class LocalLimitation(Exception):
    """A valid template whose protection the local clean room cannot reproduce (exit 1, nothing kept)."""


class DataChanged(LocalLimitation):
    """A data file changed after the run began using what the cache knew of it (exit 1, nothing kept)."""


class RunFailed(Exception):
    """The engine failed while running the template (exit 1), e.g. an invalid cast in the data.

    ``read_data`` is False when the engine refused the SQL before reading any row (an unknown function, a
    type error): such a failure says nothing about the data.
    """

    def __init__(self, message: str, read_data: bool = True):
        super().__init__(message)
        self.read_data = read_data


@dataclass
class Noise:
    column: str
    aggregate: str
    sigma: float
    sensitivity: float
    threshold: float | None = None  # a selection's: a group is shown when its noisy count exceeds it


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

    def __init__(self, cache_dir=None, early=None):
        self.con = duckdb.connect()
        self.cache_dir = cache_dir  # localroom/cache.py: typed tables kept between runs; None reads every time
        self.early = early  # localroom/digests.Early: the data files' hashes, taken while the run started
        self.entries: dict[str, object] = {}  # alias -> its cache key
        self.deferred: dict[str, object] = {}  # alias -> a table the cache knows valid, read when a statement names it
        self.derived = None
        self.ready: dict[tuple, pa.Table] = {}  # phase-1 tables localroom/batch.py computed, by result_key
        if cache_dir is not None:
            from localroom.cache import Derived

            self.derived = Derived(cache_dir)

    def load(self, tables: dict[str, Dataset]) -> dict[str, int]:
        """Each dataset as a table (or a view of a cached one) named by its alias; the row counts.

        A file that does not match its schema raises ConfigError naming file and line (model.datasets.load_into).
        A file the cache has checked already is only read when a statement names its table (``_needs``).
        """
        from localroom.cache import load_tables

        return load_tables(self.con, tables, self.cache_dir, keys=self.entries, deferred=self.deferred,
                           early=self.early)

    def _needs(self, sql: str) -> None:
        """Read the deferred tables ``sql`` may read: every one whose name it holds as a word (a statement
        cannot read a table it does not name; a name in a string or a column only reads it early)."""
        from localroom import cache

        for alias in [a for a in self.deferred if re.search(rf"(?<![\w$]){re.escape(a)}(?![\w$])", sql, re.I)]:
            try:
                cache.load_deferred(self.con, self.deferred[alias], self.cache_dir)
            except cache.DataChanged as exc:
                raise DataChanged(f"{exc} changed while this run was using what the cache knew of it; nothing "
                                  "from it was released: run again") from None
            del self.deferred[alias]

    def cached(self, kind: str, sql: str, params: dict[str, Any], aliases, compute) -> pa.Table:
        """``compute()``'s table, or the one stored for the same SQL, parameters and table contents
        (localroom/cache.Derived): what depends on the data alone is computed once per data. A table
        localroom/batch.py computed for this SQL and parameters (``ready``) is used in place of ``compute()``."""
        used = used_params(sql, self.dialect, params) if params else {}
        prepared = self.ready.pop(result_key(kind, sql, used), None)
        if prepared is not None:
            compute = lambda: prepared  # noqa: E731
        if self.derived is None:
            return compute()
        keys = [self.entries.get(a) for a in sorted(aliases)]
        found = self.derived.get(kind, sql, used, keys)
        if found is not None:
            return found
        table = compute()
        self.derived.put(kind, sql, used, keys, table)
        return table


    def stored(self, kind: str, sql: str, used: dict[str, Any], aliases) -> bool:
        """Whether the derived store has the table ``cached`` would look up (a warm run needs no batch)."""
        return self.derived is not None and \
            self.derived.exists(kind, sql, used, [self.entries.get(a) for a in sorted(aliases)])

    def flush(self) -> None:
        """Store what waited for its tables' cache entries (the end of a run)."""
        if self.derived is not None:
            self.derived.flush()

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
        self._needs(sql)
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

    def before_data(self, exc: Exception) -> bool:
        """Whether DuckDB refused the SQL while parsing or binding it, before reading any row."""
        return isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException))

    def _relation(self, sql: str, params: dict[str, Any]):
        self._needs(sql)
        return self.con.sql(sql, params=used_params(sql, self.dialect, params) or None)


class LocalCleanRoom:
    """The collaboration's tables in one engine (DuckDB unless another backend is given), each loaded once."""

    def __init__(self, collab: Collaboration, backend=None):
        self.collab = collab
        self.db = backend if backend is not None else DuckDB()
        self.loaded: dict[str, int] = {}
        self._scalars: dict[tuple, Any] = {}  # _scalar's values, by result_key

    @property
    def dialect(self) -> str:
        """The SQL dialect sqlglot writes for the engine."""
        return self.db.dialect

    def rows_per_key(self, table: str, column: str) -> int:
        """The most rows any one value of ``table.column`` has (cached: the room loads each table once)."""
        return self._scalar("rows_per_key", f"{table}.{column}", {}, [table],
                            lambda: self.db.rows_per_key(table, column))

    def rows_bound(self, sql: str, params: dict[str, Any], aliases, compute) -> int | None:
        """Plan.rows_bound's bound for the rows ``sql`` selects: ``compute()``'s, unless this run or the
        data's store has it (localroom/batch.py hands in the one its combined query counted)."""
        return self._scalar("bound", sql, params, aliases, compute)

    def _scalar(self, kind: str, sql: str, params: dict[str, Any], aliases, compute) -> int | None:
        """``compute()``'s integer (or None), through ``cached`` as a one-cell table, once per run."""
        key = result_key(kind, sql, used_params(sql, self.dialect, params))
        if key not in self._scalars:
            self._scalars[key] = self.cached(kind, sql, params, aliases, lambda: pa.table(
                {"n": pa.array([compute()], pa.int64())})).column("n")[0].as_py()
        return self._scalars[key]

    def cached(self, kind: str, sql: str, params, aliases, compute) -> pa.Table:
        """The backend's store of results that depend on the data alone, where it has one (DuckDB's)."""
        store = getattr(self.db, "cached", None)
        return store(kind, sql, params, aliases, compute) if store is not None else compute()

    def flush(self) -> None:
        flush = getattr(self.db, "flush", None)
        if flush is not None:
            flush()

    def load(self, aliases) -> None:
        todo = {alias: self.collab.tables[alias].dataset for alias in sorted(aliases) if alias not in self.loaded}
        if todo:
            self.loaded.update(self.db.load(todo))

    def plan(self, analysis: Analysis, calibration: Calibration | None) -> "Plan":
        """What a run of ``analysis`` will do and release, decided before any row is read.

        Raises PlanRefusal (a declaration is missing) or LocalLimitation.
        """
        return Plan(analysis, self.dialect, calibration)

    def execute(self, plan: "Plan", params: dict[str, Any], noise) -> LocalResult:
        self.load(plan.analysis.tables)
        try:
            if plan.direct:
                return LocalResult(self.db.sql(plan.direct_sql, params), Enforcement())
            return plan.execute(self, params, noise)
        except self.db.errors as exc:
            if self.db.before_data(exc):
                raise RunFailed(self.db.message(exc), read_data=False) from None
            if plan.private is not None:
                # An engine's message can quote the value that made it fail (an overflow, a cast):
                # under differential privacy it is not shown (User Guide, dp-limitations).
                raise RunFailed(WITHHELD) from None
            raise RunFailed(self.db.message(exc)) from None

    def run(self, analysis: Analysis, params: dict[str, Any], noise, calibration: Calibration | None) -> LocalResult:
        return self.execute(self.plan(analysis, calibration), params, noise)


WITHHELD = ("the engine failed while computing a differentially private result; its message is not shown, as it "
            "can quote the data (look for arithmetic that can overflow or a cast that can fail in the template)")


def result_key(kind: str, sql: str, used: dict[str, Any]) -> tuple:
    """What identifies a result computed from the data: its kind, SQL and the parameter values it uses."""
    return kind, sql, tuple(sorted((name, repr(value)) for name, value in used.items()))


def used_params(sql: str, dialect: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The values of ``params`` that ``sql`` has a marker for (both engines refuse a value without one)."""
    if not params:
        return {}
    used = _markers(sql, dialect)
    return {k: v for k, v in params.items() if k in used}


@functools.lru_cache(maxsize=256)
def _markers(sql: str, dialect: str) -> frozenset[str]:
    """The parameter markers of ``sql`` (parsed once per text: a run asks for the same SQL several times)."""
    return frozenset(p.name for p in sqlglot.parse_one(sql, read=dialect).find_all(exp.Placeholder))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------
# The two-phase plan


_COUNTING = (exp.Count, exp.ApproxDistinct)


@dataclass
class _Aggregate:
    index: int
    node: exp.AggFunc
    argument: exp.Expression | None
    distinct: bool


@dataclass
class _Release:
    """One aggregate of a differentially private query's final SELECT, and how it is noised."""

    index: int
    node: exp.AggFunc
    kind: str  # COUNT, COUNT_DISTINCT, SUM, AVG, STDDEV
    argument: exp.Expression | None
    distinct: bool
    bounds: tuple[float, float] | None
    parts: list[NoisePart]
    column: str
    population: bool = False  # STDDEV_POP

    def names(self) -> list[str]:
        """The phase-1 column of each noise part, in ``parts`` order."""
        if self.kind in ("COUNT", "COUNT_DISTINCT", "SUM"):
            return [f"__a{self.index}"]
        return [f"__a{self.index}_{_SUFFIX[p.part]}" for p in self.parts]


_SUFFIX = {"sum": "s", "count": "c", "sum of squares": "q"}


@dataclass
class _Private:
    """What a query over a differentially private table releases, fixed before any row is read."""

    user: exp.Expression
    limit: int
    releases: list[_Release]
    identities: dict[str, exp.Expression]  # threshold tables' identity columns, counted with noise
    threshold_parts: list[NoisePart]
    groups: list[exp.Expression]
    keys: list[tuple] | None  # the declared cross product of the group keys; None: selected, or no groups
    selection: Selection | None
    usage: Counter


@dataclass
class PartsQuery:
    """Phase 1 of a DP run in pieces (localroom/batch.py runs several that read the same rows as one query)."""

    rows: exp.Select  # one row per input row: columns __g<i> (groups), __u (user), __x<k>, __t<k>
    parts: list[exp.Expression]  # the aggregates over ``rows``, each aliased
    groups: int
    truncated: bool  # ``rows`` keeps at most the contribution limit per user (a window over them)
    with_: exp.With | None

    def select(self) -> exp.Select:
        query = exp.select(*[p.copy() for p in self.parts]).from_(
            exp.Subquery(this=self.rows.copy(), alias=exp.TableAlias(this=exp.to_identifier("__dp_in"))))
        if self.groups:
            query = query.group_by(*[exp.column(f"__g{i}") for i in range(self.groups)])
        if self.with_ is not None:
            query.set("with_", self.with_.copy())
        return query

    def sql(self, dialect: str) -> str:
        return self.select().sql(dialect=dialect)


class Plan:
    def __init__(self, analysis: Analysis, dialect: str, calibration: Calibration | None = None):
        self.dialect = dialect
        tree = analysis.tree.copy()
        if dialect == "duckdb":
            # Spark's semantics on DuckDB (before the analysis); an AVG of a decimal exact where no DP table is read.
            private = any(t.differential_privacy for t in analysis.tables.values())
            tree = for_duckdb(tree, analysis.collab.schema(), exact_averages=not private)
        self.analysis = build(analysis.template, analysis.collab, tree)
        self.root = self.analysis.root
        read = self.analysis.base_tables(self.root)
        tables = self.analysis.tables
        self.thresholded = {a: tables[a] for a in sorted(read) if tables[a].threshold}
        self.protected = {a: tables[a] for a in sorted(read) if tables[a].differential_privacy}
        self.direct = not self.thresholded and not self.protected
        self.direct_sql = tree.sql(dialect=dialect) if self.direct else ""
        self.source = analysis
        self.apart = False  # a copy that may add identity columns to DISTINCT queries (_counted_apart)
        # On such a copy: id(scope) of a CTE or subquery whose rows it repeats once per identity -> the names of
        # its output columns that tell its original rows apart (_expanded, DISTINCT in _projected).
        self.row_keys: dict[int, list[str]] = {}
        self.private: _Private | None = None
        if self.protected:
            if calibration is None:
                raise LocalLimitation("the template reads a differentially private table, but the collaboration "
                                      "has no privacy budget (differentialPrivacy in the owner's stack file)")
            self.private = self._plan_private(calibration)
            # Output names that clash with the error columns are refused here, before any row is read.
            _error_projections(self._select(), {r.node.sql(): r.index for r in self.private.releases})

    @property
    def usage(self) -> Counter:
        """The DP releases one run makes, by aggregation type (empty without differential privacy)."""
        return Counter(self.private.usage) if self.private else Counter()

    # -- building -----------------------------------------------------------
    def _select(self) -> exp.Select:
        select = self.root.expression
        if not isinstance(select, exp.Select):
            raise LocalLimitation("differential privacy does not support a set operation (UNION, ...) in the "
                                  "final SELECT: put it in a CTE or subquery (dp-sql-capabilities)")
        return select

    def execute(self, room: LocalCleanRoom, params, noise) -> LocalResult:
        enforcement = Enforcement(seeded=bool(getattr(noise, "seeded", False)))
        if isinstance(self.root.expression, exp.SetOperation) and self.private is None:
            return self._set_operation(room, params, enforcement)
        select = self._select()
        if self.private is not None:
            return self._run_private(room, select, params, noise, enforcement)
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
        enforcement.thresholds = {alias: t.threshold[1] for alias, t in thresholds.items()}
        try:
            identities = {alias: self._identity(self.root, alias, t.threshold[0]) for alias, t in thresholds.items()}
        except _ChangesDistinct:
            return self._aggregate(room, select, params, enforcement, grouped, {},
                                   apart=self._counted_apart(room, params, thresholds))
        keyed = list(identities.values())
        if keyed and all(self._rows_per_identity(room, select, e) == 1 for e in keyed):
            # Every identity is in at most one input row: COUNT(DISTINCT id) is COUNT(id).
            return self._aggregate(room, select, params, enforcement, grouped, identities, unique=True)
        try:
            renamed = _materialize(room, select, keyed, params)
            if renamed is not None:
                identities = dict(zip(identities, renamed))
            return self._aggregate(room, select, params, enforcement, grouped, identities)
        finally:
            room.db.drop("__input")

    def _rows_per_identity(self, room: LocalCleanRoom, select: exp.Select, identity: exp.Expression) -> int | None:
        """An upper bound on the input rows one value of ``identity`` has, from the tables' key counts.

        Holds when the final SELECT reads base tables joined by column equalities
        that connect them all: each row of the identity's table meets at most
        the most rows any key of each other table's join column has. None when
        the shape is anything else (the exact count is taken instead). It only
        decides how the engine computes a result (skipping a truncation that
        would keep every row, counting without DISTINCT), never what is released.
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

    def _set_operation(self, room, params, enforcement: Enforcement) -> LocalResult:
        """UNION [ALL] as the final SELECT over tables under aggregation thresholds.

        custom-sql-capabilities lists UNION and UNION ALL as supported in the final SELECT. Each output row
        must have at least N distinct identities behind it (custom-min-agg-thresholds): the identities of
        every input row of the branch group it comes from, and under UNION (DISTINCT) of every branch row
        equal to it. So each branch yields (its output row, one identity) pairs; the pairs are counted per
        output row (per branch row under UNION ALL), and rows of a branch that reads a thresholded table
        and have fewer than its minimum are dropped. The set operation's ORDER BY and LIMIT come last.
        """
        operation = self.root.expression
        if isinstance(operation, exp.SetOperation) and any(
                isinstance(n, exp.SetOperation) and not isinstance(n, exp.Union) for n in operation.walk()):
            raise LocalLimitation("AWS supports UNION and UNION ALL in the final SELECT of a query over a table "
                                  "under an aggregation threshold, not INTERSECT or EXCEPT (custom-sql-capabilities)")
        branches = _branches(self.root)
        collapsed = _collapsed_under(self.root)
        width = len(branches[0][0].expressions)
        outputs = [p.alias_or_name for p in branches[0][0].expressions]
        thresholds = {alias: t.threshold for alias, t in self.thresholded.items()}
        enforcement.thresholds = {alias: minimum for alias, (_, minimum) in thresholds.items()}
        pairs = []
        for b, ((select, scope), under) in enumerate(zip(branches, collapsed)):
            pairs.append(self._branch_pairs(b, select, scope, thresholds, width, under))
        union = pairs[0]
        for other in pairs[1:]:
            union = exp.union(union, other, distinct=False)
        # One output row per key: a branch row under UNION ALL alone is its own (__b, __r); rows under a
        # UNION (DISTINCT) are one row per value, whichever branch below that UNION they come from.
        key = [exp.column(f"__c{i}") for i in range(width)] + [exp.column("__b"), exp.column("__r")]
        counted = exp.select(*[exp.column(f"__c{i}") for i in range(width)], *[
            e for k, alias in enumerate(thresholds) for e in (
                exp.alias_(exp.Count(this=exp.Distinct(expressions=[exp.column(f"__id{k}")])), f"__n{k}"),
                exp.alias_(exp.Max(this=exp.column(f"__reads{k}")), f"__reads{k}"))]).from_(
            exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("__pairs")))).group_by(*key)
        with_ = operation.args.get("with_")
        if with_ is not None:
            counted.set("with_", with_.copy())
        rows = room.db.sql(counted.sql(dialect=self.dialect), params)
        keep = np.ones(rows.num_rows, dtype=bool)
        for k, alias in enumerate(thresholds):
            reads = np.asarray(rows.column(f"__reads{k}").to_numpy(zero_copy_only=False), dtype=bool)
            counts = np.asarray(rows.column(f"__n{k}").to_numpy(zero_copy_only=False))
            keep &= ~reads | (counts >= thresholds[alias][1])
        enforcement.suppressed_rows = int((~keep).sum())
        rows = _kept(rows, keep)
        final = exp.select(*[exp.alias_(exp.column(f"__c{i}"), name) for i, name in enumerate(outputs)]).from_(
            "__parts")
        named = {_unaliased(p): exp.column(f"__c{i}") for i, p in enumerate(branches[0][0].expressions)}
        for clause in ("order", "limit", "offset"):
            if operation.args.get(clause) is not None:  # a plain SELECT's ORDER BY may name an output's expression
                final.set(clause, operation.args[clause].copy().transform(
                    lambda node: named[node].copy() if node in named and not isinstance(node, exp.Literal) else node))
        room.db.register("__parts", rows)
        try:
            return LocalResult(room.db.sql(final.sql(dialect=self.dialect), params), enforcement)
        finally:
            room.db.unregister("__parts")

    def _branch_pairs(self, index: int, select: exp.Select, scope: Scope, thresholds, width: int,
                      under: int | None = None) -> exp.Select:
        """One branch's (output row, identity) pairs: __c* the row, __id* each table's identity (NULL where the
        branch does not read it), __reads* whether it does (threshold applies), __b/__r the branch and row;
        ``under`` a UNION (DISTINCT) above the branch (``_collapsed_under``): __b names it, __r is 0."""
        reads = {alias: alias in self.analysis.base_tables(scope) and not _exempt(select, aggregates_in(select))
                 for alias in thresholds}
        grouped = select.args.get("group") is not None or any(aggregates_in(p) for p in select.expressions)
        source, with_, row_keys = select, None, None  # where the identities are read from
        try:
            ids = {alias: self._identity(scope, alias, thresholds[alias][0]) if reads[alias] else exp.Null()
                   for alias in thresholds}
        except _ChangesDistinct:
            if grouped:
                # A CTE or subquery aggregates (or DISTINCTs) a thresholded table away: the identities behind
                # each of the branch's groups are read from a copy of the query in which each of its rows is
                # repeated once per identity behind it (_expanded), as _counted_apart does for a final SELECT.
                copy = Plan(self.source, self.dialect)
                copy.apart = True
                source, inner = _branches(copy.root)[index]
                ids = {alias: copy._identity(inner, alias, thresholds[alias][0]) if reads[alias] else exp.Null()
                       for alias in thresholds}
                _rename_ctes(copy.root.expression, f"__copy{index}_")
                with_ = copy.root.expression.args.get("with_")
            else:
                listed = self._listed_apart(index, thresholds, reads)
                if listed is None:  # not one aggregated source: suppressed, as a result without aggregation is
                    ids = {alias: exp.Null() for alias in thresholds}
                else:
                    source, ids, row_keys, with_ = listed
        if under is not None:
            index = -1 - under
        outputs = [exp.alias_(_unaliased(p).copy(), f"__c{i}") for i, p in enumerate(select.expressions)]
        flags = [e for k, alias in enumerate(thresholds) for e in (
            exp.alias_(exp.Literal.number(int(reads[alias])), f"__reads{k}"),)]
        clauses = ("from_", "joins", "where")
        if not grouped:  # row-level: each row carries its own identities
            if row_keys is not None:  # each row of one aggregated source, repeated once per identity behind it
                number = exp.Window(this=exp.Anonymous(this="DENSE_RANK"), order=exp.Order(expressions=[
                    exp.Ordered(this=k.copy(), nulls_first=True) for k in row_keys])) if row_keys else \
                    exp.Literal.number(1)
            else:
                number = _row_number([_unaliased(p).copy() for p in select.expressions])
            pairs = _with_clauses(exp.Select(), source, clauses)
            pairs.set("expressions", [*outputs, *[exp.alias_(e.copy(), f"__id{k}") for k, e in enumerate(ids.values())],
                                      *flags, exp.alias_(exp.Literal.number(index), "__b"),
                                      exp.alias_(number if under is None else exp.Literal.number(0), "__r")])
            if with_ is None:
                return pairs
            pairs.set("with_", with_.copy())  # the copy's CTEs, which carry the identities, in a scope of their own
            return exp.select(exp.Star()).from_(exp.Subquery(this=pairs, alias=exp.TableAlias(
                this=exp.to_identifier(f"__listed{index}"))))
        groups = list(select.args["group"].expressions) if select.args.get("group") is not None else []
        rows = _with_clauses(exp.Select(), select, (*clauses, "group", "having"))
        rows.set("expressions", [*outputs, *[exp.alias_(g.copy(), f"__g{j}") for j, g in enumerate(groups)]])
        numbered = exp.select(exp.Star(), exp.alias_(_row_number(
            [exp.column(f"__c{i}") for i in range(width)] + [exp.column(f"__g{j}") for j in range(len(groups))]),
            "__r")).from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier("__rows"))))
        members = _with_clauses(exp.Select(), source, clauses)
        members.set("expressions", [*[exp.alias_(g.copy(), f"__g{j}") for j, g in enumerate(groups)],
                                    *[exp.alias_(e.copy(), f"__id{k}") for k, e in enumerate(ids.values())]])
        if with_ is not None:  # the copy's CTEs, which carry the identities, shadow the query's own here
            members.set("with_", with_.copy())
        on = exp.and_(*[exp.NullSafeEQ(this=exp.column(f"__g{j}", table="r"), expression=exp.column(f"__g{j}", table="m"))
                        for j in range(len(groups))]) if groups else exp.true()
        return exp.select(*[exp.column(f"__c{i}", table="r") for i in range(width)],
                          *[exp.column(f"__id{k}", table="m") for k in range(len(ids))], *flags,
                          exp.alias_(exp.Literal.number(index), "__b"),
                          exp.column("__r", table="r") if under is None else exp.alias_(exp.Literal.number(0), "__r"),
                          ).from_(
            exp.Subquery(this=numbered, alias=exp.TableAlias(this=exp.to_identifier("r")))).join(
            exp.Subquery(this=members, alias=exp.TableAlias(this=exp.to_identifier("m"))), on=on, join_type="left")

    def _listed_apart(self, index: int, thresholds, reads):
        """For a row-level branch (``index`` in ``_branches``) whose one source is a CTE or subquery that
        aggregated a thresholded table: (its SELECT on the counting copy, the identities there, the columns
        that tell the source's original rows apart, the copy's WITH); None for any other shape."""
        copy = Plan(self.source, self.dialect)
        copy.apart = True
        select, scope = _branches(copy.root)[index]
        sources = list(scope.selected_sources.values())
        if len(sources) != 1 or not isinstance(sources[0][1], Scope) or select.args.get("joins"):
            return None
        try:
            ids = {alias: copy._identity(scope, alias, thresholds[alias][0]) if reads[alias] else exp.Null()
                   for alias in thresholds}
        except (_ChangesDistinct, LocalLimitation):
            return None
        keys = copy.row_keys.get(id(sources[0][1]))
        if keys is None:
            return None
        name = next(iter(scope.selected_sources))
        _rename_ctes(copy.root.expression, f"__copy{index}_")
        return select, ids, [exp.column(k, table=name) for k in keys], copy.root.expression.args.get("with_")

    def _expanded(self, scope: Scope, table: str, column: str) -> str:
        """On the counting copy: a CTE or subquery that aggregates ``table`` away, with each of its rows
        repeated once per identity behind it.

        The identities behind a group are those of its input rows: the aggregating SELECT gets its group keys
        as extra columns (which changes none of its rows), and is joined on them to its input's distinct
        (keys, identity) pairs. Only the copy's identity counts are used, so repeating rows costs nothing in
        what the query returns (its aggregates come from the query as written).
        """
        select = scope.expression
        identity = self._identity(scope, table, column)
        keys = list(select.args["group"].expressions) if select.args.get("group") is not None else []
        name = f"__cr_{table}_{column}"
        outputs = [p.alias_or_name for p in select.expressions]
        inner = select.copy()
        for j, key in enumerate(keys):
            inner.append("expressions", exp.alias_(key.copy(), f"__k{j}"))
        members = _with_clauses(exp.Select(), select, ("from_", "joins", "where"))
        members.set("expressions", [*[exp.alias_(k.copy(), f"__k{j}") for j, k in enumerate(keys)],
                                    exp.alias_(identity.copy(), "__id")])
        members.set("distinct", exp.Distinct())
        on = exp.and_(*[exp.NullSafeEQ(this=exp.column(f"__k{j}", table="__grp"),
                                       expression=exp.column(f"__k{j}", table="__who")) for j in range(len(keys))]) \
            if keys else exp.true()
        # An aggregated row is told apart by its group keys (a query without GROUP BY has one row).
        self.row_keys.setdefault(id(scope), [f"{name}_k{j}" for j in range(len(keys))])
        expanded = exp.select(*[exp.column(o, table="__grp") for o in outputs],
                              exp.alias_(exp.column("__id", table="__who"), name),
                              *[exp.alias_(exp.column(f"__k{j}", table="__grp"), f"{name}_k{j}")
                                for j in range(len(keys))]).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("__grp")))).join(
            exp.Subquery(this=members, alias=exp.TableAlias(this=exp.to_identifier("__who"))), on=on, join_type="left")
        if select.args.get("with_") is not None:
            expanded.set("with_", select.args["with_"].copy())
            inner.set("with_", None)
        select.replace(expanded)
        return name

    def _counted_apart(self, room, params, thresholds) -> pa.Table:
        """Each group's distinct identities, counted on a copy of the query that carries them.

        For a DISTINCT set operation (or SELECT DISTINCT) in a CTE, where another column would change which
        rows are the same: the copy keeps one row per (row, identity), so its GROUP BY counts exactly the
        identities behind each group of the original, whose own aggregates are computed unchanged.
        """
        copy = Plan(self.source, self.dialect)
        copy.apart = True
        select = copy._select()
        identities = [copy._identity(copy.root, alias, t.threshold[0]) for alias, t in thresholds.items()]
        counts = _with_clauses(exp.Select(), select, ("with_", "from_", "joins", "where", "group"))
        groups = list(select.args["group"].expressions) if select.args.get("group") is not None else []
        counts.set("expressions", [exp.alias_(g.copy(), f"__g{i}") for i, g in enumerate(groups)] + [
            exp.alias_(exp.Count(this=exp.Distinct(expressions=[e.copy()])), f"__t{k}")
            for k, e in enumerate(identities)])
        return room.db.sql(counts.sql(dialect=self.dialect), params)

    def _aggregate(self, room, select, params, enforcement, grouped, identities, unique: bool = False,
                   apart: pa.Table | None = None):
        """Thresholds without differential privacy: exact aggregates, rows below a minimum dropped.

        ``apart``: the identity counts per group, computed by ``_counted_apart`` (merged on the group keys).
        """
        aggregates = _classify(final_aggregates(select))
        phase1 = _with_clauses(exp.Select(), select, ("with_", "from_", "joins", "where", "group"))
        groups = list(select.args["group"].expressions) if grouped else []
        projections = [exp.alias_(g.copy(), f"__g{i}") for i, g in enumerate(groups)]
        projections += [exp.alias_(agg.node.copy(), f"__a{agg.index}") for agg in aggregates]
        for k, (alias, identity) in enumerate(identities.items()):
            counted = identity.copy() if unique else exp.Distinct(expressions=[identity.copy()])
            projections.append(exp.alias_(exp.Count(this=counted), f"__t{k}"))
        phase1.set("expressions", projections)
        parts = room.db.sql(phase1.sql(dialect=self.dialect), params)
        if apart is not None:
            parts = _merged(parts, apart, len(groups))
        keep = np.ones(parts.num_rows, dtype=bool)
        for k, alias in enumerate(identities or enforcement.thresholds):
            keep &= np.asarray(parts.column(f"__t{k}").to_numpy(zero_copy_only=False)) >= enforcement.thresholds[alias]
        enforcement.suppressed_rows = int((~keep).sum())
        parts = _kept(parts, keep)
        values = {a.node.sql(): exp.column(f"__a{a.index}") for a in aggregates}
        return LocalResult(self._finish(room, select, params, parts, groups, values), enforcement)

    def _finish(self, room, select: exp.Select, params, parts: pa.Table, groups, values,
                errors: dict[str, int] | None = None) -> pa.Table:
        """Phase 2: the template's projections, HAVING, ORDER BY and LIMIT over the parts of phase 1.

        ``errors`` (differential privacy) maps an aggregate to its error columns in ``parts``: an output
        that is one aggregate gets ``<name>_noise_sd``, ``<name>_ci95_low`` and ``<name>_ci95_high``
        beside it (an output computed from several noisy values gets none: docs, "Results with their error").
        """
        phase2 = exp.Select()
        group_names = [(g, f"__g{i}") for i, g in enumerate(groups)]
        extra = _error_projections(select, errors or {})

        def rewrite(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window) and node.sql() in values:
                return values[node.sql()].copy()
            for g, name in group_names:
                if node == g:
                    return exp.column(name)
            return node

        projections = []
        for p in select.expressions:
            name = p.alias_or_name
            projections.append(p.transform(rewrite, copy=False))
            projections += [e.transform(rewrite, copy=False) for e in extra.get(name, [])]
        phase2.set("expressions", projections)
        phase2.set("from_", exp.From(this=exp.to_table("__parts")))
        if select.args.get("having") is not None:
            phase2.set("where", exp.Where(this=select.args["having"].this.transform(rewrite, copy=False)))
        for key in ("order", "limit", "offset", "distinct"):
            if select.args.get(key) is not None:
                value = select.args[key]
                phase2.set(key, value.transform(rewrite, copy=False) if isinstance(value, exp.Expression) else value)
        room.db.register("__parts", parts)
        try:
            return room.db.sql(phase2.sql(dialect=self.dialect), params)
        finally:
            room.db.unregister("__parts")

    def _row_level(self, room, select, params, enforcement) -> LocalResult:
        """No aggregation: every output row comes from one input row, one identity, and is suppressed.

        Rows listed from one CTE or subquery that aggregated a thresholded table have behind them the
        identities of their group: they are counted as a final UNION's branch is (``_set_operation``).
        """
        if self.thresholded:
            thresholds = {alias: t.threshold for alias, t in self.thresholded.items()}
            try:
                for alias, (column, _) in thresholds.items():
                    self._identity(self.root, alias, column)
            except _ChangesDistinct:
                if self._listed_apart(0, thresholds, dict.fromkeys(thresholds, True)) is not None:
                    return self._set_operation(room, params, enforcement)
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
        if isinstance(select, exp.SetOperation):
            return self._projected_through(scope, table, column)
        wanted = {BaseColumn(table, column)}
        for projection in select.expressions:
            if isinstance(_unaliased(projection), exp.Column) and \
                    self.analysis.lineage(projection, scope) == wanted:
                return projection.alias_or_name
        if select.args.get("group") is not None or any(aggregates_in(p) for p in select.expressions):
            if not self.apart:
                raise _ChangesDistinct()  # counted on a copy, where the groups are expanded (_expanded)
            return self._expanded(scope, table, column)
        if select.args.get("distinct") is not None and not self.apart:
            raise _ChangesDistinct()
        name = f"__cr_{table}_{column}"
        if select.args.get("distinct") is not None:  # the copy: a distinct row is told apart by its values
            self.row_keys.setdefault(id(scope), [p.alias_or_name for p in select.expressions])
        select.append("expressions", exp.alias_(self._identity(scope, table, column), name))
        return name

    def _projected_through(self, scope: Scope, table: str, column: str) -> str:
        """The output column of a set operation carrying ``table.column`` in every branch that reads the table.

        Columns of a set operation are positional. A column that carries the identity in the branches that
        read ``table`` and nothing (NULL) in the others is used as it is; otherwise one is added to every
        branch (NULL where the branch does not read the table), which keeps UNION ALL's rows as they are.
        Under UNION (DISTINCT), INTERSECT or EXCEPT another column changes which rows are the same:
        ``_ChangesDistinct`` then makes the caller count identities on a copy (``Plan._counted_apart``).
        """
        branches = _branches(scope)
        wanted = {BaseColumn(table, column)}
        reads = [table in self.analysis.base_tables(inner) for _, inner in branches]
        width = len(branches[0][0].expressions)
        for position in range(width):
            fits = True
            for (select, inner), reading in zip(branches, reads):
                node = _unaliased(select.expressions[position])
                if reading:
                    fits &= isinstance(node, exp.Column) and self.analysis.lineage(node, inner) == wanted
                else:
                    fits &= isinstance(node, exp.Null)
            if fits:
                return branches[0][0].expressions[position].alias_or_name
        if not self.apart and any(node.args.get("distinct") is not False for node in scope.expression.walk()
                                  if isinstance(node, exp.SetOperation)):
            raise _ChangesDistinct()
        name = f"__cr_{table}_{column}"
        for (select, inner), reading in zip(branches, reads):
            value = self._identity(inner, table, column) if reading else exp.Null()
            select.append("expressions", exp.alias_(value, name))
        return name

    # -- differential privacy ---------------------------------------------------
    def _plan_private(self, calibration: Calibration) -> _Private:
        """The releases of a query over a DP table: bounds, contribution limit, group keys, costs.

        Everything here is read from the template, the schemas and the rules:
        no row of data. A template the local room cannot bound is refused
        (PlanRefusal) before anything runs or is charged.
        """
        select = self._select()
        alias, table = next(iter(self.protected.items()))
        user_column = BaseColumn(alias, table.user_identifier)
        try:
            user = self._identity(self.root, alias, table.user_identifier)
        except _ChangesDistinct:
            raise LocalLimitation(f"a CTE, subquery or set operation over '{alias}' does not keep its user "
                                  f"identifier '{table.user_identifier}' in a column of its rows (of every "
                                  "branch)") from None
        limit = table.rule.user_contribution_limit
        grouped = select.args.get("group") is not None
        releases = []
        for index, node in enumerate(final_aggregates(select)):
            kind = dp_type(node)
            this = node.this
            distinct = isinstance(this, exp.Distinct)
            if distinct and len(this.expressions) != 1:
                raise LocalLimitation(f"{written(node)}: the local clean room counts DISTINCT over one "
                                      "expression only")
            argument = this.expressions[0] if distinct else (None if isinstance(this, exp.Star) else this)
            if distinct and kind == "STDDEV":
                raise LocalLimitation(f"{written(node)}: the local clean room does not rehearse "
                                      "STDDEV(DISTINCT ...)")
            bounds = None
            if kind in ("SUM", "AVG", "STDDEV"):
                bounds = value_bounds(self.analysis, argument, self.root)
                if bounds is None:
                    raise PlanRefusal(_unbounded(node, argument, self.analysis, self.root))
            distinct_user = kind == "COUNT_DISTINCT" and isinstance(argument, exp.Column) and \
                self.analysis.lineage(argument, self.root) == {user_column}
            parts = aggregate_noise(kind, calibration, contribution_limit=limit, bounds=bounds, grouped=grouped,
                                    distinct_user=distinct_user)
            releases.append(_Release(index, node, kind, argument, distinct, bounds, parts, _output_of(select, node),
                                     population=isinstance(node, exp.StddevPop)))
        identities = {a: self._identity(self.root, a, t.threshold[0]) for a, t in self.thresholded.items()}
        threshold_parts = aggregate_noise("COUNT_DISTINCT", calibration, contribution_limit=limit, grouped=grouped)
        groups = list(select.args["group"].expressions) if grouped else []
        domains = [declared_domain(self.analysis, g, self.root) for g in groups]
        keys = keyset(domains) if groups and all(d is not None for d in domains) else None
        chosen = selection(calibration, limit) if groups and keys is None else None
        usage = Counter(r.kind for r in releases)
        usage["COUNT_DISTINCT"] += len(identities) + (1 if chosen else 0)
        return _Private(user, limit, releases, identities, threshold_parts, groups, keys, chosen, +usage)

    def parts_query(self, room: LocalCleanRoom, params: dict[str, Any], assume: int | None = None) -> PartsQuery:
        """Phase 1 of a DP run: the exact parts the noise is added to, per group (decided from the template, the
        schemas, the rules and a bound on the rows one user has in them; nothing of it is released).

        ``assume`` is that bound, taken as given (localroom/batch.py checks it in the same query); otherwise
        it is ``rows_bound``'s.
        """
        private, select = self.private, self._select()
        # The aggregation's input: one row per joined row, the columns the aggregates read.
        rows = _with_clauses(exp.Select(), select, ("from_", "joins"))
        present = exp.Not(this=exp.Is(this=private.user.copy(), expression=exp.Null()))
        where = select.args.get("where")
        rows.set("where", exp.Where(this=exp.and_(where.this.copy(), present) if where is not None else present))
        columns = {f"__g{i}": g for i, g in enumerate(private.groups)}
        columns["__u"] = private.user
        for r in private.releases:
            if r.argument is not None:
                columns[f"__x{r.index}"] = clamped(r.argument, r.bounds) if r.bounds else r.argument
        for k, identity in enumerate(private.identities.values()):
            columns[f"__t{k}"] = identity
        rows.set("expressions", [exp.alias_(e.copy(), name) for name, e in columns.items()])
        bound = assume if assume is not None else self.rows_bound(room, rows, params, select)
        unique = bound is not None and bound <= 1
        cut = bound is None or bound > private.limit
        if cut:
            rows = truncated(rows, "__u", list(columns), private.limit)
        with_ = select.args.get("with_")
        return PartsQuery(rows, self._private_parts(private, unique), len(private.groups), cut,
                          with_.copy() if with_ is not None else None)

    def rows_bound(self, room: LocalCleanRoom, rows: exp.Select, params: dict[str, Any],
                   select: exp.Select) -> int | None:
        """An upper bound on the rows one user has among ``rows`` (the aggregation's input), or None: the
        one localroom/batch.py counted in its combined query, else the one stored for this data, else the
        tables' key counts (``_rows_per_identity``). It decides how the parts are computed (a truncation
        that would keep every row is skipped), never what is released."""
        return room.rows_bound(rows.sql(dialect=self.dialect), params, self.analysis.tables,
                               lambda: self._rows_per_identity(room, select, self.private.user))

    def _run_private(self, room, select: exp.Select, params, noise, enforcement: Enforcement) -> LocalResult:
        """Clamp, truncate, aggregate, add noise to every part, then the template's own projections.

        Rows without a user (an outer join's unmatched side) are left out: no
        user's presence can then change them. Group keys are the declared
        cross product or a DP selection; thresholds apply to noisy counts.
        """
        private = self.private
        enforcement.user_contribution_limit = private.limit
        enforcement.thresholds = {alias: self.thresholded[alias].threshold[1] for alias in private.identities}
        query = self.parts_query(room, params)
        text = query.sql(self.dialect)
        # Exact parts depend on the data alone: on unchanged data they are read back, and noised afresh below.
        parts = room.cached("parts", text, params, self.analysis.tables, lambda: room.db.sql(text, params))
        if private.groups:  # engines group in parallel: a fixed order makes seeded noise land on the same rows
            parts = _sorted(parts, [f"__g{i}" for i in range(len(private.groups))])
        # Which groups: the declared keys (absent ones are zeros), or those a DP selection releases.
        if private.keys is not None:
            parts = _on_keys(parts, private.keys, len(private.groups))
        elif private.selection is not None:
            counts = parts.column("__n").to_pylist()
            keys = [_key(row) for row in zip(*(parts.column(f"__g{i}").to_pylist()
                                                for i in range(len(private.groups))))]
            released = noise.select(dict(zip(keys, counts)), private.selection)
            parts = _kept(parts, np.array([k in released for k in keys], dtype=bool))
            enforcement.noise.append(Noise("(which groups)", "selection: distinct users", private.selection.scale,
                                           math.sqrt(private.limit), threshold=private.selection.threshold))
        # Noise on every part; thresholds on noisy identity counts.
        for r in private.releases:
            for name, part in zip(r.names(), r.parts):
                parts = _noisy(parts, name, part, noise)
                enforcement.noise.append(Noise(r.column, _part_label(r.kind, part.part), part.sigma, part.sensitivity))
        keep = np.ones(parts.num_rows, dtype=bool)
        for k, alias in enumerate(private.identities):
            parts = _noisy(parts, f"__tc{k}", private.threshold_parts[0], noise)
            keep &= parts.column(f"__tc{k}").to_numpy(zero_copy_only=False) >= enforcement.thresholds[alias]
            enforcement.noise.append(Noise(f"(threshold: {alias})", "COUNT_DISTINCT", private.threshold_parts[0].sigma,
                                           private.threshold_parts[0].sensitivity))
        enforcement.suppressed_rows = int((~keep).sum())  # decided by noisy counts only
        parts = _kept(parts, keep)
        for r in private.releases:  # post-processing: each value's error, from noisy parts and scales
            counted = r.kind in ("COUNT", "COUNT_DISTINCT")  # a count's interval is whole numbers
            for name, values in zip(("sd", "lo", "hi"), _error(parts, r)):
                kind = pa.int64() if counted and name != "sd" else pa.float64()
                values = np.rint(values).astype(np.int64) if kind == pa.int64() else np.asarray(values, dtype=float)
                parts = parts.append_column(f"__e{r.index}_{name}", pa.array(values, type=kind))
        enforcement.usage = Counter(private.usage)
        values = {r.node.sql(): _released(r) for r in private.releases}
        errors = {r.node.sql(): r.index for r in private.releases}
        return LocalResult(self._finish(room, select, params, parts, private.groups, values, errors), enforcement)

    def _private_parts(self, private: _Private, unique: bool) -> list[exp.Expression]:
        col = exp.column
        out = [exp.alias_(col(f"__g{i}"), f"__g{i}") for i in range(len(private.groups))]
        for r in private.releases:
            x = col(f"__x{r.index}") if r.argument is not None else None
            if r.kind in ("COUNT", "COUNT_DISTINCT"):
                out.append(exp.alias_(_agg(exp.Count, x, r.distinct), f"__a{r.index}"))
                continue
            if r.kind == "SUM":
                out.append(exp.alias_(_agg(exp.Sum, x, r.distinct), f"__a{r.index}"))
                continue
            mid = exp.Literal.number(repr((r.bounds[0] + r.bounds[1]) / 2))
            count = _agg(exp.Count, x, r.distinct)
            if r.distinct:  # the sum over distinct values of (x - mid)
                shifted = exp.Sub(this=_agg(exp.Sum, x, True), expression=exp.Mul(this=mid, expression=count.copy()))
            else:
                shifted = exp.Sum(this=exp.Sub(this=x.copy(), expression=mid))
            out.append(exp.alias_(shifted, f"__a{r.index}_s"))
            if r.kind == "STDDEV":  # squared deviations less half^2/2: centred, so its sensitivity halves
                deviation = exp.Paren(this=exp.Sub(this=x.copy(), expression=mid.copy()))
                centre = exp.Literal.number(repr(_square_shift(r.bounds)))
                out.append(exp.alias_(exp.Sum(this=exp.Sub(this=exp.Mul(this=deviation, expression=deviation.copy()),
                                                           expression=centre)), f"__a{r.index}_q"))
            out.append(exp.alias_(count, f"__a{r.index}_c"))
        users = col("__u") if unique else exp.Distinct(expressions=[col("__u")])
        if private.selection is not None:
            out.append(exp.alias_(exp.Count(this=users), "__n"))
        for k in range(len(private.identities)):
            counted = col(f"__t{k}") if unique else exp.Distinct(expressions=[col(f"__t{k}")])
            out.append(exp.alias_(exp.Count(this=counted), f"__tc{k}"))
        return out


def _rename_ctes(tree: exp.Expression, prefix: str) -> None:
    """Give the CTEs of a counting copy names of their own (``prefix`` + name), in place.

    The copy's CTEs sit beside the query's own in one statement, and Spark (to which sqlglot moves
    nested CTEs up) refuses two CTEs of one name. A reference without an alias keeps the old name as
    its alias, so the columns qualified by it still resolve.
    """
    names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    if not names:
        return
    for cte in list(tree.find_all(exp.CTE)):
        cte.set("alias", exp.TableAlias(this=exp.to_identifier(prefix + cte.alias_or_name)))
    for table in list(tree.find_all(exp.Table)):
        if not table.args.get("db") and table.name in names:
            if not table.args.get("alias"):
                table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
            table.set("this", exp.to_identifier(prefix + table.name))


class _ChangesDistinct(Exception):
    """Carrying an identity would change which rows a DISTINCT set operation (or SELECT) keeps."""


def _branches(scope: Scope) -> list[tuple[exp.Select, Scope]]:
    """The SELECTs of a set operation, in order, with their scopes (nested set operations flattened)."""
    if scope.set_operation_scopes:
        return [pair for child in scope.set_operation_scopes for pair in _branches(child)]
    if not isinstance(scope.expression, exp.Select):
        raise LocalLimitation("a set operation whose branch is not a SELECT")
    return [(scope.expression, scope)]


def _collapsed_under(scope: Scope, above: int | None = None, seen: list | None = None) -> list[int | None]:
    """For each branch of ``_branches(scope)``: the outermost UNION (DISTINCT) it is under (a number), or None.

    ``A UNION B UNION ALL C`` is ``(A UNION B) UNION ALL C``: the rows of A and B are merged by value, C's are
    kept as they are; under ``(A UNION ALL B) UNION C`` every row is merged by value.
    """
    seen = [] if seen is None else seen
    if not scope.set_operation_scopes:
        return [above]
    if above is None and scope.expression.args.get("distinct") is not False:
        above = len(seen)
        seen.append(scope.expression)
    return [k for child in scope.set_operation_scopes for k in _collapsed_under(child, above, seen)]


class PlanRefusal(Exception):
    """A template the local clean room cannot rehearse without a declaration (exit 2; nothing run or charged)."""


def _unbounded(node: exp.AggFunc, argument: exp.Expression, analysis: Analysis, scope: Scope) -> str:
    """Why an aggregate's value has no declared bound, and what would give it one."""
    shown = written(node)
    columns = [(c, analysis.tables[c.table].dataset.column(c.column)) for c in analysis.lineage(argument, scope)
               if analysis.tables.get(c.table) is not None]
    missing = sorted({f"{c.table}.{c.column}" for c, declared in columns
                      if declared is not None and declared.clamp_bounds is None
                      and numeric_range(declared.type) is not None})
    if missing and isinstance(argument.unnest(), exp.Column):
        files = sorted({str(analysis.tables[m.split('.')[0]].dataset.directory / 'schema.yaml') for m in missing})
        return (f"{shown}: differential privacy clamps what it sums to declared bounds, and "
                f"{', '.join(missing)} has none; add `bounds: [low, high]` to the column in {', '.join(files)}")
    return (f"{shown}: the local clean room cannot derive bounds for '{written(argument)}' from the "
            "declared column bounds (it follows +, -, *, /, ABS, ROUND, CASE, COALESCE, LEAST, GREATEST, casts, and "
            "MIN, MAX, AVG, MEDIAN, percentiles, LAG, LEAD, FIRST_VALUE and LAST_VALUE of a bounded value; not SUM or "
            "COUNT in a CTE, which grow with its rows); aggregate a bounded column or such an expression of one")


def _row_number(order: list[exp.Expression]) -> exp.Expression:
    """ROW_NUMBER() OVER (ORDER BY ...): a number per row (Spark needs the window ordered; ties don't matter)."""
    return exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=o) for o in order]))


def _merged(parts: pa.Table, counts: pa.Table, width: int) -> pa.Table:
    """``parts`` with the ``__t`` columns of ``counts``, matched on the ``width`` group keys (0 where absent)."""
    def keys(table):
        return list(zip(*(table.column(f"__g{i}").to_pylist() for i in range(width)))) if width else \
            [()] * table.num_rows

    index = {key: i for i, key in enumerate(keys(counts))}
    at = [index.get(key) for key in keys(parts)]
    for name in [n for n in counts.column_names if n.startswith("__t")]:
        values = counts.column(name).to_pylist()
        parts = parts.append_column(name, pa.array([values[i] if i is not None else 0 for i in at], pa.int64()))
    return parts


def _key(values) -> str:
    """One group key as text (for the selection mechanism's map)."""
    return json.dumps(list(values), default=str)


def _on_keys(parts: pa.Table, keys: list[tuple], width: int) -> pa.Table:
    """``parts`` with one row per declared key, in declared order; a key without data has zeros.

    Rows whose key is not declared are dropped: only declared keys are released.
    """
    index = {tuple(row): i for i, row in enumerate(zip(*(parts.column(f"__g{i}").to_pylist() for i in range(width))))}
    take = [index.get(tuple(k)) for k in keys]
    columns = {}
    for field in parts.schema:
        if field.name.startswith("__g"):
            position = int(field.name[3:])
            columns[field.name] = _typed([k[position] for k in keys], field.type)
        else:
            values = parts.column(field.name).to_pylist()
            columns[field.name] = pa.array([values[t] if t is not None else None for t in take], type=field.type)
    return pa.table(columns)


# The parts are one row per group: small. Sorting and filtering them in Python keeps pyarrow.compute (a quarter
# of a second to import) out of every run.
def _kept(table: pa.Table, keep) -> pa.Table:
    """The rows of ``table`` where ``keep`` (a boolean array) is true."""
    rows = [row for row, kept in zip(table.to_pylist(), np.asarray(keep, dtype=bool)) if kept]
    return pa.Table.from_pylist(rows, schema=table.schema)


def _sorted(table: pa.Table, columns: list[str]) -> pa.Table:
    """``table`` ordered by ``columns`` ascending, NULLs last (as pyarrow's sort_by orders them)."""
    rows = table.to_pylist()
    rows.sort(key=lambda row: tuple((row[c] is None, row[c] if row[c] is not None else 0) for c in columns))
    return pa.Table.from_pylist(rows, schema=table.schema)


def _typed(values: list, kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values).cast(kind)


def _noisy(parts: pa.Table, name: str, part: NoisePart, noise) -> pa.Table:
    """``parts`` with column ``name`` noised at ``part``'s scale (absent or NULL values count as 0)."""
    values = np.nan_to_num(np.asarray(parts.column(name).to_numpy(zero_copy_only=False), dtype=float))
    if part.integer:
        # post-processing: a noisy count below zero is shown as zero
        noisy = pa.array(np.maximum(noise.integers(np.rint(values).astype(np.int64), part.sigma), 0))
    else:
        noisy = pa.array(noise.reals(values, part.sigma))
    return parts.set_column(parts.schema.get_field_index(name), name, noisy)


ERROR_SUFFIXES = (("sd", "_noise_sd"), ("lo", "_ci95_low"), ("hi", "_ci95_high"))


def _error_projections(select: exp.Select, errors: dict[str, int]) -> dict[str, list[exp.Expression]]:
    """For each output computed from one noisy aggregate, its error columns (named after it).

    An output that is the aggregate gets the aggregate's own columns. One computed from it by a function
    that is monotone in it (``_monotone_in``: arithmetic with values that are not noisy, casts to a number,
    ROUND / FLOOR / CEIL, LEAST / GREATEST, COALESCE) gets the interval mapped through the function: the
    95% interval of f(v) is [min, max] of f at the interval's ends, since f moves one way on it. Its noise
    sd is the aggregate's scaled by the function's slope, (f(hi) - f(lo)) / (hi - lo) with rounding left
    out: exact for an affine f (``COUNT(*) * 2``, ``SUM(x) / 1000``), the secant's slope otherwise. Only
    released values and their intervals go in: post-processing, no privacy cost. An output computed from
    several noisy values (``SUM(x) / COUNT(*)``) or by a function that is not monotone (CASE, ABS, a
    window) gets none (docs/local-clean-room.md, "Results with their error").
    """
    names = {p.alias_or_name for p in select.expressions}
    out = {}
    for projection in select.expressions:
        node = _unaliased(projection)
        found = [a for a in node.find_all(exp.AggFunc) if a.sql() in errors and not isinstance(a.parent, exp.Window)]
        if len(found) != 1 or not _monotone_in(found[0], node):
            continue
        name = projection.alias_or_name
        taken = [name + suffix for _, suffix in ERROR_SUFFIXES if name + suffix in names]
        if taken:
            raise LocalLimitation(f"output columns {taken} clash with the error columns the local clean room "
                                  f"adds beside '{name}'; rename them")
        index = errors[found[0].sql()]
        if found[0] is node:
            out[name] = [exp.alias_(exp.column(f"__e{index}_{part}"), name + suffix)
                         for part, suffix in ERROR_SUFFIXES]
            continue
        at = {end: _replaced(node, found[0], exp.column(f"__e{index}_{end}")) for end in ("lo", "hi")}
        line = {end: _replaced(node, found[0], exp.column(f"__e{index}_{end}"), unrounded=True) for end in ("lo", "hi")}
        slope = exp.Div(this=exp.Abs(this=exp.Sub(this=exp.paren(line["hi"]), expression=exp.paren(line["lo"]))),
                        expression=exp.Nullif(this=exp.Sub(this=exp.column(f"__e{index}_hi"),
                                                           expression=exp.column(f"__e{index}_lo")),
                                              expression=exp.Literal.number(0)))
        sd = exp.Mul(this=exp.column(f"__e{index}_sd"), expression=slope)
        low = exp.Least(this=at["lo"].copy(), expressions=[at["hi"].copy()])
        high = exp.Greatest(this=at["lo"], expressions=[at["hi"]])
        out[name] = [exp.alias_(e, name + suffix) for e, (_, suffix) in zip((sd, low, high), ERROR_SUFFIXES)]
    return out


_ROUNDING = (exp.Round, exp.Floor, exp.Ceil)


def _monotone_in(aggregate: exp.Expression, root: exp.Expression) -> bool:
    """Whether ``root`` moves one way as ``aggregate`` (its only noisy value) does, the rest held fixed."""
    child = aggregate
    while child is not root:
        parent = child.parent
        if isinstance(parent, (exp.Paren, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Least, exp.Greatest)):
            pass
        elif isinstance(parent, (exp.Div, exp.Coalesce, *_ROUNDING)):
            if child is not parent.this:  # v / x is monotone in v; x / v, and ROUND(x, v), are not
                return False
        elif isinstance(parent, (exp.Cast, exp.TryCast)):
            if not parent.to.is_type(*exp.DataType.NUMERIC_TYPES):
                return False
        else:
            return False
        child = parent
    return True


def _replaced(root: exp.Expression, aggregate: exp.Expression, value: exp.Expression,
              unrounded: bool = False) -> exp.Expression:
    """A copy of ``root`` with ``value`` for ``aggregate``; ``unrounded``: ROUND / FLOOR / CEIL and casts
    to an integer on its path left out (what the slope of a rounded value is taken from)."""
    aggregate.meta["__noisy"] = True
    try:
        tree = root.copy()
    finally:
        del aggregate.meta["__noisy"]
    target = next(n for n in tree.walk() if n.meta.get("__noisy"))
    if unrounded:
        node = target.parent
        while node is not None:
            above = node.parent
            if isinstance(node, _ROUNDING) or (isinstance(node, (exp.Cast, exp.TryCast))
                                               and node.to.is_type(*exp.DataType.INTEGER_TYPES)):
                inner = node.this
                if node is tree:
                    tree = inner.pop()
                else:
                    node.replace(inner)
            node = above
    if target is tree:
        return value.copy()
    target.replace(value.copy())
    return tree


def _error(parts: pa.Table, r: _Release):
    """(sd, low, high) of each row's released value of ``r`` (localroom/intervals.py)."""
    def column(name):
        return np.nan_to_num(np.asarray(parts.column(name).to_numpy(zero_copy_only=False), dtype=float))

    sigmas = {p.part: p.sigma for p in r.parts}
    if r.kind in ("COUNT", "COUNT_DISTINCT", "SUM"):
        return intervals.plain(column(f"__a{r.index}"), r.parts[0].sigma, r.parts[0].integer)
    s, c = column(f"__a{r.index}_s"), np.maximum(column(f"__a{r.index}_c"), 0)
    if r.kind == "AVG":
        return intervals.average(s, c, sigmas["sum"], sigmas["count"], r.bounds)
    return intervals.deviation(s, column(f"__a{r.index}_q"), c,
                               (sigmas["sum"], sigmas["sum of squares"], sigmas["count"]), r.bounds, r.population)


def _square_shift(bounds: tuple[float, float]) -> float:
    """What each squared deviation is centred by (half^2 / 2): localroom/privacy.aggregate_noise."""
    half = (bounds[1] - bounds[0]) / 2
    return half * half / 2


def _released(r: _Release) -> exp.Expression:
    """The aggregate's value from its noisy parts; AVG and STDDEV kept within what their bounds allow."""
    col, num = exp.column, exp.Literal.number
    if r.kind not in ("AVG", "STDDEV"):
        return col(f"__a{r.index}")
    low, high = r.bounds
    s, c = col(f"__a{r.index}_s"), col(f"__a{r.index}_c")
    if r.kind == "AVG":
        mean = exp.Add(this=num(repr((low + high) / 2)),
                       expression=exp.Div(this=s, expression=exp.Greatest(this=c, expressions=[num(1)])))
        return exp.Least(this=exp.Greatest(this=mean, expressions=[num(repr(low))]), expressions=[num(repr(high))])
    half = (high - low) / 2
    q = exp.Paren(this=exp.Add(this=col(f"__a{r.index}_q"), expression=exp.Mul(
        this=col(f"__a{r.index}_c"), expression=num(repr(_square_shift(r.bounds))))))
    n = exp.Greatest(this=c, expressions=[num(1 if r.population else 2)])
    mean_sq = exp.Div(this=exp.Mul(this=s, expression=s.copy()), expression=n.copy())
    spread = exp.Paren(this=exp.Sub(this=q, expression=mean_sq))
    var = exp.Div(this=spread, expression=n.copy() if r.population else
                  exp.Paren(this=exp.Sub(this=n.copy(), expression=num(1))))
    most = num(repr(half)) if r.population else exp.Mul(
        this=num(repr(half)), expression=exp.Sqrt(this=exp.Div(this=exp.cast(n.copy(), "DOUBLE"), expression=exp.Paren(
            this=exp.Sub(this=n.copy(), expression=num(1))))))
    return exp.Least(this=exp.Sqrt(this=exp.Greatest(this=var, expressions=[num(0)])), expressions=[most])


def _materialize(room: LocalCleanRoom, select: exp.Select, extra: list[exp.Expression],
                 params) -> list[exp.Expression] | None:
    """Join and filter once into a temp table of the columns the final SELECT needs.

    The aggregation and the identity counts then both read __input instead
    of joining twice. ``select`` is rewritten to read it; the rewritten
    ``extra`` expressions are returned. None (nothing changed) when the final
    SELECT holds a subquery, which may refer to the joined rows.
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


def _classify(calls) -> list[_Aggregate]:
    aggregates = []
    for index, node in enumerate(calls):
        this = node.this
        distinct = isinstance(this, exp.Distinct)
        argument = this.expressions[0] if distinct else (None if isinstance(this, exp.Star) else this)
        aggregates.append(_Aggregate(index, node, argument, distinct))
    return aggregates


def _agg(cls, argument: exp.Expression | None, distinct: bool) -> exp.Expression:
    if argument is None:
        return cls(this=exp.Star())
    inner = argument.copy()
    return cls(this=exp.Distinct(expressions=[inner]) if distinct else inner)


def _output_of(select: exp.Select, node: exp.Expression) -> str:
    """The output column an aggregate feeds (HAVING or ORDER BY when it is only used there)."""
    for projection in select.expressions:
        if any(isinstance(n, exp.AggFunc) and n.sql() == node.sql() for n in projection.walk()):
            return projection.alias_or_name
    return "HAVING/ORDER BY"


def _part_label(kind: str, part: str) -> str:
    return f"{kind} ({part})" if kind in ("AVG", "STDDEV") else kind

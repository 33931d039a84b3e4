"""Phase 1 of several DP templates as one DuckDB query, where they read the same rows.

`run --all` over templates that join the same tables the same way would make the
engine build the same join once per template: of a phase-1 query over two
million-row tables, the join is most of the time (about 0.09 s of 0.12 s). Here
those templates' phase-1 queries become one: the join once, each template's
WHERE a boolean column, each template's parts its aggregates with
``FILTER (WHERE <its column>)``, and each template's groups one grouping set of
``GROUP BY GROUPING SETS`` (told apart by ``GROUPING()``). Each template's table
is then what its own query returns (a group only where one of its rows passes
its WHERE), stored where ``LocalCleanRoom.cached`` looks first.

The same query counts the most rows any user has among the rows it reads: the
bound on a user's rows that decides whether a template's rows need truncating to
its contribution limit and whether users are counted with DISTINCT
(``Plan.rows_bound``). Counted over the joined rows, materialized once, it costs
less than each table's key counts it replaces (0.04 s against 0.1 s at a million
rows); the templates are planned as if each user had one row, and a template whose
plan from the counted bound differs (a truncation, a DISTINCT) keeps only the bound
and runs its own query.

It changes how the exact parts are computed, never what they are or what is
released: noise, thresholds and charges stay per template, in its own run.
A template is left to its own query where the shapes differ (a truncation to the
contribution limit, CTEs, no GROUP BY, a parameter in the join) or its parts are
already stored. If the combined query fails (a template's expression can fail on
rows another template's WHERE removes), nothing is kept and each template runs
its own query as before, with its own error.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlglot import exp

from localroom.engine import LocalCleanRoom, LocalLimitation, PartsQuery, Plan, _with_clauses, result_key, used_params


def prefetch(room: LocalCleanRoom, runs: list[tuple[Plan, dict[str, Any]]]) -> int:
    """Compute the phase-1 parts of ``runs`` (plan, typed parameters) that share their rows in one query
    per shared FROM and user; the number of templates whose parts are now ready.

    A template whose bound on the rows per user (``Plan.rows_bound``) is not stored yet is planned as if
    each user had one row, and the combined query counts the most rows any user has among the rows the
    templates read: the bound. Its parts are kept where its own query, planned from that bound, is the
    one computed; the bound is kept in any case (its run needs no key counts: localroom/engine.py).
    """
    ready = getattr(room.db, "ready", None)  # the DuckDB backend's; Spark runs each template's own query
    if ready is None:
        return 0
    shared: dict[tuple[str, str], list[_Member]] = defaultdict(list)
    for plan, params in runs:
        if plan.private is None or not isinstance(plan.root.expression, exp.Select):
            continue
        try:
            member = _member(room, plan, params)
        except (*room.db.errors, LocalLimitation):
            continue  # the tables' key counts: a failure is the template's own, in its run
        query = member.query
        if query.truncated or query.with_ is not None or not query.groups:
            continue
        source = _with_from(query.rows)
        if any(source.find_all(exp.Placeholder)):
            continue
        if room.db.stored("parts", member.text, member.used, plan.analysis.tables):
            continue
        shared[(source.sql(dialect=room.dialect), plan.private.user.sql(dialect=room.dialect))].append(member)
    done = 0
    for members in shared.values():
        if len(members) < 2:
            continue
        sql, params, masks = combined([(m.query, m.used) for m in members], room.dialect)
        try:
            table = room.db.sql(sql, params)
        except (*room.db.errors, LocalLimitation):
            continue  # each template runs its own query, and meets its own error
        bound = table.column("__bound")[0].as_py() if table.num_rows else 0  # no rows: none for any user
        for i, m in enumerate(members):
            if m.assumed:  # the counted bound is the run's (and stored for the data): it takes no key counts
                room.rows_bound(m.rows_text, m.params, m.plan.analysis.tables, lambda: bound)
                if m.plan.parts_query(room, m.params, assume=bound).sql(room.dialect) != m.text:
                    continue  # its run truncates, or counts users with DISTINCT: its own query
            ready[result_key("parts", m.text, m.used)] = split(table, i, m.query, masks[i])
            done += 1
    return done


@dataclass
class _Member:
    plan: Plan
    params: dict[str, Any]
    query: PartsQuery
    text: str  # the phase-1 query's SQL
    used: dict[str, Any]  # the parameters it uses
    rows_text: str  # the aggregation's input, before any truncation: the bound's key
    assumed: bool  # planned with one row per user: the combined query counts the bound


def _member(room: LocalCleanRoom, plan: Plan, params: dict[str, Any]) -> _Member:
    """``plan``'s phase 1: from its stored bound where this data has one, else as if each user had one row."""
    query = plan.parts_query(room, params, assume=1)
    rows_text = query.rows.sql(dialect=room.dialect)
    assumed = not room.db.stored("bound", rows_text, used_params(rows_text, room.dialect, params),
                                 plan.analysis.tables)
    if not assumed:  # a later run over the same data: planned from the stored bound
        query = plan.parts_query(room, params)
    text = query.sql(room.dialect)
    return _Member(plan, params, query, text, used_params(text, room.dialect, params), rows_text, assumed)


def combined(members: list[tuple[PartsQuery, dict[str, Any]]], dialect: str) -> tuple[str, dict[str, Any], list[int]]:
    """One query for ``members`` (phase-1 queries over the same FROM, joins and user, each with its
    parameters): the SQL, its parameters, and the GROUPING() value of each member's grouping set. Each row
    also has ``__bound``, the most rows any user has among the rows some member's WHERE lets in."""
    inner, outer, sets, params = [], [], [], {}
    for i, (query, used) in enumerate(members):
        rows = query.rows.copy()
        for marker in rows.find_all(exp.Placeholder):
            marker.set("this", f"b{i}_{marker.name}")
        params.update({f"b{i}_{name}": value for name, value in used.items()})
        inner += [exp.alias_(p.this, f"b{i}{p.alias}") for p in rows.expressions]
        inner.append(exp.alias_(exp.Paren(this=rows.args["where"].this), f"b{i}__w"))
        outer += [f"{_filtered(p.this, i).sql(dialect=dialect)} AS b{i}{p.alias}" for p in query.parts[query.groups:]]
        sets.append([f"b{i}__g{j}" for j in range(query.groups)])
    keys = [c for s in sets for c in s]
    # GROUPING(a, b, ...) has a bit per argument, the first the highest, set where the row is not grouped by it.
    masks = [sum(1 << (len(keys) - 1 - k) for k, c in enumerate(keys) if c not in s) for s in sets]
    grouping = f"GROUPING({', '.join(keys)})"
    # A member's groups are those one of its rows reaches (its own query's); sorted by grouping set, each
    # member's rows are one slice of the result (split).
    reached = " ".join(f"WHEN {mask} THEN COUNT(*) FILTER (WHERE b{i}__w) > 0" for i, mask in enumerate(masks))
    rows = _with_from(members[0][0].rows)
    rows.set("expressions", inner)
    # The bound over the same joined rows (materialized once): cheaper than each table's key counts.
    anyone = " OR ".join(f"b{i}__w" for i in range(len(members)))
    bound = f"(SELECT max(c) FROM (SELECT count(*) AS c FROM __dp_in WHERE {anyone} GROUP BY b0__u))"
    sql = (f"WITH __dp_in AS MATERIALIZED ({rows.sql(dialect=dialect)}) "
           f"SELECT {grouping} AS __set, {', '.join(keys)}, {', '.join(outer)}, {bound} AS __bound FROM __dp_in "
           f"GROUP BY GROUPING SETS ({', '.join('(' + ', '.join(s) + ')' for s in sets)}) "
           f"HAVING CASE {grouping} {reached} END ORDER BY __set")
    return sql, params, masks


def split(table, i: int, query: PartsQuery, mask: int):
    """Member ``i``'s rows of the combined result (sorted by grouping set), as its own phase-1 query names
    them: a slice, without pyarrow.compute (whose import alone costs what this module saves a template)."""
    sets = np.asarray(table.column("__set"))
    start, end = np.searchsorted(sets, mask, side="left"), np.searchsorted(sets, mask, side="right")
    names = [p.alias for p in query.parts]  # the groups' __g<j> first
    return table.slice(start, end - start).select([f"b{i}{n}" for n in names]).rename_columns(names)


def _with_from(rows: exp.Select) -> exp.Select:
    """``SELECT * FROM ... JOIN ...`` of ``rows``: what two members must share to be combined."""
    return _with_clauses(exp.select("*"), rows, ("from_", "joins"))


def _filtered(node: exp.Expression, i: int) -> exp.Expression:
    """``node`` over member ``i``'s columns, each aggregate in it counting only the rows of its WHERE."""
    def columns(n: exp.Expression) -> exp.Expression:
        return exp.column(f"b{i}{n.name}") if isinstance(n, exp.Column) else n

    def filtered(n: exp.Expression) -> exp.Expression:
        # A replaced node is not descended into: columns are renamed first, in their own pass.
        if isinstance(n, exp.AggFunc):
            return exp.Filter(this=n.copy(), expression=exp.Where(this=exp.column(f"b{i}__w")))
        return n

    return node.transform(columns).transform(filtered)

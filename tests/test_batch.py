"""localroom/batch.py: one query for the phase 1 of several DP templates that read the same rows.

Each template's parts from the combined query must be what its own phase-1 query returns (same columns,
types, groups and values), over the shipped templates and the parity suite's DP templates; the runner's
`run --all` must release what each template run alone releases; a failing combined query must leave
every template to its own query.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import duckdb

from localroom import batch
from localroom.engine import LocalCleanRoom, result_key, used_params
from localroom.privacy import SeededNoise, calibrate
from model.collaboration import from_stack_files
from model.parameters import to_python
from model.templates import parse_query
from model.validator import validate
from tests.harness import ROOT
from tests.parity_templates import PRIVATE
from tests.test_validator import write_template

CAL = calibrate(10, 20)


def runs(folder: Path, room: LocalCleanRoom, collab, settings):
    """(plan, typed parameters) of the shipped templates and the parity suite's DP templates."""
    queries = list(settings.analyst.queries)
    queries += [parse_query(write_template(folder, name, sql)) for name, sql in sorted(PRIVATE.items())]
    out = []
    for query in queries:
        analysis = validate(query, collab).analysis
        out.append((room.plan(analysis, CAL), {p.name: to_python(p.type, p.default) for p in query.parameters}))
    room.load({t for plan, _ in out for t in plan.analysis.tables})
    return out


def by_groups(table, groups: int) -> list[dict]:
    keys = [f"__g{i}" for i in range(groups)]
    return sorted(table.to_pylist(), key=lambda row: [(row[k] is None, str(row[k])) for k in keys])


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):  # a sum's last bits follow the order it adds in
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def test_each_templates_parts_are_what_its_own_query_returns(tmp_path):
    settings, collab = from_stack_files("org-a")
    room = LocalCleanRoom(collab)
    planned = [(p, params) for p, params in runs(tmp_path, room, collab, settings) if p.private is not None]
    assert batch.prefetch(room, planned) >= 6  # the shipped two, and the parity templates over one table
    compared = 0
    for plan, params in planned:
        query = plan.parts_query(room, params)
        text = query.sql("duckdb")
        mine = room.db.ready.get(result_key("parts", text, used_params(text, "duckdb", params)))
        if mine is None:  # another shape (a truncation, CTEs, no GROUP BY), or no other template's FROM
            continue
        alone = room.db.sql(text, params)
        assert mine.schema == alone.schema, plan.analysis.template.name
        rows, expected = by_groups(mine, query.groups), by_groups(alone, query.groups)
        assert len(rows) == len(expected) > 0, plan.analysis.template.name
        for got, want in zip(rows, expected):
            assert all(same(got[k], want[k]) for k in want), (plan.analysis.template.name, got, want)
        compared += 1
    assert compared >= 6


def test_each_template_counts_only_the_rows_its_where_lets_in(tmp_path):
    """The combined query groups every joined row: a template's groups are only those its WHERE lets a row
    into, and its aggregates count only those rows (the shipped templates' WHEREs let every row in)."""
    settings, collab = from_stack_files("org-a")
    room = LocalCleanRoom(collab)
    join = "FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key"
    sql = {"no_web": f"SELECT m.channel, COUNT(*) AS n, AVG(m.sessions) AS a {join} WHERE m.channel <> 'web' "
                     "AND m.sessions > 120 GROUP BY m.channel",
           "few": f"SELECT m.channel, r.region, COUNT(DISTINCT r.age_group) AS ages, SUM(m.sessions) AS s {join} "
                  "WHERE r.order_count < 10 GROUP BY m.channel, r.region",
           "all": f"SELECT m.channel, SUM(m.sessions) AS s {join} GROUP BY m.channel"}
    planned = [(room.plan(validate(parse_query(write_template(tmp_path, name, text)), collab).analysis, CAL), {})
               for name, text in sql.items()]
    room.load({"retail_purchases", "media_engagement"})
    assert batch.prefetch(room, planned) == 3
    channels = []
    for plan, _ in planned:
        query = plan.parts_query(room, {})
        text = query.sql("duckdb")
        mine = room.db.ready[result_key("parts", text, {})]
        rows, expected = by_groups(mine, query.groups), by_groups(room.db.sql(text, {}), query.groups)
        assert len(rows) == len(expected) and all(same(g[k], w[k]) for g, w in zip(rows, expected) for k in w)
        channels.append(sorted(set(mine.column("__g0").to_pylist())))
    assert "web" not in channels[0] and "web" in channels[2]


def test_a_failing_combined_query_leaves_each_template_to_its_own(tmp_path, monkeypatch):
    settings, collab = from_stack_files("org-a")
    room = LocalCleanRoom(collab)
    planned = [(p, params) for p, params in runs(tmp_path, room, collab, settings)[:2]]
    own = room.db.sql

    def failing(sql, params):
        if "GROUPING SETS" in sql:
            raise duckdb.InvalidInputException("overflow")
        return own(sql, params)

    monkeypatch.setattr(room.db, "sql", failing)
    assert batch.prefetch(room, planned) == 0 and not room.db.ready
    for plan, params in planned:  # each runs its own phase 1
        assert room.execute(plan, params, SeededNoise(1)).table.num_rows > 0


def read(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_run_all_releases_what_each_template_alone_releases(tmp_path, monkeypatch):
    """Seeded, so the noise is the same: `run --all` (phase 1 combined) against each template run by itself."""
    from queryrunner.cli import main

    combined = []
    own = batch.prefetch
    monkeypatch.setattr(batch, "prefetch", lambda room, runs: combined.append(own(room, runs)) or combined[-1])

    settings, _ = from_stack_files("org-a")
    names = [q.name for q in settings.analyst.queries]
    common = ["--local", "--seed", "7", "--state-dir"]
    assert main(["run", "--all", *common, str(tmp_path / "all"), "--out", str(tmp_path / "out-all")]) == 0
    assert combined == [len(names)]
    for name in names:
        assert main(["run", name, *common, str(tmp_path / name), "--out", str(tmp_path / f"out-{name}")]) == 0
        together = next((tmp_path / "out-all" / name).glob("*.csv"))
        alone = next((tmp_path / f"out-{name}" / name).glob("*.csv"))
        assert read(together) == read(alone), name


def test_the_bound_on_rows_per_user_comes_from_the_combined_query(tmp_path, monkeypatch):
    """No key counts: the combined query counts the most rows a user has among the rows it reads (1 here),
    and each template's run plans from that bound."""
    settings, collab = from_stack_files("org-a")
    room = LocalCleanRoom(collab)
    planned = [(p, params) for p, params in runs(tmp_path, room, collab, settings)[:2]]

    def no_key_counts(*args):
        raise AssertionError("the tables' key counts were taken")

    monkeypatch.setattr(room.db, "rows_per_key", no_key_counts)
    assert batch.prefetch(room, planned) == 2
    bounds = [n for k, n in room._scalars.items() if k[0] == "bound"]
    assert bounds == [1, 1]
    for plan, params in planned:
        assert room.execute(plan, params, SeededNoise(1)).table.num_rows > 0
    assert not room.db.ready  # each run took its bound and its parts


def a_user_twice(tmp_path: Path) -> Path:
    """A copy of data/ where one user of the DP table (media_engagement) has two rows."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    media = data / "media_engagement" / "media_engagement.csv"
    lines = media.read_text().splitlines()
    media.write_text("\n".join([*lines, lines[1]]) + "\n")
    return data


def test_users_with_several_rows_get_their_own_truncating_query_and_the_same_release(tmp_path):
    """A user with two rows of the DP table: the counted bound (2) is over the contribution limit (1), so
    the parts computed as if each user had one row are dropped; each run truncates, from the counted
    bound (no key counts), and releases what it releases without the combined query (seeded noise)."""
    settings, collab = from_stack_files("org-a", data_dir=a_user_twice(tmp_path))
    together, alone = LocalCleanRoom(collab), LocalCleanRoom(collab)
    planned = [(p, params) for p, params in runs(tmp_path, together, collab, settings)[:2]]
    alone.load({t for p, _ in planned for t in p.analysis.tables})
    assert batch.prefetch(together, planned) == 0
    assert [n for k, n in together._scalars.items() if k[0] == "bound"] == [2, 2]
    together.db.rows_per_key = None  # not called: each run plans from the counted bound
    for plan, params in planned:
        assert plan.parts_query(together, params, assume=2).truncated
        got, want = (room.execute(plan, params, SeededNoise(1)).table.to_pylist() for room in (together, alone))
        assert len(got) == len(want) > 0 and all(same(g[k], w[k]) for g, w in zip(got, want) for k in w)


def test_a_run_over_unchanged_data_repeats_no_combined_query(tmp_path, monkeypatch):
    """The counted bound is stored with the parts (localroom/cache.Derived): the next run over the same data
    plans each template from it and runs nothing, also where the parts were each template's own (a user
    with two rows: its runs truncate)."""
    from localroom import cache
    from localroom.engine import DuckDB

    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    settings, collab = from_stack_files("org-a", data_dir=a_user_twice(tmp_path))
    released = []
    for attempt in range(2):
        room = LocalCleanRoom(collab, DuckDB(tmp_path / "cache"))
        planned = [(p, params) for p, params in runs(tmp_path, room, collab, settings)[:2]]
        sql = []
        own = room.db.sql
        monkeypatch.setattr(room.db, "sql", lambda text, params: sql.append(text) or own(text, params))
        assert batch.prefetch(room, planned) == 0
        released.append([room.execute(plan, params, SeededNoise(1)).table.to_pylist() for plan, params in planned])
        room.flush()
        if attempt == 1:
            assert not any("GROUPING SETS" in s for s in sql) and not any("__dp_in" in s for s in sql)
    assert all(same(g[k], w[k]) for a, b in zip(*released) for g, w in zip(a, b) for k in w)

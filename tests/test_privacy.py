"""Differential privacy that holds for any data: each probe of a DP review of the local clean room, as a test.

What a run releases may depend on the data only through calibrated noise:
bounds, contribution limits, group keys, thresholds and error text are fixed
before any row is read (localroom/bounds.py, localroom/privacy.py). The
noise scales are checked against Tumult Analytics in tests/test_privacy_oracle.py;
here, that nothing else leaks, that the noise has the declared distribution,
and that the ledger never overspends.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from localroom.engine import WITHHELD, LocalCleanRoom, PlanRefusal
from localroom.ledger import BudgetRefused, Ledger
from localroom.privacy import (DELTA, DELTA_CONVERSION, OpenDPNoise, SeededNoise, aggregate_noise, calibrate,
                               discrete_gaussian, guarantee, selection)
from model.collaboration import from_stack_files
from model.templates import parse_query
from model.validator import validate
from tests.harness import ROOT
from tests.test_localroom_cli import Runner
from tests.test_validator import write_template

DATA = ROOT / "data"
CAL = calibrate(10, 20)


@pytest.fixture(scope="module")
def shipped():
    return from_stack_files("org-a")[1]


def copy_data(tmp_path: Path, edit=None) -> Path:
    """The shipped data folder, with ``edit(rows)`` applied to media_engagement's CSV rows (header kept)."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    if edit is not None:
        path = data / "media_engagement" / "media_engagement.csv"
        with path.open(newline="") as handle:
            header, *rows = list(csv.reader(handle))
        with path.open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([header, *edit(rows)])
    return data


def collab_of(data: Path | None = None, limit: int | None = None):
    collab = from_stack_files("org-a", data_dir=data)[1]
    if limit is not None:  # org B's userContributionLimit
        table = collab.tables["media_engagement"]
        tables = dict(collab.tables, media_engagement=replace(table, rule=replace(table.rule,
                                                                                   user_contribution_limit=limit)))
        collab = replace(collab, tables=tables)
    return collab


def run(collab, tmp_path: Path, sql: str, noise=None, params=None):
    result = validate(parse_query(write_template(tmp_path, "t", sql)), collab)
    assert result.ok, [str(r) for r in result.refusals]
    room = LocalCleanRoom(collab)
    return room.execute(room.plan(result.analysis, CAL), params or {}, noise or SeededNoise(1))


def media_rows() -> list[dict]:
    with (DATA / "media_engagement" / "media_engagement.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


SUM_PURCHASES = ("SELECT m.channel, r.product_category, COUNT(*) AS customer_count, SUM(r.purchase_amount) AS total "
                 "FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key "
                 "GROUP BY m.channel, r.product_category")


# --------------------------------------------------------------------------
# Nothing the noise depends on comes from the data


def test_a_sums_sensitivity_is_the_declared_bound_not_the_largest_value(shipped, tmp_path):
    out = run(shipped, tmp_path, SUM_PURCHASES)
    total = next(n for n in out.enforcement.noise if n.column == "total")
    assert total.sensitivity == 5000  # retail_purchases.purchase_amount bounds: [0, 5000]; the data's largest: 4753.3
    assert total.sigma == pytest.approx(CAL.unit_scale * 5000)


def test_nothing_but_noisy_values_changes_when_one_user_changes(tmp_path):
    """Neighbouring data (one media user's sessions set to the bound's top, then the user removed): the same
    noise scales, sensitivities, groups, costs and contribution limit; only noisy values may differ."""
    sql = ("SELECT m.channel, m.region, COUNT(*) AS n, SUM(m.sessions) AS s, AVG(m.engagement_score) AS e "
           "FROM media_engagement m WHERE m.sessions >= 150 GROUP BY m.channel, m.region")
    target = media_rows()[7]["customer_key"]
    neighbours = {
        "same": None,
        "changed": lambda rows: [[*r[:4], "250", r[5]] if r[0] == target else r for r in rows],
        "removed": lambda rows: [r for r in rows if r[0] != target],
    }
    seen = {}
    for name, edit in neighbours.items():
        out = run(collab_of(copy_data(tmp_path / name, edit)), tmp_path / name, sql, SeededNoise(5))
        e = out.enforcement
        seen[name] = (e.noise, dict(e.usage), e.user_contribution_limit, e.suppressed_rows,
                      [(r["channel"], r["region"]) for r in out.table.to_pylist()])
    assert seen["same"] == seen["changed"] == seen["removed"]
    assert len(seen["same"][4]) == 16  # every declared channel x region, whatever the data


def test_a_column_of_zeros_is_still_noised(tmp_path):
    zeros = collab_of(copy_data(tmp_path, lambda rows: [[*r[:4], "0", r[5]] for r in rows]))
    out = run(zeros, tmp_path, "SELECT m.channel, SUM(m.sessions) AS s FROM media_engagement m GROUP BY m.channel")
    (entry,) = out.enforcement.noise
    assert entry.sigma == pytest.approx(CAL.unit_scale * 250)
    assert all(abs(row["s"]) > 0 for row in out.table.to_pylist())


def test_truncation_keeps_the_declared_rows_per_user(tmp_path):
    """Customers on several rows count once under userContributionLimit 1; a limit of 2 doubles the noise."""
    sql = "SELECT m.region, COUNT(*) AS n FROM media_engagement m GROUP BY m.region"
    tripled = copy_data(tmp_path, lambda rows: rows + rows[:900] + rows[:900])
    exact = Counter(r["region"] for r in media_rows())
    out = run(collab_of(tripled), tmp_path, sql, ZeroNoise())
    assert {r["region"]: r["n"] for r in out.table.to_pylist()} == exact  # one row per user kept
    twice = run(collab_of(tripled, limit=2), tmp_path, sql, ZeroNoise())
    assert sum(r["n"] for r in twice.table.to_pylist()) == len(media_rows()) + 900
    assert twice.enforcement.noise[0].sigma == pytest.approx(2 * CAL.unit_scale)


def test_rows_without_a_user_are_not_aggregated(shipped, tmp_path):
    """An outer join's unmatched retail rows have no media user: adding one could remove them, so they never count."""
    sql = ("SELECT r.region, COUNT(*) AS n FROM retail_purchases r LEFT JOIN media_engagement m "
           "ON r.customer_key = m.customer_key GROUP BY r.region")
    out = run(shipped, tmp_path, sql, ZeroNoise())
    assert sum(r["n"] for r in out.table.to_pylist()) == 1800  # the shared customers only, not retail's 3000


def test_averages_and_deviations_stay_within_their_bounds(shipped, tmp_path):
    sql = ("SELECT m.channel, AVG(m.sessions) AS a, STDDEV(m.sessions) AS sd FROM media_engagement m "
           "WHERE m.sessions < 3 GROUP BY m.channel")  # tiny groups: the noise dominates
    for seed in range(5):
        for row in run(shipped, tmp_path, sql, SeededNoise(seed)).table.to_pylist():
            assert 0 <= row["a"] <= 250 and 0 <= row["sd"] <= 125 * math.sqrt(2)


# --------------------------------------------------------------------------
# Which groups appear


def test_declared_group_keys_appear_whatever_the_data(tmp_path):
    no_email = collab_of(copy_data(tmp_path, lambda rows: [r for r in rows if r[3] != "email"]))
    out = run(no_email, tmp_path, "SELECT m.channel, COUNT(*) AS n FROM media_engagement m GROUP BY m.channel")
    assert [r["channel"] for r in out.table.to_pylist()] == ["web", "mobile_app", "email", "social"]


def test_undeclared_group_keys_are_chosen_by_a_dp_selection(tmp_path):
    """GROUP BY a metric: its values are not declared, so only groups with many users survive the noisy threshold."""
    # 400 users with 77 sessions, 200 others each with a value of their own. (With the shipped values' ~11
    # users a group, the unseeded run released one of them about once in 2000: a 4.7-sigma draw.)
    crowded = collab_of(copy_data(tmp_path, lambda rows: [[*r[:4], "77", r[5]] for r in rows[:400]] +
                                  [[*r[:4], str(i), r[5]] for i, r in enumerate(rows[400:600])]))
    sql = "SELECT m.sessions, COUNT(*) AS n FROM media_engagement m GROUP BY m.sessions"
    for noise in (SeededNoise(3), OpenDPNoise()):
        out = run(crowded, tmp_path, sql, noise)
        assert [r["sessions"] for r in out.table.to_pylist()] == [77]  # 400 users; every other value one
        assert out.enforcement.usage == Counter({"COUNT": 1, "COUNT_DISTINCT": 1})  # the selection is charged
    chosen = selection(CAL, 1)
    assert chosen.delta <= CAL.selection_delta and chosen.threshold > 40


def test_a_filter_on_one_users_value_does_not_make_a_group_appear(shipped, tmp_path):
    one = media_rows()[3]
    sql = (f"SELECT m.sessions, COUNT(*) AS n FROM media_engagement m WHERE m.engagement_score = "
           f"{one['engagement_score']} AND m.sessions = {one['sessions']} GROUP BY m.sessions")
    assert run(shipped, tmp_path, sql, OpenDPNoise()).table.num_rows == 0


def test_selection_threshold_is_the_smallest_within_its_delta():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    for limit in (1, 2, 5):
        chosen = selection(CAL, limit)
        below = dp.m.make_gaussian_threshold(dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
                                             dp.l02inf_distance(dp.absolute_distance(T="i64")),
                                             scale=chosen.scale, threshold=chosen.threshold - 1)
        assert chosen.delta <= CAL.selection_delta < below.map((limit, limit, 1))[1]


# --------------------------------------------------------------------------
# Thresholds, failures


class ShiftNoise:
    """Adds a constant: shows which decisions are taken on noisy values."""

    seeded = True

    def __init__(self, shift: int):
        self.shift = shift

    def integers(self, values, scale):
        return values.astype(np.int64) + self.shift

    def reals(self, values, scale):
        return values.astype(float) + self.shift

    def select(self, counts, chosen):
        return {k for k, v in counts.items() if v + self.shift > chosen.threshold}


class ZeroNoise(ShiftNoise):
    def __init__(self):
        super().__init__(0)


def test_thresholds_beside_a_dp_table_apply_to_noisy_counts(shipped, tmp_path):
    """Groups of one or two customers: with noise pushed up they all pass org A's threshold of 3, pushed down none."""
    sql = ("SELECT r.age_group, r.region, COUNT(*) AS n FROM retail_purchases r JOIN media_engagement m "
           "ON r.customer_key = m.customer_key WHERE m.sessions <= 2 GROUP BY r.age_group, r.region")
    up, down = run(shipped, tmp_path, sql, ShiftNoise(100)), run(shipped, tmp_path, sql, ShiftNoise(-100))
    assert up.table.num_rows == 24 and up.enforcement.suppressed_rows == 0
    assert down.table.num_rows == 0 and down.enforcement.suppressed_rows == 24
    assert any(n.column == "(threshold: retail_purchases)" for n in up.enforcement.noise)


def test_a_failed_dp_run_shows_no_data_value_and_is_charged(tmp_path):
    data = copy_data(tmp_path)
    write_template(data / "queries", "overflow", "SELECT m.channel, SUM(m.sessions * 2147483647) AS s "
                                                 "FROM media_engagement m GROUP BY m.channel")
    local = Runner(tmp_path)
    code, _, err = local("run", "overflow", "--data-dir", str(data))
    assert code == 1 and "Overflow" not in err and "Traceback" not in err
    assert f"[overflow] FAILED: {WITHHELD}; the run was charged to the privacy budget" in err.splitlines()
    (charge,) = local.ledger()["charges"]
    assert charge["state"] == "failed" and charge["usage"] == {"SUM": 1}
    assert local.results("overflow") == []


def test_an_unbounded_aggregate_is_refused_before_anything_runs(shipped, tmp_path):
    sql = "SELECT m.channel, SUM(LENGTH(m.region)) AS s FROM media_engagement m GROUP BY m.channel"
    result = validate(parse_query(write_template(tmp_path, "t", sql)), shipped)
    with pytest.raises(PlanRefusal, match="cannot derive bounds for 'LENGTH"):
        LocalCleanRoom(shipped).plan(result.analysis, CAL)


def test_a_refusal_quotes_the_template_not_its_duckdb_rewrite(shipped, tmp_path):
    """localroom/spark_semantics.py rewrites DIV and SUBSTRING for DuckDB; the message still shows what was written."""
    sql = ("SELECT m.channel, SUM(LENGTH(SUBSTRING(m.region, 0, 2)) DIV 2) AS s FROM media_engagement m "
           "GROUP BY m.channel")
    result = validate(parse_query(write_template(tmp_path, "t", sql)), shipped)
    with pytest.raises(PlanRefusal) as refused:
        LocalCleanRoom(shipped).plan(result.analysis, CAL)
    assert "cannot derive bounds for 'LENGTH(SUBSTRING(m.region, 0, 2)) DIV 2'" in str(refused.value), refused.value


def test_per_user_min_max_avg_and_lag_in_a_cte_take_their_columns_declared_bounds(shipped, tmp_path):
    """dp-sql-capabilities: a CTE over a DP table computes per user (GROUP BY the user, windows PARTITION BY it).
    MAX, MIN, AVG and LAG of a bounded column lie within its bounds: the SUM over them is calibrated to the
    declared bound (250 sessions), never to the data; the values are the exact per-user ones before noise."""
    per_user = ("WITH per AS (SELECT m.customer_key, MAX(m.sessions) AS top, MIN(m.engagement_score) AS low, "
                "AVG(m.sessions) AS mean FROM media_engagement m GROUP BY m.customer_key) "
                "SELECT COUNT(*) AS n, SUM(per.top) AS tops, AVG(per.low) AS lows, SUM(per.mean) AS means FROM per")
    out = run(shipped, tmp_path, per_user, ZeroNoise())
    (row,) = out.table.to_pylist()
    users: dict[str, list[dict]] = {}
    for r in media_rows():
        users.setdefault(r["customer_key"], []).append(r)
    assert row["tops"] == pytest.approx(sum(max(int(r["sessions"]) for r in rs) for rs in users.values()))
    assert row["lows"] == pytest.approx(np.mean([min(float(r["engagement_score"]) for r in rs)
                                                 for rs in users.values()]), abs=1e-6)
    sensitivity = {n.column: n.sensitivity for n in out.enforcement.noise}
    assert sensitivity["tops"] == sensitivity["means"] == 250  # the declared bound of sessions
    lagged = ("WITH w AS (SELECT m.customer_key, m.channel, LAG(m.sessions, 1, 0) OVER (PARTITION BY m.customer_key "
              "ORDER BY m.sessions) AS prev FROM media_engagement m) "
              "SELECT w.channel, SUM(w.prev) AS p FROM w GROUP BY w.channel")
    out = run(shipped, tmp_path, lagged, ZeroNoise())
    previous: dict[str, int] = {}
    for rs in users.values():  # the row before each, in sessions order, per user (0 for the first)
        ordered = sorted(rs, key=lambda r: int(r["sessions"]))
        for before, r in zip([None, *ordered], ordered):
            previous[r["channel"]] = previous.get(r["channel"], 0) + (int(before["sessions"]) if before else 0)
    assert {r["channel"]: r["p"] for r in out.table.to_pylist()} == pytest.approx(previous)
    assert {n.column: n.sensitivity for n in out.enforcement.noise}["p"] == 250


def test_a_per_user_sum_in_a_cte_is_still_refused_as_unbounded(shipped, tmp_path):
    """A SUM grows with the user's rows, which nothing declared bounds: calibrating it would read the data."""
    sql = ("WITH per AS (SELECT m.customer_key, SUM(m.sessions) AS s FROM media_engagement m GROUP BY m.customer_key) "
           "SELECT SUM(per.s) AS total FROM per")
    result = validate(parse_query(write_template(tmp_path, "t", sql)), shipped)
    with pytest.raises(PlanRefusal, match=r"cannot derive bounds for 'per.s'.*not SUM or COUNT in a CTE"):
        LocalCleanRoom(shipped).plan(result.analysis, CAL)


def test_a_metric_without_declared_bounds_names_its_schema_file(tmp_path):
    data = copy_data(tmp_path)
    schema = data / "media_engagement" / "schema.yaml"
    schema.write_text(schema.read_text().replace(", bounds: [0, 250]", ""))
    collab = collab_of(data)
    result = validate(parse_query(write_template(tmp_path, "t", "SELECT SUM(m.sessions) AS s FROM media_engagement m")),
                      collab)
    with pytest.raises(PlanRefusal, match=r"media_engagement.sessions has none; add `bounds: \[low, high\]`.*schema.yaml"):
        LocalCleanRoom(collab).plan(result.analysis, CAL)


# --------------------------------------------------------------------------
# The noise has the declared distribution (with and without --seed)

DRAWS = 200_000


def dkw(n: int) -> float:
    """Dvoretzky-Kiefer-Wolfowitz: P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2); this eps fails a true sampler
    once in a billion runs. With 200,000 draws a scale 5% off moves the CDF by about 4 eps."""
    return math.sqrt(math.log(2 / 1e-9) / (2 * n))


def _normal_cdf(x, sigma):
    return 0.5 * (1 + np.vectorize(math.erf)(np.asarray(x) / (sigma * math.sqrt(2))))


def _discrete_gaussian_cdf(x, sigma):
    support = np.arange(-int(40 * sigma) - 1, int(40 * sigma) + 2)
    weights = np.exp(-support.astype(float) ** 2 / (2 * sigma * sigma))
    cdf = np.cumsum(weights) / weights.sum()
    return cdf[np.searchsorted(support, x)]


def _dkw_distance(draws, cdf) -> float:
    points = np.unique(draws)
    empirical = np.searchsorted(np.sort(draws), points, side="right") / len(draws)
    return float(np.max(np.abs(empirical - cdf(points))))


# OpenDP samples exactly, and slowly (about 20 us an integer, 65 us a float here): fewer of its draws.
@pytest.mark.parametrize("source, ints, reals", [(lambda: SeededNoise(2026), DRAWS, DRAWS),
                                                 (OpenDPNoise, 60_000, 20_000)], ids=["seeded", "opendp"])
def test_noise_has_the_declared_distribution(source, ints, reals):
    sigma = CAL.unit_scale
    counts = source().integers(np.zeros(ints, dtype=np.int64), sigma)
    sums = source().reals(np.zeros(reals), sigma * 250)
    assert counts.dtype == np.int64
    assert _dkw_distance(counts, lambda x: _discrete_gaussian_cdf(x, sigma)) < dkw(ints)
    assert _dkw_distance(sums, lambda x: _normal_cdf(x, sigma * 250)) < dkw(reals)
    # the User Guide's reading: "within +-usersNoisePerQuery with high probability" (95%, OpenDP's strict bound)
    assert abs(np.mean(np.abs(counts) < 20) - 0.95) < 5 * math.sqrt(0.95 * 0.05 / ints)


def test_the_test_can_tell_a_wrong_scale():
    """The distribution test fails a sampler whose scale is 5% off (and passes the right one)."""
    rng = np.random.Generator(np.random.PCG64(1))
    sigma = CAL.unit_scale
    assert _dkw_distance(discrete_gaussian(rng, sigma * 1.05, DRAWS),
                         lambda x: _discrete_gaussian_cdf(x, sigma)) > dkw(DRAWS)
    assert _dkw_distance(rng.normal(0, sigma * 0.95, DRAWS), lambda x: _normal_cdf(x, sigma)) > dkw(DRAWS)
    assert _dkw_distance(discrete_gaussian(rng, sigma, DRAWS), lambda x: _discrete_gaussian_cdf(x, sigma)) < dkw(DRAWS)


# --------------------------------------------------------------------------
# Accounting


def test_the_guarantee_per_release_and_per_period():
    epsilon, delta = guarantee(CAL, CAL.budget_rho)  # a whole period's budget
    assert epsilon == pytest.approx(10, rel=1e-5) and delta == DELTA_CONVERSION
    # every selection the period's budget could pay for, with their deltas: still within DELTA
    most = CAL.max_count("COUNT_DISTINCT")
    assert guarantee(CAL, most * CAL.unit_rho, selections=most)[1] <= DELTA
    single = guarantee(CAL, CAL.rho("AVG"))[0]
    assert 0 < single < guarantee(CAL, CAL.rho("STDDEV"))[0] < 10
    for kind in ("COUNT", "SUM", "AVG", "STDDEV"):
        parts = aggregate_noise(kind, CAL, contribution_limit=1, bounds=(0, 1))
        assert CAL.rho(kind) == pytest.approx(sum(1 / (2 * (p.sigma / p.sensitivity) ** 2) for p in parts))


def _reserve_many(path: str, runs: int, barrier) -> int:
    ledger = Ledger(Path(path), "org-a", CAL, "NONE")
    barrier.wait()
    done = 0
    for i in range(runs):
        try:
            ledger.reserve("t", f"{multiprocessing.current_process().pid}-{i}", Counter({"STDDEV": 10}))
            done += 1
        except BudgetRefused:
            pass
    return done


def test_concurrent_runs_never_spend_more_than_the_budget(tmp_path):
    """Four processes race to reserve 10 STDDEV each time (about 10% of the budget): exactly nine fit."""
    path = tmp_path / "org-a" / "privacy-budget.json"
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            done = pool.starmap(_reserve_many, [(str(path), 5, barrier)] * 4)
    ledger = Ledger(path, "org-a", CAL, "NONE")
    per_run = 10 / CAL.max_count("STDDEV")
    assert sum(done) == len(ledger.charges()) == int(1 // per_run) == 9
    assert ledger.spent() <= 1.0


def test_a_run_killed_before_writing_its_result_is_not_charged(tmp_path):
    """SIGKILL between the reservation and the result: the next run drops the reservation; a killed run whose
    result file exists stays charged (it may have been seen)."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "org-a" / "privacy-budget.json"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ledger = Ledger(path, "org-a", CAL, "NONE")
        ledger.reserve("killed", "r-killed", Counter({"COUNT": 1}), result=tmp_path / "none.csv")
        ledger.reserve("seen", "r-seen", Counter({"COUNT": 1}), result=tmp_path / "seen.csv")
        (tmp_path / "seen.csv").write_text("n\n1\n")
        # Pretend the child made both reservations, then kill it.
        data = json.loads(path.read_text())
        for charge in data["charges"]:
            charge["owner"]["pid"] = child.pid
            charge["owner"]["started"] = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        path.write_text(json.dumps(data))
        assert ledger.spent() == pytest.approx(2 / CAL.max_count("COUNT"))  # still running: both count
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert ledger.spent() == pytest.approx(1 / CAL.max_count("COUNT"))  # the one that wrote nothing is free
    ledger.reserve("next", "r-next", Counter({"COUNT": 1}), result=tmp_path / "next.csv")
    assert [c.run_id for c in ledger.charges()] == ["r-seen", "r-next"]  # and dropped by the next reservation

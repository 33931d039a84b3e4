"""The local clean room's engine: thresholds against an independent count, DP noise, the budget ledger.

What differential privacy may and may not release is tested in tests/test_privacy.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from localroom.engine import LocalCleanRoom
from localroom.ledger import Ledger, LedgerError
from localroom.privacy import SeededNoise, calibrate
from model.collaboration import from_stack_files
from model.templates import parse_query
from model.validator import validate
from tests.harness import ROOT

DATA = ROOT / "data"


@pytest.fixture(scope="module")
def room():
    settings, collab = from_stack_files("org-a")
    return settings, collab, LocalCleanRoom(collab)


def run(room, tmp_path: Path, sql: str, noise=None, params=None):
    settings, collab, engine = room
    path = tmp_path / "t.sql"
    path.write_text(f"-- description: test\n{sql}\n")
    result = validate(parse_query(path), collab)
    assert result.ok, [str(r) for r in result.refusals]
    calibration = calibrate(collab.budget.epsilon, collab.budget.users_noise_per_query)
    return engine.run(result.analysis, params or {}, noise or SeededNoise(1), calibration)


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------
# Aggregation thresholds


def test_threshold_suppression_matches_an_independent_count(room, tmp_path):
    # Org A's table: threshold of 3 distinct customer_key per output row, no DP.
    out = run(room, tmp_path, "SELECT r.region, r.age_group, r.order_count AS orders, COUNT(*) AS customers "
                              "FROM retail_purchases r GROUP BY r.region, r.age_group, r.order_count")
    identities = defaultdict(set)
    for row in rows(DATA / "retail_purchases" / "retail_purchases.csv"):
        identities[(row["region"], row["age_group"], int(row["order_count"]))].add(row["customer_key"])
    kept = {k: len(v) for k, v in identities.items() if len(v) >= 3}
    got = {(r["region"], r["age_group"], r["orders"]): r["customers"] for r in out.table.to_pylist()}
    assert got == kept  # exact counts: no noise on a table without differential privacy
    assert out.enforcement.suppressed_rows == len(identities) - len(kept) > 50
    assert out.enforcement.thresholds == {"retail_purchases": 3}


def test_threshold_counts_identities_behind_a_user_level_cte(room, tmp_path):
    out = run(room, tmp_path, "WITH big AS (SELECT region, age_group, order_count FROM retail_purchases "
                              "WHERE order_count > 30) SELECT region, age_group, COUNT(*) AS n FROM big "
                              "GROUP BY region, age_group")
    counts = Counter((r["region"], r["age_group"]) for r in rows(DATA / "retail_purchases" / "retail_purchases.csv")
                     if int(r["order_count"]) > 30)
    assert {(r["region"], r["age_group"]): r["n"] for r in out.table.to_pylist()} == \
        {k: v for k, v in counts.items() if v >= 3}


def test_threshold_counts_the_identities_behind_a_cte_that_aggregates(room, tmp_path):
    """A CTE grouped without the identity column: each final row has the identities of every input row of
    the CTE groups feeding it (the CTE's own values, including a filter on them, stay exact)."""
    out = run(room, tmp_path, "WITH per AS (SELECT r.region, r.product_category, COUNT(*) AS n, "
                              "SUM(r.order_count) AS o FROM retail_purchases r WHERE r.order_count >= 39 "
                              "AND r.age_group = '55-64' GROUP BY r.region, r.product_category) "
                              "SELECT region, SUM(n) AS customers, SUM(o) AS orders FROM per WHERE n >= 1 "
                              "GROUP BY region")
    behind, orders = defaultdict(set), defaultdict(int)
    for r in rows(DATA / "retail_purchases" / "retail_purchases.csv"):
        if int(r["order_count"]) >= 39 and r["age_group"] == "55-64":
            behind[r["region"]].add(r["customer_key"])
            orders[r["region"]] += int(r["order_count"])
    expected = {region: len(keys) for region, keys in behind.items() if len(keys) >= 3}
    assert {r["region"]: r["customers"] for r in out.table.to_pylist()} == expected
    assert {r["region"]: r["orders"] for r in out.table.to_pylist()} == {k: orders[k] for k in expected}
    assert out.enforcement.suppressed_rows == len(behind) - len(expected) >= 1


def test_counts_over_one_table_without_grouping_are_not_thresholded(room, tmp_path):
    out = run(room, tmp_path, "SELECT COUNT(*) AS n FROM retail_purchases WHERE order_count = 1")
    expected = sum(1 for r in rows(DATA / "retail_purchases" / "retail_purchases.csv") if r["order_count"] == "1")
    assert out.table.to_pylist() == [{"n": expected}] and out.enforcement.threshold_exempt


def test_row_level_output_is_suppressed_entirely(room, tmp_path):
    out = run(room, tmp_path, "SELECT r.region FROM retail_purchases r WHERE r.order_count > 35")
    assert out.table.num_rows == 0 and out.enforcement.suppressed_rows > 0
    assert out.table.column_names == ["region"]


def test_parameters_are_bound_as_typed_values_not_spliced(room, tmp_path):
    sql = "SELECT r.region, COUNT(*) AS n FROM retail_purchases r WHERE r.region = :region GROUP BY r.region"
    quoted = run(room, tmp_path, sql.replace("SELECT", "-- param: region VARCHAR\nSELECT"),
                 params={"region": "west' OR '1'='1"})
    assert quoted.table.num_rows == 0  # the value is data, not SQL
    west = run(room, tmp_path, sql.replace("SELECT", "-- param: region VARCHAR\nSELECT"), params={"region": "west"})
    assert [r["region"] for r in west.table.to_pylist()] == ["west"]


# --------------------------------------------------------------------------
# Differential privacy


DP_COUNTS = ("SELECT m.channel, m.region, m.age_group, COUNT(*) AS n FROM media_engagement m "
             "GROUP BY m.channel, m.region, m.age_group")


def test_dp_noise_is_reproducible_under_a_seed(room, tmp_path):
    a = run(room, tmp_path, DP_COUNTS, SeededNoise(42)).table.to_pylist()
    b = run(room, tmp_path, DP_COUNTS, SeededNoise(42)).table.to_pylist()
    c = run(room, tmp_path, DP_COUNTS, SeededNoise(43)).table.to_pylist()
    assert a == b and a != c


def test_dp_noise_has_the_calibrated_scale(room, tmp_path):
    """With a fixed seed: the noise on 96 groups' counts has the discrete Gaussian scale for N=20."""
    out = run(room, tmp_path, DP_COUNTS, SeededNoise(2026))
    exact = Counter((r["channel"], r["region"], r["age_group"])
                    for r in rows(DATA / "media_engagement" / "media_engagement.csv"))
    noise = np.array([r["n"] - exact[(r["channel"], r["region"], r["age_group"])] for r in out.table.to_pylist()])
    sigma = calibrate(10, 20).unit_scale
    assert out.enforcement.noise[0].sigma == pytest.approx(sigma)  # user contribution limit 1
    assert len(noise) == len(exact) == 96
    assert 0.75 * sigma < noise.std() < 1.25 * sigma and abs(noise.mean()) < 3
    assert np.any(noise != 0)


def test_calibration_follows_the_budget_and_the_noise():
    base = calibrate(10, 20)
    assert calibrate(10, 40).max_count("COUNT") > base.max_count("COUNT")  # more noise, more queries
    assert calibrate(5, 20).max_count("COUNT") < base.max_count("COUNT")  # less budget, fewer
    assert base.max_count("AVG") < base.max_count("SUM") and base.max_count("STDDEV") < base.max_count("AVG")


# --------------------------------------------------------------------------
# The ledger


class Clock:
    def __init__(self, when: dt.datetime):
        self.when = when

    def __call__(self) -> dt.datetime:
        return self.when


def test_ledger_is_charged_per_aggregation_and_survives_reopening(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=dt.timezone.utc))
    cal = calibrate(10, 20)
    ledger = Ledger(tmp_path / "org-a" / "privacy-budget.json", "org-a", cal, "CALENDAR_MONTH", clock)
    usage = Counter({"COUNT": 1, "AVG": 2})
    ledger.charge("customer_segments", "run-1", usage)
    reopened = Ledger(ledger.path, "org-a", cal, "CALENDAR_MONTH", clock)
    expected = 1 / cal.max_count("COUNT") + 2 / cal.max_count("AVG")
    assert reopened.spent() == pytest.approx(expected)
    budget = reopened.budget()
    assert budget.aggregations["COUNT"] == (cal.max_count("COUNT"), int((1 - expected) * cal.max_count("COUNT")))
    assert json.loads(ledger.path.read_text())["charges"][0]["usage"] == {"COUNT": 1, "AVG": 2}


def test_monthly_refresh_starts_a_new_budget_and_none_never_does(tmp_path):
    cal = calibrate(10, 20)
    clock = Clock(dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.timezone.utc))
    monthly = Ledger(tmp_path / "m.json", "org-a", cal, "CALENDAR_MONTH", clock)
    forever = Ledger(tmp_path / "n.json", "org-a", cal, "NONE", clock)
    for ledger in (monthly, forever):
        ledger.charge("t", "r", Counter({"SUM": 10}))
    clock.when = dt.datetime(2026, 11, 1, 0, 0, 1, tzinfo=dt.timezone.utc)
    assert monthly.spent() == 0 and monthly.budget().remaining_fraction == 1
    assert forever.spent() == pytest.approx(10 / cal.max_count("SUM"))


def test_uncharge_and_a_broken_ledger(tmp_path):
    ledger = Ledger(tmp_path / "l.json", "org-a", calibrate(10, 20), "NONE")
    ledger.charge("t", "keep", Counter({"COUNT": 1}))
    ledger.charge("t", "drop", Counter({"COUNT": 1}))
    ledger.uncharge("drop")
    assert [c.run_id for c in ledger.charges()] == ["keep"]
    ledger.path.write_text("{not json")
    with pytest.raises(LedgerError, match="cannot read the privacy budget ledger"):
        ledger.spent()
    assert not list(tmp_path.glob("*.tmp"))


def test_calibration_table_is_what_opendp_computes():
    from localroom import privacy

    assert json.loads(privacy.TABLE.read_text()) == json.loads(json.dumps(privacy.compute_table()))


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory):
    """The shipped data with some customers on two rows in both tables (user contribution limit 2)."""
    import shutil

    data = tmp_path_factory.mktemp("dup") / "data"
    shutil.copytree(DATA, data)
    for name in ("retail_purchases", "media_engagement"):
        path = data / name / f"{name}.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines + lines[1:400:3]) + "\n")
    settings, collab = from_stack_files("org-a", data_dir=data)
    return data, (settings, collab, LocalCleanRoom(collab))


def test_thresholds_count_distinct_identities_when_a_customer_has_several_rows(duplicated, tmp_path):
    data, room_ = duplicated
    out = run(room_, tmp_path, "SELECT r.region, r.age_group, r.order_count AS orders, COUNT(*) AS n_rows "
                               "FROM retail_purchases r GROUP BY r.region, r.age_group, r.order_count")
    identities, row_counts = defaultdict(set), Counter()
    for row in rows(data / "retail_purchases" / "retail_purchases.csv"):
        key = (row["region"], row["age_group"], int(row["order_count"]))
        identities[key].add(row["customer_key"])
        row_counts[key] += 1
    expected = {k: row_counts[k] for k, ids in identities.items() if len(ids) >= 3}
    assert {(r["region"], r["age_group"], r["orders"]): r["n_rows"] for r in out.table.to_pylist()} == expected
    assert any(row_counts[k] > len(identities[k]) for k in expected)  # the duplicates are in play


def test_the_local_room_finds_the_budget_in_whichever_stack_sets_it(monkeypatch):
    from model import collaboration

    real = collaboration.load_stack

    def both_set(stack, *args, **kwargs):
        settings = real(stack, *args, **kwargs)
        if stack == "org-a":  # org A also sets one
            from dataclasses import replace
            settings = replace(settings, budget=real("org-b", *args, **kwargs).budget)
        return settings

    assert from_stack_files("org-a")[1].budget.epsilon == 10  # org B's
    monkeypatch.setattr(collaboration, "load_stack", both_set)
    from model.errors import ConfigError
    with pytest.raises(ConfigError, match="both set the collaboration's privacy budget"):
        collaboration.from_stack_files("org-a")

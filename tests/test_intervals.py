"""Each noisy value's 95% interval covers the true value 95% of the time (localroom/intervals.py).

Simulated true values with the engine's own noise (the seeded discrete Gaussian and
Gaussian), then the engine end to end over many seeded runs of a shipped template.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from localroom import intervals
from localroom.engine import LocalCleanRoom
from localroom.privacy import calibrate, discrete_gaussian
from model.collaboration import from_stack_files
from model.templates import parse_query
from model.validator import validate
from tests.test_privacy import ShiftNoise, ZeroNoise
from tests.test_validator import write_template

CAL = calibrate(10, 20)
N = 20_000  # simulated releases per check: a coverage of 95% shows as 95% +- 0.5% (three standard errors)
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / N)


def rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def covered(truth, low, high) -> float:
    return float(np.mean((low <= truth) & (truth <= high)))


def test_a_count_interval_covers_95_percent_even_near_zero():
    r = rng(1)
    truth = r.integers(0, 200, N)
    sigma = CAL.unit_scale * 2
    noisy = np.maximum(truth + discrete_gaussian(r, sigma, N), 0)  # shown as at least 0, as the engine does
    sd, low, high = intervals.plain(noisy, sigma, integer=True)
    assert covered(truth, low, high) >= 0.95 - TOLERANCE and np.all(low >= 0) and np.all(sd == sigma)
    away = truth > 3 * sigma  # where no clipping happens the rate is the stated one, not more
    assert abs(covered(truth[away], low[away], high[away]) - 0.95) < 3 * math.sqrt(0.95 * 0.05 / away.sum())


def test_a_sum_interval_covers_95_percent():
    r = rng(2)
    truth = r.uniform(-1e4, 1e5, N)
    sigma = CAL.unit_scale * 5000
    _, low, high = intervals.plain(truth + r.normal(0, sigma, N), sigma, integer=False)
    assert abs(covered(truth, low, high) - 0.95) < TOLERANCE


@pytest.mark.parametrize("users", [5, 30, 300], ids=lambda n: f"{n}-users")
def test_an_average_interval_covers_at_least_95_percent(users):
    """Fieller's interval is exact for Gaussian noise; clipping to the bounds only adds coverage."""
    r, bounds = rng(users), (0.0, 250.0)
    mid = sum(bounds) / 2
    counts = r.poisson(users, N).astype(float)
    sums = np.array([r.uniform(*bounds, int(n)).sum() for n in counts])  # clamped values
    truth = np.where(counts > 0, sums / np.maximum(counts, 1), mid)
    sd_s, sd_c = CAL.unit_scale * 125, CAL.unit_scale
    s = sums - mid * counts + r.normal(0, sd_s, N)
    c = np.maximum(counts + discrete_gaussian(r, sd_c, N), 0)
    sd, low, high = intervals.average(s, c, sd_s, sd_c, bounds)
    rate = covered(truth[counts > 0], low[counts > 0], high[counts > 0])
    assert rate >= 0.95 - TOLERANCE
    if users >= 300:  # well away from the bounds the interval is no wider than it must be
        assert rate < 0.95 + TOLERANCE and np.all(low > 0) and np.median(high - low) < 0.25 * (bounds[1] - bounds[0])


@pytest.mark.parametrize("population", [False, True], ids=["samp", "pop"])
def test_a_deviation_interval_covers_about_95_percent(population):
    """The simulated interval has no exact guarantee: its coverage is measured here, at 300 users a group."""
    r, bounds, draws = rng(7), (0.0, 100.0), 2000
    mid = sum(bounds) / 2
    n = 300
    values = r.uniform(*bounds, (draws, n))
    truth = values.std(axis=1, ddof=0 if population else 1)
    shifted = values - mid
    sds = (CAL.unit_scale * 50, CAL.unit_scale * 1250, CAL.unit_scale)
    s = shifted.sum(axis=1) + r.normal(0, sds[0], draws)
    q = (shifted ** 2 - 50 * 50 / 2).sum(axis=1) + r.normal(0, sds[1], draws)  # released centred by half^2/2
    c = n + discrete_gaussian(r, sds[2], draws).astype(float)
    _, low, high = intervals.deviation(s, q, c, sds, bounds, population)
    assert abs(covered(truth, low, high) - 0.95) < 0.02


# --------------------------------------------------------------------------
# End to end: the engine's own intervals over seeded runs


SEGMENTS = ("SELECT r.age_group, r.region, COUNT(*) AS n, AVG(m.engagement_score) AS e, SUM(m.sessions) AS s, "
            "-SUM(m.sessions) / 1000 AS k, ROUND(AVG(m.engagement_score) * 10) AS e10 "
            "FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key "
            "GROUP BY r.age_group, r.region")


def test_the_engines_intervals_cover_the_true_values(tmp_path):
    from localroom.privacy import SeededNoise

    collab = from_stack_files("org-a")[1]
    analysis = validate(parse_query(write_template(tmp_path, "t", SEGMENTS)), collab).analysis
    room = LocalCleanRoom(collab)
    plan = room.plan(analysis, CAL)
    # The true values: the same plan (clamped, truncated) with no noise, and no threshold in the way.
    truth = {(row["age_group"], row["region"]): row for row in room.execute(plan, {}, ZeroNoise()).table.to_pylist()}
    hits, total = {"n": 0, "e": 0, "s": 0, "k": 0, "e10": 0}, 0  # k, e10: functions of one noisy value
    for seed in range(30):
        for row in room.execute(room.plan(analysis, CAL), {}, SeededNoise(seed)).table.to_pylist():
            exact = truth[(row["age_group"], row["region"])]
            total += 1
            for column in hits:
                hits[column] += row[f"{column}_ci95_low"] <= exact[column] <= row[f"{column}_ci95_high"]
                assert row[f"{column}_noise_sd"] > 0
    assert total == 30 * 24
    for column, count in hits.items():  # 720 intervals each: 95% +- 2.4% (three standard errors)
        assert abs(count / total - 0.95) < 3 * math.sqrt(0.95 * 0.05 / total) + 0.005, (column, count / total)


def test_an_output_computed_from_several_noisy_values_gets_no_interval(tmp_path):
    collab = from_stack_files("org-a")[1]
    sql = "SELECT m.channel, SUM(m.sessions) / COUNT(*) AS ratio, COUNT(*) AS n FROM media_engagement m GROUP BY m.channel"
    analysis = validate(parse_query(write_template(tmp_path, "t", sql)), collab).analysis
    room = LocalCleanRoom(collab)
    table = room.execute(room.plan(analysis, CAL), {}, ShiftNoise(0)).table
    assert table.column_names == ["channel", "ratio", "n", "n_noise_sd", "n_ci95_low", "n_ci95_high"]


DERIVED = ("SELECT m.channel, COUNT(*) AS n, COUNT(*) * 2 AS twice, CAST(COUNT(*) AS INT) + 1 AS more, "
           "SUM(m.sessions) AS s, -SUM(m.sessions) / 1000 AS neg_k, AVG(m.sessions) AS a, ROUND(AVG(m.sessions), 1) "
           "AS a1, CASE WHEN COUNT(*) > 5 THEN 1 ELSE 0 END AS flag, ABS(SUM(m.sessions) - 100) AS off "
           "FROM media_engagement m GROUP BY m.channel")


def test_an_output_computed_from_one_noisy_value_gets_its_interval_mapped(tmp_path):
    """A monotone function of one noisy value: the interval's ends mapped, the sd scaled by the slope."""
    collab = from_stack_files("org-a")[1]
    analysis = validate(parse_query(write_template(tmp_path, "t", DERIVED)), collab).analysis
    room = LocalCleanRoom(collab)
    table = room.execute(room.plan(analysis, CAL), {}, ShiftNoise(0)).table
    names = table.column_names
    for derived in ("twice", "more", "neg_k", "a1"):
        assert [f"{derived}{s}" for s in ("_noise_sd", "_ci95_low", "_ci95_high")] == \
            names[names.index(derived) + 1:names.index(derived) + 4]
    assert not {"flag_ci95_low", "off_ci95_low", "flag_noise_sd", "off_noise_sd"} & set(names)  # not monotone
    rows = table.to_pylist()
    assert rows
    for row in rows:
        assert (row["twice_ci95_low"], row["twice_ci95_high"]) == (2 * row["n_ci95_low"], 2 * row["n_ci95_high"])
        assert row["twice_noise_sd"] == pytest.approx(2 * row["n_noise_sd"])
        assert (row["more_ci95_low"], row["more_ci95_high"], row["more_noise_sd"]) == \
            (row["n_ci95_low"] + 1, row["n_ci95_high"] + 1, pytest.approx(row["n_noise_sd"]))
        # negated: the ends swap
        assert row["neg_k_ci95_low"] == pytest.approx(-row["s_ci95_high"] / 1000)
        assert row["neg_k_ci95_high"] == pytest.approx(-row["s_ci95_low"] / 1000)
        assert row["neg_k_noise_sd"] == pytest.approx(row["s_noise_sd"] / 1000)
        # rounded: the rounded ends, the unrounded slope (1)
        assert (row["a1_ci95_low"], row["a1_ci95_high"]) == (round(row["a_ci95_low"], 1), round(row["a_ci95_high"], 1))
        assert row["a1_noise_sd"] == pytest.approx(row["a_noise_sd"])
        assert row["a1_ci95_low"] <= row["a1"] <= row["a1_ci95_high"]


def test_a_derived_output_clashing_with_its_error_columns_is_refused_in_one_line(tmp_path):
    from localroom.engine import LocalLimitation

    collab = from_stack_files("org-a")[1]
    sql = ("SELECT m.channel, COUNT(*) * 2 AS twice, COUNT(*) AS twice_ci95_low FROM media_engagement m "
           "GROUP BY m.channel")
    analysis = validate(parse_query(write_template(tmp_path, "t", sql)), collab).analysis
    room = LocalCleanRoom(collab)
    with pytest.raises(LocalLimitation, match=r"\['twice_ci95_low'\] clash with the error columns .* 'twice'"):
        room.plan(analysis, CAL)  # at plan time: before any row is read

"""`budget --forecast`: runs of each differentially private template the budget still pays for, and the burn."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from model.budget import Burn, runs_left
from queryrunner.cli import main

UTC = dt.timezone.utc


def test_runs_left_counts_whole_runs_and_the_last_one_exactly():
    assert runs_left(0.25, 1.0) == 4  # the fourth exhausts it (needs --allow-budget-exhaustion)
    assert runs_left(0.3, 1.0) == 3
    assert runs_left(0.1, 0.3) == 3  # 0.1 * 3 is 0.30000000000000004: still three
    assert runs_left(0.5, 0.0) == 0
    with pytest.raises(ValueError):
        runs_left(0.0, 1.0)


def test_the_burn_says_when_the_budget_runs_out_or_that_the_refresh_comes_first():
    start, refresh = dt.datetime(2026, 12, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)
    fast = Burn(0.5, 0.5, start, dt.datetime(2026, 12, 5, tzinfo=UTC), refresh).describe()
    assert fast.startswith("50.00% spent in 4.0 days (12.50% a day)") and "runs out on 2026-12-09 00:00 UTC" in fast
    slow = Burn(0.1, 0.9, start, dt.datetime(2026, 12, 10, tzinfo=UTC), refresh).describe()
    assert slow.endswith("at this rate it lasts until the refresh on 2027-01-01")
    never = Burn(0.2, 0.8, start, dt.datetime(2026, 12, 3, tzinfo=UTC), None).describe()
    assert "runs out on 2026-12-11" in never and "never refreshes" in never
    assert "rate unknown" in Burn(0.0, 1.0, None, start, None).describe()


def test_the_local_forecast_matches_what_runs_cost(tmp_path):
    common = ["--local", "--state-dir", str(tmp_path / "state")]
    out = io.StringIO()
    assert main(["run", "--all", "--seed", "1", "--out", str(tmp_path / "out"), *common], stdout=io.StringIO(),
                stderr=io.StringIO()) == 0
    assert main(["budget", "--forecast", *common], stdout=out, stderr=io.StringIO()) == 0
    forecast = out.getvalue().split("== forecast")[1].split("\n\n")[0]
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")[1:]]
            for line in forecast.splitlines() if "%" in line and "|" in line}
    ledger = json.loads((tmp_path / "state" / "org-a" / "privacy-budget.json").read_text())
    spent = {c["template"]: c["fraction"] for c in ledger["charges"]}
    remaining = 1 - sum(spent.values())
    for name, (cost, left) in rows.items():
        assert cost == f"{100 * spent[name]:.2f}%"  # the cost of the run just made
        assert int(left) == int((remaining + 1e-12) // spent[name])
    assert set(rows) == {"channel_reach", "customer_segments"}
    assert "spent in" in out.getvalue() and "refresh" in out.getvalue()

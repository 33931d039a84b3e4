"""localroom.benchmark: the plain DuckDB baseline it measures the local room against, and its report."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from localroom import benchmark
from tests.harness import ROOT


def test_the_baseline_reads_each_file_with_duckdbs_own_reader_and_runs_every_template(tmp_path, monkeypatch):
    spec = benchmark.baseline_spec(ROOT / "data")
    assert spec["tables"] == {
        "media_engagement": [str(ROOT / "data" / "media_engagement" / "media_engagement.csv"), "csv"],
        "retail_purchases": [str(ROOT / "data" / "retail_purchases" / "retail_purchases.csv"), "csv"]}
    assert {t["name"]: t["params"] for t in spec["templates"]} == {
        "customer_segments": {"min_orders": ["int", "1"]}, "channel_reach": {"min_sessions": ["int", "1"]}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    ran = []
    import duckdb

    real = duckdb.DuckDBPyConnection.execute

    def recording(self, sql, *args):
        ran.append(sql)
        return real(self, sql, *args)

    monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute", recording)
    benchmark.run_baseline(path)
    assert ran[:2] == ['CREATE TABLE "media_engagement" AS SELECT * FROM read_csv(?)',
                       'CREATE TABLE "retail_purchases" AS SELECT * FROM read_csv(?)']
    assert len(ran) == 4 and all("$min_" in sql for sql in ran[2:])  # transpiled, parameters bound


@pytest.mark.parametrize("value", [7, 1.5, True, decimal.Decimal("1.25"), dt.date(2026, 1, 5),
                                   dt.datetime(2026, 1, 5, 10, 30), dt.time(10, 30), b"\x01", "text"])
def test_parameter_values_reach_the_baseline_with_their_types(value):
    decoded = benchmark._decode(json.loads(json.dumps(benchmark._encode(value))))
    assert decoded == value and type(decoded) is type(value)


def test_the_report_prints_both_ratios_against_the_goals():
    results = {"baseline": [(2.0, 600, 1.9), (2.2, 610, 2.1)], "cold": [(2.1, 500, 2.5)],
               "warm": [(0.9, 400, 0.8)]}
    text = benchmark.report(results, ROOT / "data", 2)
    cold, warm = (line.split() for line in text.splitlines()[2:4])
    assert cold[-9:] == ["2.10", "500", "1.05", "2.50", "1.32", "(goal", "<=", "1.1:", "met)"]
    assert warm[-9:] == ["0.90", "400", "0.45", "0.80", "0.42", "(goal", "<=", "0.5:", "met)"]
    assert "cold / baseline = 1.05, warm / baseline = 0.45" in text

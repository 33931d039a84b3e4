"""`run --local --engine spark`: the same plan, rules and noise on PySpark 3.5 (Clean Rooms' engine) as on DuckDB.

The Spark tests share one local SparkSession (tests/conftest.py: local[1], C1-only JIT: the JVM
starts once for the module) and are few: Spark costs seconds where DuckDB
costs milliseconds. Without pyspark they are skipped, unless REQUIRE_SPARK=1
(CI), where they fail. The flag checks need no pyspark and always run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from queryrunner import cli
from tests.harness import ROOT
from tests.test_localroom_cli import Runner
from tests.test_validator import write_template

try:
    import pyspark  # noqa: F401

    HAVE_SPARK = True
except ImportError:
    HAVE_SPARK = False

MASTER = "local[1]"
needs_spark = pytest.mark.skipif(not HAVE_SPARK and os.environ.get("REQUIRE_SPARK") != "1",
                                 reason="pyspark is not installed (venv/bin/pip install -r requirements-spark.txt); "
                                        "REQUIRE_SPARK=1 makes this a failure")


# pyspark_installed and spark: tests/conftest.py (one local session for every Spark test file).


def on(engine: str, runner: Runner, *argv: str):
    extra = ("--engine", "spark", "--spark-master", MASTER) if engine == "spark" else ("--engine", "duckdb")
    return runner(*argv, *extra)


def result(runner: Runner, template: str) -> tuple[str, dict]:
    """The saved CSV's text and its run record without what differs run to run."""
    (path,) = runner.results(template)
    record = json.loads(path.with_suffix(".json").read_text())
    return path.read_text(), {k: v for k, v in record.items() if k not in ("run_id", "finished", "seconds")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """data/ plus two templates: one DuckDB runs and Spark cannot, one whose parameter holds a quote."""
    data = tmp_path_factory.mktemp("spark") / "data"
    shutil.copytree(ROOT / "data", data)
    # regexp_matches is DuckDB's; Spark 3.5 has rlike/regexp_like, and sqlglot passes the unknown name through.
    write_template(data / "queries", "duckdb_only",
                   "SELECT r.region, COUNT(*) AS customer_count FROM retail_purchases r "
                   "INNER JOIN media_engagement m ON r.customer_key = m.customer_key "
                   "WHERE regexp_matches(r.region, '^(north|south)') GROUP BY r.region")
    (data / "queries" / "by_region.sql").write_text(
        "-- description: customers of one region by age group\n-- param: region VARCHAR default south\n"
        "SELECT r.age_group, COUNT(*) AS customer_count, SUM(r.purchase_amount) AS total_purchase\n"
        "FROM retail_purchases r INNER JOIN media_engagement m ON r.customer_key = m.customer_key\n"
        "WHERE r.region = :region GROUP BY r.age_group\n")
    for name in ("retail_purchases", "media_engagement"):  # a region whose name holds a quote
        path = data / name / f"{name}.csv"
        path.write_text(path.read_text().replace(",west,", ",o'west,"))
        schema = data / name / "schema.yaml"  # its declared values too
        schema.write_text(schema.read_text().replace('"west"', '"o\'west"'))
    return data


@needs_spark
def test_a_template_only_duckdb_accepts_fails_on_spark_with_one_line(spark, tmp_path, data):
    duck, spark_run = Runner(tmp_path / "duckdb"), Runner(tmp_path / "spark")
    code, _, err = on("duckdb", duck, "run", "duckdb_only", "--data-dir", str(data), "--seed", "1")
    assert code == 0, err
    code, _, err = on("spark", spark_run, "run", "duckdb_only", "--data-dir", str(data), "--seed", "1")
    assert code == 1 and "Traceback" not in err
    (failed,) = [line for line in err.splitlines() if "FAILED" in line]
    assert failed.startswith("[duckdb_only] FAILED: [UNRESOLVED_ROUTINE] Cannot resolve function `REGEXP_MATCHES`")
    assert "line 1 pos" not in failed  # a position in the generated SQL would mislead
    # The threshold+DP warning, the room, the budget impact, what the run releases, this line: nothing else.
    assert [line.split(":")[0].split("]")[0] for line in err.splitlines()] == [
        "warning", "local clean room", "[duckdb_only", "[duckdb_only", "[duckdb_only"]
    # Spark refused the SQL before reading a row: its message says nothing about the data, and nothing is charged.
    assert spark_run.results("duckdb_only") == [] and spark_run.ledger()["charges"] == []


@needs_spark
def test_parameters_are_bound_on_spark_a_quote_stays_data(spark, tmp_path, data):
    duck, spark_run = Runner(tmp_path / "duckdb"), Runner(tmp_path / "spark")
    argv = ("run", "by_region", "--data-dir", str(data), "--seed", "2", "--param", "region=o'west")
    assert on("duckdb", duck, *argv)[0] == 0
    code, _, err = on("spark", spark_run, *argv)
    assert code == 0, err  # spliced into the SQL, the quote would end the literal: a syntax error
    spark_csv, spark_record = result(spark_run, "by_region")
    rows = list(csv.DictReader(io.StringIO(spark_csv)))
    assert len(rows) >= 5 and spark_record["parameters"] == {"region": "o'west"}
    assert (spark_csv, spark_record) == result(duck, "by_region")


@needs_spark
@pytest.mark.parametrize("master, code, message", [
    ("spark://127.0.0.1:{port}", 1, ("error: --spark-master spark://127.0.0.1:{port}: no Spark master answers "
                                     "(127.0.0.1:{port}: Connection refused)")),
    ("sprak://127.0.0.1:7077", 2, "error: --spark-master 'sprak://127.0.0.1:7077' is not a Spark master URL"),
    ("local[0]", 2, "error: --spark-master 'local[0]' is not a Spark master URL"),
])
def test_a_bad_master_url_fails_with_one_line_before_anything_runs(pyspark_installed, tmp_path, master, code,
                                                                   message):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = Runner(tmp_path)
    got, _, err = runner("run", "--all", "--engine", "spark", "--spark-master", master.format(port=port))
    assert got == code and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(message.format(port=port))
    if code == 2:  # refused with the flags, before the templates are read
        assert len(lines) == 1
    assert not runner.out.exists() and runner.ledger()["charges"] == []


def test_engine_spark_without_pyspark_exits_2_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    runner = Runner(tmp_path)
    code, _, err = runner("run", "--all", "--engine", "spark")
    assert code == 2 and err == ("error: --engine spark needs PySpark 3.5, which is not installed: "
                                 "venv/bin/pip install -r requirements-spark.txt\n")
    assert not runner.out.exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "--all", "--local", "--spark-master", "local[2]"], "--spark-master applies only with --engine spark"),
    (["run", "--all", "--local", "--engine", "duckdb", "--spark-master", "local[2]"],
     "--spark-master applies only with --engine spark"),
    (["run", "--all", "--engine", "spark"], "--engine only applies with --local"),
    (["run", "--all", "--engine", "spark", "--spark-master", "local"],
     "--engine, --spark-master only apply with --local"),
    (["budget", "--local", "--engine", "spark"], "--engine only applies to run"),
    (["run", "--all", "--local", "--engine", "flink"], "invalid choice: 'flink'"),
])
def test_engine_flags_are_refused_by_name_where_they_mean_nothing(argv, message):
    stderr = io.StringIO()
    assert cli.main(argv, stdout=io.StringIO(), stderr=stderr) == 2
    assert message in stderr.getvalue() and stderr.getvalue().count("\n") == 1

"""`python -m queryrunner job NAME --local`: a PySpark analysis template's script on this machine's Spark.

The tests that run a script share one local SparkSession for the module (the
fixture of tests/conftest.py: local[1], started once per worker) and are few;
the refusals happen before Spark is needed and run without it. Without pyspark
the Spark tests are skipped, unless REQUIRE_SPARK=1 (CI), where they fail.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml

from queryrunner import cli
from tests.harness import ROOT
from tests.test_layering import CLOUD_SDKS, imported_after
from tests.test_localroom_access_budget import override
from tests.test_localroom_spark import MASTER, needs_spark

JOB = "retail_order_mix"
# The extra jobs below, declared in org A's stack file beside the shipped one.
EXTRA_JOBS = {
    "bad_return": ("retail_purchases", '''\
def entrypoint(context):
    return context["referencedTables"]["retail_purchases"]
'''),
    "raises": ("retail_purchases", '''\
def helper(value):
    raise ValueError(f"min_orders must be small, got {value}")


def entrypoint(context):
    purchases = context["referencedTables"]["retail_purchases"]
    if context["analysisParameters"]["mode"] == "spark":
        return {"results": {"x": purchases.select("no_such_column")}}
    helper(int(context["analysisParameters"]["min_orders"]))
'''),
    "reads_media": ("media_engagement", '''\
def entrypoint(context):
    return {"results": {"all": context["referencedTables"]["media_engagement"]}}
'''),
}


class JobRunner:
    def __init__(self, tmp_path: Path, data: Path | None = None):
        self.out, self.state, self.data = tmp_path / "results", tmp_path / "state", data

    def __call__(self, *argv: str, spark: bool = True):
        extra = ["--data-dir", str(self.data)] if self.data else []
        extra += ["--spark-master", MASTER] if spark else []
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main(["job", *argv, "--local", "--out", str(self.out), "--state-dir", str(self.state), *extra],
                        stdout=stdout, stderr=stderr)
        return code, stdout.getvalue(), stderr.getvalue()

    def runs(self, job: str) -> list[Path]:
        folder = self.out / job
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def access(self) -> dict:
        path = self.state / "org-a" / "access-budget.json"
        return json.loads(path.read_text())["tables"] if path.exists() else {}


@pytest.fixture
def extra(monkeypatch, tmp_path) -> JobRunner:
    """data/ plus the jobs above, org A declaring them all and its table usable once (lifetime)."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    for name, (table, script) in EXTRA_JOBS.items():
        folder = data / "jobs" / name
        folder.mkdir()
        (folder / "entrypoint.py").write_text(script)
        (folder / "job.yaml").write_text(f"description: test job\ntables: [{table}]\nparameters:\n"
                                         "  - {name: mode, type: VARCHAR, default: dict}\n"
                                         "  - {name: min_orders, type: INT, default: '1'}\n")
    override(monkeypatch, tmp_path, {"org-a": {"cleanrooms-collab:jobs": [JOB, *EXTRA_JOBS],
                                               "cleanrooms-collab:accessBudget": {"lifetime": 1}}})
    return JobRunner(tmp_path, data)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@needs_spark
def order_mix(rows: list[dict]) -> set[tuple]:
    """The shipped job's result rows as (region, order band, customers, total purchase)."""
    return {(r["region"], r["order_band"], int(r["customers"]), Decimal(r["total_purchase"])) for r in rows}


def independent_order_mix(min_orders: int) -> set[tuple]:
    """The shipped job's numbers from the data file, by DuckDB alone (no local room, no Spark, no pandas)."""
    source = ROOT / "data" / "retail_purchases" / "retail_purchases.csv"
    expected = duckdb.sql(
        "SELECT region, CASE WHEN order_count < 10 THEN '1-9' WHEN order_count < 20 THEN '10-19' ELSE '20+' END, "
        "count(*), sum(purchase_amount) "
        f"FROM read_csv('{source}', columns={{'customer_key': 'VARCHAR', 'age_group': 'VARCHAR', "
        "'region': 'VARCHAR', 'product_category': 'VARCHAR', 'order_count': 'INTEGER', "
        f"'purchase_amount': 'DECIMAL(10,2)'}}, header=true) WHERE order_count >= {int(min_orders)} GROUP BY ALL")
    return {(region, band, n, total) for region, band, n, total in expected.fetchall()}


def test_the_shipped_job_runs_locally_with_the_numbers_of_an_independent_count(spark, extra):
    code, out, err = extra(JOB, "--param", "min_orders=3")
    assert code == 0, err
    (run,) = extra.runs(JOB)
    rows = read_csv(run / "order_mix.csv")
    assert order_mix(rows) == independent_order_mix(3)
    assert len(rows) == 12 and list(rows[0]) == ["region", "order_band", "customers", "total_purchase"]
    record = json.loads(run.with_suffix(".json").read_text())
    assert record["job"] == JOB and record["parameters"] == {"min_orders": "3"}
    assert record["results"] == [{"name": "order_mix", "csv": f"{run.name}/order_mix.csv", "rows": 12,
                                  "columns": ["region", "order_band", "customers", "total_purchase"]}]
    assert f"== {JOB}: order_mix (run {run.name}) ==" in out and "(12 rows)" in out
    assert f"[{JOB}] SUCCESS after" in err and "Traceback" not in err
    report = (extra.out / "report.html").read_text()
    assert f'data-job="{JOB}"' in report and "Result order_mix" in report and 'class="bar"' in report
    # One use of its table, charged to the table's access budget (lifetime 1): the next run is refused first.
    assert [u["by"] for u in extra.access()["retail_purchases"]["uses"]] == [f"job:{JOB}"]
    code, out, err = extra(JOB, spark=False)
    assert code == 1 and out == "" and err == (
        f"[{JOB}] refusing to run '{JOB}': table 'retail_purchases' has no access budget left (LIFETIME 0 of 1 "
        "left); it does not renew: its owner org-a raises or edits accessBudget in its stack file (an edit resets "
        "the balance)\n")
    assert len(extra.runs(JOB)) == 1


@needs_spark
def test_a_bad_return_value_is_one_error_naming_the_script(spark, extra):
    code, out, err = extra("bad_return", "--param", "mode=frame")
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1] == (f"[bad_return] FAILED: {extra.data}/jobs/bad_return/entrypoint.py: "
                                    'entrypoint(context) returned a pyspark.DataFrame; Clean Rooms expects a dict '
                                    '{"results": {name: DataFrame}}')
    assert extra.runs("bad_return") == [] and extra.access() == {}


@needs_spark
def test_only_a_dict_of_named_dataframes_is_a_result(spark):
    from localroom.jobs import JobFailed, check_results

    frame = spark.range(1)
    script = Path("data/jobs/x/entrypoint.py")
    assert check_results({"results": {"a": frame, "b c": frame}}, script) == {"a": frame, "b c": frame}
    for returned, message in [
        (None, "returned None; Clean Rooms expects a dict"),
        ({"result": {"a": frame}}, "returned a dict without 'results' (keys: ['result'])"),
        ({"results": [frame]}, "returned 'results' as a list;"),
        ({"results": {}}, "returned no results ('results' is empty)"),
        ({"results": {"rows": [1, 2]}}, "returned result 'rows' as a list; only pyspark DataFrames are job outputs"),
        ({"results": {"": frame}}, "returned a result named ''"),
        ({"results": {"a/b": frame, "a_b": frame}}, "returned results 'a/b' and 'a_b', which are both saved as 'a_b'"),
    ]:
        with pytest.raises(JobFailed) as failed:
            check_results(returned, script)
        assert str(failed.value).startswith(f"data/jobs/x/entrypoint.py: entrypoint(context) {message}"), failed.value


@needs_spark
@pytest.mark.parametrize("mode, message", [
    ("python", "the script raised ValueError: min_orders must be small, got 7 (at {script}:2)"),
    ("spark", ("the script raised [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name "
               "`no_such_column` cannot be resolved.")),
])
def test_a_script_that_raises_exits_1_with_its_last_line_and_where(spark, extra, mode, message):
    code, out, err = extra("raises", "--param", f"mode={mode}", "--param", "min_orders=7")
    script = f"{extra.data}/jobs/raises/entrypoint.py"
    assert code == 1 and out == "" and "Traceback" not in err
    (failed,) = [line for line in err.splitlines() if "FAILED" in line]
    assert failed.startswith(f"[raises] FAILED: {message.format(script=script)}")
    if mode == "spark":
        assert failed.endswith(f"(at {script}:8)")
    assert extra.runs("raises") == [] and extra.access() == {}


@needs_spark
def test_a_job_over_a_table_under_differential_privacy_is_refused(pyspark_installed, extra):
    code, _, err = extra("reads_media", spark=False)
    assert code == 2 and err == ("error: Clean Rooms would refuse job 'reads_media'; nothing was run:\n"
                                 "  data/jobs/reads_media/job.yaml: table 'media_engagement' is under differential "
                                 "privacy, which protects SQL queries only; no job can read it\n")


@needs_spark
def test_a_table_whose_rule_does_not_allow_jobs_is_refused(pyspark_installed, monkeypatch, tmp_path):
    rule = yaml.safe_load((ROOT / "Pulumi.org-a.yaml").read_text())["config"]["cleanrooms-collab:analysisRule"]
    rule["allowJobs"] = False
    override(monkeypatch, tmp_path, {"org-a": {"cleanrooms-collab:analysisRule": rule}})
    runner = JobRunner(tmp_path)
    code, _, err = runner(JOB, spark=False)
    assert code == 2 and "Clean Rooms would refuse job 'retail_order_mix'; nothing was run" in err
    assert ("data/jobs/retail_order_mix/job.yaml: table 'retail_purchases' of org-a does not allow PySpark jobs "
            "(analysisRule.allowJobs)") in err
    assert not runner.out.exists()


@needs_spark
@pytest.mark.parametrize("argv, message", [
    (("nope",), "error: unknown job 'nope'; stack org-a declares: retail_order_mix"),
    ((JOB, "--param", "min_orders=many"), "parameter 'min_orders'='many': not an integer"),
    ((JOB, "--param", "nope=1"), "unknown parameter 'nope' for template 'retail_order_mix' (declared: min_orders)"),
    ((JOB, "--worker-type", "CR.1X"), "error: --worker-type is for AWS (a protected job's compute)"),
    ((JOB, "--timeout", "60"), "error: --timeout is for AWS (a protected job's deadline and re-runs)"),
    ((JOB, "--stack", "org-b"), ("error: stack 'org-b' declares no PySpark jobs (`jobs` in Pulumi.org-b.yaml); "
                                 "stacks that do: ['org-a'] (--stack)")),
    ((JOB, "--spark-master", "sprak://x:1"), "error: --spark-master 'sprak://x:1' is not a Spark master URL"),
])
def test_bad_input_exits_2_before_spark_starts(pyspark_installed, tmp_path, argv, message):
    runner = JobRunner(tmp_path)
    code, out, err = runner(*argv, spark=False)
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert not runner.out.exists()


def test_job_local_without_pyspark_exits_2_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    code, _, err = JobRunner(tmp_path)(JOB, spark=False)
    assert code == 2 and err == ("error: job --local needs PySpark 3.5, which is not installed: "
                                 "venv/bin/pip install -r requirements-spark.txt\n")


def test_local_job_flags_need_local_and_the_cli_imports_no_spark_or_cloud_sdk():
    stderr = io.StringIO()
    assert cli.main(["job", JOB, "--spark-master", "local[2]"], stdout=io.StringIO(), stderr=stderr) == 2
    assert stderr.getvalue() == "error: --spark-master only applies with --local (the local clean room)\n"
    loaded = imported_after("import queryrunner.cli")
    assert not loaded & {"pyspark", "py4j", *CLOUD_SDKS}, sorted(loaded & {"pyspark", "py4j", *CLOUD_SDKS})

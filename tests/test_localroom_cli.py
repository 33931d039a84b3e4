"""`python -m queryrunner run|budget --local`: files written, budget charged, exit codes, no cloud SDK."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from queryrunner import cli
from tests.harness import ROOT
from tests.test_layering import CLOUD_SDKS
from tests.test_validator import LEAKY, write_template


class Runner:
    def __init__(self, tmp_path: Path):
        self.out, self.state = tmp_path / "results", tmp_path / "state"

    def __call__(self, *argv: str):
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main([*argv, "--local", "--out", str(self.out), "--state-dir", str(self.state)]
                        if argv[0] == "run" else [*argv, "--local", "--state-dir", str(self.state)],
                        stdout=stdout, stderr=stderr)
        return code, stdout.getvalue(), stderr.getvalue()

    def results(self, template: str) -> list[Path]:
        return sorted((self.out / template).glob("*.csv")) if (self.out / template).is_dir() else []

    def ledger(self) -> dict:
        path = self.state / "org-a" / "privacy-budget.json"
        return json.loads(path.read_text()) if path.exists() else {"charges": []}


@pytest.fixture
def local(tmp_path) -> Runner:
    return Runner(tmp_path)


def test_run_all_writes_results_report_and_charges_the_budget(local):
    code, out, err = local("run", "--all", "--seed", "7")
    assert code == 0, err
    for template in ("customer_segments", "channel_reach"):
        (path,) = local.results(template)
        with path.open(newline="") as handle:
            header = next(csv.reader(handle))
        assert f"== {template} ({path.stem}) ==" in out
        assert (path.with_suffix(".json")).is_file()
    # each noisy value with its noise sd and 95% interval beside it (localroom/intervals.py)
    assert header == ["channel", "product_category",
                      "customer_count", "customer_count_noise_sd", "customer_count_ci95_low", "customer_count_ci95_high",
                      "total_purchase", "total_purchase_noise_sd", "total_purchase_ci95_low", "total_purchase_ci95_high"]
    assert "== summary ==" in out and (local.out / "report.html").is_file()
    charges = local.ledger()["charges"]
    # Each template's aggregates, and one noisy COUNT_DISTINCT for org A's aggregation threshold.
    assert {c["template"]: c["usage"] for c in charges} == {
        "customer_segments": {"COUNT": 1, "AVG": 2, "COUNT_DISTINCT": 1},
        "channel_reach": {"COUNT": 1, "SUM": 1, "COUNT_DISTINCT": 1}}
    assert {c["state"] for c in charges} == {"released"}
    code, table, _ = local("budget")
    assert code == 0 and "local-org-a" in table and "COUNT_DISTINCT" in table
    count_row = next(line for line in table.splitlines() if "| COUNT " in line)
    remaining, maximum = [int(x) for x in count_row.split("|")[3:5]]
    assert remaining < maximum


def test_same_seed_same_result(local, tmp_path):
    assert local("run", "customer_segments", "--seed", "3")[0] == 0
    other = Runner(tmp_path / "again")
    assert other("run", "customer_segments", "--seed", "3")[0] == 0
    assert local.results("customer_segments")[0].read_text() == other.results("customer_segments")[0].read_text()


@pytest.mark.parametrize("name", ["identifier_selected", "dp_not_aggregated", "dp_subquery_in_where",
                                  "dp_join_not_on_user_id", "unassociated_table", "unknown_column"])
def test_leaky_template_is_refused_with_exit_2_and_nothing_written(local, tmp_path, name):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    sql, expected = LEAKY[name]
    write_template(data / "queries", name, sql)
    code, out, err = local("run", "--all", "--data-dir", str(data))
    assert code == 2
    assert "Clean Rooms would refuse these templates; nothing was run" in err
    assert f"{name}.sql:2:" in err and all(fragment in err for fragment in expected)
    assert "Traceback" not in err and not local.out.exists() and local.ledger()["charges"] == []


BAD_LOCAL_CLI = [
    (("run", "nope"), "unknown analysis template 'nope'"),
    (("run",), "give a TEMPLATE name or --all"),
    (("run", "customer_segments", "--param", "min_orders=many"), "not an integer"),
    (("run", "customer_segments", "--param", "min_orders=9999999999"), "out of range"),
    (("run", "customer_segments", "--param", "nope=1"), "unknown parameter 'nope'"),
    (("run", "customer_segments", "--param", "min_orders"), "is not NAME=VALUE"),
    (("run", "--all", "--param", "nope=1"), "no template declares it"),
    (("run", "--all", "customer_segments"), "not both"),
    (("run", "customer_segments", "--outputs", "x.json"), "--outputs is for AWS"),
    (("run", "customer_segments", "--region", "us-east-1"), "--region is for AWS"),
    (("run", "customer_segments", "--membership-id", "x"), "--membership-id is for AWS"),
    (("run", "customer_segments", "--stack", "org-b"), "stack 'org-b' does not have the analyst role"),
    (("run", "customer_segments", "--stack", "org-c"), "no stack file Pulumi.org-c.yaml"),
    (("run", "customer_segments", "--data-dir", "/nonexistent"), "is not a folder"),
    (("run", "customer_segments", "--seed", "-1"), "--seed must be >= 0"),
    (("run", "customer_segments", "--max-rows", "-1"), "--max-rows"),
    (("run", "customer_segments", "--seed", "x"), "invalid int value"),
    # AWS-only flags would be silently ignored here: each is refused by name.
    (("run", "customer_segments", "--workers", "8"), "--workers is for AWS"),
    (("run", "customer_segments", "--worker-type", "CR.4X"), "--worker-type is for AWS"),
    (("run", "--all", "--timeout", "60", "--max-concurrency", "2"), "--timeout, --max-concurrency are for AWS"),
    (("run", "customer_segments", "--retries", "0"), "--retries is for AWS"),
    (("run", "customer_segments", "--no-distribute"), "--no-distribute is for AWS"),
    (("run", "customer_segments", "--no-refresh"), "--no-refresh is for AWS"),
]


@pytest.mark.parametrize("argv, message", BAD_LOCAL_CLI, ids=[m for _, m in BAD_LOCAL_CLI])
def test_bad_input_exits_2_with_one_line_and_runs_nothing(local, argv, message):
    code, _, err = local(*argv)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") <= 2
    assert not local.out.exists()


def test_local_flags_without_local_are_refused():
    stderr = io.StringIO()
    assert cli.main(["run", "customer_segments", "--seed", "1"], stderr=stderr) == 2
    assert "--seed only applies with --local" in stderr.getvalue()


def _exhaust(local: Runner, fraction: float) -> None:
    local.state.joinpath("org-a").mkdir(parents=True)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    local.state.joinpath("org-a", "privacy-budget.json").write_text(json.dumps({"version": 1, "charges": [
        {"at": now, "template": "earlier", "run_id": "r0", "usage": {"COUNT": 1}, "fraction": fraction}]}))


def test_run_that_would_exhaust_the_budget_is_refused_with_exit_1(local):
    _exhaust(local, 0.999)
    code, _, err = local("run", "customer_segments")
    assert code == 1 and "refusing to run 'customer_segments': it would exhaust" in err
    assert local.results("customer_segments") == [] and len(local.ledger()["charges"]) == 1


def test_allow_budget_exhaustion_runs_what_the_budget_can_still_pay_for(local):
    _exhaust(local, 0.97)  # 3% left; customer_segments costs about 2.1%
    code, _, err = local("run", "customer_segments", "--allow-budget-exhaustion", "--seed", "1")
    assert code == 0, err
    _exhaust_more = local.ledger()["charges"]
    assert len(_exhaust_more) == 2
    code, _, err = local("run", "customer_segments", "--allow-budget-exhaustion")
    assert code == 1 and "would exhaust" in err  # what is left cannot pay for it at all


def test_a_failing_run_exits_1_writes_nothing_and_charges_nothing(local, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    write_template(data / "queries", "bad_regex", "SELECT r.region, COUNT(*) AS n FROM retail_purchases r "
                                                 "WHERE REGEXP_EXTRACT(r.region, '(', 1) = '' GROUP BY r.region")
    code, _, err = local("run", "bad_regex", "--data-dir", str(data))
    assert code == 1 and "[bad_regex] FAILED:" in err and "Traceback" not in err
    assert "Invalid Input Error" in err  # no differential privacy: the engine's own message
    assert local.results("bad_regex") == [] and local.ledger()["charges"] == []


def test_interrupt_exits_130_leaving_nothing_half_written(local, monkeypatch):
    from localroom import engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.LocalCleanRoom, "execute", interrupted)
    code, _, err = local("run", "customer_segments")
    assert code == 130 and local.results("customer_segments") == [] and local.ledger()["charges"] == []


def test_the_local_path_imports_neither_pulumi_nor_boto3(tmp_path):
    probe = ("import sys, io\nfrom queryrunner.cli import main\n"
             f"code = main(['run', '--all', '--local', '--seed', '1', '--out', r'{tmp_path}/o', "
             f"'--state-dir', r'{tmp_path}/s'], stdout=io.StringIO(), stderr=io.StringIO())\n"
             "assert code == 0, code\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert {"duckdb", "model", "localroom"} <= loaded
    assert not loaded & set(CLOUD_SDKS), sorted(loaded & set(CLOUD_SDKS))


def test_data_that_does_not_match_its_schema_stops_before_any_run(local, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    path = data / "media_engagement" / "media_engagement.csv"
    lines = path.read_text().splitlines()
    fields = lines[6].split(",")
    fields[4] = "lots"  # sessions is an int
    lines[6] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    code, _, err = local("run", "--all", "--data-dir", str(data))
    assert code == 2 and "Traceback" not in err
    assert "media_engagement.csv does not match its schema: line 7: column 'sessions' value 'lots'" in err
    assert not local.out.exists() and local.ledger()["charges"] == []


def test_state_dir_must_be_a_folder(local, tmp_path):
    (tmp_path / "afile").write_text("")
    stderr = io.StringIO()
    assert cli.main(["budget", "--local", "--state-dir", str(tmp_path / "afile")], stderr=stderr) == 2
    assert "is a file; give a folder" in stderr.getvalue()


# --------------------------------------------------------------------------
# Killed and resumed (localroom/journal.py)

KILL_AFTER_FIRST = """
import os, signal, sys
from queryrunner import local
saved = local.LocalApp.save
def save(self, *args, **kwargs):
    path = saved(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the first result is written: the process dies as a closed laptop does
local.LocalApp.save = save
from queryrunner.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_all_resumes_without_releasing_anything_twice(local):
    argv = ["run", "--all", "--local", "--seed", "1", "--out", str(local.out), "--state-dir", str(local.state)]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST, *argv], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -9
    (first,) = local.results("channel_reach")
    assert local.results("customer_segments") == []
    assert [c["template"] for c in local.ledger()["charges"]] == ["channel_reach"]
    code, out, err = local("run", "--all", "--seed", "1")  # a plain re-run: it says it resumes
    assert code == 0, err
    assert "resuming the running run of" in err and "not run again: channel_reach" in err
    assert local.results("channel_reach") == [first] and len(local.results("customer_segments")) == 1
    charges = local.ledger()["charges"]  # one charge per template: nothing released twice
    assert sorted(c["template"] for c in charges) == ["channel_reach", "customer_segments"]
    assert "DONE EARLIER" in out.split("== summary ==")[1]
    code, _, err = local("run", "--all", "--seed", "1", "--resume")  # finished: nothing to resume
    assert code == 2 and "--resume: no unfinished run to resume" in err


def test_resume_refuses_a_missing_damaged_or_other_journal(local):
    code, _, err = local("run", "--all", "--resume")
    assert code == 2 and "not found" in err and local.ledger()["charges"] == []
    journal = local.state / "org-a" / "journal-all.json"
    journal.parent.mkdir(parents=True)
    journal.write_text('{"version": 1, "status": "running", "identity": {"templates": {}}, "done": {}')
    code, _, err = local("run", "--all", "--resume")
    assert code == 2 and "is damaged" in err and "move it aside" in err
    journal.write_text(json.dumps({"version": 1, "status": "running", "identity": {"templates": {"x": {}}},
                                   "done": {}}))
    code, _, err = local("run", "--all", "--resume")
    assert code == 2 and "is of another run" in err
    assert local.results("customer_segments") == [] and local.ledger()["charges"] == []


@pytest.mark.parametrize("damage, expected", [
    (lambda j: j["done"].update(customer_segments="yes"), "done.customer_segments must be an object, got a string"),
    (lambda j: j["done"].update(customer_segments=7), "done.customer_segments must be an object, got a number (7)"),
    (lambda j: j["done"]["customer_segments"].pop("path"), "done.customer_segments.path is missing"),
    (lambda j: j["done"]["customer_segments"].update(run_id=None), "done.customer_segments.run_id must be a string"),
    (lambda j: j.update(done=["customer_segments"]), "done must be an object, got a list"),
    (lambda j: j.update(status="paused"), "status 'paused' is not one of 'running', 'interrupted' or 'finished'"),
    (lambda j: j.update(version="1"), "version \"1\", this runner reads version 1"),
    (lambda j: j.pop("identity"), "identity is missing"),
    (lambda j: j.update(started=0), "started must be a string, got a number (0)"),
])
def test_a_journal_of_the_wrong_shape_is_one_line_and_runs_nothing(local, damage, expected):
    """Valid JSON, the wrong shape (as a hand edit or another program leaves it): one line naming the file and the
    key, exit 2; nothing run, charged or overwritten."""
    assert local("run", "customer_segments", "--seed", "1")[0] == 0
    journal = local.state / "org-a" / "journal-customer_segments.json"
    data = json.loads(journal.read_text())
    data["status"] = "running"  # as a killed run leaves it: a re-run would read its `done`
    damage(data)
    journal.write_text(json.dumps(data))
    before, results, charges = journal.read_text(), local.results("customer_segments"), local.ledger()["charges"]
    for argv in (["run", "customer_segments", "--seed", "1"], ["run", "customer_segments", "--resume"]):
        code, out, err = local(*argv)
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"the run journal {journal} is damaged ({expected}" in err and "move it aside" in err, err
    assert journal.read_text() == before
    assert local.results("customer_segments") == results and local.ledger()["charges"] == charges


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """`python -m queryrunner budget --local | head -1`: the pipe closes before the table is written."""
    process = subprocess.Popen([sys.executable, "-m", "queryrunner", "budget", "--local", "--state-dir",
                                str(tmp_path / "state")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the runner has started: its first write finds no reader
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and b"Traceback" not in err, err.decode()


def test_the_command_exits_with_its_code_and_everything_written(tmp_path):
    """queryrunner/__main__.py ends the process without module teardown: the exit code, the buffered output
    (a pipe is block-buffered) and the results must all be there."""
    argv = [sys.executable, "-m", "queryrunner", "run", "--all", "--local", "--seed", "3", "--state-dir",
            str(tmp_path / "state"), "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    summary = done.stdout.decode().split("== summary ==")[-1]  # the last thing printed, flushed before the exit
    assert "channel_reach" in summary and "customer_segments" in summary and "SUCCESS" in summary
    assert b"report:" in done.stderr and (tmp_path / "out" / "report.html").is_file()
    assert len(list((tmp_path / "out").glob("*/*.csv"))) == len(list((tmp_path / "out").glob("*/*.json")))
    refused = subprocess.run([*argv[:4], "no_such_template", "--local"], cwd=ROOT, capture_output=True, timeout=120)
    assert refused.returncode == 2 and b"unknown analysis template 'no_such_template'" in refused.stderr

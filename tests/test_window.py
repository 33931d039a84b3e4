"""`run --window LENGTH`: a template's window_start / window_end filled with the last whole window, aligned on
the epoch, checked before anything is sent."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from queryrunner import params
from queryrunner.cli import main
from queryrunner.outputs import Parameter, Template
from tests.harness import ROOT
from tests.test_queryrunner_run import (CSV_PART_1, OUTPUTS, Q1, SEG_ARN, SEG_ID, BUCKET, env, get_params,  # noqa: F401
                                        query, start_params, success)

UTC = dt.timezone.utc
WINDOWED = Template("hourly_reach", SEG_ARN, SEG_ID, (Parameter("window_start", "TIMESTAMP", None),
                                                      Parameter("window_end", "TIMESTAMP", None)))


@pytest.mark.parametrize("length, now, start, end", [
    ("1h", "2026-12-04 10:37:12", "2026-12-04 09:00:00", "2026-12-04 10:00:00"),
    ("15m", "2026-12-04 10:37:12", "2026-12-04 10:15:00", "2026-12-04 10:30:00"),
    ("1d", "2026-12-04 00:00:00", "2026-12-03 00:00:00", "2026-12-04 00:00:00"),  # exactly on a boundary
    ("7d", "2026-12-04 10:37:12", "2026-11-26 00:00:00", "2026-12-03 00:00:00"),  # weeks of the epoch (Thursdays)
])
def test_the_window_is_the_last_whole_one_before_now(length, now, start, end):
    moment = dt.datetime.fromisoformat(now).replace(tzinfo=UTC)
    got = params.window_bounds(length, moment)
    assert (f"{got[0]:%Y-%m-%d %H:%M:%S}", f"{got[1]:%Y-%m-%d %H:%M:%S}") == (start, end)
    # the same window from any moment inside the next one: runs in one hour cover the same rows
    assert params.window_bounds(length, moment + (got[1] - got[0]) / 2) in (got, (got[1], got[1] + (got[1] - got[0])))


@pytest.mark.parametrize("length", ["1x", "0h", "h", "1.5h", "367d", "", "-1h"])
def test_a_bad_length_is_one_problem_naming_the_flag(length):
    with pytest.raises(params.ParamError) as info:
        params.window_bounds(length, dt.datetime(2026, 12, 4, tzinfo=UTC))
    assert info.value.problems == [f"--window {length!r} must be a length such as 15m, 1h or 7d (minutes, hours "
                                   "or days, at most 366d)"]


def test_a_template_without_window_parameters_or_a_clash_is_refused():
    plain = Template("customer_segments", SEG_ARN, SEG_ID, (Parameter("min_orders", "INTEGER", "1"),))
    with pytest.raises(params.ParamError) as info:
        params.with_window({"window_end": "2026-01-01 00:00:00"}, "1h", [WINDOWED, plain], dt.datetime.now(UTC))
    assert info.value.problems == [
        "--window and --param window_end: give one of them",
        "--window: template 'customer_segments' does not declare window_start and window_end as TIMESTAMP "
        "parameters (bound to its time column)"]
    assert params.with_window({"x": "1"}, None, [plain], dt.datetime.now(UTC)) == {"x": "1"}


def test_the_cloud_run_sends_the_window_as_the_templates_parameters(env):
    outputs = {**OUTPUTS, "analysis_templates": {"hourly_reach": {
        "arn": SEG_ARN, "id": SEG_ID, "differential_privacy": False, "parameters": [
            {"name": "window_start", "type": "TIMESTAMP", "default": None},
            {"name": "window_end", "type": "TIMESTAMP", "default": None}]}}}
    sent: list[dict] = []
    env.cleanrooms.meta.events.register("provide-client-params.cleanrooms.StartProtectedQuery",
                                        lambda params, **kw: sent.append(params["sqlParameters"]["parameters"]))
    before = params.window_bounds("7d", dt.datetime.now(UTC))
    prefix = f"results/hourly_reach/{Q1}/"
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "part-00000.csv", Body=CSV_PART_1.encode())
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "_SUCCESS", Body=b"")
    from botocore.stub import ANY

    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), {
        **start_params(template="hourly_reach"), "sqlParameters": {"analysisTemplateArn": SEG_ARN, "parameters": ANY}})
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{prefix}"), get_params(Q1))

    assert env.run("run", "hourly_reach", "--window", "7d", outputs=outputs) == 0, env.err

    after = params.window_bounds("7d", dt.datetime.now(UTC))
    windows = {(f"{a:%Y-%m-%d %H:%M:%S}", f"{b:%Y-%m-%d %H:%M:%S}") for a, b in (before, after)}
    assert [(p["window_start"], p["window_end"]) for p in sent][0] in windows


def test_the_local_room_refuses_a_window_for_templates_that_declare_none(tmp_path):
    err = io.StringIO()
    code = main(["run", "customer_segments", "--local", "--window", "1h", "--state-dir", str(tmp_path / "s"),
                 "--out", str(tmp_path / "out")], stdout=io.StringIO(), stderr=err)
    assert code == 2 and "template 'customer_segments' does not declare window_start and window_end" in err.getvalue()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.csv"))


HOURLY = (ROOT / "examples" / "streaming" / "hourly_viewers.sql").read_text()  # the shipped example


@pytest.fixture
def streamed_stacks(tmp_path):
    """The two stack files with org B's table the streamed media_events sample, org A's one windowed template."""
    import shutil

    import yaml

    for name in ("Pulumi.yaml", "Pulumi.org-a.yaml", "Pulumi.org-b.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "data", tmp_path / "data")
    (tmp_path / "data" / "queries" / "hourly_viewers.sql").write_text(HOURLY)
    for stack in ("org-a", "org-b"):
        path = tmp_path / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text())
        config = document["config"]
        if stack == "org-b":
            config["cleanrooms-collab:dataset"] = "media_events"
        else:
            config["cleanrooms-collab:partners"][0]["dataset"] = "media_events"
            config["cleanrooms-collab:analyst"]["queries"] = ["hourly_viewers"]
            config.pop("cleanrooms-collab:jobs", None)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return tmp_path


def test_the_local_room_runs_each_window_and_charges_each(streamed_stacks, monkeypatch):
    """Over the streamed dataset's sample (2026-12-01): the 7-day window that holds it sees its events, an hour
    of 2026-12-04 sees none; each run is charged to the ledger."""
    common = ["--local", "--stacks-dir", str(streamed_stacks), "--data-dir", str(streamed_stacks / "data"),
              "--state-dir", str(streamed_stacks / "state"), "--out", str(streamed_stacks / "out"), "--seed", "1"]
    monkeypatch.setattr(params.windows, "bounds", _pinned(dt.datetime(2026, 12, 4, 10, 30)))
    out = io.StringIO()
    assert main(["run", "hourly_viewers", "--window", "7d", *common], stdout=out, stderr=io.StringIO()) == 0
    assert main(["run", "hourly_viewers", "--window", "1h", *common], stdout=out, stderr=io.StringIO()) == 0
    runs = sorted((streamed_stacks / "out" / "hourly_viewers").glob("*.json"))
    windows = sorted((json.loads(p.read_text())["parameters"]["window_start"],
                      json.loads(p.read_text())["parameters"]["window_end"]) for p in runs)
    assert windows == [("2026-11-26 00:00:00", "2026-12-03 00:00:00"), ("2026-12-04 09:00:00", "2026-12-04 10:00:00")]
    ledger = json.loads((streamed_stacks / "state" / "org-a" / "privacy-budget.json").read_text())
    assert [c["template"] for c in ledger["charges"]] == ["hourly_viewers", "hourly_viewers"]


def _pinned(now: dt.datetime):
    real = params.windows.bounds

    def bounds(length, _now):
        return real(length, now)

    return bounds

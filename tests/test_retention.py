"""A window longer than the data keeps: a table's ``retention`` (its schema.yaml) bounds how far back `run --window`
(in AWS and --local) and a schedule's window may reach; one line naming the flag or key, nothing run or charged."""

from __future__ import annotations

import datetime as dt
import io
import json

import pulumi
import pytest

from model import windows
from queryrunner import UsageError
from queryrunner import params
from queryrunner.cli import main
from tests.harness import PROJECT, run_stack, stack_ref
from tests.test_queryrunner_run import OUTPUTS, SEG_ARN, SEG_ID, env  # noqa: F401
from tests.test_scheduled_query import analyst, streamed_org_b
from tests.test_window import _pinned, streamed_stacks  # noqa: F401

UTC = dt.timezone.utc
KEPT = {"hourly_viewers": {"media_events": ("48h", "retention in data/media_events/schema.yaml")}}


def test_a_window_that_starts_before_the_retention_is_one_line_with_what_would_pass():
    now = dt.datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    with pytest.raises(UsageError) as info:
        params.check_retention("7d", now, KEPT, "nothing was run")
    assert str(info.value) == (
        "--window 7d: template 'hourly_viewers' would read table media_events from 2026-11-26 00:00:00, 8d 10h 30m "
        "before now, but the table keeps rows for 48h (retention in data/media_events/schema.yaml); the longest "
        "window that starts within it now is --window 1d; nothing was run")
    params.check_retention("1d", now, KEPT, "")  # starts 34h 30m ago: within 48h
    params.check_retention("7d", now, {"hourly_viewers": {}}, "")  # no retention declared: rows are kept


def test_the_window_is_checked_where_it_starts_not_only_by_its_length():
    """A 1d window is shorter than 36h, but the last whole day before 13:00 started 37h earlier."""
    keeps = {"t": {"media_events": ("36h", "here")}}
    params.check_retention("1d", dt.datetime(2026, 12, 4, 11, 0, tzinfo=UTC), keeps, "")
    with pytest.raises(UsageError) as info:
        params.check_retention("1d", dt.datetime(2026, 12, 4, 13, 0, tzinfo=UTC), keeps, "")
    assert "from 2026-12-03 00:00:00, 1d 13h before now" in str(info.value)
    # What it proposes passes now (windows of 26h are aligned on the epoch too: not every shorter one would).
    assert "the longest window that starts within it now is --window 26h;" in str(info.value)
    params.check_retention("26h", dt.datetime(2026, 12, 4, 13, 0, tzinfo=UTC), keeps, "")
    assert windows.reach(dt.timedelta(hours=27), dt.datetime(2026, 12, 4, 13, 0)) > dt.timedelta(hours=36)


def test_a_window_given_by_hand_may_not_start_past_the_retention_either():
    now = dt.datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    given = {"window_start": "2026-12-01 00:00:00", "window_end": "2026-12-04 00:00:00"}
    with pytest.raises(UsageError) as info:
        params.check_retention(None, now, KEPT, "nothing was run", given)
    assert str(info.value) == (
        "--param window_start=2026-12-01 00:00:00: template 'hourly_viewers' would read table media_events from "
        "2026-12-01 00:00:00, 3d 10h 30m before now, but the table keeps rows for 48h (retention in "
        "data/media_events/schema.yaml); give a window_start at or after 2026-12-02 10:30:00; nothing was run")
    params.check_retention(None, now, KEPT, "", {**given, "window_start": "2026-12-02 10:30:00"})  # what it says
    params.check_retention(None, now, KEPT, "", {"window_start": "2026-12-02T09:00:00-02:00"})  # 11:00 UTC: 23h30m ago
    params.check_retention(None, now, KEPT, "", {"window_start": "yesterday"})  # not a time: the parameter says


@pytest.fixture
def kept_48h(streamed_stacks):  # noqa: F811
    schema = streamed_stacks / "data" / "media_events" / "schema.yaml"
    schema.write_text(schema.read_text() + "retention: 48h\n")
    return streamed_stacks


def test_the_local_room_refuses_a_window_past_the_retention_before_anything_runs(kept_48h, monkeypatch):
    common = ["--local", "--stacks-dir", str(kept_48h), "--data-dir", str(kept_48h / "data"),
              "--state-dir", str(kept_48h / "state"), "--out", str(kept_48h / "out"), "--seed", "1"]
    monkeypatch.setattr("queryrunner.local.LocalApp.wall", lambda self: dt.datetime(2026, 12, 4, 10, 30, tzinfo=UTC))
    err = io.StringIO()
    assert main(["run", "hourly_viewers", "--window", "7d", *common], stdout=io.StringIO(), stderr=err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --window 7d: template 'hourly_viewers' would read table media_events from "
                               "2026-11-26 00:00:00") and "keeps rows for 48h (retention in " in lines[0]
    assert lines[0].endswith("the longest window that starts within it now is --window 1d; nothing was run and "
                             "nothing charged")
    assert not (kept_48h / "out").exists() or not list((kept_48h / "out").rglob("*.csv"))
    assert not (kept_48h / "state" / "org-a" / "privacy-budget.json").exists()
    # the same window given by hand: the same refusal
    err = io.StringIO()
    by_hand = ["--param", "window_start=2026-11-26 00:00:00", "--param", "window_end=2026-12-03 00:00:00"]
    assert main(["run", "hourly_viewers", *by_hand, *common], stdout=io.StringIO(), stderr=err) == 2
    [line] = err.getvalue().splitlines()
    assert line.startswith("error: --param window_start=2026-11-26 00:00:00: template 'hourly_viewers' would read "
                           "table media_events from 2026-11-26 00:00:00"), line
    assert not (kept_48h / "state" / "org-a" / "privacy-budget.json").exists()
    # within the retention it runs (and is charged)
    assert main(["run", "hourly_viewers", "--window", "1d", *common], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    ledger = json.loads((kept_48h / "state" / "org-a" / "privacy-budget.json").read_text())
    assert len(ledger["charges"]) == 1


def test_the_cloud_runner_refuses_it_from_the_stack_output_before_sending(env):  # noqa: F811
    outputs = {**OUTPUTS, "analysis_templates": {"hourly_reach": {
        "arn": SEG_ARN, "id": SEG_ID, "differential_privacy": True, "retention": {"media_events": "48h"},
        "parameters": [{"name": "window_start", "type": "TIMESTAMP", "default": None},
                       {"name": "window_end", "type": "TIMESTAMP", "default": None}]}}}
    assert env.run("run", "hourly_reach", "--window", "7d", outputs=outputs) == 2  # no request stubbed: none sent
    [line] = env.err.strip().splitlines()
    assert line.startswith("error: --window 7d: template 'hourly_reach' would read table media_events from ")
    assert ("keeps rows for 48h (stack output analysis_templates.hourly_reach.retention); the longest window "
            "that starts within it now is --window 1d; nothing was sent") in line
    by_hand = ("--param", "window_start=2020-01-01 00:00:00", "--param", "window_end=2020-01-02 00:00:00")
    assert env.run("run", "hourly_reach", *by_hand, outputs=outputs) == 2  # none sent either
    [line] = env.err.strip().splitlines()[-1:]
    assert line.startswith("error: --param window_start=2020-01-01 00:00:00: template 'hourly_reach' would read ")
    assert line.endswith("nothing was sent"), line
    outputs["analysis_templates"]["hourly_reach"]["retention"] = {"media_events": "2 days"}
    assert env.run("run", "hourly_reach", "--window", "1h", outputs=outputs) == 2
    assert "analysis_templates.hourly_reach.retention.media_events' must be a length such as 48h" in env.err


@pytest.fixture(scope="module")
def data_36h(tmp_path_factory):
    import shutil

    from tests.harness import ROOT
    from tests.test_scheduled_query import HOURLY

    folder = tmp_path_factory.mktemp("data") / "data"
    shutil.copytree(ROOT / "data", folder)
    (folder / "queries" / "hourly_viewers.sql").write_text(HOURLY)
    schema = folder / "media_events" / "schema.yaml"
    schema.write_text(schema.read_text() + "retention: 36h\n")
    return folder


def test_a_schedule_whose_window_can_start_past_the_retention_is_refused_at_preview(data_36h):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=analyst(data_36h, everyMinutes=1440, window="1d"))
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:analyst.schedules[0].window': 1d is longer than half of table "
                              "media_events's retention 36h (retention in "), message
    assert message.endswith("a run's window starts up to two windows (2d) before its tick, and the table keeps no "
                            "row older than its retention; a window of at most 18h fits"), message


def test_a_schedule_within_the_retention_deploys_and_the_templates_export_it(bootstrap, data_36h):
    run = run_stack("org-a", overrides=analyst(data_36h, everyMinutes=720, window="12h"),
                    peer_outputs={stack_ref("org-b"): streamed_org_b(bootstrap)})
    assert run.outputs["analysis_templates"]["hourly_viewers"]["retention"] == {"media_events": "36h"}
    assert "retention" not in run.outputs["analysis_templates"].get("customer_segments", {})


@pytest.mark.parametrize("text", ["2 days", "0h", "1w", 48])
def test_a_bad_retention_in_schema_yaml_is_one_line(tmp_path, text):
    import shutil

    from model.datasets import load_dataset
    from model.errors import ConfigError
    from tests.harness import ROOT

    shutil.copytree(ROOT / "data" / "media_events", tmp_path / "media_events")
    schema = tmp_path / "media_events" / "schema.yaml"
    schema.write_text(schema.read_text() + f"retention: {json.dumps(text)}\n")
    with pytest.raises(ConfigError) as info:
        load_dataset("media_events", tmp_path)
    assert "retention must be a length such as 48h or 30d" in str(info.value) and "\n" not in str(info.value)

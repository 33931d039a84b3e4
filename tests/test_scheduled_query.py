"""A template run every N minutes over the window each run covers: config, the function (botocore Stubber), the
stack's rule, function and role, and the refusal of a schedule the privacy budget cannot pay for."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys

import boto3
import pulumi
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from botocore.stub import Stubber

from offline import deployer_policy as dp
from queryrunner import cloud as qcloud
from tests import test_queryrunner_faults as faults
from tests.harness import PROJECT, ROOT, run_stack, stack_config, stack_ref
from tests.support.fake_cleanrooms import ERROR_AFTER, RESET_AFTER, THROTTLE, FakeCleanRooms, Faults, TemplateSpec
from tests.support.iam_lint import lint_policy

sys.path.insert(0, str(ROOT / "model"))
sys.path.insert(0, str(ROOT / "lambdas"))
import scheduled_query  # noqa: E402  (lambdas/scheduled_query.py, with model/windows.py beside it as in Lambda)

REGION, A = "us-east-1", "111111111111"
MEMBERSHIP = "5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
TEMPLATE = f"arn:aws:cleanrooms:{REGION}:{A}:membership/{MEMBERSHIP}/analysistemplate/0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
HOURLY = (ROOT / "examples" / "streaming" / "hourly_viewers.sql").read_text()  # the shipped example
TICK = dt.datetime(2026, 12, 4, 10, 0, 7, tzinfo=dt.timezone.utc)
WINDOW = {"window_start": "2026-12-04 09:00:00", "window_end": "2026-12-04 10:00:00"}


def summary(qid: str, status: str, created: dt.datetime) -> dict:
    return {"id": qid, "membershipId": MEMBERSHIP, "membershipArn": f"arn:aws:cleanrooms:{REGION}:{A}:membership/"
            f"{MEMBERSHIP}", "createTime": created, "status": status, "receiverConfigurations": []}


def query(qid: str, params: dict) -> dict:
    return {"protectedQuery": {"id": qid, "membershipId": MEMBERSHIP, "membershipArn": f"arn:aws:cleanrooms:"
            f"{REGION}:{A}:membership/{MEMBERSHIP}", "createTime": TICK, "status": "STARTED",
            "sqlParameters": {"analysisTemplateArn": TEMPLATE, "parameters": params}}}


QID = "11111111-2222-4333-8444-555555555555"
OTHER, OLDER, FAILED = (QID.replace("1111", n) for n in ("2222", "3333", "4444"))


def test_a_tick_starts_the_template_over_the_last_whole_window():
    reads, starts = SESSION.client("cleanrooms"), SESSION.client("cleanrooms")
    with Stubber(reads) as r, Stubber(starts) as s:
        r.add_response("list_protected_queries", {"protectedQueries": [
            summary(OLDER, "SUCCESS", TICK - dt.timedelta(hours=2))]}, {"membershipIdentifier": MEMBERSHIP})
        s.add_response("start_protected_query", query(QID, WINDOW), {
            "type": "SQL", "membershipIdentifier": MEMBERSHIP,
            "sqlParameters": {"analysisTemplateArn": TEMPLATE, "parameters": WINDOW}})
        answer = scheduled_query.run(reads, starts, MEMBERSHIP, TEMPLATE, dt.timedelta(hours=1), TICK)
    assert answer == {"status": "started", "query": QID, "window": WINDOW}


def test_a_second_delivery_of_the_same_tick_starts_nothing():
    """EventBridge delivers at least once and Lambda retries: the window's query is found, not started again."""
    reads, starts = SESSION.client("cleanrooms"), SESSION.client("cleanrooms")
    with Stubber(reads) as r, Stubber(starts):
        r.add_response("list_protected_queries", {"protectedQueries": [
            summary(OTHER, "STARTED", TICK), summary(QID, "SUBMITTED", TICK)]}, {"membershipIdentifier": MEMBERSHIP})
        r.add_response("get_protected_query", query(OTHER, {"window_start": "x", "window_end": "y"}),
                       {"membershipIdentifier": MEMBERSHIP, "protectedQueryIdentifier": OTHER})
        r.add_response("get_protected_query", query(QID, WINDOW),
                       {"membershipIdentifier": MEMBERSHIP, "protectedQueryIdentifier": QID})
        answer = scheduled_query.run(reads, starts, MEMBERSHIP, TEMPLATE, dt.timedelta(hours=1), TICK)
    assert answer["status"] == "already started" and answer["query"] == QID  # no start_protected_query queued


def test_a_failed_query_of_the_window_does_not_count_as_started():
    reads, starts = SESSION.client("cleanrooms"), SESSION.client("cleanrooms")
    with Stubber(reads) as r, Stubber(starts) as s:
        r.add_response("list_protected_queries", {"protectedQueries": [summary(FAILED, "FAILED", TICK)]},
                       {"membershipIdentifier": MEMBERSHIP})
        s.add_response("start_protected_query", query(QID, WINDOW), {
            "type": "SQL", "membershipIdentifier": MEMBERSHIP,
            "sqlParameters": {"analysisTemplateArn": TEMPLATE, "parameters": WINDOW}})
        assert scheduled_query.run(reads, starts, MEMBERSHIP, TEMPLATE, dt.timedelta(hours=1), TICK)["status"] == \
            "started"


# -- the function's clients: the runner's timeouts, a start sent once ------------------------------------------
def test_the_clients_have_the_runners_timeouts_and_retries_and_a_start_is_sent_once():
    """Deployed as one file (with windows.py), the function restates the runner's network policy: the same explicit
    connect and read timeouts on both clients, botocore's standard retries for reads, none for the start."""
    reads, starts = scheduled_query.client_configs()
    runner = qcloud.client_config(qcloud.Network())
    for config in (reads, starts):
        assert (config.connect_timeout, config.read_timeout) == (runner.connect_timeout, runner.read_timeout)
        assert (config.connect_timeout, config.read_timeout) == (10.0, 60.0)  # botocore's are 60 and 60
    assert reads.retries == runner.retries == {"mode": "standard", "total_max_attempts": qcloud.READ_ATTEMPTS}
    assert starts.retries == {"mode": "standard", "total_max_attempts": 1}  # what guard_starts makes of the runner's
    # The component packages only the two files: the policy cannot come from queryrunner/ (nor anything from model/
    # but windows.py), only from what the Lambda runtime has.
    imported = {line.split()[1] for line in (ROOT / "lambdas" / "scheduled_query.py").read_text().splitlines()
                if line.strip().startswith(("import ", "from "))}
    assert imported <= {"__future__", "datetime", "os", "typing", "windows", "boto3", "botocore.config"}, imported


@pytest.mark.parametrize("fault", [ERROR_AFTER, RESET_AFTER])
def test_a_tick_whose_start_answer_is_lost_starts_one_query_over_real_http(tmp_path, monkeypatch, fault):
    """The handler's own clients against the fault-injecting endpoint (tests/support/fake_cleanrooms.py, every
    request checked against the model): a throttled listing is read again, a start whose answer is lost after the
    service created the query is not sent again; the invocation fails, and Lambda's retry finds the query."""
    spec = TemplateSpec("hourly_viewers", faults.arn(7), sql=HOURLY)
    script = {("ListProtectedQueries", "ListProtectedQueries", 0): THROTTLE,
              ("StartProtectedQuery", spec.name, 0): fault}
    fake = FakeCleanRooms(faults.MEMBERSHIP_ID, faults.COLLABORATION_ID, faults.BUCKET, [spec],
                          faults=Faults(script)).start()
    try:
        for var, value in faults.cloud_env(fake, tmp_path).items():
            monkeypatch.setenv(var, value)
        for var, value in {"WINDOW": "1h", "MEMBERSHIP_ID": faults.MEMBERSHIP_ID, "TEMPLATE_ARN": spec.arn}.items():
            monkeypatch.setenv(var, value)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the handler's boto3.client: a session of this env
        configs = []
        real_run = scheduled_query.run

        def run(reads, starts, *args):
            configs.append((reads.meta.config, starts.meta.config))
            return real_run(reads, starts, *args)

        monkeypatch.setattr(scheduled_query, "run", run)
        event = {"time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

        with pytest.raises((ClientError, ConnectionClosedError)):
            scheduled_query.handler(event, None)  # the invocation fails: its answer was lost
        assert fake.start_requests[spec.name] == 1 and fake.created[spec.name] == 1  # botocore did not send it again
        assert fake.calls.count("ListProtectedQueries") == 2  # the throttled read was sent again
        answer = scheduled_query.handler(event, None)  # Lambda's retry of the same event
        (query_id,) = fake.records
        assert answer["status"] == "already started" and answer["query"] == query_id
        assert fake.start_requests[spec.name] == 1 and fake.created[spec.name] == 1
        for reads, starts in configs:  # the clients the handler built carry the policy
            assert (reads.connect_timeout, reads.read_timeout, starts.connect_timeout, starts.read_timeout) == (
                10.0, 60.0, 10.0, 60.0)
            assert starts.retries["total_max_attempts"] == 1 and reads.retries["total_max_attempts"] == 6
        assert fake.problems == []
    finally:
        fake.stop()


# -- the stack --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "data"
    shutil.copytree(ROOT / "data", folder)
    (folder / "queries" / "hourly_viewers.sql").write_text(HOURLY)
    return folder


def analyst(data_dir, **schedule) -> dict:
    partner = {**stack_config("org-a")[f"{PROJECT}:partners"][0], "dataset": "media_events"}
    block = {**stack_config("org-a")[f"{PROJECT}:analyst"], "queries": ["hourly_viewers"],
             "schedules": [{"template": "hourly_viewers", **schedule}]}
    return {"dataDir": str(data_dir), "partners": [partner], "analyst": block}


def streamed_org_b(bootstrap) -> dict:
    return {**bootstrap.b2.outputs, "dataset": "media_events", "configured_table_association_name": "media_events"}


def test_the_stack_runs_the_template_every_twelve_hours_with_a_least_privilege_role(bootstrap, data_dir):
    run = run_stack("org-a", overrides=analyst(data_dir, everyMinutes=720),
                    peer_outputs={stack_ref("org-b"): streamed_org_b(bootstrap)})
    rule = run.named("org-a-every-hourly_viewers-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(720 minutes)"
    [function] = [f for f in run.of_type("aws:lambda/function:Function")
                  if f.name == "org-a-every-hourly_viewers-function"]
    assert set(function.inputs["code"].assets) == {"scheduled_query.py", "windows.py"}
    variables = function.input("environment.variables")
    assert variables["WINDOW"] == "720m" and variables["MEMBERSHIP_ID"] == run.outputs["membership_id"]
    assert variables["TEMPLATE_ARN"] == run.outputs["analysis_templates"]["hourly_viewers"]["arn"]
    policy = json.loads(run.named("org-a-every-hourly_viewers-function-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["StartThisTemplate"]["Resource"][1] == variables["TEMPLATE_ARN"]
    assert lint_policy(policy) == []
    invoke = run.named("org-a-every-hourly_viewers-invoke")
    assert invoke.inputs["principal"] == "events.amazonaws.com" and invoke.inputs["sourceAccount"] == A
    dp.build(dp.collect("org-a", [run]))  # every type it declares has deployer permissions


def test_a_schedule_the_budget_cannot_pay_for_in_a_month_is_refused(bootstrap, data_dir):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=analyst(data_dir, everyMinutes=5, window="5m"),
                  peer_outputs={stack_ref("org-b"): streamed_org_b(bootstrap)})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:analyst.schedules[0].everyMinutes': every 5 minutes runs "
                              "hourly_viewers up to 8928 times a month"), message
    assert "minutes or more fits in a month" in message


@pytest.mark.parametrize("schedule, key, fragment", [
    ({"template": "nope"}, "analyst.schedules[0].template", "is not one of the analyst's queries"),
    ({"window": "1w"}, "analyst.schedules[0].window", "a length such as 15m, 1h or 7d"),
    ({"everyMinutes": 2}, "analyst.schedules[0].everyMinutes", "5"),
])
def test_bad_schedules_are_one_line_naming_the_key(data_dir, schedule, key, fragment):
    overrides = analyst(data_dir)
    overrides["analyst"]["schedules"] = [{"template": "hourly_viewers", **schedule}]
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=overrides)
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_a_template_without_window_parameters_cannot_be_scheduled():
    block = {**stack_config("org-a")[f"{PROJECT}:analyst"], "schedules": [{"template": "customer_segments"}]}
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"analyst": block})
    assert "does not declare window_start and window_end as TIMESTAMP parameters" in str(info.value)

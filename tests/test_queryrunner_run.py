"""`run TEMPLATE`: Stubber validates every Clean Rooms request and response against
the real service model; moto serves the results bucket. Time is a fake clock."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import re

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from queryrunner.cli import main
from queryrunner.poll import Backoff, ElapsedPoll

REGION = "us-east-1"
ACCOUNT = "111122223333"
MEMBERSHIP_ID = "5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
COLLABORATION_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MEMBERSHIP_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}"
SEG_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
REACH_ID = "1d2e3f4a-5b6c-4d7e-8f90-123456789012"
DP_ID = "2e3f4a5b-6c7d-4e8f-9012-345678901234"
SEG_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{SEG_ID}"
REACH_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{REACH_ID}"
DP_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{DP_ID}"
Q1 = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
Q2 = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
BUCKET = "analyst-results-111122223333"
BUDGET_ID = "3f4a5b6c-7d8e-4f90-a123-456789012345"
PBT_ID = "4a5b6c7d-8e9f-4012-b345-678901234567"
# One session for the module: botocore caches loaded service models per session,
# which keeps client creation (and so each test) in the millisecond range.
SESSION = boto3.Session(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
CREATED = dt.datetime(2025, 11, 25, 10, 0, tzinfo=dt.timezone.utc)

OUTPUTS = {
    "organization": "org-a", "account_id": ACCOUNT, "region": REGION, "roles": ["analyst"],
    "collaboration_id": COLLABORATION_ID, "membership_id": MEMBERSHIP_ID, "membership_arn": MEMBERSHIP_ARN,
    "results_bucket": BUCKET, "results_prefix": "results", "result_format": "CSV",
    "results_kms_key_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f0e0d0c-0b0a-4908-8706-050403020100",
    "analysis_templates": {
        "customer_segments": {"arn": SEG_ARN, "id": SEG_ID, "differential_privacy": False,
                              "parameters": [{"name": "min_orders", "type": "INTEGER", "default": "1"}]},
        "channel_reach": {"arn": REACH_ARN, "id": REACH_ID, "differential_privacy": False,
                          "parameters": [{"name": "min_sessions", "type": "INTEGER", "default": None},
                                         {"name": "since", "type": "DATE", "default": "2024-01-01"}]},
        "dp_segments": {"arn": DP_ARN, "id": DP_ID, "differential_privacy": True, "parameters": []},
    },
    "quicksight": None,
}

CSV_PART_1 = ("age_group,region,customer_count,avg_purchase,avg_engagement\n"
              "25-34,north,120,54.20,0.61\n35-44,south,98,61.75,0.58\n")
CSV_PART_2 = ("age_group,region,customer_count,avg_purchase,avg_engagement\n"
              "45-54,east,77,70.10,0.49\n")


class FakeTime:
    """clock + sleep: sleeping advances the clock instantly and is recorded."""

    def __init__(self, interrupt_on_sleep: int | None = None):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.interrupt_on_sleep = interrupt_on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.interrupt_on_sleep == len(self.sleeps):
            raise KeyboardInterrupt
        self.now += seconds


class NoJitter(random.Random):
    """Backoff and poll delays at their upper bound, so that poll counts are exact."""

    def random(self) -> float:
        return 1.0


def query(qid: str, status: str, arn: str = SEG_ARN, params=None, **extra) -> dict:
    q = {"id": qid, "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": CREATED,
         "status": status,
         "sqlParameters": {"analysisTemplateArn": arn, "parameters": {"min_orders": "1"} if params is None else params}}
    q.update(extra)
    return {"protectedQuery": q}


def success(qid: str, location: str, **kw) -> dict:
    return query(qid, "SUCCESS", result={"output": {"s3": {"location": location}}},
                 statistics={"totalDurationInMillis": 42000}, **kw)


def failed(qid: str, code: str, message: str, retryable: bool | None) -> dict:
    error = {"code": code, "message": message}
    if retryable is not None:
        error["retry"] = {"retryable": retryable}
    return query(qid, "FAILED", error=error)


def start_params(arn=SEG_ARN, template="customer_segments", params=None, fmt="CSV") -> dict:
    return {"type": "SQL", "membershipIdentifier": MEMBERSHIP_ID,
            "sqlParameters": {"analysisTemplateArn": arn,
                              "parameters": {"min_orders": "1"} if params is None else params},
            "resultConfiguration": {"outputConfiguration": {"s3": {
                "resultFormat": fmt, "bucket": BUCKET, "keyPrefix": f"results/{template}"}}}}


def get_params(qid: str) -> dict:
    return {"membershipIdentifier": MEMBERSHIP_ID, "protectedQueryIdentifier": qid}


class Env:
    """Stubbed cleanrooms (+ quicksight) clients, a moto S3, captured streams."""

    def __init__(self, tmp_path):
        self.cleanrooms = SESSION.client("cleanrooms")
        self.quicksight = SESSION.client("quicksight")
        self.stub = Stubber(self.cleanrooms)
        self.qs_stub = Stubber(self.quicksight)
        self.s3 = SESSION.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.out_dir = str(tmp_path / "out")
        self.time = FakeTime()
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.created: list[str] = []
        self.backoff = lambda: Backoff(rng=random.Random(0))
        self.poll = lambda: ElapsedPoll(rng=random.Random(0))

    def factory(self, service: str, region: str):
        assert region == REGION
        self.created.append(service)
        return {"cleanrooms": self.cleanrooms, "s3": self.s3, "quicksight": self.quicksight}[service]

    def run(self, *argv: str, outputs: dict | None | str = "default") -> int:
        outputs = OUTPUTS if outputs == "default" else outputs
        text = outputs if isinstance(outputs, str) else json.dumps(outputs)
        stdin = io.StringIO("" if outputs is None else text)
        extra = [] if outputs is None else ["--outputs", "-"]
        with self.stub, self.qs_stub:
            code = main([*argv, *extra, "--out", self.out_dir] if argv[0] == "run" else [*argv, *extra],
                        stdin=stdin, stdout=self.stdout, stderr=self.stderr, client_factory=self.factory,
                        clock=self.time.clock, sleep=self.time.sleep, backoff=self.backoff, poll=self.poll)
        assert not self.stub._queue, f"unused Clean Rooms responses; stderr:\n{self.err}"
        assert not self.qs_stub._queue, f"unused QuickSight responses; stderr:\n{self.err}"
        return code

    @property
    def out(self) -> str:
        return self.stdout.getvalue()

    @property
    def err(self) -> str:
        return self.stderr.getvalue()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield Env(tmp_path)


def test_success_prints_table_and_writes_merged_csv(env):
    prefix = f"results/customer_segments/{Q1}/"
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "part-00000.csv", Body=CSV_PART_1.encode())
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "part-00001.csv", Body=CSV_PART_2.encode())
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "_SUCCESS", Body=b"")
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", query(Q1, "SUBMITTED"), get_params(Q1))
    env.stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{prefix}"), get_params(Q1))

    code = env.run("run", "customer_segments")

    assert code == 0, env.err
    assert "SUBMITTED -> STARTED after" in env.err and "STARTED -> SUCCESS after" in env.err
    lines = env.out.splitlines()
    assert lines[0] == f"== customer_segments ({Q1}) =="
    assert lines[1].split(" | ")[0].strip() == "age_group" and "avg_engagement" in lines[1]
    assert any("35-44" in line and "98" in line for line in lines)
    assert "(3 rows)" in env.out
    saved = os.path.join(env.out_dir, "customer_segments", f"{Q1}.csv")
    with open(saved, encoding="utf-8") as fh:
        content = fh.read().splitlines()
    assert content[0].startswith("age_group,region") and len(content) == 4  # header once, 3 rows
    # polls in the first 10 s wait the 1 s floor, jittered within [0.5, 1]
    assert len(env.time.sleeps) == 3 and all(0.5 <= s <= 1 for s in env.time.sleeps)
    assert "compute service default" in env.err  # no compute output, no flag: no computeConfiguration sent
    assert "quicksight" not in env.created


def test_success_with_single_object_location_and_defaults_overridden(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_2.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED", params={"min_orders": "3"}),
                          start_params(params={"min_orders": "3"}))
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    assert env.run("run", "customer_segments", "--param", "min_orders=3") == 0
    assert "45-54" in env.out and "(1 row)" in env.out


def test_failed_retryable_is_retried_then_succeeds(env):
    key = f"results/customer_segments/{Q2}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query",
                          failed(Q1, "INSUFFICIENT_COMPUTE", "Query exceeded available memory", True), get_params(Q1))
    env.stub.add_response("start_protected_query", query(Q2, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q2, f"s3://{BUCKET}/{key}"), get_params(Q2))

    code = env.run("run", "customer_segments")

    assert code == 0, env.err
    assert ("attempt 1 failed with retryable INSUFFICIENT_COMPUTE: Query exceeded available memory; retry 1/2"
            in env.err)
    assert f"started query {Q2} (attempt 2)" in env.err
    assert "SUCCESS after" in env.err and "(2 attempts)" in env.err
    assert "25-34" in env.out


def test_transient_error_code_without_retry_info_is_retried_until_retries_run_out(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", failed(Q1, "TRANSIENT_ERROR", "Throttled", None), get_params(Q1))
    env.stub.add_response("start_protected_query", query(Q2, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", failed(Q2, "TRANSIENT_ERROR", "Throttled", None), get_params(Q2))

    code = env.run("run", "customer_segments", "--retries", "1")

    assert code == 1
    assert f"query {Q2} FAILED after 2 attempts: TRANSIENT_ERROR: Throttled" in env.err


def test_failed_non_retryable_shows_code_and_message(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
    env.stub.add_response("get_protected_query",
                          failed(Q1, "MALFORMED_QUERY", "Column r.order_count does not exist", False), get_params(Q1))

    code = env.run("run", "customer_segments")

    assert code == 1
    assert (f"[customer_segments] query {Q1} FAILED after 1 attempt: MALFORMED_QUERY: "
            "Column r.order_count does not exist (not retryable") in env.err
    assert env.out == ""
    # No result was saved: --out holds only the run journal (.journal/, which records the failure).
    assert os.listdir(env.out_dir) == [".journal"]


def test_timed_out(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
    env.stub.add_response("get_protected_query", query(Q1, "TIMED_OUT"), get_params(Q1))

    assert env.run("run", "customer_segments") == 1
    assert f"query {Q1} TIMED_OUT" in env.err


def test_cancelled_elsewhere(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", query(Q1, "CANCELLING"), get_params(Q1))
    env.stub.add_response("get_protected_query", query(Q1, "CANCELLED"), get_params(Q1))

    assert env.run("run", "customer_segments") == 1
    assert f"query {Q1} was CANCELLED" in env.err


def test_deadline_exceeded_cancels_the_query(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    # Jitter off (upper bounds): the 1 s floor up to 11 s, then a tenth of the elapsed time (1.1 s),
    # then the 0.4 s left of the 12.5 s deadline.
    for _ in range(13):
        env.stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
    env.stub.add_response("update_protected_query", query(Q1, "CANCELLING"),
                          {**get_params(Q1), "targetStatus": "CANCELLED"})
    env.poll = lambda: ElapsedPoll(rng=NoJitter())

    code = env.run("run", "customer_segments", "--timeout", "12.5")

    assert code == 1
    assert "deadline reached after" in env.err and f"cancelled query {Q1}" in env.err
    assert f"query {Q1} did not finish within --timeout 12.5s; it was cancelled" in env.err
    assert env.time.sleeps == pytest.approx([1.0] * 11 + [1.1, 0.4])
    assert sum(env.time.sleeps) == pytest.approx(12.5)  # never sleeps past the deadline


def test_ctrl_c_cancels_query_and_exits_130(env):
    env.time.interrupt_on_sleep = 2
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
    env.stub.add_response("update_protected_query", query(Q1, "CANCELLING"),
                          {**get_params(Q1), "targetStatus": "CANCELLED"})

    code = env.run("run", "customer_segments")

    assert code == 130
    assert "interrupted: cancelling queries in flight" in env.err
    assert f"cancelled query {Q1}" in env.err and "cancelled 1 query" in env.err


@pytest.mark.parametrize("argv, problem", [
    (["customer_segments", "--param", "min_order=2"],
     "unknown parameter 'min_order' for template 'customer_segments' (declared: min_orders)"),
    (["customer_segments", "--param", "min_orders=two"], "parameter 'min_orders'='two': not an integer (INTEGER)"),
    (["customer_segments", "--param", "min_orders=99999999999"], "out of range for INTEGER"),
    (["channel_reach", "--param", "since=2024-02-30", "--param", "min_sessions=1"],
     "parameter 'since'='2024-02-30': not a DATE (YYYY-MM-DD)"),
    (["channel_reach"], "required parameter 'min_sessions' (INTEGER) of template 'channel_reach' not given"),
    (["customer_segments", "--param", "min_orders"], "--param 'min_orders' is not NAME=VALUE"),
])
def test_bad_parameters_send_nothing(env, argv, problem):
    # No responses queued: any request would raise inside the Stubber.
    code = env.run("run", *argv)
    assert code == 2
    assert "error: bad parameters, nothing was sent:" in env.err
    assert problem in env.err
    assert env.out == ""
    assert "cleanrooms" not in env.created


def test_unknown_template(env):
    assert env.run("run", "customer_segmentz") == 2
    assert "unknown analysis template 'customer_segmentz'; the stack declares: channel_reach, customer_segments" \
        in env.err


@pytest.mark.parametrize("missing", ["membership_id", "results_bucket", "analysis_templates", "region"])
def test_missing_stack_output_names_key_and_remedy(env, missing):
    outputs = {k: v for k, v in OUTPUTS.items() if k != missing}
    code = env.run("run", "customer_segments", outputs=outputs)
    assert code == 2
    assert f"missing stack output '{missing}'" in env.err
    assert "is this the analyst stack" in env.err
    assert "pulumi stack output --json --stack <analyst stack> | python -m queryrunner <command> ... --outputs -" \
        in env.err
    assert env.created == []  # not even a client was built


def test_no_outputs_at_all(env):
    assert env.run("run", "customer_segments", outputs=None) == 2
    assert ("missing stack outputs 'membership_id' (or --membership-id), 'region' (or --region), 'results_bucket' "
            "(or --results-bucket)") in env.err
    assert "'analysis_templates': no stack outputs were given" in env.err


def test_outputs_not_json(env):
    assert env.run("run", "customer_segments", outputs="not json") == 2
    assert "stack outputs on standard input are not JSON" in env.err


def test_outputs_from_file_and_flag_fills_missing_output(env, tmp_path):
    path = tmp_path / "analyst.json"
    path.write_text(json.dumps({k: v for k, v in OUTPUTS.items() if k != "results_prefix"}))
    key = f"custom/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_2.encode())
    expected = start_params()
    expected["resultConfiguration"]["outputConfiguration"]["s3"]["keyPrefix"] = "custom/customer_segments"
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), expected)
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    code = env.run("run", "customer_segments", "--outputs", str(path), "--results-prefix", "custom/", outputs=None)

    assert code == 0, env.err
    assert "45-54" in env.out


def test_membership_equal_to_collaboration_is_refused(env):
    outputs = dict(OUTPUTS, membership_id=COLLABORATION_ID)
    assert env.run("run", "customer_segments", outputs=outputs) == 2
    assert "membership_id equals collaboration_id" in env.err


# -- differential privacy --------------------------------------------------------

DP_SQL = """-- description: DP segments
SELECT r.age_group, COUNT(DISTINCT r.customer_key) AS customers, AVG(r.purchase_amount) AS avg_purchase
FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key
GROUP BY r.age_group"""


def budget_summary(remaining_fraction: float, budget_id: str = BUDGET_ID) -> dict:
    maxes = {"AVG": 1000, "COUNT": 2000, "COUNT_DISTINCT": 1000, "SUM": 1000, "STDDEV": 1000}
    return {
        "id": budget_id, "privacyBudgetTemplateId": PBT_ID,
        "privacyBudgetTemplateArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:privacybudgettemplate/{PBT_ID}",
        "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "collaborationId": COLLABORATION_ID,
        "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}",
        "type": "DIFFERENTIAL_PRIVACY", "createTime": CREATED, "updateTime": CREATED,
        "budget": {"differentialPrivacy": {"epsilon": 3, "aggregations": [
            {"type": t, "maxCount": m, "remainingCount": int(m * remaining_fraction)} for t, m in maxes.items()]}},
    }


def queue_budget_template(env) -> None:
    env.stub.add_response("get_collaboration_privacy_budget_template", {"collaborationPrivacyBudgetTemplate": {
        "id": PBT_ID, "arn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:privacybudgettemplate/{PBT_ID}",
        "collaborationId": COLLABORATION_ID,
        "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}",
        "creatorAccountId": ACCOUNT, "createTime": CREATED, "updateTime": CREATED,
        "privacyBudgetType": "DIFFERENTIAL_PRIVACY", "autoRefresh": "CALENDAR_MONTH",
        "parameters": {"differentialPrivacy": {"epsilon": 3, "usersNoisePerQuery": 30}}}},
        {"collaborationIdentifier": COLLABORATION_ID, "privacyBudgetTemplateIdentifier": PBT_ID})


def queue_dp_checks(env, remaining_fraction: float):
    env.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [budget_summary(remaining_fraction)]},
                          {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"})
    env.stub.add_response("get_collaboration_analysis_template", {"collaborationAnalysisTemplate": {
        "id": DP_ID, "arn": DP_ARN, "collaborationId": COLLABORATION_ID,
        "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}",
        "creatorAccountId": ACCOUNT, "name": "dp_segments", "createTime": CREATED, "updateTime": CREATED,
        "schema": {"referencedTables": ["retail_purchases", "media_engagement"]}, "format": "SQL",
        "source": {"text": DP_SQL}}},
        {"collaborationIdentifier": COLLABORATION_ID, "analysisTemplateArn": DP_ARN})
    queue_budget_template(env)
    env.stub.add_response("preview_privacy_impact", {"privacyImpact": {"differentialPrivacy": {"aggregations": [
        {"type": "AVG", "maxCount": 1000}, {"type": "COUNT", "maxCount": 2000},
        {"type": "COUNT_DISTINCT", "maxCount": 1000}, {"type": "SUM", "maxCount": 1000},
        {"type": "STDDEV", "maxCount": 1000}]}}},
        {"membershipIdentifier": MEMBERSHIP_ID,
         "parameters": {"differentialPrivacy": {"epsilon": 3, "usersNoisePerQuery": 30}}})


def test_dp_query_that_would_exhaust_budget_is_refused(env):
    queue_dp_checks(env, remaining_fraction=0.001)  # 0.1% left; the query costs 0.2%

    code = env.run("run", "dp_segments")

    assert code == 1
    assert "this run uses 1 AVG, 1 COUNT_DISTINCT = 0.20% of the privacy budget; 0.10% remains" in env.err
    assert "refusing to run 'dp_segments': it would exhaust the remaining privacy budget" in env.err
    assert "--allow-budget-exhaustion" in env.err


def test_dp_query_allowed_with_override(env):
    queue_dp_checks(env, remaining_fraction=0.001)
    key = f"results/dp_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"age_group,customers,avg_purchase\n25-34,118,53.9\n")
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED", arn=DP_ARN, params={}),
                          start_params(arn=DP_ARN, template="dp_segments", params={}))
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}", ), get_params(Q1))

    code = env.run("run", "dp_segments", "--allow-budget-exhaustion")

    assert code == 0, env.err
    assert "WARNING: this run exhausts the privacy budget" in env.err
    assert "118" in env.out


def test_dp_query_with_enough_budget_runs(env):
    queue_dp_checks(env, remaining_fraction=0.5)
    key = f"results/dp_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"age_group,customers,avg_purchase\n25-34,118,53.9\n")
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED", arn=DP_ARN, params={}),
                          start_params(arn=DP_ARN, template="dp_segments", params={}))
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    assert env.run("run", "dp_segments") == 0, env.err
    assert "50.00% remains" in env.err


# -- QuickSight ----------------------------------------------------------------------

def queue_simple_success(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))


QS = {"dataset_id": "cleanrooms-customer-segments", "aws_account_id": ACCOUNT,
      "published_prefix": "published/customer_segments", "template": "customer_segments"}


def published_keys(env) -> list[str]:
    listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="published/customer_segments/")
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def test_quicksight_ingestion_started_after_results(env):
    queue_simple_success(env)
    env.s3.put_object(Bucket=BUCKET, Key="published/customer_segments/old-run-result.csv", Body=b"stale")
    outputs = dict(OUTPUTS, quicksight=QS)
    captured = {}

    def check_id(params, **kwargs):
        captured.update(params)

    env.quicksight.meta.events.register("provide-client-params.quicksight.CreateIngestion", check_id)
    from botocore.stub import ANY
    env.qs_stub.add_response("create_ingestion", {"IngestionId": "from-service", "IngestionStatus": "INITIALIZED",
                                                  "Status": 201},
                             {"AwsAccountId": ACCOUNT, "DataSetId": "cleanrooms-customer-segments",
                              "IngestionId": ANY, "IngestionType": "FULL_REFRESH"})

    assert env.run("run", "customer_segments", outputs=outputs) == 0, env.err
    assert "QuickSight ingestion from-service started for dataset cleanrooms-customer-segments (INITIALIZED)" \
        in env.err
    assert captured["IngestionId"].startswith("queryrunner-")
    # The dashboard's prefix holds exactly this run's result, so SPICE counts each segment once.
    assert published_keys(env) == [f"published/customer_segments/{Q1}-result.csv"]
    body = env.s3.get_object(Bucket=BUCKET, Key=published_keys(env)[0])["Body"].read().decode()
    assert body == CSV_PART_1
    assert "published 1 file(s) to s3://" in env.err


def test_no_refresh_skips_quicksight(env):
    queue_simple_success(env)
    outputs = dict(OUTPUTS, quicksight=QS)
    assert env.run("run", "customer_segments", "--no-refresh", outputs=outputs) == 0
    assert "QuickSight" not in env.err and "quicksight" not in env.created
    assert published_keys(env) == []


def test_usage_errors_exit_2(env):
    assert env.run("run") == 2
    assert "give a TEMPLATE name or --all" in env.err
    assert env.run("run", "customer_segments", "--max-concurrency", "0") == 2
    assert main(["frobnicate"], stdout=io.StringIO(), stderr=io.StringIO()) == 2


def test_budget_forecast_gives_each_dp_templates_runs_left_and_the_months_burn(env):
    """`budget --forecast` in AWS: the cost of one run of each DP template from PreviewPrivacyImpact (as `run`
    checks it), how many the remaining budget pays for, and the month's spend so far."""
    dp = {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"}
    env.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [budget_summary(0.5)]}, dp)
    queue_dp_checks(env, remaining_fraction=0.5)  # the template's cost, against the same budget
    queue_budget_template(env)
    env.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": []},
                          {**dp, "privacyBudgetType": "ACCESS_BUDGET"})

    assert env.run("budget", "--forecast") == 0, env.err

    forecast = env.out.split("== forecast")[1]
    [row] = [line for line in forecast.splitlines() if line.startswith("dp_segments")]
    cost, left = [c.strip() for c in row.split("|")[1:]]
    assert cost == "0.20%" and left == "250"  # a COUNT_DISTINCT and an AVG of 1,000 each; 50% left: 250 runs
    assert "customer_segments" not in forecast  # not differentially private
    assert re.search(r"50\.00% spent in [0-9.]+ days .*(refresh on|runs out on)", forecast), forecast

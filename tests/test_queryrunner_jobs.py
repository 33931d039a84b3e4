"""`job NAME`, `job-status`, `history --jobs`: PySpark analysis templates run as protected jobs.

Stubber validates every Clean Rooms request and response against the real service model; moto serves the
results bucket. Time is a fake clock, so deadlines and backoff run in virtual time.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import gzip
import hashlib
import io
import json
import os

import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from queryrunner import checks
from queryrunner import jobs as qjobs
from queryrunner.cli import main
from queryrunner.outputs import Compute, Settings, load_outputs
from queryrunner.poll import Backoff, ElapsedPoll
from tests.test_queryrunner_distribute import access_summary, queue_access
from tests.test_queryrunner_run import (ACCOUNT, BUCKET, COLLABORATION_ID, CREATED, MEMBERSHIP_ARN, MEMBERSHIP_ID,
                                        REGION, SESSION, FakeTime, NoJitter)

COLLABORATION_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}"
JOB_ID = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
JOB_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{JOB_ID}"
J1 = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
J2 = "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f7a"
ARTIFACTS = "org-a-cleanrooms-artifacts-111122223333"
RETAIL_ASSOC = f"{MEMBERSHIP_ARN}/configuredtableassociation/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SCRIPT = b"def entrypoint(context):\n    return {'results': {}}\n"
DIGEST = hashlib.sha256(SCRIPT).hexdigest()

OUTPUTS = {
    "organization": "org-a", "account_id": ACCOUNT, "region": REGION, "roles": ["analyst"],
    "collaboration_id": COLLABORATION_ID, "membership_id": MEMBERSHIP_ID, "membership_arn": MEMBERSHIP_ARN,
    "results_bucket": BUCKET, "results_prefix": "results", "result_format": "CSV", "analysis_templates": {},
    "runs_jobs": True, "artifact_bucket": ARTIFACTS, "access_budgets": {},
    "job_templates": {
        "retail_order_mix": {"arn": JOB_ARN, "id": JOB_ID, "tables": ["retail_purchases"], "sha256": DIGEST,
                             "parameters": [{"name": "min_orders", "type": "INT", "default": "1"},
                                            {"name": "since", "type": "DATE", "default": "2024-01-01"}],
                             "compute": {"workerType": "CR.1X", "workers": 4}},
    },
    "pending_jobs": {"media_mix": ["media_engagement"]},
}
DEFAULT_PARAMS = {"min_orders": "1", "since": "2024-01-01"}
LOCATION = f"s3://{BUCKET}/results/jobs/{J1}/"

ORDER_MIX_1 = "region,order_band,customers,total_purchase\nnorth,1-9,120,5420.50\n"
ORDER_MIX_2 = "region,order_band,customers,total_purchase\nsouth,10-19,98,6175.00\n"
TOTALS = "region,customers\nnorth,120\nsouth,98\n"


# -- responses, shaped by the cleanrooms model (Stubber checks them) ---------------------------------------
def template_response(sha256=DIGEST, fmt="PYSPARK_1_0", metadata=True) -> dict:
    t = {"id": JOB_ID, "arn": JOB_ARN, "collaborationId": COLLABORATION_ID, "collaborationArn": COLLABORATION_ARN,
         "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "name": "retail_order_mix",
         "createTime": CREATED, "updateTime": CREATED, "schema": {"referencedTables": ["retail_purchases"]},
         "format": fmt,
         "source": {"artifacts": {"entryPoint": {"location": {
             "bucket": ARTIFACTS, "key": f"jobs/retail_order_mix/{DIGEST}/entrypoint.py"}},
             "roleArn": f"arn:aws:iam::{ACCOUNT}:role/service-role/org-a-cleanrooms-artifacts"}}}
    if metadata:
        t["sourceMetadata"] = {"artifacts": {"entryPointHash": {"sha256": sha256}}}
    return {"analysisTemplate": t}


def protected_job(jid: str, status: str, params=None, compute=None, **extra) -> dict:
    j = {"id": jid, "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": CREATED,
         "status": status,
         "jobParameters": {"analysisTemplateArn": JOB_ARN, "parameters": DEFAULT_PARAMS if params is None else params}}
    if compute:
        j["computeConfiguration"] = compute
    j.update(extra)
    return {"protectedJob": j}


def succeeded(jid: str, location: str = LOCATION, **kw) -> dict:
    return protected_job(jid, "SUCCESS", result={"output": {"s3": {"location": location}}},
                         statistics={"totalDurationInMillis": 93200, "billedResourceUtilization": {"units": 0.207}},
                         **kw)


def failed(jid: str, code: str, message: str, retryable: bool | None) -> dict:
    error = {"code": code, "message": message}
    if retryable is not None:
        error["retry"] = {"retryable": retryable}
    return protected_job(jid, "FAILED", error=error)


def start_params(params=None, compute=None) -> dict:
    request = {"type": "PYSPARK", "membershipIdentifier": MEMBERSHIP_ID,
               "jobParameters": {"analysisTemplateArn": JOB_ARN,
                                 "parameters": DEFAULT_PARAMS if params is None else params}}
    if compute is not False:
        request["computeConfiguration"] = compute or {"worker": {"type": "CR.1X", "number": 4}}
    return request


def get_params(jid: str) -> dict:
    return {"membershipIdentifier": MEMBERSHIP_ID, "protectedJobIdentifier": jid}


TEMPLATE_PARAMS = {"membershipIdentifier": MEMBERSHIP_ID, "analysisTemplateIdentifier": JOB_ID}


class Env:
    def __init__(self, tmp_path):
        self.cleanrooms = SESSION.client("cleanrooms")
        self.stub = Stubber(self.cleanrooms)
        self.s3 = SESSION.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.out_dir = str(tmp_path / "out")
        self.time = FakeTime()
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.created: list[str] = []
        self.backoff = lambda: Backoff(rng=NoJitter())
        self.poll = lambda: ElapsedPoll(rng=NoJitter())

    def factory(self, service: str, region: str):
        assert region == REGION
        self.created.append(service)
        return {"cleanrooms": self.cleanrooms, "s3": self.s3}[service]

    def run(self, *argv: str, outputs: dict | None = None) -> int:
        stdin = io.StringIO(json.dumps(OUTPUTS if outputs is None else outputs))
        extra = ["--out", self.out_dir] if argv[0] == "job" else []
        with self.stub:
            code = main([*argv, "--outputs", "-", *extra], stdin=stdin, stdout=self.stdout, stderr=self.stderr,
                        client_factory=self.factory, clock=self.time.clock, sleep=self.time.sleep,
                        backoff=self.backoff, poll=self.poll)
        assert not self.stub._queue, f"unused Clean Rooms responses; stderr:\n{self.err}"
        return code

    def put(self, key: str, body: str | bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)

    @property
    def out(self) -> str:
        return self.stdout.getvalue()

    @property
    def err(self) -> str:
        return self.stderr.getvalue()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # No local copy of the job unless a test makes one (the comparison with data/jobs/<name>/ is its own test).
    monkeypatch.setattr(qjobs, "JOBS_DIR", tmp_path / "jobs")
    with mock_aws():
        yield Env(tmp_path)


def job_outputs(**changes) -> dict:
    outputs = copy.deepcopy(OUTPUTS)
    outputs["job_templates"]["retail_order_mix"].update(changes)
    for key, value in changes.items():
        if value is None:
            del outputs["job_templates"]["retail_order_mix"][key]
    return outputs


# -- the happy path -------------------------------------------------------------------------------------------
def test_a_job_runs_with_params_and_compute_and_its_results_are_printed_and_saved(env):
    prefix = f"results/jobs/{J1}/"
    env.put(prefix + "order_mix/part-00000-a1.c000.csv", ORDER_MIX_1)
    env.put(prefix + "order_mix/part-00001-a1.c000.csv", ORDER_MIX_2)
    env.put(prefix + "order_mix/_SUCCESS", b"")
    env.put(prefix + "region_totals/part-00000-b2.c000.csv", TOTALS)
    compute = {"worker": {"type": "CR.4X", "number": 8}}
    params = {"min_orders": "3", "since": "2024-01-01"}
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED", params, compute),
                          start_params(params, compute))
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED", params, compute), get_params(J1))
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED", params, compute), get_params(J1))
    env.stub.add_response("get_protected_job", succeeded(J1, params=params, computeConfiguration=compute),
                          get_params(J1))

    code = env.run("job", "retail_order_mix", "--param", "min_orders=3", "--worker-type", "CR.4X",
                   "--workers", "8")

    assert code == 0, env.err
    assert f"started job {J1}: SUBMITTED; compute CR.4X x 8 workers = 64 CRPU" in env.err
    assert "SUBMITTED -> STARTED after" in env.err and "STARTED -> SUCCESS after 3.0s" in env.err
    assert ("SUCCESS after 3.0s (1 attempt; Clean Rooms reports 93.2s) on CR.4X x 8 workers = 64 CRPU; billed 0.207 "
            f"CRPU-hours; results at {LOCATION}") in env.err
    assert "runs the deployed script" in env.err
    # The poll policy is ElapsedPoll's (the 1 s floor for a young job), with no fixed sleeps.
    assert env.time.sleeps == [1.0, 1.0, 1.0]
    out = env.out
    assert f"== retail_order_mix: order_mix (job {J1}) ==" in out
    assert f"== retail_order_mix: region_totals (job {J1}) ==" in out
    mix = out.split("region_totals")[0]
    assert "north" in mix and "10-19" in mix and "(2 rows)" in mix  # both parts, header once
    folder = os.path.join(env.out_dir, "retail_order_mix", J1)
    assert sorted(os.listdir(folder)) == ["order_mix.csv", "region_totals.csv"]
    with open(os.path.join(folder, "order_mix.csv"), encoding="utf-8") as fh:
        assert fh.read().splitlines() == ["region,order_band,customers,total_purchase", "north,1-9,120,5420.50",
                                          "south,10-19,98,6175.00"]
    assert env.created == ["cleanrooms", "s3"]


def test_defaults_and_the_templates_own_compute_are_sent_and_files_at_the_top_are_one_result(env):
    env.put(f"results/jobs/{J1}/part-00000.csv.gz", gzip.compress(TOTALS.encode()))
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1, location=f"s3://{BUCKET}/results/jobs/{J1}"),
                          get_params(J1))

    assert env.run("job", "retail_order_mix") == 0, env.err
    assert "compute CR.1X x 4 workers = 8 CRPU" in env.err  # job_templates.<name>.compute
    assert f"== retail_order_mix: result (job {J1}) ==" in env.out and "(2 rows)" in env.out
    assert os.path.exists(os.path.join(env.out_dir, "retail_order_mix", J1, "result.csv"))


def test_without_any_compute_none_is_sent(env):
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params(compute=False))
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))

    assert env.run("job", "retail_order_mix", outputs=job_outputs(compute=None)) == 0, env.err
    assert "compute service default (none sent)" in env.err


# -- the script hash ---------------------------------------------------------------------------------------
def test_a_template_whose_script_hash_differs_is_refused_before_anything_starts(env):
    other = hashlib.sha256(b"print('changed')").hexdigest()
    env.stub.add_response("get_analysis_template", template_response(sha256=other), TEMPLATE_PARAMS)

    code = env.run("job", "retail_order_mix")

    assert code == 1
    assert (f"refusing to start 'retail_order_mix': the template's script hash (entryPointHash.sha256, {other}) is "
            f"not the one the stack deployed (stack output 'job_templates.retail_order_mix.sha256', {DIGEST})"
            ) in env.err
    assert "changed after the template was created; run `pulumi up`" in env.err
    # start_protected_job was never queued; --out holds only the job's journal (it records the refusal)
    assert env.out == "" and os.listdir(env.out_dir) == [".journal"]


@pytest.mark.parametrize("reported", [
    base64.b64encode(bytes.fromhex(DIGEST)).decode(),        # base64 of the same 32 bytes
    base64.b64encode(bytes.fromhex(DIGEST)).decode().rstrip("="),
    DIGEST.upper(),                                         # hex in another case
])
def test_the_same_digest_in_base64_or_upper_case_hex_is_accepted(env, reported):
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)
    env.stub.add_response("get_analysis_template", template_response(sha256=reported), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))

    assert env.run("job", "retail_order_mix") == 0, env.err


@pytest.mark.parametrize("reported", [
    base64.b64encode(hashlib.sha256(b"other").digest()).decode(),  # base64, another digest
    "not-a-hash", DIGEST[:-2],
])
def test_another_or_an_unreadable_digest_is_refused(env, reported):
    env.stub.add_response("get_analysis_template", template_response(sha256=reported), TEMPLATE_PARAMS)
    assert env.run("job", "retail_order_mix") == 1
    assert "refusing to start 'retail_order_mix'" in env.err


def test_a_sql_template_behind_a_job_name_is_refused(env):
    env.stub.add_response("get_analysis_template", template_response(fmt="SQL", metadata=False), TEMPLATE_PARAMS)
    assert env.run("job", "retail_order_mix") == 1
    assert "is a SQL template, not PySpark" in env.err


def test_a_local_script_that_is_not_the_deployed_one_is_a_warning(env, tmp_path):
    folder = tmp_path / "jobs" / "retail_order_mix"
    folder.mkdir(parents=True)
    (folder / "job.yaml").write_text("entryPoint: main.py\ntables: [retail_purchases]\n")
    (folder / "main.py").write_bytes(SCRIPT + b"# edited\n")
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))

    assert env.run("job", "retail_order_mix") == 0, env.err
    assert f"WARNING: the local script {folder / 'main.py'}" in env.err
    assert "is not the deployed one" in env.err and "run `pulumi up` to deploy the local one" in env.err

    (folder / "main.py").write_bytes(SCRIPT)  # the same script: no warning
    env.stderr = io.StringIO()
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))
    assert env.run("job", "retail_order_mix") == 0 and "WARNING" not in env.err


# -- access budgets ------------------------------------------------------------------------------------------
def lifetime(remaining: int) -> dict:
    """retail_purchases's access budget: 10 uses over its lifetime, ``remaining`` of them left."""
    return access_summary(RETAIL_ASSOC, remaining, [{"startTime": CREATED, "remainingBudget": remaining, "budget": 10,
                                                     "budgetType": "LIFETIME"}])


def test_a_table_with_no_access_budget_left_stops_the_job_before_it_starts(env):
    outputs = copy.deepcopy(OUTPUTS)
    outputs["access_budgets"] = {"retail_purchases": RETAIL_ASSOC}
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    queue_access(env, lifetime(0))

    code = env.run("job", "retail_order_mix", outputs=outputs)

    assert code == 1
    assert ("[retail_order_mix] refusing to run 'retail_order_mix': table 'retail_purchases' has no access budget "
            "left (LIFETIME 0 of 10 left)") in env.err
    assert env.out == ""


def test_access_budget_left_lets_the_job_run(env):
    outputs = copy.deepcopy(OUTPUTS)
    outputs["access_budgets"] = {"retail_purchases": RETAIL_ASSOC}
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    queue_access(env, lifetime(3))
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))

    assert env.run("job", "retail_order_mix", outputs=outputs) == 0, env.err


# -- deadline, Ctrl-C, failures ----------------------------------------------------------------------------------
def cancel_params(jid: str) -> dict:
    return {**get_params(jid), "targetStatus": "CANCELLED"}


def test_a_job_still_running_at_the_deadline_is_cancelled(env):
    env.poll = lambda: ElapsedPoll(fraction=1.0, floor=10.0, cap=10.0, rng=NoJitter())  # one poll per 10 s
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    for _ in range(3):  # at 10, 20 and 25 s (the last wait is cut to the deadline)
        env.stub.add_response("get_protected_job", protected_job(J1, "STARTED"), get_params(J1))
    env.stub.add_response("update_protected_job", protected_job(J1, "CANCELLING"), cancel_params(J1))

    code = env.run("job", "retail_order_mix", "--timeout", "25")

    assert code == 1
    assert env.time.sleeps == [10.0, 10.0, 5.0] and env.time.now == 1025.0  # never past the deadline
    assert "deadline reached after 25.0s while STARTED; cancelling" in env.err
    assert f"job {J1} did not finish within --timeout 25s; it was cancelled (now CANCELLING)" in env.err
    assert env.out == ""


def test_a_cancel_that_fails_at_the_deadline_says_so(env):
    env.poll = lambda: ElapsedPoll(fraction=1.0, floor=10.0, cap=10.0, rng=NoJitter())
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED"), get_params(J1))
    env.stub.add_client_error("update_protected_job", "ConflictException", "job is finishing", 409,
                              expected_params=cancel_params(J1))

    assert env.run("job", "retail_order_mix", "--timeout", "10") == 1
    assert "it could NOT be cancelled (ConflictException: job is finishing)" in env.err
    assert f"`job-status {J1}`" in env.err


def test_ctrl_c_cancels_the_job_in_flight(env):
    env.time = FakeTime(interrupt_on_sleep=2)
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED"), get_params(J1))
    env.stub.add_response("update_protected_job", protected_job(J1, "CANCELLING"), cancel_params(J1))

    assert env.run("job", "retail_order_mix") == 130
    assert f"interrupted: cancelling job {J1}" in env.err and "it was cancelled (now CANCELLING)" in env.err


def test_a_failed_job_shows_code_message_and_that_it_is_not_retryable(env):
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED"), get_params(J1))
    env.stub.add_response("get_protected_job", failed(J1, "MALFORMED_SCRIPT", "No module named 'sklearn'", False),
                          get_params(J1))

    assert env.run("job", "retail_order_mix") == 1
    assert (f"[retail_order_mix] job {J1} FAILED after 1 attempt: MALFORMED_SCRIPT: No module named 'sklearn' "
            "(not retryable: fix the cause, then run again)") in env.err
    assert env.out == "" and os.listdir(env.out_dir) == [".journal"]  # no results; the journal records the failure


def test_a_transient_code_without_the_retry_flag_is_not_retried(env):
    """Unlike queries, a job is re-run only when the service sets error.retry.retryable."""
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", failed(J1, "TRANSIENT_ERROR", "throttled", None), get_params(J1))

    assert env.run("job", "retail_order_mix") == 1
    assert "FAILED after 1 attempt: TRANSIENT_ERROR: throttled (the service does not say whether" in env.err


def test_a_retryable_failure_is_run_again_after_backoff(env):
    env.put(f"results/jobs/{J2}/totals/part-0.csv", TOTALS)
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", failed(J1, "INSUFFICIENT_COMPUTE", "out of memory", True),
                          get_params(J1))
    env.stub.add_response("start_protected_job", protected_job(J2, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J2, location=f"s3://{BUCKET}/results/jobs/{J2}/"),
                          get_params(J2))

    assert env.run("job", "retail_order_mix") == 0, env.err
    assert ("attempt 1 failed with INSUFFICIENT_COMPUTE: out of memory; the service says it is retryable: retry 1/2 "
            "in 1.0s") in env.err
    assert f"started job {J2} (attempt 2)" in env.err and "SUCCESS after 3.0s (2 attempts;" in env.err
    assert env.time.sleeps == [1.0, 1.0, 1.0]  # poll, Backoff's first delay, poll


def test_retries_are_bounded_by_the_flag(env):
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    for jid in (J1, J2):
        env.stub.add_response("start_protected_job", protected_job(jid, "SUBMITTED"), start_params())
        env.stub.add_response("get_protected_job", failed(jid, "INTERNAL_ERROR", "boom", True), get_params(jid))

    assert env.run("job", "retail_order_mix", "--retries", "1") == 1
    assert f"job {J2} FAILED after 2 attempts: INTERNAL_ERROR: boom (retryable, but --retries 1" in env.err


def test_no_retry_once_the_deadline_has_passed(env):
    env.poll = lambda: ElapsedPoll(fraction=1.0, floor=10.0, cap=10.0, rng=NoJitter())
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", failed(J1, "INTERNAL_ERROR", "boom", True), get_params(J1))

    assert env.run("job", "retail_order_mix", "--timeout", "10") == 1  # a second start would find no response
    assert "FAILED after 1 attempt: INTERNAL_ERROR: boom (retryable, but" in env.err


def test_a_job_cancelled_elsewhere_is_reported(env):
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", protected_job(J1, "CANCELLING"), get_params(J1))
    env.stub.add_response("get_protected_job", protected_job(J1, "CANCELLED"), get_params(J1))

    assert env.run("job", "retail_order_mix") == 1
    assert "CANCELLING -> CANCELLED" in env.err and "was CANCELLED (by someone else" in env.err


def test_a_start_refused_by_the_service_is_reported_and_not_retried(env):
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_client_error("start_protected_job", "ValidationException", "table not open to jobs", 400,
                              expected_params=start_params())

    assert env.run("job", "retail_order_mix") == 1
    assert "could not start: ValidationException: table not open to jobs" in env.err


# -- killed, then run again: the journal re-attaches to the job; StartProtectedJob is never sent twice ------------
class Killed(BaseException):
    """The process dying (SIGKILL, a closed laptop, a CI timeout): no handler of the runner's runs, so the journal
    is what its last write left."""


class KilledOnSleep(FakeTime):
    def sleep(self, seconds: float) -> None:
        raise Killed


COMPUTE = {"worker": {"type": "CR.1X", "number": 4}}  # job_templates.retail_order_mix.compute, as sent


def journal_of(env: Env) -> dict:
    return json.loads(open(os.path.join(env.out_dir, ".journal", MEMBERSHIP_ID, "job-retail_order_mix.json"),
                           encoding="utf-8").read())


def run_again(env: Env, *flags: str) -> int:
    """The same command, as a new process would run it: new streams, a new clock (nothing queued is left)."""
    env.stdout, env.stderr, env.time = io.StringIO(), io.StringIO(), FakeTime()
    return env.run("job", "retail_order_mix", *flags)


@pytest.mark.parametrize("flags", [(), ("--resume",)])
def test_a_job_killed_after_its_start_is_re_attached_by_a_re_run_not_started_again(env, flags):
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)
    env.time = KilledOnSleep()  # killed while waiting for the first poll: the job is started and journaled
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED", compute=COMPUTE), start_params())
    with pytest.raises(Killed):
        env.run("job", "retail_order_mix")
    journal = journal_of(env)
    assert journal["status"] == "open"
    entry = journal["templates"]["retail_order_mix"]
    assert (entry["state"], [q["id"] for q in entry["queries"]], entry["start_requests"]) == ("running", [J1], 1)

    # The re-run reads the journal before any request: it re-reads the job and follows it. No start_protected_job is
    # queued (Stubber would refuse a second start), nor get_analysis_template: nothing is started, so nothing checked.
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED", compute=COMPUTE), get_params(J1))
    env.stub.add_response("get_protected_job", succeeded(J1, location=f"s3://{BUCKET}/results/jobs/{J1}/",
                                                         computeConfiguration=COMPUTE), get_params(J1))
    code = run_again(env, *flags)

    assert code == 0, env.err
    said = "resuming the run of journal" if flags else "of an unfinished run (started"
    assert said in env.err and "nothing it started is started again" in env.err
    assert f"re-attached to job {J1}, started by an earlier run: STARTED" in env.err
    assert f"SUCCESS after 1.0s (1 attempt; re-attached to job {J1} of an earlier run;" in env.err
    assert os.path.isfile(os.path.join(env.out_dir, "retail_order_mix", J1, "totals.csv"))
    journal = journal_of(env)
    entry = journal["templates"]["retail_order_mix"]
    assert journal["status"] == "finished" and entry["state"] == "succeeded"
    assert entry["queries"] == [{**entry["queries"][0], "id": J1, "how": "started, re-attached"}]
    assert entry["start_requests"] == 1  # what the service received, across both runs


def test_a_job_killed_while_its_start_was_on_the_wire_is_found_by_a_re_run_not_started_again(env):
    """Killed after the service created the job, before its answer arrived: the journal says `starting`; the re-run
    looks for the job (ListProtectedJobs, then GetProtectedJob of each candidate) and follows the one that matches."""
    env.put(f"results/jobs/{J1}/totals/part-0.csv", TOTALS)

    def die(**_kwargs):
        raise Killed

    env.cleanrooms.meta.events.register("after-call.cleanrooms.StartProtectedJob", die, unique_id="test-killed")
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED", compute=COMPUTE), start_params())
    with pytest.raises(Killed):
        env.run("job", "retail_order_mix")
    env.cleanrooms.meta.events.unregister("after-call.cleanrooms.StartProtectedJob", unique_id="test-killed")
    entry = journal_of(env)["templates"]["retail_order_mix"]
    assert entry["state"] == "starting" and entry["queries"] == [] and entry["intent_at"]

    created = dt.datetime.now(dt.timezone.utc)  # what the service would list: created just now
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)  # it may start: checked
    listed = {"id": J1, "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": created,
              "status": "STARTED", "receiverConfigurations": []}
    env.stub.add_response("list_protected_jobs", {"protectedJobs": [listed]},
                          {"membershipIdentifier": MEMBERSHIP_ID, "maxResults": 100})
    env.stub.add_response("get_protected_job", protected_job(J1, "STARTED", compute=COMPUTE), get_params(J1))
    env.stub.add_response("get_protected_job", succeeded(J1, location=f"s3://{BUCKET}/results/jobs/{J1}/",
                                                         computeConfiguration=COMPUTE), get_params(J1))
    code = run_again(env, "--resume")

    assert code == 0, env.err
    assert "the earlier run ended while its start was being sent: looking for the job it may have started" in env.err
    assert f"found job {J1}" in env.err
    assert os.path.isfile(os.path.join(env.out_dir, "retail_order_mix", J1, "totals.csv"))
    entry = journal_of(env)["templates"]["retail_order_mix"]
    assert entry["state"] == "succeeded" and [(q["id"], q["how"]) for q in entry["queries"]] == [(J1, "reconciled")]


def test_a_job_journal_of_the_wrong_shape_is_one_line_and_sends_nothing(env):
    """The job's journal is read through the same typed model as run's: an error that is a string is refused."""
    path = os.path.join(env.out_dir, ".journal", MEMBERSHIP_ID, "job-retail_order_mix.json")
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", failed(J1, "MALFORMED_SCRIPT", "no module", False), get_params(J1))
    assert env.run("job", "retail_order_mix") == 1
    data = journal_of(env)
    data["status"] = "open"
    data["templates"]["retail_order_mix"]["error"] = "MALFORMED_SCRIPT"
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    before = open(path, encoding="utf-8").read()
    for flags in ((), ("--resume",)):
        assert run_again(env, *flags) == 2  # Stubber has nothing queued: any request would fail the test
        errors = [line for line in env.err.splitlines() if line.startswith("error: ")]
        assert errors == [f"error: journal {path} is damaged or half-written (templates.retail_order_mix.error must "
                          "be an object, got a string ('MALFORMED_SCRIPT')); nothing was started. Check `history` for "
                          "queries it may have started, then move the file away to start anew"], env.err
    assert open(path, encoding="utf-8").read() == before


def test_missing_result_files_are_an_error(env):
    env.stub.add_response("get_analysis_template", template_response(), TEMPLATE_PARAMS)
    env.stub.add_response("start_protected_job", protected_job(J1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_job", succeeded(J1), get_params(J1))

    assert env.run("job", "retail_order_mix") == 1
    assert "job succeeded but its results could not be retrieved: no result files at" in env.err


# -- refused locally: exit 2, nothing sent --------------------------------------------------------------------
@pytest.mark.parametrize("argv, outputs, expected", [
    (["job", "retail_order_mx"], OUTPUTS,
     "unknown job 'retail_order_mx': stack output 'job_templates' declares retail_order_mix; pending (waiting for "
     "tables): media_mix"),
    (["job", "media_mix"], OUTPUTS, "job 'media_mix' is in stack output 'pending_jobs': its template is not created "
                                    "yet, it waits for table media_engagement"),
    (["job", "retail_order_mix", "--param", "min_orders=many"], OUTPUTS, "parameter 'min_orders'='many': not an "
                                                                          "integer (INT)"),
    (["job", "retail_order_mix", "--param", "max_orders=3"], OUTPUTS, "unknown parameter 'max_orders'"),
    (["job", "retail_order_mix", "--param", "since=yesterday"], OUTPUTS, "parameter 'since'"),
    (["job", "retail_order_mix", "--workers", "3"], OUTPUTS, "--workers must be an integer from 4 to 128"),
    (["job", "retail_order_mix", "--workers", "129"], OUTPUTS, "--workers must be an integer from 4 to 128"),
    (["job", "retail_order_mix", "--worker-type", "CR.8X"], OUTPUTS, "--worker-type must be CR.1X or CR.4X"),
    (["job", "retail_order_mix", "--workers", "8"], job_outputs(compute=None), "--workers 8 needs a worker type"),
    (["job", "retail_order_mix", "--worker-type", "CR.4X"], job_outputs(compute=None),
     "--worker-type CR.4X needs a number of workers"),
    (["job", "retail_order_mix", "--timeout", "0"], OUTPUTS, "--timeout"),
    (["job", "retail_order_mix"], {**OUTPUTS, "runs_jobs": False, "job_templates": {}}, "stack output 'runs_jobs'"),
    (["job", "retail_order_mix"], {**OUTPUTS, "job_templates": None}, "missing stack output 'job_templates'"),
    (["job", "retail_order_mix"], job_outputs(sha256="abc"), "job_templates.retail_order_mix.sha256"),
])
def test_bad_job_inputs_are_refused_before_any_client_exists(env, argv, outputs, expected):
    code = env.run(*argv, outputs=outputs)
    assert code == 2, env.err
    assert expected in env.err, env.err
    assert env.created == [] and env.out == ""


def test_the_job_worker_limits_agree_with_the_installed_botocore_model():
    model = botocore.session.get_session().get_service_model("cleanrooms")
    worker = model.shape_for("ProtectedJobWorkerComputeConfiguration")
    assert tuple(worker.members["type"].enum) == checks.JOB_WORKER_TYPES
    assert worker.required_members == ["type", "number"]
    number = worker.members["number"].metadata
    assert number["min"] == checks.JOB_WORKERS[0] and number["max"] >= checks.JOB_WORKERS[1]
    # The 4-128 the runner enforces is the API reference's, on the (query) worker's `number`.
    doc = model.shape_for("WorkerComputeConfiguration").members["number"].documentation
    assert "PySpark jobs support a minimum value of 4 and a maximum value of 128" in doc
    assert set(qjobs.JOB_STATUSES) == set(model.shape_for("ProtectedJobStatus").enum)
    assert qjobs.JOB_TERMINAL < set(model.shape_for("ProtectedJobStatus").enum)
    # No resultConfiguration is sent: the one the model allows names a member account, not a bucket.
    output = model.shape_for("ProtectedJobOutputConfigurationInput")
    assert list(output.members) == ["member"]


# -- job-status and history --jobs -------------------------------------------------------------------------------
def test_job_status_shows_one_job(env):
    failed_job = failed(J1, "INSUFFICIENT_COMPUTE", "out of memory", True)
    failed_job["protectedJob"].update(computeConfiguration={"worker": {"type": "CR.4X", "number": 16}},
                                      statistics={"totalDurationInMillis": 61000,
                                                  "billedResourceUtilization": {"units": 0.5}})
    env.stub.add_response("get_protected_job", failed_job, get_params(J1))

    assert env.run("job-status", J1) == 1
    out = env.out
    for fragment in (J1, "FAILED", "retail_order_mix", "param min_orders", "61.0s", "CR.4X x 16 workers = 128 CRPU",
                     "0.5 CRPU-hours", "INSUFFICIENT_COMPUTE: out of memory"):
        assert fragment in out, out
    assert [[c.strip() for c in line.split(" | ")] for line in out.splitlines() if line.startswith("retryable")] == [
        ["retryable", "True"]]


def test_job_status_refuses_a_bad_id_locally(env):
    assert env.run("job-status", "job-1") == 2
    assert "job-status JOB_ID must match ProtectedJobIdentifier" in env.err and env.created == []


def test_history_jobs_lists_recent_jobs(env):
    def summary(jid: str, status: str) -> dict:
        return {"id": jid, "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": CREATED,
                "status": status, "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]}

    base = {"membershipIdentifier": MEMBERSHIP_ID, "status": "SUCCESS", "maxResults": 2}
    env.stub.add_response("list_protected_jobs", {"protectedJobs": [summary(J1, "SUCCESS")], "nextToken": "t2"}, base)
    env.stub.add_response("list_protected_jobs", {"protectedJobs": [summary(J2, "SUCCESS")]},
                          {**base, "nextToken": "t2"})

    assert env.run("history", "--jobs", "--limit", "2", "--status", "SUCCESS") == 0, env.err
    assert env.out.splitlines()[0].startswith("job id") and J1 in env.out and J2 in env.out


def test_history_jobs_has_no_timed_out_status(env):
    assert env.run("history", "--jobs", "--status", "TIMED_OUT") == 2
    assert "--status TIMED_OUT does not apply with --jobs" in env.err and env.created == []


# -- the real stack's export ---------------------------------------------------------------------------------------
def test_the_runner_reads_the_analyst_stacks_job_export(bootstrap):
    exported = json.loads(json.dumps(bootstrap.a3.outputs))
    settings = Settings(load_outputs("-", io.StringIO(json.dumps(exported))), {})
    job = settings.job("retail_order_mix")
    script = qjobs.JOBS_DIR / "retail_order_mix" / "entrypoint.py"
    assert job.sha256 == qjobs.file_sha256(script)
    assert job.compute == Compute("CR.1X", 4) and job.tables == ("retail_purchases",)
    assert [(p.name, p.type, p.default) for p in job.parameters] == [("min_orders", "INT", "1")]
    assert job.arn.endswith(job.id) and settings.get("runs_jobs") is True

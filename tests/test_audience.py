"""`python -m queryrunner audience`: the seed provider's lookalike segments, every request checked against the real
cleanroomsml and s3 models (botocore Stubber), every bad input refused before one is sent."""

from __future__ import annotations

import datetime as dt
import io
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from queryrunner.cli import main
from tests.support.clock import Clock

REGION, A, B = "us-east-1", "111111111111", "222222222222"
COLLABORATION = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
MEMBERSHIP = "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e"
CONFIGURED = f"arn:aws:cleanrooms-ml:{REGION}:{B}:configured-audience-model/5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
JOB = f"arn:aws:cleanrooms-ml:{REGION}:{A}:audience-generation-job/6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"
ROLE = f"arn:aws:iam::{A}:role/service-role/org-a-cleanrooms-ml-read-seeds"
KEY = f"arn:aws:kms:{REGION}:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = f"org-a-cleanrooms-seeds-{A}"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
TEMPLATE_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
TEMPLATE_ARN = f"arn:aws:cleanrooms:{REGION}:{A}:membership/{MEMBERSHIP}/analysistemplate/{TEMPLATE_ID}"
OUTPUTS = {
    "region": REGION, "membership_id": MEMBERSHIP, "collaboration_id": COLLABORATION,
    "seed_bucket": BUCKET, "seed_prefix": "seeds", "seed_role_arn": ROLE, "seed_kms_key_arn": KEY,
    "audience_models": {"org-b": {"name": "lookalike", "configured_audience_model_arn": CONFIGURED,
                                  "min_matching_seed_size": 30, "size_type": "ABSOLUTE", "size_bins": [1000, 5000]}},
    "analysis_templates": {"loyal_customers": {"arn": TEMPLATE_ARN, "id": TEMPLATE_ID, "differential_privacy": False,
                                               "parameters": [{"name": "min_orders", "type": "INTEGER",
                                                               "default": "5"}]}},
}
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def seed(tmp_path, users: int, name: str = "seed.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"user_id": f"user-{i:05d}"}) + "\n" for i in range(users)))
    return str(path)


class Clients:
    def __init__(self):
        self.ml, self.s3 = SESSION.client("cleanroomsml"), SESSION.client("s3")
        self.ml_stub, self.s3_stub = Stubber(self.ml), Stubber(self.s3)
        self.requested: list[str] = []

    def __call__(self, service: str, region: str):
        self.requested.append(service)
        return {"cleanroomsml": self.ml, "s3": self.s3}[service]

    def run(self, *argv: str, outputs: dict = OUTPUTS) -> tuple[int, str, str]:
        out, err, clock = io.StringIO(), io.StringIO(), Clock()
        with self.ml_stub, self.s3_stub:
            code = main(["audience", *argv, "--outputs", "-"], stdin=io.StringIO(json.dumps(outputs)), stdout=out,
                        stderr=err, client_factory=self, clock=clock, sleep=clock.sleep)
        self.ml_stub.assert_no_pending_responses()
        self.s3_stub.assert_no_pending_responses()
        return code, out.getvalue(), err.getvalue()


def job(status: str, **extra) -> dict:
    return {"createTime": T0, "updateTime": T0, "audienceGenerationJobArn": JOB, "name": "spring", "status": status,
            "configuredAudienceModelArn": CONFIGURED, **extra}


@pytest.fixture
def clients():
    return Clients()


def test_a_seed_file_is_uploaded_then_the_segment_generated_and_exported(clients, tmp_path):
    path = seed(tmp_path, 40)
    clients.s3_stub.add_response("put_object", {}, {
        "Bucket": BUCKET, "Key": "seeds/spring/seed.jsonl", "Body": ANY, "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KEY})
    clients.ml_stub.add_response("start_audience_generation_job", {"audienceGenerationJobArn": JOB}, {
        "name": "spring", "configuredAudienceModelArn": CONFIGURED, "collaborationId": COLLABORATION,
        "seedAudience": {"dataSource": {"s3Uri": f"s3://{BUCKET}/seeds/spring/"}, "roleArn": ROLE},
        "includeSeedInOutput": False})
    for status in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
        clients.ml_stub.add_response("get_audience_generation_job", job(status), {"audienceGenerationJobArn": JOB})
    clients.ml_stub.add_response("get_audience_generation_job", job("ACTIVE", metrics={
        "relevanceMetrics": [{"audienceSize": {"type": "ABSOLUTE", "value": 1000}, "score": 0.82}],
        "recallMetric": 0.4}), {"audienceGenerationJobArn": JOB})
    clients.ml_stub.add_response("start_audience_export_job", {}, {
        "name": "spring-5000", "audienceGenerationJobArn": JOB, "audienceSize": {"type": "ABSOLUTE", "value": 5000}})
    clients.ml_stub.add_response("list_audience_export_jobs", {"audienceExportJobs": [{
        "createTime": T0, "updateTime": T0, "name": "spring-5000", "audienceGenerationJobArn": JOB,
        "audienceSize": {"type": "ABSOLUTE", "value": 5000}, "status": "ACTIVE",
        "outputLocation": f"s3://org-b-cleanrooms-segments-{B}/segments/"}]}, {"audienceGenerationJobArn": JOB})

    code, out, err = clients.run("generate", "spring", "--seed-file", path, "--size", "5000")

    assert code == 0, err
    assert "segment spring: ACTIVE" in out and "relevance at 1000: 0.82" in out and "recall: 0.4" in out
    assert f"export spring-5000: 5000 users, delivered to s3://org-b-cleanrooms-segments-{B}/segments/" in out
    assert "segment spring: CREATE_IN_PROGRESS" in err  # each state change said once


def test_a_seed_template_becomes_the_seed_query(clients):
    clients.ml_stub.add_response("start_audience_generation_job", {"audienceGenerationJobArn": JOB}, {
        "name": "loyal", "configuredAudienceModelArn": CONFIGURED, "collaborationId": COLLABORATION,
        "seedAudience": {"roleArn": ROLE, "sqlParameters": {"analysisTemplateArn": TEMPLATE_ARN,
                                                            "parameters": {"min_orders": "8"}}},
        "includeSeedInOutput": True})
    clients.ml_stub.add_response("get_audience_generation_job", job("ACTIVE"), {"audienceGenerationJobArn": JOB})
    code, _, err = clients.run("generate", "loyal", "--seed-template", "loyal_customers", "--param", "min_orders=8",
                               "--include-seed")
    assert code == 0, err
    assert clients.requested == ["cleanroomsml"]  # no upload for a query seed


def test_a_failed_generation_says_why(clients, tmp_path):
    path = seed(tmp_path, 40)
    clients.s3_stub.add_response("put_object", {})
    clients.ml_stub.add_response("start_audience_generation_job", {"audienceGenerationJobArn": JOB})
    clients.ml_stub.add_response("get_audience_generation_job", job("CREATE_FAILED", statusDetails={
        "statusCode": "SEED_TOO_SMALL", "message": "too few seed users matched"}), {"audienceGenerationJobArn": JOB})
    code, _, err = clients.run("generate", "spring", "--seed-file", path, "--size", "1000")
    assert code == 1 and "generation failed: SEED_TOO_SMALL: too few seed users matched" in err


def test_following_stops_at_the_deadline_with_how_to_go_on(clients, tmp_path):
    path = seed(tmp_path, 40)
    clients.s3_stub.add_response("put_object", {})
    clients.ml_stub.add_response("start_audience_generation_job", {"audienceGenerationJobArn": JOB})
    for _ in range(4):  # 5 + 10 + 15 (the rest of 30 s): four looks
        clients.ml_stub.add_response("get_audience_generation_job", job("CREATE_IN_PROGRESS"),
                                     {"audienceGenerationJobArn": JOB})
    code, _, err = clients.run("generate", "spring", "--seed-file", path, "--timeout", "30")
    assert code == 1 and f"audience status {JOB}" in err


def test_status_shows_the_segment_and_its_exports(clients):
    clients.ml_stub.add_response("get_audience_generation_job", job("ACTIVE"), {"audienceGenerationJobArn": JOB})
    clients.ml_stub.add_response("list_audience_export_jobs", {"audienceExportJobs": [{
        "createTime": T0, "updateTime": T0, "name": "spring-1000", "audienceGenerationJobArn": JOB,
        "audienceSize": {"type": "ABSOLUTE", "value": 1000}, "status": "CREATE_IN_PROGRESS"}]},
        {"audienceGenerationJobArn": JOB})
    code, out, _ = clients.run("status", JOB)
    assert code == 0 and "export spring-1000: CREATE_IN_PROGRESS (1000)" in out


@pytest.mark.parametrize("argv, users, expected", [
    (["generate", "spring", "--seed-file", "{seed}"], 10, "has 10 distinct user ids; org-b's model takes 30 to 500,000"),
    (["generate", "spring", "--seed-file", "{seed}", "--size", "3000"], 40,
     "--size 3000 is not one of the audience sizes org-b's model offers (1000, 5000)"),
    (["generate", "spring", "--seed-file", "{seed}", "--size", "50%"], 40, "--size 50% is not one of the audience sizes"),
    (["generate", "spring", "--seed-file", "{seed}", "--size", "0"], 40, "--size must be a number of users"),
    (["generate", "spring"], 40, "give --seed-file FILE or --seed-template TEMPLATE"),
    (["generate", "spring", "--seed-file", "{seed}", "--seed-template", "loyal_customers"], 40, "give --seed-file"),
    (["generate", "-bad name", "--seed-file", "{seed}"], 40, "must be 1-63 letters"),
    (["generate", "spring", "--seed-file", "{seed}", "--model", "org-c"], 40, "--model 'org-c': no such partner model"),
    (["generate", "spring", "--seed-template", "nope"], 40, "unknown analysis template 'nope'"),
    (["generate", "spring", "--seed-template", "loyal_customers", "--param", "min_orders=many"], 40, "min_orders"),
    (["generate", "spring", "--seed-file", "{seed}", "--timeout", "0"], 40, "--timeout"),
    (["status", "arn:aws:s3:::bucket"], 40, "is not an audience generation job ARN"),
    (["export", JOB, "--size", "7"], 40, "--size 7 is not one of the audience sizes"),
])
def test_bad_input_is_refused_before_anything_is_sent(clients, tmp_path, argv, users, expected):
    path = seed(tmp_path, users)
    code, out, err = clients.run(*[a.replace("{seed}", path) for a in argv])
    assert code == 2 and out == "" and clients.requested == []
    lines = err.strip().splitlines()  # one line; bad --param values use the runner's list form (one per value)
    assert (len(lines) == 1 or lines[0] == "error: bad parameters, nothing was sent:") and expected in err, err


@pytest.mark.parametrize("lines, expected", [
    (['{"user_id": "a"}', "not json"], "seed.jsonl:2 is not JSON"),
    (['{"user": "a"}'], "seed.jsonl:1 has no \"user_id\" text"),
    (['{"user_id": 7}'], "seed.jsonl:1 has no \"user_id\" text"),
])
def test_a_malformed_seed_file_names_its_line(clients, tmp_path, lines, expected):
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = clients.run("generate", "spring", "--seed-file", str(path))
    assert code == 2 and expected in err and clients.requested == []


def test_without_a_partner_model_the_outputs_say_what_is_missing(clients, tmp_path):
    outputs = {k: v for k, v in OUTPUTS.items() if k != "audience_models"}
    code, _, err = clients.run("generate", "spring", "--seed-file", seed(tmp_path, 40), outputs=outputs)
    assert code == 2 and "stack output 'audience_models' is missing" in err and "lookalikeSeeds" in err

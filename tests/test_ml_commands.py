"""`python -m queryrunner ml`: a custom model's channel, training, inference and export, every request checked
against the real cleanroomsml model (botocore Stubber), every bad input refused before one is sent."""

from __future__ import annotations

import datetime as dt
import io
import json
import socket

import boto3
import pytest
from botocore.stub import Stubber

from queryrunner import cloud
from queryrunner.cli import main
from tests.support.clock import Clock

REGION, A, B = "us-east-1", "111111111111", "222222222222"
COLLABORATION = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
MEMBERSHIP = "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e"
BASE = f"arn:aws:cleanrooms-ml:{REGION}:{A}:membership/{MEMBERSHIP}"
ASSOCIATION = f"{BASE}/configured-model-algorithm-association/2b3c4d5e-6f70-4a81-9b2c-3d4e5f6a7b8c"
CHANNEL = f"{BASE}/ml-input-channel/3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
MODEL = f"{BASE}/trained-model/4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a"
INFERENCE = f"{BASE}/trained-model-inference-job/5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
ROLE = f"arn:aws:iam::{A}:role/org-a-cleanrooms-ml-input-channel"
KEY = f"arn:aws:kms:{REGION}:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TEMPLATE_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
TEMPLATE_ARN = f"arn:aws:cleanrooms:{REGION}:{A}:membership/{MEMBERSHIP}/analysistemplate/{TEMPLATE_ID}"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
OUTPUTS = {
    "region": REGION, "membership_id": MEMBERSHIP, "collaboration_id": COLLABORATION,
    # The member who can query (mlTraining: true): its channel role and key, and the members' custom models.
    "ml_channel_role_arn": ROLE, "ml_kms_key_arn": KEY,
    "custom_models": {"org-b": {"name": "purchase_propensity", "association_arn": ASSOCIATION}},
    "analysis_templates": {"training_rows": {
        "arn": TEMPLATE_ARN, "id": TEMPLATE_ID, "differential_privacy": False, "tables": ["media_engagement"],
        "parameters": [{"name": "since", "type": "DATE", "default": "2026-01-01"}],
        # The table lets Clean Rooms ML use its output, by this membership's model associations.
        "additional_analyses": {"media_engagement": {"mode": "ALLOWED", "allowed": [
            f"{BASE}/configured-model-algorithm-association/*"]}}}},
}
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


class Clients:
    def __init__(self):
        self.ml = SESSION.client("cleanroomsml")
        self.stub = Stubber(self.ml)
        self.requested: list[str] = []

    def __call__(self, service: str, region: str):
        self.requested.append(service)
        return {"cleanroomsml": self.ml}[service]

    def run(self, *argv: str, outputs: dict = OUTPUTS) -> tuple[int, str, str]:
        out, err, clock = io.StringIO(), io.StringIO(), Clock()
        with self.stub:
            code = main(["ml", *argv, "--outputs", "-"], stdin=io.StringIO(json.dumps(outputs)), stdout=out,
                        stderr=err, client_factory=self, clock=clock, sleep=clock.sleep)
        self.stub.assert_no_pending_responses()
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def clients():
    return Clients()


def channel(status: str, **extra) -> dict:
    return {"membershipIdentifier": MEMBERSHIP, "collaborationIdentifier": COLLABORATION, "mlInputChannelArn": CHANNEL,
            "name": "spring", "configuredModelAlgorithmAssociations": [ASSOCIATION], "status": status,
            "retentionInDays": 7, "createTime": T0, "updateTime": T0, "inputChannel": {
                "dataSource": {"protectedQueryInputParameters": {"sqlParameters": {
                    "analysisTemplateArn": TEMPLATE_ARN}}}, "roleArn": ROLE}, **extra}


def trained(status: str, **extra) -> dict:
    return {"membershipIdentifier": MEMBERSHIP, "collaborationIdentifier": COLLABORATION, "trainedModelArn": MODEL,
            "name": "propensity", "status": status, "configuredModelAlgorithmAssociationArn": ASSOCIATION,
            "createTime": T0, "updateTime": T0, "dataChannels": [{"mlInputChannelArn": CHANNEL,
                                                                  "channelName": "train"}], **extra}


def inference(status: str) -> dict:
    return {"createTime": T0, "updateTime": T0, "trainedModelInferenceJobArn": INFERENCE, "name": "scores",
            "status": status, "trainedModelArn": MODEL, "resourceConfig": {"instanceType": "ml.m5.xlarge",
                                                                           "instanceCount": 1},
            "outputConfiguration": {"members": [{"accountId": B}]}, "membershipIdentifier": MEMBERSHIP,
            "dataSource": {"mlInputChannelArn": CHANNEL}}


def test_a_channel_is_created_from_a_template_with_the_stack_role_and_key(clients):
    clients.stub.add_response("create_ml_input_channel", {"mlInputChannelArn": CHANNEL}, {
        "membershipIdentifier": MEMBERSHIP, "name": "spring", "retentionInDays": 14,
        "configuredModelAlgorithmAssociations": [ASSOCIATION],
        "inputChannel": {"dataSource": {"protectedQueryInputParameters": {"sqlParameters": {
            "analysisTemplateArn": TEMPLATE_ARN, "parameters": {"since": "2026-06-01"}}}}, "roleArn": ROLE},
        "kmsKeyArn": KEY})
    for status in ("CREATE_PENDING", "CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "ACTIVE"):
        clients.stub.add_response("get_ml_input_channel", channel(status), {
            "mlInputChannelArn": CHANNEL, "membershipIdentifier": MEMBERSHIP})

    code, out, err = clients.run("channel", "spring", "--template", "training_rows", "--param", "since=2026-06-01",
                                 "--retention-days", "14")

    assert code == 0, err
    assert f"channel spring: ACTIVE ({CHANNEL})" in out
    assert err.count("CREATE_IN_PROGRESS") == 1  # each state change said once


def test_training_runs_on_the_channel_and_a_failure_says_why(clients):
    clients.stub.add_response("create_trained_model", {"trainedModelArn": MODEL}, {
        "membershipIdentifier": MEMBERSHIP, "name": "propensity", "configuredModelAlgorithmAssociationArn": ASSOCIATION,
        "resourceConfig": {"instanceType": "ml.m5.2xlarge", "instanceCount": 2, "volumeSizeInGB": 20},
        "dataChannels": [{"mlInputChannelArn": CHANNEL, "channelName": "train"}],
        "stoppingCondition": {"maxRuntimeInSeconds": 3 * 3600}, "kmsKeyArn": KEY})
    clients.stub.add_response("get_trained_model", trained("CREATE_IN_PROGRESS"), {
        "trainedModelArn": MODEL, "membershipIdentifier": MEMBERSHIP})
    clients.stub.add_response("get_trained_model", trained("CREATE_FAILED", statusDetails={
        "statusCode": "AlgorithmError", "message": "train.py exited 1"}), {
        "trainedModelArn": MODEL, "membershipIdentifier": MEMBERSHIP})

    code, _, err = clients.run("train", "propensity", "--channel", CHANNEL, "--instance-type", "ml.m5.2xlarge",
                               "--instances", "2", "--volume-gb", "20", "--max-hours", "3")

    assert code == 1
    assert "training propensity CREATE_FAILED: AlgorithmError: train.py exited 1" in err


def test_inference_sends_its_output_to_the_named_members(clients):
    clients.stub.add_response("start_trained_model_inference_job", {"trainedModelInferenceJobArn": INFERENCE}, {
        "membershipIdentifier": MEMBERSHIP, "name": "scores", "trainedModelArn": MODEL,
        "configuredModelAlgorithmAssociationArn": ASSOCIATION,
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"members": [{"accountId": B}], "accept": "text/csv"},
        "dataSource": {"mlInputChannelArn": CHANNEL}, "kmsKeyArn": KEY})
    clients.stub.add_response("get_trained_model_inference_job", inference("ACTIVE"), {
        "trainedModelInferenceJobArn": INFERENCE, "membershipIdentifier": MEMBERSHIP})
    code, out, err = clients.run("infer", "scores", "--model", MODEL, "--channel", CHANNEL, "--to", B, "--to", B)
    assert code == 0, err
    assert f"inference scores: ACTIVE, output to {B}" in out


def test_export_and_status(clients):
    clients.stub.add_response("start_trained_model_export_job", {}, {
        "name": "artifacts", "trainedModelArn": MODEL, "membershipIdentifier": MEMBERSHIP,
        "outputConfiguration": {"members": [{"accountId": A}]}})
    code, out, err = clients.run("export", "artifacts", "--model", MODEL, "--to", A)
    assert code == 0, err
    assert "export artifacts" in out and A in out

    clients.stub.add_response("get_trained_model_inference_job", inference("CANCEL_FAILED"), {
        "trainedModelInferenceJobArn": INFERENCE, "membershipIdentifier": MEMBERSHIP})
    code, out, _ = clients.run("status", INFERENCE)
    assert code == 1 and "trained-model-inference-job scores: CANCEL_FAILED" in out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [("train", "propensity", "--channel", CHANNEL),
                                  ("channel", "spring", "--template", "training_rows"),
                                  ("infer", "scores", "--model", MODEL, "--channel", CHANNEL, "--to", B),
                                  ("export", "artifacts", "--model", MODEL, "--to", A)])
def test_a_start_is_sent_once_and_a_read_retried(monkeypatch, argv):
    """Against a port nobody listens on: a start whose answer is lost may have started (and billed) a job, so
    botocore must not send it again; a read (ml status) is retried as usual."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLEANROOMSML", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("QUERYRUNNER_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    sent: list[str] = []

    def factory(service: str, region: str):
        client = cloud.default_client_factory(None, cloud.network_settings(), session=SESSION)(service, region)
        client.meta.events.register("before-send.cleanroomsml", lambda request, **kw: sent.append(request.url))
        return client

    def run(*args: str) -> tuple[int, str]:
        err = io.StringIO()
        code = main(["ml", *args, "--outputs", "-"], stdin=io.StringIO(json.dumps(OUTPUTS)), stdout=io.StringIO(),
                    stderr=err, client_factory=factory)
        return code, err.getvalue()

    code, err = run(*argv)
    assert code != 0 and "Traceback" not in err, err
    assert len(sent) == 1, sent
    sent.clear()
    code, err = run("status", MODEL)
    assert code != 0 and len(sent) == 6, (sent, err)


@pytest.mark.parametrize("argv, message", [
    (("channel", "spring", "--template", "nope"), "nope"),
    (("channel", "spring", "--template", "training_rows", "--retention-days", "31"), "--retention-days must be 1 to 30"),
    (("channel", "-bad name", "--template", "training_rows"), "NAME"),
    (("channel", "spring", "--template", "training_rows", "--param", "until=2026-01-01"), "until"),
    (("train", "propensity", "--channel", MODEL), "--channel must be a ml-input-channel ARN"),
    (("train", "propensity", "--channel", CHANNEL, "--instance-type", "m5.large"), "not a training instance type"),
    (("train", "propensity", "--channel", CHANNEL, "--max-hours", "0"), "--max-hours must be 1 to 672"),
    (("train", "propensity", "--channel", CHANNEL, "--max-hours", "673"), "--max-hours must be 1 to 672"),
    (("train", "propensity", "--channel", CHANNEL, "--instances", "6"), "--instances must be 1 to 5"),
    (("train", "propensity", "--channel", CHANNEL, "--volume-gb", "8193"), "--volume-gb must be 1 to 8192"),
    (("infer", "scores", "--model", MODEL, "--channel", CHANNEL, "--to", B, "--instances", "11"),
     "--instances must be 1 to 10 (InferenceResourceConfig.instanceCount)"),
    (("infer", "scores", "--model", MODEL, "--channel", CHANNEL), "--to ACCOUNT"),
    (("infer", "scores", "--model", MODEL, "--channel", CHANNEL, "--to", "12345"), "12-digit"),
    (("export", "artifacts", "--model", CHANNEL, "--to", A), "--model must be a trained-model ARN"),
    (("status", "arn:aws:s3:::bucket"), "ml status ARN"),
    (("train", "propensity", "--channel", CHANNEL, "--timeout", "0"), "--timeout"),
])
def test_bad_input_is_refused_before_anything_is_sent(clients, argv, message):
    code, out, err = clients.run(*argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    # one line, except the parameter check, which lists every bad parameter under one heading
    assert len(err.strip().splitlines()) == 1 or err.startswith("error: bad parameters, nothing was sent")
    assert clients.requested == []


def test_a_stack_without_the_trainer_or_a_model_says_which_output_is_missing(clients):
    without_trainer = {k: v for k, v in OUTPUTS.items() if k != "ml_kms_key_arn"}
    code, _, err = clients.run("train", "propensity", "--channel", CHANNEL, outputs=without_trainer)
    assert code == 2 and "ml_kms_key_arn" in err and "mlTraining: true" in err
    code, _, err = clients.run("train", "propensity", "--channel", CHANNEL, outputs={**OUTPUTS, "custom_models": {}})
    assert code == 2 and "custom_models" in err and "imagesPushed" in err
    assert clients.requested == []


def test_the_provider_is_named_when_members_offer_several_models(clients):
    other = ASSOCIATION.replace("2b3c4d5e", "9b3c4d5e")
    outputs = {**OUTPUTS, "custom_models": {**OUTPUTS["custom_models"],
                                            "org-c": {"name": "churn", "association_arn": other}}}
    code, _, err = clients.run("train", "churn", "--channel", CHANNEL, outputs=outputs)
    assert code == 2 and "--provider MEMBER" in err and "org-b, org-c" in err
    code, _, err = clients.run("train", "churn", "--channel", CHANNEL, "--provider", "org-d", outputs=outputs)
    assert code == 2 and "--provider 'org-d' offers no custom model" in err
    assert clients.requested == []
    clients.stub.add_response("create_trained_model", {"trainedModelArn": MODEL}, {
        "membershipIdentifier": MEMBERSHIP, "name": "churn", "configuredModelAlgorithmAssociationArn": other,
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
        "dataChannels": [{"mlInputChannelArn": CHANNEL, "channelName": "train"}],
        "stoppingCondition": {"maxRuntimeInSeconds": 7200}, "kmsKeyArn": KEY})
    clients.stub.add_response("get_trained_model", trained("ACTIVE"), {
        "trainedModelArn": MODEL, "membershipIdentifier": MEMBERSHIP})
    code, out, err = clients.run("train", "churn", "--channel", CHANNEL, "--provider", "org-c", outputs=outputs)
    assert code == 0, err


def rules(mode: str, allowed: list[str]) -> dict:
    template = dict(OUTPUTS["analysis_templates"]["training_rows"],
                    additional_analyses={"media_engagement": {"mode": mode, "allowed": allowed}})
    return {**OUTPUTS, "analysis_templates": {"training_rows": template}}


@pytest.mark.parametrize("mode, allowed, fragment", [
    ("NOT_ALLOWED", [], "does not let Clean Rooms ML use its output (additionalAnalyses NOT_ALLOWED)"),
    ("ALLOWED", [], "allows additional analyses by none, not this model's association"),
    ("REQUIRED", [f"arn:aws:cleanrooms-ml:{REGION}:{B}:membership/*/configured-model-algorithm-association/*"],
     "not this model's association"),
])
def test_a_channel_over_a_table_that_keeps_its_output_from_ml_is_refused(clients, mode, allowed, fragment):
    code, _, err = clients.run("channel", "spring", "--template", "training_rows", outputs=rules(mode, allowed))
    assert code == 2 and fragment in err and "'media_engagement'" in err and len(err.strip().splitlines()) == 1
    assert clients.requested == []


def test_a_table_that_requires_ml_and_names_the_association_passes(clients):
    clients.stub.add_response("create_ml_input_channel", {"mlInputChannelArn": CHANNEL}, {
        "membershipIdentifier": MEMBERSHIP, "name": "spring", "retentionInDays": 7,
        "configuredModelAlgorithmAssociations": [ASSOCIATION],
        "inputChannel": {"dataSource": {"protectedQueryInputParameters": {"sqlParameters": {
            "analysisTemplateArn": TEMPLATE_ARN, "parameters": {"since": "2026-01-01"}}}}, "roleArn": ROLE},
        "kmsKeyArn": KEY})
    clients.stub.add_response("get_ml_input_channel", channel("ACTIVE"), {
        "mlInputChannelArn": CHANNEL, "membershipIdentifier": MEMBERSHIP})
    code, _, err = clients.run("channel", "spring", "--template", "training_rows",
                               outputs=rules("REQUIRED", [ASSOCIATION]))
    assert code == 0, err

"""Where a member's Clean Rooms ML output, metrics and logs go: its bucket, the role Clean Rooms ML writes with,
and its membership's ML configuration (PutMLConfiguration, checked against the real cleanroomsml model)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from components import ml_configuration_api as api
from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_config, stack_ref
from tests.support.iam_lint import lint_policy

REGION, A, B = "us-east-1", "111111111111", "222222222222"
MEMBERSHIP = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
ROLE = f"arn:aws:iam::{A}:role/service-role/org-a-cleanrooms-ml-output"
PROPS = {"membership_id": MEMBERSHIP, "output_uri": f"s3://org-a-cleanrooms-ml-output-{A}/ml-output/",
         "role_arn": ROLE, "account_id": A, "region": REGION}
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
INFERENCE = "CAN_RECEIVE_INFERENCE_OUTPUT"


def test_the_configuration_is_put_updated_in_place_and_deleted():
    ml = SESSION.client("cleanroomsml")
    provider = api._Provider(client=lambda props: ml)
    with Stubber(ml) as stub:
        stub.add_response("put_ml_configuration", {}, {
            "membershipIdentifier": MEMBERSHIP,
            "defaultOutputLocation": {"destination": {"s3Destination": {"s3Uri": PROPS["output_uri"]}},
                                      "roleArn": ROLE}})
        assert provider.create(PROPS).id == MEMBERSHIP
        moved = {**PROPS, "output_uri": f"s3://org-a-cleanrooms-ml-output-{A}/elsewhere/"}
        diff = provider.diff(MEMBERSHIP, PROPS, moved)
        assert diff.changes and not diff.replaces  # a put replaces it in place
        stub.add_response("put_ml_configuration", {}, api.request(moved))
        provider.update(MEMBERSHIP, PROPS, moved)
        assert provider.diff(MEMBERSHIP, PROPS, {**PROPS, "membership_id": "1" * 8 + MEMBERSHIP[8:]}).replaces == [
            "membership_id"]
        stub.add_response("delete_ml_configuration", {}, {"membershipIdentifier": MEMBERSHIP})
        provider.delete(MEMBERSHIP, PROPS)
        stub.add_client_error("delete_ml_configuration", "ResourceNotFoundException", http_status_code=404)
        provider.delete(MEMBERSHIP, PROPS)  # already gone: nothing to do
        stub.assert_no_pending_responses()


@pytest.fixture(scope="module")
def receiver(bootstrap):
    """org-a with an ML ability: it receives inference output."""
    partner = {**stack_config("org-a")[f"{PROJECT}:partners"][0]}
    return run_stack("org-a", overrides={"mlAbilities": [INFERENCE], "partners": [partner]},
                     peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})


def test_a_member_that_may_receive_ml_output_gets_a_location_and_a_role(receiver):
    configuration = receiver.named("org-a-ml-output-configuration")
    assert configuration.inputs["output_uri"] == f"s3://org-a-cleanrooms-ml-output-{A}/ml-output/"
    assert configuration.inputs["membership_id"] == receiver.outputs["membership_id"]
    trust = json.loads(receiver.named("org-a-ml-output-write").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": [A, B]}}
    policy = json.loads(receiver.named("org-a-ml-output-write-policy").inputs["policy"])
    assert lint_policy(trust, kind="trust") == [] and lint_policy(policy) == []
    writes = next(s for s in policy["Statement"] if s["Sid"] == "WriteMlOutput")
    assert writes["Resource"] == [f"arn:aws:s3:::org-a-cleanrooms-ml-output-{A}/ml-output/*"]
    bucket = receiver.named("org-a-ml-output-bucket-bucket")
    assert bucket.protect
    assert receiver.outputs["ml_output_uri"] == configuration.inputs["output_uri"]


def test_no_ml_no_ml_output(bootstrap):
    assert bootstrap.a3.outputs["ml_output_uri"] is None
    assert not [r for r in bootstrap.a3.resources if r.name.endswith("-ml-output-configuration")]


def test_the_deployer_may_write_the_configuration_and_pass_its_role(receiver):
    document = dp.build(dp.collect("org-a", [receiver]))["deployer"]
    actions = {a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"cleanrooms-ml:PutMLConfiguration", "cleanrooms-ml:DeleteMLConfiguration"} <= actions
    passes = [s for s in document["Statement"] if "iam:PassRole" in s["Action"]]
    assert any(f"arn:aws:iam::{A}:role/service-role/org-a-cleanrooms-ml-output" in s["Resource"] for s in passes)

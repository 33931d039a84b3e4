"""The training-data provider's lookalike model: audience model, its configuration and its association,
each call checked against the real cleanroomsml and cleanrooms models (botocore Stubber)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pulumi
import pytest
from botocore.stub import Stubber

from components import lookalike_api as lookalike
from components.member_change import Poll
from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_ref
from tests.support.clock import Clock
from tests.support.iam_lint import lint_policy

REGION, B = "us-east-1", "222222222222"
DATASET = f"arn:aws:cleanrooms-ml:{REGION}:{B}:training-dataset/5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
MODEL = f"arn:aws:cleanrooms-ml:{REGION}:{B}:audience-model/6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"
CONFIGURED = f"arn:aws:cleanrooms-ml:{REGION}:{B}:configured-audience-model/7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e"
MEMBERSHIP = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
ROLE = f"arn:aws:iam::{B}:role/service-role/org-b-cleanrooms-ml-segments-lookalike"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
PROPS = {"name": "org-b-lookalike", "training_dataset_arn": DATASET, "description": "org-b's lookalike model",
         "audience_model_arn": MODEL, "output_uri": f"s3://org-b-cleanrooms-segments-{B}/segments/",
         "output_role_arn": ROLE, "share_metrics": True, "min_matching_seed_size": 500.0, "size_type": "ABSOLUTE",
         "size_bins": [1000.0, 5000.0], "wait_minutes": 1.0}


def model_state(status: str) -> dict:
    return {"createTime": T0, "updateTime": T0, "audienceModelArn": MODEL, "name": "org-b-lookalike",
            "trainingDatasetArn": DATASET, "status": status}


def test_the_audience_model_is_created_on_the_training_dataset():
    ml = SESSION.client("cleanroomsml")
    with Stubber(ml) as stub:
        stub.add_response("create_audience_model", {"audienceModelArn": MODEL}, {
            "name": "org-b-lookalike", "trainingDatasetArn": DATASET, "description": "org-b's lookalike model"})
        assert lookalike.create_audience_model(ml, PROPS) == MODEL
        stub.assert_no_pending_responses()


def test_configuring_waits_for_training_with_backoff_then_sends_the_configuration():
    ml, clock = SESSION.client("cleanroomsml"), Clock()
    with Stubber(ml) as stub:
        for status in ("CREATE_PENDING", "CREATE_IN_PROGRESS", "ACTIVE"):
            stub.add_response("get_audience_model", model_state(status), {"audienceModelArn": MODEL})
        stub.add_response("create_configured_audience_model", {"configuredAudienceModelArn": CONFIGURED}, {
            "name": "org-b-lookalike", "audienceModelArn": MODEL, "childResourceTagOnCreatePolicy": "FROM_PARENT_RESOURCE",
            "outputConfig": {"destination": {"s3Destination": {"s3Uri": PROPS["output_uri"]}}, "roleArn": ROLE},
            "sharedAudienceMetrics": ["ALL"], "minMatchingSeedSize": 500,
            "audienceSizeConfig": {"audienceSizeType": "ABSOLUTE", "audienceSizeBins": [1000, 5000]},
            "description": "org-b's lookalike model"})
        poll = Poll(600, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)
        assert lookalike.create_configured_model(ml, PROPS, poll) == CONFIGURED
        stub.assert_no_pending_responses()
    assert clock.now == 1.0 + 2.0  # slept between polls, doubling, no fixed sleep


def test_a_model_still_training_at_the_deadline_is_one_clear_failure():
    ml, clock = SESSION.client("cleanroomsml"), Clock()
    with Stubber(ml) as stub:
        for _ in range(8):
            stub.add_response("get_audience_model", model_state("CREATE_IN_PROGRESS"), {"audienceModelArn": MODEL})
        with pytest.raises(lookalike.LookalikeError) as info:
            lookalike.wait_until_trained(ml, MODEL, Poll(60, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0))
    assert "still CREATE_IN_PROGRESS after 60s" in str(info.value) and "up to 24 hours" in str(info.value)
    assert "run `pulumi up` again" in str(info.value)


def test_failed_training_says_why():
    ml = SESSION.client("cleanroomsml")
    with Stubber(ml) as stub:
        stub.add_response("get_audience_model", {**model_state("CREATE_FAILED"), "statusDetails": {
            "statusCode": "INSUFFICIENT_DATA", "message": "too few users"}}, {"audienceModelArn": MODEL})
        with pytest.raises(lookalike.LookalikeError, match="CREATE_FAILED"):
            lookalike.wait_until_trained(ml, MODEL, Poll(60))


def test_the_association_lets_clean_rooms_manage_the_models_policy():
    rooms = SESSION.client("cleanrooms")
    with Stubber(rooms) as stub:
        stub.add_response("create_configured_audience_model_association", {"configuredAudienceModelAssociation": {
            "id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", "arn": f"arn:aws:cleanrooms:{REGION}:{B}:membership/"
            f"{MEMBERSHIP}/configuredaudiencemodelassociation/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "configuredAudienceModelArn": CONFIGURED, "membershipId": MEMBERSHIP,
            "membershipArn": f"arn:aws:cleanrooms:{REGION}:{B}:membership/{MEMBERSHIP}",
            "collaborationId": MEMBERSHIP, "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{B}:collaboration/{MEMBERSHIP}",
            "name": "lookalike", "manageResourcePolicies": True, "createTime": T0, "updateTime": T0}}, {
            "membershipIdentifier": MEMBERSHIP, "configuredAudienceModelArn": CONFIGURED,
            "configuredAudienceModelAssociationName": "lookalike", "manageResourcePolicies": True,
            "description": "org-b's lookalike model"})
        made = lookalike.associate(rooms, {"membership_id": MEMBERSHIP, "configured_model_arn": CONFIGURED,
                                           "name": "lookalike", "description": "org-b's lookalike model"})
    assert made["manageResourcePolicies"] is True


def test_sizes_update_in_place_and_a_new_name_replaces():
    provider = lookalike._ConfiguredModelProvider(client=lambda props, service: None)
    assert provider.diff("id", PROPS, {**PROPS, "size_bins": [2000.0]}).replaces == []
    assert provider.diff("id", PROPS, {**PROPS, "size_bins": [2000.0]}).changes is True
    assert provider.diff("id", PROPS, {**PROPS, "name": "other"}).replaces == ["name"]
    assert provider.diff("id", PROPS, dict(PROPS)).changes is False


LOOKALIKE = {"dataset": "media_interactions", "lookalike": {"minMatchingSeedSize": 200,
                                                             "audienceSizes": {"bins": [5000, 1000]}}}


@pytest.fixture(scope="module")
def provider_run(bootstrap):
    return run_stack("org-b", overrides={"trainingData": LOOKALIKE}, peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})


def test_the_stack_declares_the_model_its_segments_store_and_the_association(provider_run):
    run = provider_run
    names = {r.name for r in run.resources}
    assert {"org-b-lookalike-model", "org-b-lookalike-configured", "org-b-lookalike-association"} <= names
    configured = run.named("org-b-lookalike-configured").inputs
    assert (configured["min_matching_seed_size"], configured["size_bins"]) == (200, [1000, 5000])  # sorted
    assert configured["output_uri"] == f"s3://org-b-cleanrooms-segments-{B}/segments/"
    assert run.named("org-b-lookalike-segments-bucket").protect
    trust = json.loads(run.named("org-b-lookalike-write").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["ArnLikeIfExists"] == {
        "aws:SourceArn": f"arn:aws:cleanrooms-ml:{REGION}:{B}:configured-audience-model/*"}
    assert lint_policy(trust, kind="trust") == []
    assert lint_policy(json.loads(run.named("org-b-lookalike-write-policy").inputs["policy"])) == []
    # Without a membership yet, the model is trained and configured, and associated at a later `pulumi up`.
    alone = run_stack("org-b", overrides={"trainingData": LOOKALIKE})
    assert not [r for r in alone.resources if r.name == "org-b-lookalike-association"]


def test_the_deployer_may_create_the_models_and_pass_the_ml_roles(provider_run):
    document = dp.build(dp.collect("org-b", [provider_run]))["deployer"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert "cleanrooms-ml:CreateConfiguredAudienceModel" in by_sid["CleanRoomsMlLookalikeModels"]["Action"]
    passed = by_sid["PassRolesToCleanRoomsMl"]
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "cleanrooms-ml.amazonaws.com"}}
    assert sorted(passed["Resource"]) == [f"arn:aws:iam::{B}:role/service-role/org-b-cleanrooms-ml-read-media_interactions",
                                          ROLE]
    unknown = {a for s in document["Statement"] for a in s["Action"] if dp.privilege(a) is None}
    mine = [dict(s, Action=[a for a in s["Action"] if a not in unknown]) for s in document["Statement"]
            if s["Sid"] in ("CleanRoomsMlLookalikeModels", "PassRolesToCleanRoomsMl") and set(s["Action"]) - unknown]
    assert lint_policy({"Version": "2012-10-17", "Statement": mine}) == []


@pytest.mark.parametrize("block, key, fragment", [
    ({"minMatchingSeedSize": 10}, "trainingData.lookalike.minMatchingSeedSize", "25 to 500000"),
    ({"audienceSizes": {"type": "PERCENTAGE", "bins": [10, 150]}}, "trainingData.lookalike.audienceSizes.bins",
     "1 to 100"),
    ({"audienceSizes": {"bins": [1000, 1000]}}, "trainingData.lookalike.audienceSizes.bins", "twice"),
    ({"audienceSizes": {"bins": list(range(1, 27))}}, "trainingData.lookalike.audienceSizes.bins", "at most 25"),
    ({"audienceSizes": {"type": "RELATIVE"}}, "trainingData.lookalike.audienceSizes.type", "'ABSOLUTE'"),
    ({"waitMinutes": 2000}, "trainingData.lookalike.waitMinutes", "0 to 1440"),
])
def test_bad_lookalike_config_is_one_line_naming_the_key(block, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"trainingData": {"dataset": "media_interactions", "lookalike": block}})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_the_seed_provider_gets_a_seed_store_and_the_partners_models(bootstrap, provider_run):
    from tests.policy_support import evaluate

    run = run_stack("org-a", overrides={"lookalikeSeeds": True},
                    peer_outputs={stack_ref("org-b"): provider_run.outputs})
    A = "111111111111"
    assert run.outputs["seed_bucket"] == f"org-a-cleanrooms-seeds-{A}" and run.outputs["seed_prefix"] == "seeds"
    [model] = run.outputs["audience_models"].values()
    assert model["min_matching_seed_size"] == 200 and model["size_bins"] == [1000, 5000]
    trust = json.loads(run.named("org-a-seeds-read").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["ArnLikeIfExists"] == {
        "aws:SourceArn": f"arn:aws:cleanrooms-ml:{REGION}:{A}:audience-generation-job/*"}
    policy = json.loads(run.named("org-a-seeds-read-policy").inputs["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["ListSeedsBucket", "ReadSeeds", "DecryptSeeds",
                                                       "RunQueriesInThisMembership", "ReadTemplatesAndSchemas"]
    assert lint_policy(trust, kind="trust") == [] and lint_policy(policy) == []
    assert evaluate(run).violations == []
    # The provider exports what the seed provider needs of its model, nothing else.
    assert set(provider_run.outputs["lookalike"]) == {"name", "configured_audience_model_arn", "min_matching_seed_size",
                                                      "size_type", "size_bins"}

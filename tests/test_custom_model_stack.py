"""The custom model a member provides: its ECR repository, pull role, configured model algorithm and association,
their schemas, policies, the pack's ML rules and the deployer's permissions."""

from __future__ import annotations

import json

import pulumi
import pytest

from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_config, stack_ref
from tests.policy_support import evaluate
from tests.support.cfn_schema import validate_native
from tests.support.iam_lint import lint_policy

A, B = "111111111111", "222222222222"
ML = "aws-native:cleanroomsml"
INFERENCE = "CAN_RECEIVE_INFERENCE_OUTPUT"


def overrides(**model) -> dict:
    partners = [dict(stack_config("org-a")[f"{PROJECT}:partners"][0], mlAbilities=[INFERENCE])]
    return {"customModel": {"name": "purchase_propensity", "imagesPushed": True, **model}, "partners": partners}


@pytest.fixture(scope="module")
def provider(bootstrap):
    return run_stack("org-a", overrides=overrides(), peer_outputs={stack_ref("org-b"): {
        **bootstrap.b2.outputs, "ml_abilities": [INFERENCE]}})


def test_the_model_is_offered_from_an_encrypted_immutable_scanned_repository(provider):
    repository = provider.one("aws:ecr/repository:Repository")
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE" and repository.protect
    assert repository.input("imageScanningConfiguration.scanOnPush") is True
    assert repository.inputs["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": provider.named("org-a-model-key").state["arn"]}]
    algorithm = provider.one(f"{ML}:ConfiguredModelAlgorithm")
    url = f"{A}.dkr.ecr.us-east-1.amazonaws.com/org-a-cleanrooms-purchase-propensity"
    assert algorithm.input("trainingContainerConfig.imageUri") == f"{url}:train-1"
    assert algorithm.input("inferenceContainerConfig.imageUri") == f"{url}:infer-1"
    assert [m["name"] for m in algorithm.input("trainingContainerConfig.metricDefinitions")] == [
        "validation:accuracy", "validation:auc"]
    assert algorithm.inputs["kmsKeyArn"] == provider.named("org-a-model-key").state["arn"]
    assert validate_native(algorithm.typ, algorithm.inputs) == []
    assert provider.outputs["custom_model_repository"] == url


def test_the_association_keeps_logs_to_this_member_and_noisy_metrics(provider):
    association = provider.one(f"{ML}:ConfiguredModelAlgorithmAssociation")
    assert validate_native(association.typ, association.inputs) == []
    policies = association.input("privacyConfiguration.policies")
    assert policies["trainedModels"]["containerLogs"] == [{"allowedAccountIds": [A], "logType": "ERROR_SUMMARY"}]
    assert policies["trainedModels"]["containerMetrics"] == {"noiseLevel": "HIGH"}
    assert policies["trainedModels"]["maxArtifactSize"] == {"unit": "GB", "value": 1.0}
    assert "trainedModelExports" not in policies  # no export unless configured
    assert policies["trainedModelInferenceJobs"]["maxOutputSize"] == {"unit": "GB", "value": 1.0}
    assert association.protect


def test_the_pull_role_reads_this_repository_only(provider):
    trust = json.loads(provider.named("org-a-model-pull").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["ArnLikeIfExists"] == {
        "aws:SourceArn": f"arn:aws:cleanrooms-ml:us-east-1:{A}:configured-model-algorithm/*"}
    policy = json.loads(provider.named("org-a-model-pull-policy").inputs["policy"])
    assert policy["Statement"][0]["Resource"] == (
        f"arn:aws:ecr:us-east-1:{A}:repository/org-a-cleanrooms-purchase-propensity")
    assert lint_policy(trust, kind="trust") == [] and lint_policy(policy) == []
    assert lint_policy(json.loads(provider.named("org-a-model-key").inputs["policy"]), kind="resource") == []


def test_before_the_images_are_pushed_only_the_repository_exists(bootstrap):
    run = run_stack("org-a", overrides=overrides(imagesPushed=False), peer_outputs={stack_ref("org-b"): {
        **bootstrap.b2.outputs, "ml_abilities": [INFERENCE]}})
    assert run.of_type("aws:ecr/repository:Repository") and not run.of_type(f"{ML}:ConfiguredModelAlgorithm")


def test_the_pack_holds_the_ml_rules(provider):
    config = {"cleanrooms-ml-abilities-declared": {"mlOutputAccounts": [B]}}
    assert evaluate(provider, config=config).violations == []
    algorithm = provider.one(f"{ML}:ConfiguredModelAlgorithm")
    bare = type(algorithm)(**{**algorithm.__dict__, "inputs": {k: v for k, v in algorithm.inputs.items()
                                                                if k != "kmsKeyArn"}})
    [v] = evaluate([bare], policies=["cleanrooms-ml-models-encrypted"]).violations
    assert "has no kmsKeyArn" in v.message
    repository = provider.one("aws:ecr/repository:Repository")
    mutable = type(repository)(**{**repository.__dict__, "inputs": {**repository.inputs, "imageTagMutability": "MUTABLE"}})
    [v] = evaluate([mutable], policies=["cleanrooms-ml-models-encrypted"]).violations
    assert "allows overwriting tags" in v.message
    association = provider.one(f"{ML}:ConfiguredModelAlgorithmAssociation")
    inputs = json.loads(json.dumps(association.inputs))
    inputs["privacyConfiguration"]["policies"]["trainedModels"]["containerLogs"][0]["allowedAccountIds"] = ["999999999999"]
    leaked = type(association)(**{**association.__dict__, "inputs": inputs})
    resources = [leaked if r is association else r for r in provider.resources]
    [v] = evaluate(resources, policies=["cleanrooms-results-to-members-only"]).violations
    assert "trainedModels containerLogs[0] allowedAccountIds ['999999999999'] are not collaboration members" in v.message


def test_the_deployer_may_manage_the_repository_and_pass_the_pull_role(provider):
    document = dp.build(dp.collect("org-a", [provider]))["deployer"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert "ecr:CreateRepository" in by_sid["EcrRepositoriesOfThisStack"]["Action"]
    assert by_sid["KmsKeysForEcr"]["Condition"] == {"StringEquals": {"kms:ViaService": "ecr.us-east-1.amazonaws.com"}}
    assert f"arn:aws:iam::{A}:role/service-role/org-a-cleanrooms-ml-model-purchase_propensity" in \
        by_sid["PassRolesToCleanRoomsMl"]["Resource"]
    mine = [s for s in document["Statement"] if s["Sid"] in ("EcrRepositoriesOfThisStack", "KmsKeysForEcr")]
    assert lint_policy({"Version": "2012-10-17", "Statement": mine}) == []


@pytest.mark.parametrize("model, key, fragment", [
    ({"name": "churn"}, "customModel.name", "models/churn/ lacks train.py"),
    ({"logsTo": ["999999999999"]}, "customModel.logsTo[0]", "is not a member of the collaboration"),
    ({"exports": ["MODEL"]}, "customModel.exports", "needs a member with the ML ability CAN_RECEIVE_MODEL_OUTPUT"),
    ({"maxArtifactGb": 20}, "customModel.maxArtifactGb", "from 0.01 to 10"),
    ({"metricsNoise": "SOME"}, "customModel.metricsNoise", "'HIGH'"),
    ({"exports": ["WEIGHTS"]}, "customModel.exports[0]", "'MODEL'"),
])
def test_bad_custom_model_config_is_one_line_naming_the_key(model, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=overrides(**model))
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_inference_needs_a_member_that_may_receive_its_output():
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"customModel": {"name": "purchase_propensity"}})
    assert str(info.value).startswith(f"config '{PROJECT}:customModel.inferenceTag': needs a member with the ML "
                                      "ability CAN_RECEIVE_INFERENCE_OUTPUT")


# -- the member who trains: mlTraining (components/ml_trainer.py) ------------------------------------------------
def test_the_member_who_can_query_trains_with_its_own_role_and_key(bootstrap):
    provider_model = {"name": "churn", "association_arn": f"arn:aws:cleanrooms-ml:us-east-1:{B}:membership/"
                      "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e/configured-model-algorithm-association/x"}
    run = run_stack("org-a", overrides={**overrides(), "mlTraining": True}, peer_outputs={stack_ref("org-b"): {
        **bootstrap.b2.outputs, "ml_abilities": [INFERENCE], "custom_model": provider_model}})
    trust = json.loads(run.named("org-a-trainer-channel").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "cleanrooms-ml.amazonaws.com"}
    # An ML input channel's ARN has its membership in it (botocore's MLInputChannelArn pattern).
    assert trust["Statement"][0]["Condition"]["ArnLikeIfExists"] == {
        "aws:SourceArn": f"arn:aws:cleanrooms-ml:us-east-1:{A}:membership/*/ml-input-channel/*"}
    policy = json.loads(run.named("org-a-trainer-channel-policy").inputs["policy"])
    membership = run.outputs["membership_id"]
    assert {"cleanrooms:StartProtectedQuery"} <= set(policy["Statement"][0]["Action"])
    assert policy["Statement"][0]["Resource"][0] == f"arn:aws:cleanrooms:us-east-1:{A}:membership/{membership}"
    key = json.loads(run.named("org-a-trainer-key").inputs["policy"])
    assert "EcrEncryptsTheImages" not in {s["Sid"] for s in key["Statement"]}  # no repository behind this key
    assert lint_policy(trust, kind="trust") == [] and lint_policy(policy) == []
    assert lint_policy(key, kind="resource") == []
    assert run.outputs["ml_channel_role_arn"] == run.named("org-a-trainer-channel").state["arn"]
    assert run.outputs["ml_kms_key_arn"] == run.named("org-a-trainer-key").state["arn"]
    assert set(run.outputs["custom_models"]) == {"org-a", "org-b"}
    assert run.outputs["custom_models"]["org-b"] == provider_model


def test_training_needs_the_member_who_can_query():
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"mlTraining": True})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:mlTraining': needs the analyst role"), message

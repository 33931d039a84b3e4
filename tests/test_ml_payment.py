"""Clean Rooms ML payment: who pays for model training and inference, in the collaboration and each membership.

"Specify the members who will pay for query compute, model training, and model inference costs" (User
Guide, create-custom-ml-collaboration); by default "the member who can query is the default payer", and a
membership that does not accept what the collaboration designated is refused (botocore
MembershipModelTrainingPaymentConfig). Sent only where the collaboration has ML.
"""

from __future__ import annotations

import pulumi
import pytest

from tests.harness import PROJECT, run_stack, stack_config, stack_ref
from tests.support.cfn_schema import validate_native

CR = "aws-native:cleanrooms"
MODEL, INFERENCE = "CAN_RECEIVE_MODEL_OUTPUT", "CAN_RECEIVE_INFERENCE_OUTPUT"


def owner(**extra) -> dict:
    partner = {**stack_config("org-a")[f"{PROJECT}:partners"][0], "mlAbilities": [INFERENCE]}
    return {"mlAbilities": [MODEL], "partners": [partner], **extra}


def member(**extra) -> dict:
    partner = {**stack_config("org-b")[f"{PROJECT}:partners"][0], "mlAbilities": [MODEL]}
    return {"mlAbilities": [INFERENCE], "partners": [partner], **extra}


def ml_payment(payment: dict) -> dict:
    return payment.get("machineLearning")


def test_no_ml_no_ml_payment(bootstrap):
    collaboration = bootstrap.a1.one(f"{CR}:Collaboration")
    assert ml_payment(collaboration.inputs["creatorPaymentConfiguration"]) is None
    assert all(ml_payment(m["paymentConfiguration"]) is None for m in collaboration.inputs["members"])
    assert bootstrap.b2.one(f"{CR}:Membership").input("paymentConfiguration.machineLearning") is None
    assert bootstrap.a1.outputs["ml_payers"] is None


def test_the_member_who_can_query_pays_by_default_and_every_membership_accepts_it():
    a = run_stack("org-a", overrides=owner())
    collaboration = a.one(f"{CR}:Collaboration")
    paying = {"modelTraining": {"isResponsible": True}, "modelInference": {"isResponsible": True}}
    not_paying = {"modelTraining": {"isResponsible": False}, "modelInference": {"isResponsible": False}}
    assert ml_payment(collaboration.inputs["creatorPaymentConfiguration"]) == paying  # org-a can query
    assert ml_payment(collaboration.inputs["members"][0]["paymentConfiguration"]) == not_paying
    assert validate_native(collaboration.typ, collaboration.inputs) == []
    assert a.one(f"{CR}:Membership").input("paymentConfiguration.machineLearning") == paying
    b = run_stack("org-b", overrides=member(), peer_outputs={stack_ref("org-a"): a.outputs})
    membership = b.one(f"{CR}:Membership")
    assert membership.input("paymentConfiguration.machineLearning") == not_paying
    assert validate_native(membership.typ, membership.inputs) == []


def test_a_named_payer_is_designated_and_accepts():
    a = run_stack("org-a", overrides=owner(modelInferencePayer="org-b"))
    members = a.one(f"{CR}:Collaboration").inputs["members"]
    assert ml_payment(members[0]["paymentConfiguration"])["modelInference"] == {"isResponsible": True}
    assert a.outputs["ml_payers"] == {"model_training": "org-a", "model_inference": "org-b"}
    b = run_stack("org-b", overrides=member(modelInferencePayer="org-b"), peer_outputs={stack_ref("org-a"): a.outputs})
    assert b.one(f"{CR}:Membership").input("paymentConfiguration.machineLearning.modelInference") == {
        "isResponsible": True}


def test_stacks_that_disagree_on_a_payer_are_refused_naming_the_key():
    a = run_stack("org-a", overrides=owner(modelInferencePayer="org-b"))
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides=member(), peer_outputs={stack_ref("org-a"): a.outputs})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:modelInferencePayer': is 'org-a', but partner 'org-a'"), message
    assert "uses 'org-b'" in message


@pytest.mark.parametrize("key", ["modelTrainingPayer", "modelInferencePayer"])
def test_an_unknown_payer_is_one_line_naming_the_key(key):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=owner(**{key: "org-z"}))
    message = str(info.value).splitlines()[0]
    assert message == f"config '{PROJECT}:{key}': got 'org-z'; allowed values: ['org-a', 'org-b']", message

"""Clean Rooms ML, part 1: who may receive ML output, and which tables' output ML may use.

ML abilities are create-only on the collaboration and none by default; a table's
custom rule says whether additional analyses may use its query output
(NOT_ALLOWED by default), its association which ML resources may. Every stack
must say the same of each member, as for its other abilities.
"""

from __future__ import annotations

import botocore.session
import pulumi
import pytest

from model import stack_models
from offline import plan
from tests.harness import PROJECT, run_stack, stack_config, stack_ref
from tests.policy_support import evaluate
from tests.support.cfn_schema import validate_native

A, B = "111111111111", "222222222222"
CR = "aws-native:cleanrooms"
MODEL, INFERENCE = "CAN_RECEIVE_MODEL_OUTPUT", "CAN_RECEIVE_INFERENCE_OUTPUT"
ASSOCIATION = (f"arn:aws:cleanrooms-ml:us-east-1:{A}:membership/5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70/"
               "configured-model-algorithm-association/*")


def partner_b(**changes) -> dict:
    return {**stack_config("org-a")[f"{PROJECT}:partners"][0], **changes}


def rule_b(**changes) -> dict:
    return {**stack_config("org-b")[f"{PROJECT}:analysisRule"], **changes}


def test_no_ml_ability_and_no_additional_analysis_by_default(bootstrap):
    collaboration = bootstrap.a1.one(f"{CR}:Collaboration")
    assert "creatorMlMemberAbilities" not in collaboration.inputs
    assert all("mlMemberAbilities" not in m for m in collaboration.inputs["members"])
    for run in (bootstrap.a3, bootstrap.b2):
        assert run.one(f"{CR}:ConfiguredTable").input("analysisRules.0.policy.v1.custom.additionalAnalyses") == \
            "NOT_ALLOWED"
        association = run.one(f"{CR}:ConfiguredTableAssociation")
        assert association.input("configuredTableAssociationAnalysisRules.0.policy.v1.custom."
                                 "allowedAdditionalAnalyses") is None
    assert bootstrap.a1.outputs["ml_abilities"] == []


@pytest.fixture(scope="module")
def with_ml():
    return run_stack("org-a", overrides={"mlAbilities": [MODEL], "partners": [partner_b(mlAbilities=[INFERENCE])]})


def test_abilities_reach_the_collaboration_and_pass_the_schema(with_ml):
    collaboration = with_ml.one(f"{CR}:Collaboration")
    assert collaboration.inputs["creatorMlMemberAbilities"] == {"customMlMemberAbilities": [MODEL]}
    assert collaboration.inputs["members"][0]["mlMemberAbilities"] == {"customMlMemberAbilities": [INFERENCE]}
    assert validate_native(collaboration.typ, collaboration.inputs) == []
    assert "creatorMlMemberAbilities" in collaboration.replace_on_changes  # create-only
    assert with_ml.outputs["ml_abilities"] == [MODEL]


def test_the_pack_allows_ml_abilities_only_for_listed_accounts(with_ml):
    [creator, member] = evaluate(with_ml, policies=["cleanrooms-ml-abilities-declared"]).violations
    assert f"grants the creator (this stack's account) Clean Rooms ML abilities ['{MODEL}']" in creator.message
    assert f"members[0] {B}" in member.message and "mlOutputAccounts" in member.message
    config = {"cleanrooms-ml-abilities-declared": {"mlOutputAccounts": [A, B]}}
    assert evaluate(with_ml, config=config, policies=["cleanrooms-ml-abilities-declared"]).violations == []


def test_changing_ml_abilities_is_a_replacement_protect_stops(bootstrap, with_ml):
    before = {"format": plan.PLAN_FORMAT, "round": "1", "stacks": {"org-a": plan.stack_plan(bootstrap.a1, 1)}}
    after = {"format": plan.PLAN_FORMAT, "round": "1", "stacks": {"org-a": plan.stack_plan(with_ml, 1)}}
    [collaboration] = [c for c in plan.diff_plans(before, after)["stacks"]["org-a"]["changed"]
                       if c["type"] == f"{CR}:Collaboration"]
    assert collaboration["replaces"] == ["creatorMlMemberAbilities", "members.0.mlMemberAbilities"]
    assert collaboration["protect"]


def test_a_member_whose_abilities_differ_from_the_owners_invitation_is_refused(with_ml):
    # org-b's stack says nothing of its own ML abilities, but the owner invites it with the inference ability.
    org_a = {**stack_config("org-b")[f"{PROJECT}:partners"][0], "mlAbilities": [MODEL]}
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"partners": [org_a]}, peer_outputs={stack_ref("org-a"): with_ml.outputs})
    message = str(info.value)
    assert message.startswith(f"config '{PROJECT}:mlAbilities': is [], but org-a's stack")
    assert f"invites 'org-b' with ['{INFERENCE}']" in message


def test_a_partner_entry_that_differs_from_the_partners_own_stack_is_refused(bootstrap):
    reported = {**bootstrap.b2.outputs, "ml_abilities": [INFERENCE]}
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", peer_outputs={stack_ref("org-b"): reported})
    assert str(info.value).startswith(f"config '{PROJECT}:partners[0].mlAbilities': is [], but the stack of 'org-b'")


def test_a_table_may_open_its_output_to_named_ml_resources():
    run = run_stack("org-b", overrides={"analysisRule": rule_b(additionalAnalyses="ALLOWED",
                                                               allowedAdditionalAnalyses=[ASSOCIATION])})
    table = run.one(f"{CR}:ConfiguredTable")
    assert table.input("analysisRules.0.policy.v1.custom.additionalAnalyses") == "ALLOWED"
    assert validate_native(table.typ, table.inputs) == []


def test_the_additional_analysis_arn_pattern_is_botocores():
    model = botocore.session.get_session().get_service_model("cleanrooms")
    arn = model.shape_for("ConfiguredTableAssociationAnalysisRuleCustom").members["allowedAdditionalAnalyses"].member
    left, right = arn.metadata["pattern"].split("$|^")
    assert stack_models.ADDITIONAL_ANALYSIS_ARN == f"^({left}|{right})$"


@pytest.mark.parametrize("overrides, key, fragment", [
    ({"mlAbilities": ["CAN_TRAIN"]}, "mlAbilities[0]", "'CAN_RECEIVE_MODEL_OUTPUT'"),
    ({"partners": [partner_b(mlAbilities=["CAN_TRAIN"])]}, "partners[0].mlAbilities[0]", "'CAN_RECEIVE_INFERENCE_OUTPUT'"),
    ({"analysisRule": {**stack_config("org-a")[f"{PROJECT}:analysisRule"], "allowedAdditionalAnalyses": [ASSOCIATION]}},
     "analysisRule.allowedAdditionalAnalyses", "additionalAnalyses is NOT_ALLOWED"),
    ({"analysisRule": {**stack_config("org-a")[f"{PROJECT}:analysisRule"], "additionalAnalyses": "SOMETIMES"}},
     "analysisRule.additionalAnalyses", "'ALLOWED'"),
    ({"analysisRule": {**stack_config("org-a")[f"{PROJECT}:analysisRule"], "additionalAnalyses": "ALLOWED",
                       "allowedAdditionalAnalyses": ["arn:aws:s3:::bucket"]}},
     "analysisRule.allowedAdditionalAnalyses[0]", "configured audience model association"),
    ({"analysisRule": {**stack_config("org-a")[f"{PROJECT}:analysisRule"], "additionalAnalyses": "ALLOWED",
                       "allowedAdditionalAnalyses": [ASSOCIATION] * 26}},
     "analysisRule.allowedAdditionalAnalyses", "at most 25"),
])
def test_bad_ml_config_is_one_line_naming_the_key(overrides, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=overrides)
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_each_template_says_whether_ml_may_use_its_tables_output(bootstrap):
    """The analyst's stack exports each template's tables' additional-analyses rules (its own table's and, from
    the partners' exported analysis_rule, theirs): `queryrunner ml channel` refuses a template they forbid."""
    templates = bootstrap.a3.outputs["analysis_templates"]
    for name, template in templates.items():
        assert set(template["additional_analyses"]) == set(template["tables"]), name
        assert all(rule == {"mode": "NOT_ALLOWED", "allowed": []}
                   for rule in template["additional_analyses"].values())  # nothing opened by default
    opened = run_stack("org-a", overrides={"analysisRule": {
        **stack_config("org-a")[f"{PROJECT}:analysisRule"], "additionalAnalyses": "ALLOWED",
        "allowedAdditionalAnalyses": [ASSOCIATION]}}, peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    template = next(t for t in opened.outputs["analysis_templates"].values() if "retail_purchases" in t["tables"])
    assert template["additional_analyses"]["retail_purchases"] == {"mode": "ALLOWED", "allowed": [ASSOCIATION]}

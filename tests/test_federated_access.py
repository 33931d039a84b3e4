"""Federated access: permission sets in the organization's IAM Identity Center, scoped by attributes."""

from __future__ import annotations

import json

import boto3
import botocore.session
import pulumi
import pytest
from moto import mock_aws

from model import stack_models
from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_ref
from tests.policy_support import evaluate
from tests.support.iam_lint import lint_policy

A, B, IDENTITY = "111111111111", "222222222222", "999999999999"
INSTANCE = "arn:aws:sso:::instance/ssoins-1234567890abcdef"
GROUP = "9a6b1c2d3e-1234abcd-12ab-34cd-56ef-1234567890ab"
AUDITORS = "1234abcd-12ab-34cd-56ef-1234567890ac"


def access(**changes) -> dict:
    block = {"identityAccountId": IDENTITY, "instanceArn": INSTANCE, "identityProfile": "org-b-identity",
             "permissionSets": {"producer": {"group": GROUP, "sessionDuration": "PT2H"},
                                "auditor": {"group": AUDITORS, "assign": False}}}
    return {**block, **changes}


@pytest.fixture(scope="module")
def federated(bootstrap):
    return run_stack("org-b", overrides={"access": access(), "audit": {"trail": True}},
                     peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})


def test_the_patterns_are_botocores():
    model = botocore.session.get_session().get_service_model("sso-admin")
    assert stack_models.INSTANCE_ARN == f"^{model.shape_for('InstanceArn').metadata['pattern']}$"
    assert stack_models.PRINCIPAL_ID == f"^{model.shape_for('PrincipalId').metadata['pattern']}$"


def test_permission_sets_live_in_the_identity_account_and_are_assigned_on_this_one(federated):
    run = federated
    [identity] = [r for r in run.resources if r.name == "org-b-aws-identity"]
    assert json.loads(identity.inputs["allowedAccountIds"]) == [IDENTITY] and identity.inputs["profile"] == "org-b-identity"
    sets = {r.name: r for r in run.of_type("aws:ssoadmin/permissionSet:PermissionSet")}
    assert {name: (r.inputs["name"], r.inputs["sessionDuration"]) for name, r in sets.items()} == {
        "org-b-access-producer": ("org-b-cleanrooms-producer", "PT2H"),
        "org-b-access-auditor": ("org-b-cleanrooms-auditor", "PT1H")}  # the shortest session unless configured
    assert all(r.provider.startswith(identity.urn) for r in run.resources if r.typ.startswith("aws:ssoadmin/"))
    [assignment] = run.of_type("aws:ssoadmin/accountAssignment:AccountAssignment")  # the auditor's is left to JIT
    assert {k: assignment.inputs[k] for k in ("principalType", "principalId", "targetType", "targetId")} == {
        "principalType": "GROUP", "principalId": GROUP, "targetType": "AWS_ACCOUNT", "targetId": B}
    assert set(run.outputs["permission_sets"]) == {"producer", "auditor"}


def _lint(policy: dict) -> list[str]:
    """The IAM linter's findings, with actions newer than its copy of the authorization reference left out when
    botocore's model has them (the protected job operations)."""
    operations = set(botocore.session.get_session().get_service_model("cleanrooms").operation_names)
    newer = {a for s in policy["Statement"] for a in s["Action"] if dp.privilege(a) is None}
    assert all(a.startswith("cleanrooms:") and a.split(":")[1] in operations for a in newer), newer
    return lint_policy(dict(policy, Statement=[dict(s, Action=[a for a in s["Action"] if a not in newer])
                                               for s in policy["Statement"] if set(s["Action"]) - newer]))


def _policies(run) -> dict[str, dict]:
    return {r.name: json.loads(r.inputs["inlinePolicy"])
            for r in run.of_type("aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy")}


def test_every_statement_is_scoped_by_attributes_or_names_its_resources(federated):
    for name, policy in _policies(federated).items():
        assert _lint(policy) == [], name
        for statement in policy["Statement"]:
            conditions = json.dumps(statement.get("Condition") or {})
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "aws:PrincipalTag/organization" in conditions or all("*" not in r for r in resources), statement
    tables = next(s for s in _policies(federated)["org-b-access-producer-policy"]["Statement"]
                  if s["Sid"] == "ThisOrganizationsConfiguredTables")
    assert tables["Condition"] == {"StringEquals": {"aws:ResourceTag/organization": "${aws:PrincipalTag/organization}",
                                                    "aws:PrincipalTag/organization": "org-b"}}
    assert evaluate(federated).violations == []  # cleanrooms-permission-sets-scoped among them


def test_the_scoping_tag_is_a_tag_every_resource_carries(federated):
    provider = next(r for r in federated.resources if r.name == "org-b-aws")
    assert json.loads(provider.inputs["defaultTags"])["tags"]["organization"] == "org-b"


ABAC = "aws:ssoadmin/instanceAccessControlAttributes:InstanceAccessControlAttributes"


def test_manage_attributes_declares_the_instances_abac_attribute_only_when_true(federated, bootstrap):
    """manageAttributes: true declares the instance's one access-control attribute, keyed by the scoping tag and
    read from attributeSource, in the identity account, with its deployer permissions; false (the default) leaves
    the instance's attributes to whoever manages them and declares nothing of them."""
    assert federated.of_type(ABAC) == []
    assert "IdentityCenterAttributes" not in {
        s["Sid"] for s in dp.build(dp.collect("org-b", [federated]))["identity-deployer"]["Statement"]}

    source = "${path:enterprise.costCenter}"
    run = run_stack("org-b", overrides={"access": access(manageAttributes=True, scopeTag="project",
                                                         attributeSource=source)},
                    peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})
    [abac] = run.of_type(ABAC)
    assert abac.inputs == {"instanceArn": INSTANCE,
                           "attributes": [{"key": "project", "values": [{"sources": [source]}]}]}
    [identity] = [r for r in run.resources if r.name == "org-b-aws-identity"]
    assert abac.provider.startswith(identity.urn)
    # The attribute is the principal tag the permission sets condition on.
    tables = next(s for s in _policies(run)["org-b-access-producer-policy"]["Statement"]
                  if s["Sid"] == "ThisOrganizationsConfiguredTables")
    assert tables["Condition"]["StringEquals"]["aws:ResourceTag/project"] == "${aws:PrincipalTag/project}"
    by_sid = {s["Sid"]: s for s in dp.build(dp.collect("org-b", [run]))["identity-deployer"]["Statement"]}
    assert by_sid["IdentityCenterAttributes"]["Resource"] == [INSTANCE]
    assert "sso:CreateInstanceAccessControlAttributeConfiguration" in by_sid["IdentityCenterAttributes"]["Action"]


def test_an_unscoped_statement_is_refused_by_the_pack(federated):
    policy = next(r for r in federated.of_type("aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy"))
    loose = {"Version": "2012-10-17", "Statement": [{"Sid": "Everything", "Effect": "Allow",
                                                     "Action": "cleanrooms:GetProtectedQuery", "Resource": "*"}]}
    changed = type(policy)(**{**policy.__dict__, "inputs": {**policy.inputs, "inlinePolicy": json.dumps(loose)}})
    [violation] = evaluate([changed], policies=["cleanrooms-permission-sets-scoped"]).violations
    assert "'Everything'" in violation.message and "is not scoped" in violation.message


def test_the_analyst_permission_set_runs_its_own_membership_and_reads_its_results(bootstrap):
    block = access(identityProfile="org-a-identity", permissionSets={"analyst": {"group": GROUP}})
    run = run_stack("org-a", overrides={"access": block}, peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    [policy] = _policies(run).values()
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert "cleanrooms:StartProtectedQuery" in by_sid["QueriesOfThisOrganizationsMembership"]["Action"]
    assert by_sid["ResultsBucketObjects"]["Resource"] == f"arn:aws:s3:::org-a-cleanrooms-results-{A}/*"
    assert by_sid["ReadThisCollaboration"]["Resource"][0].startswith(f"arn:aws:cleanrooms:us-east-1:{A}:collaboration/")
    assert _lint(policy) == []


def test_identity_center_accepts_what_the_stack_declares(federated):
    """moto's sso-admin: the permission set, its session, its policy and the assignment, as the provider sends them."""
    producer = federated.named("org-b-access-producer")
    policy = federated.named("org-b-access-producer-policy").inputs["inlinePolicy"]
    assignment = federated.one("aws:ssoadmin/accountAssignment:AccountAssignment")
    with mock_aws():
        sso = boto3.client("sso-admin", region_name="us-east-1")
        arn = sso.create_permission_set(Name=producer.inputs["name"], InstanceArn=INSTANCE,
                                        SessionDuration=producer.inputs["sessionDuration"],
                                        Description=producer.inputs["description"])["PermissionSet"]["PermissionSetArn"]
        sso.put_inline_policy_to_permission_set(InstanceArn=INSTANCE, PermissionSetArn=arn, InlinePolicy=policy)
        sso.create_account_assignment(InstanceArn=INSTANCE, PermissionSetArn=arn, TargetType="AWS_ACCOUNT",
                                      TargetId=assignment.inputs["targetId"], PrincipalType="GROUP",
                                      PrincipalId=assignment.inputs["principalId"])
        described = sso.describe_permission_set(InstanceArn=INSTANCE, PermissionSetArn=arn)["PermissionSet"]
        assert described["SessionDuration"] == "PT2H"
        assert json.loads(sso.get_inline_policy_for_permission_set(
            InstanceArn=INSTANCE, PermissionSetArn=arn)["InlinePolicy"]) == json.loads(policy)
        [listed] = sso.list_account_assignments(InstanceArn=INSTANCE, AccountId=B,
                                                PermissionSetArn=arn)["AccountAssignments"]
        assert listed["PrincipalId"] == GROUP


def test_the_identity_accounts_deployer_permissions_are_a_document_of_their_own(federated):
    documents = dp.build(dp.collect("org-b", [federated]))
    assert {"deployer", "preview", "identity-deployer", "identity-preview"} <= set(documents)
    identity = {s["Sid"]: s for s in documents["identity-deployer"]["Statement"]}
    assert "sso:CreatePermissionSet" in identity["IdentityCenterPermissionSets"]["Action"]
    assert identity["IdentityCenterAssignments"]["Resource"] == sorted(
        [INSTANCE, "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/*", f"arn:aws:sso:::account/{B}"])
    assert not any(a.startswith("sso:") for s in documents["deployer"]["Statement"] for a in s["Action"])
    assert lint_policy(documents["identity-deployer"]) == []


@pytest.mark.parametrize("block, key, fragment", [
    ({k: v for k, v in access().items() if k != "identityAccountId"}, "access.identityAccountId", "missing"),
    (access(instanceArn="arn:aws:sso:::instance/nope"), "access.instanceArn", "Identity Center instance ARN"),
    (access(scopeTag="team"), "access.scopeTag", "'organization'"),
    (access(permissionSets={"producer": {"group": GROUP, "sessionDuration": "PT13H"}}),
     "access.permissionSets.producer.sessionDuration", "PT1H to PT12H"),
    (access(permissionSets={"producer": {"group": GROUP, "sessionDuration": "P1D"}}),
     "access.permissionSets.producer.sessionDuration", "PT1H to PT12H"),
    (access(permissionSets={"producer": {"group": "admins"}}), "access.permissionSets.producer.group",
     "identity store group id"),
    (access(permissionSets={"analyst": {"group": GROUP}}), "access.permissionSets.analyst",
     "is for an organization with role 'analyst'"),
    (access(permissionSets={}), "access.permissionSets", "declares none"),
    (access(identityAssumeRoleArn=f"arn:aws:iam::{B}:role/deployer"), "access.identityAssumeRoleArn",
     f"but access.identityAccountId is {IDENTITY}"),
])
def test_bad_access_config_is_one_line_naming_the_key(block, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"access": block})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_the_analyst_permission_set_may_run_the_stacks_ml_commands(bootstrap):
    """With mlTraining and lookalikeSeeds, `queryrunner ml` and `audience` work with the permission set: the
    cleanrooms-ml actions on the resource types the authorization reference gives them, the roles passed to Clean
    Rooms ML only, PassMembership / PassCollaboration, the seed upload; every statement still scoped."""
    block = access(identityProfile="org-a-identity", permissionSets={"analyst": {"group": GROUP}})
    run = run_stack("org-a", overrides={"access": block, "mlTraining": True, "lookalikeSeeds": True},
                    peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    [policy] = _policies(run).values()
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert "cleanrooms-ml:CreateMLInputChannel" in by_sid["TrainCustomModelsInTheCollaboration"]["Action"]
    assert by_sid["TrainCustomModelsInTheCollaboration"]["Resource"][0] == (
        "arn:aws:cleanrooms-ml:us-east-1:*:membership/*/configured-model-algorithm-association/*")  # another member's
    assert by_sid["PassTheMlInputChannelRole"]["Resource"] == run.named("org-a-trainer-channel").state["arn"]
    assert by_sid["PassTheSeedRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "cleanrooms-ml.amazonaws.com"}}
    assert "cleanrooms:PassMembership" in by_sid["QueriesOfThisOrganizationsMembership"]["Action"]
    assert "cleanrooms:PassCollaboration" in by_sid["ReadThisCollaboration"]["Action"]
    assert by_sid["UploadSeeds"]["Resource"] == f"arn:aws:s3:::org-a-cleanrooms-seeds-{A}/seeds/*"
    assert _lint(policy) == []
    assert evaluate(run.resources, policies=["cleanrooms-permission-sets-scoped"]).violations == []

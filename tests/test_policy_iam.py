"""IAM policies on the program's real roles and policy documents."""

import pytest

from tests.policy_support import bootstrap, edited, evaluate, find, set_document

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
READ = "producer-cleanrooms-read"


@pytest.fixture(scope="module")
def run():
    return bootstrap()["org-a"]


def test_shipped_iam_passes(run):
    assert evaluate(run, policies=["iam-no-wildcard-data-permissions", "iam-no-partial-wildcard-actions",
                                   "iam-cleanrooms-trust-confused-deputy", "iam-no-admin-policies"]).violations == []


@pytest.mark.parametrize("sid,resource", [("ReadThisGlueTable", "*"),
                                          ("ReadThisPrefix", "arn:aws:s3:::*"),
                                          ("ReadThisGlueTable", "arn:aws:glue:us-east-1:111111111111:table/*")])
def test_wildcard_resource(run, sid, resource):
    policy = find(run, ROLE_POLICY, READ)

    def widen(doc):
        next(s for s in doc["Statement"] if s["Sid"] == sid)["Resource"] = [resource]

    [v] = evaluate(edited(run, policy, lambda r: set_document(r, "policy", widen)),
                   policies=["iam-no-wildcard-data-permissions"]).violations
    assert f"policy statement '{sid}': Resource ['{resource}'] on data-plane actions" in v.message
    assert "name the ARNs" in v.message


@pytest.mark.parametrize("action", ["s3:*", "*", "kms:*", "glue:*"])
def test_wildcard_action(run, action):
    policy = find(run, ROLE_POLICY, READ)
    changed = edited(run, policy, lambda r: set_document(
        r, "policy", lambda d: d["Statement"][2].update(Action=[action])))
    messages = evaluate(changed, policies=["iam-no-wildcard-data-permissions"]).messages(
        "iam-no-wildcard-data-permissions")
    assert any(f"Action ['{action}'] allows every action of the service" in m for m in messages)


def test_partial_wildcard_is_advisory(run):
    policy = find(run, ROLE_POLICY, READ)
    changed = edited(run, policy, lambda r: set_document(
        r, "policy", lambda d: d["Statement"][2].update(Action=["s3:Get*"])))
    report = evaluate(changed)
    [v] = report.violations
    assert v.policy == "iam-no-partial-wildcard-actions" and v.level == "advisory"
    assert "Action ['s3:Get*']" in v.message and report.mandatory == []


@pytest.mark.parametrize("role_name", ["producer-cleanrooms-read", "analyst-cleanrooms-write"])
@pytest.mark.parametrize("dropped", ["aws:SourceArn", "aws:SourceAccount"])
def test_cleanrooms_trust_needs_both_conditions(run, role_name, dropped):
    role = find(run, ROLE, role_name)

    def drop(doc):
        for block in doc["Statement"][-1]["Condition"].values():
            block.pop(dropped, None)

    [v] = evaluate(edited(run, role, lambda r: set_document(r, "assumeRolePolicy", drop)),
                   policies=["iam-cleanrooms-trust-confused-deputy"]).violations
    assert f"{dropped} missing" in v.message and "confused deputy" in v.message
    assert "aws:SourceArn: [arn:aws:cleanrooms:<region>:<account>:membership/<id>]" in v.message


def test_cleanrooms_trust_by_external_id_must_name_a_membership(run):
    role = find(run, ROLE, READ)

    def widen(doc):
        doc["Statement"][0]["Condition"]["StringLike"]["sts:ExternalId"] = "arn:aws:*:us-east-1:*:dbuser:*/*"

    [v] = evaluate(edited(run, role, lambda r: set_document(r, "assumeRolePolicy", widen)),
                   policies=["iam-cleanrooms-trust-confused-deputy"]).violations
    assert "sts:ExternalId ['arn:aws:*:us-east-1:*:dbuser:*/*']" in v.message


def test_cleanrooms_trust_with_wildcard_source_arn(run):
    role = find(run, ROLE, READ)
    changed = edited(run, role, lambda r: set_document(
        r, "assumeRolePolicy", lambda d: d["Statement"][-1]["Condition"].update({"ArnLike": {"aws:SourceArn": "*"}})))
    [v] = evaluate(changed, policies=["iam-cleanrooms-trust-confused-deputy"]).violations
    assert "aws:SourceArn" in v.message


def test_inline_admin_policy(run):
    policy = find(run, ROLE_POLICY, READ)
    admin = edited(run, policy, lambda r: set_document(
        r, "policy", lambda d: d["Statement"].append({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"})))
    [v] = evaluate(admin, policies=["iam-no-admin-policies"]).violations
    assert "statement 'Admin' is an administrator policy (Action '*' on Resource '*')" in v.message


def test_administrator_access_attachment(run):
    role = find(run, ROLE, READ)
    admin = edited(run, role, lambda r: r.inputs.update(
        managedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]))
    [v] = evaluate(admin, policies=["iam-no-admin-policies"]).violations
    assert "managedPolicyArns attaches arn:aws:iam::aws:policy/AdministratorAccess" in v.message
    readonly = edited(run, role, lambda r: r.inputs.update(
        managedPolicyArns=["arn:aws:iam::aws:policy/ReadOnlyAccess"]))
    assert evaluate(readonly, policies=["iam-no-admin-policies"]).violations == []

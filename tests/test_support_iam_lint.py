"""Tests for tests/support/iam_lint.py (parliament wrapper + mock extraction)."""

import json
from types import SimpleNamespace

import pytest

from tests.support.iam_lint import iam_documents_from_mock_resources, lint_policy

ACCOUNT = "123456789012"

LEAST_PRIVILEGE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadPurchases",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::retail-data/purchases/*",
        },
        {
            "Sid": "ListPurchases",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": "arn:aws:s3:::retail-data",
        },
        {
            "Sid": "ReadCatalog",
            "Effect": "Allow",
            "Action": ["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
            "Resource": [
                f"arn:aws:glue:us-east-1:{ACCOUNT}:catalog",
                f"arn:aws:glue:us-east-1:{ACCOUNT}:database/retail",
                f"arn:aws:glue:us-east-1:{ACCOUNT}:table/retail/*",
            ],
        },
    ],
}

CLEANROOMS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cleanrooms.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {
                    "aws:SourceArn": f"arn:aws:cleanrooms:us-east-1:{ACCOUNT}:membership/*"
                },
            },
        }
    ],
}


def _with_statement(policy, index, **changes):
    doc = json.loads(json.dumps(policy))
    doc["Statement"][index].update(changes)
    return doc


def test_least_privilege_policy_has_no_findings():
    assert lint_policy(LEAST_PRIVILEGE) == []
    assert lint_policy(json.dumps(LEAST_PRIVILEGE)) == []


def test_unknown_action_is_reported():
    doc = _with_statement(LEAST_PRIVILEGE, 0, Action=["s3:GetObjects"])
    assert lint_policy(doc) == [
        "UNKNOWN_ACTION: Statement[0] (Sid 'ReadPurchases'): Unknown action s3:GetObjects"
    ]


def test_malformed_resource_arn_is_reported():
    doc = _with_statement(LEAST_PRIVILEGE, 0, Resource="arn:aws:s3:retail-data/purchases/*")
    findings = lint_policy(doc)
    assert findings == [
        "INVALID_ARN: Statement[0] (Sid 'ReadPurchases'): Does not have 6 parts "
        "(arn:aws:s3:retail-data/purchases/*)"
    ]


def test_bucket_arn_for_object_action_is_reported():
    doc = _with_statement(LEAST_PRIVILEGE, 0, Resource="arn:aws:s3:::retail-data")
    assert lint_policy(doc) == [
        "RESOURCE_MISMATCH: Statement[0] (Sid 'ReadPurchases'): "
        "s3:GetObject needs a resource like arn:*:s3:::*/*"
    ]


def test_cleanrooms_trust_policy_has_no_findings():
    assert lint_policy(CLEANROOMS_TRUST, kind="trust") == []


def test_trust_policy_is_not_an_identity_policy():
    # Raw parliament stops at the missing Resource; as an identity policy the
    # Principal is also wrong.  Both only apply when linted with the wrong kind.
    findings = lint_policy(CLEANROOMS_TRUST, kind="identity")
    assert {f.split(":")[0] for f in findings} == {"IDENTITY_POLICY_HAS_PRINCIPAL", "MALFORMED"}


def test_trust_policy_findings_still_surface():
    with_resource = _with_statement(CLEANROOMS_TRUST, 0, Resource="*")
    assert any(f.startswith("TRUST_POLICY_HAS_RESOURCE:")
               for f in lint_policy(with_resource, kind="trust"))
    bad_condition = _with_statement(
        CLEANROOMS_TRUST, 0, Condition={"ArnLike": {"aws:SourceArn": "membership/*"}}
    )
    assert [f.split(":")[0] for f in lint_policy(bad_condition, kind="trust")] == [
        "MISMATCHED_TYPE"
    ]


def test_kms_key_policy_resource_star_is_accepted_only_for_resource_policies():
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CleanRoomsDecrypt",
                "Effect": "Allow",
                "Principal": {"Service": "cleanrooms.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            }
        ],
    }
    assert lint_policy(key_policy, kind="resource") == []
    identity = {"Version": "2012-10-17",
                "Statement": [{k: v for k, v in key_policy["Statement"][0].items()
                               if k != "Principal"}]}
    assert [f.split(":")[0] for f in lint_policy(identity)] == ["RESOURCE_STAR"]
    assert lint_policy(identity, ignore={"RESOURCE_STAR"}) == []
    with pytest.raises(ValueError):
        lint_policy(identity, ignore={"RESOURCE_STARS"})


def test_iam_documents_from_mock_resources():
    resources = [
        SimpleNamespace(
            typ="aws:iam/role:Role",
            name="query-runner",
            inputs={
                "assumeRolePolicy": json.dumps(CLEANROOMS_TRUST),
                "inlinePolicies": [{"name": "read", "policy": json.dumps(LEAST_PRIVILEGE)}, {}],
            },
        ),
        SimpleNamespace(typ="aws:iam/policy:Policy", name="p", inputs={"policy": LEAST_PRIVILEGE}),
        SimpleNamespace(typ="aws:iam/rolePolicy:RolePolicy", name="rp",
                        inputs={"policy": json.dumps(LEAST_PRIVILEGE)}),
        SimpleNamespace(typ="aws:s3/bucketPolicy:BucketPolicy", name="bp",
                        inputs={"policy": "{not json"}),
        SimpleNamespace(typ="aws:kms/key:Key", name="key", inputs={"policy": None}),
        SimpleNamespace(typ="aws:s3/bucketV2:BucketV2", name="bucket", inputs={"bucket": "b"}),
    ]
    docs = iam_documents_from_mock_resources(resources)
    assert [(d.resource_name, d.kind) for d in docs] == [
        ("query-runner", "trust"),
        ("query-runner", "identity"),
        ("p", "identity"),
        ("rp", "identity"),
        ("bp", "resource"),
    ]
    assert docs[0].document == CLEANROOMS_TRUST
    assert docs[4].document == "{not json"
    findings = [(name, lint_policy(doc, kind=kind)) for name, kind, doc in docs]
    assert findings[4][1][0].startswith("MALFORMED_JSON:")
    assert [f for _, f in findings[:4]] == [[], [], [], []]

"""Providers (explicit, account-pinned, in an allowed region) and protection."""

import json

import pytest

from tests.harness import run_stack
from tests.policy_support import bootstrap, edited, evaluate, find

COLLAB = "aws-native:cleanrooms:Collaboration"
BUCKET = "aws:s3/bucket:Bucket"


@pytest.fixture(scope="module")
def runs():
    return bootstrap()


@pytest.mark.parametrize("stack", ["org-a", "org-b"])
def test_shipped_providers_pass(runs, stack):
    assert evaluate(runs[stack], policies=["aws-explicit-provider", "aws-provider-allowed-accounts",
                                           "aws-region-allowed", "protect-irreplaceable-resources"]).violations == []


def test_resource_without_provider(runs):
    run = runs["org-a"]
    bucket = find(run, BUCKET, "producer-data")
    [v] = evaluate(edited(run, bucket, lambda r: setattr(r, "provider", "")),
                   policies=["aws-explicit-provider"]).violations
    assert "aws:s3/bucket:Bucket 'org-a-producer-data-bucket' has no provider" in v.message
    assert "explicit pulumi:providers:aws provider" in v.message


def test_resource_on_a_default_provider(runs):
    run = runs["org-a"]
    collab = find(run, COLLAB)
    default = "urn:pulumi:org-a::cleanrooms-collab::pulumi:providers:aws-native::default_1_84_0::0a1b"
    [v] = evaluate(edited(run, collab, lambda r: setattr(r, "provider", default)),
                   policies=["aws-explicit-provider"]).violations
    assert "uses the default provider 'default_1_84_0'" in v.message


def provider(run, typ):
    return next(r for r in run.resources if r.typ == typ)


def test_provider_without_allowed_account_ids(runs):
    run = runs["org-b"]
    aws = provider(run, "pulumi:providers:aws")
    assert json.loads(aws.inputs["allowedAccountIds"]) == ["222222222222"]
    open_ = edited(run, aws, lambda r: r.inputs.pop("allowedAccountIds"))
    violations = evaluate(open_, policies=["aws-provider-allowed-accounts"]).violations
    classic = [r for r in run.resources if r.typ.startswith("aws:")]
    assert len(violations) == len(classic) > 0  # every resource of that provider, none of aws-native's
    assert "its provider 'org-b-aws' (pulumi:providers:aws) has no allowedAccountIds" in violations[0].message


def test_provider_accounts_restricted_by_config(runs):
    cfg = {"aws-provider-allowed-accounts": {"accountIds": ["111111111111"]}}
    assert evaluate(runs["org-a"], config=cfg, policies=["aws-provider-allowed-accounts"]).violations == []
    violations = evaluate(runs["org-b"], config=cfg, policies=["aws-provider-allowed-accounts"]).violations
    assert violations and "allows account(s) ['222222222222'] outside policy config accountIds" in violations[0].message


def test_region_outside_the_allow_list_from_config():
    # Before org A deploys: once it has, the program itself refuses a region that differs from org A's.
    run = run_stack("org-b", overrides={"region": "ap-northeast-1"})  # Clean Rooms runs there; the policy does not allow it
    violations = evaluate(run, policies=["aws-region-allowed"]).violations
    assert violations and all("sets region 'ap-northeast-1'" in v.message for v in violations)
    assert "one of ['us-east-1', 'us-east-2', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-2']" \
        in violations[0].message


def test_region_allow_list_is_configurable(runs):
    cfg = {"aws-region-allowed": {"allowedRegions": ["eu-central-1"]}}
    violations = evaluate(runs["org-a"], config=cfg, policies=["aws-region-allowed"]).violations
    assert violations and "sets region 'us-east-1'" in violations[0].message


def test_provider_without_region(runs):
    run = runs["org-a"]
    native = provider(run, "pulumi:providers:aws-native")
    violations = evaluate(edited(run, native, lambda r: r.inputs.pop("region")),
                          policies=["aws-region-allowed"]).violations
    assert violations and "sets no region (it would come from the environment)" in violations[0].message


@pytest.mark.parametrize("stack,typ", [("org-a", COLLAB), ("org-a", "aws-native:cleanrooms:Membership"),
                                       ("org-b", "aws-native:cleanrooms:Membership"), ("org-b", BUCKET)])
def test_protect(runs, stack, typ):
    run = runs[stack]
    target = find(run, typ)
    assert target.protect
    [v] = evaluate(edited(run, target, lambda r: setattr(r, "protect", False)),
                   policies=["protect-irreplaceable-resources"]).violations
    assert f"{typ} '{target.name}' is not protected" in v.message

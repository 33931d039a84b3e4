"""Residency: where results may be written, where source tables are, and the regions Clean Rooms runs in.

The collaboration's allowedResultRegions (create-only, default: its own region),
a producer's dataRegion (its bucket, key and Glue table in another region, the
table reference naming it), the pack's residency policy over all of them, and
the offline plan showing a change of a create-only setting as the replacement
`pulumi preview` would show, stopped by protect.
"""

from __future__ import annotations

import json

import boto3
import botocore.session
import pulumi
import pytest

from model import regions
from offline import plan
from tests.harness import PROJECT, run_stack, stack_config, stack_ref
from tests.policy_support import evaluate
from tests.support.cfn_schema import load_schema

CR = "aws-native:cleanrooms"


def _model():
    return botocore.session.get_session().get_service_model("cleanrooms")


def _cfn_enum(type_token: str, definition: str) -> set[str]:
    return set(load_schema(type_token)["definitions"][definition]["enum"])


def test_the_region_lists_are_their_sources():
    assert sorted(regions.CLEAN_ROOMS_REGIONS) == sorted(boto3.session.Session().get_available_regions("cleanrooms"))
    result = _model().operation_model("CreateCollaboration").input_shape.members["allowedResultRegions"].member.enum
    assert set(regions.RESULT_REGIONS) == set(result) == _cfn_enum(f"{CR}:Collaboration", "SupportedS3Region")
    table = set(_model().shape_for("GlueTableReference").members["region"].enum)
    assert set(regions.TABLE_REGIONS) == table & _cfn_enum(f"{CR}:ConfiguredTable", "CommercialRegion")


def test_results_stay_in_the_collaborations_region_by_default_and_every_stack_says_where(bootstrap):
    collaboration = bootstrap.a1.one(f"{CR}:Collaboration")
    assert collaboration.inputs["allowedResultRegions"] == ["us-east-1"]
    assert "allowedResultRegions[*]" in collaboration.replace_on_changes and collaboration.protect
    assert bootstrap.a1.outputs["allowed_result_regions"] == ["us-east-1"]
    assert bootstrap.a1.outputs["results_region"] == "us-east-1"
    # A joining stack passes the owner's setting on to its own runner (results receivers, job runners).
    assert bootstrap.b2.outputs["allowed_result_regions"] == ["us-east-1"]
    assert run_stack("org-b").outputs["allowed_result_regions"] is None  # before the owner deploys: unknown


def _collaboration(**changes) -> dict:
    return {**stack_config("org-a")[f"{PROJECT}:collaboration"], **changes}


def test_more_result_regions_are_sent_as_configured():
    run = run_stack("org-a", overrides={"collaboration": _collaboration(allowedResultRegions=["us-east-1", "eu-west-1"])})
    assert run.one(f"{CR}:Collaboration").inputs["allowedResultRegions"] == ["us-east-1", "eu-west-1"]


@pytest.mark.parametrize("overrides, expected", [
    ({"collaboration": _collaboration(allowedResultRegions=["eu-west-1"])},
     f"config '{PROJECT}:collaboration.allowedResultRegions': is ['eu-west-1'], without 'us-east-1': every member's "
     "results bucket is in the collaboration's region, so no result could be written; add 'us-east-1'"),
    ({"collaboration": _collaboration(allowedResultRegions=["mars-north-1"])},
     f"config '{PROJECT}:collaboration.allowedResultRegions[0]':"),
    ({"collaboration": _collaboration(allowedResultRegions=[])}, "collaboration.allowedResultRegions"),
    ({"region": "sa-east-1"}, f"config '{PROJECT}:region': 'sa-east-1' has no AWS Clean Rooms endpoint "
                              "(https://docs.aws.amazon.com/general/latest/gr/clean-rooms.html); allowed values: "
                              "['ap-northeast-1',"),
    ({"dataRegion": "eu-west-1"}, f"config '{PROJECT}:dataRegion': only applies to an organization with role "
                                  "'data_producer'"),
])
def test_regions_outside_what_aws_supports_are_refused_in_one_line(overrides, expected):
    if "dataRegion" in overrides:
        overrides = {**overrides, "roles": ["collaboration_owner", "analyst"], "dataset": None, "analysisRule": None}
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides=overrides)
    message = str(info.value).splitlines()[0]
    assert message.startswith(expected) or expected in message, message


def test_a_bad_data_region_names_the_key_and_what_would_pass():
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"dataRegion": "ap-southeast-3"})  # in the service model, not in CloudFormation
    assert str(info.value).startswith(f"config '{PROJECT}:dataRegion': ") and "'eu-west-1'" in str(info.value)


@pytest.fixture(scope="module")
def remote_data(bootstrap):
    return run_stack("org-b", overrides={"dataRegion": "eu-west-1"},
                     peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})


def test_a_producer_keeps_its_data_in_its_data_region(remote_data):
    run = remote_data
    [data] = [r for r in run.resources if r.typ == "pulumi:providers:aws" and r.name == "org-b-aws-eu-west-1"]
    assert data.inputs["region"] == "eu-west-1" and json.loads(data.inputs["allowedAccountIds"]) == ["222222222222"]
    in_data_region = {r.typ for r in run.resources if r.provider.startswith(data.urn)}
    assert {"aws:s3/bucket:Bucket", "aws:kms/key:Key", "aws:glue/catalogDatabase:CatalogDatabase",
            "aws:glue/catalogTable:CatalogTable", "aws:s3/bucketObjectv2:BucketObjectv2"} <= in_data_region
    # Clean Rooms resources stay in the collaboration's region; the table reference names the data's.
    table = run.one(f"{CR}:ConfiguredTable")
    assert not table.provider.startswith(data.urn)
    assert table.input("tableReference.glue.region") == "eu-west-1"
    assert run.one(f"{CR}:ConfiguredTableAssociation").provider == table.provider
    policy = json.loads(run.named("org-b-producer-cleanrooms-read-policy").inputs["policy"])
    glue = next(s for s in policy["Statement"] if s["Sid"] == "ReadThisGlueTable")
    assert all(arn.startswith("arn:aws:glue:eu-west-1:222222222222:") for arn in glue["Resource"])
    kms = next(s for s in policy["Statement"] if s["Sid"] == "DecryptThisBucketsObjects")
    assert json.dumps(kms["Condition"]).count("s3.eu-west-1.amazonaws.com") == 1
    assert run.outputs["data_region"] == "eu-west-1"


def test_the_same_region_sends_no_table_region(bootstrap):
    assert bootstrap.b2.one(f"{CR}:ConfiguredTable").input("tableReference.glue.region") is None
    assert not [r for r in bootstrap.b2.resources if r.name.startswith("org-b-aws-") and r.name != "org-b-aws-native"]


def test_the_residency_policy_covers_the_collaboration_results_and_source_tables(bootstrap, remote_data):
    residency = ["aws-region-allowed"]
    assert evaluate(bootstrap.a1, policies=residency).violations == []
    assert evaluate(remote_data, policies=residency).violations == []  # eu-west-1 is among the defaults
    eu_only = {"aws-region-allowed": {"allowedRegions": ["us-east-1"]}}
    messages = [v.message for v in evaluate(remote_data, config=eu_only, policies=residency).violations]
    assert any("reads a Glue table in 'eu-west-1'" in m for m in messages)
    assert any("sets region 'eu-west-1'" in m for m in messages)  # the bucket, key and Glue table themselves
    wider = run_stack("org-a", overrides={"collaboration": _collaboration(allowedResultRegions=["us-east-1", "sa-east-1"])})
    [violation] = evaluate(wider, policies=residency).violations
    assert "allows results in ['sa-east-1']" in violation.message and "allowedResultRegions" in violation.message


def test_the_residency_policy_refuses_a_collaboration_without_result_regions(bootstrap):
    collaboration = bootstrap.a1.one(f"{CR}:Collaboration")
    unset = type(collaboration)(**{**collaboration.__dict__, "inputs": {
        k: v for k, v in collaboration.inputs.items() if k != "allowedResultRegions"}})
    resources = [unset if r is collaboration else r for r in bootstrap.a1.resources]
    [violation] = evaluate(resources, policies=["aws-region-allowed"]).violations
    assert "sets no allowedResultRegions, so results may be written in any region" in violation.message


def test_changing_the_result_regions_shows_a_replacement_that_protect_stops(bootstrap):
    before = {"format": plan.PLAN_FORMAT, "round": "1", "stacks": {"org-a": plan.stack_plan(bootstrap.a1, 1)}}
    wider = run_stack("org-a", overrides={"collaboration": _collaboration(allowedResultRegions=["us-east-1", "us-west-2"])})
    after = {"format": plan.PLAN_FORMAT, "round": "1", "stacks": {"org-a": plan.stack_plan(wider, 1)}}
    diff = plan.diff_plans(before, after)
    [changed] = diff["stacks"]["org-a"]["changed"]
    assert changed["type"] == f"{CR}:Collaboration" and changed["replaces"] == ["allowedResultRegions.1"]
    text = plan.render_diff(diff, "the saved plan")
    assert (f"  +- {CR}:Collaboration  org-a-owner-collaboration  (replaced: allowedResultRegions.1 cannot change in "
            "place; protected: `pulumi up` refuses to replace it)") in text
    # An in-place change stays one: the description is not create-only.
    described = run_stack("org-a", overrides={"collaboration": _collaboration(description="Another description.")})
    diff = plan.diff_plans(before, {**after, "stacks": {"org-a": plan.stack_plan(described, 1)}})
    [changed] = diff["stacks"]["org-a"]["changed"]
    assert changed["replaces"] == [] and "  ~ aws-native:cleanrooms:Collaboration  org-a-owner-collaboration" in \
        plan.render_diff(diff, "the saved plan")


def test_the_deployer_policy_of_a_producer_with_remote_data_is_scoped_to_each_region(remote_data):
    import re

    from offline import deployer_policy as dp
    from tests.support.iam_lint import lint_policy

    document = dp.build(dp.collect("org-b", [remote_data]))["deployer"]
    remote = [s for s in document["Statement"] if s["Sid"].endswith("InEuWest1")]
    assert {"GlueCatalogOfThisStack", "S3BucketsOfThisStack", "KmsKeysOfThisStack"} <= {
        s["Sid"][:-len("InEuWest1")] for s in remote}
    regional = [arn for s in remote for arn in s["Resource"] if arn != "*" and arn.split(":")[3]]
    assert regional and all(arn.split(":")[3] == "eu-west-1" for arn in regional)
    assert any(arn == "arn:aws:glue:eu-west-1:222222222222:database/org_b_media_engagement" for arn in regional)
    for statement in remote:
        requested = (statement.get("Condition") or {}).get("StringEquals", {}).get("aws:RequestedRegion")
        assert requested in (None, "eu-west-1")
    # Nothing of the data's lands in the collaboration's region, and Clean Rooms stays there.
    home = [s for s in document["Statement"] if not s["Sid"].endswith("InEuWest1")]
    assert not any(arn.startswith("arn:aws:glue:us-east-1") and "media_engagement" in arn
                   for s in home for arn in s["Resource"])
    # Clean Rooms' own handler reads the Glue table where it is.
    handler = next(s for s in home if s["Sid"] == "ConfiguredTableHandlersGlue")
    assert "arn:aws:glue:eu-west-1:222222222222:table/org_b_media_engagement/media_engagement" in handler["Resource"]
    unknown = {a for s in document["Statement"] for a in s["Action"] if dp.privilege(a) is None}
    known = dict(document, Statement=[dict(s, Action=[a for a in s["Action"] if a not in unknown])
                                      for s in remote if set(s["Action"]) - unknown])
    findings = [f for f in lint_policy(known) if not (
        f.startswith("RESOURCE_STAR") and re.sub(r"In[A-Z]\w+$", "", re.search(r"Sid '([^']+)'", f).group(1))
        in dp.STAR_BY_DESIGN) and not f.startswith("RESOURCE_POLICY_PRIVILEGE_ESCALATION")]
    assert findings == []

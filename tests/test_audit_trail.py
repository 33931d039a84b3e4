"""The audit trail a member opts into, and the retention of the Clean Rooms log groups every member gets."""

from __future__ import annotations

import json

import boto3
import pulumi
import pytest
from moto import mock_aws

from components.log_retention import PREFIX, apply_retention
from components.member_change import Poll
from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_ref
from tests.policy_support import evaluate
from tests.support.clock import Clock
from tests.support.iam_lint import lint_policy

B = "222222222222"
TRAIL_ARN = f"arn:aws:cloudtrail:us-east-1:{B}:trail/org-b-cleanrooms-audit"


@pytest.fixture(scope="module")
def audited(bootstrap):
    return run_stack("org-b", overrides={"audit": {"trail": True, "retentionDays": 400, "lockMode": "COMPLIANCE",
                                                   "logRetentionDays": 731}},
                     peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})


def test_the_trail_records_into_an_encrypted_versioned_object_locked_bucket(audited):
    run = audited
    trail = run.one("aws:cloudtrail/trail:Trail")
    assert trail.inputs["name"] == "org-b-cleanrooms-audit"
    assert trail.inputs["enableLogFileValidation"] is True and trail.inputs["isMultiRegionTrail"] is False
    assert trail.inputs["s3KeyPrefix"] == "cloudtrail"
    bucket = run.named("org-b-audit-logs-bucket")
    assert bucket.inputs["objectLockEnabled"] is True and bucket.protect
    assert trail.inputs["s3BucketName"] == bucket.inputs["bucket"] == f"org-b-cleanrooms-audit-{B}"
    lock = run.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.input("rule.defaultRetention") == {"mode": "COMPLIANCE", "days": 400}
    assert run.named("org-b-audit-logs-versioning").input("versioningConfiguration.status") == "Enabled"
    assert trail.inputs["kmsKeyId"] == run.named("org-b-audit-logs-key").state["arn"]
    # The ARN the key and bucket policies were written for is the trail's.
    assert run.outputs["audit_trail_arn"] == TRAIL_ARN


def test_the_trail_selects_management_events_only_as_cloudtrail_offers_none_of_data_for_clean_rooms(audited):
    """Clean Rooms' calls are management events and CloudTrail lists no AWS::CleanRooms* data event type
    (components/audit_trail.py cites both pages): one advanced selector, management events read and write."""
    trail = audited.one("aws:cloudtrail/trail:Trail")
    assert trail.inputs.get("eventSelectors") is None  # basic selectors cannot be mixed with advanced ones
    [selector] = trail.inputs["advancedEventSelectors"]
    assert selector["fieldSelectors"] == [{"field": "eventCategory", "equals": ["Management"]}]
    assert "Data" not in json.dumps(trail.inputs) and "resources.type" not in json.dumps(trail.inputs)
    # What the provider sends (PutEventSelectors) passes botocore's model and is kept by moto's CloudTrail.
    sent = [{"Name": s["name"], "FieldSelectors": [{"Field": f["field"], "Equals": f["equals"]}
                                                   for f in s["fieldSelectors"]]}
            for s in trail.inputs["advancedEventSelectors"]]
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=trail.inputs["s3BucketName"])
        cloudtrail = boto3.client("cloudtrail", region_name="us-east-1")
        cloudtrail.create_trail(Name=trail.inputs["name"], S3BucketName=trail.inputs["s3BucketName"])
        cloudtrail.put_event_selectors(TrailName=trail.inputs["name"], AdvancedEventSelectors=sent)
        kept = cloudtrail.get_event_selectors(TrailName=trail.inputs["name"])
        assert kept["AdvancedEventSelectors"] == sent and not kept["EventSelectors"]


def test_only_this_trail_may_write_and_encrypt_and_the_policies_lint_clean(audited):
    key_policy = json.loads(audited.named("org-b-audit-logs-key").inputs["policy"])
    by_sid = {s["Sid"]: s for s in key_policy["Statement"]}
    assert by_sid["CloudTrailEncryptsThisTrailsLogs"]["Condition"]["StringEquals"] == {"aws:SourceArn": TRAIL_ARN}
    assert lint_policy(key_policy, kind="resource") == []
    bucket_policy = json.loads(audited.named("org-b-audit-logs-tls-only").inputs["policy"])
    sids = [s["Sid"] for s in bucket_policy["Statement"]]
    assert sids == ["DenyInsecureTransport", "CloudTrailAclCheck", "CloudTrailWrite"]
    write = bucket_policy["Statement"][2]
    assert write["Resource"].endswith(f"/cloudtrail/AWSLogs/{B}/*")
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == TRAIL_ARN
    assert lint_policy(bucket_policy, kind="resource") == []


def test_the_policy_pack_passes_the_audited_stack(audited):
    assert evaluate(audited).violations == []


def test_every_member_sets_a_retention_on_its_clean_rooms_log_groups(bootstrap, audited):
    [retention] = [r for r in audited.resources if r.name == "org-b-log-retention"]
    assert retention.inputs["days"] == 731 and retention.inputs["account_id"] == B
    membership = audited.one("aws-native:cleanrooms:Membership")
    assert membership.urn in retention.dependencies
    default = [r for r in bootstrap.a1.resources if r.name == "org-a-log-retention"]
    assert default and default[0].inputs["days"] == 365  # the default: a year, not forever
    # Before there is a membership there are no Clean Rooms log groups to keep.
    assert not [r for r in run_stack("org-b").resources if r.name == "org-b-log-retention"]


def test_the_retention_lands_on_the_clean_rooms_log_groups_only():
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        for name in (f"{PREFIX}/collaboration-1", f"{PREFIX}/collaboration-2", "/aws/lambda/other"):
            logs.create_log_group(logGroupName=name)
        clock = Clock()
        assert apply_retention(logs, 731, Poll(10, clock=clock, sleep=clock.sleep)) == [
            f"{PREFIX}/collaboration-1", f"{PREFIX}/collaboration-2"]
        kept = {g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups()["logGroups"]}
        assert kept == {f"{PREFIX}/collaboration-1": 731, f"{PREFIX}/collaboration-2": 731, "/aws/lambda/other": None}


def test_without_log_groups_yet_it_waits_with_backoff_to_its_deadline_then_leaves_it_for_the_next_up():
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        clock = Clock()
        assert apply_retention(logs, 365, Poll(60, clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)) == []
        assert 60 <= clock.now < 61  # it polled until the deadline, sleeping, never longer


@pytest.mark.parametrize("audit, key, fragment", [
    ({"logRetentionDays": 100}, "audit.logRetentionDays", "365"),
    ({"lockMode": "STRICT"}, "audit.lockMode", "'GOVERNANCE'"),
    ({"retentionDays": 0}, "audit.retentionDays", "1 to 36500"),
    ({"trial": True}, "audit.trial", "did you mean 'trail'"),
])
def test_bad_audit_config_is_one_line_naming_the_key(audit, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"audit": audit})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_the_deployer_policy_covers_the_trail_and_the_log_retention(audited):
    document = dp.build(dp.collect("org-b", [audited]))["deployer"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    trail = by_sid["CloudTrailTrailOfThisStack"]
    assert trail["Resource"] == [TRAIL_ARN] and "cloudtrail:CreateTrail" in trail["Action"]
    assert by_sid["LogsCleanRoomsLogGroupsRetention"]["Resource"] == [
        f"arn:aws:logs:us-east-1:{B}:log-group:/aws/cleanrooms*"]
    assert "s3:PutBucketObjectLockConfiguration" in by_sid["S3BucketsOfThisStack"]["Action"]
    unknown = {a for s in document["Statement"] for a in s["Action"] if dp.privilege(a) is None}
    known = dict(document, Statement=[dict(s, Action=[a for a in s["Action"] if a not in unknown])
                                      for s in document["Statement"] if s["Sid"] in (
                                          "CloudTrailTrailOfThisStack", "LogsCleanRoomsLogGroupsRetention",
                                          "LogsFindLogGroupsInThisRegion")])
    assert lint_policy(known) == []


def test_the_retention_is_updated_only_when_its_settings_change_or_no_group_was_found_yet():
    from components.log_retention import _Provider

    provider = _Provider(client=lambda props: None)
    settled = {"days": 365, "account_id": B, "region": "us-east-1", "profile": None, "assume_role_arn": None,
               "wait_seconds": 120, "log_groups": [f"{PREFIX}/x"]}
    same = {k: v for k, v in settled.items() if k != "log_groups"}
    assert provider.diff("id", settled, same).changes is False  # another `pulumi up` changes nothing
    assert provider.diff("id", settled, {**same, "days": 731}).changes is True
    assert provider.diff("id", {**settled, "log_groups": []}, same).changes is True  # try again: none found yet

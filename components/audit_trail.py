"""One member's audit trail: CloudTrail into an encrypted, versioned, object-locked bucket.

"CloudTrail captures all API calls for AWS Clean Rooms as events [...] If you
create a trail, you can enable continuous delivery of CloudTrail events to an
Amazon S3 bucket" (Clean Rooms User Guide, "Logging AWS Clean Rooms API calls
using AWS CloudTrail",
https://docs.aws.amazon.com/clean-rooms/latest/userguide/logging-using-cloudtrail.html).
Its example StartProtectedQuery events are management events (``"managementEvent":
true, "eventCategory": "Management"``), and CloudTrail's table of data event
resource types ("Data events supported by AWS CloudTrail",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-concepts.html#cloudtrail-concepts-data-events,
the same table as
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-data-events-with-cloudtrail.html)
has no ``AWS::CleanRooms::*`` or ``AWS::CleanRoomsML::*`` type: there are no
Clean Rooms data events to select. So the trail's one advanced event selector
takes this account's management events (the first copy of them is free), read
and write, in the collaboration's region only (residency), with log file
validation on: the digest files let an auditor prove no log was changed or
deleted. Object Lock keeps every log object for ``retention_days``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.secure_bucket import SecureBucket, SecureBucketArgs

PREFIX = "cloudtrail"


@dataclass
class AuditTrailArgs:
    organization: str
    account_id: str
    region: str
    retention_days: int
    """How long each log object is locked (S3 Object Lock default retention)."""
    lock_mode: str
    """GOVERNANCE (privileged users may lift it) or COMPLIANCE (no one can, not even the root user)."""
    protect: bool = True


class AuditTrail(pulumi.ComponentResource):
    trail: aws.cloudtrail.Trail

    def __init__(self, name: str, args: AuditTrailArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:governance:AuditTrail", name, None, opts)
        trail_name = f"{args.organization}-cleanrooms-audit"
        # Known before the trail exists, so the key and bucket policies can name it (aws:SourceArn).
        trail_arn = f"arn:aws:cloudtrail:{args.region}:{args.account_id}:trail/{trail_name}"
        self.storage = SecureBucket(f"{name}-logs", SecureBucketArgs(
            bucket_name=f"{args.organization}-cleanrooms-audit-{args.account_id}",
            description=f"{args.organization}'s CloudTrail logs", protect=args.protect,
            object_lock=(args.lock_mode, args.retention_days),
            key_policy=iam.cloudtrail_key_policy(account_id=args.account_id, trail_arn=trail_arn),
            bucket_statements=lambda arn: iam.cloudtrail_bucket_statements(
                arn, trail_arn=trail_arn, account_id=args.account_id, prefix=PREFIX)),
            opts=pulumi.ResourceOptions(parent=self))
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail",
            name=trail_name,
            s3_bucket_name=self.storage.bucket.bucket,
            s3_key_prefix=PREFIX,
            kms_key_id=self.storage.key.arn,
            enable_log_file_validation=True,
            # Management events are chosen by eventCategory = Management (Equals is its only operator; for them
            # eventSource takes only NotEquals, so Clean Rooms' own calls cannot be singled out:
            # https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_AdvancedFieldSelector.html). No
            # readOnly field: read and write events both. No Data selector: CloudTrail lists no data event type
            # for Clean Rooms (module docstring).
            advanced_event_selectors=[aws.cloudtrail.TrailAdvancedEventSelectorArgs(
                name="Management events (AWS Clean Rooms' API calls are management events)",
                field_selectors=[aws.cloudtrail.TrailAdvancedEventSelectorFieldSelectorArgs(
                    field="eventCategory", equals=["Management"])])],
            is_multi_region_trail=False,
            include_global_service_events=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.storage]),
        )
        self.register_outputs({"trail_arn": self.trail.arn, "bucket": self.storage.bucket.bucket})

"""IAM and bucket policy documents, built in one place so they are reviewed once.

Every document is least-privilege: named actions on named resources, and the
Clean Rooms trust policies carry the confused-deputy conditions AWS documents
(User Guide, "Cross-service confused deputy prevention": "The value of
aws:SourceArn must be set to the ARN of the membership of the assumed role";
"All members of the collaboration can view the configured table metadata so
each membership ARN must be included").
"""

from __future__ import annotations

from typing import Sequence

import pulumi

CLEAN_ROOMS = "cleanrooms.amazonaws.com"


def _doc(*statements: dict) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def cleanrooms_trust(account_ids: Sequence[str], source_arns: Sequence[pulumi.Input[str]],
                     *, arn_like: bool = False) -> pulumi.Output[str]:
    """Trust for cleanrooms.amazonaws.com, only on behalf of the given memberships.

    ``arn_like`` allows a pattern (``membership/*`` in one account) where the
    exact membership cannot be known before the role must exist.
    """
    return _doc({
        "Sid": "CleanRoomsForTheseMembershipsOnly",
        "Effect": "Allow",
        "Principal": {"Service": CLEAN_ROOMS},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": sorted(set(account_ids))},
            ("ArnLike" if arn_like else "ArnEquals"): {"aws:SourceArn": list(source_arns)},
        },
    })


def data_read_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                     kms_key_arn: pulumi.Input[str], database: pulumi.Input[str],
                     table: pulumi.Input[str]) -> pulumi.Output[str]:
    """What Clean Rooms needs to read one Glue table and its S3 objects.

    Actions from the User Guide's service-role policy for reading Glue/S3
    data (ml-roles, "read training data"), narrowed to this table.
    """
    glue = f"arn:aws:glue:{region}:{account_id}"
    resource_account = {"StringEquals": {"s3:ResourceAccount": account_id}}
    return _doc(
        {
            "Sid": "ReadThisGlueTable",
            "Effect": "Allow",
            "Action": ["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions",
                       "glue:BatchGetPartition"],
            "Resource": [f"{glue}:catalog",
                         pulumi.Output.concat(glue, ":database/", database),
                         pulumi.Output.concat(glue, ":table/", database, "/", table)],
        },
        {
            "Sid": "ListThisPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": [bucket_arn],
            "Condition": resource_account,
        },
        {
            "Sid": "ReadThisPrefix",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [pulumi.Output.concat(bucket_arn, f"/{prefix}/*")],
            "Condition": resource_account,
        },
        {
            "Sid": "DecryptThisBucketsObjects",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [kms_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    )


def results_write_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                         kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What Clean Rooms needs to write query results under one prefix."""
    resource_account = {"StringEquals": {"s3:ResourceAccount": account_id}}
    return _doc(
        {
            "Sid": "LocateResultsBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": [bucket_arn],
            "Condition": resource_account,
        },
        {
            "Sid": "WriteResults",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [pulumi.Output.concat(bucket_arn, f"/{prefix}/*")],
            "Condition": resource_account,
        },
        {
            "Sid": "EncryptResults",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [kms_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    )


def tls_only_bucket_policy(bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Deny any request that does not use TLS (AWS S3 security best practice)."""
    return _doc({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


def quicksight_trust(account_id: str) -> pulumi.Output[str]:
    """QuickSight, acting for this account only (confused-deputy guard)."""
    return _doc({
        "Sid": "QuickSightInThisAccountOnly",
        "Effect": "Allow",
        "Principal": {"Service": "quicksight.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    })


def quicksight_read_policy(*, region: str, bucket_arn: pulumi.Input[str], prefix: str, manifest_key: str,
                           kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What a QuickSight S3 data source needs: the published results and its manifest."""
    return _doc(
        {
            "Sid": "ReadResultsAndManifest",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [pulumi.Output.concat(bucket_arn, "/", prefix, "/*"),
                         pulumi.Output.concat(bucket_arn, "/", manifest_key)],
        },
        {
            "Sid": "ListResultsPrefixOnly",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}},
        },
        {
            "Sid": "BucketLocation",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": bucket_arn,
        },
        {
            "Sid": "DecryptResultsViaS3",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    )

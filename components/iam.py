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


def table_read_trust(*, region: str, account_ids: Sequence[str], membership_arns: Sequence[pulumi.Input[str]],
                     query_runner_membership_id: pulumi.Input[str] | None) -> pulumi.Output[str]:
    """Trust for the role Clean Rooms reads a configured table with: the documented form.

    User Guide, "Cross-service confused deputy prevention": "In AWS Clean Rooms,
    you also have to compare against the sts:ExternalId condition key"; its
    example trust policy for "the service role that AWS Clean Rooms uses to
    access data and metadata for a configured table" has two statements, one
    matching sts:ExternalId "arn:aws:*:<region>:*:dbuser:*/<query-runner-
    membership-id>*", one matching aws:SourceArn (ForAnyValue:ArnEquals) to
    every member's membership ("All members of the collaboration can view the
    configured table metadata so each membership ARN must be included"). Both
    are also bounded here by aws:SourceAccount to the members' accounts.
    The first statement waits until the query runner's membership is known.
    """
    accounts = {"aws:SourceAccount": sorted(set(account_ids))}
    statements = []
    if query_runner_membership_id is not None:
        statements.append({
            "Sid": "QueryRunnerMembershipByExternalId",
            "Effect": "Allow",
            "Principal": {"Service": CLEAN_ROOMS},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringLike": {"sts:ExternalId": pulumi.Output.concat(
                    f"arn:aws:*:{region}:*:dbuser:*/", query_runner_membership_id, "*")},
                "StringEquals": accounts,
            },
        })
    statements.append({
        "Sid": "MembersOfThisCollaborationBySourceArn",
        "Effect": "Allow",
        "Principal": {"Service": CLEAN_ROOMS},
        "Action": "sts:AssumeRole",
        "Condition": {
            "ForAnyValue:ArnEquals": {"aws:SourceArn": list(membership_arns)},
            "StringEquals": accounts,
        },
    })
    return _doc(*statements)


def own_memberships_trust(*, region: str, account_id: str) -> pulumi.Output[str]:
    """Trust for a role Clean Rooms assumes on behalf of this account's memberships.

    Used for the role results are written with and the role PySpark artifacts
    are read with. The membership (defaultResultConfiguration) or the template
    names the role, so the role exists first and cannot name their ARNs: the
    pattern admits only memberships in this account and region (and anything
    under them, such as membership/<id>/analysistemplate/<id>), and
    aws:SourceAccount this account. (The User Guide's "service role to receive results" section could
    not be read offline; this is the confused-deputy page's rule applied with
    what is known when the role is created.)
    """
    return _doc({
        "Sid": "CleanRoomsForThisAccountsMemberships",
        "Effect": "Allow",
        "Principal": {"Service": CLEAN_ROOMS},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": [account_id]},
            "ArnLike": {"aws:SourceArn": [f"arn:aws:cleanrooms:{region}:{account_id}:membership/*"]},
        },
    })


# AWSCleanRoomsFullAccess (and ...NoQuerying) let a deployer pass only roles under
# this path whose name contains "cleanrooms" ("PassServiceRole": iam:PassRole on
# arn:aws:iam::*:role/service-role/*cleanrooms*, iam:PassedToService
# cleanrooms.amazonaws.com), so every role a service assumes is created there.
SERVICE_ROLE_PATH = "/service-role/"


def service_role_name(organization: str, purpose: str) -> str:
    """<organization>-cleanrooms-<purpose>, at most 64 characters (IAM's limit)."""
    return f"{organization}-cleanrooms-{purpose}"[:64]


def _bucket(sid: str, bucket_arn: pulumi.Input[str], account_id: str) -> dict:
    """Find the bucket (list it, its region), only while it is in this account."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": [bucket_arn],
        "Condition": {"StringEquals": {"s3:ResourceAccount": account_id}},
    }


def _objects(sid: str, actions: list[str], bucket_arn: pulumi.Input[str], prefix: str, account_id: str) -> dict:
    """``actions`` on the objects under ``prefix``, only while the bucket is in this account."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": [pulumi.Output.concat(bucket_arn, f"/{prefix}/*")],
        "Condition": {"StringEquals": {"s3:ResourceAccount": account_id}},
    }


def _key_via_s3(sid: str, actions: list[str], kms_key_arn: pulumi.Input[str], region: str) -> dict:
    """``actions`` on the bucket's KMS key, only when S3 calls KMS for them."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": [kms_key_arn],
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
    }


def data_read_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                     kms_key_arn: pulumi.Input[str], database: pulumi.Input[str],
                     table: pulumi.Input[str]) -> pulumi.Output[str]:
    """What Clean Rooms needs to read one Glue table and its S3 objects.

    Actions from the User Guide's service-role policy for reading Glue/S3
    data (ml-roles, "read training data"), narrowed to this table.
    """
    glue = f"arn:aws:glue:{region}:{account_id}"
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
        _bucket("ListThisPrefix", bucket_arn, account_id),
        _objects("ReadThisPrefix", ["s3:GetObject"], bucket_arn, prefix, account_id),
        _key_via_s3("DecryptThisBucketsObjects", ["kms:Decrypt"], kms_key_arn, region),
    )


def results_write_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                         kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What Clean Rooms needs to write query results under one prefix."""
    return _doc(
        _bucket("LocateResultsBucket", bucket_arn, account_id),
        _objects("WriteResults", ["s3:PutObject"], bucket_arn, prefix, account_id),
        _key_via_s3("EncryptResults", ["kms:GenerateDataKey", "kms:Decrypt"], kms_key_arn, region),
    )


def artifact_read_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                         kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What Clean Rooms needs to read PySpark analysis artifacts under one prefix.

    Clean Rooms reads "the specific S3 object version used when creating the
    template" (User Guide, pyspark-analysis-templates), hence GetObjectVersion
    beside GetObject; nothing here can write or delete an artifact.
    """
    return _doc(
        _bucket("LocateArtifactBucket", bucket_arn, account_id),
        _objects("ReadArtifacts", ["s3:GetObject", "s3:GetObjectVersion"], bucket_arn, prefix, account_id),
        _key_via_s3("DecryptArtifacts", ["kms:Decrypt"], kms_key_arn, region),
    )


def tls_only_bucket_policy(bucket_arn: pulumi.Input[str], *statements: dict) -> pulumi.Output[str]:
    """Deny any request that does not use TLS (AWS S3 security best practice), with ``statements`` after it."""
    return _doc({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }, *statements)


def cloudtrail_bucket_statements(bucket_arn: pulumi.Input[str], *, trail_arn: str, account_id: str,
                                 prefix: str) -> list[dict]:
    """What CloudTrail needs to deliver one trail's logs (CloudTrail User Guide, "Amazon S3 bucket policy for
    CloudTrail"): read the bucket's ACL and write under <prefix>/AWSLogs/<account>/, each only for this trail
    (aws:SourceArn, the documented confused-deputy guard)."""
    trail = {"aws:SourceArn": trail_arn}
    return [
        {"Sid": "CloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": bucket_arn, "Condition": {"StringEquals": trail}},
        {"Sid": "CloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": pulumi.Output.concat(bucket_arn, f"/{prefix}/AWSLogs/{account_id}/*"),
         "Condition": {"StringEquals": {**trail, "s3:x-amz-acl": "bucket-owner-full-control"}}},
    ]


def cloudtrail_key_policy(*, account_id: str, trail_arn: str) -> pulumi.Output[str]:
    """A key for one trail's logs (CloudTrail User Guide, "Configure AWS KMS key policies for CloudTrail"): the
    account administers it; CloudTrail encrypts with it for this trail only (aws:SourceArn, and the encryption
    context naming this account's trails) and may describe it; principals of this account may decrypt the logs."""
    return _doc(
        {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudTrailEncryptsThisTrailsLogs", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "kms:GenerateDataKey*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceArn": trail_arn},
                       "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                      f"arn:aws:cloudtrail:*:{account_id}:trail/*"}}},
        # "If you use an existing S3 bucket with an S3 Bucket Key, kms:Decrypt permission is required to create or
        # update a trail with SSE-KMS encryption enabled" (same page); the bucket uses a Bucket Key.
        {"Sid": "CloudTrailUsesTheBucketKey", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "kms:Decrypt", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}},
        {"Sid": "CloudTrailDescribesTheKey", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "kms:DescribeKey", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}},
        {"Sid": "AccountReadsTheLogs", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": ["kms:Decrypt", "kms:ReEncryptFrom"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": account_id},
                       "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                      f"arn:aws:cloudtrail:*:{account_id}:trail/*"}}},
    )


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


def lambda_trust(account_id: str) -> pulumi.Output[str]:
    """Lambda, for functions of this account only (aws:SourceAccount, as AWS's own samples write the
    execution role's trust)."""
    return _doc({
        "Sid": "LambdaInThisAccountOnly",
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    })


def budget_metric_policy(*, region: str, owner_account_id: str, collaboration_id: pulumi.Input[str],
                         log_group_arn: pulumi.Input[str], namespace: str) -> pulumi.Output[str]:
    """lambdas/budget_metric.py: read the collaboration's budgets, publish its metrics, write its own logs."""
    return _doc(
        {"Sid": "ReadTheCollaborationsBudgets", "Effect": "Allow",
         "Action": "cleanrooms:ListCollaborationPrivacyBudgets",
         "Resource": pulumi.Output.concat(f"arn:aws:cleanrooms:{region}:{owner_account_id}:collaboration/",
                                          collaboration_id)},
        # PutMetricData has no resource-level permissions; the namespace condition bounds it.
        {"Sid": "PublishBudgetMetricsOnly", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
         "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}}},
        {"Sid": "WriteItsOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":log-stream:*")]},
    )


def scheduled_query_policy(*, region: str, account_id: str, membership_id: pulumi.Input[str],
                           template_arn: pulumi.Input[str], log_group_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """lambdas/scheduled_query.py: start one template in this membership, read this membership's queries (to
    start each window once), write its own logs."""
    membership = pulumi.Output.concat(f"arn:aws:cleanrooms:{region}:{account_id}:membership/", membership_id)
    return _doc(
        {"Sid": "StartThisTemplate", "Effect": "Allow", "Action": ["cleanrooms:StartProtectedQuery"],
         "Resource": [membership, template_arn]},
        {"Sid": "ReadThisMembershipsQueries", "Effect": "Allow",
         "Action": ["cleanrooms:ListProtectedQueries", "cleanrooms:GetProtectedQuery"], "Resource": [membership]},
        {"Sid": "WriteItsOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":log-stream:*")]},
    )


def alarm_topic_key_policy(account_id: str) -> pulumi.Output[str]:
    """The alarm topic's key: the account administers it; CloudWatch encrypts alarm notifications with it
    (the key policy the SNS Developer Guide gives for CloudWatch alarms to an encrypted topic)."""
    return _doc(
        {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
    )


def ml_trust(*, region: str, account_id: str, resource: str) -> pulumi.Output[str]:
    """Clean Rooms ML, acting for this account's ``resource`` (training-dataset, configured-audience-model):
    the User Guide's trust (ml-roles, "Create a service role to read training data" and "... to write a
    lookalike segment"), aws:SourceAccount and an aws:SourceArn of this account's resources of that kind
    ("The SourceArn can be limited to a specific training dataset, but only after that dataset is created")."""
    return _doc({
        "Sid": "CleanRoomsMLForThisAccount",
        "Effect": "Allow",
        "Principal": {"Service": "cleanrooms-ml.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEqualsIfExists": {"aws:SourceAccount": [account_id]},
                      "ArnLikeIfExists": {"aws:SourceArn": f"arn:aws:cleanrooms-ml:{region}:{account_id}:{resource}/*"}},
    })


def ml_training_trust(*, region: str, account_id: str) -> pulumi.Output[str]:
    return ml_trust(region=region, account_id=account_id, resource="training-dataset")


def segments_write_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                          kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Clean Rooms ML writes lookalike segments under one prefix (User Guide, ml-roles: s3:PutObject,
    s3:GetBucketLocation, s3:ListBucket on the output location), encrypting with the bucket's key."""
    return _doc(
        _bucket("LocateSegmentsBucket", bucket_arn, account_id),
        _objects("WriteSegments", ["s3:PutObject"], bucket_arn, prefix, account_id),
        _key_via_s3("EncryptSegments", ["kms:GenerateDataKey", "kms:Decrypt"], kms_key_arn, region),
    )


def firehose_trust(*, account_id: str) -> pulumi.Output[str]:
    """Firehose, for this account's delivery streams only (aws:SourceAccount: cross-service confused deputy)."""
    return _doc({"Sid": "FirehoseForThisAccount", "Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"},
                 "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})


def firehose_iceberg_policy(*, account_id: str, region: str, stream_arn: pulumi.Input[str],
                            stream_key_arn: pulumi.Input[str], bucket_arn: pulumi.Input[str], table_prefix: str,
                            error_prefix: str, bucket_key_arn: pulumi.Input[str], database: pulumi.Input[str],
                            table: pulumi.Input[str]) -> pulumi.Output[str]:
    """Firehose reads one Kinesis stream (decrypting through Kinesis) and writes one Iceberg table: the Glue
    table's metadata, the table's files under ``table_prefix`` and failed records under ``error_prefix``
    (the Firehose Developer Guide's role for Apache Iceberg destinations, scoped to these resources)."""
    return _doc(
        {"Sid": "ReadTheStream", "Effect": "Allow",
         "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetShardIterator",
                    "kinesis:GetRecords", "kinesis:ListShards"], "Resource": [stream_arn]},
        {"Sid": "DecryptTheStream", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [stream_key_arn],
         "Condition": {"StringEquals": {"kms:ViaService": f"kinesis.{region}.amazonaws.com"}}},
        {"Sid": "TheIcebergTable", "Effect": "Allow", "Action": ["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"],
         "Resource": [f"arn:aws:glue:{region}:{account_id}:catalog",
                      pulumi.Output.concat(f"arn:aws:glue:{region}:{account_id}:database/", database),
                      pulumi.Output.concat(f"arn:aws:glue:{region}:{account_id}:table/", database, "/", table)]},
        {**_bucket("LocateTheBucket", bucket_arn, account_id),
         "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]},
        _objects("WriteTheTablesFiles", ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                 bucket_arn, table_prefix, account_id),
        _objects("WriteFailedRecords", ["s3:AbortMultipartUpload", "s3:PutObject"], bucket_arn, error_prefix,
                 account_id),
        _key_via_s3("EncryptTheFiles", ["kms:Decrypt", "kms:GenerateDataKey"], bucket_key_arn, region),
    )


def ml_output_trust(*, member_accounts: list[str]) -> pulumi.Output[str]:
    """Clean Rooms ML writes a member's ML output and publishes its metrics and logs "to all members'
    Amazon CloudWatch using IAM role configured in PutMLConfiguration" (botocore cleanroomsml
    MetricDefinition), for jobs that any member may own (a trained model is the trainer's): the
    confused-deputy condition admits the collaboration's member accounts only."""
    return _doc({
        "Sid": "CleanRoomsMLForTheCollaborationsMembers",
        "Effect": "Allow",
        "Principal": {"Service": "cleanrooms-ml.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": sorted(set(member_accounts))}},
    })


def ml_output_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                     kms_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Where Clean Rooms ML puts this member's ML output (model exports, inference output) and the metrics and
    logs it publishes (custom-model-prerequisites): objects under one prefix, the bucket's key through S3,
    metric data (PutMetricData takes no resource), and log groups under the prefix AWS's managed policy for
    Clean Rooms uses (their names are not documented)."""
    return _doc(
        _bucket("LocateMlOutputBucket", bucket_arn, account_id),
        _objects("WriteMlOutput", ["s3:PutObject"], bucket_arn, prefix, account_id),
        _key_via_s3("EncryptMlOutput", ["kms:GenerateDataKey", "kms:Decrypt"], kms_key_arn, region),
        {"Sid": "PublishModelMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        {"Sid": "PublishModelLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [f"arn:aws:logs:{region}:{account_id}:log-group:/aws/cleanrooms*",
                      f"arn:aws:logs:{region}:{account_id}:log-group:/aws/cleanrooms*:log-stream:*"]},
    )


def seed_read_policy(*, account_id: str, region: str, bucket_arn: pulumi.Input[str], prefix: str,
                     kms_key_arn: pulumi.Input[str], membership_id: pulumi.Input[str] | None,
                     collaboration_arn: pulumi.Input[str] | None = None) -> pulumi.Output[str]:
    """Clean Rooms ML reads a seed: the seed files under ``prefix`` (and their key, through S3), or the result of
    a seed template run as a protected query in this member's membership (User Guide, ml-roles, "Create a service
    role to read seed data": both example policies, the query one bound to the membership)."""
    statements = [
        _bucket("ListSeedsBucket", bucket_arn, account_id),
        _objects("ReadSeeds", ["s3:GetObject"], bucket_arn, prefix, account_id),
        _key_via_s3("DecryptSeeds", ["kms:Decrypt", "kms:DescribeKey"], kms_key_arn, region),
    ]
    if membership_id is not None and collaboration_arn is not None:
        statements += protected_query_statements(region=region, account_id=account_id, membership_id=membership_id,
                                                 collaboration_arn=collaboration_arn)
    return _doc(*statements)


def model_pull_policy(repository_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Clean Rooms ML pulls a custom model's images (User Guide, ml-roles, "Create a service role to provide a
    custom ML model": ecr:BatchGetImage, BatchCheckLayerAvailability, GetDownloadUrlForLayer on the repository)."""
    return _doc({"Sid": "PullThisModelsImages", "Effect": "Allow",
                 "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                 "Resource": repository_arn})


def ml_model_key_policy(*, account_id: str, region: str, ecr: bool = True) -> pulumi.Output[str]:
    """A custom model's key: the account administers it; principals of this account use it through Clean Rooms ML
    and (with ``ecr``: the model provider's repository) ECR; the Clean Rooms ML service may create the grants it
    works through (the User Guide's key policy for Clean Rooms ML: grant operations and describe key for the
    service principal). Without ``ecr``: the trainer's key for its ML input channels and trained models."""
    statements = [
        {"Sid": "AccountAdministersTheKey", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        # The User Guide's statement has CreateGrant, Decrypt and GenerateDataKey under one kms:GrantOperations
        # condition, a key only CreateGrant has (the IAM linter says so): two statements here.
        {"Sid": "CleanRoomsMLUsesTheKey", "Effect": "Allow", "Principal": {"Service": "cleanrooms-ml.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        {"Sid": "CleanRoomsMLGrants", "Effect": "Allow", "Principal": {"Service": "cleanrooms-ml.amazonaws.com"},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                       "ForAllValues:StringEquals": {"kms:GrantOperations": [
                           "Decrypt", "Encrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
                           "CreateGrant", "DescribeKey", "RetireGrant", "GenerateDataKey"]}}},
        {"Sid": "CleanRoomsMLDescribesTheKey", "Effect": "Allow", "Principal": {"Service": "cleanrooms-ml.amazonaws.com"},
         "Action": "kms:DescribeKey", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]
    if ecr:
        statements.append(
            {"Sid": "EcrEncryptsTheImages", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
             "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{region}.amazonaws.com",
                                            "kms:CallerAccount": account_id}}})
    return _doc(*statements)


def protected_query_statements(*, region: str, account_id: str, membership_id: pulumi.Input[str],
                               collaboration_arn: pulumi.Input[str]) -> list[dict]:
    """Clean Rooms ML runs a template as a protected query in this member's membership, for a seed or an ML input
    channel (User Guide, ml-roles: StartProtectedQuery, GetSchema, GetCollaborationAnalysisTemplate, and
    Get/UpdateProtectedQuery on the membership). The guide grants the first three on "*"; here on this membership,
    its templates and the collaboration."""
    membership = pulumi.Output.concat(f"arn:aws:cleanrooms:{region}:{account_id}:membership/", membership_id)
    return [
        {"Sid": "RunQueriesInThisMembership", "Effect": "Allow",
         "Action": ["cleanrooms:StartProtectedQuery", "cleanrooms:GetProtectedQuery", "cleanrooms:UpdateProtectedQuery"],
         "Resource": [membership, pulumi.Output.concat(membership, "/analysistemplate/*")]},
        {"Sid": "ReadTemplatesAndSchemas", "Effect": "Allow",
         "Action": ["cleanrooms:GetCollaborationAnalysisTemplate", "cleanrooms:GetSchema"],
         "Resource": [collaboration_arn, f"arn:aws:cleanrooms:{region}:*:membership/*/analysistemplate/*"]},
    ]


def ml_channel_policy(*, region: str, account_id: str, membership_id: pulumi.Input[str],
                      collaboration_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """The role an ML input channel's query runs with ("Create a service role to query a dataset", ml-roles)."""
    return _doc(*protected_query_statements(region=region, account_id=account_id, membership_id=membership_id,
                                            collaboration_arn=collaboration_arn))

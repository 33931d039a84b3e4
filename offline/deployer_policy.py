"""The IAM policies a deployer needs, generated from what each stack declares.

    python -m offline.deployer_policy           # rewrite policy/iam/<stack>-deployer.json and -preview.json
    python -m offline.deployer_policy --check   # exit 1 if the committed files differ from what this generates

Each stack runs through the deploy rounds under the test suite's mocks
(offline.plan.simulate: for the shipped stacks org-a, org-b, org-a, then one more
round of each; every Pulumi.<stack>.yaml present takes part); a
stack with the analyst role runs once more with the QuickSight dashboard
enabled, so its policy also covers the dashboard. Every resource any of those
runs declares is collected, and from it:

``<stack>-deployer.json``
    ``pulumi up`` and ``pulumi destroy`` (and ``pulumi refresh``): for each
    aws-native type the Cloud Control actions (prefix ``cloudformation:``) plus
    the union of the create/read/update/delete/list handler permissions of its
    CloudFormation schema (as bundled with cfn-lint: Cloud Control calls the
    handlers with the caller's credentials, so the caller needs both); for each
    pulumi-aws type the actions in ``CLASSIC`` below (what the Terraform AWS
    provider the type is bridged from calls on create, read, update, delete
    and tagging). Resources are the stack's own wherever the service has
    resource-level permissions: bucket and object ARNs, role ARNs (iam:PassRole
    only on the roles the program creates, to the service that trusts them),
    Glue catalog/database/table ARNs and QuickSight ids in the stack's region
    and account, KMS keys by the tags the providers set on everything
    (components/providers.py default_tags) and aliases by name. Clean Rooms
    actions are ``*`` limited to the stack's region (``aws:RequestedRegion``):
    which Clean Rooms ARNs each action is authorized on, across the partner's
    account, cannot be verified offline.
``<stack>-preview.json``
    ``pulumi preview`` (CI previews each stack with a read-only role):
    sts:GetCallerIdentity, and the read side of each type so that
    ``pulumi preview --refresh`` works; nothing that writes.

A document over IAM's 6,144-character limit for a customer managed policy is
also written split into ``<stack>-<kind>-part<N>.json`` (its statements in
order), each within the limit, to attach side by side.

Which resource types an action is authorized on, and so which of the stack's
ARNs it gets, comes from parliament's copy of the AWS Service Authorization
Reference (an action newer than that copy, only ever from a schema's handlers,
gets the resource type its name suggests); an action that needs a kind of
resource the stack does not declare (a QuickSight template or theme) gets that
kind in the stack's account and region only. The account id and region come from the stack files
(Pulumi.<stack>.yaml), so the committed files are for the shipped placeholder
accounts: regenerate after editing the stack files.

Needs the test suite's dependencies (cfn-lint for the schemas, parliament for
the authorization reference: requirements-dev.txt). Exit status: 0, 1 for
--check when a file differs or is missing, 2 for an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from model.errors import PROJECT, ConfigError
from offline.harness import ROOT, Registered, Run, run_stack, stack_config, stack_ref
from offline.plan import PlanError, Rounds, config_problems, fail, simulate

OUT_DIR = ROOT / "policy" / "iam"
KINDS = ("deployer", "preview")
# A customer managed policy holds at most 6,144 characters, white space not counted
# (IAM User Guide, "IAM and AWS STS quotas").
MANAGED_POLICY_LIMIT = 6144


class DeployerPolicyError(Exception):
    """A problem generating the policies, reported as one line (exit 2)."""


# --------------------------------------------------------------------------
# The pulumi-aws (Terraform-bridged) types: what each needs
#
# pulumi-aws 7.51.1 is bridged from the Terraform AWS provider, so a resource's
# create/read/update/delete are that provider's functions. The actions below are
# the API calls those functions make, from hashicorp/terraform-provider-aws
# internal/service/<service>/<resource>.go (resource<Name>Create/Read/Update/
# Delete and the waiters they call), translated to IAM action names with the
# Service Authorization Reference (the names differ: HeadBucket is s3:ListBucket,
# GetBucketEncryption is s3:GetEncryptionConfiguration, DeletePublicAccessBlock
# is s3:PutBucketPublicAccessBlock, ...). ``refresh`` is what Read calls: it runs
# after every create and update, on `pulumi refresh` and `pulumi preview
# --refresh`, so the preview policy gets it too. ``change`` is create, update,
# delete and tagging. Tags: the providers set default tags (project,
# organization, stack) on everything, and the Terraform provider sends them
# with the create call where the API allows (tag-on-create needs the tagging
# action too: iam:TagRole, kms:TagResource, glue:TagResource).
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Actions one type needs on one kind of resource; ``sid`` names the statement they land in."""

    sid: str
    refresh: tuple[str, ...] = ()
    change: tuple[str, ...] = ()
    on: str = "self"
    """Which ARNs (a key of ``_SELECTORS``)."""
    when: str = ""
    """Which condition (a key of ``_CONDITIONS``); "" for none."""


# s3 bucket.go resourceBucketRead reads every bucket sub-configuration, whether
# the program manages it or not (so that drift shows): HeadBucket, GetBucketPolicy,
# GetBucketAcl, GetBucketCors, GetBucketWebsite, GetBucketVersioning,
# GetBucketAccelerateConfiguration, GetBucketRequestPayment, GetBucketLogging,
# GetBucketLifecycleConfiguration, GetBucketReplication, GetBucketEncryption,
# GetObjectLockConfiguration, the bucket's region (HeadBucket/GetBucketLocation)
# and GetBucketTagging. Missing any one fails the read, hence every refresh.
S3_BUCKET_READ = (
    "s3:ListBucket", "s3:GetBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite",
    "s3:GetBucketVersioning", "s3:GetAccelerateConfiguration", "s3:GetBucketRequestPayment",
    "s3:GetBucketLogging", "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration",
    "s3:GetEncryptionConfiguration", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketLocation",
    "s3:GetBucketTagging",
)
S3_BUCKETS = "S3BucketsOfThisStack"
KMS_KEYS = "KmsKeysOfThisStack"
GLUE = "GlueCatalogOfThisStack"
IAM_ROLES = "IamRolesOfThisStack"
QUICKSIGHT = "QuickSightAssetsOfThisStack"

CLASSIC: dict[str, tuple[Access, ...]] = {
    # s3 bucket.go: CreateBucket, then tags (PutBucketTagging), Read above; Delete is
    # DeleteBucket, and with force_destroy (set once protection is lifted for
    # teardown, components/secure_bucket.py) it first empties the bucket:
    # ListObjectVersions + DeleteObjects of every version.
    "aws:s3/bucket:Bucket": (
        Access(S3_BUCKETS, S3_BUCKET_READ,
               ("s3:CreateBucket", "s3:PutBucketTagging", "s3:DeleteBucket", "s3:ListBucketVersions"), "bucket"),
        Access("S3EmptyBucketsOfThisStackOnDestroy", (), ("s3:DeleteObject", "s3:DeleteObjectVersion"),
               "bucket_objects"),
    ),
    # The bucket_* resources: Put<X> on create/update, Get<X> on read, and Delete<X>,
    # which IAM authorizes as the Put action (DeleteBucketOwnershipControls is
    # s3:PutBucketOwnershipControls, DeletePublicAccessBlock s3:PutBucketPublicAccessBlock,
    # DeleteBucketEncryption s3:PutEncryptionConfiguration); versioning is suspended on delete.
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        Access(S3_BUCKETS, ("s3:GetBucketOwnershipControls",), ("s3:PutBucketOwnershipControls",), "bucket"),
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        Access(S3_BUCKETS, ("s3:GetBucketPublicAccessBlock",), ("s3:PutBucketPublicAccessBlock",), "bucket"),
    ),
    "aws:s3/bucketVersioning:BucketVersioning": (
        Access(S3_BUCKETS, ("s3:GetBucketVersioning",), ("s3:PutBucketVersioning",), "bucket"),
    ),
    # s3 bucket_object_lock_configuration.go: Get/PutObjectLockConfiguration; a bucket created with Object Lock
    # (CreateBucket x-amz-bucket-object-lock-enabled) needs s3:PutBucketObjectLockConfiguration and
    # s3:PutBucketVersioning on it too (S3 User Guide, object-lock-configure), granted on the same bucket here.
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": (
        Access(S3_BUCKETS, ("s3:GetBucketObjectLockConfiguration",),
               ("s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"), "bucket"),
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        Access(S3_BUCKETS, ("s3:GetEncryptionConfiguration",), ("s3:PutEncryptionConfiguration",), "bucket"),
    ),
    "aws:s3/bucketPolicy:BucketPolicy": (
        Access(S3_BUCKETS, ("s3:GetBucketPolicy",), ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy"), "bucket"),
    ),
    # s3 object.go: upload with the s3 transfer manager (PutObject with the tags as
    # x-amz-tagging, which IAM also checks as s3:PutObjectTagging; multipart for
    # large files), read HeadObject (s3:GetObject) + GetObjectTagging, tag updates
    # PutObjectTagging/DeleteObjectTagging; delete on a versioned bucket removes every
    # version (ListObjectVersions, DeleteObject with VersionId). SSE-KMS: S3 asks KMS
    # for a data key with the caller's credentials (kms:GenerateDataKey), and a
    # multipart upload also needs kms:Decrypt.
    "aws:s3/bucketObjectv2:BucketObjectv2": (
        Access("S3ObjectsThisStackUploads", ("s3:GetObject", "s3:GetObjectTagging"),
               ("s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObjectTagging", "s3:DeleteObject",
                "s3:DeleteObjectVersion"), "object"),
        Access(S3_BUCKETS, (), ("s3:ListBucketVersions",), "bucket"),
        Access("KmsEncryptUploadsViaS3", (), ("kms:GenerateDataKey", "kms:Decrypt"), "kms_keys",
               "stack_tags_via_s3"),
    ),
    # kms key.go: CreateKey with the tags (needs kms:TagResource too), then waits on
    # DescribeKey, GetKeyPolicy, GetKeyRotationStatus and ListResourceTags, and
    # EnableKeyRotation; read is those four; update UpdateKeyDescription,
    # PutKeyPolicy, Enable/DisableKeyRotation, Enable/DisableKey, Tag/UntagResource;
    # delete ScheduleKeyDeletion. No key policy is given, so the default one lets IAM
    # policies (this one) manage the key. CreateKey has no resource: conditioned on
    # the tags it must carry; everything after it on keys carrying them.
    "aws:kms/key:Key": (
        Access("KmsCreateKeysTaggedForThisStack", (), ("kms:CreateKey",), "any", "request_tags"),
        Access("KmsTagNewKeysForThisStack", (), ("kms:TagResource",), "kms_keys", "request_tags"),
        Access(KMS_KEYS, ("kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"),
               ("kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:UpdateKeyDescription", "kms:PutKeyPolicy",
                "kms:EnableKey", "kms:DisableKey", "kms:TagResource", "kms:UntagResource",
                "kms:ScheduleKeyDeletion"), "kms_keys", "stack_tags"),
    ),
    # kms alias.go: CreateAlias/UpdateAlias/DeleteAlias, read by ListAliases (no
    # resource-level permissions). KMS authorizes the alias actions on the alias and
    # on the key it points to, both in one statement: the stack's alias names, and
    # keys whose tags, where they have them, are this stack's (aliases have no tags,
    # hence ...IfExists).
    "aws:kms/alias:Alias": (
        Access("KmsAliasesOfThisStack", (), ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"),
               "kms_alias_and_keys", "stack_tags_if_exist"),
        Access("KmsListAliases", ("kms:ListAliases",), (), "any", "region"),
    ),
    # glue catalog_database.go: CreateDatabase (with tags), GetDatabase + GetTags,
    # UpdateDatabase, Tag/UntagResource, DeleteDatabase (Glue also authorizes it on
    # the database's tables and functions, which it deletes with it).
    "aws:glue/catalogDatabase:CatalogDatabase": (
        Access(GLUE, ("glue:GetDatabase", "glue:GetTags"),
               ("glue:CreateDatabase", "glue:UpdateDatabase", "glue:DeleteDatabase", "glue:TagResource",
                "glue:UntagResource"), "glue_database"),
    ),
    # glue catalog_table.go: CreateTable, read GetTable + GetPartitionIndexes,
    # UpdateTable, DeleteTable.
    "aws:glue/catalogTable:CatalogTable": (
        Access(GLUE, ("glue:GetTable", "glue:GetPartitionIndexes"),
               ("glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable"), "glue_table"),
    ),
    # iam role.go: CreateRole with tags (iam:TagRole), read GetRole (tags included)
    # + the inline policies (ListRolePolicies, GetRolePolicy) + ListAttachedRolePolicies;
    # update UpdateAssumeRolePolicy, UpdateRoleDescription, UpdateRole, Tag/UntagRole;
    # delete lists the role's instance profiles (ListInstanceProfilesForRole) first, then DeleteRole.
    "aws:iam/role:Role": (
        Access(IAM_ROLES, ("iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"),
               ("iam:CreateRole", "iam:TagRole", "iam:UntagRole", "iam:UpdateAssumeRolePolicy",
                "iam:UpdateRoleDescription", "iam:UpdateRole", "iam:ListInstanceProfilesForRole", "iam:DeleteRole"),
               "role"),
    ),
    # iam role_policy.go: PutRolePolicy, GetRolePolicy, DeleteRolePolicy (on the role).
    "aws:iam/rolePolicy:RolePolicy": (
        Access(IAM_ROLES, ("iam:GetRolePolicy",), ("iam:PutRolePolicy", "iam:DeleteRolePolicy"), "role"),
    ),
    # quicksight data_source.go: CreateDataSource (no resource-level permissions) with
    # permissions and tags, waits on DescribeDataSource; read DescribeDataSource,
    # DescribeDataSourcePermissions, ListTagsForResource; update UpdateDataSource,
    # UpdateDataSourcePermissions, Tag/UntagResource; DeleteDataSource. Passing the
    # data source's role (iam:PassRole) is in PASSES_ROLE below.
    "aws:quicksight/dataSource:DataSource": (
        Access("QuickSightCreateDataSources", (), ("quicksight:CreateDataSource",), "any", "region"),
        Access(QUICKSIGHT, ("quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions",
                            "quicksight:ListTagsForResource"),
               ("quicksight:UpdateDataSource", "quicksight:UpdateDataSourcePermissions", "quicksight:TagResource",
                "quicksight:UntagResource", "quicksight:DeleteDataSource"), "quicksight_self"),
    ),
    # quicksight data_set.go: CreateDataSet (passing its data source: PassDataSource)
    # with permissions and tags; read DescribeDataSet, DescribeDataSetPermissions,
    # DescribeDataSetRefreshProperties, ListTagsForResource; update UpdateDataSet,
    # UpdateDataSetPermissions, Put/DeleteDataSetRefreshProperties, Tag/UntagResource;
    # DeleteDataSet.
    "aws:quicksight/dataSet:DataSet": (
        Access(QUICKSIGHT, ("quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions",
                            "quicksight:DescribeDataSetRefreshProperties", "quicksight:ListTagsForResource"),
               ("quicksight:CreateDataSet", "quicksight:UpdateDataSet", "quicksight:UpdateDataSetPermissions",
                "quicksight:PutDataSetRefreshProperties", "quicksight:DeleteDataSetRefreshProperties",
                "quicksight:TagResource", "quicksight:UntagResource", "quicksight:DeleteDataSet"),
               "quicksight_self"),
        Access(QUICKSIGHT, (), ("quicksight:CreateDataSet", "quicksight:UpdateDataSet", "quicksight:PassDataSource"),
               "quicksight_refs"),
    ),
    # cloudtrail trail.go: CreateTrail then StartLogging and tags; read GetTrail, GetTrailStatus,
    # GetEventSelectors, GetInsightSelectors, ListTags; update UpdateTrail, PutEventSelectors, Start/StopLogging;
    # DeleteTrail. Every one on this stack's trail ARN (components/audit_trail.py names it).
    "aws:cloudtrail/trail:Trail": (
        Access("CloudTrailTrailOfThisStack",
               ("cloudtrail:GetTrail", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
                "cloudtrail:GetInsightSelectors", "cloudtrail:ListTags"),
               ("cloudtrail:CreateTrail", "cloudtrail:UpdateTrail", "cloudtrail:DeleteTrail",
                "cloudtrail:StartLogging", "cloudtrail:StopLogging", "cloudtrail:PutEventSelectors",
                "cloudtrail:AddTags", "cloudtrail:RemoveTags"), "trail"),
    ),
    # The budget alarm (components/budget_alarm.py). logs log_group.go: CreateLogGroup, PutRetentionPolicy,
    # tags; read DescribeLogGroups (no resource-level permissions) and ListTagsForResource; DeleteLogGroup.
    "aws:cloudwatch/logGroup:LogGroup": (
        Access("LogsFindLogGroupsInThisRegion", ("logs:DescribeLogGroups",), (), "any", "region"),
        Access("LogsLogGroupsOfThisStack", ("logs:ListTagsForResource",),
               ("logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy", "logs:TagResource",
                "logs:UntagResource", "logs:DeleteLogGroup"), "log_group"),
    ),
    # lambda function.go: CreateFunction (passing its role, PASSES_ROLE), waits on GetFunction; read GetFunction,
    # GetFunctionCodeSigningConfig, ListVersionsByFunction, ListTags; update UpdateFunctionCode and
    # UpdateFunctionConfiguration; DeleteFunction. permission.go: AddPermission, GetPolicy, RemovePermission.
    "aws:lambda/function:Function": (
        Access("LambdaFunctionsOfThisStack",
               ("lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:GetFunctionCodeSigningConfig",
                "lambda:ListVersionsByFunction", "lambda:ListTags"),
               ("lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
                "lambda:TagResource", "lambda:UntagResource", "lambda:DeleteFunction"), "lambda_function"),
    ),
    "aws:lambda/permission:Permission": (
        Access("LambdaFunctionsOfThisStack", ("lambda:GetPolicy",), ("lambda:AddPermission", "lambda:RemovePermission"),
               "lambda_function"),
    ),
    # events rule.go: PutRule, DescribeRule, tags (ListTagsForResource, Tag/UntagResource), DeleteRule;
    # target.go: PutTargets, ListTargetsByRule, RemoveTargets, all on the rule.
    "aws:cloudwatch/eventRule:EventRule": (
        Access("EventsRulesOfThisStack", ("events:DescribeRule", "events:ListTagsForResource"),
               ("events:PutRule", "events:TagResource", "events:UntagResource", "events:DeleteRule"), "event_rule"),
    ),
    "aws:cloudwatch/eventTarget:EventTarget": (
        Access("EventsRulesOfThisStack", ("events:ListTargetsByRule",), ("events:PutTargets", "events:RemoveTargets"),
               "event_rule"),
    ),
    # cloudwatch metric_alarm.go: PutMetricAlarm, DescribeAlarms, tags, DeleteAlarms.
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        Access("CloudWatchAlarmsOfThisStack", ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"),
               ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:UntagResource",
                "cloudwatch:DeleteAlarms"), "alarm"),
    ),
    # sns topic.go: CreateTopic (attributes, tags), GetTopicAttributes, SetTopicAttributes, ListTagsForResource,
    # DeleteTopic; topic_subscription.go: Subscribe, GetSubscriptionAttributes, SetSubscriptionAttributes,
    # Unsubscribe.
    "aws:sns/topic:Topic": (
        Access("SnsTopicsOfThisStack", ("sns:GetTopicAttributes", "sns:ListTagsForResource"),
               ("sns:CreateTopic", "sns:SetTopicAttributes", "sns:TagResource", "sns:UntagResource",
                "sns:DeleteTopic"), "topic"),
    ),
    "aws:sns/topicSubscription:TopicSubscription": (
        Access("SnsTopicsOfThisStack", (), ("sns:Subscribe",), "subscribed_topic"),
        # Subscription actions have no resource-level permissions (a subscription ARN is not known before).
        Access("SnsSubscriptionsInThisRegion", ("sns:GetSubscriptionAttributes",),
               ("sns:SetSubscriptionAttributes", "sns:Unsubscribe"), "any", "region"),
    ),
    # ecr repository.go: CreateRepository (tags, scanning, mutability, encryption), read DescribeRepositories and
    # ListTagsForResource, update PutImageTagMutability and PutImageScanningConfiguration, DeleteRepository. With a
    # customer managed key, ECR creates a grant on it with the caller's permissions (kms:CreateGrant,
    # kms:DescribeKey, through ECR only).
    # A streamed table (components/event_stream.py). kinesis stream.go: CreateStream, then
    # DescribeStreamSummary until ACTIVE, tags (AddTagsToStream), StartStreamEncryption, the retention
    # (Increase/DecreaseStreamRetentionPeriod), UpdateStreamMode; read DescribeStreamSummary,
    # ListTagsForStream; DeleteStream. Encrypting it: the key's DescribeKey and GenerateDataKey through Kinesis.
    "aws:kinesis/stream:Stream": (
        Access("KinesisStreamsOfThisStack", ("kinesis:DescribeStreamSummary", "kinesis:DescribeStream",
                                             "kinesis:ListTagsForStream"),
               ("kinesis:CreateStream", "kinesis:AddTagsToStream", "kinesis:RemoveTagsFromStream",
                "kinesis:IncreaseStreamRetentionPeriod", "kinesis:DecreaseStreamRetentionPeriod",
                "kinesis:DeleteStream"), "kinesis_stream"),
        # The authorization reference gives these the stream and the key; UpdateStreamMode "*" only.
        Access("KinesisStreamEncryption", (), ("kinesis:StartStreamEncryption", "kinesis:StopStreamEncryption"),
               "kinesis_stream_and_keys"),
        Access("KinesisStreamModeInThisRegion", (), ("kinesis:UpdateStreamMode",), "any", "region"),
        Access("KmsKeysForKinesis", (), ("kms:DescribeKey", "kms:GenerateDataKey"), "kms_keys", "via_kinesis"),
    ),
    # firehose delivery_stream.go: CreateDeliveryStream (tags with it), DescribeDeliveryStream until ACTIVE,
    # UpdateDestination, Tag/UntagDeliveryStream; read DescribeDeliveryStream, ListTagsForDeliveryStream;
    # DeleteDeliveryStream. It passes its role to Firehose.
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": (
        Access("FirehoseDeliveryStreamsOfThisStack", ("firehose:DescribeDeliveryStream",
                                                      "firehose:ListTagsForDeliveryStream"),
               ("firehose:CreateDeliveryStream", "firehose:UpdateDestination", "firehose:TagDeliveryStream",
                "firehose:UntagDeliveryStream", "firehose:DeleteDeliveryStream"), "firehose_stream"),
    ),
    "aws:ecr/repository:Repository": (
        Access("EcrRepositoriesOfThisStack", ("ecr:DescribeRepositories", "ecr:ListTagsForResource"),
               ("ecr:CreateRepository", "ecr:TagResource", "ecr:UntagResource", "ecr:PutImageTagMutability",
                "ecr:PutImageScanningConfiguration", "ecr:DeleteRepository"), "ecr_repository"),
        Access("KmsKeysForEcr", (), ("kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"), "kms_keys", "via_ecr"),
    ),
    # Federated access (components/federated_access.py), in the Identity Center account: ssoadmin
    # permission_set.go: CreatePermissionSet, DescribePermissionSet, UpdatePermissionSet, tags, then
    # ProvisionPermissionSet (DescribePermissionSetProvisioningStatus); DeletePermissionSet.
    "aws:ssoadmin/permissionSet:PermissionSet": (
        Access("IdentityCenterPermissionSets", ("sso:DescribePermissionSet", "sso:ListTagsForResource"),
               ("sso:CreatePermissionSet", "sso:UpdatePermissionSet", "sso:DeletePermissionSet", "sso:TagResource",
                "sso:UntagResource", "sso:ProvisionPermissionSet", "sso:DescribePermissionSetProvisioningStatus"),
               "sso_permission_sets"),
    ),
    # permission_set_inline_policy.go: Put/Get/DeleteInlinePolicy, then provisioning to the assigned accounts.
    "aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy": (
        Access("IdentityCenterPermissionSets", ("sso:GetInlinePolicyForPermissionSet",),
               ("sso:PutInlinePolicyToPermissionSet", "sso:DeleteInlinePolicyFromPermissionSet",
                "sso:ProvisionPermissionSet", "sso:DescribePermissionSetProvisioningStatus",
                "sso:ListAccountsForProvisionedPermissionSet"), "sso_permission_sets"),
    ),
    # account_assignment.go: CreateAccountAssignment (DescribeAccountAssignmentCreationStatus), read
    # ListAccountAssignments, DeleteAccountAssignment (DescribeAccountAssignmentDeletionStatus).
    "aws:ssoadmin/accountAssignment:AccountAssignment": (
        Access("IdentityCenterAssignments", ("sso:ListAccountAssignments",),
               ("sso:CreateAccountAssignment", "sso:DescribeAccountAssignmentCreationStatus",
                "sso:DeleteAccountAssignment", "sso:DescribeAccountAssignmentDeletionStatus"), "sso_assignment"),
    ),
    # instance_access_control_attributes.go: Create/Describe/Update/DeleteInstanceAccessControlAttributeConfiguration.
    "aws:ssoadmin/instanceAccessControlAttributes:InstanceAccessControlAttributes": (
        Access("IdentityCenterAttributes", ("sso:DescribeInstanceAccessControlAttributeConfiguration",),
               ("sso:CreateInstanceAccessControlAttributeConfiguration",
                "sso:UpdateInstanceAccessControlAttributeConfiguration",
                "sso:DeleteInstanceAccessControlAttributeConfiguration"), "sso_instance"),
    ),
    # quicksight refresh_schedule.go: Create/Describe/Update/DeleteRefreshSchedule
    # (components/dashboard.py declares one when refresh_time_of_day is set).
    "aws:quicksight/refreshSchedule:RefreshSchedule": (
        Access(QUICKSIGHT, ("quicksight:DescribeRefreshSchedule",),
               ("quicksight:CreateRefreshSchedule", "quicksight:UpdateRefreshSchedule",
                "quicksight:DeleteRefreshSchedule"), "refresh_schedule"),
    ),
}

# Types that make no AWS call: the IAM propagation wait (pulumiverse-time runs a timer).
NO_AWS_CALLS = frozenset({"time:index/sleep:Sleep"})

# This project's Pulumi dynamic resources, which call AWS through boto3 with the deployer's credentials (each
# first checks the account with sts:GetCallerIdentity, granted to every stack with providers), told apart by
# their inputs.
DYNAMIC = "pulumi-python:dynamic:Resource"
DYNAMIC_ACCESS: dict[str, tuple[Access, ...]] = {
    # components/log_retention.py: DescribeLogGroups under /aws/cleanrooms, PutRetentionPolicy on each.
    "log_retention": (
        # DescribeLogGroups has no resource-level permissions ("*" in the authorization reference).
        Access("LogsFindLogGroupsInThisRegion", ("logs:DescribeLogGroups",), (), "any", "region"),
        Access("LogsCleanRoomsLogGroupsRetention", (), ("logs:PutRetentionPolicy",), "cleanrooms_log_groups"),
    ),
    # components/lookalike.py: the audience model, its configuration (passing the segments role to Clean
    # Rooms ML) and its association in the membership (Clean Rooms managing the model's resource policy).
    "audience_model": (
        Access("CleanRoomsMlLookalikeModels", ("cleanrooms-ml:GetAudienceModel",),
               ("cleanrooms-ml:CreateAudienceModel", "cleanrooms-ml:DeleteAudienceModel", "cleanrooms-ml:TagResource"),
               "ml_lookalike"),
    ),
    "configured_audience_model": (
        Access("CleanRoomsMlLookalikeModels", ("cleanrooms-ml:GetAudienceModel",
                                               "cleanrooms-ml:GetConfiguredAudienceModel"),
               ("cleanrooms-ml:CreateConfiguredAudienceModel", "cleanrooms-ml:UpdateConfiguredAudienceModel",
                "cleanrooms-ml:DeleteConfiguredAudienceModel", "cleanrooms-ml:TagResource"), "ml_lookalike"),
    ),
    "audience_model_association": (
        Access("CleanRoomsInThisRegion", ("cleanrooms:GetConfiguredAudienceModelAssociation",),
               ("cleanrooms:CreateConfiguredAudienceModelAssociation",
                "cleanrooms:DeleteConfiguredAudienceModelAssociation"), "any", "region"),
        Access("CleanRoomsMlLookalikeModels", ("cleanrooms-ml:GetConfiguredAudienceModelPolicy",),
               ("cleanrooms-ml:PutConfiguredAudienceModelPolicy",), "ml_lookalike"),
    ),
    # components/ml_configuration_api.py: a membership's ML configuration, put in place and deleted (the
    # authorization reference lists no resource type for either: "*", in this region).
    "ml_configuration": (
        Access("CleanRoomsMlConfigurationInThisRegion", (),
               ("cleanrooms-ml:PutMLConfiguration", "cleanrooms-ml:DeleteMLConfiguration"), "any", "region"),
    ),
    # components/member_change.py: create, poll, commit or cancel a change request adding a member.
    "member_change": (
        Access("CleanRoomsInThisRegion", ("cleanrooms:GetCollaborationChangeRequest",),
               ("cleanrooms:CreateCollaborationChangeRequest", "cleanrooms:UpdateCollaborationChangeRequest"),
               "any", "region"),
    ),
}


def _dynamic_kind(resource: Registered) -> str:
    keys = set(resource.inputs)
    if {"days", "wait_seconds"} <= keys:
        return "log_retention"
    if {"collaboration_id", "abilities"} <= keys:
        return "member_change"
    if resource.inputs.get("api") == "PutMLConfiguration":
        return "ml_configuration"
    # (An input that is an unknown output under the mocks is absent: classify by the ones known at preview.)
    if "output_uri" in keys:
        return "configured_audience_model"
    if {"training_dataset_arn", "name"} <= keys:
        return "audience_model"
    if {"membership_id", "name", "description"} <= keys and "days" not in keys:
        return "audience_model_association"
    raise DeployerPolicyError(f"dynamic resource {resource.name}: no permissions known for it; add it to "
                              "DYNAMIC_ACCESS in offline/deployer_policy.py")

# pulumi-aws types that hand a role to a service: the service whose trust the role must carry.
PASSES_ROLE = {"aws:quicksight/dataSource:DataSource": "quicksight.amazonaws.com",
               "aws:lambda/function:Function": "lambda.amazonaws.com",
               "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": "firehose.amazonaws.com"}

# aws-native types: the service principal their handlers pass roles to (iam:PassRole).
NATIVE_PASS_TO = {"cleanrooms": "cleanrooms.amazonaws.com", "quicksight": "quicksight.amazonaws.com",
                  "cleanroomsml": "cleanrooms-ml.amazonaws.com"}

# Every aws and aws-native provider checks its credentials (and learns the account
# for allowed_account_ids) with sts:GetCallerIdentity when it is configured.
PROVIDER_ACCESS = Access("ProvidersCheckCredentials", ("sts:GetCallerIdentity",), (), "any")

# aws-native creates, reads, updates and deletes through AWS Cloud Control; its
# actions have the cloudformation: prefix and no resource-level permissions.
# Read is GetResource; create/update/delete return a request token polled with
# GetResourceRequestStatus; ListResources pairs with the schemas' list handlers.
CLOUD_CONTROL_ACCESS = Access(
    "CloudControlInThisRegion", ("cloudformation:GetResource",),
    ("cloudformation:CreateResource", "cloudformation:UpdateResource", "cloudformation:DeleteResource",
     "cloudformation:GetResourceRequestStatus", "cloudformation:ListResources"), "any", "region")

# Services whose actions are granted on "*" in the stack's region (see module docstring).
REGION_ONLY = {"cleanrooms": "CleanRoomsInThisRegion"}
# Statements the generator deliberately grants on "*" although their actions have
# resource-level permissions (parliament reports RESOURCE_STAR for them): the test
# accepts that finding for these Sids only, each limited by aws:RequestedRegion.
STAR_BY_DESIGN = frozenset(REGION_ONLY.values())

# How a service's name reads in a Sid; services without a region in their ARNs
# (no aws:RequestedRegion condition on their "*" statements).
SERVICE_TITLES = {"cleanrooms": "CleanRooms", "cleanrooms-ml": "CleanRoomsMl", "quicksight": "QuickSight", "ecr": "Ecr",
                  "logs": "Logs", "sns": "Sns",
                  "cloudwatch": "CloudWatch", "events": "Events", "lambda": "Lambda", "cloudtrail": "CloudTrail",
                  "glue": "Glue", "athena": "Athena", "iam": "Iam", "s3": "S3", "kms": "Kms"}
GLOBAL_SERVICES = frozenset({"iam", "sts", "s3"})


# --------------------------------------------------------------------------
# What the stack declares


@dataclass
class Stack:
    """One stack's declared resources and the facts the policies are scoped with."""

    name: str
    account: str
    region: str
    resources: list[Registered]
    tags: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # mock role id (name) -> role ARN (pattern)
    trusted_by: dict[str, list[str]] = field(default_factory=dict)  # service principal -> role ARNs
    provider_regions: dict[str, str] = field(default_factory=dict)  # aws provider URN -> its region
    provider_accounts: dict[str, str] = field(default_factory=dict)  # aws provider URN -> its one allowed account
    home_account: str = ""
    """The stack's own account, also in a view of another account (the Identity Center assignments' target)."""

    def arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{rest}"

    def at(self, resource: Registered) -> "Stack":
        """This stack as seen by one resource: in its provider's region (a producer's dataRegion)."""
        region = self.provider_regions.get(resource.provider.rsplit("::", 1)[0], self.region)
        return self if region == self.region else replace(self, region=region)


def stack_runs(rounds: Rounds | None = None, stacks_dir: Path = ROOT) -> dict[str, list[Run]]:
    """Every run of each stack: its deploy rounds, plus a run with the dashboard where it can have one.

    ``rounds`` are offline.plan.simulate()'s (the tests pass the session's bootstrap).
    """
    rounds = simulate(root=stacks_dir) if rounds is None else rounds
    runs: dict[str, list[Run]] = {stack: [] for stack in rounds.stacks}
    latest: dict[str, Run] = {}
    for number, stack in rounds.all:
        runs[stack].append(rounds.runs[number])
        latest[stack] = rounds.runs[number]
    for stack in rounds.stacks:
        overrides = dashboard_overrides(stack, stacks_dir)
        if overrides:
            peers = {stack_ref(other): run.outputs for other, run in latest.items() if other != stack}
            try:
                runs[stack].append(run_stack(stack, peer_outputs=peers, overrides=overrides, root=stacks_dir))
            except ConfigError as exc:
                raise DeployerPolicyError(f"{stack} with the QuickSight dashboard enabled: "
                                          + config_problems(exc)) from None
    return runs


def dashboard_overrides(stack: str, stacks_dir: Path = ROOT) -> dict[str, Any] | None:
    """Config that enables the dashboard on an analyst stack that has it off; None otherwise."""
    config = stack_config(stack, root=stacks_dir)
    roles = config.get(f"{PROJECT}:roles") or []
    quicksight = dict(config.get(f"{PROJECT}:quicksight") or {})
    if "analyst" not in roles or quicksight.get("enabled"):
        return None
    account, region = _account_region(stack, config)
    owners = quicksight.get("owners") or [f"arn:aws:quicksight:{region}:{account}:user/default/admin"]
    return {"quicksight": dict(quicksight, enabled=True, owners=owners)}


def _account_region(stack: str, config: Mapping[str, Any]) -> tuple[str, str]:
    account = str(config.get(f"{PROJECT}:accountId") or "")
    if not re.fullmatch(r"\d{12}", account):
        raise DeployerPolicyError(f"Pulumi.{stack}.yaml: accountId {account!r} is not a 12-digit account id")
    return account, str(config.get(f"{PROJECT}:region") or "us-east-1")


def collect(stack: str, runs: Iterable[Run], stacks_dir: Path = ROOT) -> Stack:
    """The stack's resources over all its runs (a URN declared twice: its latest inputs)."""
    account, region = _account_region(stack, stack_config(stack, root=stacks_dir))
    by_urn: dict[str, Registered] = {}
    for run in runs:
        for resource in run.resources:
            by_urn[resource.urn] = resource
    resources = sorted(by_urn.values(), key=lambda r: r.urn)
    found = Stack(stack, account, region, resources, home_account=account)
    tag_sets = [_json(r.inputs.get("defaultTags")).get("tags") or {}
                for r in resources if r.typ == "pulumi:providers:aws"]
    if tag_sets:
        found.tags = {k: v for k, v in tag_sets[0].items() if all(t.get(k) == v for t in tag_sets)}
    for resource in resources:
        if resource.typ == "pulumi:providers:aws" and resource.inputs.get("region"):
            found.provider_regions[resource.urn] = str(resource.inputs["region"])
            accounts = _json_list(resource.inputs.get("allowedAccountIds"))
            if len(accounts) == 1:
                found.provider_accounts[resource.urn] = str(accounts[0])
        if resource.typ == "aws:iam/role:Role":
            arn = _role_arn(resource, account)
            found.roles[str(resource.inputs.get("name") or resource.name)] = arn
            for service in _trusted_services(resource.inputs.get("assumeRolePolicy")):
                found.trusted_by.setdefault(service, []).append(arn)
    return found


def _sso_permission_sets(resource: Registered) -> list[str]:
    """The Identity Center instance and its permission sets (arn:aws:sso:::permissionSet/<instance id>/*)."""
    instance = str(resource.inputs.get("instanceArn") or "")
    return [instance, f"arn:aws:sso:::permissionSet/{instance.rsplit('/', 1)[-1]}/*"] if instance else ["*"]


def _json_list(value: Any) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _account_of(resource: Registered, stack: "Stack") -> str:
    return stack.provider_accounts.get(resource.provider.rsplit("::", 1)[0], stack.account)


def _role_arn(role: Registered, account: str) -> str:
    path = role.inputs.get("path") or "/"
    if role.inputs.get("name"):
        name = role.inputs["name"]
    elif role.inputs.get("namePrefix"):
        name = role.inputs["namePrefix"] + "*"
    else:
        name = f"{role.name}-*"  # Pulumi's auto-name: <resource name>-<7 random characters>
    return f"arn:aws:iam::{account}:role{path}{name}"


def _trusted_services(document: Any) -> list[str]:
    services: list[str] = []
    for statement in _as_list(_json(document).get("Statement")):
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            principal = statement.get("Principal")
            if isinstance(principal, dict):
                services += [s for s in _as_list(principal.get("Service")) if isinstance(s, str)]
    return sorted(set(services))


def _json(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------
# Resources and conditions


def _bucket_arn(resource: Registered) -> str:
    bucket = resource.inputs.get("bucket")
    if not bucket:
        # An auto-named bucket (no bucket input): <resource name>-<random>.
        return f"arn:aws:s3:::{resource.name}-*"
    return f"arn:aws:s3:::{bucket}"


def _glue_database(stack: Stack, database: str) -> list[str]:
    return [stack.arn("glue", "catalog"), stack.arn("glue", f"database/{database}")]


def _select_glue_database(resource: Registered, stack: Stack) -> list[str]:
    name = resource.inputs.get("name") or resource.name
    return _glue_database(stack, name) + [stack.arn("glue", f"table/{name}/*"),
                                          stack.arn("glue", f"userDefinedFunction/{name}/*")]


def _select_glue_table(resource: Registered, stack: Stack) -> list[str]:
    database = resource.inputs.get("databaseName") or "*"
    name = resource.inputs.get("name") or resource.name
    return _glue_database(stack, database) + [stack.arn("glue", f"table/{database}/{name}")]


def _select_role(resource: Registered, stack: Stack) -> list[str]:
    if resource.typ == "aws:iam/role:Role":
        return [_role_arn(resource, stack.account)]
    role = str(resource.inputs.get("role") or "")
    return [stack.roles.get(role) or f"arn:aws:iam::{stack.account}:role/{role or '*'}"]


def _quicksight_self(resource: Registered, stack: Stack) -> list[str]:
    for kind, key in (("datasource", "dataSourceId"), ("dataset", "dataSetId"), ("dashboard", "dashboardId")):
        if resource.inputs.get(key) and kind in resource.typ.lower():
            return [stack.arn("quicksight", f"{kind}/{resource.inputs[key]}")]
    return []


def _referenced(resource: Registered, service: str, kinds: tuple[str, ...]) -> list[str]:
    """ARNs of ``service`` resources of these kinds that the inputs name (a data set's data source)."""
    prefix = f"arn:aws:{service}:"
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith(prefix):
            if value.split(":", 5)[-1].split("/", 1)[0] in kinds:
                found.add(value)

    walk(resource.inputs)
    return sorted(found)


def _object_key_pattern(key: str | None) -> str:
    """An object's key; a content-addressed one (a PySpark artifact under its SHA-256)
    up to the hash, so a changed script needs no new deployer policy."""
    if not key:
        return "*"
    parts = key.split("/")
    for i, part in enumerate(parts):
        if re.fullmatch(r"[0-9a-f]{64}", part):
            return "/".join(parts[:i] + ["*"])
    return key


_SELECTORS = {
    "any": lambda r, s: ["*"],
    "bucket": lambda r, s: [_bucket_arn(r)],
    "bucket_objects": lambda r, s: [_bucket_arn(r) + "/*"],
    "object": lambda r, s: [f"{_bucket_arn(r)}/{_object_key_pattern(r.inputs.get('key'))}"],
    "kms_keys": lambda r, s: [s.arn("kms", "key/*")],
    "trail": lambda r, s: [s.arn("cloudtrail", f"trail/{r.inputs.get('name') or '*'}")],
    "ecr_repository": lambda r, s: [s.arn("ecr", f"repository/{r.inputs.get('name') or '*'}")],
    "kinesis_stream": lambda r, s: [s.arn("kinesis", f"stream/{r.inputs.get('name') or '*'}")],
    "kinesis_stream_and_keys": lambda r, s: [s.arn("kinesis", f"stream/{r.inputs.get('name') or '*'}"),
                                             s.arn("kms", "key/*")],
    "firehose_stream": lambda r, s: [s.arn("firehose", f"deliverystream/{r.inputs.get('name') or '*'}")],
    # An Iceberg table's first metadata file, which Glue writes under the table's location with the caller's
    # credentials (CreateTable with OpenTableFormatInput).
    "table_location": lambda r, s: [_s3_location_arn(r.input("storageDescriptor.location"))],
    "sso_instance": lambda r, s: [r.inputs.get("instanceArn") or "*"],
    "ml_lookalike": lambda r, s: [s.arn("cleanrooms-ml", f"{kind}/*") for kind in (
        "training-dataset", "audience-model", "configured-audience-model")],
    # Provisioning a permission set acts on the accounts it is assigned on: this stack's.
    "sso_permission_sets": lambda r, s: [*_sso_permission_sets(r), f"arn:aws:sso:::account/{s.home_account}"],
    "sso_assignment": lambda r, s: [*_sso_permission_sets(r), f"arn:aws:sso:::account/{r.inputs.get('targetId')}"],
    "log_group": lambda r, s: [s.arn("logs", f"log-group:{r.inputs.get('name') or '*'}"),
                               s.arn("logs", f"log-group:{r.inputs.get('name') or '*'}:*")],
    "lambda_function": lambda r, s: [s.arn("lambda", f"function:{r.inputs.get('name') or r.inputs.get('function') or '*'}")],
    "event_rule": lambda r, s: [s.arn("events", f"rule/{r.inputs.get('name') or r.inputs.get('rule') or '*'}")],
    "alarm": lambda r, s: [s.arn("cloudwatch", f"alarm:{r.inputs.get('name') or '*'}")],
    "topic": lambda r, s: [s.arn("sns", r.inputs.get("name") or "*")],
    "subscribed_topic": lambda r, s: [r.inputs.get("topic") or s.arn("sns", "*")],
    "cleanrooms_log_groups": lambda r, s: [s.arn("logs", "log-group:/aws/cleanrooms*")],
    "kms_alias_and_keys": lambda r, s: [s.arn("kms", r.inputs["name"]) if r.inputs.get("name")
                                        else s.arn("kms", f"{r.inputs.get('namePrefix') or 'alias/'}*"),
                                        s.arn("kms", "key/*")],
    "glue_database": _select_glue_database,
    "glue_table": _select_glue_table,
    "role": _select_role,
    "quicksight_self": _quicksight_self,
    "quicksight_refs": lambda r, s: _referenced(r, "quicksight", ("datasource", "dataset")),
    "refresh_schedule": lambda r, s: [s.arn("quicksight", f"dataset/{r.inputs.get('dataSetId') or '*'}"
                                                          f"/refresh-schedule/{r.inputs.get('scheduleId') or '*'}")],
}


def _s3_location_arn(location) -> str:
    """s3://bucket/prefix/ -> arn:aws:s3:::bucket/prefix/*; the stack's buckets when unknown at preview."""
    if isinstance(location, str) and location.startswith("s3://"):
        return "arn:aws:s3:::" + location[len("s3://"):].rstrip("/") + "/*"
    return "arn:aws:s3:::*"


ICEBERG_TABLE = (
    Access("GlueWritesIcebergMetadata", (), ("s3:GetObject", "s3:PutObject"), "table_location"),
    Access("KmsEncryptUploadsViaS3", (), ("kms:GenerateDataKey", "kms:Decrypt"), "kms_keys", "stack_tags_via_s3"),
)


def _conditions(name: str, stack: Stack) -> dict | None:
    region = {"aws:RequestedRegion": stack.region}
    resource_tags = {f"aws:ResourceTag/{k}": v for k, v in sorted(stack.tags.items())}
    request_tags = {f"aws:RequestTag/{k}": v for k, v in sorted(stack.tags.items())}
    table: dict[str, dict | None] = {
        "": None,
        "region": {"StringEquals": region},
        "stack_tags": {"StringEquals": resource_tags} if resource_tags else None,
        "stack_tags_if_exist": {"StringEqualsIfExists": resource_tags} if resource_tags else None,
        "request_tags": {"StringEquals": dict(request_tags, **region)},
        "stack_tags_via_s3": {"StringEquals": dict(resource_tags,
                                                   **{"kms:ViaService": f"s3.{stack.region}.amazonaws.com"})},
        "via_ecr": {"StringEquals": {"kms:ViaService": f"ecr.{stack.region}.amazonaws.com"}},
        "via_kinesis": {"StringEquals": {"kms:ViaService": f"kinesis.{stack.region}.amazonaws.com"}},
    }
    if name not in table:
        raise DeployerPolicyError(f"offline/deployer_policy.py: unknown condition {name!r}")
    return table[name]


# --------------------------------------------------------------------------
# The Service Authorization Reference (parliament) and the schemas (cfn-lint)


def privilege(action: str) -> dict | None:
    """parliament's entry for an action (resource types, access level), None when it does not know it."""
    try:
        from parliament.statement import get_privilege_info
    except ImportError:
        raise DeployerPolicyError("parliament is not installed: venv/bin/pip install -r requirements-dev.txt") from None
    service, name = action.split(":", 1)
    try:
        return get_privilege_info(service, name)
    except Exception:  # parliament's UnknownActionException / UnknownPrefixException
        return None


def _resource_types(action: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]] | None:
    """(required, optional) resource types of an action as (type, ARN format); None if unknown."""
    from parliament.statement import get_arn_format

    info = privilege(action)
    if info is None:
        return None
    required, optional = [], []
    for entry in info["resource_types"]:
        kind = entry["resource_type"]
        if not kind:
            continue
        fmt = get_arn_format(kind, info["service_resources"])
        (required if kind.endswith("*") else optional).append((kind.rstrip("*"), fmt))
    return required, optional


def _arn_template(action: str, kind: str) -> str | None:
    """The raw ARN format (with ${...} variables) of a resource type of the action's service."""
    info = privilege(action)
    for entry in (info or {}).get("service_resources", []):
        if entry["resource"] == kind:
            return entry["arn"]
    return None


def _matches(kind: str, fmt: str, arn: str) -> bool:
    import parliament

    if arn == "*":
        return False
    try:
        return parliament.is_arn_strictly_valid(kind, fmt, arn)
    except Exception:
        return False


def _fill(template: str, stack: Stack) -> str:
    """An ARN format with the stack's partition, region and account, any id."""
    filled = template.replace("${Partition}", "aws").replace("${Region}", stack.region)
    filled = filled.replace("${Account}", stack.account)
    return re.sub(r"\$\{[^}]*\}", "*", filled)


_SCHEMA_DIR: Path | None = None


def _schema_dir() -> Path:
    global _SCHEMA_DIR
    if _SCHEMA_DIR is None:
        # Located, not imported: only its data files are read (importing cfn-lint takes half a second).
        spec = importlib.util.find_spec("cfnlint")
        if spec is None or not spec.submodule_search_locations:
            raise DeployerPolicyError("cfn-lint is not installed: venv/bin/pip install -r requirements-dev.txt")
        _SCHEMA_DIR = Path(list(spec.submodule_search_locations)[0]) / "data" / "schemas"
    return _SCHEMA_DIR


_HANDLERS: dict[str, dict[str, tuple[str, ...]]] = {}


def handler_permissions(type_token: str) -> dict[str, tuple[str, ...]]:
    """'aws-native:cleanrooms:Membership' -> {'create': (...), 'read': ..., ...} from its CloudFormation schema."""
    if type_token not in _HANDLERS:
        _, module, name = type_token.split(":")
        providers = json.loads((_schema_dir() / "providers" / "us-east-1.json").read_text(encoding="utf-8"))
        index = {k.lower(): v for k, v in providers.items()}
        file_id = index.get(f"aws::{module}::{name}".lower())
        if file_id is None:
            raise DeployerPolicyError(f"{type_token}: no CloudFormation schema AWS::{module}::{name} in cfn-lint's "
                                      "bundled schemas")
        schema = json.loads((_schema_dir() / "resources" / f"{file_id}.json").read_text(encoding="utf-8"))
        handlers = schema.get("handlers") or {}
        _HANDLERS[type_token] = {h: tuple(sorted(set((handlers.get(h) or {}).get("permissions") or ())))
                                 for h in ("create", "read", "update", "delete", "list")}
    return _HANDLERS[type_token]


# --------------------------------------------------------------------------
# Building the documents


@dataclass
class _Statement:
    sid: str
    condition: dict | None
    actions: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)


class _Builder:
    def __init__(self, stack: Stack, phase: str):
        self.stack = stack
        self.phase = phase  # "deployer" (everything) or "preview" (refresh only)
        self.statements: dict[str, _Statement] = {}

    def grant(self, sid: str, actions: Iterable[str], resources: Iterable[str], condition: dict | None) -> None:
        actions, resources = set(actions), set(resources)
        if not actions or not resources:
            return
        statement = self.statements.setdefault(sid, _Statement(sid, condition))
        if statement.condition != condition:
            raise DeployerPolicyError(f"offline/deployer_policy.py: statement {sid} is given two different "
                                      f"conditions ({statement.condition} and {condition})")
        statement.actions |= actions
        statement.resources |= resources

    def access(self, access: Access, resource: Registered | None) -> None:
        actions = access.refresh + (access.change if self.phase == "deployer" else ())
        if not actions:
            return
        if access.on not in _SELECTORS:
            raise DeployerPolicyError(f"offline/deployer_policy.py: unknown resource selector {access.on!r}")
        # A resource in another region (a producer's dataRegion) gets its own statements, scoped to it.
        view = self.stack.at(resource) if resource is not None else self.stack
        sid = access.sid if view.region == self.stack.region else \
            access.sid + "In" + "".join(part.title() for part in view.region.split("-"))
        resources = _SELECTORS[access.on](resource, view) if resource is not None else ["*"]
        self.grant(sid, actions, resources, _conditions(access.when, view))

    def pass_role(self, service: str) -> None:
        roles = self.stack.trusted_by.get(service)
        if not roles or self.phase != "deployer":
            return
        title = SERVICE_TITLES.get(service.split(".")[0], service.split(".")[0].title())
        self.grant(f"PassRolesTo{title}", ["iam:PassRole"], roles,
                   {"StringEquals": {"iam:PassedToService": service}})

    def native(self, resource: Registered) -> None:
        _, module, name = resource.typ.split(":")
        handlers = handler_permissions(resource.typ)
        actions = set(handlers["read"])
        if self.phase == "deployer":
            for handler in ("create", "update", "delete", "list"):
                actions |= set(handlers[handler])
        own = _native_scope(resource, self.stack)
        for action in sorted(actions):
            service = action.split(":", 1)[0]
            if action == "iam:PassRole":
                self.pass_role(NATIVE_PASS_TO.get(module, f"{module}.amazonaws.com"))
                continue
            if service in REGION_ONLY:
                self.grant(REGION_ONLY[service], [action], ["*"], _conditions("region", self.stack))
                continue
            resources = self._resources_for(action, own)
            title = SERVICE_TITLES.get(service, service.title())
            if resources == ["*"]:
                condition = None if service in GLOBAL_SERVICES else _conditions("region", self.stack)
                self.grant(f"{name}Handlers{title}AnyResource", [action], resources, condition)
            else:
                self.grant(f"{name}Handlers{title}", [action], resources, None)

    def _resources_for(self, action: str, own: list[str]) -> list[str]:
        """The stack's ARNs an action is authorized on, by the resource types the reference lists for it."""
        types = _resource_types(action)
        if types is None:
            # Newer than parliament's copy of the reference: guess the resource type from
            # the action's name (quicksight:PassTopic -> topic) within the stack's account.
            service, name = action.split(":", 1)
            noun = re.sub(r"^(Pass|Get|Describe|List|Create|Update|Delete|BatchGet)", "", name).lower()
            template = _known_template(service, noun)
            return [_fill(template, self.stack)] if template else ["*"]
        required, optional = types
        if not required:
            matched = [arn for arn in own for kind, fmt in optional if _matches(kind, fmt, arn)]
            return sorted(set(matched)) or ["*"]
        resources: set[str] = set()
        for kind, fmt in required:
            matched = {arn for arn in own if _matches(kind, fmt, arn)}
            if not matched:
                template = _arn_template(action, kind)
                matched = {_fill(template, self.stack)} if template else {"*"}
            resources |= matched
        return sorted(resources)

    def document(self) -> dict:
        statements = []
        for sid in sorted(self.statements):
            statement = self.statements[sid]
            entry: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(statement.actions),
                                     "Resource": _minimal(statement.resources)}
            if statement.condition:
                entry["Condition"] = {op: dict(sorted(keys.items()))
                                      for op, keys in sorted(statement.condition.items())}
            statements.append(entry)
        return {"Version": "2012-10-17", "Statement": statements}


def _known_template(service: str, kind: str) -> str | None:
    from parliament import iam_definition

    for entry in iam_definition:
        if entry["prefix"] == service:
            for resource in entry["resources"]:
                if resource["resource"].lower() == kind:
                    return resource["arn"]
    return None


def _native_scope(resource: Registered, stack: Stack) -> list[str]:
    """The ARNs an aws-native resource's handlers act on, besides Clean Rooms ones (granted by region).

    - Membership: query logs go to CloudWatch Logs log groups Clean Rooms creates under
      /aws/cleanrooms (AWSCleanRoomsFullAccess scopes logs:CreateLogGroup to
      log-group:/aws/cleanrooms* the same way).
    - ConfiguredTable: the Glue table it references, and that catalog as Athena names
      it, AwsDataCatalog (athena:GetTableMetadata).
    - QuickSight: the resource's own id and the data sets it names.
    """
    arns: list[str] = []
    if resource.typ == "aws-native:cleanrooms:Membership":
        arns.append(stack.arn("logs", "log-group:/aws/cleanrooms*"))
    if resource.typ == "aws-native:cleanrooms:ConfiguredTable":
        glue = (resource.inputs.get("tableReference") or {}).get("glue") or {}
        database, table = glue.get("databaseName") or "*", glue.get("tableName") or "*"
        # A table in another region (GlueTableReference region, config dataRegion) is read there; which
        # region the handler asks Athena in is not documented, so the catalog is granted in both.
        where = replace(stack, region=glue["region"]) if glue.get("region") else stack
        arns += _glue_database(where, database) + [where.arn("glue", f"table/{database}/{table}"),
                                                   where.arn("athena", "datacatalog/AwsDataCatalog"),
                                                   stack.arn("athena", "datacatalog/AwsDataCatalog")]
    if resource.typ.startswith("aws-native:quicksight:"):
        arns += _quicksight_self(resource, stack) + _referenced(resource, "quicksight", ("dataset", "datasource"))
    return arns


def _minimal(resources: set[str]) -> list[str]:
    """Sorted, "*" alone if present, without ARNs another (wildcard) ARN of the list already covers."""
    if "*" in resources:
        return ["*"]
    wildcards = [r for r in resources if "*" in r]
    return sorted(r for r in resources
                  if not any(w != r and fnmatch.fnmatchcase(r, w) for w in wildcards))


def build(stack: Stack) -> dict[str, dict]:
    """{"deployer": document, "preview": document} for one stack."""
    calls = [r for r in stack.resources if r.custom and not r.typ.startswith("pulumi:") and r.typ not in NO_AWS_CALLS]
    unknown = sorted({r.typ for r in calls if not r.typ.startswith("aws-native:") and r.typ not in CLASSIC
                      and r.typ != DYNAMIC})
    if unknown:
        raise DeployerPolicyError(
            f"{stack.name} declares {', '.join(unknown)}: no permissions known for "
            f"{'it' if len(unknown) == 1 else 'them'}; add to CLASSIC (or NO_AWS_CALLS) in "
            "offline/deployer_policy.py")
    has_providers = any(r.typ in ("pulumi:providers:aws", "pulumi:providers:aws-native") for r in stack.resources)
    # Resources in another account (the Identity Center account of the `access` block) are deployed with that
    # account's credentials: their permissions go to documents of their own, <kind> prefixed with "identity-".
    elsewhere = {r.urn for r in calls if _account_of(r, stack) != stack.account}
    documents = {}
    if elsewhere:
        accounts = {_account_of(r, stack) for r in calls if r.urn in elsewhere}
        other = replace(stack, account=sorted(accounts)[0], resources=[r for r in calls if r.urn in elsewhere])
        for phase in KINDS:
            builder = _Builder(other, phase)
            builder.access(PROVIDER_ACCESS, None)
            for resource in other.resources:
                for access in CLASSIC[resource.typ]:
                    builder.access(access, resource)
            documents[f"identity-{phase}"] = builder.document()
        calls = [r for r in calls if r.urn not in elsewhere]
    for phase in KINDS:
        builder = _Builder(stack, phase)
        if has_providers:
            builder.access(PROVIDER_ACCESS, None)
        for resource in calls:
            if resource.typ == DYNAMIC:
                kind = _dynamic_kind(resource)
                for access in DYNAMIC_ACCESS[kind]:
                    builder.access(access, resource)
                if kind in ("configured_audience_model", "ml_configuration"):
                    builder.pass_role("cleanrooms-ml.amazonaws.com")  # the segments role, the ML output role
                continue
            if resource.typ.startswith("aws-native:"):
                builder.access(CLOUD_CONTROL_ACCESS, None)
                builder.native(resource)
                continue
            for access in CLASSIC[resource.typ]:
                builder.access(access, resource)
            if resource.typ == "aws:glue/catalogTable:CatalogTable" and resource.inputs.get("openTableFormatInput"):
                for access in ICEBERG_TABLE:
                    builder.access(access, resource)
            if resource.typ in PASSES_ROLE:
                builder.pass_role(PASSES_ROLE[resource.typ])
        documents[phase] = builder.document()
    return dict(sorted(documents.items(), key=lambda item: (item[0].startswith("identity-"), item[0])))


def generate(rounds: Rounds | None = None, stacks_dir: Path = ROOT) -> dict[str, str]:
    """{relative path: file text} for every stack and kind, and the parts of a document too big for one."""
    return files_for(stack_runs(rounds, stacks_dir), stacks_dir)


def files_for(runs: Mapping[str, Iterable[Run]], stacks_dir: Path = ROOT) -> dict[str, str]:
    """The files, from each stack's runs (stack_runs)."""
    files: dict[str, str] = {}
    for stack, stack_run_list in runs.items():
        documents = build(collect(stack, stack_run_list, stacks_dir))
        for kind in documents:
            files[f"policy/iam/{stack}-{kind}.json"] = to_json(documents[kind])
            parts = split(documents[kind])
            if len(parts) > 1:
                for number, part in enumerate(parts, 1):
                    files[f"policy/iam/{stack}-{kind}-part{number}.json"] = to_json(part)
    return files


def split(document: dict, limit: int = MANAGED_POLICY_LIMIT) -> list[dict]:
    """The document as consecutive runs of its statements, each within the managed-policy size limit."""
    parts: list[list[dict]] = [[]]
    for statement in document["Statement"]:
        candidate = dict(document, Statement=parts[-1] + [statement])
        if parts[-1] and policy_size(to_json(candidate)) > limit:
            parts.append([statement])
        else:
            parts[-1].append(statement)
        if policy_size(to_json(dict(document, Statement=parts[-1]))) > limit:
            raise DeployerPolicyError(f"statement {statement['Sid']} alone is over the managed-policy limit "
                                      f"of {limit} characters")
    return [dict(document, Statement=statements) for statements in parts]


def to_json(document: dict) -> str:
    return json.dumps(document, indent=2) + "\n"


def policy_size(text: str) -> int:
    """Characters IAM counts against the managed-policy quota (white space excluded)."""
    return len(re.sub(r"\s", "", text))


# The files this command writes (and may remove when a document needs fewer parts).
_GENERATED = re.compile(r"^(?P<stack>.+)-(?P<kind>deployer|preview)(-part\d+)?\.json$")


def stale(files: Mapping[str, str], root: Path = ROOT) -> list[str]:
    """Generated-looking files in policy/iam that the code no longer generates (a part that went away,
    or the files of a stack whose Pulumi.<stack>.yaml is gone)."""
    found = []
    for path in sorted((root / "policy" / "iam").glob("*.json")):
        match = _GENERATED.match(path.name)
        relative = f"policy/iam/{path.name}"
        if match and relative not in files:
            found.append(relative)
    return found


# --------------------------------------------------------------------------
# Command line


def check(files: Mapping[str, str], root: Path = ROOT) -> list[str]:
    """One entry per file that is missing, differs from what the code generates, or is no longer generated."""
    problems = [f"{path} is no longer generated" for path in stale(files, root)]
    for path, text in sorted(files.items()):
        target = root / path
        if not target.is_file():
            problems.append(f"{path} is missing")
            continue
        current = target.read_text(encoding="utf-8")
        if current != text:
            diff = [line for line in difflib.unified_diff(current.splitlines(), text.splitlines(), lineterm="", n=0)
                    if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            added = sum(1 for line in diff if line.startswith("+"))
            problems.append(f"{path} differs (+{added}/-{len(diff) - added} lines)")
    return problems


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m offline.deployer_policy",
        description="Generate the least-privilege IAM policies to deploy (policy/iam/<stack>-deployer.json) and "
                    "preview (policy/iam/<stack>-preview.json) each stack, from what the program declares "
                    "under the test suite's mocks.")
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 if the committed files differ from what the code generates")
    p.add_argument("--stacks-dir", metavar="DIR", type=Path,
                   help="the folder of the Pulumi.<stack>.yaml files (default: the project's); the policies "
                        "go to DIR/policy/iam")
    return p


def main(argv: list[str] | None = None, *, runs: Mapping[str, Iterable[Run]] | None = None,
         root: Path = ROOT) -> int:
    """The command; ``runs`` (each stack's runs, as stack_runs returns them) and ``root`` are for tests."""
    args = parser().parse_args(argv)
    stacks_dir = ROOT
    if args.stacks_dir is not None:
        stacks_dir = args.stacks_dir if args.stacks_dir.is_absolute() else Path.cwd() / args.stacks_dir
        if not stacks_dir.is_dir():
            return fail(f"--stacks-dir {args.stacks_dir}: not a folder")
        if root == ROOT:
            root = stacks_dir
    try:
        if runs is None:
            try:
                runs = stack_runs(stacks_dir=stacks_dir)
            except PlanError as exc:
                raise DeployerPolicyError(str(exc)) from None
            except (ConfigError, DeployerPolicyError):
                raise
            except Exception as exc:  # the program itself failed under the mocks: one line, not its traceback
                raise DeployerPolicyError(f"the program failed under the mocks ({type(exc).__name__}: {exc}); "
                                          "venv/bin/python -m offline.plan shows the same failure") from None
        files = files_for(runs, stacks_dir)
    except DeployerPolicyError as exc:
        return fail(str(exc))
    except ConfigError as exc:
        return fail(config_problems(exc))
    if args.check:
        problems = check(files, root)
        if problems:
            print("; ".join(problems) + " -- run: venv/bin/python -m offline.deployer_policy", file=sys.stderr)
            return 1
        print(f"{len(files)} files in policy/iam match what the code generates")
        return 0
    try:
        (root / "policy" / "iam").mkdir(parents=True, exist_ok=True)
        for path, text in sorted(files.items()):
            (root / path).write_text(text, encoding="utf-8")
        for path in stale(files, root):
            (root / path).unlink()
            print(f"{path}: removed (no longer generated)")
    except OSError as exc:
        return fail(f"cannot write {exc.filename}: {exc.strerror}")
    for path, text in sorted(files.items()):
        size = policy_size(text)
        note = "" if size <= MANAGED_POLICY_LIMIT else ", over the managed-policy limit: attach its -part files"
        print(f"{path}: {len(json.loads(text)['Statement'])} statements, {size} of {MANAGED_POLICY_LIMIT} "
              f"characters{note}")
    return 0


if __name__ == "__main__":
    from offline.plan import _close_event_loops

    status = main()
    _close_event_loops()
    sys.exit(status)

"""An S3 bucket hardened the same way wherever the project keeps data.

Versioning (an overwritten or deleted object can be recovered), SSE-KMS with
a customer managed key and S3 Bucket Keys (fewer KMS calls), all public
access blocked, ACLs disabled (BucketOwnerEnforced), and a policy that denies
any request without TLS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pulumi
import pulumi_aws as aws

from components import iam


@dataclass
class SecureBucketArgs:
    bucket_name: str
    """Globally unique bucket name (explicit, so other stacks and the README can name it)."""
    description: str
    """What the bucket holds; used for the KMS key description."""
    protect: bool
    """Protect bucket and key from deletion: the data cannot be recreated by the program."""
    object_lock: tuple[str, int] | None = None
    """(mode, days): S3 Object Lock's default retention (GOVERNANCE or COMPLIANCE), for logs kept as evidence.
    Object Lock can only be enabled when the bucket is created."""
    key_policy: pulumi.Input[str] | None = None
    """The key's policy, for a service that encrypts with it (CloudTrail); None: the account's default policy."""
    bucket_statements: Callable[[pulumi.Output[str]], list[dict]] = field(default=lambda arn: [])
    """Further bucket-policy statements, given the bucket's ARN (a service that writes into it)."""


class SecureBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    key: aws.kms.Key

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Encrypts {args.description}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=args.key_policy,
            opts=kept,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{args.bucket_name}", target_key_id=self.key.key_id,
                      opts=child)
        # force_destroy only once protection is lifted for teardown (README "Teardown").
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=not args.protect,
                                    object_lock_enabled=True if args.object_lock else None, opts=kept)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=self.key.arn),
                bucket_key_enabled=True,
            )],
            opts=child,
        )
        if args.object_lock:
            mode, days = args.object_lock
            # Every new object version is locked for `days` (needs versioning, enabled above).
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock",
                bucket=self.bucket.id,
                rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                    default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(mode=mode,
                                                                                                  days=days)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
            )
        # After the public access block, so the policy never exists on an unblocked bucket.
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=iam.tls_only_bucket_policy(self.bucket.arn, *args.bucket_statements(self.bucket.arn)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        self.register_outputs({"bucket": self.bucket.bucket, "key_arn": self.key.arn})

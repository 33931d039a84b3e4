"""Explicit providers for one organization's account.

Default providers are disabled in every stack file
(pulumi:disable-default-providers), so a resource without one of these fails
instead of landing in whatever account the shell's credentials point at.
`allowed_account_ids` makes the provider refuse to run in any other account.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_aws_native as aws_native
import pulumiverse_time as time

from model.config import Settings


@dataclass(frozen=True)
class Providers:
    aws: aws.Provider
    aws_native: aws_native.Provider
    time: time.Provider
    """pulumiverse-time, for the IAM propagation wait (components/iam_wait.py); no cloud account."""
    data_aws: aws.Provider | None = None
    """The same account in a producer's dataRegion, for its bucket, key and Glue table (None: the same region)."""
    identity_aws: aws.Provider | None = None
    """The organization's IAM Identity Center account (the `access` block), its own credentials and account pin."""

    def opts(self, **kwargs) -> pulumi.ResourceOptions:
        """Options for a top-level component: every provider, inherited by children."""
        return pulumi.ResourceOptions(providers={"aws": self.aws, "aws-native": self.aws_native, "time": self.time},
                                      **kwargs)

    def identity_opts(self, **kwargs) -> pulumi.ResourceOptions:
        """Options for the federated access component: everything in the Identity Center account."""
        return pulumi.ResourceOptions(providers={"aws": self.identity_aws}, **kwargs)

    def data_opts(self, **kwargs) -> pulumi.ResourceOptions:
        """Options for the data producer: its classic AWS resources (S3, KMS, Glue; IAM is global) in the
        data region, its Clean Rooms resources in the collaboration's."""
        return pulumi.ResourceOptions(providers={"aws": self.data_aws or self.aws, "aws-native": self.aws_native,
                                                 "time": self.time}, **kwargs)


def make_providers(settings: Settings) -> Providers:
    org = settings.org
    tags = {"project": settings.project, "organization": org.name, "stack": settings.stack}
    session = f"pulumi-{settings.project}-{org.name}"[:64]
    def classic(name: str, region: str, account_id: str = org.account_id, profile: str | None = settings.profile,
                role_arn: str | None = settings.assume_role_arn) -> aws.Provider:
        return aws.Provider(
            name,
            region=region,
            profile=profile,
            allowed_account_ids=[account_id],
            assume_roles=[aws.ProviderAssumeRoleArgs(role_arn=role_arn, session_name=session)] if role_arn else None,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
        )

    native = aws_native.Provider(
        f"{org.name}-aws-native",
        region=settings.region,
        profile=settings.profile,
        allowed_account_ids=[org.account_id],
        assume_role=aws_native.ProviderAssumeRoleArgs(role_arn=settings.assume_role_arn, session_name=session)
        if settings.assume_role_arn else None,
        default_tags=aws_native.ProviderDefaultTagsArgs(tags=tags),
    )
    data_region, access = settings.data_region, settings.access
    return Providers(aws=classic(f"{org.name}-aws", settings.region), aws_native=native,
                     time=time.Provider(f"{org.name}-time"),
                     data_aws=classic(f"{org.name}-aws-{data_region}", data_region)
                     if data_region and data_region != settings.region else None,
                     identity_aws=classic(f"{org.name}-aws-identity", access.region, access.identity_account_id,
                                          access.profile, access.assume_role_arn) if access else None)

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

    def opts(self, **kwargs) -> pulumi.ResourceOptions:
        """Options for a top-level component: every provider, inherited by children."""
        return pulumi.ResourceOptions(providers={"aws": self.aws, "aws-native": self.aws_native, "time": self.time},
                                      **kwargs)


def make_providers(settings: Settings) -> Providers:
    org = settings.org
    tags = {"project": settings.project, "organization": org.name, "stack": settings.stack}
    session = f"pulumi-{settings.project}-{org.name}"[:64]
    classic = aws.Provider(
        f"{org.name}-aws",
        region=settings.region,
        profile=settings.profile,
        allowed_account_ids=[org.account_id],
        assume_roles=[aws.ProviderAssumeRoleArgs(role_arn=settings.assume_role_arn, session_name=session)]
        if settings.assume_role_arn else None,
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
    return Providers(aws=classic, aws_native=native, time=time.Provider(f"{org.name}-time"))

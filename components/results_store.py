"""ResultsStore: where Clean Rooms delivers the analyst's query results.

Part of the analyst role. It is built before the membership, because the
membership's default result configuration names this bucket and role.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import iam
from components.iam_wait import service_role
from components.membership import ResultDestination
from components.secure_bucket import SecureBucket, SecureBucketArgs


@dataclass
class ResultsStoreArgs:
    organization: str
    account_id: str
    region: str
    bucket_name: str
    prefix: str
    """Key prefix under which every query's results land."""
    result_format: str
    protect: bool = True
    iam_propagation_seconds: int = 30
    """How long to wait after creating the write role before the membership names it (0: no wait)."""


class ResultsStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: ResultsStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:ResultsStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.storage = SecureBucket(f"{name}-results", SecureBucketArgs(
            bucket_name=args.bucket_name, description=f"{args.organization}'s Clean Rooms query results",
            protect=args.protect), opts=child)
        bucket, key = self.storage.bucket, self.storage.key

        # The membership names this role, so the role comes first (see iam.own_memberships_trust).
        self.role, self.policy, ready = service_role(
            f"{name}-cleanrooms-write", organization=args.organization, purpose="results",
            description="Clean Rooms writes this organization's query results",
            trust=iam.own_memberships_trust(region=args.region, account_id=args.account_id),
            policy=iam.results_write_policy(account_id=args.account_id, region=args.region,
                                            bucket_arn=bucket.arn, prefix=args.prefix, kms_key_arn=key.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        # The policy (and the wait) are part of the role's readiness: anything that
        # uses the destination depends on them through this Output.
        role_arn = pulumi.Output.all(self.role.arn, *(r.urn for r in ready)).apply(lambda v: v[0])
        self.destination = ResultDestination(bucket=bucket.bucket, key_prefix=args.prefix,
                                             result_format=args.result_format, role_arn=role_arn)
        self.register_outputs({"results_bucket": bucket.bucket, "role_arn": self.role.arn})

"""SeedStore: where the seed provider's lookalike seeds live, and the role Clean Rooms ML reads them with.

The seed provider's part of Clean Rooms ML lookalike modeling (python -m
queryrunner audience): seed files ("JSON lines format with a list of user IDs",
seed data requirements) go to an encrypted, versioned bucket of its own under
``seeds/``; a role Clean Rooms ML assumes for this account's audience generation
jobs reads them, or runs the seed template as a protected query in this member's
membership (the User Guide's two "read seed data" policies, ml-roles).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import iam
from components.iam_wait import service_role
from components.secure_bucket import SecureBucket, SecureBucketArgs

PREFIX = "seeds"


@dataclass
class SeedStoreArgs:
    organization: str
    account_id: str
    region: str
    membership_id: pulumi.Input[str] | None
    """This member's membership, the one seed queries run in (None: no SQL seeds yet)."""
    collaboration_arn: pulumi.Input[str] | None = None
    """The collaboration whose templates a seed query reads (None: no SQL seeds yet)."""
    protect: bool = True
    iam_propagation_seconds: int = 30


class SeedStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: SeedStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:SeedStore", name, None, opts)
        self.storage = SecureBucket(f"{name}-seeds", SecureBucketArgs(
            bucket_name=f"{args.organization}-cleanrooms-seeds-{args.account_id}",
            description=f"{args.organization}'s lookalike seeds", protect=args.protect),
            opts=pulumi.ResourceOptions(parent=self))
        self.role, _, self.ready = service_role(
            f"{name}-read", organization=args.organization, purpose="ml-read-seeds",
            description="Clean Rooms ML reads this member's lookalike seeds",
            trust=iam.ml_trust(region=args.region, account_id=args.account_id, resource="audience-generation-job"),
            policy=iam.seed_read_policy(account_id=args.account_id, region=args.region,
                                        bucket_arn=self.storage.bucket.arn, prefix=PREFIX,
                                        kms_key_arn=self.storage.key.arn, membership_id=args.membership_id,
                                        collaboration_arn=args.collaboration_arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.register_outputs({"seed_bucket": self.storage.bucket.bucket, "seed_role_arn": self.role.arn})

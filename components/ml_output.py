"""MLOutput: where Clean Rooms ML delivers this member's ML output, metrics and logs.

A member that may receive trained model exports or inference output (its mlAbilities), provides a
custom model, or trains one needs an ML configuration on its membership: "All members that want to
receive metrics must have a service access role that allows them to write CloudWatch metrics and
logs" (User Guide, custom-model-prerequisites), and exports go to the membership's default output
location (PutMLConfiguration). An encrypted, versioned bucket of its own under ``ml-output/``, the
role Clean Rooms ML writes with (components/iam.py ml_output_policy), and the configuration itself
(components/ml_configuration_api.py, a dynamic resource: CloudFormation has no type for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import iam
from components.iam_wait import service_role
from components.member_change import Credentials
from components.ml_configuration_api import MLConfiguration
from components.secure_bucket import SecureBucket, SecureBucketArgs

PREFIX = "ml-output"


@dataclass
class MLOutputArgs:
    organization: str
    account_id: str
    region: str
    membership_id: pulumi.Input[str]
    member_accounts: list[str]
    """Every member's account: Clean Rooms ML acts for jobs any of them owns."""
    credentials: Credentials
    protect: bool = True
    iam_propagation_seconds: int = 30


class MLOutput(pulumi.ComponentResource):
    def __init__(self, name: str, args: MLOutputArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:MLOutput", name, None, opts)
        self.storage = SecureBucket(f"{name}-bucket", SecureBucketArgs(
            bucket_name=f"{args.organization}-cleanrooms-ml-output-{args.account_id}",
            description=f"{args.organization}'s Clean Rooms ML output", protect=args.protect),
            opts=pulumi.ResourceOptions(parent=self))
        self.role, _, ready = service_role(
            f"{name}-write", organization=args.organization, purpose="ml-output",
            description="Clean Rooms ML writes this member's ML output, metrics and logs",
            trust=iam.ml_output_trust(member_accounts=args.member_accounts),
            policy=iam.ml_output_policy(account_id=args.account_id, region=args.region,
                                        bucket_arn=self.storage.bucket.arn, prefix=PREFIX,
                                        kms_key_arn=self.storage.key.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.uri = pulumi.Output.concat("s3://", self.storage.bucket.bucket, f"/{PREFIX}/")
        self.configuration = MLConfiguration(
            f"{name}-configuration", membership_id=args.membership_id, output_uri=self.uri, role_arn=self.role.arn,
            account_id=args.account_id, credentials=args.credentials,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready))
        self.register_outputs({"ml_output_uri": self.uri, "ml_output_role_arn": self.role.arn})

"""MLTrainer: what the member who can query needs to train and run custom models (Clean Rooms ML).

"Members with the ability to query data can prepare their data for training and
inference by creating an ML input channel" (User Guide, create-ml-input-channel),
and "Run queries" is "assigned to the member who will initiate model training"
(create-custom-ml-collaboration). So the model provider (components/custom_model.py)
offers the algorithm, and this member, the analyst, creates the channels from the
collaboration's templates and the trained models and inference jobs from them
(python -m queryrunner ml): a role Clean Rooms ML runs a channel's query with, in
this membership only ("Create a service role to query a dataset", ml-roles), and a
KMS key for the channels' data, the trained models and the inference output.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.iam_wait import service_role


@dataclass
class MLTrainerArgs:
    organization: str
    account_id: str
    region: str
    membership_id: pulumi.Input[str] | None
    """This member's membership, the one channel queries run in (None: the key only, until it has joined)."""
    collaboration_arn: pulumi.Input[str] | None = None
    protect: bool = True
    iam_propagation_seconds: int = 30


class MLTrainer(pulumi.ComponentResource):
    role: aws.iam.Role | None

    def __init__(self, name: str, args: MLTrainerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:MLTrainer", name, None, opts)
        self.key = aws.kms.Key(f"{name}-key", description=f"Encrypts {args.organization}'s ML input channels, "
                               "trained models and inference output", enable_key_rotation=True,
                               deletion_window_in_days=30,
                               policy=iam.ml_model_key_policy(account_id=args.account_id, region=args.region, ecr=False),
                               opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        self.role = None
        if args.membership_id is not None and args.collaboration_arn is not None:
            self.role, _, _ = service_role(
                f"{name}-channel", organization=args.organization, purpose="ml-input-channel",
                description="Clean Rooms ML runs this member's ML input channel queries in its membership",
                # An ML input channel's ARN is its membership's: ...:membership/<id>/ml-input-channel/<id>
                # (botocore cleanroomsml MLInputChannelArn), so the SourceArn pattern names the membership part.
                trust=iam.ml_trust(region=args.region, account_id=args.account_id,
                                   resource="membership/*/ml-input-channel"),
                policy=iam.ml_channel_policy(region=args.region, account_id=args.account_id,
                                             membership_id=args.membership_id, collaboration_arn=args.collaboration_arn),
                iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.register_outputs({"kms_key_arn": self.key.arn, "channel_role_arn": self.role.arn if self.role else None})

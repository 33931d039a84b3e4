"""A lookalike model, trained on this member's training data and shared with the collaboration.

The training-data provider's part of Clean Rooms ML lookalike modeling (User
Guide, working-with-machine-learning-tdp): "creates a lookalike model [...]
configures the lookalike model, including whether to share relevance metrics and
the Amazon S3 location of the output segments [...] associates the configured
audience model to a collaboration". CloudFormation has no types for these, so
each is a Pulumi dynamic resource (components/lookalike_api.py):

- AudienceModel: CreateAudienceModel on the training dataset (cleanroomsml).
  Training "can take up to 24 hours"; creating returns at once.
- ConfiguredAudienceModel: CreateConfiguredAudienceModel, once the model is
  ACTIVE: it waits up to ``wait_minutes`` (backoff), else fails saying so, and the
  next `pulumi up` tries again. Output to this member's segments bucket through a
  role Clean Rooms ML assumes; seed-size minimum, audience sizes, metrics sharing.
- AudienceModelAssociation: CreateConfiguredAudienceModelAssociation in this
  member's membership (cleanrooms), Clean Rooms managing the resource policies.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import iam
from components.iam_wait import service_role
from components.lookalike_api import AudienceModel, AudienceModelAssociation, ConfiguredAudienceModel, where
from components.member_change import Credentials
from components.secure_bucket import SecureBucket, SecureBucketArgs
from model.lookalike import LookalikeSpec

SEGMENTS = "segments"


# -- the component --------------------------------------------------------------------------------

@dataclass
class LookalikeArgs:
    organization: str
    account_id: str
    region: str
    spec: LookalikeSpec
    training_dataset_arn: pulumi.Input[str]
    membership_id: pulumi.Input[str] | None
    """This member's membership: the association waits for it (None: not declared yet)."""
    credentials: Credentials
    protect: bool = True
    iam_propagation_seconds: int = 30


class Lookalike(pulumi.ComponentResource):
    configured_model: ConfiguredAudienceModel

    def __init__(self, name: str, args: LookalikeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:Lookalike", name, None, opts)
        spec, child = args.spec, pulumi.ResourceOptions(parent=self)
        place = where(args.credentials, args.account_id)
        model_name = f"{args.organization}-{spec.name}"[:63]
        self.storage = SecureBucket(f"{name}-segments", SecureBucketArgs(
            bucket_name=f"{args.organization}-cleanrooms-segments-{args.account_id}",
            description=f"{args.organization}'s lookalike segments", protect=args.protect), opts=child)
        role, _, ready = service_role(
            f"{name}-write", organization=args.organization, purpose=f"ml-segments-{spec.name}",
            description="Clean Rooms ML writes lookalike segments for this member's configured audience models",
            trust=iam.ml_trust(region=args.region, account_id=args.account_id, resource="configured-audience-model"),
            policy=iam.segments_write_policy(account_id=args.account_id, region=args.region,
                                             bucket_arn=self.storage.bucket.arn, prefix=SEGMENTS,
                                             kms_key_arn=self.storage.key.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.model = AudienceModel(f"{name}-model", {
            **place, "name": model_name, "training_dataset_arn": args.training_dataset_arn,
            "description": f"{args.organization}'s lookalike model {spec.name!r}"}, opts=child)
        self.configured_model = ConfiguredAudienceModel(f"{name}-configured", {
            **place, "name": model_name, "audience_model_arn": self.model.arn,
            "output_uri": pulumi.Output.concat("s3://", self.storage.bucket.bucket, f"/{SEGMENTS}/"),
            "output_role_arn": role.arn, "share_metrics": spec.share_metrics,
            "min_matching_seed_size": spec.min_matching_seed_size, "size_type": spec.size_type,
            "size_bins": list(spec.size_bins), "wait_minutes": spec.wait_minutes,
            "description": f"{args.organization}'s lookalike model {spec.name!r}, configured for the collaboration"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready))
        self.association = None
        if args.membership_id is not None:
            self.association = AudienceModelAssociation(f"{name}-association", {
                **place, "name": spec.name, "membership_id": args.membership_id,
                "configured_model_arn": self.configured_model.arn,
                "description": f"{args.organization}'s lookalike model {spec.name!r}"}, opts=child)
        self.register_outputs({"configured_audience_model_arn": self.configured_model.arn})

"""TrainingData: a member's interactions, registered as Clean Rooms ML training data.

S3 (hardened bucket) -> Glue table with the declared schema -> a role Clean
Rooms ML assumes to read them -> AWS::CleanRoomsML::TrainingDataset (type
INTERACTIONS) whose column schema is the dataset's ``mlType`` columns ("The
schema specified in the CreateTrainingDataset action must align with the schema
defined when the AWS Glue table was created", ml-training-data-requirements).
The training dataset is create-only in every property: a changed schema or
role replaces it, which the preview shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws_native.cleanroomsml as cleanroomsml

from components import iam
from components.data_producer import catalogued
from components.iam_wait import service_role
from components.secure_bucket import SecureBucket, SecureBucketArgs
from model.training import TrainingSpec


@dataclass
class TrainingDataArgs:
    organization: str
    account_id: str
    region: str
    spec: TrainingSpec
    bucket_name: str
    protect: bool = True
    iam_propagation_seconds: int = 30


class TrainingData(pulumi.ComponentResource):
    training_dataset: cleanroomsml.TrainingDataset

    def __init__(self, name: str, args: TrainingDataArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:TrainingData", name, None, opts)
        dataset = args.spec.dataset
        prefix = f"training/{dataset.name}"
        self.storage = SecureBucket(f"{name}-data", SecureBucketArgs(
            bucket_name=args.bucket_name, description=f"{args.organization}'s {dataset.name} training data",
            protect=args.protect), opts=pulumi.ResourceOptions(parent=self))
        self.data_object, self.database, self.table = catalogued(
            name, organization=args.organization, dataset=dataset, storage=self.storage, prefix=prefix, parent=self)
        role, _, ready = service_role(
            f"{name}-read", organization=args.organization, purpose=f"ml-read-{dataset.name}",
            description=f"Clean Rooms ML reads {dataset.name} to train lookalike models",
            trust=iam.ml_training_trust(region=args.region, account_id=args.account_id),
            policy=iam.data_read_policy(account_id=args.account_id, region=args.region,
                                        bucket_arn=self.storage.bucket.arn, prefix=prefix,
                                        kms_key_arn=self.storage.key.arn, database=self.database.name,
                                        table=self.table.name),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.training_dataset = cleanroomsml.TrainingDataset(
            f"{name}-training-dataset",
            name=f"{args.organization}-{dataset.name}"[:63],
            description=args.spec.description[:255] or None,
            role_arn=role.arn,
            training_data=[cleanroomsml.TrainingDatasetDatasetArgs(
                type=cleanroomsml.TrainingDatasetDatasetType.INTERACTIONS,
                input_config=cleanroomsml.TrainingDatasetDatasetInputConfigArgs(
                    schema=[cleanroomsml.TrainingDatasetColumnSchemaArgs(
                        column_name=column, column_types=[cleanroomsml.TrainingDatasetColumnType(kind)])
                        for column, kind in args.spec.schema],
                    data_source=cleanroomsml.TrainingDatasetDataSourceArgs(
                        glue_data_source=cleanroomsml.TrainingDatasetGlueDataSourceArgs(
                            database_name=self.database.name, table_name=self.table.name,
                            catalog_id=args.account_id))))],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*ready, self.data_object]),
        )
        self.register_outputs({"training_dataset_arn": self.training_dataset.training_dataset_arn})

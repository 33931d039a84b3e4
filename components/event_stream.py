"""EventStream: a producer's table fed continuously, Kinesis -> Firehose -> an Apache Iceberg table.

Clean Rooms reads a table when a query runs, so "real time" means fresh rows landing continuously and
templates over recent windows (run --window). The producer's events go to a Kinesis data stream
(on-demand capacity, encrypted with its own KMS key); a Firehose delivery stream reads it and writes
the Glue catalog's Iceberg table (components/data_producer.py streamed), whose new partitions Clean
Rooms "detects automatically" (User Guide, iceberg-tables); records Firehose cannot write land under
``errors/`` in the same bucket, outside the table's prefix (the policy pack checks both).
scripts/produce_events.py sends generated events to the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import iam
from components.iam_wait import service_role
from components.secure_bucket import SecureBucket
from model.config import StreamSpec
from model.datasets import Dataset

ERRORS = "errors"


@dataclass
class EventStreamArgs:
    organization: str
    account_id: str
    region: str
    dataset: Dataset
    spec: StreamSpec
    storage: SecureBucket
    """The producer's bucket: the table's files under ``prefix``/, failed records under errors/."""
    prefix: str
    database: aws.glue.CatalogDatabase
    table: aws.glue.CatalogTable
    iam_propagation_seconds: int = 30


class EventStream(pulumi.ComponentResource):
    kinesis: aws.kinesis.Stream
    firehose: aws.kinesis.FirehoseDeliveryStream

    def __init__(self, name: str, args: EventStreamArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:data:EventStream", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stream_name = f"{args.organization}-cleanrooms-{args.dataset.name}".replace("_", "-")
        self.key = aws.kms.Key(f"{name}-key", description=f"Encrypts {args.organization}'s {args.dataset.name} stream",
                               enable_key_rotation=True, deletion_window_in_days=30, opts=child)
        self.kinesis = aws.kinesis.Stream(
            f"{name}-kinesis", name=stream_name, retention_period=args.spec.retention_hours,
            stream_mode_details=aws.kinesis.StreamStreamModeDetailsArgs(stream_mode="ON_DEMAND"),
            encryption_type="KMS", kms_key_id=self.key.arn, opts=child)
        role, _, ready = service_role(
            f"{name}-firehose", organization=args.organization, purpose=f"firehose-{args.dataset.name}",
            description=f"Firehose writes {args.dataset.name} from its stream into its Iceberg table",
            trust=iam.firehose_trust(account_id=args.account_id),
            policy=iam.firehose_iceberg_policy(
                account_id=args.account_id, region=args.region, stream_arn=self.kinesis.arn,
                stream_key_arn=self.key.arn, bucket_arn=args.storage.bucket.arn, table_prefix=args.prefix,
                error_prefix=ERRORS, bucket_key_arn=args.storage.key.arn, database=args.database.name,
                table=args.table.name),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.firehose = aws.kinesis.FirehoseDeliveryStream(
            f"{name}-firehose", name=stream_name, destination="iceberg",
            kinesis_source_configuration=aws.kinesis.FirehoseDeliveryStreamKinesisSourceConfigurationArgs(
                kinesis_stream_arn=self.kinesis.arn, role_arn=role.arn),
            iceberg_configuration=aws.kinesis.FirehoseDeliveryStreamIcebergConfigurationArgs(
                role_arn=role.arn, catalog_arn=f"arn:aws:glue:{args.region}:{args.account_id}:catalog",
                buffering_interval=args.spec.buffer_seconds, buffering_size=args.spec.buffer_mb,
                # Appends only: a stream of events, each one row.
                append_only=True,
                destination_table_configurations=[
                    aws.kinesis.FirehoseDeliveryStreamIcebergConfigurationDestinationTableConfigurationArgs(
                        database_name=args.database.name, table_name=args.table.name,
                        s3_error_output_prefix=f"{ERRORS}/")],
                s3_configuration=aws.kinesis.FirehoseDeliveryStreamIcebergConfigurationS3ConfigurationArgs(
                    bucket_arn=args.storage.bucket.arn, role_arn=role.arn, error_output_prefix=f"{ERRORS}/",
                    kms_key_arn=args.storage.key.arn)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready))
        self.register_outputs({"stream_name": self.kinesis.name, "delivery_stream": self.firehose.name})

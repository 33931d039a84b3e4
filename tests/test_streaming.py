"""A producer's table fed by a stream: Kinesis -> Firehose -> an Iceberg table, its pack rules, its deployer
permissions, and the producer script that sends events (moto's Kinesis)."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pulumi
import pytest
from moto import mock_aws

from offline import deployer_policy as dp
from tests.harness import PROJECT, ROOT, run_stack
from tests.policy_support import evaluate
from tests.support.iam_lint import lint_policy

sys.path.insert(0, str(ROOT / "scripts"))
import produce_events  # noqa: E402  (scripts/produce_events.py)

B = "222222222222"
STREAMED = {"dataset": "media_events", "stream": {"timeColumn": "event_time", "bufferSeconds": 60}}
FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"


@pytest.fixture(scope="module")
def streamed():
    return run_stack("org-b", overrides=STREAMED)


def test_events_flow_from_an_encrypted_stream_into_an_iceberg_table(streamed):
    kinesis = streamed.one("aws:kinesis/stream:Stream")
    assert kinesis.inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert kinesis.inputs["encryptionType"] == "KMS" and kinesis.inputs["kmsKeyId"] == \
        streamed.named("org-b-producer-stream-key").state["arn"]
    table = streamed.named("org-b-producer-table")
    assert table.inputs["openTableFormatInput"] == {"icebergInput": {"metadataOperation": "CREATE", "version": "2"}}
    assert [c["type"] for c in table.input("storageDescriptor.columns")] == ["varchar(64)", "varchar(16)", "timestamp",
                                                                            "int"]
    firehose = streamed.one(FIREHOSE)
    assert firehose.inputs["destination"] == "iceberg"
    assert firehose.input("kinesisSourceConfiguration.kinesisStreamArn") == kinesis.state["arn"]
    iceberg = firehose.inputs["icebergConfiguration"]
    assert iceberg["destinationTableConfigurations"] == [
        {"databaseName": "org_b_media_events", "tableName": "media_events", "s3ErrorOutputPrefix": "errors/"}]
    assert iceberg["bufferingInterval"] == 60 and iceberg["appendOnly"] is True
    # No file is uploaded: the stream is the table's only source.
    assert not streamed.of_type("aws:s3/bucketObjectv2:BucketObjectv2") or all(
        "media_events" not in r.inputs.get("key", "") for r in streamed.of_type("aws:s3/bucketObjectv2:BucketObjectv2"))
    assert streamed.outputs["event_stream"] == "org-b-cleanrooms-media-events"


def test_firehose_reads_one_stream_and_writes_one_table(streamed):
    trust = json.loads(streamed.named("org-b-producer-stream-firehose").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": B}}
    policy = json.loads(streamed.named("org-b-producer-stream-firehose-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadTheStream"]["Resource"] == [streamed.one("aws:kinesis/stream:Stream").state["arn"]]
    assert by_sid["WriteTheTablesFiles"]["Resource"] == [
        f"arn:aws:s3:::org-b-cleanrooms-media-events-{B}/datasets/media_events/*"]
    assert by_sid["WriteFailedRecords"]["Resource"] == [f"arn:aws:s3:::org-b-cleanrooms-media-events-{B}/errors/*"]
    assert lint_policy(trust, kind="trust") == [] and lint_policy(policy) == []


def test_the_pack_passes_the_streamed_stack_and_refuses_what_it_must(streamed):
    assert evaluate(streamed.resources, policies=["streams-encrypted-and-private"]).violations == []
    firehose, kinesis = streamed.one(FIREHOSE), streamed.one("aws:kinesis/stream:Stream")
    plain = type(kinesis)(**{**kinesis.__dict__, "inputs": {**kinesis.inputs, "encryptionType": "NONE"}})
    public = type(firehose)(**{**firehose.__dict__, "inputs": {**firehose.inputs, "destination": "http_endpoint"}})
    config = json.loads(json.dumps(firehose.inputs["icebergConfiguration"]))
    config["destinationTableConfigurations"][0].pop("s3ErrorOutputPrefix")
    config["s3Configuration"].pop("errorOutputPrefix")
    config["s3Configuration"].pop("kmsKeyArn")
    loose = type(firehose)(**{**firehose.__dict__, "inputs": {**firehose.inputs, "icebergConfiguration": config}})
    messages = [v.message for v in evaluate([plain, public, loose], policies=["streams-encrypted-and-private"]).violations]
    assert any("not encrypted with a customer managed KMS key" in m for m in messages)
    assert any("delivers to 'http_endpoint'" in m for m in messages)
    assert any("has no error output prefix" in m for m in messages)
    assert any("without a customer managed KMS key (s3Configuration.kmsKeyArn)" in m for m in messages)


def test_the_deployer_may_create_the_stream_and_pass_the_firehose_role(streamed):
    document = dp.build(dp.collect("org-b", [streamed]))["deployer"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert "kinesis:CreateStream" in by_sid["KinesisStreamsOfThisStack"]["Action"]
    assert "firehose:CreateDeliveryStream" in by_sid["FirehoseDeliveryStreamsOfThisStack"]["Action"]
    assert by_sid["PassRolesToFirehose"]["Condition"] == {"StringEquals": {"iam:PassedToService": "firehose.amazonaws.com"}}
    assert by_sid["GlueWritesIcebergMetadata"]["Resource"] == [
        f"arn:aws:s3:::org-b-cleanrooms-media-events-{B}/datasets/media_events/*"]
    mine = [s for sid, s in by_sid.items() if sid.startswith(("Kinesis", "Firehose", "GlueWritesIceberg", "PassRolesToF"))]
    assert lint_policy({"Version": "2012-10-17", "Statement": mine}) == []


@pytest.mark.parametrize("overrides, key, fragment", [
    ({**STREAMED, "stream": {"timeColumn": "channel"}}, "stream.timeColumn",
     "the dataset media_events's timestamp columns: ['event_time']"),
    ({"stream": {"timeColumn": "event_time"}}, "stream.timeColumn", "none (a stream needs a timestamp_ntz column)"),
    ({**STREAMED, "stream": {"timeColumn": "event_time", "bufferSeconds": 901}}, "stream.bufferSeconds", "900"),
    ({**STREAMED, "dataRegion": "eu-west-1"}, "stream", "stays in the collaboration's region"),
])
def test_bad_stream_config_is_one_line_naming_the_key(overrides, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides=overrides)
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


# -- scripts/produce_events.py ----------------------------------------------------------------------------------
def dataset():
    from model.datasets import load_dataset

    return load_dataset("media_events")


def test_the_shipped_sample_is_what_the_producer_writes(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "produce_events.py"), "--local", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shipped = (ROOT / "data" / "media_events" / "media_events.csv").read_text()
    assert (tmp_path / "media_events.csv").read_text() == shipped
    from model.datasets import validate_data

    validate_data(dataset())  # the strict loader reads it: timestamps, values, bounds


@pytest.mark.parametrize("change, fragment", [
    ({"channel": "radio"}, "column 'channel' value 'radio' is not one of its declared values"),
    ({"event_time": "2026-12-01T10:00:00"}, "is not a timestamp yyyy-MM-dd HH:mm:ss.SSSSSS"),
    ({"watch_minutes": 601}, "is outside its bounds [0, 600]"),
    ({"watch_minutes": "7"}, "is not an integer"),
])
def test_a_record_that_does_not_match_the_schema_is_refused_in_one_line(change, fragment):
    record = {"customer_key": "k" * 64, "channel": "web", "event_time": "2026-12-01 10:00:00.000000",
              "watch_minutes": 5, **change}
    with pytest.raises(produce_events.RecordError) as info:
        produce_events.check(record, dataset(), 12)
    assert str(info.value).startswith("record 12: ") and fragment in str(info.value)


def test_events_reach_the_stream_in_batches_of_500():
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="events", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        records = produce_events.events(["a" * 64, "b" * 64], 1201, produce_events.dt.datetime(2026, 12, 1), 3)
        calls = []
        real = kinesis.put_records

        def counting(**kwargs):
            calls.append(len(kwargs["Records"]))
            return real(**kwargs)

        kinesis.put_records = counting
        assert produce_events.send(kinesis, "events", records) == 1201
        assert calls == [500, 500, 201]
        shards = kinesis.list_shards(StreamName="events")["Shards"]
        received = []
        for shard in shards:
            iterator = kinesis.get_shard_iterator(StreamName="events", ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            received += [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]]
        assert sorted(r["event_time"] for r in received) == sorted(r["event_time"] for r in records)


def test_only_the_records_the_stream_refused_are_sent_again():
    class Throttled:
        def __init__(self):
            self.sent: list[list[bytes]] = []

        def put_records(self, StreamName, Records):
            self.sent.append([r["Data"] for r in Records])
            first = len(self.sent) == 1
            return {"FailedRecordCount": 1 if first else 0, "Records": [
                {"ErrorCode": "ProvisionedThroughputExceededException"} if first and i == 1 else {"SequenceNumber": "1"}
                for i in range(len(Records))]}

    client, slept = Throttled(), []
    records = produce_events.events(["a" * 64], 3, produce_events.dt.datetime(2026, 12, 1), 1)
    assert produce_events.send(client, "events", records, sleep=slept.append) == 3
    assert [len(batch) for batch in client.sent] == [3, 1] and client.sent[1][0] == client.sent[0][1]
    assert slept == [0.5]  # backoff, no fixed sleep between batches

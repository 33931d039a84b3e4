"""Viewing events for org B's stream: generated, checked against the dataset's schema, sent or written.

    venv/bin/python scripts/produce_events.py --stream org-b-cleanrooms-media-events --events 1000 [--region R]
    venv/bin/python scripts/produce_events.py --local data/media_events --events 2000 --start "2026-12-01 00:00:00"
    venv/bin/python scripts/produce_events.py --local data/media_events --events 300 \
        --start "2026-12-01 10:00:00" --hours 1

Each event is a JSON object of the dataset's columns (data/media_events/schema.yaml): a customer of
data/media_engagement, a channel, the event's time and the minutes watched. Every record is checked
against the schema first (type, declared values, bounds); one that does not match is refused with one
line naming the record and column, and nothing is sent. Records go to Kinesis with PutRecords, 500 at a
time (the API's limit); records the stream did not take (its answer lists them) are sent again with
backoff under one deadline, never the whole batch (which would duplicate the ones it took). --local
writes the same events as the dataset's data instead, as its schema.yaml declares it: its CSV (the shipped
sample: --seed 7, the defaults), or, for a dataset with ``partitionedBy`` (``file: events/``), Parquet files
added to its folder's hourly Hive partitions, <column>_hour=yyyy-MM-dd-HH/ (the layout an Iceberg table
partitioned by hour(<column>) writes), each file new, as Firehose adds files to its table: running it again
adds events (remove the folder to start over).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.datasets import CSV_TIMESTAMP_FORMAT, Dataset, load_dataset  # noqa: E402

BATCH = 500  # PutRecords: "Each PutRecords request can support up to 500 records"
CHANNELS = ("web", "mobile_app", "email", "social")


class RecordError(Exception):
    """A record that does not match the dataset's schema (nothing was sent)."""


def events(customers: list[str], count: int, start: dt.datetime, seed: int, hours: int = 24) -> list[dict]:
    """``count`` events over the ``hours`` from ``start`` (a day by default), in time order."""
    rng = random.Random(seed)
    times = sorted(start + dt.timedelta(seconds=rng.randrange(hours * 3600)) for _ in range(count))
    return [{"customer_key": rng.choice(customers), "channel": rng.choice(CHANNELS),
             "event_time": t.strftime(CSV_TIMESTAMP_FORMAT), "watch_minutes": rng.randint(1, 180)} for t in times]


def check(record: dict, dataset: Dataset, number: int) -> None:
    """RecordError (one line: the record, the column, what would pass) unless ``record`` fits the schema."""
    names = dataset.column_names
    if sorted(record) != sorted(names):
        raise RecordError(f"record {number}: has fields {sorted(record)}, the schema of {dataset.name} has {names}")
    for column in dataset.columns:
        value = record[column.name]
        where = f"record {number}: column '{column.name}' value {value!r}"
        if column.values is not None and value not in column.values:
            raise RecordError(f"{where} is not one of its declared values {list(column.values)}")
        if column.duckdb_type == "TIMESTAMP":
            try:
                dt.datetime.strptime(str(value), CSV_TIMESTAMP_FORMAT)
            except ValueError:
                raise RecordError(f"{where} is not a timestamp yyyy-MM-dd HH:mm:ss.SSSSSS") from None
        elif column.duckdb_type == "INTEGER":
            if not isinstance(value, int) or isinstance(value, bool):
                raise RecordError(f"{where} is not an integer")
            low, high = (int(b) for b in column.bounds) if column.bounds else (-2 ** 31, 2 ** 31 - 1)
            if not low <= value <= high:
                raise RecordError(f"{where} is outside its bounds [{low}, {high}]")
        elif column.duckdb_type == "VARCHAR" and (not isinstance(value, str) or not value
                                                  or (column.max_length and len(value) > column.max_length)):
            raise RecordError(f"{where} is not a non-empty text of at most {column.max_length} characters")


def send(kinesis, stream: str, records: list[dict], *, deadline_seconds: float = 120.0,
         sleep=time.sleep, clock=time.monotonic) -> int:
    """PutRecords in batches; the records a response marks failed are sent again (only they), with doubling
    backoff, until the deadline. The records sent, or RuntimeError naming how many the stream never took."""
    deadline = clock() + deadline_seconds
    pending = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records]
    keys = [r["customer_key"] for r in records]
    items = list(zip(pending, keys))
    wait = 0.5
    while items:
        failed = []
        for i in range(0, len(items), BATCH):
            batch = items[i:i + BATCH]
            answer = kinesis.put_records(StreamName=stream, Records=[
                {"Data": data, "PartitionKey": key} for data, key in batch])
            failed += [item for item, result in zip(batch, answer["Records"]) if result.get("ErrorCode")]
        if not failed:
            return len(records)
        if clock() + wait > deadline:
            raise RuntimeError(f"{len(failed)} of {len(records)} records were not taken by stream {stream} before "
                               f"the deadline ({deadline_seconds:.0f} s)")
        sleep(wait)
        wait = min(wait * 2, 8.0)
        items = failed
    return len(records)


def write_local(folder: Path, dataset: Dataset, records: list[dict]) -> Path:
    target = folder / dataset.file
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, dataset.column_names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    tmp.replace(target)
    return target


def write_partitions(folder: Path, dataset: Dataset, records: list[dict]) -> list[Path]:
    """Add ``records`` to the dataset's folder (under ``folder``) as Parquet, one new file per hour's partition.

    Written beside the folder first, then each file renamed into its partition: a reader sees whole files
    only. Typed as the schema says (model/datasets.py reads them as strictly as the CSV), Snappy-compressed
    (Clean Rooms reads Iceberg's Parquet with GZIP or Snappy, not Zstd: User Guide, iceberg-tables).
    """
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.datasets import PARTITION_FORMAT

    kinds = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "SMALLINT": pa.int16(),
             "TINYINT": pa.int8(), "BOOLEAN": pa.bool_(), "FLOAT": pa.float32(), "DATE": pa.date32(),
             "TIMESTAMP": pa.timestamp("us")}
    unknown = [c.name for c in dataset.columns if c.duckdb_type not in kinds]
    if unknown:
        raise RecordError(f"columns {unknown} of {dataset.name}: this producer writes only "
                          f"{', '.join(sorted(kinds))} columns")
    schema = pa.schema([(c.name, kinds[c.duckdb_type]) for c in dataset.columns])
    by_hour: dict[str, list[dict]] = {}
    for record in records:
        moment = dt.datetime.strptime(record[dataset.partitioned_by], CSV_TIMESTAMP_FORMAT)
        by_hour.setdefault(moment.strftime(PARTITION_FORMAT), []).append(record)
    target = folder / dataset.file.rstrip("/")
    staging = folder / f".{target.name}.tmp-{uuid.uuid4().hex}"
    name = f"part-{uuid.uuid4().hex[:12]}.parquet"
    written = []
    try:
        staging.mkdir(parents=True)
        for hour, rows in sorted(by_hour.items()):
            columns = {c.name: [_typed(r[c.name], c.duckdb_type) for r in rows] for c in dataset.columns}
            pq.write_table(pa.table(columns, schema=schema), staging / f"{hour}.parquet", compression="snappy")
        for hour in sorted(by_hour):
            partition = target / f"{dataset.partition_key}={hour}"
            partition.mkdir(parents=True, exist_ok=True)
            (staging / f"{hour}.parquet").replace(partition / name)
            written.append(partition / name)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return written


def _typed(value, kind: str):
    if kind == "TIMESTAMP" and isinstance(value, str):
        return dt.datetime.strptime(value, CSV_TIMESTAMP_FORMAT)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="produce_events.py", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stream", help="the Kinesis data stream (stack output event_stream)")
    where.add_argument("--local", type=Path, metavar="DIR",
                       help="write the dataset's data into DIR instead: its CSV, or for a dataset with "
                            "partitionedBy new Parquet files in its folder's hourly partitions")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--start", default="2026-12-01 00:00:00", help="the events' start, UTC (yyyy-MM-dd HH:mm:ss)")
    parser.add_argument("--hours", type=int, default=24, help="the events spread over this many hours from --start")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--region")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args(argv)
    if not 1 <= args.events <= 10_000_000:
        parser.error("--events must be 1 to 10000000")
    if not 1 <= args.hours <= 8784:
        parser.error("--hours must be 1 to 8784 (a leap year)")
    try:
        start = dt.datetime.strptime(args.start, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        parser.error(f"--start {args.start!r} must be yyyy-MM-dd HH:mm:ss")
    dataset = load_dataset("media_events", args.data_dir)
    with (args.data_dir / "media_engagement" / "media_engagement.csv").open(newline="") as handle:
        customers = [row["customer_key"] for row in csv.DictReader(handle)]
    records = events(customers, args.events, start, args.seed, args.hours)
    try:
        for number, record in enumerate(records, 1):
            check(record, dataset, number)
    except RecordError as exc:
        print(f"error: {exc}; nothing was sent", file=sys.stderr)
        return 2
    if args.local and dataset.partitioned_by:
        try:
            files = write_partitions(args.local, dataset, records)
        except RecordError as exc:
            print(f"error: {exc}; nothing was written", file=sys.stderr)
            return 2
        print(f"added {len(records)} events to {args.local / dataset.file.rstrip('/')} ({len(files)} hourly "
              f"partition{'s' if len(files) != 1 else ''})", file=sys.stderr)
        return 0
    if args.local:
        print(f"wrote {len(records)} events to {write_local(args.local, dataset, records)}", file=sys.stderr)
        return 0
    import boto3

    kinesis = boto3.client("kinesis", region_name=args.region)
    try:
        sent = send(kinesis, args.stream, records)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} events to {args.stream}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

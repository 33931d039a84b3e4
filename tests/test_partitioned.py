"""The local clean room over a streamed table's partitioned Parquet: scripts/produce_events.py adds the events to
hourly Hive partitions (<column>_hour=yyyy-MM-dd-HH/), the strict loader reads the folder with DuckDB
(hive_partitioning) as strictly as one file, the load cache never takes a folder for a file, and `run --local
--window` runs each window over it, charging the ledger once per window."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from model.datasets import load_dataset, load_into, validate_data
from model.errors import ConfigError
from queryrunner.cli import main
from tests.harness import ROOT
from tests.test_window import streamed_stacks  # noqa: F401

sys.path.insert(0, str(ROOT / "scripts"))
import produce_events  # noqa: E402  (scripts/produce_events.py)

UTC = dt.timezone.utc
PARTITIONED = "file: events/\npartitionedBy: event_time\n"
# Two producer runs, as a stream delivers: a quiet hour, then a busy one.
BATCHES = [(300, "2026-12-01 10:00:00", 3), (900, "2026-12-01 11:00:00", 4)]


def produce(data: Path, events: int, start: str, seed: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "produce_events.py"), "--local",
                           str(data / "media_events"), "--data-dir", str(data), "--events", str(events), "--start",
                           start, "--hours", "1", "--seed", str(seed)], capture_output=True, text=True, timeout=120)


def generated(data: Path) -> list[dict]:
    """The events the batches generate (produce_events.events with the same arguments)."""
    customers = [line.split(",")[0] for line in (data / "media_engagement" / "media_engagement.csv").read_text()
                 .splitlines()[1:]]
    return [e for events, start, seed in BATCHES
            for e in produce_events.events(customers, events, dt.datetime.fromisoformat(start), seed, hours=1)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A copy of data/ whose media_events is partitioned (its CSV sample removed), filled by two producer runs."""
    folder = tmp_path_factory.mktemp("partitioned") / "data"
    shutil.copytree(ROOT / "data", folder)
    schema = folder / "media_events" / "schema.yaml"
    schema.write_text(schema.read_text().replace("file: media_events.csv\n", PARTITIONED))
    (folder / "media_events" / "media_events.csv").unlink()
    for events, start, seed in BATCHES:
        done = produce(folder, events, start, seed)
        assert done.returncode == 0, done.stderr
    return folder


def test_the_producer_adds_each_run_as_new_files_in_hourly_hive_partitions(data):
    folder = data / "media_events" / "events"
    files = sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*.parquet"))
    assert files == ["event_time_hour=2026-12-01-10", "event_time_hour=2026-12-01-11"]
    [first] = (folder / "event_time_hour=2026-12-01-10").glob("*.parquet")
    table = pq.read_table(first)  # one file a partition: the partition's value is in the path, not the file
    assert table.schema.names == ["customer_key", "channel", "event_time", "watch_minutes"]
    assert [str(t) for t in table.schema.types] == ["string", "string", "timestamp[us]", "int32"]
    assert pq.ParquetFile(first).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    # a third run adds a file beside the first (Firehose adds files, it does not rewrite them)
    copy = data.parent / "again"
    shutil.copytree(data, copy)
    assert produce(copy, 10, "2026-12-01 10:00:00", 9).returncode == 0
    assert len(list((copy / "media_events" / "events" / "event_time_hour=2026-12-01-10").glob("*.parquet"))) == 2
    assert validate_data(load_dataset("media_events", copy)) == 1210


def test_the_strict_loader_reads_the_folder_and_each_window_has_exactly_its_events(data):
    dataset = load_dataset("media_events", data)
    assert (dataset.partitioned_by, dataset.partition_key, dataset.format) == ("event_time", "event_time_hour",
                                                                               "parquet")
    with duckdb.connect() as con:
        assert load_into(con, dataset, "media_events") == 1200
        assert [r[0] for r in con.execute("DESCRIBE media_events").fetchall()] == dataset.column_names
        for hour in (10, 11):
            start, end = dt.datetime(2026, 12, 1, hour), dt.datetime(2026, 12, 1, hour + 1)
            rows = con.execute("SELECT channel, count(*), sum(watch_minutes) FROM media_events WHERE event_time >= ? "
                               "AND event_time < ? GROUP BY channel ORDER BY channel", [start, end]).fetchall()
            mine = [e for e in generated(data) if start <= dt.datetime.fromisoformat(e["event_time"]) < end]
            counts, minutes = Counter(e["channel"] for e in mine), Counter()
            for e in mine:
                minutes[e["channel"]] += e["watch_minutes"]
            assert rows == [(c, counts[c], minutes[c]) for c in sorted(counts)]
            assert sum(counts.values()) == {10: 300, 11: 900}[hour]


@pytest.fixture
def damaged(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    folder = copy / "media_events" / "events"
    [good] = (folder / "event_time_hour=2026-12-01-10").glob("*.parquet")
    return folder, pq.read_table(good).slice(0, 5), load_dataset("media_events", copy)


def one_problem(dataset) -> str:
    with pytest.raises(ConfigError) as info:
        validate_data(dataset)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_row_outside_its_folders_hour_is_refused_naming_the_file_and_row(damaged):
    folder, rows, dataset = damaged
    (folder / "event_time_hour=2026-12-01-12").mkdir()
    pq.write_table(rows, folder / "event_time_hour=2026-12-01-12" / "late.parquet")
    assert one_problem(dataset).endswith(
        f"{folder}/event_time_hour=2026-12-01-12/late.parquet row 1: column 'event_time' value "
        f"{rows.column('event_time')[0].as_py():%Y-%m-%d %H:%M:%S} is not in its folder's hour "
        "event_time_hour=2026-12-01-12")


def test_a_bad_value_names_the_file_in_the_folder_and_its_row(damaged):
    folder, rows, dataset = damaged
    bad = rows.set_column(1, "channel", pa.array(["web", "radio", "web", "web", "web"]))
    pq.write_table(bad, folder / "event_time_hour=2026-12-01-10" / "bad.parquet")
    assert one_problem(dataset).endswith(
        f"{folder} does not match its schema: event_time_hour=2026-12-01-10/bad.parquet row 2: column 'channel' "
        "value 'radio' is not one of its declared values ('web', 'mobile_app', 'email', 'social')")


@pytest.mark.parametrize("damage, fragment", [
    (lambda folder, rows: pq.write_table(rows.drop(["watch_minutes"]), folder / "event_time_hour=2026-12-01-10" /
                                         "x.parquet"),
     "x.parquet: Parquet columns ['customer_key', 'channel', 'event_time'] do not match the declared columns"),
    (lambda folder, rows: pq.write_table(rows.set_column(3, "watch_minutes", pa.array(range(5), pa.int64())),
                                         folder / "event_time_hour=2026-12-01-10" / "a.parquet"),
     "column 'watch_minutes' is stored as INT64, but as INT32 in"),
    (lambda folder, rows: pq.write_table(rows, folder / "loose.parquet"),
     "loose.parquet: not a Parquet file of an hour's partition of"),
    (lambda folder, rows: (folder / "event_time_hour=2026-12-01-10" / "notes.txt").write_text("x"),
     "notes.txt: not a Parquet file of an hour's partition of"),
    (lambda folder, rows: (folder / "event_time_hour=2026-12-01-1").mkdir() or pq.write_table(
        rows, folder / "event_time_hour=2026-12-01-1" / "a.parquet"), "each file is event_time_hour=yyyy-MM-dd-HH/"),
    (lambda folder, rows: shutil.rmtree(folder), "data folder named by"),
])
def test_anything_else_in_the_folder_is_one_line_naming_it(damaged, damage, fragment):
    folder, rows, dataset = damaged
    damage(folder, rows)
    assert fragment in one_problem(dataset)


def test_files_spark_and_hive_skip_are_skipped(damaged):
    folder, rows, dataset = damaged
    (folder / "_SUCCESS").write_text("")
    (folder / ".staging").mkdir()
    pq.write_table(rows.drop(["channel"]), folder / ".staging" / "half.parquet")
    assert validate_data(dataset) == 1200


@pytest.mark.parametrize("schema, fragment", [
    (PARTITIONED.replace("event_time", "channel"), "partitionedBy 'channel' must be a timestamp_ntz column"),
    (PARTITIONED.replace("events/", "events.parquet"), "file 'events.parquet' must name a folder beside schema.yaml"),
    ("file: events/\n", "file 'events/' must be a file name beside schema.yaml ending in one of ['.csv', '.parquet']; "
                        "a folder of hourly Parquet partitions ('events/') needs partitionedBy"),
])
def test_a_partitioned_schema_is_checked_in_one_line(tmp_path, schema, fragment):
    shutil.copytree(ROOT / "data" / "media_events", tmp_path / "media_events")
    path = tmp_path / "media_events" / "schema.yaml"
    path.write_text(path.read_text().replace("file: media_events.csv\n", schema))
    with pytest.raises(ConfigError) as info:
        load_dataset("media_events", tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_load_cache_reads_a_folder_every_time_and_never_hashes_it(data, tmp_path, monkeypatch):
    """localroom/cache.py keys an entry by one file's hash and trusts its stat: a folder's stat does not move
    when a file in a partition changes. So a partitioned table is read every time, never cached."""
    from localroom import cache, digests

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    dataset = load_dataset("media_events", copy)
    hashed = []
    real = digests.sha256
    monkeypatch.setattr(digests, "sha256", lambda path: hashed.append(path) or real(path))
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)  # files just written count as settled
    for expected in (1200, 1200, 1210):
        if expected == 1210:
            assert produce(copy, 10, "2026-12-01 11:00:00", 9).returncode == 0
        keys: dict = {}
        with duckdb.connect() as con:
            assert cache.load_tables(con, {"media_events": dataset}, tmp_path / "cache", keys=keys) == {
                "media_events": expected}
        assert keys == {"media_events": None}
    assert hashed == [] and not list((tmp_path / "cache").glob("*.ok")) and not list((tmp_path / "cache").glob(
        "*.duckdb"))


@pytest.fixture
def stacks(streamed_stacks, data):  # noqa: F811
    """The two stack files with org B's table streamed, its dataset partitioned; org A's one windowed template."""
    shutil.rmtree(streamed_stacks / "data" / "media_events")
    shutil.copytree(data / "media_events", streamed_stacks / "data" / "media_events")
    path = streamed_stacks / "Pulumi.org-b.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["cleanrooms-collab:stream"] = {"timeColumn": "event_time"}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return streamed_stacks


def test_two_consecutive_windows_run_over_the_partitions_each_charged_once(stacks, data, monkeypatch):
    common = ["--local", "--stacks-dir", str(stacks), "--data-dir", str(stacks / "data"), "--state-dir",
              str(stacks / "state"), "--out", str(stacks / "out"), "--seed", "1"]
    runs = []
    for now in (dt.datetime(2026, 12, 1, 11, 30, tzinfo=UTC), dt.datetime(2026, 12, 1, 12, 30, tzinfo=UTC)):
        monkeypatch.setattr("queryrunner.local.LocalApp.wall", lambda self, now=now: now)
        err = io.StringIO()
        assert main(["run", "hourly_viewers", "--window", "1h", *common], stdout=io.StringIO(), stderr=err) == 0, \
            err.getvalue()
        [record] = [json.loads(p.read_text()) for p in (stacks / "out" / "hourly_viewers").glob("*.json")
                    if json.loads(p.read_text())["run_id"] not in {r["run_id"] for r in runs}]
        runs.append(record)
    assert [(r["parameters"]["window_start"], r["parameters"]["window_end"]) for r in runs] == [
        ("2026-12-01 10:00:00", "2026-12-01 11:00:00"), ("2026-12-01 11:00:00", "2026-12-01 12:00:00")]
    events = generated(data)
    for record in runs:
        start, end = (dt.datetime.fromisoformat(record["parameters"][k]) for k in ("window_start", "window_end"))
        mine = [e for e in events if start <= dt.datetime.fromisoformat(e["event_time"]) < end]
        rows = {r["channel"]: r for r in _csv(stacks / "out" / "hourly_viewers" / f"{record['run_id']}.csv")}
        assert sorted(rows) == sorted(produce_events.CHANNELS)  # the declared groups, each released
        # Each user adds at most userContributionLimit (1) rows: the true counts add up to the window's users.
        assert record["user_contribution_limit"] == 1
        users = len({e["customer_key"] for e in mine})
        sd = float(next(iter(rows.values()))["events_noise_sd"])
        assert abs(sum(float(r["events"]) for r in rows.values()) - users) <= 4 * 2 * sd, (users, rows)
        for channel, row in rows.items():
            assert float(row["events"]) <= sum(e["channel"] == channel for e in mine) + 4 * sd
    ledger = json.loads((stacks / "state" / "org-a" / "privacy-budget.json").read_text())
    assert [(c["template"], c["run_id"]) for c in ledger["charges"]] == [
        ("hourly_viewers", r["run_id"]) for r in runs]


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_partitioned_dataset_without_a_stream_is_refused_at_preview(stacks):
    """In AWS only a streamed table is partitioned this way: an uploaded file would have no partitions."""
    from model.collaboration import load_stack

    path = stacks / "Pulumi.org-b.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"].pop("cleanrooms-collab:stream")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_stack("org-b", root=stacks, data_dir=stacks / "data")
    assert str(info.value).startswith("config 'cleanrooms-collab:dataset': media_events's data is a folder of hourly "
                                      "partitions (partitionedBy 'event_time' in its schema.yaml)")
    # Nor can it be training data (one file, which Clean Rooms ML reads whole).
    document["config"]["cleanrooms-collab:stream"] = {"timeColumn": "event_time"}
    document["config"]["cleanrooms-collab:trainingData"] = {"dataset": "media_events"}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_stack("org-b", root=stacks, data_dir=stacks / "data")
    assert str(info.value).startswith("config 'cleanrooms-collab:trainingData.dataset': media_events's data is a "
                                      "folder of hourly partitions")
    document["config"].pop("cleanrooms-collab:trainingData")
    # A stream's time column is the one the folders partition.
    schema = stacks / "data" / "media_events" / "schema.yaml"
    schema.write_text(schema.read_text() + "  - {name: seen_time, type: timestamp_ntz, role: dimension}\n")
    document["config"]["cleanrooms-collab:stream"] = {"timeColumn": "seen_time"}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_stack("org-b", root=stacks, data_dir=stacks / "data", check_data=False)
    assert str(info.value) == ("config 'cleanrooms-collab:stream.timeColumn': got 'seen_time'; the dataset "
                               "media_events's data is partitioned by 'event_time' (schema.yaml partitionedBy): use "
                               "that column")


def test_the_spark_engine_reads_the_same_partitions(data, spark):
    """--engine spark reads the folder with Spark's own partition discovery; the partition key is not a column."""
    from localroom.spark import Spark

    dataset = load_dataset("media_events", data)
    room = Spark(spark=spark)
    assert room.load({"media_events": dataset}) == {"media_events": 1200}
    assert spark.table("media_events").columns == dataset.column_names
    sql = ("SELECT channel, count(*) FROM media_events WHERE event_time >= TIMESTAMP '2026-12-01 11:00:00' "
           "GROUP BY channel ORDER BY channel")
    with duckdb.connect() as con:
        load_into(con, dataset, "media_events")
        assert room.exec(sql) == con.execute(sql).fetchall()

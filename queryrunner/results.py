"""Fetching a protected query's result from S3, printing it, saving it locally.

`result.output.s3.location` (or `result.output.distribute.s3.location` when the
result also went to member accounts) is an s3:// URI that names either one object or a
prefix holding one or more part files (the Spark engine writes several parts
unless singleFileOutput is set), so both are handled.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from queryrunner.display import format_table  # noqa: F401 (the cloud path prints with it)


class ResultsError(Exception):
    pass


@dataclass
class ResultData:
    fmt: str
    files: list[tuple[str, bytes]]            # (s3 key, content) in key order
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str | None = None                   # why no rows could be shown, if so


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ResultsError(f"result location {uri!r} is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def _is_data_key(key: str, size: int) -> bool:
    # Skip folder markers and Spark/Hadoop side files (_SUCCESS, .crc, ...).
    base = key.rsplit("/", 1)[-1]
    return size > 0 and bool(base) and not base.startswith(("_", "."))


def list_result_keys(s3, bucket: str, key: str) -> list[str]:
    if key and not key.endswith("/"):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return [key]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        key += "/"
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        keys += [obj["Key"] for obj in page.get("Contents", []) if _is_data_key(obj["Key"], obj["Size"])]
    if not keys:
        raise ResultsError(f"no result files at s3://{bucket}/{key}")
    return sorted(keys)


def download(s3, location: str) -> list[tuple[str, bytes]]:
    """The data files at ``location`` (one object, or every part under a prefix) as (key, content), in key order."""
    bucket, key = parse_s3_uri(location)
    try:
        keys = list_result_keys(s3, bucket, key)
        return [(k, s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ResultsError(f"cannot read {location}: {err.get('Code')}: {err.get('Message')}") from exc


def decode(fmt: str, files: list[tuple[str, bytes]]) -> ResultData:
    """Downloaded files of one result, read as PARQUET or CSV (header once, rows of every part)."""
    data = ResultData(fmt=fmt, files=files)
    if fmt == "PARQUET":
        _decode_parquet(data)
    else:
        _decode_csv(data)
    return data


def fetch(s3, location: str, fmt: str) -> ResultData:
    return decode(fmt, download(s3, location))


def _decode_csv(data: ResultData) -> None:
    for _, content in data.files:
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
        if not rows:
            continue
        if not data.header:
            data.header, rows = rows[0], rows[1:]
        elif rows[0] == data.header:
            rows = rows[1:]  # every part repeats the header
        data.rows.extend(rows)


def _decode_parquet(data: ResultData) -> None:
    try:
        import pyarrow.parquet as pq  # optional: only needed to *show* Parquet results
    except ImportError:
        data.note = "install pyarrow to print Parquet results; the files were saved as downloaded"
        return
    for _, content in data.files:
        table = pq.read_table(io.BytesIO(content))
        if not data.header:
            data.header = list(table.column_names)
        data.rows.extend([["" if v is None else str(v) for v in row.values()] for row in table.to_pylist()])


def save(data: ResultData, out_dir: str, template: str, query_id: str) -> list[str]:
    """Write the result under OUT/<template>/; return the paths written."""
    folder = os.path.join(out_dir, template)
    os.makedirs(folder, exist_ok=True)
    if data.fmt == "CSV":
        # One merged CSV, whatever number of parts the service wrote.
        path = os.path.join(folder, f"{query_id}.csv")
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(data.header)
            writer.writerows(data.rows)
        return [path]
    # Parquet parts are kept as they are (merging needs pyarrow).
    if len(data.files) == 1:
        paths = [os.path.join(folder, f"{query_id}.parquet")]
    else:
        paths = [os.path.join(folder, query_id, f"part-{i:05d}.parquet") for i in range(len(data.files))]
        os.makedirs(os.path.join(folder, query_id), exist_ok=True)
    for path, (_, content) in zip(paths, data.files):
        with open(path, "wb") as fh:
            fh.write(content)
    return paths


def publish(s3, bucket: str, prefix: str, data: ResultData, query_id: str) -> list[str]:
    """Make this result the only one under ``prefix`` (what the dashboard reads).

    Clean Rooms writes each run under its own folder; a dashboard reading all
    of them would count every segment once per run. New files are written
    first and the previous run's removed after, so the prefix is never empty.
    The bucket's default encryption (SSE-KMS) applies to the copies.
    """
    prefix = prefix.strip("/") + "/"
    old = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
           for obj in page.get("Contents", [])]
    new = []
    for key, content in data.files:
        target = f"{prefix}{query_id}-{key.rsplit('/', 1)[-1]}"
        s3.put_object(Bucket=bucket, Key=target, Body=content)
        new.append(target)
    stale = [k for k in old if k not in new]
    for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]]})
    return new

"""Deterministic generator for the two organizations' sample datasets.

Both organizations derive the join key the same way: a salted SHA-256 of the
customer's normalized e-mail address. Neither dataset contains the e-mail
itself, and the key only matches across the two organizations for customers
both of them know, which is what a clean room join is for.

Customer ``i`` is the same person in both datasets, so the overlap is known:
org A holds customers ``[0, a_rows)``, org B holds
``[a_rows - overlap, a_rows - overlap + b_rows)``. Attributes (age group,
region) come from a per-customer RNG so they agree across the two datasets.

Each dataset is written to ``<out>/<name>/`` as its data file (``<name>.csv``,
or ``<name>.parquet`` with typed columns under ``--format parquet``) and the
``schema.yaml`` the project declares for it (SCHEMAS below is the source of
truth for the committed ``data/<name>/schema.yaml``); ``<out>/generated.json``
records the sizes. Files are replaced only once all of them are complete.

    python scripts/generate_data.py                      # default size, data/ (with org B's 400-user training data)
    python scripts/generate_data.py --a-rows 1000000 --b-rows 800000 --overlap 500000 --out /tmp/big
    python scripts/generate_data.py --format parquet --out /tmp/pq
    python scripts/generate_data.py --c-rows 1200 --c-overlap 900 --interactions-users 0 \
        --out examples/three-orgs/data                   # + org C, no training data
    python scripts/generate_data.py --b-rows 150000 --interactions-users 100000 --out /tmp/ml   # ML minimums

Exit codes: 0 written; 2 bad input (one line on stderr naming the flag,
nothing written); 1 the files could not be written; 130 interrupted.
"""

from __future__ import annotations

import _random
import argparse
import hashlib
import json
import multiprocessing
import os
import random
import re
import signal
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# A demo salt. Real partners agree on a secret salt out of band and never put
# it in a repository; anyone with the salt can test whether an e-mail is present.
DEMO_SALT = "demo-shared-salt-2026"

AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
REGIONS = ["northeast", "midwest", "south", "west"]
PRODUCT_CATEGORIES = ["electronics", "apparel", "home", "grocery", "sports"]
CHANNELS = ["web", "mobile_app", "email", "social"]
PANEL_SEGMENTS = ["loyal", "occasional", "lapsed"]

DEFAULTS = {"a_rows": 3000, "b_rows": 2500, "overlap": 1800, "seed": 20261125, "interactions_users": 400}
FORMATS = ("csv", "parquet")

# Rows per unit of work; above PARALLEL_MIN_ROWS rows in all, the units run in
# one process per CPU. Parquet files get row groups of about ROW_GROUP_ROWS.
CHUNK_ROWS = 25_000
PARALLEL_MIN_ROWS = 200_000
ROW_GROUP_ROWS = 256 * 1024


# --- The schemas: the generator's output and the project's declaration --------

def _bound(value: float) -> str:
    """A bound as YAML reads it back exactly: whole numbers in full (an epoch time is ten digits)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a Spark SQL type Clean Rooms documents: varchar(n), integer, decimal(p,s) (model/datasets.py)
    role: str  # join_key, user_identifier, dimension, metric (model/datasets.py)
    # What differential privacy may rely on without reading the data (model/datasets.py):
    # a metric's clamping bounds, a dimension's every value (its group keys).
    bounds: tuple[float, float] | None = None
    values: tuple[str, ...] | None = None
    ml_type: str | None = None  # its Clean Rooms ML column type in training data (model/datasets.py ML_TYPES)

    def yaml(self) -> str:
        # decimal(p,s) is quoted: a bare comma would end the YAML flow mapping's value.
        parts = [f"name: {self.name}", f"type: {_yaml_type(self.type)}", f"role: {self.role}"]
        if self.bounds is not None:
            parts.append(f"bounds: [{_bound(self.bounds[0])}, {_bound(self.bounds[1])}]")
        if self.values is not None:
            parts.append("values: [" + ", ".join(json.dumps(v) for v in self.values) + "]")
        if self.ml_type is not None:
            parts.append(f"mlType: {self.ml_type}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Schema:
    name: str
    comment: str  # the leading comment lines; "{data}" names the data file's kind
    description: str
    columns: tuple[Column, ...]

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]

    def file(self, data_format: str) -> str:
        return f"{self.name}.{data_format}"

    def text(self, data_format: str = "csv") -> str:
        """schema.yaml for this dataset written as ``data_format``."""
        data = {"csv": "the CSV", "parquet": "the Parquet file"}[data_format]
        lines = [self.comment.format(data=data).rstrip("\n"),
                 f"name: {self.name}",
                 f"description: {self.description}",
                 f"file: {self.file(data_format)}",
                 "columns:"]
        lines += [f"  - {c.yaml()}" for c in self.columns]
        return "\n".join(lines) + "\n"


def _yaml_type(name: str) -> str:
    return f'"{name}"' if "," in name else name


RETAIL = Schema(
    name="retail_purchases",
    comment="""\
# Org A's dataset: one row per customer of the retailer.
# role: join_key        pseudonymous key shared with the partner; joins only, never output
#       user_identifier identifies a person (differential privacy protects it); never output
#       dimension       may be grouped by and shown
#       metric          may only be aggregated
# type: a Spark SQL type the Clean Rooms data-format page lists (varchar(n), integer,
#       decimal(p,s), ...); {data} is checked against it before anything deploys.
# bounds: [low, high] of a metric: what differential privacy clamps it to, so the noise
#       never depends on the data (decimal(p,s) defaults to its type's range).
# values: every value a dimension can hold: the groups a differentially private query may
#       show without selecting them from the data; {data} may hold no other value.
""",
    description="Retail customers with their total purchases (salted SHA-256 e-mail key).",
    columns=(
        Column("customer_key", "varchar(64)", "join_key"),
        Column("age_group", "varchar(8)", "dimension", values=tuple(AGE_GROUPS)),
        Column("region", "varchar(16)", "dimension", values=tuple(REGIONS)),
        Column("product_category", "varchar(16)", "dimension", values=tuple(PRODUCT_CATEGORIES)),
        Column("order_count", "integer", "metric", bounds=(0, 50)),
        Column("purchase_amount", "decimal(10,2)", "metric", bounds=(0, 5000)),
    ),
)

MEDIA = Schema(
    name="media_engagement",
    comment="""\
# Org B's dataset: one row per customer of the media company.
# Roles and types as documented in ../retail_purchases/schema.yaml.
""",
    description="Media customers with their engagement (salted SHA-256 e-mail key).",
    columns=(
        Column("customer_key", "varchar(64)", "join_key"),
        Column("age_group", "varchar(8)", "dimension", values=tuple(AGE_GROUPS)),
        Column("region", "varchar(16)", "dimension", values=tuple(REGIONS)),
        Column("channel", "varchar(16)", "dimension", values=tuple(CHANNELS)),
        Column("sessions", "integer", "metric", bounds=(0, 250)),
        Column("engagement_score", "decimal(5,2)", "metric", bounds=(0, 100)),
    ),
)

SURVEY = Schema(
    name="survey_panel",
    comment="""\
# Org C's dataset (examples/three-orgs): one row per member of the measurement
# provider's survey panel. Roles and types as documented in ../retail_purchases/schema.yaml.
""",
    description="Survey panel members with their brand awareness and satisfaction (salted SHA-256 e-mail key).",
    columns=(
        Column("customer_key", "varchar(64)", "join_key"),
        Column("panel_segment", "varchar(16)", "dimension", values=tuple(PANEL_SEGMENTS)),
        Column("brand_aware", "varchar(4)", "dimension", values=("yes", "no")),
        Column("satisfaction", "integer", "metric", bounds=(0, 10)),
    ),
)

GENRES = ["news", "sports", "drama", "comedy", "documentary", "kids"]
# Event times: seconds since the Unix epoch ("Values must be in the Unix epoch time in seconds
# format", ml-training-data-requirements), within the 90 days before this instant.
INTERACTIONS_END = 1_764_547_200  # 2025-12-01T00:00:00Z
INTERACTIONS = Schema(
    name="media_interactions",
    comment="""\
# Org B's training data for Clean Rooms ML lookalike models: one row per interaction of a
# media customer with a content item. mlType marks the training schema (model/training.py):
# USER_ID is the join key, so a seed of org A's customers means the same people.
""",
    description="Media customers' interactions with content items (training data for lookalike models).",
    columns=(
        Column("customer_key", "varchar(64)", "join_key", ml_type="USER_ID"),
        Column("item_id", "varchar(16)", "dimension", ml_type="ITEM_ID"),
        Column("event_time", "bigint", "metric", bounds=(INTERACTIONS_END - 90 * 86400, INTERACTIONS_END),
               ml_type="TIMESTAMP"),
        Column("genre", "varchar(16)", "dimension", values=tuple(GENRES), ml_type="CATEGORICAL_FEATURE"),
        Column("watch_minutes", "integer", "metric", bounds=(0, 600), ml_type="NUMERICAL_FEATURE"),
    ),
)

SCHEMAS = (RETAIL, MEDIA)
# The third organization's dataset, written only with --c-rows (examples/three-orgs).
THIRD = SURVEY


# --- What a row is (the definition; _chunk below computes the same, faster) ---

def customer_key(index: int, salt: str = DEMO_SALT) -> str:
    email = f"customer{index:08d}@example.com".strip().lower()
    return hashlib.sha256((salt + email).encode("utf-8")).hexdigest()


def _person(index: int, seed: int) -> tuple[str, str]:
    rng = random.Random(f"{seed}-person-{index}")
    return rng.choice(AGE_GROUPS), rng.choice(REGIONS)


def retail_rows(a_rows: int, seed: int):
    for i in range(a_rows):
        age_group, region = _person(i, seed)
        rng = random.Random(f"{seed}-retail-{i}")
        orders = rng.randint(1, 40)
        yield {
            "customer_key": customer_key(i),
            "age_group": age_group,
            "region": region,
            "product_category": rng.choice(PRODUCT_CATEGORIES),
            "order_count": orders,
            "purchase_amount": f"{orders * rng.uniform(8.0, 120.0):.2f}",
        }


def engagement_rows(a_rows: int, b_rows: int, overlap: int, seed: int):
    first = a_rows - overlap
    for i in range(first, first + b_rows):
        age_group, region = _person(i, seed)
        rng = random.Random(f"{seed}-media-{i}")
        yield {
            "customer_key": customer_key(i),
            "age_group": age_group,
            "region": region,
            "channel": rng.choice(CHANNELS),
            "sessions": rng.randint(1, 200),
            "engagement_score": f"{rng.uniform(0.0, 100.0):.2f}",
        }


def survey_rows(a_rows: int, c_rows: int, c_overlap: int, seed: int):
    """Org C's panel: customers [a_rows - c_overlap, a_rows - c_overlap + c_rows), so c_overlap of
    them are org A's customers (and, like org B's, they start just below a_rows: some are B's too).
    Small by design (a survey panel); rows made one by one, not on the fast path below."""
    first = a_rows - c_overlap
    for i in range(first, first + c_rows):
        rng = random.Random(f"{seed}-survey-{i}")
        yield (customer_key(i), rng.choice(PANEL_SEGMENTS), rng.choice(("yes", "no")), rng.randint(0, 10))


def interaction_rows(a_rows: int, overlap: int, users: int, seed: int):
    """Org B's interactions: its first ``users`` customers (from a_rows - overlap on, so many are org A's
    too), each with 2 to 20 interactions (mean 11: 100,000 users make about 1.1 million records, above
    Clean Rooms ML's minimums). Each customer leans to one genre, so a lookalike model has something to
    learn."""
    first = a_rows - overlap
    for i in range(first, first + users):
        rng = random.Random(f"{seed}-interactions-{i}")
        key, favourite = customer_key(i), rng.choice(GENRES)
        for _ in range(rng.randint(2, 20)):
            genre = favourite if rng.random() < 0.7 else rng.choice(GENRES)
            item = f"{genre[:3]}-{rng.randint(0, 199):04d}"
            yield (key, item, INTERACTIONS_END - rng.randint(0, 90 * 86400), genre, rng.randint(1, 120))


# --- The fast path ------------------------------------------------------------
#
# Seeding a Mersenne Twister from a string is most of the cost of a row, so
# _chunk does exactly what the functions above do with less around it: one
# Random object re-seeded through the C seeding that random.Random.seed ends
# in (with the same SHA-512 expansion of the string), choice and randint as
# the getrandbits rejection loops of Random._randbelow, each customer's key
# and person computed once for both datasets, and rows formatted without the
# csv module (no value needs quoting). tests/test_generate_data.py holds it
# to the definition above, byte for byte.

def _chunk(lo: int, hi: int, a_rows: int, first: int, seed: int, data_format: str):
    """Customers [lo, hi): (retail part, retail rows, media part, media rows)."""
    rng = random.Random(0)
    reseed = _random.Random.seed  # what random.Random.seed(str) calls, after its SHA-512 step
    bits, uniform01 = rng.getrandbits, rng.random
    sha512, sha256, to_int = hashlib.sha512, hashlib.sha256, int.from_bytes
    ages, n_ages, k_ages = AGE_GROUPS, len(AGE_GROUPS), len(AGE_GROUPS).bit_length()
    regions, n_regions, k_regions = REGIONS, len(REGIONS), len(REGIONS).bit_length()
    cats, n_cats, k_cats = PRODUCT_CATEGORIES, len(PRODUCT_CATEGORIES), len(PRODUCT_CATEGORIES).bit_length()
    chans, n_chans, k_chans = CHANNELS, len(CHANNELS), len(CHANNELS).bit_length()
    k_orders, k_sessions = (40).bit_length(), (200).bit_length()  # randint(1, 40), randint(1, 200)
    person_p, retail_p, media_p = f"{seed}-person-", f"{seed}-retail-", f"{seed}-media-"
    retail, media = [], []
    for i in range(lo, hi):
        key = sha256(f"{DEMO_SALT}customer{i:08d}@example.com".encode()).hexdigest()
        s = (person_p + str(i)).encode()
        reseed(rng, to_int(s + sha512(s).digest(), "big"))
        r = bits(k_ages)
        while r >= n_ages:
            r = bits(k_ages)
        age = ages[r]
        r = bits(k_regions)
        while r >= n_regions:
            r = bits(k_regions)
        region = regions[r]
        if i < a_rows:
            s = (retail_p + str(i)).encode()
            reseed(rng, to_int(s + sha512(s).digest(), "big"))
            r = bits(k_orders)
            while r >= 40:
                r = bits(k_orders)
            orders = 1 + r
            r = bits(k_cats)
            while r >= n_cats:
                r = bits(k_cats)
            retail.append((key, age, region, cats[r], orders,
                           f"{orders * (8.0 + (120.0 - 8.0) * uniform01()):.2f}"))
        if i >= first:
            s = (media_p + str(i)).encode()
            reseed(rng, to_int(s + sha512(s).digest(), "big"))
            r = bits(k_chans)
            while r >= n_chans:
                r = bits(k_chans)
            channel = chans[r]
            r = bits(k_sessions)
            while r >= 200:
                r = bits(k_sessions)
            media.append((key, age, region, channel, 1 + r,
                          f"{0.0 + (100.0 - 0.0) * uniform01():.2f}"))
    return _encode(retail, RETAIL, data_format), len(retail), _encode(media, MEDIA, data_format), len(media)


def _encode(rows: list[tuple], schema: Schema, data_format: str):
    """CSV text, or an Arrow record batch with the schema's types."""
    if data_format == "csv":
        line = ",".join("%d" if c.type in ("integer", "bigint") else "%s" for c in schema.columns) + "\n"
        return "".join([line % row for row in rows])
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [()] * len(schema.columns)
    arrow = _arrow_schema(schema)
    arrays = [pa.array([Decimal(v) for v in values] if c.type.startswith("decimal") else values,
                       arrow.field(c.name).type)
              for c, values in zip(schema.columns, columns)]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow)


def _arrow_schema(schema: Schema):
    import pyarrow as pa

    def arrow_type(name: str):
        if name == "integer":
            return pa.int32()
        if name == "bigint":
            return pa.int64()
        if name.startswith("decimal("):
            precision, scale = (int(n) for n in name[len("decimal("):-1].split(","))
            return pa.decimal128(precision, scale)
        return pa.string()  # varchar(n)

    return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in schema.columns])


def _ignore_sigint() -> None:  # workers: the parent handles Ctrl-C and stops them
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parts(a_rows: int, b_rows: int, overlap: int, seed: int, data_format: str, workers: int, chunk_rows: int):
    """_chunk's results for every customer of either dataset, in order."""
    first = a_rows - overlap
    ranges = [(lo, min(lo + chunk_rows, first + b_rows)) for lo in range(0, first + b_rows, chunk_rows)]
    if workers <= 1 or len(ranges) <= 1:
        for lo, hi in ranges:
            yield _chunk(lo, hi, a_rows, first, seed, data_format)
        return
    pool = ProcessPoolExecutor(min(workers, len(ranges)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)
    try:
        todo = iter(ranges)
        pending = deque(pool.submit(_chunk, lo, hi, a_rows, first, seed, data_format)
                        for lo, hi in islice(todo, 2 * workers))
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following:
                pending.append(pool.submit(_chunk, *following, a_rows, first, seed, data_format))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Sink:
    """A data file written beside its final name and moved there by commit()."""

    def __init__(self, path: Path, schema: Schema, data_format: str):
        self.path, self.format = path, data_format
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        if data_format == "csv":
            self.handle = self.partial.open("w", newline="", encoding="utf-8")
            self.handle.write(",".join(schema.header) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.pa, self.buffer, self.buffered = pa, [], 0
            self.handle = pq.ParquetWriter(self.partial, _arrow_schema(schema))

    def write(self, part) -> None:
        if self.format == "csv":
            self.handle.write(part)
            return
        if part.num_rows:
            self.buffer.append(part)
            self.buffered += part.num_rows
        if self.buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.handle.write_table(self.pa.Table.from_batches(self.buffer), row_group_size=ROW_GROUP_ROWS)
            self.buffer, self.buffered = [], 0

    def close(self) -> None:
        if self.format == "parquet":
            self._flush()
        self.handle.close()

    def commit(self) -> None:
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        try:
            self.handle.close()
        except Exception:  # already closed, or the disk is the problem: the file goes anyway
            pass
        self.partial.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_bytes(text.encode("utf-8"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


# --- Input checks: one line naming the flag, before anything is written -------

class UsageError(ValueError):
    """Bad input: main() prints it as one line and exits 2, having written nothing."""


def _check_whole(flag: str, value, minimum: int, why: str = "") -> None:
    if type(value) is not int or value < minimum:
        raise UsageError(f"{flag} must be a whole number >= {minimum}{why}, got {value!r}")


def check_inputs(a_rows, b_rows, overlap, seed, out, data_format="csv", c_rows=0, c_overlap=0,
                 interactions_users=0) -> None:
    """Raise UsageError naming the first bad input; write nothing."""
    _check_whole("--a-rows", a_rows, 1, " (at least one row per organization)")
    _check_whole("--b-rows", b_rows, 1, " (at least one row per organization)")
    most = min(a_rows, b_rows)
    if type(overlap) is not int or not 0 <= overlap <= most:
        raise UsageError(f"--overlap must be a whole number between 0 and min(--a-rows, --b-rows) = {most}, "
                         f"got {overlap!r}")
    _check_whole("--seed", seed, 0)
    _check_whole("--c-rows", c_rows, 0, " (0: no third organization)")
    if type(c_overlap) is not int or not 0 <= c_overlap <= min(a_rows, c_rows):
        raise UsageError(f"--c-overlap must be a whole number between 0 and min(--a-rows, --c-rows) = "
                         f"{min(a_rows, c_rows)}, got {c_overlap!r}")
    if type(interactions_users) is not int or not 0 <= interactions_users <= b_rows:
        raise UsageError(f"--interactions-users must be a whole number between 0 and --b-rows = {b_rows} (org B's "
                         f"customers who interact; 0: no training data), got {interactions_users!r}")
    if data_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {data_format!r}")
    _check_out(out, data_format)


def _check_out(out, data_format: str) -> None:
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise UsageError(f"--out must name a directory, got {str(out)!r}")
    out = Path(out)
    bad = "--out must be a directory or a path that can be created"
    if os.path.lexists(out):
        if not out.is_dir():
            raise UsageError(f"{bad}: {str(out)!r} exists and is not a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{bad}: {str(out)!r} is not writable")
        # Every path the run writes must be free for a file (or, for the
        # datasets' folders, a directory): a folder named like a data file
        # would otherwise stop the run half way.
        paths = [(out / "generated.json", False)]
        for schema in (*SCHEMAS, THIRD):
            folder = out / schema.name
            paths += [(folder, True), (folder / schema.file(data_format), False), (folder / "schema.yaml", False)]
        for path, is_folder in paths:
            if os.path.lexists(path) and path.is_dir() != is_folder:
                kind = "is not a directory" if is_folder else "is a directory"
                raise UsageError(f"--out {str(out)!r} cannot be written: {str(path)!r} {kind}")
        return
    ancestor = out.absolute().parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{bad}: {str(ancestor)!r} is not a directory, so {str(out)!r} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{bad}: {str(out)!r} cannot be created in {str(ancestor)!r} (not writable)")


# --- Writing ------------------------------------------------------------------

def _auto_workers(rows: int) -> int:
    if rows < PARALLEL_MIN_ROWS:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def generate(a_rows: int, b_rows: int, overlap: int, seed: int, out: Path = DATA_DIR,
             data_format: str = "csv", *, workers: int | None = None, chunk_rows: int = CHUNK_ROWS,
             c_rows: int = 0, c_overlap: int = 0, interactions_users: int = 0) -> dict:
    """Write both datasets, their schema.yaml and generated.json under ``out``; return the summary.

    Raises UsageError (before writing anything) for bad input. Above
    PARALLEL_MIN_ROWS rows (or with ``workers`` > 1) the rows are made in
    worker processes started with "spawn", so a script calling this needs the
    ``if __name__ == "__main__":`` guard. The output does not depend on
    ``workers`` or ``chunk_rows``.
    """
    check_inputs(a_rows, b_rows, overlap, seed, out, data_format, c_rows, c_overlap, interactions_users)
    out = Path(out)
    if workers is None:
        workers = _auto_workers(a_rows + b_rows)
    schemas = (*SCHEMAS, *((THIRD,) if c_rows else ()), *((INTERACTIONS,) if interactions_users else ()))
    folders = [out / schema.name for schema in schemas]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    sinks: list[_Sink] = []
    try:
        for folder, schema in zip(folders, schemas):
            sinks.append(_Sink(folder / schema.file(data_format), schema, data_format))
        a_count = b_count = 0
        with closing(_parts(a_rows, b_rows, overlap, seed, data_format, workers, chunk_rows)) as parts:
            for retail, n_retail, media, n_media in parts:
                sinks[0].write(retail)
                sinks[1].write(media)
                a_count, b_count = a_count + n_retail, b_count + n_media
        if c_rows:
            sinks[2].write(_encode(list(survey_rows(a_rows, c_rows, c_overlap, seed)), THIRD, data_format))
        if interactions_users:
            rows = list(interaction_rows(a_rows, overlap, interactions_users, seed))
            sinks[-1].write(_encode(rows, INTERACTIONS, data_format))
            interaction_count = len(rows)
        for sink in sinks:
            sink.close()
        for sink in sinks:
            sink.commit()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    for folder, schema in zip(folders, schemas):
        _write_text(folder / "schema.yaml", schema.text(data_format))
    summary = {"seed": seed, "retail_purchases_rows": a_count,
               "media_engagement_rows": b_count, "overlapping_customers": overlap}
    if c_rows:
        summary.update(survey_panel_rows=c_rows, survey_overlap_with_retail=c_overlap)
    if interactions_users:
        summary.update(media_interactions_users=interactions_users, media_interactions_rows=interaction_count)
    _write_text(out / "generated.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _number(text: str):
    """The flag's text as an int if it is a whole number (digits, optionally grouped with _);
    otherwise the text itself, for check_inputs to refuse by the flag's name."""
    return int(text) if re.fullmatch(r"-?[0-9]+(?:_[0-9]+)*", text) else text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own refusals, as one line (exit 2 in main)
        raise UsageError(f"{' '.join(message.split())} (see --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="generate_data.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--a-rows", default=str(DEFAULTS["a_rows"]),
                        help="rows in org A's retail_purchases, >= 1 (default %(default)s)")
    parser.add_argument("--b-rows", default=str(DEFAULTS["b_rows"]),
                        help="rows in org B's media_engagement, >= 1 (default %(default)s)")
    parser.add_argument("--overlap", default=str(DEFAULTS["overlap"]),
                        help="customers present in both, 0 to min(--a-rows, --b-rows) (default %(default)s)")
    parser.add_argument("--seed", default=str(DEFAULTS["seed"]), help="integer >= 0 (default %(default)s)")
    parser.add_argument("--c-rows", default="0",
                        help="rows in a third organization's survey_panel (examples/three-orgs), "
                             "0 for none (default)")
    parser.add_argument("--c-overlap", default="0",
                        help="of those, customers org A has too, 0 to min(--a-rows, --c-rows) (default 0)")
    parser.add_argument("--interactions-users", default=None,
                        help="org B customers in media_interactions, its Clean Rooms ML training data (2-20 "
                             "interactions each; 100000 meets the service's minimums), 0 for none "
                             f"(default {DEFAULTS['interactions_users']}, or --b-rows if fewer)")
    parser.add_argument("--format", default="csv", metavar="{csv,parquet}",
                        help="data file format; parquet has typed columns (default csv)")
    parser.add_argument("--out", default=str(DATA_DIR),
                        help="folder to write <dataset>/ and generated.json into (default: the project's data/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        numbers = [_number(text) for text in (args.a_rows, args.b_rows, args.overlap, args.seed)]
        users = (_number(args.interactions_users) if args.interactions_users is not None else
                 min(DEFAULTS["interactions_users"], numbers[1]) if isinstance(numbers[1], int) else 0)
        third = {"c_rows": _number(args.c_rows), "c_overlap": _number(args.c_overlap), "interactions_users": users}
        check_inputs(*numbers, args.out, args.format, **third)
        stale = [path for schema in SCHEMAS for other in FORMATS if other != args.format
                 for path in [Path(args.out) / schema.name / schema.file(other)] if path.exists()]
        summary = generate(*numbers, Path(args.out), args.format, **third)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write the data: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    for path in stale:
        print(f"note: {path} was left as it was; schema.yaml now names {path.stem}.{args.format}",
              file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local clean room on Spark: `python -m queryrunner run --local --engine spark`.

AWS Clean Rooms runs analysis templates on Spark (the PYSPARK_1_0 runtime:
Python 3.11 and Spark 3.5, User Guide). DuckDB is the local room's default
engine because it starts in milliseconds; this backend runs the same plan
(localroom/engine.py: the same validation, thresholds, noise and ledger) on
PySpark 3.5, so a template that only DuckDB accepts, or that returns other
types on Spark, shows up before a deploy. Spark runs in this process's JVM
(``local[*]``) or on an existing cluster given by its master URL.

- Tables: each data file is first checked by the project's DuckDB data check
  (model.datasets.validate_data, so a bad file is reported exactly as with
  DuckDB), then read by Spark's own CSV reader with the declared schema
  (FAILFAST) or its Parquet reader, cached, and registered as a temporary
  view named by the association name.
- SQL: sqlglot writes the plan in the ``spark`` dialect; parameters stay named
  markers (``:name``) bound by ``spark.sql(query, args=...)`` as typed values.
- Results: Arrow record batches straight from the JVM (what PySpark 4's
  ``DataFrame.toArrow()`` does; 3.5 has it as ``_collect_as_arrow()``), so
  decimal precision, integer columns with nulls and timestamps keep their
  types. pandas is not used: with pandas installed, pyarrow imports it on its
  first array (about 0.2 s), which would slow every DuckDB run in the same venv.
  The noisy parts go back to Spark as rows with the matching Spark schema.

Importing this module does not import pyspark: ``require()`` says how to
install it, ``check_master()`` judges a master URL without starting Spark.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from localroom.engine import RunFailed, used_params
from model.datasets import Dataset, validate_data
from model.errors import ConfigError

DEFAULT_MASTER = "local[*]"
APP_NAME = "localroom"
INSTALL_HINT = "venv/bin/pip install -r requirements-spark.txt"
# The timestamp layout the data check reads (model.datasets.CSV_TIMESTAMP_FORMAT), as a Spark pattern:
# 1 to 6 fraction digits.
CSV_TIMESTAMP_PATTERN = "yyyy-MM-dd HH:mm:ss.SSSSSS"

_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?"
                     r"|local-cluster\[[1-9]\d*,[1-9]\d*,[1-9]\d*\]"
                     r"|spark://[^\s/:,]+:\d{1,5}(,[^\s/:,]+:\d{1,5})*"
                     r"|yarn|k8s://\S+|mesos://\S+)$")
# The JVM's own log lines (start-up banner, task failures with Java stack traces) are not for the
# terminal: a failure reaches the user as one line through RunFailed or ConfigError.
_LOG4J2 = """\
# Spark's start-up notice is printed unless the root level is the shell's (WARN); session() then
# lowers it to FATAL before the first job.
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
"""


class SparkUnavailable(Exception):
    """PySpark cannot be imported (exit 2: install requirements-spark.txt)."""


class SparkStartFailed(Exception):
    """The master does not answer or the JVM does not start (exit 1, nothing run)."""


def require() -> str:
    """PySpark's version, or SparkUnavailable with the install command."""
    try:
        import pyspark
    except ImportError:
        raise SparkUnavailable(f"--engine spark needs PySpark 3.5, which is not installed: {INSTALL_HINT}") from None
    return pyspark.__version__


def check_master(url: str) -> str | None:
    """None when ``url`` is a Spark master URL, else why not."""
    if _MASTER.match(url):
        return None
    return (f"--spark-master {url!r} is not a Spark master URL (local, local[N], local[*], spark://HOST:PORT, "
            "yarn, k8s://...)")


def is_local(master: str) -> bool:
    return master.startswith("local")


def on_loopback(master: str) -> bool:
    """spark://HOST:PORT[,...] with every master on loopback (127.x, localhost): its workers run on this machine."""
    return master.startswith("spark://") and all(
        address.startswith("127.") or address.rsplit(":", 1)[0] == "localhost"
        for address in master[len("spark://"):].split(","))


def probe(master: str, timeout: float = 5.0) -> None:
    """For spark://HOST:PORT[,HOST:PORT]: SparkStartFailed unless one of the masters accepts a connection.

    Spark itself would retry registering with an absent master for a minute
    before giving up; a refused or timed-out connection is reported at once.
    """
    if not master.startswith("spark://"):
        return
    problems = []
    for address in master[len("spark://"):].split(","):
        host, port = address.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as exc:
            problems.append(f"{address}: {exc.strerror or exc}")
    raise SparkStartFailed(f"--spark-master {master}: no Spark master answers ({'; '.join(problems)})")


def _partitions(master: str) -> int:
    """Shuffle partitions for a local master: one per core it uses (Spark's default of 200 is for clusters)."""
    found = re.match(r"local\[(\*|\d+)", master)
    if not found:
        return 1
    return (os.cpu_count() or 2) if found.group(1) == "*" else int(found.group(1))


def _log_config() -> str:
    path = Path(tempfile.gettempdir()) / "localroom-spark-log4j2.properties"
    if not path.is_file() or path.read_text(encoding="utf-8") != _LOG4J2:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".localroom-log4j2")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_LOG4J2)
        os.replace(tmp, path)
    return str(path)


def session(master: str = DEFAULT_MASTER, extra: dict[str, str] | None = None):
    """The SparkSession for ``master``: the running one when it has that master, else a new one.

    Settings: no web UI and no progress bars, session time zone UTC (the
    local room's timestamps are UTC, as DuckDB's TIMESTAMP), and for a local
    master few shuffle partitions.
    """
    from py4j.protocol import Py4JError
    from pyspark import SparkContext
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    running = SparkContext._active_spark_context  # one per JVM, whichever thread started it
    if running is not None and running.master != master:
        running.stop()
    conf = {"spark.app.name": APP_NAME, "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.sql.session.timeZone": "UTC",
            # Nothing is persisted, but Spark creates its warehouse folder in the working
            # directory (the project) otherwise.
            "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "localroom-spark-warehouse"),
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{_log_config()}"}
    if is_local(master):
        conf.update({"spark.sql.shuffle.partitions": str(_partitions(master)),
                     "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    elif on_loopback(master):  # executors on this machine reach the driver on loopback, whatever the hostname is
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    for key, value in (extra or {}).items():
        conf[key] = f"{conf[key]} {value}" if key.endswith("extraJavaOptions") and key in conf else value
    builder = SparkSession.builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except (PySparkException, Py4JError, OSError) as exc:  # no JVM (no Java, ...), or the master was refused
        hint = " (Spark 3.5 needs Java 8, 11 or 17 on the PATH or in JAVA_HOME)" if "JAVA_GATEWAY" in str(exc) else ""
        raise SparkStartFailed(f"Spark did not start with master {master}: {message(exc)}{hint}") from None
    spark.sparkContext.setLogLevel("FATAL")
    return spark


def message(exc: BaseException) -> str:
    """One line for a Spark failure: the error class and message, not the JVM stack."""
    java = getattr(exc, "java_exception", None)
    if java is not None:  # Py4JJavaError: a failed job; its most specific cause says what went wrong
        text = ""
        while java is not None:
            current = java.getMessage()
            if current:
                text = f"{java.getClass().getSimpleName()}: {current}"
                if re.match(r"\s*\[[A-Z_.]+\]", current):  # a Spark error class: the clearest message
                    text = current
                    break
            java = java.getCause()
    else:
        text = str(exc)
    first = next((line.strip() for line in text.strip().splitlines() if line.strip()), type(exc).__name__)
    # "; line 1 pos 190" points into the generated SQL, not into the template file
    return re.sub(r";?\s*line \d+ pos \d+;?$", "", first).rstrip(";")


def _spark_type(glue: str) -> str:
    """The Spark SQL type of a Glue/Hive column type (model.datasets.column_type)."""
    # Spark reads varchar(n)/char(n) as STRING (a reader schema may not hold them); the data check
    # already refused longer values.
    if glue.startswith(("varchar", "char")):
        return "STRING"
    return glue.upper()


class Spark:
    """A localroom.engine backend running the plan on a SparkSession."""

    dialect = "spark"

    def __init__(self, master: str = DEFAULT_MASTER, spark=None):
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        self.errors = (PySparkException, Py4JError)
        self.master = master
        self.spark = spark if spark is not None else session(master)
        self.version = self.spark.version

    # -- tables ---------------------------------------------------------------
    def load(self, tables: dict[str, Dataset]) -> dict[str, int]:
        for dataset in tables.values():  # the same check and messages as --engine duckdb, before Spark reads
            validate_data(dataset)
        rows = {}
        for alias, dataset in tables.items():
            self.spark.catalog.dropTempView(alias)  # and uncache what an earlier room loaded under that name
            try:
                frame = self._read(dataset).cache()
                rows[alias] = frame.count()  # reads (and caches) every column: FAILFAST fails here
            except self.errors as exc:
                raise ConfigError("dataset", f"{dataset.data_path}: Spark could not read it: {message(exc)}") from None
            frame.createOrReplaceTempView(alias)
        return rows

    def _read(self, dataset: Dataset):
        columns = [(c.name, _spark_type(c.glue_type)) for c in dataset.columns]
        uri = dataset.data_path.resolve().as_uri()
        if dataset.format == "parquet":
            return self.spark.read.parquet(uri).selectExpr(
                *(f"CAST(`{name}` AS {kind}) AS `{name}`" for name, kind in columns))
        schema = ", ".join(f"`{name}` {kind}" for name, kind in columns)
        return (self.spark.read.schema(schema)
                .options(header="true", sep=",", quote='"', escape='"', mode="FAILFAST",
                         timestampFormat=CSV_TIMESTAMP_PATTERN, dateFormat="yyyy-MM-dd")
                .csv(uri))

    def rows_per_key(self, table: str, column: str) -> int:
        """The most rows any one value of ``table.column`` has."""
        quoted = "`" + column.replace("`", "``") + "`"
        return self.scalar(f"SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM `{table}` "
                           f"WHERE {quoted} IS NOT NULL GROUP BY {quoted}) AS __keys", {})

    # -- SQL --------------------------------------------------------------------
    def frame(self, sql: str, params: dict[str, Any] | None):
        """A DataFrame of ``sql`` with its ``:name`` markers bound to typed values (never spliced)."""
        args = used_params(sql, self.dialect, params)
        for name, value in args.items():
            if isinstance(value, dt.time):
                raise RunFailed(f"parameter '{name}' is a TIME, and Spark 3.5 has no TIME type", read_data=False)
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                # PySpark makes a naive datetime an instant in this process's local time zone (time.mktime in
                # its py4j converter), which the session (UTC) then shows shifted by the machine's offset: a
                # TIMESTAMP '2026-01-01 10:00:00' was 15:00 under TZ=America/New_York. Naive is UTC here, as
                # DuckDB binds it and as register() below reads the parts.
                args[name] = value.replace(tzinfo=dt.UTC)
        return self.spark.sql(sql, args=args or None)

    def sql(self, sql: str, params: dict[str, Any]) -> pa.Table:
        return to_arrow(self.frame(sql, params))

    def scalar(self, sql: str, params: dict[str, Any]) -> Any:
        return self.frame(sql, params).first()[0]

    def exec(self, sql: str, params: dict[str, Any] | None = None) -> list:
        return [tuple(row) for row in self.frame(sql, params).collect()]

    def materialize(self, name: str, sql: str, params: dict[str, Any]) -> None:
        """A cached temporary view (Spark has no temp tables): both passes read the join once."""
        self.frame(sql, params).cache().createOrReplaceTempView(name)

    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def register(self, name: str, table: pa.Table) -> None:
        """``table`` as a temporary view (the parts: one row per output row, so rows are cheap enough)."""
        utc = [pa.types.is_timestamp(f.type) for f in table.schema]
        rows = [tuple(v.replace(tzinfo=dt.UTC) if aware and v is not None else v  # naive = UTC
                      for v, aware in zip(row, utc))
                for row in zip(*(column.to_pylist() for column in table.columns))]
        self.spark.createDataFrame(rows, schema=spark_schema(table.schema), verifySchema=False) \
            .createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def message(self, exc: BaseException) -> str:
        return message(exc)

    def before_data(self, exc: BaseException) -> bool:
        """Whether Spark refused the SQL while parsing or analysing it (spark.sql analyses eagerly)."""
        from pyspark.errors import AnalysisException

        return isinstance(exc, AnalysisException)


def to_arrow(frame) -> pa.Table:
    """A DataFrame as a pyarrow table with its Spark schema's types.

    As DuckDB gives them: timestamps naive (in the session time zone, UTC), every column nullable.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    spark_arrow = to_arrow_schema(frame.schema)
    wanted = pa.schema([pa.field(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type)
                        for f in spark_arrow])
    if hasattr(frame, "toArrow"):  # PySpark 4
        table = frame.toArrow()
    else:
        batches = frame._collect_as_arrow()
        table = pa.Table.from_batches(batches) if batches else spark_arrow.empty_table()
    return table.cast(wanted)


def spark_schema(schema: pa.Schema):
    """The Spark schema of a pyarrow table (naive timestamps as Spark's TIMESTAMP, session time zone UTC)."""
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType, TimestampNTZType, TimestampType

    fields = []
    for field in schema:
        kind = from_arrow_type(field.type)
        fields.append(StructField(field.name, TimestampType() if isinstance(kind, TimestampNTZType) else kind, True))
    return StructType(fields)

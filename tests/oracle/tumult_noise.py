"""Tumult Analytics' noise scale for the local clean room's aggregates: an independent oracle.

Run with the separate virtualenv (bash scripts/setup-tumult; requirements-tumult.txt says why
it is separate), never imported by the test suite:

    venv-tumult/bin/python tests/oracle/tumult_noise.py < cases.json

stdin: a JSON list of cases, each
    {"kind": "COUNT" | "COUNT_DISTINCT" | "SUM" | "AVG" | "STDDEV" | "VARIANCE",
     "grouped": bool, "bounds": [low, high] or null, "contribution_limit": L,
     "rho": the zCDP budget of this one aggregate,
     "distinct_user": bool (COUNT_DISTINCT of the privacy-id column itself, else of another column),
     "integer_column": bool (optional, default false: the measure column is DECIMAL),
     "group_constraints": bool (optional, default true: see below; false: MaxRowsPerID alone)}
stdout: a JSON list, one entry a case in the same order: the list of noise parts Tumult adds,
    [{"part": "count" | "sum" | "sum of squares", "column": Tumult's column name for it,
      "mechanism": "GAUSSIAN" | "DISCRETE_GAUSSIAN" | ..., "noise_parameter": what Tumult reports
      (sigma^2 for both Gaussians), "sigma": its square root, "sensitivity": the L2 distance Tumult
      feeds that noise (its d_in, after truncation and aggregation), "rho": the part's share}]

Every number comes from Tumult's own objects: `Session._noise_info(query, budget)` gives the
mechanisms and noise parameters, and the same compilation's measurement (captured on its way
into `_noise_from_measurement`) is walked with its own stability and privacy functions to name
each part and give its sensitivity and budget share. The two are checked against each other.

The session protects AddRowsWithID("user"), the query enforces MaxRowsPerID(L) and, when
grouped, also MaxGroupsPerID("grp", min(L, keys)) and MaxRowsPerGroupPerID("grp", L): both follow
from "at most L rows per user", and Tumult truncates with whichever set gives the smaller bound
(for grouped COUNT_DISTINCT of the id column the groups, sqrt(min(L, keys)) instead of L; for the
rest MaxRowsPerID, L, or a tie). Grouped queries use a public KeySet of KEYS values, more than any
L tested, so min(L, keys) = L. Spark starts once (local[1], no UI) while Python imports Tumult, on
a tiny DataFrame: the contents do not enter the noise scale.

Two shortcuts make a run several times faster and change no number: typeguard's run-time
argument checks are off (TUMULT_ORACLE_TYPECHECK=1 keeps them), and the two Spark jobs Tumult
runs per ungrouped query to check that a frame built from an empty list is empty are answered
without Spark (TUMULT_ORACLE_SPARK_JOBS=1 runs them). With both set the output is the same.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

KEYS = ["a", "b", "c", "d"]
# The JVM's classes after a run, written by `tumult_noise.py --write-class-archive` (scripts/setup-tumult)
# and mapped by later runs (Java's AppCDS): Spark's JVM then needs about half the CPU.
CLASS_ARCHIVE = os.path.join(sys.prefix, "spark-classes.jsa")
PART_NAMES = {"count": "count", "sum": "sum", "sod(x)": "sum", "sos(x)": "sum of squares",
              "sod(xi)": "sum", "sos(xi)": "sum of squares"}


def start_spark(tmp: str, write_archive: str | None = None):
    """A small local SparkSession: one core, no UI, quiet, JIT, GC and class data for a short-lived JVM."""
    from pyspark.sql import SparkSession

    # This venv's PySpark and Python for the JVM and its Python workers, whatever the caller's environment.
    os.environ.pop("SPARK_HOME", None)
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    log_config = os.path.join(tmp, "log4j2.properties")
    with open(log_config, "w", encoding="utf-8") as fh:
        # Root at the shell's level (WARN), or Spark announces its default level; ERROR once started.
        fh.write("rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = console\n"
                 "appender.console.type = Console\nappender.console.name = console\n"
                 "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
                 "appender.console.layout.pattern = %p %c: %m%n\n"
                 "logger.hadoop.name = org.apache.hadoop\nlogger.hadoop.level = error\n"
                 "logger.utils.name = org.apache.spark.util.Utils\nlogger.utils.level = error\n")
    java = f"-Dlog4j2.configurationFile=file:{log_config} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    if write_archive:
        java += f" -XX:ArchiveClassesAtExit={write_archive}"
    elif os.path.isfile(CLASS_ARCHIVE):  # a stale one (another JDK) is ignored by the JVM, with a warning
        java += f" -XX:SharedArchiveFile={CLASS_ARCHIVE}"
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "1",
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.warehouse.dir": os.path.join(tmp, "warehouse"),
            "spark.driver.extraJavaOptions": java,
            "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN",
            "spark.sql.adaptive.enabled": "false"}
    builder = SparkSession.builder.master("local[1]").appName("tumult-noise-oracle")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def skip_typeguard() -> None:
    """Tumult decorates its functions with typeguard's @typechecked, which checks every argument's
    type at run time and instruments each function at import: half of the import time and a tenth
    of each query's. The checks only reject ill-typed arguments (these are well-typed) and change
    no number. TUMULT_ORACLE_TYPECHECK=1 keeps them; the output is the same either way."""
    import typeguard

    def typechecked(target=None, **_options):
        return target if target is not None else (lambda function: function)

    typeguard.typechecked = typechecked


def skip_empty_jobs() -> None:
    """Answers isEmpty() and count() without a Spark job for DataFrames empty by construction.

    For an ungrouped query Tumult builds the empty KeySet of a total aggregation,
    spark.createDataFrame([], StructType([])), and checks it has no rows: isEmpty() on it and
    count() on its dropDuplicates().select(), two Spark jobs a query (a Python worker each, most
    of the JVM's time here), and no other job. A frame created from an empty list has no rows, nor
    has a dropDuplicates() or select() of one, so these answers are Spark's own; every other frame
    runs its job as usual. TUMULT_ORACLE_SPARK_JOBS=1 runs them all; the output is the same.
    """
    import weakref

    from pyspark.sql import DataFrame, SparkSession

    empty: weakref.WeakSet = weakref.WeakSet()
    create, is_empty, count = SparkSession.createDataFrame, DataFrame.isEmpty, DataFrame.count

    def create_data_frame(self, data, *args, **kwargs):
        frame = create(self, data, *args, **kwargs)
        if isinstance(data, (list, tuple)) and not data:
            empty.add(frame)
        return frame

    def still_empty(method):
        def wrapper(self, *args, **kwargs):
            frame = method(self, *args, **kwargs)
            if self in empty:
                empty.add(frame)
            return frame
        return wrapper

    SparkSession.createDataFrame = create_data_frame
    DataFrame.dropDuplicates = still_empty(DataFrame.dropDuplicates)
    DataFrame.select = still_empty(DataFrame.select)
    DataFrame.isEmpty = lambda self: True if self in empty else is_empty(self)
    DataFrame.count = lambda self: 0 if self in empty else count(self)


class Capture:
    """Records the measurement and stability that Tumult derives its noise info from."""

    def __init__(self):
        from tmlt.analytics._query_expr_compiler import _base_measurement_visitor as bmv

        self.measurement = None
        self.stability = None
        original_noise = bmv._noise_from_measurement
        original_build = bmv.BaseMeasurementVisitor._build_adaptive_groupby_agg_and_noise_info
        capture = self

        def noise_from_measurement(measurement):
            capture.measurement = measurement
            return original_noise(measurement)

        def build(visitor, *args, **kwargs):
            capture.stability = kwargs["stability"]
            return original_build(visitor, *args, **kwargs)

        bmv._noise_from_measurement = noise_from_measurement
        bmv.BaseMeasurementVisitor._build_adaptive_groupby_agg_and_noise_info = build


def walk(measurement, d_in, parts: list) -> None:
    """The noise-adding leaves of a Core measurement, with the distance each one receives."""
    from tmlt.core.measurements.chaining import ChainTM
    from tmlt.core.measurements.composition import Composition
    from tmlt.core.measurements.converters import PureDPToRhoZCDP
    from tmlt.core.measurements.postprocess import PostProcess
    from tmlt.core.measurements.spark_measurements import AddNoiseToColumn

    if isinstance(measurement, ChainTM):
        walk(measurement.measurement, measurement.transformation.stability_function(d_in), parts)
    elif isinstance(measurement, PostProcess):
        walk(measurement.measurement, d_in, parts)
    elif isinstance(measurement, Composition):
        for inner in measurement.measurements:
            walk(inner, d_in, parts)
    elif isinstance(measurement, PureDPToRhoZCDP):
        walk(measurement.pure_dp_measurement, d_in, parts)
    elif isinstance(measurement, AddNoiseToColumn):
        noise = measurement.measurement.noise_measurement
        parts.append({"column": measurement.measure_column, "noise": type(noise).__name__,
                      "sensitivity": float(d_in.to_float(round_up=False)),
                      "rho": float(measurement.privacy_function(d_in).to_float(round_up=False))})
    else:
        raise TypeError(f"unexpected Tumult measurement {type(measurement).__name__}: extend walk()")


def build_query(case: dict, keyset):
    from tmlt.analytics import MaxGroupsPerID, MaxRowsPerGroupPerID, MaxRowsPerID, QueryBuilder

    limit = int(case["contribution_limit"])
    query = QueryBuilder("t").enforce(MaxRowsPerID(limit))
    if case["grouped"] and case.get("group_constraints", True):
        query = (query.enforce(MaxGroupsPerID("grp", min(limit, len(KEYS))))
                 .enforce(MaxRowsPerGroupPerID("grp", limit)))
    if case["grouped"]:
        query = query.groupby(keyset)
    kind = case["kind"]
    column = "xi" if case.get("integer_column") else "x"
    if kind == "COUNT":
        return query.count(name="count")
    if kind == "COUNT_DISTINCT":
        return query.count_distinct(["user" if case.get("distinct_user") else "y"], name="count")
    low, high = case["bounds"]
    if kind == "SUM":
        return query.sum(column, low, high, name="sum")
    if kind == "AVG":
        return query.average(column, low, high, name="avg")
    if kind == "STDDEV":
        return query.stdev(column, low, high, name="stddev")
    if kind == "VARIANCE":
        return query.variance(column, low, high, name="variance")
    raise ValueError(f"unknown kind {kind!r}")


def noise_parts(session, capture: Capture, case: dict, keyset) -> list[dict]:
    from tmlt.analytics import RhoZCDPBudget

    rho = float(case["rho"])
    capture.measurement = capture.stability = None
    info = session._noise_info(build_query(case, keyset), RhoZCDPBudget(rho))
    walked: list[dict] = []
    walk(capture.measurement, capture.stability, walked)
    total = capture.measurement.privacy_function(capture.stability).to_float(round_up=False)
    if len(walked) != len(info) or not math.isclose(total, rho, rel_tol=1e-9):
        raise AssertionError(f"Tumult's noise info {info} and measurement {walked} disagree (rho {total} vs {rho})")
    parts = []
    for entry, leaf in zip(info, walked):
        mechanism = entry["noise_mechanism"].name
        if mechanism not in ("GAUSSIAN", "DISCRETE_GAUSSIAN"):
            raise AssertionError(f"{case}: Tumult chose {mechanism}, not a Gaussian")
        parameter = float(entry["noise_parameter"])  # sigma^2 for both Gaussians (_noise_info.py)
        sigma = math.sqrt(parameter)
        # The walked leaf must be the same noise: rho_part = sensitivity^2 / (2 sigma^2).
        if not math.isclose(leaf["rho"], leaf["sensitivity"] ** 2 / (2 * parameter), rel_tol=1e-9):
            raise AssertionError(f"{case}: leaf {leaf} does not match noise info {entry}")
        parts.append({"part": PART_NAMES.get(leaf["column"], leaf["column"]), "column": leaf["column"],
                      "mechanism": mechanism, "noise_parameter": parameter, "sigma": sigma,
                      "sensitivity": leaf["sensitivity"], "rho": leaf["rho"]})
    return parts


def main() -> int:
    write_archive = "--write-class-archive" in sys.argv[1:]
    cases = json.load(sys.stdin)
    started = time.perf_counter()
    # The answer goes to the real stdout; everything else that writes to fd 1 (the JVM, which
    # inherits it, Spark, Tumult) goes to stderr instead.
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with tempfile.TemporaryDirectory(prefix="tumult-oracle-") as tmp:
        # The JVM starts while Python imports Tumult (sympy, scipy, pandas): about half the wall time.
        run_jobs = os.environ.get("TUMULT_ORACLE_SPARK_JOBS") == "1"
        if not run_jobs:
            skip_empty_jobs()

        def launch():
            spark = start_spark(tmp, CLASS_ARCHIVE + ".new" if write_archive else None)
            # The first DataFrame costs the JVM seconds (Spark SQL's analyzer loads): here, in
            # parallel with the imports. The contents do not matter to the noise scale.
            frame = spark.createDataFrame([("u1", "a", 1.0, 1, "p"), ("u2", "b", 2.0, 2, "q")],
                                          "user string, grp string, x double, xi long, y string")
            frame.schema  # noqa: B018 (resolved now, not in the main thread)
            if run_jobs:
                # The jobs of an ungrouped query (skip_empty_jobs), likewise: the first one loads
                # Spark's job machinery and its Python worker.
                empty = spark.createDataFrame([], "")
                empty.isEmpty()
                empty.dropDuplicates().count()
            return spark, frame

        with ThreadPoolExecutor(max_workers=1) as pool:
            launched = pool.submit(launch)
            if os.environ.get("TUMULT_ORACLE_TYPECHECK") != "1":
                skip_typeguard()
            from tmlt.analytics import AddRowsWithID, KeySet, RhoZCDPBudget, Session

            capture = Capture()
            spark, frame = launched.result()  # re-raises what stopped Spark
        try:
            session = Session.from_dataframe(RhoZCDPBudget(1e9), "t", frame,
                                             protected_change=AddRowsWithID("user"))
            keyset = KeySet.from_dict({"grp": KEYS})
            results = [noise_parts(session, capture, case, keyset) for case in cases]
            jvm_cpu = process_tree_cpu(getattr(getattr(spark.sparkContext, "_gateway", None), "proc", None))
        finally:
            spark.stop()
            if write_archive:  # the JVM writes the archive as it exits: when its stdin closes
                jvm = spark.sparkContext._gateway.proc
                jvm.stdin.close()
                if jvm.wait(timeout=300) == 0 and os.path.isfile(CLASS_ARCHIVE + ".new"):
                    os.replace(CLASS_ARCHIVE + ".new", CLASS_ARCHIVE)
    json.dump(results, answer, indent=1)
    answer.write("\n")
    answer.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"tumult_noise: {len(cases)} cases in {time.perf_counter() - started:.1f} s"
          f" (CPU: Python {own.ru_utime + own.ru_stime:.1f} s, JVM and its Python workers {jvm_cpu:.1f} s)",
          file=sys.stderr)
    return 0


def process_tree_cpu(process) -> float:
    """CPU seconds used so far by a process and its descendants (Linux /proc; nan elsewhere)."""
    try:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]))
        tree, todo = set(), [process.pid]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid and child not in tree)
        return sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())

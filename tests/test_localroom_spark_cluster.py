"""`--spark-master spark://...` on a real Spark standalone cluster: a master and one worker started here.

pyspark's pip package ships Spark's launcher and jars (pyspark/bin/spark-class), which is all a
standalone master and worker need. The module's fixture starts both together, bound to 127.0.0.1
on ports the test chooses, and polls the master's JSON status until the worker is registered;
at the end it stops the driver's SparkContext and kills both process groups (the executors the
worker started, and their Python workers, are in the worker's group), and checks nothing is left.
Logs and the worker's work folder (one folder per application and executor, with its log) are in
the module's tmp folder.

This process is the driver, as for a user: `queryrunner.cli.main` runs the commands in it, on
the session localroom.spark.session() made for the spark:// URL (made by the fixture with the
settings of the suite's local Spark session, tests/conftest.py, and found running by the
commands); the executor runs in a JVM the worker starts and reads the data files at the same
path. The reference is `run --all` on DuckDB, run while the cluster starts (the parity suite
holds DuckDB and local Spark equal; the same seed gives the same noise, so the result files
are byte for byte the same), and for the job an independent count of the data file. Each
test also checks that its tasks ran in the worker's executor (its log grew, the master lists the
application with the worker's cores in use): a run that fell back to local mode fails.

Skipped without pyspark unless REQUIRE_SPARK=1, as tests/test_localroom_spark.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from localroom.spark import on_loopback
from queryrunner import cli
from tests.conftest import SPARK_TEST_SETTINGS
from tests.test_localroom_jobs import independent_order_mix, order_mix
from tests.test_localroom_spark import needs_spark

JOB = "retail_order_mix"
TEMPLATES = ("customer_segments", "channel_reach")
# The cluster's JVMs (master, worker, and the executors the worker starts, which inherit its environment):
# C1 only and the serial collector, as the local session's driver JVM below; JVMs that live seconds.
CLUSTER_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# The driver's session settings: those of the suite's local Spark session (tests/conftest.py).
LOCAL_EXTRA = SPARK_TEST_SETTINGS


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the master's page, whatever http_proxy says


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive_in_group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that have not exited (zombies excluded)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


class Cluster:
    """A standalone master and one worker (2 cores, 1 GiB: the default executor memory), each in its own group.

    They start together: the worker as soon as the master's JVM runs Spark (its log's first line),
    so that the worker, which takes longer to reach its registration than the master takes to
    listen, finds it listening. A thread polls the master's JSON status with backoff until the
    worker is registered (wait() returns it, or raises what went wrong). A worker that asks too
    early anyway would retry only 5 to 15 s later (Spark's fixed interval): the thread starts it
    again as soon as the master answers instead.
    """

    DEADLINE = 120.0  # seconds for both to start and the worker to register

    def __init__(self, folder: Path):
        import pyspark

        self.folder, self.work = folder, folder / "work"
        self.work.mkdir(parents=True)
        (folder / "conf").mkdir()  # an empty SPARK_CONF_DIR: no spark-defaults.conf or spark-env.sh from elsewhere
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        home = Path(pyspark.__file__).parent
        self.spark_class = str(home / "bin" / "spark-class")
        self.env = {**os.environ, "SPARK_HOME": str(home), "SPARK_CONF_DIR": str(folder / "conf"),
                    "SPARK_LOCAL_IP": "127.0.0.1",  # the web UIs too (they listen on every interface otherwise)
                    "SPARK_DAEMON_MEMORY": "256m",
                    "SPARK_MASTER_OPTS": "-Dspark.port.maxRetries=0",  # its ports as chosen, or it stops at once
                    "JAVA_TOOL_OPTIONS": f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {CLUSTER_JVM_OPTIONS}".strip()}
        self.processes: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()  # the processes, between the thread and stop()
        self.stopping = threading.Event()
        self.registered: dict | None = None
        self.failure: str | None = None
        self._start("master", "org.apache.spark.deploy.master.Master",
                    "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port))
        self.watcher = threading.Thread(target=self._watch, name="spark-cluster-start", daemon=True)
        self.watcher.start()

    def _start(self, name: str, main_class: str, *argv: str) -> None:
        with (self.folder / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen([self.spark_class, main_class, *argv], env=self.env,
                                                    cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _start_worker(self) -> None:
        self._start("worker", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", "0",
                    "--webui-port", "0", "--cores", "2", "--memory", "1g", "--work-dir", str(self.work), self.url)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self) -> dict | None:
        """The master's JSON status page, or None while it does not answer."""
        try:
            with NO_PROXY.open(f"http://127.0.0.1:{self.ui_port}/json", timeout=5) as response:
                return json.load(response)
        except (OSError, ValueError):  # URLError, refused, reset, a half-written answer
            return None

    def _watch(self) -> None:
        try:
            self._poll()
        except (OSError, subprocess.SubprocessError, AssertionError) as exc:  # for wait() to report
            self.failure = f"starting the cluster failed: {exc!r}"

    def _poll(self) -> None:
        started, delay, restarted = time.monotonic(), 0.05, False
        while not self.stopping.is_set():
            if "worker" not in self.processes and "Master: Started daemon" in self.log("master"):
                with self.lock:
                    self._start_worker()
            status = self.status()
            if status and any(worker["state"] == "ALIVE" for worker in status["workers"]):
                self.registered = status
                return
            with self.lock:
                exited = [(n, p.returncode) for n, p in self.processes.items() if p.poll() is not None]
                if exited:
                    name, code = exited[0]
                    self.failure = f"the Spark {name} exited with {code}:\n{self.log(name)[-3000:]}"
                    return
                if (status and not restarted and "worker" in self.processes
                        and "Failed to connect to master" in self.log("worker")):
                    self._stop("worker")
                    self._start_worker()
                    restarted = True
            if time.monotonic() - started > self.DEADLINE:
                self.failure = (f"no worker registered with {self.url} in {self.DEADLINE:.0f} s:\n"
                                f"{self.log('master')[-2000:]}\n{self.log('worker')[-2000:]}")
                return
            self.stopping.wait(delay)
            delay = min(delay * 1.5, 0.25)

    def wait(self) -> dict:
        """The master's status once the worker is ALIVE in it."""
        self.watcher.join()
        assert self.registered is not None, self.failure or "the cluster was stopped"
        return self.registered

    def executor_tasks(self) -> int:
        """Tasks the worker's executors have started: their logs' `Running task` lines."""
        return sum(log.read_text(errors="replace").count("Executor: Running task")
                   for log in self.work.glob("app-*/*/stderr"))

    @staticmethod
    def _signal(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, name: str) -> None:
        """After a TERM to its group: it and every process of its group gone (executors, Python workers), or KILL."""
        process = self.processes.pop(name)
        for kill in (False, True):
            if kill:
                self._signal(process, signal.SIGKILL)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + 15
            while alive_in_group(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not alive_in_group(process.pid):
                return
        raise AssertionError(f"the Spark {name}'s processes {alive_in_group(process.pid)} outlived SIGKILL")

    def _stop(self, name: str) -> None:
        self._signal(self.processes[name], signal.SIGTERM)
        self._reap(name)

    def stop(self) -> None:
        self.stopping.set()
        self.watcher.join()
        with self.lock:
            for process in self.processes.values():  # both at once, then each waited for
                self._signal(process, signal.SIGTERM)
            for name in list(self.processes):
                self._reap(name)


def command(folder: Path, *argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main([*argv, "--local", "--out", str(folder / "results"), "--state-dir", str(folder / "state")],
                    stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def run_all(folder: Path, master: str | None) -> tuple[int, str, str]:
    """`run --all --seed 7` on Spark at ``master``, or on DuckDB (None)."""
    engine = ("--engine", "spark", "--spark-master", master) if master else ("--engine", "duckdb")
    return command(folder, "run", "--all", *engine, "--seed", "7")


def job(folder: Path, master: str) -> tuple[int, str, str]:
    return command(folder, "job", JOB, "--spark-master", master)


def template_results(folder: Path) -> dict[str, tuple[str, dict]]:
    """Each template's CSV text and run record, without what differs run to run."""
    found = {}
    for template in TEMPLATES:
        (path,) = (folder / "results" / template).glob("*.csv")
        record = json.loads(path.with_suffix(".json").read_text())
        found[template] = path.read_text(), {k: v for k, v in record.items()
                                             if k not in ("run_id", "finished", "seconds")}
    return found


@pytest.fixture(scope="module")
def cluster(pyspark_installed, tmp_path_factory):
    from pyspark import SparkContext

    sigint = signal.getsignal(signal.SIGINT)  # SparkContext replaces it with one that needs a running context
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        running = SparkContext._active_spark_context
        if running is not None and running.master == cluster.url:
            running.stop()  # the application finishes before its master goes
        cluster.stop()
        signal.signal(signal.SIGINT, sigint)


@pytest.fixture(scope="module")
def local(cluster, tmp_path_factory) -> Path:
    """The reference, run on DuckDB while the cluster starts: `run --all` there is what Spark on local[*]
    returns, byte for byte (the parity suite, tests/test_parity.py, holds the two engines equal)."""
    folder = tmp_path_factory.mktemp("local")
    code, _, err = run_all(folder / "run", None)
    assert code == 0, err
    return folder


@pytest.fixture(scope="module")
def on_cluster(local, cluster) -> Cluster:
    """The cluster, its worker registered, and this process's session on it (the local runs are done)."""
    from localroom.spark import session

    status = cluster.wait()
    assert status["url"] == cluster.url and status["aliveworkers"] == 1
    # The driver's session for the cluster, with the reference's settings (and its two shuffle partitions: the
    # worker's cores): the commands find it running with their master, as with tests/test_localroom_spark.py's
    # fixture. Spark's defaults for a cluster (generated code, adaptive plans, 200 partitions) make the same
    # two commands take 3 times as long here.
    spark = session(cluster.url, {**LOCAL_EXTRA, "spark.sql.shuffle.partitions": "2"})
    # A master on loopback: the driver listens there too (localroom.spark.on_loopback), whatever the hostname is.
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"
    return cluster


def ran_on_the_worker(cluster: Cluster, tasks_before: int) -> None:
    """This process's SparkContext is an application of the cluster and the worker's executor ran new tasks."""
    from pyspark import SparkContext

    running = SparkContext._active_spark_context
    assert running is not None and running.master == cluster.url
    app = running.applicationId
    assert app.startswith("app-"), app  # a local master's application is local-<time>
    status = cluster.status()
    assert [(a["id"], a["name"], a["state"]) for a in status["activeapps"]] == [(app, "localroom", "RUNNING")]
    (worker,) = status["workers"]
    assert worker["coresused"] == 2, worker  # the executor holds the worker's cores
    assert list((cluster.work / app).glob("*/stderr")), f"no executor of {app} in {cluster.work}"
    assert cluster.executor_tasks() > tasks_before, "no task ran in the worker's executor"


@pytest.mark.parametrize("master, loopback", [
    ("spark://127.0.0.1:7077", True), ("spark://localhost:7077", True), ("spark://127.0.0.2:1,localhost:2", True),
    ("spark://10.0.0.5:7077", False), ("spark://127.0.0.1:7077,10.0.0.5:7077", False),
    ("spark://localhost.example.com:7077", False), ("local[2]", False), ("yarn", False),
])
def test_only_a_master_on_loopback_binds_the_driver_to_loopback(master, loopback):
    assert on_loopback(master) is loopback


@needs_spark
def test_run_all_on_a_standalone_cluster_gives_the_local_results_byte_for_byte(on_cluster, local, tmp_path):
    tasks = on_cluster.executor_tasks()
    code, _, err = run_all(tmp_path, on_cluster.url)
    assert code == 0, err
    assert "engine Spark 3.5." in err and f"({on_cluster.url})" in err and "Traceback" not in err
    ran_on_the_worker(on_cluster, tasks)
    # The same seed, the same parts sorted by group before the noise: the same bytes.
    assert template_results(tmp_path) == template_results(local / "run")


@needs_spark
def test_the_shipped_job_on_a_standalone_cluster_gives_the_local_result(on_cluster, local, tmp_path):
    tasks = on_cluster.executor_tasks()
    code, out, err = job(tmp_path, on_cluster.url)
    assert code == 0, err
    assert f"[{JOB}] SUCCESS after" in err and "(12 rows)" in out
    ran_on_the_worker(on_cluster, tasks)
    (run,) = [p for p in (tmp_path / "results" / JOB).iterdir() if p.is_dir()]
    with (run / "order_mix.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["region", "order_band", "customers", "total_purchase"] and len(rows) == 12
    # The job's numbers, counted from the data file by DuckDB alone (as tests/test_localroom_jobs.py does).
    assert order_mix(rows) == independent_order_mix(1)


"""A query is started once: the runner against a fault-injecting Clean Rooms endpoint (tests/support/fake_cleanrooms).

The runner builds its clients as it does for a user (queryrunner/cloud.py's factory, botocore's standard retries,
connect and read timeouts; one boto3 session for the module, so models load once) and botocore finds the fake
through AWS_ENDPOINT_URL_CLEANROOMS / _S3, as it would in a user's shell: every request
crosses real HTTP and is checked against the botocore cleanrooms model, and every fault (throttling and 503 before
any work; a 500, a reset, an answer held past the read timeout after the query was created) is one the network
really produces. What is asserted is the service's side: how many start requests it received and how many queries it
created per template, what it charged to the privacy budget, and that the exit code says whether every template has
exactly one result. The runner's own waits run on a virtual clock; botocore's are real but short: a 0.5 s read
timeout (QUERYRUNNER_READ_TIMEOUT) where a test holds answers back past it, 2 s elsewhere, so that a loaded
machine does not time out answers that were merely slow.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

from queryrunner import cloud as qcloud
from queryrunner.cli import main
from queryrunner.poll import Backoff, ElapsedPoll
from tests.support.fake_cleanrooms import (AFTER, ERROR_AFTER, ERROR_BEFORE, HANG_AFTER, RESET_AFTER, THROTTLE,
                                           UNAVAILABLE, FakeCleanRooms, Faults, TemplateSpec)

ROOT = Path(__file__).resolve().parent.parent
REGION, ACCOUNT = "us-east-1", "111122223333"
MEMBERSHIP_ID = "5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
OTHER_MEMBERSHIP = "6a1f3d2b-9c8e-4d4f-8b21-3c4d5e6f7a81"
COLLABORATION_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MEMBERSHIP_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}"
BUCKET = "analyst-results-111122223333"
READ_TIMEOUT = 2.0        # seconds, for tests that hold no answer back
HANG_READ_TIMEOUT = 0.5   # for those that do (each held answer costs the client this long)
SESSION = boto3.Session()  # credentials and endpoints come from the environment each test sets

DP_SQL = ("SELECT r.age_group, COUNT(DISTINCT r.customer_key) AS customers, AVG(r.purchase_amount) AS avg_purchase "
          "FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key GROUP BY r.age_group")
# Six templates; two read org B's differential-privacy table, and each of their queries spends one COUNT_DISTINCT
# and one AVG (what DP_SQL aggregates: the runner estimates it from the SQL, the fake charges it per query).
NAMES = ["customer_segments", "channel_reach", "dp_segments", "region_mix", "dp_reach", "repeat_buyers"]
DP = {"dp_segments", "dp_reach"}
USAGE = {"COUNT_DISTINCT": 1, "AVG": 1}


def arn(i: int) -> str:
    return f"{MEMBERSHIP_ARN}/analysistemplate/{i:08x}-4a5b-4c6d-8e7f-{i:012x}"


SPECS = [TemplateSpec(name, arn(i + 1), sql=DP_SQL if name in DP else "SELECT 1",
                      usage=dict(USAGE) if name in DP else {}) for i, name in enumerate(NAMES)]


def outputs(names=NAMES, membership_id=MEMBERSHIP_ID) -> dict:
    templates = {}
    for spec in SPECS:
        if spec.name in names:
            params = [{"name": "min_orders", "type": "INTEGER", "default": "1"}] if spec.name == NAMES[0] else []
            templates[spec.name] = {"arn": spec.arn, "id": spec.arn.rsplit("/", 1)[1], "parameters": params,
                                    "differential_privacy": spec.name in DP}
    return {"region": REGION, "account_id": ACCOUNT, "membership_id": membership_id,
            "collaboration_id": COLLABORATION_ID, "results_bucket": BUCKET, "results_prefix": "results",
            "result_format": "CSV", "analysis_templates": templates}


class VirtualTime:
    """The runner's clock and sleep (thread-safe): sleeping advances the clock at once."""

    def __init__(self):
        self.now = 1000.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


class Cloud:
    """The fake endpoint, and the runner pointed at it the way a user's environment would point it."""

    def __init__(self, tmp_path: Path, fake: FakeCleanRooms, read_timeout: float = READ_TIMEOUT):
        self.tmp, self.fake, self.read_timeout = tmp_path, fake, read_timeout
        self.out_dir = tmp_path / "results"
        self.outputs_path = tmp_path / "analyst.json"
        self.write_outputs(outputs())

    def write_outputs(self, data: dict) -> None:
        self.outputs_path.write_text(json.dumps(data))

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        time = VirtualTime()
        try:
            network = qcloud.network_settings()
        except qcloud.checks.CheckError:
            network = None  # the runner reports the bad variable itself
        factory = qcloud.default_client_factory(None, network, session=SESSION)
        code = main([*argv, "--outputs", str(self.outputs_path), "--out", str(self.out_dir)], stdout=out, stderr=err,
                    client_factory=factory, clock=time.clock, sleep=time.sleep,
                    backoff=lambda: Backoff(rng=random.Random(0)), poll=lambda: ElapsedPoll(rng=random.Random(0)))
        return code, out.getvalue(), err.getvalue()

    def env(self) -> dict[str, str]:
        return cloud_env(self.fake, self.tmp, self.read_timeout)

    def saved(self) -> dict[str, list[Path]]:
        """Result files per template, under --out."""
        return {name: sorted((self.out_dir / name).glob("*.csv")) for name in NAMES if (self.out_dir / name).is_dir()}

    def journal(self, scope: str = "all") -> dict:
        return json.loads((self.out_dir / ".journal" / MEMBERSHIP_ID / f"{scope}.json").read_text())


def cloud_env(fake: FakeCleanRooms, tmp: Path, read_timeout: float = READ_TIMEOUT) -> dict[str, str]:
    """What a user's shell would hold: credentials, the region, where the endpoints are, the timeouts."""
    return {"AWS_ENDPOINT_URL_CLEANROOMS": fake.endpoint, "AWS_ENDPOINT_URL_S3": fake.s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-creds"),
            "AWS_EC2_METADATA_DISABLED": "true", "QUERYRUNNER_READ_TIMEOUT": str(read_timeout),
            "QUERYRUNNER_CONNECT_TIMEOUT": "2"}


@pytest.fixture
def make_cloud(tmp_path, monkeypatch):
    fakes: list[FakeCleanRooms] = []

    def make(faults: Faults | None = None, read_timeout: float = READ_TIMEOUT, **kwargs) -> Cloud:
        fake = FakeCleanRooms(MEMBERSHIP_ID, COLLABORATION_ID, BUCKET, SPECS, faults=faults,
                              hang_seconds=read_timeout * 4, **kwargs).start()
        fakes.append(fake)
        cloud = Cloud(tmp_path, fake, read_timeout)
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "QUERYRUNNER_SETTLE_SECONDS"):
            monkeypatch.delenv(var, raising=False)
        for var, value in cloud.env().items():
            monkeypatch.setenv(var, value)
        return cloud

    yield make
    for fake in fakes:
        fake.stop()
        assert fake.problems == [], fake.problems  # every request and response agreed with the botocore model


def assert_one_query_each(fake: FakeCleanRooms, names=NAMES) -> None:
    assert {n: fake.created[n] for n in names} == {n: 1 for n in names}, fake.faults.given


def assert_one_result_each(cloud: Cloud, names=NAMES) -> None:
    saved = cloud.saved()
    assert {n: len(saved.get(n, [])) for n in names} == {n: 1 for n in names}
    for name in names:  # the file is the result of the one query the service created for it
        query_id = next(r.id for r in cloud.fake.records.values() if r.template == name)
        assert saved[name][0].name == f"{query_id}.csv"


# -- faults before any work: sent again, one query each --------------------------------------------------------------
def test_throttling_and_503_before_work_are_sent_again_and_start_one_query_each(make_cloud):
    start = "StartProtectedQuery"
    cloud = make_cloud(Faults({(start, "customer_segments", 0): THROTTLE, (start, "channel_reach", 0): UNAVAILABLE,
                               (start, "region_mix", 0): THROTTLE, (start, "region_mix", 1): UNAVAILABLE,
                               (start, "region_mix", 2): THROTTLE}))

    code, out, err = cloud.run("run", "--all", "--max-concurrency", "3")

    assert code == 0, err
    assert_one_query_each(cloud.fake)
    assert_one_result_each(cloud)
    assert cloud.fake.start_requests == {**{n: 1 for n in NAMES}, "customer_segments": 2, "channel_reach": 2,
                                         "region_mix": 4}
    # Truthful attempts: one query each, and every start request the service received
    assert "[customer_segments] SUCCESS after" in err
    assert ("(1 attempt; the service received 2 start requests, sent again after: ThrottlingException)" in err)
    assert ("(1 attempt; the service received 4 start requests, sent again after: ThrottlingException x2, HTTP 503)"
            in err)
    # a 503 is looked for before it is sent again (it is not proof that nothing started)
    assert "[channel_reach] no such query is listed: the HTTP 503 started nothing" in err
    summary = out.split("== summary ==")[1]
    row = next(line for line in summary.splitlines() if line.startswith("region_mix"))
    cells = [c.strip() for c in row.split(" | ")]
    assert (cells[4], cells[6], cells[7]) == ("1", "4", "started")  # attempts, start requests, how


# -- faults after the work: never a second start; the started query is followed ---------------------------------------
@pytest.mark.parametrize("fault, what", [(ERROR_AFTER, "HTTP 500 InternalServerException"),
                                         (RESET_AFTER, "connection closed before the answer"),
                                         (HANG_AFTER, "no answer within the read timeout")])
def test_a_lost_answer_is_never_started_again_and_the_query_it_started_is_followed(make_cloud, fault, what):
    cloud = make_cloud(Faults({("StartProtectedQuery", "customer_segments", 0): fault}),
                       read_timeout=HANG_READ_TIMEOUT if fault == HANG_AFTER else READ_TIMEOUT)
    cloud.write_outputs(outputs(["customer_segments"]))

    code, out, err = cloud.run("run", "customer_segments")

    assert code == 0, err
    assert cloud.fake.start_requests["customer_segments"] == 1  # no second start, not by botocore, not by the runner
    assert_one_query_each(cloud.fake, ["customer_segments"])
    assert_one_result_each(cloud, ["customer_segments"])
    query_id = next(iter(cloud.fake.records))
    assert f"start_protected_query: {what}" in err
    assert f"found query {query_id} (" in err and "the one the lost start created: following it" in err
    assert (f"(1 attempt; query {query_id} found after its start's answer was lost ({what}))" in err)
    # history marks the query as the runner's, and how it came to follow it
    history_out = io.StringIO()
    assert main(["history", "--outputs", str(cloud.outputs_path), "--state-dir", str(cloud.out_dir / ".journal")],
                stdout=history_out, stderr=io.StringIO()) == 0
    assert "customer_segments: reconciled" in history_out.getvalue()


def test_history_finds_the_journal_a_run_kept_under_its_out_or_state_dir(make_cloud, tmp_path, monkeypatch):
    cloud = make_cloud()
    cloud.write_outputs(outputs(["customer_segments"]))
    assert cloud.run("run", "customer_segments")[0] == 0  # --out DIR: its journal is DIR/.journal
    state = tmp_path / "state"
    assert cloud.run("run", "customer_segments", "--state-dir", str(state))[0] == 0  # a new run, journal elsewhere
    first, second = (r.id for r in cloud.fake.records.values())

    def marks(*flags: str) -> dict[str, str]:
        """history's last column per query id (its journal note)."""
        out, err = io.StringIO(), io.StringIO()
        assert main(["history", "--outputs", str(cloud.outputs_path), *flags], stdout=out, stderr=err) == 0, \
            err.getvalue()
        rows = [[c.strip() for c in line.split(" | ")] for line in out.getvalue().splitlines()]
        return {row[0]: row[-1] for row in rows if row[0] in (first, second) and len(row) == 5}

    assert marks("--out", str(cloud.out_dir)) == {first: "customer_segments: started", second: "-"}
    assert marks("--state-dir", str(state)) == {first: "-", second: "customer_segments: started"}
    monkeypatch.chdir(tmp_path)  # the default is results/.journal, where the first run's --out put it
    assert marks() == {first: "customer_segments: started", second: "-"}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no results/ here: no journal, and no journal column
    assert marks() == {}
    calls = len(cloud.fake.calls)
    (tmp_path / "a-file").write_text("")
    err = io.StringIO()
    assert main(["history", "--outputs", str(cloud.outputs_path), "--out", str(tmp_path / "a-file")],
                stdout=io.StringIO(), stderr=err) == 2
    assert one_error_line(err.getvalue()).startswith("error: --out ") and len(cloud.fake.calls) == calls


def test_lost_answers_in_run_all_with_a_failing_listing_start_nothing_twice(make_cloud):
    start = "StartProtectedQuery"
    faults = Faults({(start, "customer_segments", 0): ERROR_AFTER, (start, "channel_reach", 0): RESET_AFTER,
                     (start, "dp_segments", 0): HANG_AFTER, (start, "region_mix", 0): THROTTLE,
                     # the first listing fails too: botocore retries a read, the runner still finds its query
                     ("ListProtectedQueries", "ListProtectedQueries", 0): ERROR_AFTER})
    cloud = make_cloud(faults, read_timeout=HANG_READ_TIMEOUT)

    code, out, err = cloud.run("run", "--all")

    assert code == 0, err
    assert_one_query_each(cloud.fake)
    assert_one_result_each(cloud)
    assert sum(cloud.fake.start_requests.values()) == len(NAMES) + 1  # the throttled one was sent again
    summary = out.split("== summary ==")[1]
    reconciled = {line.split(" | ")[0].strip() for line in summary.splitlines() if " | reconciled | " in line}
    # (on a loaded machine another start may also outlast the 0.5 s read timeout: it is then found the same way)
    assert reconciled >= {"customer_segments", "channel_reach", "dp_segments"}
    journal = cloud.journal()
    assert journal["status"] == "finished"
    assert {e["queries"][0]["how"] for n, e in journal["templates"].items()
            if n in ("customer_segments", "channel_reach", "dp_segments")} == {"reconciled"}


def test_the_privacy_budget_is_charged_once_per_template_as_estimated(make_cloud):
    """Lost answers on both DP templates: the service charges each exactly the runner's estimate, once."""
    start = "StartProtectedQuery"
    cloud = make_cloud(Faults({(start, "dp_segments", 0): ERROR_AFTER, (start, "dp_reach", 0): RESET_AFTER}))
    before = dict(cloud.fake.remaining)

    code, _, err = cloud.run("run", "--all")

    assert code == 0, err
    for name in DP:  # the runner's estimate, from the SQL, before starting
        assert f"[{name}] this run uses 1 AVG, 1 COUNT_DISTINCT = 0.20% of the privacy budget" in err
    assert cloud.fake.charged == {name: [USAGE] for name in DP}  # one charge per template
    spent = {t: before[t] - cloud.fake.remaining[t] for t in before}
    assert spent == {"AVG": len(DP), "COUNT_DISTINCT": len(DP), "COUNT": 0, "SUM": 0, "STDDEV": 0}


# -- outcome unknown: stop that template, say what to check ----------------------------------------------------------
def start_directly(cloud: Cloud, name: str) -> str:
    """A query of the same template and parameters started by someone else (another run) just before."""
    client = SESSION.client("cleanrooms")
    spec = cloud.fake.templates[name]
    response = client.start_protected_query(
        type="SQL", membershipIdentifier=MEMBERSHIP_ID,
        sqlParameters={"analysisTemplateArn": spec.arn, "parameters": {"min_orders": "1"}},
        resultConfiguration={"outputConfiguration": {"s3": {"resultFormat": "CSV", "bucket": BUCKET,
                                                            "keyPrefix": f"results/{name}"}}})
    return response["protectedQuery"]["id"]


def test_two_matching_queries_stop_the_template_with_exit_3_naming_both_until_one_is_cancelled(make_cloud):
    cloud = make_cloud(Faults({("StartProtectedQuery", "customer_segments", 1): ERROR_AFTER}))
    cloud.write_outputs(outputs(["customer_segments"]))
    cloud.fake.hold.set()  # both stay STARTED until the analyst has cancelled one
    other = start_directly(cloud, "customer_segments")  # the fake's call 0 of this template

    code, _, err = cloud.run("run", "customer_segments")

    ours = [r.id for r in cloud.fake.records.values() if r.id != other][0]
    assert code == 3, err
    line = next(line for line in err.splitlines() if "OUTCOME UNKNOWN" in line)
    assert "2 querys match" not in line and "2 querys" not in err
    assert f"candidate query ids: {ours}, {other}" in line or f"candidate query ids: {other}, {ours}" in line
    # the command finds this run's journal again: it was kept under --out
    assert "follow one with `status " in line and f"`run customer_segments --resume --out {cloud.out_dir}`" in line
    assert cloud.fake.created["customer_segments"] == 2 and cloud.fake.start_requests["customer_segments"] == 2
    assert cloud.journal("customer_segments")["status"] == "open"  # a plain re-run would resume, not start anew

    # Still two: --resume cannot decide either, and starts nothing.
    code, _, err = cloud.run("run", "customer_segments", "--resume")
    assert code == 3 and "OUTCOME UNKNOWN" in err and cloud.fake.created["customer_segments"] == 2

    # The analyst cancels the other run's query (the console, or update-protected-query): resume follows ours.
    SESSION.client("cleanrooms").update_protected_query(
        membershipIdentifier=MEMBERSHIP_ID, protectedQueryIdentifier=other, targetStatus="CANCELLED")
    cloud.fake.hold.clear()
    code, _, err = cloud.run("run", "customer_segments", "--resume")
    assert code == 0, err
    assert f"found query {ours}" in err
    assert cloud.fake.created["customer_segments"] == 2  # nothing started again
    assert [p.name for p in cloud.saved()["customer_segments"]] == [f"{ours}.csv"]


def test_a_500_that_started_nothing_is_unknown_until_resume_sees_it_listed_nowhere(make_cloud, monkeypatch):
    cloud = make_cloud(Faults({("StartProtectedQuery", "channel_reach", 0): ERROR_BEFORE}))

    code, out, err = cloud.run("run", "--all")

    assert code == 3, err
    assert cloud.fake.created["channel_reach"] == 0
    line = next(line for line in err.splitlines() if "OUTCOME UNKNOWN" in line)
    assert line.startswith("[channel_reach] OUTCOME UNKNOWN: its start's answer was lost (HTTP 500 "
                           "InternalServerException), and no query with its template, parameters and result "
                           "configuration is listed (3 looks)")
    assert f"no candidate query is listed; check `history --out {cloud.out_dir}`" in line
    assert f"`run --all --resume --out {cloud.out_dir}`" in line
    assert_one_query_each(cloud.fake, [n for n in NAMES if n != "channel_reach"])
    summary = out.split("== summary ==")[1]
    assert "UNKNOWN" in summary

    # A plain re-run resumes (and says so): five are done, channel_reach is looked for once more, then started.
    monkeypatch.setenv("QUERYRUNNER_SETTLE_SECONDS", "0")
    code, _, err = cloud.run("run", "--all")
    assert code == 0, err
    assert "of an unfinished run" in err and "resuming it, as `run --all --resume` would" in err
    assert err.count("already done by an earlier run") == 5
    assert "[channel_reach] no query matching that start is listed" in err
    assert "it never started; starting it now" in err
    assert_one_query_each(cloud.fake)
    assert_one_result_each(cloud)


# -- a killed run, then --resume: nothing started twice, every result present ----------------------------------------
def spawn(cloud: Cloud, *argv: str, **env: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "QUERYRUNNER_"))}
    environment.update(cloud.env(), PYTHONPATH=str(ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "queryrunner", *argv, "--outputs", str(cloud.outputs_path),
                             "--out", str(cloud.out_dir)], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_all_then_resume_starts_no_template_twice(make_cloud, monkeypatch):
    """`run --all` as its own process (the default client factory, real time), killed with -9 once the service has
    created the first query; then `--resume`."""
    cloud = make_cloud()
    cloud.fake.hold.set()  # the first run's queries stay STARTED: it is killed with all of them in flight
    first = spawn(cloud, "run", "--all", "--max-concurrency", "6")
    try:
        assert cloud.fake.wait_until(lambda fake: sum(fake.created.values()) >= 1, timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    # Whatever the killed run had on the wire has been handled. (A real service may still be working on a start from
    # a client that died: that is why an empty listing counts only QUERYRUNNER_SETTLE_SECONDS after the start.)
    assert cloud.fake.idle()
    started_before = dict(cloud.fake.created)
    cloud.fake.hold.clear()
    monkeypatch.setenv("QUERYRUNNER_SETTLE_SECONDS", "0")

    code, _, err = cloud.run("run", "--all", "--resume")

    assert code == 0, err
    assert_one_query_each(cloud.fake)
    assert_one_result_each(cloud)
    for name, n in started_before.items():  # every query of the killed run was taken up again, not replaced
        if n:
            assert re.search(rf"\[{name}\] (re-attached to query|found query)", err), err
    assert "resuming the run of journal" in err
    assert cloud.journal()["status"] == "finished"


def test_sigterm_cancels_the_queries_in_flight_and_the_journal_records_it(make_cloud):
    """A real SIGTERM (a CI timeout, `kill`) to this process once both queries are being polled."""
    cloud = make_cloud()
    cloud.fake.hold.set()
    cloud.write_outputs(outputs(NAMES[:2]))

    def terminate_when_polled() -> None:
        # both queries polled at least once (each is in flight in the runner, not still being started)
        if cloud.fake.wait_until(lambda fake: len(fake.records) == 2 and
                                 all(r.polls >= 1 for r in fake.records.values()), timeout=30):
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_polled, daemon=True).start()
    # The runner's clock is virtual: its polls cost no real time, so on a loaded machine it could reach the
    # default 1800 s deadline (and cancel the queries itself) before this thread gets to send the signal.
    code, _, err = cloud.run("run", "--all", "--timeout", str(10 ** 9))

    assert code == 143, err
    assert "interrupted (SIGTERM): cancelling queries in flight" in err and "cancelled 2 queries" in err, err
    assert sorted(r.status for r in cloud.fake.records.values()) == ["CANCELLED", "CANCELLED"]
    journal = cloud.journal()
    assert journal["status"] == "interrupted" and journal["interrupted_by"] == "SIGTERM"
    assert {e["state"] for e in journal["templates"].values()} == {"interrupted"}


# -- a random mix of faults: no duplicate, no lost result, a truthful exit code -----------------------------------
# Seeds whose mix loses the answer of at least two first starts (8: four of them; 25: a hang and a 500), on top of
# the faults on polls and on later starts.
@pytest.mark.parametrize("seed", [8, 25])
def test_a_random_fault_mix_at_20_percent_over_six_templates(make_cloud, seed):
    cloud = make_cloud(Faults(rate=0.2, seed=seed), read_timeout=HANG_READ_TIMEOUT)
    before = dict(cloud.fake.remaining)

    code, out, err = cloud.run("run", "--all", "--max-concurrency", "3")

    fake = cloud.fake
    lost = [g for g in fake.faults.given if g[0] == "StartProtectedQuery" and g[3] in AFTER]
    assert len(lost) >= 2, fake.faults.given  # the mix does test lost answers
    assert all(n <= 1 for n in fake.created.values()), fake.faults.given  # no template started twice
    succeeded = {r.template for r in fake.records.values() if r.status == "SUCCESS"}
    saved = cloud.saved()
    assert {n for n in saved if saved[n]} == succeeded  # every result the service produced is on disk
    every = all(fake.created[n] == 1 for n in NAMES) and succeeded == set(NAMES)
    assert code == (0 if every else (3 if "OUTCOME UNKNOWN" in err else 1)), err
    # the privacy budget: one charge per DP template that has a query
    assert {n: len(c) for n, c in fake.charged.items()} == {n: 1 for n in DP if fake.created[n]}
    assert sum(before[t] - fake.remaining[t] for t in before) == 2 * sum(fake.created[n] for n in DP)
    # the summary's start requests are what the service received
    summary = out.split("== summary ==")[1].splitlines()[2:]
    for row in summary:
        cells = [c.strip() for c in row.split(" | ")]
        if cells[0] in NAMES:
            assert int(cells[6]) == fake.start_requests[cells[0]], (row, fake.faults.given)


# -- bad journals and --resume without one: one line each, nothing started -----------------------------------------
def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_resume_without_a_journal_says_so_and_starts_nothing(make_cloud):
    cloud = make_cloud()
    code, _, err = cloud.run("run", "--all", "--resume")
    assert code == 2
    line = one_error_line(err)
    assert f"--resume: no journal of `run --all` for membership {MEMBERSHIP_ID}" in line
    assert "Run without --resume to start" in line
    assert cloud.fake.calls == []


def killed_journal(cloud: Cloud, names=NAMES[:2]) -> Path:
    """A journal as a killed `run --all` leaves it: open, one template running."""
    path = cloud.out_dir / ".journal" / MEMBERSHIP_ID / "all.json"
    cloud.write_outputs(outputs(names))
    code, _, err = cloud.run("run", "--all")
    assert code == 0, err
    data = json.loads(path.read_text())
    data["status"] = "open"
    data["templates"]["channel_reach"]["state"] = "running"
    path.write_text(json.dumps(data))
    cloud.fake.calls.clear()
    return path


@pytest.mark.parametrize("damage, expected", [
    (lambda text: text[: len(text) // 2], "is damaged or half-written"),
    (lambda text: "", "is damaged or half-written"),
    (lambda text: text.replace('"version": 1', '"version": 7'), "version 7, this runner reads version 1"),
    (lambda text: text.replace('"state": "running"', '"state": "sleeping"'), "'sleeping' is not one of"),
])
def test_a_damaged_journal_is_one_line_and_starts_nothing(make_cloud, damage, expected):
    cloud = make_cloud()
    path = killed_journal(cloud)
    path.write_text(damage(path.read_text()))
    for argv in (["run", "--all", "--resume"], ["run", "--all"]):  # a plain re-run must not overwrite it either
        code, _, err = cloud.run(*argv)
        assert code == 2
        line = one_error_line(err)
        assert f"journal {path} " in line and expected in line and "nothing was started" in line
        assert "move the file away to start anew" in line
    assert cloud.fake.calls == []


def test_a_damaged_journal_of_another_command_is_said_not_silently_skipped(make_cloud):
    """Other journals' query ids are kept out of a reconciliation's candidates; one that cannot be read cannot
    be, and the run says so (naming it) instead of going on as if it were not there."""
    cloud = make_cloud()
    cloud.write_outputs(outputs(NAMES[:2]))
    sibling = cloud.out_dir / ".journal" / MEMBERSHIP_ID / "template-channel_reach.json"
    sibling.parent.mkdir(parents=True, exist_ok=True)
    sibling.write_text('{"version": 1, "templ')
    code, _, err = cloud.run("run", "--all")
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("WARNING:") and str(sibling) in line]
    assert "is damaged or half-written" in warning and "not excluded" in warning, warning
    assert sibling.read_text() == '{"version": 1, "templ'  # left as it was


def _set(path: str, value):
    """A change to a parsed journal: the value at a dotted key path (``templates.x.error``), or the whole file."""
    def change(data):
        if not path:
            return value
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _set:
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value
        return data
    return change


def _entry(name: str, **changes):
    """A change to one template's entry, several keys at once."""
    def change(data):
        data["templates"][name].update(changes)
        return data
    return change


def _failed(error):
    """customer_segments ended by the service, with ``error`` as its recorded error."""
    return _entry("customer_segments", state="failed", error=error)


# Valid JSON, the wrong shape: each is what --resume (or a plain re-run) would have trusted, and crashed on or
# misread (a running template without its query id would be started again).
@pytest.mark.parametrize("damage, expected", [
    (_failed("boom"), "templates.customer_segments.error must be an object, got a string ('boom')"),
    (_failed(["boom"]), "templates.customer_segments.error must be an object, got a list"),
    (_failed({"code": 7, "message": "m"}), "templates.customer_segments.error.code must be a string, got a number"),
    (_set("", [1, 2]), "it must be an object, not a list"),
    (_set("", "journal"), "it must be an object, not a string"),
    (_set("membership_id", _set), "membership_id is missing"),
    (_set("status", "closed"), "status 'closed' is not one of 'open', 'finished' or 'interrupted'"),
    (_set("templates", []), "templates must be an object, got a list"),
    (_set("templates.customer_segments", "done"), "templates.customer_segments must be an object, got a string"),
    (_set("templates.channel_reach.queries", []), "templates.channel_reach is 'running' but has no query id"),
    (_set("templates.channel_reach.queries.0.id", 42), "templates.channel_reach.queries[0].id must be a string"),
    (_set("templates.channel_reach.queries.0.id", "q-1"), "queries[0].id must match ProtectedQueryIdentifier"),
    (_set("templates.channel_reach.queries.0", "q"), "templates.channel_reach.queries[0] must be an object"),
    (_set("templates.channel_reach.saved", "a.csv"), "templates.channel_reach.saved must be a list, got a string"),
    (_entry("channel_reach", state="starting", intent_at=None), "is 'starting' but has no intent_at"),
    (_set("templates.channel_reach.intent_at", "soon"), "templates.channel_reach.intent_at must be an ISO time"),
    (_set("templates.channel_reach.start_requests", "1"), "start_requests must be an integer, got a string ('1')"),
    (_set("templates.channel_reach.parameters", {"min_orders": 1}), "parameters.min_orders must be a string"),
    (_set("templates.channel_reach.candidates", None), "templates.channel_reach.candidates must be a list, got null"),
    (_set("previous_queries", {}), "previous_queries must be a list, got an object"),
])
def test_a_journal_of_the_wrong_shape_is_one_line_naming_the_key_and_starts_nothing(make_cloud, damage, expected):
    cloud = make_cloud()
    path = killed_journal(cloud)
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    before = path.read_text()
    for argv in (["run", "--all", "--resume"], ["run", "--all"]):
        code, _, err = cloud.run(*argv)
        assert code == 2, err
        line = one_error_line(err)
        assert f"journal {path} is damaged or half-written (" in line and expected in line, line
        assert "nothing was started" in line
    assert path.read_text() == before  # nothing overwritten
    assert cloud.fake.calls == []


def test_a_journal_of_another_membership_or_template_set_is_refused(make_cloud):
    cloud = make_cloud()
    path = killed_journal(cloud, NAMES[:3])
    data = json.loads(path.read_text())

    cloud.write_outputs(outputs(NAMES[:2]))
    code, _, err = cloud.run("run", "--all", "--resume")
    assert code == 2
    assert "it is for another template set (it has dp_segments that this run does not)" in one_error_line(err)
    code, _, err = cloud.run("run", "--all")  # plain: the unfinished run is not silently replaced
    assert code == 2 and "is of an unfinished run that may still have queries running" in one_error_line(err)

    cloud.write_outputs(outputs(NAMES[:3]))
    path.write_text(json.dumps({**data, "membership_id": OTHER_MEMBERSHIP}))
    code, _, err = cloud.run("run", "--all", "--resume")
    assert code == 2
    assert f"it is the journal of membership {OTHER_MEMBERSHIP}, not {MEMBERSHIP_ID}" in one_error_line(err)

    cloud.write_outputs(outputs(NAMES[:3], membership_id=OTHER_MEMBERSHIP))
    code, _, err = cloud.run("run", "--all", "--resume")
    assert code == 2
    line = one_error_line(err)
    assert f"no journal of `run --all` for membership {OTHER_MEMBERSHIP}" in line
    assert f"has journals of {MEMBERSHIP_ID} (run --all)" in line
    assert cloud.fake.calls == []


def test_a_local_job_has_no_resume_and_a_local_run_its_own(make_cloud, tmp_path):
    err = io.StringIO()
    assert main(["job", "retail_order_mix", "--local", "--resume"], stdout=io.StringIO(), stderr=err) == 2
    assert "--resume is for AWS" in err.getvalue()
    err = io.StringIO()  # run --local resumes from the local journal (localroom/journal.py): none here
    assert main(["run", "--all", "--local", "--resume", "--state-dir", str(tmp_path)], stdout=io.StringIO(),
                stderr=err) == 2
    assert "--resume: no unfinished run to resume" in err.getvalue()


def test_a_bad_read_timeout_names_the_variable(make_cloud, monkeypatch):
    cloud = make_cloud()
    monkeypatch.setenv("QUERYRUNNER_READ_TIMEOUT", "soon")
    code, _, err = cloud.run("run", "--all")
    assert code == 2
    assert "environment variable QUERYRUNNER_READ_TIMEOUT must be a finite number of seconds > 0" in one_error_line(err)
    assert cloud.fake.calls == []


# -- PySpark jobs: StartProtectedJob has no idempotency token either ---------------------------------------------
JOB = TemplateSpec("fake_order_mix", arn(9), job=True, sha256="ab" * 32)


def test_a_job_start_whose_answer_is_lost_is_followed_not_started_again(tmp_path, monkeypatch):
    fake = FakeCleanRooms(MEMBERSHIP_ID, COLLABORATION_ID, BUCKET, [JOB],
                          faults=Faults({("StartProtectedJob", JOB.name, 0): RESET_AFTER})).start()
    try:
        for var, value in cloud_env(fake, tmp_path).items():
            monkeypatch.setenv(var, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        path = tmp_path / "analyst.json"
        path.write_text(json.dumps({
            "region": REGION, "membership_id": MEMBERSHIP_ID, "collaboration_id": COLLABORATION_ID,
            "results_bucket": BUCKET, "results_prefix": "results", "runs_jobs": True,
            "job_templates": {JOB.name: {"arn": JOB.arn, "id": JOB.arn.rsplit("/", 1)[1], "sha256": JOB.sha256,
                                         "parameters": [], "tables": ["retail_purchases"], "compute": None}}}))
        out, err, time = io.StringIO(), io.StringIO(), VirtualTime()
        code = main(["job", JOB.name, "--outputs", str(path), "--out", str(tmp_path / "results")], stdout=out,
                    stderr=err, clock=time.clock, sleep=time.sleep, backoff=lambda: Backoff(rng=random.Random(0)),
                    poll=lambda: ElapsedPoll(rng=random.Random(0)))
        assert code == 0, err.getvalue()
        assert fake.start_requests[JOB.name] == 1 and fake.created[JOB.name] == 1
        job_id = next(iter(fake.records))
        assert f"found job {job_id}" in err.getvalue()
        assert f"job {job_id} found after its start's answer was lost (connection closed before the answer)" \
            in err.getvalue()
        assert (tmp_path / "results" / JOB.name / job_id / "result.csv").is_file()
        assert fake.problems == []
    finally:
        fake.stop()

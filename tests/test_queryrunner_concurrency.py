"""`run --all` in virtual time: real threads, a fake Clean Rooms, no real waiting.

VirtualTime (queryrunner/simulate.py) advances the clock only when every query
that can be in flight is asleep, jumping to the earliest wake-up: the threads
interleave as they would in real time, but a 10-minute run takes milliseconds
and is deterministic.
"""
from __future__ import annotations

import io
import json
import random
import threading
import uuid

import boto3
import pytest
from moto import mock_aws

from queryrunner.batch import run_all
from queryrunner.cli import main
from queryrunner.outputs import Template
from queryrunner.poll import Backoff, ElapsedPoll, QueryRunner, Reporter
from queryrunner.simulate import FakeCleanRooms, VirtualTime, run_benchmark
from tests.test_queryrunner_run import NoJitter

REGION = "us-east-1"
ACCOUNT = "111122223333"
MEMBERSHIP_ID = "0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d"
BUCKET = "analyst-results-111122223333"


def templates(n: int) -> list[Template]:
    return [Template(f"t{i}", f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}/analysistemplate/"
                              f"{uuid.UUID(int=i + 1)}", str(uuid.UUID(int=i + 1))) for i in range(n)]


def run_virtual(durations: list[float], workers: int, poll=lambda: ElapsedPoll(rng=random.Random(3))):
    ts = templates(len(durations))
    vt = VirtualTime(len(ts), workers)
    client = FakeCleanRooms({t.arn: d for t, d in zip(ts, durations)}, vt.clock, on_finished=vt.finished)
    runner = QueryRunner(client, MEMBERSHIP_ID, lambda t: {"resultFormat": "CSV", "bucket": BUCKET,
                                                           "keyPrefix": f"results/{t.name}"},
                         clock=vt.clock, sleep=vt.sleep, deadline=10_000, retries=0,
                         backoff=lambda: Backoff(rng=random.Random(3)), poll=poll, reporter=Reporter(io.StringIO()))
    outcomes = run_all(runner, [(t, {}) for t in ts], workers)
    return outcomes, client, vt.now


def test_all_queries_at_once_take_about_the_slowest():
    durations = [120.0, 480.0, 300.0, 60.0, 240.0]
    outcomes, client, wall = run_virtual(durations, workers=5)
    assert [o.status for o in outcomes] == ["SUCCESS"] * 5
    assert [o.template for o in outcomes] == ["t0", "t1", "t2", "t3", "t4"]
    assert client.max_in_flight == 5
    # finished when the slowest is seen done: at most a tenth of its duration late
    assert max(durations) <= wall <= 1.1 * max(durations)
    assert wall < sum(durations) / 2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("duration", [0.4, 3.0, 9.5, 17.0, 45.0, 95.0, 600.0, 3600.0, 9000.0])
def test_a_finished_query_is_noticed_within_a_tenth_of_its_duration(duration, seed):
    """Lateness <= max(1 s floor, a tenth of the duration), and never more than the 30 s cap."""
    _, client, wall = run_virtual([duration], 1, poll=lambda: ElapsedPoll(rng=random.Random(seed)))
    late = wall - duration
    assert 0 <= late <= min(30.0, max(1.0, 0.1 * duration)) + 1e-9
    polls = client.calls.count("get")
    assert polls <= 15 + 35 * max(1, duration / 60)  # the price: more polls than doubling, still bounded


def test_the_old_doubling_policy_was_late_by_up_to_the_query_itself():
    """Polls at 1, 3, 7, 15, 31 s (jitter off): a 16 s query is seen at 31 s, nearly twice its duration."""
    _, _, wall = run_virtual([16.0], 1, poll=lambda: Backoff(rng=NoJitter()))
    assert wall == pytest.approx(31.0)
    _, _, wall = run_virtual([16.0], 1, poll=lambda: ElapsedPoll(rng=NoJitter()))
    assert 16.0 <= wall <= 16.0 + 1.6


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_never_more_in_flight_than_the_limit(workers):
    rng = random.Random(11)
    durations = [rng.uniform(60, 600) for _ in range(9)]
    outcomes, client, wall = run_virtual(durations, workers)
    assert all(o.ok for o in outcomes)
    assert client.max_in_flight == workers
    # service side too: at no instant did more than `workers` queries run
    spans = [(q["start"], q["end"]) for q in client.queries.values()]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= workers
    assert wall >= max(max(durations), sum(durations) / workers)
    if workers == 1:
        assert wall >= sum(durations)


def test_cli_run_all_prints_each_result_and_a_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    ts = templates(4)
    durations = [200.0, 50.0, 400.0, 100.0]
    outputs = {"region": REGION, "membership_id": MEMBERSHIP_ID, "results_bucket": BUCKET,
               "results_prefix": "results", "result_format": "CSV",
               "analysis_templates": {t.name: {"arn": t.arn, "id": t.id, "differential_privacy": False,
                                               "parameters": [{"name": "min_orders", "type": "INTEGER",
                                                               "default": "1"}] if t.name == "t0" else []}
                                      for t in ts}}
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        vt = VirtualTime(len(ts), workers=2)

        def land_result(query_id: str) -> None:
            q = fake.queries[query_id]
            s3.put_object(Bucket=BUCKET, Key=f"{q['prefix']}/{query_id}/part-0.csv",
                          Body=f"template,rows\n{q['prefix'].split('/')[-1]},1\n".encode())
            vt.finished(query_id)

        fake = FakeCleanRooms({t.arn: d for t, d in zip(ts, durations)}, vt.clock, on_finished=land_result,
                              bucket=BUCKET)
        out, err = io.StringIO(), io.StringIO()
        code = main(["run", "--all", "--max-concurrency", "2", "--param", "min_orders=4", "--outputs", "-",
                     "--out", str(tmp_path)], stdin=io.StringIO(json.dumps(outputs)), stdout=out, stderr=err,
                    client_factory=lambda service, region: {"cleanrooms": fake, "s3": s3}[service],
                    clock=vt.clock, sleep=vt.sleep)

    assert code == 0, err.getvalue()
    assert fake.max_in_flight == 2
    for t in ts:
        assert f"== {t.name} (" in out.getvalue()
        assert (tmp_path / t.name).is_dir()
    summary = out.getvalue().split("== summary ==")[1]
    assert [line.split(" | ")[0].strip() for line in summary.strip().splitlines()[2:6]] == ["t0", "t1", "t2", "t3"]
    assert summary.count("SUCCESS") == 4
    # t0 got the parameter it declares, the others none
    sent = {q["arn"]: q["params"] for q in fake.queries.values()}
    assert sent == {t.arn: ({"min_orders": "4"} if t.name == "t0" else {}) for t in ts}
    # 2 lanes, filled in order: t0 (200) then t3 (100); t1 (50) then t2 (400).
    # About 450 s plus at most a tenth of each query's duration, not the 750 s sum.
    assert 450 <= vt.now <= 1.1 * 450
    assert "compute service default" in err.getvalue()
    assert summary.splitlines()[1].split(" | ")[5].strip() == "compute"


def test_cli_run_all_rejects_a_parameter_no_template_declares():
    outputs = {"region": REGION, "membership_id": MEMBERSHIP_ID, "results_bucket": BUCKET,
               "results_prefix": "results", "result_format": "CSV",
               "analysis_templates": {t.name: {"arn": t.arn, "id": t.id, "parameters": []} for t in templates(2)}}
    err = io.StringIO()
    code = main(["run", "--all", "--param", "x=1", "--outputs", "-"], stdin=io.StringIO(json.dumps(outputs)),
                stdout=io.StringIO(), stderr=err, client_factory=lambda s, r: pytest.fail("no client expected"))
    assert code == 2 and "unknown parameter 'x': no template declares it" in err.getvalue()


def test_ctrl_c_during_run_all_cancels_every_query_in_flight(tmp_path):
    """A real SIGINT while the main thread waits; time runs 100x faster than real."""
    import os
    import signal
    import time

    ts = templates(3)
    scale = 100.0
    clock = lambda: time.monotonic() * scale  # noqa: E731
    sleep = lambda seconds: threading.Event().wait(seconds / scale)  # noqa: E731
    sent = threading.Event()

    class InterruptingFake(FakeCleanRooms):
        def get_protected_query(self, **kwargs):
            response = super().get_protected_query(**kwargs)
            if len(self.queries) == 2 and not sent.is_set():
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
            return response

    # An hour per query (36 s here): none can finish before the interrupt lands, however loaded the
    # machine (at 600 s, a run beside other heavy processes once saw a query succeed first).
    fake = InterruptingFake({t.arn: 3600.0 for t in ts}, clock)
    outputs = {"region": REGION, "membership_id": MEMBERSHIP_ID, "results_bucket": BUCKET,
               "results_prefix": "results", "result_format": "CSV",
               "analysis_templates": {t.name: {"arn": t.arn, "id": t.id, "parameters": []} for t in ts}}
    out, err = io.StringIO(), io.StringIO()
    # --out in the test's folder: the run journal lives under it (results/.journal by default).
    code = main(["run", "--all", "--max-concurrency", "2", "--outputs", "-", "--out", str(tmp_path)],
                stdin=io.StringIO(json.dumps(outputs)), stdout=out, stderr=err,
                client_factory=lambda service, region: fake, clock=clock, sleep=sleep)

    assert code == 130
    assert "interrupted: cancelling queries in flight" in err.getvalue()
    assert "cancelled 2 queries; exiting" in err.getvalue()
    assert sorted(q["final"] for q in fake.queries.values()) == ["CANCELLED", "CANCELLED"]
    assert fake.calls.count("start") == 2  # the queued third template never started
    assert out.getvalue() == ""
    # The journal records the interruption: the two cancelled, the third never started.
    journal = json.loads(next(tmp_path.glob(".journal/*/all.json")).read_text())
    assert journal["status"] == "interrupted" and journal["interrupted_by"] == "Ctrl-C"
    assert sorted(e["state"] for e in journal["templates"].values()) == ["interrupted"] * 3


def test_benchmark_command_smoke():
    """Real threads, real (scaled) time: the output's shape, not its numbers."""
    out = io.StringIO()
    code = main(["benchmark", "--queries", "4", "--max-concurrency", "2", "--min-duration", "1",
                 "--max-duration", "5", "--time-scale", "0.002"], stdout=out, stderr=io.StringIO())
    assert code == 0
    text = out.getvalue()
    assert "slowest query" in text and "sequential sum" in text and "ideal end" in text
    import re

    for policy in ("elapsed (the runner's)", "doubling (the old one)"):
        line = next(line for line in text.splitlines() if line.strip().startswith(policy))
        assert re.search(r"\d+\.\d\dx .*2 limit 2\s+4 of 4$", line), line


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_benchmark_elapsed_policy_ends_within_a_tenth_of_the_slowest_query(seed):
    """The benchmark's own numbers, in virtual time: the runner's policy vs the old doubling one."""
    out = io.StringIO()
    report = run_benchmark(5, 5, seed, 2.0, 30.0, out, virtual=True)
    new, old = report["policies"]["elapsed"], report["policies"]["doubling"]
    assert report["ideal"] == report["slowest"]  # all five in flight at once
    assert report["slowest"] <= new["wall"] <= 1.1 * report["slowest"]
    assert new["ratio"] == pytest.approx(new["wall"] / report["slowest"])
    assert new["wall"] <= old["wall"] + 1e-9
    assert new["succeeded"] == old["succeeded"] == 5
    assert f"{new['ratio']:.2f}x" in out.getvalue() and f"{old['ratio']:.2f}x" in out.getvalue()


def test_benchmark_shows_the_old_overshoot():
    report = run_benchmark(5, 5, 1, 2.0, 30.0, io.StringIO(), virtual=True)
    assert report["policies"]["doubling"]["ratio"] > 1.5 > 1.1 > report["policies"]["elapsed"]["ratio"]


def test_benchmark_with_queued_queries_compares_with_the_ideal_schedule():
    report = run_benchmark(12, 3, 4, 2.0, 30.0, io.StringIO(), virtual=True, policies=("elapsed",))
    new = report["policies"]["elapsed"]
    assert report["ideal"] > report["slowest"]
    assert report["ideal"] <= new["wall"] <= 1.1 * report["ideal"]
    assert new["max_in_flight"] == 3

"""A fake Clean Rooms client and the `benchmark` command built on it.

The fake answers start/get/update_protected_query with the service's response
shapes; each query takes a preset duration on the given clock. The benchmark
drives it through the very code path of `run --all` (QueryRunner + run_all,
real threads, real time scaled down) to show that total time tracks the
slowest query rather than the sum. It is a demonstration, not a test.
"""
from __future__ import annotations

import datetime as dt
import io
import random
import threading
import time
import uuid
from collections.abc import Callable

from queryrunner.batch import run_all
from queryrunner.outputs import Template
from queryrunner.poll import Backoff, QueryRunner, Reporter

ACCOUNT = "111122223333"
REGION = "us-east-1"


def template_arn(membership_id: str, template_id: str) -> str:
    return f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{membership_id}/analysistemplate/{template_id}"


class FakeCleanRooms:
    """Protected queries that finish `durations[arn]` clock units after they start."""

    def __init__(self, durations: dict[str, float], clock: Callable[[], float],
                 on_finished: Callable[[str], None] = lambda query_id: None, bucket: str = "results-bucket"):
        self.durations, self.clock, self.on_finished, self.bucket = durations, clock, on_finished, bucket
        self._lock = threading.Lock()
        self.queries: dict[str, dict] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[str] = []

    def _view(self, q: dict, status: str) -> dict:
        view = {
            "id": q["id"], "membershipId": q["membership"],
            "membershipArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{q['membership']}",
            "createTime": q["created"], "status": status,
        }
        if status == "SUCCESS":
            view["result"] = {"output": {"s3": {"location": f"s3://{self.bucket}/{q['prefix']}/{q['id']}/"}}}
        return {"protectedQuery": view}

    def start_protected_query(self, *, type, membershipIdentifier, sqlParameters, resultConfiguration):
        arn = sqlParameters["analysisTemplateArn"]
        query_id = str(uuid.uuid4())
        with self._lock:
            self.calls.append("start")
            self.queries[query_id] = {
                "id": query_id, "membership": membershipIdentifier, "arn": arn, "start": self.clock(),
                "params": dict(sqlParameters.get("parameters", {})),
                "duration": self.durations[arn], "created": dt.datetime.now(dt.timezone.utc),
                "prefix": resultConfiguration["outputConfiguration"]["s3"].get("keyPrefix", ""), "final": None,
            }
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._view(self.queries[query_id], "SUBMITTED")

    def get_protected_query(self, *, membershipIdentifier, protectedQueryIdentifier):
        with self._lock:
            self.calls.append("get")
            q = self.queries[protectedQueryIdentifier]
            if q["final"]:
                return self._view(q, q["final"])
            elapsed = self.clock() - q["start"]
            if elapsed < q["duration"]:
                return self._view(q, "SUBMITTED" if elapsed < 0.1 * q["duration"] else "STARTED")
            q["final"] = "SUCCESS"
            q["end"] = q["start"] + q["duration"]
            self.in_flight -= 1
        self.on_finished(protectedQueryIdentifier)
        return self._view(q, "SUCCESS")

    def update_protected_query(self, *, membershipIdentifier, protectedQueryIdentifier, targetStatus):
        with self._lock:
            self.calls.append("update")
            q = self.queries[protectedQueryIdentifier]
            if not q["final"]:
                q["final"] = "CANCELLED"
                self.in_flight -= 1
            return self._view(q, q["final"])


def make_templates(n: int, membership_id: str) -> list[Template]:
    return [Template(f"sim_{i:03d}", template_arn(membership_id, str(uuid.UUID(int=i + 1))), str(uuid.UUID(int=i + 1)))
            for i in range(n)]


def run_benchmark(queries: int, max_concurrency: int, seed: int, min_duration: float, max_duration: float,
                  out, verbose: bool = False) -> dict:
    rng = random.Random(seed)
    membership_id = str(uuid.UUID(int=seed + 10**6))
    templates = make_templates(queries, membership_id)
    durations = {t.arn: rng.uniform(min_duration, max_duration) for t in templates}
    client = FakeCleanRooms(durations, time.monotonic)
    # Poll intervals scaled down like the durations (real runs: 1 s doubling to 30 s).
    backoff = lambda: Backoff(initial=0.02, factor=2.0, cap=0.2, rng=random.Random(seed))  # noqa: E731
    reporter = Reporter(out if verbose else io.StringIO())
    runner = QueryRunner(client, membership_id, lambda t: {"resultFormat": "CSV", "bucket": "b", "keyPrefix": t.name},
                         clock=time.monotonic, deadline=time.monotonic() + 3600, retries=0, backoff=backoff,
                         reporter=reporter)
    start = time.monotonic()
    outcomes = run_all(runner, [(t, {}) for t in templates], max_concurrency)
    wall = time.monotonic() - start
    total, slowest = sum(durations.values()), max(durations.values())
    bound = max(slowest, total / max_concurrency)
    report = {"queries": queries, "max_concurrency": max_concurrency, "wall": wall, "slowest": slowest,
              "sum": total, "lower_bound": bound, "max_in_flight": client.max_in_flight,
              "succeeded": sum(o.ok for o in outcomes)}
    print(f"{queries} simulated queries, durations {min_duration}-{max_duration}s (seed {seed}), "
          f"max concurrency {max_concurrency}", file=out)
    rows = [
        ("wall time", f"{wall:8.2f}s"),
        ("slowest query", f"{slowest:8.2f}s"),
        ("max(slowest, sum/K)", f"{bound:8.2f}s   best possible with K in flight"),
        ("sequential sum", f"{total:8.2f}s   speed-up {total / wall:.1f}x"),
        ("overhead vs best", f"{wall - bound:8.2f}s   polling granularity, thread start-up"),
        ("max in flight", f"{client.max_in_flight:8d}    limit {max_concurrency}"),
        ("succeeded", f"{report['succeeded']:8d}    of {queries}"),
    ]
    for label, value in rows:
        print(f"  {label:<20}{value}", file=out)
    return report

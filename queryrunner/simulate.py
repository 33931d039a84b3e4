"""A fake Clean Rooms client and the `benchmark` command built on it.

The fake answers start/get/update_protected_query with the service's response
shapes; each query takes a preset duration on the given clock. The benchmark
drives it through the very code path of `run --all` (QueryRunner + run_all,
real threads) in simulated seconds: real time scaled down (ScaledTime), or a
virtual clock that jumps to the next wake-up (VirtualTime, exact and instant).
It compares the runner's poll policy (ElapsedPoll) with the old doubling one
(Backoff): how long after the slowest query `run --all` ends. It is a
demonstration; the tests assert the same numbers in virtual time.
"""
from __future__ import annotations

import datetime as dt
import heapq
import io
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from queryrunner.batch import run_all
from queryrunner.checks import CRPU_PER_WORKER
from queryrunner.outputs import Template
from queryrunner.poll import Backoff, ElapsedPoll, QueryRunner, Reporter

ACCOUNT = "111122223333"
REGION = "us-east-1"

POLICIES: dict[str, tuple[str, Callable[[random.Random], object]]] = {
    "elapsed": ("elapsed (the runner's)", lambda rng: ElapsedPoll(rng=rng)),
    "doubling": ("doubling (the old one)", lambda rng: Backoff(rng=rng)),
}


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
        if q["compute"]:
            view["computeConfiguration"] = q["compute"]
        if status == "SUCCESS":
            location = {"location": f"s3://{self.bucket}/{q['prefix']}/{q['id']}/"}
            if q["members"]:
                view["result"] = {"output": {"distribute": {
                    "s3": location, "memberList": [{"accountId": a} for a in q["members"]]}}}
            else:
                view["result"] = {"output": {"s3": location}}
            view["statistics"] = {"totalDurationInMillis": int(q["duration"] * 1000)}
            worker = (q["compute"] or {}).get("worker") or {}
            per = CRPU_PER_WORKER.get(worker.get("type", ""))
            if per and worker.get("number"):
                hours = q["duration"] / 3600
                view["statistics"]["billedResourceUtilization"] = {"units": round(per * worker["number"] * hours, 4)}
        return {"protectedQuery": view}

    def start_protected_query(self, *, type, membershipIdentifier, sqlParameters, resultConfiguration,
                              computeConfiguration=None):
        arn = sqlParameters["analysisTemplateArn"]
        output = resultConfiguration["outputConfiguration"]
        locations = (output.get("distribute") or {}).get("locations") or [{"s3": output.get("s3") or {}}]
        s3 = next((loc["s3"] for loc in locations if "s3" in loc), {})
        query_id = str(uuid.uuid4())
        with self._lock:
            self.calls.append("start")
            self.queries[query_id] = {
                "id": query_id, "membership": membershipIdentifier, "arn": arn, "start": self.clock(),
                "params": dict(sqlParameters.get("parameters", {})),
                "duration": self.durations[arn], "created": dt.datetime.now(dt.timezone.utc),
                "prefix": s3.get("keyPrefix", ""), "final": None, "compute": computeConfiguration,
                "members": [loc["member"]["accountId"] for loc in locations if "member" in loc],
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
            now = self.clock()
            elapsed = now - q["start"]
            if elapsed < q["duration"]:
                return self._view(q, "SUBMITTED" if elapsed < 0.1 * q["duration"] else "STARTED")
            q["final"] = "SUCCESS"
            q["end"] = q["start"] + q["duration"]
            q["noticed"] = now
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


class ScaledTime:
    """Real time, scaled down: clock() and sleep() count simulated seconds, each lasting `scale` real seconds."""

    def __init__(self, scale: float):
        self.scale = scale
        self.origin = time.monotonic()

    def clock(self) -> float:
        return (time.monotonic() - self.origin) / self.scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def finished(self, _query_id: str) -> None:
        pass


class VirtualTime:
    """A clock that moves only when every query that can be in flight is asleep, to the earliest wake-up.

    The threads interleave as they would in real time, but an hour of polling takes milliseconds and the
    numbers are exact. `finished` must be called when a query is seen finished (FakeCleanRooms.on_finished).
    """

    def __init__(self, queries: int, workers: int):
        self.now = 0.0
        self.cond = threading.Condition()
        self.unfinished = queries
        self.workers = workers
        self.wakeups: list[float] = []

    def clock(self) -> float:
        with self.cond:
            return self.now

    def finished(self, _query_id: str) -> None:
        with self.cond:
            self.unfinished -= 1
            self._maybe_advance()

    def _maybe_advance(self) -> None:
        # Sleepers whose wake-up has come are awake even if their thread has not
        # run yet; counting them as asleep would advance time twice.
        asleep = [w for w in self.wakeups if w > self.now]
        if asleep and len(asleep) >= min(self.unfinished, self.workers):
            self.now = min(asleep)
            self.cond.notify_all()

    def sleep(self, seconds: float) -> None:
        with self.cond:
            wake = self.now + seconds
            self.wakeups.append(wake)
            self._maybe_advance()
            while self.now < wake:
                if not self.cond.wait(timeout=5):
                    raise RuntimeError("virtual time stalled")
            self.wakeups.remove(wake)


def make_templates(n: int, membership_id: str) -> list[Template]:
    return [Template(f"sim_{i:03d}", template_arn(membership_id, str(uuid.UUID(int=i + 1))), str(uuid.UUID(int=i + 1)))
            for i in range(n)]


def ideal_schedule(durations: Sequence[float], lanes: int) -> float:
    """When `run --all` would end if every query were noticed the moment it ends: K lanes taking work in order."""
    free = [0.0] * min(lanes, max(len(durations), 1))
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
        end = max(end, start + d)
    return end


def run_policy(policy: str, durations: Sequence[float], max_concurrency: int, seed: int, *,
               time_scale: float = 0.01, virtual: bool = False, out=None) -> dict:
    """One `run --all` over the simulated queries with one poll policy; times in simulated seconds."""
    membership_id = str(uuid.UUID(int=seed + 10**6))
    templates = make_templates(len(durations), membership_id)
    clock = VirtualTime(len(templates), max_concurrency) if virtual else ScaledTime(time_scale)
    client = FakeCleanRooms({t.arn: d for t, d in zip(templates, durations)}, clock.clock,
                            on_finished=clock.finished)
    make_policy = POLICIES[policy][1]
    runner = QueryRunner(client, membership_id, lambda t: {"resultFormat": "CSV", "bucket": "b", "keyPrefix": t.name},
                         clock=clock.clock, sleep=clock.sleep, deadline=clock.clock() + 10**7, retries=0,
                         poll=lambda: make_policy(random.Random(seed)), reporter=Reporter(out or io.StringIO()))
    start = clock.clock()
    outcomes = run_all(runner, [(t, {}) for t in templates], max_concurrency)
    wall = clock.clock() - start
    late = [(q["noticed"] - q["end"]) / q["duration"] for q in client.queries.values() if "noticed" in q]
    return {"policy": policy, "wall": wall, "polls": client.calls.count("get"),
            "worst_late": max(late, default=0.0), "max_in_flight": client.max_in_flight,
            "succeeded": sum(o.ok for o in outcomes)}


def run_benchmark(queries: int, max_concurrency: int, seed: int, min_duration: float, max_duration: float,
                  out, verbose: bool = False, *, policies: Sequence[str] = ("elapsed", "doubling"),
                  time_scale: float = 0.01, virtual: bool = False) -> dict:
    rng = random.Random(seed)
    durations = [rng.uniform(min_duration, max_duration) for _ in range(queries)]
    total, slowest = sum(durations), max(durations)
    ideal = ideal_schedule(durations, max_concurrency)
    clock = "virtual time" if virtual else f"real time x {time_scale:g}"
    print(f"{queries} simulated queries of {min_duration:g}-{max_duration:g} s (seed {seed}), at most "
          f"{max_concurrency} in flight; {clock}; times in simulated seconds", file=out)
    for label, value in [("slowest query", f"{slowest:8.2f}s"),
                         ("ideal end", f"{ideal:8.2f}s   every query noticed the moment it ends"
                                       + (" (= slowest: all in flight at once)" if ideal == slowest else
                                          f" ({max_concurrency} lanes, in order)")),
                         ("sequential sum", f"{total:8.2f}s")]:
        print(f"  {label:<16}{value}", file=out)
    reports = {}
    for policy in policies:
        if verbose:
            print(f"-- {POLICIES[policy][0]} --", file=out)
        reports[policy] = run_policy(policy, durations, max_concurrency, seed, time_scale=time_scale,
                                     virtual=virtual, out=out if verbose else None)
    print(f"  {'poll policy':<24}{'wall time':>10}{'vs slowest':>12}{'vs ideal':>10}{'worst late':>12}"
          f"{'polls/query':>13}   {'max in flight':<16}succeeded", file=out)
    for policy, r in reports.items():
        r.update(ratio=r["wall"] / slowest, ideal_ratio=r["wall"] / ideal, slowest=slowest, ideal=ideal, sum=total)
        print(f"  {POLICIES[policy][0]:<24}{r['wall']:>9.2f}s{r['ratio']:>11.2f}x{r['ideal_ratio']:>9.2f}x"
              f"{100 * r['worst_late']:>11.1f}%{r['polls'] / queries:>13.1f}   "
              f"{r['max_in_flight']} limit {max_concurrency:<8}{r['succeeded']} of {queries}", file=out)
    print("  worst late: how long after it ended a query was seen finished, as a share of its duration", file=out)
    return {"queries": queries, "max_concurrency": max_concurrency, "slowest": slowest, "ideal": ideal,
            "sum": total, "policies": reports}

"""Starting a protected query, polling it to a final state, retrying transient failures.

Clean Rooms has no waiter for protected queries, so the runner polls
get_protected_query. Each wait is bounded by a fraction of the time the query
has been running (ElapsedPoll: a tenth, clamped to 1-30 s, jittered so that
many analysts do not poll in lock-step), so a finished query is noticed at most
about 10% of its own duration late, and everything runs under one absolute
deadline. Re-runs after a transient failure wait by capped exponential backoff
(Backoff). Time is injected (`clock`, `sleep`) so that tests run in virtual time
and the benchmark can run scaled-down real time.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from queryrunner.outputs import Template, describe_compute

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED", "TIMED_OUT"})

# Codes that ProtectedQueryError.code documents as temporary (botocore cleanrooms
# 2022-02-17 model, ProtectedQueryError: "TRANSIENT_ERROR - A temporary condition
# caused the failure, such as throttling or a network interruption"). Used only
# when the service sends no `retry` object; an explicit retry.retryable wins.
TRANSIENT_ERROR_CODES = frozenset({"TRANSIENT_ERROR"})

# API errors of start_protected_query worth another attempt: the membership's
# quota of ongoing queries is full (another analyst's run), or throttling that
# outlived botocore's own retries.
RETRYABLE_API_ERRORS = frozenset(
    {"ServiceQuotaExceededException", "ThrottlingException", "InternalServerException"}
)


MAX_POLL_ERRORS = 3


class Backoff:
    """Capped exponential backoff with jitter: initial, initial*factor, ... <= cap.

    Each delay is drawn from [delay/2, delay] ("equal jitter"): never zero, so a
    fast-failing loop cannot spin, and never above the cap.
    """

    def __init__(self, initial: float = 1.0, factor: float = 2.0, cap: float = 30.0,
                 rng: random.Random | None = None):
        if initial <= 0 or factor < 1 or cap < initial:
            raise ValueError("need 0 < initial <= cap and factor >= 1")
        self.initial, self.factor, self.cap = initial, factor, cap
        self.rng = rng or random.Random()
        self._sequence: Iterator[float] | None = None

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay / 2 + self.rng.random() * delay / 2
            delay = min(self.cap, delay * self.factor)

    def delay(self, elapsed: float) -> float:
        """As a poll policy (the runner's old one, kept for comparison): the next delay; ``elapsed`` is ignored.

        A query that ends just after a poll is noticed up to one whole delay late, and the delay doubles
        regardless of how long the query has run: without jitter it polls at 1, 3, 7, 15, 31 s, so a 16 s
        query is seen finished at 31 s.
        """
        if self._sequence is None:
            self._sequence = self.delays()
        return next(self._sequence)


class ElapsedPoll:
    """Poll delays bounded by a fraction of the time the query has been running.

    The wait after ``elapsed`` seconds is ``fraction * elapsed`` clamped to [floor, cap], drawn from
    [delay/2, delay] (the same equal jitter as Backoff). A query that ends at T is therefore noticed by
    T + max(floor, min(cap, fraction * T)): within 10% of its duration by default once it has run 10 s, and
    never more than `cap` late. The price is more get_protected_query calls (about 39 for a one-minute query
    instead of 7, about 75 for a ten-minute one instead of 31); the 1 s floor, jittered, keeps them at least
    half a second apart, as the old policy's first poll was.
    """

    def __init__(self, fraction: float = 0.1, floor: float = 1.0, cap: float = 30.0,
                 rng: random.Random | None = None):
        if not (0 < fraction <= 1) or floor <= 0 or cap < floor:
            raise ValueError("need 0 < fraction <= 1 and 0 < floor <= cap")
        self.fraction, self.floor, self.cap = fraction, floor, cap
        self.rng = rng or random.Random()

    def bound(self, elapsed: float) -> float:
        """The longest wait after ``elapsed`` seconds (before jitter)."""
        return min(self.cap, max(self.floor, self.fraction * max(elapsed, 0.0)))

    def delay(self, elapsed: float) -> float:
        bound = self.bound(elapsed)
        return bound / 2 + self.rng.random() * bound / 2


@dataclass
class Outcome:
    """How one template's run ended (after retries)."""

    template: str
    status: str  # a terminal ProtectedQueryStatus, or DEADLINE / INTERRUPTED / START_FAILED
    query_id: str | None = None
    query: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    elapsed: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    compute: dict[str, Any] | None = None  # the computeConfiguration sent (None: none, the service's default)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def location(self) -> str | None:
        return result_location(self.query)

    @property
    def receivers(self) -> list[str]:
        return result_members(self.query)

    @property
    def billed(self) -> float | None:
        return billed_units(self.query)

    @property
    def compute_used(self) -> dict[str, Any] | None:
        """What the service says the query ran on, else what was asked for."""
        return self.query.get("computeConfiguration") or self.compute


def result_location(query: dict[str, Any]) -> str | None:
    """The runner's own copy: result.output.s3.location, or result.output.distribute.s3.location."""
    output = (query.get("result") or {}).get("output") or {}
    s3 = output.get("s3") or (output.get("distribute") or {}).get("s3") or {}
    return s3.get("location")


def result_members(query: dict[str, Any]) -> list[str]:
    """Member accounts that received the result (result.output.distribute.memberList, or .memberList)."""
    output = (query.get("result") or {}).get("output") or {}
    members = (output.get("distribute") or {}).get("memberList") or output.get("memberList") or []
    return [m["accountId"] for m in members if m.get("accountId")]


def billed_units(query: dict[str, Any]) -> float | None:
    """CRPU-hours billed (statistics.billedResourceUtilization.units), when the service reports them."""
    return ((query.get("statistics") or {}).get("billedResourceUtilization") or {}).get("units")


class Reporter:
    """Progress lines on stderr; one lock so lines from worker threads never interleave."""

    def __init__(self, stream):
        self.stream = stream
        self._lock = threading.Lock()

    def say(self, template: str, message: str) -> None:
        with self._lock:
            print(f"[{template}] {message}", file=self.stream, flush=True)


def is_retryable(error: dict[str, Any] | None) -> bool:
    if not error:
        return False
    retry = error.get("retry")
    if isinstance(retry, dict) and "retryable" in retry:
        return bool(retry["retryable"])
    return error.get("code") in TRANSIENT_ERROR_CODES


class Poller:
    """The poll loop that protected queries (QueryRunner) and protected jobs (queryrunner/jobs.py) share.

    A subclass sets ``clock``, ``sleep``, ``deadline``, ``poll`` (a factory of poll policies) and ``reporter``.
    """

    def stopped(self) -> bool:
        """Whether to stop polling after a sleep (Ctrl-C in another thread)."""
        return False

    def until_final(self, name: str, record: dict[str, Any], final: frozenset[str], started: float,
                    operation: str, get: Callable[[], dict[str, Any]]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Poll ``get`` (one ``operation`` call) until the record's status is in ``final``, under the deadline.

        Returns (how, record, error): ``how`` is the final status, DEADLINE (the caller cancels), INTERRUPTED
        or POLL_FAILED (MAX_POLL_ERRORS failed calls in a row; ``error`` is the last one's code and message);
        ``record`` is the last one read.
        """
        status = record["status"]
        policy = self.poll()
        running_since = self.clock()  # the record's own start: a retry's new query or job starts from zero
        poll_errors = 0
        while status not in final:
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                self.reporter.say(name, f"deadline reached after {self.clock() - started:.1f}s while {status}; "
                                        "cancelling")
                return "DEADLINE", record, {}
            self.sleep(min(policy.delay(self.clock() - running_since), remaining))
            if self.stopped():
                return "INTERRUPTED", record, {}
            try:
                record = get()
            except ClientError as exc:
                # botocore already retried throttling; a few more failures in a row
                # mean something persistent (permissions, the query is gone).
                poll_errors += 1
                err = exc.response.get("Error", {})
                self.reporter.say(name, f"{operation} failed ({poll_errors}/{MAX_POLL_ERRORS}): "
                                        f"{err.get('Code')}: {err.get('Message')}")
                if poll_errors >= MAX_POLL_ERRORS:
                    return "POLL_FAILED", record, {"code": err.get("Code"), "message": err.get("Message")}
                continue
            poll_errors = 0
            if record["status"] != status:
                self.reporter.say(name, f"{status} -> {record['status']} after {self.clock() - started:.1f}s")
                status = record["status"]
        return status, record, {}


class QueryRunner(Poller):
    """Runs analysis templates as protected queries for one membership.

    Thread-safe: `run --all` calls `execute` from several threads. Query ids in
    flight are tracked so that Ctrl-C (seen by the main thread only) can cancel
    every one of them.
    """

    def __init__(self, client, membership_id: str, output_s3: Callable[[Template], dict[str, str]], *,
                 clock: Callable[[], float], sleep: Callable[[float], Any] | None = None,
                 deadline: float, retries: int = 2, backoff: Callable[[], Backoff] = Backoff,
                 poll: Callable[[], Any] = ElapsedPoll, reporter: Reporter,
                 receivers: Sequence[str] = (),
                 compute: Callable[[Template], dict[str, Any] | None] = lambda template: None):
        self.client = client
        self.membership_id = membership_id
        self.output_s3 = output_s3
        # Member accounts that get every result too (distribute), besides the runner's own S3 location.
        self.receivers = tuple(receivers)
        self.compute = compute
        # `poll()` makes one poll policy per query: an object whose delay(elapsed) gives the next wait.
        self.poll = poll
        self.clock = clock
        self.stop_event = threading.Event()
        # Waiting on the stop event instead of time.sleep lets Ctrl-C wake every
        # polling thread at once.
        self.sleep = sleep or self.stop_event.wait
        self.deadline = deadline
        self.retries = retries
        self.backoff = backoff
        self.reporter = reporter
        self._lock = threading.Lock()
        self._in_flight: dict[str, str] = {}

    # -- public -------------------------------------------------------------
    def execute(self, template: Template, params: dict[str, str]) -> Outcome:
        started = self.clock()
        retry_delays = self.backoff().delays()
        outcome = Outcome(template.name, "START_FAILED")
        for attempt in range(1, self.retries + 2):
            outcome = self._attempt(template, params, attempt, started)
            outcome.attempts = attempt
            outcome.elapsed = self.clock() - started
            retryable = outcome.status == "FAILED" and is_retryable(outcome.query.get("error"))
            retryable = retryable or (outcome.status == "START_FAILED" and outcome.error_code in RETRYABLE_API_ERRORS)
            if not retryable or attempt > self.retries or self.stop_event.is_set():
                return outcome
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return outcome
            delay = min(next(retry_delays), remaining)
            self.reporter.say(template.name, f"attempt {attempt} failed with retryable {outcome.error_code}: "
                                             f"{outcome.error_message}; retry {attempt}/{self.retries} "
                                             f"in {delay:.1f}s")
            self.sleep(delay)
            if self.stop_event.is_set():
                return Outcome(template.name, "INTERRUPTED", attempts=attempt, elapsed=self.clock() - started)
        return outcome

    def stop(self) -> None:
        """Stop polling and starting; the caller cancels what is in flight."""
        self.stop_event.set()

    def cancel_in_flight(self) -> list[str]:
        self.stop()
        with self._lock:
            pending = dict(self._in_flight)
        for query_id, name in pending.items():
            self.cancel(query_id, name)
        return list(pending)

    def cancel(self, query_id: str, template: str) -> bool:
        try:
            self.client.update_protected_query(membershipIdentifier=self.membership_id,
                                               protectedQueryIdentifier=query_id, targetStatus="CANCELLED")
        except ClientError as exc:
            # Typically the query finished between our last poll and now.
            self.reporter.say(template, f"could not cancel {query_id}: {exc.response['Error'].get('Message', exc)}")
            return False
        finally:
            with self._lock:
                self._in_flight.pop(query_id, None)
        self.reporter.say(template, f"cancelled query {query_id}")
        return True

    # -- internals ----------------------------------------------------------
    def result_configuration(self, template: Template) -> dict[str, Any]:
        s3 = self.output_s3(template)
        if not self.receivers:
            return {"outputConfiguration": {"s3": s3}}
        # The model allows one S3 location at most, and not the runner's own account as a member.
        locations = [{"s3": s3}] + [{"member": {"accountId": account}} for account in self.receivers]
        return {"outputConfiguration": {"distribute": {"locations": locations}}}

    def _attempt(self, template: Template, params: dict[str, str], attempt: int, started: float) -> Outcome:
        if self.stop_event.is_set():
            return Outcome(template.name, "INTERRUPTED")
        compute = self.compute(template)
        request: dict[str, Any] = {
            "type": "SQL",
            # The membership id, not the collaboration id (the seed recipe's bug).
            "membershipIdentifier": self.membership_id,
            "sqlParameters": {"analysisTemplateArn": template.arn, "parameters": dict(params)},
            "resultConfiguration": self.result_configuration(template),
        }
        if compute is not None:
            request["computeConfiguration"] = compute
        try:
            response = self.client.start_protected_query(**request)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            self.reporter.say(template.name, f"start_protected_query failed: {err.get('Code')}: {err.get('Message')}")
            return Outcome(template.name, "START_FAILED", error_code=err.get("Code"), error_message=err.get("Message"),
                           compute=compute)
        query = response["protectedQuery"]
        query_id = query["id"]
        with self._lock:
            self._in_flight[query_id] = template.name
        if self.stop_event.is_set():
            # Ctrl-C arrived while this start was on the wire.
            self.cancel(query_id, template.name)
            return Outcome(template.name, "INTERRUPTED", query_id=query_id, query=query)
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        self.reporter.say(template.name, f"started query {query_id}{suffix}: {query['status']}; compute "
                                         f"{describe_compute(query.get('computeConfiguration') or compute)}")
        outcome = self._poll(template.name, query, started)
        outcome.compute = compute
        if outcome.status in TERMINAL:
            with self._lock:
                self._in_flight.pop(query_id, None)
        return outcome

    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def _poll(self, name: str, query: dict[str, Any], started: float) -> Outcome:
        query_id = query["id"]
        how, query, failure = self.until_final(
            name, query, TERMINAL, started, "get_protected_query",
            lambda: self.client.get_protected_query(membershipIdentifier=self.membership_id,
                                                    protectedQueryIdentifier=query_id)["protectedQuery"])
        if how == "DEADLINE":
            self.cancel(query_id, name)
            return Outcome(name, "DEADLINE", query_id=query_id, query=query, error_code="DEADLINE_EXCEEDED",
                           error_message=f"no final state before the deadline (last status {query['status']})")
        if how == "INTERRUPTED":
            return Outcome(name, "INTERRUPTED", query_id=query_id, query=query)
        error = failure or query.get("error") or {}
        return Outcome(name, how, query_id=query_id, query=query,
                       error_code=error.get("code"), error_message=error.get("message"))

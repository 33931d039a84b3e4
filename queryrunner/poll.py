"""Starting a protected query once, polling it to a final state, retrying what provably did nothing.

Clean Rooms has no waiter for protected queries, so the runner polls
get_protected_query. Each wait is bounded by a fraction of the time the query
has been running (ElapsedPoll: a tenth, clamped to 1-30 s, jittered so that
many analysts do not poll in lock-step), so a finished query is noticed at most
about 10% of its own duration late, and everything runs under one absolute
deadline. Re-runs after a transient failure wait by capped exponential backoff
(Backoff). Time is injected (`clock`, `sleep`, `wall`) so that tests run in virtual time
and the benchmark can run scaled-down real time.

A start is never sent twice blindly (queryrunner/reconcile.py): StartProtectedQuery has no idempotency token, so
a start that may have reached the service (a 5xx, a reset, a read timeout) is looked for with
ListProtectedQueries before anything else is sent, and only starts the service refused (throttling, the quota of
ongoing queries) or that never left this machine are sent again. Every start is written to the run journal
(queryrunner/journal.py) before and after it is sent, through a Recorder.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from queryrunner import journal as jr
from queryrunner import reconcile
from queryrunner.outputs import Template, describe_compute

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED", "TIMED_OUT"})

# Codes that ProtectedQueryError.code documents as temporary (botocore cleanrooms
# 2022-02-17 model, ProtectedQueryError: "TRANSIENT_ERROR - A temporary condition
# caused the failure, such as throttling or a network interruption"). Used only
# when the service sends no `retry` object; an explicit retry.retryable wins.
TRANSIENT_ERROR_CODES = frozenset({"TRANSIENT_ERROR"})

# How often a start the service refused without doing anything (throttling, the membership's quota of ongoing
# queries) or that never reached it (no connection) is sent again, with Backoff's delays, within the deadline.
# InternalServerException is NOT among them any more: a 500 may come after the query was created.
START_REFUSALS = 5
# After a start that may have reached the service, how many times the runner lists the membership's queries before
# saying the outcome is unknown, in case the listing lags; with Backoff's delays between them (1 s, then 2 s).
FIND_TRIES = 3

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
    # a terminal ProtectedQueryStatus, or DEADLINE / INTERRUPTED / START_FAILED / POLL_FAILED, or UNKNOWN (a start
    # whose outcome could not be decided), DONE (succeeded in an earlier run, its results on disk: not started again)
    status: str
    query_id: str | None = None
    query: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    elapsed: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    compute: dict[str, Any] | None = None  # the computeConfiguration sent (None: none, the service's default)
    # What the service received and what became of it (docs/query-runner.md, "Failure behaviour").
    requests: int = 0                      # start requests that reached the service, botocore's retries included
    refusals: list[str] = field(default_factory=list)   # why starts were refused without starting anything
    queries: list[tuple[str, str]] = field(default_factory=list)  # (query id, how: started/reconciled/re-attached)
    lost: list[str] = field(default_factory=list)      # starts whose answer was lost (read timeout, reset, 5xx)
    candidates: list[str] = field(default_factory=list)  # UNKNOWN: the queries that may be this template's
    saved: list[str] = field(default_factory=list)     # DONE: the result files an earlier run saved

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def how(self) -> str:
        """How the runner came to follow its (last) query: started, reconciled, re-attached; '-' without one."""
        return self.queries[-1][1] if self.queries else "-"

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


@dataclass
class Tally:
    """What one template's starts did, for its Outcome and the journal."""

    requests: int = 0
    refusals: list[str] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def fill(self, outcome: Any) -> Any:
        outcome.requests, outcome.refusals = self.requests, list(self.refusals)
        outcome.queries, outcome.lost = list(self.queries), list(self.lost)
        outcome.attempts = len(self.queries)
        return outcome


@dataclass
class StartFailure:
    """A start that got no query to follow: the service refused it, or its outcome is unknown."""

    status: str  # START_FAILED, UNKNOWN or INTERRUPTED
    code: str | None = None
    message: str | None = None
    candidates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Resume:
    """What an earlier run's journal says to do for one template (queryrunner/journal.py)."""

    action: str                              # follow | find | done | ended
    query_id: str | None = None              # follow, done, ended: the query the earlier run had
    intent_at: dt.datetime | None = None     # find: when the earlier run was about to send its start
    saved: tuple[str, ...] = ()              # done: the result files on disk
    state: str | None = None                 # ended: the journal's state
    error: dict[str, Any] | None = None      # ended: the error it recorded
    previous: tuple[tuple[str, str], ...] = ()  # (query id, how) the earlier run had for it
    requests: int = 0                        # start requests the service received for it in earlier runs


class Recorder:
    """Where the runner records what it is about to start and what started: nothing (tests, the benchmark), or the
    run journal (JournalRecorder)."""

    def intent(self, name: str, at: dt.datetime) -> None: ...
    def started(self, name: str, query_id: str, how: str, requests: int) -> None: ...
    def requests(self, name: str, requests: int) -> None: ...
    def unknown(self, name: str, candidates: list[str], why: str) -> None: ...
    def ended(self, name: str, state: str, error: dict[str, Any] | None = None) -> None: ...

    def known_ids(self) -> set[str]:
        return set()


class JournalRecorder(Recorder):
    """Records in the run's journal; ``others``: query ids of the membership's other journals (another scope's run
    may have started the same template with the same parameters), never taken for this run's own."""

    def __init__(self, journal: jr.Journal, key: Callable[[str], str] = lambda name: name,
                 others: frozenset[str] = frozenset()):
        self.journal, self.key, self.others = journal, key, others

    def intent(self, name: str, at: dt.datetime) -> None:
        self.journal.intent(self.key(name), at)

    def started(self, name: str, query_id: str, how: str, requests: int) -> None:
        self.journal.started(self.key(name), query_id, how, requests)

    def requests(self, name: str, requests: int) -> None:
        self.journal.requests(self.key(name), requests)

    def unknown(self, name: str, candidates: list[str], why: str) -> None:
        self.journal.unknown(self.key(name), candidates, why)

    def ended(self, name: str, state: str, error: dict[str, Any] | None = None) -> None:
        self.journal.ended(self.key(name), state, error)

    def known_ids(self) -> set[str]:
        return self.journal.known_ids() | self.others


def result_configuration(s3: dict[str, str], receivers: Sequence[str] = ()) -> dict[str, Any]:
    """StartProtectedQuery's resultConfiguration: the runner's S3 location, and each receiver's (distribute)."""
    if not receivers:
        return {"outputConfiguration": {"s3": s3}}
    # The model allows one S3 location at most, and not the runner's own account as a member.
    locations = [{"s3": s3}] + [{"member": {"accountId": account}} for account in receivers]
    return {"outputConfiguration": {"distribute": {"locations": locations}}}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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
    """The poll loop and the start discipline that protected queries (QueryRunner) and protected jobs
    (queryrunner/jobs.py) share.

    A subclass sets ``clock``, ``sleep``, ``deadline``, ``poll`` (a factory of poll policies), ``reporter``, and for
    starts ``client``, ``backoff``, ``wall``, ``recorder``, ``reconciler``, ``kind`` (reconcile.QUERY or JOB) and
    ``settle`` (seconds after which an empty listing proves a start from an earlier run started nothing).
    """

    kind: reconcile.Kind = reconcile.QUERY
    settle: float = 30.0

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
            except (ClientError, BotoCoreError) as exc:
                # botocore already retried throttling, 5xx, resets and timeouts of this read (it is safe to repeat);
                # a few more failures in a row mean something persistent (permissions, the query is gone, no
                # network).
                poll_errors += 1
                code, message = _error(exc)
                self.reporter.say(name, f"{operation} failed ({poll_errors}/{MAX_POLL_ERRORS}): {code}: {message}")
                if poll_errors >= MAX_POLL_ERRORS:
                    return "POLL_FAILED", record, {"code": code, "message": message}
                continue
            poll_errors = 0
            if record["status"] != status:
                self.reporter.say(name, f"{status} -> {record['status']} after {self.clock() - started:.1f}s")
                status = record["status"]
        return status, record, {}

    # -- starting at most once ------------------------------------------------------------------------------------
    def note(self, tally: Tally, record_id: str, how: str) -> None:
        """A query (or job) this template now has; the subclass also keeps it among the ids it knows."""
        tally.queries.append((record_id, how))

    def start_once(self, name: str, operation: str, request: dict[str, Any], expected: reconcile.Expected,
                   tally: Tally) -> tuple[dict[str, Any] | None, StartFailure | None]:
        """Send ``operation`` (start_protected_query or start_protected_job) so that at most one record results.

        Returns (record, None) for a record to follow (started, or found after its answer was lost), or (None,
        failure). A start is sent again only when the service refused it without doing anything (throttling, the
        quota of ongoing queries), when it never left this machine, or after a 503 when the service lists no such
        record; never after an answer that may have been lost.
        """
        delays = self.backoff().delays()
        resends = 0
        while True:
            if self.stopped():
                return None, StartFailure("INTERRUPTED")
            sent = self.wall()
            self.recorder.intent(name, sent)
            try:
                response = getattr(self.client, operation)(**request)
            except (ClientError, BotoCoreError) as exc:
                verdict = reconcile.classify(exc)
                received = 0 if verdict.kind in (reconcile.NOT_SENT, reconcile.LOCAL) else \
                    1 + reconcile.sent_again_by_botocore(getattr(exc, "response", None))
                tally.requests += received
                self.recorder.requests(name, received)
                if verdict.kind in (reconcile.AMBIGUOUS, reconcile.UNAVAILABLE):
                    record, failure = self.find_lost(name, operation, expected, sent, verdict, tally)
                    if record is not None or failure is not None:
                        return record, failure
                    # a 503, and no such record is listed: it started nothing, so it may be sent again
                elif not verdict.retryable:
                    self.reporter.say(name, f"{operation} refused: {verdict.code}: {verdict.message}")
                    error = {"code": verdict.code, "message": verdict.message}
                    self.recorder.ended(name, jr.START_FAILED, error)
                    return None, StartFailure("START_FAILED", verdict.code, verdict.message)
                resends += 1
                tally.refusals.append(verdict.code if verdict.kind == reconcile.REFUSED else verdict.what)
                remaining = self.deadline - self.clock()
                if resends > START_REFUSALS or remaining <= 0:
                    why = "the deadline" if remaining <= 0 else f"{START_REFUSALS} resends"
                    message = f"{verdict.message} ({resends} starts refused or not sent, gave up after {why})"
                    self.recorder.ended(name, jr.START_FAILED, {"code": verdict.code, "message": message})
                    return None, StartFailure("START_FAILED", verdict.code, message)
                delay = min(next(delays), remaining)
                self.reporter.say(name, f"{operation}: {verdict.what}: {verdict.message}; nothing was started; "
                                        f"sending it again in {delay:.1f}s ({resends}/{START_REFUSALS})")
                self.sleep(delay)
                continue
            received = 1 + reconcile.sent_again_by_botocore(response)
            tally.requests += received
            record = response[self.kind.record_key]
            self.note(tally, record["id"], "started")
            self.recorder.started(name, record["id"], "started", received)
            return record, None

    def find_lost(self, name: str, operation: str, expected: reconcile.Expected, sent: dt.datetime,
                  verdict: reconcile.Verdict, tally: Tally) -> tuple[dict[str, Any] | None, StartFailure | None]:
        """After a start whose answer was lost: (record, None) to follow, (None, None) when a 503 provably started
        nothing, or (None, failure) with status UNKNOWN."""
        noun = self.kind.noun
        ended = self.wall()
        self.reporter.say(name, f"{operation}: {verdict.what} ({verdict.message}); the service may have started the "
                                f"{noun}: looking for it in the membership's {noun} list instead of starting another")
        tries = FIND_TRIES if verdict.kind == reconcile.AMBIGUOUS else 1
        delays = self.backoff().delays()
        for attempt in range(1, tries + 1):
            finding = self.reconciler.find(expected, sent, ended)
            if finding.record is not None or not finding.listed or finding.candidates or attempt == tries:
                break
            self.sleep(next(delays))  # the listing may lag behind the start
            if self.stopped():
                break
        if finding.record is not None:
            return self.reconciled(name, finding.record, verdict.what, tally), None
        if finding.listed and not finding.candidates and verdict.kind == reconcile.UNAVAILABLE:
            self.reporter.say(name, f"no such {noun} is listed: the {verdict.what} started nothing")
            return None, None
        return None, self.unknown(name, finding, f"its start's answer was lost ({verdict.what})", tries)

    def reconciled(self, name: str, record: dict[str, Any], why: str, tally: Tally) -> dict[str, Any]:
        self.note(tally, record["id"], "reconciled")
        tally.lost.append(why)
        self.recorder.started(name, record["id"], "reconciled", 0)
        created = record.get("createTime")
        when = f", created {created.isoformat(timespec='seconds')}" if isinstance(created, dt.datetime) else ""
        self.reporter.say(name, f"found {self.kind.noun} {record['id']} ({record.get('status')}{when}), the one the "
                                "lost start created: following it")
        return record

    def unknown(self, name: str, finding: reconcile.Finding, why: str, tries: int) -> StartFailure:
        noun, nouns = self.kind.noun, self.kind.nouns
        if finding.candidates:
            text = (f"{why}, and {len(finding.candidates)} {nouns} match it ({', '.join(finding.candidates)}): "
                    "cannot tell which one it started")
        elif finding.listed:
            text = (f"{why}, and no {noun} with its template, parameters and result configuration is listed "
                    f"({tries} look{'s' if tries != 1 else ''}): it may not have started, or not be listed yet")
        else:
            text = f"{why}, and the membership's {nouns} could not be listed ({finding.error})"
        self.recorder.unknown(name, finding.candidates, text)
        self.reporter.say(name, f"outcome unknown: {text}")
        return StartFailure("UNKNOWN", "OUTCOME_UNKNOWN", text, list(finding.candidates))

    def find_after_restart(self, name: str, expected: reconcile.Expected, intent_at: dt.datetime,
                           tally: Tally) -> tuple[dict[str, Any] | None, StartFailure | None]:
        """A start an earlier run was sending when it ended: (record, None) to follow it, (None, None) when no such
        record is listed ``settle`` seconds after it (it never started: start it now), or (None, failure)."""
        noun = self.kind.noun
        why = "the earlier run ended while its start was being sent"
        self.reporter.say(name, f"{why}: looking for the {noun} it may have started")
        finding = self.reconciler.find(expected, intent_at, None)
        age = (self.wall() - intent_at).total_seconds()
        if finding.listed and not finding.candidates and age < self.settle:
            wait = min(self.settle - age, max(self.deadline - self.clock(), 0))
            self.reporter.say(name, f"none listed yet; listing again in {wait:.0f}s, {self.settle:g}s after that "
                                    "start (QUERYRUNNER_SETTLE_SECONDS), in case the list lags behind it")
            self.sleep(wait)
            if self.stopped():
                return None, StartFailure("INTERRUPTED")
            finding = self.reconciler.find(expected, intent_at, None)
            age = (self.wall() - intent_at).total_seconds()
        if finding.record is not None:
            return self.reconciled(name, finding.record, "an earlier run ended while sending it", tally), None
        if finding.listed and not finding.candidates and age >= self.settle:
            self.reporter.say(name, f"no {noun} matching that start is listed {age:.0f}s after it: it never started; "
                                    "starting it now")
            return None, None
        return None, self.unknown(name, finding, why, 2)


def _error(exc: BaseException) -> tuple[str | None, str]:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        return err.get("Code"), err.get("Message") or ""
    return type(exc).__name__, str(exc)


# Journal states for a query's final ProtectedQueryStatus.
_JOURNAL_STATE = {"SUCCESS": jr.SUCCEEDED, "FAILED": jr.FAILED, "TIMED_OUT": jr.FAILED, "CANCELLED": jr.FAILED}


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
                 compute: Callable[[Template], dict[str, Any] | None] = lambda template: None,
                 recorder: Recorder | None = None, wall: Callable[[], dt.datetime] = utc_now,
                 settle: float = 30.0):
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
        self.recorder = recorder or Recorder()
        self.wall = wall
        self.settle = settle
        self.kind = reconcile.QUERY
        self._lock = threading.Lock()
        self._in_flight: dict[str, str] = {}
        self._seen: set[str] = set()
        self.reconciler = reconcile.Reconciler(client, membership_id, reconcile.QUERY, wall=wall, known=self.known_ids)

    def known_ids(self) -> set[str]:
        """Queries this runner started or followed, and those of the journal: never a lost start's candidates."""
        with self._lock:
            seen = set(self._seen)
        return seen | self.recorder.known_ids()

    def note(self, tally: Tally, record_id: str, how: str) -> None:
        super().note(tally, record_id, how)
        with self._lock:
            self._seen.add(record_id)

    # -- public -------------------------------------------------------------
    def execute(self, template: Template, params: dict[str, str], resume: Resume | None = None) -> Outcome:
        started = self.clock()
        tally = Tally()
        compute = self.compute(template)
        request = self.start_request(template, params, compute)
        expected = reconcile.Expected(template.arn, dict(params), request["resultConfiguration"], compute)
        record: dict[str, Any] | None = None
        if resume is not None:
            resumed = self._resume(template, resume, expected, tally, started, compute)
            if isinstance(resumed, Outcome):
                return resumed
            record = resumed
        retry_delays = self.backoff().delays()
        retried = 0
        while True:
            if record is None:
                record, failure = self.start_once(template.name, "start_protected_query", request, expected, tally)
                if failure is not None:
                    return self._start_failed(template.name, failure, tally, started, compute)
            outcome = self._follow(template.name, record, started, compute, tally)
            record = None
            retryable = outcome.status == "FAILED" and is_retryable(outcome.query.get("error"))
            if not retryable or retried >= self.retries or self.stop_event.is_set():
                return outcome
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return outcome
            retried += 1
            delay = min(next(retry_delays), remaining)
            self.reporter.say(template.name, f"attempt {outcome.attempts} failed with retryable {outcome.error_code}: "
                                             f"{outcome.error_message}; retry {retried}/{self.retries} "
                                             f"in {delay:.1f}s")
            self.sleep(delay)
            if self.stop_event.is_set():
                return tally.fill(Outcome(template.name, "INTERRUPTED", elapsed=self.clock() - started))

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

    def cancel(self, query_id: str, template: str, state: str = jr.INTERRUPTED) -> bool:
        try:
            self.client.update_protected_query(membershipIdentifier=self.membership_id,
                                               protectedQueryIdentifier=query_id, targetStatus="CANCELLED")
        except (ClientError, BotoCoreError) as exc:
            # Typically the query finished between our last poll and now; the journal keeps it as running, so a
            # re-run reads its final state instead of starting it again.
            message = exc.response["Error"].get("Message", exc) if isinstance(exc, ClientError) else exc
            self.reporter.say(template, f"could not cancel {query_id}: {message}")
            return False
        finally:
            with self._lock:
                self._in_flight.pop(query_id, None)
        self.recorder.ended(template, state)
        self.reporter.say(template, f"cancelled query {query_id}")
        return True

    # -- internals ----------------------------------------------------------
    def result_configuration(self, template: Template) -> dict[str, Any]:
        return result_configuration(self.output_s3(template), self.receivers)

    def start_request(self, template: Template, params: dict[str, str],
                      compute: dict[str, Any] | None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "type": "SQL",
            # The membership id, not the collaboration id (the seed recipe's bug).
            "membershipIdentifier": self.membership_id,
            "sqlParameters": {"analysisTemplateArn": template.arn, "parameters": dict(params)},
            "resultConfiguration": self.result_configuration(template),
        }
        if compute is not None:
            request["computeConfiguration"] = compute
        return request

    def _start_failed(self, name: str, failure: StartFailure, tally: Tally, started: float,
                      compute: dict[str, Any] | None) -> Outcome:
        return tally.fill(Outcome(name, failure.status, error_code=failure.code, error_message=failure.message,
                                  compute=compute, candidates=list(failure.candidates),
                                  elapsed=self.clock() - started))

    def _resume(self, template: Template, resume: Resume, expected: reconcile.Expected, tally: Tally,
                started: float, compute: dict[str, Any] | None) -> dict[str, Any] | Outcome | None:
        """What an earlier run left: a query to follow, an Outcome (nothing to start), or None (start it)."""
        name = template.name
        for record_id, how in resume.previous:
            self.note(tally, record_id, how)
        tally.requests += resume.requests
        if resume.action == "start":
            return None
        if resume.action == "done":
            return tally.fill(Outcome(name, "DONE", query_id=resume.query_id, saved=list(resume.saved),
                                      compute=compute))
        if resume.action == "ended":
            error = resume.error or {}
            return tally.fill(Outcome(name, "ENDED_EARLIER", query_id=resume.query_id, compute=compute,
                                      error_code=error.get("code") or (resume.state or "").upper(),
                                      error_message=error.get("message") or f"journal state {resume.state}"))
        if resume.action == "find":
            record, failure = self.find_after_restart(name, expected, resume.intent_at or self.wall(), tally)
            if failure is not None:
                return self._start_failed(name, failure, tally, started, compute)
            return record
        query_id = resume.query_id or ""
        try:
            record = self.client.get_protected_query(membershipIdentifier=self.membership_id,
                                                     protectedQueryIdentifier=query_id)["protectedQuery"]
        except (ClientError, BotoCoreError) as exc:
            code, message = _error(exc)
            return tally.fill(Outcome(name, "POLL_FAILED", query_id=query_id, compute=compute, error_code=code,
                                      error_message=f"cannot read the earlier run's query: {message}"))
        with self._lock:
            self._seen.add(query_id)
        tally.queries = [q for q in tally.queries if q[0] != query_id] + [(query_id, "re-attached")]
        self.recorder.started(name, query_id, "re-attached", 0)
        return record

    def _follow(self, name: str, query: dict[str, Any], started: float, compute: dict[str, Any] | None,
                tally: Tally) -> Outcome:
        query_id = query["id"]
        with self._lock:
            self._in_flight[query_id] = name
        if self.stop_event.is_set():
            # Ctrl-C arrived while this start was on the wire.
            self.cancel(query_id, name)
            return tally.fill(Outcome(name, "INTERRUPTED", query_id=query_id, query=query))
        how = tally.queries[-1][1] if tally.queries else "started"
        attempt = len(tally.queries)
        if how == "started":
            suffix = f" (attempt {attempt})" if attempt > 1 else ""
            self.reporter.say(name, f"started query {query_id}{suffix}: {query['status']}; compute "
                                    f"{describe_compute(query.get('computeConfiguration') or compute)}")
        elif how == "re-attached":
            self.reporter.say(name, f"re-attached to query {query_id}, started by an earlier run: {query['status']}")
        outcome = self._poll(name, query, started)
        outcome.compute = compute
        if outcome.status in TERMINAL:
            with self._lock:
                self._in_flight.pop(query_id, None)
            error = outcome.query.get("error")
            state = _JOURNAL_STATE[outcome.status]
            if outcome.status == "CANCELLED" and self.stop_event.is_set():
                state = jr.INTERRUPTED  # this runner's own cancel (Ctrl-C, SIGTERM), seen by this poll
            self.recorder.ended(name, state,
                                {"code": error.get("code"), "message": error.get("message")} if error else None)
        return tally.fill(outcome)

    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def _poll(self, name: str, query: dict[str, Any], started: float) -> Outcome:
        query_id = query["id"]
        how, query, failure = self.until_final(
            name, query, TERMINAL, started, "get_protected_query",
            lambda: self.client.get_protected_query(membershipIdentifier=self.membership_id,
                                                    protectedQueryIdentifier=query_id)["protectedQuery"])
        elapsed = self.clock() - started
        if how == "DEADLINE":
            self.cancel(query_id, name, state=jr.DEADLINE)
            return Outcome(name, "DEADLINE", query_id=query_id, query=query, error_code="DEADLINE_EXCEEDED",
                           error_message=f"no final state before the deadline (last status {query['status']})",
                           elapsed=elapsed)
        if how == "INTERRUPTED":
            return Outcome(name, "INTERRUPTED", query_id=query_id, query=query, elapsed=elapsed)
        error = failure or query.get("error") or {}
        return Outcome(name, how, query_id=query_id, query=query, elapsed=elapsed,
                       error_code=error.get("code"), error_message=error.get("message"))

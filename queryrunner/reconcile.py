"""Starting a protected query or job at most once: what a failed start did, and finding what it started.

Clean Rooms' StartProtectedQuery and StartProtectedJob take no idempotency token (botocore cleanrooms 2022-02-17
model: neither StartProtectedQueryInput nor StartProtectedJobInput has a member marked ``idempotencyToken``, and
neither operation is marked ``idempotent``), so sending a start again after its answer was lost can start a second
query that spends privacy budget and compute a second time. The rules here:

- A start is sent by botocore exactly once (``guard_starts`` vetoes botocore's own retries of the two operations).
- A failed start is classified (``classify``): REFUSED (the service answered 429 or 4xx: it did nothing), NOT_SENT
  (no connection was ever opened), UNAVAILABLE (503: the front end could not take the request), AMBIGUOUS (5xx other
  than 503, a connection closed or reset before the answer, a read timeout: it may have started), or LOCAL (botocore
  refused it before sending: parameters, credentials).
- REFUSED-and-retryable (throttling, the quota of ongoing queries) and NOT_SENT starts are sent again after a
  backoff. UNAVAILABLE and AMBIGUOUS starts are looked for first (``Reconciler``); only an UNAVAILABLE start that the
  service provably does not list is sent again.

What a reconciliation can match on, from the model: ListProtectedQueries / ListProtectedJobs return summaries
(ProtectedQuerySummary / ProtectedJobSummary: id, membershipId, membershipArn, createTime, status,
receiverConfigurations, and the payer account), "sorted by the most recent" (the operations' documentation); they
carry neither the template nor the parameters nor the result configuration. So the summaries only narrow the search
to the start's time window (createTime), and each candidate is read with GetProtectedQuery / GetProtectedJob, whose
ProtectedQuery.sqlParameters (analysisTemplateArn, parameters), resultConfiguration and computeConfiguration (or
ProtectedJob.jobParameters and computeConfiguration) are compared with what the lost start sent.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectionError,
                                 ConnectTimeoutError, EndpointConnectionError, HTTPClientError, ProxyConnectionError,
                                 ReadTimeoutError, SSLError)

# Verdicts on a start that raised.
REFUSED = "refused"          # the service answered and did nothing (429, 4xx)
NOT_SENT = "not_sent"        # no connection was opened: the request never left this machine
UNAVAILABLE = "unavailable"  # 503: the service could not take the request (checked by listing before resending)
AMBIGUOUS = "ambiguous"      # it may have reached the service and started something
LOCAL = "local"              # botocore refused it before sending (parameters, credentials): nothing was sent

# Error codes that mean "throttled, nothing done": ThrottlingException is the cleanrooms model's (httpStatusCode 429,
# senderFault); the others are botocore's list of throttling codes (botocore/retries/standard.py) that a front end
# may answer with.
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
                              "RequestLimitExceeded", "SlowDown", "RequestThrottled", "RequestThrottledException"})
# StartProtectedQuery/StartProtectedJob's ServiceQuotaExceededException: the membership's ongoing queries (or jobs)
# are at their quota; the start was refused, and another analyst's query ending frees a place.
QUOTA_CODES = frozenset({"ServiceQuotaExceededException"})

# Statuses of a query or job that someone cancelled: when several queries match a lost start and all but one were
# cancelled (the analyst resolved the ambiguity in the console), the one left is followed.
CANCELLED_STATUSES = frozenset({"CANCELLED", "CANCELLING"})


@dataclass(frozen=True)
class Verdict:
    kind: str
    retryable: bool
    code: str | None
    message: str
    what: str  # for a progress line: "read timeout", "HTTP 500 InternalServerException", ...


def classify(exc: BaseException) -> Verdict:
    """What a start that raised ``exc`` may have done (see the module's docstring)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        code, message = err.get("Code"), err.get("Message") or ""
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        what = (f"HTTP {status} {code}" if code and code != str(status) else f"HTTP {status}") if status else str(code)
        if code in THROTTLING_CODES or status == 429:
            return Verdict(REFUSED, True, code, message, what)
        if code in QUOTA_CODES:
            return Verdict(REFUSED, True, code, message, what)
        if status == 503:
            # RFC 9110 15.6.4: "the server is currently unable to handle the request". Not proof on its own, so the
            # runner lists before sending again; the model has no 503 error, so this comes from the front end.
            return Verdict(UNAVAILABLE, True, code, message, what)
        if status is None or status >= 500:
            # InternalServerException (500) and gateway errors: the service may have created the query first.
            return Verdict(AMBIGUOUS, False, code, message, what)
        return Verdict(REFUSED, False, code, message, what)  # 4xx: validation, access, not found: fix the cause
    if isinstance(exc, SSLError):
        return Verdict(AMBIGUOUS, False, "SSLError", str(exc), "TLS error")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)):
        # urllib3's NewConnectionError / connect timeout / proxy refusal (botocore/httpsession.py): no connection to
        # the endpoint was established, so no byte of the request reached it.
        return Verdict(NOT_SENT, True, type(exc).__name__, str(exc), "connection not established")
    if isinstance(exc, ReadTimeoutError):
        return Verdict(AMBIGUOUS, False, "ReadTimeoutError", str(exc), "no answer within the read timeout")
    if isinstance(exc, ConnectionClosedError):
        return Verdict(AMBIGUOUS, False, "ConnectionClosedError", str(exc), "connection closed before the answer")
    if isinstance(exc, (HTTPClientError, ConnectionError)):
        return Verdict(AMBIGUOUS, False, type(exc).__name__, str(exc), "HTTP client error")
    if isinstance(exc, BotoCoreError):
        return Verdict(LOCAL, False, type(exc).__name__, str(exc), "refused by botocore before sending")
    raise TypeError(f"not a botocore error: {exc!r}")


def sent_again_by_botocore(response: dict[str, Any] | None) -> int:
    """Retries botocore made of one call (ResponseMetadata.RetryAttempts): 0 for starts, which guard_starts vetoes,
    but a client built elsewhere may retry them, and then the service received more than one start."""
    return int(((response or {}).get("ResponseMetadata") or {}).get("RetryAttempts") or 0)


START_OPERATIONS = ("StartProtectedQuery", "StartProtectedJob")


def _never_retry(**_kwargs: Any) -> bool:
    # botocore/endpoint.py _needs_retry: the first non-None answer of the needs-retry handlers wins, and False means
    # "do not retry". Handlers of the operation's own event run before the service-wide one (botocore's
    # HierarchicalEmitter calls the most specific first), so this overrides the standard retry handler for starts.
    return False


def guard_starts(client: Any) -> None:
    """Stop botocore from ever sending a start twice: the runner decides (see the module's docstring).

    The service-wide standard retry handler still runs and may take retry quota for a retry that is then not made;
    that costs at most 10 of its 500 units per failed start and is given back by later successful calls.
    """
    meta = getattr(client, "meta", None)
    if meta is None or getattr(meta, "events", None) is None:
        return  # a fake client (queryrunner/simulate.py): nothing to guard
    service = meta.service_model.service_id.hyphenize()
    for operation in START_OPERATIONS:
        meta.events.register(f"needs-retry.{service}.{operation}", _never_retry,
                             unique_id=f"queryrunner-no-start-retry-{operation}")


# -- reconciliation --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """The operations and keys of protected queries or protected jobs."""

    noun: str
    nouns: str
    get: str
    list: str
    list_key: str
    record_key: str
    id_param: str
    parameters_key: str


QUERY = Kind("query", "queries", "get_protected_query", "list_protected_queries", "protectedQueries", "protectedQuery",
             "protectedQueryIdentifier", "sqlParameters")
JOB = Kind("job", "jobs", "get_protected_job", "list_protected_jobs", "protectedJobs", "protectedJob",
           "protectedJobIdentifier", "jobParameters")


@dataclass(frozen=True)
class Expected:
    """What a start sent, as the service reports it back on the record it created."""

    arn: str
    parameters: dict[str, str]
    result_configuration: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None


def covers(got: Any, sent: Any) -> bool:
    """Whether ``got`` (as the service reports it) has every key ``sent`` had, with the same value.

    The service may add keys it defaulted (singleFileOutput, say), so a record is not required to equal the request.
    """
    if isinstance(sent, dict):
        return isinstance(got, dict) and all(k in got and covers(got[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(got, list) and len(got) == len(sent) and all(covers(g, s) for g, s in zip(got, sent))
    return got == sent


def matches(kind: Kind, record: dict[str, Any], expected: Expected) -> bool:
    """Whether ``record`` (a ProtectedQuery or ProtectedJob) is what a start of ``expected`` would have created.

    The template ARN and the parameters must be equal (the runner sends every parameter, defaults included); the
    result configuration and compute must agree on everything that was sent, when the record reports them (a record
    without them cannot be told apart on them, so they do not exclude it).
    """
    params = record.get(kind.parameters_key)
    if not isinstance(params, dict) or params.get("analysisTemplateArn") != expected.arn:
        return False
    if dict(params.get("parameters") or {}) != dict(expected.parameters):
        return False
    reported = record.get("resultConfiguration")
    if expected.result_configuration is not None and reported is not None:
        if not covers(reported, expected.result_configuration):
            return False
    if expected.compute is not None and record.get("computeConfiguration") is not None:
        if not covers(record["computeConfiguration"], expected.compute):
            return False
    return True


@dataclass
class Finding:
    """What a search for a lost start found."""

    record: dict[str, Any] | None = None            # the one query/job it started, to follow
    candidates: list[str] = field(default_factory=list)  # every match (more than one: cannot tell which)
    listed: bool = False                             # the listing worked (so no match means none is listed)
    error: str | None = None                         # why the listing failed
    checked: int = 0                                 # records read with get_*


def _server_time(response: dict[str, Any]) -> dt.datetime | None:
    """The service's clock from the HTTP Date header of a response (1 s resolution), if there is one."""
    headers = ((response or {}).get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = headers.get("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


class Reconciler:
    """Finds the query (or job) a start whose answer was lost created, within one membership.

    The window is [sent - margin, ended + margin] in the service's clock: the local wall clock corrected by the skew
    seen in the listing's HTTP Date header, with ``margin`` (default 30 s) for the header's 1 s resolution and the
    time between the service receiving a start and stamping createTime. Without a Date header the margin is
    ``wide_margin`` (5 min), since the local clock may be off. Ids the runner already knows (earlier attempts, other
    templates, earlier runs in the journal) are never candidates.
    """

    MAX_PAGES = 20       # 100 summaries a page (the model's MaxResults maximum)
    MAX_CHECKED = 50     # get_* calls for one search; more candidates than that in the window: cannot decide

    def __init__(self, client: Any, membership_id: str, kind: Kind, *, wall: Callable[[], dt.datetime],
                 known: Callable[[], Iterable[str]] = lambda: (), margin: float = 30.0, wide_margin: float = 300.0):
        self.client, self.membership_id, self.kind = client, membership_id, kind
        self.wall, self.known = wall, known
        self.margin, self.wide_margin = margin, wide_margin
        self._lock = threading.Lock()

    def find(self, expected: Expected, sent: dt.datetime, ended: dt.datetime | None = None) -> Finding:
        """Search once. ``ended``: when the failed start returned (None: up to now, for a run that was killed)."""
        known = set(self.known())
        finding = Finding()
        matched: list[dict[str, Any]] = []
        try:
            for record in self._candidates(sent, ended, known, finding):
                if matches(self.kind, record, expected):
                    matched.append(record)
        except (ClientError, BotoCoreError) as exc:
            finding.error = _describe(exc)
            return finding
        except _TooMany as exc:
            finding.error = str(exc)
            return finding
        finding.listed = True
        finding.candidates = [r["id"] for r in matched]
        live = [r for r in matched if r.get("status") not in CANCELLED_STATUSES]
        if len(matched) == 1:
            finding.record = matched[0]
        elif len(matched) > 1 and len(live) == 1:
            finding.record = live[0]
        return finding

    def _candidates(self, sent: dt.datetime, ended: dt.datetime | None, known: set[str], finding: Finding):
        """Records created in the window, newest first, read with get_* (the summaries lack what is compared)."""
        kind = self.kind
        paginator = self.client.get_paginator(kind.list)
        low = high = None
        for number, page in enumerate(paginator.paginate(membershipIdentifier=self.membership_id,
                                                         PaginationConfig={"PageSize": 100})):
            if low is None:
                low, high = self._window(page, sent, ended)
            if number >= self.MAX_PAGES:
                raise _TooMany(f"more than {self.MAX_PAGES * 100} {kind.noun} records since the start; cannot search "
                               "them all")
            oldest = None
            for summary in page.get(kind.list_key, []):
                created = summary["createTime"]
                oldest = created if oldest is None else min(oldest, created)
                if created < low or (high is not None and created > high) or summary["id"] in known:
                    continue
                if finding.checked >= self.MAX_CHECKED:
                    raise _TooMany(f"more than {self.MAX_CHECKED} {kind.noun} records in the start's time window")
                finding.checked += 1
                yield self.client_get(summary["id"])
            if oldest is not None and oldest < low:
                return  # sorted by the most recent: every later page is older still

    def client_get(self, record_id: str) -> dict[str, Any]:
        kind = self.kind
        call = getattr(self.client, kind.get)
        return call(**{"membershipIdentifier": self.membership_id, kind.id_param: record_id})[kind.record_key]

    def _window(self, page: dict[str, Any], sent: dt.datetime,
                ended: dt.datetime | None) -> tuple[dt.datetime, dt.datetime | None]:
        server = _server_time(page)
        if server is None:
            skew, margin = dt.timedelta(0), dt.timedelta(seconds=self.wide_margin)
        else:
            skew, margin = server - self.wall(), dt.timedelta(seconds=self.margin)
        low = sent + skew - margin
        high = None if ended is None else ended + skew + margin
        return low, high


class _TooMany(Exception):
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        return f"{exc.operation_name} failed: {err.get('Code')}: {err.get('Message')}"
    return str(exc)

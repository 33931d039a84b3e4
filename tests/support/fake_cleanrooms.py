"""A fault-injecting AWS Clean Rooms endpoint (and the S3 the results land in) on 127.0.0.1, for the runner's tests.

The runner's own botocore clients are pointed at it (``AWS_ENDPOINT_URL_CLEANROOMS`` / ``AWS_ENDPOINT_URL_S3``, which
botocore reads itself) and talk to it over real HTTP: botocore's retries, timeouts and connection handling are what
is exercised, not a mock of them. Like botocore's Stubber, it holds every request and response to the botocore
cleanrooms model, and more strictly:

- a request is parsed from the wire (URI labels, query string, JSON body), validated with botocore's
  ``validate_parameters`` against the operation's input shape, then serialized again with botocore's rest-json
  serializer and compared with what arrived (path, query, body), so a parse that does not round-trip is a problem;
- a response (or modeled error) is validated against the output (or error) shape, then serialized with botocore's
  rest-json serializer, so the client parses what the service would send.
Problems are collected in ``problems`` (a test asserts there are none) and answered with a 400.

Faults are decided per call, deterministically (``Faults``): throttling (429 ThrottlingException) or a 503 before
any work, or after the work (the query created): a 500 InternalServerException, the connection reset (RST, no
answer), or no answer until well past the client's read timeout. State: protected queries and jobs move
SUBMITTED -> STARTED -> SUCCESS after a number of polls (``hold`` keeps them STARTED), their result files appear in
the fake S3, each start request and each created query is counted per template, and each query of a
differential-privacy template charges the privacy budget once.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import re
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters

MODEL = botocore.session.get_session().get_service_model("cleanrooms")

# Fault kinds. "Before" ones do nothing (what throttling and an unavailable front end do); "after" ones do the work
# (create the query) and then lose the answer.
THROTTLE, UNAVAILABLE = "throttle", "unavailable"
ERROR_AFTER, RESET_AFTER, HANG_AFTER = "error_after", "reset_after", "hang_after"
# A 500 that did nothing: the client cannot tell it from ERROR_AFTER (so the runner must not resend); scripted only.
ERROR_BEFORE = "error_before"
BEFORE = (THROTTLE, UNAVAILABLE)
AFTER = (ERROR_AFTER, RESET_AFTER, HANG_AFTER)
ALL_FAULTS = BEFORE + AFTER

START_OPERATIONS = ("StartProtectedQuery", "StartProtectedJob")
POLL_OPERATIONS = ("GetProtectedQuery", "GetProtectedJob")


class Faults:
    """Which fault (or None) a call gets: from a script, else at ``rate`` from a seeded RNG.

    A call is named by its operation, a key (the template's name for starts and polls, so that one template's calls
    are counted apart from the others') and its number among the calls with that operation and key; the RNG is seeded
    with all three, so a decision does not depend on how threads interleave.
    """

    def __init__(self, script: dict[tuple[str, str, int], str] | None = None, *, rate: float = 0.0, seed: int = 0,
                 operations: tuple[str, ...] = START_OPERATIONS + POLL_OPERATIONS,
                 kinds: tuple[str, ...] = ALL_FAULTS):
        self.script = dict(script or {})
        self.rate, self.seed, self.operations, self.kinds = rate, seed, operations, kinds
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self.given: list[tuple[str, str, int, str]] = []  # every fault handed out, for a failing test's message

    def decide(self, operation: str, key: str) -> str | None:
        with self._lock:
            n = self._counts[(operation, key)]
            self._counts[(operation, key)] += 1
        fault = self.script.get((operation, key, n))
        if fault is None and self.rate and operation in self.operations:
            rng = random.Random(f"{self.seed}/{operation}/{key}/{n}")
            if rng.random() < self.rate:
                fault = rng.choice(self.kinds)
        if fault:
            with self._lock:
                self.given.append((operation, key, n, fault))
        return fault


@dataclass
class TemplateSpec:
    """An analysis template the fake knows: its SQL (or PySpark script), and what one run of it spends."""

    name: str
    arn: str
    sql: str = "SELECT COUNT(DISTINCT customer_key) AS customers FROM retail_purchases"
    usage: dict[str, int] = field(default_factory=dict)  # DP aggregations one query charges (empty: not DP)
    job: bool = False
    sha256: str = "0" * 64


@dataclass
class Record:
    """A protected query or job the fake created."""

    id: str
    kind: str  # "query" or "job"
    template: str
    arn: str
    parameters: dict[str, str]
    result_configuration: dict[str, Any] | None
    compute: dict[str, Any] | None
    created: dt.datetime
    status: str = "SUBMITTED"
    polls: int = 0


class ApiError(Exception):
    """A modeled error: its shape name and members (validated against the model before it is sent)."""

    def __init__(self, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.code, self.members = code, {"message": message, **extra}


class Problem(Exception):
    """A request or response that does not agree with the botocore model: a bug to report."""


# -- the wire format ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern
    literal: int  # characters of fixed path text, to prefer /a/b over /a/{x}


def _routes() -> list[Route]:
    routes = []
    for name in MODEL.operation_names:
        http = MODEL.operation_model(name).http
        path = http["requestUri"].split("?", 1)[0]
        regex, literal = "", 0
        for part in re.split(r"(\{\w+\+?\})", path):
            label = re.fullmatch(r"\{(\w+)(\+?)\}", part)
            if label:
                regex += f"(?P<{label.group(1)}>{'.+' if label.group(2) else '[^/]+'})"
            else:
                regex += re.escape(part)
                literal += len(part)
        routes.append(Route(name, http["method"], re.compile(regex + "$"), literal))
    return sorted(routes, key=lambda r: -r.literal)


ROUTES = _routes()
SERIALIZER = create_serializer("rest-json", include_validation=False)


def _scalar(shape, text: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        return int(text)
    if kind in ("float", "double"):
        return float(text)
    if kind == "boolean":
        return text == "true"
    if kind == "timestamp":
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return text


def _from_json(shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise Problem(f"{shape.name}: expected a JSON object, got {value!r}")
        by_wire = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        out = {}
        for key, item in value.items():
            if key not in by_wire:
                raise Problem(f"{shape.name}: unknown member {key!r}")
            name, member = by_wire[key]
            out[name] = _from_json(member, item)
        return out
    if kind == "list":
        return [_from_json(shape.member, item) for item in value]
    if kind == "map":
        return {k: _from_json(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        return dt.datetime.fromtimestamp(value, dt.timezone.utc) if isinstance(value, (int, float)) else \
            _scalar(shape, value)
    return value


def parse_request(operation: str, labels: dict[str, str], query: dict[str, list[str]], body: bytes,
                  path: str) -> dict[str, Any]:
    """The parameters of a request as botocore would have been given them; checked against the model both ways."""
    op = MODEL.operation_model(operation)
    shape = op.input_shape
    params: dict[str, Any] = {}
    document = json.loads(body) if body.strip() else {}
    body_members = {}
    for name, member in shape.members.items():
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire in labels:
            params[name] = _scalar(member, unquote(labels[wire]))
        elif location == "querystring" and wire in query:
            values = query[wire]
            params[name] = ([_scalar(member.member, v) for v in values] if member.type_name == "list"
                            else _scalar(member, values[0]))
        elif location is None:
            body_members[member.serialization.get("name", name)] = name
    unknown = set(document) - set(body_members)
    if unknown:
        raise Problem(f"{operation}: unknown body members {sorted(unknown)}")
    body_params = _from_json(shape, {k: v for k, v in document.items()}) if document else {}
    params.update(body_params)
    try:
        validate_parameters(params, shape)
    except ParamValidationError as exc:
        raise Problem(f"{operation}: request does not validate: {exc}") from None
    again = SERIALIZER.serialize_to_request(params, op)
    if again["url_path"] != path:
        raise Problem(f"{operation}: path {path!r} is not what botocore serializes ({again['url_path']!r})")
    expected_query = {k: (v if isinstance(v, list) else [str(v)]) for k, v in again["query_string"].items()}
    if expected_query != query:
        raise Problem(f"{operation}: query {query!r} is not what botocore serializes ({expected_query!r})")
    sent_body = json.loads(again["body"]) if again["body"] else {}
    if sent_body != document:
        raise Problem(f"{operation}: body {document!r} is not what botocore serializes ({sent_body!r})")
    return params


def serialize_output(operation: str, response: dict[str, Any]) -> bytes:
    shape = MODEL.operation_model(operation).output_shape
    try:
        validate_parameters(response, shape)
    except ParamValidationError as exc:
        raise Problem(f"{operation}: the fake's response does not validate: {exc}") from None
    return SERIALIZER._serialize_body_params(response, shape)


def serialize_error(error: ApiError) -> tuple[int, bytes]:
    shape = MODEL.shape_for(error.code)
    try:
        validate_parameters(error.members, shape)
    except ParamValidationError as exc:
        raise Problem(f"{error.code}: the fake's error does not validate: {exc}") from None
    return shape.metadata["error"]["httpStatusCode"], SERIALIZER._serialize_body_params(error.members, shape)


# -- the service ------------------------------------------------------------------------------------------------
class FakeCleanRooms:
    """Clean Rooms for one membership, on a real HTTP server; ``start()`` it, point botocore at ``endpoint``."""

    ACCOUNT = "111122223333"
    REGION = "us-east-1"

    def __init__(self, membership_id: str, collaboration_id: str, bucket: str, templates: list[TemplateSpec], *,
                 faults: Faults | None = None, polls_to_start: int = 1, polls_to_succeed: int = 2,
                 hang_seconds: float = 2.0, quota: int = 5, epsilon: int = 3, max_count: int = 1000):
        self.membership_id, self.collaboration_id, self.bucket = membership_id, collaboration_id, bucket
        self.templates = {t.name: t for t in templates}
        self.by_arn = {t.arn: t for t in templates}
        self.faults = faults or Faults()
        self.polls_to_start, self.polls_to_succeed = polls_to_start, polls_to_succeed
        self.hang_seconds, self.quota = hang_seconds, quota
        self.membership_arn = f"arn:aws:cleanrooms:{self.REGION}:{self.ACCOUNT}:membership/{membership_id}"
        self.collaboration_arn = f"arn:aws:cleanrooms:{self.REGION}:{self.ACCOUNT}:collaboration/{collaboration_id}"
        self.records: dict[str, Record] = {}
        self.objects: dict[str, bytes] = {}  # S3 key -> content, in self.bucket
        self.start_requests: Counter = Counter()  # per template: every start request that arrived
        self.created: Counter = Counter()         # per template: queries (or jobs) created
        self.charged: dict[str, list[dict[str, int]]] = {}  # per template: the DP charge of each query
        self.epsilon, self.max_count = epsilon, max_count
        self.remaining = {t: max_count for t in ("AVG", "COUNT", "COUNT_DISTINCT", "SUM", "STDDEV")}
        self.calls: list[str] = []
        self.problems: list[str] = []
        self.dropped = 0  # requests whose client went away before sending all of it
        self.hold = threading.Event()  # set: queries stay STARTED
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._busy = 0
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> "FakeCleanRooms":
        for handler in (_CleanRoomsHandler, _S3Handler):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            server.fake = self  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def wait_until(self, predicate: Callable[["FakeCleanRooms"], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (checked after every request), or the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled (a killed client's last one included)."""
        return self.wait_until(lambda fake: fake._busy == 0, timeout)

    # -- dispatch ---------------------------------------------------------------------------------------------
    def handle(self, handler: "_CleanRoomsHandler") -> None:
        with self._changed:
            self._busy += 1
        try:
            self._handle(handler)
        finally:
            with self._changed:
                self._busy -= 1
                self._changed.notify_all()

    def _handle(self, handler: "_CleanRoomsHandler") -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:
            # The client went away mid-request (a killed run): nothing arrived to act on, and nobody to answer.
            with self._lock:
                self.dropped += 1
            handler.close_connection = True
            return
        route, labels = self._route(handler.command, parts.path)
        if route is None:
            self._problem(handler, f"no operation for {handler.command} {parts.path}")
            return
        operation = route.operation
        try:
            params = parse_request(operation, labels, parse_qs(parts.query, keep_blank_values=True), body, parts.path)
        except (Problem, ValueError, TypeError, KeyError) as exc:
            self._problem(handler, str(exc))
            return
        key = self._key(operation, params)
        with self._lock:
            self.calls.append(operation)
            if operation in START_OPERATIONS:
                self.start_requests[key] += 1
        fault = self.faults.decide(operation, key)
        if fault == THROTTLE:
            return self._send_error(handler, ApiError("ThrottlingException", "Rate exceeded"))
        if fault == UNAVAILABLE:
            # Not a modeled error: what a front end answers when it cannot take the request.
            return _send(handler, 503, b'{"message":"Service Unavailable"}')
        if fault == ERROR_BEFORE:
            return self._send_error(handler, ApiError("InternalServerException", "Internal failure"))
        try:
            response = getattr(self, "op_" + _snake(operation))(params)
            payload = serialize_output(operation, response)
        except ApiError as exc:
            return self._send_error(handler, exc)
        except Problem as exc:
            self._problem(handler, str(exc))
            return
        if fault == ERROR_AFTER:
            return self._send_error(handler, ApiError("InternalServerException", "Internal failure"))
        if fault == RESET_AFTER:
            return _reset(handler)
        if fault == HANG_AFTER:
            self._stopping.wait(self.hang_seconds)  # far past the client's read timeout
            return _reset(handler)
        _send(handler, MODEL.operation_model(operation).http.get("responseCode", 200), payload)

    def _route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in ROUTES:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    return route, found.groupdict()
        return None, {}

    def _key(self, operation: str, params: dict[str, Any]) -> str:
        """The template a call is about (the fault key), or the operation's name."""
        arn = (params.get("sqlParameters") or params.get("jobParameters") or {}).get("analysisTemplateArn")
        if arn in self.by_arn:
            return self.by_arn[arn].name
        record_id = params.get("protectedQueryIdentifier") or params.get("protectedJobIdentifier")
        with self._lock:
            record = self.records.get(record_id or "")
        return record.template if record else operation

    def _send_error(self, handler, error: ApiError) -> None:
        try:
            status, payload = serialize_error(error)
        except Problem as exc:
            self._problem(handler, str(exc))
            return
        _send(handler, status, payload, {"x-amzn-ErrorType": error.code})

    def _problem(self, handler, text: str) -> None:
        with self._lock:
            self.problems.append(text)
        _send(handler, 400, json.dumps({"message": f"fake: {text}"}).encode(),
              {"x-amzn-ErrorType": "ValidationException"})

    # -- protected queries ------------------------------------------------------------------------------------
    def _membership(self, params: dict[str, Any]) -> None:
        if params["membershipIdentifier"] != self.membership_id:
            raise ApiError("ResourceNotFoundException", "Membership not found",
                           resourceId=params["membershipIdentifier"], resourceType="MEMBERSHIP")

    def _create(self, kind: str, params: dict[str, Any], parameters: dict[str, Any],
                result_configuration: dict[str, Any] | None) -> Record:
        self._membership(params)
        spec = self.by_arn.get(parameters.get("analysisTemplateArn"))
        if spec is None or spec.job != (kind == "job"):
            raise ApiError("ValidationException",
                           f"no {kind} analysis template {parameters.get('analysisTemplateArn')}")
        with self._lock:
            ongoing = sum(1 for r in self.records.values() if r.kind == kind and r.status in ("SUBMITTED", "STARTED"))
            if ongoing >= self.quota:
                raise ApiError("ServiceQuotaExceededException", f"ongoing {kind}s at their quota",
                               quotaName=f"ongoing {kind}s per membership", quotaValue=float(self.quota))
            number = self.created[spec.name]
            self.created[spec.name] += 1
            record_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{spec.name}/{number}"))
            record = Record(record_id, kind, spec.name, spec.arn, dict(parameters.get("parameters") or {}),
                            result_configuration, params.get("computeConfiguration"), dt.datetime.now(dt.timezone.utc))
            self.records[record_id] = record
            if spec.usage:
                self.charged.setdefault(spec.name, []).append(dict(spec.usage))
                for aggregation, n in spec.usage.items():
                    self.remaining[aggregation] -= n
            return record

    def op_start_protected_query(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._create("query", params, params["sqlParameters"], params.get("resultConfiguration"))
        return {"protectedQuery": self._query_view(record)}

    def op_get_protected_query(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._advance(self._record(params, "protectedQueryIdentifier"))
        return {"protectedQuery": self._query_view(record)}

    def op_list_protected_queries(self, params: dict[str, Any]) -> dict[str, Any]:
        page, token = self._page("query", params)
        summaries = [{"id": r.id, "membershipId": self.membership_id, "membershipArn": self.membership_arn,
                      "createTime": r.created, "status": r.status,
                      "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]} for r in page]
        return {"protectedQueries": summaries, **({"nextToken": token} if token else {})}

    def op_update_protected_query(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._cancel(self._record(params, "protectedQueryIdentifier"))
        return {"protectedQuery": self._query_view(record)}

    # -- protected jobs -----------------------------------------------------------------------------------------
    def op_start_protected_job(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._create("job", params, params["jobParameters"], None)
        return {"protectedJob": self._job_view(record)}

    def op_get_protected_job(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._advance(self._record(params, "protectedJobIdentifier"))
        return {"protectedJob": self._job_view(record)}

    def op_list_protected_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        page, token = self._page("job", params)
        summaries = [{"id": r.id, "membershipId": self.membership_id, "membershipArn": self.membership_arn,
                      "createTime": r.created, "status": r.status,
                      "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]} for r in page]
        return {"protectedJobs": summaries, **({"nextToken": token} if token else {})}

    def op_update_protected_job(self, params: dict[str, Any]) -> dict[str, Any]:
        record = self._cancel(self._record(params, "protectedJobIdentifier"))
        return {"protectedJob": self._job_view(record)}

    def op_get_analysis_template(self, params: dict[str, Any]) -> dict[str, Any]:
        self._membership(params)
        spec = next((t for t in self.templates.values() if t.arn.endswith("/" + params["analysisTemplateIdentifier"])),
                    None)
        if spec is None:
            raise ApiError("ResourceNotFoundException", "Analysis template not found",
                           resourceId=params["analysisTemplateIdentifier"], resourceType="MEMBERSHIP")
        now = dt.datetime.now(dt.timezone.utc)
        template = {"id": spec.arn.rsplit("/", 1)[1], "arn": spec.arn, "collaborationId": self.collaboration_id,
                    "collaborationArn": self.collaboration_arn, "membershipId": self.membership_id,
                    "membershipArn": self.membership_arn, "name": spec.name, "createTime": now, "updateTime": now,
                    "schema": {"referencedTables": ["retail_purchases"]},
                    "format": "PYSPARK_1_0" if spec.job else "SQL",
                    "source": {"artifacts": {"entryPoint": {"location": {"bucket": "artifacts", "key": "job.py"}},
                                             "roleArn": f"arn:aws:iam::{self.ACCOUNT}:role/artifacts"}}
                    if spec.job else {"text": spec.sql}}
        if spec.job:
            template["sourceMetadata"] = {"artifacts": {"entryPointHash": {"sha256": spec.sha256}}}
        return {"analysisTemplate": template}

    # -- differential privacy -------------------------------------------------------------------------------------
    def op_list_privacy_budgets(self, params: dict[str, Any]) -> dict[str, Any]:
        self._membership(params)
        if params["privacyBudgetType"] != "DIFFERENTIAL_PRIVACY":
            return {"privacyBudgetSummaries": []}
        now = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            aggregations = [{"type": t, "maxCount": self.max_count, "remainingCount": max(0, n)}
                            for t, n in self.remaining.items()]
        return {"privacyBudgetSummaries": [{
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "budget")), "privacyBudgetTemplateId": self._pbt_id,
            "privacyBudgetTemplateArn": f"{self.collaboration_arn}/privacybudgettemplate/{self._pbt_id}",
            "membershipId": self.membership_id, "membershipArn": self.membership_arn,
            "collaborationId": self.collaboration_id, "collaborationArn": self.collaboration_arn,
            "type": "DIFFERENTIAL_PRIVACY", "createTime": now, "updateTime": now,
            "budget": {"differentialPrivacy": {"epsilon": self.epsilon, "aggregations": aggregations}}}]}

    @property
    def _pbt_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "privacy budget template"))

    def op_get_collaboration_analysis_template(self, params: dict[str, Any]) -> dict[str, Any]:
        spec = self.by_arn.get(params["analysisTemplateArn"])
        if spec is None or params["collaborationIdentifier"] != self.collaboration_id:
            raise ApiError("ResourceNotFoundException", "Analysis template not found",
                           resourceId=params["analysisTemplateArn"], resourceType="COLLABORATION")
        now = dt.datetime.now(dt.timezone.utc)
        return {"collaborationAnalysisTemplate": {
            "id": spec.arn.rsplit("/", 1)[1], "arn": spec.arn, "collaborationId": self.collaboration_id,
            "collaborationArn": self.collaboration_arn, "creatorAccountId": self.ACCOUNT, "name": spec.name,
            "createTime": now, "updateTime": now, "schema": {"referencedTables": ["retail_purchases"]},
            "format": "SQL", "source": {"text": spec.sql}}}

    def op_get_collaboration_privacy_budget_template(self, params: dict[str, Any]) -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        return {"collaborationPrivacyBudgetTemplate": {
            "id": self._pbt_id, "arn": f"{self.collaboration_arn}/privacybudgettemplate/{self._pbt_id}",
            "collaborationId": self.collaboration_id, "collaborationArn": self.collaboration_arn,
            "creatorAccountId": self.ACCOUNT, "createTime": now, "updateTime": now,
            "privacyBudgetType": "DIFFERENTIAL_PRIVACY", "autoRefresh": "CALENDAR_MONTH",
            "parameters": {"differentialPrivacy": {"epsilon": self.epsilon, "usersNoisePerQuery": 30}}}}

    def op_preview_privacy_impact(self, params: dict[str, Any]) -> dict[str, Any]:
        self._membership(params)
        # A whole budget pays for max_count aggregations of each type (queryrunner/budget.py's reading).
        return {"privacyImpact": {"differentialPrivacy": {"aggregations": [
            {"type": t, "maxCount": self.max_count} for t in self.remaining]}}}

    # -- records ----------------------------------------------------------------------------------------------
    def _record(self, params: dict[str, Any], key: str) -> Record:
        self._membership(params)
        with self._lock:
            record = self.records.get(params[key])
        if record is None:
            raise ApiError("ResourceNotFoundException", "Protected query not found", resourceId=params[key],
                           resourceType="MEMBERSHIP")
        return record

    def _advance(self, record: Record) -> Record:
        """One poll: SUBMITTED -> STARTED -> SUCCESS by the number of polls; results land in S3 on SUCCESS."""
        with self._lock:
            record.polls += 1
            if record.status == "SUBMITTED" and record.polls >= self.polls_to_start:
                record.status = "STARTED"
            if record.status == "STARTED" and record.polls >= self.polls_to_succeed and not self.hold.is_set():
                record.status = "SUCCESS"
                self.objects[f"{self._prefix(record)}/part-00000.csv"] = (
                    f"template,query\n{record.template},{record.id}\n".encode())
                self.objects[f"{self._prefix(record)}/_SUCCESS"] = b""
            return record

    def _cancel(self, record: Record) -> Record:
        with self._lock:
            if record.status not in ("SUBMITTED", "STARTED"):
                raise ApiError("ConflictException", f"it is {record.status}", resourceId=record.id)
            record.status = "CANCELLED"
            return record

    def _prefix(self, record: Record) -> str:
        if record.kind == "job":
            return f"results/jobs/{record.id}/result"
        output = (record.result_configuration or {}).get("outputConfiguration") or {}
        s3 = output.get("s3") or next((loc["s3"] for loc in (output.get("distribute") or {}).get("locations", [])
                                       if "s3" in loc), {})
        return f"{s3.get('keyPrefix', '')}/{record.id}".lstrip("/")

    def _page(self, kind: str, params: dict[str, Any]) -> tuple[list[Record], str | None]:
        self._membership(params)
        with self._lock:
            records = sorted((r for r in self.records.values() if r.kind == kind and
                              params.get("status") in (None, r.status)), key=lambda r: r.created, reverse=True)
        start = int(params.get("nextToken") or 0)
        size = params.get("maxResults") or 100
        page = records[start:start + size]
        return page, (str(start + size) if start + size < len(records) else None)

    def _query_view(self, r: Record) -> dict[str, Any]:
        view: dict[str, Any] = {"id": r.id, "membershipId": self.membership_id, "membershipArn": self.membership_arn,
                                "createTime": r.created, "status": r.status,
                                "sqlParameters": {"analysisTemplateArn": r.arn, "parameters": dict(r.parameters)}}
        if r.result_configuration:
            view["resultConfiguration"] = r.result_configuration
        if r.compute:
            view["computeConfiguration"] = r.compute
        if r.status == "SUCCESS":
            view["result"] = {"output": {"s3": {"location": f"s3://{self.bucket}/{self._prefix(r)}/"}}}
            view["statistics"] = {"totalDurationInMillis": 1000}
        return view

    def _job_view(self, r: Record) -> dict[str, Any]:
        view: dict[str, Any] = {"id": r.id, "membershipId": self.membership_id, "membershipArn": self.membership_arn,
                                "createTime": r.created, "status": r.status,
                                "jobParameters": {"analysisTemplateArn": r.arn, "parameters": dict(r.parameters)}}
        if r.compute:
            view["computeConfiguration"] = r.compute
        if r.status == "SUCCESS":
            view["result"] = {"output": {"s3": {"location": f"s3://{self.bucket}/results/jobs/{r.id}/"}}}
            view["statistics"] = {"totalDurationInMillis": 1000}
        return view

    # -- S3 ---------------------------------------------------------------------------------------------------
    def handle_s3(self, handler: "_S3Handler") -> None:
        parts = urlsplit(handler.path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        key = unquote(key)
        if bucket != self.bucket:
            return _send(handler, 404, _s3_error("NoSuchBucket", bucket), {"Content-Type": "application/xml"})
        if handler.command == "GET" and not key:
            query = dict(parse_qsl(parts.query))
            prefix = query.get("prefix", "")
            with self._lock:
                keys = sorted(k for k in self.objects if k.startswith(prefix))
                contents = "".join(
                    f"<Contents><Key>{escape(k)}</Key><LastModified>2025-01-01T00:00:00.000Z</LastModified>"
                    f"<ETag>&quot;{hashlib.md5(self.objects[k]).hexdigest()}&quot;</ETag>"
                    f"<Size>{len(self.objects[k])}</Size><StorageClass>STANDARD</StorageClass></Contents>"
                    for k in keys)
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                   f'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{self.bucket}</Name>'
                   f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
                   f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>")
            return _send(handler, 200, xml.encode(), {"Content-Type": "application/xml"})
        with self._lock:
            content = self.objects.get(key)
        if content is None:
            return _send(handler, 404, b"" if handler.command == "HEAD" else _s3_error("NoSuchKey", key),
                         {"Content-Type": "application/xml"})
        _send(handler, 200, content, {"Content-Type": "text/csv", "ETag": f'"{hashlib.md5(content).hexdigest()}"'},
              head=handler.command == "HEAD")


def _s3_error(code: str, resource: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{code}</Message>'
            f"<Resource>{escape(quote(resource))}</Resource></Error>").encode()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str] | None = None,
          head: bool = False) -> None:
    handler.send_response(status)  # adds the Date header the runner reads the service's clock from
    handler.send_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if not head:
        handler.wfile.write(payload)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Drop the connection with a TCP reset and no answer: what a lost answer looks like to the client."""
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
    handler.close_connection = True
    handler.wfile = io.BytesIO()  # finish() flushes it; the socket is gone


class _Quiet(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a reset or a hang never hits a pooled connection by surprise.
    protocol_version = "HTTP/1.0"
    # Headers and body leave in one segment, at once: without these, Nagle's algorithm and the client's delayed
    # ACK hold each answer back some 40 ms on loopback.
    disable_nagle_algorithm = True
    wbufsize = -1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass


class _CleanRoomsHandler(_Quiet):
    def _any(self) -> None:
        self.server.fake.handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any


class _S3Handler(_Quiet):
    def _any(self) -> None:
        self.server.fake.handle_s3(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = _any

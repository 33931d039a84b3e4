"""The run journal: what `run` is about to start and what it started, so that nothing is started twice.

One JSON file per membership and run scope: ``<state dir>/<membership id>/<scope>.json``, the scope being ``all`` for
``run --all`` or the template's name (``job-<name>`` for ``job NAME``); the state dir is ``--state-dir``, by
default ``<--out>/.journal``. Every change is written atomically (a temporary file in the same folder, fsync,
os.replace, fsync of the folder), so a run killed at any instant leaves the previous or the next version, never half
of one. Before each start the entry says ``starting`` with the time (``intent_at``); after it, the query id. A
re-run reads the file: ``--resume`` (or a plain re-run of an unfinished one, which says so) re-attaches to queries
still running, skips templates whose results are on disk, and looks for the query of a start whose answer was
lost instead of starting it again. docs/query-runner.md, "Failure behaviour", is the user's side of this.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from model import json_files
from model.json_files import STRICT, must
from queryrunner import UsageError, checks

FORMAT = "queryrunner-journal"
VERSION = 1
# Ids of earlier runs' queries kept in a journal: a search for a lost start never mistakes them for its own.
PREVIOUS_KEPT = 500

# Entry states. Not settled: the template may have a query the runner has not followed to its end.
PLANNED = "planned"          # nothing sent yet (or refused by a local budget check)
STARTING = "starting"        # a start is being sent; if the run died here, its answer is unknown
UNKNOWN = "unknown"          # a start's outcome could not be decided (see candidates)
RUNNING = "running"          # a query id is known, its final state not yet
SUCCEEDED = "succeeded"      # SUCCESS; ``saved`` lists the result files once they are on disk
FAILED = "failed"            # FAILED, TIMED_OUT, or CANCELLED by someone else: the service ended it
START_FAILED = "start_failed"  # the service refused the start (4xx), or refusals outlasted the retries
INTERRUPTED = "interrupted"  # cancelled by this runner on Ctrl-C / SIGTERM, or never started before it
DEADLINE = "deadline"        # cancelled by this runner at --timeout
REFUSED = "refused"          # refused locally (privacy or access budget): nothing sent
STATES = (PLANNED, STARTING, UNKNOWN, RUNNING, SUCCEEDED, FAILED, START_FAILED, INTERRUPTED, DEADLINE, REFUSED)
# What --resume starts (again): nothing of these has a query that is running or has a result.
STARTABLE = frozenset({PLANNED, INTERRUPTED, DEADLINE, REFUSED, START_FAILED})
# The journal's own status: open (a plain re-run resumes it), finished, interrupted (Ctrl-C, SIGTERM).
JOURNAL_STATUSES = ("open", "finished", "interrupted")


class JournalError(UsageError):
    """A journal that cannot be used (missing for --resume, another run's, damaged): exit 2, nothing started."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Planned:
    """What a run will send for one template (compared with a journal before resuming it)."""

    arn: str
    parameters: dict[str, str]
    result_configuration: dict[str, Any] | None
    compute: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {"arn": self.arn, "parameters": dict(self.parameters),
                "result_configuration": self.result_configuration, "compute": self.compute}


@dataclass
class Entry:
    """One template's record in the journal."""

    template: str
    plan: Planned
    state: str = PLANNED
    queries: list[dict[str, Any]] = field(default_factory=list)  # {"id", "how", "at"}: every query started for it
    intent_at: dt.datetime | None = None
    saved: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    candidates: list[str] = field(default_factory=list)
    start_requests: int = 0   # start requests the service received for this template, across runs

    @property
    def query_id(self) -> str | None:
        return self.queries[-1]["id"] if self.queries else None

    @property
    def settled(self) -> bool:
        if self.state == SUCCEEDED:
            return bool(self.saved)
        return self.state not in (STARTING, UNKNOWN, RUNNING)

    def as_json(self) -> dict[str, Any]:
        return {**self.plan.as_json(), "state": self.state, "queries": self.queries, "intent_at": iso(self.intent_at),
                "saved": self.saved, "error": self.error, "candidates": self.candidates,
                "start_requests": self.start_requests}


# -- the file, as one typed model: every field a reader uses is checked before anything trusts it -------------------
_Version = json_files.version_field(VERSION)


class _QueryRecord(BaseModel):
    model_config = STRICT
    id: str
    how: str
    at: str | None = None


class _ErrorRecord(BaseModel):
    model_config = STRICT
    code: str | None = None
    message: str | None = None


class _EntryFile(BaseModel):
    model_config = STRICT
    arn: str
    parameters: dict[str, str]
    result_configuration: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None
    state: Literal[STATES]  # type: ignore[valid-type]
    queries: list[_QueryRecord]
    intent_at: dt.datetime | None = None
    saved: list[str]
    error: _ErrorRecord | None = None
    candidates: list[str] = []
    start_requests: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _resumable(self) -> "_EntryFile":
        # What --resume decides from the state needs the state's own fields; without them it would start anew a
        # template whose query may be running.
        must(self.state not in (STARTING, UNKNOWN) or self.intent_at is not None,
              f"is {self.state!r} but has no intent_at (when its start was sent)")
        must(self.state not in (RUNNING, SUCCEEDED) or bool(self.queries),
              f"is {self.state!r} but has no query id in queries")
        return self


class _JournalFile(BaseModel):
    model_config = STRICT
    format: Literal[FORMAT]  # type: ignore[valid-type]
    version: _Version
    membership_id: str
    scope: str
    status: Literal[JOURNAL_STATUSES]  # type: ignore[valid-type]
    interrupted_by: str | None = None
    created: dt.datetime | None = None
    templates: dict[str, _EntryFile] = Field(min_length=1)
    previous_queries: list[str] = []

    @model_validator(mode="after")
    def _ids(self) -> "_JournalFile":
        # Each id is sent back to the service (re-attaching, a poll): it must be one the service could have given.
        check = checks.check_job_id if self.scope.startswith("job-") else checks.check_query_id
        for name, entry in self.templates.items():
            for i, query in enumerate(entry.queries):
                problem = check(query.id)
                must(problem is None, f"templates.{name}.queries[{i}].id {problem}")
        return self


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _entry(name: str, raw: _EntryFile) -> Entry:
    plan = Planned(raw.arn, dict(raw.parameters), raw.result_configuration, raw.compute)
    return Entry(name, plan, raw.state, [q.model_dump() for q in raw.queries], _utc(raw.intent_at), list(raw.saved),
                 raw.error.model_dump() if raw.error else None, list(raw.candidates), raw.start_requests)


def _reason(exc: ValidationError) -> str:
    error = json_files.first_error(exc, ("format",))
    return f"it is not a {FORMAT} file" if error["loc"][:1] == ("format",) else json_files.problem(exc, VERSION)


class Journal:
    """The journal of one run scope; thread-safe (``run --all`` updates it from worker threads)."""

    def __init__(self, path: Path, membership_id: str, scope: str, entries: dict[str, Entry], *,
                 status: str = "open", created: dt.datetime | None = None, previous: list[str] | None = None,
                 interrupted_by: str | None = None, wall: Callable[[], dt.datetime] = now_utc):
        self.path, self.membership_id, self.scope = path, membership_id, scope
        self.entries = entries
        self.status = status
        self.wall = wall
        self.created = created or wall()
        self.previous = list(previous or [])
        self.interrupted_by = interrupted_by
        self._lock = threading.RLock()

    # -- files ------------------------------------------------------------------------------------------------
    @staticmethod
    def path_for(state_dir: str | os.PathLike, membership_id: str, scope: str) -> Path:
        return Path(state_dir) / membership_id / f"{scope}.json"

    @classmethod
    def load(cls, path: Path, wall: Callable[[], dt.datetime] = now_utc) -> "Journal | None":
        """The journal at ``path``; None when there is none. A damaged one raises JournalError (one line)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise JournalError(f"journal {path} cannot be read ({exc}); nothing was started") from exc
        try:
            raw = _JournalFile.model_validate_json(text)
        except ValidationError as exc:
            raise JournalError(f"journal {path} is damaged or half-written ({_reason(exc)}); nothing was started. "
                               "Check `history` for queries it may have started, then move the file away to start "
                               "anew") from None
        entries = {name: _entry(name, spec) for name, spec in raw.templates.items()}
        return cls(path, raw.membership_id, raw.scope, entries, status=raw.status, created=_utc(raw.created),
                   previous=list(raw.previous_queries), interrupted_by=raw.interrupted_by, wall=wall)

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "membership_id": self.membership_id, "scope": self.scope,
                "status": self.status, "interrupted_by": self.interrupted_by, "created": iso(self.created),
                "updated": iso(self.wall()), "templates": {n: e.as_json() for n, e in self.entries.items()},
                "previous_queries": self.previous[-PREVIOUS_KEPT:]}

    def save(self, durable: bool = False) -> None:
        """Replace the file atomically. ``durable``: also fsync it and its folder before returning, for the one
        write that must survive a power cut (the intent, written before a start is sent); after any other write
        is lost, a resume still finds what it needs (a start it does not see as sent is looked for, not resent)."""
        with self._lock:
            if self.status != "open" and any(not e.settled for e in self.entries.values()):
                self.status = "open"  # a late update from a worker thread after close(): keep it resumable
            write_atomically(self.path, json.dumps(self.as_json(), indent=1, sort_keys=True) + "\n", durable)

    # -- what a run records ------------------------------------------------------------------------------------
    def known_ids(self) -> set[str]:
        """Every query id this journal knows: a search for a lost start never takes one of them for its own."""
        with self._lock:
            return {q["id"] for e in self.entries.values() for q in e.queries} | set(self.previous)

    def update(self, name: str, durable: bool = False, **changes: Any) -> Entry:
        with self._lock:
            entry = self.entries[name]
            for key, value in changes.items():
                setattr(entry, key, value)
            self.save(durable)
            return entry

    def intent(self, name: str, at: dt.datetime) -> None:
        """Written (and synced to disk) before a start is sent: if the run dies now, --resume looks for the query
        instead of starting it again."""
        self.update(name, durable=True, state=STARTING, intent_at=at, error=None, candidates=[])

    def started(self, name: str, query_id: str, how: str, requests: int) -> None:
        with self._lock:
            entry = self.entries[name]
            known = next((q for q in entry.queries if q["id"] == query_id), None)
            if known is None:
                entry.queries.append({"id": query_id, "how": how, "at": iso(self.wall())})
            elif how not in known["how"].split(", "):
                known["how"] += f", {how}"  # e.g. "started, re-attached": what `history` shows
            entry.start_requests += requests
            entry.state, entry.candidates, entry.saved = RUNNING, [], []
            self.save()

    def requests(self, name: str, requests: int) -> None:
        """Start requests that got no query (refused or lost), for the count shown to the user."""
        if requests:
            with self._lock:
                self.entries[name].start_requests += requests
                self.save()

    def unknown(self, name: str, candidates: list[str], why: str) -> None:
        self.update(name, state=UNKNOWN, candidates=list(candidates), error={"code": "OUTCOME_UNKNOWN",
                                                                             "message": why})

    def ended(self, name: str, state: str, error: dict[str, Any] | None = None) -> None:
        self.update(name, state=state, error=error)

    def saved_results(self, name: str, paths: list[str]) -> None:
        self.update(name, state=SUCCEEDED, saved=list(paths))

    def close(self, interrupted_by: str | None = None) -> None:
        """Mark the run finished, unless some template may still have a query running or a result to fetch: then
        the journal stays open, and a plain re-run resumes it."""
        with self._lock:
            if interrupted_by:
                for entry in self.entries.values():
                    if entry.state in (PLANNED, STARTING) and not entry.queries and entry.intent_at is None:
                        entry.state = INTERRUPTED
            open_ = any(not e.settled for e in self.entries.values())
            self.status = "open" if open_ else ("interrupted" if interrupted_by else "finished")
            self.interrupted_by = interrupted_by
            self.save()

    # -- comparing with a new run ------------------------------------------------------------------------------
    def difference(self, membership_id: str, scope: str, plan: dict[str, Planned]) -> str | None:
        """Why this journal is not the journal of a run of ``plan`` (None: it is)."""
        if self.membership_id != membership_id:
            return f"it is the journal of membership {self.membership_id}, not {membership_id}"
        if self.scope != scope:
            return f"it is the journal of `{_scope_command(self.scope)}`, not of `{_scope_command(scope)}`"
        ours, theirs = set(plan), set(self.entries)
        if ours != theirs:
            parts = []
            if ours - theirs:
                parts.append(f"this run adds {', '.join(sorted(ours - theirs))}")
            if theirs - ours:
                parts.append(f"it has {', '.join(sorted(theirs - ours))} that this run does not")
            return f"it is for another template set ({'; '.join(parts)})"
        for name in sorted(plan):
            was, now = self.entries[name].plan, plan[name]
            for label, a, b in (("template ARN", was.arn, now.arn), ("parameters", was.parameters, now.parameters),
                                ("result configuration", was.result_configuration, now.result_configuration),
                                ("compute", was.compute, now.compute)):
                if a != b:
                    return f"its {name} was started with {label} {_show(a)}; this run has {_show(b)}"
        return None


def _scope_command(scope: str) -> str:
    if scope == "all":
        return "run --all"
    if scope.startswith("job-"):
        return f"job {scope[4:]}"
    return f"run {scope}"


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def write_atomically(path: Path, text: str, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` so that a reader (or a crash) sees the old file or the new one, never a mix;
    ``durable``: on disk (fsync of the file, then of its folder for the rename) before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if not durable:
        return
    with contextlib.suppress(OSError):  # fsync of a folder: POSIX; elsewhere os.replace is what we have
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``<journal>.lock`` for the run: two runs of one journal at once would both start what it lacks."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (process {int(os.pread(fd, 32, 0).decode().strip())})"
            raise JournalError(f"another run{holder} is using journal {path}; wait for it to end, or give this run "
                               "another --state-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def journals_under(state_dir: Path) -> list[tuple[str, str, Path]]:
    """(membership id, scope, path) of every journal in a state dir: for an error naming the ones that are there,
    and for `history`."""
    found = []
    if not state_dir.is_dir():
        return found
    for folder in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.json")):
            found.append((folder.name, path.stem, path))
    return found

"""`job NAME`: one of the analyst's PySpark analysis templates, run as a Clean Rooms protected job.

What happens, in order (docs/query-runner.md, "PySpark jobs"):
1. Every input is checked locally (exit 2, nothing sent): the job is in the stack output job_templates
   (not pending_jobs), --param against its declared parameters, compute (--worker-type CR.1X|CR.4X,
   --workers 4-128, over job_templates.<name>.compute), --timeout, --retries, --out.
2. The local script data/jobs/<name>/<entry point>, if there is one, is compared with the exported SHA-256:
   a difference is a warning (the job runs what is deployed, not the local file).
3. get_analysis_template: the template's entryPointHash.sha256 (which Clean Rooms computed when the template
   was created) must be the exported SHA-256, hex in any case or base64 of the same digest; otherwise the job
   is refused (exit 1) before anything is started.
4. The tables' access budgets, as `run` checks them (App.access_check).
5. start_protected_job without resultConfiguration, so the membership's default job result configuration
   applies (the stack sets it to s3://<results_bucket>/<results_prefix>/jobs); then get_protected_job with
   the runner's poll policy (ElapsedPoll) under one absolute deadline (--timeout). At the deadline or on
   Ctrl-C (or SIGTERM) the job is cancelled (update_protected_job, CANCELLED). A FAILED job is started again only
   when the service says so (error.retry.retryable true), at most --retries times, after Backoff's delays.
   StartProtectedJob has no idempotency token either: a start whose answer was lost is looked for with
   ListProtectedJobs (queryrunner/reconcile.py) instead of being sent again, and the job's journal
   (<--out>/.journal/<membership>/job-<name>.json) lets `job NAME --resume` re-attach to it.
6. On SUCCESS, result.output.s3.location is a prefix holding one folder per entry of the script's "results"
   dict; each is downloaded, printed and saved as --out/<job>/<job id>/<result>.csv.

Time is injected (clock, sleep) like the rest of the runner, so tests run in virtual time.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from queryrunner import EXIT_OK, EXIT_OUTCOME_UNKNOWN, EXIT_QUERY_FAILED
from queryrunner import checks
from queryrunner import journal as jr
from queryrunner import params as qparams
from queryrunner import reconcile, results
from queryrunner.outputs import Compute, PySparkTemplate, describe_compute
from queryrunner.poll import (JournalRecorder, Poller, Recorder, Reporter, Resume, StartFailure, Tally, billed_units,
                              result_location, result_members, utc_now)

# ProtectedJobStatus of the botocore cleanrooms model: SUBMITTED, STARTED, CANCELLING are not final.
JOB_TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
JOB_STATUSES = ("SUBMITTED", "STARTED", "CANCELLING", "CANCELLED", "FAILED", "SUCCESS")

# Where `job` looks for the local copy of a job's script: the project's data/jobs (the stacks' default dataDir).
JOBS_DIR = Path(__file__).resolve().parent.parent / "data" / "jobs"

# A result folder name becomes a file name under --out.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.=-]")
SINGLE_RESULT = "result"


# -- hashes -------------------------------------------------------------------
def sha256_hex(value: Any) -> str | None:
    """A SHA-256 given as 64 hex digits (any case) or as base64 (standard or URL-safe) of its 32 bytes, as
    lowercase hex; None when it is neither. The API reference does not say which encoding
    entryPointHash.sha256 uses; the User Guide compares it with `sha256sum` output (hex)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return text.lower()
    if not re.fullmatch(r"[A-Za-z0-9+/_-]{42,44}={0,2}", text):
        return None
    text = text.replace("-", "+").replace("_", "/")  # URL-safe alphabet to the standard one
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- running one job ------------------------------------------------------------
@dataclass
class JobOutcome:
    """How one job run ended (after retries)."""

    name: str
    status: str  # a terminal ProtectedJobStatus, or DEADLINE / START_FAILED / POLL_FAILED
    job_id: str | None = None
    job: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    elapsed: float = 0.0
    compute: dict[str, Any] | None = None  # the computeConfiguration sent (None: none, the service's default)
    cancel_note: str = ""                 # what happened to the cancel request at the deadline
    requests: int = 0                     # start requests the service received (see poll.Outcome)
    refusals: list[str] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)  # (job id, how: started/reconciled/re-attached)
    lost: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)

    @property
    def how(self) -> str:
        return self.queries[-1][1] if self.queries else "-"

    @property
    def error(self) -> dict[str, Any]:
        return self.job.get("error") or {}

    @property
    def location(self) -> str | None:
        return result_location(self.job)

    @property
    def billed(self) -> float | None:
        return billed_units(self.job)

    @property
    def compute_used(self) -> dict[str, Any] | None:
        return self.job.get("computeConfiguration") or self.compute


def retryable(error: dict[str, Any] | None) -> bool:
    """Only an explicit error.retry.retryable true: a job re-run is billed again and uses access budget again."""
    return bool(((error or {}).get("retry") or {}).get("retryable") is True)


def describe_job_compute(configuration: dict[str, Any] | None) -> str:
    if not configuration:
        return "service default (none sent)"
    return describe_compute(configuration)


# Journal states for a job's final ProtectedJobStatus.
_JOURNAL_STATE = {"SUCCESS": jr.SUCCEEDED, "FAILED": jr.FAILED, "CANCELLED": jr.FAILED}


class JobRunner(Poller):
    """Starts a protected job at most once per attempt, polls it to a final state, re-runs it when the service says
    that may help."""

    def __init__(self, client, membership_id: str, *, clock: Callable[[], float], sleep: Callable[[float], Any],
                 deadline: float, retries: int, backoff: Callable[[], Any], poll: Callable[[], Any],
                 reporter: Reporter, recorder: Recorder | None = None, wall: Callable[[], Any] = utc_now,
                 settle: float = 30.0):
        self.client, self.membership_id = client, membership_id
        self.clock, self.sleep, self.deadline = clock, sleep, deadline
        self.retries, self.backoff, self.poll, self.reporter = retries, backoff, poll, reporter
        self.recorder, self.wall, self.settle = recorder or Recorder(), wall, settle
        self.kind = reconcile.JOB
        self.current: str | None = None  # the job in flight, for Ctrl-C
        self._seen: set[str] = set()
        self.reconciler = reconcile.Reconciler(client, membership_id, reconcile.JOB, wall=wall,
                                               known=lambda: self._seen | self.recorder.known_ids())

    def note(self, tally: Tally, record_id: str, how: str) -> None:
        super().note(tally, record_id, how)
        self._seen.add(record_id)

    def execute(self, job: PySparkTemplate, params: dict[str, str], compute: dict[str, Any] | None,
                resume: Resume | None = None) -> JobOutcome:
        started = self.clock()
        tally = Tally()
        request: dict[str, Any] = {
            "type": "PYSPARK",
            "membershipIdentifier": self.membership_id,
            "jobParameters": {"analysisTemplateArn": job.arn, "parameters": dict(params)},
            # No resultConfiguration: the membership's defaultJobResultConfiguration applies (the results bucket).
        }
        if compute is not None:
            request["computeConfiguration"] = compute
        expected = reconcile.Expected(job.arn, dict(params), None, compute)

        def done(outcome: JobOutcome) -> JobOutcome:
            tally.fill(outcome)
            outcome.elapsed, outcome.compute = self.clock() - started, compute
            return outcome

        current: dict[str, Any] | None = None
        if resume is not None:
            resumed = self._resume(job.name, resume, expected, tally)
            if isinstance(resumed, JobOutcome):
                return done(resumed)
            current = resumed
        delays = self.backoff().delays()
        retried = 0
        while True:
            if current is None:
                current, failure = self.start_once(job.name, "start_protected_job", request, expected, tally)
                if failure is not None:
                    return done(self._failed(job.name, failure))
            outcome = done(self._follow(job.name, current, started, compute, tally))
            current = None
            if outcome.status != "FAILED" or not retryable(outcome.error) or retried >= self.retries:
                return outcome
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                return outcome
            retried += 1
            delay = min(next(delays), remaining)
            self.reporter.say(job.name, f"attempt {outcome.attempts} failed with {outcome.error.get('code')}: "
                                        f"{outcome.error.get('message')}; the service says it is retryable: retry "
                                        f"{retried}/{self.retries} in {delay:.1f}s (a new job, billed again)")
            self.sleep(delay)

    @staticmethod
    def _failed(name: str, failure: StartFailure) -> JobOutcome:
        return JobOutcome(name, failure.status, job={"error": {"code": failure.code, "message": failure.message}},
                          candidates=list(failure.candidates))

    def _resume(self, name: str, resume: Resume, expected: reconcile.Expected,
                tally: Tally) -> dict[str, Any] | JobOutcome | None:
        for record_id, how in resume.previous:
            self.note(tally, record_id, how)
        tally.requests += resume.requests
        if resume.action == "start":
            return None
        if resume.action == "done":
            return JobOutcome(name, "DONE", job_id=resume.query_id)
        if resume.action == "ended":
            error = resume.error or {"code": (resume.state or "").upper(), "message": f"journal state {resume.state}"}
            return JobOutcome(name, "ENDED_EARLIER", job_id=resume.query_id, job={"error": error})
        if resume.action == "find":
            record, failure = self.find_after_restart(name, expected, resume.intent_at or self.wall(), tally)
            return self._failed(name, failure) if failure is not None else record
        try:
            record = self.client.get_protected_job(membershipIdentifier=self.membership_id,
                                                   protectedJobIdentifier=resume.query_id)["protectedJob"]
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"].get("Code") if isinstance(exc, ClientError) else type(exc).__name__
            return JobOutcome(name, "POLL_FAILED", job_id=resume.query_id,
                              job={"error": {"code": code, "message": f"cannot read the earlier run's job: {exc}"}})
        self._seen.add(record["id"])
        tally.queries = [q for q in tally.queries if q[0] != record["id"]] + [(record["id"], "re-attached")]
        self.recorder.started(name, record["id"], "re-attached", 0)
        return record

    def _follow(self, name: str, current: dict[str, Any], started: float, compute: dict[str, Any] | None,
                tally: Tally) -> JobOutcome:
        self.current = current["id"]
        how = tally.queries[-1][1] if tally.queries else "started"
        if how == "started":
            attempt = len(tally.queries)
            suffix = f" (attempt {attempt})" if attempt > 1 else ""
            self.reporter.say(name, f"started job {current['id']}{suffix}: {current['status']}; compute "
                                    f"{describe_job_compute(current.get('computeConfiguration') or compute)}")
        elif how == "re-attached":
            self.reporter.say(name, f"re-attached to job {current['id']}, started by an earlier run: "
                                    f"{current['status']}")
        outcome = self._poll(name, current, started)
        if outcome.status in JOB_TERMINAL:
            self.current = None
            self.recorder.ended(name, _JOURNAL_STATE[outcome.status], outcome.error or None)
        return outcome

    def _poll(self, name: str, current: dict[str, Any], started: float) -> JobOutcome:
        job_id = current["id"]
        how, current, failure = self.until_final(
            name, current, JOB_TERMINAL, started, "get_protected_job",
            lambda: self.client.get_protected_job(membershipIdentifier=self.membership_id,
                                                  protectedJobIdentifier=job_id)["protectedJob"])
        if how == "DEADLINE":
            return JobOutcome(name, "DEADLINE", job_id=job_id, job=current,
                              cancel_note=self.cancel(job_id, name, jr.DEADLINE))
        return JobOutcome(name, how, job_id=job_id, job={**current, "error": failure} if failure else current)

    def cancel(self, job_id: str, name: str, state: str = jr.INTERRUPTED) -> str:
        """Ask Clean Rooms to cancel; returns what happened, for the final report."""
        try:
            response = self.client.update_protected_job(membershipIdentifier=self.membership_id,
                                                        protectedJobIdentifier=job_id, targetStatus="CANCELLED")
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError):
                err = exc.response.get("Error", {})
                code, message = err.get("Code"), err.get("Message")
            else:
                code, message = type(exc).__name__, str(exc)
            self.reporter.say(name, f"could not cancel job {job_id}: {code}: {message}")
            return (f"it could NOT be cancelled ({code}: {message}); check it with "
                    f"`job-status {job_id}` and cancel it in the console")
        finally:
            self.current = None
        now = response["protectedJob"]["status"]
        self.recorder.ended(name, state)
        self.reporter.say(name, f"cancelled job {job_id} (now {now})")
        return f"it was cancelled (now {now})"


@dataclass
class _Line:
    """The two fields of an outcome that cloud.unknown_line reads."""

    error_message: str | None
    candidates: list[str]


# -- results --------------------------------------------------------------------
def result_name(folder: str | None) -> str:
    if not folder:
        return SINGLE_RESULT
    name = _SAFE_NAME.sub("_", folder)
    return name if name.strip(".") else SINGLE_RESULT


def fetch_results(s3, location: str) -> dict[str, results.ResultData]:
    """Download a job's results: one ResultData per first folder under ``location`` (the script's "results" keys).

    Files directly under the location are one result, named "result". CSV unless every file of a result is
    Parquet; gzip-compressed CSV is decompressed.
    """
    _, key = results.parse_s3_uri(location)
    base = key if key.endswith("/") or not key else key + "/"
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for k, content in results.download(s3, location):
        relative = k[len(base):] if k.startswith(base) else k.rsplit("/", 1)[-1]
        parts = relative.split("/")
        groups.setdefault(result_name(parts[0] if len(parts) > 1 else None), []).append((k, content))
    found: dict[str, results.ResultData] = {}
    for name, members in sorted(groups.items()):
        if all(k.lower().endswith(".parquet") for k, _ in members):
            found[name] = results.decode("PARQUET", members)
        else:
            found[name] = results.decode("CSV", [(k, gzip.decompress(c) if c[:2] == b"\x1f\x8b" else c)
                                                 for k, c in members])
    return found


# -- the command ----------------------------------------------------------------
class JobCommand:
    """`job NAME` for one App (queryrunner/cloud.py): its settings, clients, streams, clock and policies."""

    def __init__(self, app):
        self.app, self.args, self.settings = app, app.args, app.settings

    def compute(self, job: PySparkTemplate) -> dict[str, Any] | None:
        """--worker-type/--workers over job_templates.<name>.compute; StartProtectedJob needs both or neither."""
        flags = Compute(getattr(self.args, "worker_type", None), getattr(self.args, "workers", None))
        merged = flags.over(job.compute)
        if merged.worker_type is None and merged.workers is None:
            return None
        where = f"stack output 'job_templates.{job.name}.compute'"
        if merged.worker_type is None:
            raise checks.CheckError(f"--workers {merged.workers} needs a worker type: StartProtectedJob takes the type "
                                    f"and number of workers together, and {where} gives no workerType; add "
                                    f"--worker-type {' or '.join(checks.JOB_WORKER_TYPES)}")
        if merged.workers is None:
            lo, hi = checks.JOB_WORKERS
            raise checks.CheckError(f"--worker-type {merged.worker_type} needs a number of workers: StartProtectedJob "
                                    f"takes the type and number of workers together, and {where} gives no workers; "
                                    f"add --workers N ({lo}-{hi})")
        return {"worker": {"type": merged.worker_type, "number": merged.workers}}

    def run(self) -> int:
        app, args, s = self.app, self.args, self.settings
        s.require_all(["membership_id", "region"])
        s.check_own_membership("start_protected_job")
        s.check_result_region()
        job = s.job(args.name)
        params = qparams.resolve(job.name, job.parameters, qparams.parse_assignments(args.param))
        s.check_region_of(f"job_templates.{job.name}.arn", job.arn)
        compute = self.compute(job)
        access_arns = s.access_budgets  # checked here, used after the client exists
        # Everything local is settled: from here on, requests.
        self.compare_local_script(job)
        where = (f"s3://{s.results_bucket}/{s.results_prefix}/jobs/" if s.get("results_bucket") and
                 s.get("results_prefix") else "its default job result location")
        app.err(f"membership {s.membership_id} in {s.region}; job results go to the membership's default job "
                f"result configuration ({where})")

        cleanrooms = app.client("cleanrooms")
        # The job's journal (queryrunner/journal.py): read and checked before any request, so a bad one sends nothing.
        scope, command = f"job-{job.name}", f"job {job.name}"
        path = jr.Journal.path_for(app.state_dir(), s.membership_id, scope)
        with jr.locked(path):
            plan = {job.name: jr.Planned(job.arn, dict(params), None, compute)}
            journal, resumes = app.open_journal(path, s.membership_id, scope, plan, command)
            app.journal = journal
            from queryrunner.cloud import sigterm_as_interrupt

            with sigterm_as_interrupt():
                return self.run_journaled(cleanrooms, job, params, compute, access_arns, journal,
                                          resumes.get(job.name), command)

    def run_journaled(self, cleanrooms, job: PySparkTemplate, params: dict[str, str], compute: dict[str, Any] | None,
                      access_arns, journal: jr.Journal, resume: Resume | None, command: str) -> int:
        from queryrunner.cloud import exit_for_interrupt, interrupted_by

        app, args, s = self.app, self.args, self.settings
        may_start = resume is None or resume.action in ("start", "find")
        if may_start:
            refusal = self.verify_template(cleanrooms, job)
            if refusal:
                app.err(f"[{job.name}] {refusal}")
                journal.ended(job.name, jr.REFUSED, {"code": "SCRIPT_HASH", "message": refusal})
                journal.close()
                return EXIT_QUERY_FAILED
            blocked = app.access_check(cleanrooms, [(job, params)], access_arns)
            if job.name in blocked:
                app.err(f"[{job.name}] {blocked[job.name]}")
                journal.ended(job.name, jr.REFUSED, {"code": "ACCESS_BUDGET", "message": blocked[job.name]})
                journal.close()
                return EXIT_QUERY_FAILED

        runner = JobRunner(cleanrooms, s.membership_id, clock=app.clock, sleep=app.sleep or time.sleep,
                           deadline=app.clock() + args.timeout, retries=args.retries, backoff=app.backoff,
                           poll=app.poll, reporter=Reporter(app.stderr),
                           recorder=JournalRecorder(journal, others=app.other_journals_ids(journal.path)),
                           wall=app.wall, settle=app.network.settle)
        try:
            outcome = runner.execute(job, params, compute, resume)
        except KeyboardInterrupt as exc:
            in_flight = runner.current
            by = "" if interrupted_by(exc) == "Ctrl-C" else f" ({interrupted_by(exc)})"
            if in_flight:
                app.err(f"interrupted{by}: cancelling job {in_flight}")
                note = runner.cancel(in_flight, job.name)
                app.err(f"[{job.name}] job {in_flight}: {note}; exiting")
            else:
                app.err(f"interrupted{by}: no job in flight; exiting")
            journal.close(interrupted_by=interrupted_by(exc))
            return exit_for_interrupt(exc)
        code = self.report(job, outcome, command)
        journal.close()
        return code

    # -- before the start ---------------------------------------------------------
    def compare_local_script(self, job: PySparkTemplate) -> None:
        """Warn when data/jobs/<name>/<entry point> is not the script the stack deployed (not an error)."""
        folder = JOBS_DIR / job.name
        spec = folder / "job.yaml"
        if not spec.is_file():
            return
        try:
            import yaml

            entry = (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("entryPoint") or "entrypoint.py"
        except (OSError, UnicodeDecodeError, AttributeError, yaml.YAMLError) as exc:
            self.app.err(f"[{job.name}] WARNING: cannot read {spec} to compare the local script with the deployed "
                         f"one ({checks.one_line(str(exc))})")
            return
        if not isinstance(entry, str) or Path(entry).name != entry or not (folder / entry).is_file():
            return
        script = folder / entry
        digest = file_sha256(script)
        if digest != job.sha256:
            self.app.err(f"[{job.name}] WARNING: the local script {script} (sha256 {digest}) is not the deployed one "
                         f"(stack output 'job_templates.{job.name}.sha256' {job.sha256}): the job runs the deployed "
                         "script; run `pulumi up` to deploy the local one")

    def verify_template(self, client, job: PySparkTemplate) -> str | None:
        """Compare the service's entryPointHash with the exported SHA-256; a refusal message, or None to go on."""
        template = client.get_analysis_template(membershipIdentifier=self.settings.membership_id,
                                                analysisTemplateIdentifier=job.id)["analysisTemplate"]
        fmt = template.get("format")
        if fmt == "SQL":
            return (f"refusing to start {job.name!r}: analysis template {job.id} is a SQL template, not PySpark; "
                    f"stack output 'job_templates.{job.name}' does not describe it (run it with `run`, or fix the "
                    "outputs)")
        artifacts = (template.get("sourceMetadata") or {}).get("artifacts") or {}
        reported = (artifacts.get("entryPointHash") or {}).get("sha256")
        if reported is None:
            self.app.err(f"[{job.name}] WARNING: Clean Rooms reports no entryPointHash for template {job.id}; cannot "
                         "compare it with the deployed script (Clean Rooms still checks the artifact's hash itself)")
            return None
        service = sha256_hex(reported)
        if service is None:
            return (f"refusing to start {job.name!r}: the template's entryPointHash.sha256 {checks.show(reported)} "
                    "is neither 64 hex digits nor base64 of a 32-byte SHA-256, so the runner cannot tell whether the "
                    "template runs the deployed script")
        if service != job.sha256:
            return (f"refusing to start {job.name!r}: the template's script hash (entryPointHash.sha256, {service}) is "
                    f"not the one the stack deployed (stack output 'job_templates.{job.name}.sha256', {job.sha256}): "
                    "the artifact was changed after the template was created; run `pulumi up` to deploy the script "
                    "again as a new template, then run the job")
        self.app.err(f"[{job.name}] template {job.id} runs the deployed script (sha256 {service[:12]}...)")
        return None

    # -- after the end ------------------------------------------------------------
    def report(self, job: PySparkTemplate, o: JobOutcome, command: str = "job") -> int:
        from queryrunner.cloud import attempts_text, unknown_line

        app, args = self.app, self.args
        where = f"job {o.job_id}" if o.job_id else "job"
        tries = attempts_text(o, "job")
        if o.status == "SUCCESS":
            return self.success(job, o)
        if o.status == "DONE":
            entry = app.journal.entries[job.name] if app.journal else None
            app.err(f"[{job.name}] already done by an earlier run: job {o.job_id} succeeded, results at "
                     f"{', '.join(entry.saved) if entry else '(see the journal)'}; not started again")
            return EXIT_OK
        if o.status == "UNKNOWN":
            app.err(unknown_line(job.name, _Line(o.error.get("message"), o.candidates), "job", "job-status", command,
                                 app.journal_flags()))
            return EXIT_OUTCOME_UNKNOWN
        if o.status == "ENDED_EARLIER":
            app.err(f"[{job.name}] {where} ended in an earlier run ({o.error.get('code')}: {o.error.get('message')}); "
                    "--resume does not start it again: run it without --resume to start it anew")
            return EXIT_QUERY_FAILED
        if o.status == "FAILED":
            error = o.error
            retry = (error.get("retry") or {}).get("retryable")
            if retry is True:
                hint = f" (retryable, but --retries {args.retries} are used up or the deadline is near)"
            elif retry is False:
                hint = " (not retryable: fix the cause, then run again)"
            else:
                hint = " (the service does not say whether it is retryable; not retried)"
            app.err(f"[{job.name}] {where} FAILED after {tries}: {error.get('code')}: {error.get('message')}{hint}")
        elif o.status == "CANCELLED":
            app.err(f"[{job.name}] {where} was CANCELLED (by someone else, e.g. in the console)")
        elif o.status == "DEADLINE":
            app.err(f"[{job.name}] {where} did not finish within --timeout {args.timeout:g}s; {o.cancel_note}")
        elif o.status == "POLL_FAILED":
            app.err(f"[{job.name}] {where}: its state could not be read ({o.error.get('code')}: "
                    f"{o.error.get('message')}); it may still be running: `job-status {o.job_id}`; "
                    f"`{command} --resume{app.journal_flags()}` re-attaches to it")
            return EXIT_OUTCOME_UNKNOWN
        else:
            app.err(f"[{job.name}] {where} could not start: {o.error.get('code')}: {o.error.get('message')}")
        return EXIT_QUERY_FAILED

    def success(self, job: PySparkTemplate, o: JobOutcome) -> int:
        app, args = self.app, self.args
        stats = o.job.get("statistics") or {}
        took = (f"; Clean Rooms reports {stats['totalDurationInMillis'] / 1000:.1f}s"
                if stats.get("totalDurationInMillis") is not None else "")
        billed = f"; billed {o.billed:g} CRPU-hours" if o.billed is not None else "; billing not reported"
        from queryrunner.cloud import attempts_text

        app.err(f"[{job.name}] SUCCESS after {o.elapsed:.1f}s ({attempts_text(o, 'job')}"
                f"{took}) on {describe_job_compute(o.compute_used)}{billed}; results at "
                f"{o.location or '(no S3 location reported)'}")
        if not o.location:
            members = ", ".join(result_members(o.job))
            also = f" (the service reports member accounts {members})" if members else ""
            app.err(f"[{job.name}] job succeeded but its results could not be retrieved: the service reported no "
                    f"S3 location{also}")
            return EXIT_QUERY_FAILED
        try:
            found = fetch_results(app.client("s3"), o.location)
            saved = {name: results.save(data, os.path.join(args.out, job.name), o.job_id, name)
                     for name, data in found.items()}
        except (results.ResultsError, OSError, BotoCoreError, ClientError) as exc:
            app.err(f"[{job.name}] job succeeded but its results could not be retrieved: {exc}; the journal keeps the "
                    "job, so a re-run downloads them instead of starting it again")
            return EXIT_QUERY_FAILED
        if app.journal is not None:
            app.journal.saved_results(job.name, [p for paths in saved.values() for p in paths])
        for name, data in found.items():
            print(f"== {job.name}: {name} (job {o.job_id}) ==", file=app.stdout)
            if data.header:
                print(results.format_table(data.header, data.rows, args.max_rows), file=app.stdout)
            else:
                print(data.note or "(empty result)", file=app.stdout)
        app.stdout.flush()
        app.err(f"[{job.name}] saved {', '.join(p for paths in saved.values() for p in paths)}")
        return EXIT_OK

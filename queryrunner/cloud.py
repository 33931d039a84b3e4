"""The cloud path: protected queries in AWS Clean Rooms, through boto3.

Everything the runner needs comes from the analyst stack's outputs
(queryrunner/outputs.py); see docs/query-runner.md. What `run` starts is written
to a journal (queryrunner/journal.py) so that a lost answer, a retry or a killed
run never starts a template twice (docs/query-runner.md, "Failure behaviour").
"""
from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from queryrunner import (EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTCOME_UNKNOWN, EXIT_QUERY_FAILED, EXIT_TERMINATED,
                         EXIT_USAGE, UsageError)
from queryrunner import budget as dp_budget
from queryrunner import checks
from queryrunner import journal as jr
from queryrunner import params as qparams
from queryrunner import reconcile, refresh, results
from queryrunner.batch import run_all
from queryrunner.outputs import VALUE_CHECKS, Compute, OutputsError, Settings, Template, describe_compute, load_outputs
from queryrunner.poll import (TERMINAL, ElapsedPoll, JournalRecorder, Outcome, QueryRunner, Reporter, Resume,
                              billed_units, result_configuration, result_location, result_members, utc_now)


@dataclass(frozen=True)
class Network:
    """Timeouts of every client and how long a lost start's listing must stay empty before it counts as proof."""

    connect_timeout: float = 10.0
    # botocore's default; a start, a poll or a listing answers in well under a second when the service is healthy.
    read_timeout: float = 60.0
    # After a start that an earlier (killed) run was sending, an empty listing proves it started nothing only this
    # long after it: the service's list may lag behind a start that is still being processed.
    settle: float = 30.0


NETWORK_ENV = {"connect_timeout": "QUERYRUNNER_CONNECT_TIMEOUT", "read_timeout": "QUERYRUNNER_READ_TIMEOUT",
               "settle": "QUERYRUNNER_SETTLE_SECONDS"}


def network_settings(environ: Any = os.environ) -> Network:
    """Network from the QUERYRUNNER_* variables (seconds); a bad value is an input error naming the variable."""
    values: dict[str, float] = {}
    for key, var in NETWORK_ENV.items():
        raw = environ.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        least = 0.0 if key == "settle" else None
        ok = math.isfinite(value) and (value >= least if least is not None else value > 0)
        if not ok:
            bound = ">= 0" if least is not None else "> 0"
            raise checks.CheckError(f"environment variable {var} must be a finite number of seconds {bound} "
                                    f"(default {getattr(Network, key):g}); got {checks.show(raw)}")
        values[key] = value
    return Network(**values)


# Reads (get, list, cancel, S3 downloads) are safe to repeat, so botocore's standard mode retries them: throttling,
# 5xx, resets and timeouts, with its exponential backoff. "total_max_attempts" counts the first attempt (the old
# "max_attempts: 5" meant 5 retries, i.e. 6 attempts: the same number, said plainly).
READ_ATTEMPTS = 6


def client_config(network: Network):
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": READ_ATTEMPTS},
                  connect_timeout=network.connect_timeout, read_timeout=network.read_timeout,
                  user_agent_extra="cleanrooms-queryrunner")


def default_client_factory(profile: str | None = None, network: Network | None = None,
                           session: Any = None) -> Callable[[str, str], Any]:
    """Clients of one boto3 session (one credential lookup, models loaded once) with the runner's config."""
    sessions, lock = [session], threading.Lock()

    def make(service: str, region: str):
        import boto3

        with lock:
            if sessions[0] is None:
                sessions[0] = boto3.Session(profile_name=profile)
        # An endpoint given by AWS_ENDPOINT_URL_<SERVICE> (or AWS_ENDPOINT_URL, or the config file) is botocore's
        # own configuration; the starts are guarded by App.client whatever the endpoint.
        return sessions[0].client(service, region_name=region, config=client_config(network or Network()))
    return make


def check_profile(args, default_factory: bool) -> None:
    """--profile (or the profile boto3 would take from the environment) must be configured: checked locally."""
    profile = getattr(args, "profile", None)
    if profile is not None:
        checks.fail("--profile", checks.check_profile(profile))
        return
    if default_factory:
        # botocore's order (configprovider.py): AWS_DEFAULT_PROFILE, then AWS_PROFILE.
        var = next((v for v in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE") if os.environ.get(v)), None)
        if var:
            checks.fail(f"environment variable {var} (or --profile)", checks.check_profile(os.environ[var]))


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: queries in flight are cancelled and the journal says so."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a run or job is in flight, SIGTERM (a CI timeout, `kill`) cancels it as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_by(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"


def exit_for_interrupt(exc: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def attempts_text(o: Any, noun: str = "query") -> str:
    """'1 attempt', and what else the service received: starts refused, answers lost, a re-attached query."""
    text = plural(o.attempts, "attempt")
    if o.requests != o.attempts or o.refusals:
        counts = Counter(o.refusals)
        why = ", ".join(f"{code} x{n}" if n > 1 else code for code, n in counts.items())
        text += f"; the service received {plural(o.requests, 'start request')}"
        if why:
            text += f", sent again after: {why}"
    record_id = o.queries[-1][0] if o.queries else None
    if o.how == "reconciled":
        text += f"; {noun} {record_id} found after its start's answer was lost ({', '.join(o.lost) or 'run ended'})"
    elif o.how == "re-attached":
        text += f"; re-attached to {noun} {record_id} of an earlier run"
    return text


def unknown_line(name: str, o: Any, noun: str, status_command: str, resume_command: str, flags: str = "") -> str:
    """The one line for a template whose start's outcome is unknown: the candidates and how to follow one;
    ``flags``: what finds this run's journal again (App.journal_flags)."""
    if o.candidates:
        follow = f"follow one with `{status_command} {o.candidates[0]}`"
        ids = f"candidate {noun} ids: {', '.join(o.candidates)}; {follow}"
    else:
        ids = f"no candidate {noun} is listed; check `history{' --jobs' if noun == 'job' else ''}{flags}`"
    return (f"[{name}] OUTCOME UNKNOWN: {o.error_message}; {ids}; then `{resume_command} --resume{flags}` follows the "
            "one it started or starts it if none is listed (nothing else is started again)")


class App:
    def __init__(self, args, stdin, stdout, stderr, client_factory, clock, sleep, backoff, poll=ElapsedPoll,
                 wall: Callable[[], Any] = utc_now):
        self.args, self.stdout, self.stderr = args, stdout, stderr
        self.clock, self.sleep, self.backoff, self.poll, self.wall = clock, sleep, backoff, poll, wall
        # Every input is checked before the first client exists: a bad one is exit 2, nothing sent.
        check_profile(args, default_factory=client_factory is None)
        self.network = network_settings()
        self.client_factory = client_factory or default_client_factory(getattr(args, "profile", None), self.network)
        overrides = {key: getattr(args, key, None) for key in
                     ("membership_id", "collaboration_id", "region", "results_bucket", "results_region",
                      "results_prefix", "result_format")}
        self.settings = Settings(load_outputs(getattr(args, "outputs", None), stdin), overrides)
        self.settings.check_flags()
        # Single-valued outputs are checked when present, whether this command uses them or not:
        # a wrong type or an impossible id means the file is not the analyst stack's outputs.
        self.settings.check(VALUE_CHECKS)
        self.settings.check_region_flag()  # the collaboration's region, or every request answers "not found"
        self._clients: dict[str, Any] = {}
        self.receivers: tuple[str, ...] = ()  # member accounts each result is also sent to (run)
        self.published: list[str] = []  # templates copied to the dashboard's prefix in this run
        self.journal: jr.Journal | None = None

    def client(self, service: str):
        if service not in self._clients:
            client = self.client_factory(service, self.settings.region)
            if service == "cleanrooms":
                # Whatever built the client (botocore's defaults, a test's endpoint), it never resends a start.
                reconcile.guard_starts(client)
            self._clients[service] = client
        return self._clients[service]

    def err(self, message: str) -> None:
        print(message, file=self.stderr, flush=True)

    # -- the journal ---------------------------------------------------------------------------------------------
    def state_dir(self) -> Path:
        given = getattr(self.args, "state_dir", None)
        if given is not None:
            checks.fail("--state-dir", checks.check_out_dir(given))
            return Path(given)
        return Path(getattr(self.args, "out", None) or "results") / ".journal"

    def journal_flags(self) -> str:
        """The flags that find this run's journal again, for the commands a message suggests (`--resume`,
        `history`): its --state-dir, or its --out when not the default."""
        given = getattr(self.args, "state_dir", None)
        if given is not None:
            return f" --state-dir {shlex.quote(given)}"
        out = getattr(self.args, "out", None)
        return f" --out {shlex.quote(out)}" if out not in (None, "results") else ""

    def open_journal(self, path: Path, membership_id: str, scope: str, plan: dict[str, jr.Planned],
                     command: str) -> tuple[jr.Journal, dict[str, Resume]]:
        """The journal this run writes, and what an earlier run of it left to resume (nothing was sent yet)."""
        resume_flag = bool(getattr(self.args, "resume", False))
        existing = jr.Journal.load(path, wall=self.wall)
        if existing is None:
            if resume_flag:
                raise jr.JournalError(self.no_journal(path, membership_id, scope, command))
            return self.new_journal(path, membership_id, scope, plan, []), {}
        problem = existing.difference(membership_id, scope, plan)
        if resume_flag:
            if problem:
                raise jr.JournalError(f"--resume: journal {path} does not match this run: {problem}; nothing was "
                                      "started. Resume it with the command and outputs it was made for, or run "
                                      "without --resume to start anew")
            self.err(f"resuming the run of journal {path} (started {jr.iso(existing.created)}, {existing.status}): "
                     "nothing it started is started again")
        elif existing.status == "open":
            if problem:
                raise jr.JournalError(f"journal {path} is of an unfinished run that may still have queries running, "
                                      f"and {problem}; nothing was started. Finish it with its own command and "
                                      "--resume, or check `history`, then move the file away or give another "
                                      "--state-dir to start anew")
            self.err(f"found journal {path} of an unfinished run (started {jr.iso(existing.created)}): resuming it, "
                     f"as `{command} --resume` would; nothing it started is started again")
        else:
            # The last run finished: this is a new one. Its queries stay known, so a search for a lost start never
            # takes one of them for its own.
            return self.new_journal(path, membership_id, scope, plan, sorted(existing.known_ids())), {}
        existing.status = "open"
        existing.save()
        return existing, {name: resume_point(entry) for name, entry in existing.entries.items()}

    def new_journal(self, path: Path, membership_id: str, scope: str, plan: dict[str, jr.Planned],
                    previous: list[str]) -> jr.Journal:
        entries = {name: jr.Entry(name, planned) for name, planned in plan.items()}
        journal = jr.Journal(path, membership_id, scope, entries, previous=previous, wall=self.wall)
        journal.save(durable=True)  # before the first start: a run killed at any point leaves a journal
        return journal

    def other_journals_ids(self, path: Path) -> frozenset[str]:
        """Query and job ids in the membership's other journals: a reconciliation never takes one of them for its
        own. A damaged one is skipped, and said: its queries are then not told apart from this run's."""
        ids: set[str] = set()
        for _, _, other in jr.journals_under(path.parent.parent):
            if other != path and other.parent == path.parent:
                try:
                    journal = jr.Journal.load(other)
                except jr.JournalError as exc:
                    self.err(f"WARNING: {exc}; the queries it recorded are not excluded when this run looks for a "
                             "query whose start went unanswered (move it aside or repair it)")
                    continue
                ids |= journal.known_ids() if journal else set()
        return frozenset(ids)

    def no_journal(self, path: Path, membership_id: str, scope: str, command: str) -> str:
        others = [f"{m} ({jr._scope_command(s)})" for m, s, _ in jr.journals_under(path.parent.parent)
                  if (m, s) != (membership_id, scope)]
        there = f"; {path.parent.parent} has journals of {', '.join(others)}" if others else ""
        return (f"--resume: no journal of `{command}` for membership {membership_id} at {path}{there}; nothing was "
                "started. Run without --resume to start (or give the --state-dir / --out the earlier run used)")

    # -- run ----------------------------------------------------------------
    def jobs(self) -> list[tuple[Template, dict[str, str]]]:
        args = self.args
        given = qparams.parse_assignments(args.param)
        window = getattr(args, "window", None)
        if args.all:
            if args.template:
                raise UsageError("give a TEMPLATE or --all, not both")
            templates = list(self.settings.templates().values())
            if not templates:
                raise OutputsError("stack output 'analysis_templates' is empty: nothing to run")
            windowed = qparams.windowed(templates)
            now = self.wall()
            given = qparams.with_window(given, window, windowed or templates, now)
            qparams.check_retention(window, now, _retention(windowed or templates), "nothing was sent", given)
            return qparams.resolve_jobs(templates, given, spread=True)
        if not args.template:
            raise UsageError("give a TEMPLATE name or --all")
        template = self.settings.template(args.template)
        now = self.wall()
        given = qparams.with_window(given, window, [template], now)
        qparams.check_retention(window, now, _retention([template]), "nothing was sent", given)
        return qparams.resolve_jobs([template], given, spread=False)

    def run(self) -> int:
        args = self.args
        self.settings.require_all(["membership_id", "region", "results_bucket", "results_prefix", "result_format",
                                   "analysis_templates"])
        jobs = self.jobs()
        # Resolve and check every output before the first request: a bad one is an exit-2 error, not a half run.
        s = self.settings
        membership_id, region = s.membership_id, s.region
        bucket, prefix, fmt = s.results_bucket, s.results_prefix, s.result_format
        quicksight = None if args.no_refresh else s.quicksight
        if any(t.differential_privacy for t, _ in jobs):
            _ = s.collaboration_id  # needed by the budget check
        s.check_own_membership("start_protected_query")
        s.check_result_region()
        for t, _ in jobs:
            checks.fail(f"results prefix for template {t.name!r} ({s.label('results_prefix')})",
                        checks.check_prefix(prefix, room=1 + len(t.name)))
            s.check_region_of(f"analysis_templates.{t.name}.arn", t.arn)
        # Compute, most specific first: --worker-type/--workers, the template's own, the stack's default.
        flags = Compute(getattr(args, "worker_type", None), getattr(args, "workers", None))
        default = s.compute
        compute = {t.name: flags.over(t.compute).over(default).configuration() for t, _ in jobs}
        receivers = self.receivers = () if getattr(args, "no_distribute", False) else s.result_receivers
        access_arns = s.access_budgets  # checked here, used after the client exists

        def output_s3(template: Template) -> dict[str, str]:
            return {"resultFormat": fmt, "bucket": bucket, "keyPrefix": f"{prefix}/{template.name}"}

        # What this run will send, per template: compared with the journal of an earlier run before resuming it.
        plan = {t.name: jr.Planned(t.arn, dict(p), result_configuration(output_s3(t), receivers), compute[t.name])
                for t, p in jobs}
        scope = "all" if args.all else jobs[0][0].name
        command = "run --all" if args.all else f"run {scope}"
        path = jr.Journal.path_for(self.state_dir(), membership_id, scope)
        # The client first (creating it sends nothing): a run that cannot have one leaves no journal behind.
        self.client("cleanrooms")
        with jr.locked(path):
            journal, resumes = self.open_journal(path, membership_id, scope, plan, command)
            self.journal = journal
            also = (f", and to member account{'s' if len(receivers) > 1 else ''} {', '.join(receivers)}"
                    if receivers else "")
            self.err(f"membership {membership_id} in {region}; results to s3://{bucket}/{prefix}/<template>/ as {fmt}"
                     f"{also}; journal {path}")
            with sigterm_as_interrupt():
                return self.run_journaled(jobs, journal, resumes, output_s3, compute, access_arns, quicksight,
                                          command)

    def run_journaled(self, jobs, journal: jr.Journal, resumes: dict[str, Resume], output_s3, compute,
                      access_arns, quicksight, command: str) -> int:
        args, s = self.args, self.settings
        cleanrooms = self.client("cleanrooms")
        refused: list[Outcome] = []
        runnable = []
        # Budgets are checked only for what may start now: a re-attached or finished template spends nothing more.
        may_start = [(t, p) for t, p in jobs if not resumes.get(t.name) or resumes[t.name].action in ("start", "find")]
        blocked = self.access_check(cleanrooms, may_start, access_arns)
        for t, p in jobs:
            if t.name in blocked:
                self.err(f"[{t.name}] {blocked[t.name]}")
                refused.append(Outcome(t.name, "REFUSED", error_code="ACCESS_BUDGET", error_message=blocked[t.name]))
                journal.ended(t.name, jr.REFUSED, {"code": "ACCESS_BUDGET", "message": blocked[t.name]})
                continue
            if t.differential_privacy and (t, p) in may_start:
                try:
                    dp_budget.check(cleanrooms, s.membership_id, s.collaboration_id, t,
                                    args.allow_budget_exhaustion, lambda m, n=t.name: self.err(f"[{n}] {m}"))
                except dp_budget.BudgetError as exc:
                    self.err(f"[{t.name}] {exc}")
                    refused.append(Outcome(t.name, "REFUSED", error_code="PRIVACY_BUDGET", error_message=str(exc)))
                    journal.ended(t.name, jr.REFUSED, {"code": "PRIVACY_BUDGET", "message": str(exc)})
                    continue
            runnable.append((t, p))

        runner = QueryRunner(cleanrooms, s.membership_id, output_s3, clock=self.clock, sleep=self.sleep,
                             deadline=self.clock() + args.timeout, retries=args.retries, backoff=self.backoff,
                             poll=self.poll, reporter=Reporter(self.stderr), receivers=self.receivers,
                             compute=lambda template: compute[template.name],
                             recorder=JournalRecorder(journal, others=self.other_journals_ids(journal.path)),
                             wall=self.wall, settle=self.network.settle)
        saved: dict[str, list[str]] = {}
        failed: list[Outcome] = list(refused)

        def on_done(outcome: Outcome) -> None:
            if not self.report(outcome, saved, command):
                failed.append(outcome)

        try:
            if args.all:
                outcomes = run_all(runner, runnable, args.max_concurrency, on_done, resumes=resumes)
            else:
                outcomes = []
                for t, p in runnable:
                    outcomes.append(runner.execute(t, p, resumes.get(t.name)))
                    on_done(outcomes[-1])
        except KeyboardInterrupt as exc:
            by = "" if interrupted_by(exc) == "Ctrl-C" else f" ({interrupted_by(exc)})"
            self.err(f"interrupted{by}: cancelling queries in flight")
            cancelled = runner.cancel_in_flight()
            journal.close(interrupted_by=interrupted_by(exc))
            self.err(f"cancelled {len(cancelled)} quer{'y' if len(cancelled) == 1 else 'ies'}; exiting (recorded in "
                     f"{journal.path}: `{command} --resume{self.journal_flags()}` runs what is left)")
            return exit_for_interrupt(exc)

        journal.close()
        if args.all:
            self.summary(outcomes + refused, saved)
        if quicksight and self.published:
            self.refresh_quicksight(quicksight)
        return self.exit_code(outcomes + refused, saved, [t.name for t, _ in jobs])

    @staticmethod
    def exit_code(outcomes: list[Outcome], saved: dict[str, list[str]], templates: list[str]) -> int:
        """0 only when every template has its one result on disk (this run's or an earlier run's); 3 when a start's
        outcome is unknown or a query's end could not be seen (`--resume` settles both); 1 otherwise."""
        if any(o.status in ("UNKNOWN", "POLL_FAILED") for o in outcomes):
            return EXIT_OUTCOME_UNKNOWN
        every = all(saved.get(name) for name in templates) and all(o.ok or o.status == "DONE" for o in outcomes)
        return EXIT_OK if every else EXIT_QUERY_FAILED

    def access_check(self, cleanrooms, jobs, access_arns: dict[str, str] | None) -> dict[str, str]:
        """Templates that read a table whose access budget is used up: name -> why (refused, exit 1).

        Needs the outputs analysis_templates.<name>.tables and access_budgets (association name -> ARN; the
        budget names the association by ARN, the template by name); without them the service decides.
        """
        reads = {t.name: [table for table in (t.tables or ()) if table in (access_arns or {})] for t, _ in jobs}
        if not any(reads.values()):
            return {}
        try:
            listed = dp_budget.list_access_budgets(cleanrooms, self.settings.membership_id)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            self.err(f"WARNING: could not check the tables' access budgets ({err.get('Code')}: {err.get('Message')}); "
                     "Clean Rooms still refuses a query over a table whose access budget is used up")
            return {}
        by_arn = {b.resource_arn: b for b in listed}
        blocked: dict[str, str] = {}
        wanted: dict[str, list[str]] = {}
        for name, tables in reads.items():
            for table in tables:
                budget = by_arn.get(access_arns[table])
                if budget is None:
                    continue  # no access budget on that table: its use is unlimited
                if budget.aggregate_remaining <= 0:
                    blocked.setdefault(name, f"refusing to run {name!r}: table {table!r} has no access budget left "
                                             f"({budget.describe()}); its owner sets the budget, or wait for the "
                                             "period to renew")
                else:
                    wanted.setdefault(table, []).append(name)
        for table, names in wanted.items():
            budget = by_arn[access_arns[table]]
            names = [n for n in names if n not in blocked]
            if len(names) > budget.aggregate_remaining:
                self.err(f"WARNING: table {table!r} can be used {budget.aggregate_remaining} more time"
                         f"{'s' if budget.aggregate_remaining != 1 else ''} but {len(names)} templates read it "
                         f"({', '.join(names)}); Clean Rooms will refuse the ones past its access budget")
        return blocked

    def report(self, o: Outcome, saved: dict[str, list[str]], command: str = "run") -> bool:
        """Tell the user how one template ended; True when its result is on disk."""
        where = f"query {o.query_id}" if o.query_id else "query"
        if o.status == "DONE":
            saved[o.template] = list(o.saved)
            self.err(f"[{o.template}] already done by an earlier run: query {o.query_id} succeeded, results at "
                     f"{', '.join(o.saved)}; not started again")
            return True
        if o.ok:
            return self.report_success(o, saved)
        if o.status == "FAILED":
            retry = (o.query.get("error") or {}).get("retry") or {}
            hint = "" if retry.get("retryable") is not False else " (not retryable: fix the cause, then run again)"
            self.err(f"[{o.template}] {where} FAILED after {attempts_text(o)}: "
                     f"{o.error_code}: {o.error_message}{hint}")
        elif o.status == "TIMED_OUT":
            self.err(f"[{o.template}] {where} TIMED_OUT: Clean Rooms stopped it at the service's time limit "
                     f"after {o.elapsed:.1f}s; narrow the query (parameters) or ask for more compute")
        elif o.status == "CANCELLED":
            self.err(f"[{o.template}] {where} was CANCELLED (by someone else, e.g. in the console or another run)")
        elif o.status == "DEADLINE":
            self.err(f"[{o.template}] {where} did not finish within --timeout {self.args.timeout:g}s; "
                     f"it was cancelled ({o.error_message})")
        elif o.status == "INTERRUPTED":
            self.err(f"[{o.template}] {where} interrupted")
        elif o.status == "UNKNOWN":
            self.err(unknown_line(o.template, o, "query", "status", command, self.journal_flags()))
        elif o.status == "POLL_FAILED":
            self.err(f"[{o.template}] {where}: its state could not be read ({o.error_code}: {o.error_message}); it may "
                     f"still be running: `status {o.query_id}`; `{command} --resume{self.journal_flags()}` "
                     "re-attaches to it")
        elif o.status == "ENDED_EARLIER":
            self.err(f"[{o.template}] {where} ended in an earlier run ({o.error_code}: {o.error_message}); --resume "
                     f"does not start it again: run it without --resume to start it anew")
        else:
            self.err(f"[{o.template}] {where} could not run: {o.error_code}: {o.error_message}")
        return False

    def report_success(self, o: Outcome, saved: dict[str, list[str]]) -> bool:
        delivered = ""
        if o.receivers:
            delivered = f"; also received by member account{'s' if len(o.receivers) > 1 else ''} " \
                        f"{', '.join(o.receivers)}"
        billed = f"; billed {o.billed:g} CRPU-hours" if o.billed is not None else ""
        self.err(f"[{o.template}] SUCCESS after {o.elapsed:.1f}s ({attempts_text(o)}) on "
                 f"{describe_compute(o.compute_used)}{billed}; result at {o.location or '(no S3 location reported)'}"
                 f"{delivered}")
        missing = sorted(set(self.receivers) - set(o.receivers)) if self.receivers else []
        if missing:
            self.err(f"[{o.template}] WARNING: Clean Rooms does not list member account"
                     f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} among the receivers")
        if not o.location:
            self.err(f"[{o.template}] query succeeded but the result could not be retrieved: the service "
                     "reported no S3 location for this runner's copy")
            return False
        try:
            data = results.fetch(self.client("s3"), o.location, self.settings.result_format)
            paths = results.save(data, self.args.out, o.template, o.query_id)
        except (results.ResultsError, OSError, BotoCoreError, ClientError) as exc:
            self.err(f"[{o.template}] query succeeded but the result could not be retrieved: {exc}; the journal keeps "
                     "the query, so a re-run downloads it instead of starting it again")
            return False
        saved[o.template] = paths
        if self.journal is not None:
            self.journal.saved_results(o.template, paths)
        self.publish_for_dashboard(o, data)
        print(f"== {o.template} ({o.query_id}) ==", file=self.stdout)
        if data.header:
            print(results.format_table(data.header, data.rows, self.args.max_rows), file=self.stdout)
        else:
            print(data.note or "(empty result)", file=self.stdout)
        self.stdout.flush()
        self.err(f"[{o.template}] saved {', '.join(paths)}")
        return True

    def summary(self, outcomes: list[Outcome], saved: dict[str, list[str]]) -> None:
        billed = any(o.billed is not None for o in outcomes)
        rows = []
        for o in outcomes:
            row = [o.template, o.status, o.query_id or "-", f"{o.elapsed:.1f}", str(o.attempts),
                   describe_compute(o.compute_used, short=True) if o.query_id else "-"]
            if billed:
                row.append(f"{o.billed:g}" if o.billed is not None else "-")
            how = {"DONE": "done earlier"}.get(o.status, o.how)
            rows.append(row + [str(o.requests), how,
                               ", ".join(saved.get(o.template, [])) or (o.error_code or "-")])
        header = ["template", "status", "query id", "seconds", "attempts", "compute"]
        header += ["CRPU-hours"] if billed else []
        header += ["start requests", "how"]
        print("== summary ==", file=self.stdout)
        print(results.format_table(header + ["result / error"], rows, max_rows=len(rows)), file=self.stdout)

    def publish_for_dashboard(self, o: Outcome, data) -> None:
        """Copy the dashboard template's result to the prefix its dataset reads."""
        qs = None if self.args.no_refresh else self.settings.quicksight
        prefix = (qs or {}).get("published_prefix")
        if not prefix or qs.get("template") != o.template:
            return
        try:
            keys = results.publish(self.client("s3"), self.settings.results_bucket, prefix, data, o.query_id)
        except (ClientError, BotoCoreError) as exc:
            self.err(f"WARNING: could not publish {o.template} to s3://{self.settings.results_bucket}/{prefix}/: {exc}")
            return
        self.published.append(o.template)
        self.err(f"[{o.template}] published {len(keys)} file(s) to s3://{self.settings.results_bucket}/{prefix}/")

    def refresh_quicksight(self, qs: dict[str, str]) -> None:
        try:
            started = refresh.start_ingestion(self.client("quicksight"), qs["aws_account_id"], qs["dataset_id"])
        except (ClientError, BotoCoreError) as exc:
            # The results are in S3 already; a failed refresh does not fail the run.
            self.err(f"WARNING: QuickSight refresh of dataset {qs['dataset_id']} failed: {exc}")
            return
        self.err(f"QuickSight ingestion {started['id']} started for dataset {qs['dataset_id']} "
                 f"({started['status']})")

    # -- read-only commands -------------------------------------------------
    def budget(self) -> int:
        self.settings.require_all(["membership_id", "region"])
        names = {arn: name for name, arn in (self.settings.access_budgets or {}).items()}
        # A member that does not query (a producer whose table is protected) reads the collaboration-wide view.
        roles = self.settings.get("roles")
        wide = self.settings.collaboration_id if isinstance(roles, list) and "analyst" not in roles else None
        if wide:
            self.err(f"the collaboration's budgets (ListCollaborationPrivacyBudgets, collaboration {wide}): "
                     "this stack does not query")
        cleanrooms = self.client("cleanrooms")
        budgets = dp_budget.list_budgets(cleanrooms, self.settings.membership_id, wide)
        if not budgets:
            print("no differential-privacy budgets in this collaboration", file=self.stdout)
        else:
            header, rows = dp_budget.budget_rows(budgets)
            print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
            if getattr(self.args, "forecast", False):
                self.forecast(cleanrooms, budgets, wide)
        access = dp_budget.list_access_budgets(cleanrooms, self.settings.membership_id, wide)
        print("", file=self.stdout)
        if not access:
            print("no access budgets in this collaboration (every table may be used without limit)", file=self.stdout)
            return EXIT_OK
        header, rows = dp_budget.access_rows(access, names)
        print("== access budgets (how many more times each table may be used) ==", file=self.stdout)
        print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        return EXIT_OK

    def forecast(self, cleanrooms, budgets, wide: str | None) -> None:
        """`budget --forecast`: each DP template's cost per run (PreviewPrivacyImpact) and the runs left, and this
        period's burn: what the budget has spent since the month began, when it refreshes monthly."""
        from localroom.ledger import period_bounds
        from model.budget import Burn, forecast_rows

        s = self.settings
        print("", file=self.stdout)
        print("== forecast (runs of each differentially private template the budget still pays for) ==",
              file=self.stdout)
        templates = [t for t in s.templates().values() if t.differential_privacy] if not wide else []
        items = []
        for template in templates:
            impacts = dp_budget.assess(cleanrooms, s.membership_id, s.collaboration_id, template)
            worst = max(impacts, key=lambda i: i.cost / max(i.remaining, 1e-12))
            items.append((template.name, worst.cost))
        remaining = min(b.remaining_fraction for b in budgets)
        if items:
            header, rows = forecast_rows(items, remaining)
            print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        else:
            print("no differentially private template in this stack's outputs" if not wide
                  else "this stack does not query: no templates to forecast", file=self.stdout)
        params = cleanrooms.get_collaboration_privacy_budget_template(
            collaborationIdentifier=s.collaboration_id, privacyBudgetTemplateIdentifier=budgets[0].template_id
        )["collaborationPrivacyBudgetTemplate"]
        now = self.wall()
        monthly = params.get("autoRefresh") == "CALENDAR_MONTH"
        start, refresh = period_bounds("CALENDAR_MONTH", now) if monthly else (None, None)
        print(Burn(1.0 - remaining, remaining, start, now, refresh).describe(), file=self.stdout)

    def audit(self) -> int:
        """The compliance report of this membership (queryrunner/audit.py), CSV and --html."""
        from queryrunner import audit

        s = self.settings
        s.require_all(["membership_id", "region"])
        now = self.wall()
        since = audit.since_from(self.args.since, now)
        names, tables = {}, {}
        # Either output may be absent (a member without queries or jobs); one that is there is checked whole.
        present = [read() for key, read in (("analysis_templates", s.templates), ("job_templates", s.job_templates))
                   if s.get(key) is not None]
        for spec in [spec for found in present for spec in found.values()]:
            names[spec.arn], tables[spec.name] = spec.name, tuple(spec.tables or ())
        entries = audit.cloud_entries(
            self.client("cleanrooms"), self.client("cloudtrail"), membership_id=s.membership_id, since=since,
            region=s.region, template_names=names, template_tables=tables, access_tables=set(s.access_budgets or {}),
            results_bucket=s.get("results_bucket"), results_region=s.get("results_region"), err=self.err)
        paths = audit.write(entries, Path(self.args.out), title=f"Clean Rooms audit: membership {s.membership_id}",
                            since=since, now=now, with_html=self.args.html,
                            budget_label="differential-privacy aggregations charged")
        header = ["template", "runs", "succeeded", "failed", "DP aggregations", "budget", "access uses"]
        rows = audit.summary_rows(entries)
        print(results.format_table(header, rows, max_rows=len(rows)) if rows else
              f"no protected queries or jobs since {since.isoformat(timespec='seconds')}", file=self.stdout)
        self.err(f"audit written: {', '.join(str(p) for p in paths)}")
        return EXIT_OK

    def print_fields(self, rows: list[list[str]]) -> None:
        """`status` / `job-status`: a field | value table, without the row count."""
        print(results.format_table(["field", "value"], rows, max_rows=len(rows)).rsplit("\n", 1)[0],
              file=self.stdout)

    def status(self) -> int:
        checks.fail("status QUERY_ID", checks.check_query_id(self.args.query_id))
        self.settings.require_all(["membership_id", "region"])
        q = self.client("cleanrooms").get_protected_query(
            membershipIdentifier=self.settings.membership_id, protectedQueryIdentifier=self.args.query_id
        )["protectedQuery"]
        self.print_fields(status_rows(q, q.get("sqlParameters"), "template", _names(self.settings.templates),
                                      "not reported (with none sent, the service's default: CR.1X)"))
        if q["status"] in TERMINAL and q["status"] != "SUCCESS":
            return EXIT_QUERY_FAILED
        return EXIT_OK

    # -- Clean Rooms ML lookalike segments (queryrunner/audience.py) -------------
    def audience(self) -> int:
        from queryrunner import audience

        return audience.run(self, self.args.audience_action)

    def ml(self) -> int:
        from queryrunner import ml

        return ml.run(self, self.args.ml_action)

    # -- PySpark jobs (queryrunner/jobs.py) ---------------------------------------
    def job(self) -> int:
        from queryrunner.jobs import JobCommand

        return JobCommand(self).run()

    def job_status(self) -> int:
        checks.fail("job-status JOB_ID", checks.check_job_id(self.args.job_id))
        self.settings.require_all(["membership_id", "region"])
        job = self.client("cleanrooms").get_protected_job(
            membershipIdentifier=self.settings.membership_id, protectedJobIdentifier=self.args.job_id
        )["protectedJob"]
        self.print_fields(status_rows(job, job.get("jobParameters"), "job", _names(self.settings.job_templates),
                                      "not reported"))
        return EXIT_QUERY_FAILED if job["status"] in ("FAILED", "CANCELLED") else EXIT_OK

    def history(self) -> int:
        self.settings.require_all(["membership_id", "region"])
        state_dir = self.state_dir()  # checked before the first request
        jobs = getattr(self.args, "jobs", False)
        operation, key, what, noun = (("list_protected_jobs", "protectedJobs", "jobs", "job") if jobs else
                                      ("list_protected_queries", "protectedQueries", "queries", "query"))
        kwargs = {"membershipIdentifier": self.settings.membership_id}
        if self.args.status_filter:
            kwargs["status"] = self.args.status_filter
        paginator = self.client("cleanrooms").get_paginator(operation)
        summaries = []
        for page in paginator.paginate(**kwargs, PaginationConfig={"PageSize": min(self.args.limit, 100)}):
            summaries += page[key]
            if len(summaries) >= self.args.limit:
                break
        summaries = summaries[: self.args.limit]
        if not summaries:
            print(f"no protected {what} for this membership", file=self.stdout)
            return EXIT_OK
        notes = self.journal_notes(jobs, state_dir)
        rows = [[q["id"], q["status"], q["createTime"].isoformat(timespec="seconds"),
                 ",".join(r["analysisType"] for r in q.get("receiverConfigurations", [])) or "-"]
                + ([notes.get(q["id"], "-")] if notes else [])
                for q in summaries]
        header = [f"{noun} id", "status", "created", "analysis"] + (["this runner's journal"] if notes else [])
        print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        return EXIT_OK

    def journal_notes(self, jobs: bool, state_dir: Path) -> dict[str, str]:
        """Query (or job) id -> 'template: how' (started, reconciled, re-attached) from this membership's journals,
        in ``state_dir``, found as `run` and `job` found it (--state-dir, else <--out>/.journal), so `history` shows
        what the runner did with each."""
        notes: dict[str, str] = {}
        for membership, scope, path in jr.journals_under(state_dir):
            if membership != self.settings.membership_id or scope.startswith("job-") != jobs:
                continue
            try:
                journal = jr.Journal.load(path)
            except jr.JournalError as exc:
                self.err(f"WARNING: {exc}")
                continue
            for entry in (journal.entries.values() if journal else ()):
                for q in entry.queries:
                    notes[q["id"]] = f"{entry.template}: {q['how']}"
        return notes


def _names(templates: Callable[[], dict[str, Any]]) -> dict[str, str]:
    """Template ARN -> name, from the outputs when they parse (a nicety for status; ids work without it)."""
    try:
        return {t.arn: t.name for t in templates().values()}
    except OutputsError:
        return {}


def status_rows(record: dict[str, Any], parameters: dict[str, Any] | None, label: str, names: dict[str, str],
                no_compute: str) -> list[list[str]]:
    """One protected query's or job's fields: ``parameters`` its sqlParameters or jobParameters, ``label`` what
    its template is called, ``no_compute`` what to say when it reports no computeConfiguration."""
    parameters = parameters or {}
    rows = [["id", record["id"]], ["status", record["status"]], ["created", record["createTime"].isoformat()]]
    arn = parameters.get("analysisTemplateArn")
    if arn:
        rows.append([label, names.get(arn, arn)])
    for k, v in sorted((parameters.get("parameters") or {}).items()):
        rows.append([f"param {k}", v])
    millis = (record.get("statistics") or {}).get("totalDurationInMillis")
    if millis is not None:
        rows.append(["duration", f"{millis / 1000:.1f}s"])
    configured = record.get("computeConfiguration")
    rows.append(["compute", describe_compute(configured) if configured else no_compute])
    units = billed_units(record)
    if units is not None:
        rows.append(["billed", f"{units:g} CRPU-hours"])
    location = result_location(record)
    if location:
        rows.append(["result", location])
    members = result_members(record)
    if members:
        rows.append(["received by", ", ".join(members)])
    if record.get("error"):
        e = record["error"]
        rows.append(["error", f"{e['code']}: {e['message']}"])
        rows.append(["retryable", str(bool((e.get("retry") or {}).get("retryable")))])
    return rows


def resume_point(entry: jr.Entry) -> Resume:
    """What to do for one template of an earlier run's journal (docs/query-runner.md, "Failure behaviour")."""
    previous = tuple((q["id"], q["how"]) for q in entry.queries)
    state, common = entry.state, {"previous": previous, "requests": entry.start_requests}
    if state == jr.SUCCEEDED and entry.saved and all(os.path.exists(p) for p in entry.saved):
        return Resume("done", entry.query_id, saved=tuple(entry.saved), **common)
    if state in (jr.SUCCEEDED, jr.RUNNING) and entry.query_id:
        return Resume("follow", entry.query_id, **common)  # still running, or its result is not on disk yet
    if state in (jr.STARTING, jr.UNKNOWN) and entry.intent_at is not None:
        return Resume("find", intent_at=entry.intent_at, **common)  # its start's answer was lost
    if state == jr.FAILED:
        return Resume("ended", entry.query_id, state=state, error=entry.error, **common)
    return Resume("start", **common)  # never started, refused, or cancelled by this runner


def _retention(templates) -> dict[str, dict[str, tuple[str, str]]]:
    """{template: {table: (retention, where)}} from the stack output (analysis_templates.<name>.retention)."""
    return {t.name: {table: (text, f"stack output analysis_templates.{t.name}.retention")
                     for table, text in t.retention} for t in templates}


def run(args, stdin, stdout, stderr, client_factory, clock, sleep, backoff, poll=ElapsedPoll) -> int:
    try:
        app = App(args, stdin, stdout, stderr, client_factory, clock, sleep, backoff, poll)
        return getattr(app, args.command.replace("-", "_"))()
    except (UsageError, OutputsError) as exc:
        print(f"error: {checks.one_line(str(exc))}", file=stderr)
        return EXIT_USAGE
    except qparams.ParamError as exc:
        print("error: bad parameters, nothing was sent:", file=stderr)
        for problem in exc.problems:
            print(f"  - {checks.one_line(problem)}", file=stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"interrupted ({interrupted_by(exc)})", file=stderr)
        return exit_for_interrupt(exc)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        print(f"error: {exc.operation_name} failed: {err.get('Code')}: {err.get('Message')}", file=stderr)
        return EXIT_QUERY_FAILED
    except BotoCoreError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_QUERY_FAILED
    except OSError as exc:  # the journal or a result file could not be written (disk full, permissions)
        print(f"error: {checks.one_line(str(exc))}", file=stderr)
        return EXIT_QUERY_FAILED

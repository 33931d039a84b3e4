"""The cloud path: protected queries in AWS Clean Rooms, through boto3.

Everything the runner needs comes from the analyst stack's outputs
(queryrunner/outputs.py); see docs/query-runner.md.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from queryrunner import EXIT_INTERRUPTED, EXIT_OK, EXIT_QUERY_FAILED, EXIT_USAGE, UsageError
from queryrunner import budget as dp_budget
from queryrunner import checks
from queryrunner import params as qparams
from queryrunner import refresh, results
from queryrunner.batch import run_all
from queryrunner.outputs import VALUE_CHECKS, Compute, OutputsError, Settings, Template, describe_compute, load_outputs
from queryrunner.poll import (TERMINAL, ElapsedPoll, Outcome, QueryRunner, Reporter, billed_units, result_location,
                              result_members)


def default_client_factory(profile: str | None = None) -> Callable[[str, str], Any]:
    def make(service: str, region: str):
        import boto3
        from botocore.config import Config

        # botocore's "standard" mode retries throttling and 5xx of single API
        # calls; the runner's own retries are about whole queries.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="cleanrooms-queryrunner")
        return boto3.Session(profile_name=profile).client(service, region_name=region, config=config)
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


class App:
    def __init__(self, args, stdin, stdout, stderr, client_factory, clock, sleep, backoff, poll=ElapsedPoll):
        self.args, self.stdout, self.stderr = args, stdout, stderr
        self.clock, self.sleep, self.backoff, self.poll = clock, sleep, backoff, poll
        # Every input is checked before the first client exists: a bad one is exit 2, nothing sent.
        check_profile(args, default_factory=client_factory is None)
        self.client_factory = client_factory or default_client_factory(getattr(args, "profile", None))
        overrides = {key: getattr(args, key, None) for key in
                     ("membership_id", "collaboration_id", "region", "results_bucket", "results_prefix",
                      "result_format")}
        self.settings = Settings(load_outputs(getattr(args, "outputs", None), stdin), overrides)
        self.settings.check_flags()
        # Single-valued outputs are checked when present, whether this command uses them or not:
        # a wrong type or an impossible id means the file is not the analyst stack's outputs.
        self.settings.check(VALUE_CHECKS)
        self._clients: dict[str, Any] = {}
        self.receivers: tuple[str, ...] = ()  # member accounts each result is also sent to (run)
        self.published: list[str] = []  # templates copied to the dashboard's prefix in this run

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.client_factory(service, self.settings.region)
        return self._clients[service]

    def err(self, message: str) -> None:
        print(message, file=self.stderr, flush=True)

    # -- run ----------------------------------------------------------------
    def jobs(self) -> list[tuple[Template, dict[str, str]]]:
        args = self.args
        given = qparams.parse_assignments(args.param)
        if args.all:
            if args.template:
                raise UsageError("give a TEMPLATE or --all, not both")
            templates = list(self.settings.templates().values())
            if not templates:
                raise OutputsError("stack output 'analysis_templates' is empty: nothing to run")
            return qparams.resolve_jobs(templates, given, spread=True)
        if not args.template:
            raise UsageError("give a TEMPLATE name or --all")
        return qparams.resolve_jobs([self.settings.template(args.template)], given, spread=False)

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
        also = f", and to member account{'s' if len(receivers) > 1 else ''} {', '.join(receivers)}" if receivers else ""
        self.err(f"membership {membership_id} in {region}; results to s3://{bucket}/{prefix}/<template>/ as {fmt}"
                 f"{also}")

        cleanrooms = self.client("cleanrooms")
        refused: list[Outcome] = []
        runnable = []
        blocked = self.access_check(cleanrooms, jobs, access_arns)
        for t, p in jobs:
            if t.name in blocked:
                self.err(f"[{t.name}] {blocked[t.name]}")
                refused.append(Outcome(t.name, "REFUSED", error_code="ACCESS_BUDGET", error_message=blocked[t.name]))
                continue
            if t.differential_privacy:
                try:
                    dp_budget.check(cleanrooms, membership_id, s.collaboration_id, t,
                                    args.allow_budget_exhaustion, lambda m, n=t.name: self.err(f"[{n}] {m}"))
                except dp_budget.BudgetError as exc:
                    self.err(f"[{t.name}] {exc}")
                    refused.append(Outcome(t.name, "REFUSED", error_code="PRIVACY_BUDGET", error_message=str(exc)))
                    continue
            runnable.append((t, p))

        def output_s3(template: Template) -> dict[str, str]:
            return {"resultFormat": fmt, "bucket": bucket, "keyPrefix": f"{prefix}/{template.name}"}

        runner = QueryRunner(cleanrooms, membership_id, output_s3, clock=self.clock, sleep=self.sleep,
                             deadline=self.clock() + args.timeout, retries=args.retries, backoff=self.backoff,
                             poll=self.poll, reporter=Reporter(self.stderr), receivers=receivers,
                             compute=lambda template: compute[template.name])
        saved: dict[str, list[str]] = {}
        failed: list[Outcome] = list(refused)

        def on_done(outcome: Outcome) -> None:
            if not self.report(outcome, saved):
                failed.append(outcome)

        try:
            if args.all:
                outcomes = run_all(runner, runnable, args.max_concurrency, on_done)
            else:
                outcomes = []
                for t, p in runnable:
                    outcomes.append(runner.execute(t, p))
                    on_done(outcomes[-1])
        except KeyboardInterrupt:
            self.err("interrupted: cancelling queries in flight")
            cancelled = runner.cancel_in_flight()
            self.err(f"cancelled {len(cancelled)} quer{'y' if len(cancelled) == 1 else 'ies'}; exiting")
            return EXIT_INTERRUPTED

        if args.all:
            self.summary(outcomes + refused, saved)
        if quicksight and self.published:
            self.refresh_quicksight(quicksight)
        return EXIT_QUERY_FAILED if failed else EXIT_OK

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

    def report(self, o: Outcome, saved: dict[str, list[str]]) -> bool:
        """Tell the user how one template ended; True when its result is on disk."""
        where = f"query {o.query_id}" if o.query_id else "query"
        if o.ok:
            delivered = ""
            if o.receivers:
                delivered = f"; also received by member account{'s' if len(o.receivers) > 1 else ''} " \
                            f"{', '.join(o.receivers)}"
            billed = f"; billed {o.billed:g} CRPU-hours" if o.billed is not None else ""
            self.err(f"[{o.template}] SUCCESS after {o.elapsed:.1f}s ({o.attempts} attempt"
                     f"{'s' if o.attempts != 1 else ''}) on {describe_compute(o.compute_used)}{billed}; "
                     f"result at {o.location or '(no S3 location reported)'}{delivered}")
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
            except (results.ResultsError, OSError, BotoCoreError) as exc:
                self.err(f"[{o.template}] query succeeded but the result could not be retrieved: {exc}")
                return False
            saved[o.template] = paths
            self.publish_for_dashboard(o, data)
            print(f"== {o.template} ({o.query_id}) ==", file=self.stdout)
            if data.header:
                print(results.format_table(data.header, data.rows, self.args.max_rows), file=self.stdout)
            else:
                print(data.note or "(empty result)", file=self.stdout)
            self.stdout.flush()
            self.err(f"[{o.template}] saved {', '.join(paths)}")
            return True
        if o.status == "FAILED":
            retry = (o.query.get("error") or {}).get("retry") or {}
            hint = "" if retry.get("retryable") is not False else " (not retryable: fix the cause, then run again)"
            self.err(f"[{o.template}] {where} FAILED after {o.attempts} attempt{'s' if o.attempts != 1 else ''}: "
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
        else:
            self.err(f"[{o.template}] {where} could not run: {o.error_code}: {o.error_message}")
        return False

    def summary(self, outcomes: list[Outcome], saved: dict[str, list[str]]) -> None:
        billed = any(o.billed is not None for o in outcomes)
        rows = []
        for o in outcomes:
            row = [o.template, o.status, o.query_id or "-", f"{o.elapsed:.1f}", str(o.attempts),
                   describe_compute(o.compute_used, short=True) if o.query_id else "-"]
            if billed:
                row.append(f"{o.billed:g}" if o.billed is not None else "-")
            rows.append(row + [", ".join(saved.get(o.template, [])) or (o.error_code or "-")])
        header = ["template", "status", "query id", "seconds", "attempts", "compute"]
        header += ["CRPU-hours"] if billed else []
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
        cleanrooms = self.client("cleanrooms")
        budgets = dp_budget.list_budgets(cleanrooms, self.settings.membership_id)
        if not budgets:
            print("no differential-privacy budgets in this collaboration", file=self.stdout)
        else:
            header, rows = dp_budget.budget_rows(budgets)
            print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        access = dp_budget.list_access_budgets(cleanrooms, self.settings.membership_id)
        print("", file=self.stdout)
        if not access:
            print("no access budgets in this collaboration (every table may be used without limit)", file=self.stdout)
            return EXIT_OK
        header, rows = dp_budget.access_rows(access, names)
        print("== access budgets (how many more times each table may be used) ==", file=self.stdout)
        print(results.format_table(header, rows, max_rows=len(rows)), file=self.stdout)
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
        rows = [[q["id"], q["status"], q["createTime"].isoformat(timespec="seconds"),
                 ",".join(r["analysisType"] for r in q.get("receiverConfigurations", [])) or "-"]
                for q in summaries]
        print(results.format_table([f"{noun} id", "status", "created", "analysis"], rows, max_rows=len(rows)),
              file=self.stdout)
        return EXIT_OK


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
    except KeyboardInterrupt:
        print("interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except ClientError as exc:
        err = exc.response.get("Error", {})
        print(f"error: {exc.operation_name} failed: {err.get('Code')}: {err.get('Message')}", file=stderr)
        return EXIT_QUERY_FAILED
    except BotoCoreError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_QUERY_FAILED

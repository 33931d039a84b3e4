"""The local path: `run --local`, `budget --local` and `job --local`, with no AWS and no Pulumi.

The stack files say what the collaboration is (model/collaboration.py), the
validator refuses what Clean Rooms would (model/validator), DuckDB (or Spark,
--engine spark: localroom/spark.py) runs the template under the tables' rules
(localroom/engine.py), a ledger on disk keeps
the privacy budget (localroom/ledger.py) and another the tables' access budgets
(localroom/access.py), and results land where the cloud path
puts them: OUT/<template>/<run id>.csv, with OUT/report.html beside them.
`job --local` runs a PySpark analysis template's script on Spark
(localroom/jobs.py) and saves OUT/<job>/<run id>/<result>.csv.
Same tables, same exit codes as the cloud path; imports neither pulumi nor boto3
(nor pyspark, unless a command needs Spark).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from queryrunner import EXIT_INTERRUPTED, EXIT_OK, EXIT_QUERY_FAILED, EXIT_USAGE, UsageError
from queryrunner import params as qparams
from queryrunner.display import format_table


class LocalError(Exception):
    """Something stops a local run after its input was accepted (exit 1)."""


def run(args, stdout, stderr) -> int:
    try:
        app = LocalApp(args, stdout, stderr)
        return getattr(app, args.command)()
    except UsageError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_USAGE
    except qparams.ParamError as exc:
        print("error: bad parameters, nothing was run:", file=stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=stderr)
        return EXIT_USAGE
    except LocalError as exc:
        print(f"error: {exc}", file=stderr)
        return EXIT_QUERY_FAILED
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept and nothing was charged for unfinished runs", file=stderr)
        return EXIT_INTERRUPTED


class LocalApp:
    def __init__(self, args, stdout, stderr):
        from model.errors import ConfigError

        self.args, self.stdout, self.stderr = args, stdout, stderr
        # cli.main has refused the AWS-only flags (cli.AWS_ONLY) already.
        self.stacks_dir = _stacks_dir(getattr(args, "stacks_dir", None))
        state = self.state = Path(args.state_dir or _default_state(self.stacks_dir))
        if state.exists() and not state.is_dir():
            raise UsageError(f"--state-dir {state} is a file; give a folder")
        self._check_engine()
        try:
            self._load()
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    def _check_engine(self) -> None:
        """--engine and --spark-master: refused by name where they mean nothing; PySpark present for spark."""
        engine, master = getattr(self.args, "engine", None), getattr(self.args, "spark_master", None)
        job = self.args.command == "job"  # a PySpark job always runs on Spark
        if not job:
            if self.args.command != "run" and (engine is not None or master is not None):
                given = [f for f, v in (("--engine", engine), ("--spark-master", master)) if v is not None]
                raise UsageError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to run "
                                 "(budget reads the ledger, no engine)")
            if master is not None and engine != "spark":
                raise UsageError("--spark-master applies only with --engine spark")
            if engine != "spark":
                return
        from localroom.spark import DEFAULT_MASTER, INSTALL_HINT, SparkUnavailable, check_master, require

        try:
            require()
        except SparkUnavailable as exc:
            raise UsageError(f"job --local needs PySpark 3.5, which is not installed: {INSTALL_HINT}" if job
                             else str(exc)) from None
        problem = check_master(master or DEFAULT_MASTER)
        if problem:
            raise UsageError(problem)

    def backend(self):
        """The engine for LocalCleanRoom: None for DuckDB (its default), else Spark, started here."""
        if getattr(self.args, "engine", None) != "spark" and self.args.command != "job":
            return None
        from localroom.spark import DEFAULT_MASTER, Spark, SparkStartFailed, probe

        master = self.args.spark_master or DEFAULT_MASTER
        try:
            probe(master)
            return Spark(master)
        except SparkStartFailed as exc:
            raise LocalError(str(exc)) from None

    def _load(self) -> None:
        from model.collaboration import from_stack_files
        from model.stackfiles import stack_from_reference, stack_names

        job = self.args.command == "job"
        root = self.stacks_dir
        stacks = stack_names(root)
        stack = self.args.stack or (_job_stack(stacks, root) if job else _analyst_stack(stacks, root))
        data_dir = Path(self.args.data_dir).resolve() if self.args.data_dir else None
        if data_dir is not None and not data_dir.is_dir():
            raise UsageError(f"--data-dir {self.args.data_dir} is not a folder")
        self.settings, self.collab = from_stack_files(stack, root=root, data_dir=data_dir)
        if job and not self.settings.jobs:
            raise UsageError(f"stack '{stack}' declares no PySpark jobs (`jobs` in Pulumi.{stack}.yaml); stacks that "
                             f"do: {_job_stacks(stacks, root) or 'none'} (--stack)")
        # `budget` reads the collaboration's budget from any member's stack (a producer watches its burn).
        if not job and self.args.command not in ("budget", "audience") and self.settings.analyst is None:
            raise UsageError(f"stack '{stack}' does not have the analyst role; the analyst's stack is "
                             f"'{_analyst_stack(stacks, root)}' (--stack)")
        self.stack = stack
        # The access budgets are the collaboration's, not one member's: they are kept beside the analyst's
        # privacy budget ledger, whichever member's stack runs (a job runner need not be the analyst).
        self.analyst_stack = stack if self.settings.analyst is not None else next(
            stack_from_reference(p.stack) for p in self.settings.partners if p.is_analyst)

    def err(self, message: str) -> None:
        print(message, file=self.stderr, flush=True)

    # -- budget -------------------------------------------------------------
    def ledger(self):
        from localroom.ledger import Ledger
        from localroom.privacy import calibrate

        spec = self.collab.budget
        if spec is None:
            return None
        # One ledger per collaboration, kept beside the analyst's state: the member that spends the budget.
        path = self.state / self.analyst_stack / "privacy-budget.json"
        return Ledger(path, self.analyst_stack, calibrate(spec.epsilon, spec.users_noise_per_query),
                      spec.auto_refresh)

    def access(self):
        """The tables' access budgets (localroom/access.py), beside the analyst's privacy budget ledger."""
        from localroom.access import FILE_NAME, AccessLedger

        budgets = {alias: (table.owner.name, table.access_budget) for alias, table in self.collab.tables.items()
                   if table.access_budget is not None}
        return AccessLedger(self.state / self.analyst_stack / FILE_NAME, self.analyst_stack, budgets)

    def budget(self) -> int:
        """What the cloud `budget` prints: the privacy budget, then each table's access budget."""
        from localroom.ledger import LedgerError
        from model.budget import budget_rows
        from queryrunner.budget import AccessBudget, access_rows

        ledger = self.ledger()
        try:
            if ledger is None:
                print("no differential-privacy budgets in this collaboration", file=self.stdout)
            else:
                header, rows = budget_rows([ledger.budget()])
                print(format_table(header, rows, max_rows=len(rows)), file=self.stdout)
                if getattr(self.args, "forecast", False):
                    self.forecast(ledger)
            access = self.access().statuses()
        except LedgerError as exc:
            raise LocalError(str(exc)) from None
        print("", file=self.stdout)
        if not access:
            print("no access budgets in this collaboration (every table may be used without limit)", file=self.stdout)
            return EXIT_OK
        # The cloud runner's table: AccessBudget in botocore's shape, labelled by association name.
        header, rows = access_rows([AccessBudget(a.table, a.aggregate_remaining, a.details) for a in access], {})
        print("== access budgets (how many more times each table may be used) ==", file=self.stdout)
        print(format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        return EXIT_OK

    def forecast(self, ledger) -> None:
        """`budget --forecast`: each DP template's cost per run and the runs left; this period's burn rate."""
        from localroom.ledger import period_bounds
        from model.budget import Burn, forecast_rows
        from model.validator import validate

        charges = [c for c in ledger.charges() if not c.abandoned()]
        remaining = max(0.0, 1.0 - ledger.spent(charges))
        items = []
        for template in self.settings.analyst.queries if self.settings.analyst else ():
            result = validate(template, self.collab)
            if result.refusals:
                continue  # `run` says why
            plan = self.plan(template, result.analysis)
            if not isinstance(plan, Exception) and plan.private is not None:
                items.append((template.name, ledger.cost(plan.usage)))
        print("", file=self.stdout)
        print("== forecast (runs of each differentially private template the budget still pays for) ==",
              file=self.stdout)
        if not items:
            print("no template of this stack uses differential privacy", file=self.stdout)
        else:
            header, rows = forecast_rows(items, remaining)
            print(format_table(header, rows, max_rows=len(rows)), file=self.stdout)
        now = ledger.now()
        start = ledger.period_start()
        period = [c for c in charges if start is None or c.at >= start]
        since = start if start is not None else min((c.at for c in period), default=None)
        refresh = period_bounds("CALENDAR_MONTH", now)[1] if ledger.auto_refresh == "CALENDAR_MONTH" else None
        print(Burn(ledger.spent(charges), remaining, since, now, refresh).describe(), file=self.stdout)

    def audit(self) -> int:
        """The compliance report of the local runs (queryrunner/audit.py): run records and the ledger."""
        import datetime as dt

        from localroom.ledger import LedgerError
        from queryrunner import audit

        now = dt.datetime.now(dt.timezone.utc)
        since = audit.since_from(self.args.since, now)
        ledger = self.ledger()
        try:
            charges = ledger.charges() if ledger is not None else []
        except LedgerError as exc:
            raise LocalError(str(exc)) from None
        tables = {q.name: tuple(q.tables) for q in self.settings.analyst.queries}
        tables.update({j.name: tuple(j.tables) for j in self.settings.jobs})
        access = {alias for alias, table in self.collab.tables.items() if table.access_budget is not None}
        out = Path(self.args.out)
        entries = audit.local_entries(out, charges, who=self.settings.org.name, since=since, template_tables=tables,
                                      access_tables=access)
        paths = audit.write(entries, out, title=f"Local clean room audit: {self.analyst_stack}", since=since, now=now,
                            with_html=self.args.html, budget_label="share of the privacy budget spent (%)")
        rows = audit.summary_rows(entries)
        header = ["template", "runs", "succeeded", "failed", "DP aggregations", "budget", "access uses"]
        print(format_table(header, rows, max_rows=len(rows)) if rows else
              f"no local runs since {since.isoformat(timespec='seconds')}", file=self.stdout)
        self.err(f"audit written: {', '.join(str(p) for p in paths)}")
        return EXIT_OK

    def audience(self) -> int:
        """`audience generate --local`: the seed against a partner's training data, here (localroom/lookalike.py)."""
        import datetime as dt

        from localroom import lookalike
        from localroom.ledger import write_atomically
        from localroom.report import write_report
        from model.collaboration import from_stack_files
        from model.stackfiles import stack_names
        from queryrunner import audience as cloud_audience

        args = self.args
        if not cloud_audience._NAME.match(args.name or ""):
            raise UsageError(f"audience generate NAME: {args.name!r} must be 1-63 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        if not args.seed_file:
            raise UsageError("audience generate --local needs --seed-file FILE (JSON lines of {\"user_id\": ...})")
        providers = [(stack, settings) for stack in stack_names(self.stacks_dir)
                     for settings, _ in [from_stack_files(stack, root=self.stacks_dir)] if settings.training]
        if not providers:
            raise UsageError("no stack file declares trainingData: there is no lookalike model to rehearse "
                             "(docs/clean-rooms-ml.md)")
        if len(providers) > 1:
            raise UsageError(f"several stacks declare trainingData ({', '.join(s for s, _ in providers)}); the local "
                             "rehearsal takes one")
        stack, provider = providers[0]
        spec = provider.training
        configured = spec.lookalike
        model = cloud_audience.Model(provider.org.name, "local", configured.min_matching_seed_size if configured else 25,
                                     configured.size_type if configured else "ABSOLUTE",
                                     configured.size_bins if configured else (50, 100, 200))
        chosen = cloud_audience.check_size(cloud_audience.parse_size(args.size), model) if args.size else None
        body = cloud_audience.read_seed(Path(args.seed_file), model)
        seed_ids = {json.loads(line)["user_id"] for line in body.decode("utf-8").splitlines() if line.strip()}
        columns = {kind: name for name, kind in spec.schema}
        categorical = [name for name, kind in spec.schema if kind == "CATEGORICAL_FEATURE"]
        users, documents = lookalike.interactions(spec.dataset.data_path, columns["USER_ID"], columns["ITEM_ID"],
                                                  categorical)
        matched = len(seed_ids & set(users))
        if matched < 4:
            raise LocalError(f"only {matched} of the seed's {len(seed_ids):,} users are in {provider.org.name}'s "
                             f"training data {spec.dataset.name}: too few to learn from")
        bins = [chosen["value"]] if chosen else list(model.size_bins)
        sizes = lookalike.segment_sizes(model.size_type, bins, len(users))
        seed = args.seed or 0
        result = lookalike.rehearse(users, lookalike.embed(documents, seed), seed_ids, sizes, seed)
        out, run_id = Path(args.out), str(uuid.uuid4())
        folder = out / args.name / run_id
        folder.mkdir(parents=True, exist_ok=True)
        for label, members in result.segments.items():
            (folder / f"segment-{label.replace('%', 'pct')}.csv").write_text(
                "user_id\n" + "".join(f"{u}\n" for u in members), encoding="utf-8")
        record = {"audience": args.name, "run_id": run_id, "provider": provider.org.name,
                  "training_data": spec.dataset.name, "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
                  "seed_users": result.seed_given, "seed_users_in_training_data": result.seed_matched,
                  "training_users": result.users, "recall": result.recall, "random_recall": lookalike.RECALL_TOP,
                  "sizes": [{"size": label, "users": n, "relevance": r}
                            for (label, n), r in zip(result.sizes, result.relevance)],
                  "segments": str(folder), "random_seed": seed}
        write_atomically(out / args.name / f"{run_id}.json", record)
        report = write_report(out)
        rows = [[label, str(n), f"{r:.3f}"] for (label, n), r in zip(result.sizes, result.relevance)]
        print(format_table(["segment size", "users", "relevance"], rows, max_rows=len(rows)), file=self.stdout)
        print(f"recall {result.recall:.2f} (a random model scores about {lookalike.RECALL_TOP:.2f}); "
              f"{result.seed_matched:,} of {result.seed_given:,} seed users are in {provider.org.name}'s training "
              "data; no seed user is in any segment", file=self.stdout)
        self.err(f"segments in {folder}; report {report}")
        return EXIT_OK

    # -- run ----------------------------------------------------------------
    def jobs(self) -> list:
        args = self.args
        templates = {q.name: q for q in self.settings.analyst.queries}
        given = qparams.parse_assignments(args.param)
        if args.all and args.template:
            raise UsageError("give a TEMPLATE or --all, not both")
        if not args.all and not args.template:
            raise UsageError("give a TEMPLATE name or --all")
        if args.template and args.template not in templates:
            raise UsageError(f"unknown analysis template {args.template!r}; the stack declares: "
                             f"{', '.join(sorted(templates))}")
        chosen = list(templates.values()) if args.all else [templates[args.template]]
        window = getattr(args, "window", None)
        windowed = qparams.windowed(chosen)  # with --all: the templates that declare a window get it
        now = self.wall()
        given = qparams.with_window(given, window, windowed if args.all and windowed else chosen, now)
        qparams.check_retention(window, now, self.retention(windowed or chosen), "nothing was run and nothing charged",
                                given)
        return qparams.resolve_jobs(chosen, given, spread=args.all)

    def wall(self):
        """Now (UTC): the moment --window's last whole window ends before."""
        import datetime as dt

        return dt.datetime.now(dt.timezone.utc)

    def retention(self, templates) -> dict[str, dict[str, tuple[str, str]]]:
        """{template: {table: (its retention, where declared)}} for the tables with one (schema.yaml retention)."""
        from model.templates import shown_path

        found = {}
        for template in templates:
            tables = {alias: self.collab.tables[alias].dataset for alias in template.tables
                      if alias in self.collab.tables}
            found[template.name] = {alias: (d.retention, f"retention in {shown_path(d.directory / 'schema.yaml')}")
                                    for alias, d in tables.items() if d.retention}
        return found

    def run(self) -> int:
        args = self.args
        if args.seed is not None and args.seed < 0:
            raise UsageError("--seed must be >= 0")
        jobs = self.jobs()
        early = self.hash_early(jobs)  # before the engine's imports: the hashing runs beside them
        from localroom.engine import DuckDB, LocalCleanRoom, PlanRefusal
        from localroom.journal import INTERRUPTED
        from model.errors import ConfigError
        from model.templates import shown_path
        from model.validator import validate

        out = Path(args.out)
        journal = self.journal(jobs)
        if journal.note:
            self.err(journal.note)
        earlier = {name: entry for name, entry in journal.done.items()}
        # Every template is checked before anything runs: a refusal is an input error, nothing is run.
        checked, refusals = [], []
        for template, values in [(t, v) for t, v in jobs if t.name not in earlier]:
            result = validate(template, self.collab)
            refusals += [str(r) for r in result.refusals]
            for warning in result.warnings:
                self.err(f"warning: {warning}")
            checked.append((template, values, result.analysis))
        if refusals:
            self.err("error: Clean Rooms would refuse these templates; nothing was run:")
            for line in refusals:
                self.err(f"  {line}")
            return EXIT_USAGE
        # What each run will release, and the bounds the noise needs, decided from the template, the
        # schemas and the rules alone: a missing declaration is an input error, nothing is run.
        planned, missing = [], []
        for template, values, analysis in checked:
            plan = self.plan(template, analysis)
            if isinstance(plan, PlanRefusal):
                missing.append(f"{shown_path(template.path)}: {plan}")
            planned.append((template, values, analysis, plan))
        if missing:
            self.err("error: the local clean room cannot add calibrated noise to these templates; nothing was run:")
            for line in missing:
                self.err(f"  {line}")
            return EXIT_USAGE
        backend = self.backend()
        engine = f"; engine Spark {backend.version} ({backend.master})" if backend is not None else ""
        self.err(f"local clean room: stack {self.stack}, tables {sorted(self.collab.tables)}{engine}; "
                 f"results to {out}/<template>/")
        # DuckDB keeps each validated, typed table in STATE/cache/ for the next run (localroom/cache.py).
        room = LocalCleanRoom(self.collab, backend if backend is not None else DuckDB(self.state / "cache", early))
        # While DuckDB reads the files (it releases the GIL), import what the runs need afterwards.
        private = any(not isinstance(p, Exception) and p.private for *_, p in planned)
        threading.Thread(target=_later_imports, args=(private, room.dialect), daemon=True).start()
        try:  # every data file is read and checked against its schema before the first run
            room.load({alias for _, _, analysis in checked for alias in analysis.tables})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        self.warn_access([(template.name, analysis.tables) for template, _, analysis in checked])
        self.prefetch(room, planned)
        outcomes = [{"template": name, "status": "DONE EARLIER", "run_id": entry["run_id"], "path": entry["path"]}
                    for name, entry in earlier.items()]
        journal.begin()
        self._journal = journal  # save() records each result just before its file appears
        try:
            for template, values, analysis, plan in planned:
                outcomes.append(self.run_one(room, template, values, analysis, plan, out))
        except KeyboardInterrupt:
            journal.end(INTERRUPTED)
            raise
        journal.end()
        room.flush()  # what depends on the data alone, for the next run over it (localroom/cache.Derived)
        order = [t.name for t, _ in jobs]
        outcomes.sort(key=lambda o: order.index(o["template"]))
        if args.all:
            rows = [[o["template"], o["status"], o.get("run_id", "-"), f"{o.get('seconds', 0):.1f}",
                     o.get("path") or o.get("error", "-")] for o in outcomes]
            print("== summary ==", file=self.stdout)
            print(format_table(["template", "status", "run id", "seconds", "result / error"], rows,
                               max_rows=len(rows)), file=self.stdout)
        if any(o["status"] == "SUCCESS" for o in outcomes):
            from localroom.report import write_report

            report = write_report(out)
            self.err(f"report: {report}")
        return EXIT_OK if all(o["status"] in ("SUCCESS", "DONE EARLIER") for o in outcomes) else EXIT_QUERY_FAILED

    def hash_early(self, jobs):
        """Start hashing the data files the run's templates read, on the core the start-up leaves idle
        (localroom/digests.py): the load cache needs each file's SHA-256, and taken beside DuckDB's load
        it slows the load. None on Spark, which keeps no load cache."""
        if getattr(self.args, "engine", None) == "spark":
            return None
        from localroom.digests import Early

        tables = {alias for template, _ in jobs for alias in template.tables if alias in self.collab.tables}
        return Early([self.collab.tables[alias].dataset.data_path for alias in sorted(tables)
                      if not self.collab.tables[alias].dataset.partitioned_by], self.state / "cache")

    def prefetch(self, room, planned) -> None:
        """The exact phase-1 parts of the DP templates that join the same tables the same way, one join for
        all of them (localroom/batch.py); each template still runs, is noised and charged on its own."""
        from localroom.batch import prefetch

        runs = [(plan, _typed(template, values)) for template, values, _, plan in planned
                if not isinstance(plan, Exception) and plan.private]
        if len(runs) > 1:
            prefetch(room, runs)

    def journal(self, jobs):
        """This run's journal (localroom/journal.py): what an unfinished earlier run of it already released."""
        from localroom.journal import Journal, JournalError

        scope = "all" if self.args.all else jobs[0][0].name
        identity = {"templates": {t.name: v for t, v in jobs},
                    "data_dir": str(Path(self.args.data_dir).resolve()) if self.args.data_dir else None}
        try:
            return Journal.open(self.state, self.stack, scope, identity, bool(getattr(self.args, "resume", False)))
        except JournalError as exc:
            raise UsageError(str(exc)) from None

    def warn_access(self, reads: list[tuple[str, object]]) -> None:
        """Before `run --all`: a table read by more templates than it has uses left (the later ones are refused)."""
        if len(reads) < 2:
            return
        from localroom.ledger import LedgerError

        try:
            statuses = {s.table: s for s in self.access().statuses()}
        except LedgerError:
            return  # each run reports it
        for table, status in statuses.items():
            names = [name for name, tables in reads if table in tables]
            if not status.exhausted and len(names) > status.aggregate_remaining:
                left = status.aggregate_remaining
                self.err(f"warning: table {table!r} can be used {left} more time{'s' if left != 1 else ''} but "
                         f"{len(names)} templates read it ({', '.join(names)}); they run in this order and the ones "
                         "past its access budget are refused")

    def plan(self, template, analysis):
        """The template's Plan; a PlanRefusal (missing declaration) or LocalLimitation is returned, not raised."""
        from localroom.engine import LocalLimitation, Plan, PlanRefusal

        ledger = self.ledger()
        dialect = "spark" if getattr(self.args, "engine", None) == "spark" else "duckdb"
        try:
            return Plan(analysis, dialect, ledger.calibration if ledger else None)
        except (PlanRefusal, LocalLimitation) as exc:
            return exc

    def run_one(self, room, template, values: dict[str, str], analysis, plan, out: Path) -> dict:
        from localroom.access import AccessExhausted
        from localroom.engine import LocalLimitation, RunFailed
        from localroom.ledger import FAILED, RELEASED, BudgetRefused, LedgerError
        from localroom.privacy import OpenDPNoise, SeededNoise

        name = template.name
        started = time.monotonic()
        run_id = str(uuid.uuid4())
        ledger, reserved = self.ledger(), False
        try:
            if isinstance(plan, Exception):
                raise plan
            usage = plan.usage
            blocked = self.access().blocked(analysis.tables)
            if blocked:
                raise _Refused(f"refusing to run {name!r}: {blocked[0].refusal()}", "ACCESS_BUDGET")
            if plan.private is not None:
                self.err(f"[{name}] {ledger.impact(usage).describe()}")
                self.err(f"[{name}] {describe_private(plan, analysis)}")
                try:  # charged before any row is read: the check and the charge under one lock
                    ledger.reserve(name, run_id, usage, allow_exhaustion=self.args.allow_budget_exhaustion,
                                   result=out / name / f"{run_id}.csv")
                except BudgetRefused as exc:
                    hint = " Pass --allow-budget-exhaustion to run it anyway." if exc.impact.affordable else ""
                    raise _Refused(f"refusing to run {name!r}: it would exhaust the remaining privacy budget "
                                   f"({exc.impact.describe()}).{hint}") from None
                reserved = True
            noise = SeededNoise(_seed(self.args.seed, name)) if self.args.seed is not None else OpenDPNoise()
            result = room.execute(plan, _typed(template, values), noise)
        except _Refused as exc:
            self.err(f"[{name}] {exc}")
            return {"template": name, "status": "REFUSED", "error": exc.code}
        except RunFailed as exc:
            if reserved and exc.read_data:  # whether a DP run fails can depend on the data: the charge stands
                ledger.settle(run_id, FAILED)
                exc = f"{exc}; the run was charged to the privacy budget"
            elif reserved:  # refused before any row was read
                ledger.uncharge(run_id)
            self.err(f"[{name}] FAILED: {exc}")
            return {"template": name, "status": "FAILED", "error": "RunFailed"}
        except (LocalLimitation, LocalError, LedgerError) as exc:
            if reserved:
                ledger.uncharge(run_id)
            self.err(f"[{name}] FAILED: {exc}")
            return {"template": name, "status": "FAILED", "error": type(exc).__name__}
        except BaseException:
            if reserved:  # interrupted before anything was shown: nothing was released
                ledger.uncharge(run_id)
            raise
        seconds = time.monotonic() - started
        try:
            path = self.save(template, values, result, run_id, out, seconds, analysis.tables)
        except AccessExhausted as exc:  # a concurrent run used the last use after this run's check
            if reserved:
                ledger.uncharge(run_id)
            self.err(f"[{name}] refusing to keep the result of {name!r}, nothing was saved or charged: {exc}")
            return {"template": name, "status": "REFUSED", "error": "ACCESS_BUDGET"}
        except (OSError, LedgerError) as exc:
            if reserved:
                ledger.uncharge(run_id)
            self.err(f"[{name}] the result could not be saved, nothing was charged: {exc}")
            return {"template": name, "status": "FAILED", "error": "SAVE"}
        if reserved:
            ledger.settle(run_id, RELEASED)
        enforcement = result.enforcement
        notes = []
        if enforcement.thresholds:
            kind = " (by noisy counts)" if plan.private is not None else ""
            notes.append(f"{enforcement.suppressed_rows} row(s) below the aggregation threshold suppressed{kind}")
        if enforcement.noise:
            notes.append("noise " + ", ".join(f"{n.column} {n.aggregate} +-{1.96 * n.sigma:.3g}"
                                              for n in enforcement.noise if n.threshold is None))
        if enforcement.seeded:
            notes.append("seeded noise: reproducible, not a private release")
        self.err(f"[{name}] SUCCESS after {seconds:.1f}s; saved {path}" + (f" ({'; '.join(notes)})" if notes else ""))
        self.print_table(f"== {name} ({run_id}) ==", result.table)
        return {"template": name, "status": "SUCCESS", "run_id": run_id, "seconds": seconds, "path": str(path)}

    def print_table(self, title: str, table) -> None:
        """A result on stdout: at most --max-rows rows, as the cloud path prints it (with errors: noisy_table)."""
        print(title, file=self.stdout)
        if any(name.endswith("_ci95_low") for name in table.column_names):
            print(noisy_table(table, self.args.max_rows), file=self.stdout, flush=True)
            return
        header = table.column_names
        from localroom.report import cell

        rows = [[cell(v) for v in row.values()] for row in table.slice(0, self.args.max_rows).to_pylist()]
        text = format_table(header, rows, self.args.max_rows)
        if table.num_rows > self.args.max_rows:  # format_table only saw the rows it prints
            text = text.rsplit("\n", 1)[0] + (f"\n... {table.num_rows - self.args.max_rows} more rows "
                                               f"(see the saved file)\n({table.num_rows} rows)")
        print(text, file=self.stdout, flush=True)

    def save(self, template, values, result, run_id: str, out: Path, seconds: float, tables=()) -> Path:
        """Write the CSV and its run record; charge the access budgets; nothing is left half-done on failure.

        The access budgets are checked again under their lock (AccessExhausted: a concurrent run took the
        last use); a failure after the charge takes it back. The privacy budget was charged before the run.
        """
        folder = out / template.name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{run_id}.csv"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{run_id}", suffix=".csv.tmp")
        os.close(fd)
        access = None
        try:
            _write_csv(Path(tmp), result.table)  # as the cloud path saves results
            record = _record(template, values, result, run_id, self.stack, seconds, self.ledger())
            (folder / f".{run_id}.json.tmp").write_text(json.dumps(record, indent=2), encoding="utf-8")
            access = self.access()
            if not access.charge(tables, run_id, template.name):
                access = None
            if getattr(self, "_journal", None) is not None:  # done once the file exists: a kill after this is safe
                self._journal.released(template.name, run_id, target)
            os.replace(tmp, target)
            os.replace(folder / f".{run_id}.json.tmp", folder / f"{run_id}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            (folder / f".{run_id}.json.tmp").unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            if access is not None:
                access.uncharge(run_id)
            raise
        return target


    # -- job ----------------------------------------------------------------
    def job(self) -> int:
        """`job NAME --local`: a PySpark analysis template's script on this machine's Spark."""
        from localroom.access import AccessExhausted
        from localroom.jobs import JobFailed, lint, run_job, shown
        from localroom.ledger import LedgerError
        from model.errors import ConfigError
        from model.jobs import check_jobs

        args = self.args
        out = Path(args.out)
        jobs = {j.name: j for j in self.settings.jobs}
        if args.name not in jobs:
            raise UsageError(f"unknown job {args.name!r}; stack {self.stack} declares: {', '.join(sorted(jobs))}")
        job = jobs[args.name]
        # What Clean Rooms would refuse (model/jobs.check_jobs). A partner's rule that does not let the job
        # run is only a warning at preview (the partner may still change it); here every rule is known.
        try:
            refusals = check_jobs((job,), self.collab, self.settings.org)
        except ConfigError as exc:
            refusals = [exc.message]
        if refusals:
            self.err(f"error: Clean Rooms would refuse job {job.name!r}; nothing was run:")
            for line in refusals:
                self.err(f"  {line}")
            return EXIT_USAGE
        values = qparams.resolve(job.name, job.parameters, qparams.parse_assignments(args.param))
        for warning in lint(job.script):
            self.err(f"warning: {warning}")
        tables = {alias: self.collab.tables[alias] for alias in job.tables}
        access = self.access()
        try:
            blocked = access.blocked(tables)
        except LedgerError as exc:
            raise LocalError(str(exc)) from None
        if blocked:
            self.err(f"[{job.name}] refusing to run {job.name!r}: {blocked[0].refusal()}")
            return EXIT_QUERY_FAILED
        backend = self.backend()
        self.err(f"local clean room: stack {self.stack}, job {job.name} ({shown(job.script)}) over "
                 f"{sorted(tables)}; engine Spark {backend.version} ({backend.master}); results to "
                 f"{out}/{job.name}/<run id>/")
        started = time.monotonic()
        try:
            results = run_job(backend, job.script, tables, values)
        except ConfigError as exc:  # a data file that does not match its schema
            raise UsageError(str(exc)) from None
        except JobFailed as exc:
            self.err(f"[{job.name}] FAILED: {exc}")
            return EXIT_QUERY_FAILED
        seconds = time.monotonic() - started
        run_id = str(uuid.uuid4())
        try:
            folder = self.save_job(job, values, results, run_id, out, seconds, access)
        except AccessExhausted as exc:
            self.err(f"[{job.name}] refusing to keep the results of {job.name!r}, nothing was saved or charged: {exc}")
            return EXIT_QUERY_FAILED
        except (OSError, LedgerError) as exc:
            self.err(f"[{job.name}] the results could not be saved, nothing was charged: {exc}")
            return EXIT_QUERY_FAILED
        self.err(f"[{job.name}] SUCCESS after {seconds:.1f}s; saved "
                 f"{', '.join(str(folder / f'{name}.csv') for name in results)}")
        for name, table in results.items():
            self.print_table(f"== {job.name}: {name} (run {run_id}) ==", table)
        from localroom.report import write_report

        self.err(f"report: {write_report(out)}")
        return EXIT_OK

    def save_job(self, job, values: dict[str, str], results: dict, run_id: str, out: Path, seconds: float,
                 access) -> Path:
        """OUT/<job>/<run id>/<result>.csv (the cloud `job` layout) and OUT/<job>/<run id>.json; charge the
        tables' access budgets. All or nothing: the folder appears by one rename, after the charge."""
        import shutil
        from datetime import datetime, timezone

        from localroom.jobs import shown

        parent = out / job.name
        parent.mkdir(parents=True, exist_ok=True)
        folder, record_path = parent / run_id, parent / f"{run_id}.json"
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{run_id}", suffix=".tmp"))
        tmp_record = parent / f".{run_id}.json.tmp"
        charged = False
        try:
            for name, table in results.items():
                _write_csv(tmp / f"{name}.csv", table)
            record = {"run_id": run_id, "job": job.name, "description": job.description, "stack": self.stack,
                      "script": shown(job.script), "sha256": job.sha256,
                      "finished": datetime.now(timezone.utc).isoformat(), "seconds": round(seconds, 3),
                      "parameters": values, "tables": list(job.tables),
                      "results": [{"name": name, "csv": f"{run_id}/{name}.csv", "rows": table.num_rows,
                                   "columns": table.column_names} for name, table in results.items()]}
            tmp_record.write_text(json.dumps(record, indent=2), encoding="utf-8")
            charged = bool(access.charge(job.tables, run_id, f"job:{job.name}"))
            os.replace(tmp, folder)
            os.replace(tmp_record, record_path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            tmp_record.unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            if charged:
                access.uncharge(run_id)
            raise
        return folder


class _Refused(Exception):
    def __init__(self, message: str, code: str = "PRIVACY_BUDGET"):
        super().__init__(message)
        self.code = code


def _write_csv(path: Path, table) -> None:
    """A pyarrow table as CSV with a header, as the cloud path saves results."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.column_names)
        for batch in table.to_batches():
            writer.writerows(zip(*(column.to_pylist() for column in batch.columns)))


def _stacks_dir(given: str | None) -> Path:
    """--stacks-dir resolved (default: the project folder); one line naming the flag when it holds no stack file."""
    from model.stackfiles import ROOT, stack_names

    if given is None:
        return ROOT
    path = Path(given).resolve()
    if not path.is_dir():
        raise UsageError(f"--stacks-dir {given} is not a folder")
    if not stack_names(path):
        raise UsageError(f"--stacks-dir {given} has no Pulumi.<stack>.yaml")
    return path


def _default_state(stacks_dir: Path) -> Path:
    """.localroom, or for another folder of stack files .localroom/stacks-<its path>: its stacks may share names
    with the project's (org-a), and their ledgers must not be one."""
    from model.stackfiles import ROOT

    if stacks_dir == ROOT:
        return Path(".localroom")
    name = stacks_dir.relative_to(ROOT).as_posix() if stacks_dir.is_relative_to(ROOT) else stacks_dir.as_posix()
    return Path(".localroom") / ("stacks-" + "-".join(part for part in name.split("/") if part))


def _analyst_stack(stacks: list[str], root: Path | None = None) -> str:
    """The one stack file whose roles include the analyst."""
    from model.config import ANALYST
    from model.stackfiles import ROOT, load_stack_config, project_name

    project = project_name()
    found = [s for s in stacks if ANALYST in (load_stack_config(s, root or ROOT).get(f"{project}:roles") or [])]
    if len(found) != 1:
        raise UsageError(f"give the analyst's stack with --stack; stack files with the analyst role: {found or 'none'}")
    return found[0]


def _job_stacks(stacks: list[str], root: Path | None = None) -> list[str]:
    """The stack files that declare PySpark jobs (`jobs`)."""
    from model.stackfiles import ROOT, load_stack_config, project_name

    project = project_name()
    return [s for s in stacks if load_stack_config(s, root or ROOT).get(f"{project}:jobs")]


def _job_stack(stacks: list[str], root: Path | None = None) -> str:
    """The one stack file that declares PySpark jobs: the member that runs them."""
    found = _job_stacks(stacks, root)
    if len(found) != 1:
        raise UsageError(f"give the stack that runs the job with --stack; stack files that declare jobs: "
                         f"{found or 'none'}")
    return found[0]


def _typed(template, values: dict[str, str]) -> dict:
    """The template's parameter values as the engines bind them (model.parameters.to_python)."""
    from model.parameters import to_python

    return {p.name: to_python(p.type, values[p.name]) for p in template.parameters}


def _seed(seed: int, template: str) -> int:
    """One independent seed per template, whatever order --all runs them in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{template}".encode()).digest()[:8], "big")


def _later_imports(private: bool, dialect: str) -> None:
    """Import the modules a run uses after the data is loaded (noise, the terminal table, the report, and
    sqlglot's writer of the engine's dialect, which sqlglot imports at its first use: 0.03 s)."""
    try:
        import localroom.report  # noqa: F401
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401
        from sqlglot import exp

        exp.select("1").sql(dialect=dialect)

        if private:
            from localroom.privacy import _opendp

            _opendp()
    except Exception:  # an import that fails here fails again, with its message, where it is used
        pass


def noisy_table(table, max_rows: int) -> str:
    """A DP result for the terminal (rich): each noisy value with its 95% interval, the error columns folded in.

    The CSV keeps them as columns (<name>_noise_sd, _ci95_low, _ci95_high); here ``1712.95 [896.95, 2400.40]``.
    """
    import io

    import pyarrow as pa
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from localroom.report import cell

    names = table.column_names
    noisy = [n for n in names if f"{n}_ci95_low" in names]
    hidden = {f"{n}{suffix}" for n in noisy for suffix in ("_noise_sd", "_ci95_low", "_ci95_high")}
    shown = [n for n in names if n not in hidden]
    grid = Table(box=box.ASCII2, show_edge=False, pad_edge=False)
    numeric = {n for n in shown if not (pa.types.is_string(table.schema.field(n).type)
                                        or pa.types.is_large_string(table.schema.field(n).type))}
    for name in shown:
        grid.add_column(f"{name} (95% interval)" if name in noisy else name,
                        justify="right" if name in numeric else "left", no_wrap=True)
    for row in table.slice(0, max_rows).to_pylist():
        grid.add_row(*[f"{cell(row[n])} [{cell(row[n + '_ci95_low'])}, {cell(row[n + '_ci95_high'])}]"
                       if n in noisy else cell(row[n]) for n in shown])
    buffer = io.StringIO()
    Console(file=buffer, width=1000, color_system=None, force_terminal=False, highlight=False).print(grid)
    lines = [line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines()]
    if table.num_rows > max_rows:
        lines.append(f"... {table.num_rows - max_rows} more rows (see the saved file)")
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}; intervals: noise only, from the "
                 "calibration and the noisy values, at no privacy cost)")
    return "\n".join(lines)


def describe_private(plan, analysis) -> str:
    """What a DP run releases besides the template's aggregates, and where its groups come from (no data)."""
    private = plan.private
    owners = {alias: analysis.tables[alias].owner.name for alias in plan.protected}
    alias = next(iter(plan.protected))
    parts = [f"each user of {alias} ({owners[alias]}) adds at most {private.limit} row(s) to the aggregation "
             "(userContributionLimit)"]
    extra = [f"the aggregation threshold of {a}" for a in private.identities]
    if private.keys is not None:
        parts.append(f"groups: the {len(private.keys)} combinations of the declared values of "
                     f"{', '.join(g.sql(dialect='spark') for g in private.groups)}")
    elif private.selection is not None:
        extra.append("choosing the groups")
        parts.append(f"groups: those with more than about {private.selection.threshold} users after noise (no "
                     f"declared values for {', '.join(g.sql(dialect='spark') for g in private.groups)})")
    if extra:
        parts.append(f"1 COUNT_DISTINCT each for {' and '.join(extra)}")
    return "; ".join(parts)


def _record(template, values, result, run_id: str, stack: str, seconds: float, ledger=None) -> dict:
    from datetime import datetime, timezone

    e = result.enforcement
    return {"run_id": run_id, "template": template.name, "description": template.description, "stack": stack,
            "finished": datetime.now(timezone.utc).isoformat(), "seconds": round(seconds, 3),
            "parameters": values, "rows": result.table.num_rows, "columns": result.table.column_names,
            "thresholds": e.thresholds, "threshold_exempt": e.threshold_exempt,
            "suppressed_rows": e.suppressed_rows, "user_contribution_limit": e.user_contribution_limit,
            "seeded": e.seeded, "usage": dict(e.usage), "guarantee": _guarantee(ledger, e.usage),
            "noise": [{"column": n.column, "aggregate": n.aggregate, "sigma": n.sigma, "sensitivity": n.sensitivity,
                       **({"threshold": n.threshold} if n.threshold is not None else {})} for n in e.noise]}


def _guarantee(ledger, usage) -> dict | None:
    """The (epsilon, delta) this one release guarantees on its own (localroom/privacy.guarantee)."""
    if ledger is None or not usage:
        return None
    from localroom.privacy import guarantee

    rho = sum(ledger.calibration.rho(kind) * n for kind, n in usage.items())
    epsilon, delta = guarantee(ledger.calibration, rho)
    return {"epsilon": round(epsilon, 6), "delta": delta, "rho": rho}

"""The local path: `run --local` and `budget --local`, with no AWS and no Pulumi.

The stack files say what the collaboration is (model/collaboration.py), the
validator refuses what Clean Rooms would (model/validator), DuckDB (or Spark,
--engine spark: localroom/spark.py) runs the template under the tables' rules
(localroom/engine.py), a ledger on disk keeps
the privacy budget (localroom/ledger.py), and results land where the cloud path
puts them: OUT/<template>/<run id>.csv, with OUT/report.html beside them.
Same tables, same exit codes as the cloud path; imports neither pulumi nor boto3.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from queryrunner import EXIT_INTERRUPTED, EXIT_OK, EXIT_QUERY_FAILED, EXIT_USAGE, UsageError
from queryrunner import params as qparams
from localroom.report import cell
from queryrunner.display import format_table

# Flags that only mean something against AWS, refused with --local so none is silently ignored.
CLOUD_FLAGS = ("outputs", "membership_id", "collaboration_id", "region", "results_bucket", "results_prefix",
               "result_format", "profile")


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
        given = [f"--{f.replace('_', '-')}" for f in CLOUD_FLAGS if getattr(args, f, None) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for AWS; with --local the "
                             "stack file is read instead (--stack)")
        state = Path(args.state_dir or ".localroom")
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
        if self.args.command != "run" and (engine is not None or master is not None):
            given = [f for f, v in (("--engine", engine), ("--spark-master", master)) if v is not None]
            raise UsageError(f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to run "
                             "(budget reads the ledger, no engine)")
        if master is not None and engine != "spark":
            raise UsageError("--spark-master applies only with --engine spark")
        if engine == "spark":
            from localroom.spark import DEFAULT_MASTER, SparkUnavailable, check_master, require

            try:
                require()
            except SparkUnavailable as exc:
                raise UsageError(str(exc)) from None
            problem = check_master(master or DEFAULT_MASTER)
            if problem:
                raise UsageError(problem)

    def backend(self):
        """The engine for LocalCleanRoom: None for DuckDB (its default), else Spark, started here."""
        if getattr(self.args, "engine", None) != "spark":
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
        from model.stackfiles import stack_names

        stack = self.args.stack or _analyst_stack(stack_names())
        data_dir = Path(self.args.data_dir).resolve() if self.args.data_dir else None
        if data_dir is not None and not data_dir.is_dir():
            raise UsageError(f"--data-dir {self.args.data_dir} is not a folder")
        self.settings, self.collab = from_stack_files(stack, data_dir=data_dir)
        if self.settings.analyst is None:
            raise UsageError(f"stack '{stack}' does not have the analyst role; the analyst's stack is "
                             f"'{_analyst_stack(stack_names())}' (--stack)")
        self.stack = stack

    def err(self, message: str) -> None:
        print(message, file=self.stderr, flush=True)

    # -- budget -------------------------------------------------------------
    def ledger(self):
        from localroom.ledger import Ledger
        from localroom.privacy import calibrate

        spec = self.collab.budget
        if spec is None:
            return None
        path = Path(self.args.state_dir or ".localroom") / self.stack / "privacy-budget.json"
        return Ledger(path, self.stack, calibrate(spec.epsilon, spec.users_noise_per_query), spec.auto_refresh)

    def budget(self) -> int:
        from localroom.ledger import LedgerError
        from model.budget import budget_rows

        ledger = self.ledger()
        if ledger is None:
            print("no differential-privacy budgets in this collaboration", file=self.stdout)
            return EXIT_OK
        try:
            header, rows = budget_rows([ledger.budget()])
        except LedgerError as exc:
            raise LocalError(str(exc)) from None
        print(format_table(header, rows, max_rows=len(rows)), file=self.stdout)
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
        return qparams.resolve_jobs(chosen, given, spread=args.all)

    def run(self) -> int:
        from localroom.engine import LocalCleanRoom
        from model.errors import ConfigError
        from model.validator import validate

        args = self.args
        if args.max_rows < 0:
            raise UsageError("--max-rows must be >= 0")
        if args.seed is not None and args.seed < 0:
            raise UsageError("--seed must be >= 0")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {args.out} is a file; give a folder")
        jobs = self.jobs()
        # Every template is checked before anything runs: a refusal is an input error, nothing is run.
        checked, refusals = [], []
        for template, values in jobs:
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
        backend = self.backend()
        engine = f"; engine Spark {backend.version} ({backend.master})" if backend is not None else ""
        self.err(f"local clean room: stack {self.stack}, tables {sorted(self.collab.tables)}{engine}; "
                 f"results to {out}/<template>/")
        room = LocalCleanRoom(self.collab, backend)
        try:  # every data file is read and checked against its schema before the first run
            room.load({alias for _, _, analysis in checked for alias in analysis.tables})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        outcomes = []
        for template, values, analysis in checked:
            outcomes.append(self.run_one(room, template, values, analysis, out))
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
        return EXIT_OK if all(o["status"] == "SUCCESS" for o in outcomes) else EXIT_QUERY_FAILED

    def run_one(self, room, template, values: dict[str, str], analysis, out: Path) -> dict:
        from localroom.engine import LocalLimitation, RunFailed
        from localroom.ledger import LedgerError
        from localroom.privacy import OpenDPNoise, SeededNoise
        from model.budget import Impact, count_aggregations
        from model.parameters import to_python

        name = template.name
        started = time.monotonic()
        ledger = self.ledger()
        protected = any(t.differential_privacy for t in analysis.tables.values())
        usage = count_aggregations(template.sql) if protected else Counter()
        try:
            if protected:
                if ledger is None:
                    raise LocalError("the template reads a differentially private table, but the collaboration "
                                     "has no privacy budget (differentialPrivacy in the owner's stack file)")
                budget = ledger.budget()
                impact = Impact(budget, usage, ledger.cost(usage), max(0.0, 1.0 - ledger.spent()))
                self.err(f"[{name}] {impact.describe()}")
                if not impact.affordable or (impact.exhausts and not self.args.allow_budget_exhaustion):
                    hint = "" if not impact.affordable else " Pass --allow-budget-exhaustion to run it anyway."
                    raise _Refused(f"refusing to run {name!r}: it would exhaust the remaining privacy budget "
                                   f"({impact.describe()}).{hint}")
            noise = SeededNoise(_seed(self.args.seed, name)) if self.args.seed is not None else OpenDPNoise()
            typed = {p.name: to_python(p.type, values[p.name]) for p in template.parameters}
            calibration = ledger.calibration if ledger else None
            result = room.run(analysis, typed, noise, calibration)
        except _Refused as exc:
            self.err(f"[{name}] {exc}")
            return {"template": name, "status": "REFUSED", "error": "PRIVACY_BUDGET"}
        except (LocalLimitation, RunFailed, LocalError, LedgerError) as exc:
            self.err(f"[{name}] FAILED: {exc}")
            return {"template": name, "status": "FAILED", "error": type(exc).__name__}
        run_id = str(uuid.uuid4())
        seconds = time.monotonic() - started
        try:
            path = self.save(template, values, result, run_id, out, ledger, usage, seconds)
        except (OSError, LedgerError) as exc:
            self.err(f"[{name}] the result could not be saved, nothing was charged: {exc}")
            return {"template": name, "status": "FAILED", "error": "SAVE"}
        enforcement = result.enforcement
        notes = []
        if enforcement.thresholds:
            notes.append(f"{enforcement.suppressed_rows} row(s) below the aggregation threshold suppressed")
        if enforcement.noise:
            notes.append("noise " + ", ".join(f"{n.column} {n.aggregate} +-{1.96 * n.sigma:.3g}"
                                              for n in enforcement.noise))
        if enforcement.seeded:
            notes.append("seeded noise: reproducible, not a private release")
        self.err(f"[{name}] SUCCESS after {seconds:.1f}s; saved {path}" + (f" ({'; '.join(notes)})" if notes else ""))
        print(f"== {name} ({run_id}) ==", file=self.stdout)
        header = result.table.column_names
        rows = [[cell(v) for v in row.values()] for row in result.table.slice(0, self.args.max_rows).to_pylist()]
        text = format_table(header, rows, self.args.max_rows)
        if result.table.num_rows > self.args.max_rows:  # format_table only saw the rows it prints
            text = text.rsplit("\n", 1)[0] + (f"\n... {result.table.num_rows - self.args.max_rows} more rows "
                                               f"(see the saved file)\n({result.table.num_rows} rows)")
        print(text, file=self.stdout, flush=True)
        return {"template": name, "status": "SUCCESS", "run_id": run_id, "seconds": seconds, "path": str(path)}

    def save(self, template, values, result, run_id: str, out: Path, ledger, usage: Counter, seconds: float) -> Path:
        """Write the CSV and its run record; charge the ledger; nothing is left half-done on failure."""
        import csv

        folder = out / template.name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{run_id}.csv"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{run_id}", suffix=".csv.tmp")
        os.close(fd)
        charged = False
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:  # as the cloud path saves results
                writer = csv.writer(handle)
                writer.writerow(result.table.column_names)
                for batch in result.table.to_batches():
                    writer.writerows(zip(*(column.to_pylist() for column in batch.columns)))
            record = _record(template, values, result, run_id, self.stack, seconds)
            (folder / f".{run_id}.json.tmp").write_text(json.dumps(record, indent=2), encoding="utf-8")
            if usage and ledger is not None:
                ledger.charge(template.name, run_id, usage)
                charged = True
            os.replace(tmp, target)
            os.replace(folder / f".{run_id}.json.tmp", folder / f"{run_id}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            (folder / f".{run_id}.json.tmp").unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            if charged:
                ledger.uncharge(run_id)
            raise
        return target


class _Refused(Exception):
    pass


def _analyst_stack(stacks: list[str]) -> str:
    """The one stack file whose roles include the analyst."""
    from model.config import ANALYST
    from model.stackfiles import ROOT, load_stack_config, project_name

    project = project_name(ROOT)
    found = [s for s in stacks if ANALYST in (load_stack_config(s).get(f"{project}:roles") or [])]
    if len(found) != 1:
        raise UsageError(f"give the analyst's stack with --stack; stack files with the analyst role: {found or 'none'}")
    return found[0]


def _seed(seed: int, template: str) -> int:
    """One independent seed per template, whatever order --all runs them in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{template}".encode()).digest()[:8], "big")


def _record(template, values, result, run_id: str, stack: str, seconds: float) -> dict:
    from datetime import datetime, timezone

    e = result.enforcement
    return {"run_id": run_id, "template": template.name, "description": template.description, "stack": stack,
            "finished": datetime.now(timezone.utc).isoformat(), "seconds": round(seconds, 3),
            "parameters": values, "rows": result.table.num_rows, "columns": result.table.column_names,
            "thresholds": e.thresholds, "threshold_exempt": e.threshold_exempt,
            "suppressed_rows": e.suppressed_rows, "user_contribution_limit": e.user_contribution_limit,
            "seeded": e.seeded, "usage": dict(e.usage),
            "noise": [{"column": n.column, "aggregate": n.aggregate, "sigma": n.sigma, "sensitivity": n.sensitivity}
                      for n in e.noise]}

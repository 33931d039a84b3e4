"""Command line: run / budget / status / history / benchmark.

Exit codes: 0 success; 1 a query failed, timed out, was cancelled, missed the
deadline, or was refused for privacy budget; 2 usage or input error (flags,
missing stack outputs, bad parameters, an unusable run journal; nothing was sent);
3 outcome unknown (a start whose answer was lost and whose query cannot be told
apart, or a query whose end could not be read: `--resume` settles it); 130
interrupted (Ctrl-C) and 143 terminated (SIGTERM), queries in flight cancelled first.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from queryrunner import EXIT_OK, EXIT_USAGE, UsageError, checks

EPILOG = """\
exit codes: 0 success | 1 query failed, timed out, cancelled, deadline exceeded or
refused (privacy budget) | 2 usage/input error, nothing sent | 3 outcome unknown: a
lost start's query cannot be told apart, or a query's end could not be read (check,
then --resume) | 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): in-flight
queries cancelled, the journal records it

examples:
  python -m queryrunner run --all --local              # the local clean room, no AWS
  python -m queryrunner job retail_order_mix --local   # a PySpark job's script on this machine's Spark
  pulumi stack output --json --stack org-a | python -m queryrunner run customer_segments \\
      --outputs - --param min_orders=2
"""


# Flags that only mean something against AWS, by destination with their defaults: with --local, one given a value
# other than its default is refused by name (no flag is silently ignored). Per command, groups are checked in
# order and each is refused with its own reason.
JOB_TIMEOUT, JOB_RETRIES = 1800.0, 2
RUN_TIMEOUT, RUN_RETRIES, RUN_MAX_CONCURRENCY = 1800.0, 2, 5
AUDIENCE_TIMEOUT = 7200.0
_STACK_OUTPUT_FLAGS = (dict.fromkeys(("outputs", "membership_id", "collaboration_id", "region", "results_bucket",
                                      "results_region", "results_prefix", "result_format", "profile")),
                       "; with --local the stack file is read instead (--stack)")
AWS_ONLY: dict[str, tuple[tuple[dict[str, Any], str], ...]] = {
    "run": (({"timeout": RUN_TIMEOUT, "retries": RUN_RETRIES, "max_concurrency": RUN_MAX_CONCURRENCY,
              "no_refresh": False, "worker_type": None, "workers": None, "no_distribute": False},
             " (protected queries' deadline, re-runs, concurrency, compute, receivers, QuickSight); run --local runs "
             "each template once, here"),
            _STACK_OUTPUT_FLAGS),
    "budget": (_STACK_OUTPUT_FLAGS,),
    "audit": (_STACK_OUTPUT_FLAGS,),
    "audience": (({"timeout": AUDIENCE_TIMEOUT, "include_seed": False, "model": None},
                  " (following the job, seeds in the output, choosing among the models); audience generate --local "
                  "rehearses the one training dataset of the stack files here, never with the seed in the segment"),
                 ({"seed_template": None, "param": []},
                  " (a seed query's result is user ids, which the shipped tables never output); give --seed-file"),
                 _STACK_OUTPUT_FLAGS),
    "job": (({"timeout": JOB_TIMEOUT, "retries": JOB_RETRIES},
             " (a protected job's deadline and re-runs); job --local runs the script once, here"),
            _STACK_OUTPUT_FLAGS,
            ({"worker_type": None, "workers": None},
             " (a protected job's compute); job --local runs on this machine's Spark (--spark-master)"),
            ({"resume": False}, " (it re-attaches to an earlier run's protected job, from its journal); the local "
                                "clean room has no resume yet")),
}
# Local-clean-room flags that the cloud path of a command uses too: --state-dir is where `run` and `job` keep their
# run journal (default <--out>/.journal), and where `history` reads them.
CLOUD_TOO = {"run": ("state_dir",), "job": ("state_dir",), "history": ("state_dir",)}


def _flag(dest: str) -> str:
    return f"--{dest.replace('_', '-')}"


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on usage errors already; keep its message, route it
    # through our exception so main() stays testable without SystemExit.
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    stack = _Parser(add_help=False)
    g = stack.add_argument_group("stack outputs (flags override single outputs)")
    g.add_argument("--outputs", metavar="FILE",
                   help="`pulumi stack output --json` of the analyst stack: a file, or - for standard input")
    g.add_argument("--membership-id", help="override output membership_id (NOT the collaboration id)")
    g.add_argument("--collaboration-id", help="override output collaboration_id")
    g.add_argument("--region", help="override output region: the collaboration's region (checked against outputs "
                   "region and membership_arn, else allowed_result_regions)")
    g.add_argument("--results-bucket", help="override output results_bucket; another bucket's region is never "
                   "assumed: with output allowed_result_regions, give --results-region too")
    g.add_argument("--results-region", help="the region of the --results-bucket bucket (output results_region is "
                   "the stack's own bucket's)")
    g.add_argument("--results-prefix", help="override output results_prefix")
    g.add_argument("--result-format", choices=["CSV", "PARQUET"], help="override output result_format")
    g.add_argument("--profile", help="AWS profile for credentials, one configured in ~/.aws/config or "
                   "~/.aws/credentials (default: the usual boto3 chain)")

    local = _Parser(add_help=False)
    g = local.add_argument_group("local clean room (no AWS: the stack files, data/ and DuckDB or Spark on "
                                 "this machine)")
    g.add_argument("--local", action="store_true",
                   help="run in the local clean room instead of AWS Clean Rooms")
    g.add_argument("--stack", metavar="NAME",
                   help="with --local: the analyst's stack file Pulumi.NAME.yaml (default: the stack with the "
                        "analyst role)")
    g.add_argument("--stacks-dir", metavar="DIR",
                   help="with --local: the folder of the stack files (default: the project's; e.g. "
                        "examples/three-orgs); the ledgers then default to .localroom/stacks-<DIR>")
    g.add_argument("--data-dir", metavar="DIR",
                   help="with --local: use this folder instead of the stacks' dataDir (<dataset>/schema.yaml, "
                        "the data files and queries/)")
    g.add_argument("--state-dir", metavar="DIR",
                   help="with --local: where the privacy budget ledger is kept, per stack (default .localroom); "
                        "run on AWS: where the run journal is kept (default <--out>/.journal)")
    g.add_argument("--engine", choices=["duckdb", "spark"],
                   help="with --local run: the engine that runs the templates (default duckdb; spark is PySpark "
                        "3.5, Clean Rooms' engine: venv/bin/pip install -r requirements-spark.txt)")
    g.add_argument("--spark-master", metavar="URL",
                   help="with --engine spark: the Spark master, e.g. spark://HOST:7077 for an existing cluster "
                        "(default local[*]: Spark in this process)")

    parser = _Parser(prog="python -m queryrunner", description="Run AWS Clean Rooms protected queries from "
                     "the analyst stack's analysis templates.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", parents=[stack, local], help="run one analysis template, or all with --all",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("template", nargs="?", help="analysis template name (a key of output analysis_templates)")
    run.add_argument("--all", action="store_true", help="run every template concurrently")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="template parameter; repeatable; checked against the declared type before sending")
    run.add_argument("--max-concurrency", type=int, default=RUN_MAX_CONCURRENCY,
                     help="queries in flight at most with --all (default 5, the default per-membership quota)")
    run.add_argument("--timeout", type=float, default=RUN_TIMEOUT,
                     help="overall deadline in seconds; queries still running then are cancelled (default 1800)")
    run.add_argument("--retries", type=int, default=RUN_RETRIES, help="re-runs of a query that failed transiently (default 2)")
    run.add_argument("--out", default="results", metavar="DIR",
                     help="where results are saved, as DIR/<template>/<query id>.csv|.parquet (default results)")
    run.add_argument("--max-rows", type=int, default=50, help="rows printed per result (default 50)")
    run.add_argument("--no-refresh", action="store_true", help="do not start a QuickSight ingestion afterwards")
    run.add_argument("--allow-budget-exhaustion", action="store_true",
                     help="run a differential-privacy template even if it exhausts the privacy budget")
    run.add_argument("--worker-type", metavar="TYPE",
                     help="Spark worker size for every template run: CR.1X, CR.4X or CR.8X (overrides the "
                          "template's and the stack's compute outputs; default: theirs, else the service's, CR.1X)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="Spark workers per query, 2-400 (overrides the template's and the stack's compute "
                          "outputs); more workers finish big queries sooner but cost the same or more")
    run.add_argument("--no-distribute", action="store_true",
                     help="send results only to this runner's results bucket, not also to the member accounts "
                          "of output result_receivers")
    run.add_argument("--resume", action="store_true",
                     help="finish an earlier run of the same command from its journal: re-attach to its queries "
                          "still running, skip templates whose results are saved, look for the query of a start "
                          "whose answer was lost; nothing it started is started again (a plain re-run of an "
                          "unfinished run does this too, and says so)")
    run.add_argument("--window", metavar="LENGTH",
                     help="fill the template's window_start and window_end TIMESTAMP parameters with the last whole "
                          "window of this length (15m, 1h, 7d; aligned on the epoch, UTC)")
    run.add_argument("--seed", type=int, metavar="N",
                     help="with --local: reproducible differential-privacy noise (numpy, not a private release)")

    budget = sub.add_parser("budget", parents=[stack, local],
                            help="remaining differential-privacy budget per aggregation, and access budget per table")
    budget.add_argument("--forecast", action="store_true",
                        help="also: how many more runs of each differentially private template the budget allows, "
                             "and how fast this period spends it")

    audit = sub.add_parser("audit", parents=[stack, local],
                           help="the compliance report: every protected query and job of the membership in a "
                                "period, who ran it, its privacy cost and where its results went (CSV, --html)")
    audit.add_argument("--since", default="30d", metavar="DURATION",
                       help="how far back: a whole number of hours, days or weeks (12h, 30d, 2w; default 30d)")
    audit.add_argument("--html", action="store_true", help="also write audit.html, one self-contained page")
    audit.add_argument("--out", default="results", metavar="DIR",
                       help="the report goes to DIR/audit/ (default results)")

    # Clean Rooms ML lookalike segments, the seed provider's side (queryrunner/audience.py).
    audience = sub.add_parser("audience", help="Clean Rooms ML lookalike segments: generate from a seed, status, "
                                               "export (docs/clean-rooms-ml.md)")
    actions = audience.add_subparsers(dest="audience_action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    generate = actions.add_parser("generate", parents=[stack, local],
                                  help="a segment of a partner's users like the seed (--local: rehearse it here)")
    generate.add_argument("name", help="the audience generation job's name (1-63 letters, digits, _ . -)")
    generate.add_argument("--seed-file", metavar="FILE", help="JSON lines of {\"user_id\": ...}, 25-500,000 users")
    generate.add_argument("--seed-template", metavar="TEMPLATE",
                          help="an analysis template (a key of output analysis_templates) whose result is the seed")
    generate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a seed template's parameter (repeatable)")
    generate.add_argument("--model", metavar="PARTNER", help="whose lookalike model (output audience_models; "
                                                             "needed when several partners offer one)")
    generate.add_argument("--size", metavar="N|N%", help="also export a segment of this size (one of the model's)")
    generate.add_argument("--include-seed", action="store_true", help="include the seed users in the segment")
    generate.add_argument("--timeout", type=float, default=AUDIENCE_TIMEOUT,
                          help="seconds to follow the job before giving up on it (default 7200)")
    generate.add_argument("--seed", type=int, metavar="N",
                          help="with --local: the model's random seed (default 0), for the same segment again")
    generate.add_argument("--out", default="results", metavar="DIR",
                          help="with --local: where the segments, metrics and report.html go (default results)")
    status = actions.add_parser("status", parents=[stack], help="one segment's state, metrics and exports")
    status.add_argument("job_arn", metavar="JOB_ARN")
    export = actions.add_parser("export", parents=[stack], help="export a generated segment of a size")
    export.add_argument("job_arn", metavar="JOB_ARN")
    export.add_argument("--size", required=True, metavar="N|N%", help="one of the model's audience sizes")
    export.add_argument("--name", help="the export job's name (default export-<size>)")
    export.add_argument("--model", metavar="PARTNER", help="whose lookalike model (output audience_models)")
    export.add_argument("--timeout", type=float, default=AUDIENCE_TIMEOUT, help="seconds to follow the export")

    # Clean Rooms ML custom models (queryrunner/ml.py).
    ml = sub.add_parser("ml", help="Clean Rooms ML custom models: ML input channel, training, inference, export, "
                                   "status (docs/clean-rooms-ml.md)")
    ml_actions = ml.add_subparsers(dest="ml_action", metavar="ACTION", parser_class=_Parser)
    ml_actions.required = True
    channel = ml_actions.add_parser("channel", parents=[stack], help="an ML input channel from an analysis template")
    channel.add_argument("name")
    channel.add_argument("--template", required=True, help="the analysis template whose rows feed the model")
    channel.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    channel.add_argument("--retention-days", type=int, default=7, help="1-30 days the channel's data is kept (default 7)")
    train = ml_actions.add_parser("train", parents=[stack], help="train the custom model on an ML input channel")
    train.add_argument("name")
    train.add_argument("--channel", required=True, metavar="ARN", help="the ML input channel (its train channel)")
    train.add_argument("--instance-type", default="ml.m5.xlarge", help="a training instance type (default ml.m5.xlarge)")
    train.add_argument("--instances", type=int, default=1)
    train.add_argument("--volume-gb", type=int, default=10)
    train.add_argument("--max-hours", type=int, default=2, help="stop training after this many hours (default 2)")
    infer = ml_actions.add_parser("infer", parents=[stack], help="run a trained model on an ML input channel")
    infer.add_argument("name")
    infer.add_argument("--model", required=True, metavar="ARN", help="the trained model")
    infer.add_argument("--channel", required=True, metavar="ARN")
    infer.add_argument("--instance-type", default="ml.m5.xlarge")
    infer.add_argument("--instances", type=int, default=1)
    infer.add_argument("--to", action="append", metavar="ACCOUNT", help="a member account that receives the output")
    ml_export = ml_actions.add_parser("export", parents=[stack], help="export a trained model's artifacts to a member")
    ml_export.add_argument("name")
    ml_export.add_argument("--model", required=True, metavar="ARN")
    ml_export.add_argument("--to", action="append", metavar="ACCOUNT")
    ml_status = ml_actions.add_parser("status", parents=[stack], help="an ML input channel, trained model or inference job")
    ml_status.add_argument("arn")
    for action in (channel, train, infer):
        action.add_argument("--timeout", type=float, default=AUDIENCE_TIMEOUT,
                            help="seconds to follow the job (default 7200)")
    for action in (channel, train, infer, ml_export):
        action.add_argument("--provider", metavar="MEMBER",
                            help="whose custom model (output custom_models), when members offer several")

    status = sub.add_parser("status", parents=[stack], help="one protected query's state, result and error")
    status.add_argument("query_id")

    history = sub.add_parser("history", parents=[stack], help="recent protected queries of the membership")
    history.add_argument("--limit", type=int, default=20, help="how many queries (default 20)")
    history.add_argument("--status", dest="status_filter",
                         choices=["SUBMITTED", "STARTED", "CANCELLED", "CANCELLING", "FAILED", "SUCCESS", "TIMED_OUT"])
    history.add_argument("--jobs", action="store_true", help="list protected jobs (PySpark) instead of queries")
    history.add_argument("--out", metavar="DIR",
                         help="the --out of the runs to mark: their journals are read from DIR/.journal (default "
                              "results)")
    history.add_argument("--state-dir", metavar="DIR",
                         help="the --state-dir of the runs to mark, where `run` and `job` keep their journals (default "
                              "<--out>/.journal): queries they started, reconciled or re-attached are marked so")

    # PySpark jobs (queryrunner/jobs.py; docs/query-runner.md, "PySpark jobs"); --local: queryrunner/local.py.
    job_local = _Parser(add_help=False)
    g = job_local.add_argument_group("local clean room (no AWS: the stack files, data/ and the script on this "
                                     "machine's Spark)")
    g.add_argument("--local", action="store_true",
                   help="run the job's script here, on PySpark 3.5 (venv/bin/pip install -r requirements-spark.txt)")
    g.add_argument("--stack", metavar="NAME",
                   help="with --local: the stack file Pulumi.NAME.yaml that declares the job (default: the one "
                        "stack with `jobs`)")
    g.add_argument("--stacks-dir", metavar="DIR",
                   help="with --local: the folder of the stack files (default: the project's)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="with --local: use this folder instead of the stacks' dataDir (schemas, data files, jobs/)")
    g.add_argument("--state-dir", metavar="DIR",
                   help="with --local: where the access budgets are kept, beside the analyst's privacy budget "
                        "ledger (default .localroom); on AWS: where the job's journal is kept (default "
                        "<--out>/.journal)")
    g.add_argument("--spark-master", metavar="URL",
                   help="with --local: the Spark master, e.g. spark://HOST:7077 (default local[*]: Spark in this "
                        "process)")
    job = sub.add_parser("job", parents=[stack, job_local],
                         help="run one PySpark analysis template as a protected job (--local: on this machine)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    job.add_argument("name", help="job name (a key of output job_templates; with --local, of the stack's `jobs`)")
    job.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="job parameter; repeatable; checked against the declared type before sending")
    job.add_argument("--timeout", type=float, default=JOB_TIMEOUT,
                     help="overall deadline in seconds; a job still running then is cancelled (default 1800)")
    job.add_argument("--retries", type=int, default=JOB_RETRIES,
                     help="re-runs of a job that failed with error.retry.retryable true (default 2)")
    job.add_argument("--out", default="results", metavar="DIR",
                     help="where results are saved, as DIR/<job>/<job id>/<result>.csv (default results)")
    job.add_argument("--max-rows", type=int, default=50, help="rows printed per result (default 50)")
    job.add_argument("--worker-type", metavar="TYPE",
                     help="Spark worker size: CR.1X or CR.4X (overrides job_templates.<name>.compute)")
    job.add_argument("--workers", type=int, metavar="N",
                     help="Spark workers, 4-128 (overrides job_templates.<name>.compute)")
    job.add_argument("--resume", action="store_true",
                     help="finish an earlier run of this job from its journal: re-attach to its job, or look for the "
                          "job of a start whose answer was lost; never starts a second one")
    job_status = sub.add_parser("job-status", parents=[stack], help="one protected job's state, result and error")
    job_status.add_argument("job_id")

    bench = sub.add_parser("benchmark", help="run-all code path on simulated queries: wall vs slowest, per "
                                             "poll policy")
    bench.add_argument("--queries", type=int, default=5)
    bench.add_argument("--max-concurrency", type=int, default=5)
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--min-duration", type=float, default=2.0, help="shortest query, simulated seconds")
    bench.add_argument("--max-duration", type=float, default=30.0, help="longest query, simulated seconds")
    bench.add_argument("--policy", choices=["elapsed", "doubling", "both"], default="both",
                       help="poll policy: elapsed (the runner's: each wait <= 1/10 of the query's running time, "
                            "1-30 s), doubling (the old one: 1 s doubling to 30 s), or both (default)")
    bench.add_argument("--time-scale", type=float, default=0.01,
                       help="real seconds per simulated second (default 0.01: a 60 s query takes 0.6 s)")
    bench.add_argument("--virtual-time", action="store_true",
                       help="advance a virtual clock instead of sleeping: instant and exact")
    bench.add_argument("--verbose", action="store_true", help="show every status transition")
    return parser


def main(argv: list[str] | None = None, *, stdin=None, stdout=None, stderr=None,
         client_factory: Callable[[str, str], Any] | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Any] | None = None,
         backoff: Callable[[], Any] | None = None, poll: Callable[[], Any] | None = None) -> int:
    """Entry point; every side effect (streams, AWS clients, time, jitter) is injectable for tests.

    ``backoff`` makes the delays between re-runs of a failed query, ``poll`` the policy between polls.
    """
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        # Checks that need no AWS and no stack: numeric ranges (each flag named on its own) and --out.
        # Both the cloud and the --local path get them; the cloud path checks the rest in cloud.App.
        checks.check_flag_ranges(args)
        if args.command in ("run", "job", "audit") or getattr(args, "out", None) is not None:
            checks.fail("--out", checks.check_out_dir(args.out))
        if args.command == "audit":
            from queryrunner.audit import parse_since

            parse_since(args.since)
    except UsageError as exc:
        print(f"error: {checks.one_line(str(exc))}", file=stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command == "benchmark":
        from queryrunner.simulate import run_benchmark

        policies = ("elapsed", "doubling") if args.policy == "both" else (args.policy,)
        run_benchmark(args.queries, args.max_concurrency, args.seed, args.min_duration, args.max_duration,
                      stdout, args.verbose, policies=policies, time_scale=args.time_scale,
                      virtual=args.virtual_time)
        return EXIT_OK
    cloud_too = CLOUD_TOO.get(args.command, ())
    local_only = [_flag(f) for f in ("stack", "stacks_dir", "data_dir", "state_dir", "seed", "engine",
                                     "spark_master")
                  if getattr(args, f, None) is not None and f not in cloud_too]
    if local_only and not getattr(args, "local", False):
        verb = "applies" if len(local_only) == 1 else "apply"
        print(f"error: {', '.join(local_only)} only {verb} with --local (the local clean room)", file=stderr)
        return EXIT_USAGE
    if getattr(args, "local", False):
        for defaults, why in AWS_ONLY[args.command]:
            given = [_flag(dest) for dest, default in defaults.items() if getattr(args, dest) != default]
            if given:
                print(f"error: {', '.join(given)} {'is' if len(given) == 1 else 'are'} for AWS{why}", file=stderr)
                return EXIT_USAGE
        from queryrunner import local

        return local.run(args, stdout, stderr)
    from queryrunner import cloud
    from queryrunner.poll import Backoff, ElapsedPoll

    return cloud.run(args, stdin, stdout, stderr, client_factory, clock, sleep, backoff or Backoff,
                     poll or ElapsedPoll)

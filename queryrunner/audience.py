"""`audience generate|status|export`: the seed provider's lookalike segments (Clean Rooms ML).

generate NAME: the seed (a JSON-lines file of {"user_id": ...}, or a template of
the collaboration run as the seed query) goes to the partner's configured audience
model (stack output audience_models); Clean Rooms ML finds the partner's users
most like it. Then, with --size, the segment is exported to the partner's segments
location; `export` does that for a job generated earlier, `status` shows one.

Every input is checked before any request (exit 2): the seed file against the seed
data requirements ("JSON lines format with a list of user IDs", "between 25 and
500,000 unique user IDs", at least the model's minimum matching seed size), the
size against the model's audience sizes, the stack outputs the command needs.
Jobs are polled with backoff under one deadline (--timeout). StartAudienceGenerationJob
and StartAudienceExportJob are never retried by botocore (as for protected queries:
a lost answer must not start a second job). Ctrl-C stops following, not the job,
which the API has no way to cancel: the command says how to follow it (exit 130).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from queryrunner import EXIT_INTERRUPTED, EXIT_OK, EXIT_QUERY_FAILED, UsageError
from queryrunner import params as qparams
from queryrunner import reconcile
from queryrunner.outputs import OutputsError

SEED_MIN, SEED_MAX = 25, 500_000  # seed data requirements
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SIZE = re.compile(r"^([1-9][0-9]{0,7})(%?)$")
_GENERATION_ARN = re.compile(r"^arn:aws[-a-z]*:cleanrooms-ml:[-a-z0-9]+:[0-9]{12}:audience-generation-job/[-a-zA-Z0-9_/.]+$")
STARTS = ("StartAudienceGenerationJob", "StartAudienceExportJob")
DONE, FAILED = "ACTIVE", ("CREATE_FAILED", "DELETE_FAILED", "CANCEL_FAILED", "INACTIVE")


@dataclass(frozen=True)
class Model:
    partner: str
    arn: str
    min_seed: int
    size_type: str
    size_bins: tuple[int, ...]


def parse_size(text: str) -> tuple[str, int]:
    """--size: N users (ABSOLUTE) or N% of the model's users (PERCENTAGE)."""
    found = _SIZE.match(text or "")
    if not found or (found.group(2) and int(found.group(1)) > 100) or int(found.group(1)) > 20_000_000:
        raise UsageError(f"--size must be a number of users (1-20000000, e.g. 5000) or a percentage (1%-100%), "
                         f"got {text!r}")
    return ("PERCENTAGE" if found.group(2) else "ABSOLUTE"), int(found.group(1))


def check_size(size: tuple[str, int], model: Model) -> dict:
    kind, value = size
    if kind != model.size_type or value not in model.size_bins:
        shown = ", ".join(f"{b}{'%' if model.size_type == 'PERCENTAGE' else ''}" for b in model.size_bins)
        raise UsageError(f"--size {value}{'%' if kind == 'PERCENTAGE' else ''} is not one of the audience sizes "
                         f"{model.partner}'s model offers ({shown})")
    return {"type": kind, "value": value}


def read_seed(path: Path, model: Model) -> bytes:
    """The seed file as it will be uploaded, after checking it line by line (one line of error, naming it)."""
    if not path.is_file():
        raise UsageError(f"--seed-file {path} is not a file")
    users: set[str] = set()
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--seed-file {path} is not UTF-8 text (JSON lines of {{\"user_id\": ...}})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"--seed-file {path}:{number} is not JSON; each line is {{\"user_id\": \"...\"}} "
                             "(seed data requirements: JSON lines)") from None
        user = record.get("user_id") if isinstance(record, dict) else None
        if not isinstance(user, str) or not user:
            raise UsageError(f"--seed-file {path}:{number} has no \"user_id\" text; each line is "
                             "{\"user_id\": \"...\"}")
        users.add(user)
    least = max(SEED_MIN, model.min_seed)
    if not least <= len(users) <= SEED_MAX:
        raise UsageError(f"--seed-file {path} has {len(users):,} distinct user ids; {model.partner}'s model takes "
                         f"{least:,} to {SEED_MAX:,} (seed data requirements: 25 to 500,000, and at least the "
                         f"model's minimum matching seed size {model.min_seed:,})")
    return data


def follow(app, what: str, fetch, timeout: float) -> dict:
    """Poll ``fetch`` until ACTIVE or failed, backing off 5 s doubling to 60 s, under ``timeout`` seconds; a state
    that is still going at the deadline comes back with ``timed_out``. Each change of status is said once."""
    deadline, delay, last = app.clock() + timeout, 5.0, None
    while True:
        state = fetch()
        if state["status"] != last:
            app.err(f"{what}: {state['status']}")
            last = state["status"]
        if state["status"] == DONE or state["status"] in FAILED:
            return state
        left = deadline - app.clock()
        if left <= 0:
            return {**state, "timed_out": True}
        app.sleep(min(left, delay))
        delay = min(60.0, delay * 2)


def guard(client, operations) -> None:
    """botocore never sends these again after a lost answer (a second start would be a second job)."""
    meta = getattr(client, "meta", None)
    if meta is None or getattr(meta, "events", None) is None:
        return
    service = meta.service_model.service_id.hyphenize()
    for operation in operations:
        meta.events.register(f"needs-retry.{service}.{operation}", reconcile._never_retry,
                             unique_id=f"queryrunner-no-start-retry-{operation}")


class AudienceCommand:
    def __init__(self, app):
        self.app, self.args, self.settings = app, app.args, app.settings

    # -- inputs -------------------------------------------------------------------------------------------
    def models(self) -> dict[str, Model]:
        raw = self.settings.get("audience_models")
        if not isinstance(raw, dict) or not raw:
            raise OutputsError("stack output 'audience_models' is missing or empty: the stack needs lookalikeSeeds: "
                               "true and a partner whose trainingData has a lookalike (docs/clean-rooms-ml.md)")
        found = {}
        for partner, spec in raw.items():
            try:
                found[partner] = Model(partner, str(spec["configured_audience_model_arn"]),
                                       int(spec["min_matching_seed_size"]), str(spec["size_type"]),
                                       tuple(int(b) for b in spec["size_bins"]))
            except (KeyError, TypeError, ValueError):
                raise OutputsError(f"stack output 'audience_models.{partner}' must have configured_audience_model_arn, "
                                   "min_matching_seed_size, size_type and size_bins") from None
        return found

    def model(self) -> Model:
        models, wanted = self.models(), getattr(self.args, "model", None)
        if wanted is None:
            if len(models) > 1:
                raise UsageError(f"several partners offer a lookalike model ({', '.join(sorted(models))}); "
                                 "choose one with --model")
            return next(iter(models.values()))
        if wanted not in models:
            raise UsageError(f"--model {wanted!r}: no such partner model; the stack offers {', '.join(sorted(models))}")
        return models[wanted]

    def client(self):
        client = self.app.client("cleanroomsml")
        guard(client, STARTS)
        return client

    def follow(self, what: str, fetch) -> dict:
        return follow(self.app, what, fetch, self.args.timeout)

    # -- commands -----------------------------------------------------------------------------------------
    def generate(self) -> int:
        args, s = self.args, self.settings
        if not _NAME.match(args.name or ""):
            raise UsageError(f"audience generate NAME: {args.name!r} must be 1-63 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        if bool(args.seed_file) == bool(args.seed_template):
            raise UsageError("give --seed-file FILE or --seed-template TEMPLATE (the seed is one of them)")
        model = self.model()
        size = check_size(parse_size(args.size), model) if args.size else None
        role = s.require("seed_role_arn")
        collaboration = s.collaboration_id
        if args.seed_file:
            body = read_seed(Path(args.seed_file), model)
            bucket, prefix = s.require("seed_bucket"), str(s.require("seed_prefix")).strip("/")
            seed = {"dataSource": {"s3Uri": f"s3://{bucket}/{prefix}/{args.name}/"}, "roleArn": role}
        else:
            template = s.template(args.seed_template)
            values = qparams.resolve(template.name, template.parameters, qparams.parse_assignments(args.param))
            seed = {"roleArn": role, "sqlParameters": {"analysisTemplateArn": template.arn, "parameters": values}}
        # Everything is settled: from here on, requests.
        if args.seed_file:
            self.app.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{args.name}/seed.jsonl", Body=body,
                                             ServerSideEncryption="aws:kms", SSEKMSKeyId=s.require("seed_kms_key_arn"))
        ml = self.client()
        arn = ml.start_audience_generation_job(
            name=args.name, configuredAudienceModelArn=model.arn, seedAudience=seed,
            includeSeedInOutput=bool(args.include_seed), collaborationId=collaboration)["audienceGenerationJobArn"]
        self.app.err(f"audience generation job {arn} started on {model.partner}'s model")
        try:
            job = self.follow(f"segment {args.name}", lambda: ml.get_audience_generation_job(audienceGenerationJobArn=arn))
        except KeyboardInterrupt:
            self.app.err(f"interrupted: the job keeps running (the API cannot cancel it); follow it with "
                         f"`python -m queryrunner audience status {arn}`")
            return EXIT_INTERRUPTED
        code = self.report(arn, job)
        if code != EXIT_OK or size is None:
            return code
        return self.start_export(ml, arn, f"{args.name}-{size['value']}", size)

    def export(self) -> int:
        if not _GENERATION_ARN.match(self.args.job_arn or ""):
            raise UsageError(f"audience export JOB_ARN: {self.args.job_arn!r} is not an audience generation job ARN")
        size = check_size(parse_size(self.args.size), self.model())
        name = self.args.name or f"export-{size['value']}"
        if not _NAME.match(name):
            raise UsageError(f"--name {name!r} must be 1-63 letters, digits, '_', '.' or '-'")
        return self.start_export(self.client(), self.args.job_arn, name, size)

    def start_export(self, ml, arn: str, name: str, size: dict) -> int:
        ml.start_audience_export_job(name=name, audienceGenerationJobArn=arn, audienceSize=size)

        def fetch() -> dict:
            for page in ml.get_paginator("list_audience_export_jobs").paginate(audienceGenerationJobArn=arn):
                for job in page["audienceExportJobs"]:
                    if job["name"] == name:
                        return job
            return {"status": "CREATE_PENDING"}

        try:
            job = self.follow(f"export {name}", fetch)
        except KeyboardInterrupt:
            self.app.err(f"interrupted: the export keeps running; `python -m queryrunner audience status {arn}`")
            return EXIT_INTERRUPTED
        if job.get("timed_out") or job["status"] != DONE:
            self.app.err(f"export {name} did not finish: {job['status']}"
                         f"{' at the deadline (--timeout)' if job.get('timed_out') else ''}")
            return EXIT_QUERY_FAILED
        where = (job.get("outputLocation") or "the partner's segments location")
        print(f"export {name}: {size['value']}{'%' if size['type'] == 'PERCENTAGE' else ''} users, "
              f"delivered to {where}", file=self.app.stdout)
        return EXIT_OK

    def status(self) -> int:
        if not _GENERATION_ARN.match(self.args.job_arn or ""):
            raise UsageError(f"audience status JOB_ARN: {self.args.job_arn!r} is not an audience generation job ARN")
        ml = self.client()
        job = ml.get_audience_generation_job(audienceGenerationJobArn=self.args.job_arn)
        code = self.report(self.args.job_arn, job)
        for page in ml.get_paginator("list_audience_export_jobs").paginate(audienceGenerationJobArn=self.args.job_arn):
            for export in page["audienceExportJobs"]:
                size = export.get("audienceSize") or {}
                print(f"export {export['name']}: {export['status']} ({size.get('value')}"
                      f"{'%' if size.get('type') == 'PERCENTAGE' else ''})", file=self.app.stdout)
        return code

    def report(self, arn: str, job: dict) -> int:
        out = self.app.stdout
        print(f"segment {job.get('name')}: {job['status']} ({arn})", file=out)
        metrics = job.get("metrics") or {}
        for entry in metrics.get("relevanceMetrics") or []:
            size = entry.get("audienceSize") or {}
            print(f"  relevance at {size.get('value')}{'%' if size.get('type') == 'PERCENTAGE' else ''}: "
                  f"{entry.get('score')}", file=out)
        if metrics.get("recallMetric") is not None:
            print(f"  recall: {metrics['recallMetric']}", file=out)
        if job.get("timed_out"):
            self.app.err(f"not finished at the deadline (--timeout): `python -m queryrunner audience status {arn}`")
            return EXIT_QUERY_FAILED
        if job["status"] != DONE:
            details = job.get("statusDetails") or {}
            self.app.err(f"generation failed: {details.get('statusCode')}: {details.get('message')}")
            return EXIT_QUERY_FAILED
        return EXIT_OK


def run(app, action: str) -> int:
    command = AudienceCommand(app)
    return getattr(command, action)()


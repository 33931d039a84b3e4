"""Reading the analyst stack's outputs (``pulumi stack output --json``).

The runner takes every id from the stack, never from the analyst's memory:
mixing up the collaboration id and the membership id is the classic mistake
(start_protected_query wants the *membership* id). Flags exist to override or
fill in single values, e.g. for a stack deployed before an output was added.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from model import regions
from queryrunner import checks

HOW_TO_GET = (
    "pipe the analyst stack's outputs in: `pulumi stack output --json --stack <analyst stack> | "
    "python -m queryrunner <command> ... --outputs -` (or save them to a file and pass --outputs FILE)"
)

# Flag that can stand in for an output key; None when only the stack can provide it.
FLAG_FOR_KEY = {
    "membership_id": "--membership-id",
    "collaboration_id": "--collaboration-id",
    "region": "--region",
    "results_bucket": "--results-bucket",
    "results_region": "--results-region",
    "results_prefix": "--results-prefix",
    "result_format": "--result-format",
    "analysis_templates": None,
}


class OutputsError(Exception):
    """Stack outputs unusable; the message says what is missing and how to get it (exit 2)."""


def _result_format(value: Any) -> str | None:
    if isinstance(value, str) and value.upper() in ("CSV", "PARQUET"):
        return None
    got = checks.show(value) if isinstance(value, str) else checks.json_type(value)
    return f"must be CSV or PARQUET, got {got}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {checks.json_type(value)}"


# How each single-valued output (or the flag standing in for it) is checked; see queryrunner/checks.py.
VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "membership_id": checks.check_membership_id,
    "collaboration_id": checks.check_collaboration_id,
    "region": checks.check_region,
    "results_bucket": checks.check_bucket,
    "results_region": checks.check_region,
    "results_prefix": checks.check_prefix,
    "result_format": _result_format,
    # PySpark jobs: whether this membership runs them, and the bucket their scripts are stored in.
    "runs_jobs": _boolean,
    "artifact_bucket": checks.check_bucket,
}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None = None


@dataclass(frozen=True)
class Compute:
    """Spark workers for a protected query; None fields are left to a less specific source or the service."""

    worker_type: str | None = None
    workers: int | None = None

    def over(self, fallback: "Compute | None") -> "Compute":
        """This setting, with what it leaves open taken from ``fallback`` (the less specific source)."""
        if fallback is None:
            return self
        return Compute(self.worker_type or fallback.worker_type,
                       self.workers if self.workers is not None else fallback.workers)

    def configuration(self) -> dict[str, Any] | None:
        """StartProtectedQuery's computeConfiguration, or None to send none (the service's default, CR.1X)."""
        worker: dict[str, Any] = {}
        if self.worker_type:
            worker["type"] = self.worker_type
        if self.workers is not None:
            worker["number"] = self.workers
        return {"worker": worker} if worker else None


def describe_compute(configuration: dict[str, Any] | None, short: bool = False) -> str:
    """A computeConfiguration (sent, or echoed by ProtectedQuery) for a progress line, status or the summary."""
    worker = (configuration or {}).get("worker") or {}
    kind, number = worker.get("type"), worker.get("number")
    if not kind and number is None:
        return "default" if short else "service default (none sent; CR.1X per the User Guide)"
    text = f"{kind or 'default type'} x {number if number is not None else 'default'}"
    if short:
        return text
    text += " workers"
    per = checks.CRPU_PER_WORKER.get(kind or "")
    if per and number is not None:
        text += f" = {per * number} CRPU"
    return text


@dataclass(frozen=True)
class Template:
    name: str
    arn: str
    id: str
    parameters: tuple[Parameter, ...] = ()
    differential_privacy: bool = False
    compute: Compute | None = None           # analysis_templates.<name>.compute
    tables: tuple[str, ...] | None = None    # analysis_templates.<name>.tables (association names); None: unknown
    # analysis_templates.<name>.additional_analyses: (table, ALLOWED | REQUIRED | NOT_ALLOWED, the ARN patterns
    # its association allows) for each table whose rule the stack knew; None: not exported
    additional_analyses: tuple[tuple[str, str, tuple[str, ...]], ...] | None = None
    # analysis_templates.<name>.retention: (table, how long its producer keeps rows: 48h, 30d) for each table it
    # reads whose schema declares a retention; --window may not reach further back
    retention: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PySparkTemplate:
    """A PySpark analysis template the analyst runs as a protected job (stack output job_templates.<name>)."""

    name: str
    arn: str
    id: str
    sha256: str                              # the script's SHA-256, lowercase hex, when the stack was deployed
    parameters: tuple[Parameter, ...] = ()
    tables: tuple[str, ...] | None = None    # association names the job reads
    compute: Compute | None = None           # job_templates.<name>.compute (both keys, from job.yaml)


@dataclass
class Settings:
    """What the runner needs, resolved from outputs + flags."""

    raw: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        if self.overrides.get(key) is not None:
            return self.overrides[key]
        value = self.raw.get(key)
        return default if value is None else value

    def _missing(self, key: str) -> bool:
        value = self.get(key)
        return value is None or (isinstance(value, (str, dict)) and not value)

    def from_flag(self, key: str) -> bool:
        return self.overrides.get(key) is not None

    def label(self, key: str) -> str:
        """Who gave the value: the flag when one overrides the output, else the output key."""
        return FLAG_FOR_KEY[key] if self.from_flag(key) and FLAG_FOR_KEY.get(key) else f"stack output '{key}'"

    def check_flags(self) -> None:
        """Every value given by a flag is checked, used by this command or not: the analyst typed it."""
        for key in VALUE_CHECKS:
            if self.from_flag(key):
                checks.fail(FLAG_FOR_KEY[key], VALUE_CHECKS[key](self.overrides[key]))

    def check(self, keys: Iterable[str]) -> None:
        """Check the values of ``keys`` that are present (require_all reports missing ones)."""
        for key in keys:
            if not self._missing(key) or self.from_flag(key):
                problem = VALUE_CHECKS[key](self.get(key))
                if problem is not None:
                    error = checks.CheckError if self.from_flag(key) else OutputsError
                    raise error(f"{self.label(key)} {problem}")

    def require(self, key: str) -> Any:
        self.require_all([key])
        return self.get(key)

    def require_all(self, keys: list[str]) -> None:
        """Fail naming every missing key at once, each with the flag that can supply it."""
        missing = [k for k in keys if self._missing(k)]
        if not missing:
            return
        names = ", ".join(f"'{k}'" + (f" (or {FLAG_FOR_KEY[k]})" if FLAG_FOR_KEY.get(k) else "") for k in missing)
        why = ("no stack outputs were given" if not self.raw
               else "is this the analyst stack, deployed with the analyst role?")
        raise OutputsError(f"missing stack output{'s' if len(missing) > 1 else ''} {names}: {why}; {HOW_TO_GET}")

    def check_own_membership(self, operation: str) -> None:
        """The membership id is not the collaboration id, the classic mix-up: ``operation`` needs the membership's."""
        if self.get("membership_id") == self.get("collaboration_id"):
            raise OutputsError(f"membership_id equals collaboration_id: {operation} needs this organization's "
                               "membership id; check the stack outputs")

    def _allowed_result_regions(self) -> list[str] | None:
        """Stack output ``allowed_result_regions``, checked; None when the stack exports none (older stacks)."""
        allowed = self.get("allowed_result_regions")
        if allowed is None:
            return None
        if not isinstance(allowed, list) or not allowed or any(checks.check_region(r) for r in allowed):
            raise OutputsError("stack output 'allowed_result_regions' must be a non-empty list of AWS region codes, "
                               f"got {checks.json_type(allowed)}; check the stack outputs")
        return allowed

    def _own_bucket(self) -> bool:
        """The results bucket is the stack's own (output ``results_bucket``), whose region the stack exports."""
        flag = self.overrides.get("results_bucket")
        return flag is None or flag == self.raw.get("results_bucket")

    def check_result_region(self) -> None:
        """Results go only where the collaboration allows (stack output ``allowed_result_regions``).

        The results bucket is in ``results_region`` (the stack's region, where the stack creates it);
        a collaboration created with allowedResultRegions refuses any other ("When specified, results
        can only be written to these Regions", CreateCollaboration): refused here before any request.
        Older stacks export neither: nothing to check, the service still enforces its setting.

        A bucket named by ``--results-bucket`` is not the stack's: its region cannot be known without a
        request (GetBucketLocation), so it is never assumed to be the stack's. With allowed result regions
        exported, such a bucket needs ``--results-region`` or is refused.
        """
        if self.from_flag("results_region") and self._own_bucket():
            exported = self.raw.get("results_region")
            if isinstance(exported, str) and checks.check_region(exported) is None \
                    and exported != self.overrides["results_region"]:
                raise checks.CheckError(
                    f"--results-region {self.overrides['results_region']}: the results bucket "
                    f"s3://{self.get('results_bucket')} is the stack's own, in {exported} (stack output "
                    "'results_region'); give --results-region only with a --results-bucket of another bucket, "
                    "or leave it out")
        allowed = self._allowed_result_regions()
        if allowed is None:
            return
        if not self._own_bucket() and not self.from_flag("results_region"):
            bucket = self.overrides["results_bucket"]
            raise checks.CheckError(
                f"--results-bucket {bucket}: its region is unknown (only the stack's own bucket's is exported) and "
                f"the collaboration allows results only in {allowed} (stack output 'allowed_result_regions'); pass "
                f"--results-region with the bucket's region (`aws s3api get-bucket-location --bucket {bucket}`)")
        key = "results_region" if not self._missing("results_region") else "region"
        where = self.get(key)
        if where not in allowed:
            bucket = self.get("results_bucket")
            shown = f"s3://{bucket}" if bucket else "the membership's default result location"
            raise OutputsError(f"results would be written to {shown} in {where} ({self.label(key)}), "
                               f"outside the collaboration's allowed result regions {allowed} (stack output "
                               "'allowed_result_regions'); use a results bucket in one of them")

    def check_region_flag(self) -> None:
        """``--region`` is where the runner calls Clean Rooms: the collaboration's region, or nothing works.

        A region without a Clean Rooms endpoint cannot answer at all. A membership, its templates and its
        queries exist only in the collaboration's region (every stack
        deploys there; its output ``region`` and ``membership_arn`` say which), so another region answers
        "not found" for all of them. Without either output, the collaboration's allowed result regions
        still bound it: the owner's stack refuses a list without the collaboration's own region.
        """
        if not self.from_flag("region"):
            return
        given = self.overrides["region"]
        if given not in regions.CLEAN_ROOMS_REGIONS:
            raise checks.CheckError(
                f"--region {given} has no AWS Clean Rooms endpoint; it must be one of "
                f"{', '.join(sorted(regions.CLEAN_ROOMS_REGIONS))} ({regions.CLEAN_ROOMS_ENDPOINTS})")
        known: list[tuple[str, str]] = []
        exported = self.raw.get("region")
        if isinstance(exported, str) and checks.check_region(exported) is None:
            known.append((exported, "stack output 'region'"))
        arn = self.raw.get("membership_arn")
        own_membership = not self.from_flag("membership_id") or self.overrides["membership_id"] == self.raw.get(
            "membership_id")
        parts = arn.split(":") if isinstance(arn, str) else []
        if own_membership and len(parts) > 5 and parts[2] == "cleanrooms" and checks.check_region(parts[3]) is None:
            known.append((parts[3], "stack output 'membership_arn'"))
        for region, source in known:
            if given != region:
                raise checks.CheckError(
                    f"--region {given}: this stack's membership and collaboration are in {region} ({source}), and "
                    f"Clean Rooms finds them only there; pass --region {region} or leave --region out")
        allowed = self._allowed_result_regions()
        if not known and allowed is not None and given not in allowed:
            raise checks.CheckError(
                f"--region {given} cannot be the collaboration's region: that is always one of its allowed result "
                f"regions {allowed} (stack output 'allowed_result_regions'); pass --region one of them")

    def check_region_of(self, key: str, arn: str) -> None:
        """A template's ARN (stack output ``key``) is in the region the runner calls."""
        arn_region = arn.split(":")[3]
        if arn_region != self.region:
            raise OutputsError(f"stack output '{key}' is in region {arn_region} but the runner would call Clean Rooms "
                               f"in {self.region} ({self.label('region')}); give the region the templates were "
                               "deployed in")

    @property
    def membership_id(self) -> str:
        return self.require("membership_id")

    @property
    def collaboration_id(self) -> str:
        return self.require("collaboration_id")

    @property
    def region(self) -> str:
        return self.require("region")

    @property
    def results_bucket(self) -> str:
        return self.require("results_bucket")

    @property
    def results_prefix(self) -> str:
        # Normalised so that keyPrefix never gets a double or leading slash.
        return str(self.require("results_prefix")).strip("/")

    @property
    def result_format(self) -> str:
        fmt = self.require("result_format")
        problem = _result_format(fmt)
        if problem:
            raise OutputsError(f"result_format {problem}")
        return fmt.upper()

    @property
    def quicksight(self) -> dict[str, str] | None:
        """The dashboard's dataset to refresh (None when the stack has no dashboard); checked whole."""
        qs = self.get("quicksight")
        if qs is None or qs == {}:
            return None
        shape = ('{"dataset_id": "<dataset id>", "aws_account_id": "<12 digits>", "template": "<template>", '
                 '"published_prefix": "<key prefix>"} or null')
        if not isinstance(qs, dict):
            raise OutputsError(f"stack output 'quicksight' must be an object {shape}, got {checks.json_type(qs)}; "
                               "fix the outputs or pass --no-refresh")
        where = "stack output 'quicksight."
        for key in ("dataset_id", "aws_account_id"):
            if not isinstance(qs.get(key), str) or not qs[key]:
                raise OutputsError(f"{where}{key}' must be a non-empty string, got "
                                   f"{checks.json_type(qs.get(key)) if key in qs else 'nothing'}; {shape}; "
                                   "fix the outputs or pass --no-refresh")
        checks.fail(f"{where}aws_account_id'", checks.check_account_id(qs["aws_account_id"]), OutputsError)
        for key in ("template", "dashboard_id"):
            if qs.get(key) is not None and not isinstance(qs[key], str):
                raise OutputsError(f"{where}{key}' must be a string, got {checks.json_type(qs[key])}")
        if qs.get("published_prefix") is not None:
            checks.fail(f"{where}published_prefix'", checks.check_prefix(qs["published_prefix"]), OutputsError)
        return qs

    @property
    def compute(self) -> Compute | None:
        """The stack's default compute (output ``compute``); None when absent or null."""
        return _compute("stack output 'compute", self.get("compute"))

    def own_accounts(self) -> dict[str, str]:
        """This runner's AWS account id(s), each with the output that says so (for result_receivers)."""
        found: dict[str, str] = {}
        account = self.raw.get("account_id")
        if isinstance(account, str) and checks.check_account_id(account) is None:
            found[account] = "stack output 'account_id'"
        arns = [("membership_arn", self.raw.get("membership_arn"))]
        raw_templates = self.raw.get("analysis_templates")
        if isinstance(raw_templates, dict):
            arns += [(f"analysis_templates.{name}.arn", (spec or {}).get("arn") if isinstance(spec, dict) else None)
                     for name, spec in raw_templates.items()]
        for key, arn in arns:
            parts = arn.split(":") if isinstance(arn, str) else []
            if len(parts) > 4 and checks.check_account_id(parts[4]) is None:
                found.setdefault(parts[4], f"stack output '{key}'")
        return found

    @property
    def result_receivers(self) -> tuple[str, ...]:
        """Member accounts that also get each result (output ``result_receivers``); () when absent or empty."""
        raw = self.get("result_receivers")
        if raw is None:
            return ()
        shape = 'a list of 12-digit AWS account ids as strings (["222233334444", ...])'
        if not isinstance(raw, list):
            raise OutputsError(f"stack output 'result_receivers' must be {shape}, got {checks.json_type(raw)}; "
                               "fix the outputs or pass --no-distribute")
        own = self.own_accounts()
        for i, account in enumerate(raw):
            where = f"stack output 'result_receivers[{i}]'"
            checks.fail(where, checks.check_account_id(account), OutputsError)
            if account in raw[:i]:
                raise OutputsError(f"{where} lists account {account} a second time; list each receiver once")
            if account in own:
                raise OutputsError(
                    f"{where} is {account}, this runner's own account ({own[account]}): Clean Rooms does not accept "
                    "the query runner's account as a member location, and the runner's copy goes to the results "
                    "bucket anyway; remove it from result_receivers (or pass --no-distribute)")
        if raw and self.get("analytics_engine") == "CLEAN_ROOMS_SQL":
            raise OutputsError("stack output 'result_receivers' lists receivers but stack output 'analytics_engine' "
                               "is CLEAN_ROOMS_SQL: Clean Rooms sends one result to several receivers only with the "
                               "Spark analytics engine; pass --no-distribute")
        return tuple(raw)

    @property
    def access_budgets(self) -> dict[str, str] | None:
        """Association name -> association ARN of the tables with an access budget (output ``access_budgets``)."""
        raw = self.get("access_budgets")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise OutputsError("stack output 'access_budgets' must be an object {\"<association name>\": "
                               f"\"<configured table association ARN>\"}}, got {checks.json_type(raw)}")
        for name, arn in raw.items():
            where = f"stack output 'access_budgets.{checks.one_line(name)}'"
            if not name:
                raise OutputsError("stack output 'access_budgets' has an empty association name")
            checks.fail(where, checks.check_model_string(
                arn, "BudgetedResourceArn", "arn:aws:cleanrooms:us-east-1:111122223333:membership/"
                f"{checks.UUID_EXAMPLE}/configuredtableassociation/{checks.UUID_EXAMPLE}"), OutputsError)
        return dict(raw)

    @property
    def pending_jobs(self) -> dict[str, list[str]]:
        """Jobs declared but without a template yet: name -> the tables they wait for (output pending_jobs)."""
        raw = self.get("pending_jobs")
        if raw is None:
            return {}
        shape = 'an object {"<job>": ["<table>", ...]}'
        if not isinstance(raw, dict):
            raise OutputsError(f"stack output 'pending_jobs' must be {shape}, got {checks.json_type(raw)}")
        for name, tables in raw.items():
            if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables):
                raise OutputsError(f"stack output 'pending_jobs.{checks.one_line(name)}' must be a list of table "
                                   f"names, got {checks.json_type(tables)}")
        return dict(raw)

    def job_templates(self) -> dict[str, PySparkTemplate]:
        """The PySpark analysis templates (output job_templates), every field type-checked."""
        raw = self.get("job_templates")
        if raw is None:
            raise OutputsError("missing stack output 'job_templates': stacks deployed before PySpark jobs do not "
                               f"export it (run `pulumi up`); {HOW_TO_GET}")
        if not isinstance(raw, dict):
            raise OutputsError("stack output 'job_templates' must be an object {\"<job>\": {\"arn\": ..., \"id\": ..., "
                               f"\"sha256\": ..., \"parameters\": [...]}}}}, got {checks.json_type(raw)}")
        return {name: _job(name, spec) for name, spec in raw.items()}

    def job(self, name: str) -> PySparkTemplate:
        """One job's template; an unknown or pending job is an input error naming what exists."""
        if self.get("runs_jobs") is False:
            raise OutputsError(f"stack output 'runs_jobs' is false: this membership cannot run PySpark jobs (the "
                               f"analyst's stack declares no analyst.jobs, so it has no CAN_RUN_JOB ability); cannot "
                               f"run {checks.show(name)}")
        jobs = self.job_templates()
        pending = self.pending_jobs
        if name in jobs:
            return jobs[name]
        if name in pending:
            raise OutputsError(f"job {checks.show(name)} is in stack output 'pending_jobs': its template is not "
                               f"created yet, it waits for table{'s' if len(pending[name]) != 1 else ''} "
                               f"{', '.join(pending[name])} to be associated with the collaboration; run `pulumi up` "
                               "on the analyst stack once their owners have deployed")
        known = ", ".join(sorted(jobs)) or "none"
        waiting = f"; pending (waiting for tables): {', '.join(sorted(pending))}" if pending else ""
        raise OutputsError(f"unknown job {checks.show(name)}: stack output 'job_templates' declares {known}{waiting}")

    def templates(self) -> dict[str, Template]:
        """The declared analysis templates, every field type-checked (an error names the key path)."""
        raw = self.require("analysis_templates")
        if not isinstance(raw, dict):
            raise OutputsError("stack output 'analysis_templates' must be an object {\"<template>\": {\"arn\": ..., "
                               f"\"id\": ..., \"parameters\": [...]}}, got {checks.json_type(raw)}")
        return {name: _template(name, spec) for name, spec in raw.items()}

    def template(self, name: str) -> Template:
        templates = self.templates()
        if name not in templates:
            known = ", ".join(sorted(templates)) or "(none)"
            raise OutputsError(f"unknown analysis template {name!r}; the stack declares: {known}")
        return templates[name]


def _template(name: str, spec: Any) -> Template:
    where = f"stack output 'analysis_templates.{name}"
    checks.fail(f"stack output 'analysis_templates': template name {checks.show(name)}",
                checks.check_template_name(name), OutputsError)
    if not isinstance(spec, dict):
        raise OutputsError(f"{where}' must be an object with \"arn\", \"id\" and \"parameters\", "
                           f"got {checks.json_type(spec)}")
    for key in ("arn", "id"):
        if key not in spec:
            raise OutputsError(f"{where}' is malformed (missing {key!r}): {HOW_TO_GET}")
        if not isinstance(spec[key], str) or not spec[key]:
            raise OutputsError(f"{where}.{key}' must be a non-empty string, got {checks.json_type(spec[key])}")
    checks.fail(f"{where}.arn'", checks.check_template_arn(spec["arn"]), OutputsError)
    dp = spec.get("differential_privacy", False)
    if dp is not None and not isinstance(dp, bool):
        raise OutputsError(f"{where}.differential_privacy' must be true or false, got {checks.json_type(dp)}")
    return Template(name=name, arn=spec["arn"], id=spec["id"], parameters=_parameters(where, spec.get("parameters")),
                    differential_privacy=bool(dp), compute=_compute(f"{where}.compute", spec.get("compute")),
                    tables=_tables(where, spec.get("tables")),
                    additional_analyses=_additional(where, spec.get("additional_analyses")),
                    retention=_retention(where, spec.get("retention")))


def _retention(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    """{table: "48h"}: how long each table's producer keeps rows (model/datasets.py ``retention``)."""
    from model import windows

    if value is None:
        return ()
    if not isinstance(value, dict):
        raise OutputsError(f"{where}.retention' must be an object {{table: \"48h\"}}, got {checks.json_type(value)}")
    for table, text in value.items():
        if windows.parse_length(text, maximum=None) is None:
            raise OutputsError(f"{where}.retention.{table}' must be a length such as 48h or 30d, got "
                               f"{checks.show(text) if isinstance(text, str) else checks.json_type(text)}")
    return tuple(sorted(value.items()))


def _additional(where: str, value: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OutputsError(f"{where}.additional_analyses' must be an object {{table: {{\"mode\": ..., "
                           f"\"allowed\": [...]}}}}, got {checks.json_type(value)}")
    found = []
    for table, rule in value.items():
        mode = rule.get("mode") if isinstance(rule, dict) else None
        allowed = rule.get("allowed") if isinstance(rule, dict) else None
        if mode not in ("ALLOWED", "REQUIRED", "NOT_ALLOWED") or not isinstance(allowed, list) or \
                not all(isinstance(a, str) for a in allowed):
            raise OutputsError(f"{where}.additional_analyses.{table}' must be {{\"mode\": ALLOWED | REQUIRED | "
                               f"NOT_ALLOWED, \"allowed\": [ARN patterns]}}, got {checks.json_type(rule)}")
        found.append((table, mode, tuple(allowed)))
    return tuple(found)


def _parameters(where: str, declared: Any) -> tuple[Parameter, ...]:
    """A template's declared parameters; ``where`` is "stack output '<key path>" (no closing quote)."""
    if declared is None:
        declared = []
    if not isinstance(declared, list):
        raise OutputsError(f"{where}.parameters' must be a list of objects "
                           f"{{\"name\": ..., \"type\": ..., \"default\": ...}}, got {checks.json_type(declared)}")
    params: list[Parameter] = []
    for i, p in enumerate(declared):
        at = f"{where}.parameters[{i}]"
        if not isinstance(p, dict):
            raise OutputsError(f"{at}' must be an object {{\"name\": \"<name>\", \"type\": \"<TYPE>\", "
                               f"\"default\": \"<value>\" or null}}, got {checks.json_type(p)}")
        for key in ("name", "type"):
            if not isinstance(p.get(key), str) or not p[key]:
                got = checks.json_type(p[key]) if key in p else "nothing"
                raise OutputsError(f"{at}.{key}' must be a non-empty string, got {got}")
        checks.fail(f"{at}.name'", checks.check_parameter_name(p["name"]), OutputsError)
        if p.get("default") is not None and not isinstance(p["default"], str):
            raise OutputsError(f"{at}.default' must be a string or null, got {checks.json_type(p['default'])}")
        if p["name"] in {q.name for q in params}:
            raise OutputsError(f"{at}.name' declares parameter {p['name']!r} twice")
        params.append(Parameter(p["name"], p["type"].upper(), p.get("default")))
    return tuple(params)


def _tables(where: str, tables: Any) -> tuple[str, ...] | None:
    """The association names a template reads (None: not exported)."""
    if tables is None:
        return None
    if not isinstance(tables, list):
        raise OutputsError(f"{where}.tables' must be a list of the configured table association names the "
                           f"template reads, got {checks.json_type(tables)}")
    for i, table in enumerate(tables):
        if not isinstance(table, str) or not table:
            raise OutputsError(f"{where}.tables[{i}]' must be a non-empty string (an association name), "
                               f"got {checks.json_type(table)}")
    return tuple(tables)


def _job(name: str, spec: Any) -> PySparkTemplate:
    where = f"stack output 'job_templates.{name}"
    checks.fail(f"stack output 'job_templates': job name {checks.show(name)}", checks.check_template_name(name),
                OutputsError)
    if not isinstance(spec, dict):
        raise OutputsError(f"{where}' must be an object with \"arn\", \"id\", \"sha256\" and \"parameters\", "
                           f"got {checks.json_type(spec)}")
    for key in ("arn", "id", "sha256"):
        if key not in spec:
            raise OutputsError(f"{where}' is malformed (missing {key!r}): {HOW_TO_GET}")
    checks.fail(f"{where}.arn'", checks.check_template_arn(spec["arn"]), OutputsError)
    checks.fail(f"{where}.id'", checks.check_template_id(spec["id"]), OutputsError)
    if spec["arn"].rsplit("/", 1)[-1] != spec["id"]:
        raise OutputsError(f"{where}.id' is {spec['id']} but {where}.arn' names template "
                           f"{spec['arn'].rsplit('/', 1)[-1]}: the outputs are not from one deployment")
    checks.fail(f"{where}.sha256'", checks.check_sha256(spec["sha256"]), OutputsError)
    params = _parameters(where, spec.get("parameters"))
    for i, p in enumerate(params):
        # StartProtectedJob's parameter map takes JobParameterName keys.
        checks.fail(f"{where}.parameters[{i}].name'", checks.check_model_string(p.name, "JobParameterName",
                                                                                "min_orders"), OutputsError)
    return PySparkTemplate(name=name, arn=spec["arn"], id=spec["id"], sha256=spec["sha256"].lower(),
                           parameters=params, tables=_tables(where, spec.get("tables")),
                           compute=_compute(f"{where}.compute", spec.get("compute"), job=True))


def _compute(where: str, value: Any, job: bool = False) -> Compute | None:
    """A {"workerType": ..., "workers": ...} output; ``where`` lacks the closing quote. Either key may be absent
    (the stack's and a template's compute); ``job``: job_templates.<name>.compute, a job's worker types and counts."""
    if value is None:
        return None
    if job:
        types, (lo, hi), check_type, check_number = (checks.JOB_WORKER_TYPES, checks.JOB_WORKERS,
                                                     checks.check_job_worker_type, checks.check_job_workers)
    else:
        types, (lo, hi), check_type, check_number = (checks.WORKER_TYPES, checks.SQL_WORKERS,
                                                     checks.check_worker_type, checks.check_workers)
    if not isinstance(value, dict):
        raise OutputsError(f"{where}' must be an object {{\"workerType\": \"{'|'.join(types)}\", "
                           f"\"workers\": {lo}-{hi}}} or null, got {checks.json_type(value)}")
    kind, number = value.get("workerType"), value.get("workers")
    if kind is not None:
        checks.fail(f"{where}.workerType'", check_type(kind), OutputsError)
    if isinstance(number, float) and number.is_integer():
        number = int(number)  # JSON has one number type
    if number is not None:
        checks.fail(f"{where}.workers'", check_number(number), OutputsError)
    return Compute(kind, number)


def load_outputs(source: str | None, stdin: IO[str]) -> dict[str, Any]:
    """Parse `pulumi stack output --json` from stdin ('-') or a file (--outputs); {} when not given."""
    if source is None:
        return {}
    origin = "standard input" if source == "-" else checks.one_line(source)
    try:
        if source == "-":
            text = stdin.read()
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: {exc.strerror or exc}; "
                           f"{HOW_TO_GET}") from exc
    except UnicodeDecodeError as exc:
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: not UTF-8 text ({exc.reason} at "
                           f"byte {exc.start}); {HOW_TO_GET}") from exc
    except ValueError as exc:  # e.g. a NUL character in the path
        raise OutputsError(f"--outputs: cannot read stack outputs from {origin}: {exc}; {HOW_TO_GET}") from exc
    if not text.strip():
        raise OutputsError(f"--outputs: no stack outputs on {origin}: {HOW_TO_GET}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"--outputs: stack outputs on {origin} are not JSON ({exc.msg}, line {exc.lineno} "
                           f"column {exc.colno}): {HOW_TO_GET}") from exc
    except RecursionError as exc:
        raise OutputsError(f"--outputs: stack outputs on {origin} are nested too deeply to be "
                           f"`pulumi stack output --json`: {HOW_TO_GET}") from exc
    if not isinstance(data, dict):
        raise OutputsError(f"--outputs: stack outputs on {origin} must be a JSON object, got "
                           f"{checks.json_type(data)}: {HOW_TO_GET}")
    return data

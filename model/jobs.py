"""PySpark analysis templates: data/jobs/<name>/job.yaml and the script it names.

What the service needs of a job (AWS Clean Rooms User Guide,
create-pyspark-analysis-template and create-user-script; botocore cleanrooms
2022-02-17 and AWS::CleanRooms::AnalysisTemplate): a Python script with a
function `entrypoint(context)` (PySpark 1.0: Python 3.11, Spark 3.5); the
artifacts in a versioned S3 bucket, each with its SHA-256, which Clean Rooms
checks before every run ("Failing any job where artifacts have been modified
or removed"); the tables it reads; up to 50 parameters; per run, workers of
type CR.1X or CR.4X, 4 to 128 of them ("PySpark jobs support a minimum value of
4 and a maximum value of 128"). All of it is checked here, before any resource.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from model.errors import ConfigError
from model.parameters import PARAMETER_TYPES, check_value
from model.stack_models import JOB_WORKER_TYPE, JOB_WORKERS, Block, Text, file_problems, whole
from model.stackfiles import read_yaml
from model.templates import Compute, Parameter, _NAME

MAX_ARTIFACT_BYTES = 1 << 30  # "The maximum size of all combined artifacts [...] is 1 GB"


class JobParameterBlock(Block):
    name: Annotated[str, Field(pattern=r"^[0-9a-zA-Z_]{1,100}$")]
    type: Literal[PARAMETER_TYPES]
    default: Text | None = None


class JobComputeBlock(Block):
    # ProtectedJobWorkerComputeType has no CR.8X.
    worker_type: JOB_WORKER_TYPE = "CR.1X"
    workers: whole(*JOB_WORKERS)


class JobFile(Block):
    """data/jobs/<name>/job.yaml."""

    description: Text = ""
    entry_point: Text = "entrypoint.py"
    tables: Annotated[list[Text], Field(min_length=1)]
    parameters: Annotated[list[JobParameterBlock], Field(max_length=50)] = []
    compute: JobComputeBlock | None = None


@dataclass(frozen=True)
class JobTemplate:
    name: str
    description: str
    directory: Path
    entry_point: str
    tables: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    compute: Compute | None
    sha256: str
    """Hex SHA-256 of the script, as `sha256sum` prints it (the template's source metadata)."""

    @property
    def script(self) -> Path:
        return self.directory / self.entry_point


def load_job(directory: Path) -> JobTemplate:
    name = directory.name
    spec = directory / "job.yaml"
    if not _NAME.match(name):
        raise ConfigError("jobs", f"{directory}: job folder name '{name}' must be lowercase letters, "
                          "digits, '_'")
    if not spec.is_file():
        raise ConfigError("jobs", f"{directory}: no job.yaml (description, entryPoint, tables, parameters)")
    try:
        job = JobFile.model_validate(read_yaml(spec) or {})
    except ValidationError as exc:
        raise ConfigError("jobs", f"{spec}: {file_problems(exc, JobFile)}") from None
    script = directory / job.entry_point
    if Path(job.entry_point).name != job.entry_point or not job.entry_point.endswith(".py") or not script.is_file():
        raise ConfigError("jobs", f"{spec}: entryPoint '{job.entry_point}' must be a .py file beside job.yaml")
    source = script.read_bytes()
    if len(source) > MAX_ARTIFACT_BYTES:
        raise ConfigError("jobs", f"{script}: {len(source)} bytes; Clean Rooms takes at most 1 GB of artifacts")
    _check_entrypoint(script, source)
    for p in job.parameters:
        problem = None if p.default is None else check_value(p.type, p.default)
        if problem:
            raise ConfigError("jobs", f"{spec}: default {p.default!r} of parameter '{p.name}' is {problem}")
    names = [p.name for p in job.parameters]
    if len(set(names)) != len(names):
        raise ConfigError("jobs", f"{spec}: parameters {names} repeat a name")
    compute = Compute(**job.compute.model_dump()) if job.compute else None
    return JobTemplate(name=name, description=job.description[:255], directory=directory,
                       entry_point=job.entry_point, tables=tuple(job.tables),
                       parameters=tuple(Parameter(p.name, p.type, p.default) for p in job.parameters),
                       compute=compute, sha256=hashlib.sha256(source).hexdigest())


def _check_entrypoint(script: Path, source: bytes) -> None:
    """The script parses and defines entrypoint(context) (create-user-script)."""
    try:
        tree = ast.parse(source, filename=str(script))
    except SyntaxError as exc:
        raise ConfigError("jobs", f"{script}:{exc.lineno}: not valid Python: {exc.msg}") from None
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    entry = functions.get("entrypoint")
    if entry is None or len(entry.args.args) != 1:
        raise ConfigError("jobs", f"{script}: needs a top-level function `def entrypoint(context)`, the "
                          "handler Clean Rooms calls")


def load_jobs(directory: Path, names: list[str]) -> tuple[JobTemplate, ...]:
    available = {p.name: p for p in sorted(directory.glob("*/")) if p.is_dir()} if directory.is_dir() else {}
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError("jobs", f"no such job {unknown}; available in {directory}: {sorted(available)}")
    return tuple(load_job(available[n]) for n in names)


def check_jobs(jobs: tuple[JobTemplate, ...], collab, runner) -> list[str]:
    """Each job's tables against the collaboration; refusals raise, waits are returned as warnings.

    ``runner`` is the member whose stack declares the jobs (it creates, runs and
    receives them). A table must exist in the collaboration and be open to its
    jobs: the configured table's analysis method includes DIRECT_JOB (the
    producer's analysisRule.allowJobs), it is not under differential privacy, and
    its rule lets the runner's jobs run (ANY_QUERY with the runner's account among
    allowedAnalysisProviders, or, for a partner's table, the job template approved
    by ARN). What only a partner can fix is a warning: the template is still
    declared, and runs once they deploy.
    """
    warnings = []
    for job in jobs:
        for alias in job.tables:
            table = collab.tables.get(alias)
            where = f"data/jobs/{job.name}/job.yaml"
            if table is None:
                raise ConfigError("jobs", f"{where}: table '{alias}' is not in the collaboration; "
                                  f"tables are {sorted(collab.tables)}")
            if table.differential_privacy:
                raise ConfigError("jobs", f"{where}: table '{alias}' is under differential privacy, "
                                  "which protects SQL queries only; no job can read it")
            own = table.owner.name == runner.name
            rule = table.rule
            if rule is None:
                warnings.append(f"job '{job.name}': {table.owner.name} has not exported the rule of '{alias}' "
                                "yet; the job runs once they deploy with analysisRule.allowJobs: true")
                continue
            problem = None
            if not rule.allow_jobs:
                problem = "does not allow PySpark jobs (analysisRule.allowJobs)"
            elif rule.allowed_analyses == "ANY_QUERY" and runner.account_id not in rule.allowed_analysis_providers:
                problem = (f"allows ANY_QUERY/ANY_JOB only for {list(rule.allowed_analysis_providers)}, not "
                           f"{runner.name}'s account {runner.account_id} (analysisRule.allowedAnalysisProviders)")
            elif rule.allowed_analyses != "ANY_QUERY" and own:
                # The table's rule would need the template's ARN, and the template needs the
                # table associated first (as for the analyst's SQL templates, plan.allowed_analyses).
                problem = ("approves templates by ARN, and a member's own job template cannot be approved on "
                           "its own table (the table exists before the template); use allowedAnalyses: "
                           f"ANY_QUERY with allowedAnalysisProviders including {runner.account_id}")
            if problem is None:
                continue
            message = f"{where}: table '{alias}' of {table.owner.name} {problem}"
            if own:
                raise ConfigError("jobs", message)
            warnings.append(message + f"; the job cannot run until {table.owner.name} changes it")
    return warnings

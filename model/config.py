"""Stack configuration: parsed, typed and validated in one place.

Everything a stack does is decided here from its config, before any resource
is declared. model/stack_models.py types every key (unknown keys, wrong types
and out-of-range values are refused there); this module checks what needs
more than one key or the data (columns against schemas, roles across
partners, keys that only a role uses) and builds the typed Settings the rest
of the project reads. Each error names the config key and what would pass.
Keys are documented in docs/configuration.md.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from model import engines, quicksight
from model import stack_models as sm
from model.datasets import (DIMENSION, IDENTIFIER_ROLES, JOIN_KEY, METRIC, Dataset,
                                 load_dataset, validate_data)
from model.errors import ConfigError
from model.regions import CLEAN_ROOMS_ENDPOINTS, CLEAN_ROOMS_REGIONS
from model.stackfiles import ROOT as PROJECT_DIR
from model.jobs import JobTemplate, load_jobs
from model.templates import Compute, QueryTemplate, load_queries, shown_path
from model.custom_model import CustomModelSpec, check_model_folder
from model.lookalike import LookalikeSpec
from model.training import TrainingSpec, check_training_dataset

OWNER = "collaboration_owner"
PRODUCER = "data_producer"
ANALYST = "analyst"
RECEIVER = "result_receiver"
ROLES = (OWNER, PRODUCER, ANALYST, RECEIVER)

# The analyst queries and receives results; data producers only contribute data.
# Member abilities per the CloudFormation MemberAbility enum.
ANALYST_ABILITIES = ("CAN_QUERY", "CAN_RECEIVE_RESULTS")

_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,200}$")  # S3 key characters that need no escaping


@dataclass(frozen=True)
class Member:
    """An organization in the collaboration, as one stack knows it."""

    name: str
    display_name: str
    account_id: str
    roles: frozenset[str]
    dataset: str | None = None
    runs_jobs: bool = False
    """Creates and runs PySpark analysis templates, and receives their results (CAN_RUN_JOB)."""
    ml_abilities: tuple[str, ...] = ()
    """What it may receive from Clean Rooms ML (CustomMLMemberAbility; create-only, none by default)."""

    @property
    def abilities(self) -> list[str]:
        # A result receiver gets results the analyst distributes to it (StartProtectedQuery
        # resultConfiguration distribute: "collaboration member destination").
        # A member that runs PySpark jobs receives their results too ("The member who creates
        # the PySpark analysis template must also be the member who receives results").
        jobs = ["CAN_RUN_JOB"] if self.runs_jobs else []
        if ANALYST in self.roles:
            return [*ANALYST_ABILITIES, *jobs]
        return ["CAN_RECEIVE_RESULTS", *jobs] if RECEIVER in self.roles or self.runs_jobs else []

    @property
    def is_analyst(self) -> bool:
        return ANALYST in self.roles


@dataclass(frozen=True)
class Partner(Member):
    """Another organization, and where to read its stack outputs."""

    stack: str | None = None
    # Outputs given in config, for partners whose stack lives in another backend.
    outputs: Mapping[str, Any] = field(default_factory=dict)
    added_by: str = "invitation"
    """invitation (a member when the collaboration is created) or changeRequest (added later)."""


@dataclass(frozen=True)
class C3rSpec:
    """Cryptographic computing (C3R); only for client-side encrypted data."""

    allow_cleartext: bool
    allow_duplicates: bool
    allow_joins_on_columns_with_different_names: bool
    preserve_nulls: bool


@dataclass(frozen=True)
class CollaborationSpec:
    name: str
    description: str
    c3r: C3rSpec | None
    auto_approved_change_types: tuple[str, ...] = ()
    change_request_timeout_seconds: int = 600
    allowed_result_regions: tuple[str, ...] = ()
    """CreateCollaboration allowedResultRegions: results can only be written to these (create-only)."""


@dataclass(frozen=True)
class PrivacyBudgetSpec:
    epsilon: int
    users_noise_per_query: int
    auto_refresh: str


@dataclass(frozen=True)
class AnalysisRuleSpec:
    type: str
    # CUSTOM
    allowed_analyses: str = "templates"
    allowed_analysis_providers: tuple[str, ...] = ()
    differential_privacy_column: str | None = None
    user_contribution_limit: int = 1
    """Rows per user the local clean room keeps in a DP aggregation (not sent to AWS)."""
    threshold_column: str | None = None
    threshold_minimum: int | None = None
    disallowed_output_columns: tuple[str, ...] = ()
    allow_jobs: bool = False
    additional_analyses: str = "NOT_ALLOWED"
    allowed_additional_analyses: tuple[str, ...] = ()
    # AGGREGATION
    aggregate_columns: tuple[tuple[str, tuple[str, ...]], ...] = ()
    dimension_columns: tuple[str, ...] = ()
    scalar_functions: tuple[str, ...] = ()
    output_constraints: tuple[tuple[str, int], ...] = ()
    join_required: bool = False
    # AGGREGATION and LIST
    join_columns: tuple[str, ...] = ()
    # LIST
    list_columns: tuple[str, ...] = ()

    @property
    def differential_privacy(self) -> bool:
        return self.differential_privacy_column is not None


@dataclass(frozen=True)
class ScheduleSpec:
    """A template run every ``every_minutes`` over the last whole ``window`` (components/scheduled_query.py)."""

    template: str
    every_minutes: int
    window: str


@dataclass(frozen=True)
class AnalystSpec:
    queries: tuple[QueryTemplate, ...]
    result_format: str
    results_prefix: str
    compute: Compute | None = None
    """The stack's default Spark compute per query (a template's own setting wins)."""
    schedules: tuple[ScheduleSpec, ...] = ()


@dataclass(frozen=True)
class AccessBudgetSpec:
    """ACCESS_BUDGET: the most times the table may be used, per period and/or in all."""

    period: str | None = None  # CALENDAR_DAY | CALENDAR_WEEK | CALENDAR_MONTH
    period_budget: int | None = None
    auto_refresh: bool = True
    lifetime: int | None = None

    def export(self) -> dict[str, Any]:
        return {"period": self.period, "periodBudget": self.period_budget, "autoRefresh": self.auto_refresh,
                "lifetime": self.lifetime}


@dataclass(frozen=True)
class ResultsSpec:
    """Where Clean Rooms writes results for a member that receives them (an analyst or a receiver)."""

    result_format: str
    results_prefix: str


@dataclass(frozen=True)
class QuickSightSpec:
    enabled: bool
    owners: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    template: str = "customer_segments"


@dataclass(frozen=True)
class AuditSpec:
    trail: bool = False
    retention_days: int = 365
    lock_mode: str = "GOVERNANCE"
    log_retention_days: int = 365
    log_group_wait_seconds: int = 120


@dataclass(frozen=True)
class StreamSpec:
    """The producer's table is an Iceberg table fed by Kinesis and Firehose (components/event_stream.py)."""

    time_column: str
    retention_hours: int = 24
    buffer_seconds: int = 300
    buffer_mb: int = 128


@dataclass(frozen=True)
class BudgetAlarmSpec:
    below_percent: int = 20
    schedule_minutes: int = 60
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class PermissionSetSpec:
    role: str                 # analyst | producer | auditor
    group: str
    session_duration: str
    assign: bool


@dataclass(frozen=True)
class AccessSpec:
    """Federated access through IAM Identity Center (components/federated_access.py)."""

    identity_account_id: str
    instance_arn: str
    region: str
    profile: str | None
    assume_role_arn: str | None
    scope_tag: str
    manage_attributes: bool
    attribute_source: str
    permission_sets: tuple[PermissionSetSpec, ...]


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    data_dir: Path
    org: Member
    region: str
    profile: str | None
    assume_role_arn: str | None
    analytics_engine: str
    partners: tuple[Partner, ...]
    join_key: str
    protect: bool
    query_logging: bool
    payer: str  # name of the member that pays for query compute
    ml_payers: "MLPayers | None" = None
    stream: StreamSpec | None = None
    """The producer's table is fed by a stream, not an uploaded file (components/event_stream.py)."""
    """Who pays for model training and inference; None: no ML in the collaboration, no ML payment sent."""
    iam_propagation_seconds: int = 30
    collaboration: CollaborationSpec | None = None
    budget: PrivacyBudgetSpec | None = None
    dataset: Dataset | None = None
    data_region: str | None = None
    """Region of a producer's data bucket and Glue table (the collaboration's unless dataRegion says)."""
    analysis_rule: AnalysisRuleSpec | None = None
    access_budget: AccessBudgetSpec | None = None
    analyst: AnalystSpec | None = None
    receiver: ResultsSpec | None = None
    quicksight: QuickSightSpec = QuickSightSpec(enabled=False)
    jobs: tuple[JobTemplate, ...] = ()
    """This member's PySpark analysis templates (data/jobs/<name>/)."""
    audit: AuditSpec = AuditSpec()
    """The audit trail and log retention (docs/governance.md); the defaults: no trail, logs kept a year."""
    budget_alarm: BudgetAlarmSpec | None = None
    """An alarm when the collaboration's privacy budget runs low (components/budget_alarm.py)."""
    access: AccessSpec | None = None
    """Permission sets in the organization's IAM Identity Center for this account's people."""
    training: TrainingSpec | None = None
    """Clean Rooms ML training data this member offers for lookalike models (model/training.py)."""
    lookalike_seeds: bool = False
    """This member seeds partners' lookalike models (components/seed_store.py, queryrunner audience)."""
    custom_model: CustomModelSpec | None = None
    """A custom model this member provides to the collaboration (components/custom_model.py)."""
    ml_training: bool = False
    """This member trains and runs custom models on ML input channels (components/ml_trainer.py, queryrunner ml)."""

    @property
    def results(self) -> ResultsSpec | None:
        """This member's results destination: the analyst's, or a result receiver's or job runner's."""
        if self.analyst is not None:
            return ResultsSpec(self.analyst.result_format, self.analyst.results_prefix)
        return self.receiver

    @property
    def result_receivers(self) -> list[str]:
        """Partners the analyst distributes results to (role result_receiver)."""
        return [p.account_id for p in self.partners if RECEIVER in p.roles]

    @property
    def roles(self) -> frozenset[str]:
        return self.org.roles

    @property
    def members(self) -> tuple[Member, ...]:
        return (self.org, *self.partners)

    @property
    def analyst_member(self) -> Member:
        return next(m for m in self.members if m.is_analyst)


# --------------------------------------------------------------------------


def load_settings(values: Mapping[str, Any], project: str, stack: str,
                  data_dir: Path | None = None, check_data: bool = True) -> Settings:
    """Build Settings from a stack's config values (keys without the project prefix).

    ``data_dir`` overrides the ``dataDir`` key (a folder relative to the project).
    """
    config = sm.parse(dict(values))
    data_dir = data_dir or _data_dir(config.data_dir)
    roles = frozenset(config.roles)
    org = Member(name=config.organization, display_name=config.display_name or config.organization,
                 account_id=config.account_id, roles=roles, dataset=config.dataset or None,
                 runs_jobs=bool(config.jobs), ml_abilities=tuple(sorted(set(config.ml_abilities))))
    if config.assume_role_arn and config.assume_role_arn.split(":")[4] != org.account_id:
        raise ConfigError("assumeRoleArn", f"role is in account {config.assume_role_arn.split(':')[4]}, "
                          f"but accountId is {org.account_id}")
    if config.region not in CLEAN_ROOMS_REGIONS:
        raise ConfigError("region", f"{config.region!r} has no AWS Clean Rooms endpoint "
                          f"({CLEAN_ROOMS_ENDPOINTS}); allowed values: {list(CLEAN_ROOMS_REGIONS)}")
    partners = tuple(_partner(p) for p in config.partners)
    _check_members(org, partners)
    _check_role_keys(config, roles)

    engine = config.analytics_engine
    # Unless configured, the member who can query pays (botocore PaymentConfiguration docs);
    # every stack must name the same payer, since memberships must match the collaboration.
    names = [m.name for m in (org, *partners)]
    payer = config.query_compute_payer or next(m.name for m in (org, *partners) if m.is_analyst)
    if payer not in names:
        raise ConfigError("queryComputePayer", f"got {payer!r}; allowed values: {names}")
    if any(p.name == payer and p.added_by == "changeRequest" for p in partners):
        raise ConfigError("queryComputePayer", f"'{payer}' is added by change request, which cannot make it the "
                          "payer; name a member invited when the collaboration is created")

    settings = dict(project=project, stack=stack, data_dir=data_dir, org=org, region=config.region,
                    profile=config.profile or None, assume_role_arn=config.assume_role_arn or None,
                    analytics_engine=engine, partners=partners, join_key=config.join_key, protect=config.protect,
                    query_logging=config.query_logging, payer=payer, ml_payers=_ml_payers(config, org, partners),
                    iam_propagation_seconds=config.iam_propagation_seconds)

    if OWNER in roles:
        engines.check_new_collaboration(engine)
        settings["collaboration"] = _collaboration(config.collaboration, partners, config.region)
    if PRODUCER in roles:
        dataset, rule = _producer(config, org, partners, engine, data_dir, check_data)
        settings["dataset"], settings["analysis_rule"] = dataset, rule
        settings["data_region"] = config.data_region or config.region
        if config.stream is not None:
            settings["stream"] = _stream(config.stream, dataset, config)
        elif dataset.partitioned_by:
            # A folder of partitions is how the local clean room rehearses a streamed table; in AWS the stream
            # fills the table (an uploaded file has no partitions to keep in step).
            raise ConfigError("dataset", f"{dataset.name}'s data is a folder of hourly partitions (partitionedBy "
                              f"'{dataset.partitioned_by}' in its schema.yaml), which only a streamed table is; add "
                              f"stream (timeColumn: {dataset.partitioned_by}) or name a data file in schema.yaml")
        if config.access_budget is not None:
            period = config.access_budget.per_period
            settings["access_budget"] = AccessBudgetSpec(
                period=period.period if period else None, period_budget=period.budget if period else None,
                auto_refresh=period.auto_refresh if period else True, lifetime=config.access_budget.lifetime)
    if config.differential_privacy is not None:
        # This stack sets the collaboration's one privacy budget (components/privacy_budget.py).
        settings["budget"] = PrivacyBudgetSpec(**config.differential_privacy.model_dump())
    if ANALYST in roles:
        settings["analyst"] = _analyst(config.analyst or sm.AnalystBlock(), data_dir)
    if _own_results_store(config, roles):
        block = config.results or sm.ResultsBlock()
        settings["receiver"] = ResultsSpec(block.result_format, _prefix(block.results_prefix, "results.resultsPrefix"))
    settings["quicksight"] = _quicksight(config.quicksight, org, settings.get("analyst"))
    settings["jobs"] = load_jobs(data_dir / "jobs", list(config.jobs))
    if config.audit is not None:
        settings["audit"] = AuditSpec(**config.audit.model_dump())
    if config.training_data is not None:
        training = load_dataset(config.training_data.dataset, data_dir)
        if training.partitioned_by:
            raise ConfigError("trainingData.dataset", f"{training.name}'s data is a folder of hourly partitions "
                              "(partitionedBy in its schema.yaml); training data is one CSV or Parquet file")
        if check_data:
            validate_data(training)
        check_training_dataset(training)
        settings["training"] = TrainingSpec(training, config.training_data.description or training.description,
                                            _lookalike(config.training_data.lookalike))
    if config.access is not None:
        settings["access"] = _access(config.access, roles, config.region)
    settings["lookalike_seeds"] = config.lookalike_seeds
    if config.ml_training and ANALYST not in roles:
        # "Run queries - assigned to the member who will initiate model training" (User Guide,
        # create-custom-ml-collaboration); ML input channels are created by "members with the ability to
        # query data" (create-ml-input-channel).
        raise ConfigError("mlTraining", f"needs the {ANALYST} role (the member who can query creates ML input "
                          "channels and starts training); this stack's roles: " + ", ".join(sorted(roles)))
    settings["ml_training"] = config.ml_training
    if config.custom_model is not None:
        settings["custom_model"] = _custom_model(config.custom_model, org, partners)
    if config.budget_alarm is not None:
        block = config.budget_alarm
        settings["budget_alarm"] = BudgetAlarmSpec(block.below_percent, block.schedule_minutes, tuple(block.emails))
    return Settings(**settings)


def _data_dir(value: str) -> Path:
    path = PROJECT_DIR / value
    if not path.is_dir():
        raise ConfigError("dataDir", f"{value!r} is not a folder of the project ({path} does not exist); "
                          "it holds <dataset>/schema.yaml, the data files and queries/*.sql")
    return path


def _partner(block: sm.PartnerBlock) -> Partner:
    return Partner(name=block.name, display_name=block.display_name or block.name, account_id=block.account_id,
                   roles=frozenset(block.roles), dataset=block.dataset or None, stack=block.stack,
                   outputs=block.outputs or {}, added_by=block.added_by, runs_jobs=block.runs_jobs,
                   ml_abilities=tuple(sorted(set(block.ml_abilities))))


def _own_results_store(config: sm.StackConfig, roles: frozenset[str]) -> bool:
    """Whether results land in this member's own results store (the ``results`` block).

    A result receiver's distributed query results, and the job results of a member
    other than the analyst (the analyst's go where its ``analyst`` block says).
    """
    return RECEIVER in roles or (bool(config.jobs) and ANALYST not in roles)


# Keys that only a role uses: set without the role, they would silently do nothing.
_ROLE_KEYS = {"collaboration": OWNER, "analysisRule": PRODUCER, "accessBudget": PRODUCER,
              "dataset": PRODUCER, "dataRegion": PRODUCER, "stream": PRODUCER, "analyst": ANALYST,
              "results": RECEIVER}


def _check_role_keys(config: sm.StackConfig, roles: frozenset[str]) -> None:
    for key, role in _ROLE_KEYS.items():
        field = next(name for name, f in sm.StackConfig.model_fields.items() if (f.alias or name) == key)
        if key == "results" and _own_results_store(config, roles):
            continue  # a receiver, or a member that runs jobs: its results land there
        if getattr(config, field) not in (None, "") and role not in roles:
            raise ConfigError(key, f"only applies to an organization with role '{role}', and this stack's roles "
                              f"are {sorted(roles)}; remove the key or add the role")


def _check_members(org: Member, partners: tuple[Partner, ...]) -> None:
    members = (org, *partners)
    seen: dict[tuple[str, str], int] = {}
    for i, partner in enumerate(partners):
        for key, what, mine, theirs in (("name", "organization", org.name, partner.name),
                                        ("accountId", "account", org.account_id, partner.account_id)):
            if mine == theirs:
                raise ConfigError(f"partners[{i}].{key}", f"is {theirs!r}, this stack's own {what}; partners "
                                  "lists the other members of the collaboration")
            if (key, theirs) in seen:
                raise ConfigError(f"partners[{i}].{key}", f"{theirs!r} is already partners[{seen[key, theirs]}]'s; "
                                  "each member is listed once, with its own AWS account")
            seen[key, theirs] = i
    owners = [m.name for m in members if OWNER in m.roles]
    if len(owners) != 1:
        raise ConfigError("roles", f"exactly one organization must have role '{OWNER}' "
                          f"(in 'roles' or a partner's 'roles'); found {owners or 'none'}")
    analysts = [m.name for m in members if ANALYST in m.roles]
    # Clean Rooms allows a single member with the CAN_QUERY ability.
    if len(analysts) != 1:
        raise ConfigError("roles", f"exactly one organization must have role '{ANALYST}' "
                          f"(it can query and receives results); found {analysts or 'none'}")
    both = [m.name for m in members if ANALYST in m.roles and RECEIVER in m.roles]
    if both:
        raise ConfigError("roles", f"{both} has roles analyst and {RECEIVER}; the analyst receives results already, "
                          f"{RECEIVER} is for other members")
    for i, partner in enumerate(partners):
        # MemberChangeSpecification: "CAN_QUERY and CAN_RUN_JOB" are "currently not supported".
        if partner.added_by == "changeRequest" and (ANALYST in partner.roles or OWNER in partner.roles):
            raise ConfigError(f"partners[{i}].addedBy", "a change request cannot add the analyst (CAN_QUERY is not "
                              "supported for added members) or the owner; use addedBy: invitation")
        if PRODUCER in partner.roles and not partner.dataset:
            raise ConfigError(f"partners[{i}].dataset", f"partner '{partner.name}' produces data; name its "
                              "dataset (a folder under dataDir) so the join key and its templates can be checked")


def _stream(block: sm.StreamBlock, dataset: Dataset, config: sm.StackConfig) -> StreamSpec:
    timestamps = [c.name for c in dataset.columns if c.duckdb_type == "TIMESTAMP"]
    if block.time_column not in timestamps:
        raise ConfigError("stream.timeColumn", f"got {block.time_column!r}; the dataset {dataset.name}'s timestamp "
                          f"columns: {timestamps or 'none (a stream needs a timestamp_ntz column)'}")
    if dataset.partitioned_by and block.time_column != dataset.partitioned_by:
        raise ConfigError("stream.timeColumn", f"got {block.time_column!r}; the dataset {dataset.name}'s data is "
                          f"partitioned by '{dataset.partitioned_by}' (schema.yaml partitionedBy): use that column")
    if config.data_region and config.data_region != config.region:
        raise ConfigError("stream", "a streamed table stays in the collaboration's region; remove dataRegion")
    return StreamSpec(block.time_column, block.retention_hours, block.buffer_seconds, block.buffer_mb)


@dataclass(frozen=True)
class MLPayers:
    """The members that pay for Clean Rooms ML model training and model inference (names)."""

    training: str
    inference: str


def _ml_payers(config: sm.StackConfig, org: Member, partners: tuple[Partner, ...]) -> MLPayers | None:
    """modelTrainingPayer / modelInferencePayer, default the member who can query ("If the collaboration creator
    hasn't specified anyone as the member paying for model training costs, then the member who can query is the
    default payer", botocore ModelTrainingPaymentConfig). Sent only for a collaboration with ML: a member with ML
    abilities, or a payer named. Every stack decides from what all of them declare, so the owner's collaboration
    and each membership agree (a membership that disagrees is refused, MembershipModelTrainingPaymentConfig)."""
    members = (org, *partners)
    named = {"modelTrainingPayer": config.model_training_payer, "modelInferencePayer": config.model_inference_payer}
    if not any(named.values()) and not any(m.ml_abilities for m in members):
        return None
    analyst = next(m.name for m in members if m.is_analyst)
    names = [m.name for m in members]
    chosen = {}
    for key, value in named.items():
        payer = value or analyst
        if payer not in names:
            raise ConfigError(key, f"got {payer!r}; allowed values: {names}")
        if any(p.name == payer and p.added_by == "changeRequest" for p in partners):
            raise ConfigError(key, f"'{payer}' is added by change request, which cannot make it a payer; name a "
                              "member invited when the collaboration is created")
        chosen[key] = payer
    return MLPayers(chosen["modelTrainingPayer"], chosen["modelInferencePayer"])


def _custom_model(block: sm.CustomModelBlock, org: Member, partners: tuple[Partner, ...]) -> CustomModelSpec:
    check_model_folder(block.name, bool(block.inference_tag))
    members = {m.account_id: m for m in (org, *partners)}
    for i, account in enumerate(block.logs_to):
        if account not in members:
            raise ConfigError(f"customModel.logsTo[{i}]", f"{account} is not a member of the collaboration; the "
                              f"containers' logs go only to members: {sorted(members)}")
    # ML outputs only to the members allowed to receive them (the collaboration's ML abilities, create-only).
    for wanted, ability in ((block.exports, "CAN_RECEIVE_MODEL_OUTPUT"),
                            (block.inference_tag, "CAN_RECEIVE_INFERENCE_OUTPUT")):
        if wanted and not any(ability in m.ml_abilities for m in members.values()):
            key = "customModel.exports" if ability == "CAN_RECEIVE_MODEL_OUTPUT" else "customModel.inferenceTag"
            raise ConfigError(key, f"needs a member with the ML ability {ability} (mlAbilities), and none has it; "
                              "add it to that member's mlAbilities (and every stack's entry for it) before the "
                              f"collaboration is created, or remove {key.split('.')[1]}")
    return CustomModelSpec(block.name, block.description or f"Custom model {block.name}", block.train_tag,
                           block.inference_tag or None, block.images_pushed, tuple(block.metrics), block.metrics_noise,
                           tuple(block.logs_to) or (org.account_id,), block.max_artifact_gb, tuple(block.exports),
                           block.max_export_gb, block.max_inference_output_gb)


def _lookalike(block: sm.LookalikeBlock | None) -> LookalikeSpec | None:
    if block is None:
        return None
    sizes = block.audience_sizes
    if sizes.type == "PERCENTAGE" and any(b > 100 for b in sizes.bins):
        raise ConfigError("trainingData.lookalike.audienceSizes.bins", f"are percentages of the training data's "
                          f"users with type PERCENTAGE: 1 to 100, got {sizes.bins}")
    if len(set(sizes.bins)) != len(sizes.bins):
        raise ConfigError("trainingData.lookalike.audienceSizes.bins", f"lists a size twice: {sizes.bins}")
    return LookalikeSpec(block.name, block.min_matching_seed_size, sizes.type, tuple(sorted(sizes.bins)),
                         block.share_metrics, block.wait_minutes)


# Which stack role a permission set is for; the auditor is for every member.
_PERMISSION_SET_ROLES = {"analyst": ANALYST, "producer": PRODUCER, "auditor": None}


def _access(block: sm.AccessBlock, roles: frozenset[str], region: str) -> AccessSpec:
    if block.identity_assume_role_arn and block.identity_assume_role_arn.split(":")[4] != block.identity_account_id:
        raise ConfigError("access.identityAssumeRoleArn", f"role is in account "
                          f"{block.identity_assume_role_arn.split(':')[4]}, but access.identityAccountId is "
                          f"{block.identity_account_id}")
    sets = []
    for name, role in _PERMISSION_SET_ROLES.items():
        spec = getattr(block.permission_sets, name)
        if spec is None:
            continue
        if role is not None and role not in roles:
            raise ConfigError(f"access.permissionSets.{name}", f"is for an organization with role '{role}', and this "
                              f"stack's roles are {sorted(roles)}; remove it or add the role")
        sets.append(PermissionSetSpec(name, spec.group, spec.session_duration, spec.assign))
    if not sets:
        raise ConfigError("access.permissionSets", "declares none; give at least one of analyst, producer, auditor "
                          "(each {group, sessionDuration, assign})")
    return AccessSpec(block.identity_account_id, block.instance_arn, block.identity_region or region,
                      block.identity_profile or None,
                      block.identity_assume_role_arn or None, block.scope_tag, block.manage_attributes,
                      block.attribute_source, tuple(sets))


def _collaboration(block: sm.CollaborationBlock | None, partners: tuple[Partner, ...],
                   region: str) -> CollaborationSpec:
    if block is None:
        raise ConfigError("collaboration", "the collaboration owner needs a collaboration block with "
                          "'name' and 'description'")
    # "Members invited per collaboration": 5 by default, adjustable (AWS Clean Rooms quotas,
    # https://docs.aws.amazon.com/clean-rooms/latest/userguide/clean-rooms-quotas.html). Counted
    # over every partner, those a change request adds included: the safer reading of "invited".
    if len(partners) > block.invited_members_quota:
        raise ConfigError("partners", f"the collaboration invites {len(partners)} members, above the quota of "
                          f"{block.invited_members_quota} ('Members invited per collaboration', 5 unless raised: "
                          "https://docs.aws.amazon.com/clean-rooms/latest/userguide/clean-rooms-quotas.html); have "
                          "it raised in Service Quotas for this account and region, then set "
                          "collaboration.invitedMembersQuota to the new value")
    # Every results bucket is in the collaboration's region (all stacks share it: plan.check_partners).
    result_regions = tuple(block.allowed_result_regions or (region,))
    if region not in result_regions:
        raise ConfigError("collaboration.allowedResultRegions", f"is {list(result_regions)}, without {region!r}: "
                          "every member's results bucket is in the collaboration's region, so no result could be "
                          f"written; add {region!r}")
    c3r = C3rSpec(**block.c3r.model_dump()) if block.c3r is not None else None
    return CollaborationSpec(name=block.name, description=block.description, c3r=c3r,
                             allowed_result_regions=result_regions,
                             auto_approved_change_types=tuple(block.auto_approved_change_types),
                             change_request_timeout_seconds=block.change_request_timeout_seconds)


def _producer(config: sm.StackConfig, org: Member, partners, engine: str, data_dir: Path,
              check_data: bool) -> tuple[Dataset, AnalysisRuleSpec]:
    if not org.dataset:
        raise ConfigError("dataset", f"role '{PRODUCER}' needs a dataset: the name of a folder "
                          f"in {data_dir} with a schema.yaml")
    dataset = load_dataset(org.dataset, data_dir)
    if check_data:
        validate_data(dataset)
    # The join key must exist, with role join_key, in every producer's schema.
    join_key = config.join_key
    for member in (org, *partners):
        if PRODUCER not in member.roles:
            continue
        schema = dataset if member is org else load_dataset(member.dataset, data_dir)
        column = schema.column(join_key)
        if column is None or column.role != JOIN_KEY:
            raise ConfigError("joinKey", f"join key '{join_key}' must be a column with role '{JOIN_KEY}' "
                              f"in every producer's dataset; dataset '{schema.name}' of '{member.name}' "
                              f"has join keys {schema.names_with_role(JOIN_KEY)}")
    if config.analysis_rule is None:
        raise ConfigError("analysisRule", "a data producer needs an analysis rule (a mapping with 'type', one of "
                          "CUSTOM, AGGREGATION, LIST); without one the table can never be queried")
    members = [org.account_id, *(p.account_id for p in partners)]
    rule = _analysis_rule(config.analysis_rule, dataset, join_key, members)
    problem = receiver_with_dp(org, rule)
    if problem:
        raise ConfigError("analysisRule.differentialPrivacy", problem)
    job_runners = {m.account_id for m in (org, *partners) if m.runs_jobs}
    others = sorted((set(rule.allowed_analysis_providers) & job_runners) - {org.account_id})
    if rule.allow_jobs and rule.allowed_analyses == "ANY_QUERY" and others:
        # ANY_JOB beside ANY_QUERY: a PySpark job is code that sees the rows, and no output
        # rule constrains what it returns (aggregation thresholds, disallowed output columns
        # and differential privacy apply to SQL only). A partner's jobs are approved one by one.
        raise ConfigError("analysisRule.allowJobs", f"would let {others} run any PySpark code on this table's "
                          "rows; set allowedAnalyses: templates to approve each job template, or allow jobs "
                          "only for your own account")
    engines.check_rule(engine, rule)
    return dataset, rule


def receiver_with_dp(member: Member, rule: AnalysisRuleSpec | None) -> str | None:
    """Why ``member`` cannot protect its table with differential privacy, or None.

    User Guide, differential-privacy, Considerations: "The member who can receive results can't
    use differential privacy. They will configure a custom analysis rule with differential
    privacy turned off for their configured tables." Who receives results is what the member's
    abilities say (CAN_RECEIVE_RESULTS: the analyst, a result_receiver, a member running jobs).
    """
    if rule is None or not rule.differential_privacy or "CAN_RECEIVE_RESULTS" not in member.abilities:
        return None
    why = sorted(r for r in member.roles if r in (ANALYST, RECEIVER)) or ["runs PySpark jobs"]
    return (f"'{member.name}' can receive results ({', '.join(why)}: CAN_RECEIVE_RESULTS), and \"the member who "
            "can receive results can't use differential privacy\" (User Guide, differential-privacy, "
            "Considerations); remove differentialPrivacy from its analysisRule (an aggregationThreshold protects "
            "a CUSTOM rule instead), or leave the analyst and result_receiver roles and jobs to other members")


def _columns(names, dataset: Dataset, where: str, roles: tuple[str, ...] | None = None) -> tuple[str, ...]:
    for name in names:
        column = dataset.column(name)
        if column is None:
            raise ConfigError(where, f"column '{name}' is not in dataset '{dataset.name}'; "
                              f"its columns are {dataset.column_names}")
        if roles is not None and column.role not in roles:
            raise ConfigError(where, f"column '{name}' has role '{column.role}' in dataset "
                              f"'{dataset.name}'; here only roles {list(roles)} are allowed")
    return tuple(names)


def _analysis_rule(block, dataset: Dataset, join_key: str, members: list[str]) -> AnalysisRuleSpec:
    identifiers = tuple(dataset.names_with_role(*IDENTIFIER_ROLES))
    if block.type == "CUSTOM":
        providers = tuple(block.allowed_analysis_providers)
        if block.allowed_analyses == "ANY_QUERY" and not providers:
            raise ConfigError("analysisRule.allowedAnalysisProviders",
                              "allowedAnalyses ANY_QUERY needs the account ids allowed to run queries")
        if block.allowed_analyses == "templates" and providers:
            raise ConfigError("analysisRule.allowedAnalysisProviders",
                              "only applies with allowedAnalyses ANY_QUERY (Clean Rooms allows templates or "
                              "accounts, not both); remove it or set allowedAnalyses: ANY_QUERY")
        for i, account in enumerate(providers):
            if account not in members:
                raise ConfigError(f"analysisRule.allowedAnalysisProviders[{i}]",
                                  f"{account} is not a member of the collaboration; members are {members}")
        dp_column, limit = None, 1
        if block.differential_privacy is not None:
            dp_column = block.differential_privacy.user_identifier_column
            limit = block.differential_privacy.user_contribution_limit
            _columns([dp_column], dataset, "analysisRule.differentialPrivacy.userIdentifierColumn",
                     IDENTIFIER_ROLES)
        if block.differential_privacy is not None and block.aggregation_threshold is not None:
            # API AnalysisRuleCustom.aggregationThresholds: "You can't use aggregation thresholds with
            # differential privacy"; User Guide custom-min-agg-thresholds: "Differential privacy is turned
            # off and is not supported with minimum aggregation thresholds or comparison controls."
            raise ConfigError("analysisRule.aggregationThreshold",
                              "cannot be combined with analysisRule.differentialPrivacy in one rule: \"You can't use "
                              "aggregation thresholds with differential privacy\" (API AnalysisRuleCustom; User "
                              "Guide, custom-min-agg-thresholds); keep one of them: differentialPrivacy (noise on "
                              "every aggregate) or aggregationThreshold (groups below the minimum suppressed)")
        t_column = t_min = None
        if block.aggregation_threshold is not None:
            t_column, t_min = block.aggregation_threshold.column, block.aggregation_threshold.minimum
            _columns([t_column], dataset, "analysisRule.aggregationThreshold.column", IDENTIFIER_ROLES)
        extra = _columns(block.disallowed_output_columns, dataset, "analysisRule.disallowedOutputColumns")
        # Identifier columns are never output, whatever the config says.
        disallowed = tuple(dict.fromkeys((*identifiers, *extra)))
        if block.allow_jobs and dp_column:
            # Differential privacy protects SQL queries; the User Guide's PySpark pages offer no
            # DP for jobs, so a DP table is not opened to them here.
            raise ConfigError("analysisRule.allowJobs", "jobs cannot be allowed on a table under differential "
                              "privacy (it protects SQL queries only); remove one of the two")
        if block.allowed_additional_analyses and block.additional_analyses == "NOT_ALLOWED":
            raise ConfigError("analysisRule.allowedAdditionalAnalyses", "lists ML resources, but additionalAnalyses is "
                              "NOT_ALLOWED (the default: no Clean Rooms ML on this table); set additionalAnalyses: "
                              "ALLOWED (or REQUIRED) or remove the list")
        return AnalysisRuleSpec(type="CUSTOM", allowed_analyses=block.allowed_analyses,
                                allowed_analysis_providers=providers, differential_privacy_column=dp_column,
                                user_contribution_limit=limit,
                                threshold_column=t_column, threshold_minimum=t_min,
                                disallowed_output_columns=disallowed, allow_jobs=block.allow_jobs,
                                additional_analyses=block.additional_analyses,
                                allowed_additional_analyses=tuple(block.allowed_additional_analyses))
    join_columns = _columns(block.join_columns if block.join_columns is not None else [join_key], dataset,
                            "analysisRule.joinColumns", (JOIN_KEY,))
    if block.type == "LIST":
        return AnalysisRuleSpec(type="LIST", join_columns=join_columns,
                                list_columns=_columns(block.list_columns, dataset, "analysisRule.listColumns",
                                                      (DIMENSION,)))
    aggregates = []
    for i, agg in enumerate(block.aggregate_columns):
        # Counting distinct identifiers is how a rule counts people; every
        # other aggregate is over metrics.
        roles = (METRIC, *IDENTIFIER_ROLES) if agg.function == "COUNT_DISTINCT" else (METRIC,)
        aggregates.append((agg.function, _columns(agg.columns, dataset, f"analysisRule.aggregateColumns[{i}].columns",
                                                  roles)))
    constraints = []
    for i, oc in enumerate(block.output_constraints):
        column = _columns([oc.column], dataset, f"analysisRule.outputConstraints[{i}].column", IDENTIFIER_ROLES)[0]
        constraints.append((column, oc.minimum))
    return AnalysisRuleSpec(
        type="AGGREGATION", join_columns=join_columns, aggregate_columns=tuple(aggregates),
        dimension_columns=_columns(block.dimension_columns, dataset, "analysisRule.dimensionColumns", (DIMENSION,)),
        scalar_functions=tuple(block.scalar_functions), output_constraints=tuple(constraints),
        join_required=block.join_required)


def _prefix(value: str, key: str) -> str:
    prefix = value.strip("/")
    if not _PREFIX.match(prefix):
        raise ConfigError(key, f"{prefix!r} is not a usable S3 key prefix (letters, digits "
                          "and !_.*'()/- , 1-200 characters)")
    return prefix


def _analyst(block: sm.AnalystBlock, data_dir: Path) -> AnalystSpec:
    queries = load_queries(data_dir / "queries", list(block.queries))
    prefix = _prefix(block.results_prefix, "analyst.resultsPrefix")
    compute = Compute(**block.compute.model_dump()) if block.compute else None
    return AnalystSpec(queries=queries, result_format=block.result_format, results_prefix=prefix, compute=compute,
                       schedules=_schedules(block.schedules, queries, data_dir))


def _retention_of(tables, data_dir: Path | None) -> list[tuple[str, str]]:
    """(table, retention) of each table whose schema.yaml declares how long its rows are kept."""
    found = []
    for alias in tables:
        try:
            dataset = load_dataset(alias, data_dir) if data_dir is not None else None
        except ConfigError:
            continue  # not a dataset of this project: the template's own checks say so
        if dataset is not None and dataset.retention:
            found.append((alias, dataset.retention))
    return found


def _schedules(blocks, queries, data_dir: Path | None = None) -> tuple[ScheduleSpec, ...]:
    from model import windows

    by_name = {q.name: q for q in queries}
    found = []
    for i, block in enumerate(blocks):
        key = f"analyst.schedules[{i}]"
        query = by_name.get(block.template)
        if query is None:
            raise ConfigError(f"{key}.template", f"{block.template!r} is not one of the analyst's queries "
                              f"{sorted(by_name)}")
        declared = {p.name: p.type.upper() for p in query.parameters}
        missing = [n for n in windows.WINDOW if declared.get(n) not in ("TIMESTAMP", "TIMESTAMP_NTZ")]
        if missing:
            raise ConfigError(f"{key}.template", f"{block.template!r} does not declare {' and '.join(missing)} as "
                              "TIMESTAMP parameters: a scheduled run gives it the window it covers")
        window = block.window or f"{block.every_minutes}m"
        length = windows.parse_length(window)
        if length is None:
            raise ConfigError(f"{key}.window", f"got {block.window!r}; a length such as 15m, 1h or 7d, at most 366d")
        if any(s.template == block.template for s in found):
            raise ConfigError(f"{key}.template", f"{block.template!r} is scheduled twice: each tick would start it twice")
        # A tick takes the last whole window before it, which starts less than two windows earlier: a table
        # that keeps rows for less than that would have lost the window's first rows (docs/streaming.md).
        reach = windows.scheduled_reach(length)
        for table, text in _retention_of(query.tables, data_dir):
            keeps = windows.parse_length(text, maximum=None)
            if reach > keeps:
                half = dt.timedelta(minutes=int(keeps.total_seconds()) // 120)  # whole minutes, as windows are
                fits = windows.show(half) if half else None
                where = shown_path(data_dir / table / "schema.yaml")
                raise ConfigError(f"{key}.window", f"{window} is longer than half of table {table}'s retention "
                                  f"{text} (retention in {where}): a run's window starts up to two windows "
                                  f"({windows.show(reach)}) before its tick, and the table keeps no row older "
                                  "than its retention; " + (f"a window of at most {fits} fits" if fits else
                                                            "no window fits"))
        found.append(ScheduleSpec(block.template, block.every_minutes, window))
    return tuple(found)


def _quicksight(block: sm.QuickSightBlock | None, org: Member, analyst: AnalystSpec | None) -> QuickSightSpec:
    if block is None or not block.enabled:
        return QuickSightSpec(enabled=False)
    if analyst is None:
        raise ConfigError("quicksight.enabled", f"the dashboard shows the analyst's results; "
                          f"'{org.name}' does not have role '{ANALYST}'")
    query = next((q for q in analyst.queries if q.name == block.template), None)
    if query is None:
        raise ConfigError("quicksight.template", f"{block.template!r} is not one of the analyst's queries "
                          f"{[q.name for q in analyst.queries]}")
    owners, viewers = tuple(block.owners), tuple(block.viewers)
    # The component's own checks (principals, CSV only, the template's columns),
    # run here so bad config fails before anything is declared.
    quicksight.check_config(owners=owners, viewers=viewers, account_id=org.account_id,
                            result_format=analyst.result_format, template_sql_path=query.path)
    return QuickSightSpec(enabled=True, owners=owners, viewers=viewers, template=block.template)

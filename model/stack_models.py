"""The stack config as typed pydantic models: every key, its type and its allowed values.

These models hold what the stack files may say and nothing else: an unknown
key is refused with the keys that would pass (and a close match, "did you
mean"), as is a value of the wrong type or out of range. model/config.py reads
the validated models and checks what needs more than one key (columns against
schemas, roles across partners, ...).

Scalar keys are also declared, with types and defaults, in Pulumi.yaml (a test
keeps the two lists the same); structured keys (partners, collaboration,
analysisRule, differentialPrivacy, analyst, quicksight) only here. Values
arrive as the Pulumi CLI gives them (strings for scalars, parsed JSON for
structured keys) or as YAML values from the stack file (model/stackfiles.py),
so booleans accept "true"/"false" and whole numbers their decimal strings.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      model_validator)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from model.errors import ConfigError
from model.regions import RESULT_REGIONS, TABLE_REGIONS

ROLE = Literal["collaboration_owner", "data_producer", "analyst", "result_receiver"]
# What a member may receive from Clean Rooms ML (CloudFormation CustomMLMemberAbility; create-only).
ML_ABILITY = Literal["CAN_RECEIVE_MODEL_OUTPUT", "CAN_RECEIVE_INFERENCE_OUTPUT"]
# The association rule's allowedAdditionalAnalyses items (botocore AdditionalAnalysesResourceArn).
ADDITIONAL_ANALYSIS_ARN = (r"^(arn:aws:cleanrooms:[\w]{2}-[\w]{4,9}-[\d]:([\d]{12}|\*):membership\/[\*\d\w-]+\/"
                           r"configuredaudiencemodelassociation\/[\*\d\w-]+|arn:aws[-a-z]*:cleanrooms-ml:[-a-z0-9]+:"
                           r"([0-9]{12}|\*):membership\/[\*\d\w-]+\/configured-model-algorithm-association\/"
                           r"([-a-zA-Z0-9_\/.]+|\*))$")
ENGINE = Literal["SPARK", "CLEAN_ROOMS_SQL"]
# AWS::CleanRooms::ConfiguredTable enums in the CloudFormation schema.
AGGREGATE_FUNCTION = Literal["COUNT", "COUNT_DISTINCT", "SUM", "SUM_DISTINCT", "AVG"]
SCALAR_FUNCTION = Literal["TRUNC", "ABS", "CEILING", "FLOOR", "LN", "LOG", "ROUND", "SQRT", "CAST", "LOWER",
                          "RTRIM", "UPPER", "COALESCE", "CONVERT", "CURRENT_DATE", "DATEADD", "EXTRACT",
                          "GETDATE", "SUBSTRING", "TO_CHAR", "TO_DATE", "TO_NUMBER", "TO_TIMESTAMP", "TRIM"]

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_STACK_REF = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def _fail(message: str, **context: Any):
    """A validation error with our message, formatted here (pydantic's templates have no !r)."""
    return PydanticCustomError("config", message.format(**context) if context else message)


# --------------------------------------------------------------------------
# Value types, each with a message that says what would pass


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail("got {value!r}; allowed values: true, false", value=value)


def whole(low: int, high: int):
    def check(value: Any) -> int:
        # Whole numbers only: 10.7 or a boolean would silently become another value.
        text = str(value).strip() if not isinstance(value, bool) else ""
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", text):
            raise _fail("got {value!r}; expected a whole number from {low} to {high}", value=value, low=low,
                        high=high)
        number = int(text)
        if not low <= number <= high:
            raise _fail("got {number}; allowed range is {low} to {high}", number=number, low=low, high=high)
        return number
    return Annotated[int, BeforeValidator(check)]


def _account_id(value: Any) -> str:
    text = "" if value is None or isinstance(value, bool) else str(value)
    if not _ACCOUNT_ID.match(text):
        shown = "missing" if not text else repr(text)
        raise _fail("AWS account id is {shown}; expected exactly 12 digits, quoted in YAML (e.g. \"111111111111\")",
                    shown=shown)
    return text


def _matching(pattern: re.Pattern, what: str):
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise _fail("{value!r} is not {what}", value=value, what=what)
        return value
    return Annotated[str, BeforeValidator(check)]


def _role_arn(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not _ROLE_ARN.match(value):
        raise _fail("{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", value=value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail("must be text, got {kind}", kind=type(value).__name__)
    return str(value)


Bool = Annotated[bool, BeforeValidator(_bool)]
AccountId = Annotated[str, BeforeValidator(_account_id)]
Text = Annotated[str, BeforeValidator(_text)]
Region = _matching(_REGION, "an AWS region name like us-east-1")
OrgName = _matching(_NAME, "lowercase letters, digits and '-', starting with a letter (it prefixes resource names)")
StackRef = _matching(_STACK_REF, "'<organization>/<project>/<stack>' (on a self-managed backend the organization "
                                 "is 'organization')")
Column = Annotated[str, BeforeValidator(_text)]


# --------------------------------------------------------------------------
# Blocks


class Block(BaseModel):
    """A mapping in the stack config: camelCase keys, none unknown, values typed."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise _fail("must be a mapping with keys {keys}, got {kind}", keys=", ".join(cls.keys()),
                        kind=type(data).__name__)
        return data

    @classmethod
    def unknown_key(cls, key: str) -> str:
        """The message for a key this block does not have: a hint, and the keys it does have."""
        close = difflib.get_close_matches(str(key), cls.keys(), n=1, cutoff=0.6)
        hint = cls._belongs(str(key)) or (f"did you mean '{close[0]}'? " if close else "")
        return f"unknown key {key!r}; {hint}allowed keys: {', '.join(cls.keys())}"

    @classmethod
    def keys(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def _belongs(cls, key: str) -> str:
        """A hint when an unknown key is a key of a block inside this one (overridden by StackConfig)."""
        return ""


class C3rBlock(Block):
    allow_cleartext: Bool = False
    allow_duplicates: Bool = False
    allow_joins_on_columns_with_different_names: Bool = False
    preserve_nulls: Bool = False


# AWS::CleanRooms::Collaboration AutoApprovedChangeTypes (create-only): which change
# requests take effect without the other members' approval.
CHANGE_TYPE = Literal["ADD_MEMBER", "GRANT_RECEIVE_RESULTS_ABILITY", "REVOKE_RECEIVE_RESULTS_ABILITY"]


class CollaborationBlock(Block):
    name: Text
    description: Annotated[Text, Field(min_length=1)]
    c3r: C3rBlock | None = Field(default=None, alias="c3r")
    auto_approved_change_types: list[CHANGE_TYPE] = []
    # How long `pulumi up` waits for members to approve a change request adding a member.
    change_request_timeout_seconds: whole(10, 3600) = 600
    # The owner account's "Members invited per collaboration" quota (5 unless raised in Service
    # Quotas); more partners than this are refused before CreateCollaboration would fail.
    invited_members_quota: whole(1, 1000) = 5
    # Where results may be written (CreateCollaboration allowedResultRegions; create-only). None:
    # the collaboration's own region only, the safer reading of a residency requirement.
    allowed_result_regions: Annotated[list[Literal[RESULT_REGIONS]], Field(min_length=1)] | None = None


# CloudWatch Logs retention values (botocore logs model, shape Days: "Possible values are: ...").
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)


class AuditBlock(Block):
    # A CloudTrail trail of this account's management events (Clean Rooms' API calls among them) into an
    # encrypted, versioned, object-locked bucket (components/audit_trail.py).
    trail: Bool = False
    # How long each log object is locked (S3 Object Lock), and in which mode.
    retention_days: whole(1, 36500) = 365
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    # The retention of the Clean Rooms query and job log groups (components/log_retention.py).
    log_retention_days: Literal[LOG_RETENTION_DAYS] = 365
    # How long `pulumi up` waits for the service to create its log groups after the membership.
    log_group_wait_seconds: whole(0, 900) = 120


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class BudgetAlarmBlock(Block):
    # Alarm when any aggregation type has less than this share of the privacy budget left (components/budget_alarm.py).
    below_percent: whole(1, 99) = 20
    # The budget is also checked on a schedule: Clean Rooms' events are best effort.
    schedule_minutes: whole(5, 1440) = 60
    # Who the alarm topic e-mails (each confirms its subscription); none: subscribe to the topic yourself.
    emails: list[_matching(_EMAIL, "an e-mail address like analyst@example.com")] = []


class StreamBlock(Block):
    # The producer's table is fed by a stream (components/event_stream.py): Kinesis -> Firehose -> an Iceberg table.
    # A column of the dataset of type timestamp_ntz: what windowed templates filter on (run --window).
    time_column: Text
    # Kinesis retention: 24 hours (the service's default and minimum) to 8760 (365 days).
    retention_hours: whole(24, 8760) = 24
    # Firehose buffering before it writes to the table: seconds 0-900 and MiB 1-128 (IcebergDestination hints).
    buffer_seconds: whole(0, 900) = 300
    buffer_mb: whole(1, 128) = 128


# Patterns from botocore's sso-admin model (tests/test_federated_access.py keeps them equal).
INSTANCE_ARN = r"^arn:aws(-[a-z]{1,5}){0,3}:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$"
PRINCIPAL_ID = r"^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
# A permission set's session: PT1H to PT12H (IAM Identity Center; shorter is safer, so hours or minutes).
_SESSION = re.compile(r"^PT(?:([1-9]|1[0-2])H|([1-9][0-9]{1,2})M)$")
# The tags every resource of a stack carries (components/providers.py default tags): what access may be scoped by.
SCOPE_TAGS = ("organization", "project", "stack")


def _session(value: Any) -> Any:
    found = _SESSION.match(value) if isinstance(value, str) else None
    minutes = (int(found.group(1)) * 60 if found.group(1) else int(found.group(2))) if found else 0
    if not 60 <= minutes <= 720:
        raise _fail(f"must be an ISO 8601 duration from PT1H to PT12H (PT1H, PT90M, PT8H), got {value!r}")
    return value


class PermissionSetBlock(Block):
    # The Identity Center group (its id in the identity store) that gets this permission set on this account.
    group: _matching(re.compile(PRINCIPAL_ID), "an identity store group id (a UUID, optionally after a "
                                               "10-hex-digit prefix and '-')")
    session_duration: Annotated[str, BeforeValidator(_session)] = "PT1H"
    # false: only the permission set is declared; a just-in-time tool assigns it (docs/governance.md).
    assign: Bool = True


class PermissionSetsBlock(Block):
    analyst: PermissionSetBlock | None = None
    producer: PermissionSetBlock | None = None
    auditor: PermissionSetBlock | None = None


class AccessBlock(Block):
    # The account with IAM Identity Center (the organization's management or delegated administrator account).
    identity_account_id: AccountId
    instance_arn: _matching(re.compile(INSTANCE_ARN), "an IAM Identity Center instance ARN "
                                                      "(arn:aws:sso:::instance/ssoins-<16 characters>)")
    # The region of the Identity Center instance (its API is regional); None: the stack's region.
    identity_region: Region | None = None
    identity_profile: Text = ""
    identity_assume_role_arn: Annotated[str, BeforeValidator(_role_arn)] = ""
    # The tag key every resource carries and every principal must match (attribute-based access control).
    scope_tag: Literal[SCOPE_TAGS] = "organization"
    # Declare the instance's ABAC attribute (one configuration per instance: only if nothing else manages it).
    manage_attributes: Bool = False
    attribute_source: Text = "${path:enterprise.organization}"
    permission_sets: PermissionSetsBlock


class AudienceSizesBlock(Block):
    # How the seed provider may size a segment (CreateConfiguredAudienceModel audienceSizeConfig).
    type: Literal["ABSOLUTE", "PERCENTAGE"] = "ABSOLUTE"
    bins: Annotated[list[whole(1, 20_000_000)], Field(min_length=1, max_length=25)] = [1000, 5000, 10000]


class LookalikeBlock(Block):
    name: OrgName = "lookalike"
    # Seeds smaller than this are refused by the service (25-500,000; model/lookalike.py).
    min_matching_seed_size: whole(25, 500_000) = 500
    audience_sizes: AudienceSizesBlock = AudienceSizesBlock()
    # Share the model's relevance metrics with the seed provider (sharedAudienceMetrics ALL or NONE).
    share_metrics: Bool = True
    # How long `pulumi up` waits for training before configuring the model (it can take up to 24 hours).
    wait_minutes: whole(0, 1440) = 30


class TrainingDataBlock(Block):
    # A dataset folder under dataDir whose schema.yaml gives columns an mlType (model/training.py).
    dataset: Text
    description: Text = ""
    # Train a lookalike model on it and share it with the collaboration (components/lookalike.py).
    lookalike: LookalikeBlock | None = None


def _gigabytes(low: float, high: float):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise _fail(f"must be a number of GB from {low:g} to {high:g}, got {value!r}")
        return float(value)
    return Annotated[float, BeforeValidator(check)]


class CustomModelBlock(Block):
    # A folder under models/ with train.py, serve.py and their Dockerfiles (components/custom_model.py).
    name: _matching(re.compile(r"^[a-z][a-z0-9_]{0,30}$"), "lowercase letters, digits and '_' (a folder of models/)")
    description: Text = ""
    train_tag: _matching(re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"), "an image tag") = "train-1"
    # "" for a model without an inference container.
    inference_tag: Literal[""] | _matching(re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"), "an image tag") = "infer-1"
    # The algorithm and its association are declared once the images are in the repository.
    images_pushed: Bool = False
    metrics: list[_matching(re.compile(r"^[a-z_]{1,32}$"), "a metric the training script prints")] = ["accuracy", "auc"]
    metrics_noise: Literal["HIGH", "MEDIUM", "LOW", "NONE"] = "HIGH"
    # Accounts (members) that receive the containers' error summaries; [] = this member only.
    logs_to: Annotated[list[AccountId], Field(max_length=5)] = []
    max_artifact_gb: _gigabytes(0.01, 10) = 1.0
    # What may be exported from a trained model (to the member with CAN_RECEIVE_MODEL_OUTPUT); none by default.
    exports: list[Literal["MODEL", "OUTPUT"]] = []
    max_export_gb: _gigabytes(0.01, 10) = 1.0
    max_inference_output_gb: _gigabytes(0.01, 50) = 1.0


class PrivacyBudgetBlock(Block):
    # Ranges from AWS::CleanRooms::PrivacyBudgetTemplate Parameters in the CloudFormation schema.
    epsilon: whole(1, 20) = 10
    users_noise_per_query: whole(10, 100) = 20
    auto_refresh: Literal["CALENDAR_MONTH", "NONE"] = "CALENDAR_MONTH"


class UserIdentifierBlock(Block):
    user_identifier_column: Column
    # The most rows one user adds to any aggregation (the user contribution limit): the local
    # clean room truncates each user to this many rows, so the noise never depends on the data.
    # AWS computes its own from the data (sensitivityParameters.userContributionLimit) and has no
    # such setting: this key is not sent to AWS. docs/local-clean-room.md, "Differential privacy".
    user_contribution_limit: whole(1, 1000) = 1


class ThresholdBlock(Block):
    column: Column
    # Clean Rooms' own floor: CloudFormation MinimumIdentityCount minimum 2.
    minimum: whole(2, 100000)


class CustomRuleBlock(Block):
    type: Literal["CUSTOM"]
    allowed_analyses: Literal["templates", "ANY_QUERY"] = "templates"
    allowed_analysis_providers: list[AccountId] = []
    differential_privacy: UserIdentifierBlock | None = None
    aggregation_threshold: ThresholdBlock | None = None
    disallowed_output_columns: list[Column] = []
    # Also allow PySpark jobs on the table (analysis method MULTIPLE; ANY_JOB beside
    # ANY_QUERY, or the analyst's job templates when approving templates).
    allow_jobs: Bool = False
    # "Whether additional analyses (such as Clean Rooms ML) can be applied to the output of the direct
    # query" (AnalysisRuleCustom additionalAnalyses). NOT_ALLOWED unless said: no ML by default.
    additional_analyses: Literal["ALLOWED", "REQUIRED", "NOT_ALLOWED"] = "NOT_ALLOWED"
    # Which ML resources may use it (the association rule's allowedAdditionalAnalyses, at most 25).
    allowed_additional_analyses: Annotated[list[_matching(re.compile(ADDITIONAL_ANALYSIS_ARN),
                                                          "a configured audience model association or configured "
                                                          "model algorithm association ARN (or its * wildcard form)")],
                                           Field(max_length=25)] = []


class AggregateColumnBlock(Block):
    function: AGGREGATE_FUNCTION
    columns: Annotated[list[Column], Field(min_length=1)]


class OutputConstraintBlock(Block):
    column: Column
    minimum: whole(2, 100000)


class AggregationRuleBlock(Block):
    type: Literal["AGGREGATION"]
    aggregate_columns: Annotated[list[AggregateColumnBlock], Field(min_length=1)]
    dimension_columns: list[Column] = []
    join_columns: list[Column] | None = None
    scalar_functions: list[SCALAR_FUNCTION] = []
    output_constraints: Annotated[list[OutputConstraintBlock], Field(min_length=1)]
    join_required: Bool = True


class ListRuleBlock(Block):
    type: Literal["LIST"]
    join_columns: list[Column] | None = None
    list_columns: list[Column] = []


# Each rule type's block; pydantic also puts the type (the union's tag) in an error's location.
RULE_BLOCKS: dict[str, type[Block]] = {"CUSTOM": CustomRuleBlock, "AGGREGATION": AggregationRuleBlock,
                                       "LIST": ListRuleBlock}


def _other_rule_key(rule: str, key: str) -> str:
    for name, block in RULE_BLOCKS.items():
        if name != rule and key in block.keys():
            return f"it is a key of {name} rules, and this rule's type is {rule}; "
    return ""


CustomRuleBlock._belongs = classmethod(lambda cls, key: _other_rule_key("CUSTOM", key))
AggregationRuleBlock._belongs = classmethod(lambda cls, key: _other_rule_key("AGGREGATION", key))
ListRuleBlock._belongs = classmethod(lambda cls, key: _other_rule_key("LIST", key))


def _rule_type(data: Any) -> str | None:
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if kind in RULE_BLOCKS else None


AnalysisRuleBlock = Annotated[
    Union[Annotated[CustomRuleBlock, Tag("CUSTOM")], Annotated[AggregationRuleBlock, Tag("AGGREGATION")],
          Annotated[ListRuleBlock, Tag("LIST")]],
    Discriminator(_rule_type, custom_error_type="config",
                  custom_error_message="'type' must be one of CUSTOM, AGGREGATION, LIST"),
]


# StartProtectedQuery computeConfiguration.worker (botocore cleanrooms 2022-02-17): type
# CR.1X | CR.4X | CR.8X; number: "SQL queries support a minimum value of 2 and a
# maximum value of 400". There is no default compute setting on any resource: the
# runner sends it with every query; without one the service's default (CR.1X) applies.
WORKER_TYPE = Literal["CR.1X", "CR.4X", "CR.8X"]
SQL_WORKERS = (2, 400)
# StartProtectedJob computeConfiguration.worker: ProtectedJobWorkerComputeType has no
# CR.8X; "PySpark jobs support a minimum value of 4 and a maximum value of 128".
JOB_WORKER_TYPE = Literal["CR.1X", "CR.4X"]
JOB_WORKERS = (4, 128)


class ComputeBlock(Block):
    worker_type: WORKER_TYPE = "CR.1X"
    workers: whole(*SQL_WORKERS)


class ScheduleBlock(Block):
    # Run one of the analyst's templates every N minutes over the window the tick covers
    # (components/scheduled_query.py); the template declares window_start / window_end.
    template: Text
    every_minutes: whole(5, 10080) = 60
    # The window each run covers (15m, 1h, 7d); default: the interval between runs.
    window: Text = ""


class AnalystBlock(Block):
    queries: list[Text] = []
    result_format: Literal["CSV", "PARQUET"] = "CSV"
    results_prefix: Text = "results"
    compute: ComputeBlock | None = None
    schedules: list[ScheduleBlock] = []


class PeriodBudgetBlock(Block):
    # AccessBudgetType less LIFETIME (which is `lifetime` below); AutoRefreshMode as a boolean.
    period: Literal["CALENDAR_DAY", "CALENDAR_WEEK", "CALENDAR_MONTH"]
    budget: whole(0, 1_000_000)
    auto_refresh: Bool = True


class AccessBudgetBlock(Block):
    """How many times the table may be used (ACCESS_BUDGET privacy budget): per period, in all, or both."""

    per_period: PeriodBudgetBlock | None = None
    lifetime: whole(0, 1_000_000) | None = None

    @model_validator(mode="after")
    def _one_of_them(self) -> "AccessBudgetBlock":
        if self.per_period is None and self.lifetime is None:
            raise _fail("give perPeriod {period, budget, autoRefresh}, lifetime, or both")
        return self


class ResultsBlock(Block):
    """Where a result receiver's results land (its membership's default result configuration)."""

    result_format: Literal["CSV", "PARQUET"] = "CSV"
    results_prefix: Text = "results"


class QuickSightBlock(Block):
    enabled: Bool = False
    owners: list[Text] = []
    viewers: list[Text] = []
    template: Text = "customer_segments"


class PartnerBlock(Block):
    name: OrgName
    display_name: Text | None = None
    account_id: AccountId
    roles: list[ROLE]
    dataset: Text | None = None
    stack: StackRef | None = None
    outputs: dict[str, Any] | None = None
    # invitation: in the collaboration's members when it is created (create-only: adding one
    # later replaces the collaboration); changeRequest: added to the existing collaboration
    # by a change request (components/member_change.py).
    added_by: Literal["invitation", "changeRequest"] = "invitation"
    # The partner runs PySpark jobs (its stack has `jobs`): CAN_RUN_JOB, fixed when the
    # collaboration is created, and CAN_RECEIVE_RESULTS for a partner that is not the analyst.
    runs_jobs: Bool = False
    # Its Clean Rooms ML abilities (the same list as that partner's own mlAbilities).
    ml_abilities: list[ML_ABILITY] = []

    @model_validator(mode="after")
    def _one_source(self) -> "PartnerBlock":
        if self.stack and self.outputs:
            raise _fail("give either 'stack' (a stack reference) or 'outputs' (values copied from a partner "
                        "in another backend), not both")
        if not self.stack and self.outputs is None:
            raise _fail("give 'stack' (the partner's stack, e.g. organization/<project>/<stack>) or, for a "
                        "partner in another backend, 'outputs' (its `pulumi stack output --json`, {} until "
                        "it has deployed)")
        return self


class StackConfig(Block):
    """Every key of the project's namespace (cleanrooms-collab:...)."""

    organization: OrgName
    display_name: Text | None = None
    account_id: AccountId
    region: Region = "us-east-1"
    profile: Text = ""
    assume_role_arn: Annotated[str, BeforeValidator(_role_arn)] = ""
    roles: Annotated[list[ROLE], Field(min_length=1)]
    # What this organization may receive from Clean Rooms ML; none unless said (create-only).
    ml_abilities: list[ML_ABILITY] = []
    dataset: Text = ""
    # Where the producer's data bucket and Glue table are (GlueTableReference region); "" = region.
    data_region: Literal[("", *TABLE_REGIONS)] = ""
    data_dir: Text = "data"
    join_key: Column = "customer_key"
    analytics_engine: ENGINE = "SPARK"
    query_logging: Bool = True
    query_compute_payer: Text = ""
    # Clean Rooms ML: who pays for custom model training and inference (default: the member who can query).
    model_training_payer: Text = ""
    model_inference_payer: Text = ""
    protect: Bool = True
    # IAM is eventually consistent; public deployers wait 10-30 s (components/iam_wait.py).
    iam_propagation_seconds: whole(0, 600) = 30
    partners: Annotated[list[PartnerBlock], Field(min_length=1)]
    collaboration: CollaborationBlock | None = None
    differential_privacy: PrivacyBudgetBlock | None = None
    analysis_rule: AnalysisRuleBlock | None = None
    access_budget: AccessBudgetBlock | None = None
    analyst: AnalystBlock | None = None
    results: ResultsBlock | None = None
    quicksight: QuickSightBlock | None = None
    audit: AuditBlock | None = None
    budget_alarm: BudgetAlarmBlock | None = None
    # A data producer's table fed by a stream instead of an uploaded file (components/event_stream.py).
    stream: StreamBlock | None = None
    access: AccessBlock | None = None
    # Clean Rooms ML: this member's training data for lookalike models (components/training_data.py).
    training_data: TrainingDataBlock | None = None
    # Clean Rooms ML: this member seeds partners' lookalike models (components/seed_store.py).
    lookalike_seeds: Bool = False
    # Clean Rooms ML: a custom model this member provides (components/custom_model.py).
    custom_model: CustomModelBlock | None = None
    # Clean Rooms ML: this member (who can query) trains and runs custom models (components/ml_trainer.py).
    ml_training: Bool = False
    # PySpark analysis templates this member creates, runs and receives results of (data/jobs/<name>/).
    jobs: list[Text] = []

    @classmethod
    def _belongs(cls, key: str) -> str:
        blocks = {"collaboration": CollaborationBlock, "differentialPrivacy": PrivacyBudgetBlock,
                  "analysisRule": CustomRuleBlock, "analyst": AnalystBlock, "quicksight": QuickSightBlock}
        for name, block in blocks.items():
            if key in block.keys():
                return f"it belongs inside '{name}' ({name}: {{{key}: ...}}); "
        return ""


STRUCTURED_KEYS = ("partners", "collaboration", "differentialPrivacy", "analysisRule", "accessBudget", "analyst",
                   "results", "quicksight", "jobs", "audit", "budgetAlarm", "access", "trainingData",
                   "customModel", "stream")


def parse(values: dict[str, Any]) -> StackConfig:
    """Validate a stack's config values (keys without the project prefix); ConfigError lists every problem."""
    present = {k: v for k, v in values.items() if v is not None}
    try:
        return StackConfig.model_validate(present)
    except ValidationError as exc:
        found = [ConfigError(key, message) for key, message in problems(exc)]  # every key is a field: never ""
        raise ConfigError(found[0].key, found[0].message, tuple(found[1:])) from None


def problems(exc: ValidationError, root: type[Block] | None = None) -> list[tuple[str, str]]:
    """(key, message) of every error of one validation (``root``: the validated block), misspelt keys first.

    A misspelt key explains the "missing" error of the key it was meant to be, so it comes first.
    """
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return [describe(error, root) for error in errors]


def file_problems(exc: ValidationError, root: type[Block]) -> str:
    """The problems of one file (schema.yaml, job.yaml) validated as ``root``, on one line."""
    return "; ".join(f"{key}: {message}" if key else message for key, message in problems(exc, root))


def _block_at(loc: tuple, root: type[Block]) -> type[Block]:
    """The block class an error location points into (lists, optionals and rule types unwrapped)."""
    block: type[Block] = root
    for part in loc:
        if isinstance(part, int):
            continue
        if part in RULE_BLOCKS:
            block = RULE_BLOCKS[part]
            continue
        field = next((f for name, f in block.model_fields.items() if (f.alias or name) == part), None)
        inner = _block_in(field.annotation) if field else None
        if inner is None:
            break
        block = inner
    return block


def _block_in(annotation: Any) -> type[Block] | None:
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return annotation
    for arg in get_args(annotation):
        found = _block_in(arg)
        if found is not None:
            return found
    return None


# What a required key should hold, for the "is missing" message (by the key's last name).
EXPECTED = {
    "organization": "a short lowercase name for this organization, e.g. org-a (it prefixes resource names)",
    "accountId": "the AWS account id, exactly 12 digits quoted in YAML (e.g. \"111111111111\")",
    "roles": "a list of collaboration_owner, data_producer, analyst, result_receiver",
    "partners": "the other organizations: name, accountId, roles, dataset, stack",
    "name": "a name",
    "description": "a description (at least one character)",
    "type": "one of CUSTOM, AGGREGATION, LIST",
    "column": "a column of the dataset's schema.yaml",
    "minimum": "a whole number from 2 to 100000",
    "userIdentifierColumn": "the column that identifies a person (role join_key or user_identifier)",
    "userContributionLimit": "a whole number from 1 to 1000: the most rows one user adds to an aggregation",
    "aggregateColumns": "a list of {function, columns}",
    "outputConstraints": "a list of {column, minimum}",
    "function": "one of COUNT, COUNT_DISTINCT, SUM, SUM_DISTINCT, AVG",
    "columns": "a list of columns of the dataset",
}


def describe(error: dict, root: type[Block] | None = None) -> tuple[str, str]:
    """(config key, message) of one pydantic error, in the project's words (``root``: the validated block)."""
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in RULE_BLOCKS:
            path += f".{part}" if path else str(part)
    context = error.get("ctx") or {}
    if error["type"] == "extra_forbidden":
        block = _block_at(error["loc"][:-1], root or StackConfig)
        return path, block.unknown_key(str(error["loc"][-1]))
    value = error.get("input")
    last = next((str(p) for p in reversed(error["loc"]) if isinstance(p, str) and p not in RULE_BLOCKS), "")
    messages = {
        "missing": f"is missing: expected {EXPECTED[last]}" if last in EXPECTED else "is missing",
        "literal_error": f"got {value!r}; allowed values: {context.get('expected')}",
        "list_type": f"must be a list, got {type(value).__name__}",
        "too_short": f"needs at least {context.get('min_length')} item(s)" if isinstance(value, list)
        else "must not be empty",
        "dict_type": f"must be a mapping, got {type(value).__name__}",
        "string_type": f"must be text, got {type(value).__name__}",
    }
    return path, messages.get(error["type"], error["msg"])

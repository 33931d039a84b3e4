"""Stack configuration: parsed, typed and validated in one place.

Everything a stack does is decided here from its config, before any resource
is declared. Each error names the config key and what would be accepted.
Keys with scalar or list values are declared with types and defaults in
Pulumi.yaml; structured keys (partners, analysisRule, ...) are documented in
docs/configuration.md and checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from model import engines, quicksight
from model.datasets import (DIMENSION, IDENTIFIER_ROLES, JOIN_KEY, METRIC, Dataset,
                                 load_dataset, validate_data)
from model.errors import ConfigError
from model.stackfiles import ROOT as PROJECT_DIR
from model.templates import QueryTemplate, load_queries

OWNER = "collaboration_owner"
PRODUCER = "data_producer"
ANALYST = "analyst"
ROLES = (OWNER, PRODUCER, ANALYST)

# The analyst queries and receives results; data producers only contribute data.
# Member abilities per the CloudFormation MemberAbility enum.
ANALYST_ABILITIES = ("CAN_QUERY", "CAN_RECEIVE_RESULTS")

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_STACK_REF = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")

RULE_TYPES = ("AGGREGATION", "LIST", "CUSTOM")
AGGREGATE_FUNCTIONS = ("COUNT", "COUNT_DISTINCT", "SUM", "SUM_DISTINCT", "AVG")
AUTO_REFRESH = ("CALENDAR_MONTH", "NONE")
RESULT_FORMATS = ("CSV", "PARQUET")
ALLOWED_ANALYSES = ("templates", "ANY_QUERY")


@dataclass(frozen=True)
class Member:
    """An organization in the collaboration, as one stack knows it."""

    name: str
    display_name: str
    account_id: str
    roles: frozenset[str]
    dataset: str | None = None

    @property
    def abilities(self) -> list[str]:
        return list(ANALYST_ABILITIES) if ANALYST in self.roles else []

    @property
    def is_analyst(self) -> bool:
        return ANALYST in self.roles


@dataclass(frozen=True)
class Partner(Member):
    """Another organization, and where to read its stack outputs."""

    stack: str | None = None
    # Outputs given in config, for partners whose stack lives in another backend.
    outputs: Mapping[str, Any] = field(default_factory=dict)


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
    threshold_column: str | None = None
    threshold_minimum: int | None = None
    disallowed_output_columns: tuple[str, ...] = ()
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
class AnalystSpec:
    queries: tuple[QueryTemplate, ...]
    result_format: str
    results_prefix: str


@dataclass(frozen=True)
class QuickSightSpec:
    enabled: bool
    owners: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    template: str = "customer_segments"


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
    collaboration: CollaborationSpec | None = None
    budget: PrivacyBudgetSpec | None = None
    dataset: Dataset | None = None
    analysis_rule: AnalysisRuleSpec | None = None
    analyst: AnalystSpec | None = None
    quicksight: QuickSightSpec = QuickSightSpec(enabled=False)

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
# Small typed readers: each names the key and the allowed values on error.


def _str(raw: Mapping, key: str, where: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is None or value == "":
        if required:
            raise ConfigError(where, f"'{key}' is required")
        return default
    if not isinstance(value, (str, int)):
        raise ConfigError(where, f"'{key}' must be a string, got {type(value).__name__}")
    return str(value)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(where, f"got {value!r}; allowed values: {list(allowed)}")
    return value


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(where, f"got {value!r}; allowed values: true, false")


def _int_in(value: Any, low: int, high: int, where: str) -> int:
    # Whole numbers only: int(10.7) or a bool would silently become a different value.
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", str(value).strip()):
        raise ConfigError(where, f"got {value!r}; expected a whole number from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(where, f"got {number}; allowed range is {low} to {high}")
    return number


def _account_id(value: Any, where: str) -> str:
    text = "" if value is None else str(value)
    if not _ACCOUNT_ID.match(text):
        shown = "missing" if not text else repr(text)
        raise ConfigError(where, f"AWS account id is {shown}; expected exactly 12 digits, "
                          "quoted in YAML (e.g. \"111111111111\")")
    return text


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(where, f"must be a list, got {type(value).__name__}")
    return value


def _roles(value: Any, where: str) -> frozenset[str]:
    roles = _list(value, where)
    for role in roles:
        _choice(role, ROLES, where)
    return frozenset(roles)


# --------------------------------------------------------------------------


def load_settings(get: Callable[[str], Any], project: str, stack: str,
                  data_dir: Path | None = None, check_data: bool = True) -> Settings:
    """Build Settings from config values; ``get(key)`` returns a parsed value or None.

    ``data_dir`` overrides the ``dataDir`` key (a folder relative to the project).
    """
    data_dir = data_dir or _data_dir(get("dataDir"))
    org_name = _str({"organization": get("organization")}, "organization", "organization")
    if not _NAME.match(org_name):
        raise ConfigError("organization", f"{org_name!r} must be lowercase letters, digits and '-', "
                          "starting with a letter (it prefixes resource names)")
    roles = _roles(get("roles"), "roles")
    if not roles:
        raise ConfigError("roles", f"at least one role is required; allowed values: {list(ROLES)}")
    org = Member(
        name=org_name,
        display_name=get("displayName") or org_name,
        account_id=_account_id(get("accountId"), "accountId"),
        roles=roles,
        dataset=get("dataset") or None,
    )

    region = get("region") or "us-east-1"
    if not _REGION.match(region):
        raise ConfigError("region", f"{region!r} is not an AWS region name like us-east-1")
    assume_role_arn = get("assumeRoleArn") or None
    if assume_role_arn and not _ROLE_ARN.match(assume_role_arn):
        raise ConfigError("assumeRoleArn", f"{assume_role_arn!r} is not an IAM role ARN")
    if assume_role_arn and assume_role_arn.split(":")[4] != org.account_id:
        raise ConfigError("assumeRoleArn", f"role is in account {assume_role_arn.split(':')[4]}, "
                          f"but accountId is {org.account_id}")

    partners = tuple(_partner(p, i) for i, p in enumerate(_list(get("partners"), "partners")))
    if not partners:
        raise ConfigError("partners", "a collaboration needs at least one partner organization")
    _check_members(org, partners)

    engine = _choice(get("analyticsEngine") or "SPARK", engines.ENGINES, "analyticsEngine")
    join_key = get("joinKey") or "customer_key"
    protect = _bool(get("protect") if get("protect") is not None else True, "protect")
    query_logging = _bool(get("queryLogging") if get("queryLogging") is not None else True, "queryLogging")
    # Unless configured, the member who can query pays (botocore PaymentConfiguration docs);
    # every stack must name the same payer, since memberships must match the collaboration.
    analyst = next(m.name for m in (org, *partners) if m.is_analyst)
    payer = _choice(get("queryComputePayer") or analyst, tuple(m.name for m in (org, *partners)),
                    "queryComputePayer")

    settings = dict(project=project, stack=stack, data_dir=data_dir, org=org, region=region,
                    profile=get("profile") or None, assume_role_arn=assume_role_arn,
                    analytics_engine=engine, partners=partners, join_key=join_key, protect=protect,
                    query_logging=query_logging, payer=payer)

    if OWNER in roles:
        engines.check_new_collaboration(engine)
        settings["collaboration"] = _collaboration(get, org, partners)
    if PRODUCER in roles:
        dataset, rule = _producer(get, org, partners, join_key, engine, data_dir, check_data)
        settings["dataset"], settings["analysis_rule"] = dataset, rule
    own_dp = PRODUCER in roles and settings["analysis_rule"].differential_privacy
    if OWNER in roles and (own_dp or get("differentialPrivacy") is not None):
        # The owner keeps the collaboration's one privacy budget, for its own
        # table under differential privacy or a partner's.
        settings["budget"] = _budget(get("differentialPrivacy"))
    if ANALYST in roles:
        settings["analyst"] = _analyst(get, engine, data_dir)
    settings["quicksight"] = _quicksight(get("quicksight"), org, settings.get("analyst"))
    return Settings(**settings)


def _data_dir(value: Any) -> Path:
    path = PROJECT_DIR / str(value or "data")
    if not path.is_dir():
        raise ConfigError("dataDir", f"{value!r} is not a folder of the project ({path} does not exist); "
                          "it holds data/<dataset>/schema.yaml and queries/*.sql")
    return path


def _partner(raw: Any, index: int) -> Partner:
    where = f"partners[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a mapping with name, accountId, roles and stack")
    name = _str(raw, "name", where)
    stack = raw.get("stack")
    if stack is not None and not _STACK_REF.match(stack):
        raise ConfigError(f"{where}.stack", f"{stack!r} must be '<organization>/<project>/<stack>' "
                          "(on a self-managed backend the organization is 'organization')")
    outputs = raw.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise ConfigError(f"{where}.outputs", "must be a mapping of stack output names to values")
    if stack and outputs:
        raise ConfigError(where, "give either 'stack' (a stack reference) or 'outputs' (values "
                          "copied from a partner in another backend), not both")
    return Partner(
        name=name,
        display_name=raw.get("displayName") or name,
        account_id=_account_id(raw.get("accountId"), f"{where}.accountId"),
        roles=_roles(raw.get("roles"), f"{where}.roles"),
        dataset=raw.get("dataset") or None,
        stack=stack,
        outputs=outputs,
    )


def _check_members(org: Member, partners: tuple[Partner, ...]) -> None:
    members = (org, *partners)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ConfigError("partners", f"organization names must be unique, got {names}")
    accounts = [m.account_id for m in members]
    if len(set(accounts)) != len(accounts):
        raise ConfigError("partners", f"each organization needs its own AWS account, got {accounts}")
    if len(members) > 10:
        raise ConfigError("partners", "a collaboration has at most 10 members (the creator and 9 invited)")
    owners = [m.name for m in members if OWNER in m.roles]
    if len(owners) != 1:
        raise ConfigError("roles", f"exactly one organization must have role '{OWNER}' "
                          f"(in 'roles' or a partner's 'roles'); found {owners or 'none'}")
    analysts = [m.name for m in members if ANALYST in m.roles]
    # Clean Rooms allows a single member with the CAN_QUERY ability.
    if len(analysts) != 1:
        raise ConfigError("roles", f"exactly one organization must have role '{ANALYST}' "
                          f"(it can query and receives results); found {analysts or 'none'}")


def _collaboration(get, org: Member, partners) -> CollaborationSpec:
    raw = get("collaboration") or {}
    if not isinstance(raw, dict):
        raise ConfigError("collaboration", "must be a mapping (name, description, ...)")
    c3r = None
    if raw.get("c3r") is not None:
        c = raw["c3r"]
        if not isinstance(c, dict):
            raise ConfigError("collaboration.c3r", "must be a mapping of the four C3R settings")
        c3r = C3rSpec(*(_bool(c.get(k, False), f"collaboration.c3r.{k}") for k in
                        ("allowCleartext", "allowDuplicates", "allowJoinsOnColumnsWithDifferentNames",
                         "preserveNulls")))
    description = _str(raw, "description", "collaboration")
    return CollaborationSpec(
        name=_str(raw, "name", "collaboration"),
        description=description,
        c3r=c3r,
    )


def _budget(raw: Any) -> PrivacyBudgetSpec:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("differentialPrivacy", "must be a mapping with epsilon, usersNoisePerQuery, autoRefresh")
    # Ranges from AWS::CleanRooms::PrivacyBudgetTemplate Parameters in the CloudFormation schema.
    return PrivacyBudgetSpec(
        epsilon=_int_in(raw.get("epsilon", 10), 1, 20, "differentialPrivacy.epsilon"),
        users_noise_per_query=_int_in(raw.get("usersNoisePerQuery", 20), 10, 100,
                                      "differentialPrivacy.usersNoisePerQuery"),
        auto_refresh=_choice(raw.get("autoRefresh", "CALENDAR_MONTH"), AUTO_REFRESH,
                             "differentialPrivacy.autoRefresh"),
    )


def _producer(get, org: Member, partners, join_key: str, engine: str, data_dir: Path,
              check_data: bool) -> tuple[Dataset, AnalysisRuleSpec]:
    if not org.dataset:
        raise ConfigError("dataset", f"role '{PRODUCER}' needs a dataset: the name of a folder "
                          f"in {data_dir} with a schema.yaml")
    dataset = load_dataset(org.dataset, data_dir)
    if check_data:
        validate_data(dataset)
    # The join key must exist, with role join_key, in every producer's schema.
    for member in (org, *partners):
        if PRODUCER not in member.roles:
            continue
        if not member.dataset:
            raise ConfigError(f"partners[{partners.index(member)}].dataset",
                              f"partner '{member.name}' produces data; name its dataset so the join key can be checked")
        schema = dataset if member is org else load_dataset(member.dataset, data_dir)
        column = schema.column(join_key)
        if column is None or column.role != JOIN_KEY:
            raise ConfigError("joinKey", f"join key '{join_key}' must be a column with role '{JOIN_KEY}' "
                              f"in every producer's dataset; dataset '{schema.name}' of '{member.name}' "
                              f"has join keys {schema.names_with_role(JOIN_KEY)}")
    rule = _analysis_rule(get("analysisRule"), dataset, join_key)
    engines.check_rule(engine, rule)
    return dataset, rule


def _columns(value: Any, dataset: Dataset, where: str, roles: tuple[str, ...] | None = None) -> tuple[str, ...]:
    names = _list(value, where)
    for name in names:
        column = dataset.column(name)
        if column is None:
            raise ConfigError(where, f"column '{name}' is not in dataset '{dataset.name}'; "
                              f"its columns are {dataset.column_names}")
        if roles is not None and column.role not in roles:
            raise ConfigError(where, f"column '{name}' has role '{column.role}' in dataset "
                              f"'{dataset.name}'; here only roles {list(roles)} are allowed")
    return tuple(names)


def _analysis_rule(raw: Any, dataset: Dataset, join_key: str) -> AnalysisRuleSpec:
    if not isinstance(raw, dict):
        raise ConfigError("analysisRule", f"a data producer needs an analysis rule (a mapping with "
                          f"'type', one of {list(RULE_TYPES)}); without one the table can never be queried")
    rule_type = _choice(raw.get("type"), RULE_TYPES, "analysisRule.type")
    identifiers = tuple(dataset.names_with_role(*IDENTIFIER_ROLES))
    outputtable = (DIMENSION,)
    if rule_type == "CUSTOM":
        allowed = _choice(raw.get("allowedAnalyses", "templates"), ALLOWED_ANALYSES,
                          "analysisRule.allowedAnalyses")
        providers = tuple(_account_id(a, "analysisRule.allowedAnalysisProviders")
                          for a in _list(raw.get("allowedAnalysisProviders"), "analysisRule.allowedAnalysisProviders"))
        if allowed == "ANY_QUERY" and not providers:
            raise ConfigError("analysisRule.allowedAnalysisProviders",
                              "allowedAnalyses ANY_QUERY needs the account ids allowed to run queries")
        dp = raw.get("differentialPrivacy")
        dp_column = None
        if dp is not None:
            dp_column = _str(dp if isinstance(dp, dict) else {}, "userIdentifierColumn",
                             "analysisRule.differentialPrivacy")
            _columns([dp_column], dataset, "analysisRule.differentialPrivacy.userIdentifierColumn",
                     IDENTIFIER_ROLES)
        threshold = raw.get("aggregationThreshold")
        t_column = t_min = None
        if threshold is not None:
            if not isinstance(threshold, dict):
                raise ConfigError("analysisRule.aggregationThreshold", "must be a mapping with column and minimum")
            t_column = _str(threshold, "column", "analysisRule.aggregationThreshold")
            _columns([t_column], dataset, "analysisRule.aggregationThreshold.column", IDENTIFIER_ROLES)
            # Clean Rooms' own floor (CloudFormation MinimumIdentityCount minimum 2).
            t_min = _int_in(threshold.get("minimum"), 2, 100000, "analysisRule.aggregationThreshold.minimum")
        extra = _columns(raw.get("disallowedOutputColumns"), dataset, "analysisRule.disallowedOutputColumns")
        # Identifier columns are never output, whatever the config says.
        disallowed = tuple(dict.fromkeys((*identifiers, *extra)))
        return AnalysisRuleSpec(type=rule_type, allowed_analyses=allowed, allowed_analysis_providers=providers,
                                differential_privacy_column=dp_column, threshold_column=t_column,
                                threshold_minimum=t_min, disallowed_output_columns=disallowed)
    join_columns = _columns(raw.get("joinColumns", [join_key]), dataset, "analysisRule.joinColumns", (JOIN_KEY,))
    if rule_type == "LIST":
        return AnalysisRuleSpec(type=rule_type, join_columns=join_columns,
                                list_columns=_columns(raw.get("listColumns"), dataset,
                                                      "analysisRule.listColumns", outputtable))
    aggregates = []
    for i, agg in enumerate(_list(raw.get("aggregateColumns"), "analysisRule.aggregateColumns")):
        where = f"analysisRule.aggregateColumns[{i}]"
        if not isinstance(agg, dict):
            raise ConfigError(where, "must be a mapping with function and columns")
        function = _choice(agg.get("function"), AGGREGATE_FUNCTIONS, f"{where}.function")
        # Counting distinct identifiers is how a rule counts people; every
        # other aggregate is over metrics.
        roles = (METRIC, *IDENTIFIER_ROLES) if function == "COUNT_DISTINCT" else (METRIC,)
        aggregates.append((function, _columns(agg.get("columns"), dataset, f"{where}.columns", roles)))
    if not aggregates:
        raise ConfigError("analysisRule.aggregateColumns", "an AGGREGATION rule needs at least one aggregate column")
    constraints = []
    for i, oc in enumerate(_list(raw.get("outputConstraints"), "analysisRule.outputConstraints")):
        where = f"analysisRule.outputConstraints[{i}]"
        if not isinstance(oc, dict):
            raise ConfigError(where, "must be a mapping with column and minimum")
        column = _columns([oc.get("column")], dataset, f"{where}.column", IDENTIFIER_ROLES)[0]
        constraints.append((column, _int_in(oc.get("minimum"), 2, 100000, f"{where}.minimum")))
    if not constraints:
        raise ConfigError("analysisRule.outputConstraints",
                          "an AGGREGATION rule needs an output constraint (COUNT_DISTINCT minimum on an identifier)")
    return AnalysisRuleSpec(
        type=rule_type, join_columns=join_columns, aggregate_columns=tuple(aggregates),
        dimension_columns=_columns(raw.get("dimensionColumns"), dataset, "analysisRule.dimensionColumns", outputtable),
        scalar_functions=tuple(raw.get("scalarFunctions") or ()), output_constraints=tuple(constraints),
        join_required=_bool(raw.get("joinRequired", True), "analysisRule.joinRequired"))


def _analyst(get, engine: str, data_dir: Path) -> AnalystSpec:
    raw = get("analyst") or {}
    if not isinstance(raw, dict):
        raise ConfigError("analyst", "must be a mapping (queries, resultFormat, resultsPrefix)")
    queries = load_queries(data_dir / "queries", _list(raw.get("queries"), "analyst.queries"))
    prefix = str(raw.get("resultsPrefix", "results")).strip("/")
    if not re.match(r"^[A-Za-z0-9!_.*'()/-]{1,200}$", prefix):
        raise ConfigError("analyst.resultsPrefix", f"{prefix!r} is not a usable S3 key prefix")
    return AnalystSpec(
        queries=queries,
        result_format=_choice(raw.get("resultFormat", "CSV"), RESULT_FORMATS, "analyst.resultFormat"),
        results_prefix=prefix,
    )


def _quicksight(raw: Any, org: Member, analyst: AnalystSpec | None) -> QuickSightSpec:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("quicksight", "must be a mapping (enabled, owners, viewers, template)")
    enabled = _bool(raw.get("enabled", False), "quicksight.enabled")
    if not enabled:
        return QuickSightSpec(enabled=False)
    if analyst is None:
        raise ConfigError("quicksight.enabled", f"the dashboard shows the analyst's results; "
                          f"'{org.name}' does not have role '{ANALYST}'")
    template = str(raw.get("template", "customer_segments"))
    query = next((q for q in analyst.queries if q.name == template), None)
    if query is None:
        raise ConfigError("quicksight.template", f"{template!r} is not one of the analyst's queries "
                          f"{[q.name for q in analyst.queries]}")
    owners = tuple(_list(raw.get("owners"), "quicksight.owners"))
    viewers = tuple(_list(raw.get("viewers"), "quicksight.viewers"))
    # The component's own checks (principals, CSV only, the template's columns),
    # run here so bad config fails before anything is declared.
    quicksight.check_config(owners=owners, viewers=viewers, account_id=org.account_id,
                           result_format=analyst.result_format, template_sql_path=query.path)
    return QuickSightSpec(enabled=True, owners=owners, viewers=viewers, template=template)

"""Clean Rooms privacy policies (aws-native:cleanrooms:*; inputs are camelCase).

Sources: AWS Clean Rooms User Guide (analysis rules, differential privacy,
query logging, C3R) and the CloudFormation AWS::CleanRooms::* schemas; see
../shared/CLEAN_ROOMS_FACTS.md. All mandatory: each guards what a partner's
data can reveal, and a weakened rule cannot be taken back once queries ran.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._util import UNKNOWN, as_list, at, config_schema, fmt, is_unknown, json_value, number, plain, settings, where

COLLABORATION = "aws-native:cleanrooms:Collaboration"
MEMBERSHIP = "aws-native:cleanrooms:Membership"
CONFIGURED_TABLE = "aws-native:cleanrooms:ConfiguredTable"
PRIVACY_BUDGET_TEMPLATE = "aws-native:cleanrooms:PrivacyBudgetTemplate"
ASSOCIATION = "aws-native:cleanrooms:ConfiguredTableAssociation"

DEFAULT_IDENTIFIER_COLUMNS = ["customer_key", "email", "email_hash", "user_id"]


def rule_bodies(props: dict, field: str = "analysisRules") -> list[tuple[str, str, dict]]:
    """(type, body key, body) of each analysis rule: a configured table's
    (analysisRules) or an association's (configuredTableAssociationAnalysisRules)."""
    out = []
    for rule in as_list(props.get(field)):
        if not isinstance(rule, dict):
            continue
        v1 = at(rule, "policy.v1", {})
        if not isinstance(v1, dict):
            continue
        for key in ("aggregation", "list", "custom"):
            if isinstance(v1.get(key), dict):
                out.append((str(rule.get("type", key.upper())), key, v1[key]))
    return out


# -- query logging -------------------------------------------------------------


def _query_logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (COLLABORATION, MEMBERSHIP):
        return
    status = plain(args.props).get("queryLogStatus")
    if is_unknown(status):
        return
    if status != "ENABLED":
        report(f"{where(args.resource_type, args.name)} has queryLogStatus {status!r}: without query logs "
               "no member can audit what was asked of its data. Set queryLogStatus: ENABLED "
               "(config queryLogging: true).")


query_logging_enabled = ResourceValidationPolicy(
    name="cleanrooms-query-logging-enabled",
    description="Clean Rooms collaborations and memberships log every query (queryLogStatus ENABLED).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_query_logging,
)


# -- every table has an analysis rule -----------------------------------------------


def _has_rule(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONFIGURED_TABLE:
        return
    props = plain(args.props)
    rules = props.get("analysisRules")
    if is_unknown(rules):
        return
    if not rule_bodies(props):
        report(f"{where(args.resource_type, args.name)} has no analysis rule (analysisRules is "
               f"{rules!r}): it can be associated but never safely queried. Give it exactly one rule of type "
               "AGGREGATION, LIST or CUSTOM with policy.v1.<aggregation|list|custom>.")


table_has_analysis_rule = ResourceValidationPolicy(
    name="cleanrooms-table-has-analysis-rule",
    description="Every Clean Rooms configured table carries an analysis rule.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_has_rule,
)


# -- minimum aggregation threshold ---------------------------------------------------

THRESHOLD_SCHEMA = config_schema({
    "minimumIdentityCount": {
        "type": "integer", "minimum": 2, "maximum": 100000, "default": 3,
        "description": "Smallest number of distinct identities an output row may describe (AGGREGATION "
                       "outputConstraints minimum, CUSTOM aggregationThresholds minimumIdentityCount). "
                       "Clean Rooms accepts 2; 3 is this project's floor.",
    },
})


def _threshold(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONFIGURED_TABLE:
        return
    minimum = int(settings(args, THRESHOLD_SCHEMA)["minimumIdentityCount"])
    subject = where(args.resource_type, args.name)
    for rule_type, key, body in rule_bodies(plain(args.props)):
        if key == "aggregation":
            constraints = body.get("outputConstraints")
            if is_unknown(constraints):
                continue
            if not as_list(constraints):
                report(f"{subject}: the AGGREGATION rule has no outputConstraints; add "
                       f"{{columnName: <identifier>, type: COUNT_DISTINCT, minimum: {minimum}}} or higher.")
            for c in as_list(constraints):
                value = number(c.get("minimum")) if isinstance(c, dict) else None
                if value is not None and value < minimum:
                    report(f"{subject}: AGGREGATION outputConstraints minimum on column "
                           f"'{c.get('columnName')}' is {fmt(value)}; it must be at least {minimum} "
                           f"(policy config minimumIdentityCount).")
        elif key == "custom":
            for t in as_list(body.get("aggregationThresholds")):
                value = number(t.get("minimumIdentityCount")) if isinstance(t, dict) else None
                if value is not None and value < minimum:
                    report(f"{subject}: CUSTOM aggregationThresholds minimumIdentityCount on "
                           f"{t.get('identityColumns')} is {fmt(value)}; it must be at least {minimum} "
                           f"(policy config minimumIdentityCount; set analysisRule.aggregationThreshold.minimum).")


minimum_aggregation_threshold = ResourceValidationPolicy(
    name="cleanrooms-minimum-aggregation-threshold",
    description="Aggregation output constraints and custom aggregation thresholds are at least the configured minimum.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=THRESHOLD_SCHEMA,
    validate=_threshold,
)


# -- ANY_QUERY is restricted ---------------------------------------------------------


def _any_query(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONFIGURED_TABLE:
        return
    subject = where(args.resource_type, args.name)
    for _type, key, body in rule_bodies(plain(args.props)):
        if key != "custom":
            continue
        analyses = body.get("allowedAnalyses")
        if is_unknown(analyses) or "ANY_QUERY" not in as_list(analyses):
            continue
        providers = body.get("allowedAnalysisProviders")
        if not is_unknown(providers) and not as_list(providers):
            report(f"{subject}: the CUSTOM rule allows ANY_QUERY but names no allowedAnalysisProviders; "
                   "list the 12-digit account ids allowed to run direct queries "
                   "(config analysisRule.allowedAnalysisProviders), or allow analysis template ARNs instead.")
        if not body.get("differentialPrivacy") and not as_list(body.get("aggregationThresholds")):
            report(f"{subject}: the CUSTOM rule allows ANY_QUERY with neither differentialPrivacy nor "
                   "aggregationThresholds, so a free-form query can return single customers' rows; add "
                   "differentialPrivacy {columns: [{name: <user identifier>}]} or aggregationThresholds "
                   "[{type: COUNT_DISTINCT, identityColumns: [<identifier>], minimumIdentityCount: 3}].")


any_query_restricted = ResourceValidationPolicy(
    name="cleanrooms-any-query-restricted",
    description="CUSTOM rules that allow ANY_QUERY name allowedAnalysisProviders and carry differential "
                "privacy or aggregation thresholds.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_any_query,
)


# -- jobs never reach what differential privacy protects ---------------------------------


def _jobs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A PySpark job is code over the rows: no output rule constrains what it returns.

    Differential privacy, aggregation thresholds and disallowed output columns apply
    to SQL (botocore AnalysisRuleCustom: "You can't use aggregation thresholds with
    differential privacy, or when allowedAnalyses allows only jobs"), so a table under
    differential privacy must not be open to jobs, and ANY_JOB must name who may run them.
    """
    if args.resource_type != CONFIGURED_TABLE:
        return
    subject = where(args.resource_type, args.name)
    props = plain(args.props)
    method = props.get("analysisMethod")
    jobs_open = method == "DIRECT_JOB" or (
        method == "MULTIPLE" and "DIRECT_JOB" in as_list(props.get("selectedAnalysisMethods")))
    for _type, key, body in rule_bodies(props):
        if key != "custom":
            continue
        analyses = body.get("allowedAnalyses")
        any_job = not is_unknown(analyses) and "ANY_JOB" in as_list(analyses)
        if body.get("differentialPrivacy") and (jobs_open or any_job):
            report(f"{subject}: the table is under differential privacy but open to PySpark jobs "
                   f"(analysisMethod {method}{', ANY_JOB' if any_job else ''}); differential privacy protects "
                   "SQL queries only, so a job could return single customers' rows: keep analysisMethod "
                   "DIRECT_QUERY (config: remove analysisRule.allowJobs).")
        providers = body.get("allowedAnalysisProviders")
        if any_job and not is_unknown(providers) and not as_list(providers):
            report(f"{subject}: the CUSTOM rule allows ANY_JOB but names no allowedAnalysisProviders; list the "
                   "account ids whose jobs may run, or approve job templates by ARN instead.")


jobs_restricted = ResourceValidationPolicy(
    name="cleanrooms-jobs-restricted",
    description="Tables under differential privacy are closed to PySpark jobs; ANY_JOB names its providers.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_jobs,
)


# -- identifier columns never output ---------------------------------------------------

IDENTIFIER_SCHEMA = config_schema({
    "identifierColumns": {
        "type": "array", "items": {"type": "string"}, "default": DEFAULT_IDENTIFIER_COLUMNS,
        "description": "Columns that identify a person directly or pseudonymously (join keys, hashes). "
                       "They may be joined on or counted, never output.",
    },
})


def _identifiers(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONFIGURED_TABLE:
        return
    ids = {c.lower() for c in settings(args, IDENTIFIER_SCHEMA)["identifierColumns"]}
    props = plain(args.props)
    subject = where(args.resource_type, args.name)
    allowed = props.get("allowedColumns")
    for _type, key, body in rule_bodies(props):
        if key == "aggregation":
            bad = [c for c in as_list(body.get("dimensionColumns")) if isinstance(c, str) and c.lower() in ids]
            if bad:
                report(f"{subject}: identifier column(s) {bad} are AGGREGATION dimensionColumns, so query "
                       f"results could show them; remove them from dimensionColumns (use joinColumns to join "
                       f"on them). Identifier columns (policy config identifierColumns): {sorted(ids)}.")
        elif key == "list":
            bad = [c for c in as_list(body.get("listColumns")) if isinstance(c, str) and c.lower() in ids]
            if bad:
                report(f"{subject}: identifier column(s) {bad} are LIST listColumns, so query results "
                       f"would list them; remove them from listColumns (keep them in joinColumns). "
                       f"Identifier columns (policy config identifierColumns): {sorted(ids)}.")
        elif key == "custom":
            disallowed = body.get("disallowedOutputColumns")
            if is_unknown(allowed) or is_unknown(disallowed):
                continue
            blocked = {c.lower() for c in as_list(disallowed) if isinstance(c, str)}
            missing = [c for c in as_list(allowed) if isinstance(c, str) and c.lower() in ids
                       and c.lower() not in blocked]
            if missing:
                report(f"{subject}: identifier column(s) {missing} are in allowedColumns but not in the CUSTOM "
                       f"rule's disallowedOutputColumns, so a query could output them; add them to "
                       f"disallowedOutputColumns (currently {as_list(disallowed)}).")


identifier_columns_never_output = ResourceValidationPolicy(
    name="cleanrooms-identifier-columns-never-output",
    description="Identifier columns are never dimensions, list columns, or outputtable in a CUSTOM rule.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=IDENTIFIER_SCHEMA,
    validate=_identifiers,
)


# -- differential privacy budget ----------------------------------------------------------

BUDGET_SCHEMA = config_schema({
    # Privacy: a larger epsilon spends more privacy per month (weaker guarantee);
    # fewer users of noise per query means less noise per answer. The privacy-relevant
    # bounds are maxEpsilon and minUsersNoisePerQuery; the other two bound utility.
    "minEpsilon": {"type": "number", "minimum": 1, "maximum": 20, "default": 1,
                   "description": "Smallest epsilon accepted (service range 1-20)."},
    "maxEpsilon": {"type": "number", "minimum": 1, "maximum": 20, "default": 10,
                   "description": "Largest epsilon accepted (service allows 20; 10 is the project's ceiling)."},
    "minUsersNoisePerQuery": {"type": "number", "minimum": 10, "maximum": 100, "default": 10,
                              "description": "Least noise per query, in users (service range 10-100)."},
    "maxUsersNoisePerQuery": {"type": "number", "minimum": 10, "maximum": 100, "default": 100,
                              "description": "Most noise per query, in users (service range 10-100)."},
})


def _budget(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PRIVACY_BUDGET_TEMPLATE:
        return
    cfg = settings(args, BUDGET_SCHEMA)
    props = plain(args.props)
    subject = where(args.resource_type, args.name)
    epsilon = number(at(props, "parameters.epsilon"))
    noise = number(at(props, "parameters.usersNoisePerQuery"))
    if epsilon is not None and not cfg["minEpsilon"] <= epsilon <= cfg["maxEpsilon"]:
        report(f"{subject}: epsilon is {fmt(epsilon)}; it must be from {fmt(cfg['minEpsilon'])} to "
               f"{fmt(cfg['maxEpsilon'])} (policy config minEpsilon/maxEpsilon; set differentialPrivacy.epsilon).")
    if noise is not None and not cfg["minUsersNoisePerQuery"] <= noise <= cfg["maxUsersNoisePerQuery"]:
        report(f"{subject}: usersNoisePerQuery is {fmt(noise)}; it must be from "
               f"{fmt(cfg['minUsersNoisePerQuery'])} to {fmt(cfg['maxUsersNoisePerQuery'])} (policy config "
               f"minUsersNoisePerQuery/maxUsersNoisePerQuery; set differentialPrivacy.usersNoisePerQuery).")


privacy_budget_bounds = ResourceValidationPolicy(
    name="cleanrooms-privacy-budget-bounds",
    description="Differential privacy budget: epsilon and usersNoisePerQuery within the configured band.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=BUDGET_SCHEMA,
    validate=_budget,
)


# -- C3R only where declared ------------------------------------------------------------------

C3R_SCHEMA = config_schema({
    "c3rCollaborations": {
        "type": "array", "items": {"type": "string"}, "default": [],
        "description": "Names of collaborations whose members really encrypt columns client-side with C3R. "
                       "Only these may carry dataEncryptionMetadata.",
    },
    "allowCleartextInC3r": {
        "type": "boolean", "default": False,
        "description": "Whether a declared C3R collaboration may also accept cleartext columns "
                       "(dataEncryptionMetadata.allowCleartext true).",
    },
})


def _c3r(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != COLLABORATION:
        return
    cfg = settings(args, C3R_SCHEMA)
    props = plain(args.props)
    metadata = props.get("dataEncryptionMetadata")
    if metadata is None or is_unknown(metadata):
        return
    name = props.get("name")
    subject = where(args.resource_type, args.name)
    if name not in cfg["c3rCollaborations"]:
        cleartext = metadata.get("allowCleartext") if isinstance(metadata, dict) else None
        report(f"{subject}: dataEncryptionMetadata (allowCleartext {cleartext!r}) makes collaboration "
               f"{name!r} a C3R collaboration that expects client-side encrypted columns; plaintext tables "
               "then cannot be queried (with allowCleartext false) or the setting protects nothing. Remove "
               "dataEncryptionMetadata (config collaboration.c3r) for plaintext data, or, if the members "
               f"encrypt with C3R, add {name!r} to policy config c3rCollaborations.")
    elif isinstance(metadata, dict) and metadata.get("allowCleartext") is True and not cfg["allowCleartextInC3r"]:
        report(f"{subject}: C3R collaboration {name!r} sets allowCleartext true, so columns may be uploaded "
               "unencrypted; set dataEncryptionMetadata.allowCleartext false (or policy config "
               "allowCleartextInC3r true if cleartext columns are intended).")


c3r_only_when_declared = ResourceValidationPolicy(
    name="cleanrooms-c3r-only-when-declared",
    description="dataEncryptionMetadata (C3R) only on collaborations declared as C3R, without cleartext unless allowed.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=C3R_SCHEMA,
    validate=_c3r,
)


# -- Clean Rooms ML ------------------------------------------------------------------------------

ML_SCHEMA = config_schema({
    "mlOutputAccounts": {
        "type": "array", "items": {"type": "string"}, "default": [],
        "description": "Accounts that may receive Clean Rooms ML output (a trained model's output, inference "
                       "output). None by default: an ML ability is a decision the pack's owner makes explicitly.",
    },
})


def _ml_abilities(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != COLLABORATION:
        return
    allowed = set(settings(args, ML_SCHEMA)["mlOutputAccounts"])
    props = plain(args.props)
    granted = [("the creator (this stack's account)", None, props.get("creatorMlMemberAbilities"))]
    granted += [(f"members[{i}] {m.get('accountId')}", m.get("accountId"), m.get("mlMemberAbilities"))
                for i, m in enumerate(as_list(props.get("members"))) if isinstance(m, dict)]
    creator = as_list(json_value(plain(args.provider.props).get("allowedAccountIds"))) if args.provider else []
    for label, account, abilities in granted:
        kinds = as_list((abilities or {}).get("customMlMemberAbilities")) if isinstance(abilities, dict) else []
        accounts = [account] if account else [str(a) for a in creator]
        if kinds and not (accounts and all(str(a) in allowed for a in accounts)):
            report(f"{where(args.resource_type, args.name)} grants {label} Clean Rooms ML abilities {kinds}, and policy "
                   f"config mlOutputAccounts {sorted(allowed)} does not list it; list the account there to allow it "
                   "(ML abilities are create-only: decide before the collaboration exists).")


ml_abilities_declared = ResourceValidationPolicy(
    name="cleanrooms-ml-abilities-declared",
    description="No Clean Rooms ML ability (receiving model or inference output) unless the pack's config lists the "
                "member's account.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=ML_SCHEMA,
    validate=_ml_abilities,
)


MODEL_ALGORITHM = "aws-native:cleanroomsml:ConfiguredModelAlgorithm"
ECR_REPOSITORY = "aws:ecr/repository:Repository"


def _ml_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, subject = plain(args.props), where(args.resource_type, args.name)
    if args.resource_type == MODEL_ALGORITHM and not props.get("kmsKeyArn"):
        report(f"{subject} has no kmsKeyArn: its model artifacts and outputs would be encrypted with a key this "
               "member does not control; give it the model's customer managed key.")
    elif args.resource_type == ECR_REPOSITORY:
        encryption = [e for e in as_list(props.get("encryptionConfigurations")) if isinstance(e, dict)]
        if not any(e.get("encryptionType") == "KMS" and e.get("kmsKey") for e in encryption):
            report(f"{subject} is not encrypted with a customer managed KMS key (encryptionConfigurations "
                   "encryptionType KMS, kmsKey): a model's image is its code.")
        if props.get("imageTagMutability") != "IMMUTABLE":
            report(f"{subject} allows overwriting tags (imageTagMutability {props.get('imageTagMutability')!r}): a "
                   "pushed model could change under a configured algorithm; set IMMUTABLE.")
        if not (props.get("imageScanningConfiguration") or {}).get("scanOnPush"):
            report(f"{subject} does not scan images on push; set imageScanningConfiguration.scanOnPush.")


ml_encrypted = ResourceValidationPolicy(
    name="cleanrooms-ml-models-encrypted",
    description="Custom model algorithms carry a customer managed KMS key; their ECR repositories are KMS-encrypted, "
                "immutable and scanned on push.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_ml_encrypted,
)


POLICIES = [query_logging_enabled, table_has_analysis_rule, minimum_aggregation_threshold, any_query_restricted,
            jobs_restricted,
            identifier_columns_never_output, privacy_budget_bounds, c3r_only_when_declared, ml_abilities_declared,
            ml_encrypted]

__all__ = ["POLICIES", "COLLABORATION", "MEMBERSHIP", "CONFIGURED_TABLE", "ASSOCIATION", "PRIVACY_BUDGET_TEMPLATE",
           "UNKNOWN"]

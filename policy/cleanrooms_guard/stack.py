"""Stack-wide guards: explicit providers pinned to an account and region, protected
irreplaceable resources, and results that only reach collaboration members."""

from __future__ import annotations

from pulumi_policy import (EnforcementLevel, PolicyProviderResource, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)

from ._util import as_list, config_schema, is_unknown, json_value, plain, settings, where
from .cleanrooms import ASSOCIATION, COLLABORATION, CONFIGURED_TABLE, MEMBERSHIP, rule_bodies

AWS_PACKAGES = ("aws", "aws-native")
MODEL_ASSOCIATION = "aws-native:cleanroomsml:ConfiguredModelAlgorithmAssociation"
DEFAULT_REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]


def _package(resource_type: str) -> str | None:
    head = resource_type.split(":", 1)[0]
    return head if head in AWS_PACKAGES else None


def _provider_label(provider: PolicyProviderResource) -> str:
    return f"provider '{provider.name}' ({provider.resource_type})"


# -- explicit provider ---------------------------------------------------------------


def _explicit_provider(args: ResourceValidationArgs, report: ReportViolation) -> None:
    package = _package(args.resource_type)
    if package is None:
        return
    subject = where(args.resource_type, args.name)
    provider = args.provider
    if provider is None:
        report(f"{subject} has no provider; pass the organization's explicit pulumi:providers:{package} "
               "provider (opts provider=/providers=) so it cannot land in whatever account the shell points at.")
        return
    if provider.name.startswith("default"):
        report(f"{subject} uses the default provider '{provider.name}'; pass an explicit "
               f"pulumi:providers:{package} provider with allowedAccountIds (and keep "
               f"pulumi:disable-default-providers listing {package}).")
    elif provider.resource_type != f"pulumi:providers:{package}":
        report(f"{subject} uses {_provider_label(provider)}; expected a pulumi:providers:{package} provider.")


explicit_provider = ResourceValidationPolicy(
    name="aws-explicit-provider",
    description="Every AWS resource uses an explicit (non-default) provider.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_explicit_provider,
)


# -- allowed accounts --------------------------------------------------------------------

ACCOUNTS_SCHEMA = config_schema({
    "accountIds": {
        "type": "array", "items": {"type": "string", "pattern": "^[0-9]{12}$"}, "default": [],
        "description": "If non-empty, every provider's allowedAccountIds must be among these accounts.",
    },
})


def _allowed_accounts(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _package(args.resource_type) is None or args.provider is None:
        return
    provider = args.provider
    accounts = json_value(plain(provider.props).get("allowedAccountIds"))
    if is_unknown(accounts):
        return
    subject = where(args.resource_type, args.name)
    accounts = [str(a) for a in as_list(accounts)]
    if not accounts:
        report(f"{subject}: its {_provider_label(provider)} has no allowedAccountIds, so it would deploy into "
               "any account the credentials reach; set allowedAccountIds to the organization's 12-digit "
               "account id (config accountId).")
        return
    wanted = settings(args, ACCOUNTS_SCHEMA)["accountIds"]
    stray = [a for a in accounts if wanted and a not in wanted]
    if stray:
        report(f"{subject}: its {_provider_label(provider)} allows account(s) {stray} outside policy config "
               f"accountIds {wanted}; use only those accounts.")


provider_allowed_accounts = ResourceValidationPolicy(
    name="aws-provider-allowed-accounts",
    description="The provider of every AWS resource pins allowedAccountIds.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=ACCOUNTS_SCHEMA,
    validate=_allowed_accounts,
)


# -- region ------------------------------------------------------------------------------

REGION_SCHEMA = config_schema({
    "allowedRegions": {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "default": DEFAULT_REGIONS,
        "description": "Regions where data, collaboration and results may live (data residency). The "
                       "default lists regions that offer Clean Rooms and that this project reviewed; "
                       "tighten it to your jurisdiction, e.g. [\"eu-central-1\"].",
    },
})


def _region(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _package(args.resource_type) is None or args.provider is None:
        return
    allowed = settings(args, REGION_SCHEMA)["allowedRegions"]
    region = plain(args.provider.props).get("region")
    if not is_unknown(region) and region not in allowed:
        shown = "no region (it would come from the environment)" if not region else f"region {region!r}"
        report(f"{where(args.resource_type, args.name)}: its {_provider_label(args.provider)} sets {shown}; "
               f"set the provider's region (config region) to one of {allowed} (policy config allowedRegions).")
    props = plain(args.props)
    if args.resource_type == COLLABORATION:
        # Where results may be written: "When specified, results can only be written to these Regions"
        # (CreateCollaboration allowedResultRegions). Unset, any region the service supports.
        result_regions = props.get("allowedResultRegions")
        if is_unknown(result_regions):
            return
        outside = [r for r in as_list(result_regions) if r not in allowed]
        if not result_regions or outside:
            shown = f"allows results in {outside}" if result_regions else "sets no allowedResultRegions, so results " \
                    "may be written in any region"
            report(f"{where(args.resource_type, args.name)} {shown}; set collaboration.allowedResultRegions to "
                   f"regions among {allowed} (policy config allowedRegions; create-only: decide before it exists).")
    elif args.resource_type == CONFIGURED_TABLE:
        # The source table's region (GlueTableReference region; the provider's region when unset).
        source = ((props.get("tableReference") or {}).get("glue") or {}).get("region")
        if source and not is_unknown(source) and source not in allowed:
            report(f"{where(args.resource_type, args.name)} reads a Glue table in {source!r}; keep the data in one "
                   f"of {allowed} (config dataRegion; policy config allowedRegions).")


region_allowed = ResourceValidationPolicy(
    name="aws-region-allowed",
    description="AWS resources, the collaboration's results and the source tables stay in the configured "
                "regions (data residency).",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=REGION_SCHEMA,
    validate=_region,
)


# -- protect ------------------------------------------------------------------------------

PROTECT_SCHEMA = config_schema({
    "protectedTypes": {
        "type": "array", "items": {"type": "string"},
        "default": [COLLABORATION, MEMBERSHIP, "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2",
                    "aws:kms/key:Key"],
        "description": "Resource types that cannot be recreated without loss: a collaboration's members are "
                       "fixed at creation, a member who leaves cannot rejoin, data is in the buckets and only "
                       "their KMS keys can decrypt it.",
    },
})


def _protect(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in settings(args, PROTECT_SCHEMA)["protectedTypes"]:
        return
    if not args.opts.protect:
        report(f"{where(args.resource_type, args.name)} is not protected; deleting or replacing it loses "
               "what cannot be recreated. Set the resource option protect=True (config protect: true). To "
               "tear down on purpose, run with this policy's enforcementLevel advisory in --policy-pack-config.")


protect_irreplaceable = ResourceValidationPolicy(
    name="protect-irreplaceable-resources",
    description="Collaborations, memberships, data buckets and their KMS keys are protected from deletion.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PROTECT_SCHEMA,
    validate=_protect,
)


# -- results only to members (stack) ------------------------------------------------------

MEMBERS_SCHEMA = config_schema({
    "memberAccountIds": {
        "type": "array", "items": {"type": "string", "pattern": "^[0-9]{12}$"}, "default": [],
        "description": "Account ids of the collaboration's members, for stacks that do not declare the "
                       "Collaboration themselves (invited members). Ignored when the stack has a Collaboration.",
    },
})


def _member_accounts(args: StackValidationArgs, cfg: dict) -> tuple[set[str] | None, str]:
    for r in args.resources:
        if r.resource_type != COLLABORATION:
            continue
        props = plain(r.props)
        members = props.get("members")
        if is_unknown(members):
            return None, ""
        accounts = {str(m.get("accountId")) for m in as_list(members) if isinstance(m, dict)}
        creator = json_value(plain(r.provider.props).get("allowedAccountIds")) if r.provider else None
        if isinstance(creator, list) and len(creator) == 1:
            accounts.add(str(creator[0]))
        else:
            # The creator's account cannot be read off the provider: fall back on the config list.
            accounts.update(cfg["memberAccountIds"])
        return accounts, f"the members of collaboration {props.get('name')!r} and its creator"
    if cfg["memberAccountIds"]:
        return set(cfg["memberAccountIds"]), "policy config memberAccountIds"
    return None, ""


def _receivers(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, MEMBERS_SCHEMA)
    members, source = _member_accounts(args, cfg)
    if members is None:
        if not any(r.resource_type in (ASSOCIATION, CONFIGURED_TABLE, MODEL_ASSOCIATION) for r in args.resources):
            return
        args.not_applicable("no Collaboration in this stack and no policy config memberAccountIds: "
                            "cannot tell who the members are")
    for r in args.resources:
        props = plain(r.props)
        found: list[tuple[str, list]] = []
        if r.resource_type == ASSOCIATION:
            for _type, key, body in rule_bodies(props, "configuredTableAssociationAnalysisRules"):
                if not is_unknown(body.get("allowedResultReceivers")):
                    found.append((f"{key} allowedResultReceivers", as_list(body.get("allowedResultReceivers"))))
        elif r.resource_type == CONFIGURED_TABLE:
            for _type, key, body in rule_bodies(props):
                if key == "custom" and not is_unknown(body.get("allowedAnalysisProviders")):
                    found.append(("custom allowedAnalysisProviders", as_list(body.get("allowedAnalysisProviders"))))
        elif r.resource_type == MODEL_ASSOCIATION:
            # A custom model's container logs: Clean Rooms ML output, to members only.
            policies = ((props.get("privacyConfiguration") or {}).get("policies") or {})
            for job in ("trainedModels", "trainedModelInferenceJobs"):
                for i, logs in enumerate(as_list((policies.get(job) or {}).get("containerLogs"))):
                    if isinstance(logs, dict) and not is_unknown(logs.get("allowedAccountIds")):
                        found.append((f"{job} containerLogs[{i}] allowedAccountIds", as_list(logs["allowedAccountIds"])))
        for label, accounts in found:
            stray = sorted({str(a) for a in accounts if not is_unknown(a)} - members)
            if stray:
                report(f"{where(r.resource_type, r.name)}: {label} {stray} are not collaboration members; "
                       f"use only accounts among {sorted(members)} ({source}).", r.urn)


results_to_members_only = StackValidationPolicy(
    name="cleanrooms-results-to-members-only",
    description="Result receivers and analysis providers are accounts of the collaboration's members.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=MEMBERS_SCHEMA,
    validate=_receivers,
)


POLICIES = [explicit_provider, provider_allowed_accounts, region_allowed, protect_irreplaceable,
            results_to_members_only]

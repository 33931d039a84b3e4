"""IAM: least privilege on data, confused-deputy-safe Clean Rooms trust, no admin grants."""

from __future__ import annotations

import re
from typing import Any, Iterator

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from ._util import (UNKNOWN, as_list, condition_values, config_schema, plain, policy_document, principals,
                    settings, statements, where)

CLEAN_ROOMS_SERVICE = "cleanrooms.amazonaws.com"

# Resources whose `policy` input is an identity policy document.
POLICY_DOCUMENT_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:iam/userPolicy:UserPolicy",
                         "aws:iam/groupPolicy:GroupPolicy")
ROLE = "aws:iam/role:Role"
ATTACHMENT_TYPES = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                    "aws:iam/policyAttachment:PolicyAttachment")
EXCLUSIVE_ATTACHMENT_TYPES = ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
                              "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
                              "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive")


def identity_documents(args: ResourceValidationArgs) -> Iterator[tuple[str, Any]]:
    """(label, document) of every identity policy this resource declares."""
    props = plain(args.props)
    if args.resource_type in POLICY_DOCUMENT_TYPES:
        yield "policy", policy_document(props.get("policy"))
    elif args.resource_type == ROLE:
        for i, inline in enumerate(as_list(props.get("inlinePolicies"))):
            if isinstance(inline, dict):
                yield f"inlinePolicies[{i}] {inline.get('name')!r}", policy_document(inline.get("policy"))


def _allow_statements(document: Any) -> Iterator[tuple[int, dict]]:
    for i, statement in enumerate(statements(document)):
        if statement.get("Effect") == "Allow":
            yield i, statement


def _label(i: int, statement: dict) -> str:
    return f"statement {statement.get('Sid') or i!r}"


# -- wildcards on data-plane permissions ---------------------------------------------------

WILDCARD_SCHEMA = config_schema({
    "dataPlaneServices": {
        "type": "array", "items": {"type": "string"}, "default": ["s3", "kms", "glue", "cleanrooms"],
        "description": "Services holding or guarding the data; their actions need named resources.",
    },
})

_RESOURCE_TYPE_WORD = re.compile(r"^[A-Za-z-]+/")


def wildcard_resource(resource: str) -> bool:
    """'*', or an ARN whose resource part names no specific resource ('arn:aws:s3:::*', '...:table/*')."""
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return False
    rest = _RESOURCE_TYPE_WORD.sub("", parts[5])
    return rest == "" or set(rest) <= {"*", "/", ":"}


def _wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    services = {s.lower() for s in settings(args, WILDCARD_SCHEMA)["dataPlaneServices"]}
    subject = where(args.resource_type, args.name)
    for label, document in identity_documents(args):
        if document is UNKNOWN:
            continue
        for i, statement in _allow_statements(document):
            actions = [str(a) for a in as_list(statement.get("Action"))]
            where_ = f"{subject} {label} {_label(i, statement)}"
            if "NotAction" in statement or "NotResource" in statement:
                report(f"{where_}: Allow with NotAction/NotResource grants everything not listed; list the "
                       "actions and resources it needs with Action and Resource.")
                continue
            broad = [a for a in actions if a == "*" or (a.lower().endswith(":*") and a.split(":")[0].lower() in services)]
            if broad:
                report(f"{where_}: Action {broad} allows every action of the service; name the actions "
                       "needed (e.g. s3:GetObject, kms:Decrypt, glue:GetTable).")
            touches_data = any(a == "*" or a.split(":")[0].lower() in services for a in actions)
            wild = [r for r in as_list(statement.get("Resource")) if isinstance(r, str) and wildcard_resource(r)]
            if touches_data and wild:
                report(f"{where_}: Resource {wild} on data-plane actions {actions} covers every bucket, key or "
                       "table; name the ARNs (e.g. arn:aws:s3:::<bucket>/<prefix>/*, "
                       "arn:aws:glue:<region>:<account>:table/<db>/<table>).")


no_wildcard_data_permissions = ResourceValidationPolicy(
    name="iam-no-wildcard-data-permissions",
    description="IAM policies grant no '*' or service-wide actions, and no '*' resources, on data-plane services.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=WILDCARD_SCHEMA,
    validate=_wildcards,
)


# -- partial wildcards (advisory) ---------------------------------------------------------


def _partial_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    subject = where(args.resource_type, args.name)
    for label, document in identity_documents(args):
        if document is UNKNOWN:
            continue
        for i, statement in _allow_statements(document):
            partial = [a for a in as_list(statement.get("Action"))
                       if isinstance(a, str) and "*" in a and a != "*" and not a.endswith(":*")]
            if partial:
                report(f"{subject} {label} {_label(i, statement)}: Action {partial} grows whenever AWS adds a "
                       "matching action; list the actions explicitly.")


# Advisory: a prefix wildcard (s3:Get*) is bounded to one verb family and is
# common in AWS's own examples; it is a review point, not a hole like s3:*.
no_partial_wildcard_actions = ResourceValidationPolicy(
    name="iam-no-partial-wildcard-actions",
    description="IAM actions are listed explicitly rather than by prefix wildcards (e.g. s3:Get*).",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_partial_wildcards,
)


# -- Clean Rooms trust ------------------------------------------------------------------------


# The User Guide's confused-deputy page ("In AWS Clean Rooms, you also have to compare
# against the sts:ExternalId condition key"): a statement either names memberships in
# aws:SourceArn, or the query runner's membership in sts:ExternalId
# (arn:aws:*:<region>:*:dbuser:*/<membership id>*); either way bounded to accounts.
_EXTERNAL_ID = re.compile(r"^arn:aws:\*:[a-z0-9-]+:\*:dbuser:\*/[0-9a-f][0-9a-f-]{7,}\*$")


def _trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROLE:
        return
    document = policy_document(plain(args.props).get("assumeRolePolicy"))
    if document is UNKNOWN or document is None:
        return
    subject = where(args.resource_type, args.name)
    for i, statement in enumerate(statements(document)):
        if statement.get("Effect") != "Allow" or CLEAN_ROOMS_SERVICE not in principals(statement):
            continue
        problems = []
        accounts = [str(a) for a in condition_values(statement, "aws:SourceAccount")]
        arns = [str(a) for a in condition_values(statement, "aws:SourceArn")]
        external = [str(a) for a in condition_values(statement, "sts:ExternalId")]
        if not accounts or any("*" in a for a in accounts):
            problems.append(f"aws:SourceAccount {accounts or 'missing'}")
        if external and not arns:
            if not all(_EXTERNAL_ID.match(e) for e in external):
                problems.append(f"sts:ExternalId {external}")
        elif not arns or any(a == "*" or not a.startswith("arn:") or ":cleanrooms:" not in a for a in arns):
            problems.append(f"aws:SourceArn {arns or 'missing'}")
        if problems:
            report(f"{subject} trust {_label(i, statement)} lets {CLEAN_ROOMS_SERVICE} assume the role with "
                   f"{' and '.join(problems)}, so any Clean Rooms customer could make the service act with it "
                   "(confused deputy). Add Condition {StringEquals: {aws:SourceAccount: [<member accounts>]}, "
                   "ForAnyValue:ArnEquals: {aws:SourceArn: [arn:aws:cleanrooms:<region>:<account>:membership/<id>]}} "
                   "(ArnLike ...:membership/* where the membership is created after the role), or "
                   "StringLike {sts:ExternalId: arn:aws:*:<region>:*:dbuser:*/<query runner membership id>*}.")


cleanrooms_trust_confused_deputy = ResourceValidationPolicy(
    name="iam-cleanrooms-trust-confused-deputy",
    description="Each statement trusting cleanrooms.amazonaws.com carries aws:SourceAccount and either "
                "aws:SourceArn (Clean Rooms ARNs) or the documented sts:ExternalId membership pattern.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_trust,
)


# -- no admin ------------------------------------------------------------------------------------

ADMIN_SCHEMA = config_schema({
    "forbiddenManagedPolicies": {
        "type": "array", "items": {"type": "string"},
        "default": ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"],
        "description": "AWS managed policy names (the part after :policy/) that must never be attached.",
    },
})


def _admin(args: ResourceValidationArgs, report: ReportViolation) -> None:
    forbidden = settings(args, ADMIN_SCHEMA)["forbiddenManagedPolicies"]
    props = plain(args.props)
    subject = where(args.resource_type, args.name)
    for label, document in identity_documents(args):
        if document is UNKNOWN:
            continue
        for i, statement in _allow_statements(document):
            if "*" in as_list(statement.get("Action")) and "*" in as_list(statement.get("Resource")):
                report(f"{subject} {label} {_label(i, statement)} is an administrator policy (Action '*' on "
                       "Resource '*'); grant the named actions on the named resources the workload needs.")
    arns: list[tuple[str, Any]] = []
    if args.resource_type in ATTACHMENT_TYPES:
        arns.append(("policyArn", props.get("policyArn")))
    elif args.resource_type in EXCLUSIVE_ATTACHMENT_TYPES:
        arns.extend(("policyArns", a) for a in as_list(props.get("policyArns")))
    elif args.resource_type == ROLE:
        arns.extend(("managedPolicyArns", a) for a in as_list(props.get("managedPolicyArns")))
    for field, arn in arns:
        if isinstance(arn, str) and ":policy/" in arn and arn.rsplit("/", 1)[-1] in forbidden:
            report(f"{subject}: {field} attaches {arn}, an administrator-level AWS managed policy (policy config "
                   f"forbiddenManagedPolicies {forbidden}); attach a customer managed policy with only the "
                   "actions and resources needed.")


no_admin_policies = ResourceValidationPolicy(
    name="iam-no-admin-policies",
    description="No inline administrator policies and no AdministratorAccess-class managed policy attachments.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=ADMIN_SCHEMA,
    validate=_admin,
)


# -- permission sets scoped ---------------------------------------------------------------------

PERMISSION_SET_POLICY = "aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy"
_SCOPING_KEYS = ("aws:resourcetag/", "aws:principaltag/")


def _scoped(statement: dict) -> bool:
    """Bound to tags (aws:ResourceTag / aws:PrincipalTag in its conditions), or to named resources only."""
    keys = [key.lower() for operator in (statement.get("Condition") or {}).values() if isinstance(operator, dict)
            for key in operator]
    if any(key.startswith(_SCOPING_KEYS) for key in keys):
        return True
    resources = [r for r in as_list(statement.get("Resource")) if r is not UNKNOWN]
    return bool(resources) and all(isinstance(r, str) and "*" not in r for r in resources)


def _permission_sets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PERMISSION_SET_POLICY:
        return
    document = policy_document(plain(args.props).get("inlinePolicy"))
    if document is UNKNOWN:
        return
    for i, statement in _allow_statements(document):
        if not _scoped(statement):
            report(f"{where(args.resource_type, args.name)} {_label(i, statement)} is not scoped: a person with this "
                   "permission set could act on any organization's resources in the account. Condition it on "
                   "aws:ResourceTag/<scopeTag> = ${aws:PrincipalTag/<scopeTag>} (attribute-based access control), "
                   "or name the resources exactly.")


permission_sets_scoped = ResourceValidationPolicy(
    name="cleanrooms-permission-sets-scoped",
    description="Every Allow statement of an IAM Identity Center permission set is bound by aws:ResourceTag or "
                "aws:PrincipalTag, or names its resources exactly (no wildcard).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_permission_sets,
)


POLICIES = [no_wildcard_data_permissions, no_partial_wildcard_actions, cleanrooms_trust_confused_deputy,
            no_admin_policies, permission_sets_scoped]

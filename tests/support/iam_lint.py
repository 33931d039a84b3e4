"""Lint IAM policy documents with parliament, and find them in Pulumi mocks.

Public API
----------
``lint_policy(document, *, kind="identity", ignore=frozenset()) -> list[str]``
    Findings as ``"ISSUE_CODE: detail"`` strings; empty list = clean.
    ``document`` is a policy as a dict or a JSON string.  ``kind`` says what
    the document is attached as -- ``"identity"`` (role/user/group/managed
    policy), ``"trust"`` (a role's assume-role policy) or ``"resource"``
    (bucket policy, key policy, ...) -- which changes both what parliament
    is given and which of its known false positives are dropped (see below).
    ``ignore`` is a set of issue codes the caller decided to accept; unknown
    codes raise ValueError so a typo cannot silently disable nothing.
``iam_documents_from_mock_resources(resources) -> list[IamDocument]``
    Every IAM document in a list of registered mock resources (objects with
    ``.typ``, ``.name`` and camelCase ``.inputs`` such as
    ``pulumi.runtime.MockResourceArgs``), as ``(resource_name, kind,
    document)`` named tuples.
``KNOWN_ISSUES``
    All issue codes ``lint_policy`` can return.

How parliament is driven (parliament 1.6.4, read from its source)
-----------------------------------------------------------------
* ``analyze_policy_string`` runs the statement checks and the built-in
  "bad pattern" check.  Private auditors are disabled here
  (``ignore_private_auditors=True``: they would be loaded from a directory
  inside the installed package) and the opinionated community auditors are
  not run.  Findings are ``parliament.finding.Finding`` objects with
  ``issue``, ``detail`` (str, list of str, or list of dicts for
  RESOURCE_MISMATCH) and ``location`` (line/column/string).
* parliament has no notion of policy kinds: every document is checked as if
  it were an identity policy that may also carry a ``Principal``.  So:

  - Trust policies have no ``Resource`` element, and parliament stops with
    ``MALFORMED: Statement contains neither Resource nor NotResource``
    before looking at actions, principals or conditions.  For
    ``kind="trust"`` each statement is therefore analysed with a
    placeholder ``Resource`` (a role ARN, which is what sts:AssumeRole*
    act on; ``"*"`` would instead produce RESOURCE_STAR).  Structural rules
    parliament cannot know are checked here instead: a trust statement
    must name a Principal and must not contain Resource/NotResource
    (TRUST_POLICY_NO_PRINCIPAL, TRUST_POLICY_HAS_RESOURCE).
  - It never complains about a ``Principal`` in an identity policy (it just
    validates its format), although IAM rejects such a document; reported
    here as IDENTITY_POLICY_HAS_PRINCIPAL.  Conversely a resource policy
    statement without Principal is reported as
    RESOURCE_POLICY_NO_PRINCIPAL.

Known parliament false positives, and how they are handled
-----------------------------------------------------------
Each is dropped only for the ``kind`` where it is a false positive and only
when the finding's detail shows it is that exact case -- never by issue code
alone:

* trust: UNKNOWN_FEDERATION_SOURCE for ``arn:aws:iam::<acct>:oidc-provider/..``
  (parliament knows SAML providers and four hard-coded web IdPs only).
* trust: UNKNOWN_CONDITION_FOR_ACTION for ``<idp>:<claim>`` keys
  (``token.actions.githubusercontent.com:sub``, ``accounts.google.com:aud``)
  of an identity provider that is the statement's Federated principal:
  parliament only accepts the condition keys documented for the sts action.
* trust, resource: UNKNOWN_PRINCIPAL for STS assumed-role session ARNs
  (``arn:aws:sts::<acct>:assumed-role/<role>/<session>``): valid principals,
  but parliament's regex only allows ``arn:...:iam::...`` ARNs.
* resource: RESOURCE_STAR when every action listed is a ``kms:`` action:
  in a KMS key policy ``"Resource": "*"`` means "this key" and is the only
  value KMS accepts.

Other quirks worth knowing (not altered here):

* For global condition keys (``aws:SourceArn``...) parliament only checks the
  value format, not the operator: ``StringEquals`` on ``aws:SourceArn`` is
  accepted (MISMATCHED_TYPE_BUT_USABLE is only raised for service keys).
* Once a statement has an UNKNOWN_ACTION/UNKNOWN_PREFIX or INVALID_ARN,
  parliament stops analysing that statement (and the cross-statement
  checks), so fixing one finding can reveal others.
* Condition keys are checked per action: ``sts:ExternalId`` in a statement
  that also allows ``sts:TagSession`` yields UNKNOWN_CONDITION_FOR_ACTION for
  sts:TagSession (kept: it is accurate per the service reference).
* The action/resource database is the one shipped in the wheel
  (``parliament/iam_definition.json``); actions newer than it show up as
  UNKNOWN_ACTION -- use ``ignore`` deliberately if that happens.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Literal, NamedTuple

import parliament
from parliament import analyze_policy_string

__all__ = [
    "IamDocument",
    "KNOWN_ISSUES",
    "iam_documents_from_mock_resources",
    "lint_policy",
]

Kind = Literal["identity", "trust", "resource"]
_KINDS = ("identity", "trust", "resource")

# Findings produced by this module (structural rules parliament lacks).
_OWN_ISSUES = {
    "IDENTITY_POLICY_HAS_PRINCIPAL": "identity policies must not contain Principal/NotPrincipal",
    "TRUST_POLICY_NO_PRINCIPAL": "trust policy statements must name a Principal",
    "TRUST_POLICY_HAS_RESOURCE": "trust policies must not contain Resource/NotResource",
    "RESOURCE_POLICY_NO_PRINCIPAL": "resource policy statements must name a Principal or NotPrincipal",
    "NOT_A_POLICY": "the document is not a JSON object",
}
KNOWN_ISSUES = frozenset(parliament.config) | frozenset(_OWN_ISSUES)

# Resource injected into trust statements so parliament analyses them.
_TRUST_PLACEHOLDER_RESOURCE = "arn:aws:iam::000000000000:role/trust-policy-placeholder"

_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/(?P<host>.+)$")
_STS_SESSION_ARN = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/[^/]+/.+$")
_UNKNOWN_CONDITION = re.compile(r"^Unknown condition (?P<key>\S+) for action (?P<action>\S+)$")
# Web identity providers parliament accepts as Federated principals.
_WEB_IDPS = {"cognito-identity.amazonaws.com", "www.amazon.com", "graph.facebook.com",
             "accounts.google.com"}

_MAX_LISTED = 8

_UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


# --------------------------------------------------------------------------
# lint_policy
# --------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _statements(policy: dict) -> list:
    return _as_list(policy.get("Statement"))


def _policy_text(policy: dict) -> tuple[str, bool]:
    """JSON text with one statement per line, so a finding's line number
    tells which statement it is about (statement i is on line i + 2).
    Returns (text, line_numbers_are_statement_indexes)."""
    statements = policy.get("Statement")
    if not isinstance(statements, (list, dict)) or not all(
        isinstance(s, dict) for s in _as_list(statements)
    ):
        return json.dumps(policy), False
    head = {k: v for k, v in policy.items() if k != "Statement"}
    head_text = json.dumps(head)[1:-1]
    lines = [json.dumps(s) for s in _as_list(statements)]
    text = "{" + head_text + (", " if head_text else "") + '"Statement": [\n'
    text += ",\n".join(lines) + "\n]}"
    return text, True


def _federated_hosts(statement: dict) -> set[str]:
    principal = statement.get("Principal")
    if not isinstance(principal, dict):
        return set()
    hosts = set()
    for federated in _as_list(principal.get("Federated")):
        if not isinstance(federated, str):
            continue
        match = _OIDC_PROVIDER_ARN.match(federated)
        if match:
            hosts.add(match.group("host").lower())
        elif federated in _WEB_IDPS:
            hosts.add(federated.lower())
    return hosts


def _is_false_positive(finding, kind: str, statement: dict | None) -> bool:
    issue, detail = finding.issue, finding.detail
    if kind == "trust" and issue == "UNKNOWN_FEDERATION_SOURCE":
        # parliament only knows SAML providers; OIDC providers are valid.
        return isinstance(detail, str) and bool(_OIDC_PROVIDER_ARN.match(detail))
    if kind == "trust" and issue == "UNKNOWN_CONDITION_FOR_ACTION" and statement is not None:
        # Claims of the statement's own identity provider (e.g.
        # token.actions.githubusercontent.com:sub) are not sts condition
        # keys in parliament's database, but IAM evaluates them.
        match = _UNKNOWN_CONDITION.match(detail or "")
        if match and ":" in match.group("key"):
            host = match.group("key").rsplit(":", 1)[0].lower()
            return host in _federated_hosts(statement)
        return False
    if kind in ("trust", "resource") and issue == "UNKNOWN_PRINCIPAL":
        # STS session principals are valid; parliament only allows iam ARNs.
        return isinstance(detail, str) and bool(_STS_SESSION_ARN.match(detail))
    if kind == "resource" and issue == "RESOURCE_STAR":
        # Key policies: Resource "*" means "this key" (and is mandatory).
        return (isinstance(detail, list) and bool(detail)
                and all(str(a).lower().startswith("kms:") for a in detail))
    return False


def _structural_findings(policy: dict, kind: str) -> list[tuple[str, str]]:
    out = []
    for index, stmt in enumerate(_statements(policy)):
        if not isinstance(stmt, dict):
            continue
        where = _statement_label(index, stmt)
        has_principal = "Principal" in stmt or "NotPrincipal" in stmt
        if kind == "identity" and has_principal:
            out.append(("IDENTITY_POLICY_HAS_PRINCIPAL",
                        f"{where}: {_OWN_ISSUES['IDENTITY_POLICY_HAS_PRINCIPAL']}"))
        elif kind == "trust":
            if "Principal" not in stmt:
                out.append(("TRUST_POLICY_NO_PRINCIPAL",
                            f"{where}: {_OWN_ISSUES['TRUST_POLICY_NO_PRINCIPAL']}"))
            if "Resource" in stmt or "NotResource" in stmt:
                out.append(("TRUST_POLICY_HAS_RESOURCE",
                            f"{where}: {_OWN_ISSUES['TRUST_POLICY_HAS_RESOURCE']}"))
        elif kind == "resource" and not has_principal:
            out.append(("RESOURCE_POLICY_NO_PRINCIPAL",
                        f"{where}: {_OWN_ISSUES['RESOURCE_POLICY_NO_PRINCIPAL']}"))
    return out


def _statement_label(index: int, stmt: Any) -> str:
    sid = stmt.get("Sid") if isinstance(stmt, dict) else None
    return f"Statement[{index}]" + (f" (Sid {sid!r})" if sid else "")


def _format_detail(finding) -> str:
    detail = finding.detail
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        # RESOURCE_MISMATCH: [{"action": ..., "required_format": ...}]
        text = "; ".join(
            f"{d.get('action')} needs a resource like {d.get('required_format')}" for d in detail
        )
    elif isinstance(detail, list):
        # e.g. RESOURCE_STAR lists every action a wildcard expanded to.
        shown = [str(d) for d in detail[:_MAX_LISTED]]
        if len(detail) > _MAX_LISTED:
            shown.append(f"... (+{len(detail) - _MAX_LISTED} more)")
        text = ", ".join(shown)
    else:
        text = str(detail) if detail else ""
    if not text:
        text = parliament.config.get(finding.issue, {}).get("title", "").strip()
    location = finding.location if isinstance(finding.location, dict) else {}
    subject = location.get("string")
    if subject is not None and str(subject) not in text:
        text = f"{text} ({subject})" if text else str(subject)
    return text


def lint_policy(
    document: dict | str,
    *,
    kind: Kind = "identity",
    ignore: Iterable[str] = frozenset(),
) -> list[str]:
    """Lint one IAM policy document; returns ``"ISSUE_CODE: detail"`` strings."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    ignore = frozenset(ignore)
    unknown_codes = ignore - KNOWN_ISSUES
    if unknown_codes:
        raise ValueError(f"unknown issue codes in ignore: {sorted(unknown_codes)}")

    policy: Any
    if isinstance(document, str):
        try:
            policy = json.loads(document)
        except ValueError:
            # Let parliament produce its MALFORMED_JSON finding.
            findings = analyze_policy_string(document, ignore_private_auditors=True).findings
            return [f"{f.issue}: {_format_detail(f)}" for f in findings if f.issue not in ignore]
    else:
        policy = document
    if not isinstance(policy, dict):
        return [] if "NOT_A_POLICY" in ignore else [
            f"NOT_A_POLICY: expected a JSON object, got {type(policy).__name__}"]

    results: list[tuple[str, str]] = _structural_findings(policy, kind)

    analysed = policy
    if kind == "trust":
        # See module docstring: parliament needs a Resource to analyse a
        # statement; trust statements have none.
        analysed = dict(policy)
        statements = _statements(policy)
        analysed["Statement"] = [
            {**s, "Resource": _TRUST_PLACEHOLDER_RESOURCE}
            if isinstance(s, dict) and "Resource" not in s and "NotResource" not in s
            else s
            for s in statements
        ]
    text, by_line = _policy_text(analysed)
    statements = _statements(analysed)
    for finding in analyze_policy_string(text, ignore_private_auditors=True).findings:
        statement, label = None, None
        line = finding.location.get("line") if isinstance(finding.location, dict) else None
        if by_line and isinstance(line, int) and 0 <= line - 2 < len(statements):
            statement = statements[line - 2]
            label = _statement_label(line - 2, statement)
        if _is_false_positive(finding, kind, statement):
            continue
        detail = _format_detail(finding)
        results.append((finding.issue, f"{label}: {detail}" if label else detail))

    out: list[str] = []
    for issue, detail in results:
        line = f"{issue}: {detail}"
        if issue not in ignore and line not in out:
            out.append(line)
    return out


# --------------------------------------------------------------------------
# Extraction from Pulumi mock resources
# --------------------------------------------------------------------------


class IamDocument(NamedTuple):
    resource_name: str
    kind: Kind
    document: dict | str


# type token -> [(input key, kind)]; "key[].sub" = key is a list of objects
# whose "sub" holds a document.
_DOCUMENT_INPUTS: dict[str, list[tuple[str, Kind]]] = {
    # pulumi-aws
    "aws:iam/role:Role": [("assumeRolePolicy", "trust"), ("inlinePolicies[].policy", "identity")],
    "aws:iam/policy:Policy": [("policy", "identity")],
    "aws:iam/rolePolicy:RolePolicy": [("policy", "identity")],
    "aws:iam/userPolicy:UserPolicy": [("policy", "identity")],
    "aws:iam/groupPolicy:GroupPolicy": [("policy", "identity")],
    "aws:s3/bucketPolicy:BucketPolicy": [("policy", "resource")],
    "aws:kms/key:Key": [("policy", "resource")],
    "aws:kms/keyPolicy:KeyPolicy": [("policy", "resource")],
    "aws:sqs/queuePolicy:QueuePolicy": [("policy", "resource")],
    "aws:sns/topicPolicy:TopicPolicy": [("policy", "resource")],
    # pulumi-aws-native
    "aws-native:iam:Role": [("assumeRolePolicyDocument", "trust"),
                            ("policies[].policyDocument", "identity")],
    "aws-native:iam:RolePolicy": [("policyDocument", "identity")],
    "aws-native:iam:UserPolicy": [("policyDocument", "identity")],
    "aws-native:iam:GroupPolicy": [("policyDocument", "identity")],
    "aws-native:iam:ManagedPolicy": [("policyDocument", "identity")],
    "aws-native:s3:BucketPolicy": [("policyDocument", "resource")],
    "aws-native:kms:Key": [("keyPolicy", "resource")],
}


def _is_unknown(value: Any) -> bool:
    if value is None or value == _UNKNOWN_SENTINEL or value == "":
        return True
    cls = type(value)
    return cls.__name__ == "Unknown" and cls.__module__.startswith("pulumi")


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG:
        return value.get("value")
    return value


def _document(value: Any) -> dict | str | None:
    value = _unwrap(value)
    if _is_unknown(value):
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value  # lint_policy reports MALFORMED_JSON
        return parsed if isinstance(parsed, dict) else value
    return value


def _attr(resource: Any, name: str) -> Any:
    if isinstance(resource, dict):
        return resource.get(name)
    return getattr(resource, name, None)


def iam_documents_from_mock_resources(resources: Iterable[Any]) -> list[IamDocument]:
    """Every IAM document in the given mock resources.

    Returns ``IamDocument(resource_name, kind, document)`` tuples, in resource
    order (a role's trust policy before its inline policies; several entries
    can share a resource name).  JSON strings are parsed into dicts; a string
    that is not valid JSON is returned unchanged so that ``lint_policy``
    reports it.  Documents that are unknown in a preview (``None``/Unknown)
    or empty (pulumi-aws's ``inlinePolicies=[{}]`` idiom) are skipped.
    """
    found: list[IamDocument] = []
    for resource in resources:
        typ = _attr(resource, "typ")
        specs = _DOCUMENT_INPUTS.get(typ)
        if not specs:
            continue
        name = _attr(resource, "name")
        inputs = _unwrap(_attr(resource, "inputs")) or {}
        for key, kind in specs:
            if "[]." in key:
                list_key, sub_key = key.split("[].", 1)
                items = _unwrap(inputs.get(list_key))
                values = [
                    _unwrap(item).get(sub_key)
                    for item in (items if isinstance(items, list) else [])
                    if isinstance(_unwrap(item), dict)
                ]
            else:
                values = [inputs.get(key)]
            for value in values:
                doc = _document(value)
                if doc is not None:
                    found.append(IamDocument(name, kind, doc))
    return found

"""S3 data protection.

In pulumi-aws v7 a bucket's encryption, versioning, public access block and
policy are separate resources that name the bucket (``bucket: bucket.id``),
so those checks are stack policies that pair each bucket with its companion
resources: by the bucket's name/id when the reference is known, else by the
resource's dependency on the bucket (during preview of a new bucket the
reference is unknown but the dependency is recorded). A companion whose
contents are unknown during preview cannot be judged; it is skipped and the
same policy judges it again, with real values, when `pulumi up` runs
AnalyzeStack after the deployment.
"""

from __future__ import annotations

from typing import Any, Callable

from pulumi_policy import (EnforcementLevel, PolicyResource, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)

from ._util import (UNKNOWN, as_list, at, condition_keys, config_schema, contains_unknown, is_unknown, plain,
                    policy_document, principals, settings, statements, where)

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
ENCRYPTION_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PUBLIC_ACCESS_TYPES = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
POLICY_TYPES = ("aws:s3/bucketPolicy:BucketPolicy",)
ACL_TYPES = ("aws:s3/bucketAclV2:BucketAclV2", "aws:s3/bucketAcl:BucketAcl")
OBJECT_TYPES = ("aws:s3/bucketObjectv2:BucketObjectv2", "aws:s3/bucketObject:BucketObject")

PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
PUBLIC_GRANTEES = ("http://acs.amazonaws.com/groups/global/AllUsers",
                   "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
# Condition keys that narrow an "everyone" principal to known accounts, organizations or networks.
RESTRICTIVE_KEYS = {"aws:sourceaccount", "aws:sourcearn", "aws:sourceowner", "aws:principalaccount",
                    "aws:principalarn", "aws:principalorgid", "aws:principalorgpaths", "aws:sourceorgid",
                    "aws:sourceorgpaths", "aws:resourceorgid", "aws:sourcevpc", "aws:sourcevpce",
                    "aws:sourceip", "aws:userid", "aws:username", "s3:dataaccesspointaccount",
                    "s3:dataaccesspointarn"}


def _bucket_names(bucket: PolicyResource) -> set[str]:
    props = plain(bucket.props)
    return {v for v in (props.get("bucket"), props.get("id")) if isinstance(v, str) and not is_unknown(v)}


def companions(args: StackValidationArgs, bucket: PolicyResource, types: tuple[str, ...]
               ) -> tuple[list[PolicyResource], bool]:
    """Resources of ``types`` configuring ``bucket``, and whether some could not be placed (unknown refs)."""
    names = _bucket_names(bucket)
    matched, unresolved = [], False
    for r in args.resources:
        if r.resource_type not in types:
            continue
        ref = plain(r.props).get("bucket")
        if isinstance(ref, str) and not is_unknown(ref):
            if ref in names:
                matched.append(r)
            continue
        # Unknown (preview) or missing: fall back on the dependency graph.
        deps = list(r.property_dependencies.get("bucket", [])) or list(r.dependencies)
        if any(d.urn == bucket.urn for d in deps):
            matched.append(r)
        elif not deps:
            unresolved = True
    return matched, unresolved


def _bucket_policy(name: str, description: str, check: Callable[[StackValidationArgs, PolicyResource, dict],
                   str | None], schema=None) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        cfg = settings(args, schema)
        for bucket in args.resources:
            if bucket.resource_type in BUCKET_TYPES:
                problem = check(args, bucket, cfg)
                if problem:
                    label = next(iter(sorted(_bucket_names(bucket))), "<name unknown>")
                    report(f"{where(bucket.resource_type, bucket.name)} (bucket {label}) {problem}", bucket.urn)

    return StackValidationPolicy(name=name, description=description, enforcement_level=EnforcementLevel.MANDATORY,
                                 config_schema=schema, validate=validate)


# -- encryption ----------------------------------------------------------------------------

ENCRYPTION_SCHEMA = config_schema({
    "requireCustomerManagedKey": {
        "type": "boolean", "default": True,
        "description": "Require kmsMasterKeyId (a customer managed key) rather than the AWS managed aws/s3 key.",
    },
})


def _encryption_rules(args, bucket) -> tuple[list, bool]:
    found, unresolved = companions(args, bucket, ENCRYPTION_TYPES)
    rules = [rule for r in found for rule in as_list(plain(r.props).get("rules"))]
    # Deprecated inline configuration on the bucket itself.
    inline = plain(bucket.props).get("serverSideEncryptionConfiguration")
    if isinstance(inline, dict):
        rules.extend(as_list(at(inline, "rule")))
    return rules, unresolved


def _check_encryption(args, bucket, cfg) -> str | None:
    rules, unresolved = _encryption_rules(args, bucket)
    if contains_unknown(rules) or (not rules and unresolved):
        return None
    good = []
    for rule in rules:
        default = at(rule, "applyServerSideEncryptionByDefault", {}) if isinstance(rule, dict) else {}
        algorithm = default.get("sseAlgorithm") if isinstance(default, dict) else None
        key = default.get("kmsMasterKeyId") if isinstance(default, dict) else None
        if algorithm in ("aws:kms", "aws:kms:dsse") and (key or not cfg["requireCustomerManagedKey"]):
            good.append(rule)
    if good:
        return None
    seen = [at(r, "applyServerSideEncryptionByDefault") for r in rules] or "no encryption configuration"
    return (f"is not encrypted with a customer managed KMS key ({seen}); add a "
            "BucketServerSideEncryptionConfiguration for it with applyServerSideEncryptionByDefault "
            "{sseAlgorithm: aws:kms, kmsMasterKeyId: <key arn>}.")


kms_encryption = _bucket_policy("s3-bucket-kms-encryption",
                                "Every S3 bucket is encrypted by default with a KMS key.", _check_encryption,
                                ENCRYPTION_SCHEMA)


# -- versioning ------------------------------------------------------------------------------


def _check_versioning(args, bucket, cfg) -> str | None:
    found, unresolved = companions(args, bucket, VERSIONING_TYPES)
    statuses = [at(plain(r.props), "versioningConfiguration.status") for r in found]
    inline = plain(bucket.props).get("versioning")
    if isinstance(inline, dict) and inline.get("enabled") is True:
        return None
    if any(is_unknown(s) for s in statuses) or (not found and unresolved):
        return None
    if "Enabled" in statuses:
        return None
    return (f"is not versioned (versioning status {statuses or 'not configured'}); add a BucketVersioning for it "
            "with versioningConfiguration {status: Enabled}.")


versioning = _bucket_policy("s3-bucket-versioning", "Every S3 bucket has versioning enabled.", _check_versioning)


# -- public access block -----------------------------------------------------------------------

PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _check_public_access(args, bucket, cfg) -> str | None:
    found, unresolved = companions(args, bucket, PUBLIC_ACCESS_TYPES)
    if not found:
        return None if unresolved else ("has no BucketPublicAccessBlock; add one with " +
                                        ", ".join(f"{f}: true" for f in PAB_FLAGS) + ".")
    best: list[str] | None = None
    for r in found:
        props = plain(r.props)
        if any(is_unknown(props.get(f)) for f in PAB_FLAGS):
            return None
        off = [f for f in PAB_FLAGS if props.get(f) is not True]
        if not off:
            return None
        best = off if best is None or len(off) < len(best) else best
    return f"does not block all public access ({best} not true); set {', '.join(f'{f}: true' for f in PAB_FLAGS)}."


public_access_block = _bucket_policy("s3-bucket-public-access-block",
                                     "Every S3 bucket blocks all public access (all four settings true).",
                                     _check_public_access)


# -- TLS only ----------------------------------------------------------------------------------


def _denies_insecure_transport(statement: dict) -> bool:
    if statement.get("Effect") != "Deny" or "*" not in principals(statement):
        return False
    actions = {str(a).lower() for a in as_list(statement.get("Action"))}
    if not actions & {"*", "s3:*"}:
        return False
    for operator, block in (statement.get("Condition") or {}).items():
        if operator.lower().startswith("bool") and isinstance(block, dict):
            for key, value in block.items():
                if key.lower() == "aws:securetransport" and str(as_list(value)[0]).lower() == "false":
                    return True
    return False


def _check_tls(args, bucket, cfg) -> str | None:
    found, unresolved = companions(args, bucket, POLICY_TYPES)
    documents = [policy_document(plain(r.props).get("policy")) for r in found]
    inline = policy_document(plain(bucket.props).get("policy"))
    if inline is not None:
        documents.append(inline)
    if any(d is UNKNOWN for d in documents) or (not documents and unresolved):
        return None
    for document in documents:
        for statement in statements(document):
            if _denies_insecure_transport(statement):
                resources = [str(x) for x in as_list(statement.get("Resource"))]
                if any(x.endswith("/*") for x in resources) or "*" in resources:
                    return None
    return ("does not deny requests without TLS; add a BucketPolicy statement {Effect: Deny, Principal: "
            "{AWS: '*'}, Action: 's3:*', Resource: [<bucket arn>, '<bucket arn>/*'], Condition: {Bool: "
            "{'aws:SecureTransport': 'false'}}}.")


tls_only = _bucket_policy("s3-bucket-tls-only", "Every S3 bucket's policy denies requests without TLS.", _check_tls)


# -- no public read (resource) ----------------------------------------------------------------


def _public_statements(document: Any) -> list[dict]:
    out = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        if "*" not in principals(statement) and "arn:aws:iam::*:root" not in principals(statement):
            continue
        if condition_keys(statement) & RESTRICTIVE_KEYS:
            continue
        out.append(statement)
    return out


def _no_public_read(args: ResourceValidationArgs, report: ReportViolation) -> None:
    t = args.resource_type
    if t not in POLICY_TYPES + ACL_TYPES + OBJECT_TYPES + BUCKET_TYPES:
        return
    props = plain(args.props)
    subject = where(t, args.name)
    if t in POLICY_TYPES or t in BUCKET_TYPES:
        for statement in _public_statements(policy_document(props.get("policy"))):
            report(f"{subject}: statement {statement.get('Sid') or statement.get('Action')!r} allows "
                   f"{statement.get('Action')!r} to everyone (Principal {statement.get('Principal')!r}) with no "
                   "condition restricting the caller; name the allowed principals (e.g. {AWS: <account or role "
                   "ARN>}) or add a condition such as aws:PrincipalOrgID or aws:SourceAccount.")
    acl = props.get("acl")
    if t not in POLICY_TYPES and isinstance(acl, str) and acl in PUBLIC_ACLS:
        report(f"{subject}: acl {acl!r} makes data readable outside the account; use acl 'private' (or none, "
               "with BucketOwnershipControls BucketOwnerEnforced).")
    if t in ACL_TYPES:
        for grant in as_list(at(props, "accessControlPolicy.grants")):
            uri = at(grant, "grantee.uri") if isinstance(grant, dict) else None
            if uri in PUBLIC_GRANTEES:
                report(f"{subject}: accessControlPolicy grants {at(grant, 'permission')!r} to {uri}; remove "
                       "that grant (grant only to canonical user ids of the owning account).")


no_public_read = ResourceValidationPolicy(
    name="s3-no-public-read",
    description="No bucket policy or ACL grants access to everyone.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_public_read,
)


# -- streams (components/event_stream.py) ------------------------------------------------------------------------

KINESIS_STREAM = "aws:kinesis/stream:Stream"
FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
KINESIS_POLICY = "aws:kinesis/resourcePolicy:ResourcePolicy"
# Destinations that deliver outside the account's storage: to an HTTP endpoint or a third party's service.
PUBLIC_DESTINATIONS = ("http_endpoint", "splunk", "snowflake", "opensearchserverless", "elasticsearch", "opensearch")


def _streams(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, subject = plain(args.props), where(args.resource_type, args.name)
    if args.resource_type == KINESIS_STREAM:
        if props.get("encryptionType") != "KMS" or not props.get("kmsKeyId"):
            report(f"{subject} is not encrypted with a customer managed KMS key (encryptionType KMS, kmsKeyId): "
                   "its records are a member's rows.")
    elif args.resource_type == FIREHOSE:
        destination = props.get("destination")
        if destination in PUBLIC_DESTINATIONS:
            report(f"{subject} delivers to {destination!r}, outside this account's storage; deliver to S3 or an "
                   "Iceberg table in this account.")
        iceberg = props.get("icebergConfiguration") or {}
        s3 = iceberg.get("s3Configuration") or props.get("extendedS3Configuration") or {}
        if destination in ("iceberg", "extended_s3") and not is_unknown(s3.get("kmsKeyArn")) and not s3.get("kmsKeyArn"):
            report(f"{subject} writes its files without a customer managed KMS key (s3Configuration.kmsKeyArn).")
        errors = [t.get("s3ErrorOutputPrefix") for t in as_list(iceberg.get("destinationTableConfigurations"))
                  if isinstance(t, dict)] + [s3.get("errorOutputPrefix")]
        data = [s3.get("prefix")] if destination == "extended_s3" else []
        if destination in ("iceberg", "extended_s3") and not any(isinstance(e, str) and e for e in errors):
            report(f"{subject} has no error output prefix: failed records would land among the table's data; "
                   "set one (errors/).")
        for error in [e for e in errors if isinstance(e, str) and e]:
            for prefix in [d for d in data if isinstance(d, str) and d]:
                if error.startswith(prefix) or prefix.startswith(error):
                    report(f"{subject} writes failed records under {error!r}, inside the data prefix {prefix!r}: a "
                           "query of the table could read them; keep them apart.")
    elif args.resource_type == KINESIS_POLICY:
        document = policy_document(props.get("policy"))
        if document is not UNKNOWN and any(p == "*" for s in statements(document) if s.get("Effect") == "Allow"
                                           for p in principals(s)):
            report(f"{subject} lets anyone use the stream (Principal \"*\"); name the accounts.")


streams_private = ResourceValidationPolicy(
    name="streams-encrypted-and-private",
    description="Kinesis streams are KMS-encrypted and never public; Firehose delivers only to this account's "
                "storage, encrypted, with failed records outside the data prefix.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_streams,
)


POLICIES = [kms_encryption, versioning, public_access_block, tls_only, no_public_read, streams_private]

"""S3 policies: bucket companions correlated across the stack, and no public read."""

import pytest

from tests.policy_support import UNKNOWN, bootstrap, edited, evaluate, find, run_with, set_document, without

BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
DATA = "producer-data"  # the data bucket's companions are named <org>-producer-data-*


@pytest.fixture(scope="module")
def run():
    return bootstrap()["org-a"]


def test_every_shipped_bucket_passes(run):
    buckets = run.of_type(BUCKET)
    assert len(buckets) == 3  # data, results and PySpark artifacts
    assert evaluate(run, policies=["s3-bucket-kms-encryption", "s3-bucket-versioning", "s3-bucket-public-access-block",
                                   "s3-bucket-tls-only", "s3-no-public-read"]).violations == []


def data_bucket(run):
    return find(run, BUCKET, DATA)


# -- encryption ---------------------------------------------------------------------------------


def test_encryption_missing(run):
    [v] = evaluate(without(run, find(run, SSE, DATA)), policies=["s3-bucket-kms-encryption"]).violations
    assert v.urn == data_bucket(run).urn
    assert "(bucket org-a-cleanrooms-retail-purchases-111111111111) is not encrypted with a customer managed KMS key" \
        in v.message and "sseAlgorithm: aws:kms, kmsMasterKeyId: <key arn>" in v.message


def test_encryption_aes256_or_aws_managed_key(run):
    sse = find(run, SSE, DATA)
    aes = edited(run, sse, lambda r: r.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
                 .update(sseAlgorithm="AES256", kmsMasterKeyId=None))
    [v] = evaluate(aes, policies=["s3-bucket-kms-encryption"]).violations
    assert "'sseAlgorithm': 'AES256'" in v.message
    aws_key = edited(run, sse, lambda r: r.inputs["rules"][0]["applyServerSideEncryptionByDefault"].pop("kmsMasterKeyId"))
    assert len(evaluate(aws_key, policies=["s3-bucket-kms-encryption"]).violations) == 1
    relaxed = {"s3-bucket-kms-encryption": {"requireCustomerManagedKey": False}}
    assert evaluate(aws_key, config=relaxed, policies=["s3-bucket-kms-encryption"]).violations == []


def test_companion_with_unknown_bucket_reference_is_matched_by_dependency(run):
    """During preview bucket.id is unknown; the dependency on the bucket still ties them together."""
    sse = find(run, SSE, DATA)
    assert data_bucket(run).urn in sse.dependencies
    preview = edited(run, sse, lambda r: r.inputs.update(bucket=UNKNOWN))
    assert evaluate(preview, policies=["s3-bucket-kms-encryption"]).violations == []
    preview_aes = edited(run, sse, lambda r: (r.inputs.update(bucket=UNKNOWN), r.inputs["rules"][0]
                         ["applyServerSideEncryptionByDefault"].update(sseAlgorithm="AES256")))
    assert len(evaluate(preview_aes, policies=["s3-bucket-kms-encryption"]).violations) == 1


def test_unknown_key_in_preview_is_skipped_not_failed(run):
    sse = find(run, SSE, DATA)
    unknown_key = edited(run, sse, lambda r: r.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
                         .update(kmsMasterKeyId=UNKNOWN))
    report = evaluate(unknown_key, policies=["s3-bucket-kms-encryption"])
    assert report.violations == [] and report.preview_notes == []


# -- versioning -----------------------------------------------------------------------------------


def test_versioning(run):
    v_res = find(run, VERSIONING, DATA)
    suspended = edited(run, v_res, lambda r: r.inputs["versioningConfiguration"].update(status="Suspended"))
    [v] = evaluate(suspended, policies=["s3-bucket-versioning"]).violations
    assert "is not versioned (versioning status ['Suspended'])" in v.message and "status: Enabled" in v.message
    [v] = evaluate(without(run, v_res), policies=["s3-bucket-versioning"]).violations
    assert "versioning status not configured" in v.message


# -- public access block -----------------------------------------------------------------------------


def test_public_access_block(run):
    pab = find(run, PAB, DATA)
    partial = edited(run, pab, lambda r: r.inputs.update(restrictPublicBuckets=False))
    [v] = evaluate(partial, policies=["s3-bucket-public-access-block"]).violations
    assert "does not block all public access (['restrictPublicBuckets'] not true)" in v.message
    [v] = evaluate(without(run, pab), policies=["s3-bucket-public-access-block"]).violations
    assert "has no BucketPublicAccessBlock" in v.message and "restrictPublicBuckets: true" in v.message


# -- TLS only ------------------------------------------------------------------------------------------


def test_tls_only(run):
    policy = find(run, POLICY, DATA)
    weakened = edited(run, policy, lambda r: set_document(
        r, "policy", lambda d: d["Statement"][0]["Condition"]["Bool"].update({"aws:SecureTransport": "true"})))
    [v] = evaluate(weakened, policies=["s3-bucket-tls-only"]).violations
    assert "does not deny requests without TLS" in v.message and "'aws:SecureTransport': 'false'" in v.message
    assert len(evaluate(without(run, policy), policies=["s3-bucket-tls-only"]).violations) == 1
    preview = edited(run, policy, lambda r: r.inputs.update(policy=UNKNOWN))
    assert evaluate(preview, policies=["s3-bucket-tls-only"]).violations == []


# -- public read ----------------------------------------------------------------------------------------


PUBLIC_READ = {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
               "Resource": "arn:aws:s3:::org-a-cleanrooms-retail-purchases-111111111111/*"}


def test_bucket_policy_public_read(run):
    policy = find(run, POLICY, DATA)
    public = edited(run, policy, lambda r: set_document(r, "policy", lambda d: d["Statement"].append(PUBLIC_READ)))
    [v] = evaluate(public, policies=["s3-no-public-read"]).violations
    assert "statement 'PublicRead' allows 's3:GetObject' to everyone (Principal '*')" in v.message
    org_only = dict(PUBLIC_READ, Principal={"AWS": "*"},
                    Condition={"StringEquals": {"aws:PrincipalOrgID": "o-exampleorgid"}})
    scoped = edited(run, policy, lambda r: set_document(r, "policy", lambda d: d["Statement"].append(org_only)))
    assert evaluate(scoped, policies=["s3-no-public-read"]).violations == []


def test_object_acl_public_read(run):
    obj = find(run, OBJECT)
    assert "acl" not in obj.inputs
    public = edited(run, obj, lambda r: r.inputs.update(acl="public-read"))
    [v] = evaluate(public, policies=["s3-no-public-read"]).violations
    assert "acl 'public-read' makes data readable outside the account" in v.message
    assert evaluate(edited(run, obj, lambda r: r.inputs.update(acl="private")),
                    policies=["s3-no-public-read"]).violations == []


def test_unprotected_data_bucket_from_config():
    """protect: false in the stack config: the program declares every irreplaceable resource unprotected."""
    torn = run_with("org-a", {"protect": False})
    violations = evaluate(torn, policies=["protect-irreplaceable-resources"]).violations
    assert {v.resource_name for v in violations} == {
        "org-a-owner-collaboration", "org-a-owner-membership", "org-a-producer-data-bucket",
        "org-a-analyst-results-bucket", "org-a-producer-data-key", "org-a-analyst-results-key",
        "org-a-jobs-artifacts-bucket", "org-a-jobs-artifacts-key"}
    bucket = next(v for v in violations if v.resource_name == "org-a-producer-data-bucket")
    assert "aws:s3/bucket:Bucket 'org-a-producer-data-bucket' is not protected" in bucket.message
    assert "protect=True" in bucket.message
    advisory = evaluate(torn, config={"protect-irreplaceable-resources": {"enforcementLevel": "advisory"}},
                        policies=["protect-irreplaceable-resources"])
    assert advisory.mandatory == [] and len(advisory.violations) == len(violations)

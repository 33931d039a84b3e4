"""PySparkJobs: a member's PySpark analysis templates and the artifacts Clean Rooms runs.

What the User Guide asks of the artifacts (create-pyspark-analysis-template,
store-artifacts-in-s3): an S3 bucket with versioning, the objects uploaded with
their SHA-256 checksum, a role Clean Rooms reads them with, and the artifacts
never changed afterwards ("Doing so will cause all future analysis jobs using
this template to fail"). So each script is stored under its own hash
(jobs/<name>/<sha256>/<script>): a changed script is a new object and a new
template (the source is create-only), and the old object stays for the old one.
The template declares the hash (sourceMetadata.artifacts.entryPointHash);
Clean Rooms records it and the object version, and checks both before every
run; `queryrunner job` compares the service's hash with the exported one
before it starts one. "The member who creates the PySpark
analysis template must also be the member who receives results": the member
whose stack declares `jobs` runs them (CAN_RUN_JOB) and receives their results
(CAN_RECEIVE_RESULTS), analyst or not.

A template, like a SQL one, waits until the tables it reads are associated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_aws_native.cleanrooms as cleanrooms

from components import iam
from components.analyst import missing_tables, template_export, template_parameters
from components.iam_wait import service_role
from components.secure_bucket import SecureBucket, SecureBucketArgs
from model.jobs import JobTemplate

ARTIFACT_PREFIX = "jobs"


@dataclass
class PySparkJobsArgs:
    organization: str
    account_id: str
    region: str
    membership_id: pulumi.Input[str]
    jobs: Sequence[JobTemplate]
    associated_tables: set[str]
    """Table aliases known to be associated with the collaboration now."""
    bucket_name: str
    protect: bool = True
    iam_propagation_seconds: int = 30
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class PySparkJobs(pulumi.ComponentResource):
    def __init__(self, name: str, args: PySparkJobsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:PySparkJobs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.storage = SecureBucket(f"{name}-artifacts", SecureBucketArgs(
            bucket_name=args.bucket_name, description=f"{args.organization}'s PySpark analysis artifacts",
            protect=args.protect), opts=child)
        bucket, key = self.storage.bucket, self.storage.key
        self.role, _, ready = service_role(
            f"{name}-cleanrooms-artifacts", organization=args.organization, purpose="artifacts",
            description="Clean Rooms reads this organization's PySpark analysis artifacts",
            trust=iam.own_memberships_trust(region=args.region, account_id=args.account_id),
            policy=iam.artifact_read_policy(account_id=args.account_id, region=args.region, bucket_arn=bucket.arn,
                                            prefix=ARTIFACT_PREFIX, kms_key_arn=key.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)

        self.templates: dict[str, cleanrooms.AnalysisTemplate] = {}
        self.pending: dict[str, list[str]] = {}
        self.template_info: dict[str, dict] = {}
        for job in args.jobs:
            object_key = f"{ARTIFACT_PREFIX}/{job.name}/{job.sha256}/{job.entry_point}"
            script = aws.s3.BucketObjectv2(
                f"{name}-{job.name.replace('_', '-')}-script",
                bucket=bucket.id,
                key=object_key,
                source=pulumi.FileAsset(str(job.script)),
                content_type="text/x-python",
                checksum_algorithm="SHA256",
                server_side_encryption="aws:kms",
                kms_key_id=key.arn,
                bucket_key_enabled=True,
                # Versioned before the upload: Clean Rooms pins the object version the
                # template was created with (pyspark-analysis-templates).
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.storage.encryption,
                                                                     self.storage.versioning]),
            )
            missing = missing_tables("PySpark template", job, args.associated_tables)
            if missing:
                self.pending[job.name] = missing
                continue
            template = cleanrooms.AnalysisTemplate(
                f"{name}-{job.name.replace('_', '-')}",
                name=job.name,
                description=job.description or None,
                membership_identifier=args.membership_id,
                format=cleanrooms.AnalysisTemplateFormat.PYSPARK10,
                source=cleanrooms.AnalysisTemplateAnalysisSource1PropertiesArgs(
                    artifacts=cleanrooms.AnalysisTemplateArtifactsArgs(
                        entry_point=cleanrooms.AnalysisTemplateArtifactArgs(
                            location=cleanrooms.AnalysisTemplateS3LocationArgs(bucket=bucket.bucket, key=object_key)),
                        role_arn=self.role.arn)),
                # The hash Clean Rooms checks before every run, declared so that the diff
                # shows it to reviewers. CloudFormation declares SourceMetadata ("Update
                # requires: No interruption") although CreateAnalysisTemplate computes it
                # (botocore has no input for it); hex, as the User Guide's review page
                # compares it with `sha256sum`. The runner checks the service's value too.
                source_metadata=cleanrooms.AnalysisTemplateAnalysisSourceMetadataPropertiesArgs(
                    artifacts=cleanrooms.AnalysisTemplateArtifactMetadataArgs(
                        entry_point_hash=cleanrooms.AnalysisTemplateHashArgs(sha256=job.sha256))),
                schema=cleanrooms.AnalysisTemplateAnalysisSchemaArgs(referenced_tables=list(job.tables)),
                analysis_parameters=template_parameters(job.parameters),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[script, *ready, *args.depends_on]),
            )
            self.templates[job.name] = template
            self.template_info[job.name] = template_export(template, job, sha256=job.sha256)
        self.register_outputs({"job_templates": self.template_info, "artifact_bucket": bucket.bucket})

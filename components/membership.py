"""Joining a collaboration: a membership, owned or invited.

The owner's membership is created by CollaborationOwner; an invited
organization joins with the Member component below, using the collaboration
id from the owner's stack. Both build their Membership here so the settings
agree: query logging on, payment as the collaboration designated, and the
analyst's default result configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws_native.cleanrooms as cleanrooms


@dataclass
class ResultDestination:
    """Where Clean Rooms writes this member's query results (analysts only)."""

    bucket: pulumi.Input[str]
    key_prefix: str
    result_format: str
    role_arn: pulumi.Input[str]


def ml_pays(payers, member: str) -> tuple[bool, bool] | None:
    """(pays for model training, pays for model inference) of ``member`` under model.config.MLPayers, or None."""
    return (payers.training == member, payers.inference == member) if payers is not None else None


def new_membership(name: str, collaboration_id: pulumi.Input[str], *, pays_for_queries: bool,
                   query_logging: bool, results: ResultDestination | None,
                   opts: pulumi.ResourceOptions, runs_jobs: bool = False,
                   ml_pays: tuple[bool, bool] | None = None) -> cleanrooms.Membership:
    # A member that runs PySpark jobs pays for their compute ("An error is returned if the
    # collaboration creator sets a FALSE value for the member who can run queries and jobs",
    # botocore PaymentConfiguration.jobCompute), logs them like queries, and receives their
    # results under <results prefix>/jobs (MembershipProtectedJobResultConfiguration; no
    # result format there: CSV). The results role's policy covers that prefix.
    log_status = "ENABLED" if query_logging else "DISABLED"
    return cleanrooms.Membership(
        name,
        collaboration_identifier=collaboration_id,
        query_log_status=cleanrooms.MembershipQueryLogStatus(log_status),
        # Must match what the collaboration designated, or the service refuses
        # (botocore MembershipQueryComputePaymentConfig.isResponsible).
        payment_configuration=cleanrooms.MembershipPaymentConfigurationArgs(
            query_compute=cleanrooms.MembershipQueryComputePaymentConfigArgs(is_responsible=pays_for_queries),
            job_compute=cleanrooms.MembershipJobComputePaymentConfigArgs(is_responsible=True) if runs_jobs else None,
            # What the collaboration designated for Clean Rooms ML, accepted (a mismatch is refused:
            # botocore MembershipModelTrainingPaymentConfig, MembershipModelInferencePaymentConfig).
            machine_learning=cleanrooms.MembershipMlPaymentConfigArgs(
                model_training=cleanrooms.MembershipModelTrainingPaymentConfigArgs(is_responsible=ml_pays[0]),
                model_inference=cleanrooms.MembershipModelInferencePaymentConfigArgs(is_responsible=ml_pays[1]),
            ) if ml_pays is not None else None),
        job_log_status=cleanrooms.MembershipJobLogStatus(log_status) if runs_jobs else None,
        default_job_result_configuration=cleanrooms.MembershipProtectedJobResultConfigurationArgs(
            output_configuration=cleanrooms.MembershipProtectedJobOutputConfigurationArgs(
                s3=cleanrooms.MembershipProtectedJobS3OutputConfigurationInputArgs(
                    bucket=results.bucket, key_prefix=f"{results.key_prefix}/jobs")),
            role_arn=results.role_arn,
        ) if runs_jobs and results else None,
        default_result_configuration=cleanrooms.MembershipProtectedQueryResultConfigurationArgs(
            output_configuration=cleanrooms.MembershipProtectedQueryOutputConfigurationArgs(
                s3=cleanrooms.MembershipProtectedQueryS3OutputConfigurationArgs(
                    bucket=results.bucket, key_prefix=results.key_prefix,
                    result_format=cleanrooms.MembershipResultFormat(results.result_format))),
            role_arn=results.role_arn,
        ) if results else None,
        opts=opts,
    )


@dataclass
class MemberArgs:
    collaboration_id: pulumi.Input[str]
    """From the owner's stack (reference or config)."""
    pays_for_queries: bool
    query_logging: bool = True
    results: ResultDestination | None = None
    protect: bool = True
    """A member who deletes its membership can never rejoin the collaboration."""
    runs_jobs: bool = False
    ml_pays: tuple[bool, bool] | None = None
    """Whether this member pays for model training and for inference (None: no ML payment in the collaboration)."""


class Member(pulumi.ComponentResource):
    membership: cleanrooms.Membership

    def __init__(self, name: str, args: MemberArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:Member", name, None, opts)
        self.membership = new_membership(
            f"{name}-membership", args.collaboration_id, pays_for_queries=args.pays_for_queries,
            query_logging=args.query_logging, results=args.results,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect), runs_jobs=args.runs_jobs,
            ml_pays=args.ml_pays)
        self.register_outputs({"membership_id": self.membership.membership_identifier})

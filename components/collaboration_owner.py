"""CollaborationOwner: the collaboration and the owner's membership.

Members and their abilities are fixed when the collaboration is created
(CloudFormation createOnlyProperties), so a change to them replaces the
collaboration; it is protected so that a config edit cannot delete it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws_native.cleanrooms as cleanrooms

from components.member_change import Credentials, MemberChange
from components.membership import ResultDestination, ml_pays, new_membership
from model.config import C3rSpec, CollaborationSpec, Member, MLPayers, Partner


@dataclass
class CollaborationOwnerArgs:
    spec: CollaborationSpec
    creator: Member
    """This organization: the creator, with abilities from its roles."""
    invited: Sequence[Partner]
    """The partners, each with abilities from its roles (an empty list for data producers).
    Those with added_by "changeRequest" join through a change request, not the members list."""
    analytics_engine: str
    results: ResultDestination | None = None
    """The owner's default result configuration, when it is the analyst."""
    payer: str = ""
    """Name of the member that pays for query compute."""
    ml_payers: MLPayers | None = None
    """Who pays for Clean Rooms ML model training and inference (None: no ML payment in the collaboration)."""
    query_logging: bool = True
    protect: bool = True
    credentials: Credentials = Credentials(region="")
    """This stack's AWS settings, for the change requests' API calls (partners added by change request)."""


def _by_change_request(member: Partner) -> bool:
    return member.added_by == "changeRequest"


def _payment(pays: bool, runs_jobs: bool = False, member: str = "",
             ml_payers: MLPayers | None = None) -> cleanrooms.CollaborationPaymentConfigurationArgs:
    return cleanrooms.CollaborationPaymentConfigurationArgs(
        query_compute=cleanrooms.CollaborationQueryComputePaymentConfigArgs(is_responsible=pays),
        # The member who runs jobs pays for them (see components/membership.py).
        job_compute=cleanrooms.CollaborationJobComputePaymentConfigArgs(is_responsible=True) if runs_jobs else None,
        # Clean Rooms ML: "Specify the members who will pay for query compute, model training, and model
        # inference costs" (User Guide, create-custom-ml-collaboration).
        machine_learning=cleanrooms.CollaborationMlPaymentConfigArgs(
            model_training=cleanrooms.CollaborationModelTrainingPaymentConfigArgs(
                is_responsible=ml_payers.training == member),
            model_inference=cleanrooms.CollaborationModelInferencePaymentConfigArgs(
                is_responsible=ml_payers.inference == member)) if ml_payers else None)


def _c3r(c3r: C3rSpec | None) -> cleanrooms.CollaborationDataEncryptionMetadataArgs | None:
    # Only with C3R: dataEncryptionMetadata turns the collaboration into one
    # that expects client-side encrypted columns.
    if c3r is None:
        return None
    return cleanrooms.CollaborationDataEncryptionMetadataArgs(
        allow_cleartext=c3r.allow_cleartext, allow_duplicates=c3r.allow_duplicates,
        allow_joins_on_columns_with_different_names=c3r.allow_joins_on_columns_with_different_names,
        preserve_nulls=c3r.preserve_nulls)


def _ml(abilities) -> cleanrooms.CollaborationMlMemberAbilitiesArgs | None:
    if not abilities:
        return None
    return cleanrooms.CollaborationMlMemberAbilitiesArgs(
        custom_ml_member_abilities=[cleanrooms.CollaborationCustomMlMemberAbility(a) for a in abilities])


class CollaborationOwner(pulumi.ComponentResource):
    collaboration: cleanrooms.Collaboration
    membership: cleanrooms.Membership

    def __init__(self, name: str, args: CollaborationOwnerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:CollaborationOwner", name, None, opts)
        spec = args.spec
        log_status = "ENABLED" if args.query_logging else "DISABLED"
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)

        self.collaboration = cleanrooms.Collaboration(
            f"{name}-collaboration",
            name=spec.name,
            description=spec.description,
            creator_display_name=args.creator.display_name,
            # Omitted abilities would leave the creator unable to do anything.
            creator_member_abilities=[cleanrooms.CollaborationMemberAbility(a) for a in args.creator.abilities],
            creator_payment_configuration=_payment(args.payer == args.creator.name, args.creator.runs_jobs,
                                                   args.creator.name, args.ml_payers),
            # Clean Rooms ML: what each member may receive (create-only); none unless its stack says so.
            creator_ml_member_abilities=_ml(args.creator.ml_abilities),
            members=[cleanrooms.CollaborationMemberSpecificationArgs(
                account_id=m.account_id,
                display_name=m.display_name,
                # The service requires memberAbilities on every member; [] is a data contributor.
                member_abilities=[cleanrooms.CollaborationMemberAbility(a) for a in m.abilities],
                payment_configuration=_payment(args.payer == m.name, m.runs_jobs, m.name, args.ml_payers),
                ml_member_abilities=_ml(m.ml_abilities),
            ) for m in args.invited if not _by_change_request(m)],
            query_log_status=cleanrooms.CollaborationQueryLogStatus(log_status),
            analytics_engine=cleanrooms.CollaborationAnalyticsEngine(args.analytics_engine),
            data_encryption_metadata=_c3r(spec.c3r),
            # Job logs like query logs, once any member runs jobs (create-only).
            job_log_status=cleanrooms.CollaborationJobLogStatus(log_status)
            if any(m.runs_jobs for m in (args.creator, *args.invited)) else None,
            auto_approved_change_types=[cleanrooms.CollaborationAutoApprovedChangeType(t)
                                        for t in spec.auto_approved_change_types] or None,
            # Residency: "When specified, results can only be written to these Regions"
            # (CreateCollaboration allowedResultRegions). Create-only: a change replaces the
            # collaboration, which protect stops (docs/governance.md).
            allowed_result_regions=[cleanrooms.CollaborationSupportedS3Region(r) for r in spec.allowed_result_regions]
            or None,
            # Cloud Control reads payment configuration back differently from how it was
            # given (hashicorp/terraform-provider-awscc#1903, "Drift is identified for the
            # inputs creator_payment_configuration ... and payment_configuration inside a
            # member"), and both are create-only: after `pulumi refresh` the drift would
            # propose replacing the collaboration. Ignored here; the payer is fixed when the
            # collaboration is created, and every stack must name the same one (model/plan.py).
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(
                ignore_changes=["creatorPaymentConfiguration", "members[*].paymentConfiguration"])),
        )
        self.membership = new_membership(
            f"{name}-membership", self.collaboration.collaboration_identifier,
            pays_for_queries=args.payer == args.creator.name, query_logging=args.query_logging,
            results=args.results, opts=kept, runs_jobs=args.creator.runs_jobs,
            ml_pays=ml_pays(args.ml_payers, args.creator.name))

        # Members added after creation: a change request each, so the collaboration stays.
        self.member_changes = {m.name: MemberChange(
            f"{name}-add-{m.name}", collaboration_id=self.collaboration.collaboration_identifier,
            account_id=m.account_id, display_name=m.display_name, abilities=list(m.abilities),
            owner_account_id=args.creator.account_id, timeout_seconds=spec.change_request_timeout_seconds,
            credentials=args.credentials, opts=pulumi.ResourceOptions(parent=self, depends_on=[self.membership]))
            for m in args.invited if _by_change_request(m)}

        self.register_outputs({
            "collaboration_id": self.collaboration.collaboration_identifier,
            "membership_id": self.membership.membership_identifier,
        })

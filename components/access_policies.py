"""What each kind of person may do in one organization's account: the permission sets' inline policies.

Attribute-based: every resource the stack creates carries the provider's
default tags (components/providers.py: organization, project, stack), and IAM
Identity Center passes the user's attributes as principal tags ("When you enable
ABAC and specify AccessControlAttributes, IAM Identity Center passes the
attribute values of the authenticated user into IAM for use in policy
evaluation", SSO Admin API, AccessControlAttribute). Each statement on Clean
Rooms, S3 objects and KMS requires the resource's tag to equal the principal's
and the principal's to be this organization's (Clean Rooms supports
aws:ResourceTag on its resource types: Service Authorization Reference); a
statement that cannot be scoped by tag names its resources exactly or is a
listing the service allows only on "*", bounded by the principal's tag.
The policy pack's cleanrooms-permission-sets-scoped checks exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pulumi

from components.iam import _doc


@dataclass(frozen=True)
class Scope:
    organization: str
    account_id: str
    region: str
    tag: str
    """The tag key resources and principals must share (access.scopeTag)."""
    value: str
    """This organization's value of it."""

    def tagged(self) -> dict:
        return {"StringEquals": {f"aws:ResourceTag/{self.tag}": f"${{aws:PrincipalTag/{self.tag}}}",
                                 f"aws:PrincipalTag/{self.tag}": self.value}}

    def principal(self) -> dict:
        return {"StringEquals": {f"aws:PrincipalTag/{self.tag}": self.value}}

    def arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{rest}"


def _membership(scope: Scope, sid: str, actions: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions),
            "Resource": [scope.arn("cleanrooms", "membership/*"), scope.arn("cleanrooms", "membership/*/*")],
            "Condition": scope.tagged()}


def _collaboration(scope: Scope, owner_account_id: str, collaboration_id: pulumi.Input[str] | None,
                   actions: list[str]) -> list[dict]:
    """The collaboration is the owner's resource, tagged in the owner's account: named exactly instead (none
    until this stack knows the collaboration's id)."""
    if collaboration_id is None:
        return []
    collaboration = pulumi.Output.concat(f"arn:aws:cleanrooms:{scope.region}:{owner_account_id}:collaboration/",
                                         collaboration_id)
    if not any("Template" in a for a in actions):
        return [{"Sid": "ReadThisCollaboration", "Effect": "Allow", "Action": sorted(actions),
                 "Resource": collaboration}]
    # The collaboration's templates live in the memberships of the members that made them (other accounts,
    # tagged there): Clean Rooms shows them only to members; here only to this organization's people.
    return [{"Sid": "ReadThisCollaboration", "Effect": "Allow", "Action": sorted(actions),
             "Resource": [collaboration, scope.arn("cleanrooms", "membership/*/analysistemplate/*").replace(
                 f":{scope.account_id}:", ":*:"), scope.arn("cleanrooms", "membership/*/privacybudgettemplate/*").replace(
                 f":{scope.account_id}:", ":*:")],
             "Condition": scope.principal()}]


def _bucket_read(sid: str, bucket: pulumi.Input[str], scope: Scope, write: bool = False) -> list[dict]:
    objects = ["s3:GetObject", *(["s3:PutObject"] if write else [])]
    return [
        {"Sid": f"{sid}List", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
         "Resource": pulumi.Output.concat("arn:aws:s3:::", bucket), "Condition": scope.principal()},
        {"Sid": f"{sid}Objects", "Effect": "Allow", "Action": objects,
         "Resource": pulumi.Output.concat("arn:aws:s3:::", bucket, "/*"), "Condition": scope.principal()},
    ]


def _keys(scope: Scope, actions: list[str]) -> dict:
    return {"Sid": "UseThisOrganizationsKeysThroughS3", "Effect": "Allow", "Action": sorted(actions),
            "Resource": scope.arn("kms", "key/*"),
            "Condition": {"StringEquals": {**scope.tagged()["StringEquals"],
                                           "kms:ViaService": f"s3.{scope.region}.amazonaws.com"}}}


def _listings(scope: Scope, actions: list[str]) -> dict:
    # Listings the service authorizes only on "*" (no resource-level permissions), bound to the principal's tag.
    return {"Sid": "ListingsOnlyOnStar", "Effect": "Allow", "Action": sorted(actions), "Resource": "*",
            "Condition": scope.principal()}


@dataclass(frozen=True)
class MLAccess:
    """What the analyst's Clean Rooms ML commands pass to the service (None: the stack has no such command)."""

    channel_role_arn: pulumi.Input[str] | None = None
    """mlTraining: the role an ML input channel's query runs with (python -m queryrunner ml)."""
    seed_role_arn: pulumi.Input[str] | None = None
    """lookalikeSeeds: the role Clean Rooms ML reads seeds with (python -m queryrunner audience)."""
    seed_bucket: pulumi.Input[str] | None = None


def _pass_to_ml(sid: str, role_arn: pulumi.Input[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "cleanrooms-ml.amazonaws.com"}}}


def _ml_statements(scope: Scope, ml: MLAccess) -> list[dict]:
    """The cleanrooms-ml actions `ml` and `audience` call, on the resource types the Service Authorization
    Reference gives them: an association or a configured audience model may be another member's (any account of
    the region), what this member creates is its own; bound to the principal's tag."""
    statements = []
    if ml.channel_role_arn is not None:
        statements += [
            {"Sid": "TrainCustomModelsInTheCollaboration", "Effect": "Allow", "Action": sorted([
                "cleanrooms-ml:CreateMLInputChannel", "cleanrooms-ml:GetMLInputChannel",
                "cleanrooms-ml:CreateTrainedModel", "cleanrooms-ml:GetTrainedModel",
                "cleanrooms-ml:StartTrainedModelInferenceJob", "cleanrooms-ml:GetTrainedModelInferenceJob",
                "cleanrooms-ml:StartTrainedModelExportJob"]),
             "Resource": [f"arn:aws:cleanrooms-ml:{scope.region}:*:membership/*/configured-model-algorithm-association/*",
                          *(scope.arn("cleanrooms-ml", f"membership/*/{kind}/*") for kind in (
                              "ml-input-channel", "trained-model", "trained-model-inference-job"))],
             "Condition": scope.principal()},
            _pass_to_ml("PassTheMlInputChannelRole", ml.channel_role_arn)]
    if ml.seed_role_arn is not None:
        statements += [
            {"Sid": "GenerateLookalikeSegments", "Effect": "Allow", "Action": sorted([
                "cleanrooms-ml:StartAudienceGenerationJob", "cleanrooms-ml:GetAudienceGenerationJob",
                "cleanrooms-ml:StartAudienceExportJob", "cleanrooms-ml:ListAudienceExportJobs"]),
             "Resource": [f"arn:aws:cleanrooms-ml:{scope.region}:*:configured-audience-model/*",
                          scope.arn("cleanrooms-ml", "audience-generation-job/*")],
             "Condition": scope.principal()},
            _pass_to_ml("PassTheSeedRole", ml.seed_role_arn)]
        if ml.seed_bucket is not None:
            statements.append({"Sid": "UploadSeeds", "Effect": "Allow", "Action": ["s3:PutObject"],
                               "Resource": pulumi.Output.concat("arn:aws:s3:::", ml.seed_bucket, "/seeds/*"),
                               "Condition": scope.principal()})
    return statements


def analyst_policy(scope: Scope, *, owner_account_id: str, collaboration_id: pulumi.Input[str] | None,
                   results_bucket: pulumi.Input[str], ml: MLAccess = MLAccess()) -> pulumi.Output[str]:
    """Run and read the results of its own membership's queries and jobs (python -m queryrunner), nothing else;
    with ``ml``, the Clean Rooms ML commands of the stack too. Every call that takes a membership or a
    collaboration needs cleanrooms:PassMembership / PassCollaboration (User Guide, ml-behaviors-byom)."""
    trains, seeds = ml.channel_role_arn is not None, ml.seed_role_arn is not None
    return _doc(
        _membership(scope, "QueriesOfThisOrganizationsMembership", [
            "cleanrooms:GetMembership", "cleanrooms:ListAnalysisTemplates", "cleanrooms:GetAnalysisTemplate",
            "cleanrooms:StartProtectedQuery", "cleanrooms:GetProtectedQuery", "cleanrooms:ListProtectedQueries",
            "cleanrooms:UpdateProtectedQuery", "cleanrooms:StartProtectedJob", "cleanrooms:GetProtectedJob",
            "cleanrooms:ListProtectedJobs", "cleanrooms:UpdateProtectedJob", "cleanrooms:ListPrivacyBudgets",
            "cleanrooms:PreviewPrivacyImpact", *(["cleanrooms:PassMembership"] if trains else [])]),
        *_collaboration(scope, owner_account_id, collaboration_id, [
            "cleanrooms:GetCollaboration", "cleanrooms:GetCollaborationAnalysisTemplate",
            "cleanrooms:BatchGetCollaborationAnalysisTemplate", "cleanrooms:GetCollaborationPrivacyBudgetTemplate",
            "cleanrooms:ListCollaborationPrivacyBudgets", *(["cleanrooms:PassCollaboration"] if seeds else [])]),
        _listings(scope, ["cleanrooms:ListMemberships", "cleanrooms:ListCollaborations", "cloudtrail:LookupEvents"]),
        *_bucket_read("ResultsBucket", results_bucket, scope),
        _keys(scope, ["kms:Decrypt", *(["kms:GenerateDataKey"] if seeds else [])]),
        *_ml_statements(scope, ml),
    )


def producer_policy(scope: Scope, *, owner_account_id: str, collaboration_id: pulumi.Input[str] | None,
                    data_bucket: pulumi.Input[str], database: pulumi.Input[str]) -> pulumi.Output[str]:
    """Manage its own configured tables, their rules and associations, and its data; watch the budget."""
    return _doc(
        {"Sid": "ThisOrganizationsConfiguredTables", "Effect": "Allow", "Action": sorted([
            "cleanrooms:GetConfiguredTable", "cleanrooms:UpdateConfiguredTable",
            "cleanrooms:CreateConfiguredTableAnalysisRule", "cleanrooms:GetConfiguredTableAnalysisRule",
            "cleanrooms:UpdateConfiguredTableAnalysisRule", "cleanrooms:DeleteConfiguredTableAnalysisRule"]),
         "Resource": scope.arn("cleanrooms", "configuredtable/*"), "Condition": scope.tagged()},
        _membership(scope, "AssociationsOfThisOrganizationsMembership", [
            "cleanrooms:GetMembership", "cleanrooms:GetConfiguredTableAssociation",
            "cleanrooms:ListConfiguredTableAssociations", "cleanrooms:UpdateConfiguredTableAssociation",
            "cleanrooms:ListPrivacyBudgets"]),
        *_collaboration(scope, owner_account_id, collaboration_id, [
            "cleanrooms:GetCollaboration", "cleanrooms:ListCollaborationPrivacyBudgets"]),
        _listings(scope, ["cleanrooms:ListConfiguredTables", "cleanrooms:ListMemberships"]),
        {"Sid": "ThisOrganizationsGlueTables", "Effect": "Allow",
         "Action": ["glue:GetDatabase", "glue:GetTable", "glue:GetTables"],
         "Resource": [scope.arn("glue", "catalog"), pulumi.Output.concat(scope.arn("glue", "database/"), database),
                      pulumi.Output.concat(scope.arn("glue", "table/"), database, "/*")],
         "Condition": scope.principal()},
        *_bucket_read("DataBucket", data_bucket, scope, write=True),
        _keys(scope, ["kms:Decrypt", "kms:GenerateDataKey"]),
    )


def auditor_policy(scope: Scope, *, owner_account_id: str, collaboration_id: pulumi.Input[str] | None,
                   audit_bucket: pulumi.Input[str] | None) -> pulumi.Output[str]:
    """Read-only: the membership's queries and jobs, the tables' rules, query logs, CloudTrail, the audit report."""
    statements = [
        _membership(scope, "ReadThisOrganizationsMembership", [
            "cleanrooms:GetMembership", "cleanrooms:ListProtectedQueries", "cleanrooms:GetProtectedQuery",
            "cleanrooms:ListProtectedJobs", "cleanrooms:GetProtectedJob", "cleanrooms:ListPrivacyBudgets",
            "cleanrooms:ListAnalysisTemplates", "cleanrooms:GetAnalysisTemplate",
            "cleanrooms:ListConfiguredTableAssociations", "cleanrooms:GetConfiguredTableAssociation"]),
        {"Sid": "ReadThisOrganizationsConfiguredTables", "Effect": "Allow",
         "Action": ["cleanrooms:GetConfiguredTable", "cleanrooms:GetConfiguredTableAnalysisRule"],
         "Resource": scope.arn("cleanrooms", "configuredtable/*"), "Condition": scope.tagged()},
        *_collaboration(scope, owner_account_id, collaboration_id, [
            "cleanrooms:GetCollaboration", "cleanrooms:ListCollaborationPrivacyBudgets"]),
        _listings(scope, ["cleanrooms:ListMemberships", "cleanrooms:ListConfiguredTables", "cloudtrail:LookupEvents",
                          "logs:DescribeLogGroups"]),
        {"Sid": "ReadCleanRoomsQueryLogs", "Effect": "Allow",
         "Action": ["logs:FilterLogEvents", "logs:GetLogEvents", "logs:GetQueryResults", "logs:StartQuery"],
         "Resource": [scope.arn("logs", "log-group:/aws/cleanrooms*"),
                      scope.arn("logs", "log-group:/aws/cleanrooms*:log-stream:*")],
         "Condition": scope.principal()},
    ]
    if audit_bucket:
        statements += [*_bucket_read("AuditBucket", audit_bucket, scope), _keys(scope, ["kms:Decrypt"])]
    return _doc(*statements)


def policies(scope: Scope, roles: Iterable[str], *, owner_account_id: str,
             collaboration_id: pulumi.Input[str] | None, results_bucket: pulumi.Input[str] | None,
             data_bucket: pulumi.Input[str] | None, database: pulumi.Input[str] | None,
             audit_bucket: pulumi.Input[str] | None, ml: MLAccess = MLAccess()) -> dict[str, pulumi.Output[str]]:
    """Permission set role -> its inline policy, for the roles the stack's access block declares."""
    made = {
        "analyst": lambda: analyst_policy(scope, owner_account_id=owner_account_id, collaboration_id=collaboration_id,
                                          results_bucket=results_bucket, ml=ml),
        "producer": lambda: producer_policy(scope, owner_account_id=owner_account_id,
                                            collaboration_id=collaboration_id, data_bucket=data_bucket,
                                            database=database),
        "auditor": lambda: auditor_policy(scope, owner_account_id=owner_account_id,
                                          collaboration_id=collaboration_id, audit_bucket=audit_bucket),
    }
    return {role: made[role]() for role in roles}

"""Federated access: this organization's people reach its Clean Rooms account through IAM Identity Center.

Declared in the organization's Identity Center account (its own provider,
pinned to that account): a permission set per kind of person (analyst,
producer, auditor) with an inline policy from components/access_policies.py and
a session duration (PT1H to PT12H, default the shortest, PT1H), assigned to an
Identity Center group on this organization's account; optionally the instance's
attribute-based access control attribute (the tag key the policies scope by).
A permission set with ``assign: false`` is left for a just-in-time tool to
assign and unassign (docs/governance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from model.config import AccessSpec


@dataclass
class FederatedAccessArgs:
    organization: str
    account_id: str
    """The Clean Rooms account the permission sets are assigned on."""
    spec: AccessSpec
    policies: dict[str, pulumi.Input[str]]
    """Permission set role (analyst, producer, auditor) -> its inline policy."""


class FederatedAccess(pulumi.ComponentResource):
    permission_sets: dict[str, aws.ssoadmin.PermissionSet]

    def __init__(self, name: str, args: FederatedAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:governance:FederatedAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.spec
        if spec.manage_attributes:
            # One ABAC configuration per instance ("Enables the attributes-based access control (ABAC) feature
            # for the specified IAM Identity Center instance"): the user's attribute becomes the principal tag.
            aws.ssoadmin.InstanceAccessControlAttributes(
                f"{name}-abac", instance_arn=spec.instance_arn,
                attributes=[aws.ssoadmin.InstanceAccessControlAttributesAttributeArgs(
                    key=spec.scope_tag, values=[aws.ssoadmin.InstanceAccessControlAttributesAttributeValueArgs(
                        sources=[spec.attribute_source])])],
                opts=child)
        self.permission_sets = {}
        for ps in spec.permission_sets:
            permission_set = aws.ssoadmin.PermissionSet(
                f"{name}-{ps.role}", name=f"{args.organization}-cleanrooms-{ps.role}"[:32],
                description=f"{ps.role} of {args.organization}'s Clean Rooms account {args.account_id}",
                instance_arn=spec.instance_arn, session_duration=ps.session_duration, opts=child)
            aws.ssoadmin.PermissionSetInlinePolicy(
                f"{name}-{ps.role}-policy", instance_arn=spec.instance_arn,
                permission_set_arn=permission_set.arn, inline_policy=args.policies[ps.role], opts=child)
            if ps.assign:
                aws.ssoadmin.AccountAssignment(
                    f"{name}-{ps.role}-assignment", instance_arn=spec.instance_arn,
                    permission_set_arn=permission_set.arn, principal_type="GROUP", principal_id=ps.group,
                    target_type="AWS_ACCOUNT", target_id=args.account_id, opts=child)
            self.permission_sets[ps.role] = permission_set
        self.register_outputs({"permission_sets": {role: p.arn for role, p in self.permission_sets.items()}})

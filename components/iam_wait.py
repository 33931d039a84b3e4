"""The one wait in the program: IAM propagation before Clean Rooms assumes a new role.

IAM is eventually consistent ("Any changes that you make in IAM ... take time
to become visible from all possible endpoints", IAM User Guide,
troubleshoot_general_eventual-consistency), and Clean Rooms checks that it can
assume a role when a membership or a table association naming it is created.
Projects that deploy this wait after creating the role (Terraform
time_sleep, 30 s: "the Clean Rooms collaboration cannot assume the IAM role
if it's created too soon", richardfan1126/aws-clean-rooms-lab; the Terraform
AWS provider's own membership test notes that depends_on "does not help").

So the wait is a resource in the graph (pulumiverse-time's Sleep): the
preview shows it, it runs only when it is created, and again only when the
role is replaced (its trigger). Its length is the iamPropagationSeconds config
key; 0 leaves it out.

Every role Clean Rooms assumes is built the same way (service_role): the role
under /service-role/, its one inline policy, then this wait.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import pulumi
import pulumi_aws as aws
import pulumiverse_time as time

from components import iam


def propagation_wait(name: str, role: aws.iam.Role, policies: Sequence[pulumi.Resource], seconds: int,
                     parent: pulumi.Resource) -> list[pulumi.Resource]:
    """What a resource that assumes ``role`` must depend on: the policies and, when seconds > 0, the wait."""
    if seconds <= 0:
        return [role, *policies]
    wait = time.Sleep(f"{name}-iam-propagation", create_duration=f"{seconds}s", triggers={"role": role.arn},
                      opts=pulumi.ResourceOptions(parent=parent, depends_on=[role, *policies]))
    return [wait]


class ServiceRole(NamedTuple):
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    ready: list[pulumi.Resource]
    """What a resource that names the role depends on (propagation_wait)."""


def service_role(name: str, *, organization: str, purpose: str, description: str, trust: pulumi.Input[str],
                 policy: pulumi.Input[str], iam_propagation_seconds: int, parent: pulumi.Resource) -> ServiceRole:
    """A role a service assumes: ``name`` (role ``<organization>-cleanrooms-<purpose>`` under
    iam.SERVICE_ROLE_PATH), its inline policy ``<name>-policy`` and its propagation wait."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, name=iam.service_role_name(organization, purpose), path=iam.SERVICE_ROLE_PATH,
                        description=description, assume_role_policy=trust, opts=child)
    role_policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child)
    return ServiceRole(role, role_policy, propagation_wait(name, role, [role_policy], iam_propagation_seconds, parent))

"""What one member declares for governance (docs/governance.md), from its stack's config.

- the audit trail (audit.trail): CloudTrail into an object-locked bucket;
- a retention on the Clean Rooms log groups, once there is a membership and query logging;
- the low-budget alarm (budgetAlarm), once there is a membership;
- federated access (access): permission sets in the organization's IAM Identity Center.
Each is its own component or resource; this module only decides which exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components import access_policies
from components.audit_trail import AuditTrail, AuditTrailArgs
from components.budget_alarm import BudgetAlarm, BudgetAlarmArgs
from components.federated_access import FederatedAccess, FederatedAccessArgs
from components.log_retention import LogRetention
from components.member_change import Credentials
from model.config import OWNER, Settings


@dataclass
class Governance:
    audit_trail: AuditTrail | None
    budget_alarm: BudgetAlarm | None
    access: FederatedAccess | None

    def exports(self) -> dict[str, Any]:
        return {
            "audit_trail_arn": self.audit_trail.trail.arn if self.audit_trail else None,
            "budget_alarm": self.budget_alarm.alarm.name if self.budget_alarm else None,
            "permission_sets": {role: p.arn for role, p in self.access.permission_sets.items()}
            if self.access else None,
        }


def declare_governance(settings: Settings, providers, *, membership, collaboration_id, results,
                       producer, ml: access_policies.MLAccess = access_policies.MLAccess()) -> Governance:
    org, opts = settings.org, providers.opts
    owner_account = next(m.account_id for m in settings.members if OWNER in m.roles)
    trail = AuditTrail(f"{org.name}-audit", AuditTrailArgs(
        organization=org.name, account_id=org.account_id, region=settings.region,
        retention_days=settings.audit.retention_days, lock_mode=settings.audit.lock_mode, protect=settings.protect),
        opts=opts()) if settings.audit.trail else None

    if membership is not None and settings.query_logging:
        LogRetention(f"{org.name}-log-retention", days=settings.audit.log_retention_days, account_id=org.account_id,
                     credentials=Credentials(settings.region, settings.profile, settings.assume_role_arn),
                     wait_seconds=settings.audit.log_group_wait_seconds,
                     opts=pulumi.ResourceOptions(depends_on=[membership]))

    alarm = None
    if settings.budget_alarm is not None and membership is not None:
        spec = settings.budget_alarm
        alarm = BudgetAlarm(f"{org.name}-budget-alarm", BudgetAlarmArgs(
            organization=org.name, account_id=org.account_id, region=settings.region,
            collaboration_id=collaboration_id, owner_account_id=owner_account, below_percent=spec.below_percent,
            schedule_minutes=spec.schedule_minutes, emails=list(spec.emails),
            log_retention_days=settings.audit.log_retention_days,
            iam_propagation_seconds=settings.iam_propagation_seconds, protect=settings.protect), opts=opts())

    access = None
    if settings.access is not None:
        spec = settings.access
        value = {"organization": org.name, "project": settings.project, "stack": settings.stack}[spec.scope_tag]
        scope = access_policies.Scope(org.name, org.account_id, settings.region, spec.scope_tag, value)
        access = FederatedAccess(f"{org.name}-access", FederatedAccessArgs(
            organization=org.name, account_id=org.account_id, spec=spec,
            policies=access_policies.policies(
                scope, [p.role for p in spec.permission_sets], owner_account_id=owner_account,
                collaboration_id=collaboration_id, results_bucket=results.storage.bucket.bucket if results else None,
                data_bucket=producer.storage.bucket.bucket if producer else None,
                database=producer.database.name if producer else None,
                audit_bucket=trail.storage.bucket.bucket if trail else None, ml=ml)),
            opts=providers.identity_opts())
    return Governance(trail, alarm, access)

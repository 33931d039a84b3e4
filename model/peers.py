"""What one stack knows about a partner: the partner's stack outputs.

Read by components/peers.py (through a stack reference, or copied into
config for partners in another backend); the decisions built on them are in
model/plan.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from model.config import Partner

# Output names a partner's stack may export that this stack reads.
PEER_KEYS = ("organization", "account_id", "region", "roles", "dataset", "join_key", "query_compute_payer",
             "collaboration_id", "membership_id", "membership_arn", "analytics_engine",
             "configured_table_association_name", "configured_table_association_arn", "access_budget",
             "differential_privacy", "analysis_rule", "privacy_budget",
             "analysis_templates", "job_templates", "runs_jobs", "members",
             "allowed_result_regions", "ml_abilities", "lookalike", "custom_model", "ml_payers")


@dataclass(frozen=True)
class PeerOutputs:
    """Known output values of one partner (empty when it has not deployed)."""

    partner: Partner
    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    @property
    def collaboration_id(self) -> str | None:
        return self.get("collaboration_id")

    @property
    def membership_arn(self) -> str | None:
        return self.get("membership_arn")

    @property
    def table_alias(self) -> str | None:
        """Association name of the partner's table, once it is in the collaboration."""
        return self.get("configured_table_association_name")

    @property
    def template_arns(self) -> list[str]:
        return [t["arn"] for t in (self.get("analysis_templates") or {}).values()]

    def job_template_arns(self, table: str) -> list[str]:
        """The partner's PySpark templates that read ``table`` (what a rule approving by ARN lists)."""
        return [t["arn"] for t in (self.get("job_templates") or {}).values() if table in (t.get("tables") or [])]

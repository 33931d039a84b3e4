"""CrossGuard policies for the Clean Rooms collaboration (package kept importable
without starting a policy server: only ../__main__.py builds the PolicyPack)."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, Policy

from . import cleanrooms, data, iam, stack

PACK_NAME = "cleanrooms-guard"
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY

POLICIES: list[Policy] = [*cleanrooms.POLICIES, *data.POLICIES, *iam.POLICIES, *stack.POLICIES]

__all__ = ["PACK_NAME", "DEFAULT_ENFORCEMENT", "POLICIES"]

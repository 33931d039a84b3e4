"""Privacy budgets: what is left, and whether a query may spend it (differential privacy, then access).

How the check works (all shapes from the botocore cleanrooms 2022-02-17 model):
- list_privacy_budgets(privacyBudgetType=DIFFERENTIAL_PRIVACY) gives, per budget,
  the configured epsilon and for each aggregation type (AVG, COUNT,
  COUNT_DISTINCT, SUM, STDDEV) maxCount and remainingCount.
- The budget's template (get_collaboration_privacy_budget_template) gives
  usersNoisePerQuery; preview_privacy_impact(epsilon, usersNoisePerQuery) tells
  how many aggregations of each type a *whole* budget pays for, so one
  aggregation of type t costs 1/maxCount_t of the budget.
- The template's SQL (get_collaboration_analysis_template) tells how many
  aggregations of each type one run performs. The sum of their costs is compared
  with the fraction of the budget that is left (remainingCount/maxCount).
The counting and the refusal rule are model/budget.py's, shared with the local
clean room.

Access budgets (privacyBudgetType ACCESS_BUDGET) are simpler: a table owner
limits how many times a configured table association may be used (each query
reading it uses one), per calendar day/week/month and/or over its lifetime.
list_privacy_budgets gives, per association ARN, each period's remaining count
and aggregateRemainingBudget, the lower of them; at 0 Clean Rooms refuses any
query that reads the table, and so does `run`, before starting it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from model.budget import Budget, Impact, budget_rows, count_aggregations  # noqa: F401 (re-exported)
from queryrunner.outputs import Template

DP = "DIFFERENTIAL_PRIVACY"
ACCESS = "ACCESS_BUDGET"


@dataclass
class AccessBudget:
    """One table's access budget (AccessBudget of the cleanrooms model)."""

    resource_arn: str                 # the configured table association (or intermediate table) ARN
    aggregate_remaining: int          # the lower of the period and lifetime budgets' remaining uses
    details: list[dict[str, Any]] = field(default_factory=list)  # AccessBudgetDetails, 1-2 of them

    def describe(self) -> str:
        parts = []
        for d in self.details:
            text = f"{d['budgetType']} {d['remainingBudget']} of {d['budget']} left"
            if d.get("endTime") is not None and d["budgetType"] != "LIFETIME":
                text += f" until {_time(d['endTime'])}"
            parts.append(text)
        return "; ".join(parts) or f"{self.aggregate_remaining} left"


def _summaries(client, membership_id: str, kind: str, collaboration_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Every privacy budget summary of one type (DP or ACCESS): the membership's view (ListPrivacyBudgets), or,
    with ``collaboration_id``, the collaboration-wide one (ListCollaborationPrivacyBudgets), which a member
    whose table is protected reads to watch its budget burn. Both summaries carry the same PrivacyBudget."""
    if collaboration_id is not None:
        pages = client.get_paginator("list_collaboration_privacy_budgets").paginate(
            collaborationIdentifier=collaboration_id, privacyBudgetType=kind)
        for page in pages:
            yield from page["collaborationPrivacyBudgetSummaries"]
        return
    paginator = client.get_paginator("list_privacy_budgets")
    for page in paginator.paginate(membershipIdentifier=membership_id, privacyBudgetType=kind):
        yield from page["privacyBudgetSummaries"]


def list_access_budgets(client, membership_id: str, collaboration_id: str | None = None) -> list[AccessBudget]:
    budgets = []
    for summary in _summaries(client, membership_id, ACCESS, collaboration_id):
        access = (summary.get("budget") or {}).get("accessBudget")
        if access:
            budgets.append(AccessBudget(access["resourceArn"], access["aggregateRemainingBudget"],
                                        list(access.get("details") or [])))
    return budgets


def _time(value: Any) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) else str(value)


def table_label(resource_arn: str, names: dict[str, str]) -> str:
    """The association's name when the stack output access_budgets names it, else the ARN's last part (its id)."""
    return names.get(resource_arn) or resource_arn.rsplit("/", 1)[-1] or resource_arn


def access_rows(budgets: list[AccessBudget], names: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["table", "budget type", "remaining", "budget", "period start", "period end", "usable now"]
    rows = []
    for b in sorted(budgets, key=lambda b: table_label(b.resource_arn, names)):
        for d in b.details:
            rows.append([table_label(b.resource_arn, names), d["budgetType"], str(d["remainingBudget"]),
                         str(d["budget"]), _time(d.get("startTime")), _time(d.get("endTime")),
                         str(b.aggregate_remaining)])
    return header, rows


class BudgetError(Exception):
    """The budget cannot be checked or the query would exhaust it (exit 1)."""


def list_budgets(client, membership_id: str, collaboration_id: str | None = None) -> list[Budget]:
    budgets = []
    for summary in _summaries(client, membership_id, DP, collaboration_id):
        dp = (summary.get("budget") or {}).get("differentialPrivacy")
        if dp:
            aggs = {a["type"]: (a["maxCount"], a["remainingCount"]) for a in dp["aggregations"]}
            budgets.append(Budget(summary["id"], summary["privacyBudgetTemplateId"], dp["epsilon"], aggs))
    return budgets


def assess(client, membership_id: str, collaboration_id: str, template: Template) -> list[Impact]:
    """Estimate what one run of `template` costs against every DP budget of the collaboration."""
    budgets = list_budgets(client, membership_id)
    if not budgets:
        raise BudgetError("template is marked differential_privacy but the collaboration has no "
                          "DIFFERENTIAL_PRIVACY budget (is the privacy budget template deployed?)")
    source = client.get_collaboration_analysis_template(
        collaborationIdentifier=collaboration_id, analysisTemplateArn=template.arn
    )["collaborationAnalysisTemplate"].get("source") or {}
    if "text" not in source:
        raise BudgetError(f"cannot read the SQL of template {template.name!r} to estimate its privacy cost")
    usage = count_aggregations(source["text"])
    impacts = []
    for budget in budgets:
        params = client.get_collaboration_privacy_budget_template(
            collaborationIdentifier=collaboration_id, privacyBudgetTemplateIdentifier=budget.template_id
        )["collaborationPrivacyBudgetTemplate"]["parameters"]["differentialPrivacy"]
        preview = client.preview_privacy_impact(
            membershipIdentifier=membership_id,
            parameters={"differentialPrivacy": {"epsilon": params["epsilon"],
                                                "usersNoisePerQuery": params["usersNoisePerQuery"]}},
        )["privacyImpact"]["differentialPrivacy"]["aggregations"]
        per_budget = {a["type"]: a["maxCount"] for a in preview}
        cost = 0.0
        for agg, n in usage.items():
            full = per_budget.get(agg, 0)
            cost += n / full if full else float("inf")  # type not allowed at all: can never run
        impacts.append(Impact(budget, usage, cost, budget.remaining_fraction))
    return impacts


def check(client, membership_id: str, collaboration_id: str, template: Template,
          allow_exhaustion: bool, say) -> None:
    """Raise BudgetError when a run would exhaust a budget and that is not allowed."""
    for impact in assess(client, membership_id, collaboration_id, template):
        say(impact.describe())
        if impact.exhausts:
            if not allow_exhaustion:
                raise BudgetError(
                    f"refusing to run {template.name!r}: it would exhaust the remaining privacy budget "
                    f"({impact.describe()}). Pass --allow-budget-exhaustion to run it anyway."
                )
            say("WARNING: this run exhausts the privacy budget (--allow-budget-exhaustion given)")



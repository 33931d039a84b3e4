"""Differential-privacy budget: what is left, and whether a query may spend it.

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
Counting aggregate calls in the whole SQL over-counts aggregates in CTEs over
non-protected tables; for a refusal check, erring on the side of caution is
the right direction.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from queryrunner.outputs import Template

DP = "DIFFERENTIAL_PRIVACY"
AGG_TYPES = ("COUNT", "COUNT_DISTINCT", "SUM", "AVG", "STDDEV")

# sqlglot node -> Clean Rooms DP aggregation type (Stddev covers STDDEV_SAMP/_POP).
_AGG_NODES = ((exp.Count, "COUNT"), (exp.Sum, "SUM"), (exp.Avg, "AVG"), (exp.Stddev, "STDDEV"),
              (exp.StddevSamp, "STDDEV"), (exp.StddevPop, "STDDEV"))

class BudgetError(Exception):
    """The budget cannot be checked or the query would exhaust it (exit 1)."""


@dataclass
class Budget:
    id: str
    template_id: str
    epsilon: int
    aggregations: dict[str, tuple[int, int]]  # type -> (maxCount, remainingCount)

    @property
    def remaining_fraction(self) -> float:
        fractions = [rem / mx for mx, rem in self.aggregations.values() if mx > 0]
        return min(fractions) if fractions else 0.0


def count_aggregations(sql: str) -> Counter:
    """Aggregate calls per Clean Rooms DP aggregation type.

    Parsed with sqlglot (as components/queries.py reads the same templates),
    so literals and comments never count.
    """
    counts: Counter = Counter()
    for node in sqlglot.parse_one(sql, read="spark").walk():
        for cls, kind in _AGG_NODES:
            if type(node) is cls:
                distinct = kind == "COUNT" and isinstance(node.this, exp.Distinct)
                counts["COUNT_DISTINCT" if distinct else kind] += 1  # SUM(DISTINCT x) is still a SUM
    return counts

def list_budgets(client, membership_id: str) -> list[Budget]:
    budgets = []
    paginator = client.get_paginator("list_privacy_budgets")
    for page in paginator.paginate(membershipIdentifier=membership_id, privacyBudgetType=DP):
        for summary in page["privacyBudgetSummaries"]:
            dp = (summary.get("budget") or {}).get("differentialPrivacy")
            if not dp:
                continue
            aggs = {a["type"]: (a["maxCount"], a["remainingCount"]) for a in dp["aggregations"]}
            budgets.append(Budget(summary["id"], summary["privacyBudgetTemplateId"], dp["epsilon"], aggs))
    return budgets


def budget_rows(budgets: list[Budget]) -> tuple[list[str], list[list[str]]]:
    header = ["budget", "epsilon", "aggregation", "remaining", "max", "remaining %"]
    rows = []
    for b in budgets:
        for agg in sorted(b.aggregations):
            mx, rem = b.aggregations[agg]
            pct = f"{100 * rem / mx:.1f}" if mx else "0.0"
            rows.append([b.id, str(b.epsilon), agg, str(rem), str(mx), pct])
    return header, rows


@dataclass
class Impact:
    budget: Budget
    usage: Counter
    cost: float          # fraction of a full budget this run spends
    remaining: float     # fraction of the budget left

    @property
    def exhausts(self) -> bool:
        return self.cost >= self.remaining

    def describe(self) -> str:
        used = ", ".join(f"{n} {t}" for t, n in sorted(self.usage.items())) or "no aggregations"
        return (f"this run uses {used} = {100 * self.cost:.2f}% of the privacy budget; "
                f"{100 * self.remaining:.2f}% remains (budget {self.budget.id}, epsilon {self.budget.epsilon})")


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



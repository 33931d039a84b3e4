"""A differential-privacy budget and what one run of a template costs it.

Shared by the cloud path (queryrunner/budget.py fills it from
list_privacy_budgets and preview_privacy_impact) and the local clean room
(localroom/ledger.py fills it from its ledger), so both refuse the same way.
Shapes follow the botocore cleanrooms model: per aggregation type (AVG, COUNT,
COUNT_DISTINCT, SUM, STDDEV) a maxCount and a remainingCount.

Which aggregations a run is charged for: those of the final SELECT (its
projections, HAVING and ORDER BY, each distinct aggregate once), where noise
is added; aggregates in CTEs over protected tables are at the user level
(dp-sql-capabilities) and are not released.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlglot import exp

from model.sql_columns import parse_template

AGG_TYPES = ("COUNT", "COUNT_DISTINCT", "SUM", "AVG", "STDDEV")
_DP_TYPES = {exp.Count: "COUNT", exp.Sum: "SUM", exp.Avg: "AVG", exp.Stddev: "STDDEV", exp.StddevSamp: "STDDEV",
             exp.StddevPop: "STDDEV"}


def dp_type(node: exp.AggFunc) -> str | None:
    """The DP aggregation type of one aggregate call (None: not a DP aggregation)."""
    kind = _DP_TYPES.get(type(node))
    if kind == "COUNT" and isinstance(node.this, exp.Distinct):
        return "COUNT_DISTINCT"
    return kind  # SUM(DISTINCT x) is still a SUM


def final_aggregates(select: exp.Select) -> list[exp.AggFunc]:
    """Distinct aggregate calls of a final SELECT (projections, HAVING, ORDER BY), first occurrence each."""
    parts = [*select.expressions, select.args.get("having"), select.args.get("order")]
    seen: dict[str, exp.AggFunc] = {}
    for part in parts:
        if part is None:
            continue
        for node in part.walk():
            if isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window):
                seen.setdefault(node.sql(), node)
    return list(seen.values())


def count_aggregations(sql: str) -> Counter:
    """DP aggregations one run of ``sql`` is charged for (literals and comments never count)."""
    tree = parse_template(sql)
    selects = [tree] if isinstance(tree, exp.Select) else list(tree.find_all(exp.Select))[:1]
    counts: Counter = Counter()
    for select in selects:
        for node in final_aggregates(select):
            kind = dp_type(node)
            if kind:
                counts[kind] += 1
    return counts


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

    @property
    def affordable(self) -> bool:
        """Whether the budget can pay for the run at all (the service refuses a run it cannot)."""
        return self.cost <= self.remaining + 1e-12

    def describe(self) -> str:
        used = ", ".join(f"{n} {t}" for t, n in sorted(self.usage.items())) or "no aggregations"
        return (f"this run uses {used} = {100 * self.cost:.2f}% of the privacy budget; "
                f"{100 * self.remaining:.2f}% remains (budget {self.budget.id}, epsilon {self.budget.epsilon})")


# -- the forecast: how many more runs the budget allows, and how fast it burns ----------------------------------
# "Refresh privacy budget monthly ... allows arbitrary amounts of information to be revealed about rows of the
# data when repeatedly queried across refreshes" (User Guide, dp-settings): the forecast says when a refresh
# comes, and docs/local-clean-room.md what repeating the same windows over the same rows reveals.


def runs_left(cost: float, remaining: float) -> int:
    """Whole runs of ``cost`` (a fraction of the budget) that ``remaining`` pays for; the last of them exhausts it
    when they use it up exactly (a run that exhausts the budget needs --allow-budget-exhaustion)."""
    if cost <= 0:
        raise ValueError("a run of a differentially private template always costs something")
    return int((remaining + 1e-12) // cost)


@dataclass(frozen=True)
class Burn:
    """What this period has spent, over how long: the rate the forecast extrapolates."""

    spent: float                 # fraction of the budget spent since ``since``
    remaining: float
    since: dt.datetime | None  # the period's start (or the first charge); None: unknown
    now: dt.datetime
    refresh: dt.datetime | None  # when a new budget starts (CALENDAR_MONTH); None: never

    def describe(self) -> str:
        refresh = (f"the budget refreshes on {self.refresh:%Y-%m-%d}" if self.refresh is not None
                   else "the budget never refreshes")
        if self.since is None:
            return f"{100 * self.spent:.2f}% spent, {100 * self.remaining:.2f}% left; {refresh} (rate unknown)"
        days = max((self.now - self.since).total_seconds() / 86400, 1 / 24)  # at least an hour
        per_day = self.spent / days
        rate = f"{100 * self.spent:.2f}% spent in {days:.1f} days ({100 * per_day:.2f}% a day)"
        if per_day <= 0:
            return f"{rate}; {refresh}"
        empty = self.now + dt.timedelta(days=self.remaining / per_day)
        if self.refresh is not None and empty >= self.refresh:
            return f"{rate}: at this rate it lasts until the refresh on {self.refresh:%Y-%m-%d}"
        return f"{rate}: at this rate it runs out on {empty:%Y-%m-%d %H:%M} UTC; {refresh}"


def forecast_rows(items: list[tuple[str, float]], remaining: float) -> tuple[list[str], list[list[str]]]:
    """One row per template: (name, cost of one run as a fraction of the budget)."""
    header = ["template", "one run", "runs left"]
    return header, [[name, f"{100 * cost:.2f}%", str(runs_left(cost, remaining))] for name, cost in items]

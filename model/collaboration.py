"""The collaboration as a query sees it: members, associated tables and their rules.

Two sources build the same view:
- ``from_stack_files``: every member's stack file in this project (the local
  clean room, which plays the whole collaboration on this machine);
- ``from_settings``: this stack's config plus its partners' stack outputs (the
  Pulumi program at preview, which knows a partner's table and rule once the
  partner has deployed and exported them).

The validator (model/validator) and the local engine (localroom/) read only
this view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from model.config import (ANALYST, PRODUCER, AccessBudgetSpec, AnalysisRuleSpec, Member, PrivacyBudgetSpec,
                          Settings, load_settings, receiver_with_dp)
from model.datasets import IDENTIFIER_ROLES, Dataset, load_dataset
from model.errors import ConfigError
from model.peers import PeerOutputs
from model.stackfiles import ROOT, load_stack_config, project_name, project_values, stack_from_reference
from model.templates import QueryTemplate


@dataclass(frozen=True)
class Table:
    """One configured table, by the alias its association gives it in SQL."""

    alias: str
    owner: Member
    dataset: Dataset
    rule: AnalysisRuleSpec | None
    """None while the owner has not exported it (a partner that has not deployed)."""
    associated: bool = True
    """False for a table a producer declares but has not associated yet."""
    access_budget: AccessBudgetSpec | None = None
    """The owner's accessBudget (how many times the table may be used), when known: from_stack_files sets it."""

    @property
    def disallowed_output(self) -> frozenset[str]:
        """Columns that can never be in the output: the rule's, and every identifier."""
        rule_columns = self.rule.disallowed_output_columns if self.rule else ()
        return frozenset((*rule_columns, *self.dataset.names_with_role(*IDENTIFIER_ROLES)))

    @property
    def differential_privacy(self) -> bool:
        return bool(self.rule and self.rule.differential_privacy)

    @property
    def user_identifier(self) -> str | None:
        return self.rule.differential_privacy_column if self.rule else None

    @property
    def threshold(self) -> tuple[str, int] | None:
        if self.rule and self.rule.threshold_column:
            return self.rule.threshold_column, int(self.rule.threshold_minimum)
        return None


@dataclass(frozen=True)
class Collaboration:
    engine: str
    members: tuple[Member, ...]
    tables: Mapping[str, Table]
    budget: PrivacyBudgetSpec | None = None
    analyst_templates: frozenset[str] = field(default_factory=frozenset)
    """Names of the analyst's templates: what a member approving templates approves."""

    @property
    def analyst(self) -> Member:
        return next(m for m in self.members if ANALYST in m.roles)

    def schema(self) -> dict[str, dict[str, str]]:
        """Table alias -> column -> type, for SQL analysis."""
        return {alias: {c.name: c.glue_type for c in t.dataset.columns} for alias, t in self.tables.items()}


def _table(member: Member, dataset: Dataset, rule: AnalysisRuleSpec | None, associated: bool,
           access_budget: AccessBudgetSpec | None = None) -> Table:
    return Table(alias=dataset.name, owner=member, dataset=dataset, rule=rule, associated=associated,
                 access_budget=access_budget)


# --------------------------------------------------------------------------
# From every member's stack file (the local clean room)


def load_stack(stack: str, root: Path = ROOT, check_data: bool = True, data_dir: Path | None = None) -> Settings:
    project = project_name(root)
    return load_settings(project_values(load_stack_config(stack, root), project), project, stack,
                         data_dir=data_dir, check_data=check_data)


def from_stack_files(stack: str, root: Path = ROOT, check_data: bool = False,
                     data_dir: Path | None = None) -> tuple[Settings, Collaboration]:
    """This stack's settings and the whole collaboration as its members' stack files declare it.

    Every producer's stack file must be in the project: the local clean room
    needs each table's rule, which only its owner's config holds. ``data_dir``
    replaces every stack's dataDir (the same schemas with other data).
    """
    own = load_stack(stack, root, check_data, data_dir)
    settings = {own.org.name: own}
    for partner in own.partners:
        if not partner.stack:
            raise ConfigError(f"partners[{own.partners.index(partner)}].stack",
                              f"the local clean room reads partner '{partner.name}' from its stack file, "
                              "but this partner has 'outputs' and no 'stack'; add the partner's stack file "
                              "to the project and name it with 'stack'")
        theirs = load_stack(stack_from_reference(partner.stack), root, check_data, data_dir)
        _agree(own, partner, theirs)
        settings[partner.name] = theirs
    owner = next(s for s in settings.values() if s.collaboration is not None)
    budgets = [s for s in settings.values() if s.budget is not None]
    if len(budgets) > 1:
        raise ConfigError("differentialPrivacy", f"stacks {[s.stack for s in budgets]} both set the collaboration's "
                          "privacy budget; a collaboration has only one (CreatePrivacyBudgetTemplate)")
    tables = {s.dataset.name: _table(s.org, s.dataset, s.analysis_rule, True, s.access_budget)
              for s in settings.values() if PRODUCER in s.roles}
    analyst = next(s for s in settings.values() if s.analyst is not None)
    collab = Collaboration(engine=owner.analytics_engine, members=tuple(s.org for s in settings.values()),
                           tables=tables, budget=budgets[0].budget if budgets else None,
                           analyst_templates=frozenset(q.name for q in analyst.analyst.queries))
    return own, collab


def _agree(own: Settings, partner: Member, theirs: Settings) -> None:
    """What this stack says of a partner must be what the partner's own stack file says."""
    where = f"partners[{own.partners.index(partner)}]"
    for key, mine, actual in (("accountId", partner.account_id, theirs.org.account_id),
                              ("roles", sorted(partner.roles), sorted(theirs.org.roles)),
                              ("dataset", partner.dataset, theirs.org.dataset),
                              ("name", partner.name, theirs.org.name),
                              ("runsJobs", partner.runs_jobs, theirs.org.runs_jobs)):
        if mine != actual:
            raise ConfigError(f"{where}.{key}", f"is {mine!r}, but partner stack '{theirs.stack}' says "
                              f"{actual!r}; make the two stack files agree")


# --------------------------------------------------------------------------
# From this stack's config and its partners' outputs (the program at preview)


def budget_export(budget: PrivacyBudgetSpec | None) -> dict[str, Any] | None:
    """The privacy budget this stack sets, as a stack output (partners check there is only one)."""
    if budget is None:
        return None
    return {"epsilon": budget.epsilon, "usersNoisePerQuery": budget.users_noise_per_query,
            "autoRefresh": budget.auto_refresh}


def rule_export(rule: AnalysisRuleSpec | None) -> dict[str, Any] | None:
    """The analysis rule as a stack output, so partners can check templates against it."""
    return None if rule is None else asdict(rule)


def rule_from_export(value: Any) -> AnalysisRuleSpec | None:
    if not isinstance(value, dict):
        return None
    fields = AnalysisRuleSpec.__dataclass_fields__
    plain = {k: _tuples(v) for k, v in value.items() if k in fields}
    return AnalysisRuleSpec(**plain)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def from_settings(settings: Settings, peers: Mapping[str, PeerOutputs],
                  analyst_queries: tuple[QueryTemplate, ...] = ()) -> Collaboration:
    tables: dict[str, Table] = {}
    if settings.dataset is not None:
        tables[settings.dataset.name] = _table(settings.org, settings.dataset, settings.analysis_rule, True)
    for partner in settings.partners:
        if PRODUCER not in partner.roles or not partner.dataset:
            continue
        peer = peers.get(partner.name)
        alias = peer.table_alias if peer else None
        dataset = load_dataset(partner.dataset, settings.data_dir)
        rule = rule_from_export(peer.get("analysis_rule")) if peer else None
        # The partner's own stack refuses this for its own roles; here its roles are this stack's
        # (the owner's invitation sets its abilities).
        problem = receiver_with_dp(partner, rule)
        if problem:
            raise ConfigError(f"partners[{settings.partners.index(partner)}].roles",
                              f"{problem} (its exported analysis rule has analysisRule.differentialPrivacy)")
        tables[dataset.name] = _table(partner, dataset, rule, associated=alias == dataset.name)
    return Collaboration(engine=settings.analytics_engine, members=settings.members, tables=tables,
                         budget=settings.budget, analyst_templates=frozenset(q.name for q in analyst_queries))

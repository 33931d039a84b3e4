"""Decisions that combine this stack's config with its partners' outputs.

Pure functions over known values, so what a stack declares is decided before
any resource exists and is the same in preview and update. Functions that
leave something out say why through ``log`` (the program passes pulumi.log.info).
"""

from __future__ import annotations

import math
from typing import Callable

from model.config import ANALYST, OWNER, PRODUCER, Member, Settings
from model.errors import ConfigError
from model.peers import PeerOutputs
from model.templates import shown_path

Log = Callable[[str], None]


def _silent(message: str) -> None:
    pass


def check_partners(settings: Settings, peers: dict[str, PeerOutputs]) -> None:
    """What this stack says of each partner must be what the partner's own stack reports.

    A partner that has not deployed reports nothing; one that has must agree on
    who it is (name, account, roles, dataset), and share this collaboration's
    region and join key (Clean Rooms needs the data, Glue and the collaboration
    in one region; both tables join on the same pseudonymous key).
    """
    for index, partner in enumerate(settings.partners):
        peer = peers.get(partner.name)
        if peer is None or not peer.values:
            continue
        source = partner.stack or f"partners[{index}].outputs"
        checks = (
            ("name", partner.name, peer.get("organization")),
            ("accountId", partner.account_id, peer.get("account_id")),
            ("roles", sorted(partner.roles), sorted(peer.get("roles")) if peer.get("roles") is not None else None),
            ("dataset", partner.dataset, peer.get("dataset") if PRODUCER in partner.roles else partner.dataset),
            # Fixed in the collaboration when it is created (CAN_RUN_JOB, ML abilities), so both must say it.
            ("runsJobs", partner.runs_jobs, peer.get("runs_jobs")),
            ("mlAbilities", list(partner.ml_abilities), peer.get("ml_abilities")),
        )
        for key, mine, theirs in checks:
            if theirs is not None and mine != theirs:
                raise ConfigError(f"partners[{index}].{key}", f"is {mine!r}, but the stack of '{partner.name}' "
                                  f"({source}) reports {theirs!r}; make the two stack files agree")
        for key, mine, theirs in (("region", settings.region, peer.get("region")),
                                  ("joinKey", settings.join_key, peer.get("join_key")),
                                  ("queryComputePayer", settings.payer, peer.get("query_compute_payer")),
                                  # Who pays for Clean Rooms ML: each membership must accept what the
                                  # collaboration designated.
                                  ("modelTrainingPayer", _ml_payer(settings, "training"),
                                   _peer_ml_payer(peer, "model_training")),
                                  ("modelInferencePayer", _ml_payer(settings, "inference"),
                                   _peer_ml_payer(peer, "model_inference"))):
            if theirs is not None and mine != theirs:
                raise ConfigError(key, f"is {mine!r}, but partner '{partner.name}' ({source}) uses {theirs!r}; "
                                  "every organization of the collaboration must use the same")


_NO_ML = "nobody (no Clean Rooms ML in the collaboration)"


def _ml_payer(settings: Settings, kind: str) -> str:
    return getattr(settings.ml_payers, kind) if settings.ml_payers else _NO_ML


def _peer_ml_payer(peer, key: str):
    """The partner's ML payer, when its stack exports ml_payers (an older stack does not: not compared)."""
    if "ml_payers" not in peer.values:
        return None
    payers = peer.get("ml_payers")
    return payers.get(key) if isinstance(payers, dict) else _NO_ML


def members_export(settings: Settings) -> list[dict]:
    """The collaboration's members as its owner declares them (exported by the owner's stack).

    The collaboration's members are what the owner's stack sends (CreateCollaboration
    ``members``, or a change request); every other stack checks itself and its
    partner list against this (check_invitation).
    """
    return [_member_entry(m, getattr(m, "added_by", "invitation")) for m in settings.members]


def _member_entry(member: Member, added_by: str) -> dict:
    return {"name": member.name, "account_id": member.account_id, "roles": sorted(member.roles),
            "dataset": member.dataset if PRODUCER in member.roles else None,
            "runs_jobs": member.runs_jobs, "added_by": added_by, "ml_abilities": list(member.ml_abilities)}


def check_invitation(settings: Settings, peers: dict[str, PeerOutputs], log: Log = _silent) -> None:
    """A stack that joins a collaboration is one its owner invites, and knows the members the owner does.

    Clean Rooms lets an account create a membership only in a collaboration that
    lists it (CreateMembership: "Creates a membership for a specific collaboration
    identifier"; an account not invited gets an error at `pulumi up`, after the
    preview looked fine). So before any membership is declared, this stack's own
    entry, each partner entry and each template's tables are checked against the
    member list the owner's stack exports. An owner that has not deployed exports
    none: said through ``log``, not refused.
    """
    if OWNER in settings.roles:
        return
    owner = owner_peer(settings, peers)
    index = next(i for i, p in enumerate(settings.partners) if OWNER in p.roles)
    source = f"{owner.partner.name}'s stack {owner.partner.stack or f'(partners[{index}].outputs)'}"
    listed = owner.get("members")
    if listed is None:
        log(f"no member list from {source} yet: whether it invites '{settings.org.name}' and the partners "
            "listed here is checked once it is deployed")
        return
    members = {m["name"]: m for m in listed}
    org = settings.org
    me = members.get(org.name)
    if me is None:
        same_account = next((m["name"] for m in listed if m["account_id"] == org.account_id), None)
        if same_account is not None:
            raise ConfigError("organization", f"is {org.name!r}, but {source} invites account {org.account_id} "
                              f"as {same_account!r}; use that name here")
        raise ConfigError("organization", f"'{org.name}' (account {org.account_id}) is not invited by {source}, "
                          f"whose members are {sorted(members)}; add it to that stack's partners (addedBy: "
                          "changeRequest once the collaboration exists) before this stack joins")
    _agree(_member_entry(org, me["added_by"]), me, {"account_id": "accountId", "roles": "roles", "dataset":
                                                     "dataset", "runs_jobs": "runsJobs",
                                                     "ml_abilities": "mlAbilities"}, "", org.name, source)
    if ANALYST in settings.roles:
        # A template over the table of a member the owner does not invite cannot run.
        producers = {p.dataset: p for p in settings.partners if PRODUCER in p.roles and p.dataset}
        for query in settings.analyst.queries:
            for table in query.tables:
                partner = producers.get(table)
                if partner is not None and partner.name not in members:
                    raise ConfigError("analyst.queries", f"template {query.name!r} ({shown_path(query.path)}) "
                                      f"reads '{table}' of '{partner.name}', which {source} does not invite; "
                                      f"drop the template, or have '{owner.partner.name}' invite '{partner.name}'")
    for i, partner in enumerate(settings.partners):
        entry = members.get(partner.name)
        if entry is None:
            raise ConfigError(f"partners[{i}]", f"'{partner.name}' is not a member of the collaboration: {source} "
                              f"does not invite it (its members are {sorted(members)}); remove it here, or have "
                              f"'{owner.partner.name}' invite it")
        _agree(_member_entry(partner, partner.added_by), entry, {
            "account_id": "accountId", "roles": "roles", "dataset": "dataset", "runs_jobs": "runsJobs",
            "added_by": "addedBy", "ml_abilities": "mlAbilities"}, f"partners[{i}].", partner.name, source)
    missing = sorted(set(members) - {org.name} - {p.name for p in settings.partners})
    if missing:
        raise ConfigError("partners", f"lacks {missing}: {source} invites them; list every other member of "
                          "the collaboration here, as the owner's stack does")


def _agree(mine: dict, theirs: dict, keys: dict[str, str], prefix: str, name: str, source: str) -> None:
    for field_name, key in keys.items():
        if field_name in theirs and mine[field_name] != theirs[field_name]:  # an older owner may not say
            raise ConfigError(f"{prefix}{key}", f"is {mine[field_name]!r}, but {source} invites '{name}' with "
                              f"{theirs.get(field_name)!r}; make the two stack files agree")


def owner_peer(settings: Settings, peers: dict[str, PeerOutputs]) -> PeerOutputs | None:
    for partner in settings.partners:
        if OWNER in partner.roles:
            return peers[partner.name]
    return None


def collaboration_id(settings: Settings, peers: dict[str, PeerOutputs], log: Log = _silent) -> str | None:
    """The collaboration to join, for an organization that does not own it."""
    owner = owner_peer(settings, peers)
    if owner is None:
        return None
    engine = owner.get("analytics_engine")
    if engine and engine != settings.analytics_engine:
        raise ConfigError("analyticsEngine", f"is {settings.analytics_engine}, but the collaboration of "
                          f"'{owner.partner.name}' uses {engine}; set analyticsEngine: {engine}")
    if owner.collaboration_id is None:
        log(f"no collaboration id from '{owner.partner.name}' yet: the membership, table "
                        "association and templates are left out until its stack is deployed")
    return owner.collaboration_id


def allowed_result_regions(settings: Settings, peers: dict[str, PeerOutputs]) -> list[str] | None:
    """The collaboration's allowed result regions: the owner's config, or what the owner's stack exports."""
    if settings.collaboration is not None:
        return list(settings.collaboration.allowed_result_regions)
    owner = owner_peer(settings, peers)
    return owner.get("allowed_result_regions") if owner is not None else None


def result_receivers(settings: Settings) -> list[str]:
    return [m.account_id for m in settings.members if "CAN_RECEIVE_RESULTS" in m.abilities]


def analyst_membership_id(settings: Settings, peers: dict[str, PeerOutputs]) -> str | None:
    """The query runner's membership id, from the analyst partner's outputs (None until it deploys)."""
    peer = peers.get(settings.analyst_member.name)
    return peer.get("membership_id") if peer else None


def partner_membership_arns(peers: dict[str, PeerOutputs]) -> list[str]:
    """Memberships of partners that have joined, for the data role's trust policy."""
    return [p.membership_arn for p in peers.values() if p.membership_arn]


def allowed_analyses(settings: Settings, peers: dict[str, PeerOutputs],
                     log: Log = _silent) -> tuple[list[str], list[str]]:
    """(allowedAnalyses, allowedAnalysisProviders) for this organization's CUSTOM rule."""
    rule = settings.analysis_rule
    if rule is None or rule.type != "CUSTOM":
        return [], []
    if rule.allowed_analyses == "ANY_QUERY":
        # AnalysisRuleCustom.allowedAnalyses: ANY_QUERY, ANY_JOB or template ARNs.
        return ["ANY_QUERY", *(["ANY_JOB"] if rule.allow_jobs else [])], list(rule.allowed_analysis_providers)
    if ANALYST in settings.roles:
        # Our own templates need our table associated first, and the table's
        # rule would need the templates: allow our own account instead.
        raise ConfigError("analysisRule.allowedAnalyses", f"'templates' lists the analyst's templates, but "
                          f"'{settings.org.name}' is the analyst itself; use allowedAnalyses: ANY_QUERY with "
                          f"allowedAnalysisProviders: [\"{settings.org.account_id}\"]")
    analyst = peers[settings.analyst_member.name]
    arns = list(analyst.template_arns)
    if rule.allow_jobs:
        # Any partner's PySpark templates that read this table (whoever runs jobs creates them).
        arns += [arn for peer in peers.values() for arn in peer.job_template_arns(settings.dataset.name)]
    if not arns:
        log(f"no analysis templates from '{analyst.partner.name}' yet: the analysis rule allows "
                        "no analysis until they exist (run `pulumi up` again after the analyst deploys them)")
    return sorted(arns), []


def associated_tables(settings: Settings, peers: dict[str, PeerOutputs], own_associated: bool) -> set[str]:
    tables = {p.table_alias for p in peers.values() if p.table_alias}
    if own_associated and settings.dataset is not None:
        tables.add(settings.dataset.name)
    return tables


def dp_tables(settings: Settings, peers: dict[str, PeerOutputs]) -> set[str]:
    tables = {p.table_alias for p in peers.values() if p.table_alias and p.get("differential_privacy")}
    if settings.analysis_rule is not None and settings.analysis_rule.differential_privacy:
        tables.add(settings.dataset.name)
    return tables


def table_retention(settings: Settings) -> dict[str, str]:
    """{alias: retention} of the collaboration's tables whose schema.yaml says how long their rows are kept:
    this stack's own and its partners' (the analyst exports it per template; `run --window` checks it)."""
    from model.datasets import load_dataset

    datasets = [settings.dataset] if settings.dataset is not None else []
    datasets += [load_dataset(p.dataset, settings.data_dir) for p in settings.partners
                 if PRODUCER in p.roles and p.dataset]
    return {d.name: d.retention for d in datasets if d.retention}


def additional_analyses(settings: Settings, peers: dict[str, PeerOutputs]) -> dict[str, dict]:
    """Each table's say on Clean Rooms ML using its query output: {alias: {"mode": ALLOWED | REQUIRED |
    NOT_ALLOWED, "allowed": [ARN patterns its association allows]}}, from this stack's rule and the
    partners' exported ones (an ML input channel's template may only read tables that allow it)."""
    from model.collaboration import rule_from_export

    rules = {p.table_alias: rule_from_export(p.get("analysis_rule")) for p in peers.values() if p.table_alias}
    if settings.analysis_rule is not None and settings.dataset is not None:
        rules[settings.dataset.name] = settings.analysis_rule
    return {alias: {"mode": rule.additional_analyses, "allowed": list(rule.allowed_additional_analyses)}
            for alias, rule in rules.items() if rule is not None}


def check_schedules(settings: Settings, peers: dict[str, PeerOutputs], log: Log = _silent) -> None:
    """A schedule of a differentially private template must fit the collaboration's budget: with a monthly
    refresh, every run of a month at most spends it; without one, the stack says how long it lasts.

    Each run's cost is the local clean room's calibration of the budget's epsilon and noise (AWS's is not
    published; `budget --forecast` reads the service's own once the collaboration exists).
    """
    analyst = settings.analyst
    if analyst is None or not analyst.schedules:
        return
    budget = settings.budget
    exported = next((p.get("privacy_budget") for p in peers.values() if p.get("privacy_budget")), None)
    epsilon = budget.epsilon if budget else (exported or {}).get("epsilon")
    noise = budget.users_noise_per_query if budget else (exported or {}).get("usersNoisePerQuery")
    refresh = budget.auto_refresh if budget else (exported or {}).get("autoRefresh")
    private = dp_tables(settings, peers)
    queries = {q.name: q for q in analyst.queries}
    for i, schedule in enumerate(analyst.schedules):
        query = queries[schedule.template]
        if not set(query.tables) & private:
            continue
        if epsilon is None:
            log(f"analyst.schedules[{i}]: {schedule.template} reads a table under differential privacy, and the "
                "collaboration's budget is not known yet: its cost per month is checked once it is")
            continue
        from localroom.privacy import calibrate
        from model.budget import count_aggregations

        calibration = calibrate(int(epsilon), int(noise))
        cost = sum(n / calibration.max_count(kind) for kind, n in count_aggregations(query.sql).items())
        runs = 31 * 24 * 60 // schedule.every_minutes  # the longest month
        if refresh == "CALENDAR_MONTH" and runs * cost > 1 + 1e-12:
            fits = math.ceil(31 * 24 * 60 * cost)
            raise ConfigError(f"analyst.schedules[{i}].everyMinutes",
                              f"every {schedule.every_minutes} minutes runs {schedule.template} up to {runs} times a "
                              f"month, {100 * runs * cost:.0f}% of the privacy budget ({100 * cost:.2f}% a run, by the "
                              f"local clean room's calibration); every {fits} minutes or more fits in a month")
        if refresh != "CALENDAR_MONTH" and cost > 0:
            days = (1 / cost) * schedule.every_minutes / (24 * 60)
            log(f"analyst.schedules[{i}]: {schedule.template} every {schedule.every_minutes} minutes spends the "
                f"budget, which never refreshes, in about {days:.1f} days ({100 * cost:.2f}% a run)")


def check_budget(settings: Settings, peers: dict[str, PeerOutputs], log: Log = _silent) -> None:
    """One privacy budget per collaboration, once a table uses differential privacy.

    Two stacks declaring one is an error ("Each collaboration can have only one
    privacy budget template", CreatePrivacyBudgetTemplate). A protected table
    without one anywhere is said, not refused: the member meant to set it may
    not have deployed yet; until then the table cannot be queried.
    """
    declared = sorted(p.partner.name for p in peers.values() if p.get("privacy_budget"))
    if settings.budget is not None and declared:
        raise ConfigError("differentialPrivacy", f"partner(s) {declared} already set the collaboration's privacy "
                          "budget, and a collaboration has only one (CreatePrivacyBudgetTemplate); remove it here or "
                          "there")
    protected = settings.analysis_rule is not None and settings.analysis_rule.differential_privacy
    if protected and settings.budget is None and not declared:
        log(f"'{settings.org.name}' protects its table with differential privacy, but no member has set the "
            "collaboration's privacy budget yet; until one does, the table cannot be queried. The User Guide has "
            "the member whose table is protected set it: add differentialPrivacy (epsilon, usersNoisePerQuery, "
            "autoRefresh) to this stack")


def access_budgets(settings: Settings, peers: dict[str, PeerOutputs], own_association=None) -> dict:
    """Association name -> ARN of every table with a data access budget (own table's ARN may be an Output)."""
    found = {}
    if settings.access_budget is not None and own_association is not None:
        found[settings.dataset.name] = own_association.arn
    for peer in peers.values():
        if peer.get("access_budget") and peer.table_alias and peer.get("configured_table_association_arn"):
            found[peer.table_alias] = peer.get("configured_table_association_arn")
    return found

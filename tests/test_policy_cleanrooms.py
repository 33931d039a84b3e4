"""Clean Rooms policies: each one on real program output, compliant and with one property changed."""

import pytest

from tests.harness import run_stack, stack_ref
from tests.policy_support import UNKNOWN, bootstrap, edited, evaluate, find

COLLAB = "aws-native:cleanrooms:Collaboration"
MEMBERSHIP = "aws-native:cleanrooms:Membership"
TABLE = "aws-native:cleanrooms:ConfiguredTable"
BUDGET = "aws-native:cleanrooms:PrivacyBudgetTemplate"
ASSOCIATION = "aws-native:cleanrooms:ConfiguredTableAssociation"


@pytest.fixture(scope="module")
def runs():
    return bootstrap()


def custom(r):
    return r.inputs["analysisRules"][0]["policy"]["v1"]["custom"]


def sql_engine_run(rule: dict):
    """org-b as the program declares it with a CLEAN_ROOMS_SQL collaboration (the only engine for
    AGGREGATION/LIST rules). The owner's stack can no longer create one, so the peer output says so."""
    a1 = bootstrap()["org-a-first"]
    return run_stack("org-b", peer_outputs={stack_ref("org-a"): {**a1.outputs, "analytics_engine": "CLEAN_ROOMS_SQL"}},
                     overrides={"analyticsEngine": "CLEAN_ROOMS_SQL", "analysisRule": rule})


AGGREGATION_RULE = {"type": "AGGREGATION",
                    "aggregateColumns": [{"function": "COUNT_DISTINCT", "columns": ["customer_key"]},
                                         {"function": "SUM", "columns": ["sessions"]}],
                    "dimensionColumns": ["age_group", "region"],
                    "outputConstraints": [{"column": "customer_key", "minimum": 3}]}
LIST_RULE = {"type": "LIST", "listColumns": ["age_group", "region"]}


# -- query logging -----------------------------------------------------------------------


@pytest.mark.parametrize("stack,typ", [("org-a", COLLAB), ("org-a", MEMBERSHIP), ("org-b", MEMBERSHIP)])
def test_query_logging(runs, stack, typ):
    run = runs[stack]
    target = find(run, typ)
    assert target.inputs["queryLogStatus"] == "ENABLED"
    assert evaluate(run, policies=["cleanrooms-query-logging-enabled"]).violations == []
    off = edited(run, target, lambda r: r.inputs.update(queryLogStatus="DISABLED"))
    [v] = evaluate(off, policies=["cleanrooms-query-logging-enabled"]).violations
    assert v.level == "mandatory" and v.resource_name == target.name
    assert f"{typ} '{target.name}' has queryLogStatus 'DISABLED'" in v.message
    assert "Set queryLogStatus: ENABLED" in v.message


def test_query_logging_unknown_in_preview_is_not_a_violation(runs):
    target = find(runs["org-b"], MEMBERSHIP)
    report = evaluate(edited(runs["org-b"], target, lambda r: r.inputs.update(queryLogStatus=UNKNOWN)),
                      policies=["cleanrooms-query-logging-enabled"])
    assert report.violations == []


# -- analysis rule present ----------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["org-a", "org-b"])
def test_table_has_analysis_rule(runs, stack):
    run = runs[stack]
    table = find(run, TABLE)
    assert evaluate(run, policies=["cleanrooms-table-has-analysis-rule"]).violations == []
    bare = edited(run, table, lambda r: r.inputs.update(analysisRules=[]))
    [v] = evaluate(bare, policies=["cleanrooms-table-has-analysis-rule"]).violations
    assert f"'{table.name}' has no analysis rule" in v.message and "AGGREGATION, LIST or CUSTOM" in v.message


# -- aggregation thresholds -----------------------------------------------------------------------


def test_custom_threshold_at_the_minimum_passes_and_below_fails(runs):
    run = runs["org-a"]
    table = find(run, TABLE)
    assert custom(table)["aggregationThresholds"][0]["minimumIdentityCount"] == 3
    assert evaluate(run, policies=["cleanrooms-minimum-aggregation-threshold"]).violations == []
    low = edited(run, table, lambda r: custom(r)["aggregationThresholds"][0].update(minimumIdentityCount=2))
    [v] = evaluate(low, policies=["cleanrooms-minimum-aggregation-threshold"]).violations
    assert "minimumIdentityCount on ['customer_key'] is 2; it must be at least 3" in v.message


def test_threshold_minimum_is_configurable(runs):
    report = evaluate(runs["org-a"], config={"cleanrooms-minimum-aggregation-threshold": {"minimumIdentityCount": 5}},
                      policies=["cleanrooms-minimum-aggregation-threshold"])
    [v] = report.violations
    assert "is 3; it must be at least 5" in v.message


def test_aggregation_output_constraint_from_the_program():
    run = sql_engine_run(AGGREGATION_RULE)
    assert evaluate(run, policies=["cleanrooms-minimum-aggregation-threshold"]).violations == []
    weak = sql_engine_run({**AGGREGATION_RULE, "outputConstraints": [{"column": "customer_key", "minimum": 2}]})
    [v] = evaluate(weak, policies=["cleanrooms-minimum-aggregation-threshold"]).violations
    assert "AGGREGATION outputConstraints minimum on column 'customer_key' is 2; it must be at least 3" in v.message
    table = find(run, TABLE)
    none = edited(run, table, lambda r: r.inputs["analysisRules"][0]["policy"]["v1"]["aggregation"]
                  .update(outputConstraints=[]))
    [v] = evaluate(none, policies=["cleanrooms-minimum-aggregation-threshold"]).violations
    assert "has no outputConstraints" in v.message and "minimum: 3" in v.message


# -- PySpark jobs ---------------------------------------------------------------------------------


def test_jobs_never_reach_a_table_under_differential_privacy(runs):
    """Org A's table is open to its own jobs (threshold, not DP); org B's DP table is SQL only."""
    a_table, b_table = find(runs["org-a"], TABLE), find(runs["org-b"], TABLE)
    assert a_table.inputs["analysisMethod"] == "MULTIPLE" and "ANY_JOB" in custom(a_table)["allowedAnalyses"]
    for run in (runs["org-a"], runs["org-b"]):
        assert evaluate(run, policies=["cleanrooms-jobs-restricted"]).violations == []

    def open_to_jobs(r):
        r.inputs.update(analysisMethod="MULTIPLE", selectedAnalysisMethods=["DIRECT_QUERY", "DIRECT_JOB"])
    [v] = evaluate(edited(runs["org-b"], b_table, open_to_jobs), policies=["cleanrooms-jobs-restricted"]).violations
    assert "under differential privacy but open to PySpark jobs (analysisMethod MULTIPLE)" in v.message
    any_job = edited(runs["org-b"], b_table, lambda r: custom(r)["allowedAnalyses"].append("ANY_JOB"))
    [v] = evaluate(any_job, policies=["cleanrooms-jobs-restricted"]).violations
    assert "(analysisMethod DIRECT_QUERY, ANY_JOB)" in v.message
    # Selected methods without DIRECT_JOB leave the table closed to jobs.
    queries_only = edited(runs["org-b"], b_table, lambda r: r.inputs.update(
        analysisMethod="MULTIPLE", selectedAnalysisMethods=["DIRECT_QUERY"]))
    assert evaluate(queries_only, policies=["cleanrooms-jobs-restricted"]).violations == []


def test_any_job_names_its_providers(runs):
    table = find(runs["org-a"], TABLE)
    anyone = edited(runs["org-a"], table, lambda r: custom(r).pop("allowedAnalysisProviders"))
    messages = [v.message for v in evaluate(anyone, policies=["cleanrooms-jobs-restricted"]).violations]
    assert len(messages) == 1 and "allows ANY_JOB but names no allowedAnalysisProviders" in messages[0]


# -- ANY_QUERY -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["org-a", "org-b"])
def test_any_query_needs_providers(runs, stack):
    run = runs[stack]
    table = find(run, TABLE)
    # Org A also opens its own table to its own PySpark jobs (analysisRule.allowJobs).
    assert custom(table)["allowedAnalyses"] == (["ANY_QUERY", "ANY_JOB"] if stack == "org-a" else ["ANY_QUERY"])
    assert evaluate(run, policies=["cleanrooms-any-query-restricted"]).violations == []
    open_ = edited(run, table, lambda r: custom(r).pop("allowedAnalysisProviders"))
    [v] = evaluate(open_, policies=["cleanrooms-any-query-restricted"]).violations
    assert "allows ANY_QUERY but names no allowedAnalysisProviders" in v.message


@pytest.mark.parametrize("stack,protection", [("org-a", "aggregationThresholds"), ("org-b", "differentialPrivacy")])
def test_any_query_needs_a_privacy_mechanism(runs, stack, protection):
    run = runs[stack]
    table = find(run, TABLE)
    bare = edited(run, table, lambda r: custom(r).pop(protection))
    [v] = evaluate(bare, policies=["cleanrooms-any-query-restricted"]).violations
    assert "with neither differentialPrivacy nor aggregationThresholds" in v.message


# -- identifier columns ------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["org-a", "org-b"])
def test_custom_rule_must_disallow_identifier_output(runs, stack):
    run = runs[stack]
    table = find(run, TABLE)
    assert "customer_key" in table.inputs["allowedColumns"]
    assert evaluate(run, policies=["cleanrooms-identifier-columns-never-output"]).violations == []
    leaky = edited(run, table, lambda r: custom(r).update(disallowedOutputColumns=[]))
    [v] = evaluate(leaky, policies=["cleanrooms-identifier-columns-never-output"]).violations
    assert "['customer_key'] are in allowedColumns but not in the CUSTOM rule's disallowedOutputColumns" in v.message


def test_identifier_columns_come_from_policy_config(runs):
    report = evaluate(runs["org-a"], policies=["cleanrooms-identifier-columns-never-output"],
                      config={"cleanrooms-identifier-columns-never-output":
                              {"identifierColumns": ["customer_key", "region"]}})
    [v] = report.violations
    assert "['region'] are in allowedColumns" in v.message


def test_aggregation_dimension_and_list_column_identifiers():
    agg = sql_engine_run(AGGREGATION_RULE)
    lst = sql_engine_run(LIST_RULE)
    for run in (agg, lst):
        assert evaluate(run, policies=["cleanrooms-identifier-columns-never-output"]).violations == []
    # The program refuses an identifier dimension itself (see test_policy_weakening), so the
    # policy is shown on the program's real output with the column added.
    t = find(agg, TABLE)
    bad = edited(agg, t, lambda r: r.inputs["analysisRules"][0]["policy"]["v1"]["aggregation"]["dimensionColumns"]
                 .append("customer_key"))
    [v] = evaluate(bad, policies=["cleanrooms-identifier-columns-never-output"]).violations
    assert "['customer_key'] are AGGREGATION dimensionColumns" in v.message
    t = find(lst, TABLE)
    bad = edited(lst, t, lambda r: r.inputs["analysisRules"][0]["policy"]["v1"]["list"]["listColumns"]
                 .append("customer_key"))
    [v] = evaluate(bad, policies=["cleanrooms-identifier-columns-never-output"]).violations
    assert "['customer_key'] are LIST listColumns" in v.message


# -- privacy budget ------------------------------------------------------------------------------------


def test_privacy_budget_band(runs):
    run = runs["org-b"]  # the member whose table is protected sets the budget
    budget = find(run, BUDGET)
    assert budget.inputs["parameters"] == {"epsilon": 10.0, "usersNoisePerQuery": 20.0}
    assert evaluate(run, policies=["cleanrooms-privacy-budget-bounds"]).violations == []
    loose = edited(run, budget, lambda r: r.inputs["parameters"].update(epsilon=15))
    [v] = evaluate(loose, policies=["cleanrooms-privacy-budget-bounds"]).violations
    assert "epsilon is 15; it must be from 1 to 10" in v.message
    tight = evaluate(run, policies=["cleanrooms-privacy-budget-bounds"],
                     config={"cleanrooms-privacy-budget-bounds": {"maxEpsilon": 5, "minUsersNoisePerQuery": 30}})
    assert sorted(v.message.split(": ", 1)[1].split(";")[0] for v in tight.violations) == [
        "epsilon is 10", "usersNoisePerQuery is 20"]


# -- C3R ---------------------------------------------------------------------------------------------


def test_c3r_only_on_declared_collaborations(runs):
    run = runs["org-a"]
    assert "dataEncryptionMetadata" not in find(run, COLLAB).inputs
    assert evaluate(run, policies=["cleanrooms-c3r-only-when-declared"]).violations == []
    # The seed recipe's mistake, declared by the program from config.
    c3r = bootstrap_run_with_c3r(allow_cleartext=False)
    [v] = evaluate(c3r, policies=["cleanrooms-c3r-only-when-declared"]).violations
    assert "makes collaboration 'retail-media-insights' a C3R collaboration" in v.message
    assert "add 'retail-media-insights' to policy config c3rCollaborations" in v.message
    declared = {"cleanrooms-c3r-only-when-declared": {"c3rCollaborations": ["retail-media-insights"]}}
    assert evaluate(c3r, config=declared, policies=["cleanrooms-c3r-only-when-declared"]).violations == []
    cleartext = bootstrap_run_with_c3r(allow_cleartext=True)
    [v] = evaluate(cleartext, config=declared, policies=["cleanrooms-c3r-only-when-declared"]).violations
    assert "sets allowCleartext true" in v.message


def bootstrap_run_with_c3r(allow_cleartext: bool):
    from tests.policy_support import run_with
    collaboration = {"name": "retail-media-insights", "description": "C3R test",
                     "c3r": {"allowCleartext": allow_cleartext}}
    return run_with("org-a", {"collaboration": collaboration})


# -- result receivers ------------------------------------------------------------------------------


def test_result_receivers_are_members(runs):
    run = runs["org-a"]
    assoc = find(run, ASSOCIATION)
    assert evaluate(run, policies=["cleanrooms-results-to-members-only"]).violations == []
    outsider = edited(run, assoc, lambda r: r.inputs["configuredTableAssociationAnalysisRules"][0]["policy"]["v1"]
                      ["custom"]["allowedResultReceivers"].append("333333333333"))
    [v] = evaluate(outsider, policies=["cleanrooms-results-to-members-only"]).violations
    assert v.urn == assoc.urn
    assert "allowedResultReceivers ['333333333333'] are not collaboration members" in v.message
    assert "['111111111111', '222222222222'] (the members of collaboration 'retail-media-insights'" in v.message


def test_analysis_providers_are_members(runs):
    run = runs["org-a"]
    table = find(run, TABLE)
    outsider = edited(run, table, lambda r: custom(r)["allowedAnalysisProviders"].append("444444444444"))
    [v] = evaluate(outsider, policies=["cleanrooms-results-to-members-only"]).violations
    assert "custom allowedAnalysisProviders ['444444444444'] are not collaboration members" in v.message


def test_receivers_of_an_invited_member_use_config(runs):
    run = runs["org-b"]
    na = evaluate(run, policies=["cleanrooms-results-to-members-only"])
    assert na.violations == [] and na.not_applicable
    only_b = {"cleanrooms-results-to-members-only": {"memberAccountIds": ["222222222222"]}}
    violations = evaluate(run, config=only_b, policies=["cleanrooms-results-to-members-only"]).violations
    assert {v.resource_name for v in violations} == {"org-b-producer-association", "org-b-producer-configured-table"}
    assert all("['111111111111'] are not collaboration members" in v.message and "policy config memberAccountIds"
               in v.message for v in violations)

"""Each weakening edit of a shipped stack config fails: which layer catches it.

Two layers guard the same rules. The program's config validation
(model/config.py) refuses what Clean Rooms itself would refuse, before
anything is declared; the policy pack holds the organization's stricter floor
on what the program does declare, and also catches resources edited outside
the program's config path (tested on real output with one property changed).
"""

import json

import pytest

from model.errors import ConfigError
from tests.harness import stack_config
from tests.policy_support import bootstrap, edited, evaluate, find, run_with, set_document

A_RULE = stack_config("org-a")["cleanrooms-collab:analysisRule"]
B_DP = stack_config("org-b")["cleanrooms-collab:differentialPrivacy"]


def with_threshold(minimum):
    return {"analysisRule": {**A_RULE, "aggregationThreshold": {"column": "customer_key", "minimum": minimum}}}


def test_threshold_1_is_refused_by_the_program():
    with pytest.raises(ConfigError, match="aggregationThreshold.minimum': got 1; allowed range is 2 to 100000"):
        run_with("org-a", with_threshold(1))


def test_threshold_2_is_declared_by_the_program_and_caught_by_the_policy():
    run = run_with("org-a", with_threshold(2))
    report = evaluate(run)
    assert [v.policy for v in report.mandatory] == ["cleanrooms-minimum-aggregation-threshold"]
    assert "is 2; it must be at least 3" in report.mandatory[0].message


@pytest.mark.parametrize("stack,expected", [
    ("org-a", {"org-a-owner-collaboration", "org-a-owner-membership"}),
    ("org-b", {"org-b-member-membership"})])
def test_query_logging_off_is_caught_by_the_policy_only(stack, expected):
    run = run_with(stack, {"queryLogging": False})  # the program accepts it
    report = evaluate(run)
    assert {v.policy for v in report.mandatory} == {"cleanrooms-query-logging-enabled"}
    assert {v.resource_name for v in report.mandatory} == expected


def test_epsilon_25_is_refused_by_the_program():
    with pytest.raises(ConfigError, match="differentialPrivacy.epsilon': got 25; allowed range is 1 to 20"):
        run_with("org-b", {"differentialPrivacy": {**B_DP, "epsilon": 25}})


def test_epsilon_15_is_declared_by_the_program_and_caught_by_the_policy():
    run = run_with("org-b", {"differentialPrivacy": {**B_DP, "epsilon": 15}})
    report = evaluate(run)
    assert [v.policy for v in report.mandatory] == ["cleanrooms-privacy-budget-bounds"]
    assert "epsilon is 15; it must be from 1 to 10" in report.mandatory[0].message
    # The shipped epsilon 10 passes the default band but not a tightened one.
    tightened = evaluate(bootstrap()["org-b"], config={"cleanrooms-privacy-budget-bounds": {"maxEpsilon": 8}})
    assert [v.policy for v in tightened.mandatory] == ["cleanrooms-privacy-budget-bounds"]


def test_identifier_as_dimension_is_refused_by_the_program_and_caught_by_the_policy_on_output():
    a1 = bootstrap()["org-a-first"]
    from tests.harness import run_stack, stack_ref
    rule = {"type": "AGGREGATION",
            "aggregateColumns": [{"function": "COUNT_DISTINCT", "columns": ["customer_key"]}],
            "dimensionColumns": ["age_group", "customer_key"],
            "outputConstraints": [{"column": "customer_key", "minimum": 3}]}
    peers = {stack_ref("org-a"): {**a1.outputs, "analytics_engine": "CLEAN_ROOMS_SQL"}}
    overrides = {"analyticsEngine": "CLEAN_ROOMS_SQL", "analysisRule": rule}
    with pytest.raises(ConfigError, match="column 'customer_key' has role 'join_key'"):
        run_stack("org-b", peer_outputs=peers, overrides=overrides)
    run = run_stack("org-b", peer_outputs=peers, overrides={**overrides, "analysisRule": {
        **rule, "dimensionColumns": ["age_group"]}})
    table = find(run, "aws-native:cleanrooms:ConfiguredTable")
    leaked = edited(run, table, lambda r: r.inputs["analysisRules"][0]["policy"]["v1"]["aggregation"]
                    ["dimensionColumns"].append("customer_key"))
    report = evaluate(leaked, config={"cleanrooms-results-to-members-only": {
        "memberAccountIds": ["111111111111", "222222222222"]}})
    assert [v.policy for v in report.mandatory] == ["cleanrooms-identifier-columns-never-output"]


def test_identifier_made_outputtable_in_custom_rule_is_caught_by_the_policy():
    run = bootstrap()["org-a"]
    table = find(run, "aws-native:cleanrooms:ConfiguredTable")
    leaked = edited(run, table, lambda r: r.inputs["analysisRules"][0]["policy"]["v1"]["custom"]
                    .update(disallowedOutputColumns=[]))
    assert [v.policy for v in evaluate(leaked).mandatory] == ["cleanrooms-identifier-columns-never-output"]


def test_wildcard_iam_resource_is_caught_by_the_policy():
    """The program builds its documents in components/iam.py with no config knob; the edit is on its output."""
    run = bootstrap()["org-a"]
    policy = find(run, "aws:iam/rolePolicy:RolePolicy", "producer-cleanrooms-read")
    original = json.loads(policy.inputs["policy"])
    assert all("*" != r for s in original["Statement"] for r in s["Resource"])

    def widen(doc):
        next(s for s in doc["Statement"] if s["Sid"] == "ReadThisGlueTable")["Resource"] = "*"

    report = evaluate(edited(run, policy, lambda r: set_document(r, "policy", widen)))
    assert [v.policy for v in report.mandatory] == ["iam-no-wildcard-data-permissions"]
    assert "Resource ['*']" in report.mandatory[0].message

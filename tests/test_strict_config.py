"""Strict stack config: every key typed, typos refused with a hint, partners cross-checked, clean errors.

BAD_CONFIG is the config part of the project's bad-input sweep (tests/test_input_sweep.py):
each case is a stack, the overrides that break it, and the full config key the one-line
error must name.
"""

from __future__ import annotations

import pulumi
import pytest
import yaml

from model import stack_models
from model.errors import ConfigError
from tests import harness
from tests.harness import PROJECT, ROOT, run_stack, stack_config, stack_ref
from tests.test_config import settings_for

A, B = "111111111111", "222222222222"
A_RULE = stack_config("org-a")[f"{PROJECT}:analysisRule"]
B_RULE = stack_config("org-b")[f"{PROJECT}:analysisRule"]
PARTNER_B = stack_config("org-a")[f"{PROJECT}:partners"][0]
PARTNER_A = stack_config("org-b")[f"{PROJECT}:partners"][0]


def partner_b(**changes):
    return [{**PARTNER_B, **changes}]


def rule_a(**changes):
    return {**A_RULE, **changes}


BAD_CONFIG = [
    # typos and undeclared keys
    ("org-a", {"epsilon": 5}, "epsilon", "belongs inside 'differentialPrivacy'"),
    ("org-a", {"resultFormat": "CSV"}, "resultFormat", "belongs inside 'analyst'"),
    ("org-a", {"accountID": A}, "accountID", "did you mean 'accountId'"),
    ("org-a", {"analyst": {"resultFromat": "CSV"}}, "analyst.resultFromat", "did you mean 'resultFormat'"),
    ("org-a", {"analyst": {"querys": []}}, "analyst.querys", "did you mean 'queries'"),
    ("org-a", {"differentialPrivacy": {"epsilon": 5, "usersNoise": 20}}, "differentialPrivacy.usersNoise",
     "did you mean 'usersNoisePerQuery'"),
    ("org-a", {"collaboration": {"name": "x", "description": "y", "c3": {}}}, "collaboration.c3",
     "did you mean 'c3r'"),
    ("org-a", {"quicksight": {"enable": True}}, "quicksight.enable", "did you mean 'enabled'"),
    ("org-a", {"partners": partner_b(acountId=B)}, "partners[0].acountId", "did you mean 'accountId'"),
    ("org-a", {"analysisRule": rule_a(aggregationThresholds={"column": "customer_key", "minimum": 3})},
     "analysisRule.aggregationThresholds", "did you mean 'aggregationThreshold'"),
    ("org-a", {"analysisRule": rule_a(aggregationThreshold={"column": "customer_key", "minimun": 3})},
     "analysisRule.aggregationThreshold.minimun", "did you mean 'minimum'"),
    ("org-a", {"analysisRule": rule_a(listColumns=["region"])}, "analysisRule.listColumns", "LIST rules"),
    ("org-b", {"analysisRule": {**B_RULE, "differentialPrivacy": {"userIdentifier": "customer_key"}}},
     "analysisRule.differentialPrivacy.userIdentifier", "did you mean 'userIdentifierColumn'"),
    # types and ranges
    ("org-a", {"protect": "maybe"}, "protect", "allowed values: true, false"),
    ("org-a", {"queryLogging": 1}, "queryLogging", "allowed values: true, false"),
    ("org-a", {"roles": "analyst"}, "roles", "must be a list"),
    ("org-a", {"roles": []}, "roles", "at least 1"),
    ("org-a", {"roles": ["collaboration_owner", "data_scientist"]}, "roles[1]", "'data_scientist'"),
    ("org-a", {"organization": "Org A"}, "organization", "lowercase letters"),
    ("org-a", {"organization": None}, "organization", "is missing"),
    ("org-a", {"accountId": "12345"}, "accountId", "12 digits"),
    ("org-a", {"accountId": None}, "accountId", "is missing"),
    ("org-a", {"accountId": True}, "accountId", "12 digits"),
    ("org-a", {"region": "us-east"}, "region", "AWS region name"),
    ("org-a", {"region": "US-EAST-1"}, "region", "AWS region name"),
    ("org-a", {"assumeRoleArn": "arn:aws:iam::111111111111:user/x"}, "assumeRoleArn", "not an IAM role ARN"),
    ("org-a", {"assumeRoleArn": "arn:aws:iam::222222222222:role/deploy"}, "assumeRoleArn", "account 222222222222"),
    ("org-a", {"analyticsEngine": "PRESTO"}, "analyticsEngine", "'SPARK'"),
    ("org-a", {"analyticsEngine": "CLEAN_ROOMS_SQL"}, "analyticsEngine", "no longer"),
    ("org-a", {"queryComputePayer": "org-c"}, "queryComputePayer", "'org-a'"),
    ("org-a", {"dataDir": "nowhere"}, "dataDir", "not a folder"),
    ("org-b", {"differentialPrivacy": {"epsilon": 25}}, "differentialPrivacy.epsilon", "1 to 20"),
    ("org-b", {"differentialPrivacy": {"epsilon": 0}}, "differentialPrivacy.epsilon", "1 to 20"),
    ("org-b", {"differentialPrivacy": {"epsilon": 10.5}}, "differentialPrivacy.epsilon", "whole number"),
    ("org-b", {"differentialPrivacy": {"epsilon": "ten"}}, "differentialPrivacy.epsilon", "whole number"),
    ("org-b", {"differentialPrivacy": {"usersNoisePerQuery": 5}}, "differentialPrivacy.usersNoisePerQuery",
     "10 to 100"),
    ("org-b", {"differentialPrivacy": {"autoRefresh": "WEEKLY"}}, "differentialPrivacy.autoRefresh",
     "'CALENDAR_MONTH'"),
    ("org-b", {"differentialPrivacy": [10]}, "differentialPrivacy", "must be a mapping"),
    ("org-a", {"collaboration": {"name": "x"}}, "collaboration.description", "is missing"),
    ("org-a", {"collaboration": {"name": "x", "description": ""}}, "collaboration.description", "empty"),
    ("org-a", {"collaboration": None}, "collaboration", "needs a collaboration block"),
    ("org-a", {"collaboration": {"name": "x", "description": "y", "c3r": {"allowCleartext": "sometimes"}}},
     "collaboration.c3r.allowCleartext", "true, false"),
    ("org-a", {"analyst": {"resultFormat": "JSON"}}, "analyst.resultFormat", "'CSV'"),
    ("org-a", {"analyst": {"queries": ["nope"]}}, "analyst.queries", "no such query"),
    ("org-a", {"analyst": {"queries": "customer_segments"}}, "analyst.queries", "must be a list"),
    ("org-a", {"analyst": {"resultsPrefix": "results with spaces"}}, "analyst.resultsPrefix", "S3 key prefix"),
    ("org-a", {"quicksight": {"enabled": "yes"}}, "quicksight.enabled", "true, false"),
    ("org-a", {"quicksight": {"enabled": True, "template": "channel_reach",
                              "owners": ["arn:aws:quicksight:us-east-1:111111111111:user/default/a"]}},
     "quicksight.template", "select list"),
    ("org-a", {"analysisRule": {"type": "MAGIC"}}, "analysisRule", "CUSTOM, AGGREGATION, LIST"),
    ("org-a", {"analysisRule": None}, "analysisRule", "needs an analysis rule"),
    ("org-a", {"analysisRule": rule_a(allowedAnalyses="SOME")}, "analysisRule.allowedAnalyses", "'ANY_QUERY'"),
    ("org-a", {"analysisRule": rule_a(allowedAnalysisProviders=["12"])}, "analysisRule.allowedAnalysisProviders[0]",
     "12 digits"),
    ("org-a", {"analysisRule": rule_a(allowedAnalysisProviders=["333333333333"])},
     "analysisRule.allowedAnalysisProviders[0]", "not a member"),
    ("org-a", {"analysisRule": rule_a(allowedAnalyses="templates")}, "analysisRule.allowedAnalysisProviders",
     "only applies with allowedAnalyses ANY_QUERY"),
    ("org-a", {"analysisRule": rule_a(aggregationThreshold={"column": "region", "minimum": 3})},
     "analysisRule.aggregationThreshold.column", "role 'dimension'"),
    ("org-a", {"analysisRule": rule_a(aggregationThreshold={"column": "customer_key", "minimum": 1})},
     "analysisRule.aggregationThreshold.minimum", "2 to 100000"),
    ("org-a", {"analysisRule": rule_a(disallowedOutputColumns=["no_such"])}, "analysisRule.disallowedOutputColumns",
     "not in dataset"),
    ("org-b", {"analysisRule": {**B_RULE, "differentialPrivacy": {"userIdentifierColumn": "email"}}},
     "analysisRule.differentialPrivacy.userIdentifierColumn", "'email' is not in dataset"),
    ("org-b", {"analysisRule": {**B_RULE, "aggregationThreshold": {"column": "customer_key", "minimum": 3}}},
     "analysisRule.aggregationThreshold", "differential privacy"),
    ("org-b", {"analyticsEngine": "CLEAN_ROOMS_SQL", "analysisRule": {
        "type": "AGGREGATION", "aggregateColumns": [{"function": "MEDIAN", "columns": ["sessions"]}],
        "outputConstraints": [{"column": "customer_key", "minimum": 3}]}},
     "analysisRule.aggregateColumns[0].function", "'COUNT'"),
    ("org-b", {"analyticsEngine": "CLEAN_ROOMS_SQL", "analysisRule": {
        "type": "AGGREGATION", "aggregateColumns": [{"function": "AVG", "columns": ["sessions"]}],
        "scalarFunctions": ["EXPLODE"], "outputConstraints": [{"column": "customer_key", "minimum": 3}]}},
     "analysisRule.scalarFunctions[0]", "'TRUNC'"),
    # roles, partners, keys a role does not use
    ("org-b", {"collaboration": {"name": "x", "description": "y"}}, "collaboration", "only applies"),
    ("org-b", {"analyst": {"resultFormat": "CSV"}}, "analyst", "only applies"),
    ("org-b", {"differentialPrivacy": {"epsilon": 3, "refresh": "NONE"}}, "differentialPrivacy.refresh",
     "did you mean 'autoRefresh'"),
    ("org-a", {"partners": []}, "partners", "at least 1"),
    ("org-a", {"partners": "org-b"}, "partners", "must be a list"),
    ("org-a", {"partners": partner_b(stack=None)}, "partners[0]", "give 'stack'"),
    ("org-a", {"partners": partner_b(outputs={"x": 1})}, "partners[0]", "not both"),
    ("org-a", {"partners": partner_b(stack="org-b")}, "partners[0].stack", "'<organization>/<project>/<stack>'"),
    ("org-a", {"partners": partner_b(accountId="2222")}, "partners[0].accountId", "12 digits"),
    ("org-a", {"partners": partner_b(accountId=A)}, "partners[0].accountId", "this stack's own account"),
    ("org-a", {"partners": partner_b(name="org-a")}, "partners[0].name", "this stack's own organization"),
    ("org-a", {"partners": partner_b(roles=["data_producer", "analyst"])}, "roles", "exactly one organization"),
    ("org-a", {"partners": partner_b(roles=["collaboration_owner"])}, "roles", "exactly one organization"),
    ("org-a", {"partners": partner_b(dataset=None)}, "partners[0].dataset", "produces data"),
    ("org-a", {"partners": partner_b(dataset="crm")}, "dataset", "no schema file"),
    ("org-a", {"joinKey": "region"}, "joinKey", "role 'join_key'"),
]


@pytest.mark.parametrize("stack, overrides, key, fragment", BAD_CONFIG,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(BAD_CONFIG)])
def test_bad_config_is_refused_in_one_line_naming_the_key(stack, overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        settings_for(stack, overrides)
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith(f"config '{PROJECT}:{key}'"), first
    assert fragment in message, message
    assert "\x1b" not in message and "Traceback" not in message


def test_several_problems_are_reported_together_one_per_line():
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", {"protect": "x", "region": "nowhere", "epsilon": 3})
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"config '{PROJECT}:") for line in lines)


def test_scalar_keys_are_the_ones_pulumi_yaml_declares():
    declared = set((yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]))
    modelled = set(stack_models.StackConfig.keys()) - set(stack_models.STRUCTURED_KEYS)
    assert declared == modelled


def test_preview_shows_a_refusal_as_one_run_error_without_a_traceback():
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"analyst": {"resultFromat": "PARQUET"}})
    assert str(info.value) == (f"config '{PROJECT}:analyst.resultFromat': unknown key 'resultFromat'; did you mean "
                               "'resultFormat'? allowed keys: queries, resultFormat, resultsPrefix, compute, schedules")
    assert harness.LAST_MONITOR.registered == []


# --------------------------------------------------------------------------
# What this stack says of a partner against what the partner's stack reports


@pytest.mark.parametrize("changes, key, fragment", [
    ({"accountId": "333333333333"}, "partners[0].accountId", "reports '222222222222'"),
    ({"roles": ["data_producer", "collaboration_owner"]}, "roles", "exactly one organization"),
    ({"dataset": "retail_purchases"}, "partners[0].dataset", "reports 'media_engagement'"),
])
def test_partner_config_must_agree_with_the_partner_stack(bootstrap, changes, key, fragment):
    with pytest.raises(ConfigError) as info:
        run_stack("org-a", overrides={"partners": partner_b(**changes)},
                  peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and fragment in str(info.value)
    # Refused before anything but the read-only stack references was declared.
    assert {r.typ for r in harness.LAST_MONITOR.registered} <= {"pulumi:pulumi:StackReference"}


@pytest.mark.parametrize("output, value, key", [
    ("region", "eu-west-1", "region"),
    ("join_key", "email_hash", "joinKey"),
    ("roles", ["analyst", "data_producer"], "partners[0].roles"),
    ("organization", "org-z", "partners[0].name"),
])
def test_partner_outputs_that_disagree_are_refused(bootstrap, output, value, key):
    outputs = {**bootstrap.b2.outputs, output: value}
    with pytest.raises(ConfigError) as info:
        run_stack("org-a", peer_outputs={stack_ref("org-b"): outputs})
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and repr(value) in str(info.value)


def test_partners_that_agree_pass_and_report_what_they_are(bootstrap):
    assert bootstrap.b2.outputs["join_key"] == "customer_key" and bootstrap.b2.outputs["dataset"] == "media_engagement"
    assert bootstrap.a3.outputs["roles"] == ["analyst", "collaboration_owner", "data_producer"]

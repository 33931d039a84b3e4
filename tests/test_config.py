"""Bad input is refused before any resource is declared, with a message naming the key or file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model import engines
from model.config import load_settings
from model.errors import ConfigError
from model.stackfiles import project_values
from tests import harness
from tests.harness import PROJECT, ROOT, run_stack, stack_config


def settings_for(stack: str, overrides: dict | None = None, data_dir: Path | None = None):
    values = project_values(stack_config(stack, overrides), PROJECT)
    kwargs = {"data_dir": data_dir} if data_dir else {}
    return load_settings(values, PROJECT, stack, **kwargs)


def rejected(stack: str, overrides: dict | None = None, data_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        settings_for(stack, overrides, data_dir)
    return str(info.value)


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "data", tmp_path / "data")
    return tmp_path / "data"


def test_shipped_configs_are_valid():
    a, b = settings_for("org-a"), settings_for("org-b")
    assert a.roles == {"collaboration_owner", "data_producer", "analyst"}
    assert b.roles == {"data_producer"}
    assert a.budget is None and b.budget.epsilon == 10 and b.budget.users_noise_per_query == 20
    assert b.analysis_rule.differential_privacy_column == "customer_key"
    assert a.payer == "org-a"  # the analyst pays unless configured


def test_bad_config_is_refused_before_any_resource_is_declared():
    with pytest.raises(ConfigError, match="differentialPrivacy.epsilon"):
        run_stack("org-b", overrides={"differentialPrivacy": {"epsilon": 25}})
    declared = [r for r in harness.LAST_MONITOR.registered]
    assert declared == [], [r.name for r in declared]


def test_csv_header_must_match_schema(data_copy: Path):
    csv = data_copy / "retail_purchases" / "retail_purchases.csv"
    lines = csv.read_text().splitlines()
    lines[0] = lines[0].replace("region", "regoin")
    csv.write_text("\n".join(lines) + "\n")
    message = rejected("org-a", data_dir=data_copy)
    assert "retail_purchases.csv" in message and "header" in message and "regoin" in message


def test_csv_values_must_match_declared_types(data_copy: Path):
    csv = data_copy / "retail_purchases" / "retail_purchases.csv"
    lines = csv.read_text().splitlines()
    fields = lines[5].split(",")
    fields[4] = "many"  # order_count is an int
    lines[5] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    message = rejected("org-a", data_dir=data_copy)
    assert "line 6" in message and "order_count" in message and "'many'" in message and "int" in message


def test_csv_with_missing_field_is_refused(data_copy: Path):
    csv = data_copy / "retail_purchases" / "retail_purchases.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]
    csv.write_text("\n".join(lines) + "\n")
    assert "line 3: 5 fields, expected 6" in rejected("org-a", data_dir=data_copy)


def test_rule_naming_a_column_the_schema_lacks():
    message = rejected("org-b", {"analysisRule": {
        "type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": ["111111111111"],
        "differentialPrivacy": {"userIdentifierColumn": "email"}}})
    assert "analysisRule.differentialPrivacy.userIdentifierColumn" in message
    assert "'email' is not in dataset 'media_engagement'" in message


def test_join_key_must_be_in_both_schemas(data_copy: Path):
    schema = data_copy / "media_engagement" / "schema.yaml"
    schema.write_text(schema.read_text().replace("role: join_key", "role: user_identifier"))
    message = rejected("org-a", data_dir=data_copy)
    assert "cleanrooms-collab:joinKey" in message and "media_engagement" in message and "org-b" in message


@pytest.mark.parametrize("budget, key", [
    ({"epsilon": 25}, "differentialPrivacy.epsilon"),
    ({"epsilon": 0}, "differentialPrivacy.epsilon"),
    ({"epsilon": 10.5}, "differentialPrivacy.epsilon"),
    ({"epsilon": True}, "differentialPrivacy.epsilon"),
    ({"usersNoisePerQuery": 5}, "differentialPrivacy.usersNoisePerQuery"),
    ({"usersNoisePerQuery": 101}, "differentialPrivacy.usersNoisePerQuery"),
    ({"autoRefresh": "WEEKLY"}, "differentialPrivacy.autoRefresh"),
])
def test_privacy_budget_out_of_range(budget, key):
    message = rejected("org-b", {"differentialPrivacy": budget})
    assert key in message
    assert ("1 to 20" in message) or ("10 to 100" in message) or ("CALENDAR_MONTH" in message)


def test_aggregation_threshold_below_two():
    message = rejected("org-a", {"analysisRule": {
        "type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": ["111111111111"],
        "aggregationThreshold": {"column": "customer_key", "minimum": 1}}})
    assert "analysisRule.aggregationThreshold.minimum" in message and "2 to 100000" in message


@pytest.mark.parametrize("account, shown", [(None, "missing"), ("12345", "'12345'"), ("11111111111a", "'11111111111a'")])
def test_account_id_missing_or_malformed(account, shown):
    message = rejected("org-a", {"accountId": account})
    assert "cleanrooms-collab:accountId" in message and shown in message and "12 digits" in message


def test_partner_account_id_malformed():
    config = stack_config("org-a")
    partners = [dict(config[f"{PROJECT}:partners"][0], accountId="2222")]
    assert "partners[0].accountId" in rejected("org-a", {"partners": partners})


def test_unknown_role_name():
    message = rejected("org-a", {"roles": ["collaboration_owner", "data_scientist"]})
    assert "cleanrooms-collab:roles" in message and "'data_scientist'" in message and "analyst" in message


def test_identifier_column_cannot_be_an_output():
    # org-b joins an existing collaboration, so the legacy engine is not refused for it.
    message = rejected("org-b", {"analyticsEngine": "CLEAN_ROOMS_SQL", "analysisRule": {
        "type": "AGGREGATION", "aggregateColumns": [{"function": "AVG", "columns": ["engagement_score"]}],
        "dimensionColumns": ["customer_key"], "outputConstraints": [{"column": "customer_key", "minimum": 3}]}})
    assert "analysisRule.dimensionColumns" in message and "join_key" in message


def test_engine_refuses_rules_it_cannot_enforce():
    message = rejected("org-a", {"analysisRule": {
        "type": "AGGREGATION", "aggregateColumns": [{"function": "AVG", "columns": ["purchase_amount"]}],
        "dimensionColumns": ["region"], "outputConstraints": [{"column": "customer_key", "minimum": 3}]}})
    assert "AGGREGATION rules are not supported by the SPARK analytics engine" in message


def test_threshold_and_differential_privacy_are_not_combined():
    message = rejected("org-b", {"analysisRule": {
        "type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": ["111111111111"],
        "differentialPrivacy": {"userIdentifierColumn": "customer_key"},
        "aggregationThreshold": {"column": "customer_key", "minimum": 3}}})
    assert "analysisRule.aggregationThreshold" in message and "differential privacy" in message


def test_legacy_engine_refused_for_a_new_collaboration():
    with pytest.raises(ConfigError, match="analyticsEngine.*no longer"):
        engines.check_new_collaboration("CLEAN_ROOMS_SQL")


def test_any_query_needs_providers():
    message = rejected("org-b", {"analysisRule": {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY"}})
    assert "allowedAnalysisProviders" in message


def test_exactly_one_analyst():
    config = stack_config("org-a")
    partners = [dict(config[f"{PROJECT}:partners"][0], roles=["data_producer", "analyst"])]
    message = rejected("org-a", {"partners": partners})
    assert "exactly one organization must have role 'analyst'" in message


def test_template_parameters_must_match_sql(tmp_path: Path, data_copy: Path):
    sql = data_copy / "queries" / "customer_segments.sql"
    sql.write_text(sql.read_text().replace("-- param: min_orders INTEGER default 1\n", ""))
    message = rejected("org-a", data_dir=data_copy)
    assert "customer_segments.sql" in message and "min_orders" in message


def test_template_parameter_type_must_be_a_clean_rooms_type(data_copy: Path):
    sql = data_copy / "queries" / "customer_segments.sql"
    sql.write_text(sql.read_text().replace("min_orders INTEGER", "min_orders NUMBERISH"))
    assert "NUMBERISH" in rejected("org-a", data_dir=data_copy)


def test_quicksight_principals_must_be_quicksight_arns():
    message = rejected("org-a", {"quicksight": {"enabled": True, "owners": ["arn:aws:iam::111111111111:root"]}})
    assert "quicksight.owners" in message and "root" in message


def test_dashboard_template_columns_are_checked_with_the_config(data_copy: Path):
    sql = data_copy / "queries" / "customer_segments.sql"
    sql.write_text(sql.read_text().replace("AS avg_purchase", "AS avg_spend"))
    owner = "arn:aws:quicksight:us-east-1:111111111111:user/default/alice"
    message = rejected("org-a", {"quicksight": {"enabled": True, "owners": [owner]}}, data_dir=data_copy)
    assert "quicksight.template" in message and "avg_spend" in message

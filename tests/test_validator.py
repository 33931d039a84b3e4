"""The Clean Rooms validator: leaky templates refused by name, file and line; the shipped ones pass.

The same templates are refused at preview by the real Pulumi program (under
mocks) and by `run --local` (tests/test_localroom_cli.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.collaboration import from_stack_files
from model.errors import ConfigError
from model.templates import parse_query
from model.validator import validate
from tests import harness
from tests.harness import ROOT, run_stack, stack_ref

# Each leaky template, with what its refusal must say. Line 2 is the SQL (line 1 is the header).
LEAKY = {
    "identifier_selected": ("SELECT r.customer_key, COUNT(*) AS n FROM retail_purchases r GROUP BY r.customer_key",
                            ["disallowed output column", "retail_purchases of org-a", "customer_key", "join_key"]),
    "identifier_counted": ("SELECT r.region, COUNT(DISTINCT r.customer_key) AS n FROM retail_purchases r "
                           "GROUP BY r.region", ["disallowed output column", "'n' is computed from 'customer_key'"]),
    "identifier_through_cte": ("WITH c AS (SELECT customer_key AS k FROM retail_purchases) SELECT k, COUNT(*) AS n "
                               "FROM c GROUP BY k", ["disallowed output column", "'k'"]),
    "select_star": ("SELECT * FROM retail_purchases", ["disallowed output column", "customer_key"]),
    "dp_not_aggregated": ("SELECT m.region, m.sessions FROM media_engagement m",
                          ["differential privacy", "media_engagement of org-b", "must aggregate"]),
    "dp_subquery_in_where": ("SELECT m.region, COUNT(*) AS n FROM media_engagement m WHERE m.sessions > "
                             "(SELECT AVG(sessions) FROM media_engagement) GROUP BY m.region",
                             ["differential privacy", "only in FROM or JOIN"]),
    "dp_join_not_on_user_id": ("SELECT a.region, COUNT(*) AS n FROM media_engagement a JOIN media_engagement b "
                               "ON a.region = b.region GROUP BY a.region",
                               ["differential privacy", "equi-joins on the user identifier", "a.region = b.region"]),
    "dp_max": ("SELECT m.region, MAX(m.sessions) AS top FROM media_engagement m GROUP BY m.region",
               ["differential privacy", "MAX", "only COUNT, COUNT DISTINCT, SUM, AVG"]),
    "dp_cte_not_user_level": ("WITH c AS (SELECT region, sessions FROM media_engagement) SELECT region, "
                              "SUM(sessions) AS s FROM c GROUP BY region",
                              ["differential privacy", "does not output the user identifier"]),
    "unassociated_table": ("SELECT COUNT(*) AS n FROM crm_contacts", ["associated tables", "crm_contacts",
                                                                      "media_engagement", "retail_purchases"]),
    "unknown_column": ("SELECT r.loyalty_tier, COUNT(*) AS n FROM retail_purchases r GROUP BY r.loyalty_tier",
                       ["columns", "loyalty_tier", "retail_purchases"]),
    "threshold_literal_on_identity": ("SELECT r.region, COUNT(*) AS n FROM retail_purchases r "
                                      "WHERE r.customer_key = 'abc' GROUP BY r.region",
                                      ["aggregation threshold", "identity column 'customer_key'"]),
    "threshold_aggregated_expression": ("SELECT r.region, SUM(r.purchase_amount * 2) AS s FROM retail_purchases r "
                                        "GROUP BY r.region", ["aggregation threshold", "COLUMNS_ONLY"]),
    # A window written in the final SELECT shows what orders it: its ORDER BY column is in the output's SQL.
    "identifier_orders_a_final_window": ("SELECT r.region, RANK() OVER (ORDER BY r.customer_key) AS rk "
                                         "FROM retail_purchases r", ["disallowed output column", "'rk'",
                                                                     "customer_key"]),
    # A window that only partitions by the user does not output it: the CTE still must.
    "dp_cte_window_without_user_column": ("WITH w AS (SELECT m.channel, LAG(m.sessions, 1, 0) OVER (PARTITION BY "
                                          "m.customer_key ORDER BY m.sessions) AS prev FROM media_engagement m) "
                                          "SELECT w.channel, COUNT(*) AS n FROM w GROUP BY w.channel",
                                          ["differential privacy", "does not output the user identifier"]),
}
ACCEPTED = {
    "dp_join_on_user_id": "SELECT a.region, COUNT(*) AS n FROM media_engagement a JOIN media_engagement b "
                          "ON a.customer_key = b.customer_key GROUP BY a.region",
    "dp_user_level_cte": "WITH c AS (SELECT customer_key, region, sessions FROM media_engagement WHERE sessions > 3) "
                         "SELECT region, SUM(sessions) AS s FROM c GROUP BY region",
    "identifier_in_join_and_filter": "SELECT r.region, COUNT(*) AS n FROM retail_purchases r JOIN media_engagement m "
                                     "ON r.customer_key = m.customer_key WHERE m.sessions > 2 GROUP BY r.region",
    # dp-sql-capabilities: windows in a CTE over a DP table PARTITION BY the user; the value is computed from
    # sessions, not from the identifier that partitions it.
    "dp_cte_window_partitioned_by_user": "WITH w AS (SELECT m.customer_key, m.channel, LAG(m.sessions, 1, 0) OVER "
                                         "(PARTITION BY m.customer_key ORDER BY m.sessions) AS prev FROM "
                                         "media_engagement m) SELECT w.channel, COUNT(*) AS n, SUM(w.prev) AS p "
                                         "FROM w GROUP BY w.channel",
    "threshold_cte_window_ordered_by_identifier": "WITH w AS (SELECT r.region, LAG(r.order_count) OVER (PARTITION BY "
                                                  "r.region ORDER BY r.customer_key) AS prev FROM retail_purchases r) "
                                                  "SELECT w.region, SUM(w.prev) AS p FROM w GROUP BY w.region",
}


def write_template(folder: Path, name: str, sql: str) -> Path:
    path = folder / f"{name}.sql"
    path.write_text(f"-- description: {name}\n{sql}\n")
    return path


@pytest.fixture(scope="module")
def collab():
    return from_stack_files("org-a")[1]


@pytest.mark.parametrize("name", sorted(LEAKY))
def test_leaky_template_is_refused_naming_file_line_table_and_rule(tmp_path, collab, name):
    sql, expected = LEAKY[name]
    result = validate(parse_query(write_template(tmp_path, name, sql)), collab)
    assert result.refusals, f"{name} was accepted"
    text = str(result.refusals[0])
    assert text.startswith(f"{tmp_path / name}.sql:2: "), text
    for fragment in expected:
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_the_rules_allow_is_accepted(tmp_path, collab, name):
    result = validate(parse_query(write_template(tmp_path, name, ACCEPTED[name])), collab)
    assert result.refusals == []


def test_shipped_templates_pass_with_one_documented_warning(collab):
    settings, _ = from_stack_files("org-a")
    for template in settings.analyst.queries:
        result = validate(template, collab)
        assert result.refusals == [], [str(r) for r in result.refusals]
        # AWS documents no rule for one query over a DP table and a threshold table: said, not refused.
        assert len(result.warnings) == 1 and "does not document" in result.warnings[0].message


def test_analyst_not_allowed_by_the_partner_rule_is_refused(tmp_path):
    """org-b's ANY_QUERY names only org A; a rule naming another account refuses org A's queries."""
    from dataclasses import replace

    settings, collab = from_stack_files("org-a")
    table = collab.tables["media_engagement"]
    other = replace(table, rule=replace(table.rule, allowed_analysis_providers=("333333333333",)))
    collab = replace(collab, tables={**collab.tables, "media_engagement": other})
    result = validate(settings.analyst.queries[0], collab)
    assert any("allowed analyses" in str(r) and "333333333333" in str(r) for r in result.refusals)


def test_parameter_default_must_parse_as_its_type(tmp_path):
    path = tmp_path / "bad_default.sql"
    path.write_text("-- description: x\n-- param: min_orders INTEGER default many\n"
                    "SELECT COUNT(*) AS n FROM retail_purchases WHERE order_count >= :min_orders\n")
    with pytest.raises(ConfigError, match=r"bad_default.sql:2: default 'many' of parameter 'min_orders'"):
        parse_query(path)


def test_syntax_error_names_the_line_without_terminal_codes(tmp_path):
    path = write_template(tmp_path, "broken", "SELECT region,\n  COUNT(* AS n FROM retail_purchases")
    with pytest.raises(ConfigError) as info:
        parse_query(path)
    assert "broken.sql:3: SQL does not parse" in str(info.value) and "\x1b" not in str(info.value)


# --------------------------------------------------------------------------
# At preview: the real program refuses them before declaring any resource.


@pytest.fixture
def data_with(tmp_path):
    def make(name: str, sql: str) -> Path:
        data = tmp_path / "data"
        shutil.copytree(ROOT / "data", data)
        write_template(data / "queries", name, sql)
        return data
    return make


@pytest.mark.parametrize("name", ["identifier_selected", "dp_not_aggregated", "dp_subquery_in_where",
                                  "dp_join_not_on_user_id", "unassociated_table", "unknown_column"])
def test_preview_refuses_leaky_templates_before_any_resource(bootstrap, data_with, name):
    sql, expected = LEAKY[name]
    data = data_with(name, sql)
    with pytest.raises(ConfigError) as info:
        run_stack("org-a", overrides={"dataDir": str(data)},
                  peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    message = str(info.value)
    assert "cleanrooms-collab:analyst.queries" in message and f"{name}.sql:2:" in message
    for fragment in expected:
        assert fragment in message
    # Only the read-only stack reference exists when the refusal comes.
    assert [r.typ for r in harness.LAST_MONITOR.registered] == ["pulumi:pulumi:StackReference"]


def test_preview_checks_columns_of_a_partner_that_has_not_deployed(data_with):
    """Before org B deploys, its rule is unknown but its schema is in data/: columns are still checked."""
    data = data_with("typo", "SELECT m.chanel, COUNT(*) AS n FROM retail_purchases r JOIN media_engagement m "
                             "ON r.customer_key = m.customer_key GROUP BY m.chanel")
    with pytest.raises(ConfigError, match="column 'chanel' is not in table 'media_engagement'"):
        run_stack("org-a", overrides={"dataDir": str(data)})


def test_partner_rule_reaches_the_analyst_through_stack_outputs(bootstrap):
    rule = bootstrap.b2.outputs["analysis_rule"]
    assert rule["type"] == "CUSTOM" and rule["differential_privacy_column"] == "customer_key"
    assert any("does not document" in line for line in bootstrap.a3.logs)

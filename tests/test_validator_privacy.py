"""Differential privacy: every construct the User Guide documents as unsupported is refused, everywhere in the query.

Each refusal (and warning) is one line: the template file and line, the rule, the protected
table and its owner, what is wrong and what would pass, with the User Guide page. The same
validator runs at preview (the analyst's stack) and in the local clean room (`run --local`);
both are exercised at the end. Sources are in model/validator/privacy.py.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from model.collaboration import from_settings, from_stack_files, rule_export
from model.errors import ConfigError
from model.peers import PeerOutputs
from model.templates import parse_query
from model.validator import validate
from tests import harness
from tests.harness import PROJECT, ROOT, run_stack, stack_config, stack_ref
from tests.test_config import rejected, settings_for
from tests.test_validator import write_template

ME = "media_engagement of org-b"

# name: (SQL from file line 2, [(line, fragments of that refusal)]). Each fails on the validator before this change.
REFUSED = {
    "having_max": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nGROUP BY m.region\n"
                   "HAVING MAX(m.sessions) >= 200",
                   [(5, ["MAX in HAVING of the final SELECT", "only COUNT, COUNT DISTINCT, SUM, AVG and STDDEV",
                         "use one of them", "dp-sql-capabilities"])]),
    "order_by_min": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nGROUP BY m.region\n"
                     "ORDER BY MIN(m.engagement_score)",
                     [(5, ["MIN in ORDER BY of the final SELECT", "only COUNT, COUNT DISTINCT, SUM, AVG"])]),
    "window_in_order_by": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nGROUP BY m.region\n"
                           "ORDER BY ROW_NUMBER() OVER (ORDER BY m.region)",
                           [(5, ["window function", "in ORDER BY", "not supported in the final SELECT",
                                 "partitions by customer_key"])]),
    "window_in_qualify": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nGROUP BY m.region\n"
                          "QUALIFY RANK() OVER (ORDER BY m.region) = 1",
                          [(5, ["window function", "in QUALIFY", "not supported in the final SELECT"])]),
    "sum_distinct": ("SELECT m.region,\n  SUM(DISTINCT m.sessions) AS s\nFROM media_engagement m GROUP BY m.region",
                     [(3, ["SUM(DISTINCT ...) in the SELECT list", "only COUNT(DISTINCT ...)",
                           "use SUM without DISTINCT"])]),
    "stddev_pop": ("SELECT m.region,\n  STDDEV_POP(m.sessions) AS s\nFROM media_engagement m GROUP BY m.region",
                   [(3, ["STDDEV_POP in the SELECT list", "use STDDEV (STDDEV_SAMP)"])]),
    "join_or": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\nJOIN media_engagement b\n"
                "  ON a.customer_key = b.customer_key OR a.region = b.region\nGROUP BY a.region",
                [(5, ["uses OR", "equi-joins on the user identifier column only",
                      "join ON a.customer_key = b.customer_key and put other conditions in WHERE"])]),
    "join_non_equality": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\nJOIN media_engagement b\n"
                          "  ON a.customer_key = b.customer_key\n  AND a.sessions < b.sessions\nGROUP BY a.region",
                          [(6, ["'a.sessions < b.sessions' in the join condition is not an equality",
                                "keep a.customer_key = b.customer_key", "move 'a.sessions < b.sessions' to WHERE"])]),
    "join_other_equality": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\nJOIN media_engagement b\n"
                            "  ON a.customer_key = b.customer_key\n  AND a.region = b.region\nGROUP BY a.region",
                            [(6, ["'a.region = b.region' in the join condition is an equality on other columns",
                                  "only equi-joins on the user identifier column (customer_key)"])]),
    "join_keyed_on_other_relations": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\n"
                                      "JOIN media_engagement b ON a.customer_key = b.customer_key\n"
                                      "JOIN media_engagement c\n  ON a.customer_key = b.customer_key\n"
                                      "GROUP BY a.region",
                                      [(6, ["must be equi-joins on the user identifier column",
                                            "join ON a.customer_key = c.customer_key"])]),
    "join_through_cte_or": ("WITH u AS (SELECT customer_key AS k, region AS rg FROM media_engagement)\n"
                            "SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nJOIN u\n"
                            "  ON m.customer_key = u.k OR m.region = u.rg\nGROUP BY m.region",
                            [(6, ["uses OR", "join ON m.customer_key = u.customer_key"])]),
    "cross_join": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\nCROSS JOIN media_engagement b\n"
                   "GROUP BY a.region", [(4, ["CROSS JOIN", "not supported",
                                              "join them ON a.customer_key = b.customer_key"])]),
    "comma_join": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a, media_engagement b\n"
                   "WHERE a.customer_key = b.customer_key GROUP BY a.region",
                   [(3, ["CROSS JOIN", "join them ON a.customer_key = b.customer_key"])]),
    "join_using": ("SELECT a.region, COUNT(*) AS n\nFROM media_engagement a\nJOIN media_engagement b\n"
                   "  USING (customer_key)\nGROUP BY a.region",
                   [(5, ["USING joins are not supported", "write the join criterion in ON", "Common alternatives"])]),
    "join_natural": ("SELECT r.region, COUNT(*) AS n\nFROM media_engagement m\nNATURAL JOIN retail_purchases r\n"
                     "GROUP BY r.region", [(4, ["NATURAL joins are not supported", "write the join criterion in ON"])]),
    "listagg_window_in_cte": ("WITH c AS (\n  SELECT customer_key,\n"
                              "    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY sessions) OVER (PARTITION BY "
                              "customer_key) AS p\n  FROM media_engagement)\nSELECT COUNT(*) AS n FROM c",
                              [(4, ["PERCENTILE_CONT is not supported as a window function",
                                    "use the equivalent aggregate with GROUP BY", "Common alternatives"])]),
    "caret_operator": ("SELECT m.region,\n  SUM(m.sessions ^ 2) AS s\nFROM media_engagement m GROUP BY m.region",
                       [(3, ["the ^ operator", "for a power use POWER(x, 2)"])]),
    "double_colon_cast": ("SELECT m.region,\n  SUM(m.sessions::bigint) AS s\nFROM media_engagement m "
                          "GROUP BY m.region", [(3, ["the :: cast operator is not supported", "CAST(x AS type)"])]),
    "convert": ("SELECT m.region,\n  SUM(CONVERT(m.sessions, BIGINT)) AS s\nFROM media_engagement m "
                "GROUP BY m.region", [(3, ["CONVERT(...) is not supported", "CAST(x AS type)"])]),
    "interval_in_one_string": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\n"
                               "WHERE current_date() > current_date() - INTERVAL '1 DAY'\nGROUP BY m.region",
                               [(4, ["INTERVAL '1 DAY' is not supported", "write INTERVAL '1' DAY"])]),
    "sysdate": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\nWHERE SYSDATE() IS NOT NULL\n"
                "GROUP BY m.region", [(4, ["SYSDATE is not supported", "use CURRENT_DATE"])]),
}

# Documented as supported, and accepted without a warning.
ACCEPTED = {
    # custom-diff-privacy: HAVING COUNT | ... ; dp-query-tips-examples: ORDER BY COUNT(DISTINCT user_id) DESC LIMIT 5.
    "having_and_order_by_allowed_aggregates": "SELECT m.region, COUNT(*) AS n FROM media_engagement m GROUP BY "
                                              "m.region HAVING COUNT(*) > 5 AND SUM(m.sessions) > 10 "
                                              "ORDER BY COUNT(DISTINCT m.customer_key) DESC LIMIT 5",
    "stddev_and_count_distinct": "SELECT m.region, STDDEV(m.sessions) AS a, STDDEV_SAMP(m.sessions) AS b, "
                                 "COUNT(DISTINCT m.channel) AS c FROM media_engagement m GROUP BY m.region",
    "join_on_user_id_through_cte": "WITH u AS (SELECT customer_key AS k, sessions FROM media_engagement) "
                                   "SELECT m.region, SUM(u.sessions) AS s FROM media_engagement m JOIN u "
                                   "ON (m.customer_key = u.k) GROUP BY m.region",
    "three_way_join_on_user_id": "SELECT a.region, COUNT(*) AS n FROM media_engagement a JOIN media_engagement b "
                                 "ON a.customer_key = b.customer_key JOIN media_engagement c "
                                 "ON c.customer_key = a.customer_key AND c.customer_key = b.customer_key "
                                 "GROUP BY a.region",
    "named_window_partitioned_by_user_id": "WITH c AS (SELECT customer_key, SUM(sessions) OVER w AS s FROM "
                                           "media_engagement WINDOW w AS (PARTITION BY customer_key)) "
                                           "SELECT SUM(c.s) AS t FROM c",
    "math_on_released_aggregates": "SELECT m.region, SUM(m.sessions) * 2 AS s, COUNT(*) + 1 AS n "
                                   "FROM media_engagement m GROUP BY m.region",
    "casts_that_cannot_fail": "SELECT m.region, SUM(CAST(m.sessions AS BIGINT)) AS s, "
                              "AVG(CAST(m.engagement_score AS DOUBLE)) AS e, SUM(CAST(m.engagement_score AS INT)) AS f,"
                              " COUNT(DISTINCT CAST(m.sessions AS STRING)) AS c, SUM(TRY_CAST(m.region AS INT)) AS t "
                              "FROM media_engagement m GROUP BY m.region",
}

# dp-limitations: AWS runs these, without the guarantee. (SQL, line, fragments of the one warning)
WARNED = {
    "arithmetic_inside_an_aggregate": ("SELECT m.region,\n  SUM(m.sessions * 1000000) AS s\n"
                                       "FROM media_engagement m GROUP BY m.region",
                                       3, ["'m.sessions * 1000000' computes * from row values", "can overflow",
                                           "compute it from the final SELECT's aggregates instead (e.g. SUM(x) * 2)",
                                           "charges the privacy budget like any run", "dp-limitations"]),
    "arithmetic_in_a_cte": ("WITH c AS (\n  SELECT customer_key, sessions + sessions * 3 AS x\n"
                            "  FROM media_engagement)\nSELECT SUM(c.x) AS s FROM c",
                            3, ["computes * + from row values"]),
    "cast_that_can_fail": ("SELECT m.region,\n  SUM(CAST(m.region AS INT)) AS s\nFROM media_engagement m "
                           "GROUP BY m.region",
                           3, ["'CAST(m.region AS INT)' converts varchar(16) values to INT",
                               "invalid cast error", "cast only to a type every value converts to"]),
    "narrowing_cast": ("SELECT m.region,\n  SUM(CAST(m.sessions AS TINYINT)) AS s\nFROM media_engagement m "
                       "GROUP BY m.region", 3, ["converts int values to TINYINT", "invalid cast error"]),
    "concat_in_a_cte": ("WITH c AS (\n  SELECT customer_key, CONCAT(region, channel) AS rc\n"
                        "  FROM media_engagement)\nSELECT c.rc, COUNT(*) AS n FROM c GROUP BY c.rc",
                        3, ["(CONCAT) can overflow at run time",
                            "leave it out of values computed from protected rows"]),
    "power": ("SELECT m.region,\n  AVG(POWER(m.sessions, 3)) AS p\nFROM media_engagement m GROUP BY m.region",
              3, ["(POWER) can overflow"]),
    "date_arithmetic": ("SELECT m.region, COUNT(*) AS n\nFROM media_engagement m\n"
                        "WHERE ADD_MONTHS(current_date(), m.sessions) > current_date()\nGROUP BY m.region",
                        4, ["(ADD_MONTHS) can overflow"]),
}


@pytest.fixture(scope="module")
def collab():
    return from_stack_files("org-a")[1]


def _result(tmp_path: Path, collab, name: str, sql: str):
    path = write_template(tmp_path, name, sql)
    return path, validate(parse_query(path), collab)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_documented_unsupported_construct_is_refused_in_one_line(tmp_path, collab, name):
    sql, expected = REFUSED[name]
    path, result = _result(tmp_path, collab, name, sql)
    lines = [str(r) for r in result.refusals]
    assert len(lines) == len(expected), lines
    for line, (number, fragments) in zip(lines, expected):
        assert "\n" not in line
        assert line.startswith(f"{path}:{number}: differential privacy ({ME}): "), line
        for fragment in fragments:
            assert fragment in line, (fragment, line)
        assert "[dp-sql-capabilities" in line, line


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_documented_supported_construct_is_accepted(tmp_path, collab, name):
    _, result = _result(tmp_path, collab, name, ACCEPTED[name])
    assert result.refusals == [] and result.warnings == [], [str(r) for r in result.refusals + result.warnings]


@pytest.mark.parametrize("name", sorted(WARNED))
def test_construct_that_voids_the_guarantee_is_warned_about_not_refused(tmp_path, collab, name):
    sql, number, fragments = WARNED[name]
    path, result = _result(tmp_path, collab, name, sql)
    assert result.refusals == [], [str(r) for r in result.refusals]
    assert len(result.warnings) == 1, [str(w) for w in result.warnings]
    line = str(result.warnings[0])
    assert "\n" not in line and line.startswith(f"{path}:{number}: differential privacy ({ME}): "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_a_table_under_a_threshold_only_is_not_held_to_the_dp_structure(tmp_path, collab):
    """The DP rules apply to queries over a DP table; org A's own table alone is under its threshold only."""
    _, result = _result(tmp_path, collab, "threshold_only", "SELECT r.region, MAX(r.purchase_amount) AS top, "
                        "COUNT(*) AS n FROM retail_purchases r GROUP BY r.region HAVING MIN(r.order_count) > 1")
    assert result.refusals == [] and result.warnings == []


# --------------------------------------------------------------------------
# Config: who may use differential privacy, and with what


def _org_b_as(roles: list[str], **more) -> dict:
    """Org B's stack with ``roles`` (and its DP rule, unless ``more`` replaces it); org A keeps the rest."""
    partner_a = dict(stack_config("org-b")[f"{PROJECT}:partners"][0])
    if "analyst" in roles:
        partner_a.update(roles=["collaboration_owner", "data_producer"], runsJobs=False)
    return {"roles": roles, "partners": [partner_a], **more}


@pytest.mark.parametrize("roles, more, why", [
    (["data_producer", "analyst"], {"analyst": {"resultFormat": "PARQUET"}}, "analyst: CAN_RECEIVE_RESULTS"),
    (["data_producer", "result_receiver"], {}, "result_receiver: CAN_RECEIVE_RESULTS"),
])
def test_a_member_who_receives_results_cannot_use_differential_privacy(roles, more, why):
    message = rejected("org-b", _org_b_as(roles, **more))
    assert message.startswith(f"config '{PROJECT}:analysisRule.differentialPrivacy': 'org-b' can receive results")
    assert why in message and "differential-privacy, Considerations" in message
    assert "remove differentialPrivacy from its analysisRule" in message and "\n" not in message


def test_org_b_as_the_analyst_loads_once_it_drops_differential_privacy():
    rule = {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": ["222222222222"],
            "aggregationThreshold": {"column": "customer_key", "minimum": 3}}
    settings = settings_for("org-b", _org_b_as(["data_producer", "analyst"], analysisRule=rule,
                                               differentialPrivacy=None, analyst={"resultFormat": "PARQUET"}))
    assert settings.analysis_rule.threshold_column == "customer_key" and not settings.analysis_rule.differential_privacy


def test_a_partner_that_receives_results_with_a_dp_rule_is_refused_where_both_are_known():
    """At preview, the analyst's stack knows the partner's roles (its own config) and its rule (its outputs)."""
    b_entry = dict(stack_config("org-a")[f"{PROJECT}:partners"][0], roles=["data_producer", "result_receiver"])
    settings = settings_for("org-a", {"partners": [b_entry]})
    b_rule = settings_for("org-b").analysis_rule
    peer = PeerOutputs(settings.partners[0], {"analysis_rule": rule_export(b_rule),
                                              "configured_table_association_name": "media_engagement"})
    with pytest.raises(ConfigError) as info:
        from_settings(settings, {"org-b": peer})
    message = str(info.value)
    assert message.startswith(f"config '{PROJECT}:partners[0].roles': 'org-b' can receive results "
                              "(result_receiver: CAN_RECEIVE_RESULTS)")
    assert "analysisRule.differentialPrivacy" in message and "differential-privacy, Considerations" in message


def test_threshold_and_differential_privacy_in_one_rule_cite_aws():
    message = rejected("org-b", {"analysisRule": {
        "type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": ["111111111111"],
        "differentialPrivacy": {"userIdentifierColumn": "customer_key"},
        "aggregationThreshold": {"column": "customer_key", "minimum": 3}}})
    assert message.startswith(f"config '{PROJECT}:analysisRule.aggregationThreshold': cannot be combined with "
                              "analysisRule.differentialPrivacy")
    assert "You can't use aggregation thresholds with differential privacy" in message
    assert "API AnalysisRuleCustom" in message and "custom-min-agg-thresholds" in message
    assert "keep one of them" in message


# --------------------------------------------------------------------------
# At preview and in the local clean room


@pytest.fixture
def data_with(tmp_path):
    def make(name: str, sql: str) -> Path:
        data = tmp_path / "data"
        shutil.copytree(ROOT / "data", data)
        write_template(data / "queries", name, sql)
        return data
    return make


@pytest.mark.parametrize("name", ["having_max", "join_or", "join_using"])
def test_preview_refuses_before_any_resource(bootstrap, data_with, name):
    sql, [(number, fragments)] = REFUSED[name]
    with pytest.raises(ConfigError) as info:
        run_stack("org-a", overrides={"dataDir": str(data_with(name, sql))},
                  peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    message = str(info.value)
    assert f"{name}.sql:{number}: differential privacy ({ME}): " in message
    assert all(fragment in message for fragment in fragments)
    assert [r.typ for r in harness.LAST_MONITOR.registered] == ["pulumi:pulumi:StackReference"]


def test_preview_warns_and_declares_the_template(bootstrap, data_with):
    sql, number, fragments = WARNED["arithmetic_inside_an_aggregate"]
    run = run_stack("org-a", overrides={"dataDir": str(data_with("overflow", sql))},
                    peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    [line] = [line for line in run.logs if "overflow.sql" in line]
    assert f"overflow.sql:{number}: differential privacy ({ME}): " in line and fragments[0] in line
    names = {t.inputs["name"] for t in run.of_type("aws-native:cleanrooms:AnalysisTemplate")}
    assert "overflow" in names


def _local(tmp_path: Path, *argv: str) -> tuple[int, str]:
    from queryrunner import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main([*argv, "--local", "--out", str(tmp_path / "results"), "--state-dir", str(tmp_path / "state")],
                    stdout=stdout, stderr=stderr)
    return code, stderr.getvalue()


def _charges(tmp_path: Path) -> list[dict]:
    ledger = tmp_path / "state" / "org-a" / "privacy-budget.json"
    return json.loads(ledger.read_text())["charges"] if ledger.exists() else []


@pytest.mark.parametrize("name", ["order_by_min", "join_non_equality"])
def test_local_clean_room_refuses_with_exit_2_and_runs_nothing(tmp_path, data_with, name):
    sql, [(number, fragments)] = REFUSED[name]
    code, err = _local(tmp_path, "run", name, "--data-dir", str(data_with(name, sql)))
    assert code == 2 and "nothing was run" in err
    assert f"{name}.sql:{number}: differential privacy ({ME}): " in err and all(f in err for f in fragments)
    assert not (tmp_path / "results").exists() and _charges(tmp_path) == []


def test_local_clean_room_warns_runs_and_charges_like_any_run(tmp_path, data_with):
    sql = "SELECT m.region,\n  SUM(m.sessions * 2) AS s\nFROM media_engagement m\nGROUP BY m.region"
    code, err = _local(tmp_path, "run", "doubled", "--data-dir", str(data_with("doubled", sql)), "--seed", "1")
    assert code == 0, err
    assert "warning: " in err and f"doubled.sql:3: differential privacy ({ME}): 'm.sessions * 2'" in err
    [charge] = _charges(tmp_path)
    assert charge["template"] == "doubled" and charge["usage"].get("SUM") == 1

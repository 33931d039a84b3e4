"""Set operations in the local clean room: identities traced through UNION, UNION ALL, INTERSECT and EXCEPT.

custom-sql-capabilities: UNION and UNION ALL are supported in CTEs and the final SELECT
of queries over tables under aggregation thresholds (INTERSECT and EXCEPT are not);
dp-sql-capabilities: set operators are supported in CTEs over DP tables, not in the
final SELECT. Every expectation is computed here from the CSV, independently.
"""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from localroom.engine import LocalCleanRoom, LocalLimitation
from localroom.privacy import calibrate
from model.collaboration import from_stack_files
from model.errors import ConfigError
from model.templates import parse_query
from model.validator import validate
from tests.harness import ROOT
from tests.test_privacy import ZeroNoise, collab_of, copy_data
from tests.test_validator import write_template

CAL = calibrate(10, 20)
RETAIL = ROOT / "data" / "retail_purchases" / "retail_purchases.csv"
MEDIA = ROOT / "data" / "media_engagement" / "media_engagement.csv"


def rows(path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def collab():
    return from_stack_files("org-a")[1]


def run(collab, tmp_path, sql):
    result = validate(parse_query(write_template(tmp_path, "t", sql)), collab)
    assert result.ok, [str(r) for r in result.refusals]
    room = LocalCleanRoom(collab)
    return room.execute(room.plan(result.analysis, CAL), {}, ZeroNoise())


def refusals(collab, tmp_path, sql) -> list[str]:
    return [str(r) for r in validate(parse_query(write_template(tmp_path, "t", sql)), collab).refusals]


# --------------------------------------------------------------------------
# Aggregation thresholds (org A's table: at least 3 distinct customer_key per row)


def test_a_final_union_keeps_a_row_only_the_union_gives_enough_identities(collab, tmp_path):
    """Row-level branches: alone each region row is one customer (suppressed); merged by UNION, a region with
    three or more customers behind it across both branches is kept, and one with fewer is not."""
    sql = ("SELECT r.region FROM retail_purchases r WHERE r.order_count = 40 AND r.age_group = '55-64' "
           "UNION SELECT r.region FROM retail_purchases r WHERE r.order_count = 39 AND r.age_group = '55-64'")
    behind = defaultdict(set)
    for row in rows(RETAIL):
        if row["age_group"] == "55-64" and row["order_count"] in ("39", "40"):
            behind[row["region"]].add(row["customer_key"])
    out = run(collab, tmp_path, sql)
    expected = {region for region, keys in behind.items() if len(keys) >= 3}
    assert {r["region"] for r in out.table.to_pylist()} == expected
    assert out.enforcement.suppressed_rows == len(behind) - len(expected) >= 1
    # On the shipped data: northeast has 1 + 1 customers (suppressed); midwest 1 + 2, kept only because the
    # union merges both branches' rows into one (each branch alone is below 3).
    assert "northeast" not in expected and "midwest" in expected


def test_a_final_union_all_counts_each_branch_row_apart(collab, tmp_path):
    sql = ("SELECT r.region AS k, COUNT(*) AS n FROM retail_purchases r WHERE r.order_count = 40 GROUP BY r.region "
           "UNION ALL SELECT r.age_group, COUNT(*) FROM retail_purchases r WHERE r.order_count >= 38 "
           "GROUP BY r.age_group ORDER BY n DESC")
    by_region, by_age = defaultdict(set), defaultdict(set)
    for row in rows(RETAIL):
        if row["order_count"] == "40":
            by_region[row["region"]].add(row["customer_key"])
        if int(row["order_count"]) >= 38:
            by_age[row["age_group"]].add(row["customer_key"])
    expected = sorted([(k, len(v)) for k, v in [*by_region.items(), *by_age.items()] if len(v) >= 3],
                      key=lambda kv: -kv[1])
    out = run(collab, tmp_path, sql).table.to_pylist()
    assert [r["n"] for r in out] == [n for _, n in expected]  # ORDER BY applied after the threshold
    assert sorted((r["k"], r["n"]) for r in out) == sorted(expected)


def test_identities_traced_through_a_union_all_cte(collab, tmp_path):
    """The branches select no identity: the local room carries customer_key through both."""
    sql = ("WITH picked AS (SELECT r.region, r.order_count FROM retail_purchases r WHERE r.order_count = 40 "
           "UNION ALL SELECT r.region, r.order_count FROM retail_purchases r WHERE r.order_count = 1) "
           "SELECT region, order_count, COUNT(*) AS n FROM picked GROUP BY region, order_count")
    behind = defaultdict(set)
    for row in rows(RETAIL):
        if row["order_count"] in ("1", "40"):
            behind[(row["region"], int(row["order_count"]))].add(row["customer_key"])
    out = run(collab, tmp_path, sql).table.to_pylist()
    assert {(r["region"], r["order_count"]): r["n"] for r in out} == \
        {k: len(v) for k, v in behind.items() if len(v) >= 3}


def test_a_distinct_union_cte_is_counted_as_written_with_identities_counted_apart(collab, tmp_path):
    """UNION (DISTINCT) dedups (region, age_group): its COUNT(*) is of distinct pairs, its threshold of
    the customers behind them; adding an identity column would have changed both."""
    sql = ("WITH pairs AS (SELECT r.region, r.age_group FROM retail_purchases r WHERE r.order_count = 40 "
           "UNION SELECT r.region, r.age_group FROM retail_purchases r WHERE r.order_count = 39) "
           "SELECT region, COUNT(*) AS n FROM pairs GROUP BY region")
    pairs, behind = defaultdict(set), defaultdict(set)
    for row in rows(RETAIL):
        if row["order_count"] in ("39", "40"):
            pairs[row["region"]].add(row["age_group"])
            behind[row["region"]].add(row["customer_key"])
    out = run(collab, tmp_path, sql).table.to_pylist()
    assert {r["region"]: r["n"] for r in out} == {k: len(v) for k, v in pairs.items() if len(behind[k]) >= 3}


def test_intersect_and_except_are_refused_beside_a_threshold(collab, tmp_path):
    for op in ("INTERSECT", "EXCEPT"):
        found = refusals(collab, tmp_path, f"SELECT r.region, COUNT(*) AS n FROM retail_purchases r GROUP BY r.region "
                                           f"{op} SELECT r.region, COUNT(*) FROM retail_purchases r GROUP BY r.region")
        assert any(f"{op} is not supported" in line and "custom-sql-capabilities" in line for line in found), found


# --------------------------------------------------------------------------
# Differential privacy (org B's table)


def test_the_contribution_limit_applies_across_both_branches(tmp_path):
    """A customer in both branches of a UNION ALL adds two rows; the limit of 1 keeps one of them."""
    sql = ("WITH both_ AS (SELECT m.customer_key, m.channel FROM media_engagement m WHERE m.sessions > 100 "
           "UNION ALL SELECT m.customer_key, m.channel FROM media_engagement m WHERE m.sessions > 50) "
           "SELECT channel, COUNT(*) AS n FROM both_ GROUP BY channel")
    users, rows_ = defaultdict(set), defaultdict(int)
    for row in rows(MEDIA):
        s = int(row["sessions"])
        for keep in (s > 100, s > 50):
            if keep:
                users[row["channel"]].add(row["customer_key"])
                rows_[row["channel"]] += 1
    one = run(collab_of(), tmp_path, sql).table.to_pylist()
    assert {r["channel"]: r["n"] for r in one} == {k: len(v) for k, v in users.items()}
    two = run(collab_of(copy_data(tmp_path / "two"), limit=2), tmp_path, sql).table.to_pylist()
    assert {r["channel"]: r["n"] for r in two} == dict(rows_)


def test_the_dp_guide_pattern_a_union_all_cte_of_user_level_rows_runs(collab, tmp_path):
    """The DP tips page's shape: user-level rows from two filters, unioned, counted per group."""
    sql = ("WITH engaged AS (SELECT m.customer_key, m.region FROM media_engagement m WHERE m.sessions >= 150 "
           "UNION ALL SELECT m.customer_key, m.region FROM media_engagement m WHERE m.engagement_score >= 90) "
           "SELECT region, COUNT(*) AS users FROM engaged GROUP BY region")
    users = defaultdict(set)
    for row in rows(MEDIA):
        if int(row["sessions"]) >= 150 or float(row["engagement_score"]) >= 90:
            users[row["region"]].add(row["customer_key"])
    out = run(collab, tmp_path, sql)
    assert {r["region"]: r["users"] for r in out.table.to_pylist()} == {k: len(v) for k, v in users.items()}
    assert out.enforcement.noise[0].sensitivity == pytest.approx(1.0)  # a user's two rows truncated to L = 1


@pytest.mark.parametrize("sql, fragment", [
    ("WITH x AS (SELECT m.customer_key, m.channel FROM media_engagement m WHERE m.sessions > 100 INTERSECT "
     "SELECT m.channel, m.customer_key FROM media_engagement m) SELECT channel, COUNT(*) AS n FROM x GROUP BY channel",
     "does not keep the user identifier (customer_key) in one column of every branch"),
    ("SELECT m.channel, COUNT(*) AS n FROM media_engagement m GROUP BY m.channel UNION ALL "
     "SELECT m.region, COUNT(*) FROM media_engagement m GROUP BY m.region",
     "set operators (UNION, INTERSECT, EXCEPT) are not supported in the final SELECT"),
    ("SELECT r.region, r.order_count FROM retail_purchases r UNION ALL SELECT r.region FROM retail_purchases r",
     "have 2 and 1 columns"),
    ("SELECT r.region FROM retail_purchases r UNION SELECT r.order_count FROM retail_purchases r",
     "column 1 of this UNION is text ('region') in one branch and number ('order_count')"),
], ids=["intersect-drops-user", "final-set-under-dp", "column-count", "column-type"])
def test_set_operations_aws_refuses_are_refused_with_one_line(collab, tmp_path, sql, fragment):
    found = refusals(collab, tmp_path, sql)
    assert any(fragment in line for line in found), found
    where = f"{tmp_path / 't.sql'}:2: "
    for line in found:  # file:line: rule ...: message, the page cited
        assert line.startswith(where) and "\n" not in line, line
        assert any(page in line for page in ("capabilities", "custom-diff-privacy", "Set operators",
                                             "disallowed output column")), line
    # One line per violation: the branches of a refused final UNION are not reported again as CTEs.
    assert len(found) == (2 if "user identifier" in fragment else 1), found


def test_a_final_union_mixed_with_union_all_merges_only_what_union_merges(collab, tmp_path):
    """(A UNION B) UNION ALL C: A's and B's rows are merged by value, C's kept one by one (set operators:
    left-associative); a row is kept when the customers behind it reach the threshold of 3."""
    sql = ("SELECT r.region AS k FROM retail_purchases r WHERE r.order_count = 40 AND r.age_group = '55-64' "
           "UNION SELECT r.region FROM retail_purchases r WHERE r.order_count = 39 AND r.age_group = '55-64' "
           "UNION ALL SELECT r.age_group FROM retail_purchases r WHERE r.order_count >= 38 GROUP BY r.age_group")
    merged, grouped = defaultdict(set), defaultdict(set)
    for row in rows(RETAIL):
        if row["age_group"] == "55-64" and row["order_count"] in ("39", "40"):
            merged[row["region"]].add(row["customer_key"])
        if int(row["order_count"]) >= 38:
            grouped[row["age_group"]].add(row["customer_key"])
    out = run(collab, tmp_path, sql)
    expected = sorted([k for k, v in merged.items() if len(v) >= 3] + [k for k, v in grouped.items() if len(v) >= 3])
    assert sorted(r["k"] for r in out.table.to_pylist()) == expected
    assert out.enforcement.suppressed_rows == len(merged) + len(grouped) - len(expected) >= 1


def test_hints_change_no_row_and_unknown_ones_are_refused(collab, tmp_path):
    """sql-commands-hints-spark: hints are optimization suggestions; the documented names only."""
    plain = "SELECT r.region, COUNT(*) AS n FROM retail_purchases r WHERE r.order_count > 30 GROUP BY r.region"
    hinted = plain.replace("SELECT ", "SELECT /*+ REPARTITION(8), BROADCAST(r) */ ", 1)
    # Sorted: without an ORDER BY the groups come in the order DuckDB's threads finish them.
    assert sorted(run(collab, tmp_path, hinted).table.to_pylist(), key=str) == \
        sorted(run(collab, tmp_path, plain).table.to_pylist(), key=str)
    found = refusals(collab, tmp_path, plain.replace("SELECT ", "SELECT /*+ TURBO(r) */ ", 1))
    assert len(found) == 1 and "'TURBO' is not a hint" in found[0] and "sql-commands-hints-spark" in found[0]


def test_cache_table_runs_as_the_cte_it_is_and_keeps_the_disallowed_columns_rule(collab, tmp_path):
    """sql-commands-cache-table: a cached table lives for the query, and may not select a disallowed column."""
    query = "SELECT big.region, COUNT(*) AS n FROM big GROUP BY big.region ORDER BY big.region"
    body = "SELECT r.region FROM retail_purchases r WHERE r.order_count > 30"
    cached = run(collab, tmp_path, f"CACHE TABLE big AS {body};\n{query}").table.to_pylist()
    assert cached == run(collab, tmp_path, f"WITH big AS ({body}) {query}").table.to_pylist()
    assert cached  # rows above the threshold
    leaked = refusals(collab, tmp_path, f"CACHE TABLE big AS SELECT r.region, r.customer_key FROM retail_purchases r;"
                                        f"\n{query}")
    assert len(leaked) == 1 and "CACHE TABLE column 'customer_key'" in leaked[0], leaked
    with pytest.raises(ConfigError, match=r"t\.sql:2: .*only 'CACHE TABLE name AS query;'"):
        parse_query(write_template(tmp_path, "t", f"SELECT 1 AS x;\n{query}"))


def test_a_final_union_branch_grouping_an_aggregating_cte_counts_the_identities_behind_each_group(collab, tmp_path):
    """A branch groups a CTE that already aggregated the table: each of its groups has behind it the customers
    of every CTE row it sums (counted on the copy that repeats each CTE row per customer); the other branch
    reads the table itself."""
    sql = ("WITH g AS (SELECT r.region, r.age_group, COUNT(*) AS n FROM retail_purchases r WHERE r.order_count = 40 "
           "AND r.region IN ('northeast', 'midwest') GROUP BY r.region, r.age_group) "
           "SELECT g.age_group AS k, SUM(g.n) AS total FROM g GROUP BY g.age_group "
           "UNION ALL SELECT r.region, COUNT(*) FROM retail_purchases r WHERE r.order_count = 40 GROUP BY r.region")
    by_age, by_region, counts = defaultdict(set), defaultdict(set), defaultdict(int)
    for row in rows(RETAIL):
        if row["order_count"] == "40" and row["region"] in ("northeast", "midwest"):
            by_age[row["age_group"]].add(row["customer_key"])
            counts[("age", row["age_group"])] += 1
        if row["order_count"] == "40":
            by_region[row["region"]].add(row["customer_key"])
            counts[("region", row["region"])] += 1
    expected = sorted([(k, counts[("age", k)]) for k, v in by_age.items() if len(v) >= 3] +
                      [(k, counts[("region", k)]) for k, v in by_region.items() if len(v) >= 3])
    out = run(collab, tmp_path, sql)
    assert sorted((r["k"], r["total"]) for r in out.table.to_pylist()) == expected
    small = sum(len(v) < 3 for v in by_age.values()) + sum(len(v) < 3 for v in by_region.values())
    assert out.enforcement.suppressed_rows == small
    assert any(len(v) < 3 for v in by_age.values())  # the threshold is not vacuous on the shipped data (55-64)


def test_a_final_union_branch_listing_an_aggregating_cte_keeps_the_rows_with_enough_identities(collab, tmp_path):
    """A row-level branch over aggregated rows: each listed row has behind it the customers of its group."""
    sql = ("WITH g AS (SELECT r.region, COUNT(*) AS n FROM retail_purchases r WHERE r.order_count = 40 "
           "AND r.age_group = '55-64' GROUP BY r.region) "
           "SELECT g.region AS k FROM g UNION ALL SELECT r.age_group FROM retail_purchases r GROUP BY r.age_group")
    behind = defaultdict(set)
    for row in rows(RETAIL):
        if row["order_count"] == "40" and row["age_group"] == "55-64":
            behind[row["region"]].add(row["customer_key"])
    ages = {row["age_group"] for row in rows(RETAIL)}
    out = run(collab, tmp_path, sql)
    kept = {region for region, keys in behind.items() if len(keys) >= 3}
    assert sorted(r["k"] for r in out.table.to_pylist()) == sorted([*ages, *kept])
    assert out.enforcement.suppressed_rows == len(behind) - len(kept) >= 1 and kept  # neither side vacuous


@pytest.mark.parametrize("cte, listed, key", [
    ("SELECT r.region, COUNT(*) AS n FROM retail_purchases r WHERE r.order_count = 40 AND r.age_group = '55-64' "
     "GROUP BY r.region", "SELECT g.region AS k, g.n FROM g ORDER BY g.n DESC", "region"),
    ("SELECT DISTINCT r.region, r.age_group FROM retail_purchases r WHERE r.order_count = 40",
     "SELECT g.age_group AS k FROM g WHERE g.region = 'west' ORDER BY k", "age_group"),
], ids=["grouped", "distinct"])
def test_a_final_select_listing_an_aggregating_cte_keeps_the_rows_with_enough_identities(collab, tmp_path, cte,
                                                                                       listed, key):
    """Rows listed from aggregated (or DISTINCT) rows: not one person's each, so not all suppressed; each keeps
    the threshold over the customers behind its CTE row, and the ORDER BY applies to what is kept."""
    out = run(collab, tmp_path, f"WITH g AS ({cte}) {listed}")
    behind = defaultdict(set)
    for row in rows(RETAIL):
        if row["order_count"] == "40" and (row["age_group"] == "55-64" if key == "region" else row["region"] == "west"):
            behind[row[key]].add(row["customer_key"])
    kept = [k for k, v in behind.items() if len(v) >= 3]
    listed_rows = out.table.to_pylist()
    assert sorted(r["k"] for r in listed_rows) == sorted(kept) and kept
    assert out.enforcement.suppressed_rows == len(behind) - len(kept) >= 1
    if key == "region":  # ORDER BY g.n DESC: the expression of an output, applied after the threshold
        assert [r["n"] for r in listed_rows] == sorted((r["n"] for r in listed_rows), reverse=True)
    else:
        assert [r["k"] for r in listed_rows] == sorted(kept)

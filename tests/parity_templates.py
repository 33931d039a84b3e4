"""The parity suite's templates: every SQL construct the User Guide documents as supported, on both engines.

Sources: custom-sql-capabilities (minimum aggregation thresholds, Spark engine:
clauses, joins, set operators, sort and row limits, conditions, functions) and
dp-sql-capabilities (differential privacy: CTEs, subqueries in FROM, window
functions partitioned by the user, the final SELECT's aggregates, HAVING and
ORDER BY on noisy values). Each template uses several constructs (named in
``COVERS``), since Spark costs about a second a template; tests/test_parity.py
runs them on DuckDB and on Spark. ``KNOWN`` names the templates whose engines
cannot agree to the last digit, with the difference docs/local-clean-room.md lists.
"""

from __future__ import annotations

R, M = "retail_purchases r", "media_engagement m"

# Over org A's table alone: an aggregation threshold of 3, no noise: the rows must be equal.
THRESHOLD = {
    "t_filters_functions":
        "-- param: least INTEGER default 5\n"
        "SELECT UPPER(r.region) AS region, CASE WHEN r.order_count > 20 THEN 'many' ELSE 'few' END AS bucket, "
        "COALESCE(LOWER(r.age_group), 'none') AS age, COUNT(*) AS n, SUM(r.order_count) AS orders "
        f"FROM {R} WHERE r.product_category IN ('home', 'grocery', 'sports') AND r.region LIKE '%t%' "
        "AND r.order_count BETWEEN :least AND 38 AND LENGTH(TRIM(r.product_category)) > 3 "
        "AND SUBSTRING(r.age_group, 1, 1) <> 'x' "
        "GROUP BY UPPER(r.region), CASE WHEN r.order_count > 20 THEN 'many' ELSE 'few' END, "
        "COALESCE(LOWER(r.age_group), 'none') HAVING COUNT(*) > 4 ORDER BY n DESC, region, bucket, age LIMIT 20",
    "t_joins":
        "SELECT a.region, COUNT(*) AS n, COUNT(c.order_count) AS loyal, COUNT(DISTINCT a.product_category) AS kinds "
        "FROM retail_purchases a JOIN retail_purchases b ON a.customer_key = b.customer_key "
        "LEFT JOIN retail_purchases c ON a.customer_key = c.customer_key AND c.order_count > 30 "
        "WHERE b.order_count > 10 GROUP BY a.region",
    "t_full_outer_join":
        "SELECT COALESCE(a.region, b.region) AS region, COUNT(*) AS n FROM retail_purchases a "
        "FULL OUTER JOIN retail_purchases b ON a.customer_key = b.customer_key AND a.order_count > 35 "
        "GROUP BY COALESCE(a.region, b.region)",
    "t_cte_subquery_window":
        "WITH ranked AS (SELECT r.customer_key, r.region, r.order_count, ROW_NUMBER() OVER (PARTITION BY r.region "
        "ORDER BY r.purchase_amount DESC, r.order_count, r.product_category) AS rk FROM retail_purchases r) "
        "SELECT s.region, COUNT(*) AS n, SUM(s.order_count) AS orders FROM (SELECT region, order_count FROM ranked "
        "WHERE rk <= 200) s GROUP BY s.region",
    "t_union_all_final":
        f"SELECT r.region AS k, COUNT(*) AS n FROM {R} WHERE r.order_count > 35 GROUP BY r.region "
        f"UNION ALL SELECT r.age_group, COUNT(*) FROM {R} WHERE r.order_count < 3 GROUP BY r.age_group "
        "ORDER BY n DESC, k",
    "t_union_final":
        f"SELECT r.region AS k FROM {R} WHERE r.order_count = 40 AND r.age_group = '55-64' UNION "
        f"SELECT r.region FROM {R} WHERE r.order_count = 39 AND r.age_group = '55-64' ORDER BY k",
    "t_union_cte":
        f"WITH two AS (SELECT r.region, r.age_group FROM {R} WHERE r.order_count = 40 UNION "
        f"SELECT r.region, r.age_group FROM {R} WHERE r.order_count = 39) "
        "SELECT region, COUNT(*) AS pairs FROM two GROUP BY region",
    "t_select_distinct":
        f"SELECT DISTINCT r.region, r.product_category FROM {R} WHERE r.order_count > 38",
    "t_decimals":
        f"SELECT r.region, AVG(r.purchase_amount) AS mean, ROUND(SUM(r.purchase_amount) / COUNT(*), 2) AS mean2, "
        f"ABS(SUM(r.order_count) - 1000) AS gap FROM {R} GROUP BY r.region",
}

# Beside org B's differentially private table: the same seed must give the same noisy rows and scales.
PRIVATE = {
    "p_join_declared_groups":
        "-- param: floor INTEGER default 20\n"
        "SELECT m.channel, r.product_category, COUNT(*) AS n, SUM(r.purchase_amount) AS spend "
        "FROM retail_purchases r JOIN media_engagement m ON r.customer_key = m.customer_key "
        "WHERE m.sessions >= :floor GROUP BY m.channel, r.product_category HAVING COUNT(*) > 50 "
        "ORDER BY n DESC, m.channel, r.product_category LIMIT 12",
    "p_aggregates":
        "SELECT m.age_group, AVG(m.engagement_score) AS score, STDDEV(m.sessions) AS spread, "
        "SUM(CASE WHEN m.sessions > 100 THEN 1 ELSE 0 END) AS heavy, COUNT(DISTINCT m.channel) AS channels, "
        f"COUNT(*) AS n FROM {M} GROUP BY m.age_group",
    "p_ctes_window_union_subquery":
        "WITH seen AS (SELECT m.customer_key, m.channel, ROW_NUMBER() OVER (PARTITION BY m.customer_key "
        "ORDER BY m.sessions) AS k FROM media_engagement m), "
        "either AS (SELECT m.customer_key, m.channel FROM media_engagement m WHERE m.sessions > 150 "
        "UNION ALL SELECT s.customer_key, s.channel FROM seen s WHERE s.k = 1) "
        "SELECT e.channel, COUNT(*) AS n FROM (SELECT customer_key, channel FROM either) e GROUP BY e.channel",
    "p_selected_groups": f"SELECT m.sessions, COUNT(*) AS n FROM {M} GROUP BY m.sessions",
    "p_ungrouped": f"SELECT COUNT(*) AS n, SUM(m.sessions) AS total, AVG(m.engagement_score) AS mean FROM {M}",
}

COVERS = {
    "t_filters_functions": "WHERE, IN, LIKE, BETWEEN, AND, <>, UPPER, LOWER, TRIM, LENGTH, SUBSTRING, CASE, "
                           "COALESCE, GROUP BY expressions, HAVING, ORDER BY, LIMIT, parameters",
    "t_joins": "JOIN INNER, JOIN LEFT, COUNT(column), COUNT DISTINCT",
    "t_full_outer_join": "JOIN FULL OUTER",
    "t_cte_subquery_window": "WITH (CTE), FROM SUBQUERY, ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)",
    "t_union_all_final": "UNION ALL in the final SELECT, ORDER BY after it",
    "t_union_final": "UNION in the final SELECT",
    "t_union_cte": "UNION in a CTE",
    "t_select_distinct": "SELECT DISTINCT",
    "t_decimals": "AVG, ROUND, ABS, arithmetic on aggregates of decimals",
    "p_join_declared_groups": "JOIN, COUNT, SUM, declared group keys, HAVING, ORDER BY, LIMIT, parameters",
    "p_aggregates": "AVG, STDDEV, SUM(CASE ...), COUNT DISTINCT",
    "p_ctes_window_union_subquery": "CTEs, window function partitioned by the user, UNION ALL in a CTE, "
                                    "FROM SUBQUERY",
    "p_selected_groups": "GROUP BY a column without declared values (DP partition selection)",
    "p_ungrouped": "aggregates without GROUP BY",
}

TEMPLATES = {**THRESHOLD, **PRIVATE}

# Differences that cannot be removed (docs/local-clean-room.md, "The Spark engine"): AVG and arithmetic on a
# decimal column are DOUBLE on DuckDB and decimal(14,6) on Spark, so they agree to six decimals, not the last digit.
KNOWN = {"t_decimals": "AVG and SUM / COUNT of decimal(10,2): DOUBLE on DuckDB, decimal on Spark"}

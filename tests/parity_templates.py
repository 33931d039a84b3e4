"""The parity suite's templates: every SQL construct the User Guide documents as supported, on both engines.

Sources (``PAGES``): custom-sql-capabilities, the table of what a CUSTOM rule with a
minimum aggregation threshold supports on the Spark engine (query constructs,
clauses, joins, set operators, sort and row limits, conditions, aggregate
functions; the other function categories "follow the AWS Clean Rooms Spark SQL
reference", whose category pages list the functions), and dp-sql-capabilities, the
same for differential privacy (CTEs and subqueries at user level, window functions
partitioned by the user, the final SELECT's aggregates, HAVING, ORDER BY, LIMIT and
OFFSET on noisy values; set operators in CTEs). ``COVERS`` names, per template, each
construct it uses and the page (and row) that documents it. Each template uses
several, since Spark costs about half a second a template; tests/test_parity.py runs
them on DuckDB and on Spark over the shipped data and stacks.

Where the engines cannot agree, ``KNOWN`` says so per column: why (the row of
docs/local-clean-room.md, "The Spark engine", that lists it) and what DuckDB gives
for Spark's value (Spark is the engine Clean Rooms runs), which the test holds it to:
a difference that goes away, or changes, fails the test until the docs follow.
``FAILS`` names the templates one engine cannot run at all, with its error.
``REFUSED`` holds constructs the pages mark unsupported (so no parity template has
them), with the refusal the validator gives, citing the page.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

UG = "https://docs.aws.amazon.com/clean-rooms/latest/userguide/"
REF = "https://docs.aws.amazon.com/clean-rooms/latest/sql-reference/"
PAGES = {
    "custom-sql-capabilities": UG + "custom-sql-capabilities.html",
    "dp-sql-capabilities": UG + "dp-sql-capabilities.html",
    "dp-query-tips-examples": UG + "dp-query-tips-examples.html",
    "sql-commands-cache-table": REF + "sql-commands-cache-table.html",
    "sql-commands-hints-spark": REF + "sql-commands-hints-spark.html",
    "sql-functions-agg-spark": REF + "sql-functions-agg-spark.html",
    "sql-functions-conditional-expressions-spark": REF + "sql-functions-conditional-expressions-spark.html",
    "Data_type_formatting": REF + "Data_type_formatting.html",
    "date-time-functions-spark": REF + "date-time-functions-spark.html",
    "Math_functions-spark": REF + "Math_functions-spark.html",
    "String_functions_spark": REF + "String_functions_spark.html",
    "Window_functions": REF + "Window_functions.html",
}
CUSTOM, DP = "custom-sql-capabilities", "dp-sql-capabilities"
MATH, STRING, DATE = "Math_functions-spark", "String_functions_spark", "date-time-functions-spark"
COND, AGG, WINDOW = "sql-functions-conditional-expressions-spark", "sql-functions-agg-spark", "Window_functions"

R, M = "retail_purchases r", "media_engagement m"
# A date and a timestamp per retail row, made from its integers (the shipped tables have no date column).
DAY = ("TO_DATE(CONCAT('2026-', LPAD(CAST(1 + r.order_count % 12 AS STRING), 2, '0'), '-', "
       "LPAD(CAST(1 + r.order_count % 28 AS STRING), 2, '0')))")
MOMENT = ("TO_TIMESTAMP(CONCAT('2026-03-', LPAD(CAST(1 + r.order_count % 28 AS STRING), 2, '0'), ' ', "
          "LPAD(CAST(r.order_count % 24 AS STRING), 2, '0'), ':', LPAD(CAST(r.order_count % 60 AS STRING), 2, '0'), "
          "':07'))")

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
    "t_right_natural_values_cross_joins":
        "SELECT c.region, v.code, t.tag, COUNT(*) AS n, COUNT(a.order_count) AS loyal FROM retail_purchases a "
        "NATURAL JOIN retail_purchases b RIGHT JOIN retail_purchases c ON a.customer_key = c.customer_key "
        "AND a.order_count > 30 JOIN (VALUES ('northeast', 'NE'), ('south', 'S'), ('west', 'W')) AS v(region, code) "
        "ON c.region = v.region CROSS JOIN (VALUES ('x'), ('y')) AS t(tag) GROUP BY c.region, v.code, t.tag",
    "t_cte_subquery_window":
        "WITH ranked AS (SELECT r.customer_key, r.region, r.order_count, ROW_NUMBER() OVER (PARTITION BY r.region "
        "ORDER BY r.purchase_amount DESC, r.order_count, r.product_category) AS rk FROM retail_purchases r) "
        "SELECT s.region, COUNT(*) AS n, SUM(s.order_count) AS orders FROM (SELECT region, order_count FROM ranked "
        "WHERE rk <= 200) s GROUP BY s.region",
    "t_window_functions":
        "WITH w AS (SELECT r.customer_key, r.region, RANK() OVER (PARTITION BY r.region ORDER BY r.order_count) AS rk, "
        "DENSE_RANK() OVER (PARTITION BY r.region ORDER BY r.order_count DESC) AS drk, "
        "LAG(r.order_count, 1, 0) OVER (PARTITION BY r.region ORDER BY r.purchase_amount, r.order_count, "
        "r.product_category, r.age_group) AS prev, LEAD(r.order_count) OVER (PARTITION BY r.region ORDER BY "
        "r.purchase_amount, r.order_count, r.product_category, r.age_group) AS next, "
        "SUM(r.order_count) OVER (PARTITION BY r.region) AS total, AVG(r.order_count) OVER (PARTITION BY r.region, "
        "r.age_group) AS mean, SUM(r.order_count) OVER (PARTITION BY r.region ORDER BY r.purchase_amount, "
        "r.order_count, r.product_category, r.age_group ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running, "
        "COUNT(*) OVER (PARTITION BY r.product_category) AS kind FROM retail_purchases r) "
        "SELECT w.region, COUNT(*) AS n, SUM(w.rk) AS rk, MAX(w.drk) AS drk, SUM(w.prev) AS prev, SUM(w.next) AS next, "
        "MAX(w.total) AS total, SUM(w.mean) AS mean, SUM(w.running) AS running, SUM(w.kind) AS kind, "
        "RANK() OVER (ORDER BY COUNT(*) DESC) AS biggest, ROW_NUMBER() OVER (ORDER BY w.region) AS k "
        "FROM w GROUP BY w.region",
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
    "t_sort_nulls_limit":
        "SELECT b.region AS region, COUNT(*) AS n, SUM(a.order_count) AS orders FROM retail_purchases a "
        "LEFT JOIN retail_purchases b ON a.customer_key = b.customer_key AND b.order_count > 38 "
        "GROUP BY b.region ORDER BY region DESC NULLS FIRST LIMIT 4",
    "t_conditions":
        f"SELECT r.region, r.age_group, COUNT(*) AS n FROM {R} WHERE r.region NOT IN ('west') "
        "AND r.product_category NOT LIKE 'h%' AND r.age_group RLIKE '^[2-4]' AND (r.order_count > 30 OR "
        "r.order_count < 5) AND NOT r.order_count = 31 AND (r.order_count > 2) IS TRUE AND (r.order_count = 99) "
        "IS FALSE AND r.region IS DISTINCT FROM 'x' AND r.age_group != '18-24' AND r.age_group IS NOT NULL "
        "AND r.order_count >= 1 AND r.order_count <= 40 AND r.purchase_amount < 4999 "
        "GROUP BY r.region, r.age_group ORDER BY n ASC NULLS LAST, r.region, r.age_group",
    "t_aggregates":
        f"SELECT r.region, COUNT(*) AS n, MIN(r.order_count) AS least, MAX(r.purchase_amount) AS most, "
        "MEDIAN(r.order_count) AS median, MEDIAN(r.purchase_amount) AS median_spend, STDDEV(r.order_count) AS sd, "
        "STDDEV_SAMP(r.purchase_amount) AS sd_spend, STDDEV_POP(r.order_count) AS sd_pop, "
        "VARIANCE(r.purchase_amount) AS var, VAR_SAMP(r.order_count) AS var_samp, VAR_POP(r.order_count) AS var_pop, "
        "APPROX_COUNT_DISTINCT(r.age_group) AS ages, SIZE(COLLECT_LIST(r.age_group)) AS listed, "
        "SIZE(COLLECT_SET(r.product_category)) AS kinds, SUM(DISTINCT r.order_count) AS distinct_orders, "
        f"AVG(DISTINCT r.order_count) AS distinct_mean FROM {R} GROUP BY r.region",
    "t_skewness_percentiles":
        f"SELECT r.region, COUNT(*) AS n, SKEWNESS(r.order_count) AS skew, PERCENTILE(r.order_count, 0.25) AS q1, "
        f"APPROX_PERCENTILE(r.purchase_amount, 0.5) AS approx_median FROM {R} GROUP BY r.region",
    "t_decimals":
        f"SELECT r.region, AVG(r.purchase_amount) AS mean, ROUND(SUM(r.purchase_amount) / COUNT(*), 2) AS mean2, "
        f"ABS(SUM(r.order_count) - 1000) AS gap FROM {R} GROUP BY r.region",
    "t_math":
        "SELECT FLOOR(r.order_count / 10) AS tens, CEIL(r.purchase_amount / 2000) AS thousands2, "
        "r.order_count DIV 20 AS twenties, MOD(r.order_count, 2) AS odd, COUNT(*) AS n, "
        "ABS(SUM(r.order_count) - 10000) AS gap, ROUND(AVG(r.order_count), 1) AS mean, POWER(COUNT(*), 2) AS squared, "
        "SQRT(SUM(r.order_count)) AS root, EXP(LN(COUNT(*))) AS back, LOG(10, COUNT(*)) AS digits, "
        "(COUNT(*) + 1) * 2 - COUNT(*) / 4 AS ops, SUM(r.order_count) % 7 AS mod7, "
        "CEILING(AVG(r.order_count)) AS up, SIGN(SUM(r.order_count) - 10000) AS sign, "
        "SUM(r.order_count) DIV 7 AS sevenths "
        f"FROM {R} GROUP BY FLOOR(r.order_count / 10), CEIL(r.purchase_amount / 2000), r.order_count DIV 20, "
        "MOD(r.order_count, 2)",
    "t_strings":
        "SELECT r.region, r.age_group, r.region || '/' || r.age_group AS joined, CONCAT(r.region, '-', r.age_group) "
        "AS concat, LEFT(r.region, 3) AS left3, RIGHT(r.region, 3) AS right3, LENGTH(r.region) AS len, "
        "LOWER(UPPER(r.region)) AS lower, LPAD(r.age_group, 8, '*') AS lpad, RPAD(r.region, 3, '*') AS rpad, "
        "LTRIM(CONCAT('  ', r.region)) AS ltrim, RTRIM(CONCAT(r.region, '  ')) AS rtrim, "
        "TRIM(CONCAT(' ', r.region, ' ')) AS trim, POSITION('th' IN r.region) AS pos, "
        "REGEXP_REPLACE(r.region, '[aeiou]', '') AS consonants, REPEAT(SUBSTRING(r.region, 1, 2), 2) AS repeat, "
        "REPLACE(r.region, 'th', 'TH') AS replace, SPLIT(r.age_group, '-')[0] AS split, "
        "SUBSTRING(r.region, 2, 3) AS sub, SUBSTRING(r.region, -3, 2) AS tail, "
        "SUBSTRING(r.region, 0, 3) AS sub_from_0, REGEXP_REPLACE(r.region, '(th)', '<$1>') AS backreference, "
        f"FORMAT_STRING('%s is %s', r.region, r.age_group) AS formatted, COUNT(*) AS n FROM {R} "
        "GROUP BY r.region, r.age_group",
    "t_btrim": f"SELECT BTRIM(CONCAT('  ', r.region, '  ')) AS region, COUNT(*) AS n FROM {R} GROUP BY 1",
    "t_regexp_substr":
        f"SELECT REGEXP_SUBSTR(r.product_category, '[aeiou]+') AS vowels, COUNT(*) AS n FROM {R} GROUP BY 1",
    "t_dates":
        f"WITH x AS (SELECT r.customer_key, {DAY} AS d, {MOMENT} AS t FROM retail_purchases r) "
        "SELECT DATE_TRUNC('MONTH', x.d) AS month, DATE_TRUNC('QUARTER', DATE_TRUNC('MONTH', x.d)) AS quarter, "
        "DATE_TRUNC('WEEK', DATE_TRUNC('MONTH', x.d)) AS week, EXTRACT(MONTH FROM DATE_TRUNC('MONTH', x.d)) AS m, "
        "EXTRACT(QUARTER FROM DATE_TRUNC('MONTH', x.d)) AS q, EXTRACT(YEAR FROM DATE_TRUNC('MONTH', x.d)) AS y, "
        "DATE_PART('month', DATE_TRUNC('MONTH', x.d)) AS part, MONTH(DATE_TRUNC('MONTH', x.d)) AS mon, "
        "YEAR(DATE_TRUNC('MONTH', x.d)) AS yr, DAY(DATE_TRUNC('MONTH', x.d)) AS first, "
        "DATEDIFF(DATE_TRUNC('MONTH', x.d), DATE '2026-01-01') AS days, "
        "DATE_DIFF(DATE_TRUNC('MONTH', x.d), DATE '2026-01-01') AS days2, "
        "YEAR(CURRENT_DATE) > YEAR(CAST(DATE_TRUNC('MONTH', x.d) AS DATE)) - 26 AS recent, "
        "DAYOFWEEK(DATE_TRUNC('MONTH', x.d)) AS dow, EXTRACT(DOW FROM DATE_TRUNC('MONTH', x.d)) AS dow2, "
        "TRUNC(DATE_TRUNC('MONTH', x.d), 'MM') AS trunc_mm, TRUNC(DATE_TRUNC('MONTH', x.d), 'WEEK') AS trunc_week, "
        "CAST(CAST(DATE_TRUNC('MONTH', x.d) AS DATE) AS TIMESTAMP) AS midnight, COUNT(*) AS n, "
        "MIN(x.d) AS earliest, MAX(x.t) AS latest FROM x GROUP BY DATE_TRUNC('MONTH', x.d)",
    "t_times":
        f"WITH x AS (SELECT r.customer_key, {MOMENT} AS t FROM retail_purchases r) "
        "SELECT DATE_TRUNC('HOUR', x.t) AS hour, HOUR(x.t) AS h, MINUTE(x.t) AS mi, SECOND(x.t) AS s, "
        "DATE_PART('hour', x.t) AS part, DAYOFMONTH(x.t) AS dom, CAST(x.t AS DATE) AS day, TIMESTAMP(CAST(x.t AS "
        "DATE)) AS midnight, DATEDIFF(x.t, TIMESTAMP '2026-03-01 12:00:00') AS days, "
        "CONVERT_TIMEZONE('UTC', 'America/New_York', x.t) AS new_york, "
        "FROM_UTC_TIMESTAMP(x.t, 'America/New_York') AS from_utc, COUNT(*) AS n FROM x GROUP BY x.t",
    "t_conditional_cast":
        "WITH x AS (SELECT r.customer_key, r.order_count DIV 10 AS k, r.region, r.age_group FROM retail_purchases r) "
        "SELECT x.k, x.region, x.age_group, CASE x.region WHEN 'west' THEN 1 WHEN 'south' THEN 2 ELSE 3 END AS coded, "
        "CASE WHEN x.k > 2 THEN 'many' WHEN x.k > 0 THEN 'some' ELSE 'few' END AS bucket, "
        "COALESCE(NULLIF(x.age_group, '65+'), 'old') AS age, NVL(NULLIF(x.age_group, '65+'), 'old') AS nvl, "
        "NVL2(NULLIF(x.age_group, '65+'), 'younger', 'older') AS nvl2, GREATEST(x.k, 2) AS at_least2, "
        "LEAST(x.k, 2) AS at_most2, CAST(x.k AS STRING) AS text, CAST(x.k AS DOUBLE) / 8 AS eighths, "
        "CAST(x.k / 3 AS DECIMAL(6,2)) AS thirds, CAST(x.region AS VARCHAR(3)) AS varchar3, "
        "CAST(x.k AS BOOLEAN) AS nonzero, TRY_CAST(x.age_group AS INT) AS not_a_number, "
        "CAST(SUBSTRING(x.age_group, 1, 2) AS INT) AS age_from, CAST(x.k / 4 AS INT) AS quarters, COUNT(*) AS n "
        "FROM x GROUP BY x.k, x.region, x.age_group",
    "t_cache_hints_typed_parameters":
        "-- param: since DATE default '2026-03-05'\n-- param: cutoff TIMESTAMP default '2026-03-05 10:00:00'\n"
        f"CACHE TABLE moments AS SELECT r.region, r.order_count, {MOMENT} AS t FROM retail_purchases r "
        "WHERE r.order_count > 2;\n"
        "SELECT /*+ BROADCAST(k), REPARTITION(2) */ k.region, k.t < :cutoff AS before, CAST(k.t AS DATE) >= :since "
        "AS since, HOUR(:cutoff) AS cutoff_hour, CAST(:cutoff AS STRING) AS cutoff, DAY(:since) AS since_day, "
        "COUNT(*) AS n, SUM(k.order_count) AS orders FROM moments k "
        "GROUP BY k.region, k.t < :cutoff, CAST(k.t AS DATE) >= :since",
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
    "p_intersect_except_windows":
        "WITH heavy AS (SELECT m.customer_key FROM media_engagement m WHERE m.sessions > 100 INTERSECT "
        "SELECT m.customer_key FROM media_engagement m WHERE m.engagement_score > 50), "
        "rest AS (SELECT m.customer_key FROM media_engagement m EXCEPT SELECT h.customer_key FROM heavy h), "
        "ranked AS (SELECT m.customer_key, m.channel, m.sessions, LAG(m.sessions, 1, 0) OVER (PARTITION BY "
        "m.customer_key ORDER BY m.sessions) AS prev, DENSE_RANK() OVER (PARTITION BY m.customer_key ORDER BY "
        "m.engagement_score DESC) AS best FROM media_engagement m) "
        "SELECT k.channel, COUNT(*) AS n, SUM(k.sessions) AS sessions FROM ranked k JOIN rest x "
        "ON k.customer_key = x.customer_key WHERE k.prev = 0 AND k.best = 1 GROUP BY k.channel",
    "p_outer_joins":
        "SELECT m.channel, COUNT(*) AS n, COUNT(r.region) AS matched, COUNT(q.region) AS loyal "
        "FROM retail_purchases r RIGHT JOIN media_engagement m ON r.customer_key = m.customer_key "
        "LEFT JOIN (SELECT p.customer_key, p.region FROM retail_purchases p WHERE p.order_count > 30) q "
        "ON m.customer_key = q.customer_key GROUP BY m.channel",
    "p_full_join_values":
        "SELECT v.label, COUNT(*) AS n FROM media_engagement m FULL OUTER JOIN retail_purchases r "
        "ON m.customer_key = r.customer_key JOIN (VALUES ('web', 'online'), ('mobile_app', 'online'), "
        "('email', 'direct'), ('social', 'online')) AS v(channel, label) ON m.channel = v.channel "
        "CROSS JOIN (VALUES (1)) AS one(k) GROUP BY v.label",
    "p_functions":
        "-- param: start DATE default '2026-01-01'\n"
        "WITH d AS (SELECT m.customer_key, m.channel, m.region, m.sessions, m.engagement_score, "
        "DATE_ADD(:start, m.sessions) AS day, ADD_MONTHS(:start, m.sessions % 12) AS month FROM media_engagement m) "
        "SELECT UPPER(d.channel) AS channel, CASE WHEN d.sessions >= 125 THEN 'heavy' ELSE 'light' END AS kind, "
        "COUNT(*) AS n, SUM(ABS(d.sessions - 125)) AS distance, AVG(ROUND(d.engagement_score)) AS score, "
        "SUM(CAST(d.engagement_score AS INT)) AS whole "
        "FROM d WHERE DAYOFYEAR(d.day) > 30 AND EXTRACT(MONTH FROM d.month) < 12 "
        "AND COALESCE(d.region, 'none') <> 'none' AND CONCAT(d.region, '/', d.channel) <> 'x' "
        "GROUP BY UPPER(d.channel), CASE WHEN d.sessions >= 125 THEN 'heavy' ELSE 'light' END",
    "p_selected_expressions":
        "-- param: start DATE default '2026-01-01'\n"
        "SELECT FLOOR(m.sessions / 50) AS band, DATE_TRUNC('MONTH', DATE_ADD(:start, m.sessions)) AS month, "
        f"COUNT(*) AS n FROM {M} GROUP BY FLOOR(m.sessions / 50), DATE_TRUNC('MONTH', DATE_ADD(:start, m.sessions))",
    "p_math_on_aggregates":
        f"SELECT m.region, COUNT(*) AS n, ROUND(AVG(m.engagement_score), 1) AS score, SUM(m.sessions) / COUNT(*) "
        "AS per, ABS(COUNT(*) - 600) AS gap, STDDEV_SAMP(m.sessions) AS spread "
        f"FROM {M} GROUP BY m.region HAVING AVG(m.sessions) > 100 ORDER BY AVG(m.sessions) DESC",
    "p_offset":
        f"SELECT m.channel, COUNT(*) AS n FROM {M} GROUP BY m.channel ORDER BY n DESC, m.channel LIMIT 2 OFFSET 1",
    "p_selected_groups": f"SELECT m.sessions, COUNT(*) AS n FROM {M} GROUP BY m.sessions",
    "p_ungrouped": f"SELECT COUNT(*) AS n, SUM(m.sessions) AS total, AVG(m.engagement_score) AS mean FROM {M}",
}

_JOINS, _CLAUSES, _SORT, _COND, _AGGS = (f"{CUSTOM}: Join clauses", f"{CUSTOM}: Clauses", f"{CUSTOM}: Sort and row "
                                         "limits", f"{CUSTOM}: Conditions", f"{CUSTOM}: Aggregate functions")
COVERS = {
    "t_filters_functions": {
        "WHERE, GROUP BY expressions, HAVING, ORDER BY": _CLAUSES, "LIMIT": _SORT,
        "IN, LIKE, BETWEEN, AND, <>": _COND, "UPPER, LOWER, TRIM, LENGTH, SUBSTRING": STRING,
        "CASE, COALESCE": COND, "parameters": f"{CUSTOM}: Query constructs (analysis template)"},
    "t_joins": {"JOIN INNER, JOIN LEFT": _JOINS, "COUNT(column), COUNT DISTINCT": _AGGS},
    "t_full_outer_join": {"JOIN FULL OUTER": _JOINS},
    "t_right_natural_values_cross_joins": {"JOIN RIGHT, JOIN NATURAL, JOIN CROSS": _JOINS,
                                           "FROM INLINE TABLE (VALUES)": _CLAUSES},
    "t_cte_subquery_window": {"WITH (CTE), FROM SUBQUERY": _CLAUSES, "ROW_NUMBER": WINDOW},
    "t_window_functions": {"RANK, DENSE_RANK, LAG, LEAD, SUM/AVG/COUNT OVER, ROWS frames (in a CTE)": WINDOW,
                           "RANK, ROW_NUMBER in the final SELECT beside the threshold": WINDOW},
    "t_union_all_final": {"UNION ALL in the final SELECT, ORDER BY after it": f"{CUSTOM}: Set operators"},
    "t_union_final": {"UNION in the final SELECT": f"{CUSTOM}: Set operators"},
    "t_union_cte": {"UNION in a CTE": f"{CUSTOM}: Set operators"},
    "t_select_distinct": {"SELECT DISTINCT": _CLAUSES},
    "t_sort_nulls_limit": {"ORDER BY DESC, NULLS FIRST, LIMIT": _SORT},
    "t_conditions": {"NOT IN, NOT LIKE, RLIKE, OR, NOT, IS TRUE, IS FALSE, IS DISTINCT FROM, !=, <, <=, >=, "
                     "IS NOT NULL": _COND, "ORDER BY ASC, NULLS LAST": _SORT},
    "t_aggregates": {"MIN, MAX, MEDIAN, STDDEV/STDDEV_SAMP, STDDEV_POP, VAR_SAMP/VARIANCE, VAR_POP, "
                     "APPROX_COUNT_DISTINCT, COLLECT_LIST, COLLECT_SET, SUM/AVG DISTINCT, beside COUNT": _AGGS},
    "t_skewness_percentiles": {"SKEWNESS, PERCENTILE, APPROX_PERCENTILE, beside COUNT": _AGGS},
    "t_decimals": {"AVG, ROUND, ABS, arithmetic on aggregates of decimals": MATH},
    "t_math": {"+ - * /, %, ABS, CEIL, CEILING, DIV, EXP, FLOOR, LN, LOG, MOD, POWER, ROUND, SIGN, SQRT": MATH},
    "t_strings": {"||, CONCAT, FORMAT_STRING, LEFT, RIGHT, LENGTH, LOWER, UPPER, LPAD, RPAD, LTRIM, RTRIM, TRIM, "
                  "POSITION, REGEXP_REPLACE, REPEAT, REPLACE, SPLIT, SUBSTRING": STRING},
    "t_btrim": {"BTRIM": STRING},
    "t_regexp_substr": {"REGEXP_SUBSTR": STRING},
    "t_dates": {"DATE_TRUNC, TRUNC, EXTRACT, DATE_PART, MONTH, YEAR, DAY, DATEDIFF, DATE_DIFF, DAYOFWEEK, CURRENT_DATE, "
                "TO_DATE": DATE, "CAST to DATE, TIMESTAMP, STRING": "Data_type_formatting"},
    "t_times": {"DATE_TRUNC, HOUR, MINUTE, SECOND, DATE_PART, DAYOFMONTH, TIMESTAMP, TO_TIMESTAMP, DATEDIFF, "
                "CONVERT_TIMEZONE, FROM_UTC_TIMESTAMP": DATE},
    "t_conditional_cast": {"CASE (simple, searched), COALESCE, NVL, NVL2, NULLIF, GREATEST, LEAST": COND,
                           "CAST to STRING, DOUBLE, DECIMAL, VARCHAR, BOOLEAN, INT; TRY_CAST": "Data_type_formatting"},
    "t_cache_hints_typed_parameters": {"CACHE TABLE": "sql-commands-cache-table",
                                       "query hints (BROADCAST, REPARTITION)": "sql-commands-hints-spark",
                                       "DATE and TIMESTAMP parameters": f"{CUSTOM}: Query constructs"},
    "p_join_declared_groups": {"JOIN, COUNT, SUM, declared group keys, HAVING, ORDER BY, LIMIT, parameters": DP},
    "p_aggregates": {"AVG, STDDEV, SUM(CASE ...), COUNT DISTINCT in the final SELECT": f"{DP}: Aggregate functions"},
    "p_ctes_window_union_subquery": {"CTEs, FROM SUBQUERY, UNION ALL in a CTE": DP,
                                     "ROW_NUMBER partitioned by the user": f"{DP}: Window functions"},
    "p_intersect_except_windows": {"INTERSECT and EXCEPT in CTEs": f"{DP}: Set operators",
                                   "LAG, DENSE_RANK partitioned by the user, in a CTE": f"{DP}: Window functions"},
    "p_outer_joins": {"RIGHT JOIN, LEFT JOIN of a subquery, on the user identifier": f"{DP}: Join clauses"},
    "p_full_join_values": {"FULL OUTER JOIN, JOIN and CROSS JOIN of VALUES": f"{DP}: Join clauses"},
    "p_functions": {"DATE_ADD, ADD_MONTHS, DAYOFYEAR, EXTRACT": DATE, "UPPER, CONCAT": STRING,
                    "CASE, COALESCE": COND, "ABS, ROUND in aggregated expressions": MATH,
                    "CAST in an aggregated expression": "Data_type_formatting"},
    "p_selected_expressions": {"FLOOR and DATE_TRUNC group keys (DP partition selection)": DP},
    "p_math_on_aggregates": {"ROUND, /, ABS on noisy aggregates; STDDEV_SAMP; HAVING and ORDER BY AVG": DP},
    "p_offset": {"ORDER BY, LIMIT, OFFSET in the final SELECT": f"{DP}: Sort operation, Row limits"},
    "p_selected_groups": {"GROUP BY a column without declared values (DP partition selection)": DP},
    "p_ungrouped": {"aggregates without GROUP BY": f"{DP}: Aggregate functions"},
}

TEMPLATES = {**THRESHOLD, **PRIVATE}


class Known(NamedTuple):
    """A column the engines give differently: why (docs/local-clean-room.md, "The Spark engine") and
    ``duckdb(duckdb_value, spark_value, spark_row) -> bool``: whether DuckDB's value is what that difference makes
    of Spark's (values as the CSVs hold them; the row is Spark's, by column name)."""

    why: str
    duckdb: Callable[[str, str, dict], bool]


def within(rel: float) -> Callable[[str, str, dict], bool]:
    return lambda d, s, row: abs(float(d) - float(s)) <= rel * abs(float(s))


KNOWN: dict[str, dict[str, Known]] = {
    "t_skewness_percentiles": {
        "approx_median": Known("APPROX_PERCENTILE: another approximation on each engine", within(0.02))},
}
# Templates one engine cannot run: {template: (engine, its error)}; the other engine's rows are checked as usual.
FAILS: dict[str, tuple[str, str]] = {}

# What the pages mark unsupported, refused before anything runs (the validator, citing the page).
REFUSED = {
    "OFFSET beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY r.region ORDER BY n DESC LIMIT 2 OFFSET 1",
        "OFFSET is not supported on the Spark engine when a minimum aggregation threshold is set "
        "[custom-sql-capabilities]"),
    "INTERSECT beside an aggregation threshold": (
        f"WITH k AS (SELECT r.customer_key, r.region FROM {R} INTERSECT SELECT r.customer_key, r.region FROM {R} "
        "WHERE r.order_count > 3) SELECT k.region, COUNT(*) AS n FROM k GROUP BY k.region",
        "INTERSECT is not supported on the Spark engine when a minimum aggregation threshold is set "
        "[custom-sql-capabilities]"),
    "LEFT SEMI JOIN beside an aggregation threshold": (
        "SELECT a.region, COUNT(*) AS n FROM retail_purchases a LEFT SEMI JOIN retail_purchases b "
        "ON a.customer_key = b.customer_key GROUP BY a.region",
        "LEFT SEMI JOIN is not supported on the Spark engine when a minimum aggregation threshold is set "
        "[custom-sql-capabilities]"),
    # The same operator under both names (sqlglot: NullSafeEQ); the page lists it as <=>.
    "IS NOT DISTINCT FROM beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.region IS NOT DISTINCT FROM r.age_group GROUP BY r.region",
        "<=> (IS NOT DISTINCT FROM) is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "<=> beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.region <=> r.age_group GROUP BY r.region",
        "<=> (IS NOT DISTINCT FROM) is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "CUBE beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY CUBE(r.region)",
        "GROUP BY CUBE is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "ROLLUP beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY ROLLUP(r.region)",
        "GROUP BY ROLLUP is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "EXCEPT beside an aggregation threshold": (
        f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY r.region EXCEPT "
        f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.order_count > 3 GROUP BY r.region",
        "EXCEPT is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "BOOL_AND beside an aggregation threshold": (
        f"SELECT r.region, BOOL_AND(r.order_count > 3) AS b, COUNT(*) AS n FROM {R} GROUP BY r.region",
        "BOOL_AND is not supported on the Spark engine when a minimum aggregation threshold is set"),
    "OFFSET in a CTE over a DP table": (
        "WITH few AS (SELECT m.customer_key, m.channel FROM media_engagement m LIMIT 100 OFFSET 5) "
        "SELECT few.channel, COUNT(*) AS n FROM few GROUP BY few.channel",
        "OFFSET is not supported in a CTE that reads differentially private data: move it to the final SELECT"),
    "a set operator in the final SELECT over a DP table": (
        f"SELECT m.channel, COUNT(*) AS n FROM {M} GROUP BY m.channel UNION ALL "
        f"SELECT m.region, COUNT(*) FROM {M} GROUP BY m.region",
        "set operators (UNION, INTERSECT, EXCEPT) are not supported in the final SELECT"),
    "NATURAL JOIN over a DP table": (
        "SELECT m.channel, COUNT(*) AS n FROM media_engagement m NATURAL JOIN retail_purchases r GROUP BY m.channel",
        "NATURAL joins are not supported in queries over differentially private tables"),
}
# Each refusal cites the page its construct is marked unsupported on.
REFUSED_PAGE = {
    construct: CUSTOM if "threshold" in construct else DP for construct in REFUSED
}

"""localroom/spark_semantics.py: Spark SQL on DuckDB gives Spark's values.

Each case is a Spark SQL query over literals and the row Spark 3.5.9 returns for it
(session time zone UTC, ANSI mode off, as localroom/spark.py runs it; the values
were taken from Spark and agree with the function reference), as Python values.
DuckDB must return that row for the rewritten query, and, unless the case is marked
as already agreeing (an edge the rewrite must not break), another one for the query
as sqlglot writes it without the rewrite: so every case can fail.
No Spark here: tests/test_parity.py runs the templates on both engines.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import duckdb
import pytest
import sqlglot

from localroom.spark_semantics import for_duckdb

T = "FROM VALUES (1), (2), (10), (4) AS t(x)"
CASES = {
    # FLOOR, CEIL, CEILING: BIGINT (DuckDB: DOUBLE 2.0); of a decimal, decimal(p - s + 1, 0): the same text.
    "floor": ("SELECT FLOOR(7.5D), FLOOR(-7.5D), FLOOR(7), CEIL(-7.5D), CEILING(7.2D), FLOOR(NULL)",
              (7, -8, 7, -7, 8, None), True),
    "floor of a decimal": ("SELECT FLOOR(CAST(-7.25 AS DECIMAL(10,2))), CEIL(CAST(2.01 AS DECIMAL(4,2)) / 2)",
                           (-8, 2), True),
    "sign": ("SELECT SIGN(-3), SIGN(0), SIGNUM(2.5D), SIGN(CAST(-2.5 AS DECIMAL(4,1))), SIGN(NULL)",
             (-1.0, 0.0, 1.0, -1.0, None), True),
    # DIV: the integral part (toward zero), BIGINT, NULL for 0 (DuckDB: 7.5 // 2 is 3.75, 1 // 0 fails).
    "div": ("SELECT 7 DIV 2, -7 DIV 2, 7 DIV -2, 7.5 DIV 2, -7.5 DIV 2.5, CAST(-15 AS DECIMAL(38,0)) DIV 7, "
            "CAST(-9 AS BIGINT) DIV 4", (3, -3, -3, 3, -3, -2, -2), True),
    "div by zero": ("SELECT x DIV y FROM VALUES (7, 0) AS t(x, y)", (None,), "fails"),
    # SKEWNESS: the population skewness; NULL without rows and when every value is the same; 0.0 for two values.
    "skewness": (f"SELECT SKEWNESS(x) {T}", (0.8483206969390205,), True),
    "skewness of two": ("SELECT SKEWNESS(x) FROM VALUES (1), (2) AS t(x)", (0.0,), True),
    "skewness of equal values": ("SELECT SKEWNESS(x) FROM VALUES (0.1D), (0.1D), (0.1D) AS t(x)", (None,), False),
    "skewness of one": ("SELECT SKEWNESS(x) FROM VALUES (1) AS t(x)", (None,), False),
    "skewness of none": ("SELECT SKEWNESS(x) FROM VALUES (CAST(NULL AS INT)) AS t(x)", (None,), False),
    "skewness filtered": ("SELECT SKEWNESS(x) FILTER (WHERE x > 1) FROM VALUES (1), (2), (3), (10) AS t(x)",
                          (0.6654688661238353,), True),
    "skewness over a window": ("SELECT SKEWNESS(x) OVER (PARTITION BY g) FROM VALUES (1, 1), (1, 2), (1, 10) "
                               "AS t(g, x) LIMIT 1", (0.674555484545766,), True),
    # PERCENTILE interpolates (DuckDB's QUANTILE is discrete), a DOUBLE also of a decimal.
    "percentile": (f"SELECT PERCENTILE(x, 0.25), PERCENTILE(x, 0.5), PERCENTILE(x, ARRAY(0.25, 0.75)) {T}",
                   (1.75, 3.0, [1.75, 5.5]), True),
    "percentile of a decimal": ("SELECT PERCENTILE(x, 0.3) FROM VALUES (CAST(1.25 AS DECIMAL(10,2))), "
                                "(CAST(2.5 AS DECIMAL(10,2))) AS t(x)", (1.625,), True),
    # TRUNC(date, fmt): a DATE, truncated to the format's unit (WEEK: the Monday); another format gives NULL.
    "trunc": ("SELECT TRUNC(DATE'2026-03-04', 'MM'), TRUNC(DATE'2026-05-17', 'QUARTER'), TRUNC(DATE'2026-03-04', "
              "'WEEK'), TRUNC(DATE'2026-03-04', 'DD'), TRUNC('2026-03-04 10:11:12', 'yy'), "
              "TRUNC(TIMESTAMP'2026-03-04 23:59:00', 'mon'), TRUNC('bad', 'MM')",
              (dt.date(2026, 3, 1), dt.date(2026, 4, 1), dt.date(2026, 3, 2), None, dt.date(2026, 1, 1),
               dt.date(2026, 3, 1), None), True),
    # SUBSTRING: position 0 is 1; a negative length gives ''; negative positions count from the end.
    "substring": ("SELECT SUBSTRING('hello', 0, 3), SUBSTR('hello', 0), SUBSTRING('hello' FROM 0 FOR 3), "
                  "SUBSTRING('hello', 2, -1), SUBSTRING('hello', -3, 2), SUBSTRING('hello', -6, 2), "
                  "SUBSTRING('hello', -10, 3)", ("hel", "hello", "hel", "", "ll", "h", ""), True),
    "substring of columns": ("SELECT SUBSTRING('hello', p, n) FROM VALUES (0, 2) AS t(p, n)", ("he",), True),
    "substring of a negative length column": ("SELECT SUBSTRING('hello', p, n) FROM VALUES (2, -1) AS t(p, n)",
                                              ("",), True),
    # REGEXP_REPLACE: Java's replacement ($1 a group, \$ a dollar), every match.
    "regexp_replace": ("SELECT REGEXP_REPLACE('north', '(th)', '<$1>'), REGEXP_REPLACE('banana', 'a', 'o'), "
                       "REGEXP_REPLACE('abc', '(a)(b)', '$2$1'), REGEXP_REPLACE('a.b', '\\\\.', '\\\\$'), "
                       "REGEXP_REPLACE('abc', 'b', '\\\\\\\\')", ("nor<th>", "bonono", "bac", "a$b", "a\\c"), True),
    # FORMAT_STRING, PRINTF: printf's patterns; a NULL string argument prints as null.
    "format_string": ("SELECT FORMAT_STRING('%s is %s', 'west', '18-24'), FORMAT_STRING('%d%%', 5), "
                      "FORMAT_STRING('%05.2f', 3.14159D), PRINTF('%s-%d', 'x', 3)",
                      ("west is 18-24", "5%", "03.14", "x-3"), True),
    "format_string of NULL": ("SELECT FORMAT_STRING('%s is %s', 'a', NULL), FORMAT_STRING('%s', CAST(NULL AS "
                              "STRING)), FORMAT_STRING(NULL, 'a')", ("a is null", "null", None), True),
    "btrim": ("SELECT BTRIM('  a  '), BTRIM('xxaxx', 'x'), BTRIM('xyaxy', 'xy'), BTRIM(NULL)",
              ("a", "a", "a", None), "fails"),
    "regexp_substr": ("SELECT REGEXP_SUBSTR('home', '[aeiou]+'), REGEXP_SUBSTR('xyz', '[aeiou]+'), "
                      "REGEXP_SUBSTR(NULL, 'a')", ("o", None, None), "fails"),
    # Day of the week: Sunday 1 ... Saturday 7; the ISO one Monday 1 ... Sunday 7; WEEKDAY Monday 0 ... Sunday 6.
    "dayofweek": ("SELECT DAYOFWEEK(DATE '2026-03-01'), EXTRACT(DOW FROM DATE '2026-03-01'), "
                  "EXTRACT(DAYOFWEEK FROM DATE '2026-03-07'), DATE_PART('dow', DATE '2026-03-01'), "
                  "WEEKDAY(DATE '2026-03-01'), DAYOFWEEK(TIMESTAMP '2026-03-07 23:30:00')", (1, 1, 7, 1, 6, 7), True),
    "dayofweek_iso": ("SELECT EXTRACT(DAYOFWEEK_ISO FROM DATE '2026-03-01'), EXTRACT(DOW_ISO FROM "
                      "DATE '2026-03-02'), DATE_PART('DOW_ISO', DATE '2026-03-07')", (7, 1, 6), "fails"),
    # Spark's TIMESTAMP is UTC (session time zone): naive, as DuckDB's TIMESTAMP (DuckDB's TIMESTAMPTZ has a zone).
    "cast to timestamp": ("SELECT CAST(DATE '2026-03-01' AS TIMESTAMP), CAST('2026-03-01 10:00:00' AS TIMESTAMP), "
                          "TIMESTAMP '2026-03-01 12:00:00'", (dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 1, 10),
                                                             dt.datetime(2026, 3, 1, 12)), True),
    "from_utc_timestamp": ("SELECT FROM_UTC_TIMESTAMP(TIMESTAMP '2026-03-01 12:00:00', 'America/New_York'), "
                           "FROM_UTC_TIMESTAMP('2026-07-01 12:00:00', 'Asia/Tokyo'), "
                           "TO_UTC_TIMESTAMP(TIMESTAMP '2026-03-01 12:00:00', 'America/New_York')",
                           (dt.datetime(2026, 3, 1, 7), dt.datetime(2026, 7, 1, 21), dt.datetime(2026, 3, 1, 17)),
                           True),
    # CAST to an integer type truncates a DOUBLE, a decimal and a string's number (DuckDB rounds).
    "cast to int": ("SELECT CAST(2.5 AS INT), CAST(-2.5 AS INT), CAST(2.7D AS INT), CAST(-2.7D AS BIGINT), "
                    "CAST(CAST(-7.99 AS DECIMAL(5,2)) AS SMALLINT), CAST(0.5D AS INT), CAST(7 AS INT)",
                    (2, -2, 2, -2, -7, 0, 7), True),
    "cast a string to int": ("SELECT CAST('2.5' AS INT), CAST('-2.7' AS INT), CAST(' 42 ' AS INT), "
                             "CAST('+7' AS INT), CAST('7.' AS BIGINT), CAST('1e3' AS INT), CAST('abc' AS INT), "
                             "CAST('99999999999' AS INT), CAST('99999999999' AS BIGINT)",
                             (2, -2, 42, 7, 7, None, None, None, 99999999999), True),
    "cast of a column to int": ("WITH t AS (SELECT -2.7D AS x, '3.9' AS s) SELECT CAST(t.x AS INT), "
                                "CAST(t.s AS INT) FROM t", (-2, 3), True),
}

_db = duckdb.connect()


def _row(sql: str, rewrite: bool):
    tree = sqlglot.parse_one(sql, read="spark")
    return _db.sql((for_duckdb(tree) if rewrite else tree).sql(dialect="duckdb")).fetchall()[0]


def _equal(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, (float, Decimal)):
        return math.isclose(float(got), want, rel_tol=1e-12)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_equal, got, want))
    return type(got) is type(want) and got == want if isinstance(want, (dt.datetime, str)) else got == want


@pytest.mark.parametrize("case", sorted(CASES))
def test_duckdb_gives_sparks_value(case):
    sql, spark, differs_without = CASES[case]
    got = _row(sql, rewrite=True)
    assert len(got) == len(spark) and all(map(_equal, got, spark)), (got, spark)
    if differs_without == "fails":
        with pytest.raises(duckdb.Error):
            _row(sql, rewrite=False)
    elif differs_without:
        try:
            plain = _row(sql, rewrite=False)
        except duckdb.Error:
            return
        assert not all(map(_equal, plain, spark)) or [type(v) for v in plain] != [type(v) for v in got], plain


def test_results_keep_sparks_types():
    """Where the CSV shows the type: 2 not 2.0 (FLOOR), 1.0 not 1 (SIGN), no offset (TIMESTAMP)."""
    floor, sign, moment = _row("SELECT FLOOR(2.5D), SIGN(3), CAST(DATE '2026-03-01' AS TIMESTAMP)", rewrite=True)
    assert (type(floor), type(sign), moment.tzinfo) == (int, float, None)


def test_the_analysis_still_finds_columns_and_aggregates():
    """The rewrite keeps column references and aggregates (the validator and the privacy analysis read them)."""
    tree = for_duckdb(sqlglot.parse_one(
        "SELECT r.g, SUM(CAST(r.x AS INT)) AS s, SKEWNESS(r.y) AS k, PERCENTILE(r.y, 0.5) AS p FROM t r GROUP BY r.g",
        read="spark"), {"t": {"g": "string", "x": "decimal(5,2)", "y": "int"}})
    assert {c.sql() for c in tree.find_all(sqlglot.exp.Column)} == {"r.g", "r.x", "r.y"}
    assert isinstance(tree.find(sqlglot.exp.Sum).this, sqlglot.exp.Cast)  # SUM(CAST(<x truncated> AS INT))
    assert tree.find(sqlglot.exp.Sum).this.find(sqlglot.exp.Floor) is not None
    assert tree.find(sqlglot.exp.Skewness) is not None and tree.find(sqlglot.exp.PercentileCont) is not None


_db.sql("CREATE TABLE purchases AS SELECT * FROM (VALUES " + ", ".join(
    ["(CAST(0.01 AS DECIMAL(10,2)), 'tie')", "(CAST(-0.01 AS DECIMAL(10,2)), 'negative tie')"]
    + ["(CAST(0.00 AS DECIMAL(10,2)), 'tie')", "(CAST(0.00 AS DECIMAL(10,2)), 'negative tie')"] * 31
    + ["(CAST(12345678.99 AS DECIMAL(10,2)), 'big')", "(CAST(99999999.99 AS DECIMAL(10,2)), 'big')",
       "(CAST(0.01 AS DECIMAL(10,2)), 'third')", "(CAST(0.00 AS DECIMAL(10,2)), 'third')",
       "(CAST(0.00 AS DECIMAL(10,2)), 'third')", "(NULL, 'none')"]) + ") AS t(x, g)")
# Spark 3.5.9's rows for the same table (AVG of decimal(10,2): decimal(14,6), rounded half up).
SPARK_AVERAGES = {"big": Decimal("56172839.490000"), "negative tie": Decimal("-0.000313"),
                  "none": None, "third": Decimal("0.003333"), "tie": Decimal("0.000313")}


def _averages(exact: bool) -> dict:
    sql = "SELECT r.g, AVG(r.x) AS m, AVG(DISTINCT r.x) AS d FROM purchases r GROUP BY r.g"
    tree = for_duckdb(sqlglot.parse_one(sql, read="spark"), {"purchases": {"x": "decimal(10,2)", "g": "string"}},
                      exact_averages=exact)
    return {g: (m, d) for g, m, d in _db.sql(tree.sql(dialect="duckdb")).fetchall()}


def test_an_average_of_a_decimal_is_sparks_decimal_rounded_half_up():
    """Where no DP table is read: each value exact to the digit, ties (0.01 / 32 = 0.0003125) rounded away
    from zero, NULL for no rows; AVG(DISTINCT) over the distinct values. A DOUBLE without the rewrite."""
    got = _averages(exact=True)
    assert {g: m for g, (m, _) in got.items()} == SPARK_AVERAGES
    assert got["third"][1] == Decimal("0.005000") and got["big"][1] == SPARK_AVERAGES["big"]
    assert all(isinstance(m, float) for g, (m, _) in _averages(exact=False).items() if g != "none")

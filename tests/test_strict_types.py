"""The data check reads every value as strictly as Spark's CSV reader (FAILFAST), Clean Rooms' engine.

DuckDB's own typed reader is more lenient: it reads '1.5' in an integer column
as 2, '0x1F' as 31, 't' as true, '2026-1-5' as a date, rounds '12.345' into a
decimal(10,2) and turns '1e39' into a float infinity. Each such value is refused
here with the file, line, column and value (docs/local-clean-room.md has the
whole table, measured on DuckDB 2.0.1 and Spark 3.5.9). The last test reads the
same values with Spark and checks that every value the check accepts, Spark
reads as the same value.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import struct
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.datasets import load_dataset, load_into, validate_data
from model.errors import ConfigError

# (schema type, the field as written in the CSV): values DuckDB's typed reader accepted
# (changing them) and Spark's reader refuses or reads otherwise; all refused now.
REFUSED = [
    ("integer", "1.5"), ("integer", "1.0"), ("integer", "1e3"), ("integer", " 12"), ("integer", "12 "),
    ("integer", "0x1F"), ("integer", "1_000"), ("tinyint", "1.5"), ("smallint", "2e2"), ("bigint", "1.5"),
    ("bigint", "0x1F"),
    ("decimal(10,2)", "12.345"), ("decimal(10,2)", "12.344"), ("decimal(10,2)", "-12.345"), ("decimal(10,2)", " 12.5"),
    ("decimal(10,2)", "12.5 "), ("decimal(10,2)", "1_000"), ("decimal(10,2)", "1.2345e1"), ("decimal(38,0)", "0.5"),
    ("float", "nan"), ("float", "inf"), ("float", "infinity"), ("float", "1e39"), ("float", "-1e39"),
    ("float", "1e-50"), ("float", "1_000"),
    ("boolean", "t"), ("boolean", "f"), ("boolean", "1"), ("boolean", "0"), ("boolean", "yes"), ("boolean", "no"),
    ("boolean", "y"),
    ("date", "2026-1-5"), ("date", "2026-01-5"), ("date", "2026/01/05"), ("date", " 2026-01-05"),
    ("date", "2026-01-05 "), ("date", "2026-01-05 10:00:00"), ("date", "2026-01-05T10:00"), ("date", "10000-01-01"),
    ("date", "infinity"), ("date", "epoch"), ("date", "26-01-05"), ("date", "2026-01-05Z"),
    ("timestamp_ntz", "2026-1-5 10:00:00.000000"), ("timestamp_ntz", "2026-01-05 1:00:00.000000"),
    ("timestamp_ntz", " 2026-01-05 10:00:00.000000"), ("timestamp_ntz", "2026-01-05 10:00:00.000000 "),
    ("timestamp_ltz", "infinity"), ("timestamp_ntz", "epoch"),
]
# Refused before as now (both engines refuse them): the messages stay one line with file, line and column.
STILL_REFUSED = [
    ("tinyint", "128"), ("smallint", "-32769"), ("integer", "2147483648"), ("bigint", "9223372036854775808"),
    ("integer", "NaN"), ("decimal(10,2)", "123456789.5"), ("decimal(5,2)", "999.995"), ("decimal(10,2)", "0x1F"),
    ("boolean", " true"), ("boolean", "on"), ("date", "2026-02-30"), ("date", "2026-02-29"), ("date", "20260105"),
    ("timestamp_ntz", "2026-01-05 10:00:00"), ("timestamp_ntz", "2026-01-05 10:00:00.1234567"),
    ("timestamp_ntz", "2026-01-05T10:00:00.123456"), ("timestamp_ntz", "2026-01-05 24:00:00.000000"),
]
# (schema type, field, the value loaded): accepted, and read by Spark as the same value.
ACCEPTED = [
    ("integer", "12", 12), ("integer", "+7", 7), ("integer", "-0", 0), ("integer", "007", 7), ("integer", '"12"', 12),
    ("integer", "-2147483648", -2147483648), ("tinyint", "127", 127), ("smallint", "-32768", -32768),
    ("bigint", "9223372036854775807", 2 ** 63 - 1),
    ("integer", "", None),
    ("decimal(10,2)", "12.34", Decimal("12.34")), ("decimal(10,2)", "12.340", Decimal("12.34")),
    ("decimal(10,2)", "12", Decimal("12")), ("decimal(10,2)", "+7", Decimal("7")),
    ("decimal(10,2)", ".5", Decimal("0.5")),
    ("decimal(10,2)", "5.", Decimal("5")), ("decimal(10,2)", "-0.00", Decimal("0")),
    ("decimal(10,2)", "00012.50", Decimal("12.5")), ("decimal(10,2)", "1e3", Decimal("1000")),
    ("decimal(10,2)", "1.2345e2", Decimal("123.45")), ("decimal(10,2)", "1200e-2", Decimal("12")),
    ("decimal(10,2)", "12345678.99", Decimal("12345678.99")), ("decimal(5,2)", "999.99", Decimal("999.99")),
    ("decimal(38,0)", "-" + "9" * 38, Decimal("-" + "9" * 38)),
    ("float", "1.5", 1.5), ("float", "0.1", struct.unpack("f", struct.pack("f", 0.1))[0]), ("float", "-2e3", -2000.0),
    ("float", " 1.5", 1.5), ("float", "1.5 ", 1.5), ("float", ".5", 0.5), ("float", "NaN", math.nan),
    ("float", "Inf", math.inf), ("float", "-Inf", -math.inf), ("float", "Infinity", math.inf),
    ("float", "+Infinity", math.inf), ("float", "3.4028235e38", struct.unpack("f", struct.pack("f", 3.4028235e38))[0]),
    ("float", "1e-45", struct.unpack("f", struct.pack("f", 1e-45))[0]), ("float", "0e5", 0.0),
    ("boolean", "true", True), ("boolean", "FALSE", False), ("boolean", "True", True),
    ("date", "2026-01-05", dt.date(2026, 1, 5)), ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("date", "0001-01-01", dt.date(1, 1, 1)), ("date", "9999-12-31", dt.date(9999, 12, 31)),
    ("timestamp_ntz", "2026-01-05 10:00:00.123456", dt.datetime(2026, 1, 5, 10, 0, 0, 123456)),
    ("timestamp_ntz", "2026-01-05 10:00:00.5", dt.datetime(2026, 1, 5, 10, 0, 0, 500000)),
    ("timestamp_ltz", "0001-01-01 00:00:00.0", dt.datetime(1, 1, 1)),
    ("timestamp_ltz", "2026-01-05 10:00:00.000005", dt.datetime(2026, 1, 5, 10, 0, 0, 5)),
    ("varchar(8)", " abc ", " abc "), ("varchar(8)", 'a"b', 'a"b'), ("varchar(8)", '"a,b"', "a,b"),
    ("varchar(8)", '"a""b"', 'a"b'), ("varchar(8)", "NULL", "NULL"), ("varchar(8)", "héllo", "héllo"),
    ("varchar(8)", "12345678", "12345678"), ("char(3)", "abc", "abc"), ("varchar(8)", "", None),
]


def write(folder: Path, type_name: str, rows: list[str], *, values: str | None = None,
          extra_schema: str = "") -> Path:
    """A dataset 't' with columns id (integer) and v (type_name); rows are the CSV's lines after the header."""
    folder.mkdir(parents=True, exist_ok=True)
    declared = f", values: {values}" if values is not None else ""
    (folder / "t").mkdir(exist_ok=True)
    (folder / "t" / "schema.yaml").write_text(
        "name: t\nfile: t.csv\ncolumns:\n  - {name: id, type: integer, role: metric}\n"
        f"  - {{name: v, type: \"{type_name}\", role: dimension{declared}}}\n{extra_schema}")
    (folder / "t" / "t.csv").write_text("id,v\n" + "".join(f"{line}\n" for line in rows))
    return folder / "t" / "t.csv"


def refusal(data: Path) -> str:
    with pytest.raises(ConfigError) as info:
        validate_data(load_dataset("t", data))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def loaded(data: Path) -> list:
    con = duckdb.connect()
    load_into(con, load_dataset("t", data), "t")
    return [row[0] for row in con.execute("SELECT v FROM t ORDER BY id").fetchall()]


@pytest.mark.parametrize("type_name, field", REFUSED, ids=[f"{t}:{v}" for t, v in REFUSED])
def test_a_value_duckdb_would_change_or_spark_refuses_is_refused(tmp_path, type_name, field):
    good = next(v for t, v, value in ACCEPTED if t == type_name and value is not None)
    path = write(tmp_path, type_name, [f"1,{good}", f"2,{field}"])
    message = refusal(tmp_path)
    assert f"{path} does not match its schema: line 3: column 'v' value {field!r} is not a valid {type_name} (" \
        in message, message


@pytest.mark.parametrize("type_name, field", STILL_REFUSED, ids=[f"{t}:{v}" for t, v in STILL_REFUSED])
def test_a_value_neither_engine_reads_is_still_refused_by_line(tmp_path, type_name, field):
    path = write(tmp_path, type_name, [f"1,{field}"])
    assert f"{path} does not match its schema: line 2: column 'v' value {field!r} is not a valid {type_name}" \
        in refusal(tmp_path)


@pytest.mark.parametrize("type_name, field, value", ACCEPTED, ids=[f"{t}:{v}" for t, v, _ in ACCEPTED])
def test_a_value_both_engines_read_alike_is_loaded_unchanged(tmp_path, type_name, field, value):
    write(tmp_path, type_name, [f"1,{field}"])
    (got,) = loaded(tmp_path)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value and type(got) is type(value), (got, value)


def test_a_line_break_inside_a_quoted_field_is_refused_where_it_is(tmp_path):
    # Spark's CSV reader (multiLine off, as for Glue's CSV tables) ends the row at the break.
    path = write(tmp_path, "varchar(8)", ["1,ab", '2,"a', 'b"', "3,c", "4,t"], values=None)
    assert refusal(tmp_path).endswith(f"{path} does not match its schema: line 3: column 'v' value 'a\\nb' holds "
                                      "a line break (Spark's CSV reader, like Glue's, ends the row there)")


def test_lines_are_counted_past_blank_lines_line_breaks_and_rejected_lines(tmp_path):
    path = write(tmp_path, "integer", ["1,1", "", "2,2", "3,1.5", "4,5,6", "5,\"7\"", "6,x"])
    text = path.read_text().replace("5,\"7\"", "5,\"7\n\"")  # a quoted line break: the value is refused too
    path.write_text(text)
    message = refusal(tmp_path)
    assert message.endswith("does not match its schema: line 5: column 'v' value '1.5' is not a valid integer "
                            "(digits with an optional sign, -2147483648 to 2147483647); line 6: 3 fields, expected 2; "
                            "line 7: column 'v' value '7\\n' is not a valid integer (digits with an optional sign, "
                            "-2147483648 to 2147483647); line 9: column 'v' value 'x' is not a valid integer (digits "
                            "with an optional sign, -2147483648 to 2147483647)"), message


def test_at_most_five_problems_in_one_message(tmp_path):
    write(tmp_path, "integer", [f"{i},{i}.5" for i in range(1, 20)])
    message = refusal(tmp_path)
    assert message.count("is not a valid integer") == 5 and "line 2:" in message and "line 6:" in message
    assert "line 7:" not in message


def test_every_problem_of_a_line_and_of_several_columns_in_file_order(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "schema.yaml").write_text(
        "name: t\nfile: t.csv\ncolumns:\n  - {name: k, type: varchar(4), role: join_key}\n"
        "  - {name: n, type: integer, role: metric}\n  - {name: d, type: date, role: dimension}\n")
    (folder / "t.csv").write_text("k,n,d\na,1,2026-01-05\nb,2.5,2026-1-5\nc,3,2026-01-05\n,4,2026-01-05\n")
    message = refusal(tmp_path)
    assert message.endswith("line 3: column 'n' value '2.5' is not a valid integer (digits with an optional sign, "
                            "-2147483648 to 2147483647); line 3: column 'd' value '2026-1-5' is not a valid date "
                            "(yyyy-MM-dd, a date that exists); column 'k' (join_key) is empty in 1 row"), message


# --- declared values (schema.yaml `values`) ----------------------------------

def test_a_value_outside_the_declared_values_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "varchar(16)", ["1,north", "2,south", "3,South"], values='["north", "south"]')
    assert refusal(tmp_path).endswith(f"{path} does not match its schema: line 4: column 'v' value 'South' is not "
                                      "one of its declared values ('north', 'south')")


def test_an_empty_field_needs_null_among_the_declared_values(tmp_path):
    write(tmp_path, "varchar(16)", ["1,north", "2,"], values='["north", "south"]')
    assert refusal(tmp_path).endswith("line 3: column 'v' is empty, and its declared values do not include null")
    write(tmp_path, "varchar(16)", ["1,north", "2,"], values='["north", "south", null]')
    assert loaded(tmp_path) == ["north", None]


def test_declared_numbers_and_booleans_are_compared_as_values(tmp_path):
    write(tmp_path, "integer", ["1,3", "2,+3", "3,4"], values="[1, 2, 3]")
    assert refusal(tmp_path).endswith("line 4: column 'v' value '4' is not one of its declared values (1, 2, 3)")
    write(tmp_path, "boolean", ["1,true", "2,TRUE"], values="[true]")
    assert loaded(tmp_path) == [True, True]
    write(tmp_path, "decimal(5,2)", ["1,1.50", "2,1.5", "3,2.25"], values="[1.5, 2.5]")
    assert refusal(tmp_path).endswith("line 4: column 'v' value '2.25' is not one of its declared values (1.5, 2.5)")


def test_many_declared_values_are_shortened_in_the_message(tmp_path):
    write(tmp_path, "integer", ["1,99"], values=str(list(range(20))))
    assert refusal(tmp_path).endswith("value '99' is not one of its declared values (0, 1, 2, 3, 4, 5, 6, 7, ...)")


def test_the_shipped_data_holds_only_declared_values():
    assert validate_data(load_dataset("retail_purchases")) == 3000
    assert validate_data(load_dataset("media_engagement")) == 2500


# --- Parquet ------------------------------------------------------------------

PARQUET = [  # (schema type, arrow column, message after "row 2: column 'v' value ")
    ("integer", pa.array([1.0, 1.5], pa.float64()), "1.5 is not a valid integer (it would become 2)"),
    ("integer", pa.array([1, 2 ** 40], pa.int64()), "1099511627776 is not a valid integer (it is out of its range)"),
    ("integer", pa.array([Decimal("12.00"), Decimal("12.50")], pa.decimal128(6, 2)),
     "12.50 is not a valid integer (it would become 13)"),
    ("integer", pa.array(["1", "1.5"]), "'1.5' is not a valid integer (digits with an optional sign"),
    ("tinyint", pa.array([1, 300], pa.int32()), "300 is not a valid tinyint (it is out of its range)"),
    ("decimal(10,2)", pa.array([Decimal("12.3400"), Decimal("12.3456")], pa.decimal128(12, 4)),
     "12.3456 is not a valid decimal(10,2) (it would become 12.35)"),
    ("decimal(10,2)", pa.array([12.34, 12.345]), "12.345 is not a valid decimal(10,2) (it would become 12.35)"),
    ("float", pa.array([0.1, 1e39]), "1e+39 is not a valid float (it is out of its range)"),
    ("float", pa.array([0.1, 1e-50]), "1e-50 is not a valid float (it would become 0.0)"),
    ("date", pa.array([dt.datetime(2026, 1, 5), dt.datetime(2026, 1, 5, 10)], pa.timestamp("us")),
     "2026-01-05 10:00:00 is not a valid date (it would become 2026-01-05)"),
    ("boolean", pa.array([1, 2], pa.int32()), "2 is not a valid boolean (it would become true)"),
]


def write_parquet(folder: Path, type_name: str, column: pa.Array) -> Path:
    (folder / "t").mkdir(parents=True, exist_ok=True)
    (folder / "t" / "schema.yaml").write_text(
        "name: t\nfile: t.parquet\ncolumns:\n  - {name: id, type: integer, role: metric}\n"
        f"  - {{name: v, type: \"{type_name}\", role: dimension}}\n")
    path = folder / "t" / "t.parquet"
    pq.write_table(pa.table({"id": pa.array(range(1, len(column) + 1), pa.int32()), "v": column}), path)
    return path


@pytest.mark.parametrize("type_name, column, message", PARQUET, ids=[f"{t}:{c.type}" for t, c, _ in PARQUET])
def test_a_lossy_parquet_cast_is_refused_with_its_row(tmp_path, type_name, column, message):
    path = write_parquet(tmp_path, type_name, column)
    assert f"{path} does not match its schema: row 2: column 'v' value {message}" in refusal(tmp_path)


def test_lossless_parquet_casts_load(tmp_path):
    write_parquet(tmp_path, "integer", pa.array([1.0, -2.0, None]))
    assert loaded(tmp_path) == [1, -2, None]
    write_parquet(tmp_path, "decimal(10,2)", pa.array([Decimal("12.3400")], pa.decimal128(12, 4)))
    assert loaded(tmp_path) == [Decimal("12.34")]
    write_parquet(tmp_path, "float", pa.array([0.1, math.inf]))
    assert loaded(tmp_path)[1] == math.inf
    write_parquet(tmp_path, "timestamp_ntz", pa.array([dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc)],
                                                      pa.timestamp("us", tz="UTC")))
    assert loaded(tmp_path) == [dt.datetime(2026, 1, 5, 10)]  # in UTC, Spark's session time zone


# --- Spark: what the check accepts, Spark's reader reads as the same value -----

try:
    import pyspark  # noqa: F401

    HAVE_SPARK = True
except ImportError:
    HAVE_SPARK = False


@pytest.mark.skipif(not HAVE_SPARK and os.environ.get("REQUIRE_SPARK") != "1",
                    reason="pyspark is not installed (venv/bin/pip install -r requirements-spark.txt)")
def test_spark_reads_every_accepted_value_alike_and_refuses_none(tmp_path, spark):
    """Spark's CSV reader with the declared schema, PERMISSIVE with a corrupt-record column: a row it
    marks corrupt is one FAILFAST stops at (the time parser policy CORRECTED makes the few values it
    would stop at with an upgrade error plain malformed records instead)."""
    from localroom.spark import CSV_TIMESTAMP_PATTERN, _spark_type
    from model.datasets import column_type

    # The worker's shared session (tests/conftest.py), with the time parser policy this test reads under.
    spark.conf.set("spark.sql.legacy.timeParserPolicy", "CORRECTED")
    try:
        # What the check does with each value is asserted by the tests above: every ACCEPTED value is
        # loaded as its third element, every other one refused. Here: what Spark makes of the same text.
        cases: dict[str, list[tuple[str, bool, object]]] = {}
        for type_name, field in REFUSED + STILL_REFUSED:
            cases.setdefault(type_name, []).append((field, False, None))
        for type_name, field, value in ACCEPTED:
            cases.setdefault(type_name, []).append((field, True, value))
        for number, (type_name, fields) in enumerate(sorted(cases.items())):
            folder = tmp_path / str(number)
            write(folder, type_name, [f"{i},{field}" for i, (field, _, _) in enumerate(fields)])
            kind = _spark_type(column_type(type_name)[0])
            rows = (spark.read.schema(f"id INT, v {kind}, _corrupt STRING")
                    .options(header="true", sep=",", quote='"', escape='"', mode="PERMISSIVE",
                             columnNameOfCorruptRecord="_corrupt", timestampFormat=CSV_TIMESTAMP_PATTERN,
                             dateFormat="yyyy-MM-dd")
                    .csv((folder / "t" / "t.csv").resolve().as_uri())
                    .selectExpr("id", "NULL AS v" if kind == "TIMESTAMP" else "v", "CAST(v AS STRING) AS text",
                                "_corrupt").collect())
            spark_read = {r.id: r for r in rows if r.id is not None and r._corrupt is None}
            for i, (field, accepted, mine) in enumerate(fields):
                if not accepted:
                    continue
                assert i in spark_read, f"Spark refuses {type_name} {field!r}, which the check accepts"
                theirs = spark_read[i]
                if kind == "TIMESTAMP":  # Spark's text in its session time zone (UTC), DuckDB's naive value
                    text = None if mine is None else str(mine)
                    assert theirs.text == (text.rstrip("0").rstrip(".") if text and "." in text else text), field
                elif isinstance(mine, float):
                    assert struct.pack("f", mine) == struct.pack("f", theirs.v) or (math.isnan(mine) and
                                                                                   math.isnan(theirs.v)), field
                else:
                    assert theirs.v == mine, (type_name, field, theirs.v, mine)
    finally:
        spark.conf.unset("spark.sql.legacy.timeParserPolicy")

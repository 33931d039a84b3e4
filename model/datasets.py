"""Declared dataset schemas (data/<dataset>/schema.yaml) and CSV validation.

A dataset is validated before any resource is declared: a CSV whose header or
values do not match the declared schema would otherwise deploy fine and only
fail (or, worse, silently return wrong aggregates) when a partner queries it.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from model.errors import ConfigError
from model.stack_models import Block, file_problems
from model.stackfiles import ROOT, read_yaml

DATA_DIR = ROOT / "data"

# A column's role decides what the analysis rules may do with it.
JOIN_KEY = "join_key"  # shared pseudonymous key: join only, never output
USER_IDENTIFIER = "user_identifier"  # identifies a person: never output
DIMENSION = "dimension"  # may be grouped by and shown
METRIC = "metric"  # may only be aggregated
ROLES = (JOIN_KEY, USER_IDENTIFIER, DIMENSION, METRIC)
IDENTIFIER_ROLES = (JOIN_KEY, USER_IDENTIFIER)
# What a column is to Clean Rooms ML when the dataset is training data (CloudFormation
# AWS::CleanRoomsML::TrainingDataset ColumnType); only columns that say are in the training schema.
ML_TYPES = ("USER_ID", "ITEM_ID", "TIMESTAMP", "CATEGORICAL_FEATURE", "NUMERICAL_FEATURE")

# Column types: the Spark SQL types the Clean Rooms User Guide lists for the
# Spark engine ("Data formats for AWS Clean Rooms": ARRAY, BIGINT, BOOLEAN, BYTE,
# CHAR, DATE, DECIMAL, FLOAT, INTEGER, INTERVAL, LONG, MAP, REAL, SHORT, SMALLINT,
# STRUCT, TIME, TIMESTAMP_LTZ, TIMESTAMP_NTZ, TINYINT, VARCHAR), less the nested
# and interval types a CSV column cannot hold. Each maps to the Hive type name
# the Glue table declares (which Spark reads) and the type DuckDB reads it as.
# STRING and DOUBLE are not on that list: use varchar(n) and decimal(p,s) or float.
_SIMPLE_TYPES = {  # schema type -> (Glue/Hive type, DuckDB type)
    "bigint": ("bigint", "BIGINT"), "long": ("bigint", "BIGINT"),
    "integer": ("int", "INTEGER"),
    "smallint": ("smallint", "SMALLINT"), "short": ("smallint", "SMALLINT"),
    "tinyint": ("tinyint", "TINYINT"), "byte": ("tinyint", "TINYINT"),
    "boolean": ("boolean", "BOOLEAN"),
    "float": ("float", "FLOAT"), "real": ("float", "FLOAT"),
    "date": ("date", "DATE"),
    "timestamp_ntz": ("timestamp", "TIMESTAMP"), "timestamp_ltz": ("timestamp", "TIMESTAMP"),
}
_SIZED = re.compile(r"^(varchar|char)\((\d+)\)$|^decimal\((\d+),\s*(\d+)\)$")
TYPE_NAMES = [*_SIMPLE_TYPES, "decimal(p,s)", "varchar(n)", "char(n)"]
# A timestamp in a text file must look like this (User Guide, data formats:
# "yyyy-MM-dd HH:mm:ss.SSSSSS"); the data check reads CSV timestamps with it.
CSV_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def column_type(text: str) -> tuple[str, str, int | None]:
    """(Glue type, DuckDB type, max length for varchar/char) of a schema type; ValueError with the list."""
    name = str(text).strip().lower()
    if name in _SIMPLE_TYPES:
        return (*_SIMPLE_TYPES[name], None)
    sized = _SIZED.match(name)
    if sized and sized.group(1):
        length = int(sized.group(2))
        if not 1 <= length <= (65535 if sized.group(1) == "varchar" else 255):
            raise ValueError(f"{name!r}: the length must be 1-{65535 if sized.group(1) == 'varchar' else 255}")
        return name.replace(" ", ""), "VARCHAR", length
    if sized:
        precision, scale = int(sized.group(3)), int(sized.group(4))
        if not (1 <= precision <= 38 and 0 <= scale <= precision):
            raise ValueError(f"{name!r}: decimal(p,s) needs 1 <= p <= 38 and 0 <= s <= p")
        return f"decimal({precision},{scale})", f"DECIMAL({precision},{scale})", None
    hint = {"string": " (text: varchar(n))", "double": " (decimal(p,s) or float)", "int": " (integer)",
            "timestamp": " (timestamp_ntz)"}.get(name, "")
    raise ValueError(f"got {name!r}{hint}; Clean Rooms documents these column types for the Spark engine: "
                     f"{', '.join(TYPE_NAMES)}")


_INTEGER_RANGES = {"tinyint": 7, "byte": 7, "smallint": 15, "short": 15, "integer": 31, "bigint": 63, "long": 63}
NUMERIC_TYPES = (*_INTEGER_RANGES, "float", "real", "decimal(p,s)")


def numeric_range(text: str) -> tuple[float, float] | None:
    """The values a numeric schema type can hold ([-2^(b-1), 2^(b-1)-1], or +-(10^(p-s) - 10^-s)); None otherwise."""
    name = str(text).strip().lower().replace(" ", "")
    if name in _INTEGER_RANGES:
        bits = _INTEGER_RANGES[name]
        return float(-(2 ** bits)), float(2 ** bits - 1)
    if name in ("float", "real"):
        return -3.4028234663852886e38, 3.4028234663852886e38
    sized = _SIZED.match(name)
    if sized and sized.group(3):
        precision, scale = int(sized.group(3)), int(sized.group(4))
        top = float(10 ** (precision - scale) - 10.0 ** -scale)
        return -top, top
    return None


def type_bounds(text: str) -> tuple[float, float] | None:
    """A column's default clamping bounds: its type's range where that is small (decimal, tinyint, smallint)."""
    name = str(text).strip().lower().replace(" ", "")
    if name in ("tinyint", "byte", "smallint", "short") or name.startswith("decimal("):
        return numeric_range(name)
    return None


FORMATS = {".csv": "csv", ".parquet": "parquet"}

# Clean Rooms column names: lowercase, digits, underscore (the AllowedColumns
# pattern of AWS::CleanRooms::ConfiguredTable in the CloudFormation schema).
_COLUMN_NAME = re.compile(r"^[a-z0-9_]{1,127}$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    role: str
    bounds: tuple[float, float] | None = None
    """Declared [low, high] of a numeric column (schema.yaml ``bounds``); see ``clamp_bounds``."""
    values: tuple | None = None
    """Declared domain of a dimension (schema.yaml ``values``): every value the column can hold."""
    ml_type: str | None = None
    """Its Clean Rooms ML column type when the dataset is training data (schema.yaml ``mlType``)."""

    @property
    def clamp_bounds(self) -> tuple[float, float] | None:
        """The range differential privacy clamps this column to: declared, else its type's, else None.

        Only types whose range is small enough to be a useful bound have a default
        (decimal(p,s), tinyint, smallint); integer, bigint and float need ``bounds``.
        """
        return self.bounds if self.bounds is not None else type_bounds(self.type)

    @property
    def glue_type(self) -> str:
        return column_type(self.type)[0]

    @property
    def duckdb_type(self) -> str:
        return column_type(self.type)[1]

    @property
    def max_length(self) -> int | None:
        return column_type(self.type)[2]


# A partitioned dataset (schema.yaml ``partitionedBy``) is a folder of Parquet files in Hive partitions of its
# timestamp column's hour, <column>_hour=yyyy-MM-dd-HH/: the layout and the value an Iceberg table partitioned by
# hour(<column>) writes (Iceberg's hour transform shows an hour as yyyy-MM-dd-HH).
PARTITION_FORMAT = "%Y-%m-%d-%H"
_PARTITION_VALUE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    directory: Path
    file: str
    """The data file beside schema.yaml, or a folder (``events/``) of hourly partitions (``partitioned_by``)."""
    columns: tuple[Column, ...]
    partitioned_by: str | None = None
    """The timestamp column whose hours partition the data folder (schema.yaml ``partitionedBy``)."""
    retention: str | None = None
    """How long the producer keeps each row (schema.yaml ``retention``, 48h, 30d): no window may reach further
    back. None: rows are kept (a streamed Iceberg table keeps every row Firehose wrote)."""

    @property
    def data_path(self) -> Path:
        return self.directory / self.file.rstrip("/")

    @property
    def partition_key(self) -> str | None:
        """The Hive partition key of the data folder's subfolders, ``<partitioned_by>_hour``."""
        return f"{self.partitioned_by}_hour" if self.partitioned_by else None

    @property
    def format(self) -> str:
        """'csv' or 'parquet', from the data file's extension ('parquet' for a partitioned folder)."""
        return "parquet" if self.partitioned_by else FORMATS[Path(self.file).suffix.lower()]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def names_with_role(self, *roles: str) -> list[str]:
        return [c.name for c in self.columns if c.role in roles]


def load_dataset(name: str, data_dir: Path = DATA_DIR) -> Dataset:
    """Read and check data/<name>/schema.yaml (not the data file; see validate_data)."""
    schema_path = data_dir / name / "schema.yaml"
    where = f"dataset '{name}' ({schema_path})"
    if not schema_path.is_file():
        available = sorted(p.parent.name for p in data_dir.glob("*/schema.yaml"))
        raise ConfigError("dataset", f"no schema file for {where}; datasets available: {available}")
    try:
        raw = read_yaml(schema_path) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{schema_path}:{mark.line + 1}" if mark else str(schema_path)
        raise ConfigError("dataset", f"{where} is not valid YAML: {getattr(exc, 'problem', None) or 'syntax error'}") from None
    try:
        schema = SchemaFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("dataset", f"{schema_path}: {file_problems(exc, SchemaFile)}") from None
    columns = [Column(c.name, c.type, c.role, tuple(c.bounds) if c.bounds is not None else None,
                      tuple(c.values) if c.values is not None else None, c.ml_type) for c in schema.columns]
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError("dataset", f"{schema_path}: duplicate columns {duplicates}")
    if schema.name not in (None, name):
        raise ConfigError("dataset", f"{schema_path}: name '{schema.name}' must be the folder's name '{name}' "
                          "(it is the table's name in every template)")
    file = schema.file or f"{name}.csv"
    if schema.partitioned_by is not None:
        by = next((c for c in columns if c.name == schema.partitioned_by), None)
        if by is None or by.duckdb_type != "TIMESTAMP":
            timestamps = [c.name for c in columns if c.duckdb_type == "TIMESTAMP"]
            raise ConfigError("dataset", f"{schema_path}: partitionedBy '{schema.partitioned_by}' must be a "
                              f"timestamp_ntz column of the dataset; its timestamp columns: {timestamps or 'none'}")
        key = f"{by.name}_hour"
        if key in names:
            raise ConfigError("dataset", f"{schema_path}: column '{key}' is the partition key of partitionedBy "
                              f"'{by.name}' (its folders are {key}=yyyy-MM-dd-HH); rename the column")
        folder = file.rstrip("/")
        if not file.endswith("/") or not folder or Path(folder).name != folder or folder in (".", ".."):
            raise ConfigError("dataset", f"{schema_path}: file '{file}' must name a folder beside schema.yaml, "
                              f"ending in '/' (for example 'events/'): partitionedBy makes the data a folder of "
                              f"Parquet files under {key}=yyyy-MM-dd-HH/")
    elif Path(file).suffix.lower() not in FORMATS or Path(file).name != file:
        hint = "; a folder of hourly Parquet partitions ('events/') needs partitionedBy" if file.endswith("/") else ""
        raise ConfigError("dataset", f"{schema_path}: file '{file}' must be a file name beside schema.yaml ending "
                          f"in one of {sorted(FORMATS)}{hint}")
    return Dataset(name=name, description=schema.description, directory=schema_path.parent, file=file,
                   columns=tuple(columns), partitioned_by=schema.partitioned_by, retention=schema.retention)


def _column_name(value):
    if not isinstance(value, str) or not _COLUMN_NAME.match(value):
        raise PydanticCustomError("config", f"{value!r} must be lowercase letters, digits and '_' (1-127; "
                                  "Clean Rooms allows only lowercase column names)")
    return value


def _type(value):
    try:
        column_type(str(value))
    except ValueError as exc:
        raise PydanticCustomError("config", str(exc)) from None
    return str(value).strip().lower().replace(" ", "")


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        raise PydanticCustomError("config", f"bounds must be two finite numbers [low, high], got {value!r}")
    return float(value)


def _retention(value):
    from model import windows

    if windows.parse_length(value, maximum=None) is None:
        raise PydanticCustomError("config", f"retention must be a length such as 48h or 30d (minutes, hours or "
                                  f"days: 1 to 99999 of them), got {value!r}")
    return value


MAX_DOMAIN = 10_000  # declared values per column: group keys are their cross product


class SchemaColumn(Block):
    name: Annotated[str, BeforeValidator(_column_name)]
    type: Annotated[str, BeforeValidator(_type)]
    role: Literal[ROLES]
    # [low, high]: what differential privacy clamps the column to (docs/local-clean-room.md,
    # "Differential privacy"). Numeric columns only.
    bounds: Annotated[list[Annotated[float, BeforeValidator(_number)]], Field(min_length=2, max_length=2)] | None = None
    # Every value a dimension can hold (null for an empty field): the group keys differential
    # privacy may release without selecting them from the data.
    values: Annotated[list[Any], Field(min_length=1, max_length=MAX_DOMAIN)] | None = None
    # Its Clean Rooms ML column type, for a dataset used as training data (docs/clean-rooms-ml.md).
    ml_type: Literal[ML_TYPES] | None = None

    @model_validator(mode="after")
    def _declarations(self):
        if self.bounds is not None:
            allowed = numeric_range(self.type)
            if allowed is None:
                raise PydanticCustomError("config", f"column '{self.name}': bounds apply to numeric columns "
                                          f"({', '.join(NUMERIC_TYPES)}), not {self.type}")
            low, high = self.bounds
            if low > high:
                raise PydanticCustomError("config", f"column '{self.name}': bounds [{low:g}, {high:g}] must be "
                                          "[low, high] with low <= high")
            if low < allowed[0] or high > allowed[1]:
                raise PydanticCustomError("config", f"column '{self.name}': bounds [{low:g}, {high:g}] exceed what "
                                          f"{self.type} holds ([{allowed[0]:g}, {allowed[1]:g}])")
        if self.values is not None:
            if self.role in IDENTIFIER_ROLES:
                raise PydanticCustomError("config", f"column '{self.name}': values cannot be declared for a "
                                          f"{self.role} column (its values identify people)")
            problem = _domain_problem(self.type, self.values)
            if problem:
                raise PydanticCustomError("config", f"column '{self.name}': values {problem}")
        return self


class SchemaFile(Block):
    """data/<dataset>/schema.yaml."""

    name: str | None = None
    description: str = ""
    file: str | None = None
    # ConfiguredTable.allowedColumns holds 1 to 100 columns (CloudFormation schema).
    columns: Annotated[list[SchemaColumn], Field(min_length=1, max_length=100)]
    # A timestamp_ntz column: the data (file: a folder, 'events/') is Parquet in hourly Hive partitions of it,
    # <column>_hour=yyyy-MM-dd-HH/, as scripts/produce_events.py writes it (docs/streaming.md).
    partitioned_by: Annotated[str, BeforeValidator(_column_name)] | None = None
    # How long the producer keeps each row (15m, 48h, 30d): a window reaching further back is refused.
    retention: Annotated[str, BeforeValidator(_retention)] | None = None


def _domain_problem(type_name: str, values: list) -> str | None:
    """Why ``values`` is not a domain of ``type_name`` (each a value of the type, none twice), or None."""
    seen = set()
    duckdb_type, length = column_type(type_name)[1:]
    for value in values:
        if value is None:
            key = None
        elif duckdb_type == "VARCHAR":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                return f"must be text for {type_name}, got {value!r}"
            key = str(value)
            if length is not None and len(key) > length:
                return f"{key!r} is longer than {type_name}"
        elif duckdb_type == "BOOLEAN":
            if not isinstance(value, bool):
                return f"must be true or false for boolean, got {value!r}"
            key = value
        elif numeric_range(type_name) is not None:
            low, high = numeric_range(type_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                return f"must be numbers a {type_name} holds, got {value!r}"
            if duckdb_type in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT") and value != int(value):
                return f"must be whole numbers for {type_name}, got {value!r}"
            key = value
        else:
            return f"cannot be declared for a {type_name} column (text, boolean and numeric columns only)"
        if key in seen:
            return f"lists {key!r} twice"
        seen.add(key)
    return None


def domain_values(column: Column) -> tuple | None:
    """The column's declared domain as typed values (text for varchar/char), or None without one."""
    if column.values is None:
        return None
    if column.duckdb_type == "VARCHAR":
        return tuple(None if v is None else str(v) for v in column.values)
    return tuple(column.values)


def validate_data(dataset: Dataset, max_errors: int = 5) -> int:
    """Check the data file against the schema; return the row count (see load_into)."""
    import duckdb

    with duckdb.connect() as con:
        return load_into(con, dataset, "__check", max_errors)


# --- Reading a data file as strictly as Spark's reader ------------------------
#
# Clean Rooms reads a CSV with Spark's CSV reader and the Glue table's types (as
# localroom/spark.py does: FAILFAST). DuckDB's own typed reader is more lenient
# and silently changes some values ('1.5' in an integer column becomes 2,
# '0x1F' 31, '1_000' 1000, 't' true, '2026-1-5' a date, '12.345' in a
# decimal(10,2) 12.35, '1e39' in a float infinity). So every field is read as
# text and must have a form both engines read as the same, unchanged value
# (docs/local-clean-room.md has the table of what each engine does). The checks
# are SQL expressions evaluated by DuckDB in the same pass that casts the
# values; only when one fails is the file read again to find the lines.

_NUMBER = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
# What Spark's CSV reader reads as NaN or an infinity (its nanValue, positiveInf, negativeInf
# defaults, and Java's Float.parseFloat); DuckDB reads these too, case-insensitively.
_FLOAT_SPECIALS = ("NaN", "Inf", "-Inf", "Infinity", "+Infinity", "-Infinity")
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")


@dataclass(frozen=True)
class _Check:
    """How one column is read: its raw value, its typed value and what each must satisfy.

    ``conditions`` are (kind, SQL) pairs over ``raw`` and ``typed`` that must be
    true for a non-null value (see _problem for each kind's message); ``on_null``
    is None when a null is fine, 'empty' for an identifier, 'null' for a domain
    without null.
    """

    index: int
    column: Column
    raw: str
    typed: str
    conditions: tuple[tuple[str, str], ...]
    on_null: str | None
    empty_text: bool  # '' counts as empty (text identifiers)
    fast: tuple[str, ...]  # the conditions' SQL the loading pass needs (the others only name a problem)


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _decimal_exact(v: str, scale: int) -> str:
    """SQL: the number text ``v`` (matching _NUMBER) has no more than ``scale`` digits after the point."""
    plain = f"(strpos({v}, '.') = 0 OR length(rtrim({v}, '0')) - strpos({v}, '.') <= {scale})"
    # With an exponent: mantissa m, exponent e; m's digits without trailing zeros times 10^(e - f + z).
    m = f"regexp_extract({v}, '^[+-]?([0-9.]+)', 1)"
    e = f"TRY_CAST(regexp_extract({v}, '[eE]([+-]?[0-9]+)$', 1) AS BIGINT)"
    digits = f"replace({m}, '.', '')"
    fraction = f"(CASE WHEN strpos({m}, '.') = 0 THEN 0 ELSE length({m}) - strpos({m}, '.') END)"
    zeros = f"(length({digits}) - length(rtrim({digits}, '0')))"
    scientific = f"(rtrim({digits}, '0') = '' OR {fraction} - {e} - {zeros} <= {scale})"
    return f"(CASE WHEN strpos(lower({v}), 'e') = 0 THEN {plain} ELSE {scientific} END)"


def _text_conditions(column: Column, v: str, x: str) -> list[tuple[str, str]]:
    """The conditions a non-null text value ``v`` (typed as ``x``) must meet to be read as Spark reads it."""
    kind = column.duckdb_type
    if kind in _INTEGER_TYPES:
        # The common case first (DuckDB's own text of the value); then what Java's parseInt takes.
        return [("type", f"(CASE WHEN CAST({x} AS VARCHAR) = {v} THEN true "
                         f"ELSE {x} IS NOT NULL AND regexp_full_match({v}, '[+-]?[0-9]+') END)")]
    if kind.startswith("DECIMAL"):
        scale = int(kind[kind.index(",") + 1:-1])
        return [("type", f"(CASE WHEN CAST({x} AS VARCHAR) = {v} THEN true ELSE {x} IS NOT NULL AND "
                         f"regexp_full_match({v}, '{_NUMBER}') AND {_decimal_exact(v, scale)} END)")]
    if kind == "FLOAT":
        specials = ", ".join(_literal(s) for s in _FLOAT_SPECIALS)
        # Overflow to an infinity, or a non-zero number that underflows to 0, would change the value.
        return [("type", f"({x} IS NOT NULL AND ({v} IN ({specials}) OR (regexp_full_match({v}, "
                         f"'[ \\t]*{_NUMBER}[ \\t]*') AND isfinite({x}) AND "
                         f"({x} <> 0 OR NOT regexp_matches({v}, '^[^eE]*[1-9]')))))")]
    if kind == "BOOLEAN":
        return [("type", f"lower({v}) IN ('true', 'false')")]
    if kind == "DATE":
        return [("type", f"({x} IS NOT NULL AND regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'))")]
    if kind == "TIMESTAMP":
        return [("type", f"({x} IS NOT NULL AND regexp_full_match({v}, "
                         "'[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{1,6}'))")]
    return []  # VARCHAR: see _checks


def _text_cast(column: Column, v: str) -> str:
    kind = column.duckdb_type
    if kind == "VARCHAR":
        return v
    if kind == "TIMESTAMP":
        return f"try_strptime({v}, '{CSV_TIMESTAMP_FORMAT}')"
    return f"TRY_CAST({v} AS {kind})"


def _lossless(column: Column, source: str, v: str) -> tuple[str, list[tuple[str, str]]]:
    """(typed value, conditions) of a Parquet value of DuckDB type ``source`` cast to the column's type."""
    target = column.duckdb_type
    if source.upper() == target.upper():
        return v, []
    if source == "VARCHAR":
        x = _text_cast(column, v)
        return x, _text_conditions(column, v, x)
    if target == "VARCHAR":
        return f"CAST({v} AS VARCHAR)", []
    if source == "TIMESTAMP WITH TIME ZONE" and target == "TIMESTAMP":
        return f"timezone('UTC', {v})", []  # Spark's session time zone is UTC (localroom/spark.py)
    x = f"TRY_CAST({v} AS {target})"
    if target == "FLOAT" and source == "DOUBLE":  # a float keeps fewer digits: only a change of kind is a loss
        return x, [("lossy", f"({x} IS NOT NULL AND isnan({x}) = isnan({v}) AND isinf({x}) = isinf({v}) "
                             f"AND ({x} = 0) = ({v} = 0))")]
    return x, [("lossy", f"({x} IS NOT NULL AND CAST({x} AS {source}) = {v})")]


def _checks(dataset: Dataset, sources: dict[str, str] | None) -> list[_Check]:
    """Each column's check: from text (CSV, ``sources`` None) or from the Parquet file's DuckDB types."""
    checks = []
    for index, column in enumerate(dataset.columns):
        v, x = f"__v{index}", f"__x{index}"
        if sources is None:
            typed, conditions = _text_cast(column, v), _text_conditions(column, v, x)
        else:
            typed, conditions = _lossless(column, sources[column.name], v)
        domain = domain_values(column)
        if column.duckdb_type == "VARCHAR":
            if sources is None and (domain is None or any("\n" in d or "\r" in d for d in domain if d)):
                # Spark's CSV reader (multiLine off, as Glue's CSV tables) ends the row at a line break.
                conditions.append(("newline", f"(strpos({x}, chr(10)) = 0 AND strpos({x}, chr(13)) = 0)"))
            conditions.append(("length", f"length({x}) <= {column.max_length}"))
        implied = set()  # declared values are never longer than the type (SchemaColumn): IN implies the length
        if column.duckdb_type == "VARCHAR" and domain is not None and any(d is not None for d in domain):
            implied.add("length")
        if domain is not None and any(d is not None for d in domain):
            if column.duckdb_type == "VARCHAR":
                members = ", ".join(_literal(d) for d in domain if d is not None)
            else:
                members = ", ".join(f"CAST({_literal(str(d).lower() if isinstance(d, bool) else repr(d))} AS "
                                    f"{column.duckdb_type})" for d in domain if d is not None)
            conditions.append(("values", f"{x} IN ({members})"))
        on_null = ("empty" if column.role in IDENTIFIER_ROLES else
                   "null" if domain is not None and None not in domain else None)
        # DuckDB's CSV reader reads an empty field, quoted or not, as null: '' only comes from Parquet.
        empty_text = column.role in IDENTIFIER_ROLES and column.duckdb_type == "VARCHAR" and sources is not None
        checks.append(_Check(index, column, v, typed, tuple(conditions), on_null, empty_text,
                             tuple(sql for kind, sql in conditions if kind not in implied)))
    return checks


def _strict_select(checks: list[_Check], source: str) -> str:
    """SELECT of the typed columns from ``source`` (raw columns __v<i>); error() at the first bad value."""
    inner = ", ".join(f"{c.raw}, {c.typed} AS __x{c.index}" for c in checks)
    outer = []
    for c in checks:
        fail = f"error({_literal('bad value in column ' + c.column.name)})"
        x = f"__x{c.index}"
        passes = [*c.fast, *([f"{x} <> ''"] if c.empty_text else [])]
        # No condition holds for a null (each is null or false then): a null passes only where allowed,
        # and the common case, a valid value, costs one test.
        if not passes:
            value = x if c.on_null is None else f"CASE WHEN {c.raw} IS NOT NULL THEN {x} ELSE {fail} END"
        else:
            allowed = f" WHEN {c.raw} IS NULL THEN NULL" if c.on_null is None else ""
            value = f"CASE WHEN {' AND '.join(passes)} THEN {x}{allowed} ELSE {fail} END"
        outer.append(f"{value} AS {_quote(c.column.name)}")
    return f"SELECT {', '.join(outer)} FROM (SELECT {inner} FROM {source})"


def _csv_reader(path: Path, dataset: Dataset, rejects: bool) -> str:
    columns = ", ".join(f"{_quote(c.name)}: 'VARCHAR'" for c in dataset.columns)
    store = (", store_rejects = true, rejects_table = '__rejects', rejects_scan = '__reject_scans'"
             if rejects else "")
    renamed = ", ".join(f"{_quote(c.name)} AS __v{i}" for i, c in enumerate(dataset.columns))
    return (f"(SELECT {renamed} FROM read_csv({_literal(str(path))}, header = true, auto_detect = false, "
            f"delim = ',', quote = '\"', escape = '\"', columns = {{{columns}}}{store}))")


def load_into(con, dataset: Dataset, table: str, max_errors: int = 5, catalog: str | None = None) -> int:
    """Read the dataset's file into DuckDB table ``table`` with its declared types.

    DuckDB does the work (no Python loop over rows, so any size works): every
    value must be one Spark's reader reads as the same value DuckDB does, with
    nothing rounded or cut (see the table in docs/local-clean-room.md); a line
    with too few or too many fields, an empty identifier, a value outside the
    column's declared ``values``, a header or Parquet column list that differs
    from the schema are refused too, up to ``max_errors`` problems in one
    message naming the file, line (CSV) or row (Parquet), column and value.
    ``catalog`` names an attached database to create the table in (localroom/cache.py).
    """
    path = dataset.data_path
    target = f"{_quote(catalog)}.{_quote(table)}" if catalog else _quote(table)
    if dataset.partitioned_by:
        return _load_partitioned(con, dataset, target, max_errors)
    if not path.is_file():
        raise ConfigError("dataset", f"{path}: data file named by {dataset.directory / 'schema.yaml'} does not exist")
    names = dataset.column_names
    if dataset.format == "csv":
        header = _csv_header(path)
        if header != names:
            raise ConfigError("dataset", f"{path}: header {header} does not match the declared "
                              f"columns {names} in schema.yaml")
        checks = _checks(dataset, None)
        source = _csv_reader(path, dataset, rejects=True)
    else:
        found = [r[0] for r in _run(con, "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL",
                                    [str(path)])]
        if found != names:
            raise ConfigError("dataset", f"{path}: Parquet columns {found} do not match the declared "
                              f"columns {names} in schema.yaml")
        checks, source = _parquet_checks(con, dataset, path, _literal(str(path)))
    failure = None
    try:
        rows = _run(con, f"CREATE OR REPLACE TABLE {target} AS {_strict_select(checks, source)}")[0][0]
        rejected = dataset.format == "csv" and _run(con, "SELECT count(*) FROM __rejects")[0][0] > 0
    except _duckdb_error() as exc:
        failure, rejected = _first_line(exc), False
    finally:
        if dataset.format == "csv":
            _run(con, "DROP TABLE IF EXISTS __rejects")
            _run(con, "DROP TABLE IF EXISTS __reject_scans")
    if failure is not None or rejected:
        with contextlib.suppress(_duckdb_error()):
            _run(con, f"DROP TABLE IF EXISTS {target}")
        errors = _diagnose(con, dataset, checks, max_errors)
        if not errors:  # no value is wrong: the disk, say; what DuckDB said
            raise DataUnreadable("dataset", f"{path} could not be read: {failure}")
        raise ConfigError("dataset", f"{path} does not match its schema: " + "; ".join(errors[:max_errors]))
    if rows == 0:
        raise ConfigError("dataset", f"{path} has a header but no rows" if dataset.format == "csv"
                          else f"{path} has no rows")
    return rows


def partition_files(dataset: Dataset) -> list[Path]:
    """The Parquet files of a partitioned dataset's folder, in order; ConfigError (one line naming the file) for
    anything else in it. Names starting with '.' or '_' are skipped, as Spark and Hive skip them (_SUCCESS)."""
    folder, key = dataset.data_path, dataset.partition_key
    if not folder.is_dir():
        raise ConfigError("dataset", f"{folder}: data folder named by {dataset.directory / 'schema.yaml'} does not "
                          f"exist (scripts/produce_events.py --local {dataset.directory} writes it)")
    files = []
    for found in sorted(folder.rglob("*")):
        relative = found.relative_to(folder)
        if any(part.startswith((".", "_")) for part in relative.parts) or found.is_dir():
            continue
        partition, _, value = relative.parts[0].partition("=") if len(relative.parts) == 2 else ("", "", "")
        if partition != key or not _PARTITION_VALUE.match(value) or _hour(value) is None or found.suffix != ".parquet":
            raise ConfigError("dataset", f"{found}: not a Parquet file of an hour's partition of {folder} (each file "
                              f"is {key}=yyyy-MM-dd-HH/<name>.parquet, partitionedBy '{dataset.partitioned_by}')")
        files.append(found)
    if not files:
        raise ConfigError("dataset", f"{folder} has no Parquet files (under {key}=yyyy-MM-dd-HH/)")
    return files


def _hour(value: str):
    import datetime as dt

    try:
        return dt.datetime.strptime(value, PARTITION_FORMAT)
    except ValueError:
        return None


def _parquet_list(files: list[Path]) -> str:
    return "[" + ", ".join(_literal(str(f)) for f in files) + "]"


def _load_partitioned(con, dataset: Dataset, target: str, max_errors: int) -> int:
    """load_into for a folder of hourly partitions: every file has the schema's columns with the same types,
    read together (DuckDB's read_parquet over the files, hive_partitioning); each row must lie in its hour."""
    folder, names, key = dataset.data_path, dataset.column_names, dataset.partition_key
    files = partition_files(dataset)
    listed = _parquet_list(files)
    described: dict[str, list] = {}
    for file, name, *kind in _run(con, "SELECT file_name, name, type, converted_type, logical_type, scale, precision "
                                       f"FROM parquet_schema({listed}) WHERE num_children IS NULL"):
        described.setdefault(file, []).append((name, *kind))
    layouts = [tuple(described.get(str(file), [])) for file in files]
    usual = Counter(layouts).most_common(1)[0][0]  # the odd file out is the one named
    for file, columns in zip(files, layouts):
        found = [c[0] for c in columns]
        if found != names:
            raise ConfigError("dataset", f"{file}: Parquet columns {found} do not match the declared columns {names} "
                              f"in schema.yaml")
        if columns != usual:
            other, was = next((c, u) for c, u in zip(columns, usual) if c != u)
            raise ConfigError("dataset", f"{file}: column '{other[0]}' is stored as {_stored(other)}, but as "
                              f"{_stored(was)} in {files[layouts.index(usual)]}: every file of {folder} stores each "
                              "column alike")
    checks, source = _parquet_checks(con, dataset, files[0], f"{listed}, hive_partitioning = false")
    failure = None
    try:
        rows = _run(con, f"CREATE OR REPLACE TABLE {target} AS {_strict_select(checks, source)}")[0][0]
    except _duckdb_error() as exc:
        failure = _first_line(exc)
    if failure is None:
        # Each row in the hour its folder names (Iceberg's hour transform of the column; a null is in none).
        by = next(c for c in checks if c.column.name == dataset.partitioned_by)
        misplaced = _run(con, f"SELECT filename, file_row_number, CAST(__x AS VARCHAR), __p FROM (SELECT filename, "
                              f"file_row_number, {_quote(key)} AS __p, {by.typed} AS __x FROM (SELECT "
                              f"{_quote(by.column.name)} AS {by.raw}, filename, file_row_number, {_quote(key)} FROM "
                              f"read_parquet({listed}, hive_partitioning = true, filename = true, file_row_number = "
                              f"true, hive_types = {{{_literal(key)}: VARCHAR}}))) WHERE strftime(__x, "
                              f"{_literal(PARTITION_FORMAT)}) IS DISTINCT FROM __p ORDER BY filename, "
                              "file_row_number LIMIT 1")
        if misplaced:
            with contextlib.suppress(_duckdb_error()):
                _run(con, f"DROP TABLE IF EXISTS {target}")
            file, row, value, partition = misplaced[0]
            raise ConfigError("dataset", f"{file} row {row + 1}: column '{dataset.partitioned_by}' value "
                              f"{value or 'null'} is not in its folder's hour {key}={partition}")
        if rows == 0:
            raise ConfigError("dataset", f"{folder} has no rows")
        return rows
    with contextlib.suppress(_duckdb_error()):
        _run(con, f"DROP TABLE IF EXISTS {target}")
    errors = _diagnose(con, dataset, checks, max_errors, files)
    if not errors:
        raise DataUnreadable("dataset", f"{folder} could not be read: {failure}")
    raise ConfigError("dataset", f"{folder} does not match its schema: " + "; ".join(errors[:max_errors]))


def _parquet_checks(con, dataset: Dataset, first: Path, reading: str) -> tuple[list[_Check], str]:
    """The columns' checks from the types DuckDB reads ``first`` with, and the source reading ``reading``
    (read_parquet's arguments) as the raw columns __v<i>."""
    types = {r[0]: r[1] for r in _run(con, "DESCRIBE SELECT * FROM read_parquet(?)", [str(first)])}
    renamed = ", ".join(f"{_quote(c.name)} AS __v{i}" for i, c in enumerate(dataset.columns))
    return _checks(dataset, types), f"(SELECT {renamed} FROM read_parquet({reading}))"


def _stored(column: tuple) -> str:
    name, kind, converted, logical, scale, precision = column
    return " ".join(str(x) for x in (kind, logical or converted) if x)


class DataUnreadable(ConfigError):
    """The data file (or the database written to) could not be read or written, though no value is wrong."""


def _duckdb_error():
    import duckdb  # not at import time: the Pulumi program imports this module without needing DuckDB

    return duckdb.Error


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _diagnose(con, dataset: Dataset, checks: list[_Check], max_errors: int,
              files: list[Path] | None = None) -> list[str]:
    """The file's first ``max_errors`` problems, each naming its line (or row), column and value.

    Only run when the strict read failed: the file is read again into a temporary
    table of its raw values, and the same conditions are evaluated per value.
    ``files``: a partitioned dataset's files (each problem names its file, relative to the folder, and row).
    """
    path, csv_file = dataset.data_path, dataset.format == "csv"
    located: dict[int, str] = {}
    try:
        if files is not None:
            renamed = ", ".join(f"{_quote(c.name)} AS __v{i}" for i, c in enumerate(dataset.columns))
            _run(con, f"CREATE OR REPLACE TEMP TABLE __raw AS SELECT {renamed}, filename AS __file, file_row_number "
                      f"AS __frow, row_number() OVER (ORDER BY filename, file_row_number) - 1 AS __row FROM "
                      f"read_parquet({_parquet_list(files)}, hive_partitioning = false, filename = true, "
                      "file_row_number = true)")
            rejects, rejected, row = [], [], "__row"
        elif csv_file:
            _run(con, f"CREATE OR REPLACE TEMP TABLE __raw AS SELECT * FROM {_csv_reader(path, dataset, True)}")
            rejects = _run(con, "SELECT line, column_name, error_type, csv_line FROM __rejects ORDER BY line LIMIT ?",
                           [max_errors])
            rejected = [r[0] for r in _run(con, "SELECT line FROM __rejects ORDER BY line")]
            row = "rowid"
        else:
            renamed = ", ".join(f"{_quote(c.name)} AS __v{i}" for i, c in enumerate(dataset.columns))
            _run(con, f"CREATE OR REPLACE TEMP TABLE __raw AS SELECT {renamed}, file_row_number AS __row "
                      f"FROM read_parquet(?, file_row_number = true)", [str(path)])
            rejects, rejected, row = [], [], "__row"
        problems = []
        for c in checks:
            kinds = [f"WHEN NOT coalesce({sql}, false) THEN {_literal(kind)}" for kind, sql in c.conditions]
            if c.on_null == "null":
                kinds.insert(0, f"WHEN {c.raw} IS NULL THEN 'null'")
            if not kinds:
                continue
            problems.append(f"SELECT __r, {c.index} AS __col, CAST({c.raw} AS VARCHAR) AS __text, "
                            f"CAST(__x{c.index} AS VARCHAR) AS __value, CASE WHEN {c.raw} IS NULL AND "
                            f"{_literal(c.on_null or '')} <> 'null' THEN NULL {' '.join(kinds)} END AS __kind "
                            f"FROM (SELECT {row} AS __r, *, {c.typed} AS __x{c.index} FROM __raw)")
        found = _run(con, f"SELECT * FROM ({' UNION ALL '.join(problems)}) WHERE __kind IS NOT NULL "
                          f"ORDER BY __r, __col LIMIT ?", [max_errors]) if problems else []
        where = _csv_lines(con, path, checks, [r[0] for r in found], rejected) if csv_file else {}
        if files is not None and found:
            numbers = ", ".join(str(int(r[0])) for r in found)
            located = {n: f"{Path(f).relative_to(path)} row {r + 1}" for n, f, r in _run(
                con, f"SELECT __row, __file, __frow FROM __raw WHERE __row IN ({numbers})")}
        errors = [(r[0], _reject_message(r, dataset)) for r in rejects]
        for number, index, text, value, kind in found:
            line = where[number] if csv_file else number + 1
            label = f"line {line}" if csv_file else located.get(number, f"row {line}")
            errors.append((line, _problem(label, checks[index], text, value, kind, csv_file)))
        errors = [message for _, message in sorted(errors, key=lambda e: e[0])]
        for c in checks:
            if c.on_null == "empty" and len(errors) < max_errors:
                blank = f" OR {c.raw} = ''" if c.empty_text else ""
                empty = _run(con, f"SELECT count(*) FROM __raw WHERE {c.raw} IS NULL{blank}")[0][0]
                if empty:
                    errors.append(f"column '{c.column.name}' ({c.column.role}) is empty in {empty} "
                                  f"row{'s' if empty != 1 else ''}")
        return errors[:max_errors]
    finally:
        for name in ("__raw", "__rejects", "__reject_scans"):
            _run(con, f"DROP TABLE IF EXISTS {name}")


def _csv_lines(con, path: Path, checks: list[_Check], rowids: list[int], rejected: list[int]) -> dict[int, int]:
    """The line of the file each accepted row (its position among them) starts on.

    Row r starts on line r + 2 (the header is line 1), moved down by the line breaks
    inside quoted fields of the rows before it, by blank lines (which both readers
    skip) and by the rejected rows before it (DuckDB's reject table gives their lines).
    """
    if not rowids:
        return {}
    breaks = " + ".join(f"coalesce(length({c.raw}) - length(replace({c.raw}, chr(10), '')), 0)" for c in checks)
    inner = _run(con, f"SELECT rowid, {breaks} FROM __raw WHERE {breaks} > 0 AND rowid < ?", [max(rowids)])
    blank = _run(con, "SELECT list(i) FROM (SELECT unnest(lines) AS text, generate_subscripts(lines, 1) AS i "
                      "FROM (SELECT string_split(content, chr(10)) AS lines FROM read_text(?) "
                      "WHERE contains(content, chr(10) || chr(10)) OR contains(content, chr(10) || chr(13) || chr(10))"
                      ")) WHERE text = '' OR text = chr(13)", [str(path)])
    skipped = sorted([*((blank[0][0] or []) if blank else []), *rejected])
    lines = {}
    for r in rowids:
        start = r + 2 + sum(n for i, n in inner if i < r)
        line = start
        while True:
            moved = start + sum(1 for s in skipped if s <= line)
            if moved == line:
                break
            line = moved
        lines[r] = line
    return lines


def _problem(where: str, check: _Check, text: str | None, value: str | None, kind: str, csv_file: bool) -> str:
    """One problem's message (kinds from _checks)."""
    column = check.column
    name = column.name
    if kind == "null":
        return f"{where}: column '{name}' is empty, and its declared values do not include null"
    if kind == "length":
        return f"{where}: column '{name}' is longer than its type {column.type}"
    if kind == "newline":
        return (f"{where}: column '{name}' value {text!r} holds a line break (Spark's CSV reader, like Glue's, "
                "ends the row there)")
    if kind == "values":
        declared = [d for d in domain_values(column) if d is not None]
        shown = ", ".join(repr(d) for d in declared[:8]) + (", ..." if len(declared) > 8 else "")
        return f"{where}: column '{name}' value {text!r} is not one of its declared values ({shown})"
    if kind == "lossy":
        became = "is out of its range" if value is None else f"would become {value}"
        return f"{where}: column '{name}' value {text} is not a valid {column.type} (it {became})"
    return f"{where}: column '{name}' value {text!r} is not a valid {column.type} ({_expected(column)})"


def _expected(column: Column) -> str:
    """What a valid text value of the column looks like (Spark's CSV reader takes it, DuckDB reads it unchanged)."""
    kind = column.duckdb_type
    if kind in _INTEGER_TYPES:
        low, high = numeric_range(column.type)
        return f"digits with an optional sign, {int(low)} to {int(high)}"
    if kind.startswith("DECIMAL"):
        precision, scale = (int(n) for n in kind[len("DECIMAL("):-1].split(","))
        return (f"a number with at most {precision - scale} digits before the point and {scale} after it; "
                "more would be rounded")
    if kind == "FLOAT":
        return "a number such as 1.5 or -2e3 within +-3.4e38, or NaN, Inf, -Inf"
    if kind == "BOOLEAN":
        return "true or false"
    if kind == "DATE":
        return "yyyy-MM-dd, a date that exists"
    if kind == "TIMESTAMP":
        return "yyyy-MM-dd HH:mm:ss.SSSSSS with 1 to 6 digits after the point"
    return kind


def _run(con, sql: str, params: list | None = None) -> list[tuple]:
    """Execute and drain the result (DuckDB keeps an unfinished result busy on the connection)."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _csv_header(path: Path) -> list[str] | None:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), None)


def _reject_message(row, dataset: Dataset) -> str:
    line, column, kind, text = row
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        fields = len(next(csv.reader([text or ""]), []))
        return f"line {line}: {fields} fields, expected {len(dataset.columns)}"
    if kind == "CAST" and column:
        value = _field(text, dataset.column_names.index(column))
        return f"line {line}: column '{column}' value {value!r} is not a valid {dataset.column(column).type}"
    return f"line {line}: {kind.lower()}"


def _field(text: str, index: int) -> str:
    fields = next(csv.reader([text or ""]), [])
    return fields[index] if index < len(fields) else ""

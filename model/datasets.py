"""Declared dataset schemas (data/<dataset>/schema.yaml) and CSV validation.

A dataset is validated before any resource is declared: a CSV whose header or
values do not match the declared schema would otherwise deploy fine and only
fail (or, worse, silently return wrong aggregates) when a partner queries it.
"""

from __future__ import annotations

import csv
import re
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


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    directory: Path
    file: str
    columns: tuple[Column, ...]

    @property
    def data_path(self) -> Path:
        return self.directory / self.file

    @property
    def format(self) -> str:
        """'csv' or 'parquet', from the data file's extension."""
        return FORMATS[Path(self.file).suffix.lower()]

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
                      tuple(c.values) if c.values is not None else None) for c in schema.columns]
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError("dataset", f"{schema_path}: duplicate columns {duplicates}")
    if schema.name not in (None, name):
        raise ConfigError("dataset", f"{schema_path}: name '{schema.name}' must be the folder's name '{name}' "
                          "(it is the table's name in every template)")
    file = schema.file or f"{name}.csv"
    if Path(file).suffix.lower() not in FORMATS or Path(file).name != file:
        raise ConfigError("dataset", f"{schema_path}: file '{file}' must be a file name beside schema.yaml ending "
                          f"in one of {sorted(FORMATS)}")
    return Dataset(name=name, description=schema.description, directory=schema_path.parent, file=file,
                   columns=tuple(columns))


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


def load_into(con, dataset: Dataset, table: str, max_errors: int = 5) -> int:
    """Read the dataset's file into DuckDB table ``table`` with its declared types.

    DuckDB's own readers do the work (no Python loop over rows, so any size
    works); a CSV value that does not parse as its declared type, a line with
    too few or too many fields, an empty identifier, a header or Parquet
    column list that differs from the schema are all refused, up to
    ``max_errors`` problems in one message.
    """
    path = dataset.data_path
    if not path.is_file():
        raise ConfigError("dataset", f"{path}: data file named by {dataset.directory / 'schema.yaml'} does not exist")
    names = dataset.column_names
    columns = ", ".join(f"{_quote(c.name)}: '{c.duckdb_type}'" for c in dataset.columns)
    if dataset.format == "csv":
        header = _csv_header(path)
        if header != names:
            raise ConfigError("dataset", f"{path}: header {header} does not match the declared "
                              f"columns {names} in schema.yaml")
        _run(con, f"CREATE OR REPLACE TABLE {_quote(table)} AS SELECT * FROM read_csv(?, header = true, "
                    f"auto_detect = false, delim = ',', quote = '\"', escape = '\"', columns = {{{columns}}}, "
                    f"timestampformat = '{CSV_TIMESTAMP_FORMAT}', "
                    "store_rejects = true, rejects_table = '__rejects', rejects_scan = '__reject_scans')",
             [str(path)])
        errors = [_reject_message(row, dataset) for row in _run(
            con, "SELECT line, column_name, error_type, csv_line FROM __rejects ORDER BY line LIMIT ?", [max_errors])]
        _run(con, "DROP TABLE IF EXISTS __rejects")
        _run(con, "DROP TABLE IF EXISTS __reject_scans")
    else:
        found = [r[0] for r in _run(con, "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL",
                                    [str(path)])]
        if found != names:
            raise ConfigError("dataset", f"{path}: Parquet columns {found} do not match the declared "
                              f"columns {names} in schema.yaml")
        casts = ", ".join(f"CAST({_quote(c.name)} AS {c.duckdb_type}) AS {_quote(c.name)}"
                          for c in dataset.columns)
        try:
            _run(con, f"CREATE OR REPLACE TABLE {_quote(table)} AS SELECT {casts} FROM read_parquet(?)", [str(path)])
        except Exception as exc:  # duckdb.ConversionException and friends: one line, no traceback
            raise ConfigError("dataset", f"{path}: a Parquet column does not convert to its declared type: "
                              f"{str(exc).splitlines()[0]}") from None
        errors = []
    for column in dataset.columns:  # varchar(n)/char(n): Spark would cut a longer value short
        if column.max_length is None or len(errors) >= max_errors:
            continue
        first = _run(con, f"SELECT min(rowid) FROM {_quote(table)} WHERE length({_quote(column.name)}) > ?",
                     [column.max_length])[0][0]
        if first is not None:
            row = f"line {first + 2}" if dataset.format == "csv" else f"row {first + 1}"
            errors.append(f"{row}: column '{column.name}' is longer than its type {column.type}")
    identifiers = [c.name for c in dataset.columns if c.role in IDENTIFIER_ROLES]
    for name in identifiers:
        if len(errors) >= max_errors:
            break
        blank = f" OR {_quote(name)} = ''" if dataset.column(name).duckdb_type == "VARCHAR" else ""
        empty = _run(con, f"SELECT count(*) FROM {_quote(table)} WHERE {_quote(name)} IS NULL{blank}")[0][0]
        if empty:
            role = dataset.column(name).role
            errors.append(f"column '{name}' ({role}) is empty in {empty} row{'s' if empty != 1 else ''}")
    if errors:
        raise ConfigError("dataset", f"{path} does not match its schema: " + "; ".join(errors[:max_errors]))
    rows = _run(con, f"SELECT count(*) FROM {_quote(table)}")[0][0]
    if rows == 0:
        raise ConfigError("dataset", f"{path} has a header but no rows" if dataset.format == "csv"
                          else f"{path} has no rows")
    return rows


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

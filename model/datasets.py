"""Declared dataset schemas (data/<dataset>/schema.yaml) and CSV validation.

A dataset is validated before any resource is declared: a CSV whose header or
values do not match the declared schema would otherwise deploy fine and only
fail (or, worse, silently return wrong aggregates) when a partner queries it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import yaml

from model.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# A column's role decides what the analysis rules may do with it.
JOIN_KEY = "join_key"  # shared pseudonymous key: join only, never output
USER_IDENTIFIER = "user_identifier"  # identifies a person: never output
DIMENSION = "dimension"  # may be grouped by and shown
METRIC = "metric"  # may only be aggregated
ROLES = (JOIN_KEY, USER_IDENTIFIER, DIMENSION, METRIC)
IDENTIFIER_ROLES = (JOIN_KEY, USER_IDENTIFIER)

# Glue/Hive column types we accept, with the check each CSV value must pass.
_INT = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
        return True
    except ValueError:
        return False


def _is_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


TYPE_CHECKS = {
    "string": lambda v: True,
    "int": lambda v: bool(_INT.match(v)) and -(2**31) <= int(v) < 2**31,
    "bigint": lambda v: bool(_INT.match(v)),
    "double": lambda v: bool(_DECIMAL.match(v)),
    "float": lambda v: bool(_DECIMAL.match(v)),
    "decimal": lambda v: bool(_DECIMAL.match(v)),
    "boolean": lambda v: v.lower() in ("true", "false"),
    "date": _is_date,
    "timestamp": _is_timestamp,
}

# Clean Rooms column names: lowercase, digits, underscore (the AllowedColumns
# pattern of AWS::CleanRooms::ConfiguredTable in the CloudFormation schema).
_COLUMN_NAME = re.compile(r"^[a-z0-9_]{1,127}$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    role: str


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    directory: Path
    file: str
    columns: tuple[Column, ...]

    @property
    def csv_path(self) -> Path:
        return self.directory / self.file

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def names_with_role(self, *roles: str) -> list[str]:
        return [c.name for c in self.columns if c.role in roles]


def load_dataset(name: str, data_dir: Path = DATA_DIR) -> Dataset:
    """Read and check data/<name>/schema.yaml (not the CSV; see validate_csv)."""
    schema_path = data_dir / name / "schema.yaml"
    where = f"dataset '{name}' ({schema_path})"
    if not schema_path.is_file():
        available = sorted(p.parent.name for p in data_dir.glob("*/schema.yaml"))
        raise ConfigError("dataset", f"no schema file for {where}; datasets available: {available}")
    try:
        raw = yaml.safe_load(schema_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("dataset", f"{schema_path} is not valid YAML: {exc}") from exc
    columns = []
    for i, col in enumerate(raw.get("columns") or []):
        if not isinstance(col, dict) or not {"name", "type", "role"} <= col.keys():
            raise ConfigError("dataset", f"{schema_path}: columns[{i}] needs name, type and role")
        cname, ctype, role = str(col["name"]), str(col["type"]).lower(), str(col["role"])
        if not _COLUMN_NAME.match(cname):
            raise ConfigError("dataset", f"{schema_path}: column '{cname}' must match [a-z0-9_]+ "
                              "(Clean Rooms allows only lowercase column names)")
        if ctype not in TYPE_CHECKS:
            raise ConfigError("dataset", f"{schema_path}: column '{cname}' has type '{ctype}'; "
                              f"allowed: {sorted(TYPE_CHECKS)}")
        if role not in ROLES:
            raise ConfigError("dataset", f"{schema_path}: column '{cname}' has role '{role}'; "
                              f"allowed: {list(ROLES)}")
        columns.append(Column(cname, ctype, role))
    if not columns:
        raise ConfigError("dataset", f"{schema_path} declares no columns")
    if len(columns) > 100:
        raise ConfigError("dataset", f"{schema_path}: Clean Rooms allows at most 100 columns")
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError("dataset", f"{schema_path}: duplicate columns {duplicates}")
    return Dataset(
        name=str(raw.get("name", name)),
        description=str(raw.get("description", "")),
        directory=schema_path.parent,
        file=str(raw.get("file", f"{name}.csv")),
        columns=tuple(columns),
    )


def validate_csv(dataset: Dataset, max_errors: int = 5) -> int:
    """Check the CSV header and every value against the schema; return the row count.

    Reads the file as a stream, so any size works. Collects up to
    ``max_errors`` problems so one run shows more than the first typo.
    """
    path = dataset.csv_path
    if not path.is_file():
        raise ConfigError("dataset", f"{path}: data file named by {dataset.directory / 'schema.yaml'} does not exist")
    errors: list[str] = []
    rows = 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != dataset.column_names:
            raise ConfigError("dataset", f"{path}: header {header} does not match the declared "
                              f"columns {dataset.column_names} in schema.yaml")
        checks = [(c, TYPE_CHECKS[c.type]) for c in dataset.columns]
        for line_no, row in enumerate(reader, start=2):
            rows += 1
            if len(row) != len(checks):
                errors.append(f"line {line_no}: {len(row)} fields, expected {len(checks)}")
            else:
                for (column, check), value in zip(checks, row):
                    if value == "" and column.role in IDENTIFIER_ROLES:
                        errors.append(f"line {line_no}: column '{column.name}' ({column.role}) is empty")
                    elif value != "" and not check(value):
                        errors.append(f"line {line_no}: column '{column.name}' value {value!r} "
                                      f"is not a valid {column.type}")
            if len(errors) >= max_errors:
                break
    if errors:
        raise ConfigError("dataset", f"{path} does not match its schema:\n  " + "\n  ".join(errors))
    if rows == 0:
        raise ConfigError("dataset", f"{path} has a header but no rows")
    return rows

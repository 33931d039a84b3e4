"""Training data for Clean Rooms ML lookalike models: which dataset, and whether it can train one.

The User Guide's "Training data requirements for Clean Rooms ML"
(ml-training-data-requirements):
- "The training data must contain at least 100,000 unique user IDs with at least two item
  interactions each" and "at least 1 million records";
- "The schema specified in the CreateTrainingDataset action must align with the schema defined
  when the AWS Glue table was created";
- field types: USER_ID and ITEM_ID are string, int or bigint, TIMESTAMP bigint, int or timestamp
  ("Values must be in the Unix epoch time in seconds format"), features optional.
The schema is checked here (a refusal); the size is measured from the data file and reported
(a warning): the shipped sample is small on purpose, and `scripts/generate_data.py
--interactions-users 100000` makes one that meets the minimums.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.datasets import JOIN_KEY, Dataset
from model.errors import ConfigError
from model.lookalike import LookalikeSpec

REQUIREMENTS = "https://docs.aws.amazon.com/clean-rooms/latest/userguide/ml-training-data-requirements.html"
MIN_USERS, MIN_INTERACTIONS_PER_USER, MIN_RECORDS = 100_000, 2, 1_000_000
REQUIRED = ("USER_ID", "ITEM_ID", "TIMESTAMP")
_IDS = ("varchar", "char", "integer", "bigint")
# Types this project's schemas can declare, per ML column type. TIMESTAMP: epoch seconds, so integers only
# (a CSV timestamp text is not epoch seconds).
ALLOWED_TYPES = {"USER_ID": _IDS, "ITEM_ID": _IDS, "TIMESTAMP": ("integer", "bigint"),
                 "CATEGORICAL_FEATURE": ("varchar", "char", "integer", "bigint", "float", "boolean"),
                 "NUMERICAL_FEATURE": ("integer", "bigint", "float")}


@dataclass(frozen=True)
class TrainingSpec:
    dataset: Dataset
    description: str
    lookalike: LookalikeSpec | None = None

    @property
    def schema(self) -> list[tuple[str, str]]:
        """(column, ML column type) of the columns the training dataset declares."""
        return [(c.name, c.ml_type) for c in self.dataset.columns if c.ml_type]


def _base(type_name: str) -> str:
    return type_name.split("(", 1)[0]


def check_training_dataset(dataset: Dataset) -> None:
    """The dataset's ML column types make a training dataset Clean Rooms ML accepts."""
    where = f"{dataset.directory / 'schema.yaml'}"
    for required in REQUIRED:
        columns = [c.name for c in dataset.columns if c.ml_type == required]
        if len(columns) != 1:
            raise ConfigError("trainingData.dataset", f"{where}: training data needs exactly one column with mlType "
                              f"{required} ({REQUIREMENTS}), found {columns or 'none'}")
    for column in dataset.columns:
        if column.ml_type and _base(column.type) not in ALLOWED_TYPES[column.ml_type]:
            raise ConfigError("trainingData.dataset", f"{where}: column '{column.name}' (mlType {column.ml_type}) is "
                              f"{column.type}; {column.ml_type} takes {', '.join(ALLOWED_TYPES[column.ml_type])}")
    user = next(c for c in dataset.columns if c.ml_type == "USER_ID")
    if user.role != JOIN_KEY:
        raise ConfigError("trainingData.dataset", f"{where}: the USER_ID column '{user.name}' must be the join key "
                          "(role join_key): the seed's user ids are the other member's join keys")


def training_size(path: Path, user_column: str) -> tuple[int, int]:
    """(records, users with at least two interactions) of the training data file, read with DuckDB."""
    import duckdb

    reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv"
    options = "" if reader == "read_parquet" else ", header = true, all_varchar = true"
    with duckdb.connect() as db:
        records, users = db.execute(
            f"SELECT (SELECT COUNT(*) FROM {reader}(?{options})), COUNT(*) FROM "
            f"(SELECT \"{user_column}\" FROM {reader}(?{options}) GROUP BY 1 HAVING COUNT(*) >= "
            f"{MIN_INTERACTIONS_PER_USER})", [str(path), str(path)]).fetchone()
    return int(records), int(users)


def size_warning(spec: TrainingSpec) -> str | None:
    """What the service would refuse to train on, said before deploying (the sample is small on purpose)."""
    user = next(name for name, kind in spec.schema if kind == "USER_ID")
    records, users = training_size(spec.dataset.data_path, user)
    if records >= MIN_RECORDS and users >= MIN_USERS:
        return None
    return (f"training data {spec.dataset.name}: {records:,} records, {users:,} users with at least "
            f"{MIN_INTERACTIONS_PER_USER} interactions; Clean Rooms ML trains a lookalike model only from at least "
            f"{MIN_USERS:,} such users and {MIN_RECORDS:,} records ({REQUIREMENTS}). Deploying it is fine; training "
            "an audience model on it would fail. `scripts/generate_data.py --interactions-users 100000` makes one "
            "large enough")

"""Training entry point of the purchase-propensity model, following the Clean Rooms ML training container contract.

"Clean Rooms ML uses the following arguments to invoke training on your model code: SM_MODEL_DIR,
SM_OUTPUT_DIR, SM_CHANNEL_TRAIN, and FILE_FORMAT" (User Guide, custom-model-guidelines). The train channel
holds the ML input channel's rows (an analysis template's output, models/purchase_propensity/README.md): the
features below and the label ``frequent_buyer``. The model (a scikit-learn pipeline) goes to SM_MODEL_DIR,
its evaluation to SM_OUTPUT_DIR, and lines like ``validation:accuracy=0.81`` to stdout for the
configured metric definitions. Runs the same on a laptop: point the variables at local folders.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

NUMERIC = ["sessions", "engagement_score"]
CATEGORICAL = ["age_group", "region", "channel"]
LABEL = "frequent_buyer"
SEED = 7


def rows_of(data: bytes | Path, file_format: str = "CSV") -> list[dict]:
    """Records of one CSV or Parquet file (the standard library and pyarrow only: no pandas needed)."""
    if file_format.upper() == "PARQUET":
        import pyarrow.parquet as pq

        return pq.read_table(data).to_pylist()
    text = data.read_text(encoding="utf-8") if isinstance(data, Path) else data.decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def features(records: list[dict]):
    """The model's input matrix: the numeric features as floats, then the categorical ones as text."""
    import numpy as np

    missing = sorted(set(NUMERIC + CATEGORICAL) - set(records[0])) if records else []
    if missing:
        raise ValueError(f"the input lacks columns {missing}")
    return np.array([[float(r[c]) for c in NUMERIC] + [str(r[c]) for c in CATEGORICAL] for r in records], dtype=object)


def read_channel(folder: Path, file_format: str) -> list[dict]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"train: no files in the train channel {folder}")
    records = [r for f in files for r in rows_of(f, file_format)]
    if not records or LABEL not in records[0]:
        raise SystemExit(f"train: the train channel has no {LABEL!r} column")
    return records


def pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = list(range(len(NUMERIC)))
    categories = list(range(len(NUMERIC), len(NUMERIC) + len(CATEGORICAL)))
    columns = ColumnTransformer([("numbers", StandardScaler(), numbers),
                                 ("categories", OneHotEncoder(handle_unknown="ignore"), categories)])
    return Pipeline([("features", columns), ("model", LogisticRegression(max_iter=1000, random_state=SEED))])


def train(model_dir: Path, output_dir: Path, channel: Path, file_format: str) -> dict:
    import joblib
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    import numpy as np

    records = read_channel(channel, file_format)
    x, y = features(records), np.array([int(float(r[LABEL])) for r in records])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = pipeline().fit(x_train, y_train)
    scores = model.predict_proba(x_test)[:, 1]
    metrics = {"accuracy": float(accuracy_score(y_test, scores >= 0.5)), "auc": float(roc_auc_score(y_test, scores)),
               "majority_baseline": float(max(y_test.mean(), 1 - y_test.mean())), "rows": int(len(records))}
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name in ("accuracy", "auc"):
        print(f"validation:{name}={metrics[name]:.4f}")
    return metrics


def main() -> int:
    env = os.environ
    train(Path(env.get("SM_MODEL_DIR", "/opt/ml/model")), Path(env.get("SM_OUTPUT_DIR", "/opt/ml/output/data")),
          Path(env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")), env.get("FILE_FORMAT", "CSV"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

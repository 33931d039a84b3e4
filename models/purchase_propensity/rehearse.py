"""Rehearse purchase_propensity on this machine: the channel's rows from data/, training in the container layout.

    venv/bin/python models/purchase_propensity/rehearse.py [--data-dir data] [--out /tmp/propensity]

What Clean Rooms ML would do, without Docker and without AWS: channel.sql run by DuckDB over the two
datasets' files (read with their declared types, model/datasets.py), written as the ``train`` channel
under OUT/opt/ml/input/data/train, then train.py with the environment the training container gets
(SM_CHANNEL_TRAIN, SM_MODEL_DIR, SM_OUTPUT_DIR, FILE_FORMAT). Prints the metrics the metric
definitions would capture. Needs scikit-learn (bash scripts/setup ml).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # the project's model/ (run as a script from any folder)
DATASETS = ("retail_purchases", "media_engagement")


def channel_rows(data_dir: Path) -> tuple[list[str], list[tuple]]:
    """channel.sql over the datasets of ``data_dir``, each loaded and checked as the local clean room does
    (model.errors.ConfigError, one line naming the file, for one that does not match its schema)."""
    import duckdb

    from model.datasets import load_dataset, load_into

    with duckdb.connect() as con:
        for name in DATASETS:
            load_into(con, load_dataset(name, data_dir), name)
        result = con.execute((HERE / "channel.sql").read_text())
        return [d[0] for d in result.description], result.fetchall()


def lay_out(root: Path, columns: list[str], rows: list[tuple]) -> dict[str, str]:
    """/opt/ml as Clean Rooms ML lays it out, under ``root``; the environment the training container gets."""
    channel = root / "opt" / "ml" / "input" / "data" / "train"
    channel.mkdir(parents=True, exist_ok=True)
    with (channel / "part-00000.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return {"SM_CHANNEL_TRAIN": str(channel), "SM_MODEL_DIR": str(root / "opt/ml/model"),
            "SM_OUTPUT_DIR": str(root / "opt/ml/output/data"), "FILE_FORMAT": "CSV"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rehearse.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, help="where to lay out /opt/ml (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    from model.errors import ConfigError

    try:
        columns, rows = channel_rows(args.data_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="propensity-") as tmp:
        root = args.out or Path(tmp)
        env = lay_out(root, columns, rows)
        print(f"channel: {len(rows)} rows ({', '.join(columns)}) in {env['SM_CHANNEL_TRAIN']}", file=sys.stderr)
        done = subprocess.run([sys.executable, str(HERE / "train.py")], env={**os.environ, **env}, cwd=HERE)
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())

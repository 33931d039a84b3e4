"""Benchmark: the local clean room beside plain DuckDB on the same files (a command, not a test).

    python -m localroom.benchmark --rows 1000000            # generate 2 x 1M rows in a temp folder
    python -m localroom.benchmark --data-dir DIR            # or use a folder laid out like data/
    python -m localroom.benchmark --rows 200000 --repeat 5

Each side runs as its own process, timed from start to exit (Python start-up
included on both sides) with its peak resident memory from wait4():

- local: `python -m queryrunner run --all --local` (validation, the data check
  with DuckDB's reject table, thresholds, noise, the ledger, CSV results and
  the report);
- duckdb: the same CSV files read by DuckDB's read_csv with the declared types,
  then every template's SQL transpiled by sqlglot and run with its default
  parameters, with no rule enforced.

The goal (issue 8) is local <= 1.3 x duckdb. Results vary run to run; the
median of --repeat runs is shown.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model.stackfiles import ROOT


def measure(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[2:5])} failed:\n{process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss // 1024


def baseline(data_dir: Path) -> None:
    """The DuckDB side: load, transpile, run; no validation, no rules."""
    import duckdb
    import sqlglot

    from model.collaboration import from_stack_files
    from model.datasets import CSV_TIMESTAMP_FORMAT
    from model.parameters import to_python

    settings, collab = from_stack_files(_analyst_stack(), data_dir=data_dir)
    con = duckdb.connect()
    for alias, table in collab.tables.items():
        columns = ", ".join(f"'{c.name}': '{c.duckdb_type}'" for c in table.dataset.columns)
        reader = (f"read_csv(?, header = true, auto_detect = false, columns = {{{columns}}}, "
                  f"timestampformat = '{CSV_TIMESTAMP_FORMAT}')" if table.dataset.format == "csv"
                  else "read_parquet(?)")
        con.execute(f"CREATE TABLE {alias} AS SELECT * FROM {reader}", [str(table.dataset.data_path)]).fetchall()
    for template in settings.analyst.queries:
        sql = sqlglot.transpile(template.sql, read="spark", write="duckdb")[0]
        params = {p.name: to_python(p.type, p.default) for p in template.parameters if p.default is not None}
        con.sql(sql, params=params or None).to_arrow_table()


def _analyst_stack() -> str:
    from queryrunner.local import _analyst_stack as find
    from model.stackfiles import stack_names

    return find(stack_names())


def prepare(rows: int, folder: Path) -> Path:
    """A data folder with both datasets at ``rows`` rows (half of them shared), schemas, queries and jobs."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_data.py"), "--a-rows", str(rows),
                    "--b-rows", str(rows), "--overlap", str(rows // 2), "--out", str(folder)], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    # The analyst's stack file names its templates and jobs: both come along with the data.
    for templates in ("queries", "jobs"):
        shutil.copytree(ROOT / "data" / templates, folder / templates, dirs_exist_ok=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localroom.benchmark", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rows", type=int, help="generate this many rows per organization in a temp folder")
    source.add_argument("--data-dir", type=Path, help="a folder laid out like data/ (schemas, data, queries/)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the median is shown (default 3)")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)  # the DuckDB side's child process
    args = parser.parse_args(argv)
    if args.baseline:
        baseline(args.baseline)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be >= 1")
    with tempfile.TemporaryDirectory(prefix="localroom-bench-") as tmp:
        tmp_path = Path(tmp)
        if args.data_dir:
            data = args.data_dir.resolve()
        else:
            print(f"generating 2 x {args.rows or 1_000_000:,} rows ...", file=sys.stderr)
            data = prepare(args.rows or 1_000_000, tmp_path / "data")
        local = [sys.executable, "-m", "queryrunner", "run", "--all", "--local", "--seed", "1",
                 "--data-dir", str(data), "--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state")]
        plain = [sys.executable, "-m", "localroom.benchmark", "--baseline", str(data)]
        results = {"local clean room": [], "duckdb, no rules": []}
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine load
            results["local clean room"].append(measure(local))
            results["duckdb, no rules"].append(measure(plain))
    rows = {name: (statistics.median(w for w, _ in runs), max(m for _, m in runs)) for name, runs in results.items()}
    base = rows["duckdb, no rules"][0]
    print(f"{'':18} {'wall (s)':>9} {'peak RSS (MiB)':>15} {'x duckdb':>9}")
    for name, (wall, rss) in rows.items():
        print(f"{name:18} {wall:9.2f} {rss:15d} {wall / base:9.2f}")
    print(f"data: {data} (median of {args.repeat} runs per side)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: `run --all --local`, cold and warm, beside plain DuckDB on the same files (a command, not a test).

    python -m localroom.benchmark --rows 1000000            # generate 2 x 1M rows in a temp folder
    python -m localroom.benchmark --data-dir DIR            # or use a folder laid out like data/
    python -m localroom.benchmark --rows 200000 --repeat 5

Every side is a whole process, timed from start to exit (Python's start-up and
imports included) with its peak resident memory (wait4's ru_maxrss):

- baseline: what a user would write with DuckDB alone: a Python process that
  imports duckdb and sqlglot, reads each data file with DuckDB's own reader
  (``read_csv(path)``, auto-detected; ``read_parquet``) into a table named by
  its association name, transpiles each of the analyst's templates from Spark
  SQL to DuckDB with sqlglot, binds its parameters to their defaults and
  fetches the result. No validation, no rules, no noise, nothing written;
- cold: ``python -m queryrunner run --all --local --data-dir DIR --state-dir
  FRESH --out OUT``: validation, the strict data check, thresholds, noise, the
  ledgers, the CSV results and the report, with a new state folder (so no load
  cache);
- warm: the same command again with the same state folder: the tables come
  from the load cache (localroom/cache.py).

Python keeps compiled modules as it does by default (in the benchmark's temp
folder, after one unmeasured run of each side), also where the environment
sets PYTHONDONTWRITEBYTECODE; --no-bytecode-cache runs the children with the
environment as it is.

The goals (the project's issue): cold <= 1.1 x baseline, warm <= 0.5 x
baseline. The sides run interleaved (baseline, cold, warm, then again), so
they see the same machine load; each side's best wall time of --repeat runs is shown,
its peak memory the largest of its runs, and its least CPU time (user +
system, all threads: less sensitive than wall time to other load on the
machine).
"""
from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"cold": 1.1, "warm": 0.5}


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds) of one child process; SystemExit with its stderr if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[1:6])} ... failed:\n{errors[-2000:]}")
    return wall, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


# --- the baseline: plain DuckDB -----------------------------------------------

def baseline_spec(data_dir: Path) -> dict:
    """What the baseline process needs, from the project's model: each table's file, each template's SQL."""
    from model.collaboration import from_stack_files
    from model.parameters import to_python
    from queryrunner.local import _analyst_stack
    from model.stackfiles import stack_names

    settings, collab = from_stack_files(_analyst_stack(stack_names()), data_dir=data_dir)
    return {
        "tables": {alias: [str(t.dataset.data_path), t.dataset.format] for alias, t in sorted(collab.tables.items())},
        "templates": [{"name": q.name, "sql": q.sql,
                       "params": {p.name: _encode(to_python(p.type, p.default))
                                  for p in q.parameters if p.default is not None}}
                      for q in settings.analyst.queries],
    }


def run_baseline(spec_file: Path) -> None:
    """The baseline process: duckdb and sqlglot only (this module imports nothing of the project at its top)."""
    import duckdb
    import sqlglot

    spec = json.loads(spec_file.read_text())
    con = duckdb.connect()
    for alias, (path, kind) in spec["tables"].items():
        reader = "read_csv" if kind == "csv" else "read_parquet"
        con.execute(f'CREATE TABLE "{alias}" AS SELECT * FROM {reader}(?)', [path])
    for template in spec["templates"]:
        sql = sqlglot.transpile(template["sql"], read="spark", write="duckdb")[0]
        params = {name: _decode(value) for name, value in template["params"].items()}
        con.execute(sql, params or None).fetchall()


def _encode(value) -> list:
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("decimal", decimal.Decimal),
                      ("datetime", dt.datetime), ("date", dt.date), ("time", dt.time), ("bytes", bytes)):
        if isinstance(value, cls):
            return [kind, value.hex() if kind == "bytes" else value.isoformat() if hasattr(value, "isoformat")
                    else str(value)]
    return ["str", str(value)]


def _decode(encoded: list):
    kind, text = encoded
    return {"bool": lambda t: t == "True", "int": int, "float": float, "decimal": decimal.Decimal,
            "datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat, "time": dt.time.fromisoformat,
            "bytes": bytes.fromhex, "str": str}[kind](text)


# --- the benchmark --------------------------------------------------------------

def prepare(rows: int, folder: Path) -> Path:
    """A data folder with both datasets at ``rows`` rows (60% of them shared), schemas, queries and jobs."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_data.py"), "--a-rows", str(rows),
                    "--b-rows", str(rows), "--overlap", str(rows * 3 // 5), "--out", str(folder)], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    with_templates(folder)
    return folder


def with_templates(folder: Path) -> None:
    """The analyst's stack file names its templates and jobs: they come along with the data."""
    for templates in ("queries", "jobs"):
        if not (folder / templates).exists():
            shutil.copytree(ROOT / "data" / templates, folder / templates)


def linked(source: Path, folder: Path) -> Path:
    """``source`` as a folder of links to its entries, with the project's templates where it has none
    (the output of scripts/generate_data.py holds only the datasets)."""
    if not source.is_dir():
        raise SystemExit(f"error: --data-dir {source}: not a folder")
    folder.mkdir(parents=True)
    for entry in source.iterdir():
        (folder / entry.name).symlink_to(entry)
    with_templates(folder)
    return folder


def child_env(work: Path, bytecode: bool) -> dict[str, str]:
    """The children's environment: with ``bytecode``, Python keeps compiled modules (in ``work``, not in the
    project) as it does by default, even where PYTHONDONTWRITEBYTECODE is set (every import would otherwise
    compile the project's modules from source again, which the baseline, importing only installed packages,
    never does)."""
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def settle(data: Path) -> None:
    """Wait until the data files are old enough for the load cache to trust their stat (cache.RACY_SECONDS)."""
    from localroom.cache import RACY_SECONDS

    newest = max((p.stat().st_mtime for p in data.glob("*/*") if p.suffix in (".csv", ".parquet")), default=0)
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.1 - time.time()))


def run_all(data: Path, work: Path, repeat: int, bytecode: bool = True) -> dict[str, list[tuple[float, int, float]]]:
    spec = work / "baseline.json"
    spec.write_text(json.dumps(baseline_spec(data)))
    env = child_env(work, bytecode)
    baseline = [sys.executable, "-m", "localroom.benchmark", "--baseline", str(spec)]

    def local(i: int) -> list[str]:
        return [sys.executable, "-m", "queryrunner", "run", "--all", "--local", "--data-dir", str(data),
                "--state-dir", str(work / f"state-{i}"), "--out", str(work / f"out-{i}")]

    settle(data)
    if bytecode:  # once, unmeasured: compiles what each side imports (and reads the files into the page cache)
        measure(baseline, env)
        measure(local(-1), env)
    results: dict[str, list[tuple[float, int, float]]] = {"baseline": [], "cold": [], "warm": []}
    for i in range(repeat):  # interleaved, so every side sees the same machine load
        results["baseline"].append(measure(baseline, env))
        results["cold"].append(measure(local(i), env))  # a new state folder: no load cache
        results["warm"].append(measure(local(i), env))  # the same one: the tables come from the cache
        for folder in (f"state-{i}", f"out-{i}"):
            shutil.rmtree(work / folder, ignore_errors=True)
    return results


def report(results: dict[str, list[tuple[float, int, float]]], data: Path, repeat: int) -> str:
    best = {side: min(w for w, _, _ in runs) for side, runs in results.items()}
    memory = {side: max(m for _, m, _ in runs) for side, runs in results.items()}
    cpu = {side: min(c for _, _, c in runs) for side, runs in results.items()}
    base = best["baseline"]
    lines = [f"{'':34} {'wall (s)':>9} {'peak RSS (MiB)':>15} {'x baseline':>11} {'CPU (s)':>8} {'CPU x':>6}"]
    names = {"baseline": "baseline (DuckDB read_csv + SQL)", "cold": "run --all --local, cold",
             "warm": "run --all --local, warm (cache)"}
    for side in ("baseline", "cold", "warm"):
        ratio = best[side] / base
        goal = f"  (goal <= {GOALS[side]}: {'met' if ratio <= GOALS[side] else 'NOT met'})" if side in GOALS else ""
        lines.append(f"{names[side]:34} {best[side]:9.2f} {memory[side]:15d} {ratio:11.2f} {cpu[side]:8.2f} "
                     f"{cpu[side] / cpu['baseline']:6.2f}{goal}")
    lines.append(f"cold / baseline = {best['cold'] / base:.2f}, warm / baseline = {best['warm'] / base:.2f}")
    lines.append(f"data: {data}; best of {repeat} runs per side (all runs, s: " + "; ".join(
        f"{side} {' '.join(f'{w:.2f}' for w, _, _ in runs)}" for side, runs in results.items()) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localroom.benchmark", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rows", type=int, help="generate this many rows per organization in a temp folder "
                                                 "(default 1,000,000)")
    source.add_argument("--data-dir", type=Path, help="a folder laid out like data/ (schemas, data, queries/)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best is shown (default 3)")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run the children with this environment as it is (with PYTHONDONTWRITEBYTECODE set, "
                             "the project's modules are compiled again by every run)")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)  # the baseline's child process
    args = parser.parse_args(argv)
    if args.baseline:
        run_baseline(args.baseline)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be >= 1")
    with tempfile.TemporaryDirectory(prefix="localroom-bench-") as tmp:
        work = Path(tmp)
        if args.data_dir:
            data = linked(args.data_dir.resolve(), work / "data")
        else:
            print(f"generating 2 x {args.rows or 1_000_000:,} rows ...", file=sys.stderr)
            data = prepare(args.rows or 1_000_000, work / "data")
        results = run_all(data, work, args.repeat, bytecode=not args.no_bytecode_cache)
    print(report(results, data, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())

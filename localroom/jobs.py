"""PySpark analysis templates in the local clean room: `python -m queryrunner job NAME --local`.

The interface Clean Rooms gives a job's script (User Guide, create-user-script):
it calls ``entrypoint(context)`` with

- ``context["sparkSession"]``: the Spark session (the job's only one);
- ``context["referencedTables"][alias]``: one DataFrame per table the template
  references, with the configured table's allowed columns (this project allows
  every column of the schema: components/data_producer.py);
- ``context["analysisParameters"]``: the parameters, as the strings passed;

and the script returns ``{"results": {name: DataFrame}}``; Clean Rooms writes
each DataFrame to the result receiver's bucket, one folder per name. Limits
(User Guide, pyspark-analysis-templates): only DataFrame outputs, a single
Spark session, no RDDs, no S3, Glue or network calls from the script.

Here the tables are loaded by localroom/spark.py's loader (the same DuckDB data
check, then Spark's reader with the declared schema), the script is imported
from its file as a fresh module that is never registered in ``sys.modules`` (so
nothing leaks between runs, and functions it hands to Spark as UDFs are pickled
by value, as they must be for Python workers), and what it returns is checked
before anything is computed. What Clean Rooms would refuse outright is refused
in model/jobs.check_jobs (called by queryrunner/local.py); the limits above
that only show in the code are reported by ``lint`` as warnings.

Importing this module does not import pyspark.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from model.collaboration import Table
from model.templates import shown_path as shown  # a script is named as the validator names a template

# A result name becomes a folder (in S3) and a file name (here): the cloud runner (queryrunner/jobs.py
# result_name) replaces the same characters, so both save a result under the same name.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]")
RESULT_SHAPE = 'a dict {"results": {name: DataFrame}}'
_NETWORK = {"boto3", "botocore", "requests", "urllib", "urllib3", "http", "socket", "aiohttp", "httpx", "ftplib",
            "smtplib"}


class JobFailed(Exception):
    """The script failed, returned something else than its results, or Spark could not compute them (exit 1)."""


def result_file(name: str) -> str:
    clean = _UNSAFE.sub("_", name)
    return clean if clean.strip(".") else "result"


# -- the limits, as far as the code shows them ----------------------------------
def lint(script: Path) -> list[str]:
    """Warnings (file:line: what) for what the User Guide's limits rule out: RDDs, more sessions, network."""
    where = shown(script)
    tree = ast.parse(script.read_bytes(), filename=str(script))
    found = []
    for node in ast.walk(tree):
        problem = None
        if isinstance(node, ast.Attribute) and node.attr == "rdd":
            problem = "uses DataFrame.rdd: a Clean Rooms job cannot use RDDs (DataFrames only)"
        elif isinstance(node, ast.Attribute) and node.attr in ("sparkContext", "parallelize"):
            problem = f"uses {node.attr}, the RDD API: a Clean Rooms job cannot use RDDs (DataFrames only)"
        elif isinstance(node, ast.Attribute) and node.attr in ("builder", "newSession"):
            problem = (f"uses SparkSession.{node.attr}: a Clean Rooms job has a single Spark session, "
                       "context['sparkSession']")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            network = sorted({n.split(".")[0] for n in names} & _NETWORK)
            if network:
                problem = (f"imports {', '.join(network)}: a Clean Rooms job cannot call S3, Glue or the network; "
                           "its tables come in context['referencedTables']")
        if problem:
            found.append((node.lineno, f"{where}:{node.lineno}: {problem}"))
    return [text for _, text in sorted(found)]


# -- running ----------------------------------------------------------------------
def referenced_tables(backend, tables: Mapping[str, Table]) -> dict[str, Any]:
    """One DataFrame per alias: localroom/spark.py's loader (same data check, schema and reader as run)."""
    backend.load({alias: table.dataset for alias, table in tables.items()})
    return {alias: backend.spark.table(alias).select(*[f"`{c}`" for c in table.dataset.column_names])
            for alias, table in tables.items()}


def run_job(backend, script: Path, tables: Mapping[str, Table], parameters: Mapping[str, str]) -> dict[str, pa.Table]:
    """Run ``script``'s entrypoint(context) on ``backend`` (a localroom.spark.Spark); its results as Arrow tables.

    Raises JobFailed (one line) when the script cannot be imported, raises, returns something else than
    {"results": {name: DataFrame}}, stops its session, or when Spark cannot compute a result.
    """
    from localroom.spark import to_arrow

    frames = referenced_tables(backend, tables)
    module = _import(script)
    entrypoint = getattr(module, "entrypoint", None)
    if not callable(entrypoint):
        raise JobFailed(f"{shown(script)}: defines no function entrypoint(context), the handler Clean Rooms calls")
    spark = backend.spark
    context = {"sparkSession": spark, "referencedTables": dict(frames), "analysisParameters": dict(parameters)}
    try:
        returned = entrypoint(context)
    except SystemExit as exc:  # not this process's to end
        raise JobFailed(f"the script called sys.exit({exc.code!r}){_at(exc, script)}; a job returns its results "
                        "instead") from None
    except Exception as exc:  # the script's own failure: one line, where it happened
        raise JobFailed(f"the script raised {_last_line(exc)}{_at(exc, script)}") from None
    results = check_results(returned, script)
    if spark.sparkContext._jsc is None:
        raise JobFailed(f"{shown(script)}: the script stopped the Spark session; a Clean Rooms job has one session, "
                        "which it must leave running")
    computed = {}
    for name, frame in results.items():
        try:
            computed[result_file(name)] = to_arrow(frame)
        except Exception as exc:  # Spark evaluates lazily: a failing transformation shows up here
            raise JobFailed(f"result {name!r} of {shown(script)} could not be computed: "
                            f"{_last_line(exc)}{_at(exc, script)}") from None
    return computed


def check_results(returned: Any, script: Path) -> dict[str, Any]:
    """The {"results": {name: DataFrame}} the script must return, or JobFailed naming the script."""
    from pyspark.sql import DataFrame

    where = f"{shown(script)}: entrypoint(context) returned"
    if not isinstance(returned, dict) or "results" not in returned:
        what = (f"a dict without 'results' (keys: {sorted(map(str, returned))})" if isinstance(returned, dict)
                else _kind(returned))
        raise JobFailed(f"{where} {what}; Clean Rooms expects {RESULT_SHAPE}")
    results = returned["results"]
    if not isinstance(results, dict):
        raise JobFailed(f"{where} 'results' as {_kind(results)}; Clean Rooms expects {RESULT_SHAPE}")
    if not results:
        raise JobFailed(f"{where} no results ('results' is empty); Clean Rooms expects {RESULT_SHAPE}")
    for name, frame in results.items():
        if not isinstance(name, str) or not name:
            raise JobFailed(f"{where} a result named {name!r}; result names are non-empty strings ({RESULT_SHAPE})")
        if not isinstance(frame, DataFrame):
            raise JobFailed(f"{where} result {name!r} as {_kind(frame)}; only pyspark DataFrames are job outputs")
    files: dict[str, str] = {}
    for name in results:
        clash = files.setdefault(result_file(name), name)
        if clash != name:
            raise JobFailed(f"{where} results {clash!r} and {name!r}, which are both saved as "
                            f"{result_file(name)!r}; give them names of letters, digits and _ . = -")
    return results


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    kind = type(value)
    module = kind.__module__.split(".")[0]
    name = kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _import(script: Path):
    """The script as a new module object, seen by no other code; JobFailed if importing it fails."""
    name = f"_localroom_job_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, str(script.resolve()))
    module = importlib.util.module_from_spec(spec)
    # Registered only while the module body runs (dataclasses and typing look a module up by name); gone
    # before entrypoint runs, so its functions are pickled by value when Spark ships them to Python workers.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise JobFailed(f"the script could not be imported: {_last_line(exc)}{_at(exc, script)}") from None
    finally:
        sys.modules.pop(name, None)
    return module


def _last_line(exc: BaseException) -> str:
    """The exception as the last line of its traceback would show it; Spark's errors as one line."""
    from pyspark.errors import PySparkException, PythonException
    from py4j.protocol import Py4JError

    from localroom.spark import message

    if isinstance(exc, PythonException):  # a Python worker's failure: its own traceback ends the text
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[-1] if lines else type(exc).__name__
    if isinstance(exc, (PySparkException, Py4JError)):
        return message(exc)
    lines = [line for line in "".join(traceback.format_exception_only(type(exc), exc)).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _at(exc: BaseException, script: Path) -> str:
    """' (at FILE:LINE)' for the innermost frame in the script: the traceback's, or a Python worker's."""
    target = str(script.resolve())
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == target:
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.filename == target:
        line = exc.lineno
    if line is None:  # a UDF that failed in a worker names the script in the worker's traceback text
        for found in re.finditer(r'File "([^"]+)", line (\d+)', str(exc)):
            if os.path.realpath(found.group(1)) == os.path.realpath(target):
                line = int(found.group(2))
    return f" (at {shown(script)}:{line})" if line is not None else f" (in {shown(script)})"

"""The parity suite: every documented construct runs on DuckDB and on Spark with the same result.

tests/parity_templates.py has templates for the constructs the User Guide lists as
supported (custom-sql-capabilities, dp-sql-capabilities, and the Spark SQL
reference's function pages), each construct with its page (``COVERS``). The
templates, with the shipped ones, run as `run --all --seed 3` on both engines, in
groups of at most 25 (a membership's quota of analysis templates); the run records
(noise scales, sensitivities, suppressed rows, costs) must be equal, and the saved
CSVs equal row for row (as sets where the template has no ORDER BY, whose order SQL
leaves to the engine): noisy rows too, since the same seed draws the same noise on
the same parts, to the last digit but for doubles the engines sum in another order.
The differences that cannot be removed are asserted as what they are, column by
column (``KNOWN``: DuckDB's value must be what the difference makes of Spark's, and
differ from it somewhere), or as the one engine's failure (``FAILS``); all are listed
in docs/local-clean-room.md. Spark runs with this process in a time zone other than
UTC (PySpark reads naive datetimes in the local zone). What the pages mark unsupported
is refused by the validator with the page (``REFUSED``).
Without pyspark the engine tests are skipped, unless REQUIRE_SPARK=1 (CI).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import time

import pytest

from model.templates import parse_query
from model.validator import validate
from tests.harness import ROOT
from tests.parity_templates import COVERS, FAILS, KNOWN, PAGES, PRIVATE, REFUSED, REFUSED_PAGE, THRESHOLD
from tests.test_localroom_cli import Runner
from tests.test_localroom_spark import needs_spark, on, result
from tests.test_validator import collab, write_template  # noqa: F401 (collab: a fixture)

# The shipped templates too (data/queries/), then the parity templates, 25 to a run (a membership holds at most
# 25 analysis templates).
SHIPPED = {p.stem: p.read_text() for p in sorted((ROOT / "data" / "queries").glob("*.sql"))}
_ALL = list({**SHIPPED, **THRESHOLD, **PRIVATE}.items())
GROUPS = {f"group{k // 25 + 1}": dict(_ALL[k:k + 25]) for k in range(0, len(_ALL), 25)}
SPARK_TZ = "America/New_York"  # not UTC, with an offset all year


class _LocalZone:
    """This process's local time zone set to ``zone`` (TZ and time.tzset), and back."""

    def __init__(self, zone: str):
        self.zone, self.before = zone, os.environ.get("TZ")

    def __enter__(self):
        os.environ["TZ"] = self.zone
        time.tzset()

    def __exit__(self, *_):
        if self.before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self.before
        time.tzset()


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory) -> dict:
    """Each group's templates run on both engines: {group: (duckdb runner, spark runner, {engine: stderr})}."""
    done = {}
    for group, templates in GROUPS.items():
        base = tmp_path_factory.mktemp(group)
        data = base / "data"
        shutil.copytree(ROOT / "data", data, ignore=shutil.ignore_patterns("queries"))
        (data / "queries").mkdir()
        for name, sql in templates.items():
            if name in SHIPPED:
                shutil.copy(ROOT / "data" / "queries" / f"{name}.sql", data / "queries")
            else:
                write_template(data / "queries", name, sql)
        duck, spark_run = Runner(base / "duckdb"), Runner(base / "spark")
        errors = {}
        # The shipped templates' parameters where both lose rows to org A's threshold, applied to noisy counts
        # beside org B's DP table: suppression decided by noise, the same on both engines.
        shipped = [a for name in ("min_orders=38", "min_sessions=195")
                   if any(f":{name.split('=')[0]}" in sql for sql in templates.values()) for a in ("--param", name)]
        for engine, runner in (("duckdb", duck), ("spark", spark_run)):
            with _LocalZone(SPARK_TZ) if engine == "spark" else contextlib.nullcontext():
                code, _, err = on(engine, runner, "run", "--all", "--seed", "3", "--data-dir", str(data), *shipped)
            failed = sorted(line.split("]")[0].lstrip("[") for line in err.splitlines() if "] FAILED: " in line)
            expected = sorted(t for t, (where, _) in FAILS.items() if where == engine and t in templates)
            assert (code, failed) == (1 if expected else 0, expected), f"{engine}: {err}"
            errors[engine] = err
        done[group] = (duck, spark_run, errors)
    return done


def _group(template: str) -> str:
    return next(g for g, ts in GROUPS.items() if template in ts)


def _rows(text: str, ordered: bool, known: set[str]) -> list[list[str]]:
    """The CSV's rows; sorted when the template has no ORDER BY (SQL leaves the order to the engine), by the
    columns the engines agree on first, so that a known difference does not reorder them."""
    header, *rows = list(csv.reader(io.StringIO(text)))
    same = [k for k, name in enumerate(header) if name not in known]
    if not ordered:
        rows = sorted(rows, key=lambda row: ([row[k] for k in same], row))
    return [header, *rows]


def _same(a: str, b: str, rel: float) -> bool:
    if a == b:
        return True
    try:
        return float(a) == pytest.approx(float(b), rel=rel, abs=1e-9)
    except ValueError:
        return False


@needs_spark
@pytest.mark.parametrize("template", [t for ts in GROUPS.values() for t in ts])
def test_both_engines_agree(runs, template):
    duck, spark_run, errors = runs[_group(template)]
    if template in FAILS:  # one engine cannot run it: nothing saved there, its one line says why
        where, error = FAILS[template]
        failing, other = (duck, spark_run) if where == "duckdb" else (spark_run, duck)
        assert failing.results(template) == [] and other.results(template)
        assert f"[{template}] FAILED: {error}" in errors[where].splitlines()
        return
    duck_csv, duck_record = result(duck, template)
    spark_csv, spark_record = result(spark_run, template)
    assert spark_record == duck_record  # rows, noise scales, sensitivities, suppressed rows, costs
    known = KNOWN.get(template, {})
    ordered = "ORDER BY" in GROUPS[_group(template)][template].split("FROM")[-1]
    a, b = _rows(duck_csv, ordered, set(known)), _rows(spark_csv, ordered, set(known))
    assert a[0] == b[0] and len(a) == len(b), (a[:3], b[:3])
    # Rows to compare, unless a DP partition selection kept none (p_selected_groups: ~10 customers a group)
    assert len(a) > 1 or any(n["aggregate"].startswith("selection") for n in duck_record["noise"]), template
    assert set(known) <= set(a[0]), f"KNOWN names columns {template} does not have"
    differs = set()
    for x, y in zip(a[1:], b[1:]):
        spark_row = dict(zip(b[0], y))
        for name, u, v in zip(a[0], x, y):
            if name in known:  # the difference docs/local-clean-room.md lists, exactly as it is
                assert known[name].duckdb(u, v, spark_row), (name, known[name].why, u, v, spark_row)
                differs |= {name} if u != v else set()
            else:  # exact but for doubles summed in another order (noisy parts: at most a few ulps)
                assert _same(u, v, 1e-12), (name, x, y)
    assert differs == set(known), f"the engines now agree on {set(known) - differs}: drop it from KNOWN and the docs"


@needs_spark
def test_the_suite_covers_what_it_says(runs):
    """Not vacuous: thresholds suppressed rows somewhere, noise was added, groups were selected."""
    duck = {t: runs[_group(t)][0] for ts in GROUPS.values() for t in ts}
    records = {t: result(duck[t], t)[1] for t in THRESHOLD if t not in FAILS}
    assert any(r["suppressed_rows"] > 0 for r in records.values())
    shipped = {t: result(duck[t], t)[1] for t in SHIPPED}
    assert all(r["suppressed_rows"] > 0 and r["noise"] for r in shipped.values())  # by noisy counts
    assert all(r["noise"] == [] for r in records.values())
    private = {t: result(duck[t], t)[1] for t in PRIVATE}
    assert all(r["noise"] for r in private.values())
    for selected in ("p_selected_groups", "p_selected_expressions"):
        assert any(n["aggregate"].startswith("selection") for n in private[selected]["noise"])
    # and the ledger charged both engines alike, group by group
    for duck_run, spark_run, _ in runs.values():
        assert [c["fraction"] for c in duck_run.ledger()["charges"]] == [
            c["fraction"] for c in spark_run.ledger()["charges"]]


def test_each_construct_names_its_page_and_each_difference_is_in_the_docs():
    assert set(COVERS) == set(THRESHOLD) | set(PRIVATE) and all(COVERS.values())
    for template, constructs in COVERS.items():
        for construct, source in constructs.items():
            assert source.split(":")[0] in PAGES, (template, construct, source)
    assert all(len(ts) <= 25 for ts in GROUPS.values())
    docs = (ROOT / "docs" / "local-clean-room.md").read_text()
    spark_section = docs.split("## The Spark engine", 1)[1].split("\n## ", 1)[0]
    for template in KNOWN:
        assert f"`{template}`" in spark_section, f"docs/local-clean-room.md does not list {template}'s difference"
    for template in FAILS:
        assert f"`{template}`" in spark_section, f"docs/local-clean-room.md does not list {template}'s failure"


@pytest.mark.parametrize("construct", sorted(REFUSED))
def test_what_the_pages_mark_unsupported_is_refused_citing_them(tmp_path, collab, construct):  # noqa: F811
    sql, message = REFUSED[construct]
    found = validate(parse_query(write_template(tmp_path, "refused", sql)), collab)
    assert any(message in str(r) and f"[{REFUSED_PAGE[construct]}" in str(r) for r in found.refusals), [
        str(r) for r in found.refusals]


def test_a_query_the_pages_support_beside_the_refused_ones_is_not_refused(tmp_path, collab):  # noqa: F811
    sql = ("SELECT r.region, COUNT(*) AS n FROM retail_purchases r WHERE r.region = r.age_group OR r.order_count > 3 "
           "GROUP BY r.region")
    assert not validate(parse_query(write_template(tmp_path, "fine", sql)), collab).refusals

"""Data access budgets in the local clean room: per period, lifetime, renewal, refusal, concurrency, `budget --local`.

The shipped stacks declare no accessBudget; these tests copy the stack files into
tmp_path with one added (``override``) and let the local room read the copies.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from localroom import access as access_module
from localroom.access import AccessExhausted, AccessLedger, AccessLedgerError, period_bounds
from model.collaboration import from_stack_files
from model.config import AccessBudgetSpec
from queryrunner import cli
from tests.harness import ROOT
from tests.test_localroom import Clock
from tests.test_localroom_cli import Runner
from tests.test_validator import write_template

UTC = dt.timezone.utc
DAY2 = AccessBudgetSpec(period="CALENDAR_DAY", period_budget=2)


def ledger(tmp_path: Path, clock: Clock, **budgets: AccessBudgetSpec) -> AccessLedger:
    return AccessLedger(tmp_path / "org-a" / "access-budget.json", "org-a",
                        {table: ("org-b", spec) for table, spec in budgets.items()}, clock)


def remaining(status) -> dict[str, int]:
    return {d["budgetType"]: d["remainingBudget"] for d in status.details}


# --------------------------------------------------------------------------
# The ledger


def test_a_period_budget_is_used_up_then_renews_with_the_next_period(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    book = ledger(tmp_path, clock, media_engagement=DAY2)
    assert book.charge(["media_engagement", "retail_purchases"], "r1", "t") == ["media_engagement"]  # no budget: free
    book.charge(["media_engagement"], "r2", "t")
    (spent,) = book.blocked(["media_engagement", "retail_purchases"])
    assert spent.aggregate_remaining == 0 and spent.renews_at() == dt.datetime(2026, 11, 26, tzinfo=UTC)
    assert spent.refusal() == ("table 'media_engagement' has no access budget left (CALENDAR_DAY 0 of 2 left until "
                               "2026-11-26T00:00:00+00:00); the period renews at 2026-11-26T00:00:00+00:00")
    with pytest.raises(AccessExhausted, match="CALENDAR_DAY 0 of 2 left"):
        book.charge(["media_engagement"], "r3", "t")
    assert [u.run_id for u in book.uses("media_engagement")] == ["r1", "r2"]  # the refused charge wrote nothing
    clock.when = dt.datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # midnight UTC: a new day
    assert book.blocked(["media_engagement"]) == []
    assert remaining(book.status("media_engagement")) == {"CALENDAR_DAY": 2}
    book.charge(["media_engagement"], "r4", "t")
    assert remaining(book.status("media_engagement")) == {"CALENDAR_DAY": 1}


@pytest.mark.parametrize("period, last, first", [
    # ISO weeks start on Monday: 2026-11-29 is a Sunday.
    ("CALENDAR_WEEK", dt.datetime(2026, 11, 29, 23, 59, 59), dt.datetime(2026, 11, 30)),
    ("CALENDAR_MONTH", dt.datetime(2026, 12, 31, 23, 59, 59), dt.datetime(2027, 1, 1)),
])
def test_weeks_and_months_roll_over_in_utc(tmp_path, period, last, first):
    clock = Clock(last.replace(tzinfo=UTC))
    book = ledger(tmp_path, clock, t=AccessBudgetSpec(period=period, period_budget=1))
    book.charge(["t"], "r1", "x")
    (spent,) = book.blocked(["t"])
    assert spent.renews_at() == first.replace(tzinfo=UTC)
    clock.when = first.replace(tzinfo=UTC)
    assert book.blocked(["t"]) == []
    # A time in another zone is placed in its UTC period.
    local = dt.timezone(dt.timedelta(hours=-5))
    assert period_bounds(period, last.replace(tzinfo=UTC).astimezone(local))[1] == first.replace(tzinfo=UTC)


def test_a_lifetime_budget_never_renews_and_the_lower_remainder_decides(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=UTC))
    book = ledger(tmp_path, clock, t=AccessBudgetSpec(period="CALENDAR_DAY", period_budget=2, lifetime=3))
    book.charge(["t"], "r1", "x")
    book.charge(["t"], "r2", "x")
    status = book.status("t")
    assert remaining(status) == {"CALENDAR_DAY": 0, "LIFETIME": 1} and status.aggregate_remaining == 0
    assert status.renews_at() == dt.datetime(2026, 11, 26, tzinfo=UTC)  # only the period is spent
    clock.when += dt.timedelta(days=1)
    book.charge(["t"], "r3", "x")
    status = book.status("t")
    assert remaining(status) == {"CALENDAR_DAY": 1, "LIFETIME": 0} and status.exhausted
    assert status.renews_at() is None and "it does not renew: its owner org-b raises or edits accessBudget" in \
        status.refusal()
    clock.when += dt.timedelta(days=400)
    assert book.status("t").exhausted


def test_a_period_budget_without_auto_refresh_does_not_renew(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=UTC))
    book = ledger(tmp_path, clock, t=AccessBudgetSpec(period="CALENDAR_WEEK", period_budget=1, auto_refresh=False))
    book.charge(["t"], "r1", "x")
    clock.when += dt.timedelta(days=30)
    (spent,) = book.blocked(["t"])
    (detail,) = spent.details
    assert detail["autoRefresh"] == "DISABLED" and detail["endTime"] is None
    assert detail["startTime"] == dt.datetime(2026, 11, 23, tzinfo=UTC)  # the week it started in
    assert "CALENDAR_WEEK 0 of 1 left, does not renew (autoRefresh false)" in spent.refusal()
    assert spent.renews_at() is None


def test_editing_a_budget_resets_its_balance(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=UTC))
    book = ledger(tmp_path, clock, t=AccessBudgetSpec(lifetime=1))
    book.charge(["t"], "r1", "x")
    assert book.status("t").exhausted
    edited = ledger(tmp_path, clock, t=AccessBudgetSpec(lifetime=2))
    assert remaining(edited.status("t")) == {"LIFETIME": 2}  # "it resets the current budget balance"
    edited.charge(["t"], "r2", "x")
    assert [u.run_id for u in edited.uses("t")] == ["r2"]


def test_a_charge_is_all_or_nothing_and_can_be_taken_back(tmp_path):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=UTC))
    book = ledger(tmp_path, clock, a=AccessBudgetSpec(lifetime=5), b=AccessBudgetSpec(lifetime=1))
    book.charge(["b"], "r1", "x")
    before = book.path.read_text()
    with pytest.raises(AccessExhausted, match="table 'b'"):
        book.charge(["a", "b"], "r2", "x")
    assert book.path.read_text() == before and book.uses("a") == []
    book.charge(["a"], "r3", "x")
    book.uncharge("r3")
    assert book.uses("a") == [] and [u.run_id for u in book.uses("b")] == ["r1"]


def test_a_broken_file_is_an_error_naming_it_and_a_failed_write_changes_nothing(tmp_path, monkeypatch):
    clock = Clock(dt.datetime(2026, 11, 25, 12, tzinfo=UTC))
    book = ledger(tmp_path, clock, t=AccessBudgetSpec(lifetime=5))
    book.charge(["t"], "r1", "x")
    before = book.path.read_text()

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("localroom.ledger.os.replace", crash)
    with pytest.raises(AccessLedgerError, match="cannot write the access budget file .*No space left on device"):
        book.charge(["t"], "r2", "x")
    monkeypatch.undo()
    assert book.path.read_text() == before and not list(book.path.parent.glob("*.tmp"))
    book.path.write_text("{not json")
    with pytest.raises(AccessLedgerError, match="cannot read the access budget file .*access-budget.json"):
        book.status("t")


def _charge_many(path: str, attempts: int, worker: int, results) -> None:
    book = AccessLedger(Path(path), "org-a", {"t": ("org-b", AccessBudgetSpec(lifetime=10))})
    won = 0
    for i in range(attempts):
        try:
            book.charge(["t"], f"w{worker}-{i}", "x")
            won += 1
        except AccessExhausted:
            pass
    results.put(won)


def test_concurrent_runs_never_use_more_than_the_budget(tmp_path):
    path = tmp_path / "org-a" / "access-budget.json"
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_charge_many, args=(str(path), 3, w, results)) for w in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    won = sum(results.get(timeout=5) for _ in workers)
    data = json.loads(path.read_text())  # whole: every write replaced the file at once
    assert won == 10 == len(data["tables"]["t"]["uses"])
    assert len({u["run_id"] for u in data["tables"]["t"]["uses"]}) == 10
    assert not list(path.parent.glob("*.tmp"))


# --------------------------------------------------------------------------
# The command line, over stack files with an accessBudget


def override(monkeypatch, tmp_path: Path, changes: dict[str, dict]) -> None:
    """Copies of the shipped stack files with ``changes`` (stack -> config key -> value) made; the room reads them."""
    import yaml

    from model import collaboration

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    for stack in ("org-a", "org-b"):
        document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
        document["config"].update(changes.get(stack, {}))
        (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    real = collaboration.load_stack
    monkeypatch.setattr(collaboration, "load_stack", lambda stack, _root=None, *a, **k: real(stack, root, *a, **k))


MEDIA_DAY1_LIFETIME5 = {"org-b": {"cleanrooms-collab:accessBudget": {
    "perPeriod": {"period": "CALENDAR_DAY", "budget": 1}, "lifetime": 5}}}


@pytest.fixture
def budgeted(monkeypatch, tmp_path):
    """The collaboration with org B's table usable once a day (and 5 times in all); the clock in our hands."""
    override(monkeypatch, tmp_path, MEDIA_DAY1_LIFETIME5)
    clock = Clock(dt.datetime(2026, 11, 25, 9, tzinfo=UTC))
    monkeypatch.setattr(access_module, "utcnow", clock)
    return Runner(tmp_path), clock


def access_file(runner: Runner) -> dict:
    path = runner.state / "org-a" / "access-budget.json"
    return json.loads(path.read_text()) if path.exists() else {"tables": {}}


def uses(runner: Runner, table: str = "media_engagement") -> list[str]:
    return [u["by"] for u in access_file(runner)["tables"].get(table, {}).get("uses", [])]


def test_the_collaboration_carries_each_producers_access_budget(monkeypatch, tmp_path):
    assert all(t.access_budget is None for t in from_stack_files("org-a")[1].tables.values())  # the shipped stacks
    override(monkeypatch, tmp_path, MEDIA_DAY1_LIFETIME5)
    _, collab = from_stack_files("org-a")
    assert collab.tables["media_engagement"].access_budget == AccessBudgetSpec(
        period="CALENDAR_DAY", period_budget=1, auto_refresh=True, lifetime=5)
    assert collab.tables["retail_purchases"].access_budget is None


def test_a_template_over_an_exhausted_table_is_refused_with_one_line_and_nothing_charged(budgeted):
    local, clock = budgeted
    code, _, err = local("run", "customer_segments", "--seed", "1")
    assert code == 0, err
    assert uses(local) == ["customer_segments"]
    before = (access_file(local), local.ledger(), local.results("customer_segments"))
    code, out, err = local("run", "customer_segments", "--seed", "1")
    assert code == 1 and out == "" and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "refusing" in line]
    assert line == ("[customer_segments] refusing to run 'customer_segments': table 'media_engagement' has no access "
                    "budget left (CALENDAR_DAY 0 of 1 left until 2026-11-26T00:00:00+00:00; LIFETIME 4 of 5 left); "
                    "the period renews at 2026-11-26T00:00:00+00:00")
    # Refused: no result, no privacy budget and no access budget spent.
    assert (access_file(local), local.ledger(), local.results("customer_segments")) == before
    clock.when = dt.datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC)  # the next day (UTC): the period renewed
    code, _, err = local("run", "customer_segments", "--seed", "1")
    assert code == 0, err
    assert uses(local) == ["customer_segments", "customer_segments"]


def test_run_all_runs_what_fits_in_order_and_reports_the_rest_refused(budgeted):
    local, _ = budgeted
    code, out, err = local("run", "--all", "--seed", "1")
    assert code == 1
    assert ("warning: table 'media_engagement' can be used 1 more time but 2 templates read it (channel_reach, "
            "customer_segments); they run in this order and the ones past its access budget are refused") in err
    assert len(local.results("channel_reach")) == 1 and local.results("customer_segments") == []
    summary = out.split("== summary ==")[1]
    assert [line.split("|")[1].strip() for line in summary.splitlines()[3:5]] == ["SUCCESS", "REFUSED"]
    assert "ACCESS_BUDGET" in summary
    assert uses(local) == ["channel_reach"]
    assert [c["template"] for c in local.ledger()["charges"]] == ["channel_reach"]


def test_a_failed_run_charges_no_access_budget(budgeted, tmp_path):
    local, _ = budgeted
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    write_template(data / "queries", "bad_regex", "SELECT m.region, SUM(CASE WHEN REGEXP_EXTRACT(m.region, '(', 1) = '' "
                                                 "THEN 1 ELSE 0 END) AS x FROM media_engagement m GROUP BY m.region")
    code, _, err = local("run", "bad_regex", "--data-dir", str(data))
    assert code == 1 and "[bad_regex] FAILED:" in err
    assert uses(local) == []


def test_budget_local_prints_the_access_budgets_after_the_privacy_budget(budgeted):
    local, _ = budgeted
    code, out, _ = local("budget")
    assert code == 0
    dp, access = out.split("\n\n")
    assert dp.splitlines()[0].split() == ["budget", "|", "epsilon", "|", "aggregation", "|", "remaining", "|", "max",
                                          "|", "remaining", "%"]
    assert access.splitlines() == [
        "== access budgets (how many more times each table may be used) ==",
        "table            | budget type  | remaining | budget | period start              | period end                | usable now",
        "-----------------+--------------+-----------+--------+---------------------------+---------------------------+-----------",
        "media_engagement | CALENDAR_DAY |         1 |      1 | 2026-11-25T00:00:00+00:00 | 2026-11-26T00:00:00+00:00 |          1",
        "media_engagement | LIFETIME     |         5 |      5 | -                         | -                         |          1",
        "(2 rows)"]
    assert local("run", "channel_reach", "--seed", "1")[0] == 0
    out = local("budget")[1]
    assert "media_engagement | CALENDAR_DAY |         0 |      1 |" in out
    assert "media_engagement | LIFETIME     |         4 |      5 | 2026-11-25T09:00:00+00:00 |" in out


def test_budget_local_without_access_budgets_says_every_table_is_unlimited(tmp_path):
    stdout = io.StringIO()
    assert cli.main(["budget", "--local", "--state-dir", str(tmp_path)], stdout=stdout) == 0
    assert stdout.getvalue().endswith("\n\nno access budgets in this collaboration (every table may be used without "
                                      "limit)\n")

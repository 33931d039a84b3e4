"""Data access budgets in the local clean room: how many more times each table may be used.

What the service does (AWS Clean Rooms User Guide, configure-data-access-budget;
API AccessBudget / AccessBudgetDetails): a table's owner may "set a limit on the
number of times a table can be used in queries, PySpark jobs, and ML jobs. Each
time a table is queried, a PySpark job is run on the table [...] the budget for
that table is reduced by one. When the budget reaches zero, you can't run
queries, PySpark jobs, or ML jobs on that table." A per period budget
(CALENDAR_DAY, CALENDAR_WEEK, CALENDAR_MONTH) "refreshes periodically" when its
autoRefresh is ENABLED ("The budget refreshes automatically at the start of each
period"; DISABLED: "The budget must be refreshed manually"); a LIFETIME budget
limits the total. "When you edit a data access budget, it resets the current
budget balance." aggregateRemainingBudget is the lower of the remainders.

The local room reads each table's budget from its owner's stack file
(``accessBudget``, model.collaboration.Table.access_budget) and keeps the uses
in ``<state dir>/<analyst stack>/access-budget.json``, beside the privacy
budget ledger and under the same discipline (localroom/ledger.py: every
read-modify-write under an exclusive lock, the file replaced atomically):

    {"version": 1, "stack": "org-a",
     "tables": {"<association name>": {
         "budget": {"period": ..., "periodBudget": ..., "autoRefresh": ..., "lifetime": ...},
         "since": "<when this budget was first charged>",
         "uses": [{"at": "<UTC>", "run_id": "...", "by": "<template or job:name>"}]}}}

Choices where the service's documentation says nothing exact:
- Calendar periods are UTC: a day from 00:00, a week from Monday 00:00 (ISO
  weeks), a month from the 1st 00:00.
- autoRefresh ENABLED: only the uses in the current calendar period count
  against the period budget. DISABLED: the period budget never renews by
  itself, so every use since the budget was set counts (what "must be
  refreshed manually" leaves: the balance stays where it is when a period
  ends); the manual refresh is an edit of ``accessBudget`` in the owner's stack
  file, which, as an edit in the service does, resets the balance.
- A budget that differs from the one recorded with the uses is an edit: the
  uses recorded under the old one no longer count (the next charge replaces
  them).
- Only successful runs use a table (the room charges when it keeps a result),
  one use per table a run reads, however often the SQL names it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from localroom.ledger import LedgerError, locked, period_bounds, write_atomically
from model.config import AccessBudgetSpec

VERSION = 1
FILE_NAME = "access-budget.json"
LIFETIME = "LIFETIME"


def utcnow() -> dt.datetime:
    """The clock every AccessLedger reads unless given its own (tests replace it)."""
    return dt.datetime.now(dt.timezone.utc)


class AccessLedgerError(LedgerError):
    """The access budget file cannot be read or written (exit 1; nothing was charged)."""


class AccessExhausted(Exception):
    """A table the run reads has no use left (exit 1, refused; nothing was charged)."""

    def __init__(self, statuses: list["TableAccess"]):
        self.statuses = statuses
        super().__init__("; ".join(s.refusal() for s in statuses))


@dataclass(frozen=True)
class Use:
    at: dt.datetime
    run_id: str
    by: str


@dataclass
class TableAccess:
    """One table's access budget now, in the service's AccessBudget shape (details in botocore's keys)."""

    table: str
    owner: str
    spec: AccessBudgetSpec
    details: list[dict] = field(default_factory=list)

    @property
    def aggregate_remaining(self) -> int:
        return min(d["remainingBudget"] for d in self.details)

    @property
    def exhausted(self) -> bool:
        return self.aggregate_remaining <= 0

    def renews_at(self) -> dt.datetime | None:
        """When the table can be used again: the end of the period, if only a renewing period budget is spent."""
        spent = [d for d in self.details if d["remainingBudget"] <= 0]
        if spent and all(d["budgetType"] != LIFETIME and d["autoRefresh"] == "ENABLED" for d in spent):
            return max(d["endTime"] for d in spent)
        return None

    def describe(self) -> str:
        """Like the cloud runner's AccessBudget.describe, plus whether a period budget renews."""
        parts = []
        for d in self.details:
            text = f"{d['budgetType']} {d['remainingBudget']} of {d['budget']} left"
            if d["budgetType"] != LIFETIME:
                text += (f" until {d['endTime'].isoformat(timespec='seconds')}" if d["autoRefresh"] == "ENABLED"
                         else ", does not renew (autoRefresh false)")
            parts.append(text)
        return "; ".join(parts)

    def refusal(self) -> str:
        """Why the table cannot be used now, and when it can again (one line)."""
        when = self.renews_at()
        if when is not None:
            after = f"the period renews at {when.isoformat(timespec='seconds')}"
        else:
            after = (f"it does not renew: its owner {self.owner} raises or edits accessBudget in its stack file "
                     "(an edit resets the balance)")
        return f"table {self.table!r} has no access budget left ({self.describe()}); {after}"


class AccessLedger:
    """The uses of every table with an access budget, for one collaboration (the analyst's stack)."""

    def __init__(self, path: Path, stack: str, budgets: Mapping[str, tuple[str, AccessBudgetSpec]],
                 now: Callable[[], dt.datetime] | None = None):
        """``budgets``: association name -> (owner's name, its accessBudget), for the tables that have one."""
        self.path, self.stack, self.budgets, self._now = Path(path), stack, dict(budgets), now

    def now(self) -> dt.datetime:
        return (self._now or utcnow)()

    # -- reading ------------------------------------------------------------
    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            tables = data["tables"]
            for section in tables.values():  # parse everything now: a broken file fails here, not mid-run
                section["since"] = dt.datetime.fromisoformat(section["since"])
                section["uses"] = [Use(dt.datetime.fromisoformat(u["at"]), str(u["run_id"]), str(u["by"]))
                                   for u in section["uses"]]
                dict(section["budget"])
            return tables
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AccessLedgerError(f"cannot read the access budget file {self.path}: {exc}; move it aside to "
                                    "start every table's budget afresh") from None

    def _current(self, tables: dict, table: str) -> dict | None:
        """The table's section if it was recorded under the budget its owner sets now (else it was edited)."""
        section = tables.get(table)
        if section is None or section["budget"] != self.budgets[table][1].export():
            return None
        return section

    def uses(self, table: str) -> list[Use]:
        section = self._current(self._read(), table)
        return list(section["uses"]) if section else []

    def status(self, table: str, tables: dict | None = None) -> TableAccess | None:
        """The table's budget now; None when it has none (its use is unlimited)."""
        if table not in self.budgets:
            return None
        owner, spec = self.budgets[table]
        section = self._current(self._read() if tables is None else tables, table)
        uses = section["uses"] if section else []
        since = section["since"] if section else None
        now = self.now()
        details = []
        if spec.period is not None:
            if spec.auto_refresh:
                start, end = period_bounds(spec.period, now)
                used = sum(1 for u in uses if start <= u.at < end)
            else:  # never renews: every use since the budget was set counts
                start, end = period_bounds(spec.period, since or now)[0], None
                used = len(uses)
            details.append({"budgetType": spec.period, "budget": spec.period_budget,
                            "remainingBudget": max(0, spec.period_budget - used), "startTime": start,
                            "endTime": end, "autoRefresh": "ENABLED" if spec.auto_refresh else "DISABLED"})
        if spec.lifetime is not None:
            details.append({"budgetType": LIFETIME, "budget": spec.lifetime,
                            "remainingBudget": max(0, spec.lifetime - len(uses)), "startTime": since,
                            "endTime": None, "autoRefresh": None})
        return TableAccess(table, owner, spec, details)

    def statuses(self) -> list[TableAccess]:
        tables = self._read()
        return [self.status(t, tables) for t in sorted(self.budgets)]

    def blocked(self, tables: Iterable[str]) -> list[TableAccess]:
        """The tables among ``tables`` with no use left now."""
        data = self._read()
        found = [self.status(t, data) for t in sorted(set(tables))]
        return [s for s in found if s is not None and s.exhausted]

    # -- writing ------------------------------------------------------------
    def charge(self, tables: Iterable[str], run_id: str, by: str) -> list[str]:
        """One use of each budgeted table in ``tables``, all or none, checked and written under the lock.

        AccessExhausted (nothing written) when one has no use left: a concurrent
        run took the last one after this run's check. Returns the tables charged.
        """
        wanted = sorted({t for t in tables if t in self.budgets})
        if not wanted:
            return []
        with locked(self.path, "the access budget file", AccessLedgerError):
            data = self._read()
            spent = [s for s in (self.status(t, data) for t in wanted) if s.exhausted]
            if spent:
                raise AccessExhausted(spent)
            now = self.now()
            for table in wanted:
                section = self._current(data, table)
                if section is None:  # first use under this budget (new, or edited: the balance resets)
                    section = data[table] = {"budget": self.budgets[table][1].export(), "since": now, "uses": []}
                section["uses"].append(Use(now, run_id, by))
            self._write(data)
        return wanted

    def uncharge(self, run_id: str) -> None:
        """Take back a run's uses (its result could not be kept)."""
        with locked(self.path, "the access budget file", AccessLedgerError):
            data = self._read()
            for section in data.values():
                section["uses"] = [u for u in section["uses"] if u.run_id != run_id]
            self._write(data)

    def _write(self, tables: dict) -> None:
        write_atomically(self.path, {"version": VERSION, "stack": self.stack, "tables": {
            name: {"budget": section["budget"], "since": section["since"].isoformat(),
                   "uses": [{"at": u.at.isoformat(), "run_id": u.run_id, "by": u.by} for u in section["uses"]]}
            for name, section in sorted(tables.items())}})

"""The local privacy budget: one ledger file per stack, charged by every successful run.

Shaped like the service's (API PrivacyBudget, DifferentialPrivacyPrivacyBudget
Aggregation): per aggregation type a maxCount (what the whole budget pays for,
localroom/privacy.py) and a remainingCount. A run spends the fraction
sum(n_t / maxCount_t) of the budget over its aggregations; what remains is one
fraction shared by every type, as one epsilon is shared in the service.

autoRefresh CALENDAR_MONTH starts a new budget each calendar month (UTC;
PrivacyBudgetTemplate.autoRefresh: "automatically get a new privacy budget for
the collaboration every calendar month"): only the current month's charges
count. NONE: every charge counts, forever.

A run is charged before it reads any data (``reserve``): the check that the
budget can pay and the charge are one read-modify-write under an exclusive
lock, so runs at the same time can never spend more than the budget between
them. A run that ends without releasing anything (refused later, interrupted,
its result not saved) is ``uncharge``d; a run whose engine failed keeps its
charge, since whether it failed can depend on the data (``settle``).

The file is replaced atomically (written beside it, then renamed) under an
exclusive lock, so a crash or a concurrent run never leaves it half-written.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from localroom.privacy import Calibration
from model.budget import AGG_TYPES, Budget, Impact

VERSION = 1


class LedgerError(Exception):
    """The ledger file cannot be read or written (exit 1; nothing was charged)."""


class BudgetRefused(Exception):
    """What is left of the budget cannot pay for a run, or would be exhausted without leave (nothing charged)."""

    def __init__(self, impact: Impact):
        super().__init__(impact.describe())
        self.impact = impact


RESERVED, RELEASED, FAILED = "reserved", "released", "failed"


@dataclass(frozen=True)
class Charge:
    at: dt.datetime
    template: str
    run_id: str
    usage: dict[str, int]
    fraction: float
    state: str = RELEASED
    """reserved (running), released (its result was saved) or failed (charged: the failure is a release too)."""
    owner: dict | None = None
    """Of a reservation: the process that runs it (host, pid, its start) and the result it will write."""

    def abandoned(self) -> bool:
        """A reservation whose process is gone (SIGKILL, a crash, a closed laptop) without writing its result.

        It released nothing, so it is not charged (``spent``) and the next reservation drops it. A run that
        died after its result file appeared stays charged: it may have been seen.
        """
        if self.state != RESERVED or not self.owner:
            return False
        if self.owner.get("host") != socket.gethostname() or _alive(self.owner.get("pid"), self.owner.get("started")):
            return False
        return not Path(self.owner.get("result", "")).exists()


class Ledger:
    def __init__(self, path: Path, stack: str, calibration: Calibration, auto_refresh: str,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.path, self.stack, self.calibration, self.auto_refresh, self.now = (
            Path(path), stack, calibration, auto_refresh, now)

    # -- reading ------------------------------------------------------------
    def charges(self) -> list[Charge]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [Charge(dt.datetime.fromisoformat(c["at"]), c["template"], c["run_id"], dict(c["usage"]),
                           float(c["fraction"]), str(c.get("state", RELEASED)), c.get("owner"))
                    for c in data["charges"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"cannot read the privacy budget ledger {self.path}: {exc}; move it aside to "
                              "start a new budget") from None

    def period_start(self) -> dt.datetime | None:
        if self.auto_refresh != "CALENDAR_MONTH":
            return None
        return period_bounds("CALENDAR_MONTH", self.now())[0]

    def spent(self, charges: list[Charge] | None = None) -> float:
        start = self.period_start()
        return sum(c.fraction for c in (self.charges() if charges is None else charges)
                   if (start is None or c.at >= start) and not c.abandoned())

    def budget(self, charges: list[Charge] | None = None) -> Budget:
        """What `budget` shows, in the service's shape."""
        remaining = max(0.0, 1.0 - self.spent(charges))
        maxima = self.calibration.max_counts()
        return Budget(id=f"local-{self.stack}", template_id=f"local-{self.stack}", epsilon=self.calibration.epsilon,
                      aggregations={t: (maxima[t], int(remaining * maxima[t] + 1e-9)) for t in AGG_TYPES})

    def cost(self, usage: Counter) -> float:
        """Fraction of a whole budget one run with these aggregations spends."""
        total = 0.0
        for agg, count in usage.items():
            maximum = self.calibration.max_count(agg)
            total += count / maximum if maximum else float("inf")
        return total

    def impact(self, usage: Counter, charges: list[Charge] | None = None) -> Impact:
        charges = self.charges() if charges is None else charges
        return Impact(self.budget(charges), usage, self.cost(usage), max(0.0, 1.0 - self.spent(charges)))

    # -- writing ------------------------------------------------------------
    def reserve(self, template: str, run_id: str, usage: Counter, allow_exhaustion: bool = False,
                result: Path | None = None) -> Charge:
        """Charge a run before it reads any data, if what is left pays for it: check and charge in one lock.

        ``result`` is the file the run will write: if its process dies before writing it, the reservation
        is abandoned and costs nothing. Raises BudgetRefused (nothing charged) when the budget cannot
        pay, or when the run would exhaust it and ``allow_exhaustion`` is not given.
        """
        with self._locked():
            charges = [c for c in self.charges() if not c.abandoned()]
            impact = self.impact(usage, charges)
            if not impact.affordable or (impact.exhausts and not allow_exhaustion):
                raise BudgetRefused(impact)
            owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid()),
                     "result": str(Path(result).resolve()) if result else ""}
            charge = Charge(self.now(), template, run_id, dict(usage), impact.cost, RESERVED, owner)
            self._write(charges + [charge])
        return charge

    def settle(self, run_id: str, state: str) -> None:
        """Mark a reserved charge released or failed (it stays charged either way)."""
        with self._locked():
            self._write([Charge(c.at, c.template, c.run_id, c.usage, c.fraction, state) if c.run_id == run_id else c
                         for c in self.charges()])

    def released(self, template: str) -> list[Charge]:
        """This period's charges of ``template`` whose result was saved (what a resumed run need not repeat)."""
        start = self.period_start()
        return [c for c in self.charges() if c.template == template and c.state == RELEASED
                and (start is None or c.at >= start)]

    def charge(self, template: str, run_id: str, usage: Counter) -> Charge:
        """Charge a run that has released its result (no check: see ``reserve``)."""
        charge = Charge(self.now(), template, run_id, dict(usage), self.cost(usage))
        with self._locked():
            charges = self.charges() + [charge]
            self._write(charges)
        return charge

    def uncharge(self, run_id: str) -> None:
        """Take back a run's charge: it released nothing (refused later, interrupted, its result not saved)."""
        with self._locked():
            self._write([c for c in self.charges() if c.run_id != run_id])

    def _locked(self):
        return locked(self.path, "the privacy budget ledger", LedgerError)

    def _write(self, charges: list[Charge]) -> None:
        write_atomically(self.path, {
            "version": VERSION, "stack": self.stack, "epsilon": self.calibration.epsilon,
            "usersNoisePerQuery": self.calibration.users_noise_per_query, "autoRefresh": self.auto_refresh,
            "charges": [{"at": c.at.isoformat(), "template": c.template, "run_id": c.run_id,
                         "usage": c.usage, "fraction": c.fraction, "state": c.state,
                         **({"owner": c.owner} if c.owner else {})} for c in charges]})


def _started(pid: int) -> str | None:
    """When process ``pid`` started (Linux: field 22 of /proc/PID/stat), so a reused pid is not taken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid, started) -> bool:
    """Whether the process that made a reservation still runs."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _started(pid) == started


def period_bounds(period: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The calendar period (UTC) that holds ``now``: [start, end).

    The privacy budget's month (autoRefresh CALENDAR_MONTH) and the access budgets' periods.
    """
    now = now.astimezone(dt.timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "CALENDAR_DAY":
        return day, day + dt.timedelta(days=1)
    if period == "CALENDAR_WEEK":
        start = day - dt.timedelta(days=day.weekday())  # Monday
        return start, start + dt.timedelta(days=7)
    if period == "CALENDAR_MONTH":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise ValueError(f"not a calendar period: {period!r}")


# The discipline every state file of the local room follows (this ledger, localroom/access.py's):
# read-modify-write under an exclusive lock on a sibling .lock file, and the file replaced by a
# rename of a fully written and fsynced temporary file beside it.
@contextmanager
def locked(path: Path, what: str, error: type[Exception]) -> Iterator[None]:
    """An exclusive lock on ``path``'s sibling ``.lock`` file for one read-modify-write of ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    except OSError as exc:
        raise error(f"cannot write {what} {path}: {exc.strerror}") from None


def write_atomically(path: Path, data: dict) -> None:
    """``data`` as JSON in ``path``: written beside it, fsynced, then renamed over it (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

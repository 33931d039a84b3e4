"""The local run journal: which templates of a `run --local` have released their result.

A run killed mid-way (SIGKILL, a closed laptop, a CI timeout) leaves its journal
``running``; a re-run of the same command, or ``--resume``, skips the templates
whose results it saved, so nothing released is released (and charged to the
privacy budget) twice. What a killed run reserved but never wrote costs nothing
(localroom/ledger.Charge.abandoned). One file per stack and scope,
``<state dir>/<stack>/journal-<all|template>.json``, replaced atomically as the
ledger is (localroom/ledger.write_atomically).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from localroom.ledger import locked, write_atomically
from model import json_files
from model.json_files import STRICT

VERSION = 1
RUNNING, INTERRUPTED, FINISHED = "running", "interrupted", "finished"


class JournalError(Exception):
    """A journal that cannot be used for --resume (missing, finished, another run's, damaged): exit 2."""


@dataclass
class Journal:
    path: Path
    identity: dict
    """What a resumed run must share with the journal's: the templates with their parameter values, the data."""
    done: dict[str, dict] = field(default_factory=dict)
    started: str = ""
    note: str = ""
    """What the runner tells the user about the journal it found (resuming, or starting afresh)."""

    @classmethod
    def open(cls, state: Path, stack: str, scope: str, identity: dict, resume: bool) -> "Journal":
        """The journal for this run: an unfinished one of the same run is resumed; --resume demands one."""
        path = Path(state) / stack / f"journal-{scope}.json"
        found = _read(path)
        journal = cls(path, identity, started=dt.datetime.now(dt.timezone.utc).isoformat())
        if found is None or found.status == FINISHED:
            if resume:
                when = f"finished at {found.finished}" if found else "not found"
                raise JournalError(f"--resume: no unfinished run to resume ({path} is {when}); run without "
                                   "--resume to start one")
            return journal
        if found.identity != identity:
            if resume:
                raise JournalError(f"--resume: {path} is of another run (its templates, parameters or data folder "
                                   "differ from these); run without --resume to start afresh")
            journal.note = (f"the unfinished run in {path} was of other templates, parameters or data; "
                            "starting afresh")
            return journal
        kept = {name: entry.model_dump() for name, entry in found.done.items() if Path(entry.path).is_file()}
        journal.done, journal.started = kept, found.started or journal.started
        journal.note = (f"resuming the {found.status} run of {journal.started} ({path}): "
                        + (f"{len(kept)} template(s) already have their result and are not run again: "
                           f"{', '.join(sorted(kept))}" if kept else "no template had saved its result"))
        return journal

    def begin(self) -> None:
        self._write(RUNNING)

    def released(self, template: str, run_id: str, result: Path) -> None:
        self.done[template] = {"run_id": run_id, "path": str(result)}
        self._write(RUNNING)

    def end(self, status: str = FINISHED) -> None:
        self._write(status)

    def _write(self, status: str) -> None:
        record = {"version": VERSION, "status": status, "started": self.started, "identity": self.identity,
                  "done": self.done}
        if status != RUNNING:
            record[status] = dt.datetime.now(dt.timezone.utc).isoformat()
        with locked(self.path, "the run journal", JournalError):
            write_atomically(self.path, record)


_Version = json_files.version_field(VERSION)


class _Released(BaseModel):
    model_config = STRICT
    run_id: str
    path: str


class _JournalFile(BaseModel):
    """The file as _write writes it: every field Journal.open and the runner (queryrunner/local.py) read."""

    model_config = STRICT
    version: _Version
    status: Literal[RUNNING, INTERRUPTED, FINISHED]
    started: str = ""
    identity: dict[str, Any]
    done: dict[str, _Released] = {}
    finished: str | None = None


def _read(path: Path) -> _JournalFile | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"the run journal {path} cannot be read ({exc}); move it aside to start afresh") from None
    try:
        return _JournalFile.model_validate_json(text)
    except ValidationError as exc:
        raise JournalError(f"the run journal {path} is damaged ({json_files.problem(exc, VERSION)}); move it aside "
                           "to start afresh") from None

"""Reading the data while the templates are checked: the DuckDB load begun early, in a thread.

A local run checks every template (model/validator), plans its noise and only
then reads the data. Checking is Python (it holds the GIL), the load is DuckDB
(it releases it), and importing the engine's libraries (numpy, pyarrow, OpenDP)
takes about as long as checking: so `run --local` starts the load of the tables
its templates name first, then imports, checks and plans while DuckDB reads (the room, ``localroom.engine.DuckDB(preload=...)``, waits for the load).

Nothing is released or charged by a load, and a refused template still stops
the run before anything runs: ``cancel`` interrupts the load, and a file that
does not match its schema is reported when the room asks for its tables
(``rows``), after the templates' own refusals, as without a preload. This
module imports nothing heavy itself, so that starting the load costs nothing.
"""
from __future__ import annotations

import threading
from pathlib import Path


class Preload:
    """``localroom.cache.load_tables`` of ``tables`` on a new DuckDB connection, in a daemon thread."""

    def __init__(self, tables: dict, cache_dir: Path | None):
        self.tables = dict(tables)
        self.cache_dir = cache_dir
        self.keys: dict = {}
        self.deferred: dict = {}
        self.con = None
        self._rows: dict | None = None
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._load, name="localroom-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            import duckdb

            from localroom.cache import load_tables

            self.con = duckdb.connect()
            if not self._cancelled.is_set():
                self._rows = load_tables(self.con, self.tables, self.cache_dir, keys=self.keys,
                                         deferred=self.deferred)
        except BaseException as exc:  # raised in the caller's thread, by rows()
            self._error = exc
        if self._cancelled.is_set() and self.con is not None:
            self.con.close()

    def connection(self):
        """The connection the tables are (being) loaded on, once the load is over."""
        self._thread.join()
        if self.con is None:  # duckdb could not be imported or connected: what that raised
            raise self._error
        return self.con

    def rows(self) -> dict:
        """The rows per alias, once loaded; what the load raised (a ConfigError naming file and line)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return dict(self._rows)

    def cancel(self) -> None:
        """Stop reading: the run will not use the tables (a template was refused). Does not wait."""
        self._cancelled.set()
        con = self.con
        if con is not None:
            try:
                con.interrupt()
            except Exception:  # closed or finished already
                pass

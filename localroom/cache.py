"""The local room's load cache: each data file's validated, typed table, kept on disk between runs.

A run loads each table with model.datasets.load_into (DuckDB reads the file,
every value checked as strictly as Spark's reader). With a cache folder (the
run's state folder's cache/, .localroom/cache/ by default), a background thread
then writes the table into a DuckDB database file of its own there while the run
goes on, and a later run over the same file with the same schema attaches that
file read-only (a view named by the alias) instead of reading and checking the
data again.

    <cache>/<key>.duckdb   one entry: table ``t``, the dataset's table as load_into made it. ``key`` is the
                           SHA-256 of the data file's content, the schema (columns, types, roles, values,
                           bounds), the data file's format, the loader (model/datasets.py's source and
                           LOADER_VERSION) and DuckDB's version: a change to any of them is a miss.
    <cache>/files.json     the content hash each data file had at a stat (size, mtime_ns, ctime_ns, inode,
                           device), so that an unchanged file is not read just to be hashed again.
    <cache>/.tmp-*         an entry being written: renamed to <key>.duckdb only once complete, so a failed,
                           interrupted or killed run leaves nothing a later run uses; removed on failure,
                           and when older than an hour (a killed run's).

A changed file is never served from the cache: any write to a file moves its
ctime (which no user can set back: restoring the size and the mtime does not
help), and a file renamed into place has another inode, so its stat no longer
matches and its content is hashed again. Stats are only trusted, and entries only
written, for files whose mtime and ctime are RACY_SECONDS older than the moment
they were read (as git does for its index): a file changed again within the
clock's resolution could otherwise keep its stat. The entry is hashed after the
table is read and the stat compared again after the hash, so a file that changed
meanwhile is used by this run but not cached.

Entries are written uncompressed (about 100 MiB per million rows of the shipped
schemas): DuckDB's compression at checkpoint costs about as much CPU as the load.
The folder is bounded by MAX_BYTES: the least recently used entries are removed
first (a hit touches its entry), never one this run uses.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

import model.datasets as datasets
from model.datasets import Dataset, load_into

LOADER_VERSION = "1"  # with the loader's source in the key; bump for a change outside model/datasets.py
MAX_BYTES = 2 * 1024 ** 3
RACY_SECONDS = 2.0
STALE_TMP_SECONDS = 3600
FILES = "files.json"
MAX_FILES = 256  # stats remembered
_LOADER_SOURCE: str | None = None
_LOCK = threading.Lock()
_PENDING: list[threading.Thread] = []


def load_tables(con, tables: dict[str, Dataset], cache_dir: Path | None,
                max_bytes: int = MAX_BYTES) -> dict[str, int]:
    """Each dataset as a table (or a view of its entry) named by its alias on ``con``; the rows per alias.

    Without ``cache_dir`` every file is read by load_into. With it, an unchanged file is
    attached from its entry, read-only; any other is read by load_into into memory, and
    written to a new entry by a background thread while the run goes on (the process waits
    for it before it exits; ``wait()`` waits for it here). A bad file raises ConfigError as
    load_into does and leaves no entry. A cache that cannot be written (a read-only or full
    disk) only costs the time: the tables are loaded anyway.
    """
    if cache_dir is None:
        return {alias: load_into(con, dataset, alias) for alias, dataset in tables.items()}
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {alias: load_into(con, dataset, alias) for alias, dataset in tables.items()}
    files = _Files(cache_dir)
    rows, used, todo = {}, set(), []
    for alias, dataset in tables.items():
        found, key, pending = _lookup(con, alias, dataset, cache_dir, files)
        if found is not None:
            rows[alias] = found
            used.add(key)
            continue
        rows[alias] = load_into(con, dataset, alias)  # ConfigError: nothing is written for this load
        if pending is not None:
            todo.append(pending)
    files.save()
    if todo:
        writer = threading.Thread(target=_write_entries, name="localroom-cache",
                                  args=(con.cursor(), todo, cache_dir, files, used, max_bytes))
        with _LOCK:
            _PENDING.append(writer)
        writer.start()
    else:
        _evict(cache_dir, used, max_bytes)
    return rows


def wait() -> None:
    """Wait for the entries being written in the background (the interpreter does so before it exits)."""
    while True:
        with _LOCK:
            if not _PENDING:
                return
            writer = _PENDING.pop()
        writer.join()


@dataclass
class _Pending:
    """A table loaded into memory that becomes an entry, unless its file turns out to have changed."""

    alias: str
    dataset: Dataset
    before: tuple  # the file's stat before it was read
    started: int  # time.time_ns() then
    content: str | None  # its SHA-256, when known already


def entry_key(dataset: Dataset, content: str) -> str:
    """The cache key of ``dataset`` whose data file's SHA-256 is ``content``."""
    schema = [[c.name, c.type, c.role, list(c.bounds) if c.bounds is not None else None,
               list(c.values) if c.values is not None else None] for c in dataset.columns]
    described = json.dumps({"content": content, "format": dataset.format, "schema": schema,
                            "loader": [LOADER_VERSION, _loader_source()], "duckdb": duckdb.__version__},
                           sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()


def _loader_source() -> str:
    global _LOADER_SOURCE
    if _LOADER_SOURCE is None:
        _LOADER_SOURCE = hashlib.sha256(Path(datasets.__file__).read_bytes()).hexdigest()
    return _LOADER_SOURCE


def _lookup(con, alias: str, dataset: Dataset, cache_dir: Path,
            files: "_Files") -> tuple[int | None, str | None, _Pending | None]:
    """(rows, key) of the entry attached as ``alias``, or (None, None, what to write once loaded)."""
    path = dataset.data_path
    try:
        before = _stat(path)
    except OSError:
        return None, None, None  # load_into says the file is missing
    started = time.time_ns()
    content = files.get(path, before)
    if content is None and files.seen(path):
        # A file this cache knew at another stat: rewritten, touched, copied back. Hash it now:
        # its content may well be one an entry holds.
        try:
            content = _sha256(path)
        except OSError:
            return None, None, None
    if content is not None:
        key = entry_key(dataset, content)
        rows = _attach(con, alias, cache_dir / f"{key}.duckdb")
        if rows is not None:
            if files.get(path, before) is None and _settled(before, started) and before == _stat(path):
                files.put(path, before, content)
            return rows, key, None
    if not _settled(before, started):  # changed too recently to trust its stat: never cached
        return None, None, None
    return None, None, _Pending(alias, dataset, before, started, content)


def _settled(stat: tuple, started: int) -> bool:
    """The file's last change (mtime and ctime) is RACY_SECONDS older than ``started`` (time.time_ns()).

    A file changed again within the clock's resolution could otherwise keep the same stat.
    """
    return max(stat[1], stat[2]) <= started - RACY_SECONDS * 1e9


def _write_entries(cursor, todo: list[_Pending], cache_dir: Path, files: "_Files", used: set[str],
                   max_bytes: int) -> None:
    """The background thread: each loaded table into <key>.duckdb, then the folder bounded."""
    try:
        for pending in todo:
            _write_entry(cursor, pending, cache_dir, files, used)
        _evict(cache_dir, used, max_bytes)
    except Exception:  # the cache is an optimisation: a failure to write it never fails a run
        pass
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.close()


def _write_entry(cursor, pending: _Pending, cache_dir: Path, files: "_Files", used: set[str]) -> None:
    tmp = cache_dir / f".tmp-{uuid.uuid4().hex}.duckdb"
    path = pending.dataset.data_path
    try:
        if not _write_table(cursor, pending.alias, tmp):
            return
        content = pending.content or _sha256(path)  # the file as the table was read from it, unless ...
        if _stat(path) != pending.before:  # ... it changed since (a change moves its ctime): not kept
            return
        key = entry_key(pending.dataset, content)
        os.replace(tmp, cache_dir / f"{key}.duckdb")
        used.add(key)
        with _LOCK:
            files.put(path, pending.before, content)
            files.save()
    except (OSError, duckdb.Error):
        pass
    finally:
        _remove(tmp)  # gone once renamed; otherwise nothing may find it


def _write_table(cursor, alias: str, tmp: Path) -> bool:
    """Table ``alias`` of the in-memory database into a new database file ``tmp`` as table ``t``, complete."""
    name = f"__cache_w_{uuid.uuid4().hex[:12]}"
    previous = cursor.execute("SELECT current_setting('force_compression')").fetchall()[0][0]
    cursor.execute(f"ATTACH {_literal(str(tmp))} AS {name}")
    attached = True
    try:
        cursor.execute("SET force_compression = 'uncompressed'")
        cursor.execute(f"CREATE TABLE {name}.t AS SELECT * FROM {_quote(alias)}")
        cursor.execute(f"DETACH {name}")  # checkpoints: the file is complete and closed
        attached = False
        return True
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.execute(f"SET force_compression = {_literal(previous)}")
        if attached:
            with contextlib.suppress(duckdb.Error):
                cursor.execute(f"DETACH {name}")


def _attach(con, alias: str, entry: Path) -> int | None:
    """View ``alias`` over table t of the entry file; its rows, or None (no entry, or an unreadable one)."""
    if not entry.is_file():
        return None
    name = f"__cache_{alias}"
    try:
        con.execute(f"DETACH DATABASE IF EXISTS {_quote(name)}")
        con.execute(f"ATTACH {_literal(str(entry))} AS {_quote(name)} (READ_ONLY)")
        rows = con.execute(f"SELECT count(*) FROM {_quote(name)}.t").fetchall()[0][0]
        _drop(con, alias)
        con.execute(f"CREATE VIEW {_quote(alias)} AS SELECT * FROM {_quote(name)}.t")
    except duckdb.Error:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH DATABASE IF EXISTS {_quote(name)}")
        _remove(entry)  # not a complete entry (a disk fault): written again by this run
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # used now: evicted last
    return rows


def _drop(con, alias: str) -> None:
    kinds = con.execute("SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
                        "AND table_schema = 'main' AND table_name = ?", [alias]).fetchall()
    for (kind,) in kinds:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {_quote(alias)}")


def _evict(cache_dir: Path, keep: set[str], max_bytes: int) -> None:
    """Remove stale temporary files, then the least recently used entries beyond ``max_bytes``."""
    now = time.time()
    entries = []
    for path in cache_dir.iterdir():
        try:
            info = path.stat()
        except OSError:
            continue
        if path.name.startswith(".tmp-"):
            if now - info.st_mtime > STALE_TMP_SECONDS:
                _remove(path)
        elif path.suffix == ".duckdb":
            entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path.stem not in keep:
            _remove(path)
            total -= size


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _stat(path: Path) -> tuple[int, int, int, int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev


class _Files:
    """files.json: {path: [size, mtime_ns, ctime_ns, inode, device, sha256]}, replaced atomically."""

    def __init__(self, cache_dir: Path):
        self.path = cache_dir / FILES
        self.changed = False
        try:
            self.known = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(self.known, dict):
                self.known = {}
        except (OSError, ValueError):
            self.known = {}

    def get(self, path: Path, stat: tuple) -> str | None:
        known = self.known.get(str(path.resolve()))
        if isinstance(known, list) and len(known) == 6 and tuple(known[:5]) == stat and isinstance(known[5], str):
            return known[5]
        return None

    def seen(self, path: Path) -> bool:
        return str(path.resolve()) in self.known

    def put(self, path: Path, stat: tuple, content: str) -> None:
        name = str(path.resolve())
        self.known.pop(name, None)
        self.known[name] = [*stat, content]
        while len(self.known) > MAX_FILES:
            self.known.pop(next(iter(self.known)))
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        tmp = self.path.with_name(f".tmp-{uuid.uuid4().hex}-{FILES}")
        try:
            tmp.write_text(json.dumps(self.known), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            _remove(tmp)


def _remove(path: Path) -> None:
    for name in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(OSError):
            os.unlink(name)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

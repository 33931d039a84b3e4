"""The local room's load cache: each data file's validated, typed table, kept on disk between runs.

A run loads each table with model.datasets.load_into (DuckDB reads the file,
every value checked as strictly as Spark's reader). With a cache folder (the
run's state folder's cache/, .localroom/cache/ by default), what a later run
over the same file with the same schema needs is kept, in two steps:

- the first run that reads a file loads it in memory, as without a cache (as
  fast as DuckDB's own reader), hashes it meanwhile (or takes the hash that
  localroom/digests.Early took while the run started) and writes a marker: this
  content passed the strict check and has N rows. The results that depend on
  the data alone (cache.Derived) are keyed by the marker's key;
- a later run trusts the marker instead of checking the file again. With
  ``deferred`` (the DuckDB backend's), the table is not read at all unless a
  statement names it: a run whose derived results are all stored never reads
  the file. A run that does read a file it has a marker for loads it straight
  into a DuckDB database file of its own (uncompressed, which costs about what
  loading into memory costs, plus writing it), renamed into an entry that any
  later run attaches read-only (a view named by the alias) in milliseconds.

Writing an entry only on a file's second reading keeps the first run as fast as
a run without a cache; what is read once is never written twice to disk.

    <cache>/<key>.ok       a marker: {"rows": N}. ``key`` is the SHA-256 of the data file's content, the
                           schema (columns, types, roles, values, bounds), the data file's format, the loader
                           (model/datasets.py's source and LOADER_VERSION) and DuckDB's version: a change to any
                           of them is a miss.
    <cache>/<key>.duckdb   an entry: table ``t``, the dataset's table as load_into made it.
    <cache>/files.json     the content hash each data file had at a stat (size, mtime_ns, ctime_ns, inode,
                           device), so that an unchanged file is not read just to be hashed again.
    <cache>/.tmp-*         a marker or entry being written: renamed into place only once complete, so a failed,
                           interrupted or killed run leaves nothing a later run uses; removed on failure,
                           and when older than an hour (a killed run's).

A changed file is never served from the cache: any write to a file moves its
ctime (which no user can set back: restoring the size and the mtime does not
help), and a file renamed into place has another inode, so its stat no longer
matches and its content is hashed again. Stats are only trusted, and markers and
entries only written, for files whose mtime and ctime are RACY_SECONDS older than
the moment they were read (as git does for its index): a file changed again within
the clock's resolution could otherwise keep its stat. The content is hashed after
the table is read and the stat compared again after the hash, so a file that changed
meanwhile is used by this run but not cached. A deferred table whose file changed
before the run got to it is not read: the run stops (DataChanged), since what it
used so far came from the file as it was.

Entries are written uncompressed (about 100 MiB per million rows of the shipped
schemas): DuckDB's compression at checkpoint costs about as much CPU as the load.
The folder is bounded by MAX_BYTES: the least recently used files are removed
first (a hit touches its file), never one this run uses.
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
from localroom import digests
from model.datasets import Dataset, load_into

LOADER_VERSION = "1"  # with the loader's source in the key; bump for a change outside model/datasets.py
MAX_BYTES = 2 * 1024 ** 3
RACY_SECONDS = 2.0
STALE_TMP_SECONDS = 3600
_LOADER_SOURCE: str | None = None


def load_tables(con, tables: dict[str, Dataset], cache_dir: Path | None, max_bytes: int = MAX_BYTES,
                keys: dict | None = None, deferred: dict | None = None,
                early: digests.Early | None = None) -> dict[str, int]:
    """Each dataset as a table (or a view of its entry) named by its alias on ``con``; the rows per alias.

    Without ``cache_dir`` every file is read by load_into. With it, a file with an entry is attached
    read-only; one with a marker is read into a new entry (``_load_entry``), or, when ``deferred`` is
    given, left unread and recorded there for ``load_deferred``; any other is read in memory and
    marked (``_load_marked``). A bad file raises ConfigError as load_into does and leaves nothing in
    the cache. A cache that cannot be written (a read-only or full disk) only costs the time: the
    tables are loaded anyway. ``keys`` receives each alias's key, or None for a table that is not
    cached (a file changed moments ago, or a partitioned dataset's folder, which is read every time).
    ``early`` has the digests taken while the run started (localroom/digests.py), used in place of hashing.
    """
    if cache_dir is None:
        return {alias: load_into(con, dataset, alias) for alias, dataset in tables.items()}
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {alias: load_into(con, dataset, alias) for alias, dataset in tables.items()}
    files = digests.Files(cache_dir)
    rows, used = {}, set()
    for alias, dataset in tables.items():
        if dataset.partitioned_by:
            # A folder of partition files: its stat does not change when a file in a partition does, and the
            # key hashes one file. Read every time, never cached (key None: nor are results derived from it).
            rows[alias] = load_into(con, dataset, alias)
            if keys is not None:
                keys[alias] = None
            continue
        found, key, pending = _lookup(con, alias, dataset, cache_dir, files, early)
        if found is None and pending is not None:
            marked = _marker(cache_dir, entry_key(dataset, pending.content)) if pending.content else None
            if marked is None:
                found, key = _load_marked(con, pending, cache_dir, files)  # ConfigError: nothing is kept
            elif deferred is not None:
                pending.key = key = entry_key(dataset, pending.content)
                deferred[alias], found = pending, marked
            else:
                found, key = _load_entry(con, pending, cache_dir, files)
        if found is None:
            found = load_into(con, dataset, alias)  # not cacheable (changed moments ago): in memory only
        rows[alias] = found
        if key is not None:
            used.add(key)
        if keys is not None:
            keys[alias] = key
    files.save()
    _evict(cache_dir, used, max_bytes)
    return rows


class DataChanged(Exception):
    """A deferred table's file changed after the run began using what the cache knew of it."""


def load_deferred(con, pending: "_Pending", cache_dir: Path) -> None:
    """Read a table ``load_tables`` deferred: into a new entry (its second reading), or in memory.

    The file must still be the one the marker describes (its stat, then its hash, unchanged): the
    run has used results keyed by that content. Otherwise DataChanged, and nothing is kept.
    """
    path = pending.dataset.data_path
    try:
        if digests.stat(path) != pending.before:
            raise DataChanged(path)
        files = digests.Files(Path(cache_dir))
        rows, key = _load_entry(con, pending, Path(cache_dir), files)
        if rows is None:  # a cache that cannot take the entry: in memory, checked again
            load_into(con, pending.dataset, pending.alias)
            if digests.stat(path) != pending.before:
                raise DataChanged(path)
        elif key is None:  # the file changed while it was read
            raise DataChanged(path)
        files.save()
    except DataChanged:
        _drop(con, pending.alias)
        raise
    except datasets.ConfigError:  # the marker's content passed this check: the file is another now
        raise DataChanged(path) from None


def _load_marked(con, pending: "_Pending", cache_dir: Path, files: digests.Files) -> tuple[int, str | None]:
    """Read the file in memory while another thread hashes it, then mark its content: (rows, key).

    The marker is written only when the hash was taken and the file's stat is unchanged; otherwise
    the table serves this run and nothing is cached (key None).
    """
    digest: dict[str, object] = {}
    hasher = threading.Thread(target=_hash_into, args=(pending, digest), name="localroom-cache-hash")
    hasher.start()
    try:
        rows = load_into(con, pending.dataset, pending.alias)
    finally:
        hasher.join()
    content = digest.get("content")
    if not isinstance(content, str) or digests.stat(pending.dataset.data_path) != pending.before:
        return rows, None
    key = entry_key(pending.dataset, content)
    if not _write_marker(cache_dir, key, rows):
        return rows, None
    files.put(pending.dataset.data_path, pending.before, content)
    pending.key = key
    return rows, key


def _hash_into(pending: "_Pending", digest: dict) -> None:
    try:
        path = pending.dataset.data_path
        early = pending.early.get(path, pending.before, wait=True) if pending.early is not None else None
        digest["content"] = pending.content or early or digests.sha256(path)
    except OSError as exc:
        digest["error"] = exc


def _marker(cache_dir: Path, key: str) -> int | None:
    """The rows the marker <key>.ok records, or None (absent or damaged); touched: recently used."""
    path = cache_dir / f"{key}.ok"
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("rows")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return rows


def _write_marker(cache_dir: Path, key: str, rows: int) -> bool:
    tmp = cache_dir / f".tmp-{uuid.uuid4().hex}.ok"
    try:
        tmp.write_text(json.dumps({"rows": rows}), encoding="utf-8")
        os.replace(tmp, cache_dir / f"{key}.ok")
        return True
    except OSError:
        _remove(tmp)
        return False


def _load_entry(con, pending: "_Pending", cache_dir: Path, files: digests.Files) -> tuple[int | None, str | None]:
    """Load the file straight into a new entry, then attach it as the alias: (rows, key).

    The table is written by load_into into a temporary database file (uncompressed: DuckDB's
    compression costs about as much CPU as the load), while another thread hashes the data file
    (hashlib releases the GIL) unless its hash is known; once both are done and the file's stat is
    unchanged, the file is renamed to <key>.duckdb. A file that changed meanwhile, or a hash that
    cannot be taken, leaves the table in memory for this run and no entry (key None). Anything
    that stops the load removes the temporary file: a later run never sees half an entry. A cache
    that cannot be written returns (None, None), nothing loaded.
    """
    tmp = cache_dir / f".tmp-{uuid.uuid4().hex}.duckdb"
    name = f"__cache_load_{uuid.uuid4().hex[:12]}"
    path = pending.dataset.data_path
    digest: dict[str, object] = {}
    hasher = threading.Thread(target=_hash_into, args=(pending, digest), name="localroom-cache-hash")
    previous = con.execute("SELECT current_setting('force_compression')").fetchall()[0][0]
    attached = False
    try:
        con.execute(f"ATTACH {_literal(str(tmp))} AS {_quote(name)}")
        attached = True
        con.execute("SET force_compression = 'uncompressed'")
        hasher.start()
        rows = load_into(con, pending.dataset, "t", catalog=name)
        hasher.join()
        con.execute(f"DETACH {_quote(name)}")  # checkpoints: the file is complete and closed
        attached = False
        content = digest.get("content")
        if not isinstance(content, str) or digests.stat(path) != pending.before:
            _into_memory(con, pending.alias, tmp)
            return rows, None
        key = entry_key(pending.dataset, content)
        if pending.key is not None and key != pending.key:  # the marker was for other content
            _into_memory(con, pending.alias, tmp)
            return rows, None
        entry = cache_dir / f"{key}.duckdb"
        os.replace(tmp, entry)
        files.put(path, pending.before, content)
        pending.key = key
        return _attach(con, pending.alias, entry), key
    except (duckdb.Error, OSError):  # a cache that cannot be written (a full or read-only disk): load in memory
        if hasher.is_alive():
            hasher.join()
        return None, None
    except BaseException:
        if hasher.is_alive():
            hasher.join()
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"SET force_compression = {_literal(previous)}")
        if attached:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DETACH {_quote(name)}")
        _remove(tmp)  # renamed when it became an entry; otherwise no later run may find it


def _into_memory(con, alias: str, tmp: Path) -> None:
    """Table ``alias`` in memory from the temporary entry ``tmp`` (which is then removed)."""
    name = f"__cache_copy_{uuid.uuid4().hex[:12]}"
    con.execute(f"ATTACH {_literal(str(tmp))} AS {_quote(name)} (READ_ONLY)")
    try:
        _drop(con, alias)
        con.execute(f"CREATE TABLE {_quote(alias)} AS SELECT * FROM {_quote(name)}.t")
    finally:
        con.execute(f"DETACH {_quote(name)}")


def wait() -> None:
    """Entries are complete when load_tables returns (kept for callers that waited for a background writer)."""


@dataclass
class _Pending:
    """A table loaded into memory that becomes an entry, unless its file turns out to have changed."""

    alias: str
    dataset: Dataset
    before: tuple  # the file's stat before it was read
    started: int  # time.time_ns() then
    content: str | None  # its SHA-256, when known already
    key: str | None = None  # the entry's key, once written
    early: digests.Early | None = None  # where its SHA-256 is being taken, if it is


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


def _lookup(con, alias: str, dataset: Dataset, cache_dir: Path, files: digests.Files,
            early: digests.Early | None = None) -> tuple[int | None, str | None, _Pending | None]:
    """(rows, key) of the entry attached as ``alias``, or (None, None, what to write once loaded)."""
    path = dataset.data_path
    try:
        before = digests.stat(path)
    except OSError:
        return None, None, None  # load_into says the file is missing
    started = time.time_ns()
    content = files.get(path, before)
    if content is None and early is not None:  # taken while the run started (waited for: see below)
        content = early.get(path, before, wait=files.seen(path))
    if content is None and files.seen(path):
        # A file this cache knew at another stat: rewritten, touched, copied back. Hash it now:
        # its content may well be one an entry holds.
        try:
            content = digests.sha256(path)
        except OSError:
            return None, None, None
    if content is not None:
        key = entry_key(dataset, content)
        rows = _attach(con, alias, cache_dir / f"{key}.duckdb")
        if rows is not None:
            if files.get(path, before) is None and _settled(before, started) and before == digests.stat(path):
                files.put(path, before, content)
            return rows, key, None
    if not _settled(before, started):  # changed too recently to trust its stat: never cached
        return None, None, None
    return None, None, _Pending(alias, dataset, before, started, content, early=early)


def _settled(stat: tuple, started: int) -> bool:
    """The file's last change (mtime and ctime) is RACY_SECONDS older than ``started`` (time.time_ns()).

    A file changed again within the clock's resolution could otherwise keep the same stat.
    """
    return max(stat[1], stat[2]) <= started - RACY_SECONDS * 1e9


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
    derived = cache_dir / "derived"
    for path in [*cache_dir.iterdir(), *(derived.iterdir() if derived.is_dir() else ())]:
        try:
            info = path.stat()
        except OSError:
            continue
        if path.name.startswith(".tmp-"):
            if now - info.st_mtime > STALE_TMP_SECONDS:
                _remove(path)
        elif path.suffix in (".duckdb", ".arrow", ".ok"):
            entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path.stem not in keep:
            _remove(path)
            total -= size


def _remove(path: Path) -> None:
    for name in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(OSError):
            os.unlink(name)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------
# Derived results: what a query computes from the tables alone, beside their entries


class Derived:
    """Results that depend only on the tables' contents (a column's most rows per key, a plan's exact phase-1
    parts), kept in <cache>/derived/<key>.arrow and keyed by the tables' entry keys, the SQL and its parameters.

    A run over unchanged data then reads them instead of computing them; the noise a DP run adds to the parts
    is drawn afresh every run, so nothing released repeats. The files hold exact aggregates of the data, as
    sensitive as the data files beside the project (the cache lives with them, on this machine). Results
    computed on tables whose entries are still being written are kept in memory and written by ``flush``
    once those entries exist. Written atomically; bounded with the entries (``_evict`` counts them too).
    """

    def __init__(self, cache_dir: Path):
        self.dir = Path(cache_dir) / "derived"
        self.later: list[tuple[str, dict, list, object]] = []

    @staticmethod
    def key(kind: str, text: str, params: dict, entries: list[str]) -> str:
        described = json.dumps({"kind": kind, "text": text, "params": params, "entries": entries,
                                "version": LOADER_VERSION}, sort_keys=True, default=repr)
        return hashlib.sha256(described.encode()).hexdigest()

    def _path(self, kind: str, text: str, params: dict, keys: list) -> Path | None:
        """Where the result is stored; None while a table it depends on has no cache entry."""
        if not keys or not all(isinstance(k, str) for k in keys):
            return None
        return self.dir / f"{self.key(kind, text, params, keys)}.arrow"

    def get(self, kind: str, text: str, params: dict, keys: list):
        """The stored result, or None (absent, or a table not cached yet)."""
        path = self._path(kind, text, params, keys)
        if path is None:
            return None
        try:
            import pyarrow.ipc as ipc

            with ipc.open_file(str(path)) as reader:
                table = reader.read_all()
        except (OSError, ValueError, Exception):  # absent or damaged: compute it
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return table

    def exists(self, kind: str, text: str, params: dict, keys: list) -> bool:
        """Whether ``get`` finds a stored file (without reading it)."""
        path = self._path(kind, text, params, keys)
        return path is not None and path.is_file()

    def put(self, kind: str, text: str, params: dict, keys: list, table) -> None:
        """Store ``table`` now if every table's entry exists, else once ``flush`` finds them written."""
        if not keys or any(k is None for k in keys):
            return
        if all(isinstance(k, str) for k in keys):
            self._write(self.key(kind, text, params, keys), table)
        else:
            self.later.append((kind, text, params, keys, table))

    def flush(self) -> None:
        """After the background writers: store what waited for their entries' keys."""
        if not self.later:
            return
        wait()
        for kind, text, params, keys, table in self.later:
            resolved = [k if isinstance(k, str) else getattr(k, "key", None) for k in keys]
            if all(isinstance(k, str) for k in resolved):
                self._write(self.key(kind, text, params, resolved), table)
        self.later = []

    def _write(self, key: str, table) -> None:
        import pyarrow.ipc as ipc

        tmp = self.dir / f".tmp-{uuid.uuid4().hex}.arrow"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with ipc.new_file(str(tmp), table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, self.dir / f"{key}.arrow")
        except (OSError, ValueError):
            pass  # an optimisation: a cache that cannot be written only costs the time
        finally:
            _remove(tmp)

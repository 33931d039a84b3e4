"""The data files' content hashes for the load cache (localroom/cache.py), and taking them early.

A cold run must hash each data file it loads (the cache's key is its content).
Hashing beside DuckDB's load takes CPU from a load that keeps both cores busy;
while the run starts (imports, checking the templates, planning) the second core
is idle. ``Early`` hashes the files there, on one thread, as soon as the run
knows them, and the cache takes the digest from it instead of hashing again.

Nothing is trusted that the cache would not trust from its own hash: a digest
counts only for the stat the file had before and after it was taken, and the
cache compares that stat with the one it reads before its load, and again after
(any write moves the ctime, which no user can set back). This module imports no
DuckDB, so that hashing starts before DuckDB's import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

FILES = "files.json"
MAX_FILES = 256  # stats remembered


def sha256(path: Path) -> str:
    """The file's SHA-256. One ``update`` over a memory map: hashlib releases the GIL for the whole
    file, where a read loop takes it back per chunk and, beside a busy thread, waits for it each time."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def stat(path: Path) -> tuple[int, int, int, int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev


class Files:
    """files.json: {path: [size, mtime_ns, ctime_ns, inode, device, sha256]}, replaced atomically."""

    def __init__(self, cache_dir: Path):
        self.path = Path(cache_dir) / FILES
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
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class Early:
    """The SHA-256 of ``paths``, taken one after another on a daemon thread started here.

    Files that files.json knows at their present stat are skipped (a warm run hashes
    nothing), and so are files that cannot be read (the load says why). ``get``
    returns a digest only for the stat given, the file's at the cache's look-up.
    """

    def __init__(self, paths: Iterable[Path], cache_dir: Path):
        known = Files(cache_dir)
        self._todo: list[Path] = []
        for path in dict.fromkeys(Path(p).resolve() for p in paths):
            try:
                if path.is_file() and known.get(path, stat(path)) is None:
                    self._todo.append(path)
            except OSError:
                continue
        self._done: dict[Path, tuple[tuple, str]] = {}
        self._ready = {path: threading.Event() for path in self._todo}
        if self._todo:
            threading.Thread(target=self._hash, name="localroom-early-hash", daemon=True).start()

    def _hash(self) -> None:
        for path in self._todo:
            try:
                before = stat(path)
                digest = sha256(path)
                if stat(path) == before:
                    self._done[path] = (before, digest)
            except OSError:
                pass
            finally:
                self._ready[path].set()

    def get(self, path: Path, at: tuple, wait: bool) -> str | None:
        """The digest of ``path`` if it was taken at stat ``at``; with ``wait``, once its hash is done."""
        path = Path(path).resolve()
        ready = self._ready.get(path)
        if ready is None or not (ready.wait() if wait else ready.is_set()):
            return None
        found = self._done.get(path)
        return found[1] if found is not None and found[0] == at else None

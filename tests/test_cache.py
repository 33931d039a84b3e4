"""localroom/cache.py: the validated, typed tables kept under the state folder between runs."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from localroom import cache, digests
from model.datasets import load_dataset
from model.errors import ConfigError
from queryrunner import cli
from tests.harness import ROOT

SETTLE = 0.05  # the tests' RACY_SECONDS: files are trusted once this old


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A copy of data/ whose files are old enough to be cached (RACY_SECONDS lowered to SETTLE)."""
    monkeypatch.setattr(cache, "RACY_SECONDS", SETTLE)
    folder = tmp_path / "data"
    shutil.copytree(ROOT / "data", folder)
    time.sleep(2 * SETTLE)
    return folder


class Loads:
    """Counts the data files cache.load_tables reads (model.datasets.load_into calls)."""

    def __init__(self, monkeypatch):
        self.files: list[str] = []
        real = cache.load_into

        def counting(con, dataset, table, *args, **kwargs):
            self.files.append(dataset.name)
            return real(con, dataset, table, *args, **kwargs)

        monkeypatch.setattr(cache, "load_into", counting)


def load(data: Path, cache_dir: Path | None, *names: str,
         deferred: dict | None = None) -> tuple[dict[str, int], duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    tables = {name: load_dataset(name, data) for name in names or ("retail_purchases", "media_engagement")}
    rows = cache.load_tables(con, tables, cache_dir, deferred=deferred)
    return rows, con


def entries(cache_dir: Path) -> list[str]:
    """The tables kept whole (<key>.duckdb)."""
    return sorted(p.name for p in cache_dir.iterdir() if p.suffix == ".duckdb" and not p.name.startswith("."))


def keys(cache_dir: Path) -> list[str]:
    """Every content the cache knows checked: a marker (<key>.ok), an entry, or both."""
    return sorted({p.stem for p in cache_dir.iterdir() if p.suffix in (".ok", ".duckdb") and not p.name.startswith(".")})


def leftovers(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.name.startswith(".tmp-"))


def edit_in_place(path: Path, old: str, new: str) -> None:
    """Change the file's content, keeping its size, inode, atime and mtime (only ctime moves)."""
    assert len(old) == len(new)
    info = path.stat()
    text = path.read_text()
    assert old in text
    with path.open("r+") as handle:
        handle.write(text.replace(old, new, 1))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (info.st_size, info.st_mtime_ns, info.st_ino)


def test_an_unchanged_file_is_marked_then_kept_then_served_from_the_cache(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    both = ["retail_purchases", "media_engagement"]
    first, con = load(data, tmp_path / "cache")
    assert first == {"retail_purchases": 3000, "media_engagement": 2500}
    # The first reading is in memory, as without a cache: only a marker of the checked content is written.
    assert loads.files == both and len(keys(tmp_path / "cache")) == 2 and entries(tmp_path / "cache") == []
    expected = con.execute("SELECT * FROM retail_purchases ORDER BY customer_key").fetchall()
    second, con = load(data, tmp_path / "cache")  # read a second time: now into entries
    assert second == first and loads.files == both * 2 and len(entries(tmp_path / "cache")) == 2
    third, con = load(data, tmp_path / "cache")
    assert third == first and loads.files == both * 2  # nothing read again
    assert con.execute("SELECT * FROM retail_purchases ORDER BY customer_key").fetchall() == expected
    types = con.execute("SELECT column_type FROM (DESCRIBE retail_purchases)").fetchall()
    assert [t for (t,) in types] == ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "DECIMAL(10,2)"]


def test_a_changed_file_is_read_again_even_with_its_size_and_mtime_restored(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, tmp_path / "cache")
    path = data / "media_engagement" / "media_engagement.csv"
    line = path.read_text().splitlines()[1]
    key, rest = line.split(",", 1)
    edit_in_place(path, line, "f" * len(key) + "," + rest)  # another customer key, same length
    time.sleep(2 * SETTLE)
    deferred: dict = {}
    _, con = load(data, tmp_path / "cache", deferred=deferred)
    assert loads.files == ["retail_purchases", "media_engagement", "media_engagement"]
    assert list(deferred) == ["retail_purchases"]  # unchanged: vouched for by its marker, not read
    assert con.execute("SELECT count(*) FROM media_engagement WHERE customer_key = ?", ["f" * len(key)]).fetchall() \
        == [(1,)]
    assert len(keys(tmp_path / "cache")) == 3  # the old content's marker stays, for the file as it was


def test_a_file_replaced_by_another_of_the_same_size_and_times_is_read_again(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, tmp_path / "cache")
    path = data / "retail_purchases" / "retail_purchases.csv"
    info = path.stat()
    other = path.with_name("other.csv")
    other.write_text(path.read_text().replace("northeast", "northwest", 1))
    os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(other, path)
    with pytest.raises(ConfigError, match="'northwest' is not one of its declared values"):
        load(data, tmp_path / "cache")
    assert loads.files[-1] == "retail_purchases"


def test_content_that_comes_back_is_served_again(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, tmp_path / "cache", "retail_purchases")
    path = data / "retail_purchases" / "retail_purchases.csv"
    original = path.read_bytes()
    path.write_bytes(original.replace(b"northeast", b"midwest__", 1).replace(b"midwest__", b"northeast", 1))
    time.sleep(2 * SETTLE)  # the same bytes, rewritten: a new stat, the same content hash
    deferred: dict = {}
    rows, _ = load(data, tmp_path / "cache", "retail_purchases", deferred=deferred)
    assert rows == {"retail_purchases": 3000} and list(deferred) == ["retail_purchases"]
    assert loads.files == ["retail_purchases"]  # hashed, not read: the marker knows this content


def test_a_schema_change_is_a_miss(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, tmp_path / "cache", "retail_purchases")
    schema = data / "retail_purchases" / "schema.yaml"
    schema.write_text(schema.read_text().replace("bounds: [0, 50]", "bounds: [0, 40]"))
    load(data, tmp_path / "cache", "retail_purchases")
    schema.write_text(schema.read_text().replace('"sports"]', '"sports", null]'))
    load(data, tmp_path / "cache", "retail_purchases")
    schema.write_text(schema.read_text().replace("type: integer", "type: bigint"))
    _, con = load(data, tmp_path / "cache", "retail_purchases")
    assert loads.files == ["retail_purchases"] * 4 and len(keys(tmp_path / "cache")) == 4
    assert con.execute("SELECT typeof(order_count) FROM retail_purchases LIMIT 1").fetchall() == [("BIGINT",)]


def test_another_loader_is_a_miss(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, tmp_path / "cache", "media_engagement")
    monkeypatch.setattr(cache, "_LOADER_SOURCE", "another model/datasets.py")
    load(data, tmp_path / "cache", "media_engagement")
    assert loads.files == ["media_engagement"] * 2


def test_a_file_changed_moments_ago_is_loaded_but_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", 60.0)  # within a minute: it could change again unseen
    loads = Loads(monkeypatch)
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    rows, _ = load(data, tmp_path / "cache", "media_engagement")
    assert rows == {"media_engagement": 2500}
    load(data, tmp_path / "cache", "media_engagement")
    assert loads.files == ["media_engagement"] * 2
    assert keys(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []
    assert not (tmp_path / "cache" / digests.FILES).exists()


def test_a_bad_file_leaves_no_entry(data, tmp_path):
    path = data / "retail_purchases" / "retail_purchases.csv"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 2)[0] + ",1.5,12.30"  # order_count 1.5: refused
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="line 6: column 'order_count' value '1.5' is not a valid integer"):
        load(data, tmp_path / "cache")
    assert keys(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []


def test_an_interrupted_load_leaves_no_entry_and_no_partial_file(data, tmp_path, monkeypatch):
    real = cache.load_into

    def interrupted(con, dataset, table, *args, **kwargs):
        real(con, dataset, table, *args, **kwargs)  # the table is written, the entry not yet complete
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "load_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(data, tmp_path / "cache")
    assert keys(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []
    monkeypatch.setattr(cache, "load_into", real)
    load(data, tmp_path / "cache")  # marked
    monkeypatch.setattr(cache, "load_into", interrupted)
    with pytest.raises(KeyboardInterrupt):  # the second reading, into an entry, is interrupted
        load(data, tmp_path / "cache")
    assert entries(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []
    monkeypatch.setattr(cache, "load_into", real)
    loads = Loads(monkeypatch)
    assert load(data, tmp_path / "cache")[0] == {"retail_purchases": 3000, "media_engagement": 2500}
    assert loads.files == ["retail_purchases", "media_engagement"]


def test_a_failure_while_the_entry_is_written_leaves_no_partial_file(data, tmp_path, monkeypatch):
    def unreadable(path):
        raise OSError("the disk went away")

    monkeypatch.setattr(digests, "sha256", unreadable)  # while the table is read
    rows, con = load(data, tmp_path / "cache")
    assert rows == {"retail_purchases": 3000, "media_engagement": 2500}  # the run goes on
    assert con.execute("SELECT count(*) FROM media_engagement").fetchall() == [(2500,)]
    assert keys(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []


def test_a_file_changed_after_it_was_read_is_not_cached(data, tmp_path, monkeypatch):
    real = digests.sha256
    path = data / "retail_purchases" / "retail_purchases.csv"

    def changing(file):
        if file == path:
            with path.open("a") as handle:
                handle.write("k,18-24,west,home,1,1.00\n")
        return real(file)

    monkeypatch.setattr(digests, "sha256", changing)
    load(data, tmp_path / "cache", "retail_purchases")
    assert keys(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []


def test_a_killed_runs_temporary_file_is_never_used_and_is_cleared(data, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    stale = folder / ".tmp-0123.duckdb"
    stale.write_bytes(b"half a database")
    recent = folder / ".tmp-4567.duckdb"
    recent.write_bytes(b"another run's, in progress")
    hour_ago = time.time() - cache.STALE_TMP_SECONDS - 10
    os.utime(stale, (hour_ago, hour_ago))
    loads = Loads(monkeypatch)
    load(data, folder)
    assert sorted(loads.files) == ["media_engagement", "retail_purchases"]  # read at once
    assert leftovers(folder) == [recent.name] and len(keys(folder)) == 2


def test_a_damaged_entry_is_dropped_and_written_again(data, tmp_path, monkeypatch):
    load(data, tmp_path / "cache", "media_engagement")
    load(data, tmp_path / "cache", "media_engagement")  # the second reading makes the entry
    (entry,) = entries(tmp_path / "cache")
    (tmp_path / "cache" / entry).write_bytes(b"not a database")
    loads = Loads(monkeypatch)
    rows, con = load(data, tmp_path / "cache", "media_engagement")
    assert rows == {"media_engagement": 2500} and loads.files == ["media_engagement"]
    assert con.execute("SELECT count(*) FROM media_engagement").fetchall() == [(2500,)]
    assert entries(tmp_path / "cache") == [entry]


def test_the_cache_is_bounded_least_recently_used_first(data, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    for _ in range(2):  # a marker, then an entry
        load(data, folder, "retail_purchases")
    (retail,) = entries(folder)
    for _ in range(2):
        load(data, folder, "media_engagement")
    media = next(e for e in entries(folder) if e != retail)
    size = (folder / retail).stat().st_size
    old = time.time() - 100
    os.utime(folder / retail, (old, old))
    schema = data / "media_engagement" / "schema.yaml"
    schema.write_text(schema.read_text().replace("bounds: [0, 250]", "bounds: [0, 200]"))
    monkeypatch.setattr(cache, "MAX_BYTES", 2 * size + size // 2)
    for _ in range(2):  # the new schema's entry: three entries, more than two and a half
        cache.load_tables(duckdb.connect(), {"media_engagement": load_dataset("media_engagement", data)}, folder,
                          max_bytes=2 * size + size // 2)
    assert retail not in entries(folder) and media in entries(folder) and len(entries(folder)) == 2
    cache.load_tables(duckdb.connect(), {"media_engagement": load_dataset("media_engagement", data)}, folder,
                      max_bytes=1)  # never the entries this load uses
    assert len(entries(folder)) == 1


def test_without_a_cache_folder_every_load_reads_the_file(data, monkeypatch):
    loads = Loads(monkeypatch)
    load(data, None)
    load(data, None)
    assert sorted(loads.files) == sorted(["retail_purchases", "media_engagement"] * 2)


def test_an_unwritable_cache_folder_only_costs_the_time(data, tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    rows, con = load(data, blocked / "cache")
    assert rows == {"retail_purchases": 3000, "media_engagement": 2500}


def test_run_local_keeps_the_tables_under_the_state_dir(data, tmp_path, monkeypatch):
    loads = Loads(monkeypatch)
    args = ["run", "--all", "--local", "--seed", "7", "--data-dir", str(data), "--state-dir", str(tmp_path / "s")]
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        assert cli.main([*args, "--out", str(out)], stdout=io.StringIO(), stderr=io.StringIO()) == 0
        outputs.append(sorted(p.read_text() for p in out.glob("*/*.csv")))
    # The second run read no data file: the markers vouch for them, and every result it needed from them
    # alone was stored by the first run (cache.Derived).
    assert sorted(loads.files) == ["media_engagement", "retail_purchases"]  # read at once, in either order
    assert len(keys(tmp_path / "s" / "cache")) == 2 and entries(tmp_path / "s" / "cache") == []
    assert outputs[0] == outputs[1]  # the same seed, the same tables: the same results


def test_a_cache_folder_that_cannot_take_an_entry_only_costs_the_time(data, tmp_path, monkeypatch):
    """The entry's file cannot be created (here a folder stands where it would go; a full or read-only disk
    does the same): the table is loaded in memory, the run goes on, nothing is left behind."""
    import uuid

    folder = tmp_path / "cache"
    folder.mkdir()
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(cache.uuid, "uuid4", lambda: fixed)
    (folder / f".tmp-{fixed.hex}.duckdb").mkdir()
    load(data, folder)  # the markers: the next load writes entries
    rows, con = load(data, folder)
    assert rows == {"retail_purchases": 3000, "media_engagement": 2500}
    assert con.execute("SELECT count(*) FROM retail_purchases").fetchall() == [(3000,)]
    assert entries(folder) == []


def test_a_deferred_table_is_read_only_when_a_statement_names_it(data, tmp_path, monkeypatch):
    from localroom.engine import DuckDB

    tables = {name: load_dataset(name, data) for name in ("retail_purchases", "media_engagement")}
    DuckDB(tmp_path / "cache").load(tables)  # the first run: read, marked
    loads = Loads(monkeypatch)
    db = DuckDB(tmp_path / "cache")
    assert db.load(tables) == {"retail_purchases": 3000, "media_engagement": 2500}
    assert loads.files == [] and sorted(db.deferred) == ["media_engagement", "retail_purchases"]
    assert db.scalar("SELECT 41 + 1 AS media_engagement_count", {}) == 42  # names neither table as a word
    assert loads.files == []
    assert db.exec("SELECT count(*) FROM Media_Engagement WHERE sessions >= 0") == [(2500,)]
    assert loads.files == ["media_engagement"] and list(db.deferred) == ["retail_purchases"]
    assert len(entries(tmp_path / "cache")) == 1  # its second reading: kept whole for the next run


def test_a_deferred_table_whose_file_changed_stops_the_run_and_keeps_nothing(data, tmp_path):
    from localroom.engine import DataChanged, DuckDB, LocalLimitation

    tables = {"media_engagement": load_dataset("media_engagement", data)}
    DuckDB(tmp_path / "cache").load(tables)
    db = DuckDB(tmp_path / "cache")
    db.load(tables)
    path = data / "media_engagement" / "media_engagement.csv"
    line = path.read_text().splitlines()[1]
    edit_in_place(path, line, "f" * len(line.split(",", 1)[0]) + "," + line.split(",", 1)[1])
    with pytest.raises(DataChanged, match="media_engagement.csv changed while this run was using") as caught:
        db.sql("SELECT count(*) FROM media_engagement", {})
    assert isinstance(caught.value, LocalLimitation)  # a failed run, nothing charged (queryrunner/local.py)
    assert "fffff" not in str(caught.value)  # no data value in the message
    assert entries(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []
    assert db.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                          "'media_engagement'").fetchall() == [(0,)]


# --- hashing while the run starts (localroom/digests.Early) ------------------------------------------------

def test_a_file_hashed_early_is_not_hashed_again_and_its_marker_has_that_content(data, tmp_path, monkeypatch):
    hashed = []
    real = digests.sha256
    monkeypatch.setattr(digests, "sha256", lambda path: hashed.append(Path(path).name) or real(path))
    path = data / "retail_purchases" / "retail_purchases.csv"
    early = digests.Early([path, path], tmp_path / "cache")  # named twice: hashed once
    assert early.get(path, digests.stat(path), wait=True) == real(path)
    con = duckdb.connect()
    keys_: dict = {}
    cache.load_tables(con, {"retail_purchases": load_dataset("retail_purchases", data)}, tmp_path / "cache",
                      keys=keys_, early=early)
    assert hashed == ["retail_purchases.csv"]  # the early hash only: the load took its digest
    assert keys(tmp_path / "cache") == [keys_["retail_purchases"]] == \
        [cache.entry_key(load_dataset("retail_purchases", data), real(path))]
    assert digests.Early([path], tmp_path / "cache").get(path, digests.stat(path), wait=True) is None  # known


def test_an_early_digest_counts_only_for_the_stat_it_was_taken_at(data, tmp_path, monkeypatch):
    path = data / "media_engagement" / "media_engagement.csv"
    early = digests.Early([path], tmp_path / "cache")
    assert early.get(path, digests.stat(path), wait=True) is not None
    line = path.read_text().splitlines()[1]
    key, rest = line.split(",", 1)
    edit_in_place(path, line, "f" * len(key) + "," + rest)  # same size and mtime; the ctime moves
    time.sleep(2 * SETTLE)
    assert early.get(path, digests.stat(path), wait=True) is None
    keys_: dict = {}
    dataset = load_dataset("media_engagement", data)
    cache.load_tables(duckdb.connect(), {"media_engagement": dataset}, tmp_path / "cache", keys=keys_, early=early)
    assert keys_["media_engagement"] == cache.entry_key(dataset, digests.sha256(path))  # the file as it is now


def test_a_run_hashes_each_file_once_while_it_starts_and_a_warm_run_none(data, tmp_path, monkeypatch):
    import threading

    hashed = []
    real = digests.sha256
    monkeypatch.setattr(digests, "sha256", lambda path: hashed.append(
        (Path(path).name, threading.current_thread().name)) or real(path))
    for _ in range(2):
        code = cli.main(["run", "--all", "--local", "--data-dir", str(data), "--state-dir", str(tmp_path / "state"),
                         "--out", str(tmp_path / "out"), "--seed", "1"],
                        stdout=io.StringIO(), stderr=io.StringIO())
        assert code == 0
    assert sorted(hashed) == [("media_engagement.csv", "localroom-early-hash"),
                              ("retail_purchases.csv", "localroom-early-hash")]


def test_sha256_is_hashlibs_for_any_size(tmp_path):
    import hashlib

    for size in (0, 1, 3 * 1024 * 1024 + 7):
        path = tmp_path / f"f{size}"
        path.write_bytes(os.urandom(size))
        assert digests.sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()

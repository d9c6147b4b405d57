"""open_db and engine-specific behaviour: names, layout, errors, connections."""

from __future__ import annotations

import gc
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from garage_util.db import ENGINES, open_db
from garage_util.db._sqlite import SqliteEngine, table_name
from garage_util.errors import DbError

if TYPE_CHECKING:
    from pathlib import Path

    from garage_util.db import Transaction


def test_unknown_engine_names_the_engines(tmp_path: Path) -> None:
    with pytest.raises(DbError, match="'lmdb', 'sqlite'"):
        open_db(tmp_path, "rocksdb")
    assert set(ENGINES) == {"lmdb", "sqlite"}


def test_missing_lmdb_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "garage_util.db._lmdb", raising=False)
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match=r"garage-util\[lmdb\]"):
        open_db(tmp_path, "lmdb")
    with open_db(tmp_path, "sqlite") as db:  # sqlite never needs it
        db.open_tree("t").insert(b"k", b"v")


def test_file_layout(tmp_path: Path) -> None:
    with open_db(tmp_path / "s", "sqlite"):
        pass
    with open_db(tmp_path / "l", "lmdb"):
        pass
    assert (tmp_path / "s" / "db.sqlite").is_file()
    assert (tmp_path / "l" / "db.lmdb").is_dir()
    assert (tmp_path / "l" / "db.lmdb" / "data.mdb").is_file()


def test_sqlite_table_names_are_injective(tmp_path: Path) -> None:
    names = ["object:merkle_tree", 'q"x', "Foo", "foo", "^", "^^x"]
    with open_db(tmp_path, "sqlite") as db:
        for n in names:
            db.open_tree(n)
        assert db.list_trees() == sorted(names)
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        schema = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'tree_object:merkle_tree'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert tables == {
        "tree_object:merkle_tree",
        'tree_q"x',
        "tree_^foo",
        "tree_foo",
        "tree_^^",
        "tree_^^^^x",
    }
    assert {table_name(n) for n in names} == tables
    assert "WITHOUT ROWID" in schema
    assert "v BLOB NOT NULL" in schema


def test_sqlite_journal_and_sync_modes(tmp_path: Path) -> None:
    for fsync, expected in ((False, 0), (True, 2)):  # OFF, FULL
        with open_db(tmp_path / str(fsync), "sqlite", fsync=fsync) as db:
            engine = db._engine
            assert isinstance(engine, SqliteEngine)
            writer = engine._writer
            assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert writer.execute("PRAGMA synchronous").fetchone()[0] == expected
            assert writer.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_sqlite_reader_connections_are_closed_when_their_thread_exits(tmp_path: Path) -> None:
    with open_db(tmp_path, "sqlite") as db:
        engine = db._engine
        assert isinstance(engine, SqliteEngine)
        t = db.open_tree("t")
        t.insert(b"k", b"v")
        results: list[bytes | None] = []
        threads = [threading.Thread(target=lambda: results.append(t.get(b"k"))) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [b"v"] * 4
        gc.collect()
        assert len(engine._readers) == 0
        assert t.get(b"k") == b"v"  # this thread's reader
        assert len(engine._readers) == 1
    (reader,) = engine._readers  # still referenced by this thread's local storage...
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        reader.conn.execute("SELECT 1")  # ...but closed by Db.close()


def test_sqlite_errors_become_db_errors(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite").write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(DbError, match="sqlite") as info:
        open_db(tmp_path, "sqlite")
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_lmdb_map_full_says_what_to_raise(tmp_path: Path) -> None:
    import lmdb

    with open_db(tmp_path, "lmdb", lmdb_map_size=1 << 20) as db:
        t = db.open_tree("t")

        def fill_autocommit() -> None:
            for i in range(64):
                t.insert(i.to_bytes(4, "big"), bytes(64 * 1024))

        with pytest.raises(DbError, match="lmdb_map_size") as info:
            fill_autocommit()
        assert isinstance(info.value.__cause__, lmdb.MapFullError)

        def fill(tx: Transaction) -> None:
            for i in range(64, 128):
                tx.insert(t, i.to_bytes(4, "big"), bytes(64 * 1024))

        with pytest.raises(DbError, match="lmdb_map_size"):
            db.transaction(fill)
        # Still usable: reads work, and small writes fit once space is freed.
        assert t.len() > 0
        t.clear()
        t.insert(b"k", b"v")
        assert t.get(b"k") == b"v"


def test_lmdb_map_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lmdb_map_size"):
        open_db(tmp_path, "lmdb", lmdb_map_size=0)

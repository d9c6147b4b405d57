"""Tree operations, bounds, iteration, names, key limits and lifecycle, on both engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from garage_util.db import (
    LMDB_MAX_KEY_BYTES,
    MAX_KEY_BYTES,
    SQLITE_MAX_KEY_BYTES,
    Excluded,
    Included,
    open_db,
)
from garage_util.db._api import ITER_BATCH
from garage_util.errors import DbError

if TYPE_CHECKING:
    from pathlib import Path

    from garage_util.db import Bound, Db, Transaction, Tree


def _k(i: int) -> bytes:
    return i.to_bytes(4, "big")


def _fill(db: Db, tree: Tree, keys: range) -> None:
    def fill(tx: Transaction) -> None:
        for i in keys:
            tx.insert(tree, _k(i), b"v%d" % i)

    db.transaction(fill)


def test_engine_name(db: Db, engine: str) -> None:
    assert db.engine == engine
    assert engine in repr(db)


def test_get_insert_remove_overwrite(db: Db) -> None:
    t = db.open_tree("t")
    assert t.name == "t"
    assert t.get(b"a") is None
    t.insert(b"a", b"1")
    assert t.get(b"a") == b"1"
    t.insert(b"a", b"2")
    assert t.get(b"a") == b"2"
    t.insert(b"b", b"")
    assert t.get(b"b") == b""
    t.remove(b"a")
    assert t.get(b"a") is None
    t.remove(b"a")  # absent: not an error
    # Other buffers are accepted and copied, though the signature only promises bytes.
    t.insert(bytearray(b"c"), memoryview(b"3"))  # type: ignore[arg-type]
    assert t.get(b"c") == b"3"
    assert len(t) == 2


def test_non_bytes_keys_are_refused(db: Db) -> None:
    t = db.open_tree("t")
    with pytest.raises(TypeError):
        t.insert("a", b"1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.insert(b"a", "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t.get("a")  # type: ignore[arg-type]


def test_len_first_last_neighbours(db: Db) -> None:
    t = db.open_tree("t")
    assert t.len() == 0
    assert t.first() is None
    assert t.last() is None
    assert t.get_gt(b"a") is None
    assert t.get_lt(b"a") is None
    for k in (b"b", b"d", b"d\x00", b"f"):
        t.insert(k, k.upper())
    assert t.len() == len(t) == 4
    assert t.first() == (b"b", b"B")
    assert t.last() == (b"f", b"F")
    assert t.get_gt(b"b") == (b"d", b"D")
    assert t.get_gt(b"c") == (b"d", b"D")
    assert t.get_gt(b"d") == (b"d\x00", b"D\x00")
    assert t.get_gt(b"f") is None
    assert t.get_gt(b"") == (b"b", b"B")
    assert t.get_lt(b"d\x00") == (b"d", b"D")
    assert t.get_lt(b"e") == (b"d\x00", b"D\x00")
    assert t.get_lt(b"b") is None
    assert t.get_lt(b"") is None
    assert t.get_lt(b"\xff" * 600) == (b"f", b"F")


def test_ordering_is_bytewise(db: Db) -> None:
    t = db.open_tree("t")
    keys = [b"\xff", b"a", b"\x00", b"ab", b"a\x00", b"B", b"\x7f\xff", b"\x80"]
    for k in keys:
        t.insert(k, b"")
    assert [k for k, _ in t.iter()] == sorted(keys)
    assert [k for k, _ in t.iter_rev()] == sorted(keys, reverse=True)


_BOUND_CASES: list[tuple[Bound, Bound, list[int]]] = [
    (None, None, [1, 2, 3, 4, 5]),
    (_k(2), _k(4), [2, 3]),  # plain bytes: start inclusive, end exclusive
    (Included(_k(2)), Included(_k(4)), [2, 3, 4]),
    (Excluded(_k(2)), Excluded(_k(4)), [3]),
    (Excluded(_k(2)), Included(_k(4)), [3, 4]),
    (Included(_k(2)), Excluded(_k(4)), [2, 3]),
    (None, _k(3), [1, 2]),
    (None, Included(_k(3)), [1, 2, 3]),
    (_k(3), None, [3, 4, 5]),
    (Excluded(_k(3)), None, [4, 5]),
    (Included(_k(0)), Included(_k(9)), [1, 2, 3, 4, 5]),
    (_k(4), _k(2), []),
    (Excluded(_k(3)), Excluded(_k(3)), []),
    (Included(_k(3)), Included(_k(3)), [3]),
    (b"", None, [1, 2, 3, 4, 5]),
    (Excluded(b""), Excluded(b"\xff"), [1, 2, 3, 4, 5]),
    (None, b"", []),
    (None, Included(b""), []),
]


@pytest.mark.parametrize(("start", "end", "expected"), _BOUND_CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_range_bounds(db: Db, start: Bound, end: Bound, expected: list[int], reverse: bool) -> None:
    t = db.open_tree("t")
    _fill(db, t, range(1, 6))
    got = [k for k, _ in t.range(start, end, reverse=reverse)]
    want = [_k(i) for i in (reversed(expected) if reverse else expected)]
    assert got == want
    got_tx = db.transaction(lambda tx: [k for k, _ in tx.range(t, start, end, reverse=reverse)])
    assert got_tx == want


def test_range_bounds_longer_than_the_key_limit(db: Db) -> None:
    """Bounds over the engine's key limit are rewritten into stored-key-sized ones."""
    t = db.open_tree("t")
    p = b"\x01" * db.max_key_bytes
    below, at, above = p[:-1] + b"\x00", p, p[:-1] + b"\x02"
    for k in (below, at, above):
        t.insert(k, b"")
    long = p + b"\x00"  # > at, < above
    assert [k for k, _ in t.range(long)] == [above]
    assert [k for k, _ in t.range(Excluded(long))] == [above]
    assert [k for k, _ in t.range(None, long)] == [below, at]
    assert [k for k, _ in t.range(None, Included(long))] == [below, at]
    assert [k for k, _ in t.range(None, long, reverse=True)] == [at, below]
    assert t.get_gt(long) == (above, b"")
    assert t.get_lt(long) == (at, b"")
    assert t.get(long) is None


def test_iteration_over_several_batches_with_concurrent_writes(db: Db) -> None:
    t = db.open_tree("t")
    n = 2 * ITER_BATCH + 500
    _fill(db, t, range(0, 2 * n, 2))  # even keys
    seen: list[bytes] = []
    for i, (k, _) in enumerate(t.iter()):
        seen.append(k)
        if i % 97 == 0:
            # Odd keys behind and ahead of the cursor, and removal of a key ahead.
            t.insert(_k(2 * i + 1), b"new")
            t.insert(_k(2 * n - 2 * i - 1), b"new")
            t.remove(_k(2 * n - 2 * i - 2))
    assert seen == sorted(set(seen)), "keys must come out strictly increasing"
    evens = {k for k in seen if int.from_bytes(k, "big") % 2 == 0}
    assert len(evens) >= n // 2

    seen_rev = [k for k, _ in t.iter_rev()]
    assert seen_rev == sorted(set(seen_rev), reverse=True)
    assert len(seen_rev) == t.len()


def test_abandoned_iterator_holds_nothing(db: Db) -> None:
    t = db.open_tree("t")
    _fill(db, t, range(ITER_BATCH + 10))
    it = t.iter()
    assert next(it)[0] == _k(0)
    # A write transaction and a snapshot still work while the iterator is suspended.
    db.transaction(lambda tx: tx.clear(t))
    assert t.len() == 0
    rest = list(it)  # the rest of the first batch, then nothing
    assert len(rest) == ITER_BATCH - 1


def test_list_trees_and_names(db: Db) -> None:
    names = ["object:merkle_tree", 'quo"te', "Foo", "foo", "^", "^x", "ünïcode", "a b;--"]
    trees = [db.open_tree(n) for n in names]
    for i, t in enumerate(trees):
        t.insert(b"k", str(i).encode())
    assert db.list_trees() == sorted(names)
    for i, t in enumerate(trees):
        assert db.open_tree(t.name).get(b"k") == str(i).encode()
        assert len(t) == 1


# Tree names are limited to MAX_KEY_BYTES (LMDB stores them as keys) on every engine.
@pytest.mark.parametrize("name", ["", "a\x00b", "x" * (MAX_KEY_BYTES + 1), "é" * 256])
def test_invalid_tree_names(db: Db, name: str) -> None:
    with pytest.raises(ValueError, match="tree name"):
        db.open_tree(name)


# The key limit of each engine: S3 object keys (up to 1,024 bytes) need db keys of up to
# 1,064 bytes (8-byte GC timestamp + 32-byte partition hash + object key), which only sqlite
# stores.
_LIMITS = {"sqlite": SQLITE_MAX_KEY_BYTES, "lmdb": LMDB_MAX_KEY_BYTES}
_LONGEST_GARAGE_KEY = 8 + 32 + 1024


def test_key_limit_constants() -> None:
    assert LMDB_MAX_KEY_BYTES == MAX_KEY_BYTES == 511
    assert SQLITE_MAX_KEY_BYTES >= _LONGEST_GARAGE_KEY


def test_max_key_bytes_is_the_engines(db: Db, engine: str) -> None:
    assert db.max_key_bytes == _LIMITS[engine]


def test_key_limits(db: Db, engine: str) -> None:
    limit = db.max_key_bytes
    t = db.open_tree("t")
    with pytest.raises(ValueError, match="empty"):
        t.insert(b"", b"v")
    with pytest.raises(ValueError, match="empty"):
        t.remove(b"")
    assert t.get(b"") is None
    t.insert(b"k" * limit, b"max")
    assert t.get(b"k" * limit) == b"max"
    assert list(t.iter()) == [(b"k" * limit, b"max")]
    too_long = f"{limit + 1} bytes is too long for the {engine} .* at most {limit} bytes"
    with pytest.raises(DbError, match=too_long):
        t.insert(b"k" * (limit + 1), b"v")
    with pytest.raises(DbError, match=too_long):
        t.remove(b"k" * (limit + 1))
    assert t.get(b"k" * (limit + 1)) is None
    with pytest.raises(ValueError, match="empty"):
        db.transaction(lambda tx: tx.insert(t, b"", b"v"))
    with pytest.raises(DbError, match=f"{limit + 100} bytes .* {engine} .* {limit} bytes"):
        db.transaction(lambda tx: tx.insert(t, b"k" * (limit + 100), b"v"))
    with pytest.raises(DbError, match=too_long):
        db.transaction(lambda tx: tx.remove(t, b"k" * (limit + 1)))
    assert db.transaction(lambda tx: tx.get(t, b"k" * (limit + 1))) is None
    assert t.len() == 1


def test_a_1064_byte_key_is_stored_by_sqlite_only(db: Db, engine: str) -> None:
    """The longest key Garage writes: a GC todo key of a 1,024-byte S3 object key."""
    t = db.open_tree("t")
    key = b"\xff" * 8 + b"\x00" * 32 + b"k" * 1024
    assert len(key) == _LONGEST_GARAGE_KEY
    if engine == "lmdb":
        with pytest.raises(DbError, match="key of 1064 bytes is too long for the lmdb"):
            t.insert(key, b"v")
        with pytest.raises(DbError, match="key of 1064 bytes is too long for the lmdb"):
            db.transaction(lambda tx: tx.insert(t, key, b"v"))
        assert t.get(key) is None
        assert t.len() == 0
        return
    t.insert(key, b"v1")
    assert t.get(key) == b"v1"
    db.transaction(lambda tx: tx.insert(t, key[:-1] + b"l", b"v2"))
    assert db.transaction(lambda tx: tx.get(t, key)) == b"v1"
    assert list(t.range(key[:40])) == [(key, b"v1"), (key[:-1] + b"l", b"v2")]
    assert t.get_gt(key) == (key[:-1] + b"l", b"v2")
    assert t.get_lt(key[:-1] + b"l") == (key, b"v1")
    t.remove(key)
    assert t.get(key) is None
    assert t.len() == 1


def test_long_keys_survive_a_reopen_and_a_snapshot(tmp_path: Path) -> None:
    key = b"k" * SQLITE_MAX_KEY_BYTES
    with open_db(tmp_path / "meta", "sqlite") as db:
        db.open_tree("t").insert(key, b"v")
        db.snapshot(tmp_path / "snap")
    for where in ("meta", "snap"):
        with open_db(tmp_path / where, "sqlite") as db:
            assert list(db.open_tree("t").iter()) == [(key, b"v")]


def test_copying_a_long_key_into_lmdb_names_the_key_and_the_engine(tmp_path: Path) -> None:
    """A sqlite db with keys over 511 bytes does not fit LMDB: the copy says why."""
    key = b"k" * 600
    with open_db(tmp_path / "s", "sqlite") as src, open_db(tmp_path / "l", "lmdb") as dst:
        src.open_tree("t").insert(key, b"v")
        target = dst.open_tree("t")
        items = list(src.open_tree("t").iter())

        def copy(tx: Transaction) -> None:
            for k, v in items:
                tx.insert(target, k, v)

        with pytest.raises(DbError) as exc:
            dst.transaction(copy)
        assert str(exc.value) == (
            "db key of 600 bytes is too long for the lmdb metadata db engine, "
            "which stores keys of at most 511 bytes"
        )
        assert target.len() == 0


def test_large_values(db: Db) -> None:
    t = db.open_tree("t")
    big = bytes(range(256)) * 4096  # 1 MiB
    t.insert(b"big", big)
    assert t.get(b"big") == big


def test_clear(db: Db) -> None:
    t = db.open_tree("t")
    other = db.open_tree("other")
    _fill(db, t, range(10))
    other.insert(b"x", b"y")
    t.clear()
    assert t.len() == 0
    assert t.first() is None
    assert other.get(b"x") == b"y"
    assert "t" in db.list_trees()


def test_close_and_reopen_persists(engine: str, db_dir: Path) -> None:
    with open_db(db_dir, engine) as db:
        t = db.open_tree("t")
        t.insert(b"a", b"1")
        db.transaction(lambda tx: tx.insert(t, b"b", b"2"))
    assert repr(db).endswith("closed>")
    with pytest.raises(DbError, match="closed"):
        t.get(b"a")
    with pytest.raises(DbError, match="closed"):
        t.insert(b"a", b"1")
    with pytest.raises(DbError, match="closed"):
        db.transaction(lambda tx: None)
    with pytest.raises(DbError, match="closed"):
        db.open_tree("t")
    db.close()  # idempotent
    with open_db(db_dir, engine) as db2:
        assert db2.list_trees() == ["t"]
        assert list(db2.open_tree("t").iter()) == [(b"a", b"1"), (b"b", b"2")]


def test_iterator_fails_once_db_closed(engine: str, db_dir: Path) -> None:
    db = open_db(db_dir, engine)
    t = db.open_tree("t")
    _fill(db, t, range(ITER_BATCH + 1))
    it = t.iter()
    next(it)
    db.close()
    with pytest.raises(DbError, match="closed"):
        list(it)


def test_fsync_true_opens_and_works(engine: str, db_dir: Path) -> None:
    with open_db(db_dir, engine, fsync=True) as db:
        t = db.open_tree("t")
        t.insert(b"a", b"1")
        db.transaction(lambda tx: tx.insert(t, b"b", b"2"))
    with open_db(db_dir, engine, fsync=True) as db:
        assert dict(db.open_tree("t").iter()) == {b"a": b"1", b"b": b"2"}


def test_snapshot(db: Db, engine: str, tmp_path: Path) -> None:
    t = db.open_tree("t")
    u = db.open_tree("obj:u")
    _fill(db, t, range(100))
    u.insert(b"x", b"before")
    written = db.snapshot(tmp_path / "snap" / "1")
    assert written.parent == tmp_path / "snap" / "1"
    t.insert(_k(1000), b"after")
    u.insert(b"x", b"after")
    with open_db(tmp_path / "snap" / "1", engine) as snap:
        assert snap.list_trees() == ["obj:u", "t"]
        st = snap.open_tree("t")
        assert st.len() == 100
        assert st.get(_k(1000)) is None
        assert snap.open_tree("obj:u").get(b"x") == b"before"
        st.insert(b"snap-only", b"1")  # the snapshot is a db of its own
    assert t.get(b"snap-only") is None
    with pytest.raises(DbError, match="already exists"):
        db.snapshot(tmp_path / "snap" / "1")

"""Transactions: atomicity across trees, abort, rollback, callbacks, nesting, threads."""

from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from garage_util.db import Excluded, Included, open_db
from garage_util.db._api import ITER_BATCH
from garage_util.errors import DbError, TransactionAborted

if TYPE_CHECKING:
    from pathlib import Path

    from garage_util.db import Db, Transaction


class Boom(Exception):
    pass


def test_commit_across_trees_returns_value(db: Db) -> None:
    a, b = db.open_tree("a"), db.open_tree("b")
    a.insert(b"gone", b"x")

    def fn(tx: Transaction) -> int:
        tx.insert(a, b"1", b"one")
        tx.insert(b, b"2", b"two")
        tx.remove(a, b"gone")
        return tx.len(a) + tx.len(b)

    assert db.transaction(fn) == 2
    assert list(a.iter()) == [(b"1", b"one")]
    assert list(b.iter()) == [(b"2", b"two")]


def test_reads_inside_see_own_writes(db: Db) -> None:
    t = db.open_tree("t")
    for k in (b"a", b"c", b"e"):
        t.insert(k, b"old")

    def fn(tx: Transaction) -> None:
        tx.insert(t, b"b", b"new")
        tx.remove(t, b"c")
        tx.insert(t, b"e", b"new")
        assert tx.get(t, b"b") == b"new"
        assert tx.get(t, b"c") is None
        assert tx.get(t, b"e") == b"new"
        assert tx.len(t) == 3
        assert list(tx.range(t)) == [(b"a", b"old"), (b"b", b"new"), (b"e", b"new")]
        assert [k for k, _ in tx.range(t, Excluded(b"a"), Included(b"e"), reverse=True)] == [
            b"e",
            b"b",
        ]
        # Outside the transaction, the committed state is still what everybody sees.
        assert t.get(b"b") is None
        assert t.get(b"c") == b"old"
        tx.clear(t)
        assert tx.len(t) == 0
        assert list(tx.range(t)) == []
        tx.insert(t, b"z", b"last")

    db.transaction(fn)
    assert list(t.iter()) == [(b"z", b"last")]


def test_abort_carries_value_and_rolls_back(db: Db) -> None:
    a, b = db.open_tree("a"), db.open_tree("b")
    a.insert(b"keep", b"1")
    ran: list[str] = []

    def fn(tx: Transaction) -> None:
        tx.insert(a, b"new", b"x")
        tx.insert(b, b"new", b"x")
        tx.clear(a)
        tx.on_commit(lambda: ran.append("cb"))
        tx.abort({"why": 42})

    with pytest.raises(TransactionAborted) as info:
        db.transaction(fn)
    assert info.value.value == {"why": 42}
    assert isinstance(info.value, DbError)
    assert list(a.iter()) == [(b"keep", b"1")]
    assert b.len() == 0
    assert ran == []


def test_abort_cannot_be_swallowed(db: Db) -> None:
    t = db.open_tree("t")

    def fn(tx: Transaction) -> str:
        tx.insert(t, b"k", b"v")
        with contextlib.suppress(TransactionAborted):
            tx.abort("no")
        return "committed?"

    with pytest.raises(TransactionAborted) as info:
        db.transaction(fn)
    assert info.value.value == "no"
    assert t.get(b"k") is None


def test_exception_rolls_back_and_propagates_unchanged(db: Db) -> None:
    t = db.open_tree("t")
    err = Boom("x")
    ran: list[int] = []

    def fn(tx: Transaction) -> None:
        tx.insert(t, b"k", b"v")
        tx.on_commit(lambda: ran.append(1))
        raise err

    with pytest.raises(Boom) as info:
        db.transaction(fn)
    assert info.value is err
    assert t.get(b"k") is None
    assert ran == []
    # The db is usable afterwards.
    db.transaction(lambda tx: tx.insert(t, b"k", b"v2"))
    assert t.get(b"k") == b"v2"


def test_on_commit_runs_in_order_after_commit_outside_the_lock(db: Db) -> None:
    t = db.open_tree("t")
    order: list[object] = []

    def fn(tx: Transaction) -> str:
        tx.insert(t, b"k", b"v")
        tx.on_commit(lambda: order.append(1))
        # The commit is visible, and the write lock free, when callbacks run.
        tx.on_commit(lambda: order.append(t.get(b"k")))
        tx.on_commit(lambda: t.insert(b"from-callback", b"ok"))
        tx.on_commit(lambda: order.append(3))
        order.append("fn")
        return "result"

    assert db.transaction(fn) == "result"
    assert order == ["fn", 1, b"v", 3]
    assert t.get(b"from-callback") == b"ok"


def test_nested_transaction_is_an_error_not_a_deadlock(db: Db) -> None:
    t = db.open_tree("t")

    def inner(tx: Transaction) -> None:
        tx.insert(t, b"inner", b"x")

    def outer(tx: Transaction) -> None:
        tx.insert(t, b"outer", b"x")
        db.transaction(inner)

    with pytest.raises(DbError, match="nested transaction"):
        db.transaction(outer)
    assert t.len() == 0


def test_autocommit_write_inside_transaction_is_an_error(db: Db) -> None:
    t = db.open_tree("t")
    t.insert(b"k", b"committed")

    def fn(tx: Transaction) -> bytes | None:
        tx.insert(t, b"k", b"tx")
        with pytest.raises(DbError, match="inside a transaction"):
            t.insert(b"other", b"x")
        with pytest.raises(DbError, match="inside one of its transactions"):
            db.close()
        with pytest.raises(DbError, match="inside a transaction"):
            db.open_tree("brand-new")
        db.open_tree("t")  # already open: fine
        return t.get(b"k")  # reads outside the transaction are allowed

    assert db.transaction(fn) == b"committed"
    assert t.get(b"k") == b"tx"


def test_transaction_handle_is_dead_afterwards(db: Db) -> None:
    t = db.open_tree("t")
    t.insert(b"a", b"1")
    kept: list[Transaction] = []

    def fn(tx: Transaction) -> None:
        kept.append(tx)

    db.transaction(fn)
    with pytest.raises(DbError, match="finished"):
        kept[0].insert(t, b"b", b"2")
    with pytest.raises(DbError, match="finished"):
        kept[0].get(t, b"a")
    with pytest.raises(DbError, match="finished"):
        kept[0].on_commit(lambda: None)
    it = db.transaction(lambda tx: tx.range(t))
    with pytest.raises(DbError, match="finished"):
        next(it)


def test_tree_of_another_db_is_refused(db: Db, tmp_path: Path) -> None:
    with open_db(tmp_path / "other", db.engine) as other:
        foreign = other.open_tree("t")
        with pytest.raises(DbError, match="another db"):
            db.transaction(lambda tx: tx.insert(foreign, b"k", b"v"))


def test_async_function_is_refused(db: Db) -> None:
    t = db.open_tree("t")

    async def fn(tx: Transaction) -> None:
        tx.insert(t, b"k", b"v")

    with pytest.raises(TypeError, match="synchronous"):
        db.transaction(fn)  # type: ignore[unused-coroutine]  # the point: it never runs
    assert t.get(b"k") is None


def test_transaction_iterates_over_several_batches_while_writing(db: Db) -> None:
    t = db.open_tree("t")
    n = ITER_BATCH * 2 + 7

    def fill(tx: Transaction) -> None:
        for i in range(n):
            tx.insert(t, i.to_bytes(4, "big"), b"")

    db.transaction(fill)

    def rewrite(tx: Transaction) -> int:
        count = 0
        for k, _ in tx.range(t):
            tx.insert(t, k, b"seen")
            tx.insert(t, k + b"\x00", b"added")  # right after the cursor: seen next batch
            count += 1
        return count

    count = db.transaction(rewrite)
    assert count >= n
    assert t.len() == n + count


def test_concurrent_transactions_do_not_lose_increments(db: Db) -> None:
    counter, log = db.open_tree("counter"), db.open_tree("log")
    threads, per_thread = 8, 60
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        start.wait()
        for j in range(per_thread):

            def incr(tx: Transaction, j: int = j) -> None:
                n = int.from_bytes(tx.get(counter, b"n") or b"\x00", "big")
                tx.insert(counter, b"n", (n + 1).to_bytes(8, "big"))
                tx.insert(log, f"{worker:02}:{j:04}".encode(), b"")

            db.transaction(incr)
            # Reads on this thread's own connection run alongside the other writers.
            assert counter.get(b"n") is not None

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work, w) for w in range(threads)]:
            f.result()
    assert int.from_bytes(counter.get(b"n") or b"", "big") == threads * per_thread
    assert log.len() == threads * per_thread


def test_snapshot_during_concurrent_transactions_is_consistent(db: Db, tmp_path: Path) -> None:
    counter, log = db.open_tree("counter"), db.open_tree("log")
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():

            def step(tx: Transaction, i: int = i) -> None:
                tx.insert(log, i.to_bytes(8, "big"), b"")
                tx.insert(counter, b"n", (i + 1).to_bytes(8, "big"))

            db.transaction(step)
            i += 1

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(writer)
        try:
            snaps = [db.snapshot(tmp_path / f"snap{n}") for n in range(3)]
        finally:
            stop.set()
        running.result()
    for n in range(len(snaps)):
        with open_db(tmp_path / f"snap{n}", db.engine) as snap:
            raw = snap.open_tree("counter").get(b"n")
            count = 0 if raw is None else int.from_bytes(raw, "big")
            assert snap.open_tree("log").len() == count


@pytest.mark.anyio
async def test_use_from_async_code_through_worker_threads(db: Db) -> None:
    """The intended async usage: every call in a worker thread, callbacks handed back."""
    t = db.open_tree("t")
    committed = anyio.Event()

    def fn(tx: Transaction) -> None:
        tx.insert(t, b"k", b"v")
        tx.on_commit(lambda: anyio.from_thread.run_sync(committed.set))

    async with anyio.create_task_group() as tg:
        tg.start_soon(committed.wait)
        await anyio.to_thread.run_sync(db.transaction, fn)
    assert await anyio.to_thread.run_sync(t.get, b"k") == b"v"
    items = await anyio.to_thread.run_sync(lambda: list(itertools.islice(t.iter(), 10)))
    assert items == [(b"k", b"v")]

"""The engine-neutral metadata db: :class:`Db`, :class:`Tree` and :class:`Transaction`.

Theory of operation (Garage: src/db/lib.rs):
    A :class:`Db` is a set of named trees (sorted maps from bytes to bytes) stored by one
    engine (sqlite or LMDB, see ``_engine``). Every call is synchronous and short; async code
    runs each one through ``anyio.to_thread.run_sync``. Nothing here ever keeps an engine
    cursor, statement or read transaction open after a call returns.

Invariants:
    * Atomicity: each tree operation outside a transaction is atomic. ``Db.transaction(fn)``
      runs ``fn(tx)`` inside one engine write transaction, so all its writes, on any number of
      trees, become visible together or (on ``tx.abort()`` or any exception) not at all.
    * Durability: once a write or a transaction has returned, it survives the process being
      killed. It also survives power loss if the db was opened with ``fsync=True``
      (Garage's ``metadata_fsync``); with ``fsync=False`` the last writes before a power loss
      may be lost, but the db stays consistent.
    * One writer: writes are serialised by one lock per db. A transaction holds it for its
      whole duration, so ``fn`` must be short and must not wait for other threads. Calling
      ``Db.transaction`` (or an autocommit write) from inside ``fn`` on the same thread
      would deadlock, so it raises :class:`DbError` instead. Reads outside transactions do not
      take the lock and run in parallel with the writer.
    * Iteration in bounded batches: ``Tree.range`` & co. are generators that fetch at most
      ``ITER_BATCH`` items per engine call, then continue after the last key they yielded.
      No cursor or read transaction stays open while the consumer runs (it may await, write
      to the same tree, or abandon the generator), keys come out strictly ordered without
      repeats, and each batch is a consistent view, but the iteration as a whole is not a
      snapshot: entries written meanwhile may or may not be seen.
    * ``on_commit`` callbacks run after a successful commit, in registration order, on the
      thread that called ``Db.transaction``, once the write lock is released. In async code
      that is a worker thread: hand work to the event loop with ``anyio.from_thread``.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Self, TypeVar, final

from garage_util.errors import DbError, TransactionAborted

from ._bounds import (
    MAX_KEY_BYTES,
    Bound,
    Excluded,
    NormBound,
    as_bytes,
    check_write_key,
    lookup_key,
    normalize_range,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from ._engine import Engine, EngineOps, EngineTx, Item

__all__ = ["ITER_BATCH", "Db", "Transaction", "Tree"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

# Items fetched per engine call while iterating: large enough that the per-call overhead
# (a read transaction, a prepared statement) is amortised, small enough that one batch is a
# few milliseconds of work and a few hundred KiB of memory for typical metadata entries.
ITER_BATCH = 1000


def _check_tree_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"tree name must be a str, not {type(name).__name__}")
    if not name or "\x00" in name:
        raise ValueError(f"invalid tree name {name!r}: must be non-empty and without NUL")
    # LMDB stores a tree's name as a key of its main db, so its key limit applies; it is
    # enforced on every engine, so that trees keep their names whatever the engine.
    if len(name.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(
            f"invalid tree name {name[:32]!r}...: longer than {MAX_KEY_BYTES} bytes in UTF-8"
        )
    return name


def _iter_batches(
    fetch: Callable[[NormBound, NormBound, bool, int], list[Item]],
    lo: NormBound,
    hi: NormBound,
    reverse: bool,
) -> Iterator[Item]:
    """Yield a range by repeated bounded ``fetch`` calls with continuation bounds."""
    while True:
        batch = fetch(lo, hi, reverse, ITER_BATCH)
        yield from batch
        if len(batch) < ITER_BATCH:
            return
        # Continue strictly after the last key yielded: never a repeat, even if the tree
        # changed in between.
        if reverse:
            hi = Excluded(batch[-1][0])
        else:
            lo = Excluded(batch[-1][0])


class _TxState(threading.local):
    """Per-thread marker of "this thread is inside a transaction of this db"."""

    in_tx: bool = False


@final
class Db:
    """A metadata database: named trees of bytes, with atomic multi-tree transactions.

    Open one with :func:`open_db`; a db directory must be opened by one ``Db`` (one process)
    at a time. Methods are thread-safe. Use the db as a context manager, or call
    :meth:`close`, so that every engine connection is released.
    """

    __slots__ = ("_closed", "_engine", "_state", "_write_lock")

    def __init__(self, engine: Engine) -> None:
        """Wrap an opened engine. Internal: use :func:`open_db`."""
        self._engine = engine
        self._write_lock = threading.Lock()
        self._state = _TxState()
        self._closed = False

    @property
    def engine(self) -> str:
        """The engine name: ``"sqlite"`` or ``"lmdb"``."""
        return self._engine.name

    @property
    def max_key_bytes(self) -> int:
        """The longest key this db stores, in bytes; it depends on the engine.

        ``SQLITE_MAX_KEY_BYTES`` (4,096) on sqlite, ``LMDB_MAX_KEY_BYTES`` (511) on LMDB.
        Writes with a longer key raise :class:`DbError`; lookups with one find nothing.
        Keys of at most ``MAX_KEY_BYTES`` (511) fit every engine.
        """
        return self._engine.max_key_bytes

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Db engine={self._engine.name!r} {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> Engine:
        if self._closed:
            raise DbError("the metadata db is closed")
        return self._engine

    def _check_write_key(self, key: object) -> bytes:
        """``key`` as bytes if this db's engine may store it (see ``check_write_key``)."""
        engine = self._engine
        return check_write_key(key, engine.max_key_bytes, engine.name)

    def _acquire_write(self, what: str) -> Engine:
        """Take the write lock (release it with ``_write_lock.release()``)."""
        if self._state.in_tx:
            raise DbError(
                f"cannot {what} while this thread is inside a transaction of the same db "
                "(it would deadlock); use the Transaction passed to the function instead"
            )
        self._write_lock.acquire()
        if self._closed:
            self._write_lock.release()
            raise DbError("the metadata db is closed")
        return self._engine

    # ------------------------------------------------------------------ public

    def open_tree(self, name: str) -> Tree:
        """Return the tree called ``name``, creating it if it does not exist.

        Names are arbitrary non-empty strings (``"object:merkle_tree"``). Opening an already
        opened tree is cheap and allowed anywhere, even inside a transaction; creating one is
        a write, so open every tree before running transactions that use it.

        Raises:
            ValueError: the name is empty, contains NUL or exceeds 511 UTF-8 bytes.
            DbError: the db is closed, the engine failed, or the tree must be created while
                this thread is inside a transaction of this db.
        """
        name = _check_tree_name(name)
        engine = self._check_open()
        if not engine.has_tree(name):
            engine = self._acquire_write("create a tree")
            try:
                engine.open_tree(name)
            finally:
                self._write_lock.release()
        return Tree(self, name)

    def list_trees(self) -> list[str]:
        """Return the sorted names of every tree stored in the db, opened or not.

        Raises:
            DbError: the db is closed or the engine failed.
        """
        return sorted(self._check_open().list_trees())

    def transaction(self, fn: Callable[[Transaction], R]) -> R:
        """Run ``fn(tx)`` in one atomic write transaction and return what it returns.

        ``fn`` must be synchronous and short: it holds the db's write lock. If it returns,
        the transaction commits, then the ``on_commit`` callbacks run. If it calls
        ``tx.abort(value)`` or raises, everything it wrote is rolled back and the exception
        (``TransactionAborted`` carrying ``value``, or the one it raised) propagates.

        Args:
            fn: called once with the :class:`Transaction`.

        Returns:
            What ``fn`` returned.

        Raises:
            TransactionAborted: ``fn`` called ``tx.abort()``.
            DbError: the db is closed, the engine failed (the transaction is then rolled
                back), or this thread is already inside a transaction of this db.
            TypeError: ``fn`` returned an awaitable (it must not be an ``async def``).
        """
        engine = self._acquire_write("start a nested transaction")
        try:
            etx = engine.begin()
            tx = Transaction(self, etx)
            self._state.in_tx = True
            try:
                result = fn(tx)
                if tx._aborted:
                    # fn caught its own TransactionAborted: the abort still stands.
                    raise TransactionAborted(tx._abort_value)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # never awaited, and it must not warn about it
                    raise TypeError("the transaction function must be synchronous")
            except BaseException:
                tx._done = True
                self._rollback(etx)
                raise
            finally:
                self._state.in_tx = False
            tx._done = True
            etx.commit()
        finally:
            self._write_lock.release()
        for callback in tx._callbacks:
            callback()
        return result

    @staticmethod
    def _rollback(etx: EngineTx) -> None:
        try:
            etx.rollback()
        except DbError:
            # The caller sees the exception that caused the rollback; keep this one in the log.
            logger.error("rolling back a metadata db transaction failed", exc_info=True)

    def snapshot(self, to_dir: str | os.PathLike[str]) -> Path:
        """Write a consistent copy of the whole db into ``to_dir`` and fsync it.

        The copy uses the engine's own layout (``db.sqlite`` or ``db.lmdb/``), so
        ``open_db(to_dir, same_engine)`` opens it. Writes that return after the snapshot
        started are not in it. Writers are not blocked while it runs.

        Args:
            to_dir: a directory that does not hold a db of this engine; created if missing.

        Returns:
            The path of the db file (sqlite) or directory (lmdb) written.

        Raises:
            DbError: the db is closed, the destination already holds a db, or the copy failed.
        """
        engine = self._check_open()
        target_dir = Path(to_dir)
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DbError(f"cannot create the snapshot directory {target_dir}: {e}") from e
        written = engine.snapshot(target_dir)
        try:
            _fsync_path(written)
            _fsync_path(target_dir)
        except OSError as e:
            raise DbError(f"cannot fsync the snapshot at {written}: {e}") from e
        logger.info("metadata db snapshot written to %s", written)
        return written

    def close(self) -> None:
        """Close the db and every engine connection. Idempotent.

        Waits for a running transaction to finish. Reads running concurrently in other
        threads must have finished (the caller ensures it, as with any resource).

        Raises:
            DbError: called from inside one of this db's transactions.
        """
        if self._state.in_tx:
            raise DbError("cannot close the metadata db from inside one of its transactions")
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._engine.close()
        logger.info("metadata db (%s) closed", self._engine.name)


def _fsync_path(path: Path) -> None:
    """fsync a file, or a directory and every file below it."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_file():
                _fsync_path(child)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@final
class Tree:
    """A handle on one tree of a :class:`Db`: a sorted map from bytes keys to bytes values.

    Each operation is atomic and, once returned, durable (per the db's ``fsync``). Keys are
    1 to :attr:`Db.max_key_bytes` bytes (the engine's limit); writes with other keys are
    refused, lookups with them find nothing. Inside a transaction, use the
    :class:`Transaction` methods instead of the write methods here.
    """

    __slots__ = ("_db", "name")

    def __init__(self, db: Db, name: str) -> None:
        """Internal: use :meth:`Db.open_tree`."""
        self._db = db
        self.name = name
        """The tree's name, as given to :meth:`Db.open_tree`."""

    def __repr__(self) -> str:
        return f"<Tree {self.name!r} of {self._db!r}>"

    # ------------------------------------------------------------------ reads

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if there is none."""
        engine = self._db._check_open()
        k = lookup_key(key, engine.max_key_bytes)
        return None if k is None else engine.get(self.name, k)

    def len(self) -> int:
        """Return the number of entries (sqlite counts them: O(n); LMDB: O(1))."""
        return self._db._check_open().len(self.name)

    def __len__(self) -> int:
        return self.len()

    def _one(self, start: Bound, end: Bound, reverse: bool) -> tuple[bytes, bytes] | None:
        engine = self._db._check_open()
        bounds = normalize_range(start, end, engine.max_key_bytes)
        if bounds is None:
            return None
        batch = engine.range_batch(self.name, bounds[0], bounds[1], reverse, 1)
        return batch[0] if batch else None

    def first(self) -> tuple[bytes, bytes] | None:
        """Return the entry with the smallest key, or ``None`` if the tree is empty."""
        return self._one(None, None, False)

    def last(self) -> tuple[bytes, bytes] | None:
        """Return the entry with the largest key, or ``None`` if the tree is empty."""
        return self._one(None, None, True)

    def get_gt(self, key: bytes) -> tuple[bytes, bytes] | None:
        """Return the entry with the smallest key strictly greater than ``key``, or ``None``."""
        return self._one(Excluded(as_bytes(key)), None, False)

    def get_lt(self, key: bytes) -> tuple[bytes, bytes] | None:
        """Return the entry with the largest key strictly less than ``key``, or ``None``."""
        return self._one(None, Excluded(as_bytes(key)), True)

    def range(
        self, start: Bound = None, end: Bound = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over the entries between two bounds, in key order.

        A bound is ``None`` (unbounded), ``bytes`` (``start`` inclusive, ``end`` exclusive,
        like Python slices) or an explicit :class:`Included` / :class:`Excluded`.

        The iterator reads ``ITER_BATCH`` entries per engine call and holds nothing open in
        between, so it may be kept across awaits, abandoned, or interleaved with writes (see
        the module docstring). Each ``next()`` that starts a new batch does I/O: in async
        code consume it inside ``anyio.to_thread.run_sync`` (``list(islice(it, n))``).

        Args:
            start: the lower bound.
            end: the upper bound.
            reverse: yield from the largest key down.

        Raises:
            TypeError: a bound key is not bytes-like (raised at once).
            DbError: the db is closed (raised at once, or by the ``next()`` that needs a
                batch) or the engine failed.
        """
        engine = self._db._check_open()
        bounds = normalize_range(start, end, engine.max_key_bytes)
        if bounds is None:
            return iter(())
        name = self.name
        db = self._db

        def fetch(lo: NormBound, hi: NormBound, rev: bool, limit: int) -> list[Item]:
            db._check_open()
            return engine.range_batch(name, lo, hi, rev, limit)

        return _iter_batches(fetch, bounds[0], bounds[1], reverse)

    def iter(self) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over every entry in ascending key order (see :meth:`range`)."""
        return self.range()

    def iter_rev(self) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over every entry in descending key order (see :meth:`range`)."""
        return self.range(reverse=True)

    # ------------------------------------------------------------------ writes

    def insert(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value.

        Raises:
            ValueError: ``key`` is empty.
            DbError: ``key`` is longer than :attr:`Db.max_key_bytes`, the db is closed, this
                thread is in a transaction of this db, or the engine failed (e.g. LMDB map
                full).
        """
        k = self._db._check_write_key(key)
        v = as_bytes(value, "value")
        engine = self._db._acquire_write("write outside the transaction")
        try:
            engine.insert(self.name, k, v)
        finally:
            self._db._write_lock.release()

    def remove(self, key: bytes) -> None:
        """Delete ``key`` if present (removing an absent key is not an error).

        Raises:
            ValueError, DbError: as for :meth:`insert`.
        """
        k = self._db._check_write_key(key)
        engine = self._db._acquire_write("write outside the transaction")
        try:
            engine.remove(self.name, k)
        finally:
            self._db._write_lock.release()

    def clear(self) -> None:
        """Delete every entry, atomically. The tree itself stays.

        Raises:
            DbError: as for :meth:`insert`.
        """
        engine = self._db._acquire_write("write outside the transaction")
        try:
            engine.clear(self.name)
        finally:
            self._db._write_lock.release()


@final
class Transaction:
    """The handle passed to the function run by :meth:`Db.transaction`.

    Its operations act on any trees of the same db, all inside one engine write
    transaction; reads see the transaction's own writes. It is only valid while the
    function runs: afterwards every method (and any iterator from :meth:`range`) raises
    :class:`DbError`.
    """

    __slots__ = ("_abort_value", "_aborted", "_callbacks", "_db", "_done", "_etx")

    def __init__(self, db: Db, etx: EngineTx) -> None:
        """Internal: created by :meth:`Db.transaction`."""
        self._db = db
        self._etx = etx
        self._callbacks: list[Callable[[], object]] = []
        self._done = False
        self._aborted = False
        self._abort_value: object = None

    def _ops(self, tree: Tree) -> EngineOps:
        if self._done:
            raise DbError("this transaction is finished; its handle cannot be used any more")
        if tree._db is not self._db:
            raise DbError(f"tree {tree.name!r} belongs to another db than this transaction")
        return self._etx

    def get(self, tree: Tree, key: bytes) -> bytes | None:
        """Return the value under ``key`` in ``tree``, including this transaction's writes."""
        ops = self._ops(tree)
        k = lookup_key(key, self._db._engine.max_key_bytes)
        return None if k is None else ops.get(tree.name, k)

    def len(self, tree: Tree) -> int:
        """Return the number of entries of ``tree``, including this transaction's writes."""
        return self._ops(tree).len(tree.name)

    def insert(self, tree: Tree, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` in ``tree``.

        Raises:
            ValueError: ``key`` is empty.
            DbError: ``key`` is longer than :attr:`Db.max_key_bytes` or the engine failed.
        """
        ops = self._ops(tree)
        ops.insert(tree.name, self._db._check_write_key(key), as_bytes(value, "value"))

    def remove(self, tree: Tree, key: bytes) -> None:
        """Delete ``key`` from ``tree`` if present (key rules as for :meth:`insert`)."""
        ops = self._ops(tree)
        ops.remove(tree.name, self._db._check_write_key(key))

    def clear(self, tree: Tree) -> None:
        """Delete every entry of ``tree``."""
        self._ops(tree).clear(tree.name)

    def range(
        self, tree: Tree, start: Bound = None, end: Bound = None, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over entries of ``tree`` between two bounds, with this transaction's writes.

        Bounds are as for :meth:`Tree.range`. Iterating continues to work across writes the
        function makes in between; it fails with :class:`DbError` once the transaction is
        over.
        """
        ops = self._ops(tree)
        bounds = normalize_range(start, end, self._db._engine.max_key_bytes)
        if bounds is None:
            return iter(())
        name = tree.name

        def fetch(lo: NormBound, hi: NormBound, rev: bool, limit: int) -> list[Item]:
            if self._done:
                raise DbError("this transaction is finished; its iterators cannot be used")
            return ops.range_batch(name, lo, hi, rev, limit)

        return _iter_batches(fetch, bounds[0], bounds[1], reverse)

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` after the transaction commits (never if it is rolled back).

        Callbacks run in registration order, on the thread that called ``Db.transaction``,
        after the write lock is released (so they may use the db). If one raises, the
        exception propagates from ``Db.transaction`` (the transaction is committed anyway)
        and the later callbacks do not run.
        """
        if self._done:
            raise DbError("this transaction is finished; its handle cannot be used any more")
        self._callbacks.append(callback)

    def abort(self, value: object = None) -> NoReturn:
        """Abort: roll everything back and make ``Db.transaction`` raise.

        Raises:
            TransactionAborted: always, carrying ``value``; let it propagate out of the
                function (catching it does not cancel the abort).
        """
        if self._done:
            raise DbError("this transaction is finished; its handle cannot be used any more")
        self._aborted = True
        self._abort_value = value
        raise TransactionAborted(value)

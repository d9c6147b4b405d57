"""The resync queue: blocks whose local copy must be checked, fetched or deleted
(Garage: src/block/resync.rs; design §9.6).

Theory of operation
-------------------
Whenever a block's local state may disagree with its reference count, its hash is put in a
persistent, time-ordered queue, and :class:`ResyncWorker` s later *resync* it: fetch the
block if it is needed but absent, offload and delete it if it is present but no longer
needed. Who queues what:

- an incref from zero (``block_incref``): check after ``2 * rpc_timeout`` that the block
  arrived (the PUT that created the reference normally brings it);
- a decref to zero: delete after the GC delay (``BLOCK_GC_DELAY + 10 s``);
- a GET for a block this node lacks (``2 * rpc_timeout``), a corrupt copy (now);
- repair and scrub (now).

Two trees hold the state:

- ``block_local_resync_queue``: key ``u64 BE when_ms ‖ hash`` → ``hash``. Keys sort by due
  time, so the head of the tree is the next entry to process. A hash may be queued several
  times (at different times): processing is idempotent, each entry is simply consumed.
- ``block_local_resync_errors``: ``hash`` → ``u64 BE errors ‖ u64 BE last_try_ms``: blocks
  whose resync failed, retried with exponential backoff
  (``retry_delay << min(errors - 1, 6)``: 1 min, 2 min, ... 64 min).

One step (:meth:`BlockResyncManager.resync_iter`) takes the earliest entry whose hash no
other worker is processing (the shared *busy* set), and:

1. not due yet → nothing to do until it is (the worker idles, at most ``max_idle_s``);
2. the hash has an error record whose next try is later → re-queue the entry at that
   time (insert before remove, in one transaction: never lost);
3. else run ``resync_block(hash)``; on success remove the entry and the error record, on
   failure bump the error record and re-queue the entry at the next try.

Invariants:

- An entry is removed only in the transaction that handled it (re-queued or done), so a
  crash at any point leaves the hash queued.
- Two workers never process the same hash at the same time (busy set, on the event loop).
- Queue writes from hooks (:meth:`BlockResyncManager.put_to_resync_at`) happen inside the
  caller's transaction; workers are notified after it commits.

Each resync run is counted with its duration and outcome
(:meth:`BlockResyncManager.statistics`; Garage's ``block.resync_*`` metrics).

The clock (``clock_ms``), the retry delay and the longest idle wait are constructor
arguments, so tests run the whole cycle in milliseconds. Database calls are blocking:
the async methods run them with ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, final

import anyio
import anyio.to_thread

from garage_table import Notifier
from garage_util.background import Tranquilizer, Worker, WorkerState, WorkerStatus, int_tunable
from garage_util.clock import now_msec
from garage_util.data import HASH_LEN, FixedBytes32, Hash
from garage_util.encode import Versioned, decode_versioned, encode_versioned
from garage_util.errors import DecodeError
from garage_util.persist import write_atomically

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from garage_util.background import BgVars
    from garage_util.db import Db, Transaction

__all__ = [
    "INITIAL_RESYNC_TRANQUILITY",
    "MAX_RESYNC_WORKERS",
    "RESYNC_CFG_FILE",
    "RESYNC_ERRORS_TREE",
    "RESYNC_MAX_IDLE_S",
    "RESYNC_QUEUE_TREE",
    "RESYNC_RETRY_DELAY_MS",
    "RESYNC_RETRY_MAX_BACKOFF_POWER",
    "BlockResyncManager",
    "ErrorCounter",
    "ResyncErrorInfo",
    "ResyncIterResult",
    "ResyncPersistedConfig",
    "ResyncStatistics",
    "ResyncWorker",
    "retry_delay_ms",
]

logger = logging.getLogger(__name__)

#: The queue tree (Garage's name, format of Garage before v2: ``when ‖ hash -> hash``).
RESYNC_QUEUE_TREE: Final = "block_local_resync_queue"
#: The error counters tree (Garage's name).
RESYNC_ERRORS_TREE: Final = "block_local_resync_errors"
#: File of the persisted worker settings in ``metadata_dir`` (Garage's name).
RESYNC_CFG_FILE: Final = "resync_cfg"

#: First retry delay after a failed resync (Garage: RESYNC_RETRY_DELAY, 60 s): long enough
#: for a restarting peer to come back, short enough that a transient failure costs little.
RESYNC_RETRY_DELAY_MS: Final = 60_000
#: The delay doubles with each failure up to 2^6 times (64 min): a block that keeps failing
#: (all copies lost) is retried about hourly without flooding the logs.
RESYNC_RETRY_MAX_BACKOFF_POWER: Final = 6
#: Most resync workers a node runs (Garage: MAX_RESYNC_WORKERS): more would only contend
#: for the same disks and links.
MAX_RESYNC_WORKERS: Final = 8
#: Initial ``resync-tranquility`` (Garage's): resync uses about a third of the time.
INITIAL_RESYNC_TRANQUILITY: Final = 2
#: Longest idle wait (Garage's 10 s): also bounds how late a wake-up that could not be
#: delivered (or an entry added by another process) is noticed.
RESYNC_MAX_IDLE_S: Final = 10.0
#: Queue entries read per step to find one whose hash is not busy: more than the workers
#: that can be busy at once, so the search rarely comes up empty.
_PEEK_BATCH: Final = 64
#: How often the queue and error counts shown by ``status()`` are recounted (sqlite counts
#: rows, O(n)): the status is a human-facing estimate.
_STATUS_RECOUNT_S: Final = 10.0

_U64: Final = 8


def retry_delay_ms(errors: int, base_ms: int = RESYNC_RETRY_DELAY_MS) -> int:
    """The wait after the ``errors``-th consecutive failure: ``base << min(errors - 1, 6)``."""
    return base_ms << min(max(errors - 1, 0), RESYNC_RETRY_MAX_BACKOFF_POWER)


def _queue_key(when_ms: int, hash: Hash) -> bytes:
    return when_ms.to_bytes(_U64, "big") + bytes(hash)


def _parse_queue_key(key: bytes) -> tuple[int, Hash]:
    if len(key) != _U64 + HASH_LEN:
        raise DecodeError(f"resync queue: invalid key of {len(key)} bytes")
    return int.from_bytes(key[:_U64], "big"), FixedBytes32(key[_U64:])


@dataclass(frozen=True, slots=True)
class ErrorCounter:
    """The failure record of one block (a value of ``block_local_resync_errors``).

    Attributes:
        errors: consecutive failed resyncs (>= 1).
        last_try_ms: when the last one failed.
    """

    errors: int
    last_try_ms: int

    @classmethod
    def parse(cls, raw: bytes) -> ErrorCounter:
        """Decodes ``u64 BE errors ‖ u64 BE last_try``.

        Raises:
            DecodeError: the value is not 16 bytes.
        """
        if len(raw) != 2 * _U64:
            raise DecodeError(f"resync error counter: invalid value of {len(raw)} bytes")
        return cls(int.from_bytes(raw[:_U64], "big"), int.from_bytes(raw[_U64:], "big"))

    def serialize(self) -> bytes:
        """The stored value."""
        return self.errors.to_bytes(_U64, "big") + self.last_try_ms.to_bytes(_U64, "big")

    def add1(self, now_ms: int) -> ErrorCounter:
        """The record after one more failure at ``now_ms``."""
        return ErrorCounter(self.errors + 1, now_ms)

    def next_try_ms(self, base_ms: int = RESYNC_RETRY_DELAY_MS) -> int:
        """When the block may be retried."""
        return self.last_try_ms + retry_delay_ms(self.errors, base_ms)


@dataclass(frozen=True, slots=True)
class ResyncErrorInfo:
    """A block whose resync keeps failing, as listed by ``garage block list-errors``.

    Attributes:
        hash: the block.
        errors: consecutive failures.
        last_try_ms: when it last failed.
        next_try_ms: when it will be retried.
    """

    hash: Hash
    errors: int
    last_try_ms: int
    next_try_ms: int


@dataclass(frozen=True, slots=True)
class ResyncIterResult:
    """What one :meth:`BlockResyncManager.resync_iter` did.

    Attributes:
        busy: an entry was handled (tranquilize, then go on); False: nothing was due.
        idle_s: when not busy, how long to wait before looking again.
    """

    busy: bool
    idle_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ResyncPersistedConfig(Versioned):
    """The resync settings an operator changed, kept across restarts (``resync_cfg``).

    Attributes:
        n_workers: active workers (``resync-worker-count``, 1 to 8).
        tranquility: ``resync-tranquility``.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09rscf"

    n_workers: int = 1
    tranquility: int = INITIAL_RESYNC_TRANQUILITY


@dataclass(frozen=True, slots=True)
class ResyncStatistics:
    """The block resyncs this node ran since start.

    Attributes:
        resyncs: ``resync_block`` calls.
        errors: those that failed (the block is retried later).
        duration_s: their total duration in seconds.
    """

    resyncs: int
    errors: int
    duration_s: float


@final
class BlockResyncManager:
    """The persistent resync queue, its error records and its workers' shared state.

    Args:
        db: the metadata db (the two trees are opened in it).
        clock_ms: the wall clock in ms (injected in tests).
        retry_delay_ms: the first retry delay after a failure.
        max_idle_s: the longest a worker waits before looking at the queue again.
        metadata_dir: where ``resync_cfg`` is kept; None keeps the settings in memory.
    """

    __slots__ = (
        "_busy",
        "_cfg_path",
        "_clock_ms",
        "_counted_at",
        "_db",
        "_errors",
        "_errors_len",
        "_max_idle_s",
        "_n_workers",
        "_notifier",
        "_queue",
        "_queue_len",
        "_resync_errors",
        "_resync_s",
        "_resyncs",
        "_retry_delay_ms",
        "_tranquility",
    )

    def __init__(
        self,
        db: Db,
        *,
        clock_ms: Callable[[], int] = now_msec,
        retry_delay_ms: int = RESYNC_RETRY_DELAY_MS,
        max_idle_s: float = RESYNC_MAX_IDLE_S,
        metadata_dir: Path | None = None,
    ) -> None:
        self._db = db
        self._queue = db.open_tree(RESYNC_QUEUE_TREE)
        self._errors = db.open_tree(RESYNC_ERRORS_TREE)
        self._clock_ms = clock_ms
        self._retry_delay_ms = retry_delay_ms
        self._max_idle_s = max_idle_s
        self._cfg_path = None if metadata_dir is None else Path(metadata_dir) / RESYNC_CFG_FILE
        cfg = self._load_config()
        self._n_workers = int_tunable(
            min(max(cfg.n_workers, 1), MAX_RESYNC_WORKERS),
            min_value=1,
            max_value=MAX_RESYNC_WORKERS,
        )
        self._tranquility = int_tunable(max(cfg.tranquility, 0))
        self._busy: set[Hash] = set()
        self._notifier = Notifier()
        self._queue_len: int | None = None
        self._errors_len: int | None = None
        self._counted_at = -float("inf")
        self._resyncs = self._resync_errors = 0
        self._resync_s = 0.0

    # ------------------------------------------------------------------ settings

    @property
    def worker_count(self) -> int:
        """How many workers are active (``resync-worker-count``)."""
        return self._n_workers.value

    @property
    def tranquility(self) -> int:
        """The workers' tranquility (``resync-tranquility``)."""
        return self._tranquility.value

    @property
    def max_idle_s(self) -> float:
        """The longest a worker waits before looking at the queue again."""
        return self._max_idle_s

    def set_worker_count(self, n: int) -> None:
        """Sets how many workers are active (1 to 8), persists it and wakes the workers.

        Blocking (writes ``resync_cfg``).

        Raises:
            ValueError: out of range.
        """
        self._n_workers.set(n)
        self._save_config()
        self._notifier.notify()

    def set_tranquility(self, tranquility: int) -> None:
        """Sets the workers' tranquility (>= 0) and persists it. Blocking.

        Raises:
            ValueError: negative.
        """
        self._tranquility.set(tranquility)
        self._save_config()
        self._notifier.notify()

    def register_bg_vars(self, bg_vars: BgVars) -> None:
        """Registers ``resync-worker-count`` and ``resync-tranquility`` (read-write)."""

        def set_count(text: str) -> None:
            self._n_workers.set_str(text)
            self._save_config()
            self._notifier.notify()

        def set_tranq(text: str) -> None:
            self._tranquility.set_str(text)
            self._save_config()
            self._notifier.notify()

        bg_vars.register_rw("resync-worker-count", self._n_workers.get_str, set_count)
        bg_vars.register_rw("resync-tranquility", self._tranquility.get_str, set_tranq)

    def _load_config(self) -> ResyncPersistedConfig:
        if self._cfg_path is None or not self._cfg_path.exists():
            return ResyncPersistedConfig()
        try:
            return decode_versioned(ResyncPersistedConfig, self._cfg_path.read_bytes())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable %s: %s", self._cfg_path, exc)
            return ResyncPersistedConfig()

    def _save_config(self) -> None:
        if self._cfg_path is None:
            return
        cfg = ResyncPersistedConfig(self._n_workers.value, self._tranquility.value)
        write_atomically(self._cfg_path, encode_versioned(cfg), mode=0o644)

    # ------------------------------------------------------------------ queueing

    def put_to_resync(self, hash: Hash, delay_ms: int) -> None:
        """Queues ``hash`` for a resync ``delay_ms`` from now and wakes the workers.

        Blocking (one db write): async callers use ``anyio.to_thread.run_sync``.
        """
        self._queue.insert(_queue_key(self._clock_ms() + delay_ms, hash), bytes(hash))
        self._notifier.notify()

    def put_many_to_resync(self, hashes: Iterable[Hash], delay_ms: int = 0) -> int:
        """Queues every hash of ``hashes`` in one transaction (repair); returns how many.

        Blocking.
        """
        when = self._clock_ms() + delay_ms
        items = [(_queue_key(when, h), bytes(h)) for h in hashes]
        if not items:
            return 0

        def put(tx: Transaction) -> None:
            for key, value in items:
                tx.insert(self._queue, key, value)

        self._db.transaction(put)
        self._notifier.notify()
        return len(items)

    def put_to_resync_at(self, tx: Transaction, hash: Hash, when_ms: int) -> None:
        """Queues ``hash`` for a resync at ``when_ms`` inside the caller's transaction.

        For refcount hooks: the entry is written atomically with the refcount change, and
        the workers are woken once the transaction commits.
        """
        tx.insert(self._queue, _queue_key(when_ms, hash), bytes(hash))
        tx.on_commit(self._notifier.notify)

    def notify(self) -> None:
        """Wakes the workers (e.g. after a test moved an injected clock). Any thread."""
        self._notifier.notify()

    # ------------------------------------------------------------------ inspection

    def queue_len(self) -> int:
        """Entries in the queue (blocking; sqlite counts them: O(n))."""
        return self._queue.len()

    def errors_len(self) -> int:
        """Blocks with an error record (blocking; O(n))."""
        return self._errors.len()

    def queued_hashes(self) -> list[tuple[int, Hash]]:
        """Every queue entry as ``(when_ms, hash)``, earliest first (blocking; for tests
        and ``garage block`` commands)."""
        return [_parse_queue_key(key) for key, _ in self._queue.iter()]

    def list_errors(self) -> list[ResyncErrorInfo]:
        """Every block whose resync is failing, by hash (blocking)."""
        out = []
        for key, raw in self._errors.iter():
            ec = ErrorCounter.parse(raw)
            out.append(
                ResyncErrorInfo(
                    FixedBytes32(key),
                    ec.errors,
                    ec.last_try_ms,
                    ec.next_try_ms(self._retry_delay_ms),
                )
            )
        return out

    def retry_now(self, hash: Hash) -> bool:
        """Retries an errored block at once: its backoff is cleared (the error count is kept,
        so a new failure backs off further) and it is queued now. Blocking.

        Returns:
            False when the block has no error record (nothing done).
        """
        now = self._clock_ms()

        def retry(tx: Transaction) -> bool:
            raw = tx.get(self._errors, bytes(hash))
            if raw is None:
                return False
            ec = ErrorCounter.parse(raw)
            last_try = now - retry_delay_ms(ec.errors, self._retry_delay_ms)
            tx.insert(self._errors, bytes(hash), ErrorCounter(ec.errors, last_try).serialize())
            tx.insert(self._queue, _queue_key(now, hash), bytes(hash))
            tx.on_commit(self._notifier.notify)
            return True

        return self._db.transaction(retry)

    def clear_error(self, hash: Hash) -> bool:
        """Forgets the error record of ``hash`` (its queue entries stay). Blocking.

        Returns:
            Whether there was one.
        """

        def clear(tx: Transaction) -> bool:
            if tx.get(self._errors, bytes(hash)) is None:
                return False
            tx.remove(self._errors, bytes(hash))
            return True

        return self._db.transaction(clear)

    def clear_queue(self) -> None:
        """Empties the queue and the error records (``repair clear-resync-queue``). Blocking."""

        def clear(tx: Transaction) -> None:
            tx.clear(self._queue)
            tx.clear(self._errors)

        self._db.transaction(clear)

    def statistics(self) -> ResyncStatistics:
        """The resyncs run so far (a snapshot; never blocks)."""
        return ResyncStatistics(self._resyncs, self._resync_errors, self._resync_s)

    def cached_counts(self) -> tuple[int | None, int | None]:
        """``(queue length, errored blocks)`` as last counted by a worker (None: not yet)."""
        return self._queue_len, self._errors_len

    # ------------------------------------------------------------------ one step

    async def resync_iter(
        self, resync_block: Callable[[Hash], Awaitable[None]]
    ) -> ResyncIterResult:
        """Handles the earliest due, non-busy entry (see the module docstring).

        Args:
            resync_block: does the resync of one block; raises to report a failure.

        Returns:
            Busy when an entry was handled, else how long to idle.
        """
        now_s = anyio.current_time()
        if now_s - self._counted_at >= _STATUS_RECOUNT_S:
            self._counted_at = now_s
            self._queue_len, self._errors_len = await anyio.to_thread.run_sync(self._count)
        head = await anyio.to_thread.run_sync(self._peek)
        entry = next(((k, w, h) for k, w, h in head if h not in self._busy), None)
        if entry is None:
            return ResyncIterResult(busy=False, idle_s=self._max_idle_s)
        key, when_ms, hash = entry
        now_ms = self._clock_ms()
        if now_ms < when_ms:
            return ResyncIterResult(
                busy=False, idle_s=min((when_ms - now_ms) / 1000, self._max_idle_s)
            )
        self._busy.add(hash)
        try:
            return await self._process(key, hash, now_ms, resync_block)
        finally:
            self._busy.discard(hash)

    async def _process(
        self, key: bytes, hash: Hash, now_ms: int, resync_block: Callable[[Hash], Awaitable[None]]
    ) -> ResyncIterResult:
        postponed = await anyio.to_thread.run_sync(self._postpone_if_backing_off, key, hash, now_ms)
        if postponed:
            return ResyncIterResult(busy=True)
        start = anyio.current_time()
        try:
            await resync_block(hash)
        except Exception as exc:
            self._resyncs += 1
            self._resync_errors += 1
            self._resync_s += anyio.current_time() - start
            errors = await anyio.to_thread.run_sync(self._record_failure, key, hash)
            logger.warning("resync of block %s failed (%d in a row): %s", hash, errors, exc)
            logger.debug("resync failure of block %s", hash, exc_info=True)
        else:
            self._resyncs += 1
            self._resync_s += anyio.current_time() - start
            await anyio.to_thread.run_sync(self._record_success, key, hash)
        return ResyncIterResult(busy=True)

    def _count(self) -> tuple[int, int]:
        return self._queue.len(), self._errors.len()

    def _peek(self) -> list[tuple[bytes, int, Hash]]:
        out = []
        for key, _ in self._queue.iter():
            when, hash = _parse_queue_key(key)
            out.append((key, when, hash))
            if len(out) >= _PEEK_BATCH:
                break
        return out

    def _requeue(self, tx: Transaction, key: bytes, hash: Hash, when_ms: int) -> None:
        # Insert before remove (same transaction): the hash is never out of the queue. The
        # new key can equal the old one when the delay is 0; it must then stay.
        new_key = _queue_key(when_ms, hash)
        tx.insert(self._queue, new_key, bytes(hash))
        if new_key != key:
            tx.remove(self._queue, key)

    def _postpone_if_backing_off(self, key: bytes, hash: Hash, now_ms: int) -> bool:
        def check(tx: Transaction) -> bool:
            raw = tx.get(self._errors, bytes(hash))
            if raw is None:
                return False
            next_try = ErrorCounter.parse(raw).next_try_ms(self._retry_delay_ms)
            if now_ms >= next_try:
                return False
            self._requeue(tx, key, hash, next_try)
            return True

        return self._db.transaction(check)

    def _record_failure(self, key: bytes, hash: Hash) -> int:
        now_ms = self._clock_ms()

        def fail(tx: Transaction) -> int:
            raw = tx.get(self._errors, bytes(hash))
            ec = ErrorCounter(1, now_ms) if raw is None else ErrorCounter.parse(raw).add1(now_ms)
            tx.insert(self._errors, bytes(hash), ec.serialize())
            self._requeue(tx, key, hash, ec.next_try_ms(self._retry_delay_ms))
            return ec.errors

        return self._db.transaction(fail)

    def _record_success(self, key: bytes, hash: Hash) -> None:
        def done(tx: Transaction) -> None:
            tx.remove(self._errors, bytes(hash))
            tx.remove(self._queue, key)

        self._db.transaction(done)

    # ------------------------------------------------------------------ waiting

    async def wait_notified(self, timeout_s: float) -> None:
        """Returns when notified (something was queued, a setting changed) or after
        ``timeout_s``."""
        with anyio.move_on_after(timeout_s):
            await self._notifier.wait()


@final
class ResyncWorker(Worker):
    """One resync worker; several share a :class:`BlockResyncManager` (Garage spawns 8, of
    which ``resync-worker-count`` are active).

    Args:
        index: the worker's number from 0; it works only while ``index < worker_count``.
        resync: the shared queue.
        resync_block: resyncs one block (``BlockManager.resync_block``).
    """

    __slots__ = ("_index", "_next_delay_s", "_resync", "_resync_block", "_tranquilizer")

    def __init__(
        self,
        index: int,
        resync: BlockResyncManager,
        resync_block: Callable[[Hash], Awaitable[None]],
    ) -> None:
        self._index = index
        self._resync = resync
        self._resync_block = resync_block
        self._tranquilizer = Tranquilizer()
        self._next_delay_s = resync.max_idle_s

    @property
    def name(self) -> str:
        return f"Block resync worker #{self._index + 1}"

    @property
    def _enabled(self) -> bool:
        return self._index < self._resync.worker_count

    def status(self) -> WorkerStatus:
        """Queue length and errored blocks (as last counted), tranquility."""
        if not self._enabled:
            return WorkerStatus(freeform=("This worker is currently disabled",))
        queue_len, errors = self._resync.cached_counts()
        return WorkerStatus(
            tranquility=self._resync.tranquility, queue_length=queue_len, persistent_errors=errors
        )

    async def work(self) -> WorkerState:
        if not self._enabled:
            return WorkerState.IDLE
        self._tranquilizer.reset(anyio.current_time())
        result = await self._resync.resync_iter(self._resync_block)
        if result.busy:
            return self._tranquilizer.tranquilize_worker(
                self._resync.tranquility, anyio.current_time()
            )
        self._next_delay_s = result.idle_s
        return WorkerState.IDLE

    async def wait_for_work(self) -> WorkerState:
        while not self._enabled:
            await self._resync.wait_notified(self._resync.max_idle_s)
        await self._resync.wait_notified(self._next_delay_s)
        return WorkerState.BUSY

"""Tombstone garbage collection: forget a deletion once no replica can undo it.

Garage: src/table/gc.rs, doc/book/design/internals.md ("Garbage collection"); design §7.8.

Theory of operation
-------------------
Deleting an entry writes a *tombstone*: an entry whose ``is_tombstone()`` is true and that
supersedes, by the CRDT merge, every older value of the key. The tombstone cannot simply be
dropped: if replica A forgets it while replica B still holds an older value ``x``, the
next anti-entropy sync (or read repair) carries ``x`` from B back to A, and the deleted
entry comes back to life. **A tombstone must outlive every older value of its key**, on
every node that might hold one.

So a tombstone is deleted only when every node storing its partition is known to hold it
(or something newer). The partition's first storage node, its GC *leader*, records every
tombstone it stores in ``gc_todo_v2`` (``ts_ms ‖ tree_key -> blake2sum(tombstone bytes)``,
written by :class:`~garage_table.TableData` in the update transaction). Once an entry is
:data:`TABLE_GC_DELAY_S` old, the leader's :class:`GcWorker` collects it, in three steps
per set of other storage nodes:

1. ``Update(values)``: push the tombstones themselves to every other storage node; all
   must acknowledge. Afterwards each replica holds the tombstone or a newer value: any
   older value it had was merged away. Skipping this step is exactly the resurrection
   above: a replica that missed the deletion would keep ``x`` while the others forget.
2. ``DeleteIfEqualHash([(key, hash)])``: every other node deletes the entry **only if its
   stored bytes still hash to that exact tombstone**; all must acknowledge.
3. The leader deletes its own copy the same way, then removes the todo entry.

Why all replicas must confirm step 1 before anyone deletes: a node that did not get the
tombstone may hold the old value; as long as one tombstone copy remains anywhere, sync
will eventually overwrite that value, so deleting is only safe once no node can still
hold it. Any failure (a node down or slow) leaves the whole group queued, and the worker
retries later; nothing is deleted anywhere in the meantime.

Why compare-and-delete (invariant 4): between the leader's read and a node's delete, a
client may write the key again (a new value, or a newer tombstone). A blind delete would
lose that write. Deleting only if the bytes still hash to the recorded tombstone keeps any
newer state, which then spreads by the normal write path and sync. The same holds for the
todo entry itself: it is removed only if it still carries the hash we processed, and a
todo entry whose tombstone was superseded locally is simply dropped (a newer tombstone
has a todo entry of its own).

Why the delay (invariant 5): during a layout change a node that no longer stores a
partition keeps its items until it has offloaded them, and the GC does not ask it. The
24 h delay gives rebalancing time to finish before any tombstone is forgotten (Garage
PR #135). It is a synchrony assumption, as Garage's docs acknowledge.

Failure handling: a group that failed stays at the head of the (time-ordered) todo, so
every retry starts with it; a node down for long therefore slows the GC of its groups but
never makes anything unsafe.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio

from garage_rpc.net import PRIO_BACKGROUND, Endpoint, NetApp, RpcError
from garage_util.background import Worker, WorkerState, WorkerStatus
from garage_util.clock import now_msec
from garage_util.data import HASH_LEN, FixedBytes32, Hash, blake2sum

from ._data import GC_TODO_TS_BYTES
from ._notify import Notifier

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.abc import ByteReceiveStream

    from garage_rpc.net import AttachedStream, NodeId
    from garage_util.data import Uuid
    from garage_util.db import Transaction

    from ._data import TableData
    from .schema import TableEntry

__all__ = [
    "GC_BATCH_SIZE",
    "GC_IDLE_WAKEUP_S",
    "GC_RETRY_DELAY_S",
    "GC_RPC_TIMEOUT_S",
    "GC_SCAN_LIMIT",
    "TABLE_GC_DELAY_S",
    "DeleteIfEqualHash",
    "GcPass",
    "GcStatistics",
    "GcUpdate",
    "GcWorker",
    "TableGc",
]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound="TableEntry[Any, Any]")
Q = TypeVar("Q")

#: Age a tombstone must reach before it may be collected (Garage's TABLE_GC_DELAY, 24 h):
#: long enough for the rebalancing that follows a layout change to finish, so that a node
#: still offloading old data cannot bring back what the GC forgot.
TABLE_GC_DELAY_S: Final = 24 * 3600.0
#: Tombstones collected per pass (Garage's TABLE_GC_BATCH_SIZE): one Update message of up
#: to 1024 small entries stays far below the transport's message size limit.
GC_BATCH_SIZE: Final = 1024
#: Due todo entries examined per pass (Garage: twice the batch): stale entries are dropped
#: on the way, so a burst of superseded tombstones does not leave a batch half empty.
GC_SCAN_LIMIT: Final = 2 * GC_BATCH_SIZE
#: Deadline of one GC RPC to one node (Garage's TABLE_GC_RPC_TIMEOUT): GC runs in the
#: background and may wait behind foreground traffic, but a stuck peer must not hold the
#: worker for long.
GC_RPC_TIMEOUT_S: Final = 30.0
#: Pause before retrying after a node did not acknowledge (Garage's first GC loop slept
#: 10 s after an error): a node that is down usually stays down for longer, and 10 s
#: resumes the GC soon after it is back at a negligible cost.
GC_RETRY_DELAY_S: Final = 10.0
#: Longest sleep of the worker (Garage: 60 s), idle or waiting for an entry to become due,
#: so that a changed clock or layout is noticed within a minute.
GC_IDLE_WAKEUP_S: Final = 60.0
#: Shortest idle sleep: with a zero delay, the idle wake-up must not become a busy loop.
_MIN_IDLE_WAKEUP_S: Final = 0.1
#: How often the worker recounts the todo for its status (sqlite counts in O(n)).
_STATUS_RECOUNT_S: Final = 10.0


# ---------------------------------------------------------------------- wire messages


@dataclass(frozen=True, slots=True)
class GcUpdate:
    """Request ``gc.rs/Update``: merge these encoded entries (tombstones) locally."""

    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DeleteIfEqualHash:
    """Request ``gc.rs/DeleteIfEqualHash``: delete each ``tree_key`` whose stored bytes
    still hash to the given hash; leave it otherwise."""

    items: tuple[tuple[bytes, Hash], ...]


# ---------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class GcPass:
    """What one :meth:`TableGc.run_pass` did.

    Attributes:
        collected: tombstones pushed to and deleted (if unchanged) on every storage node,
            whose todo entries are now gone.
        dropped: stale todo entries removed, whose tombstone had been superseded locally.
        failed: due tombstones left queued because some node did not acknowledge.
        next_due_ms: when the first todo entry not yet due becomes due (wall clock, ms),
            or None when the scan did not reach one.
    """

    collected: int = 0
    dropped: int = 0
    failed: int = 0
    next_due_ms: int | None = None

    @property
    def progressed(self) -> bool:
        """True when the pass removed some todo entries (so another may find more)."""
        return self.collected > 0 or self.dropped > 0


@dataclass(frozen=True, slots=True)
class GcStatistics:
    """Totals since the :class:`TableGc` was created.

    Attributes:
        passes: passes run.
        collected: tombstones collected everywhere.
        dropped: stale todo entries dropped.
        failed_groups: node groups that did not all acknowledge (retried later).
    """

    passes: int
    collected: int
    dropped: int
    failed_groups: int


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A due todo entry whose tombstone is still the stored value."""

    gc_key: bytes
    key: bytes
    value_hash: Hash
    value: bytes


# ---------------------------------------------------------------------- protocol


@final
class TableGc(Generic[E]):
    """The tombstone GC protocol of one table on one node: handlers and passes.

    Every node registers the handlers (other leaders call them); the node runs a
    :class:`GcWorker` to collect the tombstones of the partitions it leads.

    Args:
        data: the local store, whose ``gc_todo`` lists the tombstones to collect.
        netapp: the transport; the ``gc.rs`` endpoints are registered on it.
        delay_s: minimum age of a tombstone before collection.
        clock_ms: the wall clock in ms since the epoch, compared with the todo timestamps
            (which ``data`` wrote with its own clock).

    Raises:
        ValueError: ``delay_s`` is negative or not finite, or the table's GC endpoints are
            already registered on ``netapp``.
    """

    __slots__ = (
        "_clock_ms",
        "_collected",
        "_data",
        "_delay_ms",
        "_dropped",
        "_ep_delete",
        "_ep_update",
        "_failed_groups",
        "_netapp",
        "_notify",
        "_passes",
    )

    def __init__(
        self,
        data: TableData[E],
        netapp: NetApp,
        *,
        delay_s: float = TABLE_GC_DELAY_S,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"delay_s must be finite and >= 0, got {delay_s!r}")
        self._data = data
        self._netapp = netapp
        self._delay_ms = round(delay_s * 1000)
        self._clock_ms = clock_ms
        self._notify = Notifier()
        self._passes = self._collected = self._dropped = self._failed_groups = 0
        prefix = f"garage_table/gc.rs/Rpc:{data.name}"
        self._ep_update = Endpoint(f"{prefix}/Update", GcUpdate, type(None))
        self._ep_delete = Endpoint(f"{prefix}/DeleteIfEqualHash", DeleteIfEqualHash, type(None))
        netapp.endpoint(self._ep_update, self._handle_update)
        netapp.endpoint(self._ep_delete, self._handle_delete)

    def __repr__(self) -> str:
        return f"<TableGc {self._data.name!r}>"

    @property
    def data(self) -> TableData[E]:
        """The local store this GC collects from."""
        return self._data

    @property
    def delay_s(self) -> float:
        """Minimum age of a tombstone before collection."""
        return self._delay_ms / 1000

    def statistics(self) -> GcStatistics:
        """Totals since creation (a snapshot; never blocks)."""
        return GcStatistics(self._passes, self._collected, self._dropped, self._failed_groups)

    def wake(self) -> None:
        """Wakes an idle :class:`GcWorker` now (e.g. ``garage repair``); thread-safe."""
        self._notify.notify()

    @property
    def notifier(self) -> Notifier:
        """The signal :meth:`wake` sets (what an idle worker waits on)."""
        return self._notify

    def now_ms(self) -> int:
        """The GC's wall clock, in ms."""
        return self._clock_ms()

    # ------------------------------------------------------------------ one pass

    async def run_pass(self) -> GcPass:
        """Collects up to :data:`GC_BATCH_SIZE` due tombstones (one worker step).

        Scans the todo in time order up to the first entry not yet due, drops the entries
        whose tombstone was superseded, then runs the three GC steps for each group of
        tombstones stored by the same other nodes, groups concurrently.

        Returns:
            What the pass did; tombstones of groups that failed stay queued.
        """
        self._passes += 1
        now_ms = self._clock_ms()
        candidates, dropped, next_due_ms = await anyio.to_thread.run_sync(self._scan, now_ms)
        self._dropped += dropped
        batch = candidates[:GC_BATCH_SIZE]
        groups: dict[tuple[Uuid, ...], list[_Candidate]] = {}
        me = self._data.node_id
        for cand in batch:
            storing = self._data.replication.storage_nodes(FixedBytes32(cand.key[:HASH_LEN]))
            others = tuple(sorted({n for n in storing if n != me}))
            groups.setdefault(others, []).append(cand)
        outcomes: list[tuple[int, bool]] = []

        async def collect(nodes: tuple[Uuid, ...], items: list[_Candidate]) -> None:
            outcomes.append((len(items), await self._collect_group(nodes, items)))

        async with anyio.create_task_group() as tg:
            for nodes, items in groups.items():
                tg.start_soon(collect, nodes, items)
        collected = sum(n for n, ok in outcomes if ok)
        failed = sum(n for n, ok in outcomes if not ok)
        self._collected += collected
        self._failed_groups += sum(1 for _, ok in outcomes if not ok)
        if collected or dropped:
            logger.debug(
                "table %s: GC collected %d tombstones, dropped %d stale todo entries",
                self._data.name,
                collected,
                dropped,
            )
        return GcPass(collected, dropped, failed, next_due_ms)

    def _scan(self, now_ms: int) -> tuple[list[_Candidate], int, int | None]:
        """Reads the due todo entries; drops the stale ones (runs in a worker thread)."""
        due: list[tuple[bytes, bytes]] = []
        next_due_ms: int | None = None
        for gc_key, value_hash in self._data.gc_todo.iter():
            due_ms = int.from_bytes(gc_key[:GC_TODO_TS_BYTES], "big") + self._delay_ms
            if due_ms > now_ms:
                next_due_ms = due_ms
                break
            due.append((gc_key, value_hash))
            if len(due) >= GC_SCAN_LIMIT:
                break
        store = self._data.store
        candidates: list[_Candidate] = []
        dropped = 0
        for gc_key, value_hash in due:
            key = gc_key[GC_TODO_TS_BYTES:]
            value = store.get(key)
            if value is not None and len(value_hash) == HASH_LEN and blake2sum(value) == value_hash:
                candidates.append(_Candidate(gc_key, key, FixedBytes32(value_hash), value))
            elif self._todo_remove_if_equal(gc_key, value_hash):
                # The tombstone was overwritten (a newer value or a newer tombstone, which
                # has a todo entry of its own) or already deleted: nothing left to collect.
                dropped += 1
        return candidates, dropped, next_due_ms

    async def _collect_group(self, nodes: tuple[Uuid, ...], items: list[_Candidate]) -> bool:
        """The three GC steps for tombstones stored by the same other nodes.

        Returns:
            True if every node acknowledged both steps and the local copies were deleted.
        """
        update = GcUpdate(tuple(c.value for c in items))
        if not await self._call_all(nodes, self._ep_update, update):
            return False
        delete = DeleteIfEqualHash(tuple((c.key, c.value_hash) for c in items))
        if not await self._call_all(nodes, self._ep_delete, delete):
            return False
        await anyio.to_thread.run_sync(self._delete_locally, items)
        logger.debug("table %s: GC deleted %d tombstones", self._data.name, len(items))
        return True

    def _delete_locally(self, items: Sequence[_Candidate]) -> None:
        for cand in items:
            # If the entry changed meanwhile it stays; either way this todo entry is done
            # (a newer tombstone has its own).
            self._data.delete_if_equal_hash(cand.key, cand.value_hash)
            self._todo_remove_if_equal(cand.gc_key, cand.value_hash)

    def _todo_remove_if_equal(self, gc_key: bytes, value_hash: bytes) -> bool:
        """Removes a todo entry if it still holds ``value_hash`` (compare-and-delete)."""
        todo = self._data.gc_todo

        def txn(tx: Transaction) -> bool:
            if tx.get(todo, gc_key) != value_hash:
                return False
            tx.remove(todo, gc_key)
            return True

        return self._data.db.transaction(txn)

    async def _call_all(
        self,
        nodes: tuple[Uuid, ...],
        endpoint: Endpoint[Q, None],
        msg: Q,
    ) -> bool:
        """Calls ``endpoint`` on every node at once; True if all acknowledged."""
        failures: list[tuple[Uuid, Exception]] = []

        async def call(node: Uuid) -> None:
            try:
                with anyio.fail_after(GC_RPC_TIMEOUT_S):
                    await self._netapp.call(node, endpoint, msg, prio=PRIO_BACKGROUND)
            except (RpcError, TimeoutError) as exc:
                failures.append((node, exc))

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(call, node)
        for node, exc in failures:
            logger.info(
                "table %s: GC %s to node %s failed, will retry: %s",
                self._data.name,
                endpoint.path.rsplit("/", 1)[-1],
                node.short_hex(),
                exc,
            )
        return not failures

    # ------------------------------------------------------------------ handlers

    async def _handle_update(
        self, msg: GcUpdate, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        await anyio.to_thread.run_sync(self._data.update_many, list(msg.values))
        return None, None

    async def _handle_delete(
        self, msg: DeleteIfEqualHash, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        def delete_all() -> None:
            for key, value_hash in msg.items:
                self._data.delete_if_equal_hash(key, value_hash)

        await anyio.to_thread.run_sync(delete_all)
        return None, None


# ---------------------------------------------------------------------- worker


@final
class GcWorker(Worker, Generic[E]):
    """Runs :meth:`TableGc.run_pass` for a ``BackgroundRunner``.

    After a pass that removed todo entries it runs again at once; after a failure it waits
    ``retry_delay_s``; when the next entry is not yet due it waits until it is (at most
    :data:`GC_IDLE_WAKEUP_S`); with an empty todo it is idle until :meth:`TableGc.wake`
    or ``min(GC_IDLE_WAKEUP_S, delay)`` (an entry written later cannot be due sooner).

    Args:
        gc: the table's GC protocol.
        retry_delay_s: pause after some node did not acknowledge.
    """

    __slots__ = ("_counted_at", "_gc", "_last", "_queue_length", "_retry_delay_s")

    def __init__(self, gc: TableGc[E], *, retry_delay_s: float = GC_RETRY_DELAY_S) -> None:
        self._gc = gc
        self._retry_delay_s = retry_delay_s
        self._last: GcPass | None = None
        self._queue_length: int | None = None
        self._counted_at = -math.inf

    @property
    def name(self) -> str:
        return f"{self._gc.data.name} GC"

    def status(self) -> WorkerStatus:
        """The todo length (recounted at most every 10 s) and the totals."""
        stats = self._gc.statistics()
        return WorkerStatus(
            queue_length=self._queue_length,
            progress=f"{stats.collected} collected, {stats.dropped} stale dropped",
            persistent_errors=None if self._last is None else self._last.failed,
        )

    async def work(self) -> WorkerState:
        result = await self._gc.run_pass()
        self._last = result
        now = anyio.current_time()
        if now - self._counted_at >= _STATUS_RECOUNT_S:
            self._counted_at = now
            self._queue_length = await anyio.to_thread.run_sync(self._gc.data.gc_todo_len)
        if result.failed:
            return WorkerState.throttled(self._retry_delay_s)
        if result.progressed:
            return WorkerState.BUSY
        if result.next_due_ms is not None:
            wait_s = max(0.0, (result.next_due_ms - self._gc.now_ms()) / 1000)
            return WorkerState.throttled(min(GC_IDLE_WAKEUP_S, wait_s))
        self._queue_length = 0
        return WorkerState.IDLE

    async def wait_for_work(self) -> WorkerState:
        idle_s = max(_MIN_IDLE_WAKEUP_S, min(GC_IDLE_WAKEUP_S, self._gc.delay_s))
        with anyio.move_on_after(idle_s):
            await self._gc.notifier.wait()
        return WorkerState.BUSY

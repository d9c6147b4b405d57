"""The insert queue worker: cluster-wide inserts decided inside local transactions.

Garage: src/table/queue.rs (design §7.5). A cascade (deleting an object marks its
versions deleted, a counter propagates) is decided inside the ``updated`` hook of a local
write, where no network call may happen. The hook calls ``TableData.queue_insert``, which
merges the entry into ``<table>:insert_queue`` in the same transaction, so the cascade is
atomic with the change that caused it and survives a crash: the queue is in the db.

Theory of operation
-------------------
:class:`InsertQueueWorker` repeatedly:

1. reads up to 1024 queued ``(tree_key, bytes)`` pairs (a short read, in a thread) and
   decodes them;
2. awaits ``insert_many(entries)``, the quorum insert of the table (the caller's callable);
3. in one transaction, deletes each queue entry **only if its bytes are still the ones it
   read** (compare-and-delete). An entry merged again while the insert ran (a newer
   cascade for the same key) therefore stays and is inserted at the next step.

If ``insert_many`` fails, nothing is deleted, the runner backs off and retries: inserts
of CRDT entries are idempotent, so sending one twice is harmless. When the queue is empty
the worker is idle until a ``queue_insert`` commits, or 600 s pass.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio
import anyio.to_thread

from garage_util.background import Worker, WorkerState, WorkerStatus

from ._merkle import STATUS_RECOUNT_S
from .schema import TableEntry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_util.db import Transaction

    from ._data import TableData

__all__ = ["QUEUE_BATCH_SIZE", "QUEUE_IDLE_WAKEUP_S", "InsertQueueWorker"]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=TableEntry[Any, Any])

# Entries sent per insert_many call (design §7.5: ~1024). insert_many groups them per
# destination node, so a batch is one Update RPC per node; 1024 small metadata entries
# stay well below a megabyte on the wire while amortising the round trips of a quorum.
QUEUE_BATCH_SIZE: Final = 1024

# Garage's InsertQueueWorker also wakes every 10 minutes without a notification: a safety
# net that bounds how long a lost wake-up can delay a cascade (the queue itself persists).
QUEUE_IDLE_WAKEUP_S: Final = 600.0


@final
class InsertQueueWorker(Worker, Generic[E]):
    """Sends a table's queued entries with ``insert_many``, for a ``BackgroundRunner``.

    Args:
        data: the table whose insert queue to drain.
        insert_many: inserts entries cluster-wide (``Table.insert_many``); it raises if
            the quorum was not reached, and the entries are then retried later.
        batch_size: the most entries per ``insert_many`` call.
    """

    __slots__ = ("_batch_size", "_counted_at", "_data", "_insert_many", "_queue_length")

    def __init__(
        self,
        data: TableData[E],
        insert_many: Callable[[list[E]], Awaitable[None]],
        *,
        batch_size: int = QUEUE_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._data = data
        self._insert_many = insert_many
        self._batch_size = batch_size
        self._queue_length: int | None = None
        self._counted_at = -math.inf

    @property
    def name(self) -> str:
        return f"{self._data.name} queue"

    def status(self) -> WorkerStatus:
        """Reports the queue length, as last counted by a step (at most every 10 s)."""
        return WorkerStatus(queue_length=self._queue_length)

    async def work(self) -> WorkerState:
        batch = await anyio.to_thread.run_sync(self._read_batch)
        if not batch:
            self._queue_length = 0
            return WorkerState.IDLE
        await self._insert_many([entry for _key, _value, entry in batch])
        read = [(key, value) for key, value, _entry in batch]
        await anyio.to_thread.run_sync(self._remove_unchanged, read)
        now = anyio.current_time()
        if now - self._counted_at >= STATUS_RECOUNT_S:
            self._counted_at = now
            self._queue_length = await anyio.to_thread.run_sync(self._data.insert_queue_len)
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        with anyio.move_on_after(QUEUE_IDLE_WAKEUP_S):
            await self._data.insert_queue_notify.wait()
        return WorkerState.BUSY

    def _read_batch(self) -> list[tuple[bytes, bytes, E]]:
        """Up to ``batch_size`` queued entries as ``(key, bytes, decoded)``."""
        batch: list[tuple[bytes, bytes, E]] = []
        for key, value in self._data.insert_queue.range():
            batch.append((key, value, self._data.decode_entry(value)))
            if len(batch) >= self._batch_size:
                break
        return batch

    def _remove_unchanged(self, read: list[tuple[bytes, bytes]]) -> None:
        """Compare-and-delete the queue entries that were inserted."""
        queue = self._data.insert_queue

        def txn(tx: Transaction) -> int:
            kept = 0
            for key, value in read:
                if tx.get(queue, key) == value:
                    tx.remove(queue, key)
                else:
                    kept += 1
            return kept

        kept = self._data.db.transaction(txn)
        if kept:
            logger.debug("%s: %d queued entries changed during their insert; kept", self.name, kept)

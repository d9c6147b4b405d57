"""Online repairs of the metadata tables (Garage: src/garage/repair/online.rs).

``garage repair versions|mpu|block-refs|block-rc`` spawn one of these one-shot workers on
the node's ``BackgroundRunner``. Each walks the **local** rows of one table, a batch at a
time (the walk keeps only a cursor, so rows written meanwhile are seen or not, harmlessly),
and for every live row asks whether what should keep it alive still does:

- ``versions``: a version lives while its owner does: the object still lists it (not
  aborted), or the multipart upload is not deleted;
- ``mpu``: an upload lives while its object still has the matching multipart
  ``Uploading`` version;
- ``block-refs``: a block reference lives while its version exists and is not deleted;
- ``block-rc``: every block's local reference count is recounted from the block_ref rows
  (``BlockManager.recalculate_rc``), for the hashes of the block_ref table and of the rc
  tree.

A dead row is not written directly: its deletion is **queued** (``TableData.queue_insert``
in a local transaction), and the table's insert queue worker sends it to every replica,
where the usual deletion cascade follows (a deleted version releases its block
references, which release their blocks). The owner checks are quorum reads, as in Garage.
Repairs are idempotent: running one twice finds nothing left to fix the second time.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import anyio

from garage_model.bucket_table import UuidKey
from garage_model.s3 import (
    Aborted,
    BlockRef,
    MpuBacklink,
    MultipartUpload,
    ObjectBacklink,
    Version,
)
from garage_table.schema import EmptyKey, StringKey, TableEntry
from garage_util.background import Worker, WorkerState, WorkerStatus
from garage_util.data import FixedBytes32, Hash
from garage_util.db import Excluded

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_model import Garage
    from garage_table import TableData
    from garage_util.db import Bound, Tree

__all__ = [
    "REPAIR_BATCH",
    "BlockRcRepairWorker",
    "TableRepairWorker",
    "block_ref_repair",
    "mpu_repair",
    "version_repair",
]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=TableEntry[Any, Any])

#: Rows read per step: a short db read, and a step short enough to finish within the
#: runner's exit deadline even with one quorum read per row.
REPAIR_BATCH: Final = 100
_HASH_LEN: Final = 32


def _next_rows(tree: Tree, cursor: bytes | None) -> list[tuple[bytes, bytes]]:
    start: Bound = None if cursor is None else Excluded(cursor)
    return list(itertools.islice(tree.range(start), REPAIR_BATCH))


async def _queue(data: TableData[E], entry: E) -> None:
    """Queues ``entry`` for a cluster-wide insert (the insert queue worker sends it)."""
    await anyio.to_thread.run_sync(data.db.transaction, lambda tx: data.queue_insert(tx, entry))


@final
class TableRepairWorker(Worker, Generic[E]):
    """Walks the local rows of one table and queues the fix of every dead one.

    Args:
        name: the worker's name.
        data: the table's local data.
        fix: for a row, the entry to queue (its deletion), or None when it is fine.
    """

    __slots__ = ("_counter", "_cursor", "_data", "_fix", "_name", "_repairs")

    def __init__(
        self, name: str, data: TableData[E], fix: Callable[[E], Awaitable[E | None]]
    ) -> None:
        self._name = name
        self._data = data
        self._fix = fix
        self._cursor: bytes | None = None
        self._counter = 0
        self._repairs = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def repairs(self) -> int:
        """Rows found dead (their deletion was queued) so far."""
        return self._repairs

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            progress=f"{self._counter} rows checked",
            freeform=(f"Rows checked: {self._counter}", f"Repairs queued: {self._repairs}"),
        )

    async def work(self) -> WorkerState:
        rows = await anyio.to_thread.run_sync(_next_rows, self._data.store, self._cursor)
        if not rows:
            logger.info(
                "%s done: %d rows checked, %d repairs queued",
                self._name,
                self._counter,
                self._repairs,
            )
            return WorkerState.DONE
        for _key, raw in rows:
            fixed = await self._fix(self._data.decode_entry(raw))
            if fixed is not None:
                await _queue(self._data, fixed)
                self._repairs += 1
        self._counter += len(rows)
        self._cursor = rows[-1][0]
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        return WorkerState.DONE  # never idle: work() goes from BUSY to DONE


def version_repair(garage: Garage) -> TableRepairWorker[Version]:
    """``repair versions``: deletes the versions whose object or upload no longer holds
    them."""

    async def fix(version: Version) -> Version | None:
        if version.is_deleted:
            return None
        link = version.backlink
        alive = False
        if isinstance(link, ObjectBacklink):
            obj = await garage.object_table.table.get(UuidKey(link.bucket_id), StringKey(link.key))
            alive = obj is not None and any(
                v.uuid == version.uuid and not isinstance(v.state, Aborted) for v in obj.versions
            )
        elif isinstance(link, MpuBacklink):
            mpu = await garage.mpu_table.table.get(UuidKey(link.upload_id), EmptyKey())
            alive = mpu is not None and not mpu.is_deleted
        if alive:
            return None
        logger.info("repair versions: deleting orphan version %s", version.uuid)
        return Version.new(version.uuid, link, deleted=True)

    return TableRepairWorker("Version repair worker", garage.version_table.data, fix)


def mpu_repair(garage: Garage) -> TableRepairWorker[MultipartUpload]:
    """``repair mpu``: deletes the uploads whose object no longer has them uploading."""

    async def fix(mpu: MultipartUpload) -> MultipartUpload | None:
        if mpu.is_deleted:
            return None
        obj = await garage.object_table.table.get(UuidKey(mpu.bucket_id), StringKey(mpu.key))
        alive = obj is not None and any(
            v.uuid == mpu.upload_id and v.is_uploading(check_multipart=True) for v in obj.versions
        )
        if alive:
            return None
        logger.info("repair mpu: deleting orphan multipart upload %s", mpu.upload_id)
        return MultipartUpload.new(
            mpu.upload_id, mpu.timestamp, mpu.bucket_id, mpu.key, deleted=True
        )

    return TableRepairWorker("Multipart upload repair worker", garage.mpu_table.data, fix)


def block_ref_repair(garage: Garage) -> TableRepairWorker[BlockRef]:
    """``repair block-refs``: deletes the references whose version is gone or deleted."""

    async def fix(ref: BlockRef) -> BlockRef | None:
        if ref.is_deleted:
            return None
        version = await garage.version_table.table.get(UuidKey(ref.version), EmptyKey())
        if version is not None and not version.is_deleted:
            return None
        logger.info("repair block-refs: deleting the ref of %s to %s", ref.version, ref.block)
        return BlockRef.new(ref.block, ref.version, deleted=True)

    return TableRepairWorker("Block ref repair worker", garage.block_ref_table.data, fix)


@final
class BlockRcRepairWorker(Worker):
    """``repair block-rc``: recounts the reference count of every block this node knows.

    Phase 1 walks the block_ref rows (their keys start with the block hash), phase 2 the
    rc tree (counts whose refs are all gone); each distinct hash is recounted once per
    phase, and a wrong count is fixed (``BlockManager.recalculate_rc`` logs it).
    """

    __slots__ = ("_cursor", "_garage", "_last", "_phase", "_seen")

    def __init__(self, garage: Garage) -> None:
        self._garage = garage
        self._phase = 1
        self._cursor: bytes | None = None
        self._last: Hash | None = None
        self._seen = 0

    @property
    def name(self) -> str:
        return "Block refcount repair worker"

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            progress=f"phase {self._phase}/2, {self._seen} blocks recounted",
            freeform=(f"Blocks recounted: {self._seen}",),
        )

    def _tree(self) -> Tree:
        if self._phase == 1:
            return self._garage.block_ref_table.data.store
        return self._garage.block_manager.rc.tree

    def _recount(self, rows: list[tuple[bytes, bytes]]) -> int:
        manager = self._garage.block_manager
        done = 0
        for key, _ in rows:
            block = FixedBytes32(key[:_HASH_LEN])
            if block == self._last:
                continue  # several refs of one block are consecutive
            self._last = block
            manager.recalculate_rc(block)
            done += 1
        return done

    async def work(self) -> WorkerState:
        rows = await anyio.to_thread.run_sync(_next_rows, self._tree(), self._cursor)
        if not rows:
            if self._phase == 1:
                self._phase, self._cursor, self._last = 2, None, None
                return WorkerState.BUSY
            logger.info("block refcount repair done: %d blocks recounted", self._seen)
            return WorkerState.DONE
        self._seen += await anyio.to_thread.run_sync(self._recount, rows)
        self._cursor = rows[-1][0]
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        return WorkerState.DONE  # never idle: work() goes from BUSY to DONE

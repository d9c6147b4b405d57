"""The node's side of the admin RPC: workers, repairs, statistics, blocks, snapshots
(Garage: src/garage/admin/mod.rs, block.rs, src/garage/repair/online.rs).

Each function answers one request with the node's parts: the background runner and its
variables (``garage worker``), the repair workers and the tables' sync workers
(``garage repair``), table and block counts (``garage stats``), the block manager's resync
queue and the block_ref table (``garage block``), and the metadata db's snapshot
(``garage meta snapshot``). Blocking reads (counting rows, listing errors, the snapshot
itself) run in worker threads.

Purging a block (``garage block purge``) deletes what uses it, as Garage does: the object
version that holds it is hidden behind a new delete marker (or the upload aborted), the
version is marked deleted and the block reference too, so the block is released.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
from importlib.metadata import version
from typing import TYPE_CHECKING, Final

import anyio

from garage_model.block import RebalanceWorker, RepairBlocksWorker, ScrubCommand
from garage_model.bucket_table import UuidKey
from garage_model.s3 import (
    Aborted,
    BlockRef,
    Complete,
    DeleteMarker,
    MpuBacklink,
    Object,
    ObjectBacklink,
    ObjectVersion,
    Version,
)
from garage_rpc.layout import NB_PARTITIONS
from garage_table.schema import EmptyKey, StringKey
from garage_util.background import WorkerInfoState
from garage_util.clock import msec_to_rfc3339, now_msec
from garage_util.data import FixedBytes32, gen_uuid

from ._repair import BlockRcRepairWorker, block_ref_repair, mpu_repair, version_repair
from .admin_rpc import (
    AdminRequest,
    AdminRpcError,
    BlockDetails,
    BlockErrorInfo,
    BlockErrors,
    BlockRefInfo,
    Done,
    GetBlockInfo,
    GetStats,
    GetWorkerInfo,
    GetWorkerVars,
    LaunchRepair,
    ListBlockErrors,
    ListWorkers,
    NodeDisk,
    NodeStats,
    PurgeBlocks,
    RetryBlocks,
    SetWorkerVar,
    SnapshotMetadata,
    TableStats,
    WorkerDescription,
    WorkerDetails,
    WorkerListing,
    WorkerVars,
    WorkerVarValue,
)

if TYPE_CHECKING:
    from pathlib import Path

    from garage_model import Garage
    from garage_util.background import Worker, WorkerInfo
    from garage_util.data import Hash

    from .admin_rpc import AdminResponse

__all__ = ["REPAIRS", "SNAPSHOTS_KEPT", "dispatch", "snapshot_metadata"]

logger = logging.getLogger(__name__)

#: What ``garage repair`` accepts (``scrub`` takes a command of its own).
REPAIRS: Final = (
    "tables",
    "blocks",
    "versions",
    "mpu",
    "block-refs",
    "block-rc",
    "rebalance",
    "scrub",
)
#: Snapshots kept in ``metadata_snapshots_dir``: Garage keeps the two newest, enough to
#: fall back one step if the newest was taken from an already damaged db.
SNAPSHOTS_KEPT: Final = 2
#: Block references read for ``block info`` and ``block purge`` (Garage's limit): a block
#: shared by more versions than that is rare, and the listing says when it is cut.
_MAX_REFS: Final = 10_000


async def dispatch(garage: Garage, msg: AdminRequest) -> AdminResponse:
    """Answers the requests that are not about buckets, keys, peers or the layout.

    Raises:
        GarageError: the request is refused.
    """
    match msg:
        case ListWorkers(busy_only=busy, errors_only=errors):
            infos = garage.runner.worker_info()
            out = [
                _describe(tid, info)
                for tid, info in infos.items()
                if (not busy or info.state in (WorkerInfoState.BUSY, WorkerInfoState.THROTTLED))
                and (not errors or info.errors > 0)
            ]
            return WorkerListing(tuple(out))
        case GetWorkerInfo(tid=tid):
            info = garage.runner.worker_info().get(tid)
            if info is None:
                raise AdminRpcError(f"no worker with TID {tid} (see `garage worker list`)")
            return WorkerDetails(_describe(tid, info))
        case GetWorkerVars(variable=variable):
            node = garage.node_id.hex()
            if variable is None:
                values = garage.bg_vars.get_all()
            else:
                values = [(variable, garage.bg_vars.get(variable))]
            return WorkerVars(tuple(WorkerVarValue(node, n, v) for n, v in values))
        case SetWorkerVar(variable=variable, value=value):
            garage.bg_vars.set(variable, value)
            new = garage.bg_vars.get(variable)
            return WorkerVars((WorkerVarValue(garage.node_id.hex(), variable, new),))
        case LaunchRepair():
            return _launch_repair(garage, msg)
        case GetStats(skip_global=skip_global):
            return await _stats(garage, skip_global=skip_global)
        case ListBlockErrors():
            return await _block_errors(garage)
        case GetBlockInfo(hash=text):
            return await _block_info(garage, _parse_hash(text))
        case RetryBlocks(blocks=blocks, all=every):
            return await _retry_blocks(garage, blocks, every=every)
        case PurgeBlocks(blocks=blocks):
            return await _purge_blocks(garage, [_parse_hash(b) for b in blocks])
        case SnapshotMetadata():
            path = await anyio.to_thread.run_sync(snapshot_metadata, garage)
            return Done(f"Metadata snapshot written to {path}")
    raise AdminRpcError(f"unsupported admin request {type(msg).__name__}")


def _parse_hash(text: str) -> Hash:
    try:
        return FixedBytes32.from_hex(text)
    except ValueError:
        raise AdminRpcError(f"invalid block hash {text!r}: expected 64 hex digits") from None


def _describe(tid: int, info: WorkerInfo) -> WorkerDescription:
    last = info.last_error
    s = info.status
    return WorkerDescription(
        tid=tid,
        name=info.name,
        state=info.state.value,
        errors=info.errors,
        consecutive_errors=info.consecutive_errors,
        last_error=None if last is None else last.message,
        last_error_ms=None if last is None else last.ts_msec,
        tranquility=s.tranquility,
        progress=s.progress,
        queue_length=s.queue_length,
        persistent_errors=s.persistent_errors,
        freeform=s.freeform,
    )


# ------------------------------------------------------------------ repair


def _launch_repair(garage: Garage, msg: LaunchRepair) -> Done:
    what = msg.what
    manager = garage.block_manager
    worker: Worker
    if what == "tables":
        # Garage: a full anti-entropy sync of every table (src/garage/repair/online.rs).
        for table in garage.tables():
            table.sync_worker.add_full_sync()
        return Done(f"Full sync of the {len(garage.tables())} tables launched.")
    if what == "scrub":
        return _scrub(garage, msg.scrub_command, msg.tranquility)
    if what == "blocks":
        worker = RepairBlocksWorker(manager)
    elif what == "rebalance":
        worker = RebalanceWorker(manager)
    elif what == "versions":
        worker = version_repair(garage)
    elif what == "mpu":
        worker = mpu_repair(garage)
    elif what == "block-refs":
        worker = block_ref_repair(garage)
    elif what == "block-rc":
        worker = BlockRcRepairWorker(garage)
    else:
        raise AdminRpcError(f"unknown repair {what!r}: expected one of {', '.join(REPAIRS)}")
    tid = garage.runner.spawn_worker(worker)
    return Done(
        f"Repair {what} launched as worker {tid} ({worker.name}); "
        f"follow it with `garage worker info {tid}`."
    )


def _scrub(garage: Garage, command: str | None, tranquility: int | None) -> Done:
    try:
        cmd = ScrubCommand(command)
    except ValueError:
        names = ", ".join(c.value for c in ScrubCommand)
        raise AdminRpcError(f"unknown scrub command {command!r}: expected one of {names}") from None
    try:
        garage.block_manager.send_scrub_command(cmd, tranquility=tranquility)
    except ValueError as exc:
        raise AdminRpcError(str(exc)) from None
    return Done(f"Scrub command {cmd.value} sent.")


# ------------------------------------------------------------------ stats


def _table_stats(garage: Garage) -> list[TableStats]:
    out = []
    for t in garage.tables():
        d = t.data
        out.append(
            TableStats(
                d.name,
                d.store.len(),
                d.merkle_tree.len(),
                d.merkle_todo.len(),
                d.insert_queue_len(),
                d.gc_todo_len(),
            )
        )
    return out


def _block_counts(garage: Garage) -> tuple[int, int, int]:
    manager = garage.block_manager
    return manager.rc.tree.len(), manager.resync.queue_len(), manager.resync.errors_len()


async def _stats(garage: Garage, *, skip_global: bool) -> NodeStats:
    tables = await anyio.to_thread.run_sync(_table_stats, garage)
    rc, queue, errors = await anyio.to_thread.run_sync(_block_counts, garage)
    stats = NodeStats(
        node=garage.node_id.hex(),
        hostname=socket.gethostname(),
        version=version("garage"),
        db_engine=garage.db.engine,
        tables=tuple(tables),
        block_rc_entries=rc,
        resync_queue=queue,
        resync_errors=errors,
    )
    if skip_global:
        return stats
    return _with_cluster(garage, stats)


def _with_cluster(garage: Garage, stats: NodeStats) -> NodeStats:
    """Adds the storage nodes' free space and what the cluster can still hold.

    Garage's estimate: a node holding ``p`` of the 256 partitions with ``A`` bytes free
    fills up when each partition grew by ``A / p``; the cluster is full when its first
    node is, so it can still take ``min(A * 256 / p)`` bytes (once per object).
    """
    layout = garage.layout.history.current
    statuses = {k.node_id: k.status for k in garage.system.known_nodes()}
    disks = []
    data_est: list[int] = []
    meta_est: list[int] = []
    for node in layout.storage_nodes:
        status = statuses.get(node)
        partitions = layout.get_node_usage(node)
        data = None if status is None else status.data_disk
        meta = None if status is None else status.meta_disk
        if partitions and data is not None:
            data_est.append(data.avail * NB_PARTITIONS // partitions)
        if partitions and meta is not None:
            meta_est.append(meta.avail * NB_PARTITIONS // partitions)
        disks.append(
            NodeDisk(
                node=node.hex(),
                hostname=None if status is None else status.hostname,
                zone=layout.get_node_zone(node) or "",
                partitions=partitions,
                data_avail=None if data is None else data.avail,
                data_total=None if data is None else data.total,
                meta_avail=None if meta is None else meta.avail,
                meta_total=None if meta is None else meta.total,
            )
        )
    return dataclasses.replace(
        stats,
        cluster=tuple(disks),
        data_avail_estimate=min(data_est, default=None),
        meta_avail_estimate=min(meta_est, default=None),
    )


# ------------------------------------------------------------------ blocks


async def _block_errors(garage: Garage) -> BlockErrors:
    manager = garage.block_manager

    def read() -> list[BlockErrorInfo]:
        return [
            BlockErrorInfo(
                e.hash.hex(), manager.get_block_rc(e.hash), e.errors, e.last_try_ms, e.next_try_ms
            )
            for e in manager.resync.list_errors()
        ]

    return BlockErrors(tuple(await anyio.to_thread.run_sync(read)))


async def _refs_of(garage: Garage, block: Hash) -> list[BlockRef]:
    return await garage.block_ref_table.table.get_range(UuidKey(block), limit=_MAX_REFS)


async def _block_info(garage: Garage, block: Hash) -> BlockDetails:
    refcount = await anyio.to_thread.run_sync(garage.block_manager.get_block_rc, block)
    refs = []
    for ref in await _refs_of(garage, block):
        version = await garage.version_table.table.get(UuidKey(ref.version), EmptyKey())
        link = None if version is None else version.backlink
        obj = link if isinstance(link, ObjectBacklink) else None
        mpu = link if isinstance(link, MpuBacklink) else None
        refs.append(
            BlockRefInfo(
                version=ref.version.hex(),
                ref_deleted=ref.is_deleted,
                version_found=version is not None,
                version_deleted=version is not None and version.is_deleted,
                bucket_id=None if obj is None else obj.bucket_id.hex(),
                key=None if obj is None else obj.key,
                upload_id=None if mpu is None else mpu.upload_id.hex(),
            )
        )
    return BlockDetails(block.hex(), refcount, tuple(refs))


async def _retry_blocks(garage: Garage, blocks: tuple[str, ...], *, every: bool) -> Done:
    resync = garage.block_manager.resync
    if every == bool(blocks):
        raise AdminRpcError("give either --all or the hashes of the blocks to retry")
    if every:
        hashes = [e.hash for e in await anyio.to_thread.run_sync(resync.list_errors)]
    else:
        hashes = [_parse_hash(b) for b in blocks]
    retried = 0
    for h in hashes:
        if await anyio.to_thread.run_sync(resync.retry_now, h):
            retried += 1
    skipped = len(hashes) - retried
    note = f" ({skipped} had no resync error)" if skipped else ""
    return Done(f"{retried} blocks scheduled for resync now{note}.")


async def _purge_blocks(garage: Garage, blocks: list[Hash]) -> Done:
    objects = uploads = versions = refs = 0
    for block in blocks:
        for ref in await _refs_of(garage, block):
            version = await garage.version_table.table.get(UuidKey(ref.version), EmptyKey())
            if version is not None:
                o, u = await _purge_owner(garage, version)
                objects, uploads = objects + o, uploads + u
                if not version.is_deleted:
                    deleted = Version.new(version.uuid, version.backlink, deleted=True)
                    await garage.version_table.table.insert(deleted)
                    versions += 1
            if not ref.is_deleted:
                await garage.block_ref_table.table.insert(
                    BlockRef.new(ref.block, ref.version, deleted=True)
                )
                refs += 1
    return Done(
        f"Purged {len(blocks)} blocks: {objects} objects deleted, {uploads} uploads aborted, "
        f"{versions} versions and {refs} block references marked deleted."
    )


async def _purge_owner(garage: Garage, version: Version) -> tuple[int, int]:
    """Deletes the object whose current data is ``version`` (a new delete marker), or
    aborts the upload it belongs to; returns (objects deleted, uploads aborted)."""
    link = version.backlink
    if isinstance(link, ObjectBacklink):
        obj = await garage.object_table.table.get(UuidKey(link.bucket_id), StringKey(link.key))
        last = None if obj is None else obj.last_complete_version()
        if last is not None and last.uuid == version.uuid and last.is_data():
            marker = ObjectVersion(gen_uuid(), last.timestamp + 1, Complete(DeleteMarker()))
            await garage.object_table.table.insert(Object.new(link.bucket_id, link.key, [marker]))
            return 1, 0
        return 0, 0
    if isinstance(link, MpuBacklink):
        mpu = await garage.mpu_table.table.get(UuidKey(link.upload_id), EmptyKey())
        if mpu is None or mpu.is_deleted:
            return 0, 0
        obj = await garage.object_table.table.get(UuidKey(mpu.bucket_id), StringKey(mpu.key))
        if obj is None:
            return 0, 0
        for v in obj.versions:
            if v.uuid == mpu.upload_id and v.is_uploading():
                aborted = Object.new(
                    mpu.bucket_id, mpu.key, [ObjectVersion(v.uuid, v.timestamp, Aborted())]
                )
                await garage.object_table.table.insert(aborted)
                return 0, 1
    return 0, 0


# ------------------------------------------------------------------ metadata snapshot


def snapshot_metadata(garage: Garage) -> Path:
    """Writes a snapshot of the metadata db into ``metadata_snapshots_dir/<RFC 3339 time>``
    and keeps only the ``SNAPSHOTS_KEPT`` newest (Garage: src/model/snapshot.rs).

    Blocking. Names sort in time order (fixed-width UTC timestamps, to the millisecond).

    Raises:
        DbError: the snapshot failed.
    """
    base = garage.config.metadata_snapshots_dir
    path = base / msec_to_rfc3339(now_msec())
    garage.db.snapshot(path)
    snapshots = sorted(p for p in base.iterdir() if p.is_dir())
    for old in snapshots[:-SNAPSHOTS_KEPT]:
        logger.info("removing old metadata snapshot %s", old)
        shutil.rmtree(old, ignore_errors=True)
    return path

"""The composition root: every part of a storage node, built once from its configuration.

Garage: src/model/garage.rs. :class:`Garage` opens the node's state (key, layout, metadata
db, data directories), builds the transport, peering, status exchange and layout manager,
the block manager, and the eight tables of the model in dependency order (each schema takes
the tables its ``updated`` hook cascades into):

- full copy on every node: ``bucket_v2``, ``bucket_alias``, ``key``;
- sharded by partition: ``block_ref`` → ``version`` → ``multipart_upload`` → ``object``,
  and the counter tables ``bucket_object_counter`` and ``bucket_mpu_counter``.

:meth:`Garage.run` serves them until cancelled; the API servers (S3, K2V, admin, web) are
built above this layer and read the tables and helpers from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import anyio.abc

from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import NetApp, NodeKey
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import RequestStrategy
from garage_rpc.system import DEFAULT_STATUS_INTERVAL_S, System
from garage_table import (
    ReplicatedTable,
    TableFullReplication,
    TableShardedReplication,
    TableTimings,
)
from garage_table.schema import DeletedFilter, EmptyKey, StringKey
from garage_util.background import BackgroundRunner, BgVars
from garage_util.clock import now_msec
from garage_util.db import open_db

from .block import (
    BLOCK_GC_DELAY_MS,
    RESYNC_MAX_IDLE_S,
    RESYNC_RETRY_DELAY_MS,
    BlockManager,
    BlockRc,
    BlockStore,
)
from .bucket_alias_table import BucketAlias, BucketAliasSchema
from .bucket_table import Bucket, BucketSchema, UuidKey
from .helper import BucketHelper, KeyHelper, LockedHelper
from .index_counter import CounterEntry, CounterFilter, CounterSchema, IndexCounter
from .k2v import (
    K2V_COUNTER_TABLE,
    K2VItem,
    K2VItemSchema,
    K2VRpcHandler,
    SubscriptionManager,
)
from .key_table import Key, KeySchema
from .lifecycle import LifecycleWorker, lifecycle_clock
from .s3 import (
    MPU_COUNTER_TABLE,
    OBJECT_COUNTER_TABLE,
    BlockRef,
    BlockRefSchema,
    MpuSchema,
    MultipartUpload,
    Object,
    ObjectFilter,
    ObjectSchema,
    Version,
    VersionSchema,
    count_live_refs,
)

if TYPE_CHECKING:
    from garage_table import TableEntry, TableReplication, TableSchema
    from garage_util.config import Config
    from garage_util.data import Uuid

__all__ = ["Garage", "GarageTimings"]

E = TypeVar("E", bound="TableEntry[Any, Any]")


@dataclass(frozen=True, slots=True, kw_only=True)
class GarageTimings:
    """Intervals and delays of a node's background work: Garage's, unless tests shorten them.

    Attributes:
        tables: the tables' sync and GC intervals and request timeouts.
        peering: the peering loop (pings, reconnections).
        status_interval_s: how often the node tells its peers its status.
        block_gc_delay_ms: how long a block whose refcount fell to zero is kept.
        block_incref_check_delay_ms: when a block gets its first reference, how long until
            the resync that checks it arrived (None: twice the RPC timeout).
        resync_retry_delay_ms: first retry delay of a failed block resync.
        resync_max_idle_s: longest idle wait of the resync workers.
        scrub_checkpoint_interval_ms: how often the scrub persists its progress
            (None: Garage's 60 s).
        lifecycle_clock_ms: the lifecycle worker's clock, which decides what day it is
            (None: the node's, shifted by ``$GARAGE_TEST_LIFECYCLE_CLOCK_OFFSET_MS`` if set).
    """

    tables: TableTimings = field(default_factory=TableTimings)
    peering: PeeringConfig = field(default_factory=PeeringConfig)
    status_interval_s: float = DEFAULT_STATUS_INTERVAL_S
    block_gc_delay_ms: int = BLOCK_GC_DELAY_MS
    block_incref_check_delay_ms: int | None = None
    resync_retry_delay_ms: int = RESYNC_RETRY_DELAY_MS
    resync_max_idle_s: float = RESYNC_MAX_IDLE_S
    scrub_checkpoint_interval_ms: int | None = None
    lifecycle_clock_ms: Callable[[], int] | None = None


@final
class Garage:
    """A storage node's parts, built from its configuration (blocking: opens files).

    Construct it in a thread from async code (``anyio.to_thread.run_sync``) or before the
    event loop starts, then ``await garage.run()`` (in a task group:
    ``await tg.start(garage.run)`` returns the bound RPC address). Leaving :meth:`run`
    stops every service, waits for the worker threads and closes the metadata db.

    Args:
        config: the node's configuration.
        timings: background intervals (tests shorten them).
        clock_ms: the wall clock in ms (tests inject one).

    Raises:
        DataLayoutError: a data directory's marker is missing or different.
        OSError: the metadata directory cannot be created or read.
    """

    def __init__(
        self,
        config: Config,
        *,
        timings: GarageTimings | None = None,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        timings = timings if timings is not None else GarageTimings()
        self.config = config
        self.timings = timings
        meta = config.metadata_dir
        meta.mkdir(parents=True, exist_ok=True)
        key = NodeKey.load_or_create(meta)
        rpc_timeout_s = config.rpc_timeout_msec / 1000
        public = config.rpc_public_addr
        self.netapp = NetApp(
            key,
            config.rpc_secret,
            bind_outgoing=config.rpc_bind_outgoing,
            public_addr=None if public is None else (public.host, public.port),
        )
        bootstrap = [(p.node_id, (p.host, p.port)) for p in config.bootstrap_peers]
        self.peering = Peering(self.netapp, bootstrap_peers=bootstrap, config=timings.peering)
        self.layout = LayoutManager(
            self.netapp,
            replication_factor=config.replication_factor,
            consistency_mode=config.consistency_mode,
            metadata_dir=meta,
        )
        self.system = System(
            self.netapp,
            self.peering,
            replication_factor=config.replication_factor,
            layout=self.layout,
            metadata_dir=meta,
            data_dir=config.data_dir[0].path if config.data_dir else None,
            status_interval_s=timings.status_interval_s,
        )
        self.rpc = self.system.rpc_helper()
        self.bg_vars = BgVars()
        self.runner = BackgroundRunner()
        self.db = open_db(
            meta,
            config.db_engine,
            fsync=config.metadata_fsync,
            lmdb_map_size=config.lmdb_map_size,
        )
        try:
            self._build(clock_ms, rpc_timeout_s)
        except BaseException:
            self.db.close()
            raise

    def _build(self, clock_ms: Callable[[], int], rpc_timeout_s: float) -> None:
        config, timings, me = self.config, self.timings, self.netapp.id
        params = ReplicationParams(config.replication_factor, config.consistency_mode)
        store = BlockStore.open(
            config.metadata_dir, config.data_dir, compression_level=config.compression_level
        )
        self.block_manager = BlockManager(
            store,
            BlockRc(self.db, gc_delay_ms=timings.block_gc_delay_ms),
            self.db,
            self.netapp,
            self.rpc,
            self.layout,
            compression_level=config.compression_level,
            data_fsync=config.data_fsync,
            ram_buffer_max=config.block_ram_buffer_max,
            strategy=RequestStrategy(timeout_s=rpc_timeout_s),
            replication=params,
            clock_ms=clock_ms,
            metadata_dir=config.metadata_dir,
            incref_check_delay_ms=timings.block_incref_check_delay_ms,
            resync_retry_delay_ms=timings.resync_retry_delay_ms,
            resync_max_idle_s=timings.resync_max_idle_s,
        )

        full = TableFullReplication(lambda: self.layout.helper, me)
        sharded = TableShardedReplication(lambda: self.layout.helper, params)

        self.bucket_table: ReplicatedTable[Bucket] = self._table(BucketSchema(), full)
        self.bucket_alias_table: ReplicatedTable[BucketAlias] = self._table(
            BucketAliasSchema(), full
        )
        self.key_table: ReplicatedTable[Key] = self._table(KeySchema(), full)

        self.block_ref_table: ReplicatedTable[BlockRef] = self._table(
            BlockRefSchema(self.block_manager), sharded
        )
        self.block_manager.set_ref_counter(lambda h: count_live_refs(self.block_ref_table.data, h))
        self.version_table: ReplicatedTable[Version] = self._table(
            VersionSchema(self.block_ref_table.data), sharded
        )
        self.mpu_counter_table: ReplicatedTable[CounterEntry[UuidKey, EmptyKey]] = self._table(
            CounterSchema(MPU_COUNTER_TABLE, UuidKey, EmptyKey), sharded
        )
        self.mpu_counter = IndexCounter(
            MPU_COUNTER_TABLE, self.db, self.mpu_counter_table.data, me, clock_ms=clock_ms
        )
        self.mpu_table: ReplicatedTable[MultipartUpload] = self._table(
            MpuSchema(self.version_table.data, self.mpu_counter), sharded
        )
        self.object_counter_table: ReplicatedTable[CounterEntry[UuidKey, EmptyKey]] = self._table(
            CounterSchema(OBJECT_COUNTER_TABLE, UuidKey, EmptyKey), sharded
        )
        self.object_counter = IndexCounter(
            OBJECT_COUNTER_TABLE, self.db, self.object_counter_table.data, me, clock_ms=clock_ms
        )
        self.object_table: ReplicatedTable[Object] = self._table(
            ObjectSchema(self.version_table.data, self.mpu_table.data, self.object_counter),
            sharded,
        )

        self.k2v_counter_table: ReplicatedTable[CounterEntry[UuidKey, StringKey]] = self._table(
            CounterSchema(K2V_COUNTER_TABLE, UuidKey, StringKey), sharded
        )
        self.k2v_counter = IndexCounter(
            K2V_COUNTER_TABLE, self.db, self.k2v_counter_table.data, me, clock_ms=clock_ms
        )
        self.k2v_subscriptions = SubscriptionManager()
        self.k2v_item_table: ReplicatedTable[K2VItem] = self._table(
            K2VItemSchema(self.k2v_counter, self.db, me, on_change=self.k2v_subscriptions.notify),
            sharded,
        )
        self.k2v_rpc = K2VRpcHandler(
            self.k2v_item_table,
            self.netapp,
            self.rpc,
            self.k2v_subscriptions,
            strategy=RequestStrategy(timeout_s=rpc_timeout_s),
            clock_ms=clock_ms,
        )

        self.bucket_helper = BucketHelper(
            self.bucket_table.table, self.bucket_alias_table.table, self.key_table.table
        )
        self.key_helper = KeyHelper(self.key_table.table)
        self.locked_helper = LockedHelper(
            self.bucket_helper,
            bucket_is_empty=self.bucket_is_empty,
            clock_ms=clock_ms,
            allow_punycode=config.allow_punycode,
        )

        for replicated in self.tables():
            for worker in replicated.workers():
                self.runner.spawn_worker(worker)
        block_workers = self.block_manager.workers(
            scrub=not config.disable_scrub,
            scrub_checkpoint_interval_ms=timings.scrub_checkpoint_interval_ms,
        )
        for worker in block_workers:
            self.runner.spawn_worker(worker)
        self.block_manager.register_bg_vars(self.bg_vars)
        self.lifecycle_worker = LifecycleWorker(
            self.object_table.data,
            self.bucket_table.table,
            clock_ms=timings.lifecycle_clock_ms or lifecycle_clock(clock_ms),
            use_local_tz=config.use_local_tz,
            metadata_dir=config.metadata_dir,
        )
        self.runner.spawn_worker(self.lifecycle_worker)
        self.lifecycle_worker.register_bg_vars(self.bg_vars)

    def _table(
        self, schema: TableSchema[Any, Any, E, Any], replication: TableReplication
    ) -> ReplicatedTable[E]:
        return ReplicatedTable(
            schema,
            replication,
            self.db,
            self.netapp,
            self.rpc,
            layout=self.layout,
            peers=self.peering.up_peers,
            timings=self.timings.tables,
        )

    def tables(self) -> list[ReplicatedTable[Any]]:
        """Every table of the node, full-copy ones first."""
        return [
            self.bucket_table,
            self.bucket_alias_table,
            self.key_table,
            self.block_ref_table,
            self.version_table,
            self.mpu_counter_table,
            self.mpu_table,
            self.object_counter_table,
            self.object_table,
            self.k2v_counter_table,
            self.k2v_item_table,
        ]

    @property
    def node_id(self) -> Uuid:
        """This node's id (its public key)."""
        return self.netapp.id

    # ------------------------------------------------------------------ queries

    async def bucket_is_empty(self, bucket_id: Uuid) -> bool:
        """True when the bucket holds no object, no unfinished upload and no K2V item
        (quorum reads; K2V items through their per-partition counters, as Garage)."""
        pk = UuidKey(bucket_id)
        for filter in (ObjectFilter.IS_DATA, ObjectFilter.uploading()):
            found = await self.object_table.table.get_range(pk, filter=filter, limit=1)
            if found:
                return False
        k2v_filter = CounterFilter(DeletedFilter.NOT_DELETED, tuple(self.counter_nodes()))
        k2v = await self.k2v_counter_table.table.get_range(pk, filter=k2v_filter, limit=1)
        return not k2v

    def counter_nodes(self) -> list[Uuid]:
        """The nodes whose counter values count: storage nodes of the live layout versions."""
        return list(self.layout.helper.all_storage_nodes)

    async def bucket_counters(self, bucket_id: Uuid) -> dict[str, int]:
        """The bucket's object and multipart counters (``objects``, ``bytes``,
        ``unfinished_uploads``, and ``mpu_uploads``, ``mpu_parts``, ``mpu_bytes``)."""
        pk, nodes = UuidKey(bucket_id), self.counter_nodes()
        out: dict[str, int] = {}
        entry = await self.object_counter_table.table.get(pk, EmptyKey())
        if entry is not None:
            out.update(entry.filtered_values(nodes))
        mpu = await self.mpu_counter_table.table.get(pk, EmptyKey())
        if mpu is not None:
            out.update({f"mpu_{k}": v for k, v in mpu.filtered_values(nodes).items()})
        return out

    # ------------------------------------------------------------------ running

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serves RPC on ``rpc_bind_addr`` and runs every service and worker until
        cancelled; reports the bound address once listening. Closes the db on the way out.
        """
        bind = self.config.rpc_bind_addr
        try:
            async with anyio.create_task_group() as tg:
                bound = await tg.start(self.netapp.run, (bind.host, bind.port))
                services = [self.peering.run, self.system.run, self.rpc.run]
                services += [t.run for t in self.tables()]
                services.append(self.runner.run)
                for service in services:
                    await tg.start(service)
                task_status.started(bound)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(self.db.close)

"""One table with everything a node runs for it (Garage: ``Table::new`` and its workers).

A replicated table is five cooperating parts: the local store (:class:`TableData`), the
quorum operations (:class:`Table`), anti-entropy (:class:`TableSyncer`), tombstone GC
(:class:`TableGc`), and four background workers (Merkle, sync, GC, insert queue).
:class:`ReplicatedTable` builds them in the right order with the same arguments, so that a
node declares each of its tables in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import anyio
import anyio.abc

from garage_rpc.rpc_helper import RequestStrategy

from ._data import TableData
from ._gc import GC_RETRY_DELAY_S, TABLE_GC_DELAY_S, GcWorker, TableGc
from ._merkle import MerkleWorker
from ._queue import InsertQueueWorker
from ._sync import DEFAULT_FIRST_SYNC_DELAY_S, DEFAULT_SYNC_INTERVAL_S, SyncWorker, TableSyncer
from .table import Table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from garage_rpc.layout_manager import LayoutManager
    from garage_rpc.net import NetApp
    from garage_rpc.rpc_helper import RpcHelper
    from garage_util.background import Worker
    from garage_util.data import FixedBytes32
    from garage_util.db import Db

    from .replication import TableReplication
    from .schema import TableEntry, TableSchema

__all__ = ["ReplicatedTable", "TableTimings"]

E = TypeVar("E", bound="TableEntry[Any, Any]")


@dataclass(frozen=True, slots=True, kw_only=True)
class TableTimings:
    """The intervals of a table's background work; Garage's defaults unless tests shorten them.

    Attributes:
        strategy: timeouts of the table's quorum requests.
        sync_interval_s: time between two full anti-entropy syncs.
        sync_first_delay_s: delay before the first full sync after start.
        gc_delay_s: how long a tombstone waits before GC may collect it.
        gc_retry_delay_s: pause of the GC worker when it has nothing due or a pass failed.
    """

    strategy: RequestStrategy = field(default_factory=RequestStrategy)
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    sync_first_delay_s: float = DEFAULT_FIRST_SYNC_DELAY_S
    gc_delay_s: float = TABLE_GC_DELAY_S
    gc_retry_delay_s: float = GC_RETRY_DELAY_S


@final
class ReplicatedTable(Generic[E]):
    """A table on a node: local store, quorum operations, sync, GC and their workers.

    Registers the table's RPC endpoints on ``netapp`` and, with ``layout``, the table with
    the layout manager (so its full syncs count towards this node's sync tracker, which is
    pushed to ``peers()`` when it rises). Start :meth:`run` (read repairs) and spawn
    :meth:`workers` on a ``BackgroundRunner``.

    Args:
        schema: the table's declaration.
        replication: where its entries live.
        db: the node's metadata db.
        netapp: the node's transport.
        rpc: the node's RPC helper.
        layout: the node's layout manager (sharded tables need it; see :class:`Table`).
        peers: the peers to tell when this table's sync raises our sync tracker.
        timings: the intervals of the background work.
    """

    __slots__ = ("_gc_retry_delay_s", "data", "gc", "sync_worker", "syncer", "table")

    def __init__(
        self,
        schema: TableSchema[Any, Any, E, Any],
        replication: TableReplication,
        db: Db,
        netapp: NetApp,
        rpc: RpcHelper,
        *,
        layout: LayoutManager | None = None,
        peers: Callable[[], Iterable[FixedBytes32]] = tuple,
        timings: TableTimings | None = None,
    ) -> None:
        timings = timings if timings is not None else TableTimings()
        name = schema.TABLE_NAME
        self.data: TableData[E] = TableData(schema, replication, db, node_id=netapp.id)
        self.table: Table[E] = Table(
            schema, replication, self.data, netapp, rpc, strategy=timings.strategy, layout=layout
        )
        on_synced = None
        if layout is not None:
            layout.register_table(name)

            async def on_synced(version: int) -> None:
                await layout.table_synced(name, version, push_to=peers())

        self.syncer: TableSyncer[E] = TableSyncer(self.data, netapp, on_synced=on_synced)
        self.sync_worker: SyncWorker[E] = SyncWorker(
            self.syncer,
            interval_s=timings.sync_interval_s,
            first_delay_s=timings.sync_first_delay_s,
        )
        self.sync_worker.watch(netapp, layout)
        self.gc: TableGc[E] = TableGc(self.data, netapp, delay_s=timings.gc_delay_s)
        self._gc_retry_delay_s = timings.gc_retry_delay_s

    def workers(self) -> list[Worker]:
        """The table's four background workers: Merkle, sync, GC and insert queue."""
        return [
            MerkleWorker(self.data),
            self.sync_worker,
            GcWorker(self.gc, retry_delay_s=self._gc_retry_delay_s),
            InsertQueueWorker(self.data, self.table.insert_many),
        ]

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Runs the table's own tasks (background read repairs) until cancelled."""
        await self.table.run(task_status=task_status)

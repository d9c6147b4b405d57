"""One K2V storage node in the test process: real tables on a real sqlite db.

The node stores every partition alone (a static replication of one node, quorums of 1).
Its K2V RPC calls go to its own handlers in-process, through the real NetApp, RpcHelper,
tables and background workers (the insert queues carry the counters to the counter
table). Use :func:`single_node` as an async context manager.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from tests.table.conftest import StaticReplication

from garage_model.bucket_table import UuidKey
from garage_model.index_counter import CounterEntry, CounterSchema, IndexCounter
from garage_model.k2v import (
    K2V_COUNTER_TABLE,
    K2VItem,
    K2VItemSchema,
    K2VRpcHandler,
    SubscriptionManager,
)
from garage_rpc.net import NetApp, NodeKey
from garage_rpc.rpc_helper import RequestStrategy, RpcHelper
from garage_table import ReplicatedTable, TableTimings
from garage_table.schema import StringKey
from garage_util.background import BackgroundRunner
from garage_util.clock import now_msec
from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from garage_util.data import Uuid

SECRET = bytes(range(32))
TIMINGS = TableTimings(strategy=RequestStrategy(timeout_s=10.0))


@dataclass
class K2VNode:
    """The K2V parts of a node, under the names :class:`garage_model.Garage` gives them."""

    netapp: NetApp
    k2v_item_table: ReplicatedTable[K2VItem]
    k2v_counter_table: ReplicatedTable[CounterEntry[UuidKey, StringKey]]
    k2v_counter: IndexCounter[UuidKey, StringKey]
    k2v_rpc: K2VRpcHandler
    schema: K2VItemSchema

    def counter_nodes(self) -> list[Uuid]:
        return [self.netapp.id]


@asynccontextmanager
async def single_node(
    db_dir: Path, *, clock_ms: Callable[[], int] = now_msec
) -> AsyncIterator[K2VNode]:
    netapp = NetApp(NodeKey.generate(), SECRET)
    rpc = RpcHelper(netapp.id, zone_of={}, rtt_of={})
    db = open_db(db_dir)
    try:
        replication = StaticReplication([netapp.id])
        counter_table: ReplicatedTable[CounterEntry[UuidKey, StringKey]] = ReplicatedTable(
            CounterSchema(K2V_COUNTER_TABLE, UuidKey, StringKey),
            replication, db, netapp, rpc, timings=TIMINGS,
        )  # fmt: skip
        counter = IndexCounter(
            K2V_COUNTER_TABLE, db, counter_table.data, netapp.id, clock_ms=clock_ms
        )
        subscriptions = SubscriptionManager()
        schema = K2VItemSchema(counter, db, netapp.id, on_change=subscriptions.notify)
        item_table: ReplicatedTable[K2VItem] = ReplicatedTable(
            schema, replication, db, netapp, rpc, timings=TIMINGS
        )
        handler = K2VRpcHandler(item_table, netapp, rpc, subscriptions, clock_ms=clock_ms)
        runner = BackgroundRunner()
        for table in (counter_table, item_table):
            for worker in table.workers():
                runner.spawn_worker(worker)
        node = K2VNode(netapp, item_table, counter_table, counter, handler, schema)
        async with anyio.create_task_group() as tg:
            for service in (rpc.run, counter_table.run, item_table.run, runner.run):
                await tg.start(service)
            yield node
            tg.cancel_scope.cancel()
    finally:
        db.close()

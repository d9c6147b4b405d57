"""A node of a replicated table in one process, for the table tests.

Real parts: the encrypted transport over TCP on 127.0.0.1, peering, the layout manager,
the RPC helper, a sqlite db per node, the table, its syncer, and a BackgroundRunner with
the Merkle worker (tests may spawn more workers on ``node.runner``). Use :func:`started`
as an async context manager; leaving it stops the node's services, waits for their worker
threads, then closes the db (so a node can be restarted on the same directory).
"""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from tests.polling import wait_until
from tests.table.conftest import KvEntry, KvSchema

from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import NetApp, NodeKey
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import RequestStrategy, RpcHelper
from garage_table import (
    MerkleWorker,
    Table,
    TableData,
    TableFullReplication,
    TableReplication,
    TableShardedReplication,
    TableSyncer,
)
from garage_table.schema import StringKey
from garage_util.background import BackgroundRunner
from garage_util.db import Db, open_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from garage_util.data import FixedBytes32

SECRET = bytes(range(32))
FAST = PeeringConfig(
    ping_interval_s=0.1, ping_timeout_s=1.0, max_failed_pings=2, retry_interval_s=0.1,
    max_retries=10_000, loop_interval_s=0.02,
)  # fmt: skip
QUICK = RequestStrategy(timeout_s=2.0)


@dataclass
class Node:
    netapp: NetApp
    layout: LayoutManager
    runner: BackgroundRunner
    data: TableData[KvEntry]
    table: Table[KvEntry]
    syncer: TableSyncer[KvEntry]
    addr: tuple[str, int]
    scope: anyio.CancelScope
    db: Db

    @property
    def id(self) -> FixedBytes32:
        return self.netapp.id


def three_node_layout(keys: list[NodeKey]) -> LayoutHistory:
    history = LayoutHistory.new(3)
    for i, key in enumerate(keys):
        history = history.stage_role(key.node_id, NodeRole(f"z{i}", 10**9, ()), now_ms=1)
    applied, _ = history.apply_staged_changes(1, now_ms=2)
    return applied


@asynccontextmanager
async def started(
    tg: anyio.abc.TaskGroup,
    key: NodeKey,
    db_dir: Path,
    layout: LayoutHistory,
    bootstrap: list[tuple[FixedBytes32, tuple[str, int]]],
    *,
    port: int = 0,
    full_copy: bool = False,
) -> AsyncIterator[Node]:
    netapp = NetApp(key, SECRET, handshake_timeout_s=2.0)
    peering = Peering(netapp, bootstrap_peers=bootstrap, config=FAST)
    manager = LayoutManager(netapp, replication_factor=3)
    rpc = RpcHelper(netapp.id, zone_of={}, rtt_of=peering.avg_ping_s)
    db = open_db(db_dir)
    schema = KvSchema()
    replication: TableReplication = (
        TableFullReplication(lambda: manager.helper, netapp.id)
        if full_copy
        else TableShardedReplication(lambda: manager.helper, ReplicationParams(3))
    )
    data: TableData[KvEntry] = TableData(schema, replication, db, node_id=netapp.id)
    table = Table(schema, replication, data, netapp, rpc, strategy=QUICK, layout=manager)
    syncer = TableSyncer(data, netapp)
    runner = BackgroundRunner()
    runner.spawn_worker(MerkleWorker(data))
    scope = anyio.CancelScope()
    ready, stopped = anyio.Event(), anyio.Event()
    bound: list[tuple[str, int]] = []

    async def serve() -> None:
        try:
            await run_services()
        finally:
            stopped.set()

    async def run_services() -> None:
        with scope:
            await manager.update(layout)
            async with anyio.create_task_group() as inner:
                addr = await inner.start(netapp.run, ("127.0.0.1", port))
                assert addr is not None
                bound.append(addr)
                for service in (peering.run, rpc.run, table.run, runner.run):
                    await inner.start(service)
                ready.set()

    tg.start_soon(serve)
    await ready.wait()
    try:
        yield Node(netapp, manager, runner, data, table, syncer, bound[0], scope, db)
    finally:
        scope.cancel()
        await stopped.wait()  # worker threads finished their db calls
        db.close()


def connected(nodes: list[Node]) -> bool:
    return all(n.netapp.is_connected(m.id) for n in nodes for m in nodes)


def local(node: Node, pk: str, sk: str) -> KvEntry | None:
    raw = node.data.read_entry(StringKey(pk), StringKey(sk))
    return None if raw is None else KvEntry.decode(raw)


def merkle_settled(nodes: list[Node]) -> bool:
    return all(n.data.merkle_updater.todo_len() == 0 for n in nodes)


async def three_started(
    tg: anyio.abc.TaskGroup, stack: AsyncExitStack, tmp_path: Path, *, full_copy: bool = False
) -> list[Node]:
    """Nodes a, b and c (in ``tmp_path``) of one three-zone layout, once in a full mesh; they
    stop when ``stack`` closes."""
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    nodes: list[Node] = []
    for key, name in zip(keys, "abc", strict=True):
        boot = [(nodes[0].id, nodes[0].addr)] if nodes else []
        node = started(tg, key, tmp_path / name, layout, boot, full_copy=full_copy)
        nodes.append(await stack.enter_async_context(node))
    await wait_until(lambda: connected(nodes), "full mesh")
    return nodes

"""Tables on three nodes in one process: real transport, layout, sqlite, workers.

Checks the distributed side of garage_table (quorum writes and reads, read repair,
Merkle anti-entropy) with every real part but OS processes (tests/cluster does those).
Waits poll with a deadline; no test asserts a duration.
"""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest
from tests.table.conftest import KvEntry, KvSchema

from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import NetApp, NodeKey
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import QuorumError, RequestStrategy, RpcHelper
from garage_table import MerkleWorker, Table, TableData, TableShardedReplication, TableSyncer
from garage_table.schema import StringKey
from garage_util.background import BackgroundRunner
from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from garage_util.data import FixedBytes32

pytestmark = pytest.mark.anyio
SECRET = bytes(range(32))
FAST = PeeringConfig(
    ping_interval_s=0.1, ping_timeout_s=1.0, max_failed_pings=2, retry_interval_s=0.1,
    max_retries=10_000, loop_interval_s=0.02,
)  # fmt: skip
QUICK = RequestStrategy(timeout_s=2.0)


@dataclass
class Node:
    netapp: NetApp
    data: TableData[KvEntry]
    table: Table[KvEntry]
    syncer: TableSyncer[KvEntry]
    addr: tuple[str, int]
    scope: anyio.CancelScope

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
) -> AsyncIterator[Node]:
    netapp = NetApp(key, SECRET, handshake_timeout_s=2.0)
    peering = Peering(netapp, bootstrap_peers=bootstrap, config=FAST)
    manager = LayoutManager(netapp, replication_factor=3)
    rpc = RpcHelper(netapp.id, zone_of={}, rtt_of=peering.avg_ping_s)
    db = open_db(db_dir)
    schema = KvSchema()
    replication = TableShardedReplication(lambda: manager.helper, ReplicationParams(3))
    data: TableData[KvEntry] = TableData(schema, replication, db, node_id=netapp.id)
    table = Table(schema, replication, data, netapp, rpc, strategy=QUICK)
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
        yield Node(netapp, data, table, syncer, bound[0], scope)
    finally:
        scope.cancel()
        await stopped.wait()  # worker threads finished their db calls
        db.close()


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    try:
        with anyio.fail_after(timeout_s):
            while not condition():  # noqa: ASYNC110  # polling other services' state
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"gave up waiting: {what}") from None


def connected(nodes: list[Node]) -> bool:
    return all(n.netapp.is_connected(m.id) for n in nodes for m in nodes)


def local(node: Node, pk: str, sk: str) -> KvEntry | None:
    raw = node.data.read_entry(StringKey(pk), StringKey(sk))
    return None if raw is None else KvEntry.decode(raw)


def merkle_settled(nodes: list[Node]) -> bool:
    return all(n.data.merkle_updater.todo_len() == 0 for n in nodes)


async def test_writes_and_reads_go_through_quorums(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "a", layout, []))
        others = [
            await stack.enter_async_context(
                started(tg, k, tmp_path / name, layout, [(a.id, a.addr)])
            )
            for k, name in ((keys[1], "b"), (keys[2], "c"))
        ]
        nodes = [a, *others]
        await wait_until(lambda: connected(nodes), "full mesh")
        await a.table.insert(KvEntry.put("bucket", "key1", "v1", ts=10))
        got = await others[1].table.get(StringKey("bucket"), StringKey("key1"))
        assert got is not None
        assert got.value.v == "v1"
        # A newer write anywhere wins everywhere; a tombstone is a write.
        await others[0].table.insert(KvEntry.put("bucket", "key1", None, ts=11))
        deleted = await a.table.get(StringKey("bucket"), StringKey("key1"))
        assert deleted is not None
        assert deleted.is_tombstone()
        await a.table.insert_many(
            [KvEntry.put("bucket", f"k{i:02d}", str(i), ts=5) for i in range(20)]
        )
        listed = await others[1].table.get_range(StringKey("bucket"), StringKey("k"), limit=5)
        assert [e.sk for e in listed] == ["k00", "k01", "k02", "k03", "k04"]
        assert await a.table.get(StringKey("bucket"), StringKey("nope")) is None
        tg.cancel_scope.cancel()


async def test_a_replica_down_during_writes_gets_them_by_anti_entropy(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    n_writes = 200
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "a", layout, []))
        b = await stack.enter_async_context(
            started(tg, keys[1], tmp_path / "b", layout, [(a.id, a.addr)])
        )
        async with started(tg, keys[2], tmp_path / "c", layout, [(a.id, a.addr)]) as c:
            await wait_until(lambda: connected([a, b, c]), "full mesh")
            await a.table.insert(KvEntry.put("p", "deleted-later", "x", ts=1))
            c_port = c.addr[1]
        await wait_until(lambda: not a.netapp.is_connected(keys[2].node_id), "c is down")
        # c misses all of these; the quorum of 2 (a and b) accepts them.
        for i in range(n_writes):
            await a.table.insert(KvEntry.put(f"p{i % 7}", f"s{i}", f"v{i}", ts=100 + i))
        await b.table.insert(KvEntry.put("p", "deleted-later", None, ts=2))

        async with started(tg, keys[2], tmp_path / "c", layout, [(a.id, a.addr)], port=c_port) as c:
            await wait_until(lambda: connected([a, b, c]), "c back")
            assert local(c, "p0", "s0") is None  # not there before anti-entropy
            await wait_until(functools.partial(merkle_settled, [a, b]), "merkle trees updated")
            assert await a.syncer.full_sync()
            assert await b.syncer.full_sync()
            for i in range(n_writes):
                entry = local(c, f"p{i % 7}", f"s{i}")
                assert entry is not None, i
                assert entry.value.v == f"v{i}"
            tomb = local(c, "p", "deleted-later")
            assert tomb is not None
            assert tomb.is_tombstone()  # the delete is not undone by the older value
            # Converged: every replica's root hashes agree once c's Merkle tree caught up.
            await wait_until(functools.partial(merkle_settled, [c]), "c's merkle tree")
            for p in range(256):
                roots = {n.data.merkle_updater.root_hash(p) for n in (a, b, c)}
                assert len(roots) == 1, p
        tg.cancel_scope.cancel()


async def test_reads_repair_a_stale_replica_and_fail_clearly_without_a_quorum(
    tmp_path: Path,
) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "a", layout, []))
        b = await stack.enter_async_context(
            started(tg, keys[1], tmp_path / "b", layout, [(a.id, a.addr)])
        )
        c = await stack.enter_async_context(
            started(tg, keys[2], tmp_path / "c", layout, [(a.id, a.addr)])
        )
        await wait_until(lambda: connected([a, b, c]), "full mesh")
        # Only a holds the newest value (as if b and c had missed it).
        await anyio.to_thread.run_sync(
            a.data.update_entry, KvEntry.put("r", "k", "new", ts=50).encode()
        )
        await anyio.to_thread.run_sync(
            b.data.update_entry, KvEntry.put("r", "k", "old", ts=40).encode()
        )
        await anyio.to_thread.run_sync(
            c.data.update_entry, KvEntry.put("r", "k", "old", ts=40).encode()
        )
        # Reads from a's side see "new" and repair whoever answered with "old".
        for _ in range(5):
            got = await a.table.get(StringKey("r"), StringKey("k"))
            assert got is not None
            if got.value.v == "new":
                break
        await wait_until(
            lambda: all(
                (e := local(n, "r", "k")) is not None and e.value.v == "new" for n in (a, b)
            ),
            "read repair",
        )
        c.scope.cancel()
        b.scope.cancel()
        await wait_until(
            lambda: not a.netapp.is_connected(b.id) and not a.netapp.is_connected(c.id),
            "b and c down",
        )
        with pytest.raises(QuorumError, match="quorum not reached"):
            await a.table.insert(KvEntry.put("r", "k2", "v", ts=1))
        tg.cancel_scope.cancel()

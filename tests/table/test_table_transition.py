"""A layout change on a live table: a node is replaced while reads and writes go on.

Four nodes in one process (real transport and sqlite). Version 1 stores everything on
a, b, c; version 2 replaces c by d. During the transition both versions are live: writes
need a quorum in both, reads use the version every node has synced. Anti-entropy gives d
its data; once every node has synced and acknowledged, version 1 retires and c, which
stores nothing any more, hands its items over and drops them (offload).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import pytest
from tests.polling import wait_until
from tests.table.conftest import KvEntry
from tests.table.harness import Node, connected, local, merkle_settled, started

from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.net import NodeKey
from garage_table.schema import StringKey

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def layout_v1(a: NodeKey, b: NodeKey, c: NodeKey) -> LayoutHistory:
    history = LayoutHistory.new(3)
    for i, key in enumerate((a, b, c)):
        history = history.stage_role(key.node_id, NodeRole(f"z{i}", 10**9, ()), now_ms=1)
    return history.apply_staged_changes(1, now_ms=2)[0]


async def gossip(nodes: list[Node]) -> None:
    """Every node pushes its layout (with trackers) to every other one."""
    for n in nodes:
        await n.layout.push([m.id for m in nodes])


async def read_all(reader: Node, n: int) -> None:
    for i in range(n):
        got = await reader.table.get(StringKey(f"p{i % 5}"), StringKey(f"s{i}"))
        assert got is not None, i
        assert got.value.v == f"v{i}"


async def test_replacing_a_node_moves_its_data_and_reads_stay_correct(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(4)]
    v1 = layout_v1(*keys[:3])
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "a", v1, []))
        b, c, d = [
            await stack.enter_async_context(started(tg, k, tmp_path / n, v1, [(a.id, a.addr)]))
            for k, n in zip(keys[1:], "bcd", strict=True)
        ]
        nodes = [a, b, c, d]
        await wait_until(lambda: connected(nodes), "full mesh")
        for i in range(60):
            await a.table.insert(KvEntry.put(f"p{i % 5}", f"s{i}", f"v{i}", ts=10))
        assert local(d, "p0", "s0") is None  # d stores nothing in version 1

        history = a.layout.history.stage_removal(c.id, now_ms=3)
        history = history.stage_role(d.id, NodeRole("z2", 10**9, ()), now_ms=3)
        v2, _ = history.apply_staged_changes(2, now_ms=4)
        await a.layout.update(v2, push_to=[n.id for n in nodes])
        await wait_until(
            lambda: all(n.layout.helper.current.version == 2 for n in nodes), "v2 everywhere"
        )
        assert len(a.layout.helper.versions) == 2  # both live during the transition

        # During the transition: reads are still served correctly (from version 1's nodes,
        # the version everyone has synced), and writes reach a quorum in both versions.
        await read_all(d, 60)
        for i in range(60, 80):
            await b.table.insert(KvEntry.put(f"p{i % 5}", f"s{i}", f"v{i}", ts=10))

        # Anti-entropy gives d its data; then every node records that it synced version 2.
        await wait_until(lambda: merkle_settled(nodes), "merkle trees settled")
        for n in nodes:
            await n.layout.ack_versions(push_to=[m.id for m in nodes])
        await gossip(nodes)
        for n in (a, b, c):
            assert await n.syncer.full_sync()
        for i in range(80):
            entry = local(d, f"p{i % 5}", f"s{i}")
            assert entry is not None, i
        for n in nodes:
            n.layout.register_table("kv")
            await n.layout.table_synced("kv", 2, push_to=[m.id for m in nodes])
        await gossip(nodes)
        for n in nodes:
            await n.layout.ack_versions(push_to=[m.id for m in nodes])
        await gossip(nodes)
        await wait_until(
            lambda: all(len(n.layout.helper.versions) == 1 for n in nodes), "version 1 retired"
        )

        # c stores nothing now: its full sync hands its items over and drops them.
        assert local(c, "p0", "s0") is not None
        assert await c.syncer.full_sync()
        assert c.data.store.len() == 0
        await read_all(d, 80)
        await read_all(a, 80)
        tg.cancel_scope.cancel()

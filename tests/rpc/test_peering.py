"""Peering and status exchange over the real transport (TCP on 127.0.0.1), in one process.

Several NetApps with fast timings run in one event loop: this checks the drivers against
the real encrypted transport; tests/cluster checks the same with one OS process per node.
Waits are bounded by ``fail_after`` and poll for a condition: nothing asserts durations.
"""

from __future__ import annotations

import functools
import os
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest
from tests.polling import wait_until

from garage_rpc.layout import NodeRole
from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import HandshakeError, NetApp, NodeKey, RpcError
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.system import GET_KNOWN_NODES, GetKnownNodes, HealthStatus, System

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from garage_util.data import FixedBytes32

pytestmark = pytest.mark.anyio

SECRET = bytes(range(32))
FAST = PeeringConfig(
    ping_interval_s=0.1,
    ping_timeout_s=1.0,
    max_failed_pings=2,
    retry_interval_s=0.1,
    max_retries=1000,
    loop_interval_s=0.02,
)


@dataclass
class Node:
    netapp: NetApp
    peering: Peering
    system: System
    layout: LayoutManager
    addr: tuple[str, int]
    scope: anyio.CancelScope

    @property
    def id(self) -> FixedBytes32:
        return self.netapp.id


@asynccontextmanager
async def started(
    tg: anyio.abc.TaskGroup,
    key: NodeKey,
    bootstrap: list[tuple[FixedBytes32, tuple[str, int]]],
    *,
    port: int = 0,
    secret: bytes = SECRET,
    rf: int = 3,
) -> AsyncIterator[Node]:
    """Starts a node's services in their own cancel scope, stopped on exit."""
    netapp = NetApp(key, secret, handshake_timeout_s=2.0)
    peering = Peering(netapp, bootstrap_peers=bootstrap, config=FAST)
    layout = LayoutManager(netapp, replication_factor=rf)
    system = System(netapp, peering, replication_factor=rf, layout=layout, status_interval_s=0.1)
    scope = anyio.CancelScope()
    ready = anyio.Event()
    addr: list[tuple[str, int]] = []

    async def serve() -> None:
        with scope:
            async with anyio.create_task_group() as inner:
                bound = await inner.start(netapp.run, ("127.0.0.1", port))
                assert bound is not None
                addr.append(bound)
                await inner.start(peering.run)
                await inner.start(system.run)
                ready.set()

    tg.start_soon(serve)
    await ready.wait()
    node = Node(netapp, peering, system, layout, addr[0], scope)
    try:
        yield node
    finally:
        scope.cancel()


async def three_nodes(
    stack: AsyncExitStack, tg: anyio.abc.TaskGroup, keys: list[NodeKey]
) -> tuple[Node, Node, Node]:
    """Starts a, then b and c with a as their bootstrap peer; stopped when ``stack`` exits."""
    a = await stack.enter_async_context(started(tg, keys[0], []))
    b = await stack.enter_async_context(started(tg, keys[1], [(a.id, a.addr)]))
    c = await stack.enter_async_context(started(tg, keys[2], [(a.id, a.addr)]))
    return a, b, c


def acked_by_all(node: Node, ids: set[FixedBytes32], version: int) -> bool:
    ack_map = node.layout.history.update_trackers.ack_map
    return all(ack_map.get(i, 0) >= version for i in ids)


def sees_all(node: Node, ids: set[FixedBytes32]) -> bool:
    return set(node.peering.up_peers()) == ids


async def test_one_bootstrap_peer_each_is_enough_for_a_full_mesh() -> None:
    keys = [NodeKey.generate() for _ in range(4)]
    async with anyio.create_task_group() as tg:
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(started(tg, keys[0], []))
            nodes = [hub] + [
                await stack.enter_async_context(started(tg, key, [(hub.id, hub.addr)]))
                for key in keys[1:]
            ]
            ids = {n.id for n in nodes}
            for n in nodes:
                await wait_until(functools.partial(sees_all, n, ids), f"{n.id} sees every node")
            # Pings measured a round trip to every peer, for quorum ordering.
            await wait_until(
                lambda: all(nodes[1].peering.avg_ping_s(n.id) is not None for n in nodes[2:]),
                "round trips measured",
            )
        tg.cancel_scope.cancel()


async def test_a_stopped_node_is_seen_down_then_up_again_after_restart() -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        async with AsyncExitStack() as stack:
            a, b, c = await three_nodes(stack, tg, keys)
            ids = {a.id, b.id, c.id}
            await wait_until(lambda: sees_all(a, ids) and sees_all(b, ids), "full mesh")
            c_addr = c.addr
            c.scope.cancel()
            await wait_until(lambda: c.id not in a.peering.up_peers(), "a sees c down")
            await wait_until(lambda: c.id not in b.peering.up_peers(), "b sees c down")
            # Restart c with the same key on the same port, with no bootstrap peer: the
            # others reconnect to it on their own.
            async with started(tg, keys[2], [], port=c_addr[1]) as c2:
                await wait_until(lambda: sees_all(a, ids) and sees_all(b, ids), "c up again")
                await wait_until(lambda: sees_all(c2, ids), "c sees everyone")
        tg.cancel_scope.cancel()


async def test_a_node_with_the_wrong_secret_never_joins() -> None:
    async with anyio.create_task_group() as tg:
        async with (
            started(tg, NodeKey.generate(), []) as a,
            started(tg, NodeKey.generate(), [(a.id, a.addr)], secret=os.urandom(32)) as intruder,
        ):
            with pytest.raises(HandshakeError):
                await intruder.netapp.connect(a.id, a.addr)
            await anyio.sleep(0.3)  # several peering rounds of retries
            assert a.peering.up_peers() == [a.id]
            assert intruder.id not in {p.node_id for p in a.peering.peers()}
        tg.cancel_scope.cancel()


async def test_known_nodes_reports_status_over_rpc() -> None:
    async with anyio.create_task_group() as tg:
        async with (
            started(tg, NodeKey.generate(), []) as a,
            started(tg, NodeKey.generate(), [(a.id, a.addr)]) as b,
        ):
            await wait_until(lambda: sees_all(a, {a.id, b.id}), "connected")
            await wait_until(
                lambda: any(
                    k.status is not None for k in a.system.known_nodes() if k.node_id == b.id
                ),
                "status received",
            )
            # A client (not a peer: it does not listen) asks over RPC, as the CLI will.
            client = NetApp(NodeKey.generate(), SECRET)
            await tg.start(client.run)
            await client.connect(a.id, a.addr)
            answer = await client.call(a.id, GET_KNOWN_NODES, GetKnownNodes())
            by_id = {k.node_id: k for k in answer.nodes}
            assert set(by_id) == {a.id, b.id}  # the client itself is not listed
            assert by_id[b.id].is_up
            assert by_id[b.id].port == b.addr[1]
            status = by_id[b.id].status
            assert status is not None
            assert status.replication_factor == 3
            assert status.public_addr == f"127.0.0.1:{b.addr[1]}"
            with pytest.raises(RpcError):
                await client.call(b.id, GET_KNOWN_NODES, GetKnownNodes())  # not connected
        tg.cancel_scope.cancel()


async def test_an_applied_layout_reaches_every_node_and_drives_health() -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        async with AsyncExitStack() as stack:
            a, b, c = await three_nodes(stack, tg, keys)
            ids = {a.id, b.id, c.id}
            await wait_until(lambda: sees_all(a, ids), "full mesh")
            assert a.system.health().status is HealthStatus.UNAVAILABLE  # no layout yet
            c_port = c.addr[1]
            c.scope.cancel()  # c misses the change and must pull it later
            await wait_until(lambda: c.id not in a.peering.up_peers(), "c down")

            history = a.layout.history
            for i, node in enumerate((a, b, c)):
                history = history.stage_role(node.id, NodeRole(f"zone{i}", 10**9, ()), now_ms=1)
            applied, summary = history.apply_staged_changes(1, now_ms=2)
            assert summary.partition_size > 0
            assert await a.layout.update(applied, push_to=a.peering.up_peers())
            await wait_until(lambda: b.layout.helper.current.version == 1, "b got version 1")
            degraded = a.system.health()
            assert degraded.status is HealthStatus.DEGRADED  # c is down, rf 3
            assert len(degraded.replicas_up) == 256
            assert set(degraded.replicas_up) == {2}  # every partition lost exactly c
            assert (degraded.storage_nodes, degraded.storage_nodes_up) == (3, 2)

            async with started(tg, keys[2], [(a.id, a.addr)], port=c_port) as c2:
                assert c2.layout.helper.current.version == 0  # in-memory layout: forgotten
                await wait_until(lambda: c2.layout.helper.current.version == 1, "c pulled it")
                await wait_until(lambda: sees_all(a, ids), "c up again")
                assert a.system.health().status is HealthStatus.HEALTHY
                # Every node acknowledged version 1, and the trackers spread to everyone.
                for node in (a, b, c2):
                    await wait_until(
                        functools.partial(acked_by_all, node, ids, 1), f"{node.id} sees all acks"
                    )
                assert c2.layout.history == a.layout.history
            b.scope.cancel()
            await wait_until(lambda: b.id not in a.peering.up_peers(), "b down")
            await wait_until(
                lambda: a.system.health().status is HealthStatus.UNAVAILABLE, "only a up"
            )
        tg.cancel_scope.cancel()

"""Tombstone GC on three in-process nodes: real transport, layout, sqlite, workers.

Each node gets a :class:`TableGc` built from the harness node's data and transport (and,
where a test wants the background loop, a :class:`GcWorker` on the node's runner). Where
the order of events matters, the GC's clock is shifted by the test instead of waiting for
the delay to pass; elsewhere the delay is tiny. Waits poll with a deadline; no test
asserts a duration.
"""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest
from tests.polling import wait_until
from tests.table.conftest import KvEntry
from tests.table.harness import (
    Node,
    connected,
    local,
    merkle_settled,
    started,
    three_node_layout,
)

from garage_rpc.net import NodeKey
from garage_table._data import GC_TODO_TS_BYTES
from garage_table._gc import (
    TABLE_GC_DELAY_S,
    DeleteIfEqualHash,
    GcUpdate,
    GcWorker,
    TableGc,
)
from garage_table.schema import StringKey, tree_key
from garage_util.clock import now_msec
from garage_util.data import FixedBytes32, blake2sum
from garage_util.encode import pack, unpack

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from garage_rpc.layout import LayoutHistory
    from garage_util.data import Uuid

pytestmark = pytest.mark.anyio

#: A delay that passes almost at once, for tests where the order of events does not matter.
TINY_DELAY_S = 0.05
#: Retry quickly after a failed group, so a test does not wait for the default 10 s.
TINY_RETRY_S = 0.05
#: Shifting the GC's clock by this much makes every tombstone written so far due.
PAST_THE_DELAY_MS = int(TABLE_GC_DELAY_S * 1000) + 60_000


@dataclass
class ShiftedClock:
    """The wall clock plus an offset the test moves forward (the GC's injected clock)."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return now_msec() + self.offset_ms


def attach_gc(
    node: Node,
    *,
    delay_s: float = TABLE_GC_DELAY_S,
    clock_ms: Callable[[], int] = now_msec,
    worker: bool = False,
) -> TableGc[KvEntry]:
    """Registers the GC endpoints on ``node``; with ``worker``, starts its GC loop too."""
    gc = TableGc(node.data, node.netapp, delay_s=delay_s, clock_ms=clock_ms)
    if worker:
        node.runner.spawn_worker(GcWorker(gc, retry_delay_s=TINY_RETRY_S))
    return gc


async def start_three(
    tg: anyio.abc.TaskGroup, stack: AsyncExitStack, tmp_path: Path
) -> tuple[list[Node], list[NodeKey], LayoutHistory]:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    a = await stack.enter_async_context(started(tg, keys[0], tmp_path / "n0", layout, []))
    nodes = [a]
    for i in (1, 2):
        peer = started(tg, keys[i], tmp_path / f"n{i}", layout, [(a.id, a.addr)])
        nodes.append(await stack.enter_async_context(peer))
    await wait_until(lambda: connected(nodes), "full mesh")
    return nodes, keys, layout


def storage_nodes(node: Node, pk: str) -> list[Uuid]:
    return node.data.replication.storage_nodes(StringKey(pk).hash())


def leader(nodes: list[Node], pk: str) -> Node:
    """The partition's first storage node: the only one that collects its tombstones."""
    first = storage_nodes(nodes[0], pk)[0]
    return next(n for n in nodes if n.id == first)


def todo_keys(node: Node) -> list[bytes]:
    """The tree keys listed in the node's gc_todo, in time order."""
    return [k[GC_TODO_TS_BYTES:] for k, _ in node.data.gc_todo.iter()]


def holds(node: Node, pk: str, sk: str, value: str | None) -> bool:
    """True when the node stores the entry with that value (None: the tombstone)."""
    entry = local(node, pk, sk)
    return entry is not None and entry.value.v == value


def gone(nodes: list[Node], pk: str, sk: str) -> bool:
    return all(local(n, pk, sk) is None for n in nodes)


async def test_messages_round_trip() -> None:
    h = blake2sum(b"tombstone")
    delete = DeleteIfEqualHash(((b"key", h),))
    decoded = unpack(DeleteIfEqualHash, pack(delete))
    assert decoded == delete
    assert isinstance(decoded.items[0][1], FixedBytes32)
    update = GcUpdate((b"a", b"b"))
    assert unpack(GcUpdate, pack(update)) == update


async def test_a_deleted_entry_is_collected_everywhere_after_the_delay(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes, _, _ = await start_three(tg, stack, tmp_path)
        clock = ShiftedClock()
        gcs = [attach_gc(n, clock_ms=clock) for n in nodes]
        a = nodes[0]
        await a.table.insert(KvEntry.put("p", "k", "v", ts=1))
        await a.table.insert(KvEntry.put("p", "k", None, ts=2))
        await a.table.insert(KvEntry.put("p", "kept", "v", ts=1))
        await wait_until(lambda: all(holds(n, "p", "k", None) for n in nodes), "tombstones")
        await wait_until(functools.partial(merkle_settled, nodes), "merkle trees")
        lead = leader(nodes, "p")
        lead_gc = gcs[nodes.index(lead)]
        key = tree_key(StringKey("p"), StringKey("k"))
        assert todo_keys(lead) == [key]

        # Before the delay: nothing is due, nothing is touched.
        early = await lead_gc.run_pass()
        assert early.collected == early.dropped == early.failed == 0
        assert early.next_due_ms is not None
        assert early.next_due_ms > clock()
        assert all(holds(n, "p", "k", None) for n in nodes)

        # A day later, the workers collect it everywhere.
        clock.offset_ms = PAST_THE_DELAY_MS
        for node, gc in zip(nodes, gcs, strict=True):
            node.runner.spawn_worker(GcWorker(gc, retry_delay_s=TINY_RETRY_S))
        await wait_until(
            lambda: (
                gone(nodes, "p", "k")
                and all(n.data.gc_todo_len() == 0 for n in nodes)
                and lead_gc.statistics().collected == 1  # counted just after deleting
            ),
            "tombstone collected on every node",
        )
        assert all(holds(n, "p", "kept", "v") for n in nodes)
        # The deletions went through the Merkle todo: the replicas still agree.
        await wait_until(functools.partial(merkle_settled, nodes), "merkle trees")
        for p in range(256):
            assert len({n.data.merkle_updater.root_hash(p) for n in nodes}) == 1, p
        tg.cancel_scope.cancel()


async def test_gc_waits_for_a_replica_that_is_down_and_does_not_resurrect(
    tmp_path: Path,
) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes, keys, layout = await start_three(tg, stack, tmp_path)
        a = nodes[0]
        pk = "p"
        lead = leader(nodes, pk)
        # A replica other than the leader and than a (the others' bootstrap peer).
        i_down = next(i for i in (2, 1) if nodes[i] is not lead)
        down = nodes[i_down]
        up = [n for n in nodes if n is not down]
        await a.table.insert(KvEntry.put(pk, "k", "old", ts=1))
        await wait_until(lambda: holds(down, pk, "k", "old"), "the replica has the old value")
        down_port = down.addr[1]
        down.scope.cancel()
        await wait_until(
            lambda: not any(n.netapp.is_connected(down.id) for n in up), "the replica is down"
        )
        await a.table.insert(KvEntry.put(pk, "k", None, ts=2))  # quorum: the two others
        await wait_until(lambda: all(holds(n, pk, "k", None) for n in up), "tombstones")
        gcs = {n.id: attach_gc(n, delay_s=TINY_DELAY_S, worker=True) for n in up}
        lead_gc = gcs[lead.id]

        # The replica cannot acknowledge: the GC retries, and deletes nothing anywhere.
        await wait_until(lambda: lead_gc.statistics().failed_groups >= 2, "failed GC attempts")
        assert lead_gc.statistics().collected == 0
        assert all(holds(n, pk, "k", None) for n in up)
        assert todo_keys(lead) == [tree_key(StringKey(pk), StringKey("k"))]

        back_ctx = started(
            tg, keys[i_down], tmp_path / f"n{i_down}", layout, [(a.id, a.addr)], port=down_port
        )
        async with back_ctx as back:
            # Nothing reaches it before it serves the GC endpoints: it still has "old".
            assert holds(back, pk, "k", "old")
            attach_gc(back, delay_s=TINY_DELAY_S, worker=True)
            nodes = [*up, back]
            await wait_until(
                lambda: gone(nodes, pk, "k") and lead.data.gc_todo_len() == 0,
                "collected once the replica is back",
            )
            # It got the tombstone before the delete: its old value is gone too, so
            # anti-entropy has nothing to bring back.
            await wait_until(functools.partial(merkle_settled, nodes), "merkle trees")
            for node in nodes:
                assert await node.syncer.full_sync()
            assert gone(nodes, pk, "k")
        tg.cancel_scope.cancel()


async def test_a_newer_write_after_the_tombstone_stops_gc(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes, _, _ = await start_three(tg, stack, tmp_path)
        clock = ShiftedClock()
        gcs = [attach_gc(n, clock_ms=clock) for n in nodes]
        a = nodes[0]
        await a.table.insert(KvEntry.put("p", "k", "v1", ts=1))
        await a.table.insert(KvEntry.put("p", "k", None, ts=2))
        await wait_until(lambda: all(holds(n, "p", "k", None) for n in nodes), "tombstones")
        lead = leader(nodes, "p")
        assert lead.data.gc_todo_len() == 1
        await a.table.insert(KvEntry.put("p", "k", "v2", ts=3))  # recreated
        await wait_until(lambda: all(holds(n, "p", "k", "v2") for n in nodes), "new value")

        clock.offset_ms = PAST_THE_DELAY_MS
        done = await gcs[nodes.index(lead)].run_pass()
        assert (done.collected, done.dropped, done.failed) == (0, 1, 0)
        assert lead.data.gc_todo_len() == 0
        assert all(holds(n, "p", "k", "v2") for n in nodes)
        tg.cancel_scope.cancel()


async def test_a_newer_value_on_one_replica_survives_the_delete(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes, _, _ = await start_three(tg, stack, tmp_path)
        clock = ShiftedClock()
        gcs = [attach_gc(n, clock_ms=clock) for n in nodes]
        a = nodes[0]
        await a.table.insert(KvEntry.put("p", "k", None, ts=2))
        await wait_until(lambda: all(holds(n, "p", "k", None) for n in nodes), "tombstones")
        lead = leader(nodes, "p")
        others = [n for n in nodes if n is not lead]
        # Only one replica has seen the write that recreated the entry (the rest of the
        # quorum write has not arrived yet, as it were).
        newer = others[0]
        await anyio.to_thread.run_sync(
            newer.data.update_entry, KvEntry.put("p", "k", "v3", ts=3).encode()
        )

        clock.offset_ms = PAST_THE_DELAY_MS
        done = await gcs[nodes.index(lead)].run_pass()
        assert (done.collected, done.failed) == (1, 0)
        # Everyone acknowledged; the replica with the newer value kept it.
        assert local(lead, "p", "k") is None
        assert local(others[1], "p", "k") is None
        assert holds(newer, "p", "k", "v3")
        # And anti-entropy spreads it as any write.
        await wait_until(functools.partial(merkle_settled, nodes), "merkle trees")
        assert await newer.syncer.full_sync()
        assert all(holds(n, "p", "k", "v3") for n in nodes)
        tg.cancel_scope.cancel()


async def test_only_the_first_storage_node_leads_gc(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        nodes, _, _ = await start_three(tg, stack, tmp_path)
        a = nodes[0]
        pks = [f"p{i}" for i in range(24)]
        for pk in pks:
            await a.table.insert(KvEntry.put(pk, "k", None, ts=1))
        await wait_until(
            lambda: all(holds(n, pk, "k", None) for n in nodes for pk in pks), "tombstones"
        )
        for pk in pks:
            key = tree_key(StringKey(pk), StringKey("k"))
            holders = [n.id for n in nodes if key in todo_keys(n)]
            assert holders == [leader(nodes, pk).id], pk

        # Every node runs its GC; each collects the partitions it leads, nothing is left.
        gcs = [attach_gc(n, delay_s=TINY_DELAY_S, worker=True) for n in nodes]
        await wait_until(
            lambda: (
                all(gone(nodes, pk, "k") for pk in pks)
                and all(n.data.gc_todo_len() == 0 for n in nodes)
                # the counters move just after the deletions: wait for them too
                and sum(gc.statistics().collected for gc in gcs) == len(pks)
            ),
            "all collected",
        )
        for node, gc in zip(nodes, gcs, strict=True):
            led = sum(1 for pk in pks if leader(nodes, pk) is node)
            assert gc.statistics().collected == led
        tg.cancel_scope.cancel()

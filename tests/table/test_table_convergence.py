"""Random writes and deletes from random nodes while nodes stop, restart and are cut off
from the others (network partitions, injected with NetApp.block); then heal and sync: every replica holds the same entries, each the newest write that landed, and no
acknowledged delete is undone.

Hypothesis draws the operation sequence; each example runs three real nodes (transport,
layout, sqlite) in one process. Timestamps are unique per write, so the expected winner
of each key is well defined. A write that failed its quorum may or may not have landed on
some replica: the check accepts either, but never a value older than an acknowledged one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.polling import wait_until
from tests.table.conftest import KvEntry
from tests.table.harness import (
    Node,
    connected,
    merkle_settled,
    started,
    three_node_layout,
)

from garage_rpc.net import NodeKey
from garage_rpc.rpc_helper import QuorumError
from garage_table.schema import StringKey

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

KEYS = ["a", "b", "c"]


@dataclass(frozen=True)
class Write:
    node: int
    key: str
    delete: bool


@dataclass(frozen=True)
class Stop:
    node: int


@dataclass(frozen=True)
class Start:
    node: int


@dataclass(frozen=True)
class Partition:
    """Cut ``node`` off from the others (both directions) while it keeps running."""

    node: int


@dataclass(frozen=True)
class Heal:
    """Remove every network cut."""


Op = Write | Stop | Start | Partition | Heal
nodes_ = st.integers(0, 2)
write = st.builds(Write, nodes_, st.sampled_from(KEYS), st.booleans())
operations = st.lists(
    st.one_of(
        write,
        write,
        write,
        st.builds(Stop, nodes_),
        st.builds(Start, nodes_),
        st.builds(Partition, nodes_),
        st.just(Heal()),
    ),
    min_size=1,
    max_size=25,
)


async def scenario(ops: list[Op], root: Path) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    layout = three_node_layout(keys)
    attempted: dict[str, dict[int, str | None]] = {k: {} for k in KEYS}
    acked_max: dict[str, int] = dict.fromkeys(KEYS, 0)
    async with anyio.create_task_group() as tg:
        managers: list[AbstractAsyncContextManager[Node] | None] = [None, None, None]
        nodes: list[Node | None] = [None, None, None]
        ports = [0, 0, 0]
        cut: set[int] = set()

        async def up(i: int) -> None:
            bootstrap = [(n.id, n.addr) for n in nodes if n is not None]
            cm = started(tg, keys[i], root / f"n{i}", layout, bootstrap, port=ports[i])
            node = await cm.__aenter__()
            nodes[i], managers[i], ports[i] = node, cm, node.addr[1]
            apply_cuts(nodes, cut)

        async def down(i: int) -> None:
            cm = managers[i]
            if cm is not None and sum(n is not None for n in nodes) > 1:
                await cm.__aexit__(None, None, None)
                managers[i], nodes[i] = None, None

        for i in range(3):
            await up(i)
        await wait_until(lambda: connected([n for n in nodes if n is not None]), "mesh")
        for ts, op in enumerate(ops, start=1):
            if isinstance(op, Write):
                writer = nodes[op.node]
                if writer is None:
                    continue
                value = None if op.delete else f"{op.key}@{ts}"
                attempted[op.key][ts] = value
                try:
                    await writer.table.insert(KvEntry.put("p", op.key, value, ts))
                except QuorumError:
                    continue
                acked_max[op.key] = ts
            elif isinstance(op, Stop):
                await down(op.node)
            elif isinstance(op, Start):
                if nodes[op.node] is None:
                    await up(op.node)
            elif isinstance(op, Partition):
                cut.add(op.node)
                apply_cuts(nodes, cut)
            else:
                cut.clear()
                apply_cuts(nodes, cut)

        # Heal: no cuts, everyone up, Merkle trees settled, a full sync from every node.
        cut.clear()
        apply_cuts(nodes, cut)
        for i in range(3):
            if nodes[i] is None:
                await up(i)
        live = [n for n in nodes if n is not None]
        await wait_until(lambda: connected(live), "healed mesh")
        await wait_until(lambda: merkle_settled(live), "merkle settled")
        for n in live:
            assert await n.syncer.full_sync()

        for key in KEYS:
            stored = {
                n.data.store.get(n.data.tree_key(StringKey("p"), StringKey(key))) for n in live
            }
            assert len(stored) == 1, f"replicas disagree on {key}"
            (raw,) = stored
            if not attempted[key]:
                assert raw is None
                continue
            assert raw is not None or acked_max[key] == 0
            if raw is None:
                continue
            entry = KvEntry.decode(raw)
            assert entry.value.ts >= acked_max[key], "an acknowledged write was lost"
            assert entry.value.v == attempted[key][entry.value.ts]  # the write with that stamp
        for i in range(3):
            await down_all(managers, i)
        tg.cancel_scope.cancel()


def apply_cuts(nodes: list[Node | None], cut: set[int]) -> None:
    """Blocks every link between a cut node and another node; unblocks all others."""
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if a is None or b is None or i == j:
                continue
            if i in cut or j in cut:
                a.netapp.block(b.id)
            else:
                a.netapp.unblock(b.id)


async def down_all(managers: list[AbstractAsyncContextManager[Node] | None], i: int) -> None:
    cm = managers[i]
    if cm is not None:
        await cm.__aexit__(None, None, None)
        managers[i] = None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_replicas_converge_on_the_newest_landed_write(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(scenario, ops, Path(tmp), backend="trio")

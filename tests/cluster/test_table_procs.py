"""A replicated table on three OS processes: catching up after downtime, rebuilding a wiped
replica. Real parts throughout: encrypted TCP on 127.0.0.1, sqlite files, SIGKILL.

The test process is a client driving the nodes through their test endpoints
(tests/cluster/table_node.py). Waits poll with deadlines; catch-up times are printed
(run with -s to see them), never asserted.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from garage_rpc.net import NetApp, RpcError

sys.path.insert(0, str(Path(__file__).parent))
from procs import SECRET, NodeProc, apply_layout, client, cluster, known  # type: ignore[import-not-found]
from table_node import (  # type: ignore[import-not-found]
    BULK,
    GET,
    INSERT,
    LOCAL_COUNT,
    LOCAL_GET,
    Bulk,
    Key,
    Nothing,
    Put,
    Value,
    bulk_entries,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


pytestmark = pytest.mark.anyio
WRITES = 1000


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def local_count(c: NetApp, node: NodeProc) -> int:
    await c.connect(node.node_id, ("127.0.0.1", node.port))
    with anyio.fail_after(10):
        return int((await c.call(node.node_id, LOCAL_COUNT, Nothing())).n)


async def wait_count(c: NetApp, node: NodeProc, n: int, what: str) -> float:
    """Waits until ``node`` stores ``n`` entries locally; returns the seconds it took."""
    start = time.monotonic()
    last = -1
    try:
        with anyio.fail_after(90):
            while True:
                try:
                    last = await local_count(c, node)
                except RpcError:  # our connection to its previous process is not gone yet
                    last = -1
                if last == n:
                    break
                await anyio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what}: {last} of {n} entries after 90 s") from None
    return time.monotonic() - start


@pytest.fixture
def three_nodes(tmp_path: Path) -> Iterator[list[NodeProc]]:
    with cluster(tmp_path) as nodes:
        for i in range(3):
            bootstrap = [nodes[i - 1].peer] if i else []
            nodes.append(NodeProc(tmp_path / f"n{i}", SECRET, bootstrap, script="table_node.py"))
            nodes[-1].start()
        yield nodes


def restart(nodes: list[NodeProc], i: int) -> None:
    old = nodes[i]
    nodes[i] = NodeProc(
        old.metadata_dir, SECRET, [nodes[0].peer], port=old.port, script="table_node.py"
    )
    nodes[i].start()
    assert nodes[i].node_id == old.node_id


async def test_a_replica_down_during_1000_writes_holds_them_all_after_restart(
    three_nodes: list[NodeProc],
) -> None:
    nodes = three_nodes
    async with client() as c:
        await apply_layout(c, nodes)
        nodes[2].kill()
        with anyio.fail_after(120):
            await c.call(nodes[0].node_id, BULK, Bulk("w", WRITES, ts=100))
        for n in nodes[:2]:
            assert await local_count(c, n) == WRITES  # the quorum of two has everything
        restart(nodes, 2)
        elapsed = await wait_count(c, nodes[2], WRITES, "restarted replica")
        print(f"\nrestarted replica caught up on {WRITES} writes in {elapsed:.2f} s")
        sample = bulk_entries(Bulk("w", WRITES, ts=100))[::97]
        for entry in sample:
            got = await c.call(nodes[2].node_id, LOCAL_GET, Key(entry.pk, entry.sk))
            assert got.value == entry.value.v


async def test_a_replica_whose_metadata_was_wiped_is_rebuilt_by_anti_entropy(
    three_nodes: list[NodeProc],
) -> None:
    nodes = three_nodes
    async with client() as c:
        await apply_layout(c, nodes)
        with anyio.fail_after(120):
            await c.call(nodes[0].node_id, BULK, Bulk("x", WRITES, ts=7))
        await wait_count(c, nodes[2], WRITES, "third replica before the wipe")
        nodes[2].kill()
        # Lose everything but the node's identity: the db and the cluster layout.
        meta = nodes[2].metadata_dir
        for path in meta.iterdir():
            if path.name not in ("node_key", "node_key.pub"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        restart(nodes, 2)
        elapsed = await wait_count(c, nodes[2], WRITES, "wiped replica")
        print(f"\nwiped replica rebuilt {WRITES} entries in {elapsed:.2f} s")


async def layout_versions(c: NetApp, node: NodeProc) -> int:
    """How many layout versions ``node`` has live."""
    for k in await known(c, node):
        if k.node_id == node.node_id and k.status is not None and k.status.layout_digest:
            return int(k.status.layout_digest.active_versions)
    return -1


async def local_value(c: NetApp, node: NodeProc, pk: str, sk: str) -> Value:
    await c.connect(node.node_id, ("127.0.0.1", node.port))
    with anyio.fail_after(10):
        result: Value = await c.call(node.node_id, LOCAL_GET, Key(pk, sk))
    return result


async def test_gc_removes_a_tombstone_everywhere_only_once_every_replica_has_it(
    three_nodes: list[NodeProc],
) -> None:
    nodes = three_nodes
    async with client() as c:
        await apply_layout(c, nodes)
        await c.call(nodes[0].node_id, INSERT, Put("gc", "k", "alive", ts=1))
        await wait_count(c, nodes[2], 1, "third replica has the entry")
        nodes[2].kill()
        await c.call(nodes[0].node_id, INSERT, Put("gc", "k", None, ts=2))  # delete
        # Well past the GC delay, the up replicas still hold the tombstone: the third one
        # has not confirmed it, so deleting it now could let the old value come back.
        for _ in range(6):
            for n in nodes[:2]:
                held = await local_value(c, n, "gc", "k")
                assert (held.present, held.value) == (True, None)
            await anyio.sleep(0.5)
        restart(nodes, 2)
        with anyio.fail_after(60):
            while True:
                held_by = []
                for n in nodes:
                    try:
                        held_by.append((await local_value(c, n, "gc", "k")).present)
                    except RpcError:
                        held_by.append(True)
                if not any(held_by):
                    break
                await anyio.sleep(0.2)
        # Gone everywhere, and the old value did not come back through anti-entropy.
        await anyio.sleep(3)  # more than one full-sync interval of every node
        for n in nodes:
            assert not (await local_value(c, n, "gc", "k")).present


async def test_adding_nodes_moves_partitions_to_them_while_reads_stay_correct(
    tmp_path: Path,
) -> None:
    n_entries = 300
    with cluster(tmp_path) as nodes:
        for i in range(5):
            bootstrap = [nodes[0].peer] if i else []
            nodes.append(NodeProc(tmp_path / f"n{i}", SECRET, bootstrap, script="table_node.py"))
            nodes[-1].start()
        async with client() as c:
            await apply_layout(c, nodes[:3])
            with anyio.fail_after(120):
                await c.call(nodes[0].node_id, BULK, Bulk("m", n_entries, ts=3))
            expected = {(e.pk, e.sk): e.value.v for e in bulk_entries(Bulk("m", n_entries, ts=3))}
            reads = 0

            async def reader(stop: anyio.Event) -> None:
                nonlocal reads
                for (pk, sk), value in itertools.cycle(expected.items()):
                    if stop.is_set():
                        return
                    got = await c.call(nodes[4].node_id, GET, Key(pk, sk))
                    assert got.value == value, (pk, sk)
                    reads += 1

            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                await c.connect(nodes[4].node_id, ("127.0.0.1", nodes[4].port))
                tg.start_soon(reader, stop)
                await apply_layout(c, nodes)  # the two new nodes get roles: data moves
                # Wait until the data lives where version 2 puts it: each entry on exactly
                # three nodes, the new nodes included (old version retired, offloads done).
                counts: list[int] = []
                try:
                    with anyio.fail_after(120):
                        while True:
                            counts = [await local_count(c, n) for n in nodes]
                            if sum(counts) == 3 * n_entries and min(counts[3:]) > 0:
                                break
                            await anyio.sleep(0.5)
                except TimeoutError:
                    versions = [await layout_versions(c, n) for n in nodes]
                    raise AssertionError(f"counts {counts}, live versions {versions}") from None
                stop.set()
            print(f"\nlocal entries per node after the move: {counts}; {reads} reads checked")
            assert reads > 0

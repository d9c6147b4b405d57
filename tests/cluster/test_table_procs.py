"""A replicated table on three OS processes: catching up after downtime, rebuilding a wiped
replica. Real parts throughout: encrypted TCP on 127.0.0.1, sqlite files, SIGKILL.

The test process is a client driving the nodes through their test endpoints
(tests/cluster/table_node.py). Waits poll with deadlines; catch-up times are printed
(run with -s to see them), never asserted.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from procs import SECRET, NodeProc, apply_layout, client, cluster  # type: ignore[import-not-found]
from table_node import BULK, LOCAL_COUNT, LOCAL_GET, Bulk, Key, Nothing, bulk_entries  # type: ignore[import-not-found]

from garage_rpc.net import RpcError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from garage_rpc.net import NetApp

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

"""The RPC layer with one OS process per node, talking encrypted TCP on 127.0.0.1.

The test process is a client: a NetApp with a throw-away key (as the CLI will be), which
asks each node over RPC what it sees (``GetKnownNodes``). Waits poll with a deadline; no
test asserts a duration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from garage_rpc.net import PRIO_BACKGROUND, PRIO_HIGH, NetApp, RpcError
from garage_util import blake2sum

# The node scripts and their helpers, imported from beside this file (mypy sees them as
# tests.cluster.*, not as the top-level modules they are at run time).
sys.path.insert(0, str(Path(__file__).parent))
from procs import (  # type: ignore[import-not-found]
    SECRET,
    NodeProc,
    apply_layout,
    client,
    cluster,
    known,
    layout_version,
)
from rpc_node import ECHO, SINK, Echo, Nothing  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from garage_util.data import FixedBytes32

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def up_view(c: NetApp, node: NodeProc) -> set[FixedBytes32]:
    """The nodes ``node`` sees up."""
    return {k.node_id for k in await known(c, node) if k.is_up}


async def wait_views(
    c: NetApp, observers: list[NodeProc], expected: set[FixedBytes32], what: str
) -> None:
    views: dict[FixedBytes32, set[FixedBytes32]] = {}
    try:
        with anyio.fail_after(30):
            while True:
                for n in observers:
                    try:
                        views[n.node_id] = await up_view(c, n)
                    except RpcError:
                        views[n.node_id] = set()
                if all(v == expected for v in views.values()):
                    return
                await anyio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what}: views {views}") from None


async def test_five_processes_with_one_bootstrap_peer_each_reach_a_full_mesh_and_see_failures(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as nodes:
        for i in range(5):
            bootstrap = [nodes[i - 1].peer] if i else []
            nodes.append(NodeProc(tmp_path / f"n{i}", SECRET, bootstrap))
            nodes[-1].start()
        everyone = {n.node_id for n in nodes}
        async with client() as c:
            await wait_views(c, nodes, everyone, "full mesh")

            # A layout given to one node reaches all five.
            await apply_layout(c, nodes)

            victim = nodes[2]
            victim.kill()
            others = [n for n in nodes if n is not victim]
            await wait_views(c, others, everyone - {victim.node_id}, "killed node seen down")

            # Restart: same metadata dir (same key), same port, no bootstrap peer.
            nodes[2] = NodeProc(victim.metadata_dir, SECRET, [], port=victim.port)
            nodes[2].start()
            assert nodes[2].node_id == victim.node_id
            assert await layout_version(c, nodes[2]) == 1  # read back from its metadata dir
            await wait_views(c, nodes, everyone, "restarted node up again")


async def test_a_node_with_the_wrong_secret_never_joins(tmp_path: Path) -> None:
    with cluster(tmp_path) as nodes:
        nodes.append(NodeProc(tmp_path / "good", SECRET, []))
        nodes[0].start()
        nodes.append(NodeProc(tmp_path / "bad", os.urandom(32), [nodes[0].peer]))
        nodes[1].start()
        async with client() as c:
            for _ in range(10):  # several retry rounds of the intruder
                assert await up_view(c, nodes[0]) == {nodes[0].node_id}
                await anyio.sleep(0.3)
            assert nodes[1].proc is not None
            assert nodes[1].proc.poll() is None  # still running, just never admitted


async def test_a_64_mib_stream_arrives_intact_while_small_calls_keep_answering(
    tmp_path: Path,
) -> None:
    size = 64 * 2**20
    payload = os.urandom(2**20) * 64
    with cluster(tmp_path) as nodes:
        nodes.append(NodeProc(tmp_path / "sink", SECRET, []))
        nodes[0].start()
        node = nodes[0].node_id
        async with client() as c:
            await c.connect(node, ("127.0.0.1", nodes[0].port))
            small_done_during_stream = 0
            stream_done = anyio.Event()

            async def chunks() -> AsyncIterator[bytes]:
                view = memoryview(payload)
                for off in range(0, size, 256 * 1024):
                    yield bytes(view[off : off + 256 * 1024])

            async def small_calls() -> None:
                nonlocal small_done_during_stream
                n = 0
                while not stream_done.is_set():
                    assert (await c.call(node, ECHO, Echo(n), prio=PRIO_HIGH)).n == n + 1
                    n += 1
                    if not stream_done.is_set():
                        small_done_during_stream += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(small_calls)
                with anyio.fail_after(120):
                    result = await c.call(
                        node, SINK, Nothing(), prio=PRIO_BACKGROUND, stream=chunks()
                    )
                stream_done.set()
            assert result.length == size
            assert result.blake2 == blake2sum(payload)
            assert small_done_during_stream >= 5, small_done_during_stream

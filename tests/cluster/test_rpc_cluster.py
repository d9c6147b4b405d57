"""The RPC layer with one OS process per node, talking encrypted TCP on 127.0.0.1.

The test process is a client: a NetApp with a throw-away key (as the CLI will be), which
asks each node over RPC what it sees (``GetKnownNodes``). Waits poll with a deadline; no
test asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from garage_rpc.layout import NodeRole
from garage_rpc.layout_manager import ADVERTISE_LAYOUT, PULL_LAYOUT, PullLayout
from garage_rpc.net import PRIO_BACKGROUND, PRIO_HIGH, NetApp, NodeKey, RpcError
from garage_rpc.system import GET_KNOWN_NODES, GetKnownNodes, KnownNode
from garage_util import blake2sum
from garage_util.data import FixedBytes32

# The node script's messages, imported from beside this file (mypy sees the script as
# tests.cluster.rpc_node, not as the top-level module it is at run time).
sys.path.insert(0, str(Path(__file__).parent))
from typing import TYPE_CHECKING

from rpc_node import ECHO, SINK, Echo, Nothing  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.anyio
NODE_SCRIPT = Path(__file__).with_name("rpc_node.py")
SECRET = os.urandom(32)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@dataclass
class NodeProc:
    metadata_dir: Path
    secret: bytes
    bootstrap: list[str]
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    node_id: FixedBytes32 = field(default_factory=FixedBytes32.zero)

    def start(self) -> None:
        args = [str(self.metadata_dir), self.secret.hex(), "127.0.0.1", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), *args, *self.bootstrap],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"node exited with {self.proc.wait()} before it was ready")
        ready = json.loads(line)
        self.node_id = FixedBytes32.from_hex(ready["id"])
        self.port = ready["port"]

    @property
    def peer(self) -> str:
        return f"{self.node_id.hex()}@127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def cluster(tmp_path: Path) -> Iterator[list[NodeProc]]:
    nodes: list[NodeProc] = []
    try:
        yield nodes
    finally:
        for n in nodes:
            n.kill()


@asynccontextmanager
async def client() -> AsyncIterator[NetApp]:
    netapp = NetApp(NodeKey.generate(), SECRET, handshake_timeout_s=5.0)
    async with anyio.create_task_group() as tg:
        await tg.start(netapp.run)
        yield netapp
        tg.cancel_scope.cancel()


async def known(c: NetApp, node: NodeProc) -> list[KnownNode]:
    """What ``node`` knows of the cluster, asked over RPC."""
    await c.connect(node.node_id, ("127.0.0.1", node.port))
    with anyio.fail_after(5):
        answer = await c.call(node.node_id, GET_KNOWN_NODES, GetKnownNodes(), prio=PRIO_HIGH)
    return list(answer.nodes)


async def up_view(c: NetApp, node: NodeProc) -> set[FixedBytes32]:
    """The nodes ``node`` sees up."""
    return {k.node_id for k in await known(c, node) if k.is_up}


async def layout_version(c: NetApp, node: NodeProc) -> int:
    """The current layout version ``node`` reports for itself."""
    for k in await known(c, node):
        if k.node_id == node.node_id and k.status is not None and k.status.layout_digest:
            return int(k.status.layout_digest.current_version)
    return -1


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
            history = await c.call(nodes[0].node_id, PULL_LAYOUT, PullLayout())
            for i, n in enumerate(nodes):
                history = history.stage_role(n.node_id, NodeRole(f"z{i % 3}", 10**9, ()), 1)
            applied, _ = history.apply_staged_changes(1, now_ms=2)
            await c.call(nodes[0].node_id, ADVERTISE_LAYOUT, applied)
            with anyio.fail_after(30):
                while [await layout_version(c, n) for n in nodes] != [1] * 5:  # noqa: ASYNC110
                    await anyio.sleep(0.2)

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

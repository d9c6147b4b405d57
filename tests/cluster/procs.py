"""OS processes of test nodes, and a client to talk to them (shared by tests/cluster).

Each node is a script of this directory run with ``sys.executable`` in its own session
(so ``killpg`` reaches it whole); it prints a JSON line with its id and port when ready.
The client is a NetApp with a throw-away key that does not listen, as the CLI will be.
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
from typing import TYPE_CHECKING

import anyio

from garage_rpc.layout import NodeRole
from garage_rpc.layout_manager import ADVERTISE_LAYOUT, PULL_LAYOUT, PullLayout
from garage_rpc.net import PRIO_HIGH, NetApp, NodeKey
from garage_rpc.system import GET_KNOWN_NODES, GetKnownNodes, KnownNode
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

HERE = Path(__file__).parent
SECRET = os.urandom(32)


@dataclass
class NodeProc:
    metadata_dir: Path
    secret: bytes
    bootstrap: list[str]
    port: int = 0
    script: str = "rpc_node.py"
    proc: subprocess.Popen[str] | None = None
    node_id: FixedBytes32 = field(default_factory=FixedBytes32.zero)

    def start(self) -> None:
        args = [str(self.metadata_dir), self.secret.hex(), "127.0.0.1", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / self.script), *args, *self.bootstrap],
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


async def layout_version(c: NetApp, node: NodeProc) -> int:
    """The current layout version ``node`` reports for itself."""
    for k in await known(c, node):
        if k.node_id == node.node_id and k.status is not None and k.status.layout_digest:
            return int(k.status.layout_digest.current_version)
    return -1


async def apply_layout(c: NetApp, nodes: list[NodeProc]) -> None:
    """Gives every node a role (each in its own zone, so that added nodes take their
    share), applies it on the first node only, and waits until every node reports the new
    version (gossip spread it)."""
    await c.connect(nodes[0].node_id, ("127.0.0.1", nodes[0].port))
    history = await c.call(nodes[0].node_id, PULL_LAYOUT, PullLayout())
    for i, n in enumerate(nodes):
        history = history.stage_role(n.node_id, NodeRole(f"z{i}", 10**9, ()), 1)
    version = history.current.version + 1
    applied, _ = history.apply_staged_changes(version, now_ms=2)
    await c.call(nodes[0].node_id, ADVERTISE_LAYOUT, applied)
    with anyio.fail_after(30):
        while [await layout_version(c, n) for n in nodes] != [version] * len(nodes):  # noqa: ASYNC110
            await anyio.sleep(0.2)

"""A node of the RPC layer only, as a real OS process, for tests/cluster.

Runs the transport, peering, status exchange and layout gossip (persisted in
METADATA_DIR) with test timings, plus two test
endpoints: ``test/Echo`` (small answer) and ``test/Sink`` (reads an attached stream and
answers its length and blake2sum). When ready it prints one JSON line on stdout:
``{"id": "<hex>", "host": ..., "port": ...}``. It runs until killed.

Usage: python rpc_node.py METADATA_DIR SECRET_HEX HOST PORT [ID@HOST:PORT ...]
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import AttachedStream, Endpoint, NetApp, NodeId, NodeKey
from garage_rpc.peering import Peering, PeeringConfig
from garage_rpc.system import System
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

#: Fast enough for tests to see changes in a few seconds, slow enough for a loaded CI box.
TEST_PEERING = PeeringConfig(
    ping_interval_s=0.5,
    ping_timeout_s=2.0,
    max_failed_pings=2,
    retry_interval_s=0.5,
    max_retries=10_000,
    loop_interval_s=0.1,
)


@dataclass(frozen=True, slots=True)
class Echo:
    n: int


@dataclass(frozen=True, slots=True)
class SinkResult:
    length: int
    blake2: bytes


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


ECHO = Endpoint("test/Echo", Echo, Echo)
SINK = Endpoint("test/Sink", Nothing, SinkResult)


async def handle_echo(
    msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Echo, AttachedStream | None]:
    return Echo(msg.n + 1), None


async def handle_sink(
    msg: Nothing, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[SinkResult, AttachedStream | None]:
    h, length = hashlib.blake2b(), 0
    if stream is not None:
        async with stream:
            async for chunk in stream:
                h.update(chunk)
                length += len(chunk)
    return SinkResult(length, h.digest()[:32]), None


def parse_peer(text: str) -> tuple[FixedBytes32, tuple[str, int]]:
    node_hex, _, addr = text.partition("@")
    host, _, port = addr.rpartition(":")
    return FixedBytes32.from_hex(node_hex), (host, int(port))


async def main(argv: list[str]) -> None:
    metadata_dir, secret_hex, host, port = argv[:4]
    bootstrap = [parse_peer(p) for p in argv[4:]]
    key = NodeKey.load_or_create(metadata_dir)
    netapp = NetApp(key, bytes.fromhex(secret_hex), handshake_timeout_s=3.0)
    netapp.endpoint(ECHO, handle_echo)
    netapp.endpoint(SINK, handle_sink)
    peering = Peering(netapp, bootstrap_peers=bootstrap, config=TEST_PEERING)
    layout = LayoutManager(netapp, replication_factor=3, metadata_dir=Path(metadata_dir))
    system = System(netapp, peering, replication_factor=3, layout=layout, status_interval_s=0.5)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(netapp.run, (host, int(port)))
        assert bound is not None
        await tg.start(peering.run)
        await tg.start(system.run)
        print(json.dumps({"id": key.node_id.hex(), "host": bound[0], "port": bound[1]}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:], backend="trio")

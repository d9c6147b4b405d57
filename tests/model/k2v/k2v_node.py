"""A storage node (garage_model.Garage) as a real OS process, with K2V test endpoints.

The node of tests/cluster/model_node.py (same configuration and shortened timings), plus
endpoints a test client drives over RPC: ``test/k2v/CreateBucket``, ``test/k2v/Insert``
(routed through the node's ``K2VRpcHandler``), ``test/k2v/Read`` (a quorum read),
``test/k2v/ReadLocal`` (this node's own copy), ``test/k2v/Poll`` (PollItem),
``test/k2v/Index`` (ReadIndex) and ``test/k2v/BucketEmpty``.
Prints one JSON line when ready: ``{"id": ..., "host": ..., "port": ...}``.

Usage: python k2v_node.py METADATA_DIR SECRET_HEX HOST PORT [ID@HOST:PORT ...]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from garage_model import Garage
from garage_model.k2v import CausalContext, K2VItem, K2VItemPartition, read_index
from garage_rpc.net import AttachedStream, Endpoint, NodeId
from garage_table.schema import StringKey
from garage_util.config import parse_config
from garage_util.data import FixedBytes32

sys.path.insert(0, str(Path(__file__).parent.parent.parent / "cluster"))
from model_node import TIMINGS  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream


@dataclass(frozen=True, slots=True)
class BucketName:
    name: str


@dataclass(frozen=True, slots=True)
class BucketId:
    id: bytes


@dataclass(frozen=True, slots=True)
class ItemKey:
    bucket: bytes
    pk: str
    sk: str


@dataclass(frozen=True, slots=True)
class Insert:
    bucket: bytes
    pk: str
    sk: str
    token: str | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ItemState:
    found: bool
    values: list[bytes | None]
    token: str


@dataclass(frozen=True, slots=True)
class Poll:
    bucket: bytes
    pk: str
    sk: str
    token: str
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class IndexRows:
    rows: list[tuple[str, int, int, int, int]]


@dataclass(frozen=True, slots=True)
class Flag:
    value: bool


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


CREATE_BUCKET = Endpoint("test/k2v/CreateBucket", BucketName, BucketId)
INSERT = Endpoint("test/k2v/Insert", Insert, Nothing)
READ = Endpoint("test/k2v/Read", ItemKey, ItemState)
READ_LOCAL = Endpoint("test/k2v/ReadLocal", ItemKey, ItemState)
POLL = Endpoint("test/k2v/Poll", Poll, ItemState)
INDEX = Endpoint("test/k2v/Index", BucketId, IndexRows)
BUCKET_EMPTY = Endpoint("test/k2v/BucketEmpty", BucketId, Flag)


def state(item: K2VItem | None) -> ItemState:
    if item is None:
        return ItemState(False, [], CausalContext().serialize())
    return ItemState(True, item.values(), item.causal_context().serialize())


async def main(argv: list[str]) -> None:
    metadata_dir, secret_hex, host, port = argv[:4]
    cfg = parse_config(
        {
            "metadata_dir": metadata_dir,
            "data_dir": str(Path(metadata_dir) / "data"),
            "replication_factor": 3,
            "rpc_secret": secret_hex,
            "rpc_bind_addr": f"{host}:{port}",
            "rpc_timeout_msec": 5000,
            "bootstrap_peers": argv[4:],
            "s3_api": {"s3_region": "garage"},
        }
    )
    garage = await anyio.to_thread.run_sync(lambda: Garage(cfg, timings=TIMINGS))

    async def create_bucket(
        msg: BucketName, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[BucketId, AttachedStream | None]:
        return BucketId(bytes(await garage.locked_helper.create_bucket(msg.name))), None

    async def insert(
        msg: Insert, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        ct = None if msg.token is None else CausalContext.parse(msg.token)
        await garage.k2v_rpc.insert(FixedBytes32(msg.bucket), msg.pk, msg.sk, ct, msg.value)
        return Nothing(), None

    async def read(
        msg: ItemKey, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[ItemState, AttachedStream | None]:
        part = K2VItemPartition(FixedBytes32(msg.bucket), msg.pk)
        return state(await garage.k2v_item_table.table.get(part, StringKey(msg.sk))), None

    async def read_local(
        msg: ItemKey, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[ItemState, AttachedStream | None]:
        data = garage.k2v_item_table.data
        part = K2VItemPartition(FixedBytes32(msg.bucket), msg.pk)
        raw = await anyio.to_thread.run_sync(data.read_entry, part, StringKey(msg.sk))
        return state(None if raw is None else data.decode_entry(raw)), None

    async def poll(
        msg: Poll, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[ItemState, AttachedStream | None]:
        ct = CausalContext.parse(msg.token)
        item = await garage.k2v_rpc.poll_item(
            FixedBytes32(msg.bucket), msg.pk, msg.sk, ct, msg.timeout_ms
        )
        return state(item), None

    async def index(
        msg: BucketId, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[IndexRows, AttachedStream | None]:
        page = await read_index(garage, FixedBytes32(msg.id))
        rows = [
            (pk, c["entries"], c["conflicts"], c["values"], c["bytes"])
            for pk, c in page.partition_keys
        ]
        return IndexRows(rows), None

    async def bucket_empty(
        msg: BucketId, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Flag, AttachedStream | None]:
        return Flag(await garage.bucket_is_empty(FixedBytes32(msg.id))), None

    netapp = garage.netapp
    netapp.endpoint(CREATE_BUCKET, create_bucket)
    netapp.endpoint(INSERT, insert)
    netapp.endpoint(READ, read)
    netapp.endpoint(READ_LOCAL, read_local)
    netapp.endpoint(POLL, poll)
    netapp.endpoint(INDEX, index)
    netapp.endpoint(BUCKET_EMPTY, bucket_empty)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(garage.run)
        print(
            json.dumps({"id": garage.node_id.hex(), "host": bound[0], "port": bound[1]}), flush=True
        )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:], backend="trio")

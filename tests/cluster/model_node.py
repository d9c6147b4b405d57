"""A storage node (garage_model.Garage) as a real OS process, with test endpoints.

Builds the whole node from a configuration (metadata in METADATA_DIR, blocks in
METADATA_DIR/data, sqlite) with shortened background timings, and adds endpoints a test
client drives over RPC: ``test/CreateBucket``, ``test/PutObject`` (the object's bytes as
the attached stream), ``test/GetObject`` (answers the MD5 and size of what it read),
``test/DeleteObject``, ``test/Counters``, ``test/Scrub`` (starts a scrub pass now),
``test/RepairBlocks`` and ``test/BlockErrors``.
The block GC delay is ``GARAGE_TEST_BLOCK_GC_DELAY_MS`` (2000 by default).
Prints one JSON line when ready: ``{"id": ..., "host": ..., "port": ...}``.

Usage: python model_node.py METADATA_DIR SECRET_HEX HOST PORT [ID@HOST:PORT ...]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from garage_model import Garage, GarageTimings
from garage_model.block import RepairBlocksWorker, ScrubCommand
from garage_model.s3.writer import ObjectWriter, delete_object, read_object
from garage_rpc.net import AttachedStream, Endpoint, NodeId
from garage_rpc.rpc_helper import RequestStrategy
from garage_table import TableTimings
from garage_util.config import parse_config
from garage_util.data import FixedBytes32

sys.path.insert(0, str(Path(__file__).parent))  # for rpc_node (shared test settings)
from rpc_node import TEST_PEERING  # type: ignore[import-not-found]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import ByteReceiveStream


@dataclass(frozen=True, slots=True)
class BucketName:
    name: str


@dataclass(frozen=True, slots=True)
class BucketId:
    id: bytes


@dataclass(frozen=True, slots=True)
class ObjectKey:
    bucket: bytes
    key: str


@dataclass(frozen=True, slots=True)
class Stored:
    version: bytes
    size: int
    etag: str
    blocks: list[bytes]


@dataclass(frozen=True, slots=True)
class Read:
    found: bool
    size: int
    md5: str


@dataclass(frozen=True, slots=True)
class Counters:
    values: dict[str, int]


@dataclass(frozen=True, slots=True)
class Errors:
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


CREATE_BUCKET = Endpoint("test/CreateBucket", BucketName, BucketId)
PUT_OBJECT = Endpoint("test/PutObject", ObjectKey, Stored)
GET_OBJECT = Endpoint("test/GetObject", ObjectKey, Read)
DELETE_OBJECT = Endpoint("test/DeleteObject", ObjectKey, Nothing)
COUNTERS = Endpoint("test/Counters", BucketId, Counters)
SCRUB = Endpoint("test/Scrub", Nothing, Nothing)
REPAIR_BLOCKS = Endpoint("test/RepairBlocks", Nothing, Nothing)
BLOCK_ERRORS = Endpoint("test/BlockErrors", Nothing, Errors)

TIMINGS = GarageTimings(
    tables=TableTimings(
        strategy=RequestStrategy(timeout_s=5.0),
        sync_interval_s=2.0,
        sync_first_delay_s=0.5,
        gc_delay_s=1.0,
        gc_retry_delay_s=0.5,
    ),
    peering=TEST_PEERING,
    status_interval_s=0.5,
    block_gc_delay_ms=int(os.environ.get("GARAGE_TEST_BLOCK_GC_DELAY_MS", "2000")),
    block_incref_check_delay_ms=1000,
    resync_retry_delay_ms=500,
    resync_max_idle_s=0.5,
    scrub_checkpoint_interval_ms=500,
)


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
    netapp = garage.netapp

    async def create_bucket(
        msg: BucketName, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[BucketId, AttachedStream | None]:
        bucket_id = await garage.locked_helper.create_bucket(msg.name)
        return BucketId(bytes(bucket_id)), None

    async def put_object(
        msg: ObjectKey, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Stored, AttachedStream | None]:
        assert s is not None

        async def body() -> AsyncIterator[bytes]:
            async for chunk in s:
                yield chunk

        writer = ObjectWriter(garage, FixedBytes32(msg.bucket), msg.key)
        done = await writer.put(body())
        stored = Stored(bytes(done.version), done.size, done.etag, [bytes(h) for h in done.blocks])
        return stored, None

    async def get_object(
        msg: ObjectKey, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Read, AttachedStream | None]:
        md5, size = hashlib.md5(usedforsecurity=False), 0
        try:
            async for chunk in read_object(garage, FixedBytes32(msg.bucket), msg.key):
                md5.update(chunk)
                size += len(chunk)
        except LookupError:
            return Read(False, 0, ""), None
        return Read(True, size, md5.hexdigest()), None

    async def delete(
        msg: ObjectKey, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        await delete_object(garage, FixedBytes32(msg.bucket), msg.key)
        return Nothing(), None

    async def counters(
        msg: BucketId, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Counters, AttachedStream | None]:
        return Counters(await garage.bucket_counters(FixedBytes32(msg.id))), None

    async def scrub(
        msg: Nothing, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        garage.block_manager.send_scrub_command(ScrubCommand.START)
        return Nothing(), None

    async def repair_blocks(
        msg: Nothing, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        garage.runner.spawn_worker(RepairBlocksWorker(garage.block_manager))
        return Nothing(), None

    async def block_errors(
        msg: Nothing, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Errors, AttachedStream | None]:
        errors = await anyio.to_thread.run_sync(garage.block_manager.resync.list_errors)
        return Errors([bytes(e.hash) for e in errors]), None

    netapp.endpoint(CREATE_BUCKET, create_bucket)
    netapp.endpoint(PUT_OBJECT, put_object)
    netapp.endpoint(GET_OBJECT, get_object)
    netapp.endpoint(DELETE_OBJECT, delete)
    netapp.endpoint(COUNTERS, counters)
    netapp.endpoint(SCRUB, scrub)
    netapp.endpoint(REPAIR_BLOCKS, repair_blocks)
    netapp.endpoint(BLOCK_ERRORS, block_errors)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(garage.run)
        print(
            json.dumps({"id": garage.node_id.hex(), "host": bound[0], "port": bound[1]}), flush=True
        )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:], backend="trio")

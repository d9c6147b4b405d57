"""A node with the RPC layer and one replicated test table, as a real OS process.

Runs transport, peering, status and layout gossip (persisted in METADATA_DIR), the kv
test table of tests/table/conftest.py on sqlite in METADATA_DIR, and its workers (Merkle,
anti-entropy with test intervals, tombstone GC after ``GARAGE_TEST_GC_DELAY_S``,
1 s by default). Test endpoints let a client drive it:
``test/Insert``, ``test/BulkInsert`` (quorum writes through the table), ``test/Get``
(quorum read) and ``test/LocalCount`` / ``test/LocalGet`` (this node's own store).
Prints one JSON line when ready: ``{"id": ..., "host": ..., "port": ...}``.

Usage: python table_node.py METADATA_DIR SECRET_HEX HOST PORT [ID@HOST:PORT ...]
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import AttachedStream, Endpoint, NetApp, NodeId, NodeKey
from garage_rpc.peering import Peering
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import RequestStrategy
from garage_rpc.system import System
from garage_table import ReplicatedTable, TableShardedReplication, TableTimings
from garage_table.schema import StringKey
from garage_util.background import BackgroundRunner
from garage_util.db import open_db

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # for tests.table.conftest (the test table)
sys.path.insert(0, str(Path(__file__).parent))  # for rpc_node (shared test settings)
from rpc_node import TEST_PEERING, parse_peer  # type: ignore[import-not-found]  # noqa: E402
from tests.table.conftest import KvEntry, KvSchema  # noqa: E402

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream


@dataclass(frozen=True, slots=True)
class Put:
    pk: str
    sk: str
    value: str | None
    ts: int


@dataclass(frozen=True, slots=True)
class Bulk:
    prefix: str
    count: int
    ts: int


@dataclass(frozen=True, slots=True)
class Key:
    pk: str
    sk: str


@dataclass(frozen=True, slots=True)
class Value:
    value: str | None
    present: bool


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


@dataclass(frozen=True, slots=True)
class Count:
    n: int


INSERT = Endpoint("test/Insert", Put, Nothing)
BULK = Endpoint("test/BulkInsert", Bulk, Nothing)
GET = Endpoint("test/Get", Key, Value)
LOCAL_GET = Endpoint("test/LocalGet", Key, Value)
LOCAL_COUNT = Endpoint("test/LocalCount", Nothing, Count)


def bulk_entries(msg: Bulk) -> list[KvEntry]:
    """The entries of a bulk insert: keys spread over many partitions."""
    return [
        KvEntry.put(f"{msg.prefix}-{i % 97}", f"{i:06d}", f"{msg.prefix}{i}", msg.ts)
        for i in range(msg.count)
    ]


def as_value(entry: KvEntry | None) -> Value:
    return Value(None, False) if entry is None else Value(entry.value.v, True)


async def main(argv: list[str]) -> None:
    metadata_dir, secret_hex, host, port = argv[:4]
    bootstrap = [parse_peer(p) for p in argv[4:]]
    meta = Path(metadata_dir)
    key = NodeKey.load_or_create(meta)
    netapp = NetApp(key, bytes.fromhex(secret_hex), handshake_timeout_s=3.0)
    peering = Peering(netapp, bootstrap_peers=bootstrap, config=TEST_PEERING)
    layout = LayoutManager(netapp, replication_factor=3, metadata_dir=meta)
    system = System(netapp, peering, replication_factor=3, layout=layout, status_interval_s=0.5)
    rpc = system.rpc_helper()
    db = open_db(meta)
    replication = TableShardedReplication(lambda: layout.helper, ReplicationParams(3))
    timings = TableTimings(
        strategy=RequestStrategy(timeout_s=5),
        sync_interval_s=2.0,
        sync_first_delay_s=0.5,
        gc_delay_s=float(os.environ.get("GARAGE_TEST_GC_DELAY_S", "1.0")),
        gc_retry_delay_s=0.5,
    )
    kv: ReplicatedTable[KvEntry] = ReplicatedTable(
        KvSchema(), replication, db, netapp, rpc, layout=layout, peers=peering.up_peers,
        timings=timings,
    )  # fmt: skip
    table, data = kv.table, kv.data
    runner = BackgroundRunner()
    for worker in kv.workers():
        runner.spawn_worker(worker)

    async def insert(
        msg: Put, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        await table.insert(KvEntry.put(msg.pk, msg.sk, msg.value, msg.ts))
        return Nothing(), None

    async def bulk(
        msg: Bulk, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Nothing, AttachedStream | None]:
        entries = bulk_entries(msg)
        for start in range(0, len(entries), 100):
            await table.insert_many(entries[start : start + 100])
        return Nothing(), None

    async def get(
        msg: Key, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Value, AttachedStream | None]:
        return as_value(await table.get(StringKey(msg.pk), StringKey(msg.sk))), None

    async def local_get(
        msg: Key, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Value, AttachedStream | None]:
        raw = await anyio.to_thread.run_sync(data.read_entry, StringKey(msg.pk), StringKey(msg.sk))
        return as_value(None if raw is None else KvEntry.decode(raw)), None

    async def local_count(
        msg: Nothing, f: NodeId, s: ByteReceiveStream | None
    ) -> tuple[Count, AttachedStream | None]:
        return Count(await anyio.to_thread.run_sync(data.store.len)), None

    netapp.endpoint(INSERT, insert)
    netapp.endpoint(BULK, bulk)
    netapp.endpoint(GET, get)
    netapp.endpoint(LOCAL_GET, local_get)
    netapp.endpoint(LOCAL_COUNT, local_count)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(netapp.run, (host, int(port)))
        assert bound is not None
        for service in (peering.run, system.run, rpc.run, kv.run, runner.run):
            await tg.start(service)
        print(json.dumps({"id": key.node_id.hex(), "host": bound[0], "port": bound[1]}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:], backend="trio")

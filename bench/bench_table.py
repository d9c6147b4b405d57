"""Benchmark: a replicated table on three nodes (one process, real transport on 127.0.0.1).

Each node has its own sqlite db in a temporary directory, a NetApp (encrypted transport),
an RpcHelper, the tables and a BackgroundRunner with their Merkle workers; every node
stores every partition (replication factor 3, quorums of 2). All three share one
event loop and one interpreter, so the figures are those of a whole cluster on one core
(a real cluster has a core per node), including the third replica's write that continues
after the quorum. Measured:

- ``insert``: ``Table.insert`` from one node, one at a time and 32 in flight (ops/s), and
  ``insert_many`` in batches of 100 (entries/s);
- ``get``: ``Table.get`` of present entries from a read quorum (ops/s), same two ways;
- Merkle anti-entropy: node a holds N entries, node b the same N but 1% of them with an
  older value. Both are filled directly through ``TableData.update_many`` (in a thread),
  then their MerkleWorkers settle (the fill-and-settle rate is reported too); then one
  sync pass of every partition from a to b (``TableSyncer.sync_with``, what a full sync
  does for one peer) is timed: seconds, and items covered per second. The pass must send
  exactly the differing items.

N is 100,000 (10,000 with ``--quick``). Everything runs once per runtime of
``BENCH_RUNTIMES`` (trio, then asyncio: the table layer is written against anyio), side
by side in one table. Run it with ``uv run python -m bench bench_table``
or ``uv run python bench/bench_table.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

import anyio
import anyio.to_thread

from bench._report import Cell, Outcome, ratio
from bench._report import Table as ReportTable
from garage_rpc import (
    LayoutHelper,
    LayoutHistory,
    NetApp,
    NodeKey,
    NodeRole,
    ReplicationParams,
    RequestStrategy,
    RpcHelper,
)
from garage_table import (
    DeletedFilter,
    MerkleWorker,
    StringKey,
    Table,
    TableData,
    TableEntry,
    TableSchema,
    TableShardedReplication,
    TableSyncer,
)
from garage_util.background import BackgroundRunner
from garage_util.crdt import Lww
from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_util.db import Db

Row = tuple[str, str, float, str]

NETWORK_KEY: Final = bytes(range(32))
CONCURRENCY: Final = 32
BATCH: Final = 100
#: Items per update_many call while filling: one thread hop per chunk, and small enough
#: for the Merkle workers to interleave with the fill.
FILL_CHUNK: Final = 1000
#: One item in DIFF_EVERY differs between the two replicas of the sync benchmark (1%).
DIFF_EVERY: Final = 100
#: Partition keys of the sync benchmark: enough to spread over all 256 partitions.
SYNC_PARTITION_KEYS: Final = 4096
#: Everything is local: a call that takes this long means the benchmark is broken.
STRATEGY: Final = RequestStrategy(timeout_s=30.0)
POLL_S: Final = 0.02
_VALUE: Final = bytes(range(64))


@dataclass(frozen=True, slots=True)
class BenchEntry(TableEntry[StringKey, StringKey]):
    """A 64-byte last-writer-wins value under (pk, sk)."""

    VERSION_MARKER: ClassVar[bytes] = b"BenchT1"

    pk: str
    sk: str
    value: Lww[bytes]

    def partition_key(self) -> StringKey:
        return StringKey(self.pk)

    def sort_key(self) -> StringKey:
        return StringKey(self.sk)

    def merge(self, other: BenchEntry) -> BenchEntry:
        merged = self.value.merge(other.value)
        return self if merged is self.value else BenchEntry(self.pk, self.sk, merged)


class OpsSchema(TableSchema[StringKey, StringKey, BenchEntry, DeletedFilter]):
    TABLE_NAME: ClassVar[str] = "bench_ops"
    PARTITION_KEY = StringKey
    SORT_KEY = StringKey
    ENTRY = BenchEntry


class SyncSchema(TableSchema[StringKey, StringKey, BenchEntry, DeletedFilter]):
    TABLE_NAME: ClassVar[str] = "bench_sync"
    PARTITION_KEY = StringKey
    SORT_KEY = StringKey
    ENTRY = BenchEntry


@dataclass
class _Node:
    netapp: NetApp
    rpc: RpcHelper
    runner: BackgroundRunner
    ops: Table[BenchEntry]
    sync_data: TableData[BenchEntry]
    syncer: TableSyncer[BenchEntry]


def _layout(keys: list[NodeKey]) -> LayoutHelper:
    history = LayoutHistory.new(3)
    for i, key in enumerate(keys):
        history = history.stage_role(key.node_id, NodeRole(f"z{i}", 1 << 30), now_ms=1)
    applied, _ = history.apply_staged_changes(1, now_ms=2)
    return LayoutHelper(applied)


def _node(key: NodeKey, db: Db, layout: LayoutHelper) -> _Node:
    netapp = NetApp(key, NETWORK_KEY)
    rpc = RpcHelper(netapp.id, zone_of={}, rtt_of={})
    replication = TableShardedReplication(lambda: layout, ReplicationParams(3))
    ops_schema, sync_schema = OpsSchema(), SyncSchema()
    ops_data = TableData(ops_schema, replication, db, node_id=netapp.id)
    sync_data = TableData(sync_schema, replication, db, node_id=netapp.id)
    ops = Table(ops_schema, replication, ops_data, netapp, rpc, strategy=STRATEGY)
    # The sync table is written locally only (no Table): its syncer has its own endpoints.
    syncer = TableSyncer(sync_data, netapp)
    runner = BackgroundRunner()
    runner.spawn_worker(MerkleWorker(ops_data))
    runner.spawn_worker(MerkleWorker(sync_data))
    return _Node(netapp, rpc, runner, ops, sync_data, syncer)


async def _with_cluster(
    tmp: Path, body: Callable[[list[_Node]], Awaitable[list[Row]]]
) -> list[Row]:
    """Runs ``body`` on three connected nodes; stops every service before closing the dbs."""
    keys = [NodeKey.generate() for _ in range(3)]
    layout = _layout(keys)
    dbs: list[Db] = []
    try:
        for i in range(3):
            # One at a time: the dbs opened before a failure must still be closed.
            dbs.append(await anyio.to_thread.run_sync(open_db, tmp / f"node{i}"))  # noqa: PERF401
        nodes = [_node(k, db, layout) for k, db in zip(keys, dbs, strict=True)]
        async with anyio.create_task_group() as tg:
            addrs = []
            for n in nodes:
                addr = await tg.start(n.netapp.run, ("127.0.0.1", 0))
                assert addr is not None
                addrs.append(addr)
                for service in (n.rpc.run, n.ops.run, n.runner.run):
                    await tg.start(service)
            for i, n in enumerate(nodes):
                for j in range(i + 1, 3):
                    await n.netapp.connect(nodes[j].netapp.id, addrs[j])
            rows = await body(nodes)
            for n in nodes:
                await n.runner.shutdown()
            tg.cancel_scope.cancel()
        return rows
    finally:
        for db in dbs:
            db.close()


def _entry(i: int, ts: int = 1, value: bytes = _VALUE) -> BenchEntry:
    return BenchEntry(f"pk{i % SYNC_PARTITION_KEYS}", f"sk{i:08d}", Lww(ts, value))


async def _rate(count: int, fn: Callable[[int], Awaitable[object]], concurrency: int) -> float:
    """Calls ``fn(i)`` for i in range(count) with ``concurrency`` in flight; returns ops/s."""

    async def lane(first: int) -> None:
        for i in range(first, count, concurrency):
            await fn(i)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for first in range(concurrency):
            tg.start_soon(lane, first)
    return count / (time.perf_counter() - start)


async def _ops(nodes: list[_Node], n_ops: int) -> list[Row]:
    a, b = nodes[0], nodes[1]
    rows: list[Row] = []
    bench_insert, bench_get = "table insert (3 nodes, W=2)", "table get (3 nodes, R=2)"

    async def insert(i: int) -> None:
        await a.ops.insert(_entry(i))

    async def get(i: int) -> None:
        if (
            await b.ops.get(StringKey(f"pk{i % SYNC_PARTITION_KEYS}"), StringKey(f"sk{i:08d}"))
            is None
        ):
            raise AssertionError(f"entry {i} was written but is not found")

    rows.append((bench_insert, "sequential", await _rate(n_ops, insert, 1), "ops/s"))
    rows.append(
        (bench_insert, f"{CONCURRENCY} in flight", await _rate(n_ops, insert, CONCURRENCY), "ops/s")
    )

    async def insert_batch(i: int) -> None:
        await a.ops.insert_many([_entry(n_ops + i * BATCH + j) for j in range(BATCH)])

    batches = max(1, n_ops // BATCH)
    batch_rate = await _rate(batches, insert_batch, 1) * BATCH
    rows.append((bench_insert, f"insert_many x{BATCH}", batch_rate, "entries/s"))
    rows.append((bench_get, "sequential", await _rate(n_ops, get, 1), "ops/s"))
    rows.append(
        (bench_get, f"{CONCURRENCY} in flight", await _rate(n_ops, get, CONCURRENCY), "ops/s")
    )
    return rows


async def _wait_settled(nodes: list[_Node]) -> None:
    def settled() -> bool:
        # An empty first page, not todo_len(): counting is O(n) on sqlite and would steal
        # the workers' time while the todo is long.
        return all(not n.sync_data.merkle_updater.read_todo(1) for n in nodes)

    while not await anyio.to_thread.run_sync(settled):  # noqa: ASYNC110  # polling workers' progress
        await anyio.sleep(POLL_S)


async def _sync(nodes: list[_Node], n_items: int) -> list[Row]:
    a, b = nodes[0], nodes[1]
    label = f"{n_items // 1000}k items"

    def chunks(ts_of: Callable[[int], int]) -> list[list[bytes]]:
        return [
            [_entry(i, ts_of(i)).encode() for i in range(start, min(start + FILL_CHUNK, n_items))]
            for start in range(0, n_items, FILL_CHUNK)
        ]

    def b_ts(i: int) -> int:
        return 1 if i % DIFF_EVERY == 0 else 2  # b has an older value for 1% of items

    async def fill(node: _Node, batches: list[list[bytes]]) -> None:
        for batch in batches:
            await anyio.to_thread.run_sync(node.sync_data.update_many, batch)

    a_batches, b_batches = chunks(lambda i: 2), chunks(b_ts)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(fill, a, a_batches)
        tg.start_soon(fill, b, b_batches)
    await _wait_settled([a, b])
    fill_s = time.perf_counter() - start

    partitions = a.sync_data.replication.sync_partitions().partitions
    start = time.perf_counter()
    sent = 0
    for partition in partitions:
        sent += await a.syncer.sync_with(b.netapp.id, partition)
    sync_s = time.perf_counter() - start
    expected = len(range(0, n_items, DIFF_EVERY))
    if sent != expected:
        raise AssertionError(f"the sync sent {sent} items, {expected} differ")
    return [
        ("merkle fill+settle (2 nodes)", label, 2 * n_items / fill_s, "items/s"),
        ("merkle sync a->b, 1% differ", label, sync_s, "s"),
        ("merkle sync a->b rate, 1% differ", label, n_items / sync_s, "items/s"),
    ]


async def _measure(tmp: Path, n_ops: int, n_items: int) -> list[Row]:
    async def body(nodes: list[_Node]) -> list[Row]:
        return [*await _ops(nodes, n_ops), *await _sync(nodes, n_items)]

    return await _with_cluster(tmp, body)


def run(quick: bool) -> Outcome:
    """Quorum inserts and gets per second, and the Merkle sync of N items, 1% differing,
    on each runtime of ``BENCH_RUNTIMES`` (trio and asyncio by default)."""
    n_ops = 500 if quick else 3000
    n_items = 10_000 if quick else 100_000
    runtimes = [r for r in os.environ.get("BENCH_RUNTIMES", "trio,asyncio").split(",") if r]
    by_runtime: dict[str, list[Row]] = {}
    for runtime in runtimes:
        with tempfile.TemporaryDirectory(prefix="garage-bench-table-") as tmp:
            by_runtime[runtime] = anyio.run(_measure, Path(tmp), n_ops, n_items, backend=runtime)
    first = by_runtime[runtimes[0]]
    rows = []
    for i, (bench, variant, _, unit) in enumerate(first):
        values = [by_runtime[r][i][2] for r in runtimes]
        cells: list[Cell] = [bench, variant, unit, *values]
        if len(runtimes) > 1:
            cells.append(ratio(values[1], values[0]))
        rows.append(tuple(cells))
    columns = ("benchmark", "variant", "unit", *runtimes)
    if len(runtimes) > 1:
        columns = (*columns, f"{runtimes[1]} / {runtimes[0]}")
    table = ReportTable(
        "Table layer: 3 nodes in one process (one event loop, one core)",
        columns,
        tuple(rows),
        (
            "every node stores every partition: writes wait for 2 of 3, reads ask 2 of 3",
            "merkle sync: one pass of every partition from a to b, which differ in 1% of "
            "items (s: lower is better)",
        ),
    )
    return Outcome(tables=[table])


if __name__ == "__main__":
    from bench._report import render_text

    for table in run(quick="--quick" in sys.argv[1:]).tables:
        print(render_text(table))

"""Benchmark: block and object data throughput of whole nodes (``garage_model.Garage``).

Builds 1-node and 3-node clusters of real nodes in this process: each ``Garage`` comes from
``parse_config`` (sqlite metadata and block files in a temporary directory, RPC on
127.0.0.1, replication factor 1 or 3, default block size 1 MiB and zstd level), runs with
its peering, tables and background workers, and gets a layout with one zone per node.
The whole cluster shares one trio event loop, one interpreter and so mostly one core
(hashing, zstd and file I/O go to worker threads, but under one GIL): the 3-node figures
include the replicas' work (receiving, verifying and writing each copy), which a real
cluster does on other machines.

Measured, in MB/s (10^6 bytes of *plain* content per second), with 1 MiB blocks that are
either random (incompressible) or repeated text (compressible: zstd shrinks them to a few
hundred bytes, so what is left is hashing, compression and bookkeeping):

- ``block put``: ``BlockManager.rpc_put_block(blake2sum(data), data)`` of distinct blocks,
  one at a time (``seq``) and 4 in flight (``x4``). The call returns at the write quorum
  (2 of 3) and the last copy is sent in the background; the clock stops when every copy
  is stored (the writer's RAM buffer is empty again), so these are sustained rates.
- ``block get``: ``BlockManager.rpc_get_block`` of the stored blocks, ``seq`` and ``x4``,
  on the writer and, on 3 nodes, on another node (``other``). Reads are local first: with
  replication factor 3 every node holds every block, so ``other`` reads its own copy too
  (no network); the figure is the cost of reading, verifying and decompressing.
- ``object put`` / ``object read``: ``ObjectWriter(garage, bucket, key).put(chunks)`` of one
  object from 256 KiB chunks (blocks cut, hashed and stored 3 at a time, version and
  block_ref rows inserted, the clock again stopping when every copy is stored), then
  ``read_object`` streaming it back block by block on the writer (and on another node).

``1n``/``3n``: the cluster's size. 64 blocks per measurement and 64 MiB objects (16 blocks
and 16 MiB with ``--quick``); before the gets, every node is checked to hold every block.
The measurements are short (a fraction of a second to a few seconds), so expect some
run-to-run noise, more so with ``--quick``. Run it with ``uv run python -m bench bench_block`` or
``uv run python bench/bench_block.py [--quick]``.
"""

from __future__ import annotations

import functools
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread

from garage_model import Garage, GarageTimings
from garage_model.s3.writer import ObjectWriter, read_object
from garage_rpc import LayoutHistory, NodeRole, RequestStrategy
from garage_rpc.peering import PeeringConfig
from garage_table import TableTimings
from garage_util.config import parse_config
from garage_util.data import blake2sum

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from garage_util.data import Hash, Uuid

Row = tuple[str, str, float, str]

MIB: Final = 1 << 20
MB: Final = 10**6
IN_FLIGHT: Final = 4
#: Size of the pieces an object's bytes arrive in (as from an HTTP body).
OBJECT_CHUNK: Final = 256 * 1024
RPC_SECRET: Final = bytes(range(32)).hex()
#: Everything is local: a measurement that takes this long means something hangs.
MEASURE_TIMEOUT_S: Final = 300.0
CONNECT_TIMEOUT_S: Final = 30.0
POLL_S: Final = 0.001
_TEXT: Final = (
    b"Garage is an S3-compatible distributed object storage service designed for "
    b"self-hosting at a small-to-medium scale.\n"
)
#: Short enough for three nodes to find each other in about a second.
TIMINGS: Final = GarageTimings(
    tables=TableTimings(strategy=RequestStrategy(timeout_s=60.0)),
    peering=PeeringConfig(retry_interval_s=0.2, loop_interval_s=0.05),
)


def _block(kind: str, seed: int) -> bytes:
    """A distinct 1 MiB block: random bytes, or repeated text after a unique line."""
    if kind == "random":
        return random.Random(seed).randbytes(MIB)
    head = f"block {seed}\n".encode()
    return (head + _TEXT * (MIB // len(_TEXT) + 1))[:MIB]


def _blocks(kind: str, first_seed: int, count: int) -> list[tuple[Hash, bytes]]:
    """``count`` distinct blocks and their hashes. Blocking (hashing)."""
    out = []
    for seed in range(first_seed, first_seed + count):
        data = _block(kind, seed)
        out.append((blake2sum(data), data))
    return out


def _config(tmp: Path, name: str, rf: int, bootstrap: list[str]) -> dict[str, object]:
    return {
        "metadata_dir": str(tmp / name / "meta"),
        "data_dir": str(tmp / name / "data"),
        "rpc_bind_addr": "127.0.0.1:0",
        "rpc_secret": RPC_SECRET,
        "rpc_timeout_msec": 60_000,
        "replication_factor": rf,
        "bootstrap_peers": bootstrap,
        "s3_api": {"s3_region": "garage"},
    }


def _layout(nodes: list[Garage], rf: int) -> LayoutHistory:
    history = LayoutHistory.new(rf)
    for i, garage in enumerate(nodes):
        history = history.stage_role(garage.node_id, NodeRole(f"z{i}", 10**12), now_ms=1)
    applied, _ = history.apply_staged_changes(1, now_ms=2)
    return applied


async def _with_cluster(
    tmp: Path, n_nodes: int, body: Callable[[list[Garage]], Awaitable[list[Row]]]
) -> list[Row]:
    """Runs ``body`` on ``n_nodes`` connected nodes with a layout (replication = n_nodes)."""

    def build(bootstrap: list[str], i: int) -> Garage:
        cfg = parse_config(_config(tmp, f"node{i}", n_nodes, bootstrap))
        return Garage(cfg, timings=TIMINGS)

    async with anyio.create_task_group() as tg:
        first = await anyio.to_thread.run_sync(build, [], 0)
        host, port = await tg.start(first.run)
        peer = f"{first.node_id.hex()}@{host}:{port}"
        nodes = [first]
        for i in range(1, n_nodes):
            garage = await anyio.to_thread.run_sync(build, [peer], i)
            await tg.start(garage.run)
            nodes.append(garage)
        history = _layout(nodes, n_nodes)
        for garage in nodes:
            await garage.layout.update(history)

        def connected() -> bool:
            return all(a.netapp.is_connected(b.node_id) for a in nodes for b in nodes)

        with anyio.fail_after(CONNECT_TIMEOUT_S):
            while not connected():  # noqa: ASYNC110  # polling the peering's progress
                await anyio.sleep(0.01)
        rows = await body(nodes)
        tg.cancel_scope.cancel()
    return rows


async def _drained(garage: Garage) -> None:
    """Returns once every copy of every block ``garage`` put was sent (its RAM buffer of
    outgoing blocks is empty)."""
    while garage.block_manager.ram_buffer_used_bytes:  # noqa: ASYNC110  # no event for it
        await anyio.sleep(POLL_S)


async def _lanes(count: int, fn: Callable[[int], Awaitable[object]], concurrency: int) -> None:
    """Calls ``fn(i)`` for i in range(count), ``concurrency`` in flight."""

    async def lane(first: int) -> None:
        for i in range(first, count, concurrency):
            await fn(i)

    async with anyio.create_task_group() as tg:
        for first in range(concurrency):
            tg.start_soon(lane, first)


async def _seconds(fn: Callable[[], Awaitable[object]]) -> float:
    """How long ``fn()`` takes (it fails after MEASURE_TIMEOUT_S: something hangs)."""
    start = time.perf_counter()
    with anyio.fail_after(MEASURE_TIMEOUT_S):
        await fn()
    return time.perf_counter() - start


def _mb_s(n_bytes: int, seconds: float) -> float:
    return n_bytes / MB / seconds


async def _blocks_bench(nodes: list[Garage], kind: str, n_blocks: int) -> list[Row]:
    writer = nodes[0]
    prefix = f"{len(nodes)}n"
    put_name, get_name = f"block put 1 MiB {kind}", f"block get 1 MiB {kind}"
    rows: list[Row] = []
    stored: list[tuple[Hash, bytes]] = []
    for label, concurrency in (("seq", 1), (f"x{IN_FLIGHT}", IN_FLIGHT)):
        blocks = await anyio.to_thread.run_sync(_blocks, kind, len(stored), n_blocks)

        async def put(i: int, blocks: list[tuple[Hash, bytes]] = blocks) -> None:
            await writer.block_manager.rpc_put_block(*blocks[i])

        async def put_all(
            put: Callable[[int], Awaitable[None]] = put, n: int = concurrency
        ) -> None:
            await _lanes(n_blocks, put, n)
            await _drained(writer)

        seconds = await _seconds(put_all)
        rows.append((put_name, f"{prefix} {label}", _mb_s(n_blocks * MIB, seconds), "MB/s"))
        stored += blocks

    def everywhere() -> bool:
        return all(g.block_manager.store.has_block(h) for g in nodes for h, _ in stored)

    if not await anyio.to_thread.run_sync(everywhere):
        raise AssertionError("a stored block is missing on one of the nodes")
    readers = [("", writer)] + ([("other ", nodes[1])] if len(nodes) > 1 else [])
    for where, reader in readers:
        for label, concurrency in (("seq", 1), (f"x{IN_FLIGHT}", IN_FLIGHT)):

            async def get(i: int, reader: Garage = reader) -> None:
                hash, data = stored[i]
                got = await reader.block_manager.rpc_get_block(hash)
                if len(got) != len(data):
                    raise AssertionError(f"block {i}: got {len(got)} bytes, stored {len(data)}")

            seconds = await _seconds(functools.partial(_lanes, n_blocks, get, concurrency))
            variant = f"{prefix} {where}{label}"
            rows.append((get_name, variant, _mb_s(n_blocks * MIB, seconds), "MB/s"))
    return rows


async def _object_bench(
    nodes: list[Garage], bucket_id: Uuid, kind: str, n_blocks: int
) -> list[Row]:
    writer = nodes[0]
    prefix = f"{len(nodes)}n"
    size = n_blocks * MIB
    data = b"".join(
        [block for _, block in await anyio.to_thread.run_sync(_blocks, kind, 10**6, n_blocks)]
    )

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, size, OBJECT_CHUNK):
            yield bytes(view[start : start + OBJECT_CHUNK])

    async def put() -> None:
        result = await ObjectWriter(writer, bucket_id, kind).put(chunks())
        if result.size != size:
            raise AssertionError(f"object put stored {result.size} bytes of {size}")
        await _drained(writer)

    name = f"object {size // MIB} MiB {kind}"
    seconds = await _seconds(put)
    rows: list[Row] = [(f"{name} put", f"{prefix} seq", _mb_s(size, seconds), "MB/s")]

    readers = [("", writer)] + ([("other ", nodes[1])] if len(nodes) > 1 else [])
    for where, reader in readers:
        got: list[bytes] = []

        async def read(reader: Garage = reader, got: list[bytes] = got) -> None:
            async for chunk in read_object(reader, bucket_id, kind):
                got.append(chunk)  # noqa: PERF401  # async comprehension hides nothing

        seconds = await _seconds(read)
        if b"".join(got) != data:
            raise AssertionError(f"object {kind!r} read back differs from what was put")
        rows.append((f"{name} read", f"{prefix} {where}seq", _mb_s(size, seconds), "MB/s"))
    return rows


async def _measure(tmp: Path, n_blocks: int, object_blocks: int) -> list[Row]:
    rows: list[Row] = []
    for n_nodes in (1, 3):

        async def body(nodes: list[Garage]) -> list[Row]:
            out: list[Row] = []
            for kind in ("random", "text"):
                out += await _blocks_bench(nodes, kind, n_blocks)
            bucket_id = await nodes[0].locked_helper.create_bucket("bench")
            for kind in ("random", "text"):
                out += await _object_bench(nodes, bucket_id, kind, object_blocks)
            return out

        rows += await _with_cluster(tmp / f"cluster{n_nodes}", n_nodes, body)
    # Group the rows of each benchmark (1-node first), so ratios read against 1n seq.
    order = list(dict.fromkeys(bench for bench, *_ in rows))
    return sorted(rows, key=lambda row: order.index(row[0]))


def run(quick: bool) -> list[Row]:
    """Block put/get and object put/read throughput on 1 and 3 nodes, in MB/s."""
    n_blocks = 16 if quick else 64
    object_blocks = 16 if quick else 64
    with tempfile.TemporaryDirectory(prefix="garage-bench-block-") as tmp:
        rows: list[Row] = anyio.run(_measure, Path(tmp), n_blocks, object_blocks, backend="trio")
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(*row, sep="\t")

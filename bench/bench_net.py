"""Benchmark: the encrypted transport between two processes on 127.0.0.1, on each runtime.

A child process (``python -m bench.bench_net --serve``) runs a NetApp server; this process
dials it and measures:

- stream throughput both ways (MiB/s of attached-stream payload: the block path), which
  includes the box-stream encryption, chunking, scheduling and flow control on both ends;
- small RPC round trips per second, one at a time (latency-bound) and 32 in flight (the
  per-call cost of the multiplexer).

Both processes run on the same runtime, trio then asyncio (``BENCH_RUNTIMES``): the rows'
variant. Run it with ``uv run nox -s bench -- bench_net`` or ``uv run python -m bench.bench_net``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from garage_rpc.net import PRIO_HIGH, PRIO_NORMAL, PRIO_SECONDARY, Endpoint, NetApp, NodeId, NodeKey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import ByteReceiveStream

    from garage_rpc.net import AttachedStream

Row = tuple[str, str, float, str]

MIB: Final = 1 << 20
NETWORK_KEY: Final = bytes(range(32))
_BLOCK: Final = bytes(range(256)) * 4096  # 1 MiB, as Garage's default block size
CONCURRENCY: Final = 32


@dataclass(frozen=True, slots=True)
class Size:
    n: int


SINK = Endpoint("bench/Sink", Size, Size)
SOURCE = Endpoint("bench/Source", Size, Size)
PING = Endpoint("bench/Ping", Size, Size)


async def _blocks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(len(_BLOCK), total - sent)
        yield _BLOCK[:n]
        sent += n


# ------------------------------------------------------------------------------ server


async def _sink(
    msg: Size, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Size, AttachedStream | None]:
    size = 0
    if stream is not None:
        async for chunk in stream:
            size += len(chunk)
    return Size(size), None


async def _source(
    msg: Size, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Size, AttachedStream | None]:
    return Size(msg.n), _blocks(msg.n)


async def _ping(
    msg: Size, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Size, AttachedStream | None]:
    return msg, None


async def serve() -> None:
    """The child: serves the benchmark endpoints and prints ``READY <id> <port>``."""
    netapp = NetApp(NodeKey.generate(), NETWORK_KEY)
    netapp.endpoint(SINK, _sink)
    netapp.endpoint(SOURCE, _source)
    netapp.endpoint(PING, _ping)
    async with anyio.create_task_group() as tg:
        addr = await tg.start(netapp.run, ("127.0.0.1", 0))
        assert addr is not None
        print(f"READY {netapp.id.hex()} {addr[1]}", flush=True)


# ------------------------------------------------------------------------------ client


async def measure(
    server_id: NodeId, port: int, stream_bytes: int, calls: int, runtime: str = "trio"
) -> list[Row]:
    """Runs every measurement against the server; returns the rows (variant: ``runtime``)."""
    netapp = NetApp(NodeKey.generate(), NETWORK_KEY)
    rows: list[Row] = []
    async with anyio.create_task_group() as tg:
        await tg.start(netapp.run)
        await netapp.connect(server_id, ("127.0.0.1", port))
        await netapp.call(server_id, PING, Size(0))  # warm up

        start = time.perf_counter()
        got = await netapp.call(
            server_id,
            SINK,
            Size(0),
            prio=PRIO_NORMAL | PRIO_SECONDARY,
            stream=_blocks(stream_bytes),
        )
        elapsed = time.perf_counter() - start
        assert got.n == stream_bytes
        rows.append(("net stream upload", runtime, stream_bytes / MIB / elapsed, "MiB/s"))

        start = time.perf_counter()
        _, stream = await netapp.call_streaming(server_id, SOURCE, Size(stream_bytes))
        assert stream is not None
        size = 0
        async for chunk in stream:
            size += len(chunk)
        elapsed = time.perf_counter() - start
        assert size == stream_bytes
        rows.append(("net stream download", runtime, stream_bytes / MIB / elapsed, "MiB/s"))

        start = time.perf_counter()
        for i in range(calls):
            await netapp.call(server_id, PING, Size(i), prio=PRIO_HIGH)
        elapsed = time.perf_counter() - start
        rows.append(("net small RPC, sequential", runtime, calls / elapsed, "calls/s"))

        async def worker(count: int) -> None:
            for i in range(count):
                await netapp.call(server_id, PING, Size(i), prio=PRIO_HIGH)

        start = time.perf_counter()
        async with anyio.create_task_group() as workers:
            for _ in range(CONCURRENCY):
                workers.start_soon(worker, calls // CONCURRENCY)
        elapsed = time.perf_counter() - start
        total = calls // CONCURRENCY * CONCURRENCY
        rows.append(
            (f"net small RPC, {CONCURRENCY} in flight", runtime, total / elapsed, "calls/s")
        )
        tg.cancel_scope.cancel()
    return rows


def run(quick: bool) -> list[Row]:
    """Measures on each runtime of ``BENCH_RUNTIMES``; rows grouped by benchmark."""
    runtimes = [r for r in os.environ.get("BENCH_RUNTIMES", "trio,asyncio").split(",") if r]
    by_runtime = [_run_on(runtime, quick) for runtime in runtimes]
    return [row for rows in zip(*by_runtime, strict=True) for row in rows]


def _run_on(runtime: str, quick: bool) -> list[Row]:
    """Starts the server process on ``runtime``, measures against it, stops it."""
    stream_bytes = 32 * MIB if quick else 256 * MIB
    calls = 2_000 if quick else 20_000
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_net", "--serve", "--runtime", runtime],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "READY":
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        server_id, port = NodeId.from_hex(line[1]), int(line[2])
        return anyio.run(measure, server_id, port, stream_bytes, calls, runtime, backend=runtime)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_net")
    parser.add_argument("--serve", action="store_true", help="run the server side (internal)")
    parser.add_argument("--quick", action="store_true", help="fewer bytes and calls")
    parser.add_argument("--runtime", choices=("trio", "asyncio"), default="trio")
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, backend=args.runtime)
        return
    for row in run(quick=args.quick):
        print(*row)


if __name__ == "__main__":
    main()

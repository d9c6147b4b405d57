"""Benchmark: the S3 API of one node over HTTP, against the framework's ceiling.

Two servers run as their own processes on 127.0.0.1, each on trio and hypercorn:

- ``garage``: ``garage server --single-node`` (sqlite metadata and block files in a
  temporary directory, 1 MiB blocks, zstd, the quick start's key and bucket), logging
  to a file there;
- ``ceiling``: bench/_ceiling_app.py, a trivial ASGI app (GET answers a fixed 4 KiB body,
  PUT reads the body and answers 200) served with the node's hypercorn settings. It is
  the most a Python HTTP server on this stack can do, so ``garage/ceiling`` says how
  much of the request cost is Garage's own work (auth, tables, blocks) and how much is
  the framework's.

The client is this process: one ``httpx.AsyncClient`` per server on trio, with requests
built (and signed with ``garage_api.signature.sign_request``, payload
``UNSIGNED-PAYLOAD``) before the clock starts, so only sending, receiving and checking the
status is measured. Client and servers share the machine's cores: the ``client CPU``
rows give the client's share of a core during the run (``time.process_time``), and when
it nears 100% the client, not the server, sets the pace (the ceiling's figures mostly
are). Server CPU comes from ``/proc/<pid>/stat`` (utime + stime, all threads).

Measured:

- ``4 KiB {PUT,GET,HEAD,DELETE} xN``: distinct random 4 KiB objects (above the 3 KiB
  inline threshold, so each is a block plus three table rows), N requests in flight over
  N keep-alive connections (N = 1: latency-bound; N = 16: throughput), in ops/s; PUT and
  GET also against the ceiling, with ``garage/ceiling`` in %. Then per run: p50 and p99
  latency (ms), server CPU per request (ms), the client's CPU share (%).
- ``256 MiB PUT`` / ``GET`` (64 MiB with ``--quick``): one request streaming distinct
  incompressible 1 MiB chunks, in MB/s (10^6 bytes per second), with the same ceiling
  comparison and CPU figures (server CPU per request, in ms).

Ratios print against the first row of each benchmark (the ceiling where there is one).
Short runs are noisy, more so with ``--quick``. Run it with
``uv run python -m bench bench_s3`` or ``uv run python bench/bench_s3.py [--quick]``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import httpx

from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

Row = tuple[str, str, float, str]

MIB: Final = 1 << 20
MB: Final = 10**6
SMALL: Final = 4096
CONCURRENCY: Final = (1, 16)
#: Requests per small-object run, by concurrency: enough for a stable p99 in full runs.
SMALL_OPS: Final = {1: 1000, 16: 4000}
SMALL_OPS_QUICK: Final = {1: 120, 16: 480}
BIG: Final = 256 * MIB
BIG_QUICK: Final = 64 * MIB
GARAGE: Final = Path(sys.executable).parent / "garage"
CEILING_APP: Final = Path(__file__).with_name("_ceiling_app.py")
#: Everything is local: a request that takes this long means something hangs.
REQUEST_TIMEOUT_S: Final = 300.0
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- servers


@dataclass(frozen=True, slots=True)
class Server:
    """A server process and where it answers."""

    name: str
    proc: subprocess.Popen[str]
    base_url: str

    @property
    def host(self) -> str:
        return self.base_url.removeprefix("http://")

    def cpu_s(self) -> float:
        """CPU seconds the process used so far (user + system, all its threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


@dataclass(frozen=True, slots=True)
class Credentials:
    key_id: str
    secret: str
    region: str
    bucket: str


def _read_until(proc: subprocess.Popen[str], last: Callable[[str], bool]) -> str:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if last(line):
            return "".join(lines)
    raise RuntimeError(f"server exited with {proc.wait()} before it was ready: {lines!r}")


def _start_garage(data_dir: Path) -> tuple[Server, Credentials]:
    """``garage server --single-node`` on free ports; its endpoint and quick-start key."""
    log = (data_dir.parent / "garage.log").open("w")
    proc = subprocess.Popen(
        [
            str(GARAGE), "server", "--single-node", "--data-dir", str(data_dir),
            "--s3-api-bind", "127.0.0.1:0", "--rpc-bind", "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")},
        start_new_session=True,
    )  # fmt: skip
    log.close()  # the child has its own descriptor
    text = _read_until(proc, lambda line: line.startswith("Stop it with"))
    fields = dict(
        re.findall(r"^\s+(S3 endpoint|S3 region|Key ID|Secret key|Bucket):\s+(\S+)", text, re.M)
    )
    server = Server("garage", proc, fields["S3 endpoint"])
    creds = Credentials(
        fields["Key ID"], fields["Secret key"], fields["S3 region"], fields["Bucket"]
    )
    return server, creds


def _start_ceiling() -> Server:
    proc = subprocess.Popen(
        [sys.executable, str(CEILING_APP)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    port = _read_until(proc, lambda line: True).strip()
    return Server("ceiling", proc, f"http://127.0.0.1:{port}")


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    if server.proc.stdout is not None:
        server.proc.stdout.close()


# ---------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Target:
    """Builds the requests of one server (signed for garage, unsigned for the ceiling)."""

    server: Server
    creds: Credentials | None

    def headers(self, method: str, path: str, query: str = "") -> list[tuple[str, str]]:
        host = [("host", self.server.host)]
        if self.creds is None:
            return host
        return sign_request(
            method,
            path,
            query,
            host,
            key_id=self.creds.key_id,
            secret=self.creds.secret,
            region=self.creds.region,
            service="s3",
            now_ms=int(time.time() * 1000),
        )

    def object_path(self, key: str) -> str:
        return f"/{self.creds.bucket}/{key}" if self.creds is not None else f"/bench/{key}"

    def request(
        self,
        client: httpx.AsyncClient,
        method: str,
        key: str,
        *,
        query: str = "",
        content: bytes | AsyncIterator[bytes] | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> httpx.Request:
        path = self.object_path(key)
        url = f"{self.server.base_url}{path}" + (f"?{query}" if query else "")
        headers = [*self.headers(method, path, query), *extra]
        return client.build_request(method, url, headers=headers, content=content)


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class Measured:
    """One run: how many requests, how long, and what they cost."""

    ops: int
    wall_s: float
    latencies_s: tuple[float, ...]
    server_cpu_s: float
    client_cpu_s: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall_s

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    @property
    def server_cpu_per_op_s(self) -> float:
        return self.server_cpu_s / self.ops

    @property
    def client_share_pct(self) -> float:
        return 100 * self.client_cpu_s / self.wall_s


async def _lanes(count: int, fn: Callable[[int], Awaitable[None]], concurrency: int) -> None:
    """Calls ``fn(i)`` for i in range(count), ``concurrency`` in flight."""

    async def lane(first: int) -> None:
        for i in range(first, count, concurrency):
            await fn(i)

    async with anyio.create_task_group() as tg:
        for first in range(concurrency):
            tg.start_soon(lane, first)


def _check(response: httpx.Response, expected: int, what: str) -> None:
    if response.status_code != expected:
        raise RuntimeError(
            f"{what}: status {response.status_code}, expected {expected}: {response.text[:300]}"
        )


async def _run(
    server: Server,
    count: int,
    concurrency: int,
    fn: Callable[[int], Awaitable[None]],
) -> Measured:
    """Times ``fn(i)`` for i in range(count) with ``concurrency`` in flight."""
    latencies = [0.0] * count

    async def timed(i: int) -> None:
        start = time.perf_counter()
        await fn(i)
        latencies[i] = time.perf_counter() - start

    cpu0, client0, wall0 = server.cpu_s(), time.process_time(), time.perf_counter()
    with anyio.fail_after(REQUEST_TIMEOUT_S + count):
        await _lanes(count, timed, concurrency)
    wall, client = time.perf_counter() - wall0, time.process_time() - client0
    return Measured(count, wall, tuple(latencies), server.cpu_s() - cpu0, client)


async def _send_all(
    client: httpx.AsyncClient,
    server: Server,
    requests: list[httpx.Request],
    concurrency: int,
    expected: int,
) -> Measured:
    async def send(i: int) -> None:
        response = await client.send(requests[i])
        _check(response, expected, f"{requests[i].method} {requests[i].url}")

    return await _run(server, len(requests), concurrency, send)


async def _warm(client: httpx.AsyncClient, target: Target, concurrency: int) -> None:
    """Opens ``concurrency`` keep-alive connections (answers do not matter)."""
    requests = [target.request(client, "HEAD", "warm-up") for _ in range(2 * concurrency)]

    async def send(i: int) -> None:
        await client.send(requests[i])

    await _lanes(len(requests), send, concurrency)


def _small_rows(
    name: str, garage: Measured, ceiling: Measured | None, *, unit_ms: bool = True
) -> list[Row]:
    runs = ([("ceiling", ceiling)] if ceiling is not None else []) + [("garage", garage)]
    rows: list[Row] = [(name, label, m.ops_per_s, "ops/s") for label, m in runs]
    if ceiling is not None:
        ratio = 100 * garage.ops_per_s / ceiling.ops_per_s
        rows.append((f"{name} garage/ceiling", "ops/s ratio", ratio, "%"))
    for quantile in (0.5, 0.99):
        rows += [
            (f"{name} latency", f"{label} p{round(quantile * 100)}", m.latency_ms(quantile), "ms")
            for label, m in runs
        ]
    rows += [
        (f"{name} server CPU/op", label, 1000 * m.server_cpu_per_op_s, "ms") for label, m in runs
    ]
    rows += [(f"{name} client CPU", label, m.client_share_pct, "% core") for label, m in runs]
    return rows


def _big_rows(name: str, size: int, garage: Measured, ceiling: Measured) -> list[Row]:
    runs = (("ceiling", ceiling), ("garage", garage))
    rows: list[Row] = [(name, label, size / MB / m.wall_s, "MB/s") for label, m in runs]
    rows.append((f"{name} garage/ceiling", "MB/s ratio", 100 * ceiling.wall_s / garage.wall_s, "%"))
    rows += [(f"{name} server CPU/op", label, 1000 * m.server_cpu_s, "ms") for label, m in runs]
    rows += [(f"{name} client CPU", label, m.client_share_pct, "% core") for label, m in runs]
    return rows


@dataclass(frozen=True, slots=True)
class SmallObjects:
    """The distinct 4 KiB objects of one concurrency level, and their requests."""

    keys: tuple[str, ...]
    bodies: tuple[bytes, ...]

    @classmethod
    def make(cls, concurrency: int, count: int) -> SmallObjects:
        keys = tuple(f"small/x{concurrency}/{i:06d}" for i in range(count))
        return cls(keys, tuple(os.urandom(SMALL) for _ in keys))

    def requests(
        self, target: Target, client: httpx.AsyncClient, method: str
    ) -> list[httpx.Request]:
        """One request per object (PUT carries its body), built and signed now."""
        return [
            target.request(client, method, key, content=body if method == "PUT" else None)
            for key, body in zip(self.keys, self.bodies, strict=True)
        ]


async def _small_level(
    clients: dict[str, httpx.AsyncClient],
    node: Target,
    ceiling: Target,
    concurrency: int,
    count: int,
) -> list[Row]:
    """PUT, GET, HEAD then DELETE of ``count`` objects, ``concurrency`` in flight."""
    gc, cc = clients["garage"], clients["ceiling"]
    objects = SmallObjects.make(concurrency, count)
    await _warm(gc, node, concurrency)
    await _warm(cc, ceiling, concurrency)
    name = f"4 KiB {{}} x{concurrency}"

    async def node_run(method: str, expected: int) -> Measured:
        return await _send_all(
            gc, node.server, objects.requests(node, gc, method), concurrency, expected
        )

    async def ceiling_run(method: str) -> Measured:
        requests = objects.requests(ceiling, cc, method)
        return await _send_all(cc, ceiling.server, requests, concurrency, 200)

    rows = _small_rows(name.format("PUT"), await node_run("PUT", 200), await ceiling_run("PUT"))
    get_requests = objects.requests(node, gc, "GET")

    async def get(i: int) -> None:
        response = await gc.send(get_requests[i])
        _check(response, 200, f"GET {objects.keys[i]}")
        if response.content != objects.bodies[i]:
            raise RuntimeError(f"GET {objects.keys[i]}: the body differs from what was put")

    get_m = await _run(node.server, count, concurrency, get)
    rows += _small_rows(name.format("GET"), get_m, await ceiling_run("GET"))
    rows += _small_rows(name.format("HEAD"), await node_run("HEAD", 200), None)
    rows += _small_rows(name.format("DELETE"), await node_run("DELETE", 204), None)
    return rows


def _chunks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB chunks, each distinct (no block is deduplicated) and
    incompressible: one random MiB with the chunk's number in its first bytes."""
    base = bytearray(os.urandom(MIB))
    for i in range(0, size, MIB):
        base[:16] = (seed * 2**64 + i).to_bytes(16, "big")
        yield bytes(base[: min(MIB, size - i)])


async def _stream(size: int, seed: int) -> AsyncIterator[bytes]:
    for chunk in _chunks(size, seed):
        yield chunk


async def _big_one(
    client: httpx.AsyncClient, target: Target, size: int
) -> tuple[Measured, Measured]:
    """One PUT of ``size`` streamed bytes, then one GET of them (received and counted)."""
    await _warm(client, target, 1)
    length = (("content-length", str(size)),)
    put_request = target.request(client, "PUT", "big", content=_stream(size, 1), extra=length)
    put = await _send_all(client, target.server, [put_request], 1, 200)
    query = f"size={size}" if target.creds is None else ""
    get_request = target.request(client, "GET", "big", query=query)

    async def get(_: int) -> None:
        response = await client.send(get_request, stream=True)
        try:
            _check(response, 200, "GET big")
            received = 0
            async for data in response.aiter_raw():
                received += len(data)
        finally:
            await response.aclose()
        if received != size:
            raise RuntimeError(f"GET big: {received} bytes, expected {size}")

    return put, await _run(target.server, 1, 1, get)


async def _big(
    clients: dict[str, httpx.AsyncClient], node: Target, ceiling: Target, size: int
) -> list[Row]:
    ceiling_put, ceiling_get = await _big_one(clients["ceiling"], ceiling, size)
    node_put, node_get = await _big_one(clients["garage"], node, size)
    label = f"{size // MIB} MiB"
    return [
        *_big_rows(f"{label} PUT", size, node_put, ceiling_put),
        *_big_rows(f"{label} GET", size, node_get, ceiling_get),
    ]


async def _measure(garage: Server, creds: Credentials, ceiling: Server, quick: bool) -> list[Row]:
    node, ceil = Target(garage, creds), Target(ceiling, None)
    limits = httpx.Limits(
        max_connections=max(CONCURRENCY), max_keepalive_connections=max(CONCURRENCY)
    )
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)
    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout) as gc,
        httpx.AsyncClient(limits=limits, timeout=timeout) as cc,
    ):
        clients = {"garage": gc, "ceiling": cc}
        ops = SMALL_OPS_QUICK if quick else SMALL_OPS
        rows: list[Row] = []
        for concurrency in CONCURRENCY:
            rows += await _small_level(clients, node, ceil, concurrency, ops[concurrency])
        rows += await _big(clients, node, ceil, BIG_QUICK if quick else BIG)
    return rows


def run(quick: bool) -> list[Row]:
    """4 KiB PUT/GET/HEAD/DELETE ops/s and big PUT/GET MB/s of one node, and the ceiling."""
    with tempfile.TemporaryDirectory(prefix="garage-bench-s3-") as tmp:
        log = Path(tmp) / "garage.log"
        try:
            garage, creds = _start_garage(Path(tmp) / "node")
            try:
                ceiling = _start_ceiling()
                try:
                    rows: list[Row] = anyio.run(
                        _measure, garage, creds, ceiling, quick, backend="trio"
                    )
                finally:
                    _stop(ceiling)
            finally:
                _stop(garage)
        except BaseException:
            if log.exists():  # the node's side of the story, before the directory goes
                print(log.read_text()[-4000:], file=sys.stderr)
            raise
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(*row, sep="\t")

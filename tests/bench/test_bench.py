"""The benchmark suite's own parts: the load generator, the delaying relay, profile summaries.

The benchmarks measure and never assert speed; these tests check that what they measure
with works: the C load generator sends every request once and reads every answer right
(GET bodies, HEAD answers without one, generated bodies of any size, chunked answers, 206
answers, answers that end with the connection), the relay carries bytes in order,
survives peers that vanish and really delays them (a lower bound, which no load can
break), and profiles are summarised and set against the ceiling faithfully. No speed is
asserted.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from bench._load import Target, fire
from bench._profile import (
    ADAPTER,
    AREAS,
    FRAMEWORK,
    HINTS,
    HTTP_SERVER,
    IDLE_LEAVES,
    explain,
    py_spy,
    summarise,
)
from bench._servers import Server, free_port, start_ceiling, stop
from bench.bench_geo import CALLS, PATH_SOURCES, PATHS, _outcome
from hypothesis import given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_ceiling("trio", tmp_path_factory.mktemp("ceiling"))
    try:
        yield server
    finally:
        stop(server)


def test_every_request_is_answered_once_with_its_body(ceiling: Server) -> None:
    target = ceiling.target
    puts = [target.request("PUT", f"k{i}", body=os.urandom(4096)) for i in range(40)]
    load = fire(target, puts, connections=7, server_pids=ceiling.pids)
    assert [a.index for a in load.answers] == list(range(40))
    assert {a.status for a in load.answers} == {200}
    gets = fire(
        target, [target.request("GET", "k") for _ in range(30)], connections=4, body_bytes=4096
    )
    assert gets.body_bytes == 30 * 4096
    heads = fire(target, [target.request("HEAD", "k") for _ in range(30)], connections=3)
    assert heads.ops == 30  # a HEAD answer has no body: the tool must not wait for one
    assert load.server_cpu_s >= 0
    assert load.client_cpu_s >= 0


def test_generated_bodies_and_streamed_answers_have_their_size(ceiling: Server) -> None:
    target = ceiling.target
    size = 3 * (1 << 20) + 12345  # not a whole number of 1 MiB chunks
    put = fire(target, [target.request("PUT", "big", generated=size, seed=3)], connections=1)
    assert put.answers[0].status == 200
    got = fire(target, [target.request("GET", "big", query=f"size={size}")], connections=1)
    assert got.answers[0].body_bytes == size


def test_an_unexpected_status_is_an_error(ceiling: Server) -> None:
    from bench._load import LoadError

    with pytest.raises(LoadError, match="status 200"):
        fire(ceiling.target, [ceiling.target.request("GET", "k")], connections=1, expect=(204,))


async def _echo_server(port: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                async for data in stream:
                    await stream.send(data)
            except (anyio.BrokenResourceError, anyio.EndOfStream):
                pass

    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port) as listener:
        task_status.started()
        await listener.serve(echo)


@pytest.fixture
def relay(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """bench/_relay.py (2 ms each way, or the test's ``delay_ms`` parameter) in front of a
    port of the test's echo server; the relay process, its port and the echo server's port."""
    delay_ms = str(getattr(request, "param", 2))
    echo_port, relay_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._relay", "--delay-ms", delay_ms, f"{relay_port}:{echo_port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        yield proc, relay_port, echo_port
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_the_relay_carries_bytes_in_order_and_outlives_vanishing_peers(
    relay: tuple[subprocess.Popen[str], int, int],
) -> None:
    proc, relay_port, echo_port = relay
    async with anyio.create_task_group() as tg:
        await tg.start(_echo_server, echo_port)
        # Peers that connect and vanish at once must not take the relay down.
        for _ in range(3):
            gone = await anyio.connect_tcp("127.0.0.1", relay_port)
            await gone.send(b"x" * 1000)
            await gone.aclose()
        data = os.urandom(1 << 20)
        async with await anyio.connect_tcp("127.0.0.1", relay_port) as stream:

            async def send() -> None:
                for i in range(0, len(data), 10_000):
                    await stream.send(data[i : i + 10_000])

            tg.start_soon(send)
            received = bytearray()
            with anyio.fail_after(60):
                while len(received) < len(data):
                    received += await stream.receive()
        assert bytes(received) == data
        tg.cancel_scope.cancel()
    assert proc.poll() is None


DELAY_MS = 60


@pytest.mark.parametrize("relay", [DELAY_MS], indirect=True)
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_the_relay_delays_each_direction(
    relay: tuple[subprocess.Popen[str], int, int],
) -> None:
    # A lower bound, not a speed: an echo through a relay that holds each direction for D
    # cannot come back before 2 D, however idle or loaded the machine is.
    _, relay_port, echo_port = relay
    async with anyio.create_task_group() as tg:
        await tg.start(_echo_server, echo_port)
        async with await anyio.connect_tcp("127.0.0.1", relay_port) as stream:
            for i in range(3):
                message = f"ping {i}".encode()
                start = time.monotonic()
                await stream.send(message)
                received = b""
                with anyio.fail_after(60):
                    while len(received) < len(message):
                        received += await stream.receive()
                elapsed_s = time.monotonic() - start
                assert received == message
                assert elapsed_s >= 2 * DELAY_MS / 1000
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------- the load generator's answers

_BODY = bytes(range(256)) * 400  # 102,400 bytes


async def _read_head(stream: anyio.abc.SocketStream, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


async def _odd_server(port: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """Answers ``/b/chunked`` in chunks (with an extension and a trailer, cut at awkward
    places), ``/b/range`` with a 206, ``/b/eof`` with a body that ends with the connection."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            while (head := await _read_head(stream, buffer)) is not None:
                path = head.split(b" ")[1].partition(b"?")[0]
                if path == b"/b/chunked":
                    sizes = (1, 4095, 70_000, len(_BODY) - 74_096)
                    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                    sent = 0
                    for i, size in enumerate(sizes):
                        extension = b";name=value" if i == 1 else b""
                        wire += b"%x%s\r\n%s\r\n" % (size, extension, _BODY[sent : sent + size])
                        sent += size
                    wire += b"0\r\nx-trailer: yes\r\n\r\n"
                    for cut in range(0, len(wire), 7001):  # pieces across every boundary
                        await stream.send(wire[cut : cut + 7001])
                elif path == b"/b/range":
                    await stream.send(
                        b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 100-1099/5000\r\n"
                        b'content-length: 1000\r\netag: "r-1"\r\n\r\n' + _BODY[:400]
                    )
                    await stream.send(_BODY[400:1000])
                else:
                    await stream.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + _BODY)
                    return

    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port) as listener:
        task_status.started()
        await listener.serve(serve)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_the_load_tool_reads_chunked_ranged_and_closing_answers() -> None:
    port = free_port()
    target = Target((("127.0.0.1", port),), None, "b")
    paths = ["chunked", "range", "eof", "chunked", "range", "chunked", "eof", "range"] * 3
    requests = [target.request("GET", p) for p in paths]
    async with anyio.create_task_group() as tg:
        await tg.start(_odd_server, port)
        load = await anyio.to_thread.run_sync(
            lambda: fire(target, requests, connections=2, expect=(200, 206))
        )
        tg.cancel_scope.cancel()
    for path, answer in zip(paths, load.answers, strict=True):
        assert (answer.status, answer.body_bytes) == {
            "chunked": (200, len(_BODY)),
            "range": (206, 1000),
            "eof": (200, len(_BODY)),
        }[path]
        assert answer.etag == ("r-1" if path == "range" else None)


# ---------------------------------------------------------------- profile summaries

_FRAMES = [
    "H11Protocol.handle (hypercorn/protocol/h11.py:116)",
    "Table._get (garage_table/table.py:319)",
    "_ops_get (garage_util/db/_sqlite.py:80)",
    "verify (garage_api/signature/_sigv4.py:500)",
    "unrolled_run (trio/_core/_run.py:2866)",
    "handle (garage_api/s3/_api.py:10)",
    "helper (somewhere/else.py:1)",
]


def test_a_profile_names_the_area_that_takes_the_time() -> None:
    collapsed = "\n".join(
        [
            "thread (1): MainThread;unrolled_run (trio/_core/_run.py:1);H11Protocol.handle (hypercorn/protocol/h11.py:116) 30",
            "thread (1): MainThread;unrolled_run (trio/_core/_run.py:1);handle (garage_api/s3/_api.py:10);Table._get (garage_table/table.py:319) 60",
            "thread (2): Trio thread 3;Thread.run (threading.py:982);"
            + IDLE_LEAVES[0].replace(")", ":211)")
            + " 500",
            "thread (2): Trio thread 3;_ops_get (garage_util/db/_sqlite.py:80) 10",
        ]
    )
    summary = summarise("GET", collapsed)
    assert summary.top_area == "tables"
    assert summary.lines[0].startswith("100 samples on CPU")  # the idle worker is left out
    assert "500 waiting" in summary.lines[0]
    assert "event loop 90%" in summary.lines[0]
    assert "worker threads 10%" in summary.lines[0]
    assert dict(summary.areas) == {"tables": 60, "HTTP server (hypercorn, h11)": 30, "sqlite": 10}
    assert summary.hint is not None


_LOOP = "thread (1): MainThread;unrolled_run (trio/_core/_run.py:1)"


def test_our_asgi_adapter_is_not_the_framework() -> None:
    collapsed = "\n".join(
        [
            # hypercorn's loop, run from the TCPServer subclass in garage_api/http.py
            f"{_LOOP};_free_closed_connections.<locals>.TCPServer._read_data "
            "(garage_api/http.py:336);TCPServer._read_data (hypercorn/trio/tcp_server.py:90) 10",
            f"{_LOOP};_free_closed_connections.<locals>.TCPServer._read_data "
            "(garage_api/http.py:336) 5",
            # the adapter building a Request: ours
            f"{_LOOP};asgi.<locals>.app (garage_api/http.py:240);__init__ (<string>:2) 20",
            # the adapter sending through hypercorn: the framework's
            f"{_LOOP};asgi.<locals>.app (garage_api/http.py:240);_send (garage_api/http.py:300);"
            "HTTPStream.app_send (hypercorn/protocol/http_stream.py:180) 7",
            f"{_LOOP};unrolled_run (trio/_core/_run.py:2) 8",
        ]
    )
    summary = summarise("GET", collapsed)
    assert dict(summary.areas) == {
        ADAPTER: 20,
        HTTP_SERVER: 22,
        "runtime (trio, asyncio, anyio)": 8,
    }
    assert summary.top_area == ADAPTER  # the framework is bigger, but it is not ours
    assert ((ADAPTER, "asgi.<locals>.app (garage_api/http.py)"), 20) in summary.charged


def test_the_next_step_comes_from_the_costs_and_our_biggest_area() -> None:
    collapsed = "\n".join(
        [
            f"{_LOOP};H11Protocol.handle (hypercorn/protocol/h11.py:116) 30",
            f"{_LOOP};handle (garage_api/s3/_api.py:10);Table._get (garage_table/table.py:319) 10",
            f"{_LOOP};handle (garage_api/s3/_api.py:10);_ops_get (garage_util/db/_sqlite.py:80) 40",
            f"{_LOOP};handle (garage_api/s3/_api.py:10);SqliteTx.commit "
            "(garage_util/db/_sqlite.py:90) 20",
        ]
    )
    summary = summarise("PUT", collapsed)
    assert summary.top_area == "sqlite"
    explained = explain(summary, node_cost=5.0, ceiling_cost=1.0, unit="ms/op")
    # 5 ms/op for the node against 1 for the ceiling: 4 ms/op (80%) are ours; sqlite
    # has 60% of the samples: 3 ms/op, 75% of our excess.
    assert "the node 5.00 ms/op, the ceiling 1.00 ms/op" in explained.lines[-2]
    assert "4.00 ms/op (80%) is our code's" in explained.lines[-2]
    assert (
        "framework and runtime take 1.50 ms/op here (30% of the samples)" in (explained.lines[-2])
    )
    assert explained.lines[-1].startswith("our areas (framework and runtime left out): sqlite")
    assert HTTP_SERVER not in explained.lines[-1]
    step = explained.hint
    assert step is not None
    assert step.startswith("sqlite, the biggest of our areas (3.00 ms/op, 75% of our excess)")
    assert "_ops_get (garage_util/db/_sqlite.py) 40%" in step
    assert step.endswith(HINTS["sqlite"])
    # A node that costs about what the ceiling costs is bound by the framework.
    bound = explain(summary, node_cost=1.1, ceiling_cost=1.0, unit="ms/op").hint
    assert bound is not None
    assert "the framework bounds it" in bound
    # Without a ceiling there is still our biggest area.
    alone = explain(summary, node_cost=2.0, ceiling_cost=None, unit="s/GB")
    assert "no ceiling measured" in alone.lines[-2]
    assert alone.hint is not None
    assert alone.hint.startswith("sqlite, the biggest of our areas (1.20 s/GB)")


def test_py_spy_is_installed_with_the_dev_dependencies() -> None:
    tool, reason = py_spy()
    assert tool is not None, reason
    assert Path(tool).exists()


@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from(_FRAMES), min_size=1, max_size=6), st.integers(1, 50)),
        max_size=20,
    )
)
def test_profile_shares_cover_every_sample_once(stacks: list[tuple[list[str], int]]) -> None:
    collapsed = "\n".join("thread (1): MainThread;" + ";".join(f) + f" {n}" for f, n in stacks)
    summary = summarise("any", collapsed)
    total = sum(n for _, n in stacks)
    assert summary.samples == total
    assert sum(n for _, n in summary.areas) == total  # each sample counted once
    known = {area for area, _ in AREAS}
    assert {a for a, _ in summary.areas} <= known | {"other"}
    assert sum(n for _, n in summary.charged) == total
    if summary.top_area is not None:
        assert summary.top_area in known
        assert summary.top_area not in FRAMEWORK
        assert dict(summary.areas)[summary.top_area] > 0


# ---------------------------------------------------------------- the geo report


def test_the_geo_paths_describe_functions_that_exist() -> None:
    # PATHS is hand-written from these functions: a rename or a move must revisit it.
    for module_name, names in PATH_SOURCES.items():
        module = importlib.import_module(module_name)
        for name in names:
            found: object = module
            for part in name.split("."):
                found = getattr(found, part)
            assert callable(found), f"{module_name}.{name}"
    assert set(PATHS) <= set(CALLS)


def test_the_geo_report_counts_round_trips_and_explains_misses() -> None:
    rtt_s = 0.1
    # PutObject 4 KiB: 5 round trips plus 20 ms of its own; the rest: 1 round trip.
    own = {call: 0.01 for call in CALLS} | {"PutObject 4 KiB": 0.02, "ListBuckets": 0.001}
    trips = {call: 1 for call in CALLS} | {"PutObject 4 KiB": 5, "ListBuckets": 0}
    delayed = {c: [own[c] + trips[c] * rtt_s + d for d in (-0.001, 0.0, 0.5)] for c in CALLS}
    local = {c: [own[c], own[c], 1.0] for c in CALLS}  # one outlier: the median ignores it
    outcome = _outcome({"delay_ms": 50, "delayed": delayed, "local": local}, 3)
    (table,) = outcome.tables
    rows = {row[0]: row for row in table.rows}
    put = rows["PutObject 4 KiB"]
    assert put[3] == pytest.approx(5.2)  # latency / RTT
    assert put[4] == pytest.approx(5.0)  # sequential round trips
    assert rows["ListBuckets"][4] == pytest.approx(0.0)
    assert any("ListBuckets costs ~0 RTT" in note for note in table.notes)
    verdicts = {t.name: t.met for t in outcome.targets}
    assert verdicts["geo PutObject 4 KiB: latency / RTT"] is False
    assert verdicts["geo GetObject 4 KiB: latency / RTT"] is True
    (explained,) = outcome.profiles
    assert explained.title == "geo PutObject 4 KiB"
    assert explained.lines[0] == PATHS["PutObject 4 KiB"][0]
    assert "5.0 round trips of network and 20 ms" in explained.lines[1]
    assert explained.hint == PATHS["PutObject 4 KiB"][1]

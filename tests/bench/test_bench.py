"""The benchmark suite's own parts: the load generator, the delaying relay, profile summaries.

The benchmarks measure and never assert speed; these tests check that what they measure
with works: the C load generator sends every request once and reads every answer right
(GET bodies, HEAD answers without one, generated bodies of any size), the relay carries
bytes in order and survives peers that vanish, and profiles are summarised faithfully.
No timing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from bench._load import fire
from bench._profile import AREAS, IDLE_LEAVES, summarise
from bench._servers import Server, free_port, start_ceiling, stop
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
def relay() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """bench/_relay.py (2 ms each way) in front of a port of the test's echo server;
    the relay process, its port and the echo server's port."""
    echo_port, relay_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._relay", "--delay-ms", "2", f"{relay_port}:{echo_port}"],
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
    if summary.top_area is not None:
        assert summary.top_area in known
        assert dict(summary.areas)[summary.top_area] > 0

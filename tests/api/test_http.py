"""The shared HTTP boundary: hypercorn serving a handler on trio and asyncio, real sockets."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import httpx
import pytest

from garage_api.http import Request, Response, serve
from garage_util.config import TcpAddr, UnixSocketAddr

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

MiB = 2**20


async def handler(request: Request) -> Response:
    """Echoes what it received: md5 and size of the body; ``/gen/N`` streams N MiB."""
    if request.raw_path.startswith("/gen/"):
        n = int(request.raw_path.removeprefix("/gen/"))

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(n):
                yield bytes([i % 256]) * MiB

        return Response(200, [("content-length", str(n * MiB))], chunks())
    if request.raw_path == "/boom":
        raise RuntimeError("handler bug")
    md5, size = hashlib.md5(usedforsecurity=False), 0
    async for chunk in request.body():
        md5.update(chunk)
        size += len(chunk)
    text = f"{request.method} {request.raw_path}?{request.query_string} {size} {md5.hexdigest()}"
    return Response(200, [("x-host", request.host)], text.encode())


async def test_streams_both_ways_and_reports_the_bound_port() -> None:
    data = os.urandom(8 * MiB + 3)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(serve, handler, TcpAddr("127.0.0.1", 0))
        assert bound.startswith("127.0.0.1:")
        assert not bound.endswith(":0")
        async with httpx.AsyncClient(base_url=f"http://{bound}") as client:
            r = await client.put("/a%20b/c?x=1&y", content=data)
            assert r.status_code == 200
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            assert r.text == f"PUT /a%20b/c?x=1&y {len(data)} {md5}"
            async with client.stream("GET", "/gen/5") as r:
                got = b"".join([c async for c in r.aiter_bytes()])
            assert got == b"".join(bytes([i]) * MiB for i in range(5))
            head = await client.head("/gen/2")
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["content-length"] == str(2 * MiB)
            assert (await client.get("/boom")).status_code == 500
        tg.cancel_scope.cancel()


async def test_graceful_shutdown_returns(tmp_path: Path) -> None:
    stop = anyio.Event()
    sock = tmp_path / "api.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(serve, handler, UnixSocketAddr(sock), shutdown=stop))
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://garage") as client:
            r = await client.post("/x", content=b"hi")
            assert r.text.startswith("POST /x? 2 ")
            assert r.headers["x-host"] == "garage"
        stop.set()  # serve returns by itself: the task group exits without a cancel


async def early(request: Request) -> Response:
    """Refuses without reading the body (as a handler that fails fast does)."""
    return Response(400, [], b"refused")


def _upload_refused_early(host: str, port: int, body: bytes) -> bytes:
    """Sends a PUT with a body the server will not read; returns what it answered."""
    head = f"PUT /x HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close once it has answered
            sock.sendall(head + body)
        received = b""
        while b"refused" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


async def test_a_refused_upload_neither_hangs_the_connection_nor_the_stop() -> None:
    stop = anyio.Event()
    with anyio.fail_after(30):  # a graceful stop is not held up by unread bodies
        async with anyio.create_task_group() as tg:
            start = functools.partial(serve, early, TcpAddr("127.0.0.1", 0), shutdown=stop)
            bound = await tg.start(start)
            host, port = bound.rsplit(":", 1)
            for _ in range(2):
                answer = await anyio.to_thread.run_sync(
                    _upload_refused_early, host, int(port), os.urandom(3 * MiB)
                )
                assert answer.startswith(b"HTTP/1.1 400")
            stop.set()  # serve() returns by itself: the task group exits without a cancel

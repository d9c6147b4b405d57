"""Fixtures for the transport tests: in-memory byte streams and pairs of running NetApps.

``node_pair`` runs two NetApps connected either over an in-memory stream pair or over real
TCP on 127.0.0.1 (port 0), so the driver tests run on both transports and both backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Final

import anyio
import pytest
from anyio.abc import ByteStream

from garage_rpc.net import NetApp, NodeKey

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

NETWORK_KEY: Final = bytes(range(32))


class MemoryByteStream(ByteStream):
    """One end of an in-memory, bidirectional byte stream (like trio's memory_stream_pair)."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            self._pending = await self._receive.receive()
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_stream_pair(buffer: int = 16) -> tuple[ByteStream, ByteStream]:
    """Two connected byte streams; ``buffer`` writes may be in flight each way."""
    a_send, b_recv = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_recv = anyio.create_memory_object_stream[bytes](buffer)
    return MemoryByteStream(a_send, a_recv), MemoryByteStream(b_send, b_recv)


#: Builds a NetApp from a key (to vary options between tests).
NetAppFactory = Callable[[NodeKey], NetApp]
#: Runs two connected NetApps (a dialled b) over a transport, for the ``async with`` body.
PairRunner = Callable[..., AbstractAsyncContextManager[tuple[NetApp, NetApp]]]


@asynccontextmanager
async def running_pair(
    transport: str, make: NetAppFactory | None = None
) -> AsyncIterator[tuple[NetApp, NetApp]]:
    """Runs two NetApps connected over ``transport`` ("memory" or "tcp"), a dialling b."""

    def default(key: NodeKey) -> NetApp:
        return NetApp(key, NETWORK_KEY)

    factory = make or default
    a, b = factory(NodeKey.generate()), factory(NodeKey.generate())
    async with anyio.create_task_group() as tg:
        if transport == "tcp":
            await tg.start(a.run, ("127.0.0.1", 0))
            addr_b = await tg.start(b.run, ("127.0.0.1", 0))
            assert addr_b is not None
            await a.connect(b.id, addr_b)
        else:
            await tg.start(a.run)
            await tg.start(b.run)
            end_a, end_b = memory_stream_pair()
            async with anyio.create_task_group() as hs:
                hs.start_soon(b.accept_stream, end_b)
                await a.connect_stream(b.id, end_a)
        try:
            yield a, b
        finally:
            tg.cancel_scope.cancel()


@pytest.fixture
def network_key() -> bytes:
    """The network key (rpc_secret) of the NetApps built by these fixtures."""
    return NETWORK_KEY


@pytest.fixture(params=["memory", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    """The transport of ``node_pair``: in-memory streams, or TCP on 127.0.0.1."""
    return str(request.param)


@pytest.fixture
def pair_runner() -> PairRunner:
    """``async with pair_runner(transport, make=None) as (a, b)``: two connected NetApps."""
    return running_pair


@pytest.fixture
def memory_pipe() -> Callable[[], tuple[ByteStream, ByteStream]]:
    """Makes two connected in-memory byte streams."""
    return memory_stream_pair


@pytest.fixture
async def node_pair(transport: str) -> AsyncIterator[tuple[NetApp, NetApp]]:
    """Two running NetApps, connected (a dialled b), on both transports."""
    async with running_pair(transport) as pair:
        yield pair

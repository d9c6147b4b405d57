"""NetApp and its connection driver, over in-memory streams and real TCP, on both backends.

Timing is never asserted: deadlines (``fail_after``) are safety nets only, and "X happened
while Y was in progress" is checked with counters and events.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import pytest

from garage_rpc.net import (
    PRIO_BACKGROUND,
    PRIO_HIGH,
    PRIO_SECONDARY,
    AttachedStream,
    ConnectionInfo,
    Endpoint,
    MessageTooLarge,
    NetApp,
    NodeId,
    NodeKey,
    NoSuchEndpoint,
    NotConnected,
    PeerDisconnected,
    RemoteError,
)

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream, ByteStream

#: Safety net for waits; never asserted on.
DEADLINE_S: Final = 30
MIB: Final = 1 << 20

PairRunner = Callable[..., AbstractAsyncContextManager[tuple[NetApp, NetApp]]]


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


@dataclass(frozen=True, slots=True)
class Count:
    n: int


@dataclass(frozen=True, slots=True)
class Digest:
    digest: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes


ECHO = Endpoint("test/Echo", Echo, Echo)
HASH = Endpoint("test/Hash", Count, Digest)
PRODUCE = Endpoint("test/Produce", Count, Count)
BLOCK = Endpoint("test/Block", Echo, Echo)
BLOB = Endpoint("test/Blob", Blob, Count)
MISSING = Endpoint("test/Missing", Echo, Echo)

Reply = tuple[Echo, AttachedStream | None]


async def echo(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
    return Echo(f"{msg.text} from {from_node.short_hex()}"), None


async def hash_stream(stream: ByteReceiveStream) -> tuple[bytes, int]:
    h = hashlib.blake2b()
    size = 0
    async for chunk in stream:
        h.update(chunk)
        size += len(chunk)
    return h.digest()[:32], size


async def read_all(stream: ByteReceiveStream) -> bytes:
    return b"".join([chunk async for chunk in stream])


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic non-repeating bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


async def pieces(data: bytes, piece: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def wait_idle(*nodes: NetApp) -> None:
    """Waits until nothing is in flight on ``nodes``: no call, request or stream leaked.

    Cancels and discards complete asynchronously, hence the wait (bounded, never timed).
    """
    for _ in range(2000):
        stats = [node.statistics() for node in nodes]
        if all(s.calls == s.requests == s.sending == 0 for s in stats):
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"still in flight: {stats}")


# ------------------------------------------------------------------------------ basics


@pytest.mark.anyio
async def test_concurrent_calls_both_directions_share_one_connection(
    node_pair: tuple[NetApp, NetApp],
) -> None:
    a, b = node_pair
    a.endpoint(ECHO, echo)
    b.endpoint(ECHO, echo)
    results: dict[str, Echo] = {}

    async def one(src: NetApp, dst: NetApp, i: int) -> None:
        results[f"{src.id.short_hex()}-{i}"] = await src.call(dst.id, ECHO, Echo(str(i)))

    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, a, b, i)
                tg.start_soon(one, b, a, i)
    for i in range(50):
        assert results[f"{a.id.short_hex()}-{i}"] == Echo(f"{i} from {a.id.short_hex()}")
        assert results[f"{b.id.short_hex()}-{i}"] == Echo(f"{i} from {b.id.short_hex()}")
    assert [c.node_id for c in a.connected_peers()] == [b.id]
    assert [c.node_id for c in b.connected_peers()] == [a.id]
    assert not a.connected_peers()[0].incoming
    assert b.connected_peers()[0].incoming
    await wait_idle(a, b)


@pytest.mark.anyio
async def test_local_calls_run_in_process() -> None:
    a = NetApp(NodeKey.generate(), bytes(32))  # not even running: no network involved
    a.endpoint(ECHO, echo)

    async def fail(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        raise ValueError("boom")

    a.endpoint(BLOCK, fail)
    assert await a.call(a.id, ECHO, Echo("me")) == Echo(f"me from {a.id.short_hex()}")
    with pytest.raises(RemoteError, match="ValueError: boom") as info:
        await a.call(a.id, BLOCK, Echo("x"))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(NoSuchEndpoint) as missing:
        await a.call(a.id, MISSING, Echo("x"))
    assert missing.value.path == "test/Missing"


@pytest.mark.anyio
async def test_local_calls_carry_streams() -> None:
    a = NetApp(NodeKey.generate(), bytes(32))

    async def upper(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        assert stream is not None

        async def out() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk.upper()

        return msg, out()

    a.endpoint(ECHO, upper)
    data = b"abc" * 10_000
    resp, stream = await a.call_streaming(a.id, ECHO, Echo("s"), stream=pieces(data, 999))
    assert resp == Echo("s")
    assert stream is not None
    assert await read_all(stream) == data.upper()


@pytest.mark.anyio
async def test_call_without_connection_is_not_connected(node_pair: tuple[NetApp, NetApp]) -> None:
    a, _ = node_pair
    stranger = NodeKey.generate().node_id
    with pytest.raises(NotConnected, match=stranger.short_hex()):
        await a.call(stranger, ECHO, Echo("x"))


@pytest.mark.anyio
async def test_unknown_endpoint_names_the_path(node_pair: tuple[NetApp, NetApp]) -> None:
    a, b = node_pair
    with pytest.raises(NoSuchEndpoint, match="test/Missing") as info:
        await a.call(b.id, MISSING, Echo("x"), stream=b"ignored attached bytes")
    assert info.value.path == "test/Missing"
    assert info.value.node == b.id.short_hex()
    b.endpoint(ECHO, echo)
    assert await a.call(b.id, ECHO, Echo("still fine")) == Echo(
        f"still fine from {a.id.short_hex()}"
    )
    await wait_idle(a, b)


@pytest.mark.anyio
async def test_handler_exception_is_a_remote_error(node_pair: tuple[NetApp, NetApp]) -> None:
    a, b = node_pair

    async def fail(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        raise KeyError(msg.text)

    b.endpoint(ECHO, fail)
    with pytest.raises(RemoteError) as info:
        await a.call(b.id, ECHO, Echo("nope"))
    assert info.value.message == "KeyError: 'nope'"
    await wait_idle(a, b)


@pytest.mark.anyio
async def test_request_that_does_not_decode_is_a_remote_error(
    node_pair: tuple[NetApp, NetApp],
) -> None:
    a, b = node_pair
    b.endpoint(HASH, _hash_handler)
    lying = Endpoint(HASH.path, Echo, Digest)  # same path, wrong request type
    with pytest.raises(RemoteError, match="DecodeError"):
        await a.call(b.id, lying, Echo("not a Count"))


# ------------------------------------------------------------------------------ streams


async def _hash_handler(
    msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Digest, AttachedStream | None]:
    assert stream is not None
    digest, size = await hash_stream(stream)
    return Digest(digest, size), None


async def _produce_handler(
    msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Count, AttachedStream | None]:
    return Count(msg.n), pieces(pattern(msg.n, seed=msg.n), 7777)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [0, 1, 16367, 16368, 16369, 300_001])
async def test_streams_arrive_intact_both_ways(node_pair: tuple[NetApp, NetApp], size: int) -> None:
    a, b = node_pair
    b.endpoint(HASH, _hash_handler)
    b.endpoint(PRODUCE, _produce_handler)
    data = pattern(size)
    with anyio.fail_after(DEADLINE_S):
        digest = await a.call(b.id, HASH, Count(0), stream=pieces(data, 5000))
        assert digest == Digest(hashlib.blake2b(data).digest()[:32], size)
        digest = await a.call(b.id, HASH, Count(0), stream=data)  # bytes, not an iterable
        assert digest.size == size
        resp, stream = await a.call_streaming(b.id, PRODUCE, Count(size))
        assert resp == Count(size)
        assert stream is not None
        async with stream:
            assert await read_all(stream) == pattern(size, seed=size)
            await wait_idle(a, b)


@pytest.mark.anyio
async def test_handler_can_stream_its_input_back(node_pair: tuple[NetApp, NetApp]) -> None:
    """Both attached streams flow at once: the response head arrives before the request's
    stream is sent, which keeps flowing while the caller reads the response stream."""
    a, b = node_pair

    async def mirror(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        return msg, stream

    b.endpoint(ECHO, mirror)
    data = pattern(3 * MIB, seed=11)
    with anyio.fail_after(DEADLINE_S):
        resp, stream = await a.call_streaming(b.id, ECHO, Echo("m"), stream=pieces(data, 50_000))
        assert resp == Echo("m")
        assert stream is not None
        assert await read_all(stream) == data
    await wait_idle(a, b)


@pytest.mark.anyio
async def test_messages_larger_than_the_window(node_pair: tuple[NetApp, NetApp]) -> None:
    """Messages (not streams) of several MiB flow: the receiver returns credit as it parses."""
    a, b = node_pair

    async def twice(
        msg: Blob, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Blob, AttachedStream | None]:
        return Blob(msg.data * 2), None

    big = Endpoint("test/Twice", Blob, Blob)
    b.endpoint(big, twice)
    data = pattern(3 * MIB)
    with anyio.fail_after(DEADLINE_S):
        assert await a.call(b.id, big, Blob(data)) == Blob(data * 2)


@pytest.mark.anyio
async def test_big_stream_does_not_delay_small_calls(
    transport: str, pair_runner: PairRunner
) -> None:
    """A 64 MiB background stream (8 MiB in memory) arrives intact while PRIO_HIGH calls
    keep completing: several of them finish between the stream's first and last bytes."""
    total = 64 * MIB if transport == "tcp" else 8 * MIB
    progress = {"pings": 0, "at_first_byte": -1, "at_last_byte": -1}

    async def ping(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        progress["pings"] += 1
        return msg, None

    async def sink(
        msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Digest, AttachedStream | None]:
        assert stream is not None
        h = hashlib.blake2b()
        size = 0
        async for chunk in stream:
            if size == 0:
                progress["at_first_byte"] = progress["pings"]
            h.update(chunk)
            size += len(chunk)
        progress["at_last_byte"] = progress["pings"]
        return Digest(h.digest()[:32], size), None

    block = pattern(MIB, seed=7)
    expected = hashlib.blake2b()
    for _ in range(total // MIB):
        expected.update(block)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(total // MIB):
            yield block

    async with pair_runner(transport) as (a, b):
        b.endpoint(ECHO, ping)
        b.endpoint(HASH, sink)
        done = anyio.Event()
        result: list[Digest] = []

        async def big() -> None:
            prio = PRIO_BACKGROUND | PRIO_SECONDARY
            result.append(await a.call(b.id, HASH, Count(0), prio=prio, stream=source()))
            done.set()

        async def pinger() -> None:
            while not done.is_set():
                await a.call(b.id, ECHO, Echo("ping"), prio=PRIO_HIGH)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(big)
                tg.start_soon(pinger)
    assert result == [Digest(expected.digest()[:32], total)]
    assert progress["at_last_byte"] - progress["at_first_byte"] >= 10, progress


@pytest.mark.anyio
async def test_slow_reader_applies_back_pressure(node_pair: tuple[NetApp, NetApp]) -> None:
    """An unread response stream stops its producer after about one window, while the
    connection keeps serving other calls; reading it then gets everything."""
    a, b = node_pair
    produced = [0]
    total = 32 * MIB

    async def producer(
        msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Count, AttachedStream | None]:
        async def gen() -> AsyncIterator[bytes]:
            block = pattern(64 * 1024, seed=3)
            while produced[0] < total:
                produced[0] += len(block)
                yield block

        return Count(total), gen()

    b.endpoint(PRODUCE, producer)
    b.endpoint(ECHO, echo)
    with anyio.fail_after(DEADLINE_S):
        _, stream = await a.call_streaming(b.id, PRODUCE, Count(0))
        assert stream is not None
        for i in range(20):  # the connection stays usable, and the producer gets time to run
            await a.call(b.id, ECHO, Echo(str(i)))
        assert produced[0] <= 2 * MIB, produced
        _, size = await hash_stream(stream)
    assert size == total
    await wait_idle(a, b)


@pytest.mark.anyio
async def test_handler_that_ignores_its_stream(node_pair: tuple[NetApp, NetApp]) -> None:
    a, b = node_pair
    b.endpoint(ECHO, echo)  # never reads the attached stream
    with anyio.fail_after(DEADLINE_S):
        for _ in range(3):
            resp = await a.call(b.id, ECHO, Echo("x"), stream=pieces(pattern(5 * MIB), 65536))
            assert resp == Echo(f"x from {a.id.short_hex()}")
        assert await a.call(b.id, ECHO, Echo("y")) == Echo(f"y from {a.id.short_hex()}")
        await wait_idle(a, b)


@pytest.mark.anyio
async def test_failing_sources(node_pair: tuple[NetApp, NetApp]) -> None:
    """A caller's failing source fails its call; a handler's failing response source is a
    RemoteError for the reader; the connection survives both."""
    a, b = node_pair
    b.endpoint(HASH, _hash_handler)
    b.endpoint(ECHO, echo)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        await a.call(b.id, HASH, Count(0), stream=broken())

    async def broken_response(
        msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Count, AttachedStream | None]:
        return Count(1), broken()

    b.endpoint(PRODUCE, broken_response)
    _, stream = await a.call_streaming(b.id, PRODUCE, Count(0))
    assert stream is not None
    with pytest.raises(RemoteError, match="disk on fire"):
        await read_all(stream)
    assert await a.call(b.id, ECHO, Echo("ok")) == Echo(f"ok from {a.id.short_hex()}")
    await wait_idle(a, b)


# ------------------------------------------------------------------------------ cancellation


@pytest.mark.anyio
async def test_cancelling_a_call_cancels_the_remote_handler(
    node_pair: tuple[NetApp, NetApp],
) -> None:
    a, b = node_pair
    started, cancelled = anyio.Event(), anyio.Event()

    async def forever(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    b.endpoint(BLOCK, forever)
    b.endpoint(ECHO, echo)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.call, b.id, BLOCK, Echo("wait"))
            await started.wait()
            tg.cancel_scope.cancel()
        await cancelled.wait()
        assert await a.call(b.id, ECHO, Echo("after")) == Echo(f"after from {a.id.short_hex()}")
        await wait_idle(a, b)


@pytest.mark.anyio
async def test_closing_a_response_stream_stops_the_producer(
    node_pair: tuple[NetApp, NetApp],
) -> None:
    a, b = node_pair
    closed = anyio.Event()

    async def endless(
        msg: Count, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Count, AttachedStream | None]:
        async def gen() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"z" * 10_000
            finally:
                closed.set()

        return Count(0), gen()

    b.endpoint(PRODUCE, endless)
    with anyio.fail_after(DEADLINE_S):
        _, stream = await a.call_streaming(b.id, PRODUCE, Count(0))
        assert stream is not None
        assert len(await stream.receive()) > 0
        await stream.aclose()
        await closed.wait()
        await wait_idle(a, b)


# ------------------------------------------------------------------------------ disconnects


@pytest.mark.anyio
async def test_peer_disconnect_fails_pending_calls(node_pair: tuple[NetApp, NetApp]) -> None:
    a, b = node_pair
    started = anyio.Event()
    lost: list[ConnectionInfo] = []
    a.on_disconnected(lost.append)

    async def forever(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    b.endpoint(BLOCK, forever)
    errors: list[BaseException] = []

    async def pending() -> None:
        try:
            await a.call(b.id, BLOCK, Echo("x"))
        except PeerDisconnected as exc:
            errors.append(exc)

    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(pending)
            await started.wait()
            b.disconnect(a.id)
    assert len(errors) == 3
    assert all(b.id.short_hex() in str(e) for e in errors)
    assert [info.node_id for info in lost] == [b.id]
    assert not a.is_connected(b.id)
    with pytest.raises(NotConnected):
        await a.call(b.id, BLOCK, Echo("x"))


@pytest.mark.anyio
async def test_cut_transport_fails_pending_calls_and_streams(
    memory_pipe: Callable[[], tuple[ByteStream, ByteStream]], network_key: bytes
) -> None:
    a, b = NetApp(NodeKey.generate(), network_key), NetApp(NodeKey.generate(), network_key)
    started = anyio.Event()

    async def forever(msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None) -> Reply:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    b.endpoint(BLOCK, forever)
    b.endpoint(PRODUCE, _produce_handler)
    end_a, end_b = memory_pipe()
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            tg.start_soon(b.accept_stream, end_b)
            await a.connect_stream(b.id, end_a)
            _, stream = await a.call_streaming(b.id, PRODUCE, Count(10 * MIB))
            assert stream is not None
            await stream.receive()
            errors: list[BaseException] = []

            async def pending() -> None:
                try:
                    await a.call(b.id, BLOCK, Echo("x"))
                except PeerDisconnected as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as calls:
                calls.start_soon(pending)
                await started.wait()
                await end_b.aclose()  # no goodbye: the wire is cut
            assert len(errors) == 1
            with pytest.raises(PeerDisconnected):
                await read_all(stream)
            tg.cancel_scope.cancel()


# ------------------------------------------------------------------------------ sizes


@pytest.mark.anyio
async def test_oversized_messages_are_refused(transport: str, pair_runner: PairRunner) -> None:
    limits = iter([1 * MIB, 64 * 1024])  # a sends up to 1 MiB, b accepts 64 KiB

    def make(key: NodeKey) -> NetApp:
        return NetApp(key, bytes(range(32)), max_message_size=next(limits))

    async def blob(
        msg: Blob, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[Count, AttachedStream | None]:
        return Count(len(msg.data)), None

    async with pair_runner(transport, make) as (a, b):
        b.endpoint(BLOB, blob)
        a.endpoint(BLOB, blob)
        with pytest.raises(MessageTooLarge, match="limit"):  # refused by the sender
            await a.call(b.id, BLOB, Blob(bytes(2 * MIB)))
        # refused by the receiver:
        with pytest.raises(MessageTooLarge, match="limit of 65536") as info:
            await a.call(b.id, BLOB, Blob(bytes(128 * 1024)))
        assert b.id.short_hex() in str(info.value)
        assert await a.call(b.id, BLOB, Blob(bytes(1000))) == Count(1000)
        # b's responses are limited by b's limit too
        with pytest.raises(MessageTooLarge):
            await b.call(a.id, BLOB, Blob(bytes(128 * 1024)))
        await wait_idle(a, b)

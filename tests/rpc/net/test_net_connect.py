"""Connections: handshake outcomes, timeouts, events, addresses, lifecycle.

Over real TCP on 127.0.0.1 (port 0) unless the test needs to cut or alter the wire, on both
backends. Deadlines are safety nets only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import pytest

from garage_rpc.net import (
    ConnectionInfo,
    Endpoint,
    HandshakeError,
    NetApp,
    NodeId,
    NodeKey,
    NotConnected,
    PeerDisconnected,
    RpcTimeout,
    VersionMismatch,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import ByteReceiveStream, ByteStream

    from garage_rpc.net import AttachedStream

#: Safety net for waits; never asserted on.
DEADLINE_S: Final = 30


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


ECHO = Endpoint("test/Echo", Echo, Echo)


async def echo(
    msg: Echo, from_node: NodeId, stream: ByteReceiveStream | None
) -> tuple[Echo, AttachedStream | None]:
    return Echo(f"{msg.text} from {from_node.short_hex()}"), None


async def wait_idle(*nodes: NetApp) -> None:
    """Waits (bounded) until nothing is in flight and no connection is left on ``nodes``."""
    for _ in range(2000):
        stats = [node.statistics() for node in nodes]
        if all(s.calls == s.requests == s.sending == 0 for s in stats):
            return
        await anyio.sleep(0.005)
    raise AssertionError(f"still in flight: {stats}")


# ------------------------------------------------------------------------------ handshake


@pytest.mark.anyio
async def test_wrong_network_key_never_gets_a_session(network_key: bytes) -> None:
    server = NetApp(NodeKey.generate(), network_key)
    intruder = NetApp(NodeKey.generate(), bytes(32))
    good = NetApp(NodeKey.generate(), network_key)
    server.endpoint(ECHO, echo)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr = await tg.start(server.run, ("127.0.0.1", 0))
            assert addr is not None
            await tg.start(intruder.run)
            await tg.start(good.run)
            with pytest.raises(HandshakeError, match="network key"):
                await intruder.connect(server.id, addr)
            assert server.connected_peers() == []
            await good.connect(server.id, addr)
            assert await good.call(server.id, ECHO, Echo("hi")) == Echo(
                f"hi from {good.id.short_hex()}"
            )
            assert [c.node_id for c in server.connected_peers()] == [good.id]
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_dialling_the_wrong_node_id_fails(network_key: bytes) -> None:
    server = NetApp(NodeKey.generate(), network_key)
    client = NetApp(NodeKey.generate(), network_key)
    impostor_id = NodeKey.generate().node_id
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr = await tg.start(server.run, ("127.0.0.1", 0))
            assert addr is not None
            await tg.start(client.run)
            with pytest.raises(HandshakeError, match="not the node we dialled"):
                await client.connect(impostor_id, addr)
            assert server.connected_peers() == []
            assert client.connected_peers() == []
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_version_mismatch_is_refused(network_key: bytes) -> None:
    server = NetApp(NodeKey.generate(), network_key)
    client = NetApp(NodeKey.generate(), network_key, app_version_tag=0x6761726167650011)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr = await tg.start(server.run, ("127.0.0.1", 0))
            assert addr is not None
            await tg.start(client.run)
            with pytest.raises(VersionMismatch, match="6761726167650010"):
                await client.connect(server.id, addr)
            assert client.connected_peers() == []
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_handshake_timeout_against_a_silent_server(network_key: bytes) -> None:
    client = NetApp(NodeKey.generate(), network_key, handshake_timeout_s=0.2)
    accepted: list[ByteStream] = []
    with anyio.fail_after(DEADLINE_S):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as tg,
        ):
            port = listener.extra(anyio.abc.SocketAttribute.local_port)

            async def hold(stream: ByteStream) -> None:
                accepted.append(stream)  # says nothing, closes nothing until the end

            tg.start_soon(listener.serve, hold, tg)
            await tg.start(client.run)
            with pytest.raises(RpcTimeout, match="took more than"):
                await client.connect(NodeKey.generate().node_id, ("127.0.0.1", port))
            tg.cancel_scope.cancel()
        for stream in accepted:
            await stream.aclose()


@pytest.mark.anyio
async def test_silent_client_is_dropped_and_server_stays_healthy(network_key: bytes) -> None:
    server = NetApp(NodeKey.generate(), network_key, handshake_timeout_s=0.2)
    server.endpoint(ECHO, echo)
    good = NetApp(NodeKey.generate(), network_key)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr = await tg.start(server.run, ("127.0.0.1", 0))
            assert addr is not None
            await tg.start(good.run)
            async with await anyio.connect_tcp(*addr) as silent:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await silent.receive()  # the server hangs up on us
            await good.connect(server.id, addr)
            assert await good.call(server.id, ECHO, Echo("x")) == Echo(
                f"x from {good.id.short_hex()}"
            )
            tg.cancel_scope.cancel()


# ------------------------------------------------------------------------------ connections


@pytest.mark.anyio
async def test_connection_events_and_addresses(network_key: bytes) -> None:
    a, b = NetApp(NodeKey.generate(), network_key), NetApp(NodeKey.generate(), network_key)
    events: list[tuple[str, str, ConnectionInfo]] = []
    both_up, both_down = anyio.Event(), anyio.Event()

    def listener(who: str, what: str) -> Callable[[ConnectionInfo], None]:
        def record(info: ConnectionInfo) -> None:
            events.append((who, what, info))
            if len(events) == 2:
                both_up.set()
            if len(events) == 4:
                both_down.set()

        return record

    a.on_connected(listener("a", "up"))
    a.on_disconnected(listener("a", "down"))
    b.on_connected(listener("b", "up"))
    b.on_disconnected(listener("b", "down"))
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr_a = await tg.start(a.run, ("127.0.0.1", 0))
            addr_b = await tg.start(b.run, ("127.0.0.1", 0))
            assert addr_a is not None
            assert addr_b is not None
            await a.connect(b.id, addr_b)
            await a.connect(b.id, addr_b)  # already connected: nothing happens
            await both_up.wait()
            assert ("a", "up", ConnectionInfo(b.id, False, addr_b, addr_b)) in events
            (b_up,) = [info for who, _, info in events if who == "b"]
            assert b_up.node_id == a.id
            assert b_up.incoming
            assert b_up.listen_addr == addr_a  # announced by a's hello
            a.disconnect(b.id)
            await both_down.wait()
            assert sorted((who, what) for who, what, _ in events) == [
                ("a", "down"),
                ("a", "up"),
                ("b", "down"),
                ("b", "up"),
            ]
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_simultaneous_dials_keep_both_nodes_connected(network_key: bytes) -> None:
    a, b = NetApp(NodeKey.generate(), network_key), NetApp(NodeKey.generate(), network_key)
    a.endpoint(ECHO, echo)
    b.endpoint(ECHO, echo)
    ups: list[NodeId] = []
    a.on_connected(lambda info: ups.append(info.node_id))
    b.on_connected(lambda info: ups.append(info.node_id))
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            addr_a = await tg.start(a.run, ("127.0.0.1", 0))
            addr_b = await tg.start(b.run, ("127.0.0.1", 0))
            assert addr_a is not None
            assert addr_b is not None
            async with anyio.create_task_group() as dials:
                dials.start_soon(a.connect, b.id, addr_b)
                dials.start_soon(b.connect, a.id, addr_a)
                dials.start_soon(a.connect, b.id, addr_b)
            for _ in range(10):
                assert await a.call(b.id, ECHO, Echo("1")) == Echo(f"1 from {a.id.short_hex()}")
                assert await b.call(a.id, ECHO, Echo("2")) == Echo(f"2 from {b.id.short_hex()}")
            assert sorted(ups) == sorted([a.id, b.id])  # one event per peer, not per socket
            assert len(a.connected_peers()) == len(b.connected_peers()) == 1
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_bind_outgoing_uses_the_listening_ip(network_key: bytes) -> None:
    a = NetApp(NodeKey.generate(), network_key, bind_outgoing=True)
    b = NetApp(NodeKey.generate(), network_key)
    b.endpoint(ECHO, echo)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(a.run, ("127.0.0.2", 0))
                addr_b = await tg.start(b.run, ("127.0.0.3", 0))
            except OSError as exc:  # pragma: no cover - loopback aliases not routed here
                pytest.skip(f"127.0.0.N not available: {exc}")
            assert addr_b is not None
            await a.connect(b.id, addr_b)
            await a.call(b.id, ECHO, Echo("once b has served a call, it registered a"))
            (info,) = b.connected_peers()
            assert info.remote_addr is not None
            assert info.remote_addr[0] == "127.0.0.2"
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_tampered_wire_drops_the_connection(
    memory_pipe: Callable[[], tuple[ByteStream, ByteStream]], network_key: bytes
) -> None:
    """A byte flipped on the wire after the handshake fails authentication: the receiver
    drops the connection and the pending call fails with PeerDisconnected."""
    a, b = NetApp(NodeKey.generate(), network_key), NetApp(NodeKey.generate(), network_key)
    b.endpoint(ECHO, echo)
    a_end, relay_a = memory_pipe()
    relay_b, b_end = memory_pipe()
    tamper = [False]

    async def relay(src: ByteStream, dst: ByteStream, flip: bool) -> None:
        try:
            async for data in src:
                if flip and tamper[0]:
                    data = bytes([data[0] ^ 1]) + data[1:]
                    tamper[0] = False
                await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await dst.aclose()

    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.run)
            tg.start_soon(relay, relay_a, relay_b, True)
            tg.start_soon(relay, relay_b, relay_a, False)
            tg.start_soon(b.accept_stream, b_end)
            await a.connect_stream(b.id, a_end)
            assert await a.call(b.id, ECHO, Echo("clean")) == Echo(f"clean from {a.id.short_hex()}")
            tamper[0] = True
            with pytest.raises(PeerDisconnected):
                await a.call(b.id, ECHO, Echo("tampered"))
            await wait_idle(a, b)
            assert b.statistics().connections == 0  # b dropped it
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_connecting_where_nobody_listens(network_key: bytes) -> None:
    a = NetApp(NodeKey.generate(), network_key)
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
            # the port is closed now
            with pytest.raises(NotConnected, match=f"127.0.0.1:{port}"):
                await a.connect(NodeKey.generate().node_id, ("127.0.0.1", port))
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_lifecycle_errors(network_key: bytes) -> None:
    a = NetApp(NodeKey.generate(), network_key)
    with pytest.raises(RuntimeError, match="not running"):
        await a.connect(NodeKey.generate().node_id, ("127.0.0.1", 1))
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)
        with pytest.raises(RuntimeError, match="already running"):
            await a.run()
        await a.connect(a.id, ("127.0.0.1", 1))  # ourselves: nothing to do
        assert a.is_connected(a.id)
        assert a.connected_peers() == []
        tg.cancel_scope.cancel()
    with pytest.raises(ValueError, match="32 bytes"):
        NetApp(NodeKey.generate(), b"short")
    a.endpoint(ECHO, echo)
    with pytest.raises(ValueError, match="already has a handler"):
        a.endpoint(ECHO, echo)
    with pytest.raises(ValueError, match="255"):
        Endpoint("x" * 256, Echo, Echo)

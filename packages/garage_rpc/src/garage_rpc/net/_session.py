"""The secure channel: handshake, box stream and version exchange over a byte stream.

This is the thin driver of :mod:`._shs` and :mod:`._boxstream`. Opening a channel:

1. the secret handshake (client or server role), on the raw stream;
2. each side sends its *preamble* over the box stream: ``net version tag u64 BE ‖ app
   version tag u64 BE ‖ u16 BE length ‖ msgpack Hello``; each side reads the other's and
   drops the connection if the tags differ (:class:`VersionMismatch`). Garage sends only
   the server's tag (src/net/client.rs); sending both lets either side name the problem,
   and ``Hello`` carries where the node listens, as Garage's Hello RPC does
   (src/net/netapp.rs), without a round trip.

After that, :class:`SecureChannel` sends and receives plaintext; a packet that fails
authentication raises :class:`ProtocolError`. Runtime and socket errors are translated
here, at the boundary.

Our version tag differs from Rust Garage's in the net part (``0x…8010`` instead of
``0x…0010``): the chunk protocol has extensions (flow control, head flags), so a Rust node
must not believe it can talk to us.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError

from ._boxstream import BoxDecoder, BoxEncoder
from ._errors import HandshakeError, PeerDisconnected, VersionMismatch, map_transport_errors
from ._shs import ShsClient, ShsServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import ByteStream

    from ._keys import NodeId, NodeKey
    from ._shs import HandshakeOutcome

__all__ = [
    "GARAGE_VERSION_TAG",
    "NET_VERSION_TAG",
    "Hello",
    "SecureChannel",
    "open_secure_channel",
]

logger = logging.getLogger(__name__)

#: "grgnet" + version. Garage 1.x uses 0x…0010; the high bit marks this port's chunk
#: protocol (flow control, head flags), which Rust nodes do not speak.
NET_VERSION_TAG: Final = 0x6772676E65748010
#: "garage" 1.0, as in Garage: nodes of incompatible releases refuse each other.
GARAGE_VERSION_TAG: Final = 0x6761726167650010

#: Read size on the socket: large reads amortise the per-call overhead of the event loop.
RECV_SIZE: Final = 256 * 1024
#: Largest Hello accepted (it is a host name and a port).
_MAX_HELLO: Final = 1024
_PREAMBLE: Final = struct.Struct(">QQH")
_CLOSE_ERRORS: Final = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Hello:
    """What a node tells each peer right after the handshake: where it accepts connections.

    Attributes:
        listen_host: the public host to dial back, or None to use the connection's source
            address.
        listen_port: the port to dial back, or None when the node does not listen (CLI).
    """

    listen_host: str | None = None
    listen_port: int | None = None


@final
class SecureChannel:
    """An established session: authenticated peer, encrypted both ways.

    One task may :meth:`send` and one other task may :meth:`receive` at the same time.
    """

    def __init__(
        self,
        stream: ByteStream,
        outcome: HandshakeOutcome,
        box_in: BoxDecoder,
        box_out: BoxEncoder,
        *,
        peer_hello: Hello,
        initial_plaintext: bytes,
    ) -> None:
        self._stream = stream
        self._box_in = box_in
        self._box_out = box_out
        self._initial = initial_plaintext
        self._closed = False
        self._partial_send = False
        #: The peer's verified id.
        self.peer_id: NodeId = outcome.peer_id
        #: What the peer said in its preamble.
        self.peer_hello = peer_hello
        self._what = f"connection with {outcome.peer_id.short_hex()}"

    def take_initial_plaintext(self) -> bytes:
        """Plaintext that arrived with the preamble (the first chunks); returned once."""
        data, self._initial = self._initial, b""
        return data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypts and sends ``data``.

        Raises:
            PeerDisconnected: when the connection is broken.
        """
        packets = self._box_out.encrypt(data)
        self._partial_send = True
        with map_transport_errors(self._what):
            # A fresh buffer that nothing mutates afterwards: anyio's streams take any
            # bytes-like object, and copying it to bytes would cost a pass over the data.
            await self._stream.send(packets)  # type: ignore[arg-type]
        self._partial_send = False

    async def receive(self) -> bytes:
        """The next decrypted bytes; ``b""`` once the peer said goodbye.

        Raises:
            PeerDisconnected: when the connection ends without a goodbye, or breaks.
            ProtocolError: when a packet fails authentication.
        """
        out = bytearray()
        await self.receive_into(out)
        return bytes(out)

    async def receive_into(self, out: bytearray) -> int:
        """Appends the next decrypted bytes to ``out`` (everything that one socket read
        completed); returns how many, 0 once the peer said goodbye.

        Raises:
            PeerDisconnected: when the connection ends without a goodbye, or breaks.
            ProtocolError: when a packet fails authentication.
        """
        box = self._box_in
        while True:
            size = box.read_into(out)
            if size:
                return size
            if box.closed:
                return 0
            with map_transport_errors(self._what):
                raw = await self._stream.receive(RECV_SIZE)
            box.receive_data(raw)

    async def aclose(self, *, goodbye: bool = True) -> None:
        """Sends the goodbye packet (best effort, if asked) and closes the stream."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            # After a send interrupted mid-packet (cancelled while closing), the peer's
            # decoder is mid-packet too: a goodbye appended now would read as tampered data.
            if goodbye and not self._partial_send:
                with anyio.move_on_after(1), contextlib.suppress(*_CLOSE_ERRORS):
                    # a peer that does not read within a second gets no goodbye
                    await self._stream.send(self._box_out.goodbye())
            await close_quietly(self._stream)


def _version_tag(app_version_tag: int) -> tuple[int, int]:
    return NET_VERSION_TAG, app_version_tag


async def open_secure_channel(
    stream: ByteStream,
    *,
    network_key: bytes,
    node_key: NodeKey,
    server_id: NodeId | None,
    hello: Hello,
    app_version_tag: int = GARAGE_VERSION_TAG,
    refuse: Callable[[NodeId], bool] | None = None,
) -> SecureChannel:
    """Runs the handshake and the version exchange on ``stream``.

    The caller applies the deadline (``anyio.fail_after``). On any failure the stream is
    closed before the exception propagates, without sending anything more.

    Args:
        stream: a fresh connection.
        network_key: the cluster's ``rpc_secret``.
        node_key: our long-term key.
        server_id: the node we dialled (client role), or None (server role).
        hello: what we tell the peer about ourselves.
        app_version_tag: the application half of the version tag.
        refuse: (server role) returns True for a client to turn away once its identity
            is proven, before the session starts.

    Raises:
        HandshakeError: the peer failed the handshake or closed the connection during it.
        VersionMismatch: the peer speaks another protocol version.
    """
    try:
        return await _open(stream, network_key, node_key, server_id, hello, app_version_tag, refuse)
    except BaseException:
        await close_quietly(stream)
        raise


async def close_quietly(stream: ByteStream) -> None:
    """Closes ``stream``, shielded from cancellation, ignoring an already broken socket."""
    with anyio.CancelScope(shield=True), contextlib.suppress(*_CLOSE_ERRORS):
        await stream.aclose()


async def _open(
    stream: ByteStream,
    network_key: bytes,
    node_key: NodeKey,
    server_id: NodeId | None,
    hello: Hello,
    app_version_tag: int,
    refuse: Callable[[NodeId], bool] | None = None,
) -> SecureChannel:
    ephemeral = os.urandom(32)
    if server_id is not None:
        client = ShsClient(network_key, node_key, server_id, ephemeral_secret=ephemeral)
        machine: ShsClient | ShsServer = client
        await _send_raw(stream, client.start(), "handshake")
        who = f"node {server_id.short_hex()}"
    else:
        machine = ShsServer(network_key, node_key, ephemeral_secret=ephemeral)
        who = "the connecting peer"
    while not machine.done:
        raw = await _receive_raw(
            stream,
            f"{who} closed the connection during the handshake (it does not know our network "
            "key, or it is not the node we dialled)",
        )
        out = machine.receive_data(raw)
        if out:
            await _send_raw(stream, out, "handshake")
    outcome = machine.outcome
    if refuse is not None and refuse(outcome.peer_id):
        # Before our preamble: the client's connect fails instead of seeing a session.
        raise HandshakeError(f"refused a connection from blocked node {outcome.peer_id}")
    box_in = BoxDecoder(outcome.decrypt_key, outcome.decrypt_nonce)
    box_out = BoxEncoder(outcome.encrypt_key, outcome.encrypt_nonce)
    box_in.receive_data(machine.trailing_data)
    net_tag, app_tag = _version_tag(app_version_tag)
    body = pack(hello)
    preamble = _PREAMBLE.pack(net_tag, app_tag, len(body)) + body
    await _send_raw(stream, bytes(box_out.encrypt(preamble)), "version exchange")

    plain = bytearray()
    peer = outcome.peer_id.short_hex()
    while True:
        plain += box_in.read()
        if len(plain) >= _PREAMBLE.size:
            their_net, their_app, hello_len = _PREAMBLE.unpack_from(plain)
            if (their_net, their_app) != (net_tag, app_tag):
                raise VersionMismatch(
                    f"node {peer} speaks protocol {their_net:016x}/{their_app:016x}, we speak "
                    f"{net_tag:016x}/{app_tag:016x}: upgrade one of them"
                )
            if hello_len > _MAX_HELLO:
                raise HandshakeError(f"node {peer} sent a {hello_len}-byte hello")
            end = _PREAMBLE.size + hello_len
            if len(plain) >= end:
                break
        if box_in.closed:
            raise HandshakeError(f"node {peer} closed the connection after the handshake")
        box_in.receive_data(
            await _receive_raw(stream, f"node {peer} closed the connection after the handshake")
        )
    try:
        peer_hello: Hello = unpack(Hello, plain[_PREAMBLE.size : end])
    except DecodeError as exc:
        raise HandshakeError(f"node {peer} sent an invalid hello: {exc}") from None
    logger.debug("secure channel with %s established", peer)
    return SecureChannel(
        stream,
        outcome,
        box_in,
        box_out,
        peer_hello=peer_hello,
        initial_plaintext=bytes(plain[end:]),
    )


async def _send_raw(stream: ByteStream, data: bytes, phase: str) -> None:
    try:
        with map_transport_errors(phase):
            await stream.send(data)
    except PeerDisconnected as exc:
        raise HandshakeError(f"connection lost during the {phase}: {exc}") from exc


async def _receive_raw(stream: ByteStream, eof_message: str) -> bytes:
    try:
        return await stream.receive(RECV_SIZE)
    except anyio.EndOfStream:
        raise HandshakeError(eof_message) from None
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        raise HandshakeError(f"{eof_message}: {exc}") from exc

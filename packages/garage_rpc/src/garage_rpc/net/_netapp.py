"""NetApp: a node's endpoints and its connections to other nodes (Garage: src/net/netapp.rs,
endpoint.rs).

:class:`NetApp` owns the node key, the network key, the endpoint registry and every
connection. Its :meth:`NetApp.run` is the service that owns all connection tasks (incoming
and outgoing); :meth:`NetApp.connect` hands a new connection to it.

**Endpoints** are typed (see :mod:`._endpoint`): an :class:`Endpoint` names a path and
the request and response types; a handler is registered once per path. Calls to our own
node id run the handler in-process: no encoding, no network, same errors.

**Errors** a caller may see: :class:`NotConnected` (no connection to that node),
:class:`PeerDisconnected` (lost during the call), :class:`NoSuchEndpoint`,
:class:`RemoteError` (the handler raised: type name and message), :class:`MessageTooLarge`,
:class:`ProtocolError` (the response does not decode). Deadlines are the caller's
``anyio.fail_after``; cancelling a call cancels the remote handler.

**Call statistics** (:meth:`NetApp.call_statistics`): every call this node makes, to a
peer or to itself, is counted by endpoint path and outcome, with the time until its
response arrived: plain integers and floats on the event loop (the node's Prometheus
exporter reads them at scrape time). A call cancelled once its deadline passed is a
*timeout*; one cancelled before (a quorum reached without it) is only *cancelled*.

**One connection per pair, tolerated two.** Both nodes may dial each other at the same
time; both connections are then kept (each carries calls both ways), and calls use the
most recent one. A new connection replaces an older one *in the same direction* (the old
one is closed): a peer that reconnects is assumed to have lost the old connection.
Connection events are per peer, not per connection: ``on_connected`` when the first
connection to a peer is up, ``on_disconnected`` when its last one is gone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar, cast, final

import anyio
from anyio.abc import SocketAttribute

from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError

from ._conn import DEFAULT_MAX_MESSAGE_SIZE, Connection
from ._endpoint import EndpointRegistry, close_attached
from ._errors import (
    HandshakeError,
    NotConnected,
    ProtocolError,
    RemoteError,
    RpcError,
    RpcTimeout,
)
from ._framing import PRIO_NORMAL
from ._keys import NodeId, NodeKey
from ._session import GARAGE_VERSION_TAG, Hello, open_secure_channel
from ._shs import NETWORK_KEY_LEN

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import (
        ByteReceiveStream,
        ByteStream,
        SocketListener,
        SocketStream,
        TaskGroup,
        TaskStatus,
    )

    from ._endpoint import Endpoint, Handler
    from ._session import SecureChannel
    from ._stream import AttachedStream

__all__ = ["ConnectionInfo", "NetApp", "NetAppStatistics", "RpcCallStatistics", "SocketAddr"]

logger = logging.getLogger(__name__)

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")

#: ``(host, port)``; the host is an IP address or a name.
SocketAddr: TypeAlias = tuple[str, int]

#: Default handshake deadline: generous for a loaded node, short enough to give up on a
#: silent one (Garage's rpc ping timeout is 10 s too).
DEFAULT_HANDSHAKE_TIMEOUT_S: Final = 10.0
_ACCEPT_ERROR_BACKOFF_S: Final = 0.1  # out of file descriptors: let some close, as trio does


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A live connection to a peer, as reported to connection listeners.

    Attributes:
        node_id: the peer's (verified) id.
        incoming: True when the peer dialled us.
        remote_addr: the address of the other end of the socket (None over other streams).
        listen_addr: where the peer accepts connections: the address we dialled, or what
            the peer announced (its public address, or its source IP and listening port);
            None for a peer that does not listen (a CLI).
    """

    node_id: NodeId
    incoming: bool
    remote_addr: SocketAddr | None
    listen_addr: SocketAddr | None


@dataclass(frozen=True, slots=True)
class NetAppStatistics:
    """A snapshot of the transport's load (see :meth:`NetApp.statistics`).

    Attributes:
        connections: open connections (a peer may briefly have two).
        calls: our calls to other nodes waiting for, or streaming, their response.
        requests: other nodes' requests being received or handled here.
        sending: outgoing streams with something left to send.
    """

    connections: int
    calls: int
    requests: int
    sending: int


@dataclass(frozen=True, slots=True)
class RpcCallStatistics:
    """The calls this node made to one endpoint path, since start (see
    :meth:`NetApp.call_statistics`).

    Attributes:
        ok: calls answered successfully.
        errors: calls whose handler failed (:class:`RemoteError`: Garage's "garage error").
        net_errors: calls the transport failed (not connected, peer gone, bad answer...).
        timeouts: calls cancelled after their deadline passed.
        cancelled: calls cancelled before their deadline (e.g. a quorum met without them).
        duration_s: total seconds until the response (or the failure) of the calls that
            ended (``ok + errors + net_errors + timeouts`` of them).
    """

    ok: int
    errors: int
    net_errors: int
    timeouts: int
    cancelled: int
    duration_s: float

    @property
    def ended(self) -> int:
        """Calls that ended otherwise than by an early cancellation (those timed)."""
        return self.ok + self.errors + self.net_errors + self.timeouts


@final
class _CallCounter:
    """The live counters behind :class:`RpcCallStatistics` (event loop only)."""

    __slots__ = ("cancelled", "duration_s", "errors", "net_errors", "ok", "timeouts")

    def __init__(self) -> None:
        self.ok = self.errors = self.net_errors = self.timeouts = self.cancelled = 0
        self.duration_s = 0.0

    def snapshot(self) -> RpcCallStatistics:
        return RpcCallStatistics(
            self.ok, self.errors, self.net_errors, self.timeouts, self.cancelled, self.duration_s
        )


@final
class NetApp:
    """A node's RPC transport: endpoints, connections, calls. See the module docstring."""

    def __init__(
        self,
        node_key: NodeKey,
        network_key: bytes,
        *,
        bind_outgoing: bool = False,
        public_addr: SocketAddr | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
        app_version_tag: int = GARAGE_VERSION_TAG,
    ) -> None:
        """
        Args:
            node_key: this node's identity.
            network_key: the cluster's 32-byte ``rpc_secret``.
            bind_outgoing: bind outgoing sockets to the IP :meth:`run` listens on (Garage's
                ``rpc_bind_outgoing``; lets nodes on 127.0.0.N see each other's IPs).
            public_addr: the address announced to peers (``rpc_public_addr``); by default
                peers use our source IP and the port we listen on.
            max_message_size: largest message sent or accepted (attached streams excluded).
            handshake_timeout_s: deadline for connecting, handshaking and version exchange.
            app_version_tag: the application half of the version tag; nodes with different
                tags refuse each other.

        Raises:
            ValueError: when ``network_key`` is not 32 bytes.
        """
        if len(network_key) != NETWORK_KEY_LEN:
            raise ValueError(
                f"network_key (rpc_secret) must be {NETWORK_KEY_LEN} bytes, got {len(network_key)}"
            )
        self._key = node_key
        self._network_key = bytes(network_key)
        self._bind_outgoing = bind_outgoing
        self._public_addr = public_addr
        self._max_message_size = max_message_size
        self._handshake_timeout_s = handshake_timeout_s
        self._app_version_tag = app_version_tag
        self._registry = EndpointRegistry(node_key)
        self._conns: dict[NodeId, list[Connection]] = {}
        self._connecting: dict[NodeId, anyio.Event] = {}
        self._on_connected: list[Callable[[ConnectionInfo], None]] = []
        self._on_disconnected: list[Callable[[ConnectionInfo], None]] = []
        self._blocked: set[NodeId] = set()
        self._tg: TaskGroup | None = None
        self._listen_host: str | None = None
        self._listen_port: int | None = None
        self._calls: dict[str, _CallCounter] = {}

    def __repr__(self) -> str:
        return f"<NetApp {self.id.short_hex()} listening on port {self._listen_port}>"

    @property
    def id(self) -> NodeId:
        """This node's id."""
        return self._key.node_id

    @property
    def node_key(self) -> NodeKey:
        """This node's key."""
        return self._key

    # -------------------------------------------------------------- endpoints

    def endpoint(self, endpoint: Endpoint[ReqT, RespT], handler: Handler[ReqT, RespT]) -> None:
        """Registers the handler of ``endpoint`` on this node (see :data:`Handler`).

        Raises:
            ValueError: when a handler is already registered for the path.
        """
        self._registry.register(endpoint, handler)

    # -------------------------------------------------------------- connection events

    def on_connected(self, callback: Callable[[ConnectionInfo], None]) -> None:
        """Adds a callback run when a peer gets its first connection.

        Callbacks run synchronously inside the transport: they must not block, and an
        exception they raise propagates (to ``connect`` or ``run``).
        """
        self._on_connected.append(callback)

    def on_disconnected(self, callback: Callable[[ConnectionInfo], None]) -> None:
        """Adds a callback run when a peer's last connection is gone (same rules)."""
        self._on_disconnected.append(callback)

    def connected_peers(self) -> list[ConnectionInfo]:
        """The peers we can call now (with the connection calls use), in no special order."""
        conns = (self._connection_to(node_id) for node_id in self._conns)
        return [_info(conn) for conn in conns if conn is not None]

    @property
    def public_addr(self) -> SocketAddr | None:
        """Where peers should connect to us: ``public_addr`` if configured, else the address
        we listen on (None before :meth:`run` binds, or for a node that does not listen)."""
        if self._public_addr is not None:
            return self._public_addr
        if self._listen_host is None or self._listen_port is None:
            return None
        return (self._listen_host, self._listen_port)

    def statistics(self) -> NetAppStatistics:
        """What is in flight, summed over every connection."""
        stats = [conn.statistics() for conns in self._conns.values() for conn in conns]
        return NetAppStatistics(
            connections=len(stats),
            calls=sum(s.calls for s in stats),
            requests=sum(s.requests for s in stats),
            sending=sum(s.sending for s in stats),
        )

    def call_statistics(self) -> dict[str, RpcCallStatistics]:
        """The calls made so far, by endpoint path (a snapshot; never blocks)."""
        return {path: counter.snapshot() for path, counter in self._calls.items()}

    def is_connected(self, node_id: NodeId) -> bool:
        """True when calls to ``node_id`` can be sent now (always for our own id)."""
        return node_id == self.id or self._connection_to(node_id) is not None

    # -------------------------------------------------------------- service

    async def run(
        self,
        bind_addr: SocketAddr | None = None,
        *,
        task_status: TaskStatus[SocketAddr | None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Runs the transport: listens on ``bind_addr`` (if any) and hosts every connection.

        Start it with ``await task_group.start(netapp.run, ("127.0.0.1", 0))``, which returns
        the bound address (port 0 picks a free port). Without ``bind_addr`` the node only
        dials out (a CLI). Cancelling it closes every connection, with a goodbye.

        Raises:
            RuntimeError: when it is already running.
            OSError: when the address cannot be bound.
        """
        if self._tg is not None:
            raise RuntimeError("NetApp.run() is already running")
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                if bind_addr is None:
                    task_status.started(None)
                    await anyio.sleep_forever()
                else:
                    await self._listen(bind_addr, task_status)
            finally:
                self._tg = None
                self._listen_port = None
                for conns in list(self._conns.values()):
                    for conn in conns:
                        conn.close()

    async def _listen(
        self, bind_addr: SocketAddr, task_status: TaskStatus[SocketAddr | None]
    ) -> None:
        host, port = bind_addr
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            subs = cast("list[SocketListener]", listener.listeners)
            bound = _addr(subs[0].extra(SocketAttribute.local_address))
            self._listen_host, self._listen_port = host, bound[1]
            logger.info("node %s listening on %s:%d", self.id, bound[0], bound[1])
            task_status.started(bound)
            async with anyio.create_task_group() as accepting:
                for sub in subs:
                    accepting.start_soon(self._accept_loop, sub)

    def _running(self) -> TaskGroup:
        if self._tg is None:
            raise RuntimeError("NetApp.run() is not running")
        return self._tg

    async def _accept_loop(self, listener: SocketListener) -> None:
        tg = self._running()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: wait for descriptors to be freed
                logger.warning("accept() failed: %s", exc)
                await anyio.sleep(_ACCEPT_ERROR_BACKOFF_S)
                continue
            tg.start_soon(self._serve_incoming, stream)

    async def _serve_incoming(self, stream: SocketStream) -> None:
        try:
            remote = _addr(stream.extra(SocketAttribute.remote_address))
        except OSError:  # already disconnected
            await stream.aclose()
            return
        try:
            await self._incoming(stream, remote)
        except RpcError as exc:
            logger.info("refused a connection from %s:%d: %s", remote[0], remote[1], exc)

    # -------------------------------------------------------------- connecting

    async def connect(self, node_id: NodeId, addr: SocketAddr) -> None:
        """Connects to ``node_id`` at ``addr`` unless already connected.

        Returns once the session is up (and ``on_connected`` ran). Concurrent calls for
        the same node wait for one attempt. Connecting to our own id does nothing.

        Raises:
            NotConnected: the TCP connection failed (refused, unreachable).
            RpcTimeout: connecting and handshaking took more than ``handshake_timeout_s``.
            HandshakeError: the peer is not ``node_id`` or not in our network.
            RuntimeError: :meth:`run` is not running.
        """
        host, port = addr

        async def open_tcp() -> ByteStream:
            local = self._listen_host if self._bind_outgoing else None
            try:
                return await anyio.connect_tcp(host, port, local_host=local)
            except OSError as exc:
                raise NotConnected(
                    f"cannot connect to node {node_id.short_hex()} at {host}:{port}: {exc}"
                ) from exc

        await self._connect(NodeId(node_id), open_tcp, (host, port))

    async def connect_stream(
        self, node_id: NodeId, stream: ByteStream, *, remote_addr: SocketAddr | None = None
    ) -> None:
        """Like :meth:`connect`, over an already open byte stream (tests, other transports).

        The stream is closed if the connection fails.
        """
        if self.is_connected(node_id):
            await stream.aclose()
            return

        async def given() -> ByteStream:
            return stream

        await self._connect(NodeId(node_id), given, remote_addr)

    async def accept_stream(
        self, stream: ByteStream, *, remote_addr: SocketAddr | None = None
    ) -> NodeId:
        """Serves the accepting side of a connection over an open byte stream.

        Returns once the session is up, with the peer's id; the connection then lives in
        :meth:`run`'s task group.

        Raises:
            HandshakeError, RpcTimeout: as for :meth:`connect`.
        """
        result: NodeId = await self._running().start(self._incoming, stream, remote_addr)
        return result

    async def _connect(
        self,
        node_id: NodeId,
        opener: Callable[[], Awaitable[ByteStream]],
        addr: SocketAddr | None,
    ) -> None:
        if node_id == self.id:
            return
        if node_id in self._blocked:
            raise NotConnected(f"node {node_id.short_hex()} is blocked on this node")
        tg = self._running()
        while not self._conns.get(node_id):
            pending = self._connecting.get(node_id)
            if pending is None:
                break
            await pending.wait()  # another task is connecting: use its outcome
        else:
            return
        done = self._connecting[node_id] = anyio.Event()
        try:
            await tg.start(self._outgoing, node_id, opener, addr)
        finally:
            del self._connecting[node_id]
            done.set()

    async def _outgoing(
        self,
        node_id: NodeId,
        opener: Callable[[], Awaitable[ByteStream]],
        addr: SocketAddr | None,
        *,
        task_status: TaskStatus[NodeId],
    ) -> None:
        who = f"node {node_id.short_hex()}" + (f" at {addr[0]}:{addr[1]}" if addr else "")
        try:
            with anyio.fail_after(self._handshake_timeout_s):
                stream = await opener()
                channel = await self._open_channel(stream, node_id)
        except TimeoutError:
            raise RpcTimeout(
                f"connecting to {who} took more than {self._handshake_timeout_s} s"
            ) from None
        conn = Connection(
            channel,
            initiator=True,
            dispatch=self._registry.dispatch,
            max_message_size=self._max_message_size,
            remote_addr=addr,
        )
        await self._run_connection(conn, task_status)

    async def _incoming(
        self,
        stream: ByteStream,
        remote_addr: SocketAddr | None,
        *,
        task_status: TaskStatus[NodeId] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        who = f"{remote_addr[0]}:{remote_addr[1]}" if remote_addr else "a peer"
        try:
            with anyio.fail_after(self._handshake_timeout_s):
                channel = await self._open_channel(stream, None)
        except TimeoutError:
            raise RpcTimeout(
                f"handshake with {who} took more than {self._handshake_timeout_s} s"
            ) from None
        if channel.peer_id == self.id:
            await channel.aclose()
            raise HandshakeError("refused a connection from ourselves")
        conn = Connection(
            channel,
            initiator=False,
            dispatch=self._registry.dispatch,
            max_message_size=self._max_message_size,
            remote_addr=remote_addr,
        )
        await self._run_connection(conn, task_status)

    async def _open_channel(self, stream: ByteStream, server_id: NodeId | None) -> SecureChannel:
        if self._public_addr is not None:
            hello = Hello(self._public_addr[0], self._public_addr[1])
        else:
            hello = Hello(None, self._listen_port)
        return await open_secure_channel(
            stream,
            network_key=self._network_key,
            node_key=self._key,
            server_id=server_id,
            hello=hello,
            app_version_tag=self._app_version_tag,
            refuse=self._blocked.__contains__,
        )

    async def _run_connection(self, conn: Connection, task_status: TaskStatus[NodeId]) -> None:
        try:
            self._register(conn)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.abort()
            raise
        try:
            await conn.run(task_status=task_status)
        finally:
            self._unregister(conn)

    def _register(self, conn: Connection) -> None:
        if conn.peer_id in self._blocked:  # blocked while its handshake was in flight
            raise NotConnected(f"node {conn.peer_id.short_hex()} is blocked on this node")
        conns = self._conns.setdefault(conn.peer_id, [])
        first = not conns
        for old in conns:
            if old.initiator == conn.initiator:
                old.close()  # the peer reconnected: the old one is probably dead
        conns.append(conn)
        logger.info("connected to %s (%r)", conn.peer_id, conn)
        if first:
            info = _info(conn)
            for callback in list(self._on_connected):
                callback(info)

    def _unregister(self, conn: Connection) -> None:
        conns = self._conns.get(conn.peer_id)
        if conns is None or conn not in conns:
            return
        conns.remove(conn)
        if not conns:
            del self._conns[conn.peer_id]
            info = _info(conn)
            for callback in list(self._on_disconnected):
                callback(info)

    def block(self, node_id: NodeId) -> None:
        """Refuses every connection with ``node_id`` (and closes the current ones) until
        :meth:`unblock`: to keep a misbehaving node out, or to inject a network partition
        in tests."""
        self._blocked.add(node_id)
        self.disconnect(node_id)

    def unblock(self, node_id: NodeId) -> None:
        """Allows connections with ``node_id`` again."""
        self._blocked.discard(node_id)

    def disconnect(self, node_id: NodeId) -> None:
        """Closes every connection to ``node_id`` (with a goodbye); returns at once.

        Calls pending on them fail with :class:`PeerDisconnected`; ``on_disconnected`` runs
        when the last one has ended.
        """
        for conn in list(self._conns.get(node_id, ())):
            conn.close()

    # -------------------------------------------------------------- calls

    async def call(
        self,
        node_id: NodeId,
        endpoint: Endpoint[ReqT, RespT],
        msg: ReqT,
        *,
        prio: int = PRIO_NORMAL,
        stream: AttachedStream | None = None,
    ) -> RespT:
        """Calls ``endpoint`` on ``node_id`` and returns the response.

        A stream attached to the response is discarded (use :meth:`call_streaming`).

        Args:
            node_id: the target node (our own id runs the handler in-process).
            endpoint: what to call.
            msg: the request.
            prio: a ``PRIO_*`` value (lower is more urgent).
            stream: bytes, or an async iterable of bytes, sent after the request; the
                call takes ownership of an iterable and closes it.

        Raises:
            NotConnected, PeerDisconnected, NoSuchEndpoint, RemoteError, MessageTooLarge,
            ProtocolError: see the module docstring.
        """
        response, attached = await self.call_streaming(
            node_id, endpoint, msg, prio=prio, stream=stream
        )
        if attached is not None:
            await attached.aclose()
        return response

    async def call_streaming(
        self,
        node_id: NodeId,
        endpoint: Endpoint[ReqT, RespT],
        msg: ReqT,
        *,
        prio: int = PRIO_NORMAL,
        stream: AttachedStream | None = None,
    ) -> tuple[RespT, ByteReceiveStream | None]:
        """Like :meth:`call`, also returning the response's attached stream (or None).

        The caller owns the returned stream: read it to the end, or ``aclose()`` it (which
        cancels the rest of the transfer). It is an async context manager.
        """
        counter = self._calls.get(endpoint.path)
        if counter is None:
            counter = self._calls[endpoint.path] = _CallCounter()
        start = anyio.current_time()
        # Read before any cancellation: a cancelled scope reports an effective deadline of
        # -inf (so does an already cancelled one here: its cancellation is no timeout).
        deadline = anyio.current_effective_deadline()
        try:
            result = await self._call_streaming(node_id, endpoint, msg, prio, stream)
        except RemoteError:
            counter.errors += 1
            counter.duration_s += anyio.current_time() - start
            raise
        except Exception:
            counter.net_errors += 1
            counter.duration_s += anyio.current_time() - start
            raise
        except BaseException:
            now = anyio.current_time()
            if now >= deadline > -math.inf:
                counter.timeouts += 1
                counter.duration_s += now - start
            else:
                counter.cancelled += 1
            raise
        counter.ok += 1
        counter.duration_s += anyio.current_time() - start
        return result

    async def _call_streaming(
        self,
        node_id: NodeId,
        endpoint: Endpoint[ReqT, RespT],
        msg: ReqT,
        prio: int,
        stream: AttachedStream | None,
    ) -> tuple[RespT, ByteReceiveStream | None]:
        if node_id == self.id:
            return await self._registry.call_local(endpoint, msg, stream)
        conn = self._connection_to(node_id)
        try:
            if conn is None:
                raise NotConnected(f"not connected to node {node_id.short_hex()}")
            raw = pack(msg)
        except BaseException:
            await close_attached(stream)
            raise
        head, attached = await conn.call(endpoint.path, raw, prio=prio, stream=stream)
        try:
            response: RespT = unpack(endpoint.response_type, head)
        except DecodeError as exc:
            if attached is not None:
                await attached.aclose()
            raise ProtocolError(
                f"node {node_id.short_hex()} answered {endpoint.path!r} with an invalid "
                f"response: {exc}"
            ) from exc
        return response, attached

    def _connection_to(self, node_id: NodeId) -> Connection | None:
        """The newest open connection to ``node_id``."""
        for conn in reversed(self._conns.get(node_id, ())):
            if not conn.is_closed:
                return conn
        return None


def _info(conn: Connection) -> ConnectionInfo:
    hello = conn.peer_hello
    listen: SocketAddr | None = None
    if conn.initiator and conn.remote_addr is not None:
        listen = conn.remote_addr
    elif hello.listen_port is not None:
        host = hello.listen_host or (conn.remote_addr[0] if conn.remote_addr else None)
        if host is not None:
            listen = (host, hello.listen_port)
    return ConnectionInfo(conn.peer_id, not conn.initiator, conn.remote_addr, listen)


def _addr(raw: object) -> SocketAddr:
    """``(host, port)`` from a socket address (IPv6 ones have two more fields)."""
    parts = cast("tuple[str, int]", raw)
    return str(parts[0]), int(parts[1])

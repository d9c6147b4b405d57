"""One connection between two nodes: many concurrent calls, both ways (Garage: src/net/
client.rs, server.rs, send.rs, recv.rs).

A :class:`Connection` runs on an established :class:`SecureChannel`. Its :meth:`run` owns
all the tasks of the connection in one task group: the receive loop, the send loop, one
task per incoming request (the handler, then the pump of its response stream) and one per
attached stream of our calls. Calls made through :meth:`call` wait in the caller's task.

Theory of operation:

- **Ids.** The node that opened the connection numbers its calls with even ids, the other
  with odd ids (see :mod:`._framing`), so a chunk's id tells whether it belongs to one of
  our calls (a response) or to one of the peer's (a request).
- **Sending.** Every stream is queued in the :class:`SendScheduler`; the send loop polls it
  for ≤ :data:`SEND_BATCH` bytes of chunks and writes them with one encrypt and one socket
  write. Streams with an async source are filled by a pump task, which waits while more
  than :data:`SEND_BUFFER` bytes are queued: the sender's memory is bounded too.
- **Receiving.** The receive loop decrypts whatever one socket read brought (up to
  :data:`~._session.RECV_SIZE`) straight into the chunk decoder's buffer, then dispatches
  every complete chunk. It never blocks on a consumer: each incoming stream is an
  :class:`InboundStream` whose buffer is bounded by the flow-control window.
- **Cancellation.** A caller that stops waiting (cancelled, or closing the response stream
  early) drops its request from the scheduler and sends CANCEL; the callee cancels the
  handler task and drops the response. A callee whose handler fails or lacks the endpoint
  sends an error chunk instead of a response. A caller's attached stream is pumped by a
  connection task, so it may keep flowing after the response head (a handler may stream
  its input back); once the response is complete (or has no stream), the rest of it is
  replaced by an ABANDONED error chunk, since the callee no longer reads it.
- **Teardown.** When the peer says goodbye, the socket breaks, a packet fails
  authentication or the peer breaks the protocol, every pending call and open stream fails
  with :class:`PeerDisconnected` (its ``__cause__`` says why), and the handler tasks are
  cancelled. :meth:`close` does the same from our side, with a goodbye.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from ._errors import (
    MessageTooLarge,
    NoSuchEndpoint,
    PeerDisconnected,
    ProtocolError,
    RemoteError,
    RpcError,
    error_text,
)
from ._framing import (
    Cancel,
    ChunkDecoder,
    Data,
    ErrorChunk,
    ErrorKind,
    RequestHead,
    ResponseHead,
    WindowUpdate,
    encode_request_head,
    encode_response_head,
)
from ._scheduler import SendScheduler
from ._stream import InboundStream, aclose_source

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable

    from anyio.abc import ByteReceiveStream, TaskStatus

    from ._keys import NodeId
    from ._session import Hello, SecureChannel
    from ._stream import AttachedStream

    #: Serves an incoming request: (path, message bytes, caller, attached stream) →
    #: (response bytes, attached stream). Raising NoSuchEndpoint or any exception makes
    #: the caller's call fail.
    Dispatch = Callable[
        [str, bytes, NodeId, ByteReceiveStream | None],
        Awaitable[tuple[bytes, AttachedStream | None]],
    ]

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SEND_BATCH",
    "STREAM_WINDOW",
    "Connection",
    "ConnectionStatistics",
]

logger = logging.getLogger(__name__)

#: Largest msgpack message (not counting attached streams), as Garage's practical limit:
#: table batches and layouts fit; blocks travel as streams.
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: Flow-control window per stream: what a receiver may have to buffer for one stream. At
#: 256 KiB, 1 MiB blocks flow in 4+ round trips, and 100 concurrent transfers stay at 25 MiB.
STREAM_WINDOW: Final = 256 * 1024
#: Bytes of chunks written per socket write: large enough to amortise the per-write cost,
#: small enough that an urgent chunk waits at most this much behind others.
SEND_BATCH: Final = 64 * 1024
#: A pump stops reading its source while this much of its stream is queued.
SEND_BUFFER: Final = 64 * 1024
_MAX_ID: Final = 1 << 32


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """What a connection has in flight (see :meth:`Connection.statistics`).

    Attributes:
        calls: our calls waiting for, or streaming, their response.
        requests: the peer's requests being received or handled.
        sending: outgoing streams with something left to send.
    """

    calls: int
    requests: int
    sending: int


@final
class _Call:
    """Bookkeeping of one of our calls while it waits for its response head."""

    __slots__ = ("failure", "inbound", "path", "ready")

    def __init__(self, path: str, inbound: InboundStream) -> None:
        self.path = path
        self.inbound = inbound
        self.ready = anyio.Event()  # head received, or failure set
        self.failure: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        if self.failure is None and self.inbound.head is None:
            self.failure = exc
        self.ready.set()


@final
class Connection:
    """Multiplexed calls over one secure channel. See the module docstring."""

    def __init__(
        self,
        channel: SecureChannel,
        *,
        initiator: bool,
        dispatch: Dispatch,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        window: int = STREAM_WINDOW,
        remote_addr: tuple[str, int] | None = None,
    ) -> None:
        """
        Args:
            channel: the established session.
            initiator: True on the side that opened the connection (it uses even ids).
            dispatch: serves the peer's requests.
            max_message_size: largest message accepted from the peer, or sent to it.
            window: flow-control window per stream (both sides must agree).
            remote_addr: the peer's address, for logs and connection info.
        """
        self._channel = channel
        self.peer_id: NodeId = channel.peer_id
        self.peer_hello: Hello = channel.peer_hello
        self.initiator = initiator
        self.remote_addr = remote_addr
        self._dispatch = dispatch
        self._max_message_size = max_message_size
        self._window = window
        self._sched = SendScheduler(initial_credit=window)
        self._parity = 0 if initiator else 1
        self._next_id = self._parity
        self._calls: dict[int, _Call] = {}
        self._inbound: dict[int, InboundStream] = {}  # the peer's requests being received
        self._handlers: dict[int, anyio.CancelScope] = {}
        self._pumps: dict[int, anyio.CancelScope] = {}  # our calls' attached streams
        self._drain_waiters: dict[int, anyio.Event] = {}
        self._wakeup = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._reason: RpcError | None = None  # why the connection ended, once it did
        self._local_close = False
        self._name = f"connection with {self.peer_id.short_hex()}"

    def __repr__(self) -> str:
        side = "to" if self.initiator else "from"
        return f"<Connection {side} {self.peer_id.short_hex()} at {self.remote_addr}>"

    @property
    def is_closed(self) -> bool:
        """True once the connection ended (or :meth:`close` was called)."""
        return self._reason is not None

    def statistics(self) -> ConnectionStatistics:
        """Counts of what is in flight on this connection."""
        requests = len(self._handlers) + sum(
            1 for sid in self._inbound if sid not in self._handlers
        )
        return ConnectionStatistics(len(self._calls), requests, self._sched.open_streams())

    # -------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: TaskStatus[NodeId] = anyio.TASK_STATUS_IGNORED) -> None:
        """Runs the connection until it ends; returns normally whatever the reason.

        ``task_status.started`` gets the peer's id. Everything pending fails with
        :class:`PeerDisconnected` when it returns.
        """
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._reason is not None:  # closed before it ran
                    tg.cancel_scope.cancel()
                tg.start_soon(self._guard, self._send_loop)
                task_status.started(self.peer_id)
                await self._guard(self._recv_loop)
        finally:
            self._tg = None
            reason = self._end(PeerDisconnected(f"{self._name}: closed"))
            self._fail_all(reason)
            await self._channel.aclose(goodbye=self._local_close)
            level = logging.WARNING if isinstance(reason, ProtocolError) else logging.INFO
            logger.log(level, "%s ended: %s", self._name, _describe(reason))

    async def abort(self) -> None:
        """Closes a connection that will never :meth:`run` (without a goodbye)."""
        self._end(PeerDisconnected(f"{self._name}: aborted"))
        await self._channel.aclose(goodbye=False)

    def close(self) -> None:
        """Ends the connection (with a goodbye); pending calls fail with PeerDisconnected."""
        if self._reason is None:
            self._local_close = True
            self._end(PeerDisconnected(f"{self._name}: closed locally"))
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    def _end(self, reason: RpcError) -> RpcError:
        if self._reason is None:
            self._reason = reason
        return self._reason

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Runs a loop; whatever ends it ends the connection."""
        try:
            await loop()
            self._end(PeerDisconnected(f"{self._name}: the peer said goodbye"))
        except (PeerDisconnected, ProtocolError) as exc:
            self._end(exc)
        finally:
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    def _fail_all(self, reason: RpcError) -> None:
        def lost() -> PeerDisconnected:
            exc = PeerDisconnected(f"{self._name} lost: {_describe(reason)}")
            exc.__cause__ = reason
            return exc

        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.fail(lost())
            call.inbound.feed_error(lost())
        inbound, self._inbound = self._inbound, {}
        for stream in inbound.values():
            stream.feed_error(lost())
        waiters, self._drain_waiters = self._drain_waiters, {}
        for event in waiters.values():
            event.set()

    def _kick(self) -> None:
        self._wakeup.set()

    # -------------------------------------------------------------- calls

    async def call(
        self,
        path: str,
        msg: bytes,
        *,
        prio: int,
        stream: AttachedStream | None = None,
    ) -> tuple[bytes, InboundStream | None]:
        """Calls ``path`` on the peer; returns the response message and attached stream.

        The caller owns the returned stream (read it to the end or close it). An async
        iterable ``stream`` is owned (and closed) by the call.

        Raises:
            PeerDisconnected: the connection is, or gets, lost.
            NoSuchEndpoint: the peer has no handler for ``path``.
            RemoteError: the handler failed.
            MessageTooLarge: ``msg`` or the response exceeds a size limit.
        """
        source = None if isinstance(stream, bytes | bytearray | memoryview | None) else stream
        try:
            if self._reason is not None:
                raise self._lost()
            tg = self._tg
            if tg is None:  # registered with its NetApp, but not running yet
                raise PeerDisconnected(f"{self._name} is not running yet")
            if len(msg) > self._max_message_size:
                raise MessageTooLarge(
                    f"message of {len(msg)} bytes for {path!r} exceeds the limit of "
                    f"{self._max_message_size} bytes (send bulk data as an attached stream)",
                    size=len(msg),
                    limit=self._max_message_size,
                )
            head = encode_request_head(prio, path, len(msg), has_stream=stream is not None)
        except BaseException:
            if source is not None:
                with anyio.CancelScope(shield=True):
                    await aclose_source(source)
            raise
        sid = self._new_id()
        inbound = InboundStream(
            self, sid, request=False, max_message_size=self._max_message_size, window=self._window
        )
        call = _Call(path, inbound)
        self._calls[sid] = call
        sched = self._sched
        sched.open(sid, prio)
        sched.push(sid, head)
        sched.push(sid, msg)
        if source is None:
            if stream is not None:
                sched.push(sid, stream)  # type: ignore[arg-type]  # bytes-like, checked above
            sched.finish(sid)
        else:
            # The pump belongs to the connection, not to this task: the attached stream may
            # keep flowing after the response head arrived (a handler streaming its input
            # back). It stops when the call fails, is abandoned or fully answered.
            scope = self._pumps[sid] = anyio.CancelScope()
            tg.start_soon(self._pump_request, sid, source, call, scope)
        self._kick()
        logger.debug("%s: call %d %s (%d bytes)", self._name, sid, path, len(msg))
        completed = False
        try:
            await call.ready.wait()
            if call.failure is not None:
                raise call.failure
            response = inbound.head
            assert isinstance(response, ResponseHead)
            completed = True
            if not response.has_stream or inbound.finished:
                self._stop_request(sid)
        finally:
            if not completed:
                self._abandon_call(sid)
        if response.has_stream:
            return response.msg, inbound
        return response.msg, None

    def _new_id(self) -> int:
        sid = self._next_id
        while sid in self._calls or self._sched.is_open(sid):  # only after 2³¹ calls
            sid = (sid + 2) % _MAX_ID
        self._next_id = (sid + 2) % _MAX_ID
        return sid

    def _lost(self) -> PeerDisconnected:
        reason = self._reason
        exc = PeerDisconnected(f"{self._name} lost: {_describe(reason)}")
        exc.__cause__ = reason
        return exc

    def _abandon_call(self, sid: int) -> None:
        """Our call ``sid`` ends early: forget it and tell the peer (synchronous).

        The CANCEL also ends our request stream on the peer's side when it was cut short.
        """
        call = self._calls.pop(sid, None)
        pump = self._pumps.pop(sid, None)
        if pump is not None:
            pump.cancel()
        request_unsent = self._sched.is_open(sid)
        self._sched.abort(sid)
        if (call is not None or request_unsent) and self._reason is None:
            self._sched.send_cancel(sid)
            self._kick()

    def _stop_request(self, sid: int) -> None:
        """The peer is done with our call ``sid``: stop sending its attached stream."""
        pump = self._pumps.pop(sid, None)
        if pump is not None:
            pump.cancel()
        if self._sched.is_open(sid):
            self._sched.fail(sid, ErrorKind.ABANDONED, "the call was answered", discard=True)
            self._kick()

    async def _pump_request(
        self, sid: int, source: AsyncIterable[bytes], call: _Call, scope: anyio.CancelScope
    ) -> None:
        try:
            with scope:
                await self._pump(sid, source)
        except PeerDisconnected as exc:
            call.fail(exc)
        except Exception as exc:  # the caller's own source failed: the call fails with it
            self._sched.fail(sid, ErrorKind.REMOTE, error_text(exc), discard=True)
            self._kick()
            call.fail(exc)
        finally:
            if self._pumps.get(sid) is scope:
                del self._pumps[sid]

    async def _pump(self, sid: int, source: AsyncIterable[bytes]) -> None:
        """Moves ``source`` into stream ``sid``, waiting while too much is queued."""
        sched = self._sched
        try:
            async for data in source:
                if not sched.is_open(sid):
                    return  # cancelled meanwhile
                sched.push(sid, data)
                self._kick()
                while sched.buffered(sid) >= SEND_BUFFER:
                    if self._reason is not None:
                        raise self._lost()
                    event = self._drain_waiters[sid] = anyio.Event()
                    await event.wait()
            sched.finish(sid)
            self._kick()
        finally:
            self._drain_waiters.pop(sid, None)
            with anyio.CancelScope(shield=True):
                await aclose_source(source)

    # -------------------------------------------------------------- InboundStream owner

    def _grant(self, stream_id: int, credit: int) -> None:
        if self._reason is None:
            self._sched.send_window(stream_id, credit)
            self._kick()

    def _abandon(self, stream: InboundStream) -> None:
        if stream.is_request:
            stream.discard()  # the handler will not read it: drop it as it arrives
        else:
            self._abandon_call(stream.id)

    # -------------------------------------------------------------- serving

    async def _serve(self, sid: int, request: InboundStream) -> None:
        head = request.head
        assert isinstance(head, RequestHead)
        sched = self._sched
        body = request if head.has_stream else None
        scope = self._handlers[sid] = anyio.CancelScope()
        try:
            with scope:
                try:
                    msg, stream = await self._dispatch(head.path, head.msg, self.peer_id, body)
                except NoSuchEndpoint as exc:
                    logger.debug("%s: request %d for unknown %s", self._name, sid, head.path)
                    self._respond_error(sid, head.prio, ErrorKind.NO_SUCH_ENDPOINT, str(exc))
                    return
                except MessageTooLarge as exc:
                    self._respond_error(sid, head.prio, ErrorKind.MESSAGE_TOO_LARGE, str(exc))
                    return
                except Exception as exc:
                    self._respond_error(sid, head.prio, ErrorKind.REMOTE, error_text(exc))
                    return
                source = None
                if stream is not None and not isinstance(stream, bytes | bytearray | memoryview):
                    source = stream
                try:
                    if len(msg) > self._max_message_size:
                        self._respond_error(
                            sid,
                            head.prio,
                            ErrorKind.MESSAGE_TOO_LARGE,
                            f"response of {len(msg)} bytes to {head.path!r} exceeds the "
                            f"limit of {self._max_message_size} bytes",
                        )
                        return
                    sched.open(sid, head.prio)
                    sched.push(sid, encode_response_head(len(msg), has_stream=stream is not None))
                    sched.push(sid, msg)
                    if source is None:
                        if stream is not None:
                            sched.push(sid, stream)  # type: ignore[arg-type]  # bytes-like
                        sched.finish(sid)
                        self._kick()
                        return
                except BaseException:
                    if source is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose_source(source)
                    raise
                self._kick()
                try:
                    await self._pump(sid, source)
                except Exception as exc:
                    if not isinstance(exc, PeerDisconnected):
                        logger.debug("%s: response stream %d failed: %r", self._name, sid, exc)
                        sched.fail(sid, ErrorKind.REMOTE, error_text(exc))
                        self._kick()
        finally:
            self._handlers.pop(sid, None)
            if scope.cancel_called:
                sched.abort(sid)
            if body is not None:
                body.close_nowait()

    def _respond_error(self, sid: int, prio: int, kind: ErrorKind, message: str) -> None:
        if self._sched.is_open(sid):
            return
        self._sched.open(sid, prio if prio >= 0 else 0)
        self._sched.fail(sid, kind, message)
        self._kick()

    # -------------------------------------------------------------- loops

    async def _send_loop(self) -> None:
        sched, channel = self._sched, self._channel
        while True:
            buffers, touched = sched.poll(SEND_BATCH)
            if not buffers:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            await channel.send(b"".join(buffers))
            if self._drain_waiters:
                for sid in touched:
                    event = self._drain_waiters.get(sid)
                    if event is not None and sched.buffered(sid) < SEND_BUFFER:
                        del self._drain_waiters[sid]
                        event.set()

    async def _recv_loop(self) -> None:
        channel = self._channel
        decoder = ChunkDecoder()
        decoder.receive_data(channel.take_initial_plaintext())
        while True:
            # Everything one socket read brought, decrypted straight into the decoder. A
            # malformed chunk raises on the second call, after the chunks before it.
            while events := decoder.events():
                for event in events:
                    if isinstance(event, Data):
                        self._on_data(event)
                    elif isinstance(event, WindowUpdate):
                        self._sched.add_credit(event.id, event.credit)
                        self._kick()
                    elif isinstance(event, ErrorChunk):
                        self._on_error(event)
                    else:
                        self._on_cancel(event)
            if not await channel.receive_into(decoder.buffer()):
                return

    def _is_ours(self, sid: int) -> bool:
        return sid & 1 == self._parity

    def _on_data(self, event: Data) -> None:
        sid = event.id
        final = not event.more
        if self._is_ours(sid):
            call = self._calls.get(sid)
            if call is None:
                return  # the response of a call we abandoned
            try:
                if call.inbound.feed(event.payload, final=final):
                    call.ready.set()
            except MessageTooLarge as exc:
                call.fail(exc)
                self._abandon_call(sid)
                return
            if final:
                del self._calls[sid]
                self._stop_request(sid)
            return
        request = self._inbound.get(sid)
        if request is None:
            if sid in self._handlers or self._sched.is_open(sid):
                raise ProtocolError(f"the peer reused request id {sid} while it was in use")
            request = InboundStream(
                self,
                sid,
                request=True,
                max_message_size=self._max_message_size,
                window=self._window,
            )
            self._inbound[sid] = request
        try:
            head_done = request.feed(event.payload, final=final)
        except MessageTooLarge as exc:
            request.discard()
            self._respond_error(sid, request.prio, ErrorKind.MESSAGE_TOO_LARGE, str(exc))
            head_done = False
        if final:
            del self._inbound[sid]
        if head_done:
            assert self._tg is not None
            self._tg.start_soon(self._serve, sid, request)

    def _on_error(self, event: ErrorChunk) -> None:
        sid = event.id
        if self._is_ours(sid):
            call = self._calls.pop(sid, None)
            if call is not None:
                exc = self._remote_failure(event, call.path)
                call.fail(exc)
                call.inbound.feed_error(exc)
                self._stop_request(sid)
            return
        request = self._inbound.pop(sid, None)
        if request is not None:
            request.feed_error(RemoteError(f"the caller's attached stream failed: {event.message}"))

    def _remote_failure(self, event: ErrorChunk, path: str) -> RpcError:
        node = self.peer_id.short_hex()
        if event.kind == ErrorKind.NO_SUCH_ENDPOINT:
            return NoSuchEndpoint(path, node)
        if event.kind == ErrorKind.MESSAGE_TOO_LARGE:
            return MessageTooLarge(f"node {node} refused a message for {path!r}: {event.message}")
        return RemoteError(event.message)

    def _on_cancel(self, event: Cancel) -> None:
        sid = event.id
        if self._is_ours(sid):
            return  # only callers cancel
        scope = self._handlers.get(sid)
        if scope is not None:
            scope.cancel()
        request = self._inbound.pop(sid, None)
        if request is not None:
            request.feed_error(RemoteError("the call was cancelled by the caller"))
        self._sched.abort(sid)


def _describe(reason: BaseException | None) -> str:
    if reason is None:
        return "unknown reason"
    cause = reason.__cause__
    return f"{reason} ({cause!r})" if cause is not None else str(reason)

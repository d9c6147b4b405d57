"""Attached byte streams as seen by their reader: remote (flow-controlled) and local.

A call may carry a byte stream of any length in each direction (block data). The reader
gets an ``anyio.abc.ByteReceiveStream``: ``await stream.receive()`` or ``async for chunk in
stream``; the end is ``anyio.EndOfStream`` (which ``async for`` turns into the loop's end).
Failures are :class:`RemoteError` (the sender's source failed) or
:class:`PeerDisconnected` (the connection went away).

**Ownership.** The reader owns the stream: read it to the end or ``aclose()`` it (it is an
async context manager). Closing a response stream early cancels the call on the remote
node; closing a request stream early (a handler that did not read it) makes the
connection discard the rest as it arrives.

**Flow control** (:class:`InboundStream`). The sender may have at most ``window`` bytes of a
stream in flight: sent but not yet returned as credit. The receiver returns credit (a
WINDOW chunk) once its reader has consumed a quarter of the window, so a reader that stops
reading stops the sender after one window, while the connection keeps carrying every other
stream: a slow consumer never blocks the connection's receive loop, and memory per stream
is bounded by the window. Bytes of a head (path and message) are consumed by the parser as
they arrive, so credit for them flows back at once; the message size limit bounds them. A
peer that sends beyond its credit breaks the protocol and loses the connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, final

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream

from ._errors import ProtocolError, RemoteError, RpcError, error_text
from ._framing import HeadParser, RequestHead, ResponseHead

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["AttachedStream", "InboundStream", "LocalStream", "aclose_source"]

#: What a caller or handler may attach: all bytes at once, or an async iterable of bytes
#: (an async generator, another ``ByteReceiveStream``...). The transport takes ownership of
#: an iterable and closes it (``aclose()``) when done with it.
AttachedStream: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes]

#: ByteReceiveStream's conventional default read size.
_DEFAULT_READ: Final = 65536


class StreamOwner(Protocol):
    """What an :class:`InboundStream` needs from its connection."""

    def _grant(self, stream_id: int, credit: int) -> None: ...

    def _abandon(self, stream: InboundStream) -> None: ...


@final
class InboundStream(ByteReceiveStream):
    """One incoming stream of a connection: its head, then its attached bytes.

    The connection feeds it (:meth:`feed`, :meth:`feed_error`) from its receive loop, which
    never blocks; the reader consumes it through :meth:`receive`.
    """

    def __init__(
        self,
        owner: StreamOwner,
        stream_id: int,
        *,
        request: bool,
        max_message_size: int,
        window: int,
    ) -> None:
        self.id = stream_id
        self.is_request = request
        self.head: RequestHead | ResponseHead | None = None
        self._owner = owner
        self._parser: HeadParser | None = HeadParser(
            request=request, max_message_size=max_message_size
        )
        self._window = window
        self._grant_threshold = max(1, window // 4)
        self._data: deque[bytes] = deque()
        self._buffered = 0
        self._in_flight = 0  # received minus credit returned
        self._pending_grant = 0  # consumed, credit not yet returned
        self._eof = False
        self._error: RpcError | None = None
        self._closed = False
        self._discard = False
        self._waiter: anyio.Event | None = None

    # -------------------------------------------------------------- connection side

    @property
    def finished(self) -> bool:
        """True once the sender ended the stream (last chunk or error): nothing more comes."""
        return self._eof or self._error is not None

    @property
    def prio(self) -> int:
        """The request's priority once its first byte arrived (-1 before)."""
        parser = self._parser
        if parser is not None:
            return parser.prio
        head = self.head
        return head.prio if isinstance(head, RequestHead) else -1

    def feed(self, data: bytes, *, final: bool) -> bool:
        """Takes the payload of a data chunk; returns True when it completed the head.

        Raises:
            ProtocolError: data beyond the window or after the end, a bad head.
            MessageTooLarge: the head announces a message above the limit.
        """
        if self.finished:
            raise ProtocolError(f"stream {self.id}: data after its end")
        self._in_flight += len(data)
        if self._in_flight > self._window:
            raise ProtocolError(f"stream {self.id}: the peer sent beyond its flow-control window")
        head_done = False
        parser = self._parser
        if parser is not None and not self._discard:
            rest = parser.feed(data)
            if rest is None:
                self._pending_grant += len(data)
                if final:
                    raise ProtocolError(f"stream {self.id} ended inside its head")
                self._maybe_grant()
                return False
            self.head = parser.result
            self._parser = None
            head_done = True
            self._pending_grant += len(data) - len(rest)
            data = rest
            if data and not self.head.has_stream:  # type: ignore[union-attr]  # set by feed
                raise ProtocolError(f"stream {self.id}: data after a message without stream")
        if data:
            if self._discard or self._closed:
                self._pending_grant += len(data)
            else:
                self._data.append(data)
                self._buffered += len(data)
        if final:
            self._eof = True
        self._wake()
        self._maybe_grant()
        return head_done

    def feed_error(self, exc: RpcError) -> None:
        """Ends the stream with an error, raised to the reader after the data before it."""
        if not self.finished:
            self._error = exc
            self._wake()

    def discard(self) -> None:
        """Drops buffered and future data, returning its credit: nobody will read it."""
        self._discard = True
        self._data.clear()
        self._buffered = 0
        self._pending_grant = self._in_flight
        self._maybe_grant()

    def close_nowait(self) -> None:
        """Closes the reading side (see the module docstring for what this does remotely)."""
        if self._closed:
            return
        self._closed = True
        self._data.clear()
        self._buffered = 0
        if not self.finished:
            self._owner._abandon(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _maybe_grant(self) -> None:
        if self._pending_grant >= self._grant_threshold and not self.finished:
            credit = self._pending_grant
            self._pending_grant = 0
            self._in_flight -= credit
            self._owner._grant(self.id, credit)

    # -------------------------------------------------------------- reader side

    async def receive(self, max_bytes: int = _DEFAULT_READ) -> bytes:
        """Up to ``max_bytes`` of the stream: as many whole chunks as fit (or part of one
        chunk bigger than ``max_bytes``), so that a reader asking for a lot pays one call,
        and one checkpoint, for several chunks.

        Raises:
            anyio.EndOfStream: at the end of the stream.
            RemoteError: the sender's source failed.
            PeerDisconnected: the connection was lost.
            anyio.ClosedResourceError: after :meth:`aclose`.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        await anyio.lowlevel.checkpoint()
        while not self._data:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._error is not None:
                raise self._error
            if self._eof:
                raise anyio.EndOfStream
            waiter = self._waiter = anyio.Event()
            await waiter.wait()
        chunk = _take(self._data, max_bytes)
        self._buffered -= len(chunk)
        self._pending_grant += len(chunk)
        self._maybe_grant()
        return chunk

    async def aclose(self) -> None:
        """Stops reading; the rest of the stream is cancelled or discarded."""
        self.close_nowait()
        await anyio.lowlevel.checkpoint()


@final
class LocalStream(ByteReceiveStream):
    """An attached stream of a call to the local node: the source itself, no network.

    A failing source raises :class:`RemoteError` to the reader, as it would remotely.
    ``also_close`` is closed with this stream (a local handler's input stream, which its
    output may still read from).
    """

    def __init__(
        self, source: AttachedStream, *, also_close: ByteReceiveStream | None = None
    ) -> None:
        self._source: AsyncIterable[bytes] | None = None
        self._iter: AsyncIterator[bytes] | None = None
        self._start = 0  # _pending[_start:] is what is left of the current piece
        if isinstance(source, bytes | bytearray | memoryview):
            self._pending = bytes(source)
        else:
            self._pending = b""
            self._source = source
            self._iter = aiter(source)
        self._also_close = also_close
        self._closed = False

    async def receive(self, max_bytes: int = _DEFAULT_READ) -> bytes:
        """Up to ``max_bytes`` of the stream (see :meth:`InboundStream.receive`)."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        await anyio.lowlevel.checkpoint()
        while not self._pending:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._iter is None:
                await self._release()
                raise anyio.EndOfStream
            try:
                self._pending = bytes(await anext(self._iter))
            except StopAsyncIteration:
                self._iter = None
            except Exception as exc:
                self._iter = None
                await self._release()
                raise RemoteError(error_text(exc)) from exc
        pending, start = self._pending, self._start
        end = start + max_bytes
        if end >= len(pending):
            self._pending, self._start = b"", 0
            return pending[start:] if start else pending  # a whole piece is not copied
        self._start = end
        return pending[start:end]  # copies what is returned, not the rest of the piece

    async def aclose(self) -> None:
        """Closes the source (and ``also_close``)."""
        self._closed = True
        self._pending, self._start = b"", 0
        self._iter = None
        await self._release()

    async def _release(self) -> None:
        source, self._source = self._source, None
        also, self._also_close = self._also_close, None
        with anyio.CancelScope(shield=True):
            if source is not None:
                await aclose_source(source)
            if also is not None:
                await also.aclose()


def _take(data: deque[bytes], max_bytes: int) -> bytes:
    """Takes up to ``max_bytes`` from the front of ``data`` (not empty).

    Whole pieces are joined while they fit, so that a reader asking for more than a
    chunk's payload gets several chunks per call (each call costs a checkpoint); a piece
    is only cut when the first one alone is too big.
    """
    first = data.popleft()
    size = len(first)
    if size >= max_bytes:
        if size > max_bytes:
            data.appendleft(first[max_bytes:])
            return first[:max_bytes]
        return first
    if not data or size + len(data[0]) > max_bytes:
        return first
    parts = [first]
    while data and size + len(data[0]) <= max_bytes:
        piece = data.popleft()
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


async def aclose_source(source: object) -> None:
    """Closes an attached-stream source if it can be closed (async generators, streams)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()

"""Chunks and message heads, sans I/O (Garage: src/net/send.rs, recv.rs, message.rs).

**Chunks.** Over the box stream, both directions carry interleaved chunks::

    request id   u32 BE
    len+flags    u16 BE   low 14 bits: payload length (≤ MAX_CHUNK_LEN = 0x3FF0)
                          0x8000 MORE: more chunks of this stream follow
                          0x4000 ERROR: payload = u8 error kind ‖ UTF-8 message; ends the stream
                          0xFFFF CANCEL: no payload; the caller abandons the call
                          0xFFFE WINDOW: 4-byte payload, u32 BE flow-control credit
    payload

A stream is the ordered payloads of the chunks of one id in one direction; it ends with a
chunk without MORE (possibly empty) or with an error chunk. Each call uses one id for its
request stream (caller → callee) and its response stream (callee → caller). Both nodes make
calls over the same connection, so the id space is split: the node that opened the
connection uses even ids, the other odd ids. A chunk whose id has the receiver's own parity
therefore belongs to a response; any other to a request.

WINDOW is this port's addition (Garage relies on unbounded buffers): a WINDOW chunk for id
``i`` returns credit to the sender of the stream ``i`` flowing towards the WINDOW's sender.
See :mod:`._conn` for the scheme.

**Heads.** A request stream is ``prio u8 ‖ flags u8 ‖ path_len u8 ‖ path ‖ msg_len u32 BE ‖
msg`` followed by the attached stream, if flag ``HAS_STREAM`` is set. A response stream is
``flags u8 ‖ msg_len u32 BE ‖ msg`` followed likewise by its attached stream; a callee that
cannot produce a response (no such endpoint, handler error, message too large) sends a
single error chunk instead. ``msg`` is the msgpack message; its size is checked against the
receiver's limit as soon as ``msg_len`` is read, so an oversized message is refused without
being buffered.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final, TypeAlias, final

from ._errors import MessageTooLarge, ProtocolError

__all__ = [
    "CANCEL",
    "FLAG_ERROR",
    "FLAG_MORE",
    "LEN_MASK",
    "MAX_CHUNK_LEN",
    "PRIO_BACKGROUND",
    "PRIO_HIGH",
    "PRIO_NORMAL",
    "PRIO_PRIMARY",
    "PRIO_SECONDARY",
    "WINDOW",
    "Cancel",
    "ChunkDecoder",
    "ChunkEvent",
    "Data",
    "ErrorChunk",
    "ErrorKind",
    "HeadParser",
    "RequestHead",
    "ResponseHead",
    "WindowUpdate",
    "encode_cancel",
    "encode_chunk",
    "encode_error",
    "encode_request_head",
    "encode_response_head",
    "encode_window",
]

# Priorities: lower number = more urgent. Garage: src/net/message.rs.
#: Pings and layout changes: liveness must not wait behind data.
PRIO_HIGH: Final = 0x20
#: Interactive metadata requests.
PRIO_NORMAL: Final = 0x40
#: Background sync, GC and resync.
PRIO_BACKGROUND: Final = 0x80
#: Primary within a class (the default).
PRIO_PRIMARY: Final = 0x00
#: Secondary within a class (``PRIO_NORMAL | PRIO_SECONDARY``): block data.
PRIO_SECONDARY: Final = 0x01

#: Largest chunk payload, as in Garage (fits the 14-bit length with room for flags).
MAX_CHUNK_LEN: Final = 0x3FF0
FLAG_MORE: Final = 0x8000
FLAG_ERROR: Final = 0x4000
LEN_MASK: Final = 0x3FFF
CANCEL: Final = 0xFFFF
WINDOW: Final = 0xFFFE
_CONTROL: Final = 0xC000  # MORE and ERROR together: never a data chunk, so free for controls

_CHUNK_HEADER: Final = struct.Struct(">IH")
_WINDOW_CHUNK: Final = struct.Struct(">IHI")
CHUNK_HEADER_LEN: Final = _CHUNK_HEADER.size
_MAX_PATH_LEN: Final = 255  # path_len is a u8
_HAS_STREAM: Final = 0x01


class ErrorKind(enum.IntEnum):
    """The first payload byte of an error chunk: why the stream ended."""

    #: The handler raised, or the attached stream's source failed; message = error text.
    REMOTE = 1
    #: The callee has no handler for the path.
    NO_SUCH_ENDPOINT = 2
    #: The message exceeds the receiver's limit (or the response exceeds the callee's).
    MESSAGE_TOO_LARGE = 3
    #: The caller stopped sending its attached stream (the call completed or failed first).
    ABANDONED = 4


# ------------------------------------------------------------------------------ chunks


@dataclass(frozen=True, slots=True)
class Data:
    """A data chunk: ``payload`` continues stream ``id``; ``more`` unless it is the last."""

    id: int
    payload: bytes
    more: bool


@dataclass(frozen=True, slots=True)
class ErrorChunk:
    """Stream ``id`` ended with an error."""

    id: int
    kind: int
    message: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """The caller abandons call ``id``."""

    id: int


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """The receiver of stream ``id`` consumed ``credit`` more bytes of it."""

    id: int
    credit: int


ChunkEvent: TypeAlias = Data | ErrorChunk | Cancel | WindowUpdate


def encode_chunk(stream_id: int, payload: bytes, *, more: bool) -> bytes:
    """A whole data chunk (tests and small messages; the scheduler builds its own)."""
    if len(payload) > MAX_CHUNK_LEN:
        raise ValueError(f"chunk payload of {len(payload)} bytes > {MAX_CHUNK_LEN}")
    flags = FLAG_MORE if more else 0
    return _CHUNK_HEADER.pack(stream_id, len(payload) | flags) + payload


def chunk_header(stream_id: int, length: int, *, more: bool) -> bytes:
    """The 6-byte header of a data chunk of ``length`` bytes."""
    return _CHUNK_HEADER.pack(stream_id, length | (FLAG_MORE if more else 0))


def encode_error(stream_id: int, kind: int, message: str) -> bytes:
    """An error chunk; the message is cut (on a character boundary) to fit one chunk."""
    text = message.encode()[: MAX_CHUNK_LEN - 1].decode(errors="ignore").encode()
    return _CHUNK_HEADER.pack(stream_id, (1 + len(text)) | FLAG_ERROR) + bytes([kind]) + text


def encode_cancel(stream_id: int) -> bytes:
    """A cancel chunk."""
    return _CHUNK_HEADER.pack(stream_id, CANCEL)


def encode_window(stream_id: int, credit: int) -> bytes:
    """A window update returning ``credit`` bytes (1 ≤ credit < 2³²)."""
    return _WINDOW_CHUNK.pack(stream_id, WINDOW, credit)


@final
class ChunkDecoder:
    """Cuts the decrypted byte stream into chunk events.

    Feed bytes with :meth:`receive_data` (or append them to :meth:`buffer` in place); take
    events with :meth:`events` (all complete chunks) or :meth:`next_event` (one at a time,
    None when more data is needed).
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Appends decrypted bytes (any boundaries)."""
        buf = self.buffer()
        buf += data

    def buffer(self) -> bytearray:
        """The buffer of undecoded bytes, for the caller to append to in place (as
        :meth:`receive_data` does, without a copy from an intermediate buffer).

        Only appending is allowed, and only until the next call of another method.
        """
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return self._buf

    def events(self) -> list[ChunkEvent]:
        """Every complete chunk received so far, in order.

        Raises:
            ProtocolError: on a malformed chunk, once the chunks before it were returned
                (the connection must be dropped).
        """
        out: list[ChunkEvent] = []
        buf = self._buf
        with memoryview(buf) as view:
            try:
                while (event := self._decode(buf, view)) is not None:
                    out.append(event)
            except ProtocolError:
                if not out:
                    raise
                # The bad chunk stays first in the buffer: the next call raises.
        return out

    def next_event(self) -> ChunkEvent | None:
        """The next complete chunk, or None when more bytes are needed.

        Raises:
            ProtocolError: on a malformed chunk (the connection must be dropped).
        """
        buf = self._buf
        with memoryview(buf) as view:
            return self._decode(buf, view)

    def _decode(self, buf: bytearray, view: memoryview) -> ChunkEvent | None:
        pos = self._pos
        avail = len(buf) - pos
        if avail < CHUNK_HEADER_LEN:
            return None
        stream_id, field = _CHUNK_HEADER.unpack_from(buf, pos)
        if field & _CONTROL == _CONTROL:
            if field == CANCEL:
                self._pos = pos + CHUNK_HEADER_LEN
                return Cancel(stream_id)
            if field == WINDOW:
                if avail < _WINDOW_CHUNK.size:
                    return None
                credit = _WINDOW_CHUNK.unpack_from(buf, pos)[2]
                self._pos = pos + _WINDOW_CHUNK.size
                return WindowUpdate(stream_id, credit)
            raise ProtocolError(f"unknown control chunk 0x{field:04x}")
        length = field & LEN_MASK
        if length > MAX_CHUNK_LEN:
            raise ProtocolError(f"chunk of {length} bytes > {MAX_CHUNK_LEN}")
        start = pos + CHUNK_HEADER_LEN
        end = start + length
        if avail < CHUNK_HEADER_LEN + length:
            return None
        if field & FLAG_ERROR:
            if not length:
                raise ProtocolError("error chunk without an error kind")
            self._pos = end
            message = bytes(view[start + 1 : end]).decode(errors="replace")
            return ErrorChunk(stream_id, buf[start], message)
        self._pos = end
        return Data(stream_id, bytes(view[start:end]), bool(field & FLAG_MORE))


# ------------------------------------------------------------------------------ heads


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What precedes a request's attached stream."""

    prio: int
    path: str
    msg: bytes
    has_stream: bool


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What precedes a response's attached stream."""

    msg: bytes
    has_stream: bool


def encode_request_head(prio: int, path: str, msg_len: int, *, has_stream: bool) -> bytes:
    """The request head up to and including ``msg_len`` (the message follows).

    Raises:
        ValueError: when the path is longer than 255 UTF-8 bytes or prio is not a u8.
    """
    raw_path = path.encode()
    if len(raw_path) > _MAX_PATH_LEN:
        raise ValueError(f"endpoint path longer than {_MAX_PATH_LEN} bytes: {path!r}")
    if not 0 <= prio <= 0xFF:
        raise ValueError(f"priority {prio} is not a u8")
    flags = _HAS_STREAM if has_stream else 0
    return bytes([prio, flags, len(raw_path)]) + raw_path + msg_len.to_bytes(4, "big")


def encode_response_head(msg_len: int, *, has_stream: bool) -> bytes:
    """The response head up to and including ``msg_len`` (the message follows)."""
    return bytes([_HAS_STREAM if has_stream else 0]) + msg_len.to_bytes(4, "big")


@final
class HeadParser:
    """Incremental parser of a request or response head, enforcing the message size limit.

    :meth:`feed` takes the stream's payloads in order and returns None until the head is
    complete, then the bytes that follow it (the start of the attached stream).
    """

    __slots__ = ("_buf", "_fixed", "_max", "_msg_len", "_request", "prio", "result")

    def __init__(self, *, request: bool, max_message_size: int) -> None:
        self._request = request
        self._max = max_message_size
        self._buf = bytearray()
        self._fixed = -1  # length of the head before msg, once known
        self._msg_len = -1
        #: The request's priority once its first byte arrived (for error responses).
        self.prio = -1
        self.result: RequestHead | ResponseHead | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Consumes ``data``; returns the bytes after the head once it is complete.

        Raises:
            MessageTooLarge: when ``msg_len`` exceeds the limit.
            ProtocolError: when the head is malformed.
        """
        if self.result is not None:
            return data
        self._buf += data
        buf = self._buf
        if self._fixed < 0:
            if self._request:
                if buf and self.prio < 0:
                    self.prio = buf[0]
                if len(buf) < 3:
                    return None
                self._fixed = 3 + buf[2] + 4
            else:
                self._fixed = 5
        if self._msg_len < 0:
            if len(buf) < self._fixed:
                return None
            self._msg_len = int.from_bytes(buf[self._fixed - 4 : self._fixed], "big")
            if self._msg_len > self._max:
                raise MessageTooLarge(
                    f"message of {self._msg_len} bytes exceeds the receiver's limit of "
                    f"{self._max} bytes",
                    size=self._msg_len,
                    limit=self._max,
                )
        end = self._fixed + self._msg_len
        if len(buf) < end:
            return None
        msg = bytes(buf[self._fixed : end])
        if self._request:
            try:
                path = bytes(buf[3 : 3 + buf[2]]).decode()
            except UnicodeDecodeError:
                raise ProtocolError("request path is not UTF-8") from None
            self.result = RequestHead(buf[0], path, msg, bool(buf[1] & _HAS_STREAM))
        else:
            self.result = ResponseHead(msg, bool(buf[0] & _HAS_STREAM))
        rest = bytes(buf[end:])
        self._buf = bytearray()
        return rest

"""The send scheduler, sans I/O: which chunk goes on the wire next (Garage: src/net/send.rs).

Every outgoing stream (our requests, our responses) is queued here with its priority, its
buffered bytes and its flow-control credit. The driver calls :meth:`SendScheduler.poll`
for the next batch of chunk bytes and writes it. Rules, in order:

1. Control chunks (CANCEL, WINDOW) go first: they are tiny, and a delayed WINDOW stalls a
   stream on the other side.
2. The most urgent priority (lowest number) with a *ready* stream wins. A stream is ready
   when it has buffered bytes and credit, or has nothing buffered but its end (final empty
   chunk or error chunk) to send. A stream waiting for credit or for data from its source
   never blocks the others.
3. Within that priority, streams that have sent nothing yet go first: they are most likely
   small requests, which then complete in one chunk instead of queueing behind a block.
4. Otherwise round robin, one chunk (≤ 16 KiB) per turn, so that N transfers of one
   priority share the link evenly.

So a PRIO_HIGH ping queued behind a 64 MiB PRIO_BACKGROUND transfer is on the wire after at
most one batch (:data:`~._conn` writes ≤ 64 KiB at a time), not after the transfer.

A stream's data chunks are bounded by its credit (bytes the receiver allowed: the initial
window plus every WINDOW it returned). Error and final empty chunks need no credit.

Garage's *order tags* (keeping the blocks of one object in order across calls) are not
implemented here: no caller needs them yet.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import TYPE_CHECKING, Final, final

from ._framing import MAX_CHUNK_LEN, chunk_header, encode_cancel, encode_error, encode_window

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SendScheduler"]

Buffer = bytes | memoryview

_MAX_CREDIT: Final = (1 << 32) - 1


@final
class _OutStream:
    __slots__ = ("buffered", "credit", "data", "eof", "error", "id", "prio", "sent")

    def __init__(self, stream_id: int, prio: int, credit: int) -> None:
        self.id = stream_id
        self.prio = prio
        self.data: deque[memoryview] = deque()
        self.buffered = 0
        self.credit = credit
        self.eof = False
        self.error: bytes | None = None  # the encoded error chunk, once failed
        self.sent = 0  # chunks sent so far

    def ready(self) -> bool:
        if self.buffered:
            return self.credit > 0
        return self.eof or self.error is not None


@final
class SendScheduler:
    """Priority queues of outgoing streams, with flow-control credit.

    Stream ids are unique among the streams currently queued; reusing the id of a finished
    (or aborted) stream opens a new one. Operations on unknown ids are ignored where a
    race with the peer makes them legitimate (credit or cancel for a finished stream).
    """

    __slots__ = ("_control", "_initial_credit", "_prios", "_queues", "_streams")

    def __init__(self, *, initial_credit: int) -> None:
        """
        Args:
            initial_credit: bytes each stream may send before the receiver returns credit
                (the receiver's window).
        """
        self._initial_credit = initial_credit
        self._streams: dict[int, _OutStream] = {}
        self._queues: dict[int, deque[_OutStream]] = {}
        self._prios: list[int] = []  # sorted keys of _queues
        self._control: deque[bytes] = deque()

    # -------------------------------------------------------------- stream lifecycle

    def open(self, stream_id: int, prio: int) -> None:
        """Queues a new stream.

        Raises:
            ValueError: when a stream with this id is already queued.
        """
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id} is already open")
        stream = _OutStream(stream_id, prio, self._initial_credit)
        self._streams[stream_id] = stream
        queue = self._queues.get(prio)
        if queue is None:
            queue = self._queues[prio] = deque()
            bisect.insort(self._prios, prio)
        queue.append(stream)

    def is_open(self, stream_id: int) -> bool:
        """True while the stream is queued (not yet fully sent, not aborted)."""
        return stream_id in self._streams

    def push(self, stream_id: int, data: bytes | bytearray | memoryview) -> None:
        """Appends data to an open stream (the scheduler keeps a reference: never mutate it).

        Raises:
            KeyError: when the stream is not open.
            RuntimeError: after :meth:`finish` or :meth:`fail`.
        """
        stream = self._streams[stream_id]
        if stream.eof or stream.error is not None:
            raise RuntimeError(f"stream {stream_id} is already finished")
        if not data:
            return
        view = memoryview(bytes(data) if isinstance(data, bytearray) else data).cast("B")
        stream.data.append(view)
        stream.buffered += len(view)

    def buffered(self, stream_id: int) -> int:
        """Bytes pushed but not yet sent (0 for unknown streams)."""
        stream = self._streams.get(stream_id)
        return stream.buffered if stream is not None else 0

    def finish(self, stream_id: int) -> None:
        """Marks the end of the stream: it closes after its buffered data."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.eof = True

    def fail(self, stream_id: int, kind: int, message: str, *, discard: bool = False) -> None:
        """Ends the stream with an error chunk, after its buffered data or instead of it.

        Without ``discard`` this does nothing once the stream was finished; with it, the
        unsent rest of the stream is replaced by the error chunk.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.error is not None or (stream.eof and not discard):
            return
        stream.error = encode_error(stream_id, kind, message)
        if discard:
            stream.data.clear()
            stream.buffered = 0

    def abort(self, stream_id: int) -> None:
        """Drops the stream without sending anything more (it was cancelled)."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._dequeue(stream)

    def add_credit(self, stream_id: int, credit: int) -> None:
        """Applies a WINDOW update from the receiver (ignored for finished streams)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.credit = min(stream.credit + credit, _MAX_CREDIT)

    # -------------------------------------------------------------- control chunks

    def send_cancel(self, stream_id: int) -> None:
        """Queues a CANCEL for the call ``stream_id`` (ahead of all data)."""
        self._control.append(encode_cancel(stream_id))

    def send_window(self, stream_id: int, credit: int) -> None:
        """Queues a WINDOW update returning ``credit`` bytes of stream ``stream_id``."""
        while credit > 0:
            part = min(credit, _MAX_CREDIT)
            self._control.append(encode_window(stream_id, part))
            credit -= part

    # -------------------------------------------------------------- output

    def open_streams(self) -> int:
        """How many streams are queued."""
        return len(self._streams)

    def has_pending(self) -> bool:
        """True when :meth:`poll` would return something right now."""
        return bool(self._control) or any(s.ready() for s in self._streams.values())

    def poll(self, max_bytes: int) -> tuple[list[Buffer], set[int]]:
        """Takes chunks to write, about ``max_bytes`` in total (at least one if any is ready).

        Returns:
            The buffers to write, in order, and the ids of the streams that sent data (their
            sources may refill them).
        """
        out: list[Buffer] = []
        touched: set[int] = set()
        size = 0
        while self._control:
            chunk = self._control.popleft()
            out.append(chunk)
            size += len(chunk)
        while size < max_bytes:
            sent = self._next_chunk(out)
            if sent is None:
                break
            size += sent[0]
            touched.add(sent[1])
        return out, touched

    def _next_chunk(self, out: list[Buffer]) -> tuple[int, int] | None:
        """Appends the next chunk to ``out``; returns its size and stream id, or None if
        nothing is ready."""
        for prio in self._prios:
            queue = self._queues[prio]
            stream = _first_ready(s for s in queue if s.sent == 0)
            if stream is None:
                stream = _first_ready(queue)
                if stream is None:
                    continue
            size = self._emit(stream, out)
            stream.sent += 1
            if stream.id not in self._streams:
                self._dequeue(stream)
            else:
                queue.remove(stream)  # round robin: to the back of its priority
                queue.append(stream)
            return size, stream.id
        return None

    def _emit(self, stream: _OutStream, out: list[Buffer]) -> int:
        if stream.buffered and stream.credit > 0:
            want = min(MAX_CHUNK_LEN, stream.buffered, stream.credit)
            stream.buffered -= want
            stream.credit -= want
            final = stream.eof and not stream.buffered and stream.error is None
            out.append(chunk_header(stream.id, want, more=not final))
            data = stream.data
            left = want
            while left:
                view = data[0]
                if len(view) <= left:
                    data.popleft()
                    out.append(view)
                    left -= len(view)
                else:
                    out.append(view[:left])
                    data[0] = view[left:]
                    left = 0
            if final:
                del self._streams[stream.id]
            return want + 6
        del self._streams[stream.id]
        if stream.error is not None:
            out.append(stream.error)
            return len(stream.error)
        out.append(chunk_header(stream.id, 0, more=False))  # eof after the last data chunk
        return 6

    def _dequeue(self, stream: _OutStream) -> None:
        queue = self._queues[stream.prio]
        queue.remove(stream)
        if not queue:
            del self._queues[stream.prio]
            self._prios.remove(stream.prio)


def _first_ready(streams: Iterable[_OutStream]) -> _OutStream | None:
    for stream in streams:
        if stream.ready():
            return stream
    return None

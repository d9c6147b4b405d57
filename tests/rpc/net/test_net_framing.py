"""Chunks, heads and the send scheduler, in memory (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.net import (
    PRIO_BACKGROUND,
    PRIO_HIGH,
    PRIO_NORMAL,
    PRIO_SECONDARY,
    MessageTooLarge,
    ProtocolError,
)
from garage_rpc.net._framing import (
    MAX_CHUNK_LEN,
    Cancel,
    ChunkDecoder,
    ChunkEvent,
    Data,
    ErrorChunk,
    ErrorKind,
    HeadParser,
    RequestHead,
    ResponseHead,
    WindowUpdate,
    encode_cancel,
    encode_chunk,
    encode_error,
    encode_request_head,
    encode_response_head,
    encode_window,
)
from garage_rpc.net._scheduler import SendScheduler

ids = st.integers(min_value=0, max_value=2**32 - 1)
events: st.SearchStrategy[ChunkEvent] = st.one_of(
    st.builds(Data, ids, st.binary(max_size=MAX_CHUNK_LEN), st.booleans()),
    st.builds(ErrorChunk, ids, st.integers(0, 255), st.text(max_size=50)),
    st.builds(Cancel, ids),
    st.builds(WindowUpdate, ids, st.integers(min_value=1, max_value=2**32 - 1)),
)


def encode(event: ChunkEvent) -> bytes:
    if isinstance(event, Data):
        return encode_chunk(event.id, event.payload, more=event.more)
    if isinstance(event, ErrorChunk):
        return encode_error(event.id, event.kind, event.message)
    if isinstance(event, Cancel):
        return encode_cancel(event.id)
    return encode_window(event.id, event.credit)


def decode_all(decoder: ChunkDecoder) -> list[ChunkEvent]:
    out = []
    while (event := decoder.next_event()) is not None:
        out.append(event)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


# ------------------------------------------------------------------------------ chunks


@given(evs=st.lists(events, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_chunks_round_trip_over_any_boundaries(evs: list[ChunkEvent], cuts: list[int]) -> None:
    wire = b"".join(encode(e) for e in evs)
    decoder = ChunkDecoder()
    out: list[ChunkEvent] = []
    for piece in split(wire, cuts):
        decoder.receive_data(piece)
        out += decode_all(decoder)
    assert out == evs


def test_malformed_chunks_are_protocol_errors() -> None:
    for bad in (
        b"\0\0\0\1" + (0x3FF1).to_bytes(2, "big"),  # longer than MAX_CHUNK_LEN
        b"\0\0\0\1" + (0xC001).to_bytes(2, "big"),  # unknown control value
        b"\0\0\0\1" + (0x4000).to_bytes(2, "big"),  # error chunk without a kind
    ):
        decoder = ChunkDecoder()
        decoder.receive_data(bad)
        with pytest.raises(ProtocolError):
            decoder.next_event()


def test_error_messages_are_cut_to_one_chunk() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(encode_error(7, ErrorKind.REMOTE, "é" * 20_000))
    (event,) = decode_all(decoder)
    assert isinstance(event, ErrorChunk)
    assert event.message == "é" * ((MAX_CHUNK_LEN - 1) // 2)


# ------------------------------------------------------------------------------ heads


@given(
    prio=st.integers(0, 255),
    path=st.text(min_size=1, max_size=60),
    msg=st.binary(max_size=3000),
    rest=st.binary(max_size=100),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    has_stream=st.booleans(),
)
def test_request_head_round_trip_over_any_boundaries(
    prio: int, path: str, msg: bytes, rest: bytes, cuts: list[int], has_stream: bool
) -> None:
    wire = encode_request_head(prio, path, len(msg), has_stream=has_stream) + msg + rest
    parser = HeadParser(request=True, max_message_size=4096)
    after = None
    for piece in split(wire, cuts):
        if after is None:
            after = parser.feed(piece)
        else:
            after += piece
    assert parser.result == RequestHead(prio, path, msg, has_stream)
    assert after == rest


@given(msg=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_response_head_round_trip(msg: bytes, cuts: list[int]) -> None:
    wire = encode_response_head(len(msg), has_stream=True) + msg
    parser = HeadParser(request=False, max_message_size=4096)
    results = [parser.feed(piece) for piece in split(wire, cuts)]
    assert parser.result == ResponseHead(msg, True)
    assert results[-1] == b""


def test_oversized_message_is_refused_before_it_arrives() -> None:
    parser = HeadParser(request=True, max_message_size=1000)
    head = encode_request_head(PRIO_NORMAL, "x", 1001, has_stream=False)
    with pytest.raises(MessageTooLarge, match="1001 bytes") as info:
        parser.feed(head)  # the message itself was never sent
    assert (info.value.size, info.value.limit) == (1001, 1000)
    assert parser.prio == PRIO_NORMAL


def test_bad_heads() -> None:
    with pytest.raises(ValueError, match="255"):
        encode_request_head(0, "p" * 256, 0, has_stream=False)
    with pytest.raises(ValueError, match="u8"):
        encode_request_head(256, "p", 0, has_stream=False)
    parser = HeadParser(request=True, max_message_size=10)
    with pytest.raises(ProtocolError, match="UTF-8"):
        parser.feed(bytes([0, 0, 1, 0xFF, 0, 0, 0, 0]))


# ------------------------------------------------------------------------------ scheduler


def drain(sched: SendScheduler, chunks: int = 1) -> list[ChunkEvent]:
    """The next ``chunks`` chunks the scheduler sends (one poll each), decoded."""
    decoder = ChunkDecoder()
    out: list[ChunkEvent] = []
    for _ in range(chunks):
        buffers, _ = sched.poll(1)  # 1 byte: exactly one chunk per poll
        for buffer in buffers:
            decoder.receive_data(buffer)
        out += decode_all(decoder)
    return out


def test_small_urgent_message_jumps_ahead_of_a_big_background_stream() -> None:
    sched = SendScheduler(initial_credit=1 << 30)
    sched.open(1, PRIO_BACKGROUND | PRIO_SECONDARY)
    sched.push(1, bytes(64 << 20))
    sched.finish(1)
    assert [e.id for e in drain(sched, 2)] == [1, 1]
    sched.open(2, PRIO_HIGH)
    sched.push(2, b"ping")
    sched.finish(2)
    (event,) = drain(sched)
    assert event == Data(2, b"ping", more=False)
    assert [e.id for e in drain(sched, 2)] == [1, 1]


def test_new_streams_go_first_then_round_robin() -> None:
    sched = SendScheduler(initial_credit=1 << 30)
    for sid in (1, 3):
        sched.open(sid, PRIO_NORMAL)
        sched.push(sid, bytes(10 * MAX_CHUNK_LEN))
        sched.finish(sid)
    first = [e.id for e in drain(sched, 4)]
    assert first == [1, 3, 1, 3]
    sched.open(5, PRIO_NORMAL)  # a new stream of the same priority: next, not last
    sched.push(5, b"small")
    sched.finish(5)
    assert drain(sched) == [Data(5, b"small", more=False)]
    assert [e.id for e in drain(sched, 4)] == [1, 3, 1, 3]


def test_credit_limits_a_stream_without_blocking_others() -> None:
    sched = SendScheduler(initial_credit=100)
    sched.open(1, PRIO_HIGH)
    sched.push(1, bytes(250))
    sched.finish(1)
    sched.open(3, PRIO_BACKGROUND)
    sched.push(3, b"other")
    sched.finish(3)
    assert drain(sched, 3) == [Data(1, bytes(100), more=True), Data(3, b"other", more=False)]
    assert sched.poll(1 << 20) == ([], set())
    assert not sched.has_pending()
    sched.add_credit(1, 1000)
    assert drain(sched, 2) == [Data(1, bytes(150), more=False)]


def test_controls_go_first_and_ends_are_explicit() -> None:
    sched = SendScheduler(initial_credit=1 << 20)
    sched.open(1, PRIO_NORMAL)
    sched.push(1, b"data")
    assert drain(sched) == [Data(1, b"data", more=True)]  # not finished yet: MORE
    sched.finish(1)
    sched.send_cancel(9)
    sched.send_window(11, 12345)
    assert drain(sched, 2) == [Cancel(9), WindowUpdate(11, 12345), Data(1, b"", more=False)]
    assert not sched.is_open(1)

    sched.open(3, PRIO_NORMAL)
    sched.push(3, b"partial")
    sched.fail(3, ErrorKind.REMOTE, "source failed")  # after the buffered data
    assert drain(sched, 2) == [
        Data(3, b"partial", more=True),
        ErrorChunk(3, ErrorKind.REMOTE, "source failed"),
    ]
    sched.open(5, PRIO_NORMAL)
    sched.push(5, b"dropped")
    sched.fail(5, ErrorKind.ABANDONED, "gone", discard=True)
    assert drain(sched) == [ErrorChunk(5, ErrorKind.ABANDONED, "gone")]
    sched.open(7, PRIO_NORMAL)
    sched.push(7, b"never sent")
    sched.abort(7)
    assert drain(sched) == []
    sched.open(9, PRIO_NORMAL)
    with pytest.raises(ValueError, match="already open"):
        sched.open(9, PRIO_NORMAL)


@given(
    streams=st.lists(
        st.tuples(
            st.sampled_from([PRIO_HIGH, PRIO_NORMAL, PRIO_BACKGROUND]),
            st.lists(st.binary(max_size=40_000), max_size=4),
        ),
        max_size=5,
    ),
    credit=st.integers(min_value=1, max_value=100_000),
    batch=st.integers(min_value=1, max_value=100_000),
)
def test_every_stream_arrives_whole_and_in_order(
    streams: list[tuple[int, list[bytes]]], credit: int, batch: int
) -> None:
    sched = SendScheduler(initial_credit=credit)
    for sid, (prio, writes) in enumerate(streams):
        sched.open(sid, prio)
        for w in writes:
            sched.push(sid, w)
        sched.finish(sid)
    decoder = ChunkDecoder()
    got: dict[int, bytes] = {}
    ended: set[int] = set()
    while True:
        buffers, _ = sched.poll(batch)
        if not buffers:
            if not any(sched.is_open(sid) for sid in range(len(streams))):
                break
            for sid in range(len(streams)):  # the receiver consumed everything
                sched.add_credit(sid, credit)
            continue
        for buffer in buffers:
            decoder.receive_data(buffer)
        for event in decode_all(decoder):
            assert isinstance(event, Data)
            assert event.id not in ended
            assert len(event.payload) <= min(MAX_CHUNK_LEN, credit)
            got[event.id] = got.get(event.id, b"") + event.payload
            if not event.more:
                ended.add(event.id)
    assert ended == set(range(len(streams)))
    assert got == {sid: b"".join(writes) for sid, (_, writes) in enumerate(streams)}

"""The batched, in-place paths of the transport: box stream batches, chunk batches, and
the coalescing of an attached stream's chunks for its reader.

The box stream's wire format is checked byte for byte against a reference built on
PyNaCl's public API (the straightforward reading of the format), so the in-place encoder
and decoder cannot drift from it.
"""

from __future__ import annotations

import array
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio
import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.net import NetApp, NodeKey, PeerDisconnected, ProtocolError
from garage_rpc.net._boxstream import HEADER_LEN, MAX_BODY_LEN, BoxDecoder, BoxEncoder
from garage_rpc.net._framing import (
    MAX_CHUNK_LEN,
    ChunkDecoder,
    ChunkEvent,
    Data,
    WindowUpdate,
    encode_chunk,
    encode_window,
)
from garage_rpc.net._session import Hello, open_secure_channel
from garage_rpc.net._stream import LocalStream, _take

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import ByteStream

#: Safety net for waits; never asserted on.
DEADLINE_S: Final = 30
KEY = bytes(range(32))
NONCE = bytes(range(24))
_NONCE_MOD = 1 << 192

nonces = st.one_of(
    st.just(NONCE),
    st.just(b"\xff" * 24),  # wraps around at once
    st.binary(min_size=24, max_size=24),
)


def reference_packets(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """The box stream packets of ``data``, built with PyNaCl's public API."""
    n = int.from_bytes(nonce, "big")
    out = []
    for start in range(0, len(data), MAX_BODY_LEN):
        body = data[start : start + MAX_BODY_LEN]
        boxed = nacl.bindings.crypto_secretbox_easy(
            body, ((n + 1) % _NONCE_MOD).to_bytes(24, "big"), key
        )
        header = len(body).to_bytes(2, "big") + boxed[:16]
        out.append(nacl.bindings.crypto_secretbox_easy(header, n.to_bytes(24, "big"), key))
        out.append(boxed[16:])
        n = (n + 2) % _NONCE_MOD
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


# ------------------------------------------------------------------------------ box stream


@given(data=st.binary(max_size=3 * MAX_BODY_LEN + 100), nonce=nonces)
def test_encrypt_is_the_reference_format(data: bytes, nonce: bytes) -> None:
    assert BoxEncoder(KEY, nonce).encrypt(data) == reference_packets(KEY, nonce, data)


def test_encrypt_keeps_the_nonce_across_batches() -> None:
    enc = BoxEncoder(KEY, NONCE)
    data = bytes(range(256)) * 50
    wire = enc.encrypt(data[:5000]) + enc.encrypt(data[5000:])
    n = (int.from_bytes(NONCE, "big") + 4) % _NONCE_MOD  # two packets in the first batch
    second = reference_packets(KEY, n.to_bytes(24, "big"), data[5000:])
    assert wire == reference_packets(KEY, NONCE, data[:5000]) + second


def test_encrypt_takes_any_buffer() -> None:
    words = array.array("H", range(5000))
    raw = words.tobytes()
    for buffer in (memoryview(words), bytearray(raw), memoryview(raw)[10:]):
        expected = reference_packets(KEY, NONCE, bytes(buffer))
        assert BoxEncoder(KEY, NONCE).encrypt(buffer) == expected


@given(
    writes=st.lists(st.binary(max_size=9000), max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=16),
    prefix=st.binary(max_size=10),
    nonce=nonces,
)
def test_read_into_appends_the_plaintext_over_any_split(
    writes: list[bytes], cuts: list[int], prefix: bytes, nonce: bytes
) -> None:
    enc, dec = BoxEncoder(KEY, nonce), BoxDecoder(KEY, nonce)
    wire = b"".join(bytes(enc.encrypt(w)) for w in writes) + enc.goodbye()
    out = bytearray(prefix)
    for piece in split(wire, cuts):
        dec.receive_data(piece)
        before = len(out)
        assert dec.read_into(out) == len(out) - before
    assert out == prefix + b"".join(writes)
    assert dec.closed
    assert dec.read_into(out) == 0


def test_a_header_opened_in_place_waits_for_its_body() -> None:
    enc, dec = BoxEncoder(KEY, NONCE), BoxDecoder(KEY, NONCE)
    wire = bytes(enc.encrypt(b"x" * 1000))
    out = bytearray()
    dec.receive_data(wire[: HEADER_LEN + 10])
    assert dec.read_into(out) == 0  # the header is open, the body incomplete
    dec.receive_data(wire[HEADER_LEN + 10 : -1])
    assert dec.read_into(out) == 0
    dec.receive_data(wire[-1:])
    assert dec.read_into(out) == 1000
    assert out == b"x" * 1000


def test_a_tampered_body_after_its_header_fails_and_stays_failed() -> None:
    enc, dec = BoxEncoder(KEY, NONCE), BoxDecoder(KEY, NONCE)
    wire = bytearray(enc.encrypt(b"y" * 3000))
    dec.receive_data(wire[:HEADER_LEN])
    assert dec.read_into(bytearray()) == 0
    rest = wire[HEADER_LEN:]
    rest[100] ^= 1
    dec.receive_data(rest)
    for _ in range(2):  # no resynchronisation: every later read fails too
        with pytest.raises(ProtocolError, match="authentication"):
            dec.read_into(bytearray())


def test_a_header_with_a_bad_length_fails_and_stays_failed() -> None:
    n = int.from_bytes(NONCE, "big")
    for body_len in (0, MAX_BODY_LEN + 1):
        plain = body_len.to_bytes(2, "big") + b"\x01" * 16  # not the goodbye
        header = nacl.bindings.crypto_secretbox_easy(plain, n.to_bytes(24, "big"), KEY)
        dec = BoxDecoder(KEY, NONCE)
        dec.receive_data(header + bytes(100))
        with pytest.raises(ProtocolError, match=f"invalid body length {body_len}"):
            dec.read_into(bytearray())
        with pytest.raises(ProtocolError):
            dec.read_into(bytearray())


def test_bytes_after_a_goodbye_in_the_same_batch_fail() -> None:
    enc, dec = BoxEncoder(KEY, NONCE), BoxDecoder(KEY, NONCE)
    dec.receive_data(bytes(enc.encrypt(b"bye")) + enc.goodbye() + b"junk")
    with pytest.raises(ProtocolError, match="after the goodbye"):
        dec.read_into(bytearray())


# ------------------------------------------------------------------------------ chunks

chunk_events: st.SearchStrategy[ChunkEvent] = st.one_of(
    st.builds(
        Data,
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(max_size=MAX_CHUNK_LEN),
        st.booleans(),
    ),
    st.builds(
        WindowUpdate,
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=1, max_value=2**32 - 1),
    ),
)


def _encode(event: ChunkEvent) -> bytes:
    if isinstance(event, Data):
        return encode_chunk(event.id, event.payload, more=event.more)
    assert isinstance(event, WindowUpdate)
    return encode_window(event.id, event.credit)


@given(evs=st.lists(chunk_events, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_events_over_any_split_appended_in_place(evs: list[ChunkEvent], cuts: list[int]) -> None:
    decoder = ChunkDecoder()
    got: list[ChunkEvent] = []
    for piece in split(b"".join(_encode(e) for e in evs), cuts):
        buffer = decoder.buffer()
        buffer += piece
        got += decoder.events()
    assert got == evs
    assert decoder.events() == []


def test_events_before_a_malformed_chunk_come_first() -> None:
    decoder = ChunkDecoder()
    good = [Data(1, b"a", more=True), Data(1, b"b", more=False)]
    bad = b"\0\0\0\1" + (0xC001).to_bytes(2, "big")  # unknown control value
    decoder.receive_data(b"".join(_encode(e) for e in good) + bad)
    assert decoder.events() == good
    for _ in range(2):
        with pytest.raises(ProtocolError, match="unknown control"):
            decoder.events()


# ------------------------------------------------------------------------------ readers


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12),
    max_bytes=st.integers(min_value=1, max_value=1000),
)
def test_take_joins_whole_pieces_up_to_max_bytes(pieces: list[bytes], max_bytes: int) -> None:
    data = deque(pieces)
    taken = []
    while data:
        front = data[0]
        chunk = _take(data, max_bytes)
        assert 1 <= len(chunk) <= max_bytes
        if len(front) >= max_bytes:
            assert chunk == front[:max_bytes]  # only a piece too big alone is cut
        elif data:
            assert len(chunk) + len(data[0]) > max_bytes  # as many whole pieces as fit
        taken.append(chunk)
    assert b"".join(taken) == b"".join(pieces)


async def _read_all(stream: LocalStream, max_bytes: int) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(await stream.receive(max_bytes))
        except anyio.EndOfStream:
            return got


@pytest.mark.anyio
@pytest.mark.parametrize("max_bytes", [7, 1000, 7000, 65536])
async def test_local_stream_returns_the_source_in_pieces(max_bytes: int) -> None:
    data = bytes(range(256)) * 100

    async def source() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 7000):
            yield data[start : start + 7000]

    for attached in (data, source()):
        got = await _read_all(LocalStream(attached), max_bytes)
        assert all(1 <= len(chunk) <= max_bytes for chunk in got)
        assert b"".join(got) == data


# ------------------------------------------------------------------------------ connection


@pytest.mark.anyio
async def test_garbage_after_valid_chunks_drops_the_connection_at_once(
    memory_pipe: Callable[[], tuple[ByteStream, ByteStream]], network_key: bytes
) -> None:
    """A malformed chunk that arrives in one read with valid chunks before it ends the
    connection right away, without waiting for more bytes from the (now silent) peer."""
    node = NetApp(NodeKey.generate(), network_key)
    ours, theirs = memory_pipe()
    with anyio.fail_after(DEADLINE_S):
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            tg.start_soon(node.accept_stream, theirs)
            channel = await open_secure_channel(
                ours,
                network_key=network_key,
                node_key=NodeKey.generate(),
                server_id=node.id,
                hello=Hello(),
            )
            bad = b"\0\0\0\1" + (0xC001).to_bytes(2, "big")  # unknown control value
            await channel.send(encode_window(2, 100) + bad)
            while node.statistics().connections:  # noqa: ASYNC110  # no event for it
                await anyio.sleep(0.005)
            with pytest.raises(PeerDisconnected):
                await channel.receive()
            await channel.aclose(goodbye=False)
            tg.cancel_scope.cancel()

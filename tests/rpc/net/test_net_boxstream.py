"""The box stream codec, in memory: round trips, packet layout, tampering, goodbye."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.net import ProtocolError
from garage_rpc.net._boxstream import HEADER_LEN, MAX_BODY_LEN, BoxDecoder, BoxEncoder

KEY = bytes(range(32))
NONCE = bytes(range(24))


def pair(nonce: bytes = NONCE) -> tuple[BoxEncoder, BoxDecoder]:
    return BoxEncoder(KEY, nonce), BoxDecoder(KEY, nonce)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@given(
    writes=st.lists(st.binary(max_size=10_000), max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_round_trip_over_any_chunking(writes: list[bytes], cuts: list[int]) -> None:
    enc, dec = pair()
    wire = b"".join(enc.encrypt(w) for w in writes) + enc.goodbye()
    out = b""
    for piece in split(wire, cuts):
        dec.receive_data(piece)
        out += dec.read()
    assert out == b"".join(writes)
    assert dec.closed


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096, 100_000])
def test_packet_layout(size: int) -> None:
    enc, dec = pair()
    wire = enc.encrypt(bytes(size))
    packets = math.ceil(size / MAX_BODY_LEN)
    assert len(wire) == size + packets * HEADER_LEN  # 34 bytes of overhead per packet
    dec.receive_data(wire[:HEADER_LEN])
    assert dec.read() == b""  # a header alone gives nothing yet
    dec.receive_data(wire[HEADER_LEN:])
    assert dec.read() == bytes(size)


def test_empty_writes_send_nothing() -> None:
    enc, _ = pair()
    assert enc.encrypt(b"") == b""


@given(data=st.binary(min_size=1, max_size=9000), position=st.integers(min_value=0))
def test_any_tampered_byte_is_detected(data: bytes, position: int) -> None:
    enc, dec = pair()
    wire = bytearray(enc.encrypt(data))
    wire[position % len(wire)] ^= 0x40
    dec.receive_data(bytes(wire))
    with pytest.raises(ProtocolError, match=r"authentication|length"):
        dec.read()


def test_reordered_or_replayed_packets_are_detected() -> None:
    enc, dec = pair()
    first, second = enc.encrypt(b"first"), enc.encrypt(b"second")
    dec.receive_data(second + first)
    with pytest.raises(ProtocolError):
        dec.read()
    enc, dec = pair()
    first = enc.encrypt(b"first")
    dec.receive_data(first + first)
    with pytest.raises(ProtocolError):
        dec.read()


def test_wrong_key_is_detected() -> None:
    enc = BoxEncoder(KEY, NONCE)
    dec = BoxDecoder(bytes(32), NONCE)
    dec.receive_data(enc.encrypt(b"secret"))
    with pytest.raises(ProtocolError):
        dec.read()


def test_goodbye_ends_the_stream() -> None:
    enc, dec = pair()
    dec.receive_data(enc.encrypt(b"last words") + enc.goodbye())
    assert dec.read() == b"last words"
    assert dec.closed
    with pytest.raises(RuntimeError):
        enc.encrypt(b"more")
    dec.receive_data(b"x")
    with pytest.raises(ProtocolError, match="after the goodbye"):
        dec.read()


def test_nonce_wraps_around() -> None:
    enc, dec = pair(nonce=b"\xff" * 24)
    dec.receive_data(enc.encrypt(b"a" * 10_000))
    assert dec.read() == b"a" * 10_000


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="32-byte key"):
        BoxEncoder(b"short", NONCE)
    with pytest.raises(ValueError, match="24-byte nonce"):
        BoxDecoder(KEY, b"short")

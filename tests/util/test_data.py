from __future__ import annotations

import hashlib
import pickle

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from garage_util import (
    FixedBytes32,
    blake2sum,
    fasthash,
    gen_uuid,
    md5sum,
    pack,
    sha256sum,
    unpack,
)


def test_blake2sum_is_truncated_blake2b_512_not_blake2b_256() -> None:
    # Published BLAKE2b-512("abc") (RFC 7693, appendix A), first 32 bytes.
    expected = bytes.fromhex("ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1")
    assert blake2sum(b"abc") == expected
    assert blake2sum(b"abc") != hashlib.blake2b(b"abc", digest_size=32).digest()


def test_other_hashes_match_their_definitions() -> None:
    assert sha256sum(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert md5sum(b"abc").hex() == "900150983cd24fb0d6963f7d28e17f72"
    assert fasthash(b"abc") == xxhash.xxh3_64_intdigest(b"abc")
    assert fasthash(b"abc") != fasthash(b"abd")
    assert 0 <= fasthash(b"") < 2**64


def test_uuids_are_random_32_bytes() -> None:
    ids = {gen_uuid() for _ in range(100)}
    assert len(ids) == 100
    assert all(isinstance(i, FixedBytes32) and len(i) == 32 for i in ids)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_fixed_bytes_refuses_other_lengths(size: int) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        FixedBytes32(bytes(size))


@pytest.mark.parametrize("text", ["ab" * 31, "zz" * 32, "ab" * 33])
def test_from_hex_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="hex"):
        FixedBytes32.from_hex(text)


@given(st.binary(min_size=32, max_size=32))
def test_hex_msgpack_and_pickle_round_trips(raw: bytes) -> None:
    h = FixedBytes32(raw)
    assert FixedBytes32.from_hex(h.hex()) == h
    assert FixedBytes32.from_hex(h.hex().upper()) == h
    decoded: FixedBytes32 = unpack(FixedBytes32, pack(h))
    assert decoded == h
    assert type(decoded) is FixedBytes32
    assert pack(h) == b"\xc4\x20" + raw  # msgpack bin 8 of exactly 32 bytes
    assert pickle.loads(pickle.dumps(h)) == h
    assert str(h) == raw[:8].hex()
    assert h.short_hex() in repr(h)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_ordering_is_bytewise(a: bytes, b: bytes) -> None:
    assert (FixedBytes32(a) < FixedBytes32(b)) == (a < b)
    assert (FixedBytes32(a) == FixedBytes32(b)) == (a == b)


@given(st.binary(min_size=32, max_size=32))
def test_increment_is_big_endian_plus_one(raw: bytes) -> None:
    n = int.from_bytes(raw, "big")
    nxt = FixedBytes32(raw).increment()
    if n == 2**256 - 1:
        assert nxt is None
    else:
        assert nxt is not None
        assert int.from_bytes(nxt, "big") == n + 1
        assert nxt > FixedBytes32(raw)


def test_increment_carries_and_saturates() -> None:
    assert FixedBytes32(b"\x00" * 31 + b"\xff").increment() == b"\x00" * 30 + b"\x01\x00"
    assert FixedBytes32(b"\xff" * 32).increment() is None
    assert FixedBytes32.zero().increment() == b"\x00" * 31 + b"\x01"

"""DataBlock: compression choice, verification (Garage: src/block/block.rs)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.block import CorruptBlockError, DataBlock, DataBlockHeader
from garage_model.block._data import zstd_compress, zstd_decompress
from garage_util.data import blake2sum


@given(st.binary(max_size=4096), st.sampled_from([None, 1, 3, 19]))
def test_round_trip_any_level(data: bytes, level: int | None) -> None:
    block = DataBlock.from_buffer(data, compression_level=level)
    assert block.content() == data
    block.verify(blake2sum(data))
    if block.is_compressed:
        assert len(block.data) < len(data)


def test_random_bytes_stay_plain() -> None:
    data = os.urandom(64 * 1024)
    block = DataBlock.from_buffer(data, compression_level=1)
    assert block.header is DataBlockHeader.PLAIN
    assert block.data == data


def test_repetitive_bytes_are_compressed() -> None:
    data = b"garage " * 10_000
    block = DataBlock.from_buffer(data, compression_level=1)
    assert block.header is DataBlockHeader.COMPRESSED
    assert len(block.data) < len(data) // 10
    assert zstd_decompress(block.data) == data


def test_compression_disabled_stays_plain() -> None:
    data = b"a" * 10_000
    assert DataBlock.from_buffer(data, compression_level=None) == DataBlock.plain(data)


def test_frames_carry_a_checksum() -> None:
    # Frame header descriptor bit 2 is Content_Checksum_flag (RFC 8878 §3.1.1.1.1).
    frame = zstd_compress(b"x" * 1000, 1)
    assert frame[4] & 0x04


@pytest.mark.parametrize("compressed", [False, True])
@given(pos=st.integers(min_value=0))
def test_verify_catches_a_flipped_byte(compressed: bool, pos: int) -> None:
    data = b"hello block " * 500
    h = blake2sum(data)
    block = DataBlock.from_buffer(data, compression_level=1 if compressed else None)
    assert block.is_compressed == compressed
    raw = bytearray(block.data)
    raw[pos % len(raw)] ^= 0x01
    with pytest.raises(CorruptBlockError) as info:
        DataBlock(block.header, bytes(raw)).verify(h)
    assert info.value.hash == h


def test_truncated_frame_is_corrupt() -> None:
    data = b"abc" * 10_000
    block = DataBlock.from_buffer(data, compression_level=1)
    with pytest.raises(CorruptBlockError, match="corrupted"):
        DataBlock.compressed(block.data[:-5]).verify(blake2sum(data))
    with pytest.raises(CorruptBlockError):
        DataBlock.compressed(block.data + b"junk").verify(blake2sum(data))

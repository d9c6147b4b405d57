"""The pure parts of garage_model.s3.writer's readers: which block bytes make a range, and
where a part lies (the I/O is exercised end to end by tests/api/test_s3_objects.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from garage_model.s3 import ObjectBacklink, Version, VersionBlock
from garage_model.s3.writer import BlockSlice, block_slices, part_bounds
from garage_util.data import FixedBytes32, blake2sum

UUID = FixedBytes32(b"\x07" * 32)
BACKLINK = ObjectBacklink(FixedBytes32(b"\x01" * 32), "key")


def _blocks(sizes: list[int]) -> tuple[list[VersionBlock], bytes]:
    """Blocks of the given sizes and the object they make (block i is filled with byte i;
    its hash only has to be unique here)."""
    data = b"".join(bytes([i]) * size for i, size in enumerate(sizes))
    blocks = [VersionBlock(blake2sum(bytes([i])), s) for i, s in enumerate(sizes)]
    return blocks, data


def _offsets(blocks: list[VersionBlock]) -> list[int]:
    out, position = [], 0
    for block in blocks:
        out.append(position)
        position += block.size
    return out


@given(
    sizes=st.lists(st.integers(0, 40), max_size=8),
    bounds=st.tuples(st.integers(0, 400), st.integers(0, 400)),
)
def test_block_slices_cover_exactly_the_range(sizes: list[int], bounds: tuple[int, int]) -> None:
    blocks, data = _blocks(sizes)
    end = min(max(bounds), len(data))
    start = min(min(bounds), end)
    slices = block_slices(blocks, start, end)
    offsets = _offsets(blocks)
    position = {b.hash: p for b, p in zip(blocks, offsets, strict=True)}
    rebuilt = b"".join(data[position[s.hash] + s.start : position[s.hash] + s.end] for s in slices)
    assert rebuilt == data[start:end]
    assert all(0 <= s.start < s.end <= s.size for s in slices)  # never an empty slice
    # Only the blocks holding bytes of the range are fetched, in order.
    holding = [
        b.hash for b, p in zip(blocks, offsets, strict=True) if max(p, start) < min(p + b.size, end)
    ]
    assert [s.hash for s in slices] == holding


def test_block_slices_examples() -> None:
    blocks, _ = _blocks([10, 10, 5])
    h = [b.hash for b in blocks]
    assert block_slices(blocks, 0, 25) == [
        BlockSlice(h[0], 0, 10, 10),
        BlockSlice(h[1], 0, 10, 10),
        BlockSlice(h[2], 0, 5, 5),
    ]
    assert block_slices(blocks, 9, 11) == [BlockSlice(h[0], 9, 10, 10), BlockSlice(h[1], 0, 1, 10)]
    assert block_slices(blocks, 24, 25) == [BlockSlice(h[2], 4, 5, 5)]
    assert block_slices(blocks, 10, 10) == []


@given(parts=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=4), max_size=6))
def test_part_bounds(parts: list[list[int]]) -> None:
    version = Version.new(UUID, BACKLINK)
    for number, sizes in enumerate(parts, start=1):
        offset = 0
        for i, size in enumerate(sizes):
            block = VersionBlock(blake2sum(bytes([number, i])), size)
            version = version.with_block(number, offset, block)
            offset += size
    position = 0
    for number, sizes in enumerate(parts, start=1):
        assert part_bounds(version, number) == (position, position + sum(sizes))
        position += sum(sizes)
    assert part_bounds(version, len(parts) + 1) is None
    assert part_bounds(version, 0) is None


def test_part_bounds_with_a_missing_part_number() -> None:
    version = Version.new(UUID, BACKLINK)
    version = version.with_block(1, 0, VersionBlock(blake2sum(b"a"), 5))
    version = version.with_block(3, 0, VersionBlock(blake2sum(b"b"), 7))
    assert part_bounds(version, 1) == (0, 5)
    assert part_bounds(version, 2) is None
    assert part_bounds(version, 3) == (5, 12)

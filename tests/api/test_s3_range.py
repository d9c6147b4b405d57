"""Range, partNumber and x-amz-copy-source-range: tables from RFC 7233, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import (
    ByteRange,
    S3Error,
    check_range_or_part,
    format_content_range,
    parse_copy_source_range,
    parse_range_header,
    part_range,
)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        # RFC 7233 §2.1 examples, on a 10000-byte representation
        ("bytes=0-499", 10000, (0, 500)),
        ("bytes=500-999", 10000, (500, 1000)),
        ("bytes=-500", 10000, (9500, 10000)),
        ("bytes=9500-", 10000, (9500, 10000)),
        ("bytes=0-0", 10000, (0, 1)),
        ("bytes=-1", 10000, (9999, 10000)),
        # clamping
        ("bytes=0-99999", 10, (0, 10)),
        ("bytes=5-", 10, (5, 10)),
        ("bytes=-100", 10, (0, 10)),
        ("bytes=9-9", 10, (9, 10)),
        # tolerated spelling
        ("Bytes=1-2", 10, (1, 3)),
        (" bytes = 1-2 ", 10, (1, 3)),
        ("bytes= 1-2", 10, (1, 3)),
    ],
)
def test_single_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    assert parse_range_header(header, size) == ByteRange(*expected)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "items=0-1",  # another unit: ignored
        "bytes",  # no ranges
        "bytes=",
        "bytes=abc",
        "bytes=5-1",  # last < first: syntactically invalid, ignored
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=--1",
        "bytes=0-1,2-3",  # several ranges: whole object
        "bytes=0-1,100-200",  # one of several satisfiable: still whole object
        "bytes=0-1,",  # an empty spec makes the header invalid
    ],
)
def test_whole_object(header: str | None) -> None:
    assert parse_range_header(header, 10) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=-0", 10),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
        ("bytes=10-11,20-", 10),  # several, none satisfiable
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(S3Error) as e:
        parse_range_header(header, size)
    assert (e.value.status, e.value.code) == (416, "InvalidRange")
    assert e.value.headers == (("Content-Range", f"bytes */{size}"),)


sizes = st.integers(min_value=0, max_value=10_000)
offsets = st.integers(min_value=0, max_value=20_000)


@given(sizes, offsets, offsets | st.none())
def test_first_last_model(size: int, first: int, last: int | None) -> None:
    header = f"bytes={first}-" + ("" if last is None else str(last))
    if last is not None and last < first:
        assert parse_range_header(header, size) is None
        return
    if first >= size:
        with pytest.raises(S3Error):
            parse_range_header(header, size)
        return
    r = parse_range_header(header, size)
    assert r is not None
    end = size if last is None else min(last + 1, size)
    assert (r.start, r.end) == (first, end)
    # The same bytes Python slicing gives.
    data = bytes(range(256)) * (size // 256 + 1)
    assert data[:size][r.start : r.end] == data[:size][first:end]
    assert r.content_range(size) == f"bytes {first}-{end - 1}/{size}"


@given(sizes, offsets)
def test_suffix_model(size: int, suffix: int) -> None:
    header = f"bytes=-{suffix}"
    if suffix == 0 or size == 0:
        with pytest.raises(S3Error):
            parse_range_header(header, size)
        return
    r = parse_range_header(header, size)
    assert r == ByteRange(max(0, size - suffix), size)
    assert r.length == min(size, suffix)


@given(st.text(max_size=30), sizes)
def test_any_header_gives_a_range_inside_the_object_or_none_or_416(header: str, size: int) -> None:
    try:
        r = parse_range_header(header, size)
    except S3Error as e:
        code = e.code
    else:
        code = "ok"
        assert r is None or 0 <= r.start < r.end <= size
    assert code in ("ok", "InvalidRange")


def test_range_and_part_number_together_are_refused() -> None:
    check_range_or_part(None, 1)
    check_range_or_part("bytes=0-1", None)
    with pytest.raises(S3Error) as e:
        check_range_or_part("bytes=0-1", 1)
    assert (e.value.status, e.value.code) == (400, "InvalidRequest")


def test_part_ranges() -> None:
    parts = [5, 3, 0, 7]
    assert part_range(parts, 1) == ByteRange(0, 5)
    assert part_range(parts, 2) == ByteRange(5, 8)
    assert part_range(parts, 3) == ByteRange(8, 8)
    assert part_range(parts, 4) == ByteRange(8, 15)
    assert part_range([42], 1).content_range(42) == "bytes 0-41/42"
    for bad in (0, 5):
        with pytest.raises(S3Error) as e:
            part_range(parts, bad)
        assert (e.value.status, e.value.code) == (416, "InvalidPartNumber")


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20))
def test_parts_tile_the_object(sizes_: list[int]) -> None:
    end = 0
    for n, size in enumerate(sizes_, start=1):
        r = part_range(sizes_, n)
        assert (r.start, r.length) == (end, size)
        end = r.end
    assert end == sum(sizes_)


def test_content_range_needs_a_nonempty_range_inside_the_object() -> None:
    assert format_content_range(0, 1, 1) == "bytes 0-0/1"
    for start, end, size in [(0, 0, 0), (3, 3, 10), (0, 11, 10)]:
        with pytest.raises(ValueError, match="Content-Range"):
            format_content_range(start, end, size)
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(5, 4)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 1, (0, 1)),
        ("bytes=0-9", 10, (0, 10)),
        ("bytes=5242880-10485759", 20_000_000, (5242880, 10485760)),
    ],
)
def test_copy_source_range(header: str, size: int, expected: tuple[int, int]) -> None:
    assert parse_copy_source_range(header, size) == ByteRange(*expected)


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=0-10", 10),  # past the end
        ("bytes=5-4", 10),
        ("bytes=0-", 10),  # open ranges are not allowed here
        ("bytes=-5", 10),
        ("bytes=0-1,2-3", 10),
        ("0-1", 10),
        ("bytes=0-0", 0),
    ],
)
def test_copy_source_range_is_strict(header: str, size: int) -> None:
    with pytest.raises(S3Error) as e:
        parse_copy_source_range(header, size)
    assert (e.value.status, e.value.code) == (400, "InvalidArgument")

"""PollRange pieces: the seen marker, the range selection, key_after_prefix."""

from __future__ import annotations

import base64
import zlib

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from garage_model.helper import BadRequestError
from garage_model.k2v import (
    MAX_SEEN_MARKER_BYTES,
    InvalidSeenMarker,
    K2VItem,
    K2VItemPartition,
    PollRange,
    RangeSeenMarker,
    key_after_prefix,
)
from garage_util.data import FixedBytes32
from garage_util.encode import pack

BUCKET = FixedBytes32(b"\xb2" * 32)
PART = K2VItemPartition(BUCKET, "pk")
# Short keys over a small alphabet with the extremes of unicode, so that prefixes,
# bounds and the last code point meet often.
keys = st.text(alphabet="ab\x00\ud7ff\ue000\U0010ffff", max_size=4)
clocks = st.dictionaries(st.integers(1, 3), st.integers(1, 30), max_size=3)
markers = st.builds(
    RangeSeenMarker, clocks, st.dictionaries(st.text("abc", max_size=3), clocks, max_size=4)
)


def item(sk: str, *writes: tuple[int, int]) -> K2VItem:
    out = K2VItem.new(BUCKET, "pk", sk)
    for node, ts in writes:
        out, _ = out.update(node, None, b"v", ts)
    return out


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _zstd_streamed(data: bytes) -> bytes:
    """A frame without a content size in its header, as Rust's ``zstd::stream::encode_all``
    (Garage's marker encoder) writes it."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    return compressor.compress(data) + compressor.flush()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@given(markers)
def test_marker_round_trip(marker: RangeSeenMarker) -> None:
    token = RangeSeenMarker.decode(marker.encode())
    assert token == marker.canonicalize()
    raw = base64.b64decode(marker.encode(), validate=True)  # standard base64
    assert raw.startswith(b"\x28\xb5\x2f\xfd")  # one zstd frame (design 8.6)


def test_marker_wire_form_is_msgpack_in_zstd() -> None:
    """The token is base64 of a zstd frame of the msgpack map Garage's seen.rs writes
    (named fields, node ids as integer keys), and a frame as Rust's streaming encoder
    writes it (no content size) decodes as well."""
    marker = RangeSeenMarker({7: 40}, {"b": {7: 41, 9: 2}})
    frame = base64.b64decode(marker.encode(), validate=True)
    doc = {"vector_clock": {7: 40}, "items": {"b": {7: 41, 9: 2}}}
    raw = zstandard.ZstdDecompressor().decompress(frame)
    assert msgpack.unpackb(raw, strict_map_key=False) == doc
    garage_like = _b64(_zstd_streamed(pack(doc)))
    assert zstandard.frame_content_size(base64.b64decode(garage_like)) == -1  # unknown
    assert RangeSeenMarker.decode(garage_like) == marker


def test_a_zlib_marker_of_an_earlier_version_is_refused_clearly() -> None:
    """Markers used to be zlib streams: one of those is refused with a message that says
    so (not decoded: markers live from one poll to the next)."""
    old = _b64(zlib.compress(pack({"vector_clock": {7: 40}, "items": {}}), 6))
    with pytest.raises(InvalidSeenMarker, match=r"earlier version.*zlib"):
        RangeSeenMarker.decode(old)


_EMPTY = pack({"vector_clock": {}, "items": {}})


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!",
        "é",
        _b64(b"not zstd"),
        _b64(b"\x28\xb5\x2f\xfd" + b"corrupt frame"),
        _b64(_zstd(b"\xc1")),  # not msgpack
        _b64(_zstd(pack({"x": 1}))),  # not a marker
        _b64(_zstd(_EMPTY)[:-3]),  # truncated
        _b64(_zstd_streamed(_EMPTY)[:-3]),  # truncated, no content size to tell
        _b64(_zstd(_EMPTY) + b"x"),  # bytes after the frame
        _b64(_zstd(_EMPTY) * 2),  # two frames
        # Small tokens that would inflate past the limit (with and without a content size).
        _b64(_zstd(bytes(MAX_SEEN_MARKER_BYTES + 1))),
        _b64(_zstd_streamed(bytes(4 * MAX_SEEN_MARKER_BYTES))),
    ],
)
def test_bad_markers_are_refused(token: str) -> None:
    with pytest.raises(InvalidSeenMarker):
        RangeSeenMarker.decode(token)
    assert issubclass(InvalidSeenMarker, BadRequestError)


def test_marker_tracks_what_each_node_returned() -> None:
    a, b = item("a", (1, 10)), item("b", (1, 20), (2, 5))
    marker = RangeSeenMarker()
    assert marker.is_new_item(a)
    assert marker.is_new_item(b)
    # Node 1 returned both: everything of node 1 up to 21 is seen; b's write by node 2
    # stays recorded for b alone.
    marker = marker.mark_seen_node_items(1, [a, b])
    assert dict(marker.vector_clock) == {1: 21}
    assert {sk: dict(vc) for sk, vc in marker.canonicalize().items.items()} == {"b": {1: 21, 2: 6}}
    assert not marker.is_new_item(a)
    assert not marker.is_new_item(b)
    newer, _ = b.update(2, None, b"w", 6)
    assert marker.is_new_item(newer)
    c = item("c", (2, 3))
    assert marker.is_new_item(c)
    # Survives its token.
    again = RangeSeenMarker.decode(marker.encode())
    assert [again.is_new_item(i) for i in (a, b, newer, c)] == [False, False, True, True]


def test_restrict_drops_items_out_of_range() -> None:
    marker = RangeSeenMarker({}, {"aa": {1: 1}, "ab": {1: 1}, "b": {1: 1}})
    rng = PollRange(PART, prefix="a", start="ab")
    assert set(marker.restrict(rng).items) == {"ab"}


@given(keys)
def test_key_after_prefix_bounds_the_prefix(prefix: str) -> None:
    after = key_after_prefix(prefix)
    if after is None:
        assert set(prefix) <= {"\U0010ffff"}
        return
    assert after > prefix
    assert not after.startswith(prefix)
    after.encode()  # never a surrogate


@given(keys, st.lists(keys))
def test_key_after_prefix_is_above_every_key_with_the_prefix(
    prefix: str, others: list[str]
) -> None:
    after = key_after_prefix(prefix)
    for key in others:
        full = prefix + key
        if after is not None:
            assert full < after
        if key > prefix and not key.startswith(prefix) and after is not None:
            assert key >= after


@given(
    st.lists(keys, unique=True),
    st.one_of(st.none(), keys),
    st.one_of(st.none(), keys),
    st.one_of(st.none(), keys),
)
def test_a_scan_from_first_key_to_is_past_finds_the_range(
    all_keys: list[str], prefix: str | None, start: str | None, end: str | None
) -> None:
    rng = PollRange(PART, prefix=prefix, start=start, end=end)
    first = rng.first_key()
    found = []
    for key in sorted(all_keys):
        if first is not None and key < first:
            continue
        if rng.is_past(key):
            break
        if rng.matches_key(key):
            found.append(key)
    assert found == sorted(k for k in all_keys if rng.matches_key(k))


def test_poll_range_matches_its_partition_only() -> None:
    rng = PollRange(PART, prefix="a")
    assert rng.matches(item("ab"))
    assert not rng.matches(item("b"))
    other = K2VItem.new(BUCKET, "other", "ab")
    assert not rng.matches(other)

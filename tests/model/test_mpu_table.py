"""The multipart_upload row as it grows: its own codec against the generic encoding, the
fast merge and the memoized encodings and counts against the plain rules, the row cache,
and a big upload written part by part into a real table (sqlite, hooks, counters)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.model.test_cascade import BUCKET, drain, make_stack

from garage_model.bucket_table import UuidKey
from garage_model.s3 import (
    BYTES,
    PARTS,
    UPLOADS,
    ChecksumAlgorithm,
    ChecksumValue,
    MpuPart,
    MultipartUpload,
)
from garage_model.s3 import mpu_table as mpu_module
from garage_table.schema import EmptyKey
from garage_util.crdt import Bool, Map
from garage_util.data import FixedBytes32, Uuid, blake2sum
from garage_util.db import open_db
from garage_util.encode import from_wire, pack, to_wire
from garage_util.errors import DecodeError
from garage_util.testing import check_crdt_laws

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from garage_util.db import Db

UPLOAD_ID = FixedBytes32(b"\x40" * 32)
FIELDS = ("upload_id", "timestamp", "deleted", "parts", "bucket_id", "key")
PartsMap = Map[tuple[int, int], MpuPart]


def ident(n: int) -> Uuid:
    return FixedBytes32(n.to_bytes(4, "big") * 8)


def generic_bytes(row: MultipartUpload) -> bytes:
    """The row's bytes as the generic dataclass encoder writes them (field maps in
    declaration order, every field through ``to_wire``): the format on disk."""
    wire = {name: to_wire(getattr(row, name)) for name in FIELDS}
    packed: bytes = msgpack.packb(wire, use_bin_type=True)
    return MultipartUpload.VERSION_MARKER + packed


def plain_counts(row: MultipartUpload) -> dict[str, int]:
    """The counts by their definition (design §8.5), from the newest attempt of each number."""
    newest = row.newest_parts()
    return {
        UPLOADS: 0 if row.is_deleted else 1,
        PARTS: len(newest),
        BYTES: sum(part.size or 0 for _ts, part in newest.values()),
    }


def fresh(row: MultipartUpload) -> MultipartUpload:
    """An equal row with no memo."""
    return dataclasses.replace(row)


def row_of(parts: dict[tuple[int, int], MpuPart], *, key: str = "k") -> MultipartUpload:
    return MultipartUpload(UPLOAD_ID, 1, Bool(False), Map.from_items(parts), BUCKET, key)


# ------------------------------------------------------------------------------ strategies

checksums = st.builds(
    lambda algorithm, seed: ChecksumValue(algorithm, bytes([seed]) * algorithm.digest_size),
    st.sampled_from(ChecksumAlgorithm),
    st.integers(0, 255),
)
parts_values = st.builds(
    MpuPart,
    st.integers(0, 5).map(ident),
    st.none() | st.sampled_from(["a" * 32, "b" * 32, "e"]),
    st.none() | checksums,
    st.none() | st.integers(0, 2**40),
)
part_keys = st.tuples(st.integers(1, 30), st.integers(0, 4))
rows = st.dictionaries(part_keys, parts_values, max_size=40).map(row_of)
mutators = st.dictionaries(part_keys, parts_values, min_size=1, max_size=3).map(row_of)
deleted_rows = st.just(MultipartUpload.new(UPLOAD_ID, 1, BUCKET, "k", deleted=True))


def used(row: MultipartUpload) -> MultipartUpload:
    """``row`` with its memos built, as a row found again in the cache has them."""
    row.counts()
    row._packed_parts()
    return row


# ------------------------------------------------------------------------------ codec


@given(rows)
def test_the_codec_writes_the_generic_encoding(row: MultipartUpload) -> None:
    expected = generic_bytes(row)
    assert row.encode() == expected
    assert fresh(row).encode() == expected
    assert used(fresh(row)).encode() == expected  # framed around the memoized parts
    assert MultipartUpload.VERSION_MARKER + pack(row) == expected


@given(rows)
def test_the_codec_reads_the_generic_encoding(row: MultipartUpload) -> None:
    decoded = MultipartUpload.decode(generic_bytes(row))
    assert decoded == row
    assert decoded.encode() == generic_bytes(row)


@given(rows)
def test_parts_in_another_shape_decode_through_the_generic_decoder(row: MultipartUpload) -> None:
    # Fields left out (their defaults) and in another order: what an older or another
    # writer may have stored. The generic decoder accepts it; re-encoding is canonical.
    wire = {name: to_wire(getattr(row, name)) for name in reversed(FIELDS)}
    parts = wire["parts"]
    assert isinstance(parts, dict)
    for _key, fields in parts["vals"]:
        for name in ("etag", "checksum", "size"):
            if fields[name] is None:
                del fields[name]
        fields["version"] = fields.pop("version")
    data = MultipartUpload.VERSION_MARKER + msgpack.packb(wire, use_bin_type=True)
    decoded = MultipartUpload.decode(data)
    assert decoded == row
    assert decoded.encode() == generic_bytes(row)


def _wire(**changes: object) -> dict[str, object]:
    wire: dict[str, object] = {name: to_wire(getattr(row_of({}), name)) for name in FIELDS}
    wire.update(changes)
    return wire


def _part(number: int, ts: int = 1, **fields: object) -> list[object]:
    base: dict[str, object] = {
        "version": bytes(32),
        "etag": None,
        "checksum": None,
        "size": None,
    }
    base.update(fields)
    return [[number, ts], base]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([1, 2], "is a map"),
        (_wire(extra=1), "unknown: 'extra'"),
        ({k: v for k, v in _wire().items() if k != "key"}, "missing: key$"),
        (_wire(timestamp="1"), "timestamp"),
        (_wire(parts={"vals": [_part(2), _part(1)]}), "sorted"),
        (_wire(parts={"vals": [_part(1), _part(1)]}), "sorted"),
        (_wire(parts={"vals": [_part(1, etag=5)]}), "etag"),
        (_wire(parts={"vals": [_part(1, size=True)]}), "size"),
        (_wire(parts={"vals": [_part(1, version=b"short")]}), "version"),
        (_wire(parts={"vals": [_part(1, colour="red")]}), "colour"),
        (_wire(parts={"vals": [[[1], {"version": bytes(32)}]]}), "parts"),
        (
            _wire(parts={"vals": [_part(1, checksum={"algorithm": "CRC32", "value": b"x"})]}),
            "checksum",
        ),
        (
            _wire(parts={"vals": [_part(1, checksum={"algorithm": "MD4", "value": b"xxxx"})]}),
            "MD4",
        ),
    ],
)
def test_bad_rows_do_not_decode(wire: object, message: str) -> None:
    data = MultipartUpload.VERSION_MARKER + msgpack.packb(wire, use_bin_type=True)
    with pytest.raises(DecodeError, match=message):
        MultipartUpload.decode(data)


# ------------------------------------------------------------------------------ merge


@given(rows | deleted_rows, rows | deleted_rows, rows | deleted_rows)
def test_multipart_upload_is_still_a_crdt(
    a: MultipartUpload, b: MultipartUpload, c: MultipartUpload
) -> None:
    check_crdt_laws(a, b, c)
    check_crdt_laws(used(fresh(a)), used(fresh(b)), used(fresh(c)))


@given(rows, mutators, st.booleans(), st.booleans())
def test_merging_a_few_attempts_is_the_plain_merge(
    row: MultipartUpload, mutator: MultipartUpload, memo: bool, swap: bool
) -> None:
    base = used(fresh(row)) if memo else fresh(row)
    merged = mutator.merge(base) if swap else base.merge(mutator)
    expected_parts: PartsMap = row.parts.merge(mutator.parts)
    assert merged.parts == expected_parts
    assert merged == row_of(dict(expected_parts.vals))
    assert merged.counts() == plain_counts(merged)  # updated from the memo, if any
    assert merged.encode() == generic_bytes(merged)
    assert base == row  # untouched, memos included
    assert base.encode() == generic_bytes(row)
    assert base.counts() == plain_counts(row)


@given(rows, st.lists(mutators, min_size=1, max_size=6))
def test_a_row_merged_into_many_times_keeps_true_memos(
    row: MultipartUpload, mutators: list[MultipartUpload]
) -> None:
    current = used(fresh(row))
    for mutator in mutators:
        current = current.merge(mutator)
        assert current.counts() == plain_counts(fresh(current))
        assert current.encode() == generic_bytes(fresh(current))


@given(rows, st.integers(0, 31), st.integers(0, 10))
def test_next_timestamp_follows_every_attempt_of_the_number(
    row: MultipartUpload, number: int, now_ms: int
) -> None:
    attempts = [ts for (n, ts), _part in row.parts.items() if n == number]
    ts = row.next_timestamp(number, now_ms)
    assert ts >= now_ms
    assert all(ts > previous for previous in attempts)
    assert ts == (max(attempts) + 1 if attempts and max(attempts) >= now_ms else now_ms)


# ------------------------------------------------------------------------------ cache


def big_row(n_parts: int, *, key: str = "k", size: int | None = 10) -> MultipartUpload:
    return row_of(
        {(n, 100 + n): MpuPart(ident(n), "0" * 32, None, size) for n in range(1, n_parts + 1)},
        key=key,
    )


def test_a_big_row_decodes_to_the_row_that_encoded_it() -> None:
    row = big_row(200, key="cache-1")
    data = row.encode()
    decoded = MultipartUpload.decode(bytes(bytearray(data)))  # other bytes object, equal
    assert decoded is row
    assert decoded._packed is not None  # used again: its parts keep their encodings


def test_a_small_row_is_decoded_each_time() -> None:
    row = big_row(3, key="cache-2")
    data = row.encode()
    decoded = MultipartUpload.decode(data)
    assert decoded == row
    assert decoded is not row
    assert MultipartUpload.decode(data) is not decoded


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = mpu_module._RowCache(min_bytes=10, max_rows=2, max_bytes=1000)
    rows = {name: row_of({}, key=name) for name in ("a", "b", "c", "big")}
    data = {name: row.encode() for name, row in rows.items()}
    cache.put(b"tiny", rows["a"])
    assert cache.get(b"tiny") is None  # below min_bytes
    cache.put(data["a"], rows["a"])
    cache.put(data["b"], rows["b"])
    assert cache.get(data["a"]) is rows["a"]  # a is now the most recently used
    cache.put(data["c"], rows["c"])
    assert cache.get(data["b"]) is None
    assert cache.get(data["a"]) is rows["a"]
    assert cache.get(data["c"]) is rows["c"]
    cache.put(b"x" * 1001, rows["big"])  # more than max_bytes on its own
    assert cache.get(b"x" * 1001) is None
    small = mpu_module._RowCache(min_bytes=10, max_rows=10, max_bytes=2 * len(data["a"]))
    for name in ("a", "b", "c"):
        small.put(data[name], rows[name])
    assert [small.get(data[name]) is not None for name in ("a", "b", "c")] == [
        False,
        True,
        True,
    ]
    small.clear()
    assert small.get(data["c"]) is None


# ------------------------------------------------------------------------------ a real table


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with open_db(tmp_path / "meta", "sqlite") as opened:
        yield opened


def test_a_big_upload_written_part_by_part_into_a_table(db: Db) -> None:
    """What every replica does for each UploadPart (§10.6): merge the unfinished attempt,
    then the finished one, into its stored row; some parts are retried, and the cache is
    emptied halfway (a restart). The stored bytes, the Merkle hash and the counters must
    be those of the plain rules."""
    stack = make_stack(db)
    mpu = MultipartUpload.new(UPLOAD_ID, 1, BUCKET, "big")
    stack.mpus.update_entry(mpu.encode())
    expected: dict[tuple[int, int], MpuPart] = {}
    attempts = [(n, 10) for n in range(1, 401)] + [(7, 11), (300, 12), (7, 13)]
    for i, (number, ts) in enumerate(attempts):
        if i == 250:
            mpu_module._ROWS.clear()
        version = ident(10_000 + i)
        started = MpuPart(version)
        stack.mpus.update_entry(mpu.with_part(number, ts, started).encode())
        done = MpuPart(version, f"{i:032x}", None, 1000 + i)
        stack.mpus.update_entry(mpu.with_part(number, ts, done).encode())
        expected[(number, ts)] = done
    want = row_of(expected, key="big")
    raw = stack.mpus.read_entry(UuidKey(UPLOAD_ID), EmptyKey())
    assert raw == generic_bytes(want)
    mpu_module._ROWS.clear()
    assert MultipartUpload.decode(raw) == want
    tree_key = stack.mpus.tree_key(UuidKey(UPLOAD_ID), EmptyKey())
    assert stack.mpus.merkle_todo.get(tree_key) == bytes(blake2sum(raw))
    drain(stack.mpu_counter.counter_data)
    assert stack.counter_row(stack.mpu_counter) == plain_counts(want)
    assert plain_counts(want) == {
        UPLOADS: 1,
        PARTS: 400,
        BYTES: sum(1000 + i for i in range(400) if i + 1 not in (7, 300)) + 1402 + 1401,
    }


def test_parts_and_decoding_agree_with_the_generic_decoder() -> None:
    row = big_row(150, key="generic")
    obj = msgpack.unpackb(
        generic_bytes(row)[len(MultipartUpload.VERSION_MARKER) :], raw=False, use_list=True
    )
    parts: PartsMap = from_wire(Map[tuple[int, int], MpuPart], obj["parts"])
    assert parts == row.parts
    assert from_wire(MultipartUpload, obj) == row

"""The S3 table entries as values: CRDT laws, the merge rules of design §8.2, counts, encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.bucket_table import UuidKey
from garage_model.index_counter import CounterEntry, CounterFilter, CounterSchema
from garage_model.s3 import (
    BYTES,
    OBJECTS,
    PARTS,
    UNFINISHED_UPLOADS,
    UPLOADS,
    Aborted,
    BlockRef,
    ChecksumAlgorithm,
    ChecksumValue,
    Complete,
    DeleteMarker,
    FirstBlock,
    Inline,
    MpuBacklink,
    MpuPart,
    MultipartUpload,
    Object,
    ObjectBacklink,
    ObjectFilter,
    ObjectVersion,
    ObjectVersionData,
    ObjectVersionEncryption,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    ObjectVersionState,
    Plaintext,
    SseC,
    Uploading,
    Version,
    VersionBacklink,
    VersionBlock,
)
from garage_table.schema import DeletedFilter, EmptyKey
from garage_util.crdt import Bool, Lww, Map
from garage_util.data import FixedBytes32, Uuid
from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError
from garage_util.testing import check_crdt_laws

# ------------------------------------------------------------------------------ strategies


def ident(n: int) -> Uuid:
    return FixedBytes32(bytes([n]) * 32)


BUCKET = ident(0xB0)
VERSION_ID = ident(0x70)
UPLOAD_ID = ident(0x40)
BLOCK = ident(0xBB)

#: A few ids, so that draws collide (same version in two objects, same part version...).
ids = st.sampled_from([ident(i) for i in range(1, 4)])
small_ts = st.integers(min_value=0, max_value=3)
small_text = st.sampled_from(["", "a", "b", "content-type"])

checksums = st.sampled_from(list(ChecksumAlgorithm)).flatmap(
    lambda algo: st.builds(
        ChecksumValue,
        st.just(algo),
        st.binary(min_size=algo.digest_size, max_size=algo.digest_size),
    )
)
meta_inners = st.builds(
    ObjectVersionMetaInner,
    st.lists(st.tuples(small_text, small_text), max_size=2).map(tuple),
    st.none() | checksums,
)
encryptions: st.SearchStrategy[ObjectVersionEncryption] = st.one_of(
    st.builds(Plaintext, meta_inners),
    st.builds(SseC, st.binary(max_size=4), st.booleans()),
)
metas = st.builds(
    ObjectVersionMeta, st.integers(min_value=0, max_value=1000), small_text, encryptions
)
datas: st.SearchStrategy[ObjectVersionData] = st.one_of(
    st.just(DeleteMarker()),
    st.builds(Inline, metas, st.binary(max_size=4)),
    st.builds(FirstBlock, metas, ids),
)
states: st.SearchStrategy[ObjectVersionState] = st.one_of(
    st.builds(
        Uploading, st.booleans(), st.none() | st.sampled_from(ChecksumAlgorithm), encryptions
    ),
    st.builds(Complete, datas),
    st.builds(Aborted, st.booleans()),
)
object_versions = st.builds(ObjectVersion, ids, small_ts, states)
objects = st.lists(object_versions, max_size=4).map(lambda vs: Object.new(BUCKET, "k", vs))

backlinks: st.SearchStrategy[VersionBacklink] = st.one_of(
    st.builds(ObjectBacklink, ids, small_text), st.builds(MpuBacklink, ids)
)
version_blocks = st.builds(VersionBlock, ids, st.integers(min_value=0, max_value=3))


@st.composite
def versions(draw: st.DrawFn) -> Version:
    deleted = draw(st.booleans())
    blocks: Map[tuple[int, int], VersionBlock] = Map()
    if not deleted:
        keys = st.tuples(st.integers(0, 2), st.integers(0, 2))
        blocks = Map.from_items(draw(st.dictionaries(keys, version_blocks, max_size=4)))
    return Version(VERSION_ID, Bool(deleted), blocks, draw(backlinks))


block_refs = st.booleans().map(lambda d: BlockRef.new(BLOCK, VERSION_ID, deleted=d))

mpu_parts = st.builds(
    MpuPart,
    ids,
    st.none() | small_text,
    st.none() | checksums,
    st.none() | st.integers(min_value=0, max_value=300),
)


@st.composite
def mpus(draw: st.DrawFn) -> MultipartUpload:
    deleted = draw(st.booleans())
    parts: Map[tuple[int, int], MpuPart] = Map()
    if not deleted:
        keys = st.tuples(st.integers(1, 3), small_ts)
        parts = Map.from_items(draw(st.dictionaries(keys, mpu_parts, max_size=4)))
    return MultipartUpload(
        UPLOAD_ID,
        draw(small_ts),
        Bool(deleted),
        parts,
        draw(st.sampled_from([ident(0xB0), ident(0xB1)])),
        draw(small_text),
    )


counter_entries: st.SearchStrategy[CounterEntry[UuidKey, EmptyKey]] = st.builds(
    CounterEntry,
    st.just(UuidKey(BUCKET)),
    st.just(EmptyKey()),
    st.dictionaries(
        st.sampled_from(["objects", "bytes"]),
        st.dictionaries(ids, st.builds(Lww, small_ts, st.integers(-2, 2)), max_size=3).map(
            Map.from_items
        ),
        max_size=2,
    ).map(Map.from_items),
)

COUNTER_SCHEMA = CounterSchema("bucket_object_counter", UuidKey, EmptyKey)


# ------------------------------------------------------------------------------ laws


@given(objects, objects, objects)
def test_object_is_a_crdt(a: Object, b: Object, c: Object) -> None:
    check_crdt_laws(a, b, c)


@given(versions(), versions(), versions())
def test_version_is_a_crdt(a: Version, b: Version, c: Version) -> None:
    check_crdt_laws(a, b, c)


@given(block_refs, block_refs, block_refs)
def test_block_ref_is_a_crdt(a: BlockRef, b: BlockRef, c: BlockRef) -> None:
    check_crdt_laws(a, b, c)


@given(mpus(), mpus(), mpus())
def test_multipart_upload_is_a_crdt(
    a: MultipartUpload, b: MultipartUpload, c: MultipartUpload
) -> None:
    check_crdt_laws(a, b, c)


@given(mpu_parts, mpu_parts, mpu_parts)
def test_mpu_part_is_a_crdt(a: MpuPart, b: MpuPart, c: MpuPart) -> None:
    check_crdt_laws(a, b, c)


@given(counter_entries, counter_entries, counter_entries)
def test_counter_entry_is_a_crdt(
    a: CounterEntry[UuidKey, EmptyKey],
    b: CounterEntry[UuidKey, EmptyKey],
    c: CounterEntry[UuidKey, EmptyKey],
) -> None:
    check_crdt_laws(a, b, c)


# ------------------------------------------------------------------------------ encoding


@given(objects)
def test_object_roundtrips(obj: Object) -> None:
    assert Object.decode(obj.encode()) == obj


@given(versions())
def test_version_roundtrips(version: Version) -> None:
    assert Version.decode(version.encode()) == version


@given(block_refs)
def test_block_ref_roundtrips(ref: BlockRef) -> None:
    assert BlockRef.decode(ref.encode()) == ref


@given(mpus())
def test_multipart_upload_roundtrips(mpu: MultipartUpload) -> None:
    assert MultipartUpload.decode(mpu.encode()) == mpu


@given(counter_entries)
def test_counter_entry_roundtrips_through_its_schema(
    entry: CounterEntry[UuidKey, EmptyKey],
) -> None:
    assert COUNTER_SCHEMA.decode_entry(entry.encode()) == entry


@given(meta_inners)
def test_meta_inner_roundtrips_on_its_own(inner: ObjectVersionMetaInner) -> None:
    encoded = inner.encode()
    assert encoded.startswith(ObjectVersionMetaInner.VERSION_MARKER)
    assert ObjectVersionMetaInner.decode(encoded) == inner


def test_tagged_unions_encode_as_serde_externally_tagged_enums() -> None:
    assert pack(DeleteMarker()) == pack("DeleteMarker")
    assert pack(Aborted()) == pack({"Aborted": {"completed": False}})
    assert pack(MpuBacklink(UPLOAD_ID)) == pack({"MultipartUpload": {"upload_id": UPLOAD_ID}})
    assert unpack(ObjectVersionData, pack("DeleteMarker")) == DeleteMarker()
    assert unpack(VersionBacklink, pack(ObjectBacklink(BUCKET, "k"))) == ObjectBacklink(BUCKET, "k")


@pytest.mark.parametrize(
    ("tp", "wire"),
    [
        (ObjectVersionData, "Nope"),
        (ObjectVersionData, "Aborted"),  # a variant of another union
        (ObjectVersionData, {"Inline": {"meta": 1, "data": b""}}),
        (ObjectVersionData, {"FirstBlock": {"first_block_hash": b"x" * 32}}),  # no meta
        (ObjectVersionState, {"Complete": {"data": "DeleteMarker", "extra": 1}}),
        (ObjectVersionState, ["Complete"]),
        (VersionBacklink, {"Object": {"bucket_id": b"short", "key": "k"}}),
        (VersionBacklink, {"Bucket": {}}),
    ],
)
def test_invalid_tagged_values_are_refused(tp: object, wire: object) -> None:
    with pytest.raises(DecodeError):
        unpack(tp, pack(wire))


def test_object_filters_travel_and_match() -> None:
    for f in (ObjectFilter.IS_DATA, ObjectFilter.IS_UPLOADING, ObjectFilter.uploading(True)):
        assert unpack(ObjectFilter, pack(f)) == f
    plain = Object.new(BUCKET, "k", [ObjectVersion(ident(1), 1, uploading(multipart=False))])
    multi = Object.new(BUCKET, "k", [ObjectVersion(ident(1), 1, uploading(multipart=True))])
    data = Object.new(BUCKET, "k", [ObjectVersion(ident(1), 1, complete(10))])
    assert [ObjectFilter.IS_DATA.matches(o) for o in (plain, multi, data)] == [False, False, True]
    assert [ObjectFilter.IS_UPLOADING.matches(o) for o in (plain, multi, data)] == [
        True,
        True,
        False,
    ]
    assert [ObjectFilter.uploading(True).matches(o) for o in (plain, multi)] == [False, True]
    assert [ObjectFilter.uploading(False).matches(o) for o in (plain, multi)] == [True, False]


def test_checksum_value_length_is_checked() -> None:
    ChecksumValue(ChecksumAlgorithm.SHA256, bytes(32))
    with pytest.raises(ValueError, match="CRC32 checksum has 4 bytes, not 5"):
        ChecksumValue(ChecksumAlgorithm.CRC32, bytes(5))


# ------------------------------------------------------------------------------ object rules


PLAIN = Plaintext(ObjectVersionMetaInner())


def uploading(*, multipart: bool = False) -> Uploading:
    return Uploading(multipart, None, PLAIN)


def complete(size: int) -> Complete:
    return Complete(Inline(ObjectVersionMeta(size, f"etag{size}", PLAIN), b"x" * size))


def obj(*versions: ObjectVersion) -> Object:
    return Object.new(BUCKET, "k", versions)


def test_a_newer_complete_version_drops_the_older_ones() -> None:
    v1 = ObjectVersion(ident(1), 10, complete(1))
    v2 = ObjectVersion(ident(2), 20, uploading())
    v3 = ObjectVersion(ident(3), 30, complete(3))
    v4 = ObjectVersion(ident(4), 40, uploading())
    assert obj(v1, v2).versions == (v1, v2)  # an upload after a complete version is kept
    assert obj(v1, v2).merge(obj(v3, v4)).versions == (v3, v4)
    assert obj(v3).merge(obj(v1, v2)).versions == (v3,)  # late arrivals stay dropped


def test_an_older_complete_version_does_not_drop_newer_uploads() -> None:
    v1 = ObjectVersion(ident(1), 10, uploading())
    v2 = ObjectVersion(ident(2), 5, complete(2))
    assert obj(v1).merge(obj(v2)).versions == (v2, v1)


def test_versions_are_ordered_by_timestamp_then_uuid() -> None:
    a = ObjectVersion(ident(2), 10, uploading())
    b = ObjectVersion(ident(1), 10, uploading())
    c = ObjectVersion(ident(3), 5, uploading())
    assert obj(a, b, c).versions == (c, b, a)
    with pytest.raises(ValueError, match="sorted"):
        Object(BUCKET, "k", (a, b))


def test_state_merge_rules() -> None:
    up, done, gone = uploading(), complete(1), Aborted()
    assert up.merge(done) == done
    assert done.merge(up) == done
    assert up.merge(gone) == Aborted(completed=False)  # Aborted absorbs
    assert done.merge(gone) == Aborted(completed=True) == gone.merge(done)
    assert Aborted(completed=True).merge(up) == Aborted(completed=True)
    bigger, smaller = sorted([complete(1), complete(2)], key=pack, reverse=True)
    assert smaller.merge(bigger) == bigger == bigger.merge(smaller)


def test_a_completed_then_aborted_version_still_drops_older_versions() -> None:
    # The counterexample to associativity of a merge that forgets completion on abort.
    old = obj(ObjectVersion(ident(1), 10, uploading()))
    done = obj(ObjectVersion(ident(2), 20, complete(1)))
    aborted = obj(ObjectVersion(ident(2), 20, Aborted()))
    left = old.merge(done).merge(aborted)
    right = old.merge(done.merge(aborted))
    assert left == right
    assert left.versions == (ObjectVersion(ident(2), 20, Aborted(completed=True)),)


def test_merge_of_different_objects_is_refused() -> None:
    with pytest.raises(ValueError, match="different objects"):
        obj().merge(Object.new(BUCKET, "other"))


def test_tombstone_is_exactly_one_delete_marker() -> None:
    marker = ObjectVersion(ident(2), 20, Complete(DeleteMarker()))
    assert obj(marker).is_tombstone()
    assert not obj(marker, ObjectVersion(ident(3), 30, uploading())).is_tombstone()
    assert not obj(ObjectVersion(ident(1), 10, complete(1))).is_tombstone()
    assert not obj().is_tombstone()


def test_object_helpers_and_counts() -> None:
    data = ObjectVersion(ident(1), 10, complete(7))
    up = ObjectVersion(ident(2), 20, uploading(multipart=True))
    o = obj(data, up)
    assert o.last_complete_version() == data
    assert o.is_data()
    assert up.is_uploading()
    assert up.is_uploading(True)
    assert not up.is_uploading(False)
    assert data.meta() == ObjectVersionMeta(7, "etag7", PLAIN)
    assert o.counts() == {OBJECTS: 1, UNFINISHED_UPLOADS: 1, BYTES: 7}
    deleted = o.merge(obj(ObjectVersion(ident(3), 30, Complete(DeleteMarker()))))
    assert not deleted.is_data()
    assert deleted.counts() == {OBJECTS: 0, UNFINISHED_UPLOADS: 0, BYTES: 0}
    assert obj(up).counts() == {OBJECTS: 0, UNFINISHED_UPLOADS: 1, BYTES: 0}


# ------------------------------------------------------------------------------ other entries


def test_deleted_version_clears_its_blocks() -> None:
    link = ObjectBacklink(BUCKET, "k")
    live = Version.new(VERSION_ID, link).with_block(1, 0, VersionBlock(BLOCK, 10))
    merged = live.merge(Version.new(VERSION_ID, link, deleted=True))
    assert merged.is_deleted
    assert merged.is_tombstone()
    assert merged.blocks == Map()
    assert merged.with_block(2, 0, VersionBlock(BLOCK, 1)) == merged  # stays empty
    with pytest.raises(ValueError, match="deleted version has no blocks"):
        Version(VERSION_ID, Bool(True), live.blocks, link)


def test_version_part_helpers() -> None:
    v = Version.new(VERSION_ID, MpuBacklink(UPLOAD_ID))
    with pytest.raises(ValueError, match="no parts"):
        v.n_parts()
    for part, offset in [(1, 0), (1, 100), (3, 0)]:
        v = v.with_block(part, offset, VersionBlock(BLOCK, 100))
    assert v.n_parts() == 3
    assert [v.has_part_number(n) for n in range(5)] == [False, True, False, True, False]


def test_block_ref_deleted_wins() -> None:
    live, dead = BlockRef.new(BLOCK, VERSION_ID), BlockRef.new(BLOCK, VERSION_ID, deleted=True)
    assert live.merge(dead) == dead == dead.merge(live)
    assert dead.is_tombstone()
    assert not live.is_tombstone()


def test_mpu_part_fields_take_the_greater_known_value() -> None:
    crc = ChecksumValue(ChecksumAlgorithm.CRC32, b"abcd")
    started = MpuPart(ident(1))
    done = MpuPart(ident(1), "etag", crc, 100)
    assert started.merge(done) == done == done.merge(started)
    assert MpuPart(ident(1), "a", None, 5).merge(MpuPart(ident(1), "b", None, 3)) == MpuPart(
        ident(1), "b", None, 5
    )


def test_deleted_upload_clears_its_parts_and_counts_nothing() -> None:
    mpu = MultipartUpload.new(UPLOAD_ID, 1, BUCKET, "k")
    mpu = mpu.with_part(1, 10, MpuPart(ident(1), "e1", None, 100))
    mpu = mpu.with_part(1, 20, MpuPart(ident(2), "e2", None, 150))  # retried part 1
    mpu = mpu.with_part(2, 15, MpuPart(ident(3)))  # still uploading
    assert mpu.counts() == {UPLOADS: 1, PARTS: 2, BYTES: 150}
    assert mpu.next_timestamp(1, now_ms=5) == 21
    assert mpu.next_timestamp(4, now_ms=5) == 5
    deleted = mpu.merge(MultipartUpload.new(UPLOAD_ID, 1, BUCKET, "k", deleted=True))
    assert deleted.is_tombstone()
    assert deleted.parts == Map()
    assert deleted.counts() == {UPLOADS: 0, PARTS: 0, BYTES: 0}


def test_counter_entry_merges_per_node_and_reads_the_max_of_storage_nodes() -> None:
    def entry(node: Uuid, ts: int, value: int) -> CounterEntry[UuidKey, EmptyKey]:
        return CounterEntry(
            UuidKey(BUCKET), EmptyKey(), Map.from_items({"objects": Map(((node, Lww(ts, value)),))})
        )

    merged = entry(ident(1), 5, 3).merge(entry(ident(1), 4, 100)).merge(entry(ident(2), 1, 2))
    assert merged.node_values(ident(1)) == {"objects": (5, 3)}  # the newer report wins
    assert merged.filtered_values([ident(1), ident(2)]) == {"objects": 3}
    assert merged.filtered_values([ident(2), ident(3)]) == {"objects": 2}
    assert merged.filtered_values([ident(3)]) == {}
    schema = COUNTER_SCHEMA
    zero = entry(ident(1), 9, 0)
    assert schema.matches_filter(zero, CounterFilter(DeletedFilter.DELETED, (ident(1),)))
    assert not schema.matches_filter(merged, CounterFilter(DeletedFilter.DELETED, (ident(1),)))
    assert schema.matches_filter(merged, CounterFilter())
    assert unpack(CounterFilter, pack(CounterFilter(DeletedFilter.NOT_DELETED, (ident(1),)))) == (
        CounterFilter(DeletedFilter.NOT_DELETED, (ident(1),))
    )

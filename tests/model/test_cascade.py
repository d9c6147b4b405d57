"""The deletion cascade and the index counters, on real tables in a real sqlite db.

One node stores everything (a static replication). The insert queues are drained by hand:
each queued entry is applied locally with ``TableData.update_entry``, which is what the
insert queue worker's quorum insert does on every storage node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from tests.table.conftest import StaticReplication, node_id

from garage_model.block import BlockRc, RcEntry
from garage_model.bucket_table import UuidKey
from garage_model.index_counter import LOCAL_COUNTER_TREE_PREFIX, CounterSchema, IndexCounter
from garage_model.s3 import (
    BYTES,
    MPU_COUNTER_TABLE,
    OBJECT_COUNTER_TABLE,
    OBJECTS,
    PARTS,
    UNFINISHED_UPLOADS,
    UPLOADS,
    Aborted,
    BlockRef,
    BlockRefSchema,
    Complete,
    DeleteMarker,
    FirstBlock,
    MpuBacklink,
    MpuPart,
    MpuSchema,
    MultipartUpload,
    Object,
    ObjectBacklink,
    ObjectSchema,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    Plaintext,
    Uploading,
    Version,
    VersionBlock,
    VersionSchema,
    count_live_refs,
)
from garage_table import TableData
from garage_table.schema import EmptyKey, StringKey, TableEntry
from garage_util.data import FixedBytes32, Hash, Uuid
from garage_util.db import Db, Transaction, open_db
from garage_util.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NODE = node_id(1)
NOW_MS = 1_000_000
BUCKET = FixedBytes32(b"\xb0" * 32)
PLAIN = Plaintext(ObjectVersionMetaInner((("content-type", "text/plain"),)))


def ident(n: int) -> Uuid:
    return FixedBytes32(bytes([n]) * 32)


class RcHooks:
    """The block_ref hooks, straight onto the block refcount tree."""

    def __init__(self, rc: BlockRc) -> None:
        self.rc = rc

    def block_incref(self, tx: Transaction, hash: Hash) -> None:
        self.rc.incref(tx, hash)

    def block_decref(self, tx: Transaction, hash: Hash) -> None:
        self.rc.decref(tx, hash, NOW_MS)


@dataclass
class Stack:
    db: Db
    rc: BlockRc
    block_refs: TableData[BlockRef]
    versions: TableData[Version]
    mpus: TableData[MultipartUpload]
    objects: TableData[Object]
    object_counter: IndexCounter[UuidKey, EmptyKey]
    mpu_counter: IndexCounter[UuidKey, EmptyKey]

    def counter_row(self, counter: IndexCounter[UuidKey, EmptyKey]) -> dict[str, int]:
        """The cluster-wide counters of BUCKET, as stored in the counter table."""
        raw = counter.counter_data.read_entry(UuidKey(BUCKET), EmptyKey())
        return {} if raw is None else counter.counter_data.decode_entry(raw).filtered_values([NODE])


def table_data(schema: Any, db: Db) -> Any:
    return TableData(schema, StaticReplication([NODE]), db, node_id=NODE, clock_ms=lambda: NOW_MS)


def make_stack(db: Db, object_schema: type[ObjectSchema] = ObjectSchema) -> Stack:
    rc = BlockRc(db)
    block_refs = table_data(BlockRefSchema(RcHooks(rc)), db)
    versions = table_data(VersionSchema(block_refs), db)
    counters = {
        name: IndexCounter(
            name,
            db,
            table_data(CounterSchema(name, UuidKey, EmptyKey), db),
            NODE,
            clock_ms=lambda: NOW_MS,
        )
        for name in (OBJECT_COUNTER_TABLE, MPU_COUNTER_TABLE)
    }
    mpus = table_data(MpuSchema(versions, counters[MPU_COUNTER_TABLE]), db)
    objects = table_data(object_schema(versions, mpus, counters[OBJECT_COUNTER_TABLE]), db)
    return Stack(
        db,
        rc,
        block_refs,
        versions,
        mpus,
        objects,
        counters[OBJECT_COUNTER_TABLE],
        counters[MPU_COUNTER_TABLE],
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with open_db(tmp_path / "meta", "sqlite") as opened:
        yield opened


@pytest.fixture
def stack(db: Db) -> Stack:
    return make_stack(db)


def queued(data: TableData[Any]) -> list[Any]:
    """The entries waiting in a table's insert queue, decoded."""
    return [data.decode_entry(raw) for _key, raw in data.insert_queue.iter()]


def drain(data: TableData[Any]) -> list[Any]:
    """Applies a table's queued entries locally and empties its queue; returns them."""
    items = list(data.insert_queue.iter())
    applied = [data.decode_entry(raw) for _key, raw in items]
    for _key, raw in items:
        data.update_entry(raw)

    def remove(tx: Transaction) -> None:
        for key, _raw in items:
            tx.remove(data.insert_queue, key)

    data.db.transaction(remove)
    return applied


def put(data: TableData[Any], entry: TableEntry[Any, Any]) -> None:
    data.update_entry(entry.encode())


def complete(size: int, first_block: Hash) -> Complete:
    meta = ObjectVersionMeta(size, f"etag-{size}", PLAIN)
    return Complete(FirstBlock(meta, first_block))


def store_version(stack: Stack, uuid: Uuid, blocks: list[Hash], key: str = "k") -> None:
    """What a PUT does before completing: the version row and a live ref per block."""
    version = Version.new(uuid, ObjectBacklink(BUCKET, key))
    for i, h in enumerate(blocks):
        version = version.with_block(0, i * 1000, VersionBlock(h, 1000))
        put(stack.block_refs, BlockRef.new(h, uuid))
    put(stack.versions, version)


def obj(*versions: ObjectVersion) -> Object:
    return Object.new(BUCKET, "k", versions)


# ------------------------------------------------------------------------------ cascade


def test_overwriting_an_object_queues_the_deletion_of_the_old_version(stack: Stack) -> None:
    v1 = ObjectVersion(ident(1), 10, complete(1000, ident(0xA1)))
    v2 = ObjectVersion(ident(2), 20, complete(2000, ident(0xA2)))
    put(stack.objects, obj(v1))
    assert queued(stack.versions) == []
    put(stack.objects, obj(v2))
    assert queued(stack.versions) == [
        Version.new(ident(1), ObjectBacklink(BUCKET, "k"), deleted=True)
    ]
    assert queued(stack.mpus) == []


def test_cascade_goes_down_to_block_refcounts(stack: Stack) -> None:
    shared, own = ident(0xA1), ident(0xA2)
    store_version(stack, ident(1), [own, shared])
    store_version(stack, ident(9), [shared], key="other")  # another object uses `shared`
    assert stack.rc.get(own) == RcEntry(1)
    assert stack.rc.get(shared) == RcEntry(2)
    put(stack.objects, obj(ObjectVersion(ident(1), 10, complete(2000, own))))
    put(stack.objects, obj(ObjectVersion(ident(2), 20, Complete(DeleteMarker()))))

    # object -> version: the old version is marked deleted and loses its blocks.
    assert [v.uuid for v in drain(stack.versions)] == [ident(1)]
    raw = stack.versions.read_entry(UuidKey(ident(1)), EmptyKey())
    assert raw is not None
    stored = stack.versions.decode_entry(raw)
    assert stored.is_deleted
    assert len(stored.blocks) == 0
    # version -> block_ref: one deleted ref per block of the version.
    assert sorted(r.block for r in queued(stack.block_refs)) == sorted([own, shared])
    assert all(r.is_deleted and r.version == ident(1) for r in queued(stack.block_refs))
    assert stack.rc.get(own) == RcEntry(1)  # nothing is released before the refs change
    # block_ref -> refcounts, in the block_ref write's own transaction.
    drain(stack.block_refs)
    assert stack.rc.get(own) == RcEntry(0, NOW_MS + 10 * 60 * 1000)
    assert stack.rc.get(shared) == RcEntry(1)
    assert count_live_refs(stack.block_refs, own) == 0
    assert count_live_refs(stack.block_refs, shared) == 1
    # Applying the same cascade again (another replica's copy) changes nothing.
    put(stack.block_refs, BlockRef.new(own, ident(1), deleted=True))
    assert stack.rc.get(shared) == RcEntry(1)
    assert stack.rc.get(own) == RcEntry(0, NOW_MS + 10 * 60 * 1000)


def test_aborting_an_upload_deletes_its_version(stack: Stack) -> None:
    up = ObjectVersion(ident(1), 10, Uploading(False, None, PLAIN))
    put(stack.objects, obj(up))
    put(stack.objects, obj(ObjectVersion(ident(1), 10, Aborted())))
    assert [(v.uuid, v.is_deleted) for v in queued(stack.versions)] == [(ident(1), True)]
    assert queued(stack.mpus) == []  # not a multipart upload


def test_finishing_a_multipart_upload_deletes_it_and_its_parts(stack: Stack) -> None:
    upload = ident(1)
    up = ObjectVersion(upload, 10, Uploading(True, None, PLAIN))
    put(stack.objects, obj(up))
    mpu = MultipartUpload.new(upload, 10, BUCKET, "k")
    for number, part_version in [(1, ident(0x11)), (2, ident(0x12))]:
        store_version(stack, part_version, [ident(0xA0 + number)])
        mpu = mpu.with_part(number, 100, MpuPart(part_version, "etag", None, 1000))
    put(stack.mpus, mpu)
    assert stack.counter_row(stack.mpu_counter) == {}  # propagated only through the queue
    drain(stack.mpu_counter.counter_data)
    assert stack.counter_row(stack.mpu_counter) == {UPLOADS: 1, PARTS: 2, BYTES: 2000}

    # Completion: the version is complete; the upload row must go, but not the version.
    put(stack.objects, obj(ObjectVersion(upload, 10, complete(2000, ident(0xA1)))))
    assert queued(stack.versions) == []
    assert [(m.upload_id, m.is_deleted) for m in drain(stack.mpus)] == [(upload, True)]
    assert sorted((v.uuid, v.backlink, v.is_deleted) for v in queued(stack.versions)) == [
        (ident(0x11), MpuBacklink(upload), True),
        (ident(0x12), MpuBacklink(upload), True),
    ]
    drain(stack.mpu_counter.counter_data)
    assert stack.counter_row(stack.mpu_counter) == {UPLOADS: 0, PARTS: 0, BYTES: 0}
    drain(stack.versions)
    drain(stack.block_refs)
    assert stack.rc.get(ident(0xA1)).is_zero
    assert stack.rc.get(ident(0xA2)).is_zero


def test_removing_a_live_version_cascades_nothing(stack: Stack) -> None:
    # An offload removes local copies of live rows; their refs are still needed elsewhere.
    store_version(stack, ident(1), [ident(0xA1)])
    key = stack.versions.tree_key(UuidKey(ident(1)), EmptyKey())
    raw = stack.versions.store.get(key)
    assert raw is not None
    assert stack.versions.delete_if_equal(key, raw)
    assert queued(stack.block_refs) == []


def test_removing_a_live_block_ref_releases_its_count(stack: Stack) -> None:
    # This node no longer stores the ref (offload): it no longer counts it either.
    store_version(stack, ident(1), [ident(0xA1)])
    key = stack.block_refs.tree_key(UuidKey(ident(0xA1)), UuidKey(ident(1)))
    raw = stack.block_refs.store.get(key)
    assert raw is not None
    assert stack.block_refs.delete_if_equal(key, raw)
    assert stack.rc.get(ident(0xA1)).is_zero


# ------------------------------------------------------------------------------ counters


def test_object_counters_follow_writes(stack: Stack) -> None:
    local = stack.object_counter.local_values
    put(stack.objects, obj(ObjectVersion(ident(1), 10, Uploading(False, None, PLAIN))))
    assert local(UuidKey(BUCKET), EmptyKey()) == {UNFINISHED_UPLOADS: 1}
    put(stack.objects, obj(ObjectVersion(ident(1), 10, complete(1234, ident(0xA1)))))
    assert local(UuidKey(BUCKET), EmptyKey()) == {OBJECTS: 1, UNFINISHED_UPLOADS: 0, BYTES: 1234}
    other = Object.new(BUCKET, "k2", [ObjectVersion(ident(3), 10, complete(6, ident(0xA3)))])
    put(stack.objects, other)
    drain(stack.object_counter.counter_data)
    assert stack.counter_row(stack.object_counter) == {
        OBJECTS: 2,
        UNFINISHED_UPLOADS: 0,
        BYTES: 1240,
    }
    put(stack.objects, obj(ObjectVersion(ident(2), 20, Complete(DeleteMarker()))))
    drain(stack.object_counter.counter_data)
    assert stack.counter_row(stack.object_counter) == {OBJECTS: 1, UNFINISHED_UPLOADS: 0, BYTES: 6}
    # Each update of a counter moves its timestamp forward, even with a frozen clock.
    raw = stack.object_counter.counter_data.read_entry(UuidKey(BUCKET), EmptyKey())
    assert raw is not None
    entry = stack.object_counter.counter_data.decode_entry(raw)
    assert entry.node_values(NODE)[OBJECTS] == (NOW_MS + 2, 1)


def test_a_write_that_changes_no_count_queues_no_counter(stack: Stack) -> None:
    v1 = ObjectVersion(ident(1), 10, Uploading(False, None, PLAIN))
    put(stack.objects, obj(v1))
    drain(stack.object_counter.counter_data)
    # A second upload: unfinished_uploads 1 -> 2 is a change...
    put(stack.objects, obj(v1, ObjectVersion(ident(2), 11, Uploading(False, None, PLAIN))))
    assert len(queued(stack.object_counter.counter_data)) == 1
    drain(stack.object_counter.counter_data)
    # ...a new version that is already aborted is not: the object changes, its counts don't.
    before = stack.objects.read_entry(UuidKey(BUCKET), StringKey("k"))
    put(stack.objects, obj(v1, ObjectVersion(ident(3), 12, Aborted())))
    assert stack.objects.read_entry(UuidKey(BUCKET), StringKey("k")) != before
    assert queued(stack.object_counter.counter_data) == []


def test_offline_recount_rebuilds_local_counters(stack: Stack, db: Db) -> None:
    for i in range(3):
        o = Object.new(BUCKET, f"k{i}", [ObjectVersion(ident(i + 1), 10, complete(10, ident(1)))])
        put(stack.objects, o)
    stray = FixedBytes32(b"\xb9" * 32)  # a row whose bucket has no object left
    db.transaction(
        lambda tx: stack.object_counter.add(tx, UuidKey(stray), EmptyKey(), {OBJECTS: 5})
    )
    drain(stack.object_counter.counter_data)
    tree = db.open_tree(LOCAL_COUNTER_TREE_PREFIX + OBJECT_COUNTER_TABLE)
    assert tree is not None
    db.transaction(lambda tx: tx.remove(tree, UuidKey(BUCKET).sort_key()))  # lose a row

    assert stack.object_counter.offline_recount_all(stack.objects) == 3
    assert stack.object_counter.local_values(UuidKey(BUCKET), EmptyKey()) == {
        OBJECTS: 3,
        BYTES: 30,
    }
    assert stack.object_counter.local_values(UuidKey(stray), EmptyKey()) == {OBJECTS: 0}
    drain(stack.object_counter.counter_data)
    assert stack.counter_row(stack.object_counter) == {OBJECTS: 3, BYTES: 30}


# ------------------------------------------------------------------------------ atomicity


class FailingObjectSchema(ObjectSchema):
    """An object schema whose hook fails after its counters and cascades were written."""

    def updated(self, tx: Transaction, old: Object | None, new: Object | None) -> None:
        super().updated(tx, old, new)
        if new is not None and any(v.is_aborted() for v in new.versions):
            raise RuntimeError("refused after the cascade")


def snapshot(stack: Stack) -> dict[str, list[tuple[bytes, bytes]]]:
    trees = [
        stack.objects.store,
        stack.objects.merkle_todo,
        stack.versions.insert_queue,
        stack.mpus.insert_queue,
        stack.object_counter.local_tree,
        stack.object_counter.counter_data.insert_queue,
    ]
    return {t.name: list(t.iter()) for t in trees}


def test_a_failing_hook_aborts_the_write_and_everything_it_queued(db: Db) -> None:
    stack = make_stack(db, FailingObjectSchema)
    up = ObjectVersion(ident(1), 10, Uploading(True, None, PLAIN))
    put(stack.objects, obj(up))
    before = snapshot(stack)
    assert before[stack.object_counter.counter_data.insert_queue.name] != []

    with pytest.raises(RuntimeError, match="refused after the cascade"):
        put(stack.objects, obj(ObjectVersion(ident(1), 10, Aborted())))
    assert snapshot(stack) == before  # no object change, no version/mpu queued, no count
    assert queued(stack.versions) == []
    assert queued(stack.mpus) == []


def test_a_failing_cascade_aborts_the_counted_write(stack: Stack, db: Db) -> None:
    put(stack.objects, obj(ObjectVersion(ident(1), 10, complete(5, ident(0xA1)))))
    # A corrupt entry already queued under the key the cascade merges into.
    key = stack.versions.tree_key(UuidKey(ident(1)), EmptyKey())
    db.transaction(lambda tx: tx.insert(stack.versions.insert_queue, key, b"garbage"))
    before = snapshot(stack)

    with pytest.raises(DecodeError):
        put(stack.objects, obj(ObjectVersion(ident(2), 20, complete(7, ident(0xA2)))))
    assert snapshot(stack) == before
    assert stack.object_counter.local_values(UuidKey(BUCKET), EmptyKey())[BYTES] == 5

"""The object table: the versions of each object key (Garage: src/model/s3/object_table.rs).

``Object {bucket_id (P), key (S), versions}``; each :class:`ObjectVersion` is ``{uuid,
timestamp, state}`` and versions are sorted by ``(timestamp, uuid)``. A version's state is

- :class:`Uploading` while its data is being received (``multipart`` for an S3 multipart
  upload, whose upload id is the version uuid);
- :class:`Complete` once received, with its :class:`ObjectVersionData`: a
  :class:`DeleteMarker`, the data itself (:class:`Inline`, for small objects) or the hash
  of the first block (:class:`FirstBlock`; the other blocks are in the version table);
- :class:`Aborted` if the upload failed or was cancelled.

Theory of operation (design §8.2, §8.3)
---------------------------------------
**Merge.** The union of both sides' versions, a version present on both merging its state:
``Aborted`` absorbs everything, ``Complete`` beats ``Uploading``, and two ``Complete``
(or two ``Uploading``) keep the larger by canonical encoding. Then every version older
than the newest ``Complete`` one is dropped: a newer complete write (or delete marker)
makes them obsolete. Readers use the newest complete version, and a delete marker there
means "no such key".

One refinement keeps this a semilattice join (invariant 1 of the design): a complete
version that is later aborted becomes ``Aborted(completed=True)``, which still drops the
versions older than it. Otherwise a replica that dropped the older versions when it saw
the version complete, and one that saw the abort first and kept them, would hold different
states for the same set of writes (merge would not be associative). Garage forgets this
(its ``Aborted`` carries nothing); such aborts only come from rare races.

**Tombstone.** An object whose only version is a complete delete marker; it is garbage
collected once every replica has it.

**Cascade.** The :class:`ObjectSchema` ``updated`` hook runs in the write transaction and
queue-inserts (``TableData.queue_insert``):

- ``Version{uuid, deleted}`` for each old version that vanished from the new state or
  became ``Aborted``, which in turn releases its blocks;
- ``MultipartUpload{deleted}`` for each old ``Uploading{multipart: true}`` version that
  vanished or left ``Uploading`` (the upload was completed or aborted);

and counts ``objects``, ``unfinished_uploads`` and ``bytes`` in ``bucket_object_counter``.

**Encoding of the tagged unions.** States, data and encryption are small classes, one per
variant, encoded like Rust serde's externally tagged enums: a variant without fields as
its name (``"DeleteMarker"``), others as ``{name: {field: value}}``. A field typed with
the union's base class decodes to the right variant. The variant's class name is its wire
name, so renaming a variant is a format change.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, final

from garage_model.bucket_table import UuidKey
from garage_table.schema import EmptyKey, StringKey, TableEntry, TableSchema
from garage_util.crdt import Crdt, merge_values
from garage_util.data import Hash, Uuid
from garage_util.encode import (
    TaggedUnion,
    Versioned,
    decode_versioned,
    encode_versioned,
    tagged_variants,
)

from .mpu_table import BYTES, ChecksumAlgorithm, ChecksumValue, MultipartUpload
from .version_table import ObjectBacklink, Version

if TYPE_CHECKING:
    from collections.abc import Iterable

    from garage_model.index_counter import IndexCounter
    from garage_table import TableData
    from garage_util.db import Transaction

__all__ = [
    "BYTES",
    "OBJECTS",
    "OBJECT_COUNTER_TABLE",
    "UNFINISHED_UPLOADS",
    "Aborted",
    "Complete",
    "DeleteMarker",
    "FirstBlock",
    "Inline",
    "Object",
    "ObjectFilter",
    "ObjectFilterKind",
    "ObjectSchema",
    "ObjectVersion",
    "ObjectVersionData",
    "ObjectVersionEncryption",
    "ObjectVersionMeta",
    "ObjectVersionMetaInner",
    "ObjectVersionState",
    "Plaintext",
    "SseC",
    "Uploading",
]

#: The counter table of objects (Garage's name).
OBJECT_COUNTER_TABLE: Final = "bucket_object_counter"
#: Counter: objects whose newest complete version holds data (not a delete marker).
OBJECTS: Final = "objects"
#: Counter: versions being uploaded (plain and multipart).
UNFINISHED_UPLOADS: Final = "unfinished_uploads"


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True, slots=True)
class ObjectVersionMetaInner(Versioned):
    """The headers and checksum of an object: stored in clear, or encrypted with SSE-C.

    Versioned on its own (``encode``/``decode``) because SSE-C encrypts its encoding.

    Attributes:
        headers: ``(name, value)`` of the headers to return with the object, in order.
        checksum: the object's ``x-amz-checksum-*``, if one was given or requested.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G2s3om"

    headers: tuple[tuple[str, str], ...] = ()
    checksum: ChecksumValue | None = None

    def encode(self) -> bytes:
        """The versioned encoding (what SSE-C encrypts)."""
        return encode_versioned(self)

    @classmethod
    def decode(cls, data: bytes) -> ObjectVersionMetaInner:
        """Decodes :meth:`encode` 's bytes.

        Raises:
            DecodeError: the bytes are not an encoded ``ObjectVersionMetaInner``.
        """
        return decode_versioned(cls, data)


class ObjectVersionEncryption(TaggedUnion):
    """How an object's metadata and data are stored: :class:`Plaintext` or :class:`SseC`."""

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True)
class Plaintext(ObjectVersionEncryption):
    """Not encrypted: the headers are stored as they are."""

    inner: ObjectVersionMetaInner


@final
@dataclass(frozen=True, slots=True)
class SseC(ObjectVersionEncryption):
    """Encrypted with a customer key (SSE-C).

    Attributes:
        inner: the encoded :class:`ObjectVersionMetaInner`, encrypted (AES-256-GCM).
        compressed: the data blocks were compressed before being encrypted.
    """

    inner: bytes
    compressed: bool


ObjectVersionEncryption.VARIANTS = tagged_variants(Plaintext, SseC)


@dataclass(frozen=True, slots=True)
class ObjectVersionMeta:
    """What is known of a complete version's data.

    Attributes:
        size: the data size in bytes (before compression or encryption).
        etag: the S3 ETag.
        encryption: the encryption and the headers.
    """

    size: int
    etag: str
    encryption: ObjectVersionEncryption


class ObjectVersionData(TaggedUnion):
    """A complete version's data: :class:`DeleteMarker`, :class:`Inline` or
    :class:`FirstBlock`."""

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True)
class DeleteMarker(ObjectVersionData):
    """The object was deleted: a version that hides the older ones."""


@final
@dataclass(frozen=True, slots=True)
class Inline(ObjectVersionData):
    """A small object stored in the object table itself.

    Attributes:
        meta: size, ETag, encryption and headers.
        data: the object's bytes (encrypted if SSE-C; never compressed).
    """

    meta: ObjectVersionMeta
    data: bytes


@final
@dataclass(frozen=True, slots=True)
class FirstBlock(ObjectVersionData):
    """An object stored in blocks, listed in the version table.

    Attributes:
        meta: size, ETag, encryption and headers.
        first_block_hash: the hash of the first block.
    """

    meta: ObjectVersionMeta
    first_block_hash: Hash


ObjectVersionData.VARIANTS = tagged_variants(DeleteMarker, Inline, FirstBlock)


# ------------------------------------------------------------------ version states


class ObjectVersionState(TaggedUnion):
    """The state of a version: :class:`Uploading`, :class:`Complete` or :class:`Aborted`.

    States of one version merge with :meth:`merge` (a join; see the module docstring).
    """

    __slots__ = ()

    def merge(self, other: ObjectVersionState) -> ObjectVersionState:
        """The join of two states of the same version."""
        merged: ObjectVersionState
        if isinstance(self, Aborted) or isinstance(other, Aborted):
            merged = Aborted(completed=_was_completed(self) or _was_completed(other))
        elif isinstance(self, Complete) and isinstance(other, Complete):
            merged = Complete(merge_values(self.data, other.data))
        elif isinstance(self, Complete):
            merged = self
        elif isinstance(other, Complete):
            merged = other
        else:  # two Uploading states: equal in practice; keep the larger
            merged = merge_values(self, other)
        return self if merged == self else merged


@final
@dataclass(frozen=True, slots=True)
class Uploading(ObjectVersionState):
    """The version is being received.

    Attributes:
        multipart: it is a multipart upload (its upload id is the version uuid).
        checksum_algorithm: the ``x-amz-checksum-algorithm`` requested, if any.
        encryption: the encryption and the headers the complete object will have.
    """

    multipart: bool
    checksum_algorithm: ChecksumAlgorithm | None
    encryption: ObjectVersionEncryption


@final
@dataclass(frozen=True, slots=True)
class Complete(ObjectVersionState):
    """The version is fully received."""

    data: ObjectVersionData


@final
@dataclass(frozen=True, slots=True)
class Aborted(ObjectVersionState):
    """The upload failed or was aborted; the version will never have data.

    Attributes:
        completed: the version had completed before it was aborted: like a complete
            version, it makes the older versions obsolete (see the module docstring).
    """

    completed: bool = False


ObjectVersionState.VARIANTS = tagged_variants(Uploading, Complete, Aborted)


def _was_completed(state: ObjectVersionState) -> bool:
    return isinstance(state, Complete) or (isinstance(state, Aborted) and state.completed)


# ------------------------------------------------------------------ versions and objects


@dataclass(frozen=True, slots=True)
class ObjectVersion(Crdt):
    """One version of an object.

    Attributes:
        uuid: the version id (also the id of its row in the version table, and the
            upload id of a multipart upload).
        timestamp: when the version was created (logical clock, ms): versions are
            ordered by ``(timestamp, uuid)``.
        state: uploading, complete or aborted.
    """

    uuid: Uuid
    timestamp: int
    state: ObjectVersionState

    def cmp_key(self) -> tuple[int, bytes]:
        """The version's place in its object: ``(timestamp, uuid)``."""
        return (self.timestamp, self.uuid)

    def is_uploading(self, check_multipart: bool | None = None) -> bool:
        """True while the version is being received.

        Args:
            check_multipart: None for any upload, True for multipart uploads only, False
                for plain uploads only.
        """
        state = self.state
        if not isinstance(state, Uploading):
            return False
        return check_multipart is None or state.multipart == check_multipart

    def is_complete(self) -> bool:
        """True once fully received (data or delete marker)."""
        return isinstance(self.state, Complete)

    def is_aborted(self) -> bool:
        """True if the upload failed or was aborted."""
        return isinstance(self.state, Aborted)

    def is_data(self) -> bool:
        """True when complete with data (not a delete marker)."""
        state = self.state
        return isinstance(state, Complete) and not isinstance(state.data, DeleteMarker)

    def data(self) -> ObjectVersionData | None:
        """The data of a complete version, else None."""
        state = self.state
        return state.data if isinstance(state, Complete) else None

    def meta(self) -> ObjectVersionMeta | None:
        """The metadata of a complete version with data, else None."""
        data = self.data()
        return data.meta if isinstance(data, Inline | FirstBlock) else None

    def merge(self, other: ObjectVersion) -> ObjectVersion:
        if self.cmp_key() != other.cmp_key():
            raise ValueError("cannot merge different object versions")
        state = self.state.merge(other.state)
        return self if state is self.state else ObjectVersion(self.uuid, self.timestamp, state)


class ObjectFilterKind(enum.Enum):
    """What :class:`ObjectFilter` looks for."""

    IS_DATA = "is_data"
    IS_UPLOADING = "is_uploading"


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """Range-read filter of the object table (it travels in RPCs: a plain dataclass).

    Use ``ObjectFilter.IS_DATA`` (objects with data: listing), ``ObjectFilter.IS_UPLOADING``
    (objects with an upload in progress) or :meth:`uploading` to select the kind of upload.

    Attributes:
        kind: data or uploads.
        check_multipart: for uploads: None for any, True for multipart only, False for
            plain uploads only.
    """

    IS_DATA: ClassVar[ObjectFilter]
    IS_UPLOADING: ClassVar[ObjectFilter]

    kind: ObjectFilterKind
    check_multipart: bool | None = None

    @classmethod
    def uploading(cls, check_multipart: bool | None = None) -> ObjectFilter:
        """Objects with an upload in progress (see ``check_multipart``)."""
        return cls(ObjectFilterKind.IS_UPLOADING, check_multipart)

    def matches(self, entry: Object) -> bool:
        """True when ``entry`` passes the filter."""
        if self.kind is ObjectFilterKind.IS_DATA:
            return entry.is_data()
        return any(v.is_uploading(self.check_multipart) for v in entry.versions)


ObjectFilter.IS_DATA = ObjectFilter(ObjectFilterKind.IS_DATA)
ObjectFilter.IS_UPLOADING = ObjectFilter(ObjectFilterKind.IS_UPLOADING)


@dataclass(frozen=True, slots=True)
class Object(TableEntry[UuidKey, StringKey]):
    """An object key of a bucket and its current versions.

    Build one with :meth:`new`, which sorts the versions and drops the obsolete ones.

    Attributes:
        bucket_id: the bucket (partition key).
        key: the object key (sort key: its UTF-8 bytes).
        versions: the versions, sorted by ``(timestamp, uuid)``, none older than the
            newest complete one.

    Raises:
        ValueError: the versions are not sorted, or two have the same place.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G2s3ob"

    bucket_id: Uuid
    key: str
    versions: tuple[ObjectVersion, ...] = ()

    def __post_init__(self) -> None:
        keys = [v.cmp_key() for v in self.versions]
        if any(not a < b for a, b in itertools.pairwise(keys)):
            raise ValueError("Object versions must be sorted by (timestamp, uuid), unique")

    @classmethod
    def new(cls, bucket_id: Uuid, key: str, versions: Iterable[ObjectVersion] = ()) -> Object:
        """An object with ``versions`` (merged if repeated, obsolete ones dropped)."""
        return cls(bucket_id, key, _normalize(versions))

    def last_complete_version(self) -> ObjectVersion | None:
        """The newest complete version (the one reads return), or None."""
        for v in reversed(self.versions):
            if v.is_complete():
                return v
        return None

    def is_data(self) -> bool:
        """True when the newest complete version has data (the object exists)."""
        last = self.last_complete_version()
        return last is not None and last.is_data()

    def partition_key(self) -> UuidKey:
        return UuidKey(self.bucket_id)

    def sort_key(self) -> StringKey:
        return StringKey(self.key)

    def is_tombstone(self) -> bool:
        return len(self.versions) == 1 and self.versions[0].state == Complete(DeleteMarker())

    def merge(self, other: Object) -> Object:
        if (self.bucket_id, self.key) != (other.bucket_id, other.key):
            raise ValueError("cannot merge different objects")
        if not other.versions or other.versions == self.versions:
            return self
        merged = Object(self.bucket_id, self.key, _normalize(self.versions + other.versions))
        return self if merged == self else merged

    # ------------------------------------------------------------------ counted item

    def counter_partition_key(self) -> UuidKey:
        """Counted in its bucket's row of ``bucket_object_counter``."""
        return UuidKey(self.bucket_id)

    def counter_sort_key(self) -> EmptyKey:
        """The counter rows have an empty sort key."""
        return EmptyKey()

    def counts(self) -> dict[str, int]:
        """``objects`` (0 or 1), ``unfinished_uploads`` and ``bytes`` of this object."""
        last = self.last_complete_version()
        meta = None if last is None else last.meta()
        return {
            OBJECTS: 0 if meta is None else 1,
            UNFINISHED_UPLOADS: sum(1 for v in self.versions if v.is_uploading()),
            BYTES: 0 if meta is None else meta.size,
        }


def _normalize(versions: Iterable[ObjectVersion]) -> tuple[ObjectVersion, ...]:
    """Sorts versions, merges repeated ones, and drops those made obsolete."""
    by_key: dict[tuple[int, bytes], ObjectVersion] = {}
    for v in versions:
        k = v.cmp_key()
        cur = by_key.get(k)
        by_key[k] = v if cur is None else cur.merge(v)
    ordered = [by_key[k] for k in sorted(by_key)]
    # Everything before the newest version that completed (even if aborted since) is gone.
    for i in range(len(ordered) - 1, -1, -1):
        if _was_completed(ordered[i].state):
            return tuple(ordered[i:])
    return tuple(ordered)


# ------------------------------------------------------------------ the schema


class ObjectSchema(TableSchema[UuidKey, StringKey, Object, ObjectFilter]):
    """The ``object`` table (sharded by bucket id, sorted by key).

    Args:
        version_data: the version table's local data (cascade of deleted versions).
        mpu_data: the multipart_upload table's local data (cascade of finished uploads).
        counter: the ``bucket_object_counter`` index counter.
    """

    TABLE_NAME: ClassVar[str] = "object"
    PARTITION_KEY = UuidKey
    SORT_KEY = StringKey
    ENTRY = Object
    FILTER = ObjectFilter

    def __init__(
        self,
        version_data: TableData[Version],
        mpu_data: TableData[MultipartUpload],
        counter: IndexCounter[UuidKey, EmptyKey],
    ) -> None:
        self._versions = version_data
        self._mpus = mpu_data
        self._counter = counter

    def updated(self, tx: Transaction, old: Object | None, new: Object | None) -> None:
        self._counter.count(tx, old, new)
        if old is None or new is None:
            return
        new_states = {v.cmp_key(): v.state for v in new.versions}
        backlink = ObjectBacklink(old.bucket_id, old.key)
        for v in old.versions:
            state = new_states.get(v.cmp_key())
            if state is None or (isinstance(state, Aborted) and not v.is_aborted()):
                self._versions.queue_insert(tx, Version.new(v.uuid, backlink, deleted=True))
            if v.is_uploading(check_multipart=True) and not isinstance(state, Uploading):
                self._mpus.queue_insert(
                    tx,
                    MultipartUpload.new(v.uuid, v.timestamp, old.bucket_id, old.key, deleted=True),
                )

    def matches_filter(self, entry: Object, filter: ObjectFilter) -> bool:
        return filter.matches(entry)

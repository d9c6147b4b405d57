"""The version table: the blocks of each object version (Garage: src/model/s3/version_table.rs).

An object's entry names its versions; the data of a version that is not inline lives
here: ``Version {uuid (P), deleted, blocks, backlink}``, where ``blocks`` maps
``(part_number, offset)`` to the block's hash and size (a plain PUT has part 0; a
multipart upload's parts are versions of their own, listed in the upload's entry).

Theory of operation
-------------------
- Merge: ``deleted`` is an OR; once deleted, the block map is cleared and stays empty
  (a deleted version needs no blocks, and keeping the tombstone small matters because it
  stays until GC). Live versions merge their block maps key by key.
- ``backlink`` points at the owner (the object, or the multipart upload): ``repair
  versions`` deletes a version whose owner no longer references it, so the owner must be
  written *before* the version (design §8.4).
- Deletion cascade (§8.3): when a stored version becomes deleted, the
  :class:`VersionSchema` ``updated`` hook queue-inserts ``BlockRef{block, version,
  deleted}`` for each of its blocks into the block_ref table, in the same transaction.
  A live version removed from the local store (handed over to other nodes after a layout
  change) cascades nothing: it is still live elsewhere, and deleting its refs would lose
  data. Garage does the same.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, final

from garage_model.bucket_table import UuidKey
from garage_table.schema import DeletedFilter, EmptyKey, TableEntry, TableSchema
from garage_util.crdt import Bool, Map, merge_values
from garage_util.data import FixedBytes32, Hash, Uuid

from .block_ref_table import BlockRef

if TYPE_CHECKING:
    from garage_table import TableData
    from garage_util.db import Transaction

__all__ = [
    "MpuBacklink",
    "ObjectBacklink",
    "Version",
    "VersionBacklink",
    "VersionBlock",
    "VersionSchema",
]


# ------------------------------------------------------------------ backlink


class VersionBacklink:
    """The owner of a version: :class:`ObjectBacklink` or :class:`MpuBacklink`.

    Encodes as a tagged value, ``{"Object": {...}}`` or ``{"MultipartUpload": {...}}``
    (Rust serde's externally tagged form); a field typed ``VersionBacklink`` decodes to the
    right variant.
    """

    __slots__ = ()

    def __to_wire__(self) -> object:
        raise NotImplementedError  # every variant defines it

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> VersionBacklink:
        del type_args  # not generic
        if type(obj) is not dict or len(obj) != 1:
            raise ValueError("a version backlink is a one-entry map")
        ((tag, body),) = obj.items()
        if type(body) is not dict:
            raise ValueError(f"the body of a {tag!r} backlink must be a map")
        link: VersionBacklink
        if tag == "Object" and set(body) == {"bucket_id", "key"}:
            bucket_id, key = body["bucket_id"], body["key"]
            if type(bucket_id) is not bytes or type(key) is not str:
                raise ValueError("an Object backlink has a bytes bucket_id and a str key")
            link = ObjectBacklink(FixedBytes32(bucket_id), key)
        elif tag == "MultipartUpload" and set(body) == {"upload_id"}:
            upload_id = body["upload_id"]
            if type(upload_id) is not bytes:
                raise ValueError("a MultipartUpload backlink has a bytes upload_id")
            link = MpuBacklink(FixedBytes32(upload_id))
        else:
            raise ValueError(f"invalid version backlink {tag!r} with fields {sorted(body)}")
        if not isinstance(link, cls):
            raise ValueError(f"expected a {cls.__name__}, got a {type(link).__name__}")
        return link


@final
@dataclass(frozen=True, slots=True)
class ObjectBacklink(VersionBacklink):
    """The version belongs to the object ``key`` of bucket ``bucket_id``."""

    bucket_id: Uuid
    key: str

    def __to_wire__(self) -> object:
        return {"Object": {"bucket_id": bytes(self.bucket_id), "key": self.key}}


@final
@dataclass(frozen=True, slots=True)
class MpuBacklink(VersionBacklink):
    """The version is a part of the multipart upload ``upload_id``."""

    upload_id: Uuid

    def __to_wire__(self) -> object:
        return {"MultipartUpload": {"upload_id": bytes(self.upload_id)}}


# ------------------------------------------------------------------ the entry


@dataclass(frozen=True, slots=True)
class VersionBlock:
    """One block of a version.

    Attributes:
        hash: the block's hash (blake2 of the plain data).
        size: the size of the data in the block, before compression or encryption.
    """

    hash: Hash
    size: int


@dataclass(frozen=True, slots=True)
class Version(TableEntry[UuidKey, EmptyKey]):
    """The blocks of one object version (or of one part of a multipart upload).

    Attributes:
        uuid: the version's id (partition key; the sort key is empty).
        deleted: set once the version is deleted; never unset.
        blocks: ``(part_number, offset) -> VersionBlock``, where ``offset`` is the
            position of the block's data inside its part, as sent by the client. Always
            empty once deleted.
        backlink: the object or multipart upload the version belongs to.

    Raises:
        ValueError: a deleted version with blocks.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09s3v"

    uuid: Uuid
    deleted: Bool
    blocks: Map[tuple[int, int], VersionBlock]
    backlink: VersionBacklink

    def __post_init__(self) -> None:
        if self.deleted.value and self.blocks.vals:
            raise ValueError("a deleted version has no blocks")

    @classmethod
    def new(cls, uuid: Uuid, backlink: VersionBacklink, *, deleted: bool = False) -> Version:
        """A version with no block; ``deleted=True`` makes the deletion to merge in."""
        return cls(uuid, Bool(deleted), Map(), backlink)

    def with_block(self, part_number: int, offset: int, block: VersionBlock) -> Version:
        """This version with one more block (what a PUT inserts for each block)."""
        return self.merge(
            Version(self.uuid, Bool(False), Map((((part_number, offset), block),)), self.backlink)
        )

    @property
    def is_deleted(self) -> bool:
        """True once the version was deleted."""
        return self.deleted.value

    def has_part_number(self, part_number: int) -> bool:
        """True when some block belongs to part ``part_number``."""
        keys = self.blocks.vals
        i = bisect.bisect_left(keys, part_number, key=_part_number)
        return i < len(keys) and keys[i][0][0] == part_number

    def n_parts(self) -> int:
        """The highest part number (the number of parts of a completed upload).

        Raises:
            ValueError: the version has no block.
        """
        if not self.blocks.vals:
            raise ValueError("version has no parts")
        return self.blocks.vals[-1][0][0]

    def partition_key(self) -> UuidKey:
        return UuidKey(self.uuid)

    def sort_key(self) -> EmptyKey:
        return EmptyKey()

    def is_tombstone(self) -> bool:
        return self.deleted.value

    def merge(self, other: Version) -> Version:
        if self.uuid != other.uuid:
            raise ValueError("cannot merge different versions")
        deleted = self.deleted.merge(other.deleted)
        blocks: Map[tuple[int, int], VersionBlock] = (
            Map() if deleted.value else self.blocks.merge(other.blocks)
        )
        # Backlinks of one version are equal; the larger wins only to stay commutative.
        backlink = merge_values(self.backlink, other.backlink)
        merged = Version(self.uuid, deleted, blocks, backlink)
        return self if merged == self else merged


def _part_number(entry: tuple[tuple[int, int], VersionBlock]) -> int:
    return entry[0][0]


class VersionSchema(TableSchema[UuidKey, EmptyKey, Version, DeletedFilter]):
    """The ``version`` table (sharded by version uuid).

    Args:
        block_ref_data: the block_ref table's local data: deletions of a version's
            blocks are queued there.
    """

    TABLE_NAME: ClassVar[str] = "version"
    PARTITION_KEY = UuidKey
    SORT_KEY = EmptyKey
    ENTRY = Version
    FILTER = DeletedFilter

    def __init__(self, block_ref_data: TableData[BlockRef]) -> None:
        self._block_refs = block_ref_data

    def updated(self, tx: Transaction, old: Version | None, new: Version | None) -> None:
        if old is None or new is None or old.is_deleted or not new.is_deleted:
            return
        for block_hash in {block.hash for _key, block in old.blocks.items()}:
            self._block_refs.queue_insert(tx, BlockRef.new(block_hash, old.uuid, deleted=True))

    def matches_filter(self, entry: Version, filter: DeletedFilter) -> bool:
        return filter.apply(entry.is_deleted)

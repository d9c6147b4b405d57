"""The multipart_upload table: the parts of uploads in progress (Garage: src/model/s3/mpu_table.rs).

``MultipartUpload {upload_id (P), timestamp, deleted, parts, bucket_id, key}``. The upload
id is the uuid of the object version being uploaded (an ``Uploading{multipart: true}``
version of the object). Each part upload is a version of its own (a row of the version
table with an :class:`~garage_model.s3.version_table.MpuBacklink`), listed in ``parts``
under ``(part_number, timestamp)``: a retried part gets a new timestamp, and every attempt
is kept until the upload is deleted (completion picks the parts it needs).

Theory of operation
-------------------
- Merge: ``deleted`` is an OR; once deleted, ``parts`` is cleared and stays empty. Live
  uploads merge their parts key by key; a part's fields each take the greater value, a
  known value beating an unknown one (the etag, checksum and size are known only once the
  part is uploaded).
- The object table marks the upload deleted when its version completes or is aborted
  (design §8.3). Then :class:`MpuSchema` ``updated`` queues ``Version{part.version,
  deleted}`` for every part, in the same transaction, which in turn releases their blocks.
- Counting (§8.5): each upload adds ``uploads`` (1 unless deleted), ``parts`` (distinct
  part numbers) and ``bytes`` (the size of the newest attempt of each part number) to the
  ``bucket_mpu_counter`` row of its bucket.

This module also defines :class:`ChecksumAlgorithm` and :class:`ChecksumValue`, the
``x-amz-checksum-*`` values stored by parts and by objects; it is the lowest module that
needs them (the object table imports them from here).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, TypeVar

from garage_model.bucket_table import UuidKey
from garage_table.schema import DeletedFilter, EmptyKey, TableEntry, TableSchema
from garage_util.clock import increment_logical_clock
from garage_util.crdt import Bool, Crdt, Map, merge_optional, merge_values
from garage_util.data import Uuid

from .version_table import MpuBacklink, Version

if TYPE_CHECKING:
    from garage_model.index_counter import IndexCounter
    from garage_table import TableData
    from garage_util.db import Transaction

__all__ = [
    "BYTES",
    "MPU_COUNTER_TABLE",
    "PARTS",
    "UPLOADS",
    "ChecksumAlgorithm",
    "ChecksumValue",
    "MpuPart",
    "MpuSchema",
    "MultipartUpload",
]

#: The counter table of multipart uploads (Garage's name).
MPU_COUNTER_TABLE: Final = "bucket_mpu_counter"
#: Counter: uploads in progress.
UPLOADS: Final = "uploads"
#: Counter: distinct part numbers uploaded to uploads in progress.
PARTS: Final = "parts"
#: Counter: bytes (uploaded parts for ``bucket_mpu_counter``, object data for
#: ``bucket_object_counter``).
BYTES: Final = "bytes"

T = TypeVar("T", int, str)


class ChecksumAlgorithm(enum.Enum):
    """An ``x-amz-checksum-algorithm`` (the value is the S3 header spelling)."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def digest_size(self) -> int:
        """The length in bytes of a checksum of this algorithm."""
        return _DIGEST_SIZES[self]


_DIGEST_SIZES: Final = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}


@dataclass(frozen=True, slots=True)
class ChecksumValue:
    """A checksum of an object or a part (``x-amz-checksum-<algorithm>``).

    Attributes:
        algorithm: the algorithm.
        value: the raw checksum bytes (not base64).

    Raises:
        ValueError: ``value`` does not have the algorithm's length.
    """

    algorithm: ChecksumAlgorithm
    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != self.algorithm.digest_size:
            raise ValueError(
                f"a {self.algorithm.value} checksum has {self.algorithm.digest_size} bytes, "
                f"not {len(self.value)}"
            )


@dataclass(frozen=True, slots=True)
class MpuPart(Crdt):
    """One upload attempt of a part.

    Attributes:
        version: the uuid of the version holding the part's blocks.
        etag: the part's ETag, once uploaded.
        checksum: the part's checksum, once uploaded (if the upload asked for one).
        size: the part's size in bytes, once uploaded.
    """

    version: Uuid
    etag: str | None = None
    checksum: ChecksumValue | None = None
    size: int | None = None

    def merge(self, other: MpuPart) -> MpuPart:
        merged = MpuPart(
            version=max(self.version, other.version),
            etag=_max_optional(self.etag, other.etag),
            checksum=merge_optional(self.checksum, other.checksum),
            size=_max_optional(self.size, other.size),
        )
        return self if merged == self else merged


def _max_optional(a: T | None, b: T | None) -> T | None:
    """The greater of two optional values, None being the smallest."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(frozen=True, slots=True)
class MultipartUpload(TableEntry[UuidKey, EmptyKey]):
    """A multipart upload in progress (or its deletion).

    Attributes:
        upload_id: the upload id, which is the uuid of the object version (partition key;
            the sort key is empty).
        timestamp: the object version's timestamp (when the upload was created).
        deleted: set once the upload is completed or aborted; never unset.
        parts: ``(part_number, timestamp) -> MpuPart``; always empty once deleted.
        bucket_id: the bucket of the object being uploaded.
        key: the key of the object being uploaded.

    Raises:
        ValueError: a deleted upload with parts.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G09s3mpu"

    upload_id: Uuid
    timestamp: int
    deleted: Bool
    parts: Map[tuple[int, int], MpuPart]
    bucket_id: Uuid
    key: str

    def __post_init__(self) -> None:
        if self.deleted.value and self.parts.vals:
            raise ValueError("a deleted multipart upload has no parts")

    @classmethod
    def new(
        cls, upload_id: Uuid, timestamp: int, bucket_id: Uuid, key: str, *, deleted: bool = False
    ) -> MultipartUpload:
        """An upload with no part; ``deleted=True`` makes the deletion to merge in."""
        return cls(upload_id, timestamp, Bool(deleted), Map(), bucket_id, key)

    @property
    def is_deleted(self) -> bool:
        """True once the upload was completed or aborted."""
        return self.deleted.value

    def with_part(self, part_number: int, timestamp: int, part: MpuPart) -> MultipartUpload:
        """This upload with ``part`` merged in at ``(part_number, timestamp)``."""
        mutator = MultipartUpload(
            self.upload_id,
            self.timestamp,
            Bool(False),
            Map((((part_number, timestamp), part),)),
            self.bucket_id,
            self.key,
        )
        return self.merge(mutator)

    def next_timestamp(self, part_number: int, now_ms: int) -> int:
        """A timestamp for a new attempt of ``part_number``: after every earlier one."""
        previous = [ts for (n, ts), _part in self.parts.items() if n == part_number]
        return now_ms if not previous else increment_logical_clock(max(previous), now_ms)

    def newest_parts(self) -> dict[int, tuple[int, MpuPart]]:
        """``part_number -> (timestamp, part)`` of the newest attempt of each part number."""
        out: dict[int, tuple[int, MpuPart]] = {}
        for (number, ts), part in self.parts.items():
            out[number] = (ts, part)  # keys are sorted: the last attempt wins
        return out

    def partition_key(self) -> UuidKey:
        return UuidKey(self.upload_id)

    def sort_key(self) -> EmptyKey:
        return EmptyKey()

    def is_tombstone(self) -> bool:
        return self.deleted.value

    def merge(self, other: MultipartUpload) -> MultipartUpload:
        if self.upload_id != other.upload_id:
            raise ValueError("cannot merge different multipart uploads")
        deleted = self.deleted.merge(other.deleted)
        parts: Map[tuple[int, int], MpuPart] = (
            Map() if deleted.value else self.parts.merge(other.parts)
        )
        # The other fields never change for an upload; taking the larger of two keeps the
        # merge commutative should two writers ever disagree.
        merged = MultipartUpload(
            self.upload_id,
            max(self.timestamp, other.timestamp),
            deleted,
            parts,
            max(self.bucket_id, other.bucket_id),
            merge_values(self.key, other.key),
        )
        return self if merged == self else merged

    # ------------------------------------------------------------------ counted item

    def counter_partition_key(self) -> UuidKey:
        """Counted in its bucket's row of ``bucket_mpu_counter``."""
        return UuidKey(self.bucket_id)

    def counter_sort_key(self) -> EmptyKey:
        """The counter rows have an empty sort key."""
        return EmptyKey()

    def counts(self) -> dict[str, int]:
        """``uploads``, ``parts`` (distinct numbers), ``bytes`` (newest attempts)."""
        newest = self.newest_parts()
        return {
            UPLOADS: 0 if self.deleted.value else 1,
            PARTS: len(newest),
            BYTES: sum(part.size or 0 for _ts, part in newest.values()),
        }


class MpuSchema(TableSchema[UuidKey, EmptyKey, MultipartUpload, DeletedFilter]):
    """The ``multipart_upload`` table (sharded by upload id).

    Args:
        version_data: the version table's local data: deletions of the parts' versions
            are queued there.
        counter: the ``bucket_mpu_counter`` index counter.
    """

    TABLE_NAME: ClassVar[str] = "multipart_upload"
    PARTITION_KEY = UuidKey
    SORT_KEY = EmptyKey
    ENTRY = MultipartUpload
    FILTER = DeletedFilter

    def __init__(
        self, version_data: TableData[Version], counter: IndexCounter[UuidKey, EmptyKey]
    ) -> None:
        self._versions = version_data
        self._counter = counter

    def updated(
        self, tx: Transaction, old: MultipartUpload | None, new: MultipartUpload | None
    ) -> None:
        self._counter.count(tx, old, new)
        if old is None or new is None or old.is_deleted or not new.is_deleted:
            return
        backlink = MpuBacklink(old.upload_id)
        for version in {part.version for _key, part in old.parts.items()}:
            self._versions.queue_insert(tx, Version.new(version, backlink, deleted=True))

    def matches_filter(self, entry: MultipartUpload, filter: DeletedFilter) -> bool:
        return filter.apply(entry.is_deleted)

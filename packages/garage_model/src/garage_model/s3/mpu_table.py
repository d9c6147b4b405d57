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

Cost per UploadPart
-------------------
The row lists every part attempt, and each UploadPart reads it once and inserts it twice
(§10.6). Each insert ships only the new attempt (a one-part mutator, as Garage does), but
every replica decodes its stored row, merges the mutator in, re-encodes the row, hashes it
(Merkle) and counts it (§8.5): O(parts) per insert by design, kept cheap as follows
(``bench/bench_mpu.py`` measures it):

- a big row recently encoded or decoded is kept with its bytes in a small bounded cache
  (:class:`_RowCache`): the row a replica decodes is, most of the time, the one it encoded
  at its previous insert (or that was just read), and then costs a lookup (hashing the
  bytes) instead of a decode. Rows are immutable values, so sharing them is safe;
- a row memoizes its counts and, once it is found in the cache (used again), the
  encoding of each of its parts; merging a mutator of a few attempts inserts them by
  bisection into copies of the parts and of their encodings, and updates the counts from
  the part numbers it touches. Encoding the merged row then joins bytes, and counting it
  is free;
- the rest has its own codec (:meth:`MultipartUpload.__to_wire__`/``__from_wire__`` and
  :meth:`~MultipartUpload.encode`), which writes exactly the bytes of the generic
  dataclass encoding (stored rows keep decoding, replicas agree on the bytes and so on
  the Merkle hashes) without the generic per-field dispatch; a part in another shape
  falls back to the generic decoder and its precise errors.

What stays O(parts) is C work (copying, hashing, sqlite reading and writing the row) and,
for a row this process has not seen (after a restart, on a gateway that does not store
it), one decode.

This module also defines :class:`ChecksumAlgorithm` and :class:`ChecksumValue`, the
``x-amz-checksum-*`` values stored by parts and by objects; it is the lowest module that
needs them (the object table imports them from here).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeAlias, TypeVar, final

from garage_model.bucket_table import UuidKey
from garage_table.schema import DeletedFilter, EmptyKey, TableEntry, TableSchema
from garage_util.clock import increment_logical_clock
from garage_util.crdt import Bool, Crdt, Map, merge_optional, merge_values
from garage_util.data import HASH_LEN, FixedBytes32, Uuid
from garage_util.encode import decode_versioned, from_wire, pack

from .version_table import MpuBacklink, Version

if TYPE_CHECKING:
    from collections.abc import Sequence

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
#: ``MultipartUpload.parts`` encoded entry by entry (msgpack of ``[[number, ts], part]``).
_PackedParts: TypeAlias = list[bytes]


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
    # Memos, not part of the value (set once, by whoever computes them first; a race only
    # computes them twice): ``parts`` encoded entry by entry, which a merge passes on with
    # its few changes, so that encoding the merged row only joins bytes; and the counts.
    _packed: _PackedParts | None = field(default=None, init=False, repr=False, compare=False)
    _counts: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

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
        vals = self.parts.vals
        # The attempts of a number are adjacent, sorted by timestamp: the newest is just
        # before the first attempt of a greater number.
        i = bisect.bisect_left(vals, part_number + 1, key=_number)
        if i == 0 or vals[i - 1][0][0] != part_number:
            return now_ms
        return increment_logical_clock(vals[i - 1][0][1], now_ms)

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
        parts: Map[tuple[int, int], MpuPart] = Map()
        packed: _PackedParts | None = None
        counts: dict[str, int] | None = None
        if not deleted.value:
            parts, packed, counts = _merge_parts(self, other)
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
        if merged == self:
            return self
        object.__setattr__(merged, "_packed", packed)
        object.__setattr__(merged, "_counts", counts)
        return merged

    # ------------------------------------------------------------------ counted item

    def counter_partition_key(self) -> UuidKey:
        """Counted in its bucket's row of ``bucket_mpu_counter``."""
        return UuidKey(self.bucket_id)

    def counter_sort_key(self) -> EmptyKey:
        """The counter rows have an empty sort key."""
        return EmptyKey()

    def counts(self) -> dict[str, int]:
        """``uploads``, ``parts`` (distinct numbers), ``bytes`` (newest attempts)."""
        counts = self._counts
        if counts is None:
            # One pass over the sorted attempts (the counter asks on every insert, on every
            # replica): the last attempt of each run of equal numbers is the newest.
            numbers = total = last_size = 0
            last: int | None = None
            for (number, _ts), part in self.parts.vals:
                if number != last:
                    numbers += 1
                    total += last_size
                    last = number
                last_size = part.size or 0
            counts = {
                UPLOADS: 0 if self.deleted.value else 1,
                PARTS: numbers,
                BYTES: total + last_size,
            }
            object.__setattr__(self, "_counts", counts)
        return dict(counts)

    # ------------------------------------------------------------------ encoding

    def encode(self) -> bytes:
        """The versioned encoding; a big row is remembered with its bytes (see the module
        docstring), as a replica decodes next the row it stores now.

        The bytes are those of ``pack(self)`` (the generic encoding, see
        :meth:`__to_wire__`); a row that memoized the encodings of its parts (see
        :meth:`decode`) frames them here.
        """
        packed = self._packed
        if packed is None:
            data = self.VERSION_MARKER + pack(self)
        else:
            data = b"".join(
                (
                    self.VERSION_MARKER,
                    _HEAD_UPLOAD_ID,
                    pack(self.upload_id),
                    _HEAD_TIMESTAMP,
                    pack(self.timestamp),
                    _HEAD_DELETED,
                    pack(self.deleted),
                    _HEAD_PARTS,
                    _array_header(len(packed)),
                    *packed,
                    _HEAD_BUCKET_ID,
                    pack(self.bucket_id),
                    _HEAD_KEY,
                    pack(self.key),
                )
            )
        _ROWS.put(data, self)
        return data

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decodes a row (of this or an older format); a big row recently encoded or
        decoded by this process is returned from the cache.

        Raises:
            DecodeError: the bytes are not a multipart upload.
        """
        raw = data if type(data) is bytes else bytes(data)
        row = _ROWS.get(raw)
        if isinstance(row, cls):
            # A row used again will likely be merged into and re-encoded again: from now
            # on its parts keep their encodings, which its merges pass on. (Not before:
            # building them costs more than encoding the row once.)
            row._packed_parts()
            return row
        decoded = decode_versioned(cls, raw)
        _ROWS.put(raw, decoded)
        return decoded

    def __to_wire__(self) -> object:
        """The generic dataclass encoding (field maps in declaration order), built directly
        (what ``garage_util.encode.pack`` encodes; :meth:`encode` writes the same bytes)."""
        return {
            "upload_id": bytes(self.upload_id),
            "timestamp": self.timestamp,
            "deleted": {"value": self.deleted.value},
            "parts": {"vals": [[list(key), _part_to_wire(part)] for key, part in self.parts.vals]},
            "bucket_id": bytes(self.bucket_id),
            "key": self.key,
        }

    def _packed_parts(self) -> _PackedParts:
        """``parts`` encoded entry by entry (memoized; never modify it)."""
        packed = self._packed
        if packed is None:
            packed = [_pack_entry(key, part) for key, part in self.parts.vals]
            object.__setattr__(self, "_packed", packed)
        return packed

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> Self:
        """Decodes :meth:`__to_wire__`'s structure (or the generic one: fields in any order).

        Raises:
            ValueError: a missing or unknown field, or a field of the wrong shape.
        """
        del type_args  # not generic
        if type(obj) is not dict:
            raise ValueError(f"a multipart upload is a map, not {type(obj).__name__}")
        if obj.keys() != _FIELDS:
            missing = ", ".join(sorted(_FIELDS - obj.keys()))
            unknown = ", ".join(sorted(map(repr, obj.keys() - _FIELDS)))
            raise ValueError(
                f"a multipart upload has fields {', '.join(sorted(_FIELDS))}"
                + (f"; missing: {missing}" if missing else "")
                + (f"; unknown: {unknown}" if unknown else "")
            )
        return cls(
            _field(obj, "upload_id", Uuid),
            _field(obj, "timestamp", int),
            _field(obj, "deleted", Bool),
            _field(obj, "parts", None),
            _field(obj, "bucket_id", Uuid),
            _field(obj, "key", str),
        )


def _field(obj: dict[str, object], name: str, tp: object) -> Any:
    """Field ``name`` of a row's wire map, decoded as a ``tp`` (None: the parts).

    Raises:
        ValueError: naming the field and what is wrong with it.
    """
    try:
        return _parts_from_wire(obj[name]) if tp is None else from_wire(tp, obj[name])
    except ValueError as exc:  # DecodeError, or unsorted parts
        raise ValueError(f"{name}: {exc}") from None


_FIELDS: Final = frozenset(("upload_id", "timestamp", "deleted", "parts", "bucket_id", "key"))
_PARTS_TYPE: Final = Map[tuple[int, int], MpuPart]
_NO_ALGORITHM: Final = (None, 0)
_PART_FIELDS: Final = frozenset(("version", "etag", "checksum", "size"))
_CHECKSUM_FIELDS: Final = frozenset(("algorithm", "value"))
# name -> (algorithm, digest size): no enum property lookups per part when decoding.
_ALGORITHMS: Final = {a.value: (a, a.digest_size) for a in ChecksumAlgorithm}
#: Up to this many attempts, a mutator is merged by bisection; more (a read repair, a
#: sync of two whole rows) rebuild the map, which is O((n + m) log(n + m)) anyway.
_FEW_PARTS: Final = 16


def _merge_parts(
    a: MultipartUpload, b: MultipartUpload
) -> tuple[Map[tuple[int, int], MpuPart], _PackedParts | None, dict[str, int] | None]:
    """The merged parts of two live rows, with their encodings and the merged row's counts
    when they come cheap (else None).

    Merging a few attempts into a big row (an insert's mutator into the stored row)
    inserts them by bisection into copies of the big row's parts and of its packed parts
    (if it has them), and updates its counts (if it has them) with the part numbers the
    few attempts touch: O(n) copying, no sorting, no re-encoding, no recounting. Part
    merges commute, so which row is the big one does not change the result.
    """
    big, small = (a, b) if len(a.parts.vals) >= len(b.parts.vals) else (b, a)
    base = big.parts.vals
    if not small.parts.vals:
        return big.parts, big._packed, big._counts
    if len(small.parts.vals) > _FEW_PARTS:
        return a.parts.merge(b.parts), None, None
    vals: list[tuple[tuple[int, int], MpuPart]] | None = None
    packed: _PackedParts | None = None
    for key, part in small.parts.vals:
        current = base if vals is None else vals
        i = bisect.bisect_left(current, key, key=_first)
        found = i < len(current) and current[i][0] == key
        if found:
            part = current[i][1].merge(part)
            if part is current[i][1]:
                continue  # nothing new
        if vals is None:
            vals = list(base)
            packed = None if big._packed is None else list(big._packed)
        if found:
            vals[i] = (key, part)
        else:
            vals.insert(i, (key, part))
        if packed is not None:
            entry = _pack_entry(key, part)
            if found:
                packed[i] = entry
            else:
                packed.insert(i, entry)
    if vals is None:
        return big.parts, big._packed, big._counts
    counts = None
    if big._counts is not None:
        counts = dict(big._counts)
        counts[UPLOADS] = 1  # both rows are live
        for number in {key[0] for key, _part in small.parts.vals}:
            before, after = _newest_size(base, number), _newest_size(vals, number)
            counts[PARTS] += (after is not None) - (before is not None)
            counts[BYTES] += (after or 0) - (before or 0)
    return _sorted_map(tuple(vals)), packed, counts


def _newest_size(vals: Sequence[tuple[tuple[int, int], MpuPart]], number: int) -> int | None:
    """The size counted for part ``number`` (0 while uploading), None if it has no attempt."""
    i = bisect.bisect_left(vals, number + 1, key=_number)
    if i == 0 or vals[i - 1][0][0] != number:
        return None
    return vals[i - 1][1].size or 0


def _sorted_map(
    vals: tuple[tuple[tuple[int, int], MpuPart], ...],
) -> Map[tuple[int, int], MpuPart]:
    """``Map(vals)`` for entries known to be sorted with unique keys, without checking
    them again (an O(n) loop in Python per merge: the insert path of a big row)."""
    parts: Map[tuple[int, int], MpuPart] = object.__new__(Map)
    object.__setattr__(parts, "vals", vals)  # as the frozen dataclass's __init__ does
    return parts


def _first(entry: tuple[tuple[int, int], MpuPart]) -> tuple[int, int]:
    """The key of a ``parts`` entry."""
    return entry[0]


def _number(entry: tuple[tuple[int, int], MpuPart]) -> int:
    """The part number of a ``parts`` entry."""
    return entry[0][0]


def _pack_entry(key: tuple[int, int], part: MpuPart) -> bytes:
    """The encoding of one ``parts`` entry, ``[[number, timestamp], {part fields}]``, as
    the generic encoder writes it inside the row (msgpack encodes a value the same way
    wherever it sits)."""
    return pack((key, part))


def _array_header(length: int) -> bytes:
    """msgpack's header of an array of ``length`` items (fixarray, array 16, array 32)."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


# The constant pieces of a row's encoding: a map of its six fields in declaration order
# (msgpack: fixmap header, then key and value of each), "parts" being a one-field map.
_HEAD_UPLOAD_ID: Final = b"\x86" + pack("upload_id")
_HEAD_TIMESTAMP: Final = pack("timestamp")
_HEAD_DELETED: Final = pack("deleted")
_HEAD_PARTS: Final = pack("parts") + b"\x81" + pack("vals")
_HEAD_BUCKET_ID: Final = pack("bucket_id")
_HEAD_KEY: Final = pack("key")


def _part_to_wire(part: MpuPart) -> dict[str, object]:
    """The generic encoding of an :class:`MpuPart`, built directly."""
    checksum = part.checksum
    return {
        "version": bytes(part.version),
        "etag": part.etag,
        "checksum": None
        if checksum is None
        else {"algorithm": checksum.algorithm.value, "value": checksum.value},
        "size": part.size,
    }


class _Unusual(Exception):
    """A part whose wire shape is not the one :func:`_part_to_wire` writes."""


def _part_from_wire(entry: object) -> tuple[tuple[int, int], MpuPart]:
    """A ``parts`` entry ``[[number, timestamp], part]`` in :func:`_part_to_wire`'s shape.

    Raises:
        _Unusual: any other shape (the generic decoder then says what is wrong, or accepts
            it: a part with fields left out, in another order).
    """
    if type(entry) is not list or len(entry) != 2:
        raise _Unusual
    key, fields = entry
    if type(key) is not list or len(key) != 2 or type(fields) is not dict:
        raise _Unusual
    if fields.keys() != _PART_FIELDS:
        raise _Unusual
    number, timestamp = key
    version, etag, size = fields["version"], fields["etag"], fields["size"]
    if (
        type(number) is not int
        or type(timestamp) is not int
        or type(version) is not bytes
        or len(version) != HASH_LEN
        or (etag is not None and type(etag) is not str)
        or (size is not None and type(size) is not int)
    ):
        raise _Unusual
    checksum = fields["checksum"]
    value: ChecksumValue | None = None
    if checksum is not None:
        if type(checksum) is not dict or checksum.keys() != _CHECKSUM_FIELDS:
            raise _Unusual
        name, raw = checksum["algorithm"], checksum["value"]
        algorithm, size_bytes = (
            _ALGORITHMS.get(name, _NO_ALGORITHM) if type(name) is str else _NO_ALGORITHM
        )
        if algorithm is None or type(raw) is not bytes or len(raw) != size_bytes:
            raise _Unusual
        value = ChecksumValue(algorithm, raw)
    return (number, timestamp), MpuPart(FixedBytes32(version), etag, value, size)


def _parts_from_wire(obj: object) -> Map[tuple[int, int], MpuPart]:
    """Decodes the ``parts`` field: directly, or through the generic decoder if unusual.

    Raises:
        ValueError: not a map of parts (a :class:`DecodeError` naming the place), or keys
            out of order.
    """
    if type(obj) is dict and len(obj) == 1:
        vals = obj.get("vals")
        if type(vals) is list:
            try:
                entries = tuple([_part_from_wire(entry) for entry in vals])
            except _Unusual:
                pass
            else:
                keys = [key for key, _part in entries]
                if all(map(operator.lt, keys, itertools.islice(keys, 1, None))):
                    return _sorted_map(entries)
    parts: Map[tuple[int, int], MpuPart] = from_wire(_PARTS_TYPE, obj)
    return parts


@final
class _RowCache:
    """The last few big rows encoded or decoded by this process, by their bytes.

    Bounded in rows and in encoded bytes; least recently used first out. Safe from any
    thread (the table layer decodes in worker threads).

    Args:
        min_bytes: smaller rows are not kept (decoding them costs little).
        max_rows: the most rows kept.
        max_bytes: the most encoded bytes kept (the decoded rows take a few times more).
    """

    __slots__ = ("_bytes", "_lock", "_max_bytes", "_max_rows", "_min_bytes", "_rows")

    def __init__(self, *, min_bytes: int, max_rows: int, max_bytes: int) -> None:
        self._min_bytes = min_bytes
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._rows: OrderedDict[bytes, MultipartUpload] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, data: bytes) -> MultipartUpload | None:
        """The row encoded as ``data``, if kept."""
        if len(data) < self._min_bytes:
            return None
        with self._lock:
            row = self._rows.get(data)
            if row is not None:
                self._rows.move_to_end(data)
            return row

    def put(self, data: bytes, row: MultipartUpload) -> None:
        """Keeps ``row``, encoded as ``data``, if it is big enough to be worth it."""
        if len(data) < self._min_bytes or len(data) > self._max_bytes:
            return
        with self._lock:
            if data in self._rows:
                self._rows.move_to_end(data)
                return
            self._rows[data] = row
            self._bytes += len(data)
            while len(self._rows) > self._max_rows or self._bytes > self._max_bytes:
                old, _row = self._rows.popitem(last=False)
                self._bytes -= len(old)

    def clear(self) -> None:
        """Forgets every row."""
        with self._lock:
            self._rows.clear()
            self._bytes = 0


# About 70 parts (85 to 135 bytes each): smaller rows decode in a fraction of a ms.
_CACHE_MIN_BYTES: Final = 8 * 1024
# A few uploads in progress at once (nodes sharing a process share the rows: same bytes).
_CACHE_MAX_ROWS: Final = 16
# A 10,000-part row encodes to about 1.3 MB, and takes about four times more decoded
# (with its parts' encodings): this keeps the cache within a few tens of MB.
_CACHE_MAX_BYTES: Final = 6 * 1024 * 1024
_ROWS: Final = _RowCache(
    min_bytes=_CACHE_MIN_BYTES, max_rows=_CACHE_MAX_ROWS, max_bytes=_CACHE_MAX_BYTES
)


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

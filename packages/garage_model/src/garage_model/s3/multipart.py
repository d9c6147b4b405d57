"""Multipart uploads: create, store a part, complete, abort (design §10.6).

Garage: the storage half of src/api/s3/multipart.rs. The S3 API adds HTTP, XML and the
checksum algorithms on top; what lives here is the order of the writes and the rules that
pick the parts of the final object.

Theory of operation
-------------------
An upload is an object version ``Uploading{multipart: true}`` whose uuid is the upload id,
plus a :class:`~garage_model.s3.MultipartUpload` row under the same id that lists the part
attempts. Both are written at creation (object first: the object owns the upload).

**A part** (:func:`store_part`) is a version of its own, backlinked to the upload:

1. insert the upload with the part attempt ``(n, timestamp)`` still unfinished (no ETag, no
   size), so that the part's version is referenced before it exists;
2. insert the empty version row, then its blocks (:class:`~garage_model.s3.writer.VersionWriter`
   for UploadPart, the copy pipeline of :mod:`garage_model.s3.copy` for UploadPartCopy);
3. re-insert the attempt with its ETag, checksum and size: it is now finished.

A failure marks the part's version deleted, which releases whatever blocks it got.
Re-uploading a part number adds a newer attempt; all attempts stay until the upload ends.

**Completion** (:func:`select_parts`, then :func:`complete_upload`) takes the parts the
client lists, in strictly increasing part numbers (gaps allowed). Each must match, by ETag
(and checksum, when the client sends one), the newest *finished* attempt of its number;
every part but the last must hold at least :data:`MIN_PART_SIZE` bytes. The final
``Version`` has the upload id as uuid and the parts' blocks renumbered 1..k in list order
(offsets inside a part kept); it is written with its block references *before* the object
turns ``Complete``. The object's hook then deletes the upload, whose hook deletes every
part version: the blocks survive through the final version's references.

**Abort** turns the version ``Aborted``; the same cascade cleans the parts.

**Encryption** (SSE-C, design §10.9). An upload created with a
:class:`~garage_model.s3.writer.DataEncryption` keeps its headers encrypted in its
``Uploading`` state, and its parts are stored with the same encryption (the API checks the
customer key of every request against that state). Only the API can read such headers, so
it hands :func:`complete_upload` the final object's stored metadata.

**Checksum type.** The model stores a checksum value per object, not how it was made. A
multipart object's checksum is either *composite* (the checksum of the part checksums,
shown as ``base64-N``) or *full-object*; the type is kept as the reserved stored header
:data:`CHECKSUM_TYPE_HEADER` (no client header is ever stored under that name: only the
content headers and ``x-amz-meta-*`` are), in the upload's headers from creation and in
the object's once complete. :func:`checksum_type_of` reads it back; :func:`part_count`
reads ``N`` from a multipart ETag ``<hex>-N``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from garage_model.bucket_table import UuidKey
from garage_table.schema import EmptyKey, StringKey
from garage_util.clock import now_msec
from garage_util.crdt import Bool, Map
from garage_util.data import Uuid, gen_uuid

from .block_ref_table import BlockRef
from .mpu_table import ChecksumAlgorithm, ChecksumValue, MpuPart, MultipartUpload
from .object_table import (
    Aborted,
    Complete,
    FirstBlock,
    Object,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    Plaintext,
    Uploading,
)
from .version_table import MpuBacklink, ObjectBacklink, Version, VersionBlock
from .writer import VersionWriter

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

    from garage_model.garage import Garage

    from .object_table import ObjectVersionEncryption
    from .writer import DataEncryption

__all__ = [
    "CHECKSUM_COMPOSITE",
    "CHECKSUM_FULL_OBJECT",
    "CHECKSUM_TYPE_HEADER",
    "MIN_PART_SIZE",
    "CompletedUpload",
    "EmptyPartError",
    "EntityTooSmallError",
    "InvalidPartError",
    "MultipartError",
    "NoSuchUploadError",
    "PartDigest",
    "RequestedPart",
    "SelectedPart",
    "StoredPart",
    "Upload",
    "abort_upload",
    "checksum_type_of",
    "complete_upload",
    "concurrently",
    "create_upload",
    "get_upload",
    "multipart_etag",
    "next_timestamp",
    "part_count",
    "select_parts",
    "store_part",
    "upload_part",
]

#: S3's smallest part, except for the last one (AWS: "Amazon S3 multipart upload limits").
MIN_PART_SIZE: Final = 5 * 1024 * 1024
#: The reserved stored header holding a multipart checksum's type (see the module docstring).
CHECKSUM_TYPE_HEADER: Final = "x-amz-checksum-type"
#: Checksum type: the checksum of the concatenated part checksums, shown ``base64-N``.
CHECKSUM_COMPOSITE: Final = "COMPOSITE"
#: Checksum type: the CRC of the whole object (combined from the part CRCs).
CHECKSUM_FULL_OBJECT: Final = "FULL_OBJECT"
# Part version rows read at once when completing (an upload has up to 10000 parts).
_PARALLEL_READS: Final = 32


# ------------------------------------------------------------------ errors


class MultipartError(Exception):
    """Base of the refusals of this module (the S3 API maps each to its error code)."""


class NoSuchUploadError(MultipartError, LookupError):
    """No upload in progress has this id for this object: unknown, completed or aborted."""


class InvalidPartError(MultipartError, ValueError):
    """A listed part was never finished, or its ETag or checksum is not the stored one."""


class EntityTooSmallError(MultipartError, ValueError):
    """A part other than the last is smaller than :data:`MIN_PART_SIZE`."""


class EmptyPartError(MultipartError, ValueError):
    """A part upload had no data (Garage refuses empty parts: "Empty body")."""


# ------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress, as read by :func:`get_upload`.

    Attributes:
        bucket_id: the bucket.
        key: the object key.
        version: the object's ``Uploading{multipart: true}`` version (uuid = upload id).
        mpu: the upload's row of the multipart_upload table.
    """

    bucket_id: Uuid
    key: str
    version: ObjectVersion
    mpu: MultipartUpload

    @property
    def upload_id(self) -> Uuid:
        """The upload id (the uuid of the object version being uploaded)."""
        return self.version.uuid

    @property
    def state(self) -> Uploading:
        """The version's ``Uploading`` state."""
        state = self.version.state
        assert isinstance(state, Uploading)  # get_upload checked it
        return state

    @property
    def checksum_algorithm(self) -> ChecksumAlgorithm | None:
        """The ``x-amz-checksum-algorithm`` given at creation, if any."""
        return self.state.checksum_algorithm

    @property
    def inner(self) -> ObjectVersionMetaInner:
        """The headers (and reserved checksum type) the object will be stored with.

        Raises:
            MultipartError: the upload is encrypted (SSE-C): only the API, given the
                customer key, can read them (from ``state.encryption``).
        """
        encryption = self.state.encryption
        if not isinstance(encryption, Plaintext):
            raise MultipartError("the headers of an SSE-C upload need its customer key")
        return encryption.inner

    @property
    def checksum_type(self) -> str | None:
        """:data:`CHECKSUM_COMPOSITE`, :data:`CHECKSUM_FULL_OBJECT` or None."""
        return checksum_type_of(self.inner)


@dataclass(frozen=True, slots=True)
class PartDigest:
    """What a part's data hashed to, once all of it was read and checked.

    Attributes:
        etag: the part's ETag (hex MD5 of its data).
        checksum: the part's checksum in the upload's algorithm (None without one).
    """

    etag: str
    checksum: ChecksumValue | None = None


@dataclass(frozen=True, slots=True)
class StoredPart:
    """A finished part attempt.

    Attributes:
        part_number: the part number.
        timestamp: the attempt's timestamp (its key in the upload, and ``LastModified``).
        part: the attempt, with its ETag, checksum and size.
    """

    part_number: int
    timestamp: int
    part: MpuPart

    @property
    def etag(self) -> str:
        """The part's ETag."""
        assert self.part.etag is not None  # finished
        return self.part.etag

    @property
    def size(self) -> int:
        """The part's size in bytes."""
        assert self.part.size is not None  # finished
        return self.part.size


@dataclass(frozen=True, slots=True)
class RequestedPart:
    """A part named by a CompleteMultipartUpload request.

    Attributes:
        part_number: the part number.
        etag: the ETag the client got for it, unquoted.
        checksum: the checksum the client sent for it, if any (in any algorithm).
    """

    part_number: int
    etag: str
    checksum: ChecksumValue | None = None


@dataclass(frozen=True, slots=True)
class SelectedPart:
    """A part chosen for the final object (see :func:`select_parts`).

    Attributes:
        part_number: the number the client gave it.
        part: its newest finished attempt (ETag and size set).
    """

    part_number: int
    part: MpuPart

    @property
    def etag(self) -> str:
        """The part's ETag."""
        assert self.part.etag is not None  # select_parts keeps finished parts only
        return self.part.etag

    @property
    def size(self) -> int:
        """The part's size in bytes."""
        assert self.part.size is not None  # select_parts keeps finished parts only
        return self.part.size


@dataclass(frozen=True, slots=True)
class CompletedUpload:
    """What completing an upload stored.

    Attributes:
        version: the object version (the upload id).
        timestamp: its timestamp (the upload's creation time).
        meta: size, ETag and headers (with the checksum) of the object.
    """

    version: Uuid
    timestamp: int
    meta: ObjectVersionMeta


# ------------------------------------------------------------------ pure rules


def next_timestamp(existing: Object | None, now_ms: int) -> int:
    """A timestamp newer than every version of ``existing`` and not older than ``now_ms``
    (Garage's ``next_timestamp``): a new version must sort after the current ones."""
    newest = max((v.timestamp for v in existing.versions), default=0) if existing else 0
    return max(newest + 1, now_ms)


def checksum_type_of(inner: ObjectVersionMetaInner) -> str | None:
    """The checksum type kept in the reserved header, or None (then a stored checksum is
    of the whole object: a single-part object's)."""
    for name, value in inner.headers:
        if name == CHECKSUM_TYPE_HEADER:
            return value
    return None


def part_count(etag: str) -> int | None:
    """``N`` of a multipart ETag ``<hex md5>-N``; None for a single-part ETag."""
    _, dash, count = etag.rpartition("-")
    if not dash or not count.isascii() or not count.isdigit():
        return None
    return int(count)


def multipart_etag(etags: Sequence[str]) -> str:
    """S3's multipart ETag: the hex MD5 of the concatenated binary part MD5s, then
    ``-<number of parts>`` (AWS: "Checking object integrity"; Garage decodes the hex too).

    Raises:
        ValueError: a part ETag is not hex.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    for etag in etags:
        md5.update(bytes.fromhex(etag))
    return f"{md5.hexdigest()}-{len(etags)}"


def _newest_finished(mpu: MultipartUpload) -> dict[int, MpuPart]:
    """``part_number -> part`` of the newest finished attempt of each number."""
    out: dict[int, MpuPart] = {}
    for (number, _ts), part in mpu.parts.items():
        if part.etag is not None and part.size is not None:
            out[number] = part  # keys are sorted by (number, timestamp): the newest wins
    return out


def select_parts(
    mpu: MultipartUpload,
    requested: Sequence[RequestedPart],
    *,
    algorithm: ChecksumAlgorithm | None = None,
    min_part_size: int = MIN_PART_SIZE,
) -> list[SelectedPart]:
    """The parts of the final object, checked against what was uploaded.

    The part numbers must already be in strictly increasing order (the XML codec's
    ``check_order``).

    Args:
        mpu: the upload.
        requested: the parts the client lists, in order.
        algorithm: the upload's checksum algorithm: a requested checksum of that algorithm
            must equal the stored one (others are ignored, as S3 ignores them when the
            upload has no algorithm).
        min_part_size: the smallest size of a part that is not the last.

    Raises:
        InvalidPartError: a part with no finished attempt, another ETag, or another
            checksum; or no part at all.
        EntityTooSmallError: a part but the last is smaller than ``min_part_size``.
    """
    if not requested:
        raise InvalidPartError("a multipart upload needs at least one part")
    finished = _newest_finished(mpu)
    selected = []
    for req in requested:
        part = finished.get(req.part_number)
        if part is None or part.etag != req.etag:
            raise InvalidPartError(
                f"part {req.part_number} was not uploaded with ETag {req.etag!r}"
            )
        if (
            algorithm is not None
            and req.checksum is not None
            and req.checksum.algorithm is algorithm
            and req.checksum != part.checksum
        ):
            raise InvalidPartError(f"the checksum of part {req.part_number} does not match")
        selected.append(SelectedPart(req.part_number, part))
    for sel in selected[:-1]:
        if sel.size < min_part_size:
            raise EntityTooSmallError(
                f"part {sel.part_number} has {sel.size} bytes; every part but the last "
                f"needs at least {min_part_size}"
            )
    return selected


# ------------------------------------------------------------------ drivers


async def concurrently(*fns: Callable[[], Awaitable[object]]) -> None:
    """Runs ``fns`` concurrently and waits for all of them.

    Raises:
        Exception: the first failure, as raised (a task group would wrap it in an exception
            group, which the API could not map to an S3 error); the others are cancelled.
    """

    async def run(fn: Callable[[], Awaitable[object]]) -> None:
        await fn()

    try:
        async with anyio.create_task_group() as tg:
            for fn in fns:
                tg.start_soon(run, fn)
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]
        if not isinstance(first, Exception):
            raise  # a cancellation or an exit: let it through untouched
        raise first from None


def _uploading_object(upload: Upload, state: Uploading | Complete | Aborted) -> Object:
    version = ObjectVersion(upload.upload_id, upload.version.timestamp, state)
    return Object.new(upload.bucket_id, upload.key, [version])


async def create_upload(
    garage: Garage,
    bucket_id: Uuid,
    key: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    checksum_algorithm: ChecksumAlgorithm | None = None,
    checksum_type: str | None = None,
    encryption: DataEncryption | None = None,
) -> Upload:
    """Starts a multipart upload of ``key``: the ``Uploading`` version, then the upload row.

    Args:
        garage: the node.
        bucket_id: the bucket.
        key: the object key.
        headers: the headers to store with the object.
        checksum_algorithm: the parts' checksum algorithm, if any.
        checksum_type: :data:`CHECKSUM_COMPOSITE` or :data:`CHECKSUM_FULL_OBJECT` when
            there is an algorithm.
        encryption: how the headers (with the checksum type) and the parts are stored
            (SSE-C); None in clear. Every part must then be stored with it.

    Raises:
        ValueError: a checksum type without algorithm, or an unknown type.
    """
    if checksum_type is not None:
        if checksum_algorithm is None:
            raise ValueError("a checksum type needs a checksum algorithm")
        if checksum_type not in (CHECKSUM_COMPOSITE, CHECKSUM_FULL_OBJECT):
            raise ValueError(f"unknown checksum type {checksum_type!r}")
        headers = (*headers, (CHECKSUM_TYPE_HEADER, checksum_type))
    existing = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    upload_id, timestamp = gen_uuid(), next_timestamp(existing, now_msec())
    inner = ObjectVersionMetaInner(headers=headers)
    state = Uploading(
        multipart=True,
        checksum_algorithm=checksum_algorithm,
        encryption=Plaintext(inner) if encryption is None else encryption.encrypt_meta(inner),
    )
    version = ObjectVersion(upload_id, timestamp, state)
    await garage.object_table.table.insert(Object.new(bucket_id, key, [version]))
    mpu = MultipartUpload.new(upload_id, timestamp, bucket_id, key)
    await garage.mpu_table.table.insert(mpu)
    return Upload(bucket_id, key, version, mpu)


async def get_upload(garage: Garage, bucket_id: Uuid, key: str, upload_id: Uuid) -> Upload:
    """The upload ``upload_id`` of ``key``, if it is still in progress.

    Raises:
        NoSuchUploadError: no such upload for this object, or it was completed or aborted.
    """
    found: dict[str, object] = {}

    async def read_object() -> None:
        found["object"] = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))

    async def read_mpu() -> None:
        found["mpu"] = await garage.mpu_table.table.get(UuidKey(upload_id), EmptyKey())

    await concurrently(read_object, read_mpu)
    obj, mpu = found["object"], found["mpu"]
    if not isinstance(obj, Object) or not isinstance(mpu, MultipartUpload) or mpu.is_deleted:
        raise NoSuchUploadError(f"no upload {upload_id.hex()} of {key!r}")
    for version in obj.versions:
        if version.uuid == upload_id and version.is_uploading(check_multipart=True):
            return Upload(bucket_id, key, version, mpu)
    raise NoSuchUploadError(f"no upload {upload_id.hex()} of {key!r} in progress")


async def store_part(
    garage: Garage,
    upload: Upload,
    part_number: int,
    fill: Callable[[Uuid], Awaitable[int]],
    finish: Callable[[], PartDigest],
) -> StoredPart:
    """Stores one attempt of a part; the data is written by ``fill``.

    Args:
        garage: the node.
        upload: the upload (from :func:`get_upload`).
        part_number: 1..10000.
        fill: writes the part's blocks into the version it is given (whose empty row
            exists) and returns the part's size.
        finish: called once ``fill`` returned: checks and returns the part's digests
            (raising stores nothing: the attempt stays unfinished and its version is
            deleted).

    Raises:
        EmptyPartError: ``fill`` wrote no data.
        Exception: whatever ``fill`` or ``finish`` raised.
    """
    version_uuid = gen_uuid()
    timestamp = upload.mpu.next_timestamp(part_number, now_msec())
    base = MultipartUpload.new(upload.upload_id, upload.mpu.timestamp, upload.bucket_id, upload.key)
    await garage.mpu_table.table.insert(
        base.with_part(part_number, timestamp, MpuPart(version_uuid))
    )
    backlink = MpuBacklink(upload.upload_id)
    try:
        await garage.version_table.table.insert(Version.new(version_uuid, backlink))
        size = await fill(version_uuid)
        if size == 0:
            raise EmptyPartError(f"part {part_number} has no data")
        digest = finish()
        part = MpuPart(version_uuid, digest.etag, digest.checksum, size)
        await garage.mpu_table.table.insert(base.with_part(part_number, timestamp, part))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await garage.version_table.table.insert(
                Version.new(version_uuid, backlink, deleted=True)
            )
        raise
    return StoredPart(part_number, timestamp, part)


async def upload_part(
    garage: Garage,
    upload: Upload,
    part_number: int,
    chunks: AsyncIterable[bytes],
    *,
    digest: Callable[[bytes], object],
    finish: Callable[[], PartDigest],
    encryption: DataEncryption | None = None,
) -> StoredPart:
    """Stores the bytes of ``chunks`` as a new attempt of part ``part_number``.

    Args:
        garage: the node.
        upload: the upload.
        part_number: 1..10000.
        chunks: the part's data.
        digest: fed every block in order, in the thread that hashes it (the plaintext).
        finish: see :func:`store_part`.
        encryption: the upload's encryption (SSE-C), None in clear.

    Raises:
        EmptyPartError: no data.
        Exception: reading or storing failed, or ``finish`` refused the data.
    """

    async def fill(version_uuid: Uuid) -> int:
        backlink = MpuBacklink(upload.upload_id)
        writer = VersionWriter(
            garage, version_uuid, backlink, part_number=part_number, encryption=encryption
        )
        return await writer.write_all(chunks, digest=digest)

    return await store_part(garage, upload, part_number, fill, finish)


async def _part_versions(garage: Garage, parts: Sequence[SelectedPart]) -> list[Version]:
    """The version rows of ``parts``, in order, read a few at a time.

    Raises:
        InvalidPartError: a part's version is gone (deleted meanwhile).
    """
    rows: list[Version | None] = [None] * len(parts)
    limiter = anyio.Semaphore(_PARALLEL_READS)

    async def read(i: int, uuid: Uuid) -> None:
        async with limiter:
            rows[i] = await garage.version_table.table.get(UuidKey(uuid), EmptyKey())

    await concurrently(
        *(functools.partial(read, i, sel.part.version) for i, sel in enumerate(parts))
    )
    out = []
    for sel, row in zip(parts, rows, strict=True):
        if row is None or row.is_deleted or not row.blocks.vals:
            raise InvalidPartError(f"the data of part {sel.part_number} is gone")
        out.append(row)
    return out


async def complete_upload(
    garage: Garage,
    upload: Upload,
    parts: Sequence[SelectedPart],
    *,
    checksum: ChecksumValue | None = None,
    encryption: ObjectVersionEncryption | None = None,
) -> CompletedUpload:
    """Makes the object of ``upload`` from ``parts`` (from :func:`select_parts`).

    Writes the final version and its block references, then the ``Complete`` object
    version, last.

    Args:
        garage: the node.
        upload: the upload.
        parts: the parts, in order.
        checksum: the object's checksum (composite or full-object), stored with it.
        encryption: the object's stored metadata, for an encrypted (SSE-C) upload, whose
            headers only the API can read: the upload's, or re-encrypted with
            ``checksum``. None for an upload in clear: its headers with ``checksum``.

    Raises:
        InvalidPartError: no part, or a part's data is gone.
    """
    if not parts:
        raise InvalidPartError("a multipart upload needs at least one part")
    rows = await _part_versions(garage, parts)
    blocks: dict[tuple[int, int], VersionBlock] = {}
    for number, row in enumerate(rows, start=1):
        for (_part, offset), block in row.blocks.items():
            blocks[(number, offset)] = block
    upload_id = upload.upload_id
    final = Version(
        upload_id, Bool(False), Map.from_items(blocks), ObjectBacklink(upload.bucket_id, upload.key)
    )
    await garage.version_table.table.insert(final)
    hashes = sorted({block.hash for block in blocks.values()})
    await garage.block_ref_table.table.insert_many([BlockRef.new(h, upload_id) for h in hashes])

    if encryption is None:
        encryption = Plaintext(
            ObjectVersionMetaInner(headers=upload.inner.headers, checksum=checksum)
        )
    meta = ObjectVersionMeta(
        sum(p.size for p in parts), multipart_etag([p.etag for p in parts]), encryption
    )
    first_hash = final.blocks.vals[0][1].hash
    await garage.object_table.table.insert(
        _uploading_object(upload, Complete(FirstBlock(meta, first_hash)))
    )
    return CompletedUpload(upload_id, upload.version.timestamp, meta)


async def abort_upload(garage: Garage, upload: Upload) -> None:
    """Aborts ``upload``: its version becomes ``Aborted`` and the cascade deletes its parts."""
    await garage.object_table.table.insert(_uploading_object(upload, Aborted()))

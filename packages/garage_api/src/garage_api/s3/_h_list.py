"""Listing handlers: ListObjects (V1), ListObjectsV2, ListMultipartUploads, ListParts.

Garage: src/api/s3/list.rs (design §10.8).

Theory of operation
-------------------
Objects and uploads are listed from the object table, which is sorted by key within a
bucket's partition. Pagination is the sans-I/O :class:`~._tokens.Lister`: it says which key
the next range read starts at, is fed the entries of each read, and builds the page (its
entries, the common prefixes rolled up by the delimiter, and where the next page starts).
This module is only its driver and the conversion of table entries to listing entries:

- objects: a range read with ``ObjectFilter.IS_DATA`` returns the keys whose newest
  complete version holds data (deleted keys and uploads in progress are left out by the
  storage nodes). Size, ETag and LastModified come from that version.
- multipart uploads: a range read with ``ObjectFilter.uploading(check_multipart=True)``
  returns the keys with at least one multipart upload in progress; each such version is an
  entry, sorted by upload id (the hex of the version uuid, which sorts as its bytes).
- parts: read from the upload's row of the multipart_upload table (found and checked by
  ``garage_model.s3.multipart.get_upload``: a completed or aborted upload is NoSuchUpload),
  which holds every part of the upload (at most 10,000): they are paged in memory
  (:func:`~._tokens.paginate_parts`).

``max-keys`` is clamped to 1..1000 (design §10.8), except ``max-keys=0``, which gets AWS's
answer: an empty page that is not truncated.

A range read asks for one key more than a page holds (``Lister.page_size``), as Garage
does, so that a full page also says whether more follows. A directory rolled up into one
common prefix costs one read, however many keys it holds: the lister's next read starts
after the prefix.

Garage does not record who created an object or an upload; the Owner and Initiator fields
report the key that lists them.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Final, TypeVar

from garage_api.signature import ChecksumType, checksum_type
from garage_model.bucket_table import UuidKey
from garage_model.s3 import (
    MultipartUpload,
    Object,
    ObjectFilter,
    ObjectVersionMetaInner,
    Plaintext,
    Uploading,
)
from garage_model.s3.multipart import NoSuchUploadError, checksum_type_of, get_upload
from garage_table.schema import StringKey
from garage_util.data import Uuid

from ._api import xml_response
from ._errors import S3Error
from ._router import Operation
from ._tokens import (
    ListEntry,
    Lister,
    ListingPage,
    clamp_max_keys,
    decode_upload_id,
    encode_continuation_token,
    list_objects_start,
    list_uploads_start,
    paginate_parts,
)
from ._xml import (
    ListBucketResult,
    ListMultipartUploadsResult,
    ListPartsResult,
    ObjectEntry,
    Owner,
    PartEntry,
    UploadEntry,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from garage_api.http import Response
    from garage_model.s3 import ChecksumAlgorithm, ObjectVersionEncryption

    from ._api import ReqCtx

__all__ = ["HANDLERS"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ListObjectsV2/ListObjects with max-keys=0: AWS answers an empty page that is not
# truncated (and with no token), rather than clamping to 1 as Garage does. Clients use
# it to check that a bucket is reachable.
_EMPTY_PAGE_MAX_KEYS: Final = 0

_STANDARD: Final = "STANDARD"


# ---------------------------------------------------------------------- pure conversions


def _owner(ctx: ReqCtx) -> Owner:
    """The Owner reported for objects and uploads: the key that lists them."""
    return Owner(ctx.key.key_id, ctx.key.name)


def _plain_inner(encryption: ObjectVersionEncryption) -> ObjectVersionMetaInner | None:
    """The stored headers and checksum, unless encrypted with SSE-C (unreadable here)."""
    return encryption.inner if isinstance(encryption, Plaintext) else None


def object_entry(obj: Object, owner: Owner | None) -> ListEntry[ObjectEntry] | None:
    """The listing entry of an object, or None if it has no data (deleted or uploading).

    Args:
        obj: an object of the table.
        owner: the Owner to report (None to leave it out).
    """
    version = obj.last_complete_version()
    meta = None if version is None else version.meta()
    if version is None or meta is None:
        return None
    inner = _plain_inner(meta.encryption)
    checksum = None if inner is None else inner.checksum
    algorithms: tuple[str, ...] = ()
    kind = None
    if inner is not None and checksum is not None:
        algorithms = (checksum.algorithm.value,)
        # A multipart object keeps its checksum type; any other checksum is of the
        # whole object (as _h_multipart reports it).
        kind = checksum_type_of(inner) or ChecksumType.FULL_OBJECT.value
    entry = ObjectEntry(
        key=obj.key,
        last_modified_ms=version.timestamp,
        etag=meta.etag,
        size=meta.size,
        storage_class=_STANDARD,
        owner=owner,
        checksum_algorithm=algorithms,
        checksum_type=kind,
    )
    return ListEntry(obj.key, entry)


def _upload_checksum(state: Uploading) -> tuple[str | None, str | None]:
    """The ChecksumAlgorithm and ChecksumType of an upload in progress.

    The type is the one kept with the upload's headers at creation; when it is not
    readable (SSE-C), S3's default for the algorithm.
    """
    algorithm: ChecksumAlgorithm | None = state.checksum_algorithm
    if algorithm is None:
        return None, None
    inner = _plain_inner(state.encryption)
    kind = None if inner is None else checksum_type_of(inner)
    if kind is None:
        default = checksum_type(algorithm, None)
        kind = None if default is None else default.value
    return algorithm.value, kind


def upload_entries(obj: Object, owner: Owner) -> list[ListEntry[UploadEntry]]:
    """The multipart uploads in progress of an object, sorted by upload id.

    Args:
        obj: an object of the table.
        owner: reported as the uploads' Owner and Initiator.
    """
    out: list[ListEntry[UploadEntry]] = []
    for version in obj.versions:
        state = version.state
        if not isinstance(state, Uploading) or not state.multipart:
            continue
        upload_id = version.uuid.hex()
        algorithm, kind = _upload_checksum(state)
        entry = UploadEntry(
            key=obj.key,
            upload_id=upload_id,
            initiated_ms=version.timestamp,
            owner=owner,
            storage_class=_STANDARD,
            checksum_algorithm=algorithm,
            checksum_type=kind,
        )
        out.append(ListEntry(obj.key, entry, sub=upload_id))
    out.sort(key=lambda e: e.sub)
    return out


def part_entries(mpu: MultipartUpload) -> list[tuple[int, PartEntry]]:
    """The finished parts of an upload, by part number: the newest attempt of each.

    A number whose newest attempt is still being uploaded (no ETag or size yet) is not
    listed: CompleteMultipartUpload would not accept an older attempt either.
    """
    out: list[tuple[int, PartEntry]] = []
    for number, (timestamp, part) in sorted(mpu.newest_parts().items()):
        if part.etag is None or part.size is None:
            continue
        checksums: tuple[tuple[str, str], ...] = ()
        if part.checksum is not None:
            value = base64.b64encode(part.checksum.value).decode("ascii")
            checksums = ((part.checksum.algorithm.value, value),)
        out.append((number, PartEntry(number, timestamp, part.etag, part.size, checksums)))
    return out


# ---------------------------------------------------------------------- the driver


async def _fill(
    lister: Lister[T],
    read: Callable[[str, int], Awaitable[list[Object]]],
    entries_of: Callable[[Object], Iterable[ListEntry[T]]],
) -> ListingPage[T]:
    """Runs ``lister`` over range reads of the object table until its page is complete.

    Args:
        lister: the page being built.
        read: ``read(first_key, limit)``: up to ``limit`` objects from ``first_key`` on.
        entries_of: the listing entries of one object (maybe none).
    """
    while (begin := lister.next_fetch()) is not None:
        objects = await read(begin, lister.page_size)
        lister.feed(
            (entry for obj in objects for entry in entries_of(obj)),
            more=len(objects) >= lister.page_size,
            last_key=objects[-1].key if objects else None,
        )
    return lister.result()


def _reader(
    ctx: ReqCtx, bucket_id: Uuid, filter: ObjectFilter
) -> Callable[[str, int], Awaitable[list[Object]]]:
    table = ctx.garage.object_table.table

    async def read(first_key: str, limit: int) -> list[Object]:
        return await table.get_range(
            UuidKey(bucket_id), StringKey(first_key), filter=filter, limit=limit
        )

    return read


# ---------------------------------------------------------------------- handlers


async def _list_objects(ctx: ReqCtx, *, v2: bool) -> Response:
    bucket_id, _bucket = ctx.require_bucket()
    assert ctx.bucket_name is not None
    ep = ctx.endpoint
    prefix = ep.prefix or ""
    owner = _owner(ctx) if (not v2 or ep.fetch_owner) else None
    token = ep.continuation_token
    if v2 and token is not None and not token.isascii():
        # Our tokens are ASCII; base64 decoding raises a bare ValueError on anything else.
        raise S3Error.invalid_argument("The continuation token provided is incorrect")
    start = list_objects_start(
        prefix=prefix,
        delimiter=ep.delimiter,
        v2=v2,
        marker=ep.marker,
        continuation_token=token,
        start_after=ep.start_after,
    )
    logger.debug("List%s %s prefix=%r start=%r", "V2" if v2 else "", ctx.bucket_name, prefix, start)
    page: ListingPage[ObjectEntry]
    if ep.max_keys == _EMPTY_PAGE_MAX_KEYS:
        max_keys = 0
        page = ListingPage()
    else:
        max_keys = clamp_max_keys(ep.max_keys)
        lister: Lister[ObjectEntry] = Lister(
            prefix=prefix, delimiter=ep.delimiter, max_entries=max_keys, start=start
        )

        def entries_of(obj: Object) -> Iterable[ListEntry[ObjectEntry]]:
            entry = object_entry(obj, owner)
            return () if entry is None else (entry,)

        page = await _fill(lister, _reader(ctx, bucket_id, ObjectFilter.IS_DATA), entries_of)
    next_token = None
    if v2 and page.is_truncated and page.next_start is not None:
        next_token = encode_continuation_token(page.next_start)
    result = ListBucketResult(
        name=ctx.bucket_name,
        prefix=prefix,
        max_keys=max_keys,
        is_truncated=page.is_truncated,
        contents=[e.value for e in page.entries],
        common_prefixes=page.common_prefixes,
        delimiter=ep.delimiter,
        encoding_type=ep.encoding_type,
        is_v2=v2,
        marker=None if v2 else ep.marker,
        next_marker=None if v2 else page.next_marker,
        continuation_token=ep.continuation_token if v2 else None,
        next_continuation_token=next_token,
        start_after=ep.start_after if v2 else None,
    )
    return xml_response(result.to_xml())


async def list_objects(ctx: ReqCtx) -> Response:
    """ListObjects (V1): ``marker`` pagination; ``NextMarker`` is the last entry listed."""
    return await _list_objects(ctx, v2=False)


async def list_objects_v2(ctx: ReqCtx) -> Response:
    """ListObjectsV2: ``continuation-token`` or ``start-after`` pagination, ``KeyCount``."""
    return await _list_objects(ctx, v2=True)


async def list_multipart_uploads(ctx: ReqCtx) -> Response:
    """ListMultipartUploads: uploads in progress by key, then upload id.

    ``key-marker`` alone starts after that key; with ``upload-id-marker``, after that upload
    of the key (``include``: at the key, Garage's extension).
    """
    bucket_id, _bucket = ctx.require_bucket()
    assert ctx.bucket_name is not None
    ep = ctx.endpoint
    prefix = ep.prefix or ""
    owner = _owner(ctx)
    max_uploads = clamp_max_keys(ep.max_uploads)
    start = list_uploads_start(
        prefix=prefix,
        delimiter=ep.delimiter,
        key_marker=ep.key_marker,
        upload_id_marker=ep.upload_id_marker,
    )
    logger.debug("ListMultipartUploads %s prefix=%r start=%r", ctx.bucket_name, prefix, start)
    lister: Lister[UploadEntry] = Lister(
        prefix=prefix, delimiter=ep.delimiter, max_entries=max_uploads, start=start
    )
    read = _reader(ctx, bucket_id, ObjectFilter.uploading(check_multipart=True))
    page = await _fill(lister, read, lambda obj: upload_entries(obj, owner))
    result = ListMultipartUploadsResult(
        bucket=ctx.bucket_name,
        prefix=prefix,
        max_uploads=max_uploads,
        is_truncated=page.is_truncated,
        uploads=[e.value for e in page.entries],
        common_prefixes=page.common_prefixes,
        delimiter=ep.delimiter,
        encoding_type=ep.encoding_type,
        key_marker=ep.key_marker,
        upload_id_marker=ep.upload_id_marker,
        next_key_marker=page.next_marker,
        next_upload_id_marker=page.next_sub_marker,
    )
    return xml_response(result.to_xml())


async def list_parts(ctx: ReqCtx) -> Response:
    """ListParts: the finished parts of an upload in progress, by part number."""
    bucket_id, _bucket = ctx.require_bucket()
    assert ctx.bucket_name is not None
    ep = ctx.endpoint
    assert ep.key is not None
    assert ep.upload_id is not None  # required by the router
    upload_id = Uuid(decode_upload_id(ep.upload_id))
    try:
        # Garage: get_upload in multipart.rs; completed and aborted uploads are gone.
        upload = await get_upload(ctx.garage, bucket_id, ep.key, upload_id)
    except NoSuchUploadError:
        raise S3Error.no_such_upload(upload_id.hex()) from None
    max_parts = clamp_max_keys(ep.max_parts)
    parts, next_marker = paginate_parts(
        part_entries(upload.mpu), part_number_marker=ep.part_number_marker, max_parts=max_parts
    )
    algorithm, kind = _upload_checksum(upload.state)
    owner = _owner(ctx)
    result = ListPartsResult(
        bucket=ctx.bucket_name,
        key=ep.key,
        upload_id=upload_id.hex(),
        max_parts=max_parts,
        is_truncated=next_marker is not None,
        owner=owner,
        parts=[p for _n, p in parts],
        part_number_marker=ep.part_number_marker,
        next_part_number_marker=next_marker,
        storage_class=_STANDARD,
        checksum_algorithm=algorithm,
        checksum_type=kind,
    )
    return xml_response(result.to_xml())


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.LIST_OBJECTS: list_objects,
    Operation.LIST_OBJECTS_V2: list_objects_v2,
    Operation.LIST_MULTIPART_UPLOADS: list_multipart_uploads,
    Operation.LIST_PARTS: list_parts,
}

"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.

Garage: src/api/s3/put.rs, get.rs and delete.rs (design §10.3-10.5). The storage order
(``Uploading`` first, blocks, ``Complete`` last) is :class:`~garage_model.s3.writer.
ObjectWriter`'s; these handlers add HTTP:

- **PutObject.** The body goes through :class:`RequestBody` (aws-chunked decoding, chunk
  signatures); its digests (MD5 for the ETag, ``Content-MD5``, ``x-amz-content-sha256``,
  ``x-amz-checksum-*`` in a header or a trailer) are fed in the thread that hashes each
  block, and verified by the writer's ``before_complete`` hook, so a mismatch aborts the new
  version and the previous one is still served. ``x-amz-acl`` is accepted and ignored (a
  bucket's keys are its only ACL). Conditional writes (``If-Match``/``If-None-Match``) are
  not supported yet: 501.
- **GetObject / HeadObject.** The newest complete version (a delete marker is
  ``NoSuchKey``); preconditions in RFC 7232 order (:class:`Preconditions`); one ``Range``
  or one ``partNumber``; the stored headers (repeated names joined with ``,``) with the
  ``response-*`` overrides last; the checksum only with ``x-amz-checksum-mode: ENABLED``
  and only when the whole object is sent. The body streams block by block
  (:func:`~garage_model.s3.writer.read_blocks`), fetching only the blocks of the range.
- **SSE-C** (:mod:`._encryption`): a PutObject with a customer key stores the headers, the
  inline data and the blocks encrypted, with a random ETag; GetObject and HeadObject of
  such an object need the same key (checked before the preconditions, so that nothing of
  the object is told without it) and decrypt on the way out. Responses echo the algorithm
  and the key's MD5.
- **DeleteObject** answers 204 whether or not there was an object; **DeleteObjects**
  deletes each key (a few at a time) and reports each one, missing keys as deleted (as S3).

Checksums of multipart objects: the kind (composite, sent as ``base64-N``, or full-object)
is kept as a stored ``x-amz-checksum-type`` header (written by CompleteMultipartUpload), sent
back only with the checksum.

Keys: S3 allows 1,024 bytes (the router refuses longer ones), but the metadata db's keys are
limited by its engine (see :func:`_max_stored_key_bytes`): on sqlite every S3 key fits, on
LMDB PutObject refuses keys over 471 bytes with ``KeyTooLongError`` rather than failing in the
middle of a quorum write.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import TYPE_CHECKING, Final, cast

import anyio

from garage_api.http import Response
from garage_api.signature import checksum_header_name, encode_checksum
from garage_model.bucket_table import UuidKey
from garage_model.s3 import FirstBlock, Inline
from garage_model.s3.writer import (
    Completion,
    NoSuchObjectError,
    ObjectWriter,
    delete_object,
    get_version,
    newest_data,
    part_bounds,
    read_blocks,
)
from garage_rpc.net import RpcError
from garage_rpc.rpc_helper import QuorumError
from garage_table import NoLayoutError
from garage_table.schema import StringKey

from ._api import xml_response
from ._body import RequestBody
from ._conditional import Precondition, Preconditions
from ._encryption import Encryption
from ._errors import S3Error
from ._meta import http_date, object_headers, quote_etag
from ._quotas import check_quotas
from ._range import ByteRange, check_range_or_part, parse_range_header, part_range
from ._router import MAX_KEY_BYTES, Operation
from ._xml import MAX_XML_BODY_BYTES, Deleted, DeleteError, DeleteResult, parse_delete

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable

    from garage_api.http import Request
    from garage_model import Garage
    from garage_model.s3 import ObjectVersion, ObjectVersionMetaInner, Version
    from garage_util.data import Uuid

    from ._api import ReqCtx
    from ._xml import ObjectIdentifier

__all__ = ["HANDLERS", "read_object"]

logger = logging.getLogger(__name__)

#: Keys of one DeleteObjects deleted at once: each is a read and a quorum write, so a
#: 1,000-key request takes a fraction of the time, without flooding the cluster.
_DELETES_IN_FLIGHT: Final = 16
#: The stored header naming the kind of a multipart object's checksum (see above).
_CHECKSUM_TYPE: Final = "x-amz-checksum-type"
#: What an object's db keys add to its S3 key: its table key is a 32-byte partition hash ‖
#: object key and, once it is a tombstone, its GC entry is an 8-byte timestamp ‖ table key.
_DB_KEY_OVERHEAD_BYTES: Final = 8 + 32


def _max_stored_key_bytes(db_max_key_bytes: int) -> int:
    """The longest object key (UTF-8 bytes) a node whose db stores ``db_max_key_bytes``-byte
    keys can store: S3's 1,024 bytes, unless the db's limit is lower (LMDB's 511 bytes allow
    471). A key that does not fit would fail deep in a quorum write (a 503 that clients
    retry), so PutObject refuses it up front with ``KeyTooLongError``.
    """
    return min(MAX_KEY_BYTES, db_max_key_bytes - _DB_KEY_OVERHEAD_BYTES)


def _require_key(ctx: ReqCtx) -> tuple[Uuid, str]:
    bucket_id, _bucket = ctx.require_bucket()
    key = ctx.endpoint.key
    assert key is not None  # the router sends keyless requests to bucket operations
    return bucket_id, key


# ---------------------------------------------------------------------------- PutObject


async def put_object(ctx: ReqCtx) -> Response:
    """PutObject: stores the body as the key's newest version (design §10.3)."""
    bucket_id, key = _require_key(ctx)
    request = ctx.request
    for name in ("if-match", "if-none-match"):
        if request.header(name) is not None:
            raise S3Error.from_code(
                "NotImplemented",
                f"conditional writes ({name} on PutObject) are not supported yet",
            )
    db = ctx.garage.db
    max_key_bytes = _max_stored_key_bytes(db.max_key_bytes)
    if len(key.encode()) > max_key_bytes:
        raise S3Error.from_code(
            "KeyTooLongError",
            f"this node stores keys of at most {max_key_bytes} bytes of UTF-8 "
            f"(its {db.engine} metadata db limits keys to {db.max_key_bytes} bytes)",
        )
    headers = object_headers(request.headers)
    encryption = Encryption.from_request(
        request.headers, compression_level=ctx.garage.config.compression_level
    )
    # The MD5 is the ETag in clear; an SSE-C ETag is random (Content-MD5 is still checked).
    body = RequestBody(request, ctx.auth, md5=not encryption.is_encrypted)

    async def before_complete(size: int) -> Completion:
        sums = body.verify()
        await check_quotas(ctx.garage, bucket_id, ctx.require_bucket()[1], key, size)
        return Completion(encryption.etag(sums.md5), sums.extra)

    writer = ObjectWriter(
        ctx.garage,
        bucket_id,
        key,
        headers=headers,
        checksum_algorithm=body.expected.algorithm,
        encryption=encryption.storage,
    )
    # chunks() is an async generator (typed as an iterator): closed even if put() fails.
    async with aclosing(cast("AsyncGenerator[bytes]", body.chunks())) as chunks:
        result = await writer.put(chunks, digest=body.digest, before_complete=before_complete)
    logger.debug("put %r: %d bytes, etag %s", key, result.size, result.etag)
    response = [("etag", quote_etag(result.etag)), *encryption.response_headers()]
    if result.checksum is not None:
        response.append(
            (checksum_header_name(result.checksum.algorithm), encode_checksum(result.checksum))
        )
        response.append((_CHECKSUM_TYPE, "FULL_OBJECT"))
    return Response(200, response)


# ---------------------------------------------------------------------- GetObject / Head


def _checksum_headers(inner: ObjectVersionMetaInner, etag: str) -> list[tuple[str, str]]:
    """The ``x-amz-checksum-*`` and ``x-amz-checksum-type`` headers of the whole object.

    The kind is the stored ``x-amz-checksum-type`` (multipart uploads keep it), else
    full-object; a composite checksum is sent as ``base64-N``, N from the ETag ``<md5>-N``.
    """
    checksum = inner.checksum
    if checksum is None:
        return []
    stored = next((v for n, v in inner.headers if n.lower() == _CHECKSUM_TYPE), None)
    kind = "FULL_OBJECT" if stored is None else stored.strip().upper()
    _md5, dash, count = etag.rpartition("-")
    parts = int(count) if kind == "COMPOSITE" and dash and count.isdigit() else None
    value = encode_checksum(checksum, part_count=parts)
    return [(checksum_header_name(checksum.algorithm), value), (_CHECKSUM_TYPE, kind)]


def _stored_headers(
    inner: ObjectVersionMetaInner, overrides: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The stored headers (repeated names joined with ``,``), then the overrides."""
    joined: dict[str, list[str]] = {}
    for name, value in inner.headers:
        lname = name.lower()
        if lname != _CHECKSUM_TYPE:
            joined.setdefault(lname, []).append(value)
    for name, value in overrides:
        joined[name.lower()] = [value]  # response-* overrides win (AWS: GetObject)
    return [(name, ",".join(values)) for name, values in joined.items()]


async def _get_or_head(ctx: ReqCtx, *, head: bool) -> Response:
    bucket_id, key = _require_key(ctx)
    endpoint = ctx.endpoint
    return await read_object(
        ctx.garage,
        ctx.request,
        bucket_id,
        key,
        head=head,
        part_number=endpoint.part_number,
        overrides=endpoint.response_headers,
    )


#: How many times a read follows a newer version that replaced the one it was reading.
_REPLACED_RETRIES: Final = 3


async def _current_version(
    garage: Garage, bucket_id: Uuid, key: str, head: bool, part_number: int | None
) -> tuple[ObjectVersion, Inline | FirstBlock, Version | None]:
    """The newest complete version of ``key`` with its data, and its version row when the
    read needs the block list (a multi-block GET, or any read of a part).

    A concurrent PUT can replace the object between the object read and the version read,
    and the replaced version's row is then deleted: the object is read again and its new
    newest version served (found by the fault harness), rather than answering NoSuchKey
    for an object that was never absent.
    """
    for _ in range(_REPLACED_RETRIES):
        obj = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
        found = newest_data(obj)
        if found is None:
            raise S3Error.no_such_key(key)
        version, data = found
        if not isinstance(data, FirstBlock) or (head and part_number is None):
            return version, data, None
        try:
            return version, data, await get_version(garage, version.uuid)
        except NoSuchObjectError:
            continue  # replaced meanwhile: read the object again
    raise S3Error.no_such_key(key)


async def read_object(
    garage: Garage,
    request: Request,
    bucket_id: Uuid,
    key: str,
    *,
    head: bool,
    part_number: int | None = None,
    overrides: Iterable[tuple[str, str]] = (),
) -> Response:
    """GetObject or HeadObject of ``key`` without an S3 request context: the S3 read path
    (preconditions, one ``Range`` or part, SSE-C, streamed blocks) for other servers, such
    as the website server (Garage: ``handle_get_without_ctx``).

    Args:
        garage: the node.
        request: the request whose headers (``Range``, ``If-*``, SSE-C) apply.
        bucket_id: the bucket, already resolved and authorized by the caller.
        key: the object key.
        head: HeadObject (headers only) rather than GetObject.
        part_number: ``partNumber``, if asked.
        overrides: ``(header, value)`` pairs replacing stored headers (``response-*``).

    Raises:
        S3Error: ``NoSuchKey``, ``NotModified`` (304), ``PreconditionFailed``,
            ``InvalidRange``, ``InvalidPartNumber``, or an SSE-C refusal.
    """
    version, data, row = await _current_version(garage, bucket_id, key, head, part_number)
    meta = data.meta
    encryption, inner = Encryption.for_stored(
        request.headers, meta.encryption, compression_level=garage.config.compression_level
    )
    etag, last_modified = quote_etag(meta.etag), http_date(version.timestamp)

    outcome = Preconditions.from_headers(request.headers).evaluate(meta.etag, version.timestamp)
    if outcome is Precondition.NOT_MODIFIED:
        raise S3Error.from_code(
            "NotModified", headers=[("etag", etag), ("last-modified", last_modified)]
        )
    if outcome is Precondition.FAILED:
        raise S3Error.precondition_failed()

    range_header = request.header("range")
    check_range_or_part(range_header, part_number)

    size = meta.size
    parts_count: int | None = None
    selected: ByteRange | None
    if part_number is not None:
        if row is None:
            selected, parts_count = part_range([size], part_number), 1
        else:
            parts_count = row.n_parts() if size > 0 else 1
            bounds = part_bounds(row, part_number)
            if bounds is None:
                raise S3Error.invalid_part_number(part_number, parts_count)
            selected = ByteRange(*bounds)
    else:
        selected = parse_range_header(range_header, size)
    if selected is not None and selected.length == 0:
        selected = None  # an empty part: no Content-Range can say it, send it as a whole

    headers = _stored_headers(inner, overrides)
    headers += [("etag", etag), ("last-modified", last_modified), ("accept-ranges", "bytes")]
    headers += encryption.response_headers()
    whole = selected is None or (selected.start == 0 and selected.end == size)
    start, end = (0, size) if selected is None else (selected.start, selected.end)
    headers.append(("content-length", str(end - start)))
    if selected is not None:
        headers.append(("content-range", selected.content_range(size)))
    if parts_count is not None:
        headers.append(("x-amz-mp-parts-count", str(parts_count)))
    mode = request.header("x-amz-checksum-mode")
    if mode is not None and mode.strip().upper() == "ENABLED" and whole:
        headers += _checksum_headers(inner, meta.etag)
    status = 200 if selected is None else 206

    if head:
        return Response(status, headers)
    if isinstance(data, Inline):
        return Response(status, headers, encryption.decrypt_blob(data.data)[start:end])
    assert row is not None  # fetched above for every GET of a block object
    blocks = [block for _key, block in row.blocks.items()]
    body = read_blocks(garage, blocks, start, end, encryption=encryption.storage)
    return Response(status, headers, body)


async def get_object(ctx: ReqCtx) -> Response:
    """GetObject: the object's bytes, or a range or part of them (design §10.4)."""
    return await _get_or_head(ctx, head=False)


async def head_object(ctx: ReqCtx) -> Response:
    """HeadObject: GetObject's headers without the body."""
    return await _get_or_head(ctx, head=True)


# ---------------------------------------------------------------------------- delete


async def delete_object_handler(ctx: ReqCtx) -> Response:
    """DeleteObject: a delete marker hides the object; 204 even if there was none."""
    bucket_id, key = _require_key(ctx)
    await delete_object(ctx.garage, bucket_id, key)
    return Response(204)


async def delete_objects(ctx: ReqCtx) -> Response:
    """DeleteObjects: each key of the XML body deleted, each reported (design §10.5)."""
    bucket_id, _bucket = ctx.require_bucket()
    document = await RequestBody(ctx.request, ctx.auth).read_all(MAX_XML_BODY_BYTES)
    request = parse_delete(document)
    results: list[Deleted | DeleteError | None] = [None] * len(request.objects)
    limiter = anyio.Semaphore(_DELETES_IN_FLIGHT)

    async def delete_one(i: int, obj: ObjectIdentifier) -> None:
        async with limiter:
            results[i] = await _delete_one(ctx, bucket_id, obj)

    async with anyio.create_task_group() as tg:
        for i, obj in enumerate(request.objects):
            tg.start_soon(delete_one, i, obj)
    deleted = [r for r in results if isinstance(r, Deleted)]
    errors = [r for r in results if isinstance(r, DeleteError)]
    return xml_response(DeleteResult(deleted, errors, quiet=request.quiet).to_xml())


async def _delete_one(ctx: ReqCtx, bucket_id: Uuid, obj: ObjectIdentifier) -> Deleted | DeleteError:
    """Deletes one key of a DeleteObjects, turning its failure into a per-key error."""
    if len(obj.key.encode()) > MAX_KEY_BYTES:
        error = S3Error.key_too_long()
        return DeleteError(obj.key, error.code, error.message, obj.version_id)
    try:
        await delete_object(ctx.garage, bucket_id, obj.key)
    except (QuorumError, RpcError, NoLayoutError) as exc:
        logger.warning("DeleteObjects: %r: %s", obj.key, exc)
        return DeleteError(obj.key, "ServiceUnavailable", str(exc), obj.version_id)
    except Exception:
        logger.exception("DeleteObjects: deleting %r failed", obj.key)
        return DeleteError(obj.key, "InternalError", "internal error", obj.version_id)
    return Deleted(obj.key, obj.version_id)


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.PUT_OBJECT: put_object,
    Operation.GET_OBJECT: get_object,
    Operation.HEAD_OBJECT: head_object,
    Operation.DELETE_OBJECT: delete_object_handler,
    Operation.DELETE_OBJECTS: delete_objects,
}

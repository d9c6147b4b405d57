"""Multipart uploads and copies: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, CopyObject and UploadPartCopy.

Garage: src/api/s3/multipart.rs and copy.rs (design §10.6, §10.7). The write orders live in
the model (:mod:`garage_model.s3.multipart`, :mod:`garage_model.s3.copy`); the handlers
read the request, compute the digests, and answer.

Checksums
---------
An upload created with ``x-amz-checksum-algorithm`` stores a checksum per part: the one the
client sent (headers or aws-chunked trailer), verified, or else computed here. A part
announcing another algorithm is refused, as S3 does. On completion the object's checksum is
*composite* (the checksum of the binary part checksums, shown ``base64-N``) or
*full-object* (the CRC of the whole object, combined from the part CRCs), per
``x-amz-checksum-type``; the type is kept with the object as the reserved stored header
``x-amz-checksum-type`` (:data:`garage_model.s3.multipart.CHECKSUM_TYPE_HEADER`), which
GetObject and HeadObject read to answer ``x-amz-checksum-mode: ENABLED``. Every part's ETag
is the hex MD5 of its data, and the object's ETag is the MD5 of the binary part MD5s
followed by ``-N``.

Copies
------
``x-amz-copy-source`` is ``bucket/key`` (URL-encoded, an optional leading ``/`` and an
optional ``?versionId=``, which must name the current version). The key needs ``read`` on
the source bucket, besides ``write`` on the destination (checked by the server). CopyObject
reuses the source's blocks; UploadPartCopy reuses the whole blocks of its range and stores
the cut ones anew.

SSE-C
-----
(:mod:`._encryption`, Garage: encryption.rs.) CreateMultipartUpload with a customer key
stores the upload's headers encrypted; every UploadPart and UploadPartCopy must give the
same key (checked by decrypting them), their parts are stored encrypted and get random
ETags. CompleteMultipartUpload needs the key only when the upload has a checksum algorithm
(the checksum type and the final checksum live in the encrypted headers). A copy's source
key is given in the ``x-amz-copy-source-server-side-encryption-customer-*`` headers, the
destination's in the usual ones: when both store blocks the same way (same key and
compression, or both in clear) the blocks are reused; otherwise CopyObject decrypts the
source and writes it anew (Garage: ``handle_copy_reencrypt``) and UploadPartCopy stores
every piece anew.
"""

from __future__ import annotations

import contextlib
from contextlib import aclosing
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import parse_qs, quote, unquote

import anyio

from garage_api.http import Request, Response
from garage_api.signature import (
    ChecksumAlgorithm,
    Checksummer,
    ChecksumType,
    ChecksumValue,
    checksum_header_name,
    checksum_type,
    combine_crc,
    composite_checksum,
    decode_multipart_checksum,
    encode_checksum,
    parse_checksum_algorithm,
)
from garage_model.bucket_table import UuidKey
from garage_model.s3 import (
    Inline,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    Plaintext,
)
from garage_model.s3.copy import copy_object, copy_part, read_source, source_version
from garage_model.s3.multipart import (
    CHECKSUM_TYPE_HEADER,
    EmptyPartError,
    EntityTooSmallError,
    InvalidPartError,
    MultipartError,
    NoSuchUploadError,
    PartDigest,
    RequestedPart,
    SelectedPart,
    Upload,
    abort_upload,
    checksum_type_of,
    complete_upload,
    create_upload,
    get_upload,
    part_count,
    select_parts,
    upload_part,
)
from garage_model.s3.writer import Completion, NoSuchObjectError, ObjectWriter
from garage_table.schema import StringKey
from garage_util.data import FixedBytes32, Uuid

from ._api import xml_response
from ._body import RequestBody
from ._conditional import Preconditions
from ._encryption import Encryption
from ._errors import S3Error
from ._meta import object_headers, quote_etag
from ._quotas import check_quotas
from ._range import ByteRange, parse_copy_source_range
from ._router import Operation
from ._tokens import decode_upload_id
from ._xml import (
    MAX_XML_BODY_BYTES,
    CompleteMultipartUploadResult,
    CopyObjectResult,
    CopyPartResult,
    InitiateMultipartUploadResult,
    parse_complete_multipart_upload,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence

    from garage_api.http import Message
    from garage_model.s3.writer import PutResult

    from ._api import ReqCtx

__all__ = ["HANDLERS"]

_COPY_SOURCE: Final = "x-amz-copy-source"
_CHECKSUM_VALUE_PREFIX: Final = "x-amz-checksum-"
_SSE_C_HEADER_PREFIX: Final = "x-amz-server-side-encryption-customer-"
# The headers of a request that name a checksum algorithm or type, not a checksum value.
_NOT_CHECKSUM_VALUES: Final = frozenset(
    {"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"}
)


# ------------------------------------------------------------------ shared helpers


def _upload_encryption(ctx: ReqCtx, upload: Upload) -> tuple[Encryption, ObjectVersionMetaInner]:
    """The encryption and headers of an upload, the request's SSE-C key checked against it
    (the same key as at creation, or none for an upload in clear)."""
    return Encryption.for_stored(
        ctx.request.headers,
        upload.state.encryption,
        compression_level=ctx.garage.config.compression_level,
    )


@contextlib.contextmanager
def _model_errors(upload_id: str | None = None) -> Iterator[None]:
    """Translates the model's refusals into S3 errors."""
    try:
        yield
    except NoSuchUploadError:
        raise S3Error.no_such_upload(upload_id) from None
    except InvalidPartError as exc:
        raise S3Error.invalid_part(f"{S3Error.from_code('InvalidPart').message} ({exc})") from None
    except EntityTooSmallError as exc:
        raise S3Error.entity_too_small(str(exc)) from None
    except EmptyPartError as exc:
        raise S3Error.invalid_request(str(exc)) from None
    except NoSuchObjectError:
        raise S3Error.no_such_key() from None
    except MultipartError as exc:
        raise S3Error.not_implemented(str(exc)) from None


def _key(ctx: ReqCtx) -> str:
    key = ctx.endpoint.key
    assert key is not None  # the router gives object operations a key
    return key


async def _upload(ctx: ReqCtx) -> Upload:
    """The upload named by ``uploadId`` (NoSuchUpload if it is not in progress)."""
    bucket_id, _bucket = ctx.require_bucket()
    text = ctx.endpoint.upload_id
    assert text is not None  # required by the router
    upload_id = FixedBytes32(decode_upload_id(text))
    with _model_errors(text):
        return await get_upload(ctx.garage, bucket_id, _key(ctx), upload_id)


def _encoded(value: ChecksumValue, kind: str | None, etag: str) -> str:
    """A stored checksum as S3 shows it: ``base64``, or ``base64-N`` when composite."""
    count = part_count(etag) if kind == ChecksumType.COMPOSITE.value else None
    return encode_checksum(value, part_count=count)


def _xml_checksums(
    value: ChecksumValue | None, kind: str | None, etag: str
) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    return ((value.algorithm.value, _encoded(value, kind, etag)),)


# ------------------------------------------------------------------ create, upload, abort


async def handle_create_multipart_upload(ctx: ReqCtx) -> Response:
    """CreateMultipartUpload: an ``Uploading`` version, with the headers and the checksum
    algorithm and type of the future object (encrypted with an SSE-C key if given)."""
    bucket_id, _bucket = ctx.require_bucket()
    request = ctx.request
    encryption = Encryption.from_request(
        request.headers, compression_level=ctx.garage.config.compression_level
    )
    text = request.header("x-amz-checksum-algorithm")
    algorithm = None if text is None else parse_checksum_algorithm(text)
    kind = checksum_type(algorithm, request.header("x-amz-checksum-type"))
    upload = await create_upload(
        ctx.garage,
        bucket_id,
        _key(ctx),
        headers=object_headers(request.headers),
        checksum_algorithm=algorithm,
        checksum_type=None if kind is None else kind.value,
        encryption=encryption.storage,
    )
    assert ctx.bucket_name is not None
    result = InitiateMultipartUploadResult(ctx.bucket_name, _key(ctx), upload.upload_id.hex())
    response = xml_response(result.to_xml())
    if algorithm is not None and kind is not None:
        response.headers.append(("x-amz-checksum-algorithm", algorithm.value))
        response.headers.append((CHECKSUM_TYPE_HEADER, kind.value))
    response.headers.extend(encryption.response_headers())
    return response


async def handle_upload_part(ctx: ReqCtx) -> Response:
    """UploadPart: stores a new attempt of the part; answers its ETag (and checksum)."""
    upload = await _upload(ctx)
    encryption, _inner = _upload_encryption(ctx, upload)
    part_number = ctx.endpoint.part_number
    assert part_number is not None  # required by the router
    # The part's ETag is its MD5 in clear, random under SSE-C.
    body = RequestBody(ctx.request, ctx.auth, md5=not encryption.is_encrypted)
    algorithm = upload.checksum_algorithm
    announced = body.expected.algorithm
    if algorithm is not None and announced is not None and announced is not algorithm:
        raise S3Error.invalid_request(
            f"Checksum Type mismatch occurred, expected checksum Type: "
            f"{algorithm.value.lower()}, actual checksum Type: {announced.value.lower()}"
        )
    # The upload's algorithm, when the client does not send the part's checksum itself.
    own = Checksummer(algorithm) if algorithm is not None and announced is None else None
    verified: list[ChecksumValue | None] = []

    def digest(block: bytes) -> None:
        body.digest(block)
        if own is not None:
            own.update(block)

    def finish() -> PartDigest:
        sums = body.verify()
        verified.append(sums.extra)
        checksum = own.finalize().extra if own is not None else sums.extra
        etag = encryption.etag(sums.md5)
        return PartDigest(etag, checksum if algorithm is not None else None)

    with _model_errors(ctx.endpoint.upload_id):
        stored = await upload_part(
            ctx.garage,
            upload,
            part_number,
            body.chunks(),
            digest=digest,
            finish=finish,
            encryption=encryption.storage,
        )
    headers = [("etag", quote_etag(stored.etag)), *encryption.response_headers()]
    checksum = stored.part.checksum or (verified[0] if verified else None)
    if checksum is not None:
        headers.append((checksum_header_name(checksum.algorithm), encode_checksum(checksum)))
    return Response(200, headers)


async def handle_abort_multipart_upload(ctx: ReqCtx) -> Response:
    """AbortMultipartUpload: the version is aborted; the cascade deletes the parts."""
    upload = await _upload(ctx)
    await abort_upload(ctx.garage, upload)
    return Response(204)


# ------------------------------------------------------------------ complete


def _object_level_headers(request: Request) -> Request:
    """``request`` without its ``x-amz-checksum-<algorithm>`` value headers.

    On CompleteMultipartUpload they are the checksum of the *object*, not of the XML body:
    the body must be read without them.
    """
    headers = [
        (name, value)
        for name, value in request.headers
        if not (name.startswith(_CHECKSUM_VALUE_PREFIX) and name not in _NOT_CHECKSUM_VALUES)
    ]
    if len(headers) == len(request.headers):
        return request
    chunks = aiter(request.body())

    async def receive() -> Message:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    return Request(
        request.method,
        request.raw_path,
        request.query_string,
        headers,
        receive,
        client=request.client,
    )


def _object_checksum(
    upload: Upload, parts: Sequence[SelectedPart], kind: str | None
) -> ChecksumValue | None:
    """The checksum of the completed object, from its parts' checksums and the upload's
    checksum type ``kind``."""
    algorithm = upload.checksum_algorithm
    if algorithm is None:
        return None
    sums = []
    for sel in parts:
        if sel.part.checksum is None or sel.part.checksum.algorithm is not algorithm:
            raise S3Error.invalid_part(f"part {sel.part_number} has no {algorithm.value} checksum")
        sums.append((sel.part.checksum, sel.size))
    if kind == ChecksumType.FULL_OBJECT.value:
        return combine_crc(sums)
    return composite_checksum([value for value, _size in sums])


def _check_announced(request: Request, checksum: ChecksumValue | None, size: int) -> None:
    """Checks the object checksum and size a CompleteMultipartUpload may announce.

    Raises:
        S3Error: ``BadDigest`` for another checksum, ``InvalidRequest`` for another size
            or a checksum of an algorithm the upload does not have.
    """
    for algorithm in ChecksumAlgorithm:
        text = request.header(checksum_header_name(algorithm))
        if text is None:
            continue
        value, _count = decode_multipart_checksum(algorithm, text)
        if checksum is None or checksum.algorithm is not algorithm:
            raise S3Error.invalid_request(
                f"the upload has no {algorithm.value} checksum to compare with"
            )
        if value != checksum:
            raise S3Error.bad_digest(
                f"the {algorithm.value} you specified did not match the calculated checksum"
            )
    announced_size = request.header("x-amz-mp-object-size")
    if announced_size is not None and announced_size.strip() != str(size):
        raise S3Error.invalid_request(
            f"x-amz-mp-object-size is {announced_size!r} but the parts hold {size} bytes"
        )


async def handle_complete_multipart_upload(ctx: ReqCtx) -> Response:
    """CompleteMultipartUpload: checks the listed parts and makes the object of them."""
    request = ctx.request
    if request.header("if-none-match") is not None or request.header("if-match") is not None:
        raise S3Error.from_code("NotImplemented", "conditional writes are not supported yet")
    body = await RequestBody(_object_level_headers(request), ctx.auth).read_all(MAX_XML_BODY_BYTES)
    document = parse_complete_multipart_upload(body)
    document.check_order()
    upload = await _upload(ctx)
    algorithm = upload.checksum_algorithm
    # An SSE-C upload's headers (with the checksum type) need its key; Garage asks for it
    # only when there is a checksum to add to them, so without one the stored (encrypted)
    # headers are kept as they are.
    encryption: Encryption | None = None
    inner: ObjectVersionMetaInner | None = None
    if (
        isinstance(upload.state.encryption, Plaintext)
        or algorithm is not None
        or any(name.startswith(_SSE_C_HEADER_PREFIX) for name, _v in request.headers)
    ):
        encryption, inner = _upload_encryption(ctx, upload)
    kind = None if inner is None else checksum_type_of(inner)
    requested = []
    for part in document.parts:
        checksum = None
        for name, text in part.checksums:
            if algorithm is not None and name == algorithm.value:
                checksum, _count = decode_multipart_checksum(algorithm, text)
        requested.append(RequestedPart(part.part_number, part.etag, checksum))
    with _model_errors(ctx.endpoint.upload_id):
        parts = select_parts(upload.mpu, requested, algorithm=algorithm)
        checksum = _object_checksum(upload, parts, kind)
        size = sum(p.size for p in parts)
        _check_announced(request, checksum, size)
        # Before anything is written: a refused completion leaves the upload in progress
        # (Garage aborts it), so the client may free space and retry, or abort it.
        bucket_id, bucket_entry = ctx.require_bucket()
        await check_quotas(ctx.garage, bucket_id, bucket_entry, _key(ctx), size)
        stored_meta = None  # in clear: the model stores the headers with the checksum
        if encryption is None:
            stored_meta = upload.state.encryption
        elif encryption.is_encrypted:
            assert inner is not None  # read with the encryption
            stored_meta = encryption.encrypt_meta(ObjectVersionMetaInner(inner.headers, checksum))
        done = await complete_upload(
            ctx.garage, upload, parts, checksum=checksum, encryption=stored_meta
        )
    bucket, key = ctx.bucket_name, _key(ctx)
    assert bucket is not None
    root_domain = ctx.api.root_domain
    location = (
        f"https://{bucket}.{root_domain}/{quote(key)}" if root_domain else f"/{bucket}/{quote(key)}"
    )
    result = CompleteMultipartUploadResult(
        location,
        bucket,
        key,
        done.meta.etag,
        _xml_checksums(checksum, kind, done.meta.etag),
        kind if checksum is not None else None,
    )
    response = xml_response(result.to_xml())
    if encryption is not None:
        response.headers.extend(encryption.response_headers())
    return response


# ------------------------------------------------------------------ copies


async def _copy_source(ctx: ReqCtx) -> tuple[Uuid, str, str | None]:
    """The source bucket, key and ``versionId`` of ``x-amz-copy-source``, once the key is
    known to be allowed to read the bucket."""
    raw = ctx.request.header(_COPY_SOURCE)
    assert raw is not None  # the router routes copies on this header
    path, _, query = raw.partition("?")
    versions = parse_qs(query).get("versionId")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise S3Error.invalid_argument("Invalid UTF-8 in x-amz-copy-source") from None
    name, _, key = decoded.removeprefix("/").partition("/")
    if not name or not key:
        raise S3Error.invalid_argument(
            "Invalid copy source: x-amz-copy-source must be of the form bucket/key"
        )
    helper = ctx.garage.bucket_helper
    bucket_id = await helper.resolve_bucket(name, ctx.key)
    await helper.get_existing_bucket(bucket_id)
    if not ctx.key.allow_read(bucket_id):
        raise S3Error.access_denied(f"key {ctx.key.key_id} may not read bucket {name!r}")
    return bucket_id, key, None if not versions else versions[-1]


async def _source(
    ctx: ReqCtx,
) -> tuple[ObjectVersion, ObjectVersionMeta, ObjectVersionMetaInner, Encryption]:
    """The source version of a copy, its metadata, headers and encryption (its SSE-C key
    checked), preconditions checked."""
    bucket_id, key, version_id = await _copy_source(ctx)
    obj = await ctx.garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    with _model_errors():
        version = source_version(obj)
    if version_id is not None and version_id not in ("null", version.uuid.hex()):
        raise S3Error.invalid_argument(f"Invalid version id specified: {version_id!r}")
    meta = version.meta()
    assert meta is not None  # source_version returns versions with data
    encryption, inner = Encryption.for_stored(
        ctx.request.headers,
        meta.encryption,
        compression_level=ctx.garage.config.compression_level,
        copy_source=True,
    )
    Preconditions.from_copy_source_headers(ctx.request.headers).check_copy_source(
        meta.etag, version.timestamp
    )
    return version, meta, inner, encryption


async def _plain_source(
    ctx: ReqCtx, version: ObjectVersion, encryption: Encryption
) -> AsyncGenerator[bytes]:
    """The data of a copy's source, block by block, decrypted (in a worker thread) if it is
    stored encrypted."""
    inline = isinstance(version.data(), Inline)
    # read_source is an async generator (typed as an iterator): closed even if we stop.
    source = cast("AsyncGenerator[bytes]", read_source(ctx.garage, version))
    async with aclosing(source) as stored:
        async for block in stored:
            if not encryption.is_encrypted:
                yield block
            elif inline:
                yield encryption.decrypt_blob(block)
            else:
                yield await anyio.to_thread.run_sync(encryption.decrypt_block, block)


async def _full_checksum(
    ctx: ReqCtx, version: ObjectVersion, algorithm: ChecksumAlgorithm, encryption: Encryption
) -> ChecksumValue:
    """The checksum of a source's data in ``algorithm``: read, block by block."""
    summer = Checksummer(algorithm)
    with _model_errors():
        async with aclosing(_plain_source(ctx, version, encryption)) as blocks:
            async for block in blocks:
                await anyio.to_thread.run_sync(summer.update, block)
    value = summer.finalize().extra
    assert value is not None  # the summer computes `algorithm`
    return value


async def _copy_rewritten(
    ctx: ReqCtx,
    version: ObjectVersion,
    source: Encryption,
    encryption: Encryption,
    headers: tuple[tuple[str, str], ...],
    algorithm: ChecksumAlgorithm | None,
) -> PutResult:
    """CopyObject between different encryptions: the source's data, decrypted, written
    anew under ``encryption`` (Garage: ``handle_copy_reencrypt``). The new object is a
    single-part one: its checksum, in ``algorithm``, is of the whole data, and its ETag is
    the MD5 in clear (random under a key)."""
    bucket_id, _bucket = ctx.require_bucket()
    summer = Checksummer(algorithm, md5=not encryption.is_encrypted)

    async def before_complete(size: int) -> Completion:
        del size  # the quotas were checked before (the size is the source's)
        sums = summer.finalize()
        return Completion(encryption.etag(sums.md5), sums.extra)

    writer = ObjectWriter(
        ctx.garage,
        bucket_id,
        _key(ctx),
        headers=headers,
        checksum_algorithm=algorithm,
        encryption=encryption.storage,
    )
    with _model_errors():
        async with aclosing(_plain_source(ctx, version, source)) as chunks:
            return await writer.put(chunks, digest=summer.update, before_complete=before_complete)


async def handle_copy_object(ctx: ReqCtx) -> Response:
    """CopyObject: a new version sharing the source's blocks (or its inline data), with the
    source's headers (``COPY``) or the request's (``REPLACE``); between different SSE-C
    encryptions, the source's data decrypted and written anew."""
    bucket_id, _bucket = ctx.require_bucket()
    request = ctx.request
    version, meta, inner, source_encryption = await _source(ctx)
    encryption = Encryption.from_request(
        request.headers, compression_level=ctx.garage.config.compression_level
    )
    rewrite = not source_encryption.same_storage(encryption)
    directive = (request.header("x-amz-metadata-directive") or "COPY").strip().upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error.invalid_argument(f"Unknown metadata directive {directive!r}")
    checksum, kind = inner.checksum, checksum_type_of(inner)
    text = request.header("x-amz-checksum-algorithm")
    algorithm = None if text is None else parse_checksum_algorithm(text)
    if (
        algorithm is not None
        and not rewrite
        and (checksum is None or checksum.algorithm is not algorithm)
    ):
        # The copy gets a checksum of another algorithm: it has to be computed from the
        # data, and it is of the whole object.
        checksum = await _full_checksum(ctx, version, algorithm, source_encryption)
        kind = None if part_count(meta.etag) is None else ChecksumType.FULL_OBJECT.value
    headers = object_headers(request.headers) if directive == "REPLACE" else inner.headers
    headers = tuple((n, v) for n, v in headers if n != CHECKSUM_TYPE_HEADER)
    await check_quotas(ctx.garage, bucket_id, ctx.require_bucket()[1], _key(ctx), meta.size)
    if rewrite:
        if algorithm is None and checksum is not None:
            algorithm = checksum.algorithm  # the copy keeps a checksum, of its whole data
        written = await _copy_rewritten(
            ctx, version, source_encryption, encryption, headers, algorithm
        )
        etag, timestamp, checksum, kind = written.etag, written.timestamp, written.checksum, None
    else:
        if kind is not None:
            headers = (*headers, (CHECKSUM_TYPE_HEADER, kind))
        new_meta = ObjectVersionMeta(
            meta.size, meta.etag, encryption.encrypt_meta(ObjectVersionMetaInner(headers, checksum))
        )
        with _model_errors():
            new = await copy_object(ctx.garage, version, bucket_id, _key(ctx), meta=new_meta)
        etag, timestamp = meta.etag, new.timestamp
    result = CopyObjectResult(
        etag,
        timestamp,
        _xml_checksums(checksum, kind, etag),
        (kind or ChecksumType.FULL_OBJECT.value) if checksum is not None else None,
    )
    response = xml_response(result.to_xml())
    response.headers.append(("x-amz-copy-source-version-id", version.uuid.hex()))
    response.headers.extend(encryption.response_headers())
    return response


async def handle_upload_part_copy(ctx: ReqCtx) -> Response:
    """UploadPartCopy: a byte range of the source (all of it by default) as a part."""
    upload = await _upload(ctx)
    part_number = ctx.endpoint.part_number
    assert part_number is not None  # required by the router
    version, meta, _inner, source_encryption = await _source(ctx)
    encryption, _upload_inner = _upload_encryption(ctx, upload)
    text = ctx.request.header("x-amz-copy-source-range")
    wanted = ByteRange(0, meta.size) if text is None else parse_copy_source_range(text, meta.size)
    if wanted.length == 0:
        raise S3Error.invalid_request("the copy source is empty: a part needs data")
    summer = Checksummer(upload.checksum_algorithm, md5=not encryption.is_encrypted)

    def finish() -> PartDigest:
        sums = summer.finalize()
        return PartDigest(encryption.etag(sums.md5), sums.extra)

    with _model_errors(ctx.endpoint.upload_id):
        stored = await copy_part(
            ctx.garage,
            upload,
            part_number,
            version,
            wanted.start,
            wanted.end,
            digest=summer.update,
            finish=finish,
            source_encryption=source_encryption.storage,
            encryption=encryption.storage,
            reuse_blocks=source_encryption.same_storage(encryption),
        )
    checksum = stored.part.checksum
    result = CopyPartResult(stored.etag, stored.timestamp, _xml_checksums(checksum, None, ""))
    response = xml_response(result.to_xml())
    response.headers.append(("x-amz-copy-source-version-id", version.uuid.hex()))
    response.headers.extend(encryption.response_headers())
    return response


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.CREATE_MULTIPART_UPLOAD: handle_create_multipart_upload,
    Operation.UPLOAD_PART: handle_upload_part,
    Operation.COMPLETE_MULTIPART_UPLOAD: handle_complete_multipart_upload,
    Operation.ABORT_MULTIPART_UPLOAD: handle_abort_multipart_upload,
    Operation.COPY_OBJECT: handle_copy_object,
    Operation.UPLOAD_PART_COPY: handle_upload_part_copy,
}

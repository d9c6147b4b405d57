"""PutObject, GetObject, HeadObject, DeleteObject and DeleteObjects against a running node.

boto3 for the normal paths; httpx with requests signed by ``garage_api.signature`` for what
boto3 will not send over plain http (aws-chunked bodies with trailing checksums, a body
that does not match its signed sha256). Error cases check the S3 code, the HTTP status,
and that what was stored before is still served unchanged.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
import httpx
import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, CrtCrc32cChecksum, CrtCrc64NvmeChecksum
from tests.api.conftest import start_single_node, stop
from tests.polling import wait_until

from garage.server import prepare_single_node
from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.api.conftest import S3Node

MiB = 1024 * 1024


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _get(s3: Any, bucket: str, key: str, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
    resp = s3.get_object(Bucket=bucket, Key=key, **kwargs)
    return resp["Body"].read(), resp


def _assert_serves(s3: Any, bucket: str, key: str, data: bytes) -> None:
    body, resp = _get(s3, bucket, key)
    assert body == data
    assert resp["ETag"] == f'"{_md5(data)}"'


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "size", [0, 1, 3071, 3072, MiB - 1, MiB, MiB + 1, 5 * MiB + 3], ids=lambda n: f"{n}B"
)
def test_put_get_head_delete_round_trip(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert put["ETag"] == f'"{_md5(data)}"'

    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    assert head["AcceptRanges"] == "bytes"
    assert head["ContentType"] == "binary/octet-stream"
    assert abs(head["LastModified"].timestamp() - time.time()) < 600

    body, resp = _get(s3, bucket, "obj")
    assert body == data
    assert resp["ETag"] == put["ETag"]
    assert resp["ContentLength"] == size

    s3.delete_object(Bucket=bucket, Key="obj")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="obj")
    assert _code(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="obj")
    assert _code(exc) == ("404", 404)


def test_overwrite_serves_only_the_newest(s3: Any, bucket: str) -> None:
    versions = [os.urandom(2 * MiB + 5), b"small", os.urandom(4000), b""]
    for data in versions:
        s3.put_object(Bucket=bucket, Key="k", Body=data)
        _assert_serves(s3, bucket, "k", data)
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 0


def test_delete_of_a_missing_key_is_204(s3: Any, bucket: str) -> None:
    resp = s3.delete_object(Bucket=bucket, Key="never-there")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k")
    resp = s3.delete_object(Bucket=bucket, Key="k")  # already deleted: still 204
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.put_object(Bucket=bucket, Key="k", Body=b"again")  # a key can come back
    _assert_serves(s3, bucket, "k", b"again")


def test_missing_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert _code(exc) == ("NoSuchKey", 404)
    assert exc.value.response["Error"]["Key"] == "nope"


# ---------------------------------------------------------------------------- ranges

SIZE = 3 * MiB + 5  # four blocks, the last one of 5 bytes


@pytest.fixture
def big(s3: Any, bucket: str) -> bytes:
    data = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    return data


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),  # the first byte
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE),  # the last byte
        ("bytes=-100", SIZE - 100, SIZE),  # a suffix
        (f"bytes=-{SIZE + 50}", 0, SIZE),  # a suffix longer than the object
        (f"bytes={SIZE - 10}-", SIZE - 10, SIZE),  # open-ended
        (f"bytes={MiB - 5}-{MiB + 4}", MiB - 5, MiB + 5),  # across one block boundary
        (f"bytes={MiB - 1}-{2 * MiB}", MiB - 1, 2 * MiB + 1),  # three blocks
        (f"bytes={MiB}-{2 * MiB - 1}", MiB, 2 * MiB),  # exactly the second block
        (f"bytes=10-{SIZE + 100}", 10, SIZE),  # past the end: clamped
        ("bytes=0-", 0, SIZE),  # everything, as a 206
    ],
)
def test_range(s3: Any, bucket: str, big: bytes, header: str, start: int, end: int) -> None:
    body, resp = _get(s3, bucket, "big", Range=header)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentRange"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert resp["ContentLength"] == end - start
    assert body == big[start:end]
    head = s3.head_object(Bucket=bucket, Key="big", Range=header)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == end - start


def test_range_of_an_inline_object(s3: Any, bucket: str) -> None:
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="small", Body=data)
    body, resp = _get(s3, bucket, "small", Range="bytes=10-19")
    assert body == data[10:20]
    assert resp["ContentRange"] == "bytes 10-19/1000"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range_is_416(s3: Any, bucket: str, big: bytes, header: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="big", Range=header)
    assert _code(exc) == ("InvalidRange", 416)
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-range"] == f"bytes */{SIZE}"


def test_range_of_an_empty_object_is_416(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-")
    assert _code(exc) == ("InvalidRange", 416)


def test_several_ranges_or_a_bad_header_send_the_whole_object(
    s3: Any, bucket: str, big: bytes
) -> None:
    for header in ("bytes=0-1,5-6", "bytes=9-3", "items=0-5"):
        body, resp = _get(s3, bucket, "big", Range=header)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert body == big


def test_part_number_of_a_single_part_object(s3: Any, bucket: str, big: bytes) -> None:
    body, resp = _get(s3, bucket, "big", PartNumber=1)
    assert body == big
    assert resp["PartsCount"] == 1
    assert resp["ContentRange"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    head = s3.head_object(Bucket=bucket, Key="big", PartNumber=1)
    assert head["PartsCount"] == 1
    assert head["ContentLength"] == SIZE
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert _code(exc) == ("InvalidPartNumber", 416)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="big", PartNumber=1, Range="bytes=0-1")
    assert _code(exc) == ("InvalidRequest", 400)
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    body, resp = _get(s3, bucket, "small", PartNumber=1)
    assert body == b"0123456789"
    assert resp["PartsCount"] == 1


# ---------------------------------------------------------------------------- conditions


def test_preconditions(s3: Any, bucket: str) -> None:
    data = os.urandom(5000)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=data)["ETag"]
    last_modified = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    past, future = "Mon, 01 Jan 2001 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"

    assert _get(s3, bucket, "k", IfMatch=etag)[0] == data
    assert _get(s3, bucket, "k", IfNoneMatch='"0123"')[0] == data
    assert _get(s3, bucket, "k", IfModifiedSince=past)[0] == data
    assert _get(s3, bucket, "k", IfUnmodifiedSince=future)[0] == data

    cases: list[tuple[dict[str, Any], tuple[str, int]]] = [
        ({"IfNoneMatch": etag}, ("304", 304)),
        ({"IfNoneMatch": "*"}, ("304", 304)),
        ({"IfModifiedSince": future}, ("304", 304)),
        ({"IfModifiedSince": last_modified}, ("304", 304)),  # what a cache sends back
        ({"IfMatch": '"0123"'}, ("PreconditionFailed", 412)),
        ({"IfUnmodifiedSince": past}, ("PreconditionFailed", 412)),
        # If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since.
        ({"IfMatch": etag, "IfUnmodifiedSince": past, "IfNoneMatch": etag}, ("304", 304)),
        ({"IfNoneMatch": '"0123"', "IfModifiedSince": future}, ("", 200)),
    ]
    for kwargs, expected in cases:
        if expected[1] == 200:
            assert _get(s3, bucket, "k", **kwargs)[0] == data
            continue
        for call in (s3.get_object, s3.head_object):
            with pytest.raises(ClientError) as exc:
                call(Bucket=bucket, Key="k", **kwargs)
            code, status = _code(exc)
            assert status == expected[1], kwargs
            if call is s3.get_object:
                assert code == expected[0], kwargs
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["etag"] == etag  # a 304 still says which version the cache has


def test_conditional_put_is_not_implemented(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    for kwargs in ({"IfNoneMatch": "*"}, {"IfMatch": '"abc"'}):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="k", Body=b"new", **kwargs)
        assert _code(exc) == ("NotImplemented", 501)
        assert "conditional writes" in exc.value.response["Error"]["Message"]
    _assert_serves(s3, bucket, "k", b"old")


# ---------------------------------------------------------------------------- headers


def test_metadata_and_standard_headers_round_trip(s3: Any, bucket: str) -> None:
    for data in (b"inline", os.urandom(MiB + 10)):
        s3.put_object(
            Bucket=bucket,
            Key="doc",
            Body=data,
            ContentType="text/html; charset=utf-8",
            ContentEncoding="identity",
            ContentDisposition='attachment; filename="a.html"',
            ContentLanguage="fr",
            CacheControl="max-age=60",
            Expires="Wed, 21 Oct 2099 07:28:00 GMT",
            Metadata={"color": "blue", "Owner": "Ana María"[:3] + "x", "empty": ""},
            ACL="public-read",
        )
        for resp in (s3.head_object(Bucket=bucket, Key="doc"), _get(s3, bucket, "doc")[1]):
            assert resp["ContentType"] == "text/html; charset=utf-8"
            assert resp["ContentEncoding"] == "identity"
            assert resp["ContentDisposition"] == 'attachment; filename="a.html"'
            assert resp["ContentLanguage"] == "fr"
            assert resp["CacheControl"] == "max-age=60"
            assert resp["ExpiresString"] == "Wed, 21 Oct 2099 07:28:00 GMT"
            assert resp["Metadata"] == {"color": "blue", "owner": "Anax", "empty": ""}
            assert resp["ContentLength"] == len(data)


def test_response_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentType="text/plain")
    overrides = {
        "ResponseContentType": "application/json",
        "ResponseContentDisposition": "inline",
        "ResponseCacheControl": "no-cache",
        "ResponseContentLanguage": "de",
        "ResponseContentEncoding": "gzip",
        "ResponseExpires": "Thu, 01 Jan 2099 00:00:00 GMT",
    }
    body, resp = _get(s3, bucket, "k", **overrides)
    assert body == b"data"
    assert resp["ContentType"] == "application/json"
    assert resp["ContentDisposition"] == "inline"
    assert resp["CacheControl"] == "no-cache"
    assert resp["ContentLanguage"] == "de"
    assert resp["ContentEncoding"] == "gzip"
    assert resp["ExpiresString"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    head = s3.head_object(Bucket=bucket, Key="k", ResponseContentType="image/png")
    assert head["ContentType"] == "image/png"
    assert s3.head_object(Bucket=bucket, Key="k")["ContentType"] == "text/plain"  # unchanged


# The test node's metadata db is sqlite, which stores S3's longest keys (1,024 bytes: db keys
# of up to 1,064 bytes with the table and GC prefixes).
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("été/日本語/😀.txt", id="unicode"),
        pytest.param("a/../b", id="dotdot"),
        pytest.param("../up", id="leading-dotdot"),
        pytest.param("a//b", id="double-slash"),
        pytest.param("//lead", id="leading-slashes"),
        pytest.param("with spaces and+plus", id="spaces"),
        pytest.param("trailing/", id="trailing-slash"),
        pytest.param("percent%20sign?&=#", id="specials"),
        pytest.param("k" * 471, id="471-ascii"),
        pytest.param("k" * 1024, id="1024-ascii"),
        pytest.param("é" * 512, id="1024-utf8"),
    ],
)
def test_unusual_keys(s3: Any, bucket: str, key: str) -> None:
    data = os.urandom(100)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    _assert_serves(s3, bucket, key, data)
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key)
    assert _code(exc) == ("NoSuchKey", 404)


def test_keys_that_look_alike_are_different(s3: Any, bucket: str) -> None:
    keys = ["a/b", "a//b", "a/./b", "a/../a/b", "a/b/"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=str(i).encode())
    for i, key in enumerate(keys):
        _assert_serves(s3, bucket, key, str(i).encode())


def test_a_key_over_1024_bytes_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k" * 400, Body=b"kept")
    for key in ("k" * 1025, "é" * 512 + "x"):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key=key, Body=b"data")
        assert _code(exc) == ("KeyTooLongError", 400)
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key=key)
        assert _code(exc) == ("KeyTooLongError", 400)
    _assert_serves(s3, bucket, "k" * 400, b"kept")


def test_an_lmdb_node_refuses_keys_its_db_cannot_store(tmp_path: Path) -> None:
    """LMDB stores db keys of at most 511 bytes: 471 bytes of object key, refused beyond."""
    data_dir = tmp_path / "lmdb-node"
    config = prepare_single_node(
        data_dir, s3_api_bind="127.0.0.1:0", rpc_bind="127.0.0.1:0", admin_bind="127.0.0.1:0"
    )
    # Top-level keys must come before the config's first [table]: put it first.
    config.write_text('db_engine = "lmdb"\n' + config.read_text())
    node = start_single_node(data_dir)
    try:
        assert (data_dir / "meta" / "db.lmdb").is_dir()
        s3 = node.client()
        bucket = f"test-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k" * 471, Body=b"kept")
        for key in ("k" * 472, "é" * 236, "k" * 1024):  # "é" is 2 bytes of UTF-8
            with pytest.raises(ClientError) as exc:
                s3.put_object(Bucket=bucket, Key=key, Body=b"data")
            assert _code(exc) == ("KeyTooLongError", 400)
            message = exc.value.response["Error"]["Message"]
            assert "at most 471 bytes" in message
            assert "lmdb metadata db limits keys to 511 bytes" in message
            with pytest.raises(ClientError) as exc:
                s3.get_object(Bucket=bucket, Key=key)
            assert _code(exc) == ("NoSuchKey", 404)
        _assert_serves(s3, bucket, "k" * 471, b"kept")
    finally:
        assert stop(node) == 0


# ---------------------------------------------------------------------------- checksums


# awscrt is untyped: its two CRCs, typed (stdlib has no CRC32C nor CRC64NVME).
_CRC32C: Callable[[bytes, int], int] = crt.crc32c
_CRC64NVME: Callable[[bytes, int], int] = crt.crc64nvme


def _checksum(algorithm: str, data: bytes) -> str:
    """The base64 checksum S3 expects, computed without the code under test."""
    if algorithm == "CRC32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif algorithm == "CRC32C":
        raw = _CRC32C(data, 0).to_bytes(4, "big")
    elif algorithm == "CRC64NVME":
        raw = _CRC64NVME(data, 0).to_bytes(8, "big")
    elif algorithm == "SHA1":
        raw = hashlib.sha1(data, usedforsecurity=False).digest()
    else:
        raw = hashlib.sha256(data).digest()
    return base64.b64encode(raw).decode()


ALGORITHMS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [100, 2 * MiB + 1], ids=["inline", "blocks"])
def test_checksum_algorithms(s3: Any, bucket: str, algorithm: str, size: int) -> None:
    data = os.urandom(size)
    expected = _checksum(algorithm, data)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"] == expected
    assert put["ETag"] == f'"{_md5(data)}"'
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert f"Checksum{algorithm}" not in s3.head_object(Bucket=bucket, Key="k")
    body, resp = _get(s3, bucket, "k", ChecksumMode="ENABLED")  # botocore checks the body
    assert body == data
    assert resp[f"Checksum{algorithm}"] == expected
    _body, ranged = _get(s3, bucket, "k", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert f"Checksum{algorithm}" not in ranged  # not the checksum of these bytes


@pytest.mark.parametrize("size", [100, 2 * MiB + 1], ids=["inline", "blocks"])
def test_wrong_checksums_store_nothing(s3: Any, bucket: str, size: int) -> None:
    old = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    new = os.urandom(size)
    wrong_md5 = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    attempts: list[dict[str, Any]] = [
        {"ContentMD5": wrong_md5},
        {"ChecksumCRC32": _checksum("CRC32", b"other")},
        {"ChecksumSHA256": _checksum("SHA256", b"other")},
        {"ChecksumCRC64NVME": _checksum("CRC64NVME", b"other")},
    ]
    for kwargs in attempts:
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="k", Body=new, **kwargs)
        assert _code(exc) == ("BadDigest", 400), kwargs
        _assert_serves(s3, bucket, "k", old)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="fresh", Body=new, ContentMD5=wrong_md5)
    assert _code(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="fresh")
    assert _code(exc) == ("404", 404)
    right_md5 = base64.b64encode(hashlib.md5(new, usedforsecurity=False).digest()).decode()
    s3.put_object(Bucket=bucket, Key="k", Body=new, ContentMD5=right_md5)
    _assert_serves(s3, bucket, "k", new)


# ---------------------------------------------------------------------------- raw requests


def _signed(
    node: S3Node,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    payload_hash: str,
    *,
    query: str = "",
) -> list[tuple[str, str]]:
    host = urlsplit(node.endpoint).netloc
    return sign_request(
        method,
        path,
        query,
        [("host", host), *headers],
        key_id=node.key_id,
        secret=node.secret,
        region=node.region,
        service="s3",
        now_ms=int(time.time() * 1000),
        payload_hash=payload_hash,
    )


def _trailer_body(
    data: bytes, checksum_cls: Any, name: str, *, wrong: bool = False
) -> Iterator[bytes]:
    """An aws-chunked body with the checksum in its trailer (as botocore sends over TLS),
    streamed in pieces; ``wrong`` sends the checksum of other data."""
    payload = b"other data" if wrong else data
    encoded = AwsChunkedWrapper(
        io.BytesIO(payload), checksum_cls=checksum_cls, checksum_name=name, chunk_size=64 * 1024
    ).read()
    if wrong:
        trailer = encoded[encoded.rindex(b"0\r\n") :]
        encoded = AwsChunkedWrapper(
            io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=64 * 1024
        ).read()
        encoded = encoded[: encoded.rindex(b"0\r\n")] + trailer
    for i in range(0, len(encoded), 100_000):
        yield encoded[i : i + 100_000]


@pytest.mark.parametrize(
    ("checksum_cls", "name", "algorithm"),
    [
        (CrtCrc32cChecksum, "x-amz-checksum-crc32c", "CRC32C"),
        (CrtCrc64NvmeChecksum, "x-amz-checksum-crc64nvme", "CRC64NVME"),
    ],
)
@pytest.mark.parametrize("size", [2000, 2 * MiB + 7], ids=["inline", "blocks"])
def test_aws_chunked_upload_with_trailer_checksum(
    s3node: S3Node,
    s3: Any,
    bucket: str,
    checksum_cls: Any,
    name: str,
    algorithm: str,
    size: int,
) -> None:
    data = os.urandom(size)
    path = f"/{bucket}/chunked"
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(size)),
        ("x-amz-trailer", name),
        ("x-amz-sdk-checksum-algorithm", algorithm),
        ("content-type", "text/plain"),
    ]
    with httpx.Client() as client:
        resp = client.put(
            s3node.endpoint + path,
            headers=_signed(s3node, "PUT", path, headers, mode),
            content=_trailer_body(data, checksum_cls, name),
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["etag"] == f'"{_md5(data)}"'
        assert resp.headers[name] == _checksum(algorithm, data)
        _assert_serves(s3, bucket, "chunked", data)
        head = s3.head_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
        assert head[f"Checksum{algorithm}"] == _checksum(algorithm, data)
        assert head["ContentType"] == "text/plain"  # aws-chunked is not stored
        assert "ContentEncoding" not in head

        other = os.urandom(size)
        resp = client.put(
            s3node.endpoint + path,
            headers=_signed(s3node, "PUT", path, headers, mode),
            content=_trailer_body(other, checksum_cls, name, wrong=True),
        )
        assert resp.status_code == 400
        assert "<Code>BadDigest</Code>" in resp.text
    _assert_serves(s3, bucket, "chunked", data)


@pytest.mark.parametrize("cut", [1000, 3 * MiB // 2], ids=["first-block", "second-block"])
def test_truncated_aws_chunked_body_stores_nothing(
    s3node: S3Node, s3: Any, bucket: str, cut: int
) -> None:
    old = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    data = os.urandom(2 * MiB + 7)
    name = "x-amz-checksum-crc32c"
    encoded = b"".join(_trailer_body(data, CrtCrc32cChecksum, name))
    path = f"/{bucket}/k"
    headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(len(data))),
        ("x-amz-trailer", name),
    ]
    with httpx.Client() as client:
        resp = client.put(
            s3node.endpoint + path,
            headers=_signed(s3node, "PUT", path, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            content=iter([encoded[:cut]]),  # streamed: the server only sees the body end early
        )
    assert resp.status_code == 400
    assert "<Code>IncompleteBody</Code>" in resp.text
    _assert_serves(s3, bucket, "k", old)


@pytest.mark.parametrize("size", [10, 2 * MiB], ids=["inline", "blocks"])
def test_body_not_matching_its_signed_sha256_stores_nothing(
    s3node: S3Node, s3: Any, bucket: str, size: int
) -> None:
    old = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="k", Body=old)
    signed_body, sent_body = os.urandom(size), os.urandom(size)
    with httpx.Client() as client:
        for key in ("k", "fresh"):
            path = f"/{bucket}/{key}"
            headers = _signed(s3node, "PUT", path, [], hashlib.sha256(signed_body).hexdigest())
            resp = client.put(s3node.endpoint + path, headers=headers, content=sent_body)
            assert resp.status_code == 400
            assert "<Code>XAmzContentSHA256Mismatch</Code>" in resp.text
    _assert_serves(s3, bucket, "k", old)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="fresh")
    assert _code(exc) == ("404", 404)


def test_presigned_get(s3node: S3Node, s3: Any, bucket: str) -> None:
    data = os.urandom(MiB + 3)
    s3.put_object(Bucket=bucket, Key="shared file.bin", Body=data)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file.bin"}, ExpiresIn=60
    )
    resp = httpx.get(url)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["etag"] == f'"{_md5(data)}"'

    expiring = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file.bin"}, ExpiresIn=1
    )
    answers: list[httpx.Response] = []

    def refused() -> bool:
        answers.append(httpx.get(expiring))
        return answers[-1].status_code != 200

    anyio.run(functools.partial(wait_until, refused, "the presigned URL expires", poll_s=0.5))
    assert answers[-1].status_code == 403
    assert "<Code>AccessDenied</Code>" in answers[-1].text


def test_head_of_a_missing_key_has_no_body(s3node: S3Node, s3: Any, bucket: str) -> None:
    path = f"/{bucket}/{quote('no such key')}"
    resp = httpx.head(
        s3node.endpoint + path, headers=_signed(s3node, "HEAD", path, [], "UNSIGNED-PAYLOAD")
    )
    assert resp.status_code == 404
    assert resp.content == b""


def test_large_upload_streams(s3: Any, bucket: str, tmp_path: Any) -> None:
    data = os.urandom(64 * MiB)
    single_put = TransferConfig(multipart_threshold=128 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "large", Config=single_put)
    assert s3.head_object(Bucket=bucket, Key="large")["ETag"] == f'"{_md5(data)}"'
    out = io.BytesIO()
    s3.download_fileobj(bucket, "large", out)  # ranged GETs, in parallel
    assert out.getvalue() == data


# ---------------------------------------------------------------------------- DeleteObjects


@pytest.mark.parametrize("quiet", [False, True])
def test_delete_objects(s3: Any, bucket: str, quiet: bool) -> None:
    for key in ("a", "b/c", "keep"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    resp = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "b/c"}, {"Key": "missing"}], "Quiet": quiet},
    )
    assert resp.get("Errors", []) == []
    if quiet:
        assert "Deleted" not in resp
    else:
        assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "b/c", "missing"]
    for key in ("a", "b/c", "missing"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key=key)
        assert _code(exc) == ("NoSuchKey", 404)
    _assert_serves(s3, bucket, "keep", b"keep")


def test_delete_objects_reports_bad_keys(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "x" * 1025}]})
    assert [d["Key"] for d in resp["Deleted"]] == ["a"]
    assert [(e["Key"], e["Code"]) for e in resp["Errors"]] == [("x" * 1025, "KeyTooLongError")]


def test_delete_objects_checks_its_body(s3node: S3Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    path = f"/{bucket}/"
    wrong_md5 = base64.b64encode(hashlib.md5(b"x", usedforsecurity=False).digest()).decode()
    with httpx.Client() as client:
        for extra, code in (
            ([("content-md5", wrong_md5)], "BadDigest"),
            ([], "MalformedXML"),
        ):
            sent = body if extra else b"<Delete><Nope/></Delete>"
            headers = _signed(s3node, "POST", path, extra, "UNSIGNED-PAYLOAD", query="delete")
            resp = client.post(s3node.endpoint + path + "?delete", headers=headers, content=sent)
            assert resp.status_code == 400, resp.text
            assert f"<Code>{code}</Code>" in resp.text
    _assert_serves(s3, bucket, "a", b"a")

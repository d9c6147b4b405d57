"""Bad input against a running node: each request gets the right S3 error, and an object
stored before is still there, unchanged, afterwards."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.api.conftest import S3Node

KEEP = b"precious bytes " * 1000


@pytest.fixture
def kept(s3: Any, bucket: str) -> Iterator[str]:
    """An object stored before the bad request; checked unchanged after it."""
    s3.put_object(Bucket=bucket, Key="kept.bin", Body=KEEP)
    yield bucket
    assert s3.get_object(Bucket=bucket, Key="kept.bin")["Body"].read() == KEEP


def _send(
    node: S3Node,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    now_ms: int | None = None,
    sign: bool = True,
) -> httpx.Response:
    host = urlsplit(node.endpoint).netloc
    hdrs = [("host", host), *(headers or [])]
    if sign:
        hdrs = sign_request(
            method, path, query, hdrs,
            key_id=node.key_id, secret=node.secret, region=node.region, service="s3",
            now_ms=now_ms if now_ms is not None else int(time.time() * 1000),
            payload_hash=hashlib.sha256(body).hexdigest(),
        )  # fmt: skip
    url = f"{node.endpoint}{path}" + (f"?{query}" if query else "")
    return httpx.request(method, url, headers=hdrs, content=body, timeout=30)


def _error(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/xml", r.text
    start = r.text.index("<Code>") + len("<Code>")
    return r.text[start : r.text.index("</Code>")]


def test_malformed_authorization_header(s3node: S3Node, kept: str) -> None:
    for auth in ["garbage", "AWS4-HMAC-SHA256 Credential=", "AWS abc:def"]:
        r = httpx.get(
            f"{s3node.endpoint}/{kept}/kept.bin",
            headers={"authorization": auth, "x-amz-date": "20260101T000000Z"},
        )
        assert r.status_code in (400, 403), (auth, r.text)
        assert _error(r) in {"AuthorizationHeaderMalformed", "AccessDenied", "InvalidRequest"}


def test_clock_skew_is_refused(s3node: S3Node, kept: str) -> None:
    an_hour_ago = int(time.time() * 1000) - 3600_000
    r = _send(s3node, "PUT", f"/{kept}/kept.bin", body=b"other", now_ms=an_hour_ago)
    assert r.status_code == 403
    assert _error(r) == "RequestTimeTooSkewed"


def test_unknown_bucket_and_key_for_writes(s3node: S3Node, kept: str) -> None:
    r = _send(s3node, "PUT", f"/no-such-bucket-{uuid.uuid4().hex[:8]}/x", body=b"x")
    assert r.status_code == 404
    assert _error(r) == "NoSuchBucket"


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete><Object><Key>kept.bin</Key>",
        b"not xml at all",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]><Delete/>",
    ],
)
def test_invalid_xml_in_delete_objects(s3node: S3Node, kept: str, body: bytes) -> None:
    md5 = __import__("base64").b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    r = _send(
        s3node, "POST", f"/{kept}", query="delete=", body=body, headers=[("content-md5", md5)]
    )
    assert r.status_code == 400
    assert _error(r) == "MalformedXML"


def test_invalid_xml_in_complete_multipart_upload(s3: Any, s3node: S3Node, kept: str) -> None:
    upload = s3.create_multipart_upload(Bucket=kept, Key="mpu.bin")["UploadId"]
    r = _send(s3node, "POST", f"/{kept}/mpu.bin", query=f"uploadId={upload}", body=b"<Complete<")
    assert r.status_code == 400
    assert _error(r) == "MalformedXML"
    s3.abort_multipart_upload(Bucket=kept, Key="mpu.bin", UploadId=upload)


def test_oversized_headers_are_refused_and_the_node_keeps_serving(
    s3node: S3Node, s3: Any, kept: str
) -> None:
    huge = [("x-amz-meta-big", "x" * 100_000)]
    try:
        r = _send(s3node, "PUT", f"/{kept}/kept.bin", body=b"other", headers=huge)
    except httpx.TransportError:
        pass  # the server may close the connection on a request it cannot parse
    else:
        assert r.status_code in (400, 431)
    # a user metadata block over 2 KiB that fits in the header limit: S3's own limit
    r = _send(
        s3node, "PUT", f"/{kept}/kept.bin", body=b"other",
        headers=[("x-amz-meta-big", "x" * 3000)],
    )  # fmt: skip
    assert r.status_code == 400
    assert s3.head_object(Bucket=kept, Key="kept.bin")["ContentLength"] == len(KEEP)


def test_truncated_body_stores_nothing(s3node: S3Node, s3: Any, kept: str) -> None:
    """The client announces 1 MiB, sends half, and hangs up."""
    host, port = urlsplit(s3node.endpoint).netloc.split(":")
    headers = sign_request(
        "PUT", f"/{kept}/kept.bin", "",
        [("host", f"{host}:{port}"), ("content-length", str(2**20))],
        key_id=s3node.key_id, secret=s3node.secret, region=s3node.region, service="s3",
        now_ms=int(time.time() * 1000), payload_hash="UNSIGNED-PAYLOAD",
    )  # fmt: skip
    head = f"PUT /{kept}/kept.bin HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + b"t" * (2**19))
    # the stored object is still the old one (checked by the fixture), and nothing new:
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=kept)["Contents"]] == ["kept.bin"]


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../b", "//double", "ünïcødé/ключ/鍵", "a" * 1024]
)
def test_odd_keys_are_keys(s3: Any, kept: str, key: str) -> None:
    """Keys are names, never paths: they cannot reach other objects or files."""
    s3.put_object(Bucket=kept, Key=key, Body=b"odd")
    assert s3.get_object(Bucket=kept, Key=key)["Body"].read() == b"odd"
    s3.delete_object(Bucket=kept, Key=key)

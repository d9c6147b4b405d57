"""Oversized and lying requests: huge heads, too much metadata, bodies that contradict their
``Content-Length``.

Fault-testing §3.9: a header line over 8 KiB (:data:`garage_api.http.MAX_HEADER_LINE_BYTES`),
a head over 64 KiB (:data:`garage_api.http.MAX_HEADER_BYTES`) or over 100 headers
(:data:`garage_api.http.MAX_HEADER_COUNT`, 10,000 here) get 431 (or 400 from h11) and the
connection is closed; user metadata over 2 KB is ``400
MetadataTooLarge``; a body longer than its ``Content-Length`` stores exactly the announced
bytes (the rest is a malformed next request), one shorter stores nothing. The node's memory
stays bounded throughout. tests/api/test_s3_bad_input.py covers a 100 KB metadata header and
an upload cut halfway.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

import pytest
from tests.abuse.harness import (
    CANARY_BUCKET,
    Node,
    error_code,
    exchange,
    http_status,
    request_bytes,
    signed,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

INLINE: Final = f"/{CANARY_BUCKET}/canary/inline.bin"
#: Generous bound on the node's memory growth over this module (a leak of every oversized
#: head or body would be far above it).
_RSS_BOUND_KIB: Final = 200 * 1024


@pytest.fixture(scope="module", autouse=True)
def _memory_stays_bounded(node: Node) -> Iterator[None]:
    before = node.rss_kib()
    yield
    assert node.rss_kib() - before < _RSS_BOUND_KIB


def _get(node: Node, extra: list[tuple[str, str]], *, sign_extra: bool = True) -> bytes:
    if sign_extra:
        headers = signed(node, "GET", INLINE, headers=extra)
    else:
        headers = [*signed(node, "GET", INLINE), *extra]
    return exchange(node, request_bytes("GET", INLINE, headers))


@pytest.mark.parametrize(
    "extra",
    [
        [("x-small", "a" * 100)],
        [("x-line", "a" * 8000)],  # a line just under 8 KiB
        [(f"x-h{i}", "v") for i in range(90)],  # 94 headers with the signature's
    ],
    ids=["small", "line-under-8k", "94-headers"],
)
def test_heads_within_the_limits_are_served(node: Node, extra: list[tuple[str, str]]) -> None:
    """The baseline for the refusals below: the same request with headers that fit."""
    raw = _get(node, extra)
    assert http_status(raw) == 200, raw[:300]
    assert raw.endswith(node.canaries["canary/inline.bin"])


@pytest.mark.parametrize(
    ("name", "extra", "signed_too"),
    [
        ("one header line over 8 KiB", [("x-junk", "a" * (8 * 1024))], True),
        ("one header of 60 KiB", [("x-junk", "a" * (60 * 1024))], True),
        ("a head of 70 KiB in 10 headers", [(f"x-j{i}", "a" * 7000) for i in range(10)], True),
        ("a head of 200 KiB", [(f"x-j{i}", "a" * 8000) for i in range(25)], False),
        ("101 headers", [(f"x-h{i}", "v") for i in range(97)], True),
        ("10,000 headers", [(f"x-h{i}", "v") for i in range(10_000)], False),
        ("10,000 empty headers", [("a", "")] * 10_000, False),
        ("one header of 1 MiB", [("x-junk", "a" * 2**20)], False),
    ],
)
def test_oversized_heads_are_refused(
    node: Node, name: str, extra: list[tuple[str, str]], signed_too: bool
) -> None:
    raw = _get(node, extra, sign_extra=signed_too)
    assert http_status(raw) in (400, 431), (name, raw[:300])
    assert b"connection: close" in raw.lower(), raw[:300]


def test_metadata_over_2kb_is_metadata_too_large(node: Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"old", Metadata={"a": "1"})
    # Many small fields that add up (names count too), then one big field.
    for meta in (
        [(f"x-amz-meta-field{i:02d}", "v" * 100) for i in range(21)],
        [("x-amz-meta-big", "x" * 2100)],
    ):
        body = b"new"
        headers = signed(
            node, "PUT", f"/{bucket}/kept",
            headers=[*meta, ("content-length", str(len(body)))], body=body,
        )  # fmt: skip
        raw = exchange(node, request_bytes("PUT", f"/{bucket}/kept", headers) + body)
        assert http_status(raw) == 400, raw[:300]
        assert error_code(raw) == "MetadataTooLarge"
    kept = s3.get_object(Bucket=bucket, Key="kept")
    assert kept["Body"].read() == b"old"
    assert kept["Metadata"] == {"a": "1"}


def test_exactly_2kb_of_metadata_is_accepted(s3: Any, bucket: str) -> None:
    meta = {"k": "v" * 2047}  # name "k" + value: 2048 bytes
    s3.put_object(Bucket=bucket, Key="full", Body=b"x", Metadata=meta)
    assert s3.head_object(Bucket=bucket, Key="full")["Metadata"] == meta


def test_a_body_longer_than_content_length_stores_the_announced_bytes(
    node: Node, s3: Any, bucket: str
) -> None:
    body, extra = b"0123456789", b"EXTRA BYTES THAT ARE NOT A REQUEST\r\n\r\n"
    path = f"/{bucket}/longer"
    headers = signed(node, "PUT", path, headers=[("content-length", str(len(body)))], body=body)
    raw = exchange(node, request_bytes("PUT", path, headers) + body + extra, shutdown=True)
    assert http_status(raw) == 200, raw[:300]
    # The extra bytes were read as the next request, which is malformed: 400, then close.
    assert raw.count(b"HTTP/1.1 ") in (1, 2)
    if raw.count(b"HTTP/1.1 ") == 2:
        assert b"HTTP/1.1 400" in raw
    assert s3.get_object(Bucket=bucket, Key="longer")["Body"].read() == body


def test_a_body_longer_than_its_signed_hash_stores_nothing(
    node: Node, s3: Any, bucket: str
) -> None:
    """The client signed the sha256 of 20 bytes but announced 10: the 10 read do not
    match the signed hash."""
    body = b"01234567890123456789"
    path = f"/{bucket}/mismatch"
    headers = signed(node, "PUT", path, headers=[("content-length", "10")], body=body)
    raw = exchange(node, request_bytes("PUT", path, headers) + body, shutdown=True)
    assert http_status(raw) == 400, raw[:300]
    assert error_code(raw) == "XAmzContentSHA256Mismatch"
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


@pytest.mark.parametrize(
    "content_length",
    [
        str(5 * 2**40 + 1),  # just over S3's largest object (5 TiB)
        str(10**15),
        str(2**63),
        "18446744073709551616",  # 2^64
        "99999999999999999999999999999999",
        "-1",
        "12a",
        "10, 20",
        " ",
    ],
)
def test_huge_or_invalid_content_length_with_a_short_body_stores_nothing(
    node: Node, s3: Any, bucket: str, content_length: str
) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"previous")
    path = f"/{bucket}/kept"
    headers = signed(node, "PUT", path, payload_hash="UNSIGNED-PAYLOAD")
    request = request_bytes("PUT", path, [*headers, ("content-length", content_length)])
    raw = exchange(node, request + b"short body", shutdown=True)
    status = http_status(raw)
    assert status is None or 400 <= status < 500, raw[:300]
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"previous"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["kept"]


def test_two_content_lengths_are_refused(node: Node, s3: Any, bucket: str) -> None:
    """Request smuggling: two different lengths for one body."""
    path = f"/{bucket}/smuggled"
    headers = signed(node, "PUT", path, payload_hash="UNSIGNED-PAYLOAD")
    raw = exchange(
        node,
        request_bytes("PUT", path, [*headers, ("content-length", "4"), ("content-length", "9")])
        + b"abcdGET / HTTP/1.1\r\n\r\n",
        shutdown=True,
    )
    assert http_status(raw) == 400, raw[:300]
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_chunked_and_content_length_together_do_not_store_a_mix(
    node: Node, s3: Any, bucket: str
) -> None:
    """RFC 9112 §6.3: with both, Transfer-Encoding wins (or the request is refused)."""
    path = f"/{bucket}/both"
    payload = b"chunked payload"
    headers = signed(node, "PUT", path, payload_hash=hashlib.sha256(payload).hexdigest())
    body = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    raw = exchange(
        node,
        request_bytes(
            "PUT", path, [*headers, ("content-length", "3"), ("transfer-encoding", "chunked")]
        )
        + body,
        shutdown=True,
    )
    status = http_status(raw)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if status == 200:
        assert s3.get_object(Bucket=bucket, Key="both")["Body"].read() == payload
    else:
        assert status == 400, raw[:300]
        assert listed == []

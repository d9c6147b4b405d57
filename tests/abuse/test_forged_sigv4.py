"""Forged and malformed SigV4 against the live node, in every payload mode, and presigned URLs.

Fault-testing §3.9 (MinIO GHSA-9c4q…, GHSA-hv4r…; SeaweedFS #7912; Garage #735, #756): a
table of every ``x-amz-content-sha256`` mode x {valid, altered signature, no signature,
altered chunk signature, reordered or missing chunks, bad checksum, credentials in the
query and the header at once}, each answered with its status and S3 code, a valid upload
stored byte for byte and a refused one storing nothing (the previous version is still
served). A hypothesis test alters one signed byte (method, path, query, a signed header,
the payload) of a request signed by :func:`garage_api.signature.sign_request`: always 403,
nothing stored. Then presigned URLs: expired, ``X-Amz-Expires`` out of range or not a
number, altered, used with another method, dated in the future.

The verifier itself is tested byte by byte in tests/api/test_sigv4.py and
tests/api/test_streaming.py; here the same attacks go through the node's HTTP stack.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.abuse.harness import (
    ChunkSigning,
    Node,
    aws_chunked,
    error_code,
    send,
    signed,
)

from garage_api.signature import PayloadMode, presign

if TYPE_CHECKING:
    from collections.abc import Callable

PAYLOAD: Final = random.Random("payload").randbytes(76_800)  # three chunks of 32 KiB
CHUNK: Final = 32 * 1024
PREVIOUS: Final = b"the previous version"


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@dataclass(frozen=True, slots=True)
class Upload:
    """A PutObject as the wire will carry it."""

    headers: list[tuple[str, str]]
    body: bytes
    query: str = ""


def _upload(
    node: Node,
    path: str,
    mode: PayloadMode,
    *,
    chunks: Callable[[list[bytes]], list[bytes]] = lambda c: c,
    trailer_data: bytes = PAYLOAD,
) -> Upload:
    """A valid upload of :data:`PAYLOAD` in ``mode``; ``chunks`` rearranges the chunks
    (after they are signed), ``trailer_data`` is what the trailer checksum covers."""
    if not mode.is_streaming:
        headers = signed(
            node, "PUT", path, payload_hash=None if mode is PayloadMode.SHA256 else mode.value,
            body=PAYLOAD,
        )  # fmt: skip
        return Upload(headers, PAYLOAD)
    pieces = [PAYLOAD[i : i + CHUNK] for i in range(0, len(PAYLOAD), CHUNK)]
    extra = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(len(PAYLOAD))),
    ]
    trailers = None
    if mode.has_trailer:
        extra.append(("x-amz-trailer", "x-amz-checksum-crc32"))
        trailers = [("x-amz-checksum-crc32", _crc32(trailer_data))]
    headers = signed(node, "PUT", path, headers=extra, payload_hash=mode.value)
    signing = ChunkSigning.of(node, headers) if mode.signed_chunks else None
    framed = _framed(pieces, mode, signing, trailers)
    body = b"".join(chunks(framed))
    return Upload(headers, body)


def _framed(
    pieces: list[bytes],
    mode: PayloadMode,
    signing: ChunkSigning | None,
    trailers: list[tuple[str, str]] | None,
) -> list[bytes]:
    """The aws-chunked body cut at chunk boundaries: one item per chunk, then the final
    chunk with the trailer (so that tests can drop or swap whole chunks)."""
    whole = aws_chunked(pieces, mode, signing=signing, trailers=trailers)
    out, at = [], 0
    for piece in pieces:
        end = whole.index(b"\r\n", at) + 2 + len(piece) + 2
        out.append(whole[at:end])
        at = end
    out.append(whole[at:])
    return out


def _put(node: Node, path: str, upload: Upload) -> httpx.Response:
    headers = [*upload.headers, ("content-length", str(len(upload.body)))]
    url = f"{node.s3.endpoint}{path}" + (f"?{upload.query}" if upload.query else "")
    return httpx.put(url, headers=headers, content=upload.body, timeout=30)


def _alter_signature(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        if name == "authorization":
            head, _, signature = value.rpartition("Signature=")
            flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
            value = f"{head}Signature={flipped}"
        out.append((name, value))
    return out


def _alter_chunk_signature(framed: list[bytes]) -> list[bytes]:
    first = framed[0]
    at = first.index(b"chunk-signature=") + len(b"chunk-signature=")
    flipped = b"0" if first[at : at + 1] != b"0" else b"1"
    return [first[:at] + flipped + first[at + 1 :], *framed[1:]]


STREAMING: Final = [m for m in PayloadMode if m.is_streaming]
SIGNED_CHUNKS: Final = [m for m in PayloadMode if m.signed_chunks]
TRAILERS: Final = [m for m in PayloadMode if m.has_trailer]


def _cases() -> list[Any]:
    """(mode, variant, expected status, expected code or None for success)."""
    cases: list[Any] = []
    for mode in PayloadMode:
        cases.append((mode, "valid", 200, None))
        cases.append((mode, "altered signature", 403, "SignatureDoesNotMatch"))
        cases.append((mode, "no authorization header", 403, "AccessDenied"))
        cases.append((mode, "no Signature= part", 400, "AuthorizationHeaderMalformed"))
        cases.append((mode, "query and header credentials", 400, "InvalidArgument"))
        cases.append((mode, "another key's secret", 403, "SignatureDoesNotMatch"))
    for mode in SIGNED_CHUNKS:
        cases.append((mode, "altered chunk signature", 403, "SignatureDoesNotMatch"))
        cases.append((mode, "chunks swapped", 403, "SignatureDoesNotMatch"))
        cases.append((mode, "a middle chunk dropped", 403, "SignatureDoesNotMatch"))
    for mode in STREAMING:
        cases.append((mode, "final chunk missing", 400, "IncompleteBody"))
        cases.append((mode, "presigned, streaming header", 400, "InvalidRequest"))
    cases.append(
        (PayloadMode.STREAMING_UNSIGNED_TRAILER, "chunks swapped", 400, "BadDigest")
    )  # fmt: skip
    cases.extend((mode, "bad trailer checksum", 400, "BadDigest") for mode in TRAILERS)
    cases.append(
        (PayloadMode.SHA256, "payload hash of other bytes", 400, "XAmzContentSHA256Mismatch")
    )
    cases.append((PayloadMode.UNSIGNED, "wrong Content-MD5", 400, "BadDigest"))
    return [pytest.param(*c, id=f"{c[0].name}-{c[1]}") for c in cases]


def _presign_headers(node: Node, path: str, headers: list[tuple[str, str]]) -> str:
    """A presigned query for ``path`` that signs ``headers`` (but ``authorization``)."""
    return presign(
        "PUT", path, "", [h for h in headers if h[0] != "authorization"],
        key_id=node.s3.key_id, secret=node.s3.secret, region=node.s3.region,
        service="s3", now_ms=int(time.time() * 1000), expires_s=300,
    )  # fmt: skip


def _variant(node: Node, path: str, mode: PayloadMode, variant: str) -> Upload:
    match variant:
        case "valid":
            return _upload(node, path, mode)
        case "altered signature":
            up = _upload(node, path, mode)
            return Upload(_alter_signature(up.headers), up.body)
        case "no authorization header":
            up = _upload(node, path, mode)
            return Upload([h for h in up.headers if h[0] != "authorization"], up.body)
        case "no Signature= part":
            up = _upload(node, path, mode)
            cut = [
                (n, v.rpartition(", Signature=")[0] if n == "authorization" else v)
                for n, v in up.headers
            ]
            return Upload(cut, up.body)
        case "query and header credentials":
            # Both signatures are valid on their own: the query's signs every header sent.
            up = _upload(node, path, mode)
            return Upload(up.headers, up.body, _presign_headers(node, path, up.headers))
        case "presigned, streaming header":
            up = _upload(node, path, mode)
            headers = [h for h in up.headers if h[0] != "authorization"]
            return Upload(headers, up.body, _presign_headers(node, path, headers))
        case "another key's secret":
            return _upload(replace(node, s3=replace(node.s3, secret="0" * 64)), path, mode)
        case "altered chunk signature":
            return _upload(node, path, mode, chunks=_alter_chunk_signature)
        case "chunks swapped":
            return _upload(node, path, mode, chunks=lambda c: [c[1], c[0], *c[2:]])
        case "a middle chunk dropped":
            return _upload(node, path, mode, chunks=lambda c: [c[0], *c[2:]])
        case "final chunk missing":
            return _upload(node, path, mode, chunks=lambda c: c[:-1])
        case "bad trailer checksum":
            return _upload(node, path, mode, trailer_data=b"other bytes")
        case "payload hash of other bytes":
            up = _upload(node, path, mode)
            other = signed(node, "PUT", path, body=b"other bytes")
            return Upload(other, up.body)
        case "wrong Content-MD5":
            md5 = base64.b64encode(hashlib.md5(b"x", usedforsecurity=False).digest()).decode()
            headers = signed(
                node, "PUT", path, headers=[("content-md5", md5)], payload_hash=mode.value
            )
            return Upload(headers, PAYLOAD)
    raise AssertionError(variant)


@pytest.mark.parametrize(("mode", "variant", "status", "code"), _cases())
def test_payload_mode_table(
    node: Node,
    s3: Any,
    bucket: str,
    mode: PayloadMode,
    variant: str,
    status: int,
    code: str | None,
) -> None:
    s3.put_object(Bucket=bucket, Key="obj", Body=PREVIOUS)
    path = f"/{bucket}/obj"
    answer = _put(node, path, _variant(node, path, mode, variant))
    assert answer.status_code == status, answer.text
    stored = s3.get_object(Bucket=bucket, Key="obj")["Body"].read()
    if status == 200:
        assert stored == PAYLOAD
        return
    if code is not None:
        assert error_code(answer) == code
    assert stored == PREVIOUS
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["obj"]


# ---------------------------------------------------------------- one signed byte changed


@dataclass(frozen=True, slots=True)
class _Signed:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


def _flip(text: str, at: int) -> str:
    """``text`` with the character at ``at`` replaced by another URL-safe character."""
    at %= len(text)
    old = text[at]
    new = "b" if old != "b" else "c"
    return text[:at] + new + text[at + 1 :]


_PART: Final = st.sampled_from(
    ["method", "path", "query", "header", "date", "payload hash", "payload"]
)


@pytest.fixture(scope="module")
def mutation_bucket(node: Node) -> str:
    """One bucket for every example: nothing may ever be stored in it."""
    node.client().create_bucket(Bucket="abuse-mutations")
    return "abuse-mutations"


@settings(
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(part=_PART, at=st.integers(min_value=0, max_value=10_000), body=st.binary(max_size=64))
def test_any_signed_byte_changed_is_403_and_stores_nothing(
    node: Node, s3: Any, mutation_bucket: str, part: str, at: int, body: bytes
) -> None:
    bucket = mutation_bucket
    path, query = f"/{bucket}/key-{at}", "x-id=PutObject"
    extra = [("x-amz-meta-color", "blue"), ("content-type", "text/plain")]
    headers = signed(node, "PUT", path, query=query, headers=extra, body=body)
    req = _Signed("PUT", path, query, headers, body)
    if part == "method":
        req = _Signed("GET" if at % 2 else "DELETE", path, query, headers, body)
    elif part == "path":
        req = _Signed("PUT", f"/{bucket}/" + _flip(f"key-{at}", at), query, headers, body)
    elif part == "query":
        req = _Signed("PUT", path, _flip(query, at), headers, body)
    elif part == "header":
        changed = [(n, _flip(v, at) if n == "x-amz-meta-color" else v) for n, v in headers]
        req = _Signed("PUT", path, query, changed, body)
    elif part == "date":
        changed = [(n, _bump_date(v) if n == "x-amz-date" else v) for n, v in headers]
        req = _Signed("PUT", path, query, changed, body)
    elif part == "payload hash":
        changed = [(n, _flip(v, at) if n == "x-amz-content-sha256" else v) for n, v in headers]
        req = _Signed("PUT", path, query, changed, body)
    else:
        req = _Signed("PUT", path, query, headers, body + b"!")
    url = f"{node.s3.endpoint}{req.path}?{req.query}"
    answer = httpx.request(req.method, url, headers=req.headers, content=req.body, timeout=30)
    if part == "payload":
        # The signature covers the announced hash, which no longer matches the body.
        assert answer.status_code == 400, answer.text
        assert error_code(answer) == "XAmzContentSHA256Mismatch"
    else:
        assert answer.status_code == 403, answer.text
        assert error_code(answer) == "SignatureDoesNotMatch"
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def _bump_date(amz_date: str) -> str:
    """One second later, same day (the scope's date must still match)."""
    seconds = int(amz_date[13:15])
    return f"{amz_date[:13]}{(seconds + 1) % 60:02d}Z"


# ---------------------------------------------------------------- presigned URLs


def _presigned(
    node: Node, method: str, path: str, *, now_ms: int | None = None, expires_s: int = 300
) -> str:
    return presign(
        method, path, "", [("host", node.netloc)],
        key_id=node.s3.key_id, secret=node.s3.secret, region=node.s3.region, service="s3",
        now_ms=now_ms if now_ms is not None else int(time.time() * 1000), expires_s=expires_s,
    )  # fmt: skip


def test_a_presigned_put_works(node: Node, s3: Any, bucket: str) -> None:
    """The baseline for the refusals below."""
    path = f"/{bucket}/presigned"
    answer = httpx.put(f"{node.s3.endpoint}{path}?{_presigned(node, 'PUT', path)}", content=b"ok")
    assert answer.status_code == 200, answer.text
    assert s3.get_object(Bucket=bucket, Key="presigned")["Body"].read() == b"ok"


def _mutated(query: str, name: str, value: str | None) -> str:
    """``query`` with parameter ``name`` set to ``value`` (or removed when None)."""
    out = []
    for pair in query.split("&"):
        key = pair.partition("=")[0]
        if key == name:
            if value is not None:
                out.append(f"{key}={quote(value, safe='')}")
        else:
            out.append(pair)
    return "&".join(out)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("expired", 403, "AccessDenied"),
        ("dated in the future", 403, "AccessDenied"),
        ("X-Amz-Expires over a week", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Expires zero", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Expires negative", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Expires not a number", 400, "AuthorizationQueryParametersError"),
        ("X-Amz-Expires huge", 400, "AuthorizationQueryParametersError"),
        ("signature altered", 403, "SignatureDoesNotMatch"),
        ("signature not hex", 400, "AuthorizationHeaderMalformed"),
        ("expiry extended", 403, "SignatureDoesNotMatch"),
        ("GET URL used to PUT", 403, "SignatureDoesNotMatch"),
        ("other key", 403, "SignatureDoesNotMatch"),
        ("X-Amz-Algorithm other", 400, "InvalidRequest"),
        ("X-Amz-Credential missing", 400, "AuthorizationQueryParametersError"),
    ],
)
def test_bad_presigned_urls_store_nothing(
    node: Node, s3: Any, bucket: str, case: str, status: int, code: str
) -> None:
    s3.put_object(Bucket=bucket, Key="obj", Body=PREVIOUS)
    path = f"/{bucket}/obj"
    now = int(time.time() * 1000)
    query = _presigned(node, "PUT", path)
    match case:
        case "expired":
            query = _presigned(node, "PUT", path, now_ms=now - 120_000, expires_s=60)
        case "dated in the future":
            query = _presigned(node, "PUT", path, now_ms=now + 3600_000)
        case "X-Amz-Expires over a week":
            query = _mutated(query, "X-Amz-Expires", "604801")
        case "X-Amz-Expires zero":
            query = _mutated(query, "X-Amz-Expires", "0")
        case "X-Amz-Expires negative":
            query = _mutated(query, "X-Amz-Expires", "-60")
        case "X-Amz-Expires not a number":
            query = _mutated(query, "X-Amz-Expires", "soon")
        case "X-Amz-Expires huge":
            query = _mutated(query, "X-Amz-Expires", "9" * 40)
        case "signature altered":
            signature = query.rpartition("X-Amz-Signature=")[2]
            query = _mutated(query, "X-Amz-Signature", _flip(signature, 0))
        case "signature not hex":
            query = _mutated(query, "X-Amz-Signature", "z" * 64)
        case "expiry extended":
            query = _mutated(query, "X-Amz-Expires", "600")
        case "GET URL used to PUT":
            query = _presigned(node, "GET", path)
        case "other key":
            query = presign(
                "PUT", path, "", [("host", node.netloc)],
                key_id=node.s3.key_id, secret="f" * 64, region=node.s3.region, service="s3",
                now_ms=now, expires_s=300,
            )  # fmt: skip
        case "X-Amz-Algorithm other":
            query = _mutated(query, "X-Amz-Algorithm", "AWS4-HMAC-SHA512")
        case "X-Amz-Credential missing":
            query = _mutated(query, "X-Amz-Credential", None)
    answer = httpx.put(f"{node.s3.endpoint}{path}?{query}", content=b"forged", timeout=30)
    assert answer.status_code == status, answer.text
    assert error_code(answer) == code
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == PREVIOUS


def test_an_expired_presigned_get_reads_nothing(node: Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"private bytes")
    path = f"/{bucket}/secret"
    query = _presigned(node, "GET", path, now_ms=int(time.time() * 1000) - 120_000, expires_s=60)
    answer = httpx.get(f"{node.s3.endpoint}{path}?{query}", timeout=30)
    assert answer.status_code == 403
    assert b"private bytes" not in answer.content
    assert error_code(answer) == "AccessDenied"
    ok = httpx.get(f"{node.s3.endpoint}{path}?{_presigned(node, 'GET', path)}", timeout=30)
    assert ok.content == b"private bytes"


def test_unsigned_requests_to_a_bucket_are_denied(node: Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="obj", Body=PREVIOUS)
    for method, body in (("GET", b""), ("PUT", b"anonymous"), ("DELETE", b"")):
        answer = send(node, method, f"/{bucket}/obj", body=body, sign=False)
        assert answer.status_code == 403, answer.text
        assert error_code(answer) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == PREVIOUS

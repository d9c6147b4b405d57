"""PostObject: the pure cores (the form reader, the policy), then browser-shaped uploads
against a running node: raw multipart/form-data bodies sent with httpx, their policy signed
with ``garage_api.signature`` (and one made by boto3's ``generate_presigned_post``).

Every refused upload checks the S3 code, the status, and that nothing was stored: the key
keeps its old content, or stays absent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import time
import uuid
import xml.etree.ElementTree as ET
import zlib
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage.cli import main
from garage_api.s3 import S3Error
from garage_api.s3._h_post import (
    FileData,
    FileEnd,
    FileStart,
    FormField,
    FormReader,
    PolicyCondition,
    PostPolicy,
    form_boundary,
)
from garage_api.signature import AWS4_HMAC_SHA256, Scope, format_amz_date, signing_key

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tests.api.conftest import S3Node

MiB = 1024 * 1024
BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
NOW_MS = 1_700_000_000_000

Part = tuple[str, str | bytes, str | None]
"""A form part: name, value, and the file name for the file part."""


# ---------------------------------------------------------------------- building forms


def _part_head(name: str, filename: str | None, boundary: str = BOUNDARY) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if filename is not None:
        head += "Content-Type: application/octet-stream\r\n"
    return (head + "\r\n").encode()


def _multipart(parts: Sequence[Part], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body as a browser writes it."""
    out = bytearray()
    for name, value, filename in parts:
        out += _part_head(name, filename, boundary)
        out += value if isinstance(value, bytes) else value.encode()
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _fields(form: dict[str, str], file: bytes, filename: str = "photo.jpg") -> list[Part]:
    return [*((k, v, None) for k, v in form.items()), ("file", file, filename)]


def _policy_form(
    node: S3Node,
    conditions: Sequence[object],
    fields: dict[str, str],
    *,
    expires_in_s: float = 600,
    now_ms: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    """The signed hidden fields of a browser form: ``fields``, then the signature's.

    The policy has ``conditions`` plus an exact match on each signature field (as
    boto3's ``generate_presigned_post`` writes them).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    amz_date = format_amz_date(now)
    scope = Scope(amz_date[:8], node.region, "s3")
    signature_fields = {
        "x-amz-algorithm": AWS4_HMAC_SHA256,
        "x-amz-credential": f"{node.key_id}/{scope}",
        "x-amz-date": amz_date,
    }
    expiration = datetime.fromtimestamp(now / 1000 + expires_in_s, UTC)
    document = {
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [*conditions, *({k: v} for k, v in signature_fields.items())],
    }
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    key = signing_key(secret or node.secret, scope.date, node.region, "s3")
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    return {**fields, **signature_fields, "policy": policy, "x-amz-signature": signature}


def _post(
    node: S3Node, bucket: str, body: bytes, *, content_type: str | None = None
) -> httpx.Response:
    headers = {
        "content-type": content_type or f"multipart/form-data; boundary={BOUNDARY}",
        "origin": "https://app.example.com",
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
    }
    return httpx.post(f"{node.endpoint}/{bucket}", content=body, headers=headers)


def _error(resp: httpx.Response) -> tuple[str, int]:
    root = ET.fromstring(resp.content)
    return root.findtext("Code") or "", resp.status_code


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
    assert code == "NoSuchKey"
    return None


# ---------------------------------------------------------------------- the form reader


def _read_form(body: bytes, cuts: Sequence[int]) -> list[object]:
    reader = FormReader(BOUNDARY.encode())
    events: list[object] = []
    start = 0
    for cut in sorted(cuts):
        events += reader.feed(body[start:cut])
        start = cut
    events += reader.feed(body[start:])
    events += reader.finish()
    return events


def _merged(events: list[object]) -> list[object]:
    """The events with consecutive file pieces joined (how they are cut is the transport's)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, FileData) and out and isinstance(out[-1], FileData):
            out[-1] = FileData(out[-1].data + event.data)
        elif not (isinstance(event, FileData) and not event.data):
            out.append(event)
    return out


_NAMES = st.text("abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=12).filter(
    lambda n: n != "file"
)


@given(
    form=st.dictionaries(_NAMES, st.text(max_size=40), max_size=5),
    file=st.binary(max_size=3000),
    data=st.data(),
)
def test_form_reader_events_do_not_depend_on_how_the_body_is_cut(
    form: dict[str, str], file: bytes, data: st.DataObject
) -> None:
    body = _multipart(_fields(form, file, "a é.txt"))
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    expected: list[object] = [FormField(k, v) for k, v in form.items()]
    expected += [FileStart("a é.txt"), FileData(file), FileEnd()]
    if not file:
        expected.remove(FileData(file))
    assert _merged(_read_form(body, cuts)) == expected


def test_form_reader_skips_nameless_parts_and_everything_after_the_file() -> None:
    body = _multipart([("Key", "a", None), ("file", b"xyz", None), ("late", "ignored", None)])
    nameless = b"--%s\r\nContent-Disposition: form-data\r\n\r\nlost\r\n" % BOUNDARY.encode()
    body = nameless + body
    assert _merged(_read_form(body, [])) == [
        FormField("key", "a"),  # names are lower-cased
        FileStart(None),
        FileData(b"xyz"),
        FileEnd(),
    ]


def test_form_reader_refusals() -> None:
    truncated = _multipart(_fields({"key": "k"}, b"data"))[:-10]
    reader = FormReader(BOUNDARY.encode())
    reader.feed(truncated)
    with pytest.raises(S3Error) as exc:
        reader.finish()
    assert exc.value.code == "IncompleteBody"

    with pytest.raises(S3Error) as exc:
        FormReader(BOUNDARY.encode()).feed(b"not a form at all\r\n\r\n")
    assert (exc.value.code, exc.value.status) == ("MalformedPOSTRequest", 400)

    too_long = _multipart(_fields({"x-amz-meta-big": "v" * (16 * 1024 + 1)}, b""))
    with pytest.raises(S3Error) as exc:
        _read_form(too_long, [])
    assert (exc.value.code, exc.value.status) == ("MaxPostPreDataLengthExceeded", 400)
    many = _multipart(_fields({f"x-ignore-{i}": "v" * 10_000 for i in range(7)}, b""))
    with pytest.raises(S3Error) as exc:
        _read_form(many, [])
    assert exc.value.code == "MaxPostPreDataLengthExceeded"
    names = _multipart(_fields({f"x-ignore-{i:05}": "" for i in range(6000)}, b""))
    with pytest.raises(S3Error) as exc:
        _read_form(names, [])
    assert exc.value.code == "MaxPostPreDataLengthExceeded"


def test_form_boundary() -> None:
    assert form_boundary(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY.encode()
    assert form_boundary('Multipart/Form-Data; boundary="a b"') == b"a b"
    for bad, code, status in [
        (None, "PreconditionFailed", 412),
        ("application/x-www-form-urlencoded", "PreconditionFailed", 412),
        ("multipart/form-data", "MalformedPOSTRequest", 400),
        ("multipart/form-data; boundary=" + "x" * 71, "MalformedPOSTRequest", 400),
    ]:
        with pytest.raises(S3Error) as exc:
            form_boundary(bad)
        assert (exc.value.code, exc.value.status) == (code, status)


# ---------------------------------------------------------------------- the policy


def _encode(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_policy_decoding() -> None:
    policy = PostPolicy.decode(
        _encode(
            {
                "expiration": "2023-11-14T22:13:20.000Z",
                "conditions": [
                    {"acl": "public-read"},
                    {"bucket": "photos"},
                    ["starts-with", "$Key", "user/eric/"],
                    ["eq", "$success_action_status", "201"],
                    ["content-length-range", 10, 1000],
                    ["content-length-range", "20", "2000"],
                ],
            }
        )
    )
    assert policy.expiration_ms == NOW_MS
    assert policy.conditions == (
        PolicyCondition("acl", "eq", "public-read"),
        PolicyCondition("bucket", "eq", "photos"),
        PolicyCondition("key", "starts-with", "user/eric/"),
        PolicyCondition("success_action_status", "eq", "201"),
    )
    assert (policy.min_size, policy.max_size) == (20, 1000)  # ranges intersect


@pytest.mark.parametrize(
    "policy",
    [
        "not base64!",
        base64.b64encode(b"{not json").decode(),
        _encode([]),
        _encode({"conditions": []}),
        _encode({"expiration": "2030-01-01T00:00:00Z"}),
        _encode({"expiration": "tomorrow", "conditions": []}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": {}}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": "b", "c": "d"}]}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": 1}]}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [["ends-with", "$k", "x"]]}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "key", "x"]]}),
        _encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "$key"]]}),
        _encode(
            {"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 9, 1]]}
        ),
        _encode(
            {"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", -1, 1]]}
        ),
        _encode(
            {"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", "a", 1]]}
        ),
    ],
)
def test_malformed_policies(policy: str) -> None:
    with pytest.raises(S3Error) as exc:
        PostPolicy.decode(policy)
    assert (exc.value.code, exc.value.status) == ("InvalidPolicyDocument", 400)


def _check(policy: PostPolicy, fields: dict[str, str], *, key: str = "k") -> S3Error | None:
    try:
        policy.check(fields, bucket="photos", key=key, now_ms=NOW_MS)
    except S3Error as exc:
        return exc
    return None


def test_policy_conditions() -> None:
    policy = PostPolicy(
        NOW_MS,
        (
            PolicyCondition("bucket", "eq", "photos"),
            PolicyCondition("key", "starts-with", "user/"),
            PolicyCondition("content-type", "starts-with", "image/"),
            PolicyCondition("x-amz-meta-tag", "eq", "cat"),
        ),
    )
    good = {"key": "user/${filename}", "content-type": "image/png", "x-amz-meta-tag": "cat"}
    assert _check(policy, good, key="user/a.png") is None
    assert _check(policy, {**good, "x-ignore-me": "1", "policy": "p"}, key="user/a") is None
    assert _check(policy, {**good, "content-type": "image/png, image/gif"}, key="user/a") is None

    refusals = [
        ({**good, "content-type": "image/png,text/html"}, "user/a", '"$content-type"'),
        ({**good, "x-amz-meta-tag": "dog"}, "user/a", '"$x-amz-meta-tag"'),
        ({**good, "x-amz-meta-other": "1"}, "user/a", "Extra input fields: x-amz-meta-other"),
        (good, "other/a", '"$key"'),
        ({k: v for k, v in good.items() if k != "x-amz-meta-tag"}, "user/a", "x-amz-meta-tag"),
    ]
    for fields, key, says in refusals:
        error = _check(policy, fields, key=key)
        assert error is not None
        assert (error.code, error.status) == ("AccessDenied", 403)
        assert says in error.message

    other_bucket = PostPolicy(NOW_MS, (PolicyCondition("bucket", "eq", "videos"),))
    error = _check(other_bucket, {})
    assert error is not None
    assert '"$bucket"' in error.message

    expired = PostPolicy(NOW_MS - 1, ())
    error = _check(expired, {})
    assert error is not None
    assert error.code == "AccessDenied"
    assert "expired" in error.message


@given(
    prefix=st.text(max_size=5),
    value=st.text(max_size=8),
    operation=st.sampled_from(["eq", "starts-with"]),
)
def test_condition_semantics(prefix: str, value: str, operation: str) -> None:
    cond = PolicyCondition("x-amz-meta-a", operation, prefix)
    expected = value == prefix if operation == "eq" else value.startswith(prefix)
    assert cond.holds(value) is expected


def test_content_length_range() -> None:
    policy = PostPolicy(NOW_MS, (), min_size=10, max_size=20)
    policy.check_size(5, final=False)  # still coming
    policy.check_size(20, final=True)
    for size, final, code in [(21, False, "EntityTooLarge"), (9, True, "EntityTooSmall")]:
        with pytest.raises(S3Error) as exc:
            policy.check_size(size, final=final)
        assert (exc.value.code, exc.value.status) == (code, 400)


# ---------------------------------------------------------------------- against a node


def test_boto3_presigned_post(s3node: S3Node, s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-owner": "eric"},
        Conditions=[
            ["starts-with", "$Content-Type", "text/"],
            {"x-amz-meta-owner": "eric"},
            ["content-length-range", 1, 1000],
        ],
        ExpiresIn=600,
    )
    assert post["url"] == f"{s3node.endpoint}/{bucket}"
    resp = httpx.post(
        post["url"], data=post["fields"], files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert resp.status_code == 204, resp.text
    assert resp.headers["etag"] == f'"{_md5(b"hello")}"'
    got = s3.get_object(Bucket=bucket, Key="uploads/notes.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "eric"}


def test_status_variants_and_redirect(s3node: S3Node, s3: Any, bucket: str) -> None:
    conditions: list[object] = [
        ["starts-with", "$key", "k"],
        ["starts-with", "$success_action_status", ""],
    ]
    for status, expected in [("200", 200), ("201", 201), ("204", 204), ("302", 204)]:
        form = _policy_form(
            s3node, conditions, {"key": f"k{status}", "success_action_status": status}
        )
        resp = _post(s3node, bucket, _multipart(_fields(form, status.encode())))
        assert resp.status_code == expected, resp.text
        etag = f'"{_md5(status.encode())}"'
        assert resp.headers["etag"] == etag
        assert resp.headers["location"].endswith(f"/{bucket}/k{status}")
        if expected == 201:
            root = ET.fromstring(resp.content)
            ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
            found = {
                tag: root.findtext(f"s3:{tag}", namespaces=ns) for tag in ("Bucket", "Key", "ETag")
            }
            assert found == {"Bucket": bucket, "Key": f"k{status}", "ETag": etag}
            assert root.findtext("s3:Location", namespaces=ns) == resp.headers["location"]
        else:
            assert resp.content == b""
        assert _read(s3, bucket, f"k{status}") == status.encode()

    target = "https://app.example.com/done?from=form"
    form = _policy_form(
        s3node,
        [{"key": "a b/c.txt"}, {"success_action_redirect": target}],
        {"key": "a b/c.txt", "success_action_redirect": target},
    )
    resp = _post(s3node, bucket, _multipart(_fields(form, b"redirected")))
    assert resp.status_code == 303, resp.text
    location = urlsplit(resp.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "app.example.com",
        "/done",
    )
    assert parse_qs(location.query) == {
        "from": ["form"],
        "bucket": [bucket],
        "key": ["a b/c.txt"],
        "etag": [f'"{_md5(b"redirected")}"'],
    }
    assert _read(s3, bucket, "a b/c.txt") == b"redirected"

    # Not an http(s) URL: ignored, as Garage does, and the default status answers.
    form = _policy_form(
        s3node,
        [{"key": "js"}, {"success_action_redirect": "javascript:alert(1)"}],
        {"key": "js", "success_action_redirect": "javascript:alert(1)"},
    )
    assert _post(s3node, bucket, _multipart(_fields(form, b"x"))).status_code == 204


def test_filename_substitution_headers_and_replacement(
    s3node: S3Node, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="user/eric/cat.png", Body=b"old")
    fields = {
        "key": "user/eric/${filename}",
        "acl": "private",
        "Content-Type": "image/png",
        "Cache-Control": "max-age=60",
        "x-amz-meta-album": "Été",
        "x-ignore-csrf": "token",  # needs no condition
    }
    conditions = [
        ["starts-with", "$key", "user/eric/"],
        {"acl": "private"},
        ["starts-with", "$Content-Type", "image/"],
        ["eq", "$cache-control", "max-age=60"],
        ["starts-with", "$x-amz-meta-album", ""],
        {"bucket": bucket},
    ]
    form = _policy_form(s3node, conditions, fields)
    resp = _post(s3node, bucket, _multipart(_fields(form, b"\x89PNG new", "cat.png")))
    assert resp.status_code == 204, resp.text
    got = s3.get_object(Bucket=bucket, Key="user/eric/cat.png")
    assert got["Body"].read() == b"\x89PNG new"
    assert got["ContentType"] == "image/png"
    assert got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"album": "Été"}
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["user/eric/cat.png"]


def test_ten_mib_file_is_streamed(s3node: S3Node, s3: Any, bucket: str) -> None:
    data = os.urandom(10 * MiB + 123)
    form = _policy_form(
        s3node, [{"key": "big.bin"}, ["content-length-range", 0, 11 * MiB]], {"key": "big.bin"}
    )
    head = b"".join(_part_head(k, None) + v.encode() + b"\r\n" for k, v in form.items())
    head += _part_head("file", "big.bin")

    def body() -> Iterator[bytes]:
        yield head
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    resp = httpx.post(
        f"{s3node.endpoint}/{bucket}",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=60,
    )
    assert resp.status_code == 204, resp.text
    assert resp.headers["etag"] == f'"{_md5(data)}"'
    assert _read(s3, bucket, "big.bin") == data


def test_a_file_over_the_range_is_stopped_midway(s3node: S3Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="big.bin", Body=b"old")
    form = _policy_form(
        s3node, [{"key": "big.bin"}, ["content-length-range", 0, 2 * MiB]], {"key": "big.bin"}
    )
    head = b"".join(_part_head(k, None) + v.encode() + b"\r\n" for k, v in form.items())
    head += _part_head("file", "big.bin")
    sent = []

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(48):  # 3 MiB, well past the 1 MiB blocks the node stores
            sent.append(64 * 1024)
            yield os.urandom(64 * 1024)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    resp = httpx.post(
        f"{s3node.endpoint}/{bucket}",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=60,
    )
    assert _error(resp) == ("EntityTooLarge", 400)
    assert _read(s3, bucket, "big.bin") == b"old"


def _refused(
    s3node: S3Node,
    s3: Any,
    bucket: str,
    body: bytes,
    code: str,
    status: int,
    *,
    key: str = "k",
    old: bytes | None = None,
    content_type: str | None = None,
) -> str:
    resp = _post(s3node, bucket, body, content_type=content_type)
    assert _error(resp) == (code, status), resp.text
    assert _read(s3, bucket, key) == old
    return str(ET.fromstring(resp.content).findtext("Message"))


def test_each_condition_failing_stores_nothing(s3node: S3Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    base = [{"key": "k"}, ["starts-with", "$Content-Type", "text/"]]
    fields = {"key": "k", "Content-Type": "text/plain"}

    def refused(form: dict[str, str], code: str, status: int, file: bytes = b"new") -> str:
        body = _multipart(_fields(form, file))
        return _refused(s3node, s3, bucket, body, code, status, old=b"old")

    assert "Policy expired" in refused(
        _policy_form(s3node, base, fields, expires_in_s=-1), "AccessDenied", 403
    )
    message = refused(
        _policy_form(s3node, base, {**fields, "Content-Type": "image/png"}), "AccessDenied", 403
    )
    assert "Policy Condition failed" in message
    assert "$content-type" in message
    message = refused(_policy_form(s3node, [{"key": "other"}], {"key": "k"}), "AccessDenied", 403)
    assert '"$key"' in message
    message = refused(
        _policy_form(s3node, [*base, {"bucket": "not-this-one"}], fields), "AccessDenied", 403
    )
    assert '"$bucket"' in message
    message = refused(
        _policy_form(s3node, base, {**fields, "x-amz-meta-sneaky": "1"}), "AccessDenied", 403
    )
    assert "Extra input fields: x-amz-meta-sneaky" in message
    message = refused(
        _policy_form(s3node, [*base, {"x-amz-meta-required": "1"}], fields), "AccessDenied", 403
    )
    assert "x-amz-meta-required" in message
    ranged = [*base, ["content-length-range", 5, 10]]
    refused(_policy_form(s3node, ranged, fields), "EntityTooSmall", 400, file=b"tiny")
    refused(_policy_form(s3node, ranged, fields), "EntityTooLarge", 400, file=b"x" * 11)
    big_ranged = [*base, ["content-length-range", 0, 5000]]
    refused(_policy_form(s3node, big_ranged, fields), "EntityTooLarge", 400, file=b"x" * 5001)

    form = _policy_form(s3node, base, fields)
    refused({**form, "x-amz-signature": "0" * 64}, "SignatureDoesNotMatch", 403)
    refused(_policy_form(s3node, base, fields, secret="f" * 64), "SignatureDoesNotMatch", 403)
    tampered = {**form, "policy": _encode({"expiration": "2099-01-01T00:00:00Z", "conditions": []})}
    refused(tampered, "SignatureDoesNotMatch", 403)
    refused({k: v for k, v in form.items() if k != "x-amz-credential"}, "AccessDenied", 403)
    refused(
        {
            **form,
            "x-amz-credential": form["x-amz-credential"].replace(s3node.key_id, "GK" + "0" * 24),
        },
        "InvalidAccessKeyId",
        403,
    )
    # a form that the node reads before the signature: no key, no file
    assert "'key'" in refused({k: v for k, v in form.items() if k != "key"}, "InvalidArgument", 400)
    body = _multipart([(k, v, None) for k, v in form.items()])
    assert "file" in _refused(s3node, s3, bucket, body, "InvalidArgument", 400, old=b"old")
    body = _multipart(
        [*((k, v, None) for k, v in form.items()), ("key", "k", None), ("file", b"f", "f")]
    )
    _refused(s3node, s3, bucket, body, "InvalidArgument", 400, old=b"old")  # key repeated

    # a policy that is not one: signed as it is, refused for what it is
    now = int(time.time() * 1000)
    malformed = _policy_form(s3node, base, fields, now_ms=now)
    amz_date = format_amz_date(now)
    bad_policy = base64.b64encode(b'{"expiration": 12}').decode()
    key = signing_key(s3node.secret, amz_date[:8], s3node.region, "s3")
    malformed["policy"] = bad_policy
    malformed["x-amz-signature"] = hmac.new(key, bad_policy.encode(), hashlib.sha256).hexdigest()
    refused(malformed, "InvalidPolicyDocument", 400)


def test_bodies_that_are_not_forms(s3node: S3Node, s3: Any, bucket: str) -> None:
    form = _policy_form(s3node, [{"key": "k"}], {"key": "k"})
    body = _multipart(_fields(form, b"data"))
    _refused(
        s3node, s3, bucket, body, "PreconditionFailed", 412, content_type="application/octet-stream"
    )
    _refused(s3node, s3, bucket, body[:-40], "IncompleteBody", 400)
    _refused(
        s3node,
        s3,
        bucket,
        body.replace(BOUNDARY.encode(), b"other-boundary"),
        "MalformedPOSTRequest",
        400,
    )


def _garage(node: S3Node, *args: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["-c", str(node.data_dir / "garage.toml"), "--json", *args])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().strip() else None


def test_the_signing_key_needs_write_permission(s3node: S3Node, s3: Any) -> None:
    name = f"post-{uuid.uuid4().hex[:8]}"
    _garage(s3node, "bucket", "create", name)
    _garage(s3node, "bucket", "allow", "--read", "--key", s3node.key_id, name)
    form = _policy_form(s3node, [{"key": "k"}], {"key": "k"})
    body = _multipart(_fields(form, b"data"))
    _refused(s3node, s3, name, body, "AccessDenied", 403)
    assert _error(_post(s3node, f"no-such-{uuid.uuid4().hex[:8]}", body)) == ("NoSuchBucket", 404)

    _garage(s3node, "bucket", "allow", "--write", "--key", s3node.key_id, name)
    assert _post(s3node, name, body).status_code == 204
    assert _read(s3, name, "k") == b"data"


def test_checksum_fields_are_verified(s3node: S3Node, s3: Any, bucket: str) -> None:
    data = b"checked data"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    for fields, code in [
        ({"x-amz-checksum-crc32": base64.b64encode(b"\0\0\0\0").decode()}, "BadDigest"),
        ({"Content-MD5": base64.b64encode(bytes(16)).decode()}, "BadDigest"),
        ({"Content-MD5": "not base64"}, "InvalidDigest"),
    ]:
        form = _policy_form(
            s3node,
            [{"key": "k"}, *(["starts-with", f"${n}", ""] for n in fields)],
            {"key": "k", **fields},
        )
        body = _multipart(_fields(form, data))
        _refused(s3node, s3, bucket, body, code, 400)

    fields = {"x-amz-checksum-crc32": crc, "Content-MD5": md5}
    form = _policy_form(
        s3node,
        [{"key": "k"}, *(["eq", f"${n}", v] for n, v in fields.items())],
        {"key": "k", **fields},
    )
    resp = _post(s3node, bucket, _multipart(_fields(form, data)))
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-amz-checksum-crc32"] == crc
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc
    assert _read(s3, bucket, "k") == data

"""XML bombs and garbage parameters: 400 (or 416), never 500, memory bounded.

Fault-testing §3.9 (Ceph CVE-2020-12059; Garage's empty continuation-token panic in
v0.9.1): every XML body the S3 API parses (DeleteObjects, CompleteMultipartUpload,
lifecycle, CORS, website) gets a billion-laughs document, an external entity naming
``file:///etc/passwd``, a parameter entity, a bare DOCTYPE, 10,000 levels of nesting, and
bodies over the size limit: ``400 MalformedXML`` (``MaxMessageLengthExceeded`` over the
limit, as S3), nothing applied, and the node's resident memory stays within a generous
bound. DeleteObjects with 1001 keys is ``MalformedXML``, as on S3. Then Range,
``partNumber``, ``max-keys`` and continuation-token garbage: 416 or 400 (or the whole
object, for a Range header that is not a valid range set, as RFC 9110 says), never 500.
The XML parser itself is tested in tests/api/test_s3_xml.py.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, Final

import pytest
from tests.abuse.harness import CANARY_BUCKET, Node, error_code, send

if TYPE_CHECKING:
    from collections.abc import Iterator

from garage_api.s3 import MAX_XML_BODY_BYTES

#: Generous bound on the node's memory growth over this module (an expanded billion-laughs
#: document alone would be gigabytes).
_RSS_BOUND_KIB: Final = 200 * 1024

LAUGHS: Final = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
)
XXE: Final = '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
PARAM: Final = (
    '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>\n'
)


def _bombs(root: str, inner: str) -> dict[str, bytes]:
    """Hostile variants of a ``<root>inner</root>`` document; ``@`` in ``inner`` marks
    where an entity reference goes."""
    deep = "<a>" * 10_000 + "x" + "</a>" * 10_000
    return {
        "billion laughs": (LAUGHS + f"<{root}>{inner.replace('@', '&lol9;')}</{root}>").encode(),
        "external entity": (XXE + f"<{root}>{inner.replace('@', '&xxe;')}</{root}>").encode(),
        "parameter entity": (PARAM + f"<{root}>{inner.replace('@', 'x')}</{root}>").encode(),
        "bare doctype": (f"<!DOCTYPE {root}><{root}>{inner.replace('@', 'x')}</{root}>").encode(),
        "10,000-deep nesting": f"<{root}>{deep}</{root}>".encode(),
        "unclosed 10,000 deep": f"<{root}>{'<a>' * 10_000}".encode(),
        "1.5 MiB of garbage": b"<" + b"\xff\xfe<&" * (3 * 2**17),
        "not xml": b"\x00\x01\x02 not xml",
    }


#: (name, method, query, root element, inner document with an "@" for the entity)
TARGETS: Final = [
    ("DeleteObjects", "POST", "delete=", "Delete", "<Object><Key>@</Key></Object>"),
    (
        "PutBucketLifecycleConfiguration", "PUT", "lifecycle=", "LifecycleConfiguration",
        "<Rule><ID>@</ID><Status>Enabled</Status><Filter><Prefix>@</Prefix></Filter>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    ),
    (
        "PutBucketCors", "PUT", "cors=", "CORSConfiguration",
        "<CORSRule><AllowedOrigin>@</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        "</CORSRule>",
    ),
    (
        "PutBucketWebsite", "PUT", "website=", "WebsiteConfiguration",
        "<IndexDocument><Suffix>@</Suffix></IndexDocument>",
    ),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _memory_stays_bounded(node: Node) -> Iterator[None]:
    before = node.rss_kib()
    yield
    assert node.rss_kib() - before < _RSS_BOUND_KIB


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def _post_xml(node: Node, method: str, path: str, query: str, body: bytes) -> Any:
    return send(node, method, path, query=query, body=body, headers=[("content-md5", _md5(body))])


def _bucket_config(s3: Any, bucket: str) -> dict[str, Any]:
    """What the XML endpoints could have changed."""
    out: dict[str, Any] = {}
    for name, call in (
        ("lifecycle", s3.get_bucket_lifecycle_configuration),
        ("cors", s3.get_bucket_cors),
        ("website", s3.get_bucket_website),
    ):
        try:
            answer = call(Bucket=bucket)
        except s3.exceptions.ClientError as exc:
            out[name] = exc.response["Error"]["Code"]
        else:
            answer.pop("ResponseMetadata")
            out[name] = answer
    out["keys"] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return out


@pytest.mark.parametrize("target", TARGETS, ids=[t[0] for t in TARGETS])
def test_xml_bombs_are_malformed_xml(
    node: Node, s3: Any, bucket: str, target: tuple[str, str, str, str, str]
) -> None:
    _name, method, query, root, inner = target
    s3.put_object(Bucket=bucket, Key="x", Body=b"kept")
    s3.put_object(Bucket=bucket, Key="root:x:0:0:root:/root:/bin/bash", Body=b"kept")
    before = _bucket_config(s3, bucket)
    for bomb, body in _bombs(root, inner).items():
        answer = _post_xml(node, method, f"/{bucket}", query, body)
        assert answer.status_code == 400, (bomb, answer.text[:500])
        if bomb == "10,000-deep nesting":
            # Well-formed XML, but not the document the operation takes.
            assert error_code(answer) in {"MalformedXML", "InvalidArgument"}, bomb
        else:
            assert error_code(answer) == "MalformedXML", bomb
        assert b"root:x:0:0" not in answer.content, bomb
    assert _bucket_config(s3, bucket) == before


def test_complete_multipart_upload_bombs(node: Node, s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=1, Body=b"p")[
        "ETag"
    ]
    inner = f"<Part><PartNumber>1</PartNumber><ETag>@{etag}</ETag></Part>"
    for bomb, body in _bombs("CompleteMultipartUpload", inner).items():
        answer = _post_xml(node, "POST", f"/{bucket}/mpu", f"uploadId={upload}", body)
        assert answer.status_code == 400, (bomb, answer.text[:500])
        assert error_code(answer) == "MalformedXML", bomb
    # The upload is intact: it still completes with its part.
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mpu", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read() == b"p"


def test_delete_objects_with_1001_keys_deletes_nothing(node: Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k0", Body=b"kept")
    objects = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(1001))
    answer = _post_xml(
        node, "POST", f"/{bucket}", "delete=", f"<Delete>{objects}</Delete>".encode()
    )
    assert answer.status_code == 400, answer.text[:500]
    assert error_code(answer) == "MalformedXML"
    assert s3.get_object(Bucket=bucket, Key="k0")["Body"].read() == b"kept"


def test_1000_keys_of_1024_bytes_are_a_valid_delete(node: Node, s3: Any, bucket: str) -> None:
    """A body over 1 MiB is legitimate when it is 1000 maximal keys: the limit is 4 MiB."""
    keys = [f"{i:04d}".ljust(1024, "k") for i in range(1000)]
    s3.put_object(Bucket=bucket, Key=keys[7], Body=b"doomed")
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    body = f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode()
    assert len(body) > 2**20
    answer = _post_xml(node, "POST", f"/{bucket}", "delete=", body)
    assert answer.status_code == 200, answer.text[:500]
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_xml_bodies_over_the_limit_are_refused(node: Node, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    padding = b" " * (MAX_XML_BODY_BYTES + 1)
    for method, query, body in (
        ("POST", "delete=", b"<Delete><Object><Key>k</Key></Object>" + padding + b"</Delete>"),
        ("PUT", "cors=", b"<CORSConfiguration>" + padding + b"</CORSConfiguration>"),
        ("POST", "delete=", b"<" * (20 * 2**20)),
    ):
        answer = _post_xml(node, method, f"/{bucket}", query, body)
        assert answer.status_code == 400, answer.text[:500]
        assert error_code(answer) == "MaxMessageLengthExceeded"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


# ---------------------------------------------------------------- garbage parameters

ONE_BLOCK: Final = f"/{CANARY_BUCKET}/canary/one-block.bin"
MULTIPART: Final = f"/{CANARY_BUCKET}/canary/multipart.bin"


@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=-0", 416),
        ("bytes=99999999-", 416),
        ("bytes=716800-", 416),  # exactly the size: one past the end
        ("bytes=0-99999999999999999999999999", 206),  # clamped
        ("bytes=99999999999999999999999999-", 416),
        ("bytes=-99999999999999999999999999", 206),  # the whole object, as a range
        ("bytes=5-1", 200),  # invalid: ignored
        ("bytes=abc", 200),
        ("bytes=1-2-3", 200),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(900)), 200),  # many: whole
        ("bytes=" + "0" * 5000 + "-1", 200),  # more digits than any size: ignored
        ("items=0-1", 200),
        ("bytes=" + "9" * 7000, 200),
    ],
)
def test_range_garbage(node: Node, range_header: str, status: int) -> None:
    size = len(node.canaries["canary/one-block.bin"])
    answer = send(node, "GET", ONE_BLOCK, headers=[("range", range_header)])
    assert answer.status_code == status, answer.text[:300]
    if status == 416:
        assert error_code(answer) == "InvalidRange"
        assert answer.headers["content-range"] == f"bytes */{size}"
    elif status == 200:
        assert answer.content == node.canaries["canary/one-block.bin"]


@pytest.mark.parametrize(
    ("part_number", "status", "code"),
    [
        ("0", 400, "InvalidArgument"),
        ("-1", 400, "InvalidArgument"),
        ("10001", 400, "InvalidArgument"),
        ("3", 416, "InvalidPartNumber"),  # the canary has two parts
        ("99999999999999999999", 400, "InvalidArgument"),
        ("abc", 400, "InvalidArgument"),
        ("1.5", 400, "InvalidArgument"),
        ("+1", 400, "InvalidArgument"),
        ("%00", 400, "InvalidArgument"),
    ],
)
def test_part_number_garbage(node: Node, part_number: str, status: int, code: str) -> None:
    answer = send(node, "GET", MULTIPART, query=f"partNumber={part_number}")
    assert answer.status_code == status, answer.text[:300]
    assert error_code(answer) == code


def test_part_number_and_range_together(node: Node) -> None:
    answer = send(node, "GET", MULTIPART, query="partNumber=1", headers=[("range", "bytes=0-1")])
    assert answer.status_code == 400, answer.text[:300]
    assert error_code(answer) == "InvalidRequest"


@pytest.mark.parametrize(
    "query",
    [
        "list-type=2&max-keys=9223372036854775808",  # 2^63
        "list-type=2&max-keys=18446744073709551616",  # 2^64
        "list-type=2&max-keys=-1",
        "list-type=2&max-keys=abc",
        "list-type=2&max-keys=1e3",
        "list-type=2&continuation-token=!!!!",
        "list-type=2&continuation-token=" + "A" * 10_000,
        "list-type=2&continuation-token=" + base64.urlsafe_b64encode(b"\xff" * 64).decode(),
        "list-type=2&continuation-token=%00%01%02",
        "list-type=3",
        "list-type=abc",
        "list-type=2&encoding-type=base64",
        "uploads=&max-uploads=-5",
        "uploads=&max-uploads=99999999999999999999999",
    ],
)
def test_listing_garbage_is_400(node: Node, query: str) -> None:
    answer = send(node, "GET", f"/{CANARY_BUCKET}", query=query)
    assert answer.status_code == 400, (query, answer.text[:300])
    assert error_code(answer) in {"InvalidArgument", "InvalidRequest"}


@pytest.mark.parametrize(
    "query",
    [
        "list-type=2&max-keys=9223372036854775807",  # 2^63 - 1: clamped to 1000
        # Empty fields count as absent (Garage's router does the same; SDKs send
        # `prefix=`): an empty token lists from the start, where Garage v0.9.1 panicked.
        "list-type=2&continuation-token=",
        "list-type=2&max-keys=",
        "list-type=2&continuation-token=&start-after=",
        "uploads=&upload-id-marker=garbage",  # ignored without key-marker, as on S3
    ],
)
def test_listing_edge_values_list_from_the_start(node: Node, query: str) -> None:
    answer = send(node, "GET", f"/{CANARY_BUCKET}", query=query)
    assert answer.status_code == 200, (query, answer.text[:300])
    if "uploads=" not in query:
        assert "<Key>canary/inline.bin</Key>" in answer.text


def test_max_keys_zero_and_an_invalid_utf8_marker(node: Node) -> None:
    assert send(node, "GET", f"/{CANARY_BUCKET}", query="list-type=2&max-keys=0").status_code == 200
    answer = send(node, "GET", f"/{CANARY_BUCKET}", query="max-keys=5&marker=%FF")
    assert answer.status_code in (200, 400), answer.text[:300]


@pytest.mark.parametrize(
    "query",
    [
        "uploadId=garbage&max-parts=-1",
        "uploadId=garbage&part-number-marker=abc",
        "uploadId=garbage&max-parts=99999999999999999999999",
        "uploadId=%FF%FE",
    ],
)
def test_list_parts_garbage_is_4xx(node: Node, query: str) -> None:
    answer = send(node, "GET", MULTIPART, query=query)
    assert answer.status_code in (400, 404), (query, answer.text[:300])
    assert error_code(answer) in {"InvalidArgument", "InvalidRequest", "NoSuchUpload"}

"""The S3 XML codec, checked against botocore on both sides.

Responses are parsed back with botocore's own ``rest-xml`` parser and the operation's
output shape, so a field an SDK would not see (wrong name, wrong place, bad timestamp) fails
here. Request bodies come from botocore's serializer, captured before sending. Error
documents are checked the same way, and hostile XML is refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config
from botocore.handlers import parse_get_bucket_location
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from garage_api.s3 import (
    ERROR_CODES,
    MAX_DELETE_OBJECTS,
    MAX_XML_BODY_BYTES,
    S3_XMLNS,
    AccessControlPolicy,
    BucketEntry,
    CompletedPart,
    CompleteMultipartUploadResult,
    CopyObjectResult,
    CopyPartResult,
    Deleted,
    DeleteError,
    DeleteResult,
    InitiateMultipartUploadResult,
    ListAllMyBucketsResult,
    ListBucketResult,
    ListMultipartUploadsResult,
    ListPartsResult,
    LocationConstraint,
    ObjectEntry,
    ObjectIdentifier,
    Owner,
    PartEntry,
    PostResponse,
    S3Error,
    UploadEntry,
    VersioningConfiguration,
    parse_complete_multipart_upload,
    parse_create_bucket_configuration,
    parse_delete,
    url_encode,
)

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest

OWNER = Owner("GK31c2f218a2e44f485b94239e", "my-key")
TS = 1_735_732_800_123  # 2025-01-01T12:00:00.123Z
TS_DT = datetime(2025, 1, 1, 12, 0, 0, 123_000, tzinfo=UTC)
UPLOAD = "ab" * 32

_CLIENT = boto3.client(
    "s3",
    endpoint_url="http://127.0.0.1:3900",
    region_name="garage",
    aws_access_key_id="GK1",
    aws_secret_access_key="secret",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
)
_MODEL = _CLIENT.meta.service_model
_PARSER = create_parser("rest-xml")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _check_elements(el: ET.Element, shape: Any) -> None:
    """Every child element of ``el`` is a body member of the botocore ``shape``."""
    members = {
        m.serialization.get("name", name): m
        for name, m in shape.members.items()
        if "location" not in m.serialization and not m.serialization.get("xmlAttribute")
    }
    for child in el:
        tag = _local(child.tag)
        assert tag in members, f"<{tag}> is not a member of {shape.name}"
        _check_value(child, members[tag])


def _check_value(el: ET.Element, shape: Any) -> None:
    if shape.type_name == "structure":
        _check_elements(el, shape)
    elif shape.type_name == "list":
        if shape.serialization.get("flattened"):
            _check_value(el, shape.member)
        else:
            for child in el:
                assert _local(child.tag) == shape.member.serialization.get("name", "member")
                _check_value(child, shape.member)
    else:
        assert len(el) == 0, f"<{_local(el.tag)}> should hold text only"


def parse_with_botocore(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """botocore's reading of ``body``, after checking it names only fields of the shape."""
    shape = _MODEL.operation_model(operation).output_shape
    if status < 300:
        payload = shape.serialization.get("payload")
        _check_value(ET.fromstring(body), shape.members[payload] if payload else shape)
    parsed: dict[str, Any] = _PARSER.parse(
        {"body": body, "headers": {}, "status_code": status}, shape
    )
    return parsed


def root_of(body: bytes) -> ET.Element:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(body)


def ns(tag: str) -> str:
    return f"{{{S3_XMLNS}}}{tag}"


# ---------------------------------------------------------------------- responses


def test_list_buckets() -> None:
    body = ListAllMyBucketsResult(
        [BucketEntry("alpha", 0), BucketEntry("beta", TS, region="garage")], OWNER
    ).to_xml()
    assert root_of(body).tag == ns("ListAllMyBucketsResult")
    parsed = parse_with_botocore("ListBuckets", body)
    assert parsed["Owner"] == {"ID": OWNER.id, "DisplayName": OWNER.display_name}
    assert [b["Name"] for b in parsed["Buckets"]] == ["alpha", "beta"]
    assert parsed["Buckets"][0]["CreationDate"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert parsed["Buckets"][1]["CreationDate"] == TS_DT
    assert parsed["Buckets"][1]["BucketRegion"] == "garage"
    assert b"<CreationDate>2025-01-01T12:00:00.123Z</CreationDate>" in body


def test_location_constraint_is_the_element_text() -> None:
    body = LocationConstraint("garage").to_xml()
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">garage'
        b"</LocationConstraint>"
    )
    # botocore reads this one by hand (handlers.parse_get_bucket_location): the root's text.
    parsed: dict[str, Any] = {}
    response = SimpleNamespace(raw=object(), content=body)
    parse_get_bucket_location(parsed, response)
    assert parsed["LocationConstraint"] == "garage"


def test_versioning_configuration_is_empty() -> None:
    body = VersioningConfiguration().to_xml()
    assert list(root_of(body)) == []
    assert "Status" not in parse_with_botocore("GetBucketVersioning", body)
    enabled = VersioningConfiguration("Suspended").to_xml()
    assert parse_with_botocore("GetBucketVersioning", enabled)["Status"] == "Suspended"


def test_access_control_policy_grants_the_owner_full_control() -> None:
    parsed = parse_with_botocore("GetBucketAcl", AccessControlPolicy(OWNER).to_xml())
    assert parsed["Owner"]["ID"] == OWNER.id
    assert parsed["Grants"] == [
        {
            "Grantee": {"ID": OWNER.id, "DisplayName": OWNER.display_name, "Type": "CanonicalUser"},
            "Permission": "FULL_CONTROL",
        }
    ]


def _listing(**kwargs: Any) -> ListBucketResult:
    defaults: dict[str, Any] = {
        "name": "bucket",
        "prefix": "photos/",
        "max_keys": 2,
        "is_truncated": True,
        "contents": [
            ObjectEntry("photos/a b+c.jpg", TS, "d41d8cd98f00b204e9800998ecf8427e", 5),
            ObjectEntry(
                "photos/é",
                0,
                "etag-2",
                7,
                owner=OWNER,
                checksum_algorithm=("CRC32",),
                checksum_type="FULL_OBJECT",
            ),
        ],
        "common_prefixes": ["photos/2024/"],
        "delimiter": "/",
    }
    defaults.update(kwargs)
    return ListBucketResult(**defaults)


def test_list_objects_v2() -> None:
    body = _listing(
        is_v2=True,
        continuation_token="]abc",
        next_continuation_token="[def",
        start_after="photos/0",
    ).to_xml()
    parsed = parse_with_botocore("ListObjectsV2", body)
    assert parsed["Name"] == "bucket"
    assert (parsed["Prefix"], parsed["Delimiter"], parsed["MaxKeys"]) == ("photos/", "/", 2)
    assert (parsed["KeyCount"], parsed["IsTruncated"]) == (3, True)
    assert (parsed["ContinuationToken"], parsed["NextContinuationToken"]) == ("]abc", "[def")
    assert parsed["StartAfter"] == "photos/0"
    first, second = parsed["Contents"]
    assert first == {
        "Key": "photos/a b+c.jpg",
        "LastModified": TS_DT,
        "ETag": '"d41d8cd98f00b204e9800998ecf8427e"',
        "Size": 5,
        "StorageClass": "STANDARD",
    }
    assert second["Owner"] == {"ID": OWNER.id, "DisplayName": OWNER.display_name}
    assert second["ChecksumAlgorithm"] == ["CRC32"]
    assert second["ChecksumType"] == "FULL_OBJECT"
    assert parsed["CommonPrefixes"] == [{"Prefix": "photos/2024/"}]
    assert b"<Marker" not in body


def test_list_objects_v1() -> None:
    body = _listing(marker="photos/0", next_marker="photos/é").to_xml()
    parsed = parse_with_botocore("ListObjects", body)
    assert (parsed["Marker"], parsed["NextMarker"]) == ("photos/0", "photos/é")
    assert "KeyCount" not in parsed
    assert b"<NextContinuationToken" not in body
    # V1 always writes a Marker, empty when the request had none.
    assert parse_with_botocore("ListObjects", _listing().to_xml())["Marker"] == ""


def test_url_encoding_type_encodes_keys_prefixes_delimiter_and_markers() -> None:
    body = _listing(
        encoding_type="url", delimiter="+", marker="photos/a b", next_marker="photos/é"
    ).to_xml()
    root = root_of(body)
    assert root.findtext(ns("EncodingType")) == "url"
    assert root.findtext(ns("Delimiter")) == "%2B"
    assert root.findtext(ns("Marker")) == "photos/a%20b"
    assert root.findtext(ns("NextMarker")) == "photos/%C3%A9"
    keys = [c.findtext(ns("Key")) for c in root.iter(ns("Contents"))]
    assert keys == ["photos/a%20b%2Bc.jpg", "photos/%C3%A9"]
    # botocore decodes these with unquote_plus: the keys come back exactly.
    assert [unquote_plus(k or "") for k in keys] == ["photos/a b+c.jpg", "photos/é"]


printable_keys = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\t\n\r"),
    min_size=1,
    max_size=30,
)


@given(st.lists(printable_keys, min_size=1, max_size=5, unique=True), st.booleans())
def test_any_key_survives_a_listing(keys: list[str], url: bool) -> None:
    listing = ListBucketResult(
        name="b",
        prefix="",
        max_keys=1000,
        is_truncated=False,
        contents=[ObjectEntry(k, TS, "e", 1) for k in keys],
        encoding_type="url" if url else None,
        is_v2=True,
    )
    parsed = parse_with_botocore("ListObjectsV2", listing.to_xml())
    got = [c["Key"] for c in parsed["Contents"]]
    assert [unquote_plus(k) for k in got] == keys if url else got == keys


def test_url_encode_keeps_slashes_and_unreserved() -> None:
    assert url_encode("a/b-c_d.e~f") == "a/b-c_d.e~f"
    assert url_encode("a b+c&d=é") == "a%20b%2Bc%26d%3D%C3%A9"


def test_multipart_documents() -> None:
    parsed = parse_with_botocore(
        "CreateMultipartUpload",
        InitiateMultipartUploadResult("b", "k/ey", UPLOAD).to_xml(),
    )
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("b", "k/ey", UPLOAD)

    body = CompleteMultipartUploadResult(
        "http://h/b/k",
        "b",
        "k",
        "3858f62230ac3c915f300c664312c11f-9",
        checksums=(("SHA1", "ZJAnHyG8PeKz9tI8UTcHrJos39A=-9"),),
        checksum_type="COMPOSITE",
    ).to_xml()
    parsed = parse_with_botocore("CompleteMultipartUpload", body)
    assert parsed["ETag"] == '"3858f62230ac3c915f300c664312c11f-9"'
    assert parsed["ChecksumSHA1"] == "ZJAnHyG8PeKz9tI8UTcHrJos39A=-9"
    assert (parsed["Location"], parsed["ChecksumType"]) == ("http://h/b/k", "COMPOSITE")
    with pytest.raises(ValueError, match="MD5"):
        CompleteMultipartUploadResult(None, "b", "k", "e", checksums=(("MD5", "x"),)).to_xml()


def test_list_multipart_uploads() -> None:
    body = ListMultipartUploadsResult(
        bucket="b",
        prefix="",
        max_uploads=2,
        is_truncated=True,
        uploads=[UploadEntry("a b", UPLOAD, TS, OWNER)],
        common_prefixes=["dir/"],
        delimiter="/",
        encoding_type="url",
        key_marker="a",
        upload_id_marker="include",
        next_key_marker="a b",
        next_upload_id_marker=UPLOAD,
    ).to_xml()
    parsed = parse_with_botocore("ListMultipartUploads", body)
    (upload,) = parsed["Uploads"]
    assert (upload["Key"], upload["UploadId"], upload["Initiated"]) == ("a%20b", UPLOAD, TS_DT)
    assert upload["Initiator"]["ID"] == upload["Owner"]["ID"] == OWNER.id
    assert (parsed["NextKeyMarker"], parsed["NextUploadIdMarker"]) == ("a%20b", UPLOAD)
    assert (parsed["KeyMarker"], parsed["UploadIdMarker"]) == ("a", "include")
    assert (parsed["IsTruncated"], parsed["MaxUploads"]) == (True, 2)
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/"}]


def test_list_parts() -> None:
    body = ListPartsResult(
        bucket="b",
        key="k",
        upload_id=UPLOAD,
        max_parts=2,
        is_truncated=True,
        owner=OWNER,
        parts=[
            PartEntry(1, TS, "e1", 5 << 20, checksums=(("CRC32C", "yZRlqg=="),)),
            PartEntry(3, TS, "e3", 7),
        ],
        part_number_marker=0,
        next_part_number_marker=3,
    ).to_xml()
    parsed = parse_with_botocore("ListParts", body)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parsed["Parts"]] == [
        (1, '"e1"', 5 << 20),
        (3, '"e3"', 7),
    ]
    assert parsed["Parts"][0]["ChecksumCRC32C"] == "yZRlqg=="
    assert parsed["Parts"][0]["LastModified"] == TS_DT
    assert (parsed["PartNumberMarker"], parsed["NextPartNumberMarker"]) == (0, 3)
    assert (parsed["MaxParts"], parsed["IsTruncated"]) == (2, True)
    assert parsed["StorageClass"] == "STANDARD"


def test_copy_results() -> None:
    parsed = parse_with_botocore("CopyObject", CopyObjectResult("e", TS).to_xml())
    assert parsed["CopyObjectResult"] == {"ETag": '"e"', "LastModified": TS_DT}
    body = CopyPartResult("e", TS, checksums=(("CRC32", "AAAAAA=="),)).to_xml()
    parsed = parse_with_botocore("UploadPartCopy", body)
    assert parsed["CopyPartResult"] == {
        "ETag": '"e"',
        "LastModified": TS_DT,
        "ChecksumCRC32": "AAAAAA==",
    }


def test_delete_result_and_quiet_mode() -> None:
    result = DeleteResult(
        deleted=[Deleted("a"), Deleted("b", version_id="v", delete_marker=True)],
        errors=[DeleteError("c", "AccessDenied", "Access Denied")],
    )
    parsed = parse_with_botocore("DeleteObjects", result.to_xml())
    assert parsed["Deleted"] == [
        {"Key": "a"},
        {"Key": "b", "VersionId": "v", "DeleteMarker": True},
    ]
    assert parsed["Errors"] == [{"Key": "c", "Code": "AccessDenied", "Message": "Access Denied"}]
    quiet = DeleteResult(deleted=result.deleted, errors=result.errors, quiet=True)
    parsed = parse_with_botocore("DeleteObjects", quiet.to_xml())
    assert "Deleted" not in parsed
    assert len(parsed["Errors"]) == 1


def test_post_response() -> None:
    root = root_of(PostResponse("http://h/b/k", "b", "k", "e").to_xml())
    assert root.tag == ns("PostResponse")
    assert [(c.tag, c.text) for c in root] == [
        (ns("Location"), "http://h/b/k"),
        (ns("Bucket"), "b"),
        (ns("Key"), "k"),
        (ns("ETag"), '"e"'),
    ]


# ---------------------------------------------------------------------- errors


def test_error_document() -> None:
    error = S3Error.no_such_key("a/plop").with_context(resource="/bucket/a/plop", region="garage")
    body = error.to_xml("req-1")
    root = root_of(body)
    assert [c.tag for c in root] == ["Code", "Message", "Key", "Resource", "Region", "RequestId"]
    assert root.findtext("Resource") == "/bucket/a/plop"
    parsed = parse_with_botocore("GetObject", body, status=404)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Key"] == "a/plop"
    assert parsed["Error"]["Region"] == "garage"
    assert (error.status, error.has_body) == (404, True)


def test_context_does_not_override_what_the_raiser_set() -> None:
    error = S3Error.authorization_header_malformed("bad scope", region="garage")
    filled = error.with_context(resource="/b", region="us-east-1")
    assert (filled.region, filled.resource) == ("garage", "/b")
    assert (filled.code, filled.message, filled.status) == (error.code, error.message, 400)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (S3Error.no_such_bucket("b"), "NoSuchBucket", 404),
        (S3Error.no_such_key(), "NoSuchKey", 404),
        (S3Error.no_such_upload(UPLOAD), "NoSuchUpload", 404),
        (S3Error.invalid_range(10), "InvalidRange", 416),
        (S3Error.signature_does_not_match(), "SignatureDoesNotMatch", 403),
        (S3Error.access_denied(), "AccessDenied", 403),
        (S3Error.bucket_not_empty("b"), "BucketNotEmpty", 409),
        (S3Error.bucket_already_exists("b"), "BucketAlreadyExists", 409),
        (S3Error.bucket_already_owned_by_you("b"), "BucketAlreadyOwnedByYou", 409),
        (S3Error.entity_too_small(), "EntityTooSmall", 400),
        (S3Error.invalid_part(), "InvalidPart", 400),
        (S3Error.invalid_part_order(), "InvalidPartOrder", 400),
        (S3Error.precondition_failed(), "PreconditionFailed", 412),
        (S3Error.not_modified(), "NotModified", 304),
        (S3Error.not_implemented("PutBucketAcl"), "NotImplemented", 501),
        (S3Error.malformed_xml("x"), "MalformedXML", 400),
        (S3Error.invalid_argument("x"), "InvalidArgument", 400),
        (S3Error.invalid_bucket_name("B_"), "InvalidBucketName", 400),
        (S3Error.invalid_request("x"), "InvalidRequest", 400),
        (S3Error.bad_digest(), "BadDigest", 400),
        (S3Error.invalid_digest(), "InvalidDigest", 400),
        (S3Error.x_amz_content_sha256_mismatch(), "XAmzContentSHA256Mismatch", 400),
        (S3Error.incomplete_body(), "IncompleteBody", 400),
        (S3Error.entity_too_large(), "EntityTooLarge", 400),
        (S3Error.key_too_long(), "KeyTooLongError", 400),
        (S3Error.method_not_allowed("PATCH"), "MethodNotAllowed", 405),
        (S3Error.missing_content_length(), "MissingContentLength", 411),
        (S3Error.internal_error(), "InternalError", 500),
        (S3Error.service_unavailable(), "ServiceUnavailable", 503),
        (S3Error.slow_down(), "SlowDown", 503),
        (S3Error.invalid_access_key_id(), "InvalidAccessKeyId", 403),
        (S3Error.request_time_too_skewed(), "RequestTimeTooSkewed", 403),
        (
            S3Error.authorization_header_malformed("x", region="garage"),
            "AuthorizationHeaderMalformed",
            400,
        ),
        (S3Error.quota_reached("Bucket size quota is reached"), "AccessDenied", 403),
        (S3Error.max_message_length_exceeded(), "MaxMessageLengthExceeded", 400),
        (S3Error.invalid_part_number(3, 2), "InvalidPartNumber", 416),
    ],
)
def test_error_constructors(error: S3Error, code: str, status: int) -> None:
    assert (error.code, error.status) == (code, status)
    assert ERROR_CODES[code] == status
    assert str(error).startswith(f"{code}: ")
    body = error.to_xml()
    if status == 304:
        assert body == b""
    else:
        assert root_of(body).findtext("Code") == code


def test_not_implemented_names_the_operation_and_invalid_range_sets_content_range() -> None:
    assert "PutBucketAcl" in S3Error.not_implemented("PutBucketAcl").message
    assert S3Error.invalid_range(1234).headers == (("Content-Range", "bytes */1234"),)


def test_from_code() -> None:
    error = S3Error.from_code("SlowDown", "later", resource="/b")
    assert (error.status, error.message, error.resource) == (503, "later", "/b")
    with pytest.raises(ValueError, match="Nope"):
        S3Error.from_code("Nope")


# ---------------------------------------------------------------------- request bodies


class _Captured(Exception):
    def __init__(self, request: AWSPreparedRequest) -> None:
        self.request = request


def _abort_send(request: AWSPreparedRequest, **_: object) -> None:
    raise _Captured(request)


_CLIENT.meta.events.register("before-send", _abort_send)


def botocore_body(operation: str, **params: Any) -> bytes:
    with pytest.raises(_Captured) as caught:
        getattr(_CLIENT, operation)(**params)
    body = caught.value.request.body
    assert isinstance(body, bytes)
    return body


def test_delete_objects_body_from_botocore() -> None:
    body = botocore_body(
        "delete_objects",
        Bucket="b",
        Delete={
            "Objects": [{"Key": "a & b <c>"}, {"Key": "d", "VersionId": "v1"}],
            "Quiet": True,
        },
    )
    request = parse_delete(body)
    assert request.objects == (ObjectIdentifier("a & b <c>"), ObjectIdentifier("d", "v1"))
    assert request.quiet


def test_complete_multipart_upload_body_from_botocore() -> None:
    body = botocore_body(
        "complete_multipart_upload",
        Bucket="b",
        Key="k",
        UploadId=UPLOAD,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": '"e1"', "ChecksumCRC32": "AAAAAA=="},
                {"PartNumber": 3, "ETag": '"e3"'},
            ]
        },
    )
    request = parse_complete_multipart_upload(body)
    assert request.parts == (
        CompletedPart(1, "e1", (("CRC32", "AAAAAA=="),)),
        CompletedPart(3, "e3"),
    )
    request.check_order()


def test_create_bucket_body_from_botocore() -> None:
    body = botocore_body(
        "create_bucket", Bucket="b", CreateBucketConfiguration={"LocationConstraint": "garage"}
    )
    assert parse_create_bucket_configuration(body).location_constraint == "garage"
    assert parse_create_bucket_configuration(b"").location_constraint is None
    bare = b"<CreateBucketConfiguration/>"
    assert parse_create_bucket_configuration(bare).location_constraint is None


@given(st.lists(printable_keys, min_size=1, max_size=10))
def test_any_key_survives_a_delete_request(keys: list[str]) -> None:
    body = botocore_body(
        "delete_objects", Bucket="b", Delete={"Objects": [{"Key": k} for k in keys]}
    )
    assert [o.key for o in parse_delete(body).objects] == keys


def test_documents_without_namespace_and_with_unknown_elements_parse() -> None:
    body = (
        b"<Delete><Object><Key>k</Key><ETag>x</ETag><Size>3</Size></Object>"
        b"<Quiet>FALSE</Quiet><Future>1</Future></Delete>"
    )
    assert parse_delete(body).objects == (ObjectIdentifier("k"),)
    prefixed = (
        b'<s3:CompleteMultipartUpload xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<s3:Part><s3:PartNumber> 2 </s3:PartNumber><s3:ETag>e</s3:ETag></s3:Part>"
        b"</s3:CompleteMultipartUpload>"
    )
    assert parse_complete_multipart_upload(prefixed).parts == (CompletedPart(2, "e"),)


def test_part_order_is_checked() -> None:
    body = (
        b"<CompleteMultipartUpload>"
        + b"".join(b"<Part><PartNumber>%d</PartNumber><ETag>e</ETag></Part>" % n for n in (1, 3, 3))
        + b"</CompleteMultipartUpload>"
    )
    with pytest.raises(S3Error) as e:
        parse_complete_multipart_upload(body).check_order()
    assert e.value.code == "InvalidPartOrder"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Delete><Object><Key>&lol2;</Key></Object></Delete>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>
<Delete><Object><Key>k</Key></Object></Delete>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        PARAMETER_ENTITY,
        b"<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
        b"<Delete><Object><Key>&undefined;</Key></Object></Delete>",
        b"",
        b"not xml",
        b"<Delete><Object><Key>k</Key></Object>",  # unclosed
        b"<Delete></Delete>",  # no object
        b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",  # no key
        b"<Delete><Object><Key>k</Key></Object><Quiet>maybe</Quiet></Delete>",
        b"<DeleteObjects><Object><Key>k</Key></Object></DeleteObjects>",  # wrong root
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * (MAX_DELETE_OBJECTS + 1) + b"</Delete>",
    ],
)
def test_bad_delete_bodies_are_malformed_xml(body: bytes) -> None:
    with pytest.raises(S3Error) as e:
        parse_delete(body)
    assert (e.value.status, e.value.code) == (400, "MalformedXML")


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e</ETag></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>e</ETag></Part>"
        b"</CompleteMultipartUpload>",
        b"<CreateBucketConfiguration/>",
    ],
)
def test_bad_complete_bodies_are_malformed_xml(body: bytes) -> None:
    with pytest.raises(S3Error) as e:
        parse_complete_multipart_upload(body)
    assert e.value.code == "MalformedXML"


def test_oversized_bodies_are_refused_before_parsing() -> None:
    body = b"<Delete>" + b" " * MAX_XML_BODY_BYTES + b"</Delete>"
    with pytest.raises(S3Error) as e:
        parse_delete(body)
    assert (e.value.status, e.value.code) == (400, "MaxMessageLengthExceeded")

"""S3 routing against the requests boto3 really sends, in path and virtual-hosted style.

botocore builds and signs each request as it would on the wire; a ``before-send`` hook
captures it and aborts before any network I/O. The captured method, Host, path, query and
headers are fed to ``parse_request``. Besides the table of implemented operations, every
operation of botocore's S3 model is built once with its required parameters, and must route
to the operation of the same name.
"""

from __future__ import annotations

import datetime
import doctest
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore import xform_name
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

import garage_api.s3
from garage_api.s3 import (
    KEYWORDS,
    Authorization,
    Endpoint,
    Operation,
    S3Error,
    host_to_bucket,
    parse_request,
)

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.client import BaseClient
    from botocore.model import Shape

ROOT_DOMAIN = "s3.garage.localhost"

# AWS names that share their request with another operation: the router answers with the
# current name (design: router docstring).
ALIASES = {
    "GetBucketLifecycle": "GetBucketLifecycleConfiguration",
    "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    "PutBucketNotification": "PutBucketNotificationConfiguration",
    "ListDirectoryBuckets": "ListBuckets",
}

IMPLEMENTED = {
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateBucket",
    "CreateMultipartUpload",
    "DeleteBucket",
    "DeleteBucketCors",
    "DeleteBucketLifecycle",
    "DeleteBucketWebsite",
    "DeleteObject",
    "DeleteObjects",
    "GetBucketAcl",
    "GetBucketCors",
    "GetBucketLifecycleConfiguration",
    "GetBucketLocation",
    "GetBucketVersioning",
    "GetBucketWebsite",
    "GetObject",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListMultipartUploads",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "Options",
    "PostObject",
    "PutBucketCors",
    "PutBucketLifecycleConfiguration",
    "PutBucketWebsite",
    "PutObject",
    "UploadPart",
    "UploadPartCopy",
}


@dataclass(frozen=True)
class Req:
    method: str
    host: str | None
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]

    def route(self, root_domain: str | None = ROOT_DOMAIN) -> Endpoint:
        return parse_request(
            self.method, self.host, self.path, self.query, self.headers, root_domain=root_domain
        )


class _Captured(Exception):
    def __init__(self, request: AWSPreparedRequest) -> None:
        self.request = request


def _abort_send(request: AWSPreparedRequest, **_: object) -> None:
    raise _Captured(request)


def _client(style: str) -> BaseClient:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{ROOT_DOMAIN}:3900",
        region_name="garage",
        aws_access_key_id="GK31c2f218a2e44f485b94239e",
        aws_secret_access_key="b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 0}),
    )
    client.meta.events.register("before-send", _abort_send)
    return client


@pytest.fixture(scope="module", params=["path", "virtual"])
def client(request: pytest.FixtureRequest) -> BaseClient:
    return _client(request.param)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def capture(client: BaseClient, operation: str, **params: Any) -> Req:
    """The request boto3 sends for ``client.<operation>(**params)``."""
    with pytest.raises(_Captured) as caught:
        getattr(client, operation)(**params)
    request = caught.value.request
    url = urlsplit(request.url)
    headers = {k.lower(): _text(v) for k, v in request.headers.items()}
    return Req(
        request.method,
        headers.get("host"),
        url.path,
        parse_qsl(url.query, keep_blank_values=True),
        headers,
    )


# ---------------------------------------------------------------------- implemented ops

B = "my-bucket"
UPLOAD = "ab" * 32

CASES: list[tuple[str, dict[str, Any], Operation, dict[str, object]]] = [
    ("list_buckets", {}, Operation.LIST_BUCKETS, {"bucket": None, "key": None}),
    ("create_bucket", {"Bucket": B}, Operation.CREATE_BUCKET, {}),
    ("delete_bucket", {"Bucket": B}, Operation.DELETE_BUCKET, {}),
    ("head_bucket", {"Bucket": B}, Operation.HEAD_BUCKET, {}),
    ("get_bucket_location", {"Bucket": B}, Operation.GET_BUCKET_LOCATION, {}),
    ("get_bucket_versioning", {"Bucket": B}, Operation.GET_BUCKET_VERSIONING, {}),
    ("get_bucket_acl", {"Bucket": B}, Operation.GET_BUCKET_ACL, {}),
    (
        "list_objects",
        {"Bucket": B, "Prefix": "a/", "Delimiter": "/", "Marker": "a/m", "MaxKeys": 10},
        Operation.LIST_OBJECTS,
        {
            "prefix": "a/",
            "delimiter": "/",
            "marker": "a/m",
            "max_keys": 10,
            "encoding_type": "url",
        },
    ),
    (
        "list_objects_v2",
        {
            "Bucket": B,
            "Prefix": "p",
            "Delimiter": "/",
            "ContinuationToken": "[YQ==",
            "StartAfter": "s",
            "FetchOwner": True,
            "MaxKeys": 5,
        },
        Operation.LIST_OBJECTS_V2,
        {
            "prefix": "p",
            "continuation_token": "[YQ==",
            "start_after": "s",
            "fetch_owner": True,
            "max_keys": 5,
            "encoding_type": "url",
        },
    ),
    (
        "list_multipart_uploads",
        {"Bucket": B, "Prefix": "x", "KeyMarker": "k", "UploadIdMarker": UPLOAD, "MaxUploads": 7},
        Operation.LIST_MULTIPART_UPLOADS,
        {"prefix": "x", "key_marker": "k", "upload_id_marker": UPLOAD, "max_uploads": 7},
    ),
    (
        "put_object",
        {"Bucket": B, "Key": "d/a b+c.txt", "Body": b"x"},
        Operation.PUT_OBJECT,
        {"key": "d/a b+c.txt"},
    ),
    (
        "get_object",
        {
            "Bucket": B,
            "Key": "k",
            "PartNumber": 2,
            "VersionId": "v1",
            "ResponseContentType": "text/plain",
            "ResponseCacheControl": "no-cache",
        },
        Operation.GET_OBJECT,
        {
            "key": "k",
            "part_number": 2,
            "version_id": "v1",
            "response_headers": (("cache-control", "no-cache"), ("content-type", "text/plain")),
        },
    ),
    ("head_object", {"Bucket": B, "Key": "é/ü"}, Operation.HEAD_OBJECT, {"key": "é/ü"}),
    (
        "copy_object",
        {"Bucket": B, "Key": "dst", "CopySource": "src-bucket/src key"},
        Operation.COPY_OBJECT,
        {"key": "dst"},
    ),
    ("delete_object", {"Bucket": B, "Key": "k"}, Operation.DELETE_OBJECT, {"key": "k"}),
    (
        "delete_objects",
        {"Bucket": B, "Delete": {"Objects": [{"Key": "a"}], "Quiet": True}},
        Operation.DELETE_OBJECTS,
        {"key": None},
    ),
    (
        "create_multipart_upload",
        {"Bucket": B, "Key": "k"},
        Operation.CREATE_MULTIPART_UPLOAD,
        {"key": "k"},
    ),
    (
        "upload_part",
        {"Bucket": B, "Key": "k", "UploadId": UPLOAD, "PartNumber": 3, "Body": b"x"},
        Operation.UPLOAD_PART,
        {"upload_id": UPLOAD, "part_number": 3},
    ),
    (
        "upload_part_copy",
        {"Bucket": B, "Key": "k", "UploadId": UPLOAD, "PartNumber": 4, "CopySource": "s/k"},
        Operation.UPLOAD_PART_COPY,
        {"upload_id": UPLOAD, "part_number": 4},
    ),
    (
        "complete_multipart_upload",
        {
            "Bucket": B,
            "Key": "k",
            "UploadId": UPLOAD,
            "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": '"e"'}]},
        },
        Operation.COMPLETE_MULTIPART_UPLOAD,
        {"upload_id": UPLOAD},
    ),
    (
        "abort_multipart_upload",
        {"Bucket": B, "Key": "k", "UploadId": UPLOAD},
        Operation.ABORT_MULTIPART_UPLOAD,
        {"upload_id": UPLOAD},
    ),
    (
        "list_parts",
        {"Bucket": B, "Key": "k", "UploadId": UPLOAD, "MaxParts": 10, "PartNumberMarker": 2},
        Operation.LIST_PARTS,
        {"upload_id": UPLOAD, "max_parts": 10, "part_number_marker": 2},
    ),
    ("get_bucket_website", {"Bucket": B}, Operation.GET_BUCKET_WEBSITE, {}),
    (
        "put_bucket_website",
        {"Bucket": B, "WebsiteConfiguration": {"IndexDocument": {"Suffix": "index.html"}}},
        Operation.PUT_BUCKET_WEBSITE,
        {},
    ),
    ("delete_bucket_website", {"Bucket": B}, Operation.DELETE_BUCKET_WEBSITE, {}),
    ("get_bucket_cors", {"Bucket": B}, Operation.GET_BUCKET_CORS, {}),
    (
        "put_bucket_cors",
        {
            "Bucket": B,
            "CORSConfiguration": {
                "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]
            },
        },
        Operation.PUT_BUCKET_CORS,
        {},
    ),
    ("delete_bucket_cors", {"Bucket": B}, Operation.DELETE_BUCKET_CORS, {}),
    (
        "get_bucket_lifecycle_configuration",
        {"Bucket": B},
        Operation.GET_BUCKET_LIFECYCLE_CONFIGURATION,
        {},
    ),
    (
        "put_bucket_lifecycle_configuration",
        {
            "Bucket": B,
            "LifecycleConfiguration": {
                "Rules": [
                    {"Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}
                ]
            },
        },
        Operation.PUT_BUCKET_LIFECYCLE_CONFIGURATION,
        {},
    ),
    ("delete_bucket_lifecycle", {"Bucket": B}, Operation.DELETE_BUCKET_LIFECYCLE, {}),
]


@pytest.mark.parametrize(
    ("method", "params", "operation", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_implemented_operations_route_as_boto3_sends_them(
    client: BaseClient,
    method: str,
    params: dict[str, Any],
    operation: Operation,
    expected: dict[str, object],
) -> None:
    req = capture(client, method, **params)
    ep = req.route()
    assert ep.operation is operation
    assert ep.implemented
    assert ep.bucket == expected.get("bucket", B)
    # botocore keeps some operations (GetBucketLocation) in path style whatever the config.
    assert ep.vhost == (req.host is not None and req.host.startswith(f"{B}."))
    for name, value in expected.items():
        assert getattr(ep, name) == value, name


def test_virtual_hosted_style_really_puts_the_bucket_in_the_host() -> None:
    req = capture(_client("virtual"), "get_object", Bucket=B, Key="k")
    assert req.host == f"{B}.{ROOT_DOMAIN}:3900"
    assert req.path == "/k"
    # Without root_domain the same request reads as path style: bucket "k", no key.
    assert req.route(root_domain=None).operation is Operation.LIST_OBJECTS


def test_post_object_and_options_are_routed() -> None:
    form = {"content-type": "multipart/form-data; boundary=x"}
    ep = parse_request("POST", "h", f"/{B}", [], form, root_domain=None)
    assert (ep.operation, ep.bucket, ep.implemented) == (Operation.POST_OBJECT, B, True)
    ep = parse_request("OPTIONS", "h", f"/{B}/some/key", [], {}, root_domain=None)
    assert (ep.operation, ep.bucket, ep.key) == (Operation.OPTIONS, B, "some/key")
    assert ep.authorization is Authorization.NONE
    assert parse_request("OPTIONS", "h", "/", [], {}, root_domain=None).bucket is None
    assert (
        parse_request("OPTIONS", "h", "*", [], {}, root_domain=None).operation is Operation.OPTIONS
    )


# ---------------------------------------------------------------------- every operation


def _dummy(shape: Shape, name: str) -> object:
    """A minimal valid value of a botocore shape (only required members)."""
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        if getattr(shape, "is_tagged_union", False):
            first = next(iter(members))
            return {first: _dummy(members[first], first)}
        required = shape.required_members
        return {k: _dummy(v, k) for k, v in members.items() if k in required}
    if kind == "list":
        return [_dummy(shape.member, name)]
    if kind == "map":
        return {"k": _dummy(shape.value, name)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        specific = {
            "Bucket": B,
            "Key": "dir/key",
            "CopySource": "src/key",
            "RenameSource": f"/{B}/old",
            "RequestRoute": "route",
        }
        return specific.get(name, "x" * max(1, shape.metadata.get("min", 1)))
    if kind in ("integer", "long"):
        return 1
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    raise AssertionError(kind)


_MODEL = _client("path").meta.service_model
ALL_OPERATIONS = list(_MODEL.operation_names)


def test_the_model_has_the_whole_s3_api() -> None:
    assert len(ALL_OPERATIONS) > 100
    assert {"GetObject", "PutBucketAcl", "SelectObjectContent", "ListObjectVersions"} <= set(
        ALL_OPERATIONS
    )


@pytest.mark.parametrize("name", ALL_OPERATIONS)
def test_every_s3_operation_routes_to_its_name(client: BaseClient, name: str) -> None:
    shape = _MODEL.operation_model(name).input_shape
    params = _dummy(shape, "") if shape is not None else {}
    assert isinstance(params, dict)
    ep = capture(client, xform_name(name), **params).route()
    expected = ALIASES.get(name, name)
    assert ep.name == expected
    assert ep.operation is Operation(expected)
    assert ep.implemented == (expected in IMPLEMENTED)
    if not ep.implemented:
        error = S3Error.not_implemented(ep.name)
        assert (error.status, error.code) == (501, "NotImplemented")
        assert expected in error.message


def test_every_operation_is_reachable() -> None:
    routed = {ALIASES.get(n, n) for n in ALL_OPERATIONS} | {"Options", "PostObject"}
    assert {op.value for op in Operation} == routed
    assert {op.value for op in Operation if op.implemented} == IMPLEMENTED


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("put_bucket_acl", {"Bucket": B, "ACL": "private"}, "PutBucketAcl"),
        ("get_bucket_policy", {"Bucket": B}, "GetBucketPolicy"),
        (
            "put_object_tagging",
            {"Bucket": B, "Key": "k", "Tagging": {"TagSet": []}},
            "PutObjectTagging",
        ),
        ("get_object_lock_configuration", {"Bucket": B}, "GetObjectLockConfiguration"),
        ("list_object_versions", {"Bucket": B, "Prefix": "a"}, "ListObjectVersions"),
        ("get_object_torrent", {"Bucket": B, "Key": "k"}, "GetObjectTorrent"),
        ("restore_object", {"Bucket": B, "Key": "k"}, "RestoreObject"),
        (
            "put_bucket_versioning",
            {"Bucket": B, "VersioningConfiguration": {"Status": "Enabled"}},
            "PutBucketVersioning",
        ),
        (
            "delete_bucket_metrics_configuration",
            {"Bucket": B, "Id": "m1"},
            "DeleteBucketMetricsConfiguration",
        ),
        (
            "list_bucket_inventory_configurations",
            {"Bucket": B},
            "ListBucketInventoryConfigurations",
        ),
    ],
)
def test_unimplemented_sample(
    client: BaseClient, method: str, params: dict[str, Any], name: str
) -> None:
    ep = capture(client, method, **params).route()
    assert (ep.name, ep.implemented) == (name, False)


def test_configuration_ids_and_continuation_tokens_are_read() -> None:
    c = _client("path")
    ep = capture(c, "get_bucket_metrics_configuration", Bucket=B, Id="EntireBucket").route()
    assert (ep.operation, ep.config_id) == (
        Operation.GET_BUCKET_METRICS_CONFIGURATION,
        "EntireBucket",
    )
    ep = capture(c, "list_bucket_analytics_configurations", Bucket=B, ContinuationToken="t").route()
    assert (ep.operation, ep.continuation_token) == (
        Operation.LIST_BUCKET_ANALYTICS_CONFIGURATIONS,
        "t",
    )


# ---------------------------------------------------------------------- authorization


@pytest.mark.parametrize(
    ("method", "target", "auth"),
    [
        ("GET", "/", Authorization.NONE),
        ("GET", "/b", Authorization.READ),
        ("GET", "/b?list-type=2", Authorization.READ),
        ("GET", "/b/k", Authorization.READ),
        ("HEAD", "/b/k", Authorization.READ),
        ("HEAD", "/b", Authorization.READ),
        ("GET", "/b?acl", Authorization.READ),
        ("GET", "/b?lifecycle", Authorization.READ),
        ("GET", "/b?cors", Authorization.OWNER),
        ("GET", "/b?website", Authorization.OWNER),
        ("PUT", "/b?cors", Authorization.OWNER),
        ("PUT", "/b?website", Authorization.OWNER),
        ("DELETE", "/b?cors", Authorization.OWNER),
        ("DELETE", "/b?website", Authorization.OWNER),
        ("DELETE", "/b", Authorization.OWNER),
        ("PUT", "/b", Authorization.WRITE),
        ("PUT", "/b?lifecycle", Authorization.WRITE),
        ("DELETE", "/b?lifecycle", Authorization.WRITE),
        ("PUT", "/b/k", Authorization.WRITE),
        ("DELETE", "/b/k", Authorization.WRITE),
        ("POST", "/b?delete", Authorization.WRITE),
        ("POST", "/b/k?uploads", Authorization.WRITE),
        ("POST", "/b", Authorization.WRITE),
        ("POST", "/b/k?select&select-type=2", Authorization.READ),
        ("PUT", "/b?acl", Authorization.WRITE),
    ],
)
def test_authorization_per_endpoint(method: str, target: str, auth: Authorization) -> None:
    path, _, qs = target.partition("?")
    ep = parse_request(
        method, "h", path, parse_qsl(qs, keep_blank_values=True), {}, root_domain=None
    )
    assert ep.authorization is auth


def test_copy_operations_need_write() -> None:
    headers = {"x-amz-copy-source": "src/key"}
    ep = parse_request("PUT", "h", "/b/k", [], headers, root_domain=None)
    assert (ep.operation, ep.authorization) == (Operation.COPY_OBJECT, Authorization.WRITE)
    query = [("partNumber", "2"), ("uploadId", "u")]
    ep = parse_request("PUT", "h", "/b/k", query, headers, root_domain=None)
    assert (ep.operation, ep.authorization) == (Operation.UPLOAD_PART_COPY, Authorization.WRITE)


# ---------------------------------------------------------------------- host and path


@pytest.mark.parametrize(
    ("host", "root", "bucket"),
    [
        ("john.doe.garage.tld", ".garage.tld", "john.doe"),
        ("john.doe.garage.tld", "garage.tld", "john.doe"),
        ("John.Doe.Garage.TLD", "garage.tld", "john.doe"),
        ("john.doe.com", "garage.tld", None),
        ("john.doe.com", ".garage.tld", None),
        ("garage.tld", "garage.tld", None),
        ("garage.tld", ".garage.tld", None),
        ("not-garage.tld", "garage.tld", None),
        ("notgarage.tld", "garage.tld", None),
    ],
)
def test_host_to_bucket_matches_label_wise(host: str, root: str, bucket: str | None) -> None:
    assert host_to_bucket(host, root) == bucket


@pytest.mark.parametrize(
    ("host", "bucket", "key"),
    [
        ("b.s3.garage.localhost", "b", "k"),
        ("b.s3.garage.localhost:3900", "b", "k"),
        ("B.S3.Garage.Localhost:3900", "b", "k"),
        ("s3.garage.localhost:3900", "k", None),  # the root domain itself: path style
        ("127.0.0.1:3900", "k", None),
        ("[::1]:3900", "k", None),
        (None, "k", None),
    ],
)
def test_vhost_or_path_style(host: str | None, bucket: str, key: str | None) -> None:
    ep = parse_request("GET", host, "/k", [], {}, root_domain=ROOT_DOMAIN)
    assert (ep.bucket, ep.key) == (bucket, key)


def test_malformed_ipv6_host_is_refused_when_vhosts_are_on() -> None:
    with pytest.raises(S3Error) as e:
        parse_request("GET", "[::1", "/b", [], {}, root_domain=ROOT_DOMAIN)
    assert e.value.code == "InvalidRequest"
    # Without a root domain the Host is not read at all.
    assert parse_request("GET", "[::1", "/b", [], {}, root_domain=None).bucket == "b"


@pytest.mark.parametrize(
    ("path", "bucket", "key"),
    [
        ("/my_bucket/%26%2B%3F%25%C3%A9/something", "my_bucket", "&+?%é/something"),
        ("/b/a+b", "b", "a+b"),  # a plus in a path is a plus, not a space
        ("/b/a%20b", "b", "a b"),
        ("/b//leading", "b", "/leading"),
        ("/b/trailing/", "b", "trailing/"),
        ("/b/", "b", None),
        ("/b", "b", None),
    ],
)
def test_key_is_percent_decoded(path: str, bucket: str, key: str | None) -> None:
    ep = parse_request("GET", "h", path, [], {}, root_domain=None)
    assert (ep.bucket, ep.key) == (bucket, key)


@given(
    st.text(min_size=1, max_size=200).filter(
        lambda k: len(k.encode("utf-8", "surrogatepass")) <= 1024
    )
)
def test_any_key_round_trips_through_the_path(key: str) -> None:
    try:
        key.encode()
    except UnicodeEncodeError:
        return  # lone surrogates cannot be in a UTF-8 request
    raw = quote(key, safe="/~")
    ep = parse_request("PUT", "h", f"/bucket/{raw}", [], {}, root_domain=None)
    assert (ep.operation, ep.key) == (Operation.PUT_OBJECT, key)
    ep = parse_request(
        "PUT", "bucket.s3.garage.localhost", f"/{raw}", [], {}, root_domain=ROOT_DOMAIN
    )
    assert (ep.bucket, ep.key) == ("bucket", key)


# ---------------------------------------------------------------------- query rules


def test_empty_fields_are_absent_and_unknown_parameters_ignored() -> None:
    query = [("list-type", "2"), ("prefix", ""), ("delimiter", ""), ("x-id", "ListObjectsV2")]
    query += [("X-Amz-Date", "20250101T000000Z"), ("cache-buster", "1")]
    ep = parse_request("GET", "h", "/b", query, {}, root_domain=None)
    assert ep.operation is Operation.LIST_OBJECTS_V2
    assert (ep.prefix, ep.delimiter) == (None, None)


def test_a_keyword_with_a_value_is_still_the_keyword() -> None:
    ep = parse_request("GET", "h", "/b", [("uploads", "whatever")], {}, root_domain=None)
    assert ep.operation is Operation.LIST_MULTIPART_UPLOADS


def test_fields_an_operation_does_not_take_are_left_unset() -> None:
    ep = parse_request(
        "GET", "h", "/b/k", [("prefix", "p"), ("max-keys", "3")], {}, root_domain=None
    )
    assert ep.operation is Operation.GET_OBJECT
    assert (ep.prefix, ep.max_keys) == (None, None)


def test_encoding_type_is_normalised() -> None:
    ep = parse_request("GET", "h", "/b", [("encoding-type", "URL")], {}, root_domain=None)
    assert ep.encoding_type == "url"


@pytest.mark.parametrize(
    ("method", "target", "headers", "code"),
    [
        ("PATCH", "/b/k", {}, "MethodNotAllowed"),
        ("PUT", "/", {}, "MethodNotAllowed"),
        ("GET", "/bucket/key?website", {}, "InvalidRequest"),
        ("GET", "/b?acl&cors", {}, "InvalidRequest"),
        ("GET", "/b?prefix=a&prefix=b", {}, "InvalidRequest"),
        ("POST", "/b/k", {}, "InvalidRequest"),
        ("PUT", "/b/k?partNumber=1", {}, "InvalidRequest"),  # UploadPart without uploadId
        ("PUT", "/b?analytics", {}, "InvalidRequest"),  # no id
        ("POST", "/b/k?select", {}, "InvalidRequest"),  # no select-type
        ("GET", "//k", {}, "InvalidRequest"),
        ("GET", "/b/%FF%FE", {}, "InvalidRequest"),
        ("GET", "/b?max-keys=ten", {}, "InvalidArgument"),
        ("GET", "/b?max-keys=-1", {}, "InvalidArgument"),
        ("GET", "/b?max-keys=+5", {}, "InvalidArgument"),
        ("GET", "/b?encoding-type=base64", {}, "InvalidArgument"),
        ("GET", "/b?list-type=1", {}, "InvalidArgument"),
        ("GET", "/b?list-type=2&fetch-owner=maybe", {}, "InvalidArgument"),
        ("POST", "/b/k?select&select-type=3", {}, "InvalidArgument"),
        ("PUT", "/b/k?partNumber=0&uploadId=u", {}, "InvalidArgument"),
        ("PUT", "/b/k?partNumber=10001&uploadId=u", {}, "InvalidArgument"),
        ("GET", "/b/k?partNumber=0", {}, "InvalidArgument"),
        ("GET", "/b/k?uploadId=u&part-number-marker=10001", {}, "InvalidArgument"),
        ("GET", "/b/" + "k" * 1025, {}, "KeyTooLongError"),
        ("GET", "/b/" + "é" * 513, {}, "KeyTooLongError"),  # 1026 bytes of UTF-8
    ],
)
def test_errors(method: str, target: str, headers: dict[str, str], code: str) -> None:
    path, _, qs = target.partition("?")
    with pytest.raises(S3Error) as e:
        parse_request(
            method, "h", path, parse_qsl(qs, keep_blank_values=True), headers, root_domain=None
        )
    assert e.value.code == code
    assert e.value.status in (400, 405)


def test_longest_key_is_accepted() -> None:
    ep = parse_request("GET", "h", "/b/" + "k" * 1024, [], {}, root_domain=None)
    assert ep.key == "k" * 1024


@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]),
    path=st.text(alphabet="/ab%2F+é", max_size=12).map(lambda p: "/" + p),
    query=st.lists(
        st.tuples(
            st.sampled_from(
                [*KEYWORDS, "uploadId", "partNumber", "list-type", "max-keys", "id", "x"]
            ),
            st.text(alphabet="12ab", max_size=3),
        ),
        max_size=4,
    ),
    copy=st.booleans(),
)
def test_routing_never_fails_with_anything_but_an_s3_error(
    method: str, path: str, query: list[tuple[str, str]], copy: bool
) -> None:
    headers = {"x-amz-copy-source": "b/k"} if copy else {}
    try:
        ep = parse_request(method, "h", path, query, headers, root_domain=None)
    except S3Error as e:
        status = e.status
    else:
        status = 200
        assert isinstance(ep.operation, Operation)
        assert isinstance(ep.authorization, Authorization)
    assert status == 200 or 400 <= status < 500


def test_package_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(garage_api.s3, verbose=False)
    assert (failures, tried > 0) == (0, True)

"""Listings against a running node: ListObjects (V1), ListObjectsV2, ListMultipartUploads
and ListParts, with boto3 (its paginators included) and raw signed requests for what boto3
hides (the XML of ``encoding-type=url``, ``max-keys=0``, foreign tokens)."""

from __future__ import annotations

import base64
import hashlib
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tests.api.conftest import S3Node

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# The big listing: 2,500 keys in three "directories" (d0/ and d1/ hold 1,000 each, d2/
# 500), more than two full pages of 1,000.
BIG_KEYS = [f"d{i // 1000}/{i:05d}" for i in range(2500)]
# Keys that need URL-encoding in a listing: space, unicode, `+`, `%`, XML specials.
ODD_KEYS = [
    "with space",
    "plus+sign",
    "percent%",
    "percent%25",
    "uni/ção ✓",
    "uni/日本語/ファイル",
    "a&b<c>'\"",
    "tilde~and=equals?q",
]


# ---------------------------------------------------------------------- helpers


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _fresh_bucket(s3: Any) -> str:
    name = f"list-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def _parallel(fn: Any, items: Iterable[Any], *, workers: int = 16) -> list[Any]:
    """``fn(item)`` for every item, a few at a time (boto3 clients are thread-safe)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _put_keys(s3: Any, bucket: str, keys: Iterable[str]) -> None:
    _parallel(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys)


def _create_uploads(s3: Any, bucket: str, keys: Iterable[str]) -> list[tuple[str, str]]:
    """Starts a multipart upload per key; ``(key, upload id)`` in the order given."""

    def create(key: str) -> tuple[str, str]:
        return key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    return _parallel(create, keys)


def _raw_get(node: S3Node, bucket: str, params: dict[str, str]) -> httpx.Response:
    """A GET on the bucket with exactly these query parameters, signed (SigV4)."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='-_.~')}" for k, v in params.items())
    url = f"{node.endpoint}/{bucket}" + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(node.key_id, node.secret), "s3", node.region).add_auth(request)
    return httpx.get(url, headers=dict(request.headers.items()))


def _xml(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    return ET.fromstring(response.content)


def _texts(root: ET.Element, path: str) -> list[str]:
    """The texts of the elements at ``path`` (``"Contents/Key"``), namespaced."""
    nspath = "/".join(NS + part for part in path.split("/"))
    return [el.text or "" for el in root.findall(nspath)]


def _text(root: ET.Element, tag: str) -> str | None:
    found = _texts(root, tag)
    assert len(found) <= 1
    return found[0] if found else None


def _pages(s3: Any, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
    return list(s3.get_paginator(operation).paginate(**kwargs))


def _listed_keys(pages: Iterable[dict[str, Any]]) -> list[str]:
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _listed_prefixes(pages: Iterable[dict[str, Any]]) -> list[str]:
    return [cp["Prefix"] for page in pages for cp in page.get("CommonPrefixes", [])]


def _all_keys(s3: Any, bucket: str) -> list[str]:
    return _listed_keys(_pages(s3, "list_objects_v2", Bucket=bucket))


@pytest.fixture(scope="module")
def big_bucket(s3node: S3Node) -> str:
    """A bucket holding :data:`BIG_KEYS` (filled once for the module)."""
    s3 = s3node.client(max_pool_connections=16)
    name = _fresh_bucket(s3)
    _put_keys(s3, name, BIG_KEYS)
    return name


# ---------------------------------------------------------------------- empty listings


def test_empty_bucket_listings(s3: Any, s3node: S3Node, bucket: str) -> None:
    v2 = s3.list_objects_v2(Bucket=bucket)
    assert v2["KeyCount"] == 0
    assert v2["IsTruncated"] is False
    assert "Contents" not in v2
    assert "NextContinuationToken" not in v2
    assert v2["MaxKeys"] == 1000
    v1 = s3.list_objects(Bucket=bucket)
    assert v1["IsTruncated"] is False
    assert "Contents" not in v1
    uploads = s3.list_multipart_uploads(Bucket=bucket)
    assert uploads["IsTruncated"] is False
    assert "Uploads" not in uploads
    assert uploads["MaxUploads"] == 1000
    root = _xml(_raw_get(s3node, bucket, {"list-type": "2"}))
    assert root.tag == NS + "ListBucketResult"
    assert _text(root, "Name") == bucket
    assert _text(root, "KeyCount") == "0"
    assert _text(root, "IsTruncated") == "false"


def test_listing_an_unknown_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="no-such-bucket-for-listing")
    assert _code(exc) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket="no-such-bucket-for-listing")
    assert _code(exc) == ("NoSuchBucket", 404)


def test_foreign_continuation_token_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    for token in ["garbage", "[not base64!", "]" + "\u00e9"]:
        with pytest.raises(ClientError) as exc:
            s3.list_objects_v2(Bucket=bucket, ContinuationToken=token)
        assert _code(exc) == ("InvalidArgument", 400)
    assert _all_keys(s3, bucket) == ["k"]


def test_invalid_encoding_type_is_refused(s3node: S3Node, bucket: str) -> None:
    r = _raw_get(s3node, bucket, {"list-type": "2", "encoding-type": "base64"})
    assert r.status_code == 400
    assert "<Code>InvalidArgument</Code>" in r.text


# ---------------------------------------------------------------------- object listings


def test_entries_carry_size_etag_date_and_storage_class(s3: Any, bucket: str) -> None:
    bodies = {"a": b"", "b": b"hello", "c": b"x" * 5000}  # empty, inline, in a block
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    for listing in (s3.list_objects_v2(Bucket=bucket), s3.list_objects(Bucket=bucket)):
        contents = listing["Contents"]
        assert [c["Key"] for c in contents] == ["a", "b", "c"]
        for c in contents:
            body = bodies[c["Key"]]
            assert c["Size"] == len(body)
            assert c["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
            assert c["StorageClass"] == "STANDARD"
            head = s3.head_object(Bucket=bucket, Key=c["Key"])
            # The listing has milliseconds, the Last-Modified header whole seconds.
            assert c["LastModified"].replace(microsecond=0) == head["LastModified"]


def test_owner_in_v1_and_with_fetch_owner(s3: Any, s3node: S3Node, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.list_objects(Bucket=bucket)["Contents"][0]["Owner"]["ID"] == s3node.key_id
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    with_owner = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
    assert with_owner["Owner"]["ID"] == s3node.key_id


def test_checksum_algorithm_is_listed(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="sha", Body=b"data", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="crc", Body=b"data", ChecksumAlgorithm="CRC32C")
    by_key = {c["Key"]: c for c in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert by_key["sha"]["ChecksumAlgorithm"] == ["SHA256"]
    assert by_key["crc"]["ChecksumAlgorithm"] == ["CRC32C"]


def test_max_keys_zero_is_an_empty_complete_page(s3: Any, s3node: S3Node, bucket: str) -> None:
    _put_keys(s3, bucket, ["a", "b", "c"])
    v2 = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert v2["KeyCount"] == 0
    assert v2["MaxKeys"] == 0
    assert v2["IsTruncated"] is False
    assert "Contents" not in v2
    assert "NextContinuationToken" not in v2
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=0)
    assert v1["IsTruncated"] is False
    assert "Contents" not in v1
    assert "NextMarker" not in v1
    root = _xml(_raw_get(s3node, bucket, {"list-type": "2", "max-keys": "0"}))
    assert _text(root, "MaxKeys") == "0"
    assert _text(root, "KeyCount") == "0"


def test_max_keys_over_1000_is_clamped(s3: Any, big_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=big_bucket, MaxKeys=5000)
    assert page["MaxKeys"] == 1000
    assert page["KeyCount"] == 1000
    assert page["IsTruncated"] is True


def test_2500_keys_v2_in_pages_of_1000(s3: Any, big_bucket: str) -> None:
    first = s3.list_objects_v2(Bucket=big_bucket)
    assert first["KeyCount"] == 1000
    assert first["IsTruncated"] is True
    assert [c["Key"] for c in first["Contents"]] == BIG_KEYS[:1000]
    pages = _pages(s3, "list_objects_v2", Bucket=big_bucket)
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    assert "NextContinuationToken" not in pages[-1]
    assert _listed_keys(pages) == BIG_KEYS


def test_2500_keys_v1_in_pages_of_1000(s3: Any, big_bucket: str) -> None:
    first = s3.list_objects(Bucket=big_bucket)
    assert first["IsTruncated"] is True
    assert first["NextMarker"] == BIG_KEYS[999]
    pages = _pages(s3, "list_objects", Bucket=big_bucket)
    assert [len(p["Contents"]) for p in pages] == [1000, 1000, 500]
    assert _listed_keys(pages) == BIG_KEYS
    # Resuming from an explicit marker.
    rest = s3.list_objects(Bucket=big_bucket, Marker=BIG_KEYS[2450])
    assert [c["Key"] for c in rest["Contents"]] == BIG_KEYS[2451:]
    assert rest["Marker"] == BIG_KEYS[2450]
    assert rest["IsTruncated"] is False


@pytest.mark.parametrize("operation", ["list_objects_v2", "list_objects"])
def test_2500_keys_in_pages_of_7(s3: Any, big_bucket: str, operation: str) -> None:
    pages = _pages(s3, operation, Bucket=big_bucket, PaginationConfig={"PageSize": 7})
    assert len(pages) == -(-2500 // 7)
    assert all(len(p["Contents"]) == 7 for p in pages[:-1])
    assert _listed_keys(pages) == BIG_KEYS


def test_big_directories_roll_up_in_one_page(s3: Any, big_bucket: str) -> None:
    # Three common prefixes stand for 2,500 keys: one request, not truncated.
    page = s3.list_objects_v2(Bucket=big_bucket, Delimiter="/")
    assert [cp["Prefix"] for cp in page["CommonPrefixes"]] == ["d0/", "d1/", "d2/"]
    assert page["KeyCount"] == 3
    assert page["IsTruncated"] is False
    assert "Contents" not in page
    # One prefix per page: the next page starts after the whole directory.
    for operation in ("list_objects_v2", "list_objects"):
        pages = _pages(
            s3, operation, Bucket=big_bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
        )
        assert _listed_prefixes(pages) == ["d0/", "d1/", "d2/"]
        assert _listed_keys(pages) == []
    inside = s3.list_objects_v2(Bucket=big_bucket, Prefix="d2/", Delimiter="/")
    assert [c["Key"] for c in inside["Contents"]] == BIG_KEYS[2000:]
    assert inside["IsTruncated"] is False


NESTED_KEYS = [
    "a.txt",
    "photos/2020/feb/2.jpg",
    "photos/2020/jan/1.jpg",
    "photos/2020/jan/3.jpg",
    "photos/2021/x.jpg",
    "photos/top.jpg",
    "photos0",
    "videos/v.mp4",
    "z",
]


@pytest.mark.parametrize(
    ("prefix", "keys", "prefixes"),
    [
        ("", ["a.txt", "photos0", "z"], ["photos/", "videos/"]),
        ("photos/", ["photos/top.jpg"], ["photos/2020/", "photos/2021/"]),
        ("photos/2020/", [], ["photos/2020/feb/", "photos/2020/jan/"]),
        ("photos/2020/jan/", ["photos/2020/jan/1.jpg", "photos/2020/jan/3.jpg"], []),
        ("photos", ["photos0"], ["photos/"]),
        ("nothing/", [], []),
    ],
)
def test_prefix_and_delimiter(
    s3: Any, bucket: str, prefix: str, keys: list[str], prefixes: list[str]
) -> None:
    _put_keys(s3, bucket, NESTED_KEYS)
    for operation in ("list_objects_v2", "list_objects"):
        whole = getattr(s3, operation)(Bucket=bucket, Prefix=prefix, Delimiter="/")
        assert [c["Key"] for c in whole.get("Contents", [])] == keys
        assert [cp["Prefix"] for cp in whole.get("CommonPrefixes", [])] == prefixes
        assert whole["Prefix"] == prefix
        assert whole["Delimiter"] == "/"
        # Paged one entry at a time, every entry comes exactly once.
        for size in (1, 2):
            pages = _pages(
                s3,
                operation,
                Bucket=bucket,
                Prefix=prefix,
                Delimiter="/",
                PaginationConfig={"PageSize": size},
            )
            assert _listed_keys(pages) == keys
            assert _listed_prefixes(pages) == prefixes
    # Without a delimiter, a prefix is a plain filter.
    flat = _listed_keys(_pages(s3, "list_objects_v2", Bucket=bucket, Prefix=prefix))
    assert flat == [k for k in NESTED_KEYS if k.startswith(prefix)]


def test_v1_next_marker_is_a_common_prefix(s3: Any, s3node: S3Node, bucket: str) -> None:
    _put_keys(s3, bucket, NESTED_KEYS)
    root = _xml(_raw_get(s3node, bucket, {"delimiter": "/", "max-keys": "2"}))
    assert _texts(root, "Contents/Key") == ["a.txt"]
    assert _texts(root, "CommonPrefixes/Prefix") == ["photos/"]
    assert _text(root, "NextMarker") == "photos/"
    assert _text(root, "IsTruncated") == "true"
    nxt = _xml(_raw_get(s3node, bucket, {"delimiter": "/", "marker": "photos/"}))
    assert _texts(nxt, "Contents/Key") == ["photos0", "z"]
    assert _texts(nxt, "CommonPrefixes/Prefix") == ["videos/"]
    assert _text(nxt, "Marker") == "photos/"


def test_start_after(s3: Any, bucket: str) -> None:
    _put_keys(s3, bucket, ["a", "b", "c", "d", "x/1", "x/2"])
    page = s3.list_objects_v2(Bucket=bucket, StartAfter="b")
    assert [c["Key"] for c in page["Contents"]] == ["c", "d", "x/1", "x/2"]
    assert page["StartAfter"] == "b"
    between = s3.list_objects_v2(Bucket=bucket, StartAfter="bb")
    assert [c["Key"] for c in between["Contents"]] == ["c", "d", "x/1", "x/2"]
    in_prefix = s3.list_objects_v2(Bucket=bucket, Prefix="x/", StartAfter="x/1")
    assert [c["Key"] for c in in_prefix["Contents"]] == ["x/2"]
    before_prefix = s3.list_objects_v2(Bucket=bucket, Prefix="x/", StartAfter="a")
    assert [c["Key"] for c in before_prefix["Contents"]] == ["x/1", "x/2"]
    after_all = s3.list_objects_v2(Bucket=bucket, StartAfter="z")
    assert after_all["KeyCount"] == 0
    # Pages after start-after, with a delimiter.
    pages = _pages(
        s3,
        "list_objects_v2",
        Bucket=bucket,
        StartAfter="b",
        Delimiter="/",
        PaginationConfig={"PageSize": 1},
    )
    assert _listed_keys(pages) == ["c", "d"]
    assert _listed_prefixes(pages) == ["x/"]


def test_encoding_type_url_with_odd_keys(s3: Any, s3node: S3Node, bucket: str) -> None:
    _put_keys(s3, bucket, ODD_KEYS)
    expected = sorted(ODD_KEYS)
    # boto3 asks for encoding-type=url and decodes: the keys come back as they were.
    assert _all_keys(s3, bucket) == expected
    assert _listed_keys(_pages(s3, "list_objects", Bucket=bucket)) == expected
    pages = _pages(s3, "list_objects_v2", Bucket=bucket, PaginationConfig={"PageSize": 1})
    assert _listed_keys(pages) == expected
    v1_pages = _pages(s3, "list_objects", Bucket=bucket, PaginationConfig={"PageSize": 1})
    assert _listed_keys(v1_pages) == expected
    uni = s3.list_objects_v2(Bucket=bucket, Prefix="uni/", Delimiter="/")
    assert [c["Key"] for c in uni["Contents"]] == ["uni/ção ✓"]
    assert [cp["Prefix"] for cp in uni["CommonPrefixes"]] == ["uni/日本語/"]
    # On the wire: percent-encoded UTF-8, `/` kept.
    root = _xml(_raw_get(s3node, bucket, {"list-type": "2", "encoding-type": "url"}))
    assert _text(root, "EncodingType") == "url"
    keys = _texts(root, "Contents/Key")
    assert "with%20space" in keys
    assert "plus%2Bsign" in keys
    assert "percent%25" in keys
    assert "percent%2525" in keys
    assert "uni/%C3%A7%C3%A3o%20%E2%9C%93" in keys
    # Without it, the XML carries the keys themselves (escaped as XML).
    plain = _xml(_raw_get(s3node, bucket, {"list-type": "2"}))
    assert _text(plain, "EncodingType") is None
    assert _texts(plain, "Contents/Key") == expected


def test_encoding_type_url_encodes_prefix_and_delimiter(s3node: S3Node, bucket: str) -> None:
    params = {"list-type": "2", "encoding-type": "url", "prefix": "a b", "delimiter": "+"}
    root = _xml(_raw_get(s3node, bucket, params))
    assert _text(root, "Prefix") == "a%20b"
    assert _text(root, "Delimiter") == "%2B"


def test_deleted_keys_are_not_listed(s3: Any, bucket: str) -> None:
    keys = [f"k{i}" for i in range(6)]
    _put_keys(s3, bucket, keys)
    s3.delete_object(Bucket=bucket, Key="k1")
    s3.delete_object(Bucket=bucket, Key="k4")
    assert _all_keys(s3, bucket) == ["k0", "k2", "k3", "k5"]
    assert [c["Key"] for c in s3.list_objects(Bucket=bucket)["Contents"]] == [
        "k0",
        "k2",
        "k3",
        "k5",
    ]
    # Pages of 1 step over the deleted keys.
    pages = _pages(s3, "list_objects_v2", Bucket=bucket, PaginationConfig={"PageSize": 1})
    assert _listed_keys(pages) == ["k0", "k2", "k3", "k5"]
    # A deleted key written again is listed again.
    s3.put_object(Bucket=bucket, Key="k1", Body=b"again")
    assert _all_keys(s3, bucket) == ["k0", "k1", "k2", "k3", "k5"]


def test_uploads_in_progress_are_not_objects(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="done", Body=b"v")
    s3.create_multipart_upload(Bucket=bucket, Key="pending")
    assert _all_keys(s3, bucket) == ["done"]


# ---------------------------------------------------------------------- multipart uploads


def _uploads(pages: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]


def test_list_multipart_uploads(s3: Any, s3node: S3Node, bucket: str) -> None:
    created = _create_uploads(s3, bucket, ["a", "a", "a", "dir/b", "dir/c", "e", "dir/sub/f"])
    expected = sorted(created)  # by key, then upload id
    listing = s3.list_multipart_uploads(Bucket=bucket)
    assert _uploads([listing]) == expected
    assert listing["IsTruncated"] is False
    first = listing["Uploads"][0]
    assert first["Initiator"]["ID"] == s3node.key_id
    assert first["Owner"]["ID"] == s3node.key_id
    assert first["StorageClass"] == "STANDARD"
    assert first["Initiated"].year >= 2024
    # Delimiter and prefix.
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in rolled["Uploads"]] == ["a", "a", "a", "e"]
    assert [cp["Prefix"] for cp in rolled["CommonPrefixes"]] == ["dir/"]
    in_dir = s3.list_multipart_uploads(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [u["Key"] for u in in_dir["Uploads"]] == ["dir/b", "dir/c"]
    assert [cp["Prefix"] for cp in in_dir["CommonPrefixes"]] == ["dir/sub/"]
    # Markers: after a key; after one upload of a key.
    after_a = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a")
    assert _uploads([after_a]) == [u for u in expected if u[0] > "a"]
    a_ids = [u for u in expected if u[0] == "a"]
    mid = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a", UploadIdMarker=a_ids[0][1])
    assert _uploads([mid]) == expected[1:]
    assert mid["KeyMarker"] == "a"
    assert mid["UploadIdMarker"] == a_ids[0][1]
    # Garage's extension: upload-id-marker=include starts at the key.
    include = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a", UploadIdMarker="include")
    assert _uploads([include]) == expected
    # Paging, one upload at a time: NextKeyMarker / NextUploadIdMarker resume exactly.
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2)
    assert page["IsTruncated"] is True
    assert (page["NextKeyMarker"], page["NextUploadIdMarker"]) == expected[1]
    pages = _pages(s3, "list_multipart_uploads", Bucket=bucket, PaginationConfig={"PageSize": 1})
    assert _uploads(pages) == expected
    pages = _pages(
        s3,
        "list_multipart_uploads",
        Bucket=bucket,
        Delimiter="/",
        PaginationConfig={"PageSize": 1},
    )
    assert [u[0] for u in _uploads(pages)] == ["a", "a", "a", "e"]
    assert _listed_prefixes(pages) == ["dir/"]


def test_finished_uploads_are_not_listed(s3: Any, bucket: str) -> None:
    (_, aborted), (_, completed), (_, kept) = _create_uploads(s3, bucket, ["x", "y", "z"])
    s3.abort_multipart_upload(Bucket=bucket, Key="x", UploadId=aborted)
    etag = s3.upload_part(Bucket=bucket, Key="y", UploadId=completed, PartNumber=1, Body=b"y")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="y",
        UploadId=completed,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]},
    )
    assert _uploads([s3.list_multipart_uploads(Bucket=bucket)]) == [("z", kept)]
    assert _all_keys(s3, bucket) == ["y"]


def test_upload_listing_with_url_encoding(s3node: S3Node, s3: Any, bucket: str) -> None:
    _create_uploads(s3, bucket, ["with space/x", "plus+"])
    params = {"uploads": "", "encoding-type": "url", "delimiter": "/"}
    root = _xml(_raw_get(s3node, bucket, params))
    assert _texts(root, "Upload/Key") == ["plus%2B"]
    assert _texts(root, "CommonPrefixes/Prefix") == ["with%20space/"]


def test_bad_upload_id_marker(s3: Any, bucket: str) -> None:
    _create_uploads(s3, bucket, ["a"])
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket=bucket, KeyMarker="a", UploadIdMarker="nope")
    assert _code(exc) == ("NoSuchUpload", 404)
    assert len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1


@pytest.mark.slow
def test_1050_uploads_in_pages(s3node: S3Node) -> None:
    s3 = s3node.client(max_pool_connections=16)
    bucket = _fresh_bucket(s3)
    # 300 keys with 3 or 4 uploads each, so that pages end inside a key's uploads.
    keys = [f"up/{i % 300:04d}" for i in range(1050)] + ["top"]
    expected = sorted(_create_uploads(s3, bucket, keys))
    assert len(expected) == 1051
    pages = _pages(s3, "list_multipart_uploads", Bucket=bucket)
    assert [len(p["Uploads"]) for p in pages] == [1000, 51]
    assert pages[0]["IsTruncated"] is True
    assert _uploads(pages) == expected
    pages = _pages(s3, "list_multipart_uploads", Bucket=bucket, PaginationConfig={"PageSize": 7})
    assert len(pages) == -(-1051 // 7)
    assert _uploads(pages) == expected
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [cp["Prefix"] for cp in rolled["CommonPrefixes"]] == ["up/"]
    assert [u["Key"] for u in rolled["Uploads"]] == ["top"]
    in_prefix = _pages(s3, "list_multipart_uploads", Bucket=bucket, Prefix="up/02")
    assert _uploads(in_prefix) == [u for u in expected if u[0].startswith("up/02")]


# ---------------------------------------------------------------------- parts


def _upload_parts(s3: Any, bucket: str, key: str, upload_id: str, numbers: Iterable[int]) -> None:
    def put(n: int) -> None:
        s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=f"part {n}".encode()
        )

    _parallel(put, numbers)


def _parts(pages: Iterable[dict[str, Any]]) -> list[int]:
    return [p["PartNumber"] for page in pages for p in page.get("Parts", [])]


def test_list_parts(s3: Any, s3node: S3Node, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="obj")["UploadId"]
    empty = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert "Parts" not in empty
    assert empty["IsTruncated"] is False
    _upload_parts(s3, bucket, "obj", upload_id, [1, 2, 3, 5])
    # Uploading part 2 again replaces it.
    s3.upload_part(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumber=2, Body=b"new two")
    listing = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert listing["UploadId"] == upload_id
    assert listing["Key"] == "obj"
    assert listing["IsTruncated"] is False
    assert listing["Initiator"]["ID"] == s3node.key_id
    assert listing["StorageClass"] == "STANDARD"
    parts = {p["PartNumber"]: p for p in listing["Parts"]}
    assert sorted(parts) == [1, 2, 3, 5]
    assert parts[2]["ETag"] == f'"{hashlib.md5(b"new two").hexdigest()}"'
    assert parts[2]["Size"] == len(b"new two")
    assert parts[5]["ETag"] == f'"{hashlib.md5(b"part 5").hexdigest()}"'
    # Paging with max-parts and part-number-marker.
    page = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id, MaxParts=2)
    assert _parts([page]) == [1, 2]
    assert page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2
    rest = s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id, PartNumberMarker=2)
    assert _parts([rest]) == [3, 5]
    assert rest["PartNumberMarker"] == 2
    pages = _pages(
        s3, "list_parts", Bucket=bucket, Key="obj", UploadId=upload_id,
        PaginationConfig={"PageSize": 1},
    )  # fmt: skip
    assert _parts(pages) == [1, 2, 3, 5]


def test_list_parts_with_checksums(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    s3.upload_part(
        Bucket=bucket, Key="c", UploadId=upload_id, PartNumber=1, Body=b"abc",
        ChecksumAlgorithm="SHA256",
    )  # fmt: skip
    listing = s3.list_parts(Bucket=bucket, Key="c", UploadId=upload_id)
    assert listing["ChecksumAlgorithm"] == "SHA256"
    want = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    assert listing["Parts"][0]["ChecksumSHA256"] == want
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert uploads[0]["ChecksumAlgorithm"] == "SHA256"


def test_list_parts_of_no_such_upload(s3: Any, bucket: str) -> None:
    (_, live), (_, aborted), (_, completed) = _create_uploads(s3, bucket, ["k", "k2", "k3"])
    s3.upload_part(Bucket=bucket, Key="k", UploadId=live, PartNumber=1, Body=b"one")
    s3.abort_multipart_upload(Bucket=bucket, Key="k2", UploadId=aborted)
    etag = s3.upload_part(Bucket=bucket, Key="k3", UploadId=completed, PartNumber=1, Body=b"3")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k3",
        UploadId=completed,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]},
    )
    cases = [
        ("k", "0" * 64),  # unknown
        ("k", "not-hex"),  # malformed
        ("k", live[:-2]),  # too short
        ("k2", aborted),
        ("k3", completed),
        ("other-key", live),  # the upload of another key
    ]
    for key, upload_id in cases:
        with pytest.raises(ClientError) as exc:
            s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        assert _code(exc) == ("NoSuchUpload", 404), (key, upload_id)
    # The live upload is untouched by all this.
    assert _parts([s3.list_parts(Bucket=bucket, Key="k", UploadId=live)]) == [1]
    assert _uploads([s3.list_multipart_uploads(Bucket=bucket)]) == [("k", live)]


def test_list_parts_bad_arguments(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, PartNumberMarker=10001)
    assert _code(exc) == ("InvalidArgument", 400)
    # max-parts over 1000 is clamped.
    assert (
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=5000)["MaxParts"] == 1000
    )


# An upload of more than 1,000 parts, paged by ListParts and boto3's paginator: in
# tests/api/test_s3_multipart_many_parts.py (one big upload serves both).

"""CopyObject and UploadPartCopy against a running node with boto3, and the range planning of
``garage_model.s3.copy``."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage_model.s3 import VersionBlock
from garage_model.s3.copy import plan_range_copy
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from pathlib import Path

    from tests.api.conftest import S3Node

MiB = 1024 * 1024
_BLOCK_FILE = re.compile(r"[0-9a-f]{64}(\.zst)?")


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _body(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def _block_files(data_dir: Path) -> set[str]:
    """The names of the block files the node stores."""
    return {p.name for p in data_dir.rglob("*") if _BLOCK_FILE.fullmatch(p.name)}


def _absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------------- CopyObject


@pytest.mark.parametrize("size", [10, 3 * MiB + 5], ids=["inline", "blocks"])
def test_copy_within_a_bucket(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(
        Bucket=bucket, Key="src", Body=data, ContentType="text/x-src", Metadata={"a": "1"}
    )
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == put["ETag"] == f'"{_md5(data)}"'
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-src", {"a": "1"})
    assert head["ETag"] == put["ETag"]
    assert _body(s3, bucket, "dst") == data
    # The copy is independent: deleting the source keeps it.
    s3.delete_object(Bucket=bucket, Key="src")
    assert _body(s3, bucket, "dst") == data


def test_copy_across_buckets(s3: Any, bucket: str) -> None:
    other = f"copy-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)
    data = os.urandom(MiB + 1)
    s3.put_object(Bucket=bucket, Key="dir/src key", Body=data)
    s3.copy_object(Bucket=other, Key="x/y", CopySource={"Bucket": bucket, "Key": "dir/src key"})
    assert _body(s3, other, "x/y") == data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=other)["Contents"]] == ["x/y"]


def test_copy_source_as_a_string_with_odd_characters(s3: Any, bucket: str) -> None:
    key = "dir/ünï cödé+%?&.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"odd")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/{key}")
    assert _body(s3, bucket, "copy") == b"odd"


def test_replace_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", ContentType="a/b", Metadata={"x": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="c/d",
        Metadata={"y": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert (head["ContentType"], head["Metadata"]) == ("c/d", {"y": "2"})
    assert head["ETag"] == f'"{_md5(b"data")}"'
    source = s3.head_object(Bucket=bucket, Key="src")
    assert (source["ContentType"], source["Metadata"]) == ("a/b", {"x": "1"})


@pytest.mark.parametrize("size", [100, 3 * MiB + 5], ids=["inline", "blocks"])
def test_self_copy_with_replace_keeps_the_data(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="k", Body=data, Metadata={"v": "1"})
    result = s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )
    assert result["CopyObjectResult"]["ETag"] == f'"{_md5(data)}"'
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"v": "2"}
    assert _body(s3, bucket, "k") == data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


def test_copy_shares_blocks(s3: Any, s3node: S3Node, bucket: str) -> None:
    data = os.urandom(3 * MiB + 100)  # four blocks
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    before = _block_files(s3node.data_dir)
    for n in range(3):
        s3.copy_object(Bucket=bucket, Key=f"copy{n}", CopySource={"Bucket": bucket, "Key": "src"})
    assert _block_files(s3node.data_dir) - before == set()  # no block was written again
    for n in range(3):
        assert _body(s3, bucket, f"copy{n}") == data


def test_copy_of_a_multipart_object(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(10)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="src", ChecksumAlgorithm="SHA1")[
        "UploadId"
    ]
    listing = []
    for number, data in enumerate(parts, start=1):
        out = s3.upload_part(
            Bucket=bucket, Key="src", UploadId=upload_id, PartNumber=number, Body=data,
            ChecksumAlgorithm="SHA1",
        )  # fmt: skip
        listing.append({"PartNumber": number, "ETag": out["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="src", UploadId=upload_id, MultipartUpload={"Parts": listing}
    )
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == done["ETag"]
    assert result["CopyObjectResult"]["ChecksumSHA1"] == done["ChecksumSHA1"]
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert (head["ChecksumSHA1"], head["ChecksumType"]) == (done["ChecksumSHA1"], "COMPOSITE")
    assert _body(s3, bucket, "dst") == b"".join(parts)
    part = s3.get_object(Bucket=bucket, Key="dst", PartNumber=2)
    assert part["Body"].read() == parts[1]


def test_copy_with_a_new_checksum_algorithm(s3: Any, bucket: str) -> None:
    data = os.urandom(2 * MiB + 1)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="SHA256")
    result = s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        ChecksumAlgorithm="CRC32",
    )
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert result["CopyObjectResult"]["ChecksumCRC32"] == crc
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc
    assert "ChecksumSHA256" not in head


def test_copy_source_preconditions(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfMatch='"nope"')
    assert _code(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource=source, CopySourceIfNoneMatch=put["ETag"]
        )
    assert _code(exc) == ("PreconditionFailed", 412)
    later = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfModifiedSince=later)
    assert _code(exc) == ("PreconditionFailed", 412)
    _absent(s3, bucket, "dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfMatch=put["ETag"])
    assert _body(s3, bucket, "dst") == b"data"


def test_missing_sources(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert _code(exc) == ("NoSuchKey", 404)
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="gone")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "gone"})
    assert _code(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="dst", CopySource={"Bucket": "no-such-bucket-x", "Key": "k"}
        )
    assert _code(exc) == ("NoSuchBucket", 404)
    _absent(s3, bucket, "dst")


def test_bad_copy_requests(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src", "VersionId": "ab" * 32},
        )
    assert _code(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            MetadataDirective="MERGE",
        )
    assert _code(exc)[1] == 400
    _absent(s3, bucket, "dst")


# ---------------------------------------------------------------------- UploadPartCopy


def test_upload_part_copy_ranges(s3: Any, s3node: S3Node, bucket: str) -> None:
    data = os.urandom(12 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    source = {"Bucket": bucket, "Key": "src"}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    # Part 1 is five whole blocks; part 2 starts and ends inside blocks; part 3 is the
    # rest of the source.
    ranges = [(0, 5 * MiB - 1), (5 * MiB + 123, 10 * MiB + 456), (10 * MiB + 457, 12 * MiB - 1)]
    before = _block_files(s3node.data_dir)
    listing = []
    for number, (first, last) in enumerate(ranges, start=1):
        out = s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=number,
            CopySource=source, CopySourceRange=f"bytes={first}-{last}",
        )  # fmt: skip
        etag = out["CopyPartResult"]["ETag"]
        assert etag == f'"{_md5(data[first : last + 1])}"'
        listing.append({"PartNumber": number, "ETag": etag})
    # Only the blocks cut by the range ends were stored again: none of part 1, the first
    # and last blocks of part 2, the first block of part 3.
    assert len(_block_files(s3node.data_dir) - before) == 3
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": listing}
    )
    expected = b"".join(data[a : b + 1] for a, b in ranges)
    assert _body(s3, bucket, "dst") == expected
    assert (
        s3.get_object(Bucket=bucket, Key="dst", PartNumber=2)["Body"].read()
        == (data[5 * MiB + 123 : 10 * MiB + 457])
    )


def test_upload_part_copy_of_an_inline_object(s3: Any, bucket: str) -> None:
    big = os.urandom(5 * MiB)
    s3.put_object(Bucket=bucket, Key="small", Body=b"inline tail")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1, Body=big)
    out = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "small"}, CopySourceRange="bytes=7-10",
    )  # fmt: skip
    assert out["CopyPartResult"]["ETag"] == f'"{_md5(b"tail")}"'
    listing = [
        {"PartNumber": 1, "ETag": first["ETag"]},
        {"PartNumber": 2, "ETag": out["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": listing}
    )
    assert _body(s3, bucket, "dst") == big + b"tail"


def test_upload_part_copy_of_a_whole_object_with_checksum(s3: Any, bucket: str) -> None:
    data = os.urandom(5 * MiB + 1)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst", ChecksumAlgorithm="CRC32")[
        "UploadId"
    ]
    out = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
    )  # fmt: skip
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert out["CopyPartResult"]["ChecksumCRC32"] == crc
    tail = s3.upload_part(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2, Body=b"!",
        ChecksumAlgorithm="CRC32",
    )  # fmt: skip
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": out["CopyPartResult"]["ETag"], "ChecksumCRC32": crc},
                {"PartNumber": 2, "ETag": tail["ETag"], "ChecksumCRC32": tail["ChecksumCRC32"]},
            ]
        },
    )
    assert _body(s3, bucket, "dst") == data + b"!"


def test_upload_part_copy_refusals(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    source = {"Bucket": bucket, "Key": "src"}
    for bad in ("bytes=5-10", "bytes=5-4", "bytes=-3", "items=0-1"):
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(
                Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                CopySource=source, CopySourceRange=bad,
            )  # fmt: skip
        assert _code(exc) == ("InvalidArgument", 400), bad
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "nope"},
        )  # fmt: skip
    assert _code(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId="00" * 32, PartNumber=1, CopySource=source
        )
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
            CopySource=source, CopySourceIfMatch='"nope"',
        )  # fmt: skip
    assert _code(exc) == ("PreconditionFailed", 412)
    assert s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id).get("Parts", []) == []


# ---------------------------------------------------------------------- range planning


def _blocks(sizes: list[int]) -> list[VersionBlock]:
    return [VersionBlock(FixedBytes32(bytes([i]) * 32), size) for i, size in enumerate(sizes)]


@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.data())
def test_plan_range_copy_covers_the_range(sizes: list[int], data: st.DataObject) -> None:
    total = sum(sizes)
    start = data.draw(st.integers(0, total - 1))
    end = data.draw(st.integers(start + 1, total))
    blocks = _blocks(sizes)
    pieces = plan_range_copy(blocks, start, end)
    assert sum(p.length for p in pieces) == end - start
    # The pieces, laid out, are exactly the bytes of the range.
    layout = b"".join(bytes([i]) * size for i, size in enumerate(sizes))
    by_hash = {b.hash: bytes([i]) * b.size for i, b in enumerate(blocks)}
    assert b"".join(by_hash[p.hash][p.start : p.end] for p in pieces if p.hash) == layout[start:end]
    # Only the first and the last piece may be cut.
    assert all(p.whole for p in pieces[1:-1])
    assert all(p.length > 0 for p in pieces)


def test_plan_range_copy_refuses_bad_ranges() -> None:
    blocks = _blocks([10, 10])
    assert [p.whole for p in plan_range_copy(blocks, 0, 20)] == [True, True]
    assert [(p.start, p.end) for p in plan_range_copy(blocks, 5, 15)] == [(5, 10), (0, 5)]
    for start, end in ((5, 5), (0, 21), (-1, 3)):
        with pytest.raises(ValueError, match="range"):
            plan_range_copy(blocks, start, end)

"""A multipart upload of more than a thousand parts against a running node, with boto3.

Every UploadPart merges its attempt into the upload's row, which lists every attempt
(design §10.6): this checks that a row of thousands of parts stays whole and consistent
(parts uploaded concurrently, some retried; ListParts pages through all of them, by hand and
with boto3's paginator), that
CompleteMultipartUpload refuses too small parts without losing anything, completes once
the sizes allow, and that an abort removes a big upload cleanly. Speed is measured by
bench/bench_mpu.py, not here.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from garage_model.s3.multipart import MIN_PART_SIZE

pytestmark = pytest.mark.slow

#: Enough for the row to be big (over 100 kB) and for ListParts to need two pages of
#: 1,000 (the most one answer holds): 1,100 part numbers, a few retried.
N_PARTS = 1100
RETRIED = (1, 7, 1000, N_PARTS)
#: Concurrent UploadParts: their attempts merge into the same row on the node.
IN_FLIGHT = 4


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _data(number: int, attempt: int) -> bytes:
    return f"part {number} attempt {attempt}\n".encode() * (1 + number % 3)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


def _upload_parts(s3: Any, bucket: str, key: str, upload_id: str, parts: dict[int, bytes]) -> None:
    def upload(number: int) -> None:
        out = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=parts[number]
        )
        assert out["ETag"] == f'"{_md5(parts[number])}"'

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(upload, sorted(parts)))


def _list_parts(s3: Any, bucket: str, key: str, upload_id: str, page: int) -> list[Any]:
    """Every part of the upload, read ``page`` parts at a time."""
    out: list[Any] = []
    marker = 0
    while True:
        listing = s3.list_parts(
            Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=page, PartNumberMarker=marker
        )
        got = listing.get("Parts", [])
        assert len(got) <= page
        out += got
        if not listing["IsTruncated"]:
            return out
        assert len(got) == page
        marker = listing["NextPartNumberMarker"]
        assert marker == got[-1]["PartNumber"]


def test_over_a_thousand_parts_are_listed_and_completed(s3: Any, bucket: str) -> None:
    key = "many-parts"
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = {n: _data(n, 0) for n in range(1, N_PARTS + 1)}
    _upload_parts(s3, bucket, key, upload_id, parts)
    retries = {n: _data(n, 1) for n in RETRIED}
    _upload_parts(s3, bucket, key, upload_id, retries)
    parts.update(retries)  # the newest attempt of a number is the part

    for page in (1000, 333):
        listed = _list_parts(s3, bucket, key, upload_id, page)
        assert [p["PartNumber"] for p in listed] == list(range(1, N_PARTS + 1))
        assert [p["ETag"] for p in listed] == [f'"{_md5(parts[n])}"' for n in sorted(parts)]
        assert [p["Size"] for p in listed] == [len(parts[n]) for n in sorted(parts)]
    pages = list(
        s3.get_paginator("list_parts").paginate(
            Bucket=bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": 7}
        )
    )
    assert len(pages) == -(-N_PARTS // 7)
    assert [p["PartNumber"] for page in pages for p in page["Parts"]] == list(range(1, N_PARTS + 1))

    everything = [{"PartNumber": n, "ETag": f'"{_md5(parts[n])}"'} for n in sorted(parts)]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": everything}
        )
    assert _code(exc) == "EntityTooSmall"
    # Refused: the upload is still there, with every part.
    assert len(_list_parts(s3, bucket, key, upload_id, 1000)) == N_PARTS

    # Sizes allow: parts 1 and 1000 uploaded again at the minimum size; with the last one
    # (which may be small) they make the object.
    bigger = {1: os.urandom(MIN_PART_SIZE), 1000: os.urandom(MIN_PART_SIZE)}
    _upload_parts(s3, bucket, key, upload_id, bigger)
    parts.update(bigger)
    chosen = (1, 1000, N_PARTS)
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": f'"{_md5(parts[n])}"'} for n in chosen]
        },
    )
    digests = b"".join(hashlib.md5(parts[n], usedforsecurity=False).digest() for n in chosen)
    assert done["ETag"] == f'"{_md5(digests)}-3"'
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"".join(parts[n] for n in chosen)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert upload_id not in [u["UploadId"] for u in uploads]
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert _code(exc) == "NoSuchUpload"


def test_a_big_upload_aborts_cleanly(s3: Any, bucket: str) -> None:
    key = "aborted"
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = {n: _data(n, 0) for n in range(1, 151)}
    _upload_parts(s3, bucket, key, upload_id, parts)
    assert len(_list_parts(s3, bucket, key, upload_id, 1000)) == len(parts)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _code(exc) == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

"""Multipart uploads against a running node with boto3 (CreateMultipartUpload, UploadPart,
CompleteMultipartUpload, AbortMultipartUpload), and the pure rules of
``garage_model.s3.multipart`` (part selection, ETags)."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import TYPE_CHECKING, Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from garage_model.s3 import ChecksumAlgorithm, ChecksumValue, MpuPart, MultipartUpload
from garage_model.s3.multipart import (
    MIN_PART_SIZE,
    EntityTooSmallError,
    InvalidPartError,
    RequestedPart,
    multipart_etag,
    part_count,
    select_parts,
)
from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _expected_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f'"{_md5(digests)}-{len(parts)}"'


def _upload(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> str:
    """Creates an upload and uploads ``parts`` as parts 1..n; returns the upload id."""
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    for number, data in enumerate(parts, start=1):
        out = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        assert out["ETag"] == f'"{_md5(data)}"'
    return upload_id


def _complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes]) -> Any:
    listing = [{"PartNumber": n, "ETag": f'"{_md5(d)}"'} for n, d in enumerate(parts, start=1)]
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listing}
    )


def _absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------------- round trips


def test_three_parts_round_trip(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB + 7)]
    upload_id = _upload(s3, bucket, "big", parts, ContentType="text/x-test")
    assert upload_id in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]]
    _absent(s3, bucket, "big")  # nothing visible before completion

    result = _complete(s3, bucket, "big", upload_id, parts)
    assert result["ETag"] == _expected_etag(parts)
    assert result["Key"] == "big"
    assert result["Bucket"] == bucket

    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == sum(map(len, parts))
    assert head["ETag"] == _expected_etag(parts)
    assert head["ContentType"] == "text/x-test"
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"".join(parts)
    second = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert second["Body"].read() == parts[1]
    assert second["PartsCount"] == 3
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("big", sum(map(len, parts)))]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_reuploading_a_part_replaces_it(s3: Any, bucket: str) -> None:
    first, second, last = os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"
    upload_id = _upload(s3, bucket, "k", [first, last])
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=second)
    # The first attempt's ETag no longer names part 1.
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, [first, last])
    assert _code(exc) == ("InvalidPart", 400)
    _absent(s3, bucket, "k")
    _complete(s3, bucket, "k", upload_id, [second, last])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == second + last


def test_gaps_in_part_numbers_are_allowed(s3: Any, bucket: str) -> None:
    a, b = os.urandom(5 * MiB), os.urandom(10)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etags = {}
    for number, data in ((3, a), (17, b)):
        etags[number] = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in etags.items()]},
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == a + b
    # Parts are renumbered 1..k in list order.
    assert s3.get_object(Bucket=bucket, Key="k", PartNumber=2)["Body"].read() == b


def test_complete_overwrites_an_existing_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    parts = [os.urandom(5 * MiB), b"new"]
    upload_id = _upload(s3, bucket, "k", parts)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"
    _complete(s3, bucket, "k", upload_id, parts)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(parts)


def test_single_small_part(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "one", [b"x"])
    result = _complete(s3, bucket, "one", upload_id, [b"x"])
    assert result["ETag"] == _expected_etag([b"x"])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"x"


# ---------------------------------------------------------------------- refusals


def test_parts_out_of_order(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), b"end"]
    upload_id = _upload(s3, bucket, "k", parts)
    listing = [{"PartNumber": n, "ETag": f'"{_md5(d)}"'} for n, d in ((2, parts[1]), (1, parts[0]))]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listing}
        )
    assert _code(exc) == ("InvalidPartOrder", 400)
    _absent(s3, bucket, "k")
    _complete(s3, bucket, "k", upload_id, parts)  # the upload is still usable
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"".join(parts)


def test_wrong_etag(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "k", [b"data"])
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f'"{_md5(b"other")}"'}]},
        )
    assert _code(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:  # a part never uploaded
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": f'"{_md5(b"data")}"'}]},
        )
    assert _code(exc) == ("InvalidPart", 400)
    _absent(s3, bucket, "k")
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [
        upload_id
    ]


def test_small_part_that_is_not_the_last(s3: Any, bucket: str) -> None:
    parts = [os.urandom(MiB), os.urandom(5 * MiB)]
    upload_id = _upload(s3, bucket, "k", parts)
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, parts)
    assert _code(exc) == ("EntityTooSmall", 400)
    _absent(s3, bucket, "k")


def test_abort_then_upload_part(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "k", [b"data"])
    assert (
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)["ResponseMetadata"][
            "HTTPStatusCode"
        ]
        == 204
    )
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, [b"data"])
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert _code(exc) == ("NoSuchUpload", 404)
    _absent(s3, bucket, "k")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("upload_id", ["nothex", "00" * 32, "ab" * 16])
def test_unknown_upload_ids(s3: Any, bucket: str, upload_id: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert _code(exc) == ("NoSuchUpload", 404)


def test_upload_id_of_another_key(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "a", [b"data"])
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="b", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert _code(exc) == ("NoSuchUpload", 404)


def test_complete_twice(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "k", [b"data"])
    first = _complete(s3, bucket, "k", upload_id, [b"data"])
    # Garage answers NoSuchUpload once the upload is complete; the object is untouched.
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, [b"data"])
    assert _code(exc) == ("NoSuchUpload", 404)
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ETag"] == first["ETag"]


def test_conditional_complete_is_not_implemented(s3: Any, bucket: str) -> None:
    upload_id = _upload(s3, bucket, "k", [b"data"])
    listing = [{"PartNumber": 1, "ETag": f'"{_md5(b"data")}"'}]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": listing},
            IfNoneMatch="*",
        )
    assert _code(exc) == ("NotImplemented", 501)
    assert "conditional writes are not supported yet" in exc.value.response["Error"]["Message"]
    _absent(s3, bucket, "k")


def test_empty_part_is_refused(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"")
    assert _code(exc) == ("InvalidRequest", 400)
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert listed.get("Parts", []) == []


def test_bad_part_checksum_stores_nothing(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")[
        "UploadId"
    ]
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"data",
            ChecksumCRC32=wrong,
        )  # fmt: skip
    assert _code(exc) == ("BadDigest", 400)
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id).get("Parts", []) == []


def test_part_of_another_algorithm_is_refused(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"data",
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
    assert _code(exc) == ("InvalidRequest", 400)


# ---------------------------------------------------------------------- checksums


def test_composite_checksum(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    listing = []
    for number, data in enumerate(parts, start=1):
        out = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=data,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert out["ChecksumSHA256"] == digest
        listing.append({"PartNumber": number, "ETag": out["ETag"], "ChecksumSHA256": digest})
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    expected = f"{base64.b64encode(composite).decode()}-2"
    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listing}
    )
    assert result["ChecksumSHA256"] == expected
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected
    assert head["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")["Body"].read()
    assert got == b"".join(parts)


def test_part_checksum_computed_when_not_sent(s3: Any, bucket: str, s3node: Any) -> None:
    # A client that does not send part checksums (botocore with checksums "when required")
    # still gets a composite checksum of the upload's algorithm, computed by the server.
    plain = s3node.client(request_checksum_calculation="when_required")
    parts = [os.urandom(5 * MiB), b"tail"]
    upload_id = plain.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C")[
        "UploadId"
    ]
    listing = []
    for number, data in enumerate(parts, start=1):
        out = plain.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=data
        )
        listing.append({"PartNumber": number, "ETag": out["ETag"]})
    result = plain.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": listing}
    )
    assert result["ChecksumCRC32C"].endswith("-2")
    assert result["ChecksumType"] == "COMPOSITE"


def test_full_object_crc32(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), os.urandom(77)]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    listing = []
    for number, data in enumerate(parts, start=1):
        out = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number, Body=data,
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
        listing.append({"PartNumber": number, "ETag": out["ETag"]})
    whole = base64.b64encode(zlib.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
    result = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=upload_id,
        MultipartUpload={"Parts": listing},
        ChecksumCRC32=whole,
        ChecksumType="FULL_OBJECT",
    )
    assert result["ChecksumCRC32"] == whole
    assert result["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (whole, "FULL_OBJECT")
    # botocore checks the body against the full-object CRC it is given.
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")["Body"].read()
    assert got == b"".join(parts)


def test_wrong_full_object_checksum_on_complete(s3: Any, bucket: str) -> None:
    parts = [os.urandom(100)]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    etag = s3.upload_part(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=parts[0],
        ChecksumAlgorithm="CRC32",
    )["ETag"]  # fmt: skip
    wrong = base64.b64encode(zlib.crc32(b"nope").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            ChecksumCRC32=wrong,
            ChecksumType="FULL_OBJECT",
        )
    assert _code(exc) == ("BadDigest", 400)
    _absent(s3, bucket, "k")


def test_invalid_checksum_type_is_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(
            Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"
        )
    assert _code(exc) == ("InvalidRequest", 400)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("extra", [{"ChecksumAlgorithm": "CRC32"}, {}], ids=["crc32", "default"])
def test_upload_file_40_mib(s3: Any, bucket: str, tmp_path: Path, extra: dict[str, str]) -> None:
    data = os.urandom(40 * MiB)
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_file(str(source), bucket, "file", ExtraArgs=extra, Config=config)
    head = s3.head_object(Bucket=bucket, Key="file", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-5"')
    assert head["ChecksumCRC32"].endswith("-5")  # boto3 defaults to composite CRC32
    s3.download_file(bucket, "file", str(target), Config=config)
    assert target.read_bytes() == data


# ---------------------------------------------------------------------- pure rules


def _mpu(*parts: tuple[int, int, MpuPart]) -> MultipartUpload:
    mpu = MultipartUpload.new(FixedBytes32(b"u" * 32), 1, FixedBytes32(b"b" * 32), "k")
    for number, ts, part in parts:
        mpu = mpu.with_part(number, ts, part)
    return mpu


def _part(tag: bytes, size: int | None = MIN_PART_SIZE, etag: str | None = None) -> MpuPart:
    return MpuPart(FixedBytes32(tag * 32), etag or _md5(tag), None, size)


def test_select_parts_takes_the_newest_finished_attempt() -> None:
    mpu = _mpu(
        (1, 10, _part(b"a")),
        (1, 20, _part(b"b")),
        (1, 30, MpuPart(FixedBytes32(b"c" * 32))),  # in progress: not a candidate
        (2, 10, _part(b"d", size=1)),
    )
    chosen = select_parts(mpu, [RequestedPart(1, _md5(b"b")), RequestedPart(2, _md5(b"d"))])
    assert [s.part.version for s in chosen] == [FixedBytes32(b"b" * 32), FixedBytes32(b"d" * 32)]
    with pytest.raises(InvalidPartError):
        select_parts(mpu, [RequestedPart(1, _md5(b"a"))])  # an older attempt
    with pytest.raises(InvalidPartError):
        select_parts(mpu, [RequestedPart(3, _md5(b"a"))])  # never uploaded
    mpu = mpu.with_part(3, 10, _part(b"x", size=1))
    with pytest.raises(EntityTooSmallError):  # part 2 is small and not the last
        select_parts(mpu, [RequestedPart(2, _md5(b"d")), RequestedPart(3, _md5(b"x"))])
    assert select_parts(mpu, [RequestedPart(1, _md5(b"b")), RequestedPart(3, _md5(b"x"))])


def test_select_parts_checks_checksums_of_the_upload_algorithm() -> None:
    good = ChecksumValue(ChecksumAlgorithm.CRC32, b"\x00\x00\x00\x01")
    bad = ChecksumValue(ChecksumAlgorithm.CRC32, b"\x00\x00\x00\x02")
    other = ChecksumValue(ChecksumAlgorithm.CRC32C, b"\x00\x00\x00\x02")
    part = MpuPart(FixedBytes32(b"a" * 32), _md5(b"a"), good, 10)
    mpu = _mpu((1, 1, part))
    crc = ChecksumAlgorithm.CRC32
    assert select_parts(mpu, [RequestedPart(1, _md5(b"a"), good)], algorithm=crc)
    assert select_parts(mpu, [RequestedPart(1, _md5(b"a"))], algorithm=crc)
    assert select_parts(mpu, [RequestedPart(1, _md5(b"a"), other)], algorithm=crc)
    with pytest.raises(InvalidPartError):
        select_parts(mpu, [RequestedPart(1, _md5(b"a"), bad)], algorithm=crc)


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20))
def test_multipart_etag_is_md5_of_binary_md5s(chunks: list[bytes]) -> None:
    etag = multipart_etag([_md5(c) for c in chunks])
    assert f'"{etag}"' == _expected_etag(chunks)
    assert part_count(etag) == len(chunks)
    assert part_count(_md5(chunks[0])) is None

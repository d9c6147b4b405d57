"""SSE-C (customer-provided keys) against a running node, with boto3 (``SSECustomerKey``).

Objects stored with a key need it for every read (GET, HEAD, copy source) and every part;
a missing key is ``400 InvalidRequest``, a wrong one ``403 AccessDenied`` (as AWS); the
stored bytes (blocks, inline data, headers) are never the plaintext. Garage's own test
(src/garage/tests/s3/ssec.rs) is the model for the multipart and copy scenarios.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.api.conftest import S3Node

MiB = 1024 * 1024
#: The bodies of requests refused before their body is read stay under botocore's 1 MB
#: ``Expect: 100-continue`` threshold: a refused 100-continue request currently holds the
#: node's graceful stop for its whole 30 s timeout (garage_api.http drains a body the
#: client was never told to send), which is not what these tests are about.
REFUSED_BODY = 1000
#: Every part of a multipart upload but the last holds at least this much (S3's limit).
PART = 5 * MiB
KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))


def _sse(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def _copy_sse(key: bytes) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def _b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    status: int = exc.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return status


def _get(s3: Any, bucket: str, key: str, sse_key: bytes | None, **kw: Any) -> bytes:
    extra = {} if sse_key is None else _sse(sse_key)
    data: bytes = s3.get_object(Bucket=bucket, Key=key, **extra, **kw)["Body"].read()
    return data


def _data(size: int, *, compressible: bool = False) -> bytes:
    if not compressible:
        return os.urandom(size)
    line = b"SSE-C compresses first, then encrypts: zstd never sees ciphertext. "
    return (line * (size // len(line) + 1))[:size]


def _assert_echo(response: dict[str, Any], key: bytes) -> None:
    assert response["SSECustomerAlgorithm"] == "AES256"
    assert response["SSECustomerKeyMD5"] == _b64_md5(key)


def _assert_needs_key(s3: Any, bucket: str, key: str, right: bytes, wrong: bytes) -> None:
    """GET and HEAD need ``right``: none is 400 InvalidRequest, another is 403."""
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key)
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert _status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, **_sse(wrong))
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key, **_sse(wrong))
    assert _status(exc) == 403
    s3.head_object(Bucket=bucket, Key=key, **_sse(right))


# ---------------------------------------------------------------------- put, get, head


@pytest.mark.parametrize("compressible", [False, True], ids=["random", "text"])
@pytest.mark.parametrize(
    "size",
    [0, 1000, 3071, 3072, 2 * MiB + 12345],
    ids=["empty", "inline", "3071", "3072", "blocks"],
)
def test_put_get_head_round_trip(s3: Any, bucket: str, size: int, compressible: bool) -> None:
    data = _data(size, compressible=compressible)
    put = s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=data,
        ContentType="text/x-secret",
        Metadata={"colour": "blue"},
        **_sse(KEY1),
    )
    _assert_echo(put, KEY1)
    etag = put["ETag"].strip('"')
    # AWS: the ETag of an SSE-C object is not the MD5 of its data (which would leak it).
    assert re.fullmatch(r"[0-9a-f]{32}", etag)
    assert etag != _md5(data)

    got = s3.get_object(Bucket=bucket, Key="k", **_sse(KEY1))
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]
    assert (got["ContentType"], got["Metadata"]) == ("text/x-secret", {"colour": "blue"})
    _assert_echo(got, KEY1)
    head = s3.head_object(Bucket=bucket, Key="k", **_sse(KEY1))
    assert head["ContentLength"] == size
    assert (head["ContentType"], head["Metadata"]) == ("text/x-secret", {"colour": "blue"})
    _assert_echo(head, KEY1)
    # Listings need no key and show the plaintext size.
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("k", size, put["ETag"])]
    _assert_needs_key(s3, bucket, "k", KEY1, KEY2)


@pytest.mark.parametrize("compressible", [False, True], ids=["random", "text"])
def test_ranges(s3: Any, bucket: str, compressible: bool) -> None:
    data = _data(3 * MiB + 777, compressible=compressible)
    s3.put_object(Bucket=bucket, Key="big", Body=data, **_sse(KEY1))
    small = _data(2500, compressible=compressible)
    s3.put_object(Bucket=bucket, Key="small", Body=small, **_sse(KEY1))
    ranges = [
        (0, 0),
        (10, 5000),
        (4095, 4096),  # across a STREAM chunk boundary
        (4096, 8191),  # exactly one chunk
        (MiB - 10, MiB + 10),  # across a block boundary
        (MiB, 2 * MiB - 1),  # exactly one block
        (2 * MiB + 3, len(data) - 1),  # to the end
    ]
    for start, end in ranges:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{end}", **_sse(KEY1))
        assert got["Body"].read() == data[start : end + 1], (start, end)
        assert got["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    assert _get(s3, bucket, "big", KEY1, Range="bytes=-100") == data[-100:]
    assert _get(s3, bucket, "small", KEY1, Range="bytes=100-199") == small[100:200]
    assert _get(s3, bucket, "big", KEY1, PartNumber=1) == data
    # A range without the key is refused like a whole GET.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-10")
    assert _code(exc) == ("InvalidRequest", 400)


def test_key_for_a_plaintext_object_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"in clear")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="plain", **_sse(KEY1))
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="plain", **_sse(KEY1))
    assert _status(exc) == 400
    assert _get(s3, bucket, "plain", None) == b"in clear"


@pytest.mark.parametrize("size", [100, 2 * MiB], ids=["inline", "blocks"])
def test_bad_key_headers_store_nothing(s3: Any, bucket: str, size: int) -> None:
    old = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="k", Body=old, **_sse(KEY1))
    new = os.urandom(REFUSED_BODY)
    bad_md5 = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(KEY2).decode(),
        "SSECustomerKeyMD5": _b64_md5(KEY1),
    }
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=new, **bad_md5)
    assert _code(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket, Key="k", Body=new, SSECustomerAlgorithm="AES128", SSECustomerKey=KEY2
        )
    assert _code(exc) == ("InvalidEncryptionAlgorithmError", 400)
    with pytest.raises(ClientError) as exc:  # an algorithm without a key
        s3.put_object(Bucket=bucket, Key="k", Body=new, SSECustomerAlgorithm="AES256")
    assert _code(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="fresh", Body=new, **bad_md5)
    assert _code(exc) == ("InvalidArgument", 400)
    assert _get(s3, bucket, "k", KEY1) == old
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


def test_overwrite_with_another_key(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", **_sse(KEY1))
    s3.put_object(Bucket=bucket, Key="k", Body=b"two" * 2000, **_sse(KEY2))
    assert _get(s3, bucket, "k", KEY2) == b"two" * 2000
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", **_sse(KEY1))
    assert _code(exc) == ("AccessDenied", 403)
    s3.put_object(Bucket=bucket, Key="k", Body=b"three")
    assert _get(s3, bucket, "k", None) == b"three"


# ---------------------------------------------------------------------- multipart


def test_multipart_upload(s3: Any, bucket: str) -> None:
    part1, part2 = os.urandom(PART), os.urandom(MiB + 3)
    created = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **_sse(KEY1))
    _assert_echo(created, KEY1)
    upload_id = created["UploadId"]
    common = {"Bucket": bucket, "Key": "mpu", "UploadId": upload_id}
    up1 = s3.upload_part(PartNumber=1, Body=part1, **common, **_sse(KEY1))
    _assert_echo(up1, KEY1)
    assert up1["ETag"].strip('"') != _md5(part1)

    # A part must come with the upload's key: nothing is stored otherwise.
    refused = os.urandom(REFUSED_BODY)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(PartNumber=2, Body=refused, **common)
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(PartNumber=2, Body=refused, **common, **_sse(KEY2))
    assert _code(exc) == ("AccessDenied", 403)
    listed = s3.list_parts(**common)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, up1["ETag"])]

    up2 = s3.upload_part(PartNumber=2, Body=part2, **common, **_sse(KEY1))
    done = s3.complete_multipart_upload(
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": up1["ETag"]},
                {"PartNumber": 2, "ETag": up2["ETag"]},
            ]
        },
        **common,
    )
    assert done["ETag"].endswith('-2"')
    assert _get(s3, bucket, "mpu", KEY1) == part1 + part2
    assert _get(s3, bucket, "mpu", KEY1, PartNumber=2) == part2
    assert _get(s3, bucket, "mpu", KEY1, Range=f"bytes={PART - 5}-{PART + 5}") == (
        part1[-5:] + part2[:6]
    )
    head = s3.head_object(Bucket=bucket, Key="mpu", **_sse(KEY1))
    assert (head["ContentLength"], head["ETag"]) == (PART + MiB + 3, done["ETag"])
    _assert_needs_key(s3, bucket, "mpu", KEY1, KEY2)


def test_multipart_upload_with_checksum_needs_the_key_to_complete(s3: Any, bucket: str) -> None:
    part1, part2 = os.urandom(PART), os.urandom(1000)
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="mpu", ChecksumAlgorithm="SHA256", **_sse(KEY1)
    )
    common = {"Bucket": bucket, "Key": "mpu", "UploadId": created["UploadId"]}
    parts = []
    for number, body in ((1, part1), (2, part2)):
        up = s3.upload_part(
            PartNumber=number, Body=body, ChecksumAlgorithm="SHA256", **common, **_sse(KEY1)
        )
        parts.append(
            {"PartNumber": number, "ETag": up["ETag"], "ChecksumSHA256": up["ChecksumSHA256"]}
        )
    # The checksum type and the object checksum live in the encrypted headers.
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(MultipartUpload={"Parts": parts}, **common)
    assert _code(exc) == ("InvalidRequest", 400)
    assert [p["PartNumber"] for p in s3.list_parts(**common)["Parts"]] == [1, 2]
    s3.complete_multipart_upload(MultipartUpload={"Parts": parts}, **common, **_sse(KEY1))
    head = s3.head_object(Bucket=bucket, Key="mpu", ChecksumMode="ENABLED", **_sse(KEY1))
    assert head["ChecksumSHA256"].endswith("-2")
    assert _get(s3, bucket, "mpu", KEY1) == part1 + part2


def test_upload_part_copy_between_keys(s3: Any, bucket: str) -> None:
    """Nextcloud's pattern: UploadPartCopy from SSE-C sources into an SSE-C upload."""
    a = os.urandom(PART + 1000)  # KEY1, blocks: re-encrypted, cut at the range's ends
    c = os.urandom(PART + 50)  # KEY2, the upload's key: its whole blocks are reused
    d = os.urandom(2000)  # KEY1, inline
    plain = os.urandom(PART)  # in clear: encrypted on the way in
    s3.put_object(Bucket=bucket, Key="a", Body=a, **_sse(KEY1))
    s3.put_object(Bucket=bucket, Key="c", Body=c, **_sse(KEY2))
    s3.put_object(Bucket=bucket, Key="d", Body=d, **_sse(KEY1))
    s3.put_object(Bucket=bucket, Key="plain", Body=plain)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="target", **_sse(KEY2))["UploadId"]
    common = {"Bucket": bucket, "Key": "target", "UploadId": upload_id}

    def copy(number: int, source: str, source_key: bytes | None, **kw: Any) -> str:
        extra = {} if source_key is None else _copy_sse(source_key)
        result = s3.upload_part_copy(
            PartNumber=number,
            CopySource={"Bucket": bucket, "Key": source},
            **common,
            **extra,
            **_sse(KEY2),
            **kw,
        )
        _assert_echo(result, KEY2)
        etag: str = result["CopyPartResult"]["ETag"]
        return etag

    # Refusals first: no source key, a wrong source key, a wrong upload key.
    with pytest.raises(ClientError) as exc:
        copy(1, "a", None)
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        copy(1, "a", KEY2)
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "a"},
            **common,
            **_copy_sse(KEY1),
            **_sse(KEY1),
        )
    assert _code(exc) == ("AccessDenied", 403)
    assert s3.list_parts(**common).get("Parts", []) == []

    etags = [
        copy(1, "a", KEY1, CopySourceRange=f"bytes=500-{500 + PART - 1}"),
        copy(2, "c", KEY2),
        copy(3, "plain", None),
        copy(4, "d", KEY1, CopySourceRange="bytes=100-1100"),
    ]
    assert len(set(etags)) == 4
    s3.complete_multipart_upload(
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
        **common,
    )
    expected = a[500 : 500 + PART] + c + plain + d[100:1101]
    assert _get(s3, bucket, "target", KEY2) == expected
    # The sources are untouched, and the copy stands without them.
    assert _get(s3, bucket, "a", KEY1) == a
    for key in ("a", "c", "d", "plain"):
        s3.delete_object(Bucket=bucket, Key=key)
    assert _get(s3, bucket, "target", KEY2, Range=f"bytes={PART}-{2 * PART + 49}") == c
    _assert_needs_key(s3, bucket, "target", KEY2, KEY1)


# ---------------------------------------------------------------------- CopyObject


@pytest.mark.parametrize("size", [2000, 2 * MiB + 5], ids=["inline", "blocks"])
def test_copy_object_re_encrypts(s3: Any, bucket: str, size: int) -> None:
    data = os.urandom(size)
    src = {"Bucket": bucket, "Key": "src"}
    put = s3.put_object(**src, Body=data, Metadata={"m": "1"}, **_sse(KEY1))

    # To another key: the data is decrypted and written anew.
    result = s3.copy_object(
        Bucket=bucket, Key="k2", CopySource=src, **_copy_sse(KEY1), **_sse(KEY2)
    )
    _assert_echo(result, KEY2)
    assert _get(s3, bucket, "k2", KEY2) == data
    assert s3.head_object(Bucket=bucket, Key="k2", **_sse(KEY2))["Metadata"] == {"m": "1"}
    _assert_needs_key(s3, bucket, "k2", KEY2, KEY1)

    # To plaintext: the ETag is the MD5 again, and no key is needed.
    result = s3.copy_object(Bucket=bucket, Key="plain", CopySource=src, **_copy_sse(KEY1))
    assert "SSECustomerAlgorithm" not in result
    assert result["CopyObjectResult"]["ETag"] == f'"{_md5(data)}"'
    assert _get(s3, bucket, "plain", None) == data
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="plain", **_sse(KEY1))
    assert _code(exc) == ("InvalidRequest", 400)

    # From plaintext to a key.
    s3.copy_object(
        Bucket=bucket, Key="enc", CopySource={"Bucket": bucket, "Key": "plain"}, **_sse(KEY2)
    )
    assert _get(s3, bucket, "enc", KEY2) == data
    _assert_needs_key(s3, bucket, "enc", KEY2, KEY1)

    # The same key: the stored data is shared, the ETag kept (as Garage).
    result = s3.copy_object(
        Bucket=bucket, Key="same", CopySource=src, **_copy_sse(KEY1), **_sse(KEY1)
    )
    assert result["CopyObjectResult"]["ETag"] == put["ETag"]
    assert _get(s3, bucket, "same", KEY1) == data

    # A checksum asked for while re-encrypting is computed from the plaintext.
    s3.copy_object(
        Bucket=bucket,
        Key="summed",
        CopySource=src,
        ChecksumAlgorithm="SHA256",
        **_copy_sse(KEY1),
        **_sse(KEY2),
    )
    head = s3.head_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED", **_sse(KEY2))
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()

    # Every copy is independent of its source.
    s3.delete_object(**src)
    for key, sse_key in (("k2", KEY2), ("plain", None), ("enc", KEY2), ("same", KEY1)):
        assert _get(s3, bucket, key, sse_key) == data


def test_copy_object_source_key_errors_store_nothing(s3: Any, bucket: str) -> None:
    data = os.urandom(MiB + 10)
    src = {"Bucket": bucket, "Key": "src"}
    s3.put_object(**src, Body=data, **_sse(KEY1))
    s3.put_object(Bucket=bucket, Key="dst", Body=b"previous")
    for extra, expected in (
        ({}, ("InvalidRequest", 400)),
        (_copy_sse(KEY2), ("AccessDenied", 403)),
        (_sse(KEY1), ("InvalidRequest", 400)),  # the destination's key is not the source's
    ):
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **extra)
        assert _code(exc) == expected
    assert _get(s3, bucket, "dst", None) == b"previous"
    # A plaintext source with a source key is refused too.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="new",
            CopySource={"Bucket": bucket, "Key": "dst"},
            **_copy_sse(KEY1),
        )
    assert _code(exc) == ("InvalidRequest", 400)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == ["dst", "src"]


def test_copy_onto_itself_replacing_metadata(s3: Any, bucket: str) -> None:
    data = os.urandom(MiB + 100)
    src = {"Bucket": bucket, "Key": "k"}
    s3.put_object(**src, Body=data, Metadata={"v": "1"}, **_sse(KEY1))
    s3.copy_object(
        **src,
        CopySource=src,
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
        ContentType="text/x-new",
        **_copy_sse(KEY1),
        **_sse(KEY1),
    )
    head = s3.head_object(**src, **_sse(KEY1))
    assert (head["Metadata"], head["ContentType"]) == ({"v": "2"}, "text/x-new")
    assert _get(s3, bucket, "k", KEY1) == data


# ---------------------------------------------------------------------- what is stored


def _found(data_dir: Path, needles: dict[str, bytes]) -> set[str]:
    """The names of the ``needles`` found in the node's files (read one at a time: the
    session's node holds every test's data)."""
    found = set()
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            found |= {name for name, needle in needles.items() if needle in content}
    return found


def test_stored_bytes_are_not_the_plaintext(s3node: S3Node, s3: Any, bucket: str) -> None:
    secret = os.urandom(2 * MiB + 5)
    inline_secret = b"inline-secret-" + os.urandom(16).hex().encode()
    meta_secret = "meta-secret-" + os.urandom(16).hex()
    s3.put_object(Bucket=bucket, Key="big", Body=secret, Metadata={"m": meta_secret}, **_sse(KEY1))
    s3.put_object(Bucket=bucket, Key="small", Body=inline_secret, **_sse(KEY1))
    # Controls in clear: the same search finds them, so the check could fail.
    plain = os.urandom(MiB + 5)
    inline_plain = b"inline-plain-" + os.urandom(16).hex().encode()
    meta_plain = "meta-plain-" + os.urandom(16).hex()
    s3.put_object(Bucket=bucket, Key="plain", Body=plain, Metadata={"m": meta_plain})
    s3.put_object(Bucket=bucket, Key="plain-small", Body=inline_plain)

    needles = {
        f"secret@{start}": secret[start : start + 64]
        for start in (0, MiB - 32, MiB + 1000, len(secret) - 64)
    }
    needles |= {"inline secret": inline_secret, "meta secret": meta_secret.encode()}
    controls = {
        "plain@0": plain[:64],
        "plain@1MiB": plain[MiB - 40 : MiB - 8],
        "inline plain": inline_plain,
        "meta plain": meta_plain.encode(),
    }
    assert _found(s3node.data_dir, needles | controls) == set(controls)
    # And the encrypted objects still read back.
    assert _get(s3, bucket, "big", KEY1) == secret
    assert _get(s3, bucket, "small", KEY1) == inline_secret

"""Payload checksums: published check values, botocore's checksum classes as the reference,
header parsing, verification errors, and multipart (composite and full-object) checksums."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from awscrt import checksums as crt
from botocore.httpchecksum import (
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given
from hypothesis import strategies as st

from garage_api.signature import (
    BadDigestError,
    ChecksumAlgorithm,
    Checksummer,
    Checksums,
    ChecksumType,
    ChecksumValue,
    ExpectedChecksums,
    InvalidDigestError,
    InvalidRequestError,
    MalformedTrailerError,
    XAmzContentSHA256MismatchError,
    checksum_header_name,
    checksum_type,
    combine_crc,
    composite_checksum,
    decode_checksum,
    decode_multipart_checksum,
    encode_checksum,
    parse_checksum_algorithm,
    parse_expected_checksums,
    trailer_algorithm,
)
from garage_api.signature._checksum import _combine_pure

CHECK_INPUT = b"123456789"
# The standard "check" values of each CRC (the CRC of "123456789"), and the digests.
CHECK_VALUES = {
    ChecksumAlgorithm.CRC32: (0xCBF43926).to_bytes(4, "big"),
    ChecksumAlgorithm.CRC32C: (0xE3069283).to_bytes(4, "big"),
    ChecksumAlgorithm.CRC64NVME: (0xAE8B14860A799888).to_bytes(8, "big"),
    ChecksumAlgorithm.SHA1: hashlib.sha1(CHECK_INPUT).digest(),
    ChecksumAlgorithm.SHA256: hashlib.sha256(CHECK_INPUT).digest(),
}
BOTOCORE = {
    ChecksumAlgorithm.CRC32: Crc32Checksum,
    ChecksumAlgorithm.CRC32C: CrtCrc32cChecksum,
    ChecksumAlgorithm.CRC64NVME: CrtCrc64NvmeChecksum,
    ChecksumAlgorithm.SHA1: Sha1Checksum,
    ChecksumAlgorithm.SHA256: Sha256Checksum,
}
CRCS = [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME]
ALGORITHMS = st.sampled_from(list(ChecksumAlgorithm))


def _checksum(algorithm: ChecksumAlgorithm, *pieces: bytes | memoryview) -> ChecksumValue:
    summer = Checksummer(algorithm)
    for piece in pieces:
        summer.update(piece)
    extra = summer.finalize().extra
    assert extra is not None
    return extra


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_check_values(algorithm: ChecksumAlgorithm) -> None:
    assert _checksum(algorithm, CHECK_INPUT).value == CHECK_VALUES[algorithm]
    assert _checksum(algorithm, b"1234", memoryview(b"56789")).value == CHECK_VALUES[algorithm]


@given(algorithm=ALGORITHMS, pieces=st.lists(st.binary(max_size=200), max_size=6))
def test_incremental_checksums_match_botocore(
    algorithm: ChecksumAlgorithm, pieces: list[bytes]
) -> None:
    theirs = BOTOCORE[algorithm]()
    for piece in pieces:
        theirs.update(piece)
    ours = _checksum(algorithm, *pieces)
    assert encode_checksum(ours) == theirs.b64digest()
    assert decode_checksum(algorithm, theirs.b64digest()) == ours


@given(pieces=st.lists(st.binary(max_size=100), max_size=5), algorithm=ALGORITHMS)
def test_checksummer_computes_md5_sha256_and_size_alongside(
    pieces: list[bytes], algorithm: ChecksumAlgorithm
) -> None:
    summer = Checksummer(algorithm, md5=True, sha256=True)
    for piece in pieces:
        summer.update(bytearray(piece))
    sums = summer.finalize()
    whole = b"".join(pieces)
    assert sums.md5 == hashlib.md5(whole).digest()
    assert sums.sha256 == hashlib.sha256(whole).digest()
    assert sums.size_bytes == len(whole)
    assert sums.extra == _checksum(algorithm, whole)


def test_checksum_names() -> None:
    assert checksum_header_name(ChecksumAlgorithm.CRC64NVME) == "x-amz-checksum-crc64nvme"
    assert parse_checksum_algorithm("crc32c") is ChecksumAlgorithm.CRC32C
    with pytest.raises(InvalidRequestError):
        parse_checksum_algorithm("MD5")


# ---------------------------------------------------------------- expected checksums


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_parse_expected_checksums_from_headers() -> None:
    md5 = hashlib.md5(b"x").digest()
    crc = _checksum(ChecksumAlgorithm.CRC32, b"x")
    expected = parse_expected_checksums(
        [
            ("Content-MD5", _b64(md5)),
            ("x-amz-checksum-crc32", encode_checksum(crc)),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ],
        content_sha256=hashlib.sha256(b"x").digest(),
    )
    assert expected == ExpectedChecksums(
        md5=md5, sha256=hashlib.sha256(b"x").digest(), extra=crc, algorithm=crc.algorithm
    )
    # Requested without a value: the server computes it.
    asked = parse_expected_checksums([("x-amz-checksum-algorithm", "SHA1")])
    assert (asked.algorithm, asked.extra, asked.in_trailer) == (ChecksumAlgorithm.SHA1, None, False)
    # Announced in the trailer (boto3's default since 2025).
    trailed = parse_expected_checksums(
        [
            ("x-amz-sdk-checksum-algorithm", "CRC64NVME"),
            ("x-amz-trailer", "x-amz-checksum-crc64nvme"),
        ]
    )
    assert (trailed.algorithm, trailed.in_trailer) == (ChecksumAlgorithm.CRC64NVME, True)
    assert parse_expected_checksums([]) == ExpectedChecksums()


def test_parse_expected_checksums_errors() -> None:
    crc = encode_checksum(_checksum(ChecksumAlgorithm.CRC32, b"x"))
    crc32c = encode_checksum(_checksum(ChecksumAlgorithm.CRC32C, b"x"))
    with pytest.raises(InvalidDigestError):
        parse_expected_checksums([("content-md5", "not base64!")])
    with pytest.raises(InvalidDigestError):
        parse_expected_checksums([("content-md5", _b64(b"short"))])
    bad = {
        "single": [("x-amz-checksum-crc32", crc), ("x-amz-checksum-crc32c", crc32c)],
        "base64": [("x-amz-checksum-crc32", "AAAA")],  # 3 bytes, not 4
        "unknown": [("x-amz-sdk-checksum-algorithm", "CRC16")],
        "does not match": [
            ("x-amz-checksum-crc32", crc),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
        ],
        "both": [("x-amz-checksum-crc32", crc), ("x-amz-trailer", "x-amz-checksum-crc32")],
        "several": [("x-amz-trailer", "x-amz-checksum-crc32,x-amz-checksum-sha1")],
        "headers": [("x-amz-checksum-crc32", crc), ("x-amz-checksum-crc32", crc)],
    }
    for message, headers in bad.items():
        with pytest.raises(InvalidRequestError, match=message):
            parse_expected_checksums(headers)


def test_trailer_algorithm_ignores_other_trailers() -> None:
    headers = [("x-amz-trailer", "x-amz-meta-foo, x-amz-checksum-sha256")]
    assert trailer_algorithm(headers) is ChecksumAlgorithm.SHA256
    assert trailer_algorithm([("x-amz-trailer", "x-amz-meta-foo")]) is None
    assert trailer_algorithm([]) is None


def test_with_trailers() -> None:
    expected = parse_expected_checksums([("x-amz-trailer", "x-amz-checksum-crc32c")])
    value = _checksum(ChecksumAlgorithm.CRC32C, b"data")
    filled = expected.with_trailers({"x-amz-checksum-crc32c": encode_checksum(value)})
    assert (filled.extra, filled.in_trailer) == (value, False)
    with pytest.raises(MalformedTrailerError, match="lacks"):
        expected.with_trailers({})
    with pytest.raises(MalformedTrailerError):
        expected.with_trailers({"x-amz-checksum-crc32c": "!!"})
    assert ExpectedChecksums().with_trailers({"x-amz-checksum-crc32c": "x"}) == ExpectedChecksums()


# ---------------------------------------------------------------- verification


def _sums(data: bytes, expected: ExpectedChecksums) -> Checksums:
    summer = Checksummer.for_expected(expected, md5=True)
    summer.update(data)
    return summer.finalize()


@given(data=st.binary(max_size=100), algorithm=ALGORITHMS)
def test_matching_checksums_verify_and_any_other_body_does_not(
    data: bytes, algorithm: ChecksumAlgorithm
) -> None:
    headers = [
        ("content-md5", _b64(hashlib.md5(data).digest())),
        (checksum_header_name(algorithm), encode_checksum(_checksum(algorithm, data))),
    ]
    expected = parse_expected_checksums(headers, content_sha256=hashlib.sha256(data).digest())
    _sums(data, expected).verify(expected)
    with pytest.raises((BadDigestError, XAmzContentSHA256MismatchError)):
        _sums(data + b"!", expected).verify(expected)


def test_each_mismatch_has_its_aws_error() -> None:
    data = b"payload"
    md5 = ExpectedChecksums(md5=hashlib.md5(b"other").digest())
    with pytest.raises(BadDigestError) as caught:
        _sums(data, md5).verify(md5)
    assert (caught.value.code, caught.value.http_status) == ("BadDigest", 400)
    sha = ExpectedChecksums(sha256=hashlib.sha256(b"other").digest())
    with pytest.raises(XAmzContentSHA256MismatchError) as mismatch:
        _sums(data, sha).verify(sha)
    assert mismatch.value.code == "XAmzContentSHA256Mismatch"
    crc = ExpectedChecksums(
        extra=_checksum(ChecksumAlgorithm.CRC32C, b"other"), algorithm=ChecksumAlgorithm.CRC32C
    )
    with pytest.raises(BadDigestError, match="CRC32C"):
        _sums(data, crc).verify(crc)
    pending = ExpectedChecksums(algorithm=ChecksumAlgorithm.CRC32, in_trailer=True)
    with pytest.raises(MalformedTrailerError):
        _sums(data, pending).verify(pending)
    with pytest.raises(ValueError, match="not computed"):
        Checksummer().finalize().verify(crc)


# ---------------------------------------------------------------- multipart


@given(
    algorithm=st.sampled_from(CRCS),
    parts=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
)
def test_full_object_crc_combines_the_parts(
    algorithm: ChecksumAlgorithm, parts: list[bytes]
) -> None:
    combined = combine_crc([(_checksum(algorithm, p), len(p)) for p in parts])
    assert combined == _checksum(algorithm, b"".join(parts))


@given(
    algorithm=st.sampled_from(CRCS),
    crc1=st.integers(0, 2**64 - 1),
    crc2=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**40),
)
def test_pure_combination_matches_the_aws_crt(
    algorithm: ChecksumAlgorithm, crc1: int, crc2: int, length: int
) -> None:
    combine = {
        ChecksumAlgorithm.CRC32: crt.combine_crc32,
        ChecksumAlgorithm.CRC32C: crt.combine_crc32c,
        ChecksumAlgorithm.CRC64NVME: crt.combine_crc64nvme,
    }[algorithm]
    mask = (1 << (8 * algorithm.digest_size)) - 1
    crc1, crc2 = crc1 & mask, crc2 & mask
    assert _combine_pure(algorithm, crc1, crc2, length) == combine(crc1, crc2, length)


def test_full_object_combination_of_large_parts() -> None:
    parts = [bytes(range(256)) * 4096 + b"tail", b"", b"x" * 5_000_003]
    for algorithm in CRCS:
        combined = combine_crc([(_checksum(algorithm, p), len(p)) for p in parts])
        assert combined == _checksum(algorithm, *parts)
    assert (
        zlib.crc32(b"".join(parts)).to_bytes(4, "big")
        == combine_crc([(_checksum(ChecksumAlgorithm.CRC32, p), len(p)) for p in parts]).value
    )


def test_combination_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combine_crc([])
    with pytest.raises(ValueError, match="only CRCs"):
        combine_crc([(_checksum(ChecksumAlgorithm.SHA256, b"a"), 1)])
    with pytest.raises(ValueError, match="different"):
        combine_crc(
            [
                (_checksum(ChecksumAlgorithm.CRC32, b"a"), 1),
                (_checksum(ChecksumAlgorithm.CRC32C, b"b"), 1),
            ]
        )


@given(algorithm=ALGORITHMS, parts=st.lists(st.binary(max_size=50), min_size=1, max_size=5))
def test_composite_checksum_is_the_checksum_of_the_part_checksums(
    algorithm: ChecksumAlgorithm, parts: list[bytes]
) -> None:
    part_sums = [_checksum(algorithm, p) for p in parts]
    composite = composite_checksum(part_sums)
    reference = BOTOCORE[algorithm]()
    reference.update(b"".join(s.value for s in part_sums))
    text = encode_checksum(composite, part_count=len(parts))
    assert text == f"{reference.b64digest()}-{len(parts)}"
    assert decode_multipart_checksum(algorithm, text) == (composite, len(parts))
    assert decode_multipart_checksum(algorithm, encode_checksum(composite)) == (composite, None)


def test_composite_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        composite_checksum([])
    with pytest.raises(ValueError, match="different"):
        composite_checksum(
            [_checksum(ChecksumAlgorithm.SHA1, b"a"), _checksum(ChecksumAlgorithm.SHA256, b"a")]
        )
    with pytest.raises(InvalidRequestError, match="part count"):
        decode_multipart_checksum(ChecksumAlgorithm.CRC32, "AAAAAA==-x")


def test_checksum_types() -> None:
    assert checksum_type(None, None) is None
    assert checksum_type(ChecksumAlgorithm.CRC64NVME, None) is ChecksumType.FULL_OBJECT
    assert checksum_type(ChecksumAlgorithm.SHA1, None) is ChecksumType.COMPOSITE
    assert checksum_type(ChecksumAlgorithm.CRC32, "full_object") is ChecksumType.FULL_OBJECT
    assert checksum_type(ChecksumAlgorithm.CRC32C, "COMPOSITE") is ChecksumType.COMPOSITE
    for algorithm, value in [
        (ChecksumAlgorithm.SHA256, "FULL_OBJECT"),
        (ChecksumAlgorithm.CRC64NVME, "COMPOSITE"),
        (None, "COMPOSITE"),
        (ChecksumAlgorithm.CRC32, "PARTIAL"),
    ]:
        with pytest.raises(InvalidRequestError):
            checksum_type(algorithm, value)

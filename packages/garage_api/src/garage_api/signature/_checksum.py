"""Payload checksums: Content-MD5, x-amz-content-sha256 and x-amz-checksum-* (sans-IO).

Garage: src/api/common/signature/checksum.rs. AWS: "Checking object integrity"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).

Theory of operation
-------------------
A request may announce up to three digests of its body, each checked once the body has
been read, before anything is committed (a mismatch stores nothing):

- ``Content-MD5``: base64 of the md5 (``BadDigest`` on mismatch);
- ``x-amz-content-sha256``, when it is a hex sha256 (``XAmzContentSHA256Mismatch``);
- one *additional checksum* of algorithm CRC32, CRC32C, CRC64NVME, SHA1 or SHA256, base64
  in ``x-amz-checksum-<algorithm>``, or in the aws-chunked trailer named by
  ``x-amz-trailer`` (``BadDigest``). ``x-amz-sdk-checksum-algorithm`` (or
  ``x-amz-checksum-algorithm``) names the algorithm; a request may also ask for a checksum
  without sending a value, and the server then computes and stores it.

:func:`parse_expected_checksums` turns headers into an :class:`ExpectedChecksums`;
a :class:`Checksummer` hashes the body incrementally (pieces may be memoryviews; nothing is
copied); :meth:`Checksums.verify` compares. The trailer value arrives after the body:
:meth:`ExpectedChecksums.with_trailers` fills it in from
:meth:`~garage_api.signature.AwsChunkedDecoder.finish`.

Multipart uploads store one checksum per part. The object's checksum is then either
*composite*, the checksum of the concatenated binary part checksums, written
``base64-N`` for N parts (:func:`composite_checksum`), or *full-object* for CRCs: the CRC of
the whole object, obtained without re-reading it by combining the part CRCs with their
lengths (:func:`combine_crc`, the zlib ``crc32_combine`` method: shift the first CRC by
``8 * len2`` zero bits, a multiplication by ``x^(8 len2)`` modulo the polynomial, then xor).

The algorithm enum and the stored value type are the model's
(:class:`garage_model.s3.ChecksumAlgorithm`, :class:`garage_model.s3.ChecksumValue`), as in
Garage, so the API hands the model what it stores without conversion.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, final

# awscrt ships no type information (no py.typed); its two CRC functions are typed below.
from awscrt import checksums as _crt

from garage_model.s3 import ChecksumAlgorithm, ChecksumValue

from ._errors import (
    BadDigestError,
    InvalidDigestError,
    InvalidRequestError,
    MalformedTrailerError,
    XAmzContentSHA256MismatchError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "CONTENT_MD5",
    "X_AMZ_CHECKSUM_ALGORITHM",
    "X_AMZ_CHECKSUM_TYPE",
    "X_AMZ_SDK_CHECKSUM_ALGORITHM",
    "X_AMZ_TRAILER",
    "ChecksumAlgorithm",
    "ChecksumType",
    "ChecksumValue",
    "Checksummer",
    "Checksums",
    "ExpectedChecksums",
    "checksum_header_name",
    "checksum_type",
    "combine_crc",
    "composite_checksum",
    "decode_checksum",
    "decode_multipart_checksum",
    "encode_checksum",
    "parse_checksum_algorithm",
    "parse_expected_checksums",
    "trailer_algorithm",
]

CONTENT_MD5: Final = "content-md5"
#: The algorithm of a multipart upload's parts (CreateMultipartUpload) or of a body.
X_AMZ_CHECKSUM_ALGORITHM: Final = "x-amz-checksum-algorithm"
#: The algorithm the AWS SDKs computed the body's checksum with.
X_AMZ_SDK_CHECKSUM_ALGORITHM: Final = "x-amz-sdk-checksum-algorithm"
#: ``COMPOSITE`` or ``FULL_OBJECT``: how a multipart upload's checksum is made.
X_AMZ_CHECKSUM_TYPE: Final = "x-amz-checksum-type"
#: The names of the trailing headers of an aws-chunked body.
X_AMZ_TRAILER: Final = "x-amz-trailer"

_CHECKSUM_PREFIX: Final = "x-amz-checksum-"
# What the hashers accept without copying (collections.abc.Buffer is Python 3.12+).
_Bytes = bytes | bytearray | memoryview
_CRCS: Final = frozenset(
    {ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME}
)


class ChecksumType(enum.Enum):
    """How a multipart upload's checksum is made (``x-amz-checksum-type``)."""

    COMPOSITE = "COMPOSITE"
    FULL_OBJECT = "FULL_OBJECT"


# ---------------------------------------------------------------- names and encodings


def checksum_header_name(algorithm: ChecksumAlgorithm) -> str:
    """``x-amz-checksum-<algorithm>``, lower-case (``x-amz-checksum-crc64nvme``)."""
    return _CHECKSUM_PREFIX + algorithm.value.lower()


def parse_checksum_algorithm(text: str) -> ChecksumAlgorithm:
    """Parses an algorithm name as the ``*-checksum-algorithm`` headers spell it.

    Raises:
        InvalidRequestError: not one of CRC32, CRC32C, CRC64NVME, SHA1, SHA256.
    """
    try:
        return ChecksumAlgorithm(text.strip().upper())
    except ValueError:
        raise InvalidRequestError(f"unknown checksum algorithm {text!r}") from None


def encode_checksum(value: ChecksumValue, *, part_count: int | None = None) -> str:
    """The base64 form of a checksum, as S3 headers and XML carry it.

    Args:
        value: the checksum.
        part_count: for a composite multipart checksum, the number of parts, appended
            as ``-N``.
    """
    text = base64.b64encode(value.value).decode("ascii")
    return text if part_count is None else f"{text}-{part_count}"


def decode_checksum(algorithm: ChecksumAlgorithm, text: str) -> ChecksumValue:
    """Parses the base64 value of an ``x-amz-checksum-<algorithm>`` header.

    Raises:
        InvalidRequestError: not base64, or not the algorithm's length.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return ChecksumValue(algorithm, raw)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"the value of {checksum_header_name(algorithm)} is not a base64 "
            f"{algorithm.value} checksum"
        ) from None


def decode_multipart_checksum(
    algorithm: ChecksumAlgorithm, text: str
) -> tuple[ChecksumValue, int | None]:
    """Parses a checksum that may carry a ``-N`` part count (CompleteMultipartUpload).

    Returns:
        The checksum and the part count, ``None`` without suffix.

    Raises:
        InvalidRequestError: malformed value or count.
    """
    body, dash, count = text.strip().rpartition("-")
    if not dash:
        return decode_checksum(algorithm, text), None
    if not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise InvalidRequestError(f"the part count of checksum {text!r} is not a number")
    return decode_checksum(algorithm, body), int(count)


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in found:
            # Several values of one checksum header cannot all be right; S3 rejects them.
            if (
                lower == CONTENT_MD5
                or lower.startswith(_CHECKSUM_PREFIX)
                or lower
                in (
                    X_AMZ_SDK_CHECKSUM_ALGORITHM,
                    X_AMZ_TRAILER,
                )
            ):
                raise InvalidRequestError(f"the request has several {lower} headers")
            continue
        found[lower] = value
    return found


def trailer_algorithm(headers: Iterable[tuple[str, str]]) -> ChecksumAlgorithm | None:
    """The checksum announced in ``x-amz-trailer`` (a comma-separated list of names).

    Names other than ``x-amz-checksum-*`` are ignored.

    Raises:
        InvalidRequestError: an unknown ``x-amz-checksum-*`` name, or several.
    """
    value = _header_map(headers).get(X_AMZ_TRAILER)
    if value is None:
        return None
    found = None
    for name in value.split(","):
        lower = name.strip().lower()
        if not lower.startswith(_CHECKSUM_PREFIX):
            continue
        algorithm = parse_checksum_algorithm(lower.removeprefix(_CHECKSUM_PREFIX))
        if found is not None:
            raise InvalidRequestError("x-amz-trailer announces several checksums")
        found = algorithm
    return found


def checksum_type(
    algorithm: ChecksumAlgorithm | None, header_value: str | None
) -> ChecksumType | None:
    """The checksum type of a multipart upload (CreateMultipartUpload).

    S3 makes CRC64NVME full-object only, SHA1 and SHA256 composite only, and defaults
    CRC32/CRC32C to composite.

    Args:
        algorithm: ``x-amz-checksum-algorithm``, if any.
        header_value: ``x-amz-checksum-type``, if any.

    Returns:
        The type, ``None`` when the upload has no checksum.

    Raises:
        InvalidRequestError: an unknown type, a type without algorithm, or a type the
            algorithm does not allow.
    """
    if header_value is None:
        if algorithm is None:
            return None
        if algorithm is ChecksumAlgorithm.CRC64NVME:
            return ChecksumType.FULL_OBJECT
        return ChecksumType.COMPOSITE
    try:
        kind = ChecksumType(header_value.strip().upper())
    except ValueError:
        raise InvalidRequestError(f"unknown x-amz-checksum-type {header_value!r}") from None
    if algorithm is None:
        raise InvalidRequestError("x-amz-checksum-type needs x-amz-checksum-algorithm")
    if kind is ChecksumType.FULL_OBJECT and algorithm not in _CRCS:
        raise InvalidRequestError(f"{algorithm.value} does not support FULL_OBJECT checksums")
    if kind is ChecksumType.COMPOSITE and algorithm is ChecksumAlgorithm.CRC64NVME:
        raise InvalidRequestError("CRC64NVME does not support COMPOSITE checksums")
    return kind


# ---------------------------------------------------------------- expected values


@dataclass(frozen=True, slots=True)
class ExpectedChecksums:
    """The digests a request announced for its body.

    Attributes:
        md5: the raw md5 from ``Content-MD5``.
        sha256: the raw sha256 from ``x-amz-content-sha256``.
        extra: the additional checksum, from its header or (after
            :meth:`with_trailers`) the trailer.
        algorithm: the additional checksum's algorithm: the one of ``extra``, of the
            trailer, or merely requested by ``x-amz-sdk-checksum-algorithm`` /
            ``x-amz-checksum-algorithm`` (then the server computes and stores it).
        in_trailer: the additional checksum's value comes in the aws-chunked trailer.
    """

    md5: bytes | None = None
    sha256: bytes | None = None
    extra: ChecksumValue | None = None
    algorithm: ChecksumAlgorithm | None = None
    in_trailer: bool = False

    def with_trailers(self, trailers: Mapping[str, str]) -> ExpectedChecksums:
        """Fills the additional checksum in from the aws-chunked body's trailers.

        Args:
            trailers: lower-case name to value, from ``AwsChunkedDecoder.finish()``.

        Raises:
            MalformedTrailerError: the announced checksum trailer is missing or malformed.
        """
        if not self.in_trailer or self.algorithm is None:
            return self
        name = checksum_header_name(self.algorithm)
        text = trailers.get(name)
        if text is None:
            raise MalformedTrailerError(f"the trailer lacks the announced {name}")
        try:
            value = decode_checksum(self.algorithm, text)
        except InvalidRequestError as e:
            raise MalformedTrailerError(e.message) from None
        return replace(self, extra=value, in_trailer=False)


def parse_expected_checksums(
    headers: Iterable[tuple[str, str]], *, content_sha256: bytes | None = None
) -> ExpectedChecksums:
    """Reads the digests a request announces for its body.

    Args:
        headers: the request headers (names compared lower-cased).
        content_sha256: the sha256 from ``x-amz-content-sha256``
            (``Authenticated.payload_sha256``), if the payload mode is ``SHA256``.

    Raises:
        InvalidDigestError: ``Content-MD5`` is not the base64 of 16 bytes.
        InvalidRequestError: several ``x-amz-checksum-*`` values, a malformed one, an
            unknown algorithm, or headers that disagree on the algorithm.
    """
    found = _header_map(headers)
    md5 = None
    if CONTENT_MD5 in found:
        try:
            md5 = base64.b64decode(found[CONTENT_MD5].strip(), validate=True)
        except binascii.Error:
            md5 = None
        if md5 is None or len(md5) != 16:
            raise InvalidDigestError("the Content-MD5 you specified is not valid")

    values = [
        decode_checksum(alg, found[checksum_header_name(alg)])
        for alg in ChecksumAlgorithm
        if checksum_header_name(alg) in found
    ]
    if len(values) > 1:
        raise InvalidRequestError("expecting a single x-amz-checksum-* header")
    extra = values[0] if values else None

    requested = None
    for name in (X_AMZ_SDK_CHECKSUM_ALGORITHM, X_AMZ_CHECKSUM_ALGORITHM):
        if name in found:
            algorithm = parse_checksum_algorithm(found[name])
            if requested is not None and algorithm is not requested:
                raise InvalidRequestError(
                    f"{X_AMZ_SDK_CHECKSUM_ALGORITHM} and {X_AMZ_CHECKSUM_ALGORITHM} disagree"
                )
            requested = algorithm
    trailer = trailer_algorithm(found.items())
    if extra is not None and trailer is not None:
        raise InvalidRequestError("a checksum cannot come both in a header and in the trailer")
    announced = extra.algorithm if extra is not None else trailer
    if announced is not None and requested is not None and announced is not requested:
        raise InvalidRequestError(
            f"the checksum algorithm {requested.value} does not match the "
            f"{announced.value} checksum sent"
        )
    return ExpectedChecksums(
        md5=md5,
        sha256=content_sha256,
        extra=extra,
        algorithm=announced or requested,
        in_trailer=trailer is not None,
    )


# ---------------------------------------------------------------- computing


@dataclass(frozen=True, slots=True)
class Checksums:
    """The digests of a body, as computed.

    Attributes:
        md5: raw md5, if computed.
        sha256: raw sha256, if computed.
        extra: the additional checksum, if computed.
        size_bytes: how many bytes were hashed.
    """

    md5: bytes | None
    sha256: bytes | None
    extra: ChecksumValue | None
    size_bytes: int

    def verify(self, expected: ExpectedChecksums) -> None:
        """Checks the computed digests against the announced ones.

        Raises:
            BadDigestError: the md5 or the additional checksum does not match.
            XAmzContentSHA256MismatchError: the sha256 does not match.
            MalformedTrailerError: the checksum was announced in a trailer that was never
                applied (:meth:`ExpectedChecksums.with_trailers`).
            ValueError: an expected digest was not computed (the :class:`Checksummer`
                was not made for these expectations).
        """
        if expected.md5 is not None:
            if self.md5 is None:
                raise ValueError("the md5 was not computed")
            if self.md5 != expected.md5:
                raise BadDigestError("the Content-MD5 you specified did not match what we received")
        if expected.sha256 is not None:
            if self.sha256 is None:
                raise ValueError("the sha256 was not computed")
            if self.sha256 != expected.sha256:
                raise XAmzContentSHA256MismatchError(
                    "the provided x-amz-content-sha256 does not match what was computed"
                )
        if expected.in_trailer:
            raise MalformedTrailerError("the trailer checksum announced was not received")
        if expected.extra is not None:
            if self.extra is None or self.extra.algorithm is not expected.extra.algorithm:
                raise ValueError(f"the {expected.extra.algorithm.value} checksum was not computed")
            if self.extra != expected.extra:
                raise BadDigestError(
                    f"the {expected.extra.algorithm.value} you specified did not match the "
                    "calculated checksum"
                )


_CRC_FUNCTIONS: Final[dict[ChecksumAlgorithm, Callable[[_Bytes, int], int]]] = {
    ChecksumAlgorithm.CRC32: zlib.crc32,
    ChecksumAlgorithm.CRC32C: _crt.crc32c,
    ChecksumAlgorithm.CRC64NVME: _crt.crc64nvme,
}


@final
class Checksummer:
    """Hashes a body incrementally for the digests a request needs.

    Use :meth:`for_expected` to compute what a request announced (plus the md5 when it
    is the ETag), feed every piece of the body to :meth:`update`, then :meth:`finalize`.

    Args:
        algorithm: the additional checksum to compute, if any.
        md5: compute the md5.
        sha256: compute the sha256.
    """

    __slots__ = ("_algorithm", "_crc", "_md5", "_sha1", "_sha256", "_size")

    def __init__(
        self, algorithm: ChecksumAlgorithm | None = None, *, md5: bool = False, sha256: bool = False
    ) -> None:
        self._algorithm = algorithm
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        need_sha256 = sha256 or algorithm is ChecksumAlgorithm.SHA256
        self._sha256 = hashlib.sha256() if need_sha256 else None
        self._sha1 = (
            hashlib.sha1(usedforsecurity=False) if algorithm is ChecksumAlgorithm.SHA1 else None
        )
        self._crc = 0 if algorithm in _CRCS else None
        self._size = 0

    @classmethod
    def for_expected(cls, expected: ExpectedChecksums, *, md5: bool = False) -> Checksummer:
        """A checksummer computing what ``expected`` needs, and the md5 if ``md5``."""
        return cls(
            expected.algorithm,
            md5=md5 or expected.md5 is not None,
            sha256=expected.sha256 is not None,
        )

    def update(self, data: _Bytes) -> None:
        """Hashes the next piece of the body (bytes, bytearray or memoryview)."""
        if self._md5 is not None:
            self._md5.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)
        if self._crc is not None:
            assert self._algorithm is not None  # _crc is set only for a CRC algorithm
            self._crc = _CRC_FUNCTIONS[self._algorithm](data, self._crc)
        self._size += memoryview(data).nbytes

    def finalize(self) -> Checksums:
        """The digests of everything hashed so far."""
        sha256 = None if self._sha256 is None else self._sha256.digest()
        extra = None
        algorithm = self._algorithm
        if algorithm is ChecksumAlgorithm.SHA256:
            assert sha256 is not None  # computed whenever the algorithm is SHA256
            extra = ChecksumValue(algorithm, sha256)
        elif algorithm is ChecksumAlgorithm.SHA1:
            assert self._sha1 is not None  # computed whenever the algorithm is SHA1
            extra = ChecksumValue(algorithm, self._sha1.digest())
        elif algorithm is not None:
            assert self._crc is not None  # computed whenever the algorithm is a CRC
            extra = ChecksumValue(algorithm, self._crc.to_bytes(algorithm.digest_size, "big"))
        return Checksums(
            md5=None if self._md5 is None else self._md5.digest(),
            sha256=sha256,
            extra=extra,
            size_bytes=self._size,
        )


# ---------------------------------------------------------------- multipart


def composite_checksum(parts: Sequence[ChecksumValue]) -> ChecksumValue:
    """The composite checksum of a multipart object: the checksum of the concatenated
    binary part checksums. Render it with ``encode_checksum(value, part_count=len(parts))``.

    Raises:
        ValueError: no parts, or parts of different algorithms.
    """
    if not parts:
        raise ValueError("a composite checksum needs at least one part")
    algorithm = parts[0].algorithm
    if any(p.algorithm is not algorithm for p in parts):
        raise ValueError("the parts' checksums use different algorithms")
    summer = Checksummer(algorithm)
    for part in parts:
        summer.update(part.value)
    extra = summer.finalize().extra
    assert extra is not None  # the summer computes `algorithm`
    return extra


# Reflected polynomials of the three CRCs S3 uses. All three start from and finish with
# all-ones, which cancel out in a combination: crc(A+B) = shift(crc(A), len B) xor crc(B).
_REFLECTED_POLYS: Final = {
    ChecksumAlgorithm.CRC32: (0xEDB88320, 32),
    ChecksumAlgorithm.CRC32C: (0x82F63B78, 32),
    ChecksumAlgorithm.CRC64NVME: (0x9A6C9329AC4BC9B5, 64),
}


def _multmodp(a: int, b: int, poly: int, width: int) -> int:
    """``a * b`` modulo the polynomial, in the reflected bit order (bit width-1 is x^0)."""
    product = 0
    mask = 1 << (width - 1)
    while mask:
        if a & mask:
            product ^= b
        mask >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return product


@functools.lru_cache(maxsize=256)
def _x_pow_8n(algorithm: ChecksumAlgorithm, n: int) -> int:
    """``x^(8n)`` modulo the algorithm's polynomial (cached: parts often share a size)."""
    poly, width = _REFLECTED_POLYS[algorithm]
    square = 1 << (width - 2)  # x^1
    for _ in range(3):
        square = _multmodp(square, square, poly, width)  # x^2, x^4, then x^8
    result = 1 << (width - 1)  # x^0
    while n:
        if n & 1:
            result = _multmodp(square, result, poly, width)
        n >>= 1
        if n:
            square = _multmodp(square, square, poly, width)
    return result


def _combine_pure(algorithm: ChecksumAlgorithm, crc1: int, crc2: int, len2: int) -> int:
    """``crc(A + B)`` from ``crc(A)``, ``crc(B)`` and ``len(B)`` (zlib's crc32_combine)."""
    if len2 == 0:
        return crc1  # B is empty: whatever crc2 says, A + B is A (as the AWS CRT answers)
    poly, width = _REFLECTED_POLYS[algorithm]
    return _multmodp(_x_pow_8n(algorithm, len2), crc1, poly, width) ^ crc2


def combine_crc(parts: Sequence[tuple[ChecksumValue, int]]) -> ChecksumValue:
    """The full-object CRC of a multipart object, from its parts' CRCs and sizes.

    Args:
        parts: ``(checksum of the part, size of the part in bytes)`` in object order.

    Raises:
        ValueError: no parts, parts of different algorithms, or a non-CRC algorithm.
    """
    if not parts:
        raise ValueError("a full-object checksum needs at least one part")
    algorithm = parts[0][0].algorithm
    if algorithm not in _CRCS:
        raise ValueError(f"{algorithm.value} checksums cannot be combined (only CRCs)")
    crc = int.from_bytes(parts[0][0].value, "big")
    for value, size in parts[1:]:
        if value.algorithm is not algorithm:
            raise ValueError("the parts' checksums use different algorithms")
        crc = _combine_pure(algorithm, crc, int.from_bytes(value.value, "big"), size)
    return ChecksumValue(algorithm, crc.to_bytes(algorithm.digest_size, "big"))

"""aws-chunked decoding: AWS's published chunked uploads, bodies built here per the spec,
botocore's own encoder, random splits, and tampering.

The bodies are built by :func:`encode` below, written from the AWS pages (not with the
module's own signing functions), so that a shared mistake cannot make both sides agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
from dataclasses import dataclass

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garage_api.signature import (
    MAX_CHUNK_LINE_BYTES,
    MAX_SIGNED_CHUNK_BYTES,
    AuthPolicy,
    AwsChunkedDecoder,
    BadDigestError,
    ChecksumAlgorithm,
    Checksummer,
    IncompleteBodyError,
    InvalidRequestError,
    MalformedTrailerError,
    PayloadMode,
    Scope,
    SignatureDoesNotMatchError,
    SignatureError,
    chunk_signature,
    parse_amz_date,
    parse_expected_checksums,
    signing_key,
    strip_aws_chunked,
    trailer_signature,
    verify_request,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# AWS's chunked-upload examples (sigv4-streaming.html, sigv4-streaming-trailers.html).
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_DATE = "20130524T000000Z"
AWS_SCOPE = "20130524/us-east-1/s3/aws4_request"
AWS_KEY = hmac.new(
    hmac.new(
        hmac.new(
            hmac.new(b"AWS4" + AWS_SECRET.encode(), b"20130524", hashlib.sha256).digest(),
            b"us-east-1",
            hashlib.sha256,
        ).digest(),
        b"s3",
        hashlib.sha256,
    ).digest(),
    b"aws4_request",
    hashlib.sha256,
).digest()
AWS_PAYLOAD = b"a" * 66560
AWS_CHUNKS = [AWS_PAYLOAD[:65536], AWS_PAYLOAD[65536:]]
AWS_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
AWS_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
AWS_TRAILER_SIGNATURES = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
AWS_TRAILER = ("x-amz-checksum-crc32c", "sOO8/Q==")
AWS_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Signing:
    key: bytes
    scope: str
    date: str
    seed: str


AWS_SIGNING = Signing(AWS_KEY, AWS_SCOPE, AWS_DATE, AWS_SEED)


def encode(
    chunks: list[bytes],
    mode: PayloadMode,
    *,
    signing: Signing | None = None,
    trailers: list[tuple[str, str]] | None = None,
    blank_before_trailer: bool = False,
    final_blank_line: bool = True,
) -> bytes:
    """An aws-chunked body as AWS specifies it; signatures chain from ``signing.seed``."""
    out = bytearray()
    previous = signing.seed if signing else ""
    for data in [*chunks, b""]:
        header = f"{len(data):x}"
        if mode.signed_chunks:
            assert signing is not None
            previous = _hmac_hex(
                signing.key,
                "\n".join(
                    [
                        "AWS4-HMAC-SHA256-PAYLOAD",
                        signing.date,
                        signing.scope,
                        previous,
                        EMPTY_SHA256,
                        hashlib.sha256(data).hexdigest(),
                    ]
                ),
            )
            header += f";chunk-signature={previous}"
        out += header.encode() + b"\r\n"
        if data:
            out += data + b"\r\n"
    if not mode.has_trailer:
        return bytes(out + b"\r\n")
    if blank_before_trailer:
        out += b"\r\n"
    for name, value in trailers or []:
        out += f"{name}:{value}\r\n".encode()
    if mode.signed_chunks:
        assert signing is not None
        canonical = "".join(f"{n}:{v}\n" for n, v in sorted(trailers or []))
        signature = _hmac_hex(
            signing.key,
            "\n".join(
                [
                    "AWS4-HMAC-SHA256-TRAILER",
                    signing.date,
                    signing.scope,
                    previous,
                    hashlib.sha256(canonical.encode()).hexdigest(),
                ]
            ),
        )
        out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    if final_blank_line:
        out += b"\r\n"
    return bytes(out)


def decoder(
    mode: PayloadMode,
    signing: Signing | None = AWS_SIGNING,
    *,
    trailer: ChecksumAlgorithm | None = None,
    length: int | None = None,
) -> AwsChunkedDecoder:
    if not mode.signed_chunks:
        signing = None
    return AwsChunkedDecoder(
        mode,
        seed_signature=signing.seed if signing else None,
        signing_key=signing.key if signing else None,
        scope=signing.scope if signing else None,
        amz_date=signing.date if signing else None,
        trailer_algorithm=trailer,
        decoded_content_length=length,
    )


def decode(dec: AwsChunkedDecoder, pieces: list[bytes]) -> tuple[bytes, dict[str, str]]:
    out = bytearray()
    for piece in pieces:
        for view in dec.feed(piece):
            out += view
    return bytes(out), dec.finish()


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts})
    bounds = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------- AWS's examples


def test_aws_example_chunk_signatures() -> None:
    previous = AWS_SEED
    for data, expected in zip([*AWS_CHUNKS, b""], AWS_SIGNATURES, strict=True):
        previous = chunk_signature(
            AWS_KEY, AWS_DATE, AWS_SCOPE, previous, hashlib.sha256(data).hexdigest()
        )
        assert previous == expected
    assert signing_key(AWS_SECRET, "20130524", "us-east-1", "s3") == AWS_KEY


def test_aws_example_body_decodes() -> None:
    body = encode(AWS_CHUNKS, PayloadMode.STREAMING_SIGNED, signing=AWS_SIGNING)
    for signature in AWS_SIGNATURES:  # the builder reproduces AWS's published signatures
        assert f"chunk-signature={signature}".encode() in body
    assert len(body) == 66824  # the example's Content-Length
    dec = decoder(PayloadMode.STREAMING_SIGNED, length=66560)
    assert decode(dec, [body]) == (AWS_PAYLOAD, {})
    assert dec.done


def test_aws_example_with_trailer_decodes_in_both_layouts() -> None:
    signing = Signing(AWS_KEY, AWS_SCOPE, AWS_DATE, AWS_TRAILER_SEED)
    mode = PayloadMode.STREAMING_SIGNED_TRAILER
    for blank_before, final_blank in [(True, True), (False, True), (True, False), (False, False)]:
        body = encode(
            AWS_CHUNKS,
            mode,
            signing=signing,
            trailers=[AWS_TRAILER],
            blank_before_trailer=blank_before,
            final_blank_line=final_blank,
        )
        for signature in AWS_TRAILER_SIGNATURES:
            assert f"chunk-signature={signature}".encode() in body
        assert f"x-amz-trailer-signature:{AWS_TRAILER_SIGNATURE}".encode() in body
        dec = decoder(mode, signing, trailer=ChecksumAlgorithm.CRC32C, length=66560)
        data, trailers = decode(dec, [body])
        assert data == AWS_PAYLOAD
        assert trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
        # The trailer's checksum is the payload's.
        expected = parse_expected_checksums(
            [("x-amz-trailer", "x-amz-checksum-crc32c")]
        ).with_trailers(trailers)
        summer = Checksummer.for_expected(expected)
        summer.update(data)
        summer.finalize().verify(expected)


def test_trailer_signature_vectors() -> None:
    assert (
        trailer_signature(AWS_KEY, AWS_DATE, AWS_SCOPE, AWS_TRAILER_SIGNATURES[2], [AWS_TRAILER])
        == AWS_TRAILER_SIGNATURE
    )
    # aws-c-auth's test vector: three trailers, chained on the first example's last chunk.
    trailers = [("first", "1st"), ("second", "2nd"), ("third", "3rd")]
    assert (
        trailer_signature(AWS_KEY, AWS_DATE, AWS_SCOPE, AWS_SIGNATURES[2], trailers)
        == "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
    )


def test_for_request_takes_everything_from_the_verified_request() -> None:
    headers = [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", AWS_DATE),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,"
            f"Signature={AWS_TRAILER_SEED}",
        ),
    ]
    auth = verify_request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        headers,
        {"AKIAIOSFODNN7EXAMPLE": AWS_SECRET}.get,
        policy=AuthPolicy(region="us-east-1"),
        now_ms=parse_amz_date(AWS_DATE),
    )
    signing = Signing(AWS_KEY, AWS_SCOPE, AWS_DATE, AWS_TRAILER_SEED)
    body = encode(
        AWS_CHUNKS, auth.payload, signing=signing, trailers=[AWS_TRAILER], final_blank_line=False
    )
    dec = AwsChunkedDecoder.for_request(auth, headers)
    assert decode(dec, [body]) == (AWS_PAYLOAD, {"x-amz-checksum-crc32c": "sOO8/Q=="})
    # Without its trailer the announced checksum is missing.
    no_trailer = encode(AWS_CHUNKS, auth.payload, signing=signing, trailers=[])
    with pytest.raises(MalformedTrailerError):
        decode(AwsChunkedDecoder.for_request(auth, headers), [no_trailer])
    # A trailer mode needs x-amz-trailer; a declared length must be a number.
    without = [h for h in headers if h[0] != "x-amz-trailer"]
    with pytest.raises(InvalidRequestError, match="x-amz-trailer"):
        AwsChunkedDecoder.for_request(auth, without)
    bad_length = [*without, ("x-amz-trailer", "x-amz-checksum-crc32c")]
    bad_length = [(n, "-1" if n == "x-amz-decoded-content-length" else v) for n, v in bad_length]
    with pytest.raises(InvalidRequestError, match="decoded-content-length"):
        AwsChunkedDecoder.for_request(auth, bad_length)


# ---------------------------------------------------------------- botocore's encoder


@given(
    payload=st.binary(max_size=5000),
    chunk_size=st.integers(1, 2048),
    cuts=st.lists(st.integers(0, 6000), max_size=8),
    crc64=st.booleans(),
)
def test_botocore_unsigned_trailer_bodies_decode(
    payload: bytes, chunk_size: int, cuts: list[int], crc64: bool
) -> None:
    checksum_cls, name, algorithm = (
        (CrtCrc64NvmeChecksum, "x-amz-checksum-crc64nvme", ChecksumAlgorithm.CRC64NVME)
        if crc64
        else (CrtCrc32cChecksum, "x-amz-checksum-crc32c", ChecksumAlgorithm.CRC32C)
    )
    body = AwsChunkedWrapper(
        io.BytesIO(payload), checksum_cls=checksum_cls, checksum_name=name, chunk_size=chunk_size
    ).read()
    dec = decoder(PayloadMode.STREAMING_UNSIGNED_TRAILER, trailer=algorithm, length=len(payload))
    data, trailers = decode(dec, split(body, cuts))
    assert data == payload
    expected = parse_expected_checksums([("x-amz-trailer", name)]).with_trailers(trailers)
    summer = Checksummer.for_expected(expected)
    summer.update(data)
    summer.finalize().verify(expected)


# ---------------------------------------------------------------- random bodies and splits

MODES = st.sampled_from(
    [
        PayloadMode.STREAMING_SIGNED,
        PayloadMode.STREAMING_SIGNED_TRAILER,
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
    ]
)
CHUNK_LISTS = st.lists(st.binary(min_size=1, max_size=300), max_size=6)
SIGNINGS = st.builds(
    Signing,
    key=st.binary(min_size=32, max_size=32),
    scope=st.just("20250101/garage/s3/aws4_request"),
    date=st.just("20250101T120000Z"),
    seed=st.binary(min_size=32, max_size=32).map(bytes.hex),
)


def _trailer_for(chunks: list[bytes]) -> tuple[str, str]:
    summer = Checksummer(ChecksumAlgorithm.CRC32)
    for chunk in chunks:
        summer.update(chunk)
    extra = summer.finalize().extra
    assert extra is not None
    return ("x-amz-checksum-crc32", base64.b64encode(extra.value).decode())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=MODES,
    chunks=CHUNK_LISTS,
    signing=SIGNINGS,
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    blank_before=st.booleans(),
    final_blank=st.booleans(),
)
def test_random_bodies_decode_whatever_the_split(
    mode: PayloadMode,
    chunks: list[bytes],
    signing: Signing,
    cuts: list[int],
    blank_before: bool,
    final_blank: bool,
) -> None:
    trailers = [_trailer_for(chunks)] if mode.has_trailer else None
    body = encode(
        chunks,
        mode,
        signing=signing,
        trailers=trailers,
        blank_before_trailer=blank_before,
        final_blank_line=final_blank,
    )
    payload = b"".join(chunks)
    algorithm = ChecksumAlgorithm.CRC32 if mode.has_trailer else None
    dec = decoder(mode, signing, trailer=algorithm, length=len(payload))
    data, got = decode(dec, split(body, cuts))
    assert data == payload
    assert got == dict(trailers or [])
    assert dec.decoded_bytes == len(payload)


def _decode_and_check(
    body: bytes, mode: PayloadMode, signing: Signing, length: int | None
) -> bytes:
    """Decodes, then checks what a PutObject would: the trailer checksum."""
    algorithm = ChecksumAlgorithm.CRC32 if mode.has_trailer else None
    data, trailers = decode(decoder(mode, signing, trailer=algorithm, length=length), [body])
    if mode.has_trailer:
        header = [("x-amz-trailer", "x-amz-checksum-crc32")]
        expected = parse_expected_checksums(header).with_trailers(trailers)
        summer = Checksummer.for_expected(expected)
        summer.update(data)
        summer.finalize().verify(expected)
    return data


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=MODES,
    chunks=CHUNK_LISTS,
    signing=SIGNINGS,
    declared=st.booleans(),
    data=st.data(),
)
def test_no_single_byte_change_goes_unnoticed(
    mode: PayloadMode,
    chunks: list[bytes],
    signing: Signing,
    declared: bool,
    data: st.DataObject,
) -> None:
    trailers = [_trailer_for(chunks)] if mode.has_trailer else None
    body = encode(chunks, mode, signing=signing, trailers=trailers)
    payload = b"".join(chunks)
    index = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    tampered = body[:index] + bytes([byte]) + body[index + 1 :]
    # Either the change is refused, or it did not change the payload (a hex digit's case,
    # whitespace around a trailer value): never altered data accepted.
    try:
        decoded = _decode_and_check(tampered, mode, signing, len(payload) if declared else None)
    except (SignatureError, BadDigestError):
        return
    assert decoded == payload


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mode=MODES, chunks=CHUNK_LISTS, signing=SIGNINGS, data=st.data())
def test_truncated_bodies_are_incomplete(
    mode: PayloadMode, chunks: list[bytes], signing: Signing, data: st.DataObject
) -> None:
    trailers = [_trailer_for(chunks)] if mode.has_trailer else None
    body = encode(chunks, mode, signing=signing, trailers=trailers)
    # A trailer body may end without its final blank line; any earlier cut is incomplete.
    last = len(body) - (3 if mode.has_trailer else 1)
    cut = data.draw(st.integers(0, last))
    with pytest.raises(IncompleteBodyError):
        decode(decoder(mode, signing, trailer=None), [body[:cut]])


# ---------------------------------------------------------------- targeted failures


def _signed_body(chunks: list[bytes]) -> bytes:
    return encode(chunks, PayloadMode.STREAMING_SIGNED, signing=AWS_SIGNING)


def test_tampered_data_signature_and_size_are_refused() -> None:
    body = _signed_body(AWS_CHUNKS)
    data_at = body.index(b"\r\n") + 2 + 1000
    changes = [
        (data_at, b"b"),  # a byte of data
        (body.index(b"ad80c7"), b"b"),  # a digit of a chunk signature
        (body.index(b"400;"), b"3"),  # a size: 0x300 reads less than the chunk
    ]
    for at, new in changes:
        tampered = body[:at] + new + body[at + 1 :]
        with pytest.raises(SignatureDoesNotMatchError):
            decode(decoder(PayloadMode.STREAMING_SIGNED), [tampered])


def test_reordered_or_dropped_chunks_are_refused() -> None:
    chunks = [b"x" * 100, b"y" * 100, b"z" * 100]
    body = _signed_body(chunks)
    pieces = body.split(b"\r\n")
    # pieces: [hdr1, data1, hdr2, data2, hdr3, data3, hdr-final, "", ""]
    swapped = b"\r\n".join([*pieces[2:4], *pieces[0:2], *pieces[4:]])
    dropped = b"\r\n".join([*pieces[0:2], *pieces[4:]])
    for tampered in (swapped, dropped):
        with pytest.raises(SignatureDoesNotMatchError):
            decode(decoder(PayloadMode.STREAMING_SIGNED), [tampered])


def test_signed_data_is_released_only_once_its_chunk_is_verified() -> None:
    body = _signed_body([b"q" * 1000])
    dec = decoder(PayloadMode.STREAMING_SIGNED)
    header_end = body.index(b"\r\n") + 2
    assert dec.feed(body[: header_end + 999]) == []  # chunk incomplete: nothing released
    released = dec.feed(body[header_end + 999 :])
    assert b"".join(released) == b"q" * 1000
    assert dec.finish() == {}


def test_unsigned_chunks_stream_without_copy() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB in one chunk
    body = encode(
        [payload], PayloadMode.STREAMING_UNSIGNED_TRAILER, trailers=[_trailer_for([payload])]
    )
    pieces = split(body, list(range(65536, len(body), 65536)))
    dec = decoder(PayloadMode.STREAMING_UNSIGNED_TRAILER, trailer=ChecksumAlgorithm.CRC32)
    total = 0
    for piece in pieces:
        for view in dec.feed(piece):
            assert view.obj is piece  # a slice of what was fed, not a copy
            total += len(view)
    assert total == len(payload)
    assert "x-amz-checksum-crc32" in dec.finish()


def test_declared_length_must_match() -> None:
    body = _signed_body([b"abc"])
    with pytest.raises(IncompleteBodyError, match="announced 4"):
        decode(decoder(PayloadMode.STREAMING_SIGNED, length=4), [body])
    with pytest.raises(InvalidRequestError, match="exceed"):
        decode(decoder(PayloadMode.STREAMING_SIGNED, length=2), [body])


def test_framing_errors() -> None:
    good = _signed_body([b"abc"])
    cases = {
        b"zz;chunk-signature=" + b"0" * 64 + b"\r\n": "chunk-size",
        b"3\r\nabc\r\n": "lacks its signature",
        b"3;chunk-signature=abc\r\n": "64 hex",
        b"1" * (MAX_CHUNK_LINE_BYTES + 1): "too long",
        f"{MAX_SIGNED_CHUNK_BYTES + 1:x};chunk-signature={'0' * 64}\r\n".encode(): "exceeds",
        good + b"extra\r\n": "after the end",
        good[:-2] + b"x\r\n": "after the final chunk",
    }
    for body, message in cases.items():
        with pytest.raises(InvalidRequestError, match=message):
            decode(decoder(PayloadMode.STREAMING_SIGNED), [body])
    # Chunk data longer than its size line says.
    unsigned = b"3\r\nabcd\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    with pytest.raises(InvalidRequestError, match="longer than its chunk size"):
        decode(decoder(PayloadMode.STREAMING_UNSIGNED_TRAILER), [unsigned])


def test_trailer_errors() -> None:
    cases = {
        b"no-colon\r\n\r\n": "name",
        b"x-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n": "twice",
        b"x-amz-meta-\xff:v\r\n\r\n": "ASCII",
        b"\r\n" * 9000: "exceeds",  # padding counts: 18000 bytes
    }
    for trailer, message in cases.items():
        with pytest.raises(MalformedTrailerError, match=message):
            decode(decoder(PayloadMode.STREAMING_UNSIGNED_TRAILER), [b"0\r\n" + trailer])
    signed = encode(
        [b"abc"],
        PayloadMode.STREAMING_SIGNED_TRAILER,
        signing=AWS_SIGNING,
        trailers=[("x-amz-checksum-crc32", "AAAAAA==")],
    )
    forged = signed.replace(b"AAAAAA==", b"AAAAAB==")
    with pytest.raises(SignatureDoesNotMatchError, match="trailer"):
        decode(decoder(PayloadMode.STREAMING_SIGNED_TRAILER), [forged])
    added = signed[:-2] + b"x-amz-meta-late:1\r\n\r\n"
    with pytest.raises(MalformedTrailerError, match="follows"):
        decode(decoder(PayloadMode.STREAMING_SIGNED_TRAILER), [added])


def test_a_failed_decoder_stays_failed() -> None:
    dec = decoder(PayloadMode.STREAMING_SIGNED)
    with pytest.raises(InvalidRequestError):
        dec.feed(b"zz\r\n")
    with pytest.raises(InvalidRequestError, match="already failed"):
        dec.feed(_signed_body([b"abc"]))
    with pytest.raises(InvalidRequestError, match="already failed"):
        dec.finish()


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="not an aws-chunked"):
        AwsChunkedDecoder(PayloadMode.UNSIGNED)
    with pytest.raises(ValueError, match="needs the seed"):
        AwsChunkedDecoder(PayloadMode.STREAMING_SIGNED)
    # Scope objects and strings are the same scope.
    scope = Scope("20130524", "us-east-1", "s3")
    dec = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED,
        seed_signature=AWS_SEED,
        signing_key=AWS_KEY,
        scope=scope,
        amz_date=AWS_DATE,
    )
    assert decode(dec, [_signed_body(AWS_CHUNKS)])[0] == AWS_PAYLOAD


def test_strip_aws_chunked() -> None:
    assert strip_aws_chunked(None) is None
    assert strip_aws_chunked("aws-chunked") is None
    assert strip_aws_chunked("aws-chunked,gzip") == "gzip"
    assert strip_aws_chunked("gzip, aws-chunked") == "gzip"
    assert strip_aws_chunked("gzip") == "gzip"

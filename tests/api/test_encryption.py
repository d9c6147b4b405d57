"""SSE-C's pure core (``garage_api.s3._encryption``): the header parsing and key checks, and
Garage's stored format (AES-256-GCM blobs, the STREAM construction over 4 KiB chunks)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from garage_api.s3 import S3Error
from garage_api.s3._encryption import (
    BLOB_NONCE_BYTES,
    STREAM_CIPHER_CHUNK_BYTES,
    STREAM_MAX_POSITION,
    STREAM_NONCE_BYTES,
    STREAM_PLAIN_CHUNK_BYTES,
    TAG_BYTES,
    CustomerKey,
    DecryptionError,
    Encryption,
    blob_decrypt,
    blob_encrypt,
    parse_customer_key,
    stream_decrypt,
    stream_encrypt,
    stream_nonce,
)
from garage_model.s3 import ObjectVersionMetaInner, Plaintext, SseC
from garage_model.s3.mpu_table import ChecksumAlgorithm, ChecksumValue

if TYPE_CHECKING:
    from garage_model.s3.writer import DataEncryption

# Garage's test keys (src/garage/tests/s3/ssec.rs): the MD5s are Garage's, so the key
# parsing is checked against values computed by another implementation.
GARAGE_KEY = "u8zCfnEyt5Imo/krN+sxA1DQXxLWtPJavU6T6gOVj1Y="
GARAGE_KEY_MD5 = "jMGbs3GyZkYjJUP6q5jA7g=="
GARAGE_KEY2 = "XkYVk4Z3vVDO2yJaUqCAEZX6lL10voMxtV06d8my/eU="
GARAGE_KEY2_MD5 = "kedo2ab8J1MCjHwJuLTJHw=="

KEY = base64.b64decode(GARAGE_KEY)
KEY2 = base64.b64decode(GARAGE_KEY2)
PREFIX = bytes(range(STREAM_NONCE_BYTES))
CHUNK = STREAM_PLAIN_CHUNK_BYTES

keys = st.binary(min_size=32, max_size=32)
prefixes = st.binary(min_size=STREAM_NONCE_BYTES, max_size=STREAM_NONCE_BYTES)
# Sizes around the chunk boundaries matter most: 0, 1, 4095, 4096, 4097, 8192...
block_sizes = st.one_of(
    st.integers(0, 3 * CHUNK + 10),
    st.sampled_from([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK]),
)


def _data(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def _sse_headers(key_b64: str, md5_b64: str, *, prefix: str = "x-amz-") -> list[tuple[str, str]]:
    """The SSE-C headers; ``prefix="x-amz-copy-source-"`` for a copy's source."""
    return [
        (f"{prefix}server-side-encryption-customer-algorithm", "AES256"),
        (f"{prefix}server-side-encryption-customer-key", key_b64),
        (f"{prefix}server-side-encryption-customer-key-md5", md5_b64),
    ]


def _counter(n: int) -> bytes:
    """Deterministic 'random' bytes for the injected randomness."""
    return bytes(itertools.islice(itertools.cycle(range(1, 256)), n))


# ---------------------------------------------------------------------- the format


def test_stream_nonce_is_prefix_then_little_endian_counter_with_last_flag() -> None:
    assert stream_nonce(PREFIX, 0, last=False) == PREFIX + b"\x00\x00\x00\x00"
    assert stream_nonce(PREFIX, 1, last=False) == PREFIX + b"\x01\x00\x00\x00"
    assert stream_nonce(PREFIX, 0x01020304, last=False) == PREFIX + b"\x04\x03\x02\x01"
    assert stream_nonce(PREFIX, 0, last=True) == PREFIX + b"\x00\x00\x00\x80"
    assert stream_nonce(PREFIX, 2, last=True) == PREFIX + b"\x02\x00\x00\x80"
    assert len(stream_nonce(PREFIX, 5, last=True)) == BLOB_NONCE_BYTES
    with pytest.raises(ValueError, match="range"):
        stream_nonce(PREFIX, STREAM_MAX_POSITION + 1, last=False)
    with pytest.raises(ValueError, match="prefix"):
        stream_nonce(b"short", 0, last=False)


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, [0]), (1, [1]), (CHUNK, [CHUNK]), (CHUNK + 1, [CHUNK, 1]), (2 * CHUNK, [CHUNK, CHUNK])],
)
def test_stream_layout_matches_the_aead_crate(size: int, chunks: list[int]) -> None:
    """The stored bytes are ``prefix`` then, per chunk, AES-GCM under the StreamLE31 nonce:
    rebuilt here chunk by chunk with the raw AEAD, independently of stream_encrypt."""
    data = _data(size)
    stored = stream_encrypt(KEY, PREFIX, data)
    assert stored[:STREAM_NONCE_BYTES] == PREFIX
    assert len(stored) == STREAM_NONCE_BYTES + size + TAG_BYTES * len(chunks)
    aead = AESGCM(KEY)
    expected, offset = PREFIX, 0
    for i, length in enumerate(chunks):
        flag = (1 << 31) if i == len(chunks) - 1 else 0
        nonce = PREFIX + struct.pack("<I", i | flag)
        expected += aead.encrypt(nonce, data[offset : offset + length], None)
        offset += length
    assert stored == expected


def test_empty_block_is_one_empty_last_chunk() -> None:
    stored = stream_encrypt(KEY, PREFIX, b"")
    assert len(stored) == STREAM_NONCE_BYTES + TAG_BYTES
    assert stream_decrypt(KEY, stored) == b""
    with pytest.raises(DecryptionError):
        stream_decrypt(KEY2, stored)


@settings(max_examples=60, deadline=None)
@given(keys, prefixes, block_sizes)
def test_stream_round_trip(key: bytes, prefix: bytes, size: int) -> None:
    data = _data(size)
    assert stream_decrypt(key, stream_encrypt(key, prefix, data)) == data


@settings(max_examples=100, deadline=None)
@given(block_sizes, st.data())
def test_stream_decrypts_any_slice(size: int, draw: st.DataObject) -> None:
    data = _data(size)
    stored = stream_encrypt(KEY, PREFIX, data)
    start = draw.draw(st.integers(0, size + 5), label="start")
    end = draw.draw(st.integers(start, size + 5), label="end")
    assert stream_decrypt(KEY, stored, start, end) == data[start:end]


def test_a_slice_decrypts_only_its_chunks() -> None:
    """A range in chunk 1 reads with chunk 0 damaged: the other chunks are not touched."""
    data = _data(3 * CHUNK)
    stored = bytearray(stream_encrypt(KEY, PREFIX, data))
    stored[STREAM_NONCE_BYTES + 10] ^= 1  # inside chunk 0
    assert (
        stream_decrypt(KEY, bytes(stored), CHUNK + 5, 2 * CHUNK - 5) == data[CHUNK + 5 : -CHUNK - 5]
    )
    with pytest.raises(DecryptionError, match="chunk 0"):
        stream_decrypt(KEY, bytes(stored), 0, 10)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2 * CHUNK + 40), st.data())
def test_any_flipped_bit_is_detected(size: int, draw: st.DataObject) -> None:
    stored = bytearray(stream_encrypt(KEY, PREFIX, _data(size)))
    position = draw.draw(st.integers(0, len(stored) - 1), label="position")
    stored[position] ^= 1 << draw.draw(st.integers(0, 7), label="bit")
    with pytest.raises(DecryptionError):
        stream_decrypt(KEY, bytes(stored))


def test_truncation_and_reordering_are_detected() -> None:
    data = _data(3 * CHUNK)
    stored = stream_encrypt(KEY, PREFIX, data)
    body = stored[STREAM_NONCE_BYTES:]
    chunks = [body[i : i + STREAM_CIPHER_CHUNK_BYTES] for i in range(0, len(body), 4112)]
    # Dropping the last whole chunk: chunk 1 now is the last, but was not sealed as such.
    with pytest.raises(DecryptionError):
        stream_decrypt(KEY, PREFIX + chunks[0] + chunks[1])
    # Swapping two chunks: each is bound to its position.
    with pytest.raises(DecryptionError):
        stream_decrypt(KEY, PREFIX + chunks[1] + chunks[0] + chunks[2])
    # A tail shorter than a tag is not a chunk.
    with pytest.raises(DecryptionError):
        stream_decrypt(KEY, stored[: STREAM_NONCE_BYTES + 10])


def test_blob_is_nonce_then_aes_gcm() -> None:
    nonce = bytes(range(12))
    blob = blob_encrypt(KEY, nonce, b"metadata")
    assert blob == nonce + AESGCM(KEY).encrypt(nonce, b"metadata", None)
    assert blob_decrypt(KEY, blob) == b"metadata"
    with pytest.raises(DecryptionError):
        blob_decrypt(KEY2, blob)
    with pytest.raises(DecryptionError):
        blob_decrypt(KEY, blob[:20])
    with pytest.raises(ValueError, match="nonce"):
        blob_encrypt(KEY, b"short", b"x")


# ---------------------------------------------------------------------- headers


def test_parse_key_matches_garages_md5() -> None:
    for key_b64, md5_b64 in ((GARAGE_KEY, GARAGE_KEY_MD5), (GARAGE_KEY2, GARAGE_KEY2_MD5)):
        key = parse_customer_key(_sse_headers(key_b64, md5_b64))
        assert key is not None
        assert key.key == base64.b64decode(key_b64)
        assert key.md5_base64 == md5_b64


def test_parse_no_headers_is_no_key() -> None:
    assert parse_customer_key([("content-type", "text/plain")]) is None
    # The copy-source headers are a different key.
    assert (
        parse_customer_key(_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5, prefix="x-amz-copy-source-"))
        is None
    )


def test_parse_copy_source_headers() -> None:
    literal = {
        "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-copy-source-server-side-encryption-customer-key": GARAGE_KEY,
        "x-amz-copy-source-server-side-encryption-customer-key-MD5": GARAGE_KEY_MD5,
    }
    source = parse_customer_key(literal, copy_source=True)
    assert source is not None
    assert source.key == KEY
    headers = [
        *_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5, prefix="x-amz-copy-source-"),
        *_sse_headers(GARAGE_KEY2, GARAGE_KEY2_MD5),
    ]
    source = parse_customer_key(headers, copy_source=True)
    destination = parse_customer_key(headers)
    assert source is not None
    assert source.key == KEY
    assert destination is not None
    assert destination.key == KEY2


def test_header_names_are_case_insensitive() -> None:
    headers = {
        "X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256",
        "X-Amz-Server-Side-Encryption-Customer-Key": GARAGE_KEY,
        "X-Amz-Server-Side-Encryption-Customer-Key-MD5": GARAGE_KEY_MD5,
    }
    key = parse_customer_key(headers)
    assert key is not None
    assert key.key == KEY


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (_sse_headers(GARAGE_KEY, GARAGE_KEY2_MD5), "InvalidArgument"),  # MD5 of another key
        (_sse_headers(GARAGE_KEY, "not base64!"), "InvalidArgument"),
        (_sse_headers("c2hvcnQ=", GARAGE_KEY_MD5), "InvalidArgument"),  # 5 bytes
        (_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5)[:2], "InvalidArgument"),  # no MD5
        (_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5)[::2], "InvalidArgument"),  # no key
        (_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5)[1:], "InvalidArgument"),  # no algorithm
        (
            [
                ("x-amz-server-side-encryption-customer-algorithm", "AES128"),
                *_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5)[1:],
            ],
            "InvalidEncryptionAlgorithmError",
        ),
    ],
    ids=["md5-mismatch", "bad-base64", "short-key", "no-md5", "no-key", "no-algorithm", "aes128"],
)
def test_parse_bad_headers(headers: list[tuple[str, str]], code: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_customer_key(headers)
    assert (exc.value.code, exc.value.status) == (code, 400)
    assert GARAGE_KEY not in exc.value.message


def test_key_is_never_shown() -> None:
    key = CustomerKey.from_key(KEY)
    encryption = Encryption(key, 1)
    for text in (repr(key), repr(encryption), str(encryption)):
        assert KEY.hex() not in text
        assert repr(KEY) not in text
        assert GARAGE_KEY not in text
    with pytest.raises(ValueError, match="32 bytes"):
        CustomerKey.from_key(b"0" * 31)


# ---------------------------------------------------------------------- per object


def test_from_request() -> None:
    plain = Encryption.from_request([], compression_level=1)
    assert not plain.is_encrypted
    assert plain.storage is None
    assert plain.response_headers() == []
    enc = Encryption.from_request(_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5), compression_level=3)
    assert enc.is_encrypted
    assert enc.storage is enc
    assert enc.compression_level == 3
    assert enc.response_headers() == [
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption-customer-key-md5", GARAGE_KEY_MD5),
    ]
    uncompressed = Encryption.from_request(
        _sse_headers(GARAGE_KEY, GARAGE_KEY_MD5), compression_level=None
    )
    assert uncompressed.compression_level is None


def test_etag_is_md5_in_clear_and_random_under_a_key() -> None:
    md5 = hashlib.md5(b"x", usedforsecurity=False).digest()
    assert Encryption().etag(md5) == md5.hex()
    with pytest.raises(ValueError, match="MD5"):
        Encryption().etag(None)
    enc = Encryption(CustomerKey.from_key(KEY), None, random_bytes=_counter)
    assert enc.etag(md5) == _counter(16).hex() != md5.hex()
    assert enc.etag(None) == _counter(16).hex()


INNER = ObjectVersionMetaInner(
    (("content-type", "text/x-secret"), ("x-amz-meta-a", "b")),
    ChecksumValue(ChecksumAlgorithm.CRC32, b"\x01\x02\x03\x04"),
)


@pytest.mark.parametrize("level", [None, 1])
def test_meta_round_trip_and_key_checks(level: int | None) -> None:
    enc = Encryption(CustomerKey.from_key(KEY), level)
    stored = enc.encrypt_meta(INNER)
    assert isinstance(stored, SseC)
    assert stored.compressed is (level is not None)
    assert b"text/x-secret" not in stored.inner
    right = _sse_headers(GARAGE_KEY, GARAGE_KEY_MD5)
    opened, inner = Encryption.for_stored(right, stored, compression_level=7)
    assert inner == INNER
    assert opened.key == enc.key
    # Blocks written later (parts of an upload) keep the object's compression.
    assert opened.compression_level == (None if level is None else 7)
    assert opened.same_storage(enc)
    # Compression switched off on the node: a compressed object's parts are still compressed.
    later, _ = Encryption.for_stored(right, stored, compression_level=None)
    assert (later.compression_level is not None) is (level is not None)

    with pytest.raises(S3Error) as exc:
        Encryption.for_stored([], stored, compression_level=1)
    assert (exc.value.code, exc.value.status) == ("InvalidRequest", 400)
    with pytest.raises(S3Error) as exc:
        Encryption.for_stored(
            _sse_headers(GARAGE_KEY2, GARAGE_KEY2_MD5), stored, compression_level=1
        )
    assert (exc.value.code, exc.value.status) == ("AccessDenied", 403)
    # The source key of a copy is read from the copy-source headers only.
    with pytest.raises(S3Error) as exc:
        Encryption.for_stored(right, stored, compression_level=1, copy_source=True)
    assert exc.value.code == "InvalidRequest"
    source, _ = Encryption.for_stored(
        _sse_headers(GARAGE_KEY, GARAGE_KEY_MD5, prefix="x-amz-copy-source-"),
        stored,
        compression_level=1,
        copy_source=True,
    )
    assert source.key == enc.key


def test_plaintext_objects_refuse_a_key() -> None:
    stored = Plaintext(INNER)
    enc, inner = Encryption.for_stored([], stored, compression_level=1)
    assert not enc.is_encrypted
    assert inner == INNER
    assert enc.encrypt_meta(INNER) == stored
    with pytest.raises(S3Error) as exc:
        Encryption.for_stored(_sse_headers(GARAGE_KEY, GARAGE_KEY_MD5), stored, compression_level=1)
    assert (exc.value.code, exc.value.status) == ("InvalidRequest", 400)


def test_same_storage() -> None:
    key, key2 = CustomerKey.from_key(KEY), CustomerKey.from_key(KEY2)
    assert Encryption().same_storage(Encryption())
    assert Encryption(key, 1).same_storage(Encryption(key, 5))  # the level is not stored
    assert not Encryption(key, 1).same_storage(Encryption(key, None))
    assert not Encryption(key, 1).same_storage(Encryption(key2, 1))
    assert not Encryption(key, None).same_storage(Encryption())


@settings(max_examples=40, deadline=None)
@given(block_sizes, st.sampled_from([None, 1, 3]), st.data())
def test_block_round_trip(size: int, level: int | None, draw: st.DataObject) -> None:
    enc = Encryption(CustomerKey.from_key(KEY), level)
    data = _data(size)
    stored = enc.encrypt_block(data)
    assert enc.decrypt_block(stored) == data
    start = draw.draw(st.integers(0, size), label="start")
    end = draw.draw(st.integers(start, size), label="end")
    assert enc.decrypt_block(stored, start, end) == data[start:end]
    other = Encryption(CustomerKey.from_key(KEY2), level)
    with pytest.raises(DecryptionError):
        other.decrypt_block(stored)


def test_compressed_blocks_are_smaller_and_never_plaintext() -> None:
    data = b"all work and no play makes jack a dull boy. " * 20000
    compressed = Encryption(CustomerKey.from_key(KEY), 1).encrypt_block(data)
    uncompressed = Encryption(CustomerKey.from_key(KEY), None).encrypt_block(data)
    assert len(compressed) < len(data) // 10
    assert len(uncompressed) == STREAM_NONCE_BYTES + len(data) + TAG_BYTES * -(-len(data) // CHUNK)
    for stored in (compressed, uncompressed):
        assert b"jack a dull boy" not in stored


def test_fresh_nonces_for_every_write() -> None:
    enc = Encryption(CustomerKey.from_key(KEY), None)
    assert enc.encrypt_block(b"same") != enc.encrypt_block(b"same")
    assert enc.encrypt_blob(b"same") != enc.encrypt_blob(b"same")
    fixed = Encryption(CustomerKey.from_key(KEY), None, random_bytes=_counter)
    assert fixed.encrypt_block(b"data") == stream_encrypt(KEY, _counter(8), b"data")
    assert fixed.encrypt_blob(b"data") == blob_encrypt(KEY, _counter(12), b"data")


def test_plaintext_encryption_is_the_identity() -> None:
    plain = Encryption()
    assert plain.encrypt_block(b"abc") == b"abc"
    assert plain.decrypt_block(b"abcdef", 1, 3) == b"bc"
    assert plain.encrypt_blob(b"abc") == plain.decrypt_blob(b"abc") == b"abc"


def test_encryption_is_the_models_data_encryption() -> None:
    enc: DataEncryption = Encryption(CustomerKey.from_key(KEY), 1)
    assert enc.decrypt_blob(enc.encrypt_blob(b"inline")) == b"inline"

"""SSE-C: server-side encryption with customer-provided keys (design §10.9).

Garage: src/api/s3/encryption.rs. The stored format is Garage's, byte for byte, so that
data written by either implementation reads with the other.

Headers
-------
``x-amz-server-side-encryption-customer-algorithm`` (``AES256``, the only one), ``-key``
(the base64 of a 32-byte key) and ``-key-MD5`` (the base64 of the key's MD5, checked: it
guards the key against transport damage). A copy names the key of its *source* with the
same headers prefixed by ``x-amz-copy-source-``. The key is never stored: an object written
with a key can only be read (GET, HEAD, copy source) or extended (UploadPart) with it.

Format
------
- **Metadata and inline data** (:func:`blob_encrypt`): AES-256-GCM under the key with a
  random 12-byte nonce, stored as ``nonce ‖ ciphertext ‖ tag``. The metadata is the encoded
  :class:`~garage_model.s3.ObjectVersionMetaInner` (the object's headers and checksum),
  stored as ``SseC{inner, compressed}``; decrypting it is how a key is checked.
- **Blocks** (:func:`stream_encrypt`): zstd-compressed first (one frame with its content
  checksum) when the object is ``compressed``, then AES-256-GCM STREAM with the aead crate's
  ``StreamLE31`` nonces: a random 8-byte nonce prefix is stored first; the plaintext is cut
  in chunks of :data:`STREAM_PLAIN_CHUNK_BYTES`, chunk ``i`` is encrypted under the nonce
  ``prefix ‖ LE32(i | last << 31)`` and grows by its 16-byte tag. An empty block is one empty
  last chunk. The counter stops chunks from being reordered and the last flag stops a block
  from being truncated at a chunk boundary (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
  Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015). The chunk size is
  part of the format: it can never change.

Invariants
----------
- Byte ``p`` of a block's plaintext is in chunk ``p // 4096``, whose ciphertext starts at
  ``8 + (p // 4096) * 4112``: a range of an uncompressed block decrypts only the chunks it
  needs (:func:`stream_decrypt`). A compressed block is decrypted and decompressed whole.
- Every decryption authenticates at least one chunk, so even an empty range of a block
  fails under a wrong key.
- Block hashes are of the stored (encrypted) bytes, sizes and offsets count plaintext bytes;
  the block manager must not compress these blocks again (``prevent_compression``).
- The ETag of an SSE-C object is random hex (AWS: it is not the MD5 of the data), and the
  key appears in no ``repr``, log line or error message.

Everything here is pure and CPU-bound: callers run block work in a worker thread, and the
randomness (nonces, ETags) comes from an injectable ``random_bytes`` (``os.urandom``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from garage_model.s3 import ObjectVersionMetaInner, Plaintext, SseC
from garage_util.errors import DecodeError

from ._errors import S3Error
from ._router import header_values

if TYPE_CHECKING:
    from garage_model.s3 import ObjectVersionEncryption
    from garage_model.s3.writer import DataEncryption

    from ._router import Headers

__all__ = [
    "BLOB_NONCE_BYTES",
    "COPY_SOURCE_PREFIX",
    "CUSTOMER_ALGORITHM_AES256",
    "KEY_BYTES",
    "SSE_C_ALGORITHM",
    "SSE_C_KEY",
    "SSE_C_KEY_MD5",
    "STREAM_CIPHER_CHUNK_BYTES",
    "STREAM_MAX_POSITION",
    "STREAM_NONCE_BYTES",
    "STREAM_PLAIN_CHUNK_BYTES",
    "TAG_BYTES",
    "CustomerKey",
    "DecryptionError",
    "Encryption",
    "blob_decrypt",
    "blob_encrypt",
    "parse_customer_key",
    "stream_decrypt",
    "stream_encrypt",
    "stream_nonce",
]

#: The algorithm header (request and response).
SSE_C_ALGORITHM: Final = "x-amz-server-side-encryption-customer-algorithm"
#: The key header: base64 of the 32-byte key.
SSE_C_KEY: Final = "x-amz-server-side-encryption-customer-key"
#: The key MD5 header: base64 of the MD5 of the key (request and response).
SSE_C_KEY_MD5: Final = "x-amz-server-side-encryption-customer-key-md5"
#: Prefix of the same three headers naming the key of a copy's source, in place of
#: ``x-amz-`` (``x-amz-copy-source-server-side-encryption-customer-key``...).
COPY_SOURCE_PREFIX: Final = "x-amz-copy-source-"
#: The only algorithm of SSE-C (AWS and Garage).
CUSTOMER_ALGORITHM_AES256: Final = "AES256"
#: AES-256 keys.
KEY_BYTES: Final = 32
#: AES-GCM's standard nonce, stored before encrypted metadata and inline data.
BLOB_NONCE_BYTES: Final = 12
#: The GCM tag appended to every ciphertext.
TAG_BYTES: Final = 16
#: STREAM's stored nonce prefix: the GCM nonce minus the 4 bytes of counter and last flag.
STREAM_NONCE_BYTES: Final = BLOB_NONCE_BYTES - 4
#: Plaintext bytes per STREAM chunk. Part of the stored format: DO NOT CHANGE (Garage's
#: STREAM_ENC_PLAIN_CHUNK_SIZE).
STREAM_PLAIN_CHUNK_BYTES: Final = 4096
#: Stored bytes per full STREAM chunk.
STREAM_CIPHER_CHUNK_BYTES: Final = STREAM_PLAIN_CHUNK_BYTES + TAG_BYTES
#: The largest chunk position of the aead crate's StreamLE31 (its ``COUNTER_MAX``): 1 TiB
#: of 4 KiB chunks, far beyond any block.
STREAM_MAX_POSITION: Final = 0xFFF_FFFF
#: Random bytes of an SSE-C object's ETag (the length of an MD5, as Garage).
_ETAG_RANDOM_BYTES: Final = 16
#: The last-chunk flag: the top bit of the little-endian 32-bit counter.
_LAST_CHUNK_FLAG: Final = 1 << 31
#: The compression level of an object stored compressed when this node has compression off
#: (Garage's ``compression_level.unwrap_or(1)``): its parts must be compressed too.
_DEFAULT_COMPRESSION_LEVEL: Final = 1
# AWS's messages, so that clients read the same text as against S3.
_MISSING_KEY: Final = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)
_NOT_APPLICABLE: Final = "The encryption parameters are not applicable to this object."


class DecryptionError(ValueError):
    """Encrypted bytes did not decrypt: a wrong key, or damaged or truncated data."""


# ------------------------------------------------------------------ the primitives


def blob_encrypt(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """``nonce ‖ AES-256-GCM(key, nonce, data)``: encrypted metadata and inline data.

    Raises:
        ValueError: the key is not 32 bytes or the nonce not 12.
    """
    if len(nonce) != BLOB_NONCE_BYTES:
        raise ValueError(f"the nonce must be {BLOB_NONCE_BYTES} bytes")
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def blob_decrypt(key: bytes, blob: bytes) -> bytes:
    """The plaintext of :func:`blob_encrypt`'s output.

    Raises:
        DecryptionError: too short, or it does not authenticate under ``key``.
    """
    if len(blob) < BLOB_NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("encrypted data shorter than its nonce and tag")
    try:
        return AESGCM(key).decrypt(blob[:BLOB_NONCE_BYTES], blob[BLOB_NONCE_BYTES:], None)
    except InvalidTag:
        raise DecryptionError("the data does not decrypt with this key") from None


def stream_nonce(prefix: bytes, position: int, *, last: bool) -> bytes:
    """The GCM nonce of STREAM chunk ``position``: ``prefix ‖ LE32(position | last << 31)``
    (the aead crate's ``StreamLE31::aead_nonce``).

    Raises:
        ValueError: a prefix that is not 8 bytes, or a position out of the counter's range.
    """
    if len(prefix) != STREAM_NONCE_BYTES:
        raise ValueError(f"the nonce prefix must be {STREAM_NONCE_BYTES} bytes")
    if not 0 <= position <= STREAM_MAX_POSITION:
        raise ValueError(f"chunk position {position} is out of the STREAM counter's range")
    return prefix + struct.pack("<I", position | (_LAST_CHUNK_FLAG if last else 0))


def _chunk_count(plain_bytes: int) -> int:
    """Chunks of a plaintext: at least one (an empty plaintext is one empty last chunk)."""
    return max(1, -(-plain_bytes // STREAM_PLAIN_CHUNK_BYTES))


def stream_encrypt(key: bytes, prefix: bytes, data: bytes) -> bytes:
    """``prefix ‖`` the STREAM encryption of ``data`` (see the module docstring).

    Raises:
        ValueError: a bad key or prefix, or data past the counter's range.
    """
    aead = AESGCM(key)
    count = _chunk_count(len(data))
    view = memoryview(data)
    out = [prefix]
    for i in range(count):
        chunk = view[i * STREAM_PLAIN_CHUNK_BYTES : (i + 1) * STREAM_PLAIN_CHUNK_BYTES]
        out.append(aead.encrypt(stream_nonce(prefix, i, last=i == count - 1), chunk, None))
    return b"".join(out)


def stream_decrypt(key: bytes, stored: bytes, start: int = 0, end: int | None = None) -> bytes:
    """The plaintext bytes ``[start, end)`` of a STREAM ciphertext (all of it by default),
    decrypting only the chunks that hold them.

    A range past the end is cut at the end, as a slice is.

    Raises:
        DecryptionError: a chunk does not authenticate (wrong key, damaged, truncated or
            reordered data), or ``stored`` is not a STREAM ciphertext.
    """
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range [{start}, {end})")
    body_bytes = len(stored) - STREAM_NONCE_BYTES
    if body_bytes < TAG_BYTES:
        raise DecryptionError("encrypted block shorter than its nonce and one tag")
    count = -(-body_bytes // STREAM_CIPHER_CHUNK_BYTES)
    plain_bytes = body_bytes - count * TAG_BYTES
    end = plain_bytes if end is None else min(end, plain_bytes)
    start = min(start, end)
    first = min(start // STREAM_PLAIN_CHUNK_BYTES, count - 1)
    last = max(first, (end - 1) // STREAM_PLAIN_CHUNK_BYTES) if end > start else first
    aead = AESGCM(key)
    prefix = stored[:STREAM_NONCE_BYTES]
    view = memoryview(stored)[STREAM_NONCE_BYTES:]
    plain = []
    for i in range(first, last + 1):
        chunk = view[i * STREAM_CIPHER_CHUNK_BYTES : (i + 1) * STREAM_CIPHER_CHUNK_BYTES]
        try:
            plain.append(aead.decrypt(stream_nonce(prefix, i, last=i == count - 1), chunk, None))
        except InvalidTag:
            raise DecryptionError(f"chunk {i} of the block does not decrypt") from None
    data = b"".join(plain)
    offset = first * STREAM_PLAIN_CHUNK_BYTES
    if start == offset and end - offset == len(data):
        return data
    return data[start - offset : end - offset]


def _zstd_compress(data: bytes, level: int) -> bytes:
    """One zstd frame with its content checksum (Garage's ``zstd_encode``)."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


def _zstd_decompress(frame: bytes) -> bytes:
    """Decodes exactly one zstd frame, with or without a content size (Rust's streaming
    encoder writes none).

    Raises:
        DecryptionError: not one complete, valid frame.
    """
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(frame)
    except zstandard.ZstdError as exc:
        raise DecryptionError(f"invalid zstd frame in an encrypted block: {exc}") from None
    if not dobj.eof or dobj.unused_data:
        raise DecryptionError("truncated zstd frame, or bytes after it, in an encrypted block")
    return out


# ------------------------------------------------------------------ keys and headers


@final
@dataclass(frozen=True, slots=True)
class CustomerKey:
    """A customer-provided key (never shown by ``repr``).

    Attributes:
        key: the 32-byte AES-256 key.
        md5: its MD5, sent back in ``x-amz-server-side-encryption-customer-key-MD5``.
    """

    key: bytes = field(repr=False)
    md5: bytes

    @classmethod
    def from_key(cls, key: bytes) -> CustomerKey:
        """The key and its MD5.

        Raises:
            ValueError: the key is not 32 bytes.
        """
        if len(key) != KEY_BYTES:
            raise ValueError(f"an SSE-C key has {KEY_BYTES} bytes, not {len(key)}")
        return cls(key, hashlib.md5(key, usedforsecurity=False).digest())

    @property
    def md5_base64(self) -> str:
        """The MD5 as the headers carry it."""
        return base64.b64encode(self.md5).decode()


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise S3Error.invalid_argument(f"{what} is not valid base64") from None


def parse_customer_key(headers: Headers, *, copy_source: bool = False) -> CustomerKey | None:
    """The SSE-C key a request gives, or None when it gives none.

    Args:
        headers: the request headers.
        copy_source: read the ``x-amz-copy-source-`` headers (the key of a copy's source).

    Raises:
        S3Error: ``InvalidEncryptionAlgorithmError`` for an algorithm other than
            ``AES256``; ``InvalidArgument`` for a key or MD5 header without the algorithm,
            an algorithm without key or MD5, a key that is not 32 bytes of base64, or an
            MD5 that is not the key's.
    """

    def name_of(name: str) -> str:
        return COPY_SOURCE_PREFIX + name.removeprefix("x-amz-") if copy_source else name

    def get(name: str) -> str | None:
        values = header_values(headers, name_of(name))
        return values[0] if values else None

    algorithm, key_b64, md5_b64 = get(SSE_C_ALGORITHM), get(SSE_C_KEY), get(SSE_C_KEY_MD5)
    if algorithm is None:
        if key_b64 is not None or md5_b64 is not None:
            raise S3Error.invalid_argument(
                "Requests specifying Server Side Encryption with Customer provided keys "
                "must provide a valid encryption algorithm."
            )
        return None
    if algorithm.strip() != CUSTOMER_ALGORITHM_AES256:
        raise S3Error(
            "InvalidEncryptionAlgorithmError",
            "The encryption request you specified is not valid. The valid value is AES256.",
            400,
        )
    if key_b64 is None:
        raise S3Error.invalid_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key."
        )
    if md5_b64 is None:
        raise S3Error.invalid_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key."
        )
    raw = _b64decode(key_b64, name_of(SSE_C_KEY))
    if len(raw) != KEY_BYTES:
        raise S3Error.invalid_argument(
            "The secret key was invalid for the specified algorithm (AES256 keys are "
            f"{KEY_BYTES} bytes)."
        )
    key = CustomerKey.from_key(raw)
    if _b64decode(md5_b64, name_of(SSE_C_KEY_MD5)) != key.md5:
        raise S3Error.invalid_argument(
            "The calculated MD5 hash of the key did not match the hash that was provided."
        )
    return key


# ------------------------------------------------------------------ per object


@final
@dataclass(frozen=True, slots=True)
class Encryption:
    """How one object's data and metadata are stored: in clear, or under a customer key.

    Build it with :meth:`from_request` for a new object, or :meth:`for_stored` for an
    existing one (which checks the request's key). Implements the model's
    ``DataEncryption`` (see :attr:`storage`).

    Attributes:
        key: the customer key; None for an object stored in clear.
        compression_level: zstd level the blocks are compressed with before encryption;
            None for uncompressed blocks (only meaningful with a key).
        random_bytes: the source of nonces and ETags (``os.urandom``; injected in tests).
    """

    key: CustomerKey | None = None
    compression_level: int | None = None
    random_bytes: Callable[[int], bytes] = field(default=os.urandom, repr=False, compare=False)

    @classmethod
    def from_request(
        cls,
        headers: Headers,
        *,
        compression_level: int | None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> Encryption:
        """The encryption of an object a request creates (PutObject, CreateMultipartUpload,
        a copy's destination): SSE-C if the request gives a key.

        Args:
            headers: the request headers.
            compression_level: the node's ``compression_level`` (None: compression off).
            random_bytes: see the class.

        Raises:
            S3Error: see :func:`parse_customer_key`.
        """
        key = parse_customer_key(headers)
        level = compression_level if key is not None else None
        return cls(key, level, random_bytes)

    @classmethod
    def for_stored(
        cls,
        headers: Headers,
        stored: ObjectVersionEncryption,
        *,
        compression_level: int | None,
        copy_source: bool = False,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> tuple[Encryption, ObjectVersionMetaInner]:
        """The encryption of an existing object (or upload) and its decrypted metadata,
        checking that the request gives the key it was stored with (Garage:
        ``check_decrypt``).

        Args:
            headers: the request headers.
            stored: the object's stored encryption (``Plaintext`` or ``SseC``).
            compression_level: the node's ``compression_level``; an object stored
                compressed gets it (or 1 when compression is off now), for the parts
                still to be written into it.
            copy_source: the object is a copy's source (read the ``x-amz-copy-source-``
                headers).
            random_bytes: see the class.

        Raises:
            S3Error: ``400 InvalidRequest`` for an encrypted object without a key or a
                plain one with a key; ``403 AccessDenied`` for a wrong key (as AWS);
                the errors of :func:`parse_customer_key`.
        """
        key = parse_customer_key(headers, copy_source=copy_source)
        if isinstance(stored, Plaintext):
            if key is not None:
                raise S3Error.invalid_request(_NOT_APPLICABLE)
            return cls(None, None, random_bytes), stored.inner
        if not isinstance(stored, SseC):
            raise TypeError(f"unknown object encryption {type(stored).__name__}")
        if key is None:
            raise S3Error.invalid_request(_MISSING_KEY)
        level = None
        if stored.compressed:
            level = _DEFAULT_COMPRESSION_LEVEL if compression_level is None else compression_level
        encryption = cls(key, level, random_bytes)
        try:
            plain = blob_decrypt(key.key, stored.inner)
        except DecryptionError:
            raise S3Error.access_denied(
                "The SSE-C key provided does not match the key the object was stored with."
            ) from None
        try:
            inner = ObjectVersionMetaInner.decode(plain)
        except DecodeError as exc:
            raise S3Error.internal_error(f"undecodable encrypted object metadata: {exc}") from None
        return encryption, inner

    @property
    def is_encrypted(self) -> bool:
        """True with a customer key."""
        return self.key is not None

    @property
    def storage(self) -> DataEncryption | None:
        """What the model's writers and readers take: this, or None in clear."""
        return self if self.key is not None else None

    def same_storage(self, other: Encryption) -> bool:
        """True when blocks stored under ``self`` read the same under ``other`` (the same
        key and both compressed or both not): a copy may then reuse them (Garage:
        ``is_same``)."""

        def relevant(e: Encryption) -> tuple[bytes, bool] | None:
            return None if e.key is None else (e.key.key, e.compression_level is not None)

        return relevant(self) == relevant(other)

    def response_headers(self) -> list[tuple[str, str]]:
        """The algorithm and key MD5 a response about an SSE-C object echoes (none in clear)."""
        if self.key is None:
            return []
        return [(SSE_C_ALGORITHM, CUSTOMER_ALGORITHM_AES256), (SSE_C_KEY_MD5, self.key.md5_base64)]

    def etag(self, md5: bytes | None) -> str:
        """The ETag of new data: the hex MD5 in clear, random hex under a key (AWS says an
        SSE-C ETag is not the MD5, and the MD5 of the plaintext would leak it).

        Raises:
            ValueError: in clear without an MD5.
        """
        if self.key is not None:
            return self.random_bytes(_ETAG_RANDOM_BYTES).hex()
        if md5 is None:
            raise ValueError("the ETag of an unencrypted object is its MD5: compute it")
        return md5.hex()

    # ---- the model's DataEncryption

    def encrypt_meta(self, inner: ObjectVersionMetaInner) -> ObjectVersionEncryption:
        """The stored form of an object's headers and checksum."""
        if self.key is None:
            return Plaintext(inner)
        return SseC(self.encrypt_blob(inner.encode()), self.compression_level is not None)

    def encrypt_blob(self, data: bytes) -> bytes:
        """Inline data (or any small value) as stored: encrypted with a fresh nonce."""
        if self.key is None:
            return data
        return blob_encrypt(self.key.key, self.random_bytes(BLOB_NONCE_BYTES), data)

    def decrypt_blob(self, blob: bytes) -> bytes:
        """The plaintext of :meth:`encrypt_blob`'s output.

        Raises:
            DecryptionError: it does not decrypt with this key.
        """
        if self.key is None:
            return blob
        return blob_decrypt(self.key.key, blob)

    def encrypt_block(self, block: bytes) -> bytes:
        """A data block as stored: compressed if so configured, then STREAM-encrypted
        (CPU work: call it from a worker thread)."""
        if self.key is None:
            return block
        if self.compression_level is not None:
            block = _zstd_compress(block, self.compression_level)
        return stream_encrypt(self.key.key, self.random_bytes(STREAM_NONCE_BYTES), block)

    def decrypt_block(self, stored: bytes, start: int = 0, end: int | None = None) -> bytes:
        """The plaintext bytes ``[start, end)`` of a stored block (all by default); only the
        chunks holding them are decrypted when the block is not compressed (CPU work: call
        it from a worker thread).

        Raises:
            DecryptionError: the block does not decrypt (or decompress) with this key.
        """
        if self.key is None:
            return stored[start:end]
        if self.compression_level is None:
            return stream_decrypt(self.key.key, stored, start, end)
        plain = _zstd_decompress(stream_decrypt(self.key.key, stored))
        if start == 0 and (end is None or end >= len(plain)):
            return plain
        return plain[start:end]

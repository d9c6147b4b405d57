"""Identifiers and hashes (Garage: src/util/data.rs).

Every id in Garage is 32 bytes: node ids (ed25519 public keys), bucket ids, version and
upload uuids, block hashes, Merkle hashes. :class:`FixedBytes32` is that value: an immutable
``bytes`` subclass of exactly 32 bytes, so it orders, hashes and compares like bytes, packs as
a msgpack ``bin`` with no conversion, and prints as short hex.

Hash functions, and why each one:

- :func:`blake2sum` is BLAKE2b-512 truncated to its first 32 bytes. This is *not*
  ``blake2b(digest_size=32)``: the digest size is a parameter mixed into BLAKE2's state, so the
  two give different bytes. Garage truncates, and block ids must match its definition.
- :func:`fasthash` is XXH3-64, for non-cryptographic indexing where speed matters.
- :func:`sha256sum` (S3 signatures and checksums) and :func:`md5sum` (ETags, Content-MD5).

The hash functions are cheap on small inputs but CPU-bound on blocks (1 MiB): async callers
hash big buffers in a worker thread (``anyio.to_thread.run_sync``); hashlib releases the GIL
for inputs over 2 KiB, so this gives real parallelism.
"""

from __future__ import annotations

import hashlib
import os
from typing import Final, Self, TypeAlias

import xxhash

__all__ = [
    "HASH_LEN",
    "FixedBytes32",
    "Hash",
    "Uuid",
    "blake2sum",
    "fasthash",
    "gen_uuid",
    "md5sum",
    "sha256sum",
]

#: Every id and hash is 32 bytes, as in Garage (256 bits: collision-free at any scale).
HASH_LEN: Final = 32

#: Ids are printed with the first 8 bytes in hex (16 chars), as Garage's Debug does: enough
#: to tell nodes and objects apart in logs, short enough to read.
_SHORT_LEN: Final = 8


class FixedBytes32(bytes):
    """Exactly 32 immutable bytes: an id or a hash.

    Ordering, hashing and equality are those of ``bytes`` (so a ``FixedBytes32`` equals the
    plain bytes it holds). ``hex()`` is the full lowercase hex form; ``str()`` and ``repr()``
    show the short form.

    Raises:
        ValueError: on construction from anything that is not 32 bytes long.
    """

    __slots__ = ()

    def __new__(cls, value: bytes | bytearray | memoryview) -> Self:
        if len(value) != HASH_LEN:
            raise ValueError(f"{cls.__name__} needs exactly {HASH_LEN} bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """Parses the 64-character hex form (either case).

        Raises:
            ValueError: when ``text`` is not 64 hex digits.
        """
        if len(text) != 2 * HASH_LEN:
            raise ValueError(
                f"expected {2 * HASH_LEN} hex characters for a 32-byte id, got {len(text)}"
            )
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"not a hex string: {text!r}") from None
        return cls(raw)

    @classmethod
    def zero(cls) -> Self:
        """The all-zero id (the smallest value, used as a lower range bound)."""
        return cls(bytes(HASH_LEN))

    def short_hex(self) -> str:
        """The first 8 bytes in hex: what logs and the CLI show."""
        return self[:_SHORT_LEN].hex()

    def increment(self) -> Self | None:
        """The next id as a 256-bit big-endian integer, or None after the all-ones id.

        Used to turn an inclusive bound into an exclusive one in range scans.
        """
        n = int.from_bytes(self, "big") + 1
        if n >> (8 * HASH_LEN):
            return None
        return type(self)(n.to_bytes(HASH_LEN, "big"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.short_hex()}…)"

    def __str__(self) -> str:
        return self.short_hex()

    def __getnewargs__(self) -> tuple[bytes]:  # pickle through __new__'s length check
        return (bytes(self),)


#: A content hash (block id, Merkle hash). Same type as Uuid, named for intent, as in Garage.
Hash: TypeAlias = FixedBytes32
#: A random identifier (bucket id, version uuid, node id).
Uuid: TypeAlias = FixedBytes32


def gen_uuid() -> Uuid:
    """Returns 32 random bytes from the OS's CSPRNG (bucket ids, version and upload ids)."""
    return FixedBytes32(os.urandom(HASH_LEN))


def blake2sum(data: bytes | bytearray | memoryview) -> Hash:
    """BLAKE2b-512 of ``data`` truncated to 32 bytes: Garage's block and Merkle hash."""
    return FixedBytes32(hashlib.blake2b(data).digest()[:HASH_LEN])


def sha256sum(data: bytes | bytearray | memoryview) -> Hash:
    """SHA-256 of ``data``."""
    return FixedBytes32(hashlib.sha256(data).digest())


def md5sum(data: bytes | bytearray | memoryview) -> bytes:
    """MD5 of ``data`` (16 bytes): S3 ETags and Content-MD5 only, never for security."""
    return hashlib.md5(data, usedforsecurity=False).digest()


def fasthash(data: bytes | bytearray | memoryview) -> int:
    """XXH3-64 of ``data`` as an unsigned 64-bit integer (non-cryptographic)."""
    return xxhash.xxh3_64_intdigest(data)

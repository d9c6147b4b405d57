"""Data blocks: the bytes of one chunk, plain or zstd-compressed (Garage: src/block/block.rs).

Theory of operation: a block is identified by the blake2 sum of its *plain* content (as the
API layer produced it, before compression). The stored or transmitted form is a
:class:`DataBlock`, whose :class:`DataBlockHeader` says whether ``data`` is that plain
content or a zstd frame of it.

Invariants:

- A compressed block exists only when it is strictly smaller than the plain one
  (:meth:`DataBlock.from_buffer`): random or already-compressed data stays plain.
- zstd frames are written with the content checksum flag, so a compressed block is verified
  by decoding it fully: the blake2 sum is *not* recomputed (Garage does the same; the hash is
  over the plain bytes, and a successful checksummed decode already proves integrity).
- A plain block is verified by recomputing ``blake2sum(data) == hash``.

Everything here is CPU-bound (hashing, compression): async callers run it with
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import zstandard

from garage_util.data import Hash, blake2sum

from ._errors import CorruptBlockError

__all__ = ["DataBlock", "DataBlockHeader", "zstd_compress", "zstd_decompress"]


class DataBlockHeader(enum.Enum):
    """How a block's bytes are encoded."""

    PLAIN = 0
    """``data`` is the block content itself."""
    COMPRESSED = 1
    """``data`` is one zstd frame (with content checksum) of the block content."""


def zstd_compress(data: bytes, level: int) -> bytes:
    """Compresses ``data`` as one zstd frame carrying its content size and checksum."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


def zstd_decompress(frame: bytes) -> bytes:
    """Decodes exactly one complete zstd frame.

    Uses a streaming decoder, so frames written without a content size (as Rust's streaming
    encoder does) decode too.

    Raises:
        ValueError: the frame is invalid, truncated, fails its checksum, or has trailing bytes.
    """
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(frame)
    except zstandard.ZstdError as exc:
        raise ValueError(f"invalid zstd frame: {exc}") from exc
    if not dobj.eof:
        raise ValueError("truncated zstd frame")
    if dobj.unused_data:
        raise ValueError(f"{len(dobj.unused_data)} bytes after the zstd frame")
    return out


@dataclass(frozen=True, slots=True)
class DataBlock:
    """A block as stored or sent: a header and its bytes.

    Attributes:
        header: whether ``data`` is plain or a zstd frame.
        data: the bytes as stored (compressed when ``header`` is ``COMPRESSED``).
    """

    header: DataBlockHeader
    data: bytes

    @classmethod
    def plain(cls, data: bytes) -> DataBlock:
        """A block holding ``data`` as it is."""
        return cls(DataBlockHeader.PLAIN, data)

    @classmethod
    def compressed(cls, frame: bytes) -> DataBlock:
        """A block holding ``frame``, a zstd frame of the content."""
        return cls(DataBlockHeader.COMPRESSED, frame)

    @classmethod
    def from_buffer(cls, data: bytes, *, compression_level: int | None) -> DataBlock:
        """Builds the block to store for ``data``, compressed when that saves space.

        Args:
            data: the plain block content.
            compression_level: zstd level (the ``compression_level`` setting), or ``None``
                to store plain (compression disabled, or SSE-C data that the API layer has
                already made incompressible).

        Returns:
            A compressed block if the zstd frame is strictly smaller than ``data``, else a
            plain one.
        """
        if compression_level is not None:
            frame = zstd_compress(data, compression_level)
            if len(frame) < len(data):
                return cls.compressed(frame)
        return cls.plain(data)

    @property
    def is_compressed(self) -> bool:
        """True when ``data`` is a zstd frame."""
        return self.header is DataBlockHeader.COMPRESSED

    def verify(self, hash: Hash) -> None:
        """Checks the block's integrity against its ``hash``.

        Raises:
            CorruptBlockError: a plain block's blake2 sum differs from ``hash``, or a
                compressed block does not decode completely.
        """
        if self.header is DataBlockHeader.PLAIN:
            if blake2sum(self.data) != hash:
                raise CorruptBlockError(hash, "blake2 sum mismatch")
        else:
            try:
                zstd_decompress(self.data)
            except ValueError as exc:
                raise CorruptBlockError(hash, str(exc)) from exc

    def content(self) -> bytes:
        """Returns the plain block content, decompressing if needed.

        Raises:
            ValueError: the zstd frame does not decode (blocks read through
                :class:`BlockStore` are verified first, so this means corruption in memory).
        """
        if self.header is DataBlockHeader.PLAIN:
            return self.data
        return zstd_decompress(self.data)

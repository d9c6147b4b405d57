"""Copies that reuse the source's blocks: CopyObject and UploadPartCopy (design §8.4, §10.7).

Garage: the storage half of src/api/s3/copy.rs. The S3 API resolves the source, checks the
permissions and the ``x-amz-copy-source-if-*`` conditions and builds the new metadata; this
module moves (or rather, avoids moving) the data.

Theory of operation
-------------------
**CopyObject** (:func:`copy_object`). An inline source is copied inline, in one insert. A
source stored in blocks is never read: the copy is a new version listing the same blocks,
with its own block references. The write order keeps every block referenced:

1. insert the destination object with an ``Uploading`` version (it owns the new version);
2. insert the new version row, then its block list and block references together;
3. insert the ``Complete`` version **last**. Copying an object onto itself (to replace its
   metadata, as rclone does) then drops the old version, whose cascade releases the old
   block references, only once the new ones are counted: the blocks never reach zero.

A failure before step 3 turns the new version ``Aborted``; the cascade cleans up.

**UploadPartCopy** (:func:`copy_part`): bytes ``[start, end)`` of the source become a part
of an upload (stored through :func:`garage_model.s3.multipart.store_part`).
:func:`plan_range_copy` cuts the range along the source blocks: a block wholly inside it is
reused as it is; a block cut by an end of the range is read, sliced, and its slice stored as
a new block. Every byte is still read once, because the part's ETag is the MD5 of its data
(and its checksum, if the upload has an algorithm, is computed from it too): the reads run
:data:`READ_AHEAD` blocks ahead of the hashing, and the stores of up to
``BLOCKS_IN_FLIGHT`` blocks run concurrently. An inline source becomes one new block.

**Encryption** (SSE-C). The API gives the source's encryption (its blocks are decrypted as
they are read, in a worker thread) and the upload's (every new block is encrypted with it,
as UploadPart does). A whole block is reused only when the caller says both store blocks the
same way (``reuse_blocks``: the same key and compression, or both in clear); otherwise every
piece is stored anew. A CopyObject between different encryptions is a new write of the
decrypted data (the API's ``ObjectWriter``), not :func:`copy_object`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from garage_model.bucket_table import UuidKey
from garage_table.schema import EmptyKey, StringKey
from garage_util.clock import now_msec
from garage_util.crdt import Bool
from garage_util.data import Hash, Uuid, blake2sum, gen_uuid

from .block_ref_table import BlockRef
from .multipart import StoredPart, Upload, concurrently, next_timestamp, store_part
from .object_table import (
    Aborted,
    Complete,
    FirstBlock,
    Inline,
    Object,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionState,
    Uploading,
)
from .version_table import MpuBacklink, ObjectBacklink, Version, VersionBlock
from .writer import BLOCKS_IN_FLIGHT, NoSuchObjectError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from garage_model.garage import Garage

    from .multipart import PartDigest
    from .writer import DataEncryption

__all__ = [
    "READ_AHEAD",
    "CopyPiece",
    "copy_object",
    "copy_part",
    "plan_range_copy",
    "read_source",
    "source_blocks",
    "source_version",
]

#: Source blocks fetched ahead of the one being hashed by UploadPartCopy.
READ_AHEAD: Final = 2


@dataclass(frozen=True, slots=True)
class CopyPiece:
    """The bytes ``[start, end)`` of one source block, as a piece of a copied range.

    Attributes:
        hash: the source block (None for the data of an inline source).
        size: the source block's size.
        start: the first byte taken, inside the block.
        end: one past the last byte taken, inside the block.
    """

    hash: Hash | None
    size: int
    start: int
    end: int

    @property
    def whole(self) -> bool:
        """True when the piece is a whole stored block: it is reused, not stored again."""
        return self.hash is not None and self.start == 0 and self.end == self.size

    @property
    def length(self) -> int:
        """The piece's number of bytes."""
        return self.end - self.start


def plan_range_copy(blocks: Sequence[VersionBlock], start: int, end: int) -> list[CopyPiece]:
    """The pieces of ``blocks`` (laid end to end, in object order) holding ``[start, end)``.

    Raises:
        ValueError: an empty range, or one that goes past the end of the blocks.
    """
    if not 0 <= start < end:
        raise ValueError(f"invalid range [{start}, {end})")
    pieces = []
    position = 0
    for block in blocks:
        if position >= end:
            break
        block_end = position + block.size
        if block_end > start and block.size > 0:
            lo = max(start - position, 0)
            hi = min(end, block_end) - position
            pieces.append(CopyPiece(block.hash, block.size, lo, hi))
        position = block_end
    if position < end:
        raise ValueError(f"range [{start}, {end}) is past the end ({position} bytes)")
    return pieces


# ------------------------------------------------------------------ the source


def source_version(obj: Object | None) -> ObjectVersion:
    """The version a copy reads: the newest complete one, with data.

    Raises:
        NoSuchObjectError: no object, or its newest complete version is a delete marker.
    """
    version = None if obj is None else obj.last_complete_version()
    if version is None or not version.is_data():
        raise NoSuchObjectError("the copy source does not exist")
    return version


async def _source_row(garage: Garage, version: ObjectVersion) -> Version:
    row = await garage.version_table.table.get(UuidKey(version.uuid), EmptyKey())
    if row is None or row.is_deleted or not row.blocks.vals:
        raise NoSuchObjectError("the copy source was deleted meanwhile")
    return row


async def source_blocks(garage: Garage, version: ObjectVersion) -> list[VersionBlock]:
    """The blocks of a complete version in object order (empty for inline data).

    Raises:
        NoSuchObjectError: the version's block list is gone (overwritten meanwhile).
    """
    if isinstance(version.data(), Inline):
        return []
    row = await _source_row(garage, version)
    return [block for _key, block in row.blocks.items()]


async def _fetch(
    garage: Garage,
    pieces: Sequence[CopyPiece],
    inline: bytes,
    send: anyio.abc.ObjectSendStream[tuple[CopyPiece, bytes]],
    encryption: DataEncryption | None = None,
) -> None:
    """Reads the pieces in order into ``send`` (the stream's buffer is the read-ahead);
    ``inline`` is the plaintext of an inline source, blocks are decrypted with
    ``encryption`` (the source's) in a worker thread."""
    async with send:
        for piece in pieces:
            if piece.hash is None:
                data = inline[piece.start : piece.end]
            elif encryption is None:
                data = await garage.block_manager.rpc_get_block(piece.hash)
                if len(data) != piece.size:
                    raise NoSuchObjectError(f"block {piece.hash.hex()} has an unexpected size")
                if piece.start != 0 or piece.end != len(data):
                    data = data[piece.start : piece.end]
            else:
                stored = await garage.block_manager.rpc_get_block(piece.hash)
                data = await anyio.to_thread.run_sync(
                    encryption.decrypt_block, stored, piece.start, piece.end
                )
                del stored
                if len(data) != piece.length:
                    raise NoSuchObjectError(f"block {piece.hash.hex()} has an unexpected size")
            await send.send((piece, data))


async def read_source(garage: Garage, version: ObjectVersion) -> AsyncIterator[bytes]:
    """The data of a complete version, block by block.

    Raises:
        NoSuchObjectError: the version is gone, or a block is not what it was.
        MissingBlockError: a block could not be read from any node.
    """
    data = version.data()
    if isinstance(data, Inline):
        yield data.data
        return
    for block in await source_blocks(garage, version):
        yield await garage.block_manager.rpc_get_block(block.hash)


# ------------------------------------------------------------------ CopyObject


async def copy_object(
    garage: Garage,
    source: ObjectVersion,
    bucket_id: Uuid,
    key: str,
    *,
    meta: ObjectVersionMeta,
) -> ObjectVersion:
    """Stores the data of ``source`` as the newest version of ``key`` with ``meta``.

    Args:
        garage: the node.
        source: a complete version with data (:func:`source_version`).
        bucket_id: the destination bucket.
        key: the destination key (it may be the source's).
        meta: the new version's metadata (size and ETag of the source's data).

    Returns:
        The new, complete version.

    Raises:
        NoSuchObjectError: the source is gone (overwritten meanwhile).
        Exception: storing failed; the new version is then marked aborted.
    """
    data = source.data()
    existing = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    uuid, timestamp = gen_uuid(), next_timestamp(existing, now_msec())

    def obj(state: ObjectVersionState) -> Object:
        return Object.new(bucket_id, key, [ObjectVersion(uuid, timestamp, state)])

    if isinstance(data, Inline):
        complete = Complete(Inline(meta, data.data))
        await garage.object_table.table.insert(obj(complete))
        return ObjectVersion(uuid, timestamp, complete)
    if not isinstance(data, FirstBlock):
        raise NoSuchObjectError("the copy source has no data")
    row = await _source_row(garage, source)
    uploading = Uploading(multipart=False, checksum_algorithm=None, encryption=meta.encryption)
    await garage.object_table.table.insert(obj(uploading))
    try:
        backlink = ObjectBacklink(bucket_id, key)
        await garage.version_table.table.insert(Version.new(uuid, backlink))
        copied = Version(uuid, Bool(False), row.blocks, backlink)
        refs = [BlockRef.new(h, uuid) for h in sorted({b.hash for _k, b in row.blocks.items()})]
        await concurrently(
            lambda: garage.version_table.table.insert(copied),
            lambda: garage.block_ref_table.table.insert_many(refs),
        )
        complete = Complete(FirstBlock(meta, data.first_block_hash))
        await garage.object_table.table.insert(obj(complete))  # last: see the module docstring
    except BaseException:
        with anyio.CancelScope(shield=True):
            await garage.object_table.table.insert(obj(Aborted()))
        raise
    return ObjectVersion(uuid, timestamp, complete)


# ------------------------------------------------------------------ UploadPartCopy


async def copy_part(
    garage: Garage,
    upload: Upload,
    part_number: int,
    source: ObjectVersion,
    start: int,
    end: int,
    *,
    digest: Callable[[bytes], object],
    finish: Callable[[], PartDigest],
    source_encryption: DataEncryption | None = None,
    encryption: DataEncryption | None = None,
    reuse_blocks: bool = True,
) -> StoredPart:
    """Stores the bytes ``[start, end)`` of ``source`` as a new attempt of a part.

    Args:
        garage: the node.
        upload: the destination upload.
        part_number: 1..10000.
        source: a complete version with data.
        start: the first byte of the source to copy.
        end: one past the last byte to copy.
        digest: fed the part's data (plaintext) in order, in a worker thread (ETag,
            checksum).
        finish: see :func:`garage_model.s3.multipart.store_part`.
        source_encryption: how the source is stored (SSE-C), None in clear.
        encryption: how the upload stores its parts (SSE-C), None in clear.
        reuse_blocks: the source's whole blocks may be referenced as they are: only when
            ``source_encryption`` and ``encryption`` store blocks the same way.

    Raises:
        NoSuchObjectError: the source is gone (overwritten meanwhile).
        ValueError: the range is empty or past the end of the source, or a source block
            did not decrypt.
        Exception: reading or storing failed.
    """
    data = source.data()
    inline = b""
    if isinstance(data, Inline):
        inline = data.data
        if source_encryption is not None:
            inline = source_encryption.decrypt_blob(inline)
        if not 0 <= start < end <= len(inline):
            raise ValueError(f"invalid range [{start}, {end}) of {len(inline)} bytes")
        pieces = [CopyPiece(None, len(inline), start, end)]
    else:
        pieces = plan_range_copy(await source_blocks(garage, source), start, end)

    async def fill(version_uuid: Uuid) -> int:
        backlink = MpuBacklink(upload.upload_id)
        limiter = anyio.Semaphore(BLOCKS_IN_FLIGHT)

        def hash_piece(piece: CopyPiece, chunk: bytes) -> tuple[Hash, bytes | None]:
            """The piece's hash and stored bytes (None for a reused block)."""
            digest(chunk)
            if piece.whole and reuse_blocks:
                assert piece.hash is not None  # whole pieces are stored blocks
                return piece.hash, None
            stored = chunk if encryption is None else encryption.encrypt_block(chunk)
            return blake2sum(stored), stored

        async def store(offset: int, size: int, stored: bytes | None, hash: Hash) -> None:
            try:
                row = Version.new(version_uuid, backlink).with_block(
                    part_number, offset, VersionBlock(hash, size)
                )

                async def put() -> None:
                    if stored is not None:
                        await garage.block_manager.rpc_put_block(
                            hash, stored, prevent_compression=encryption is not None
                        )

                await concurrently(
                    put,
                    lambda: garage.version_table.table.insert(row),
                    lambda: garage.block_ref_table.table.insert(BlockRef.new(hash, version_uuid)),
                )
            finally:
                limiter.release()

        send, recv = anyio.create_memory_object_stream[tuple[CopyPiece, bytes]](READ_AHEAD)
        offset = 0

        async def pipeline() -> None:
            nonlocal offset
            async with anyio.create_task_group() as tg:
                tg.start_soon(_fetch, garage, pieces, inline, send, source_encryption)
                async with recv:
                    async for piece, chunk in recv:
                        hash, stored = await anyio.to_thread.run_sync(hash_piece, piece, chunk)
                        await limiter.acquire()
                        tg.start_soon(store, offset, len(chunk), stored, hash)
                        offset += len(chunk)

        await concurrently(pipeline)  # the first failure, not an exception group
        return offset

    return await store_part(garage, upload, part_number, fill, finish)

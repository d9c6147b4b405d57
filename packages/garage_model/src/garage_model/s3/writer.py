"""Writing and reading object data in the order that keeps every reference alive (§8.4).

Garage: the storage half of src/api/s3/put.rs and get.rs. The S3 API adds HTTP, checksums,
SSE-C and quotas on top; what lives here is the part every writer shares:

1. insert the object with an ``Uploading`` version and an empty ``Version`` row *before* any
   block, so that ``repair versions`` never sees a version without its owner;
2. for each block, concurrently: put the block on its nodes, add it to the version row,
   insert its ``BlockRef`` (the refcount that keeps it alive); a few blocks in flight;
3. insert the ``Complete`` version last; on any failure insert ``Aborted`` instead, which
   runs the normal deletion cascade over whatever was written.

Small objects (under :data:`INLINE_THRESHOLD`) are stored inline in the object table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_model.bucket_table import UuidKey
from garage_table.schema import EmptyKey, StringKey
from garage_util.clock import now_msec
from garage_util.data import Hash, Uuid, blake2sum, gen_uuid

from .block_ref_table import BlockRef
from .object_table import (
    Aborted,
    Complete,
    DeleteMarker,
    FirstBlock,
    Inline,
    Object,
    ObjectVersion,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    ObjectVersionState,
    Plaintext,
    Uploading,
)
from .version_table import ObjectBacklink, Version, VersionBacklink, VersionBlock

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Callable

    from garage_model.garage import Garage

__all__ = [
    "BLOCKS_IN_FLIGHT",
    "INLINE_THRESHOLD",
    "NoSuchObjectError",
    "ObjectWriter",
    "PutResult",
    "VersionWriter",
    "delete_object",
    "read_object",
]

#: Objects smaller than this are stored inline in the object table (Garage's value).
INLINE_THRESHOLD: Final = 3072
#: Blocks of one object being stored at once (Garage puts up to 3 in parallel).
BLOCKS_IN_FLIGHT: Final = 3


class NoSuchObjectError(LookupError):
    """The object does not exist, or its newest version is a delete marker."""


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a completed write stored.

    Attributes:
        version: the new version's uuid.
        size: bytes stored.
        etag: the hex MD5 of the data (S3's ETag of a single-part upload).
        blocks: the hashes of the blocks, in order (empty for an inline object).
    """

    version: Uuid
    size: int
    etag: str
    blocks: tuple[Hash, ...]


def _next_timestamp(existing: Object | None) -> int:
    """A timestamp newer than every version of ``existing`` and not older than now."""
    newest = max((v.timestamp for v in existing.versions), default=0) if existing else 0
    return max(newest + 1, now_msec())


async def _rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The bytes of ``chunks`` cut into pieces of exactly ``size`` (the last one shorter)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) >= size:
            view = memoryview(buf)
            start = 0
            while len(buf) - start >= size:
                yield bytes(view[start : start + size])
                start += size
            view.release()
            del buf[:start]
    if buf:
        yield bytes(buf)


@final
class VersionWriter:
    """Writes the blocks of one version (an object's, or one multipart part's).

    Call :meth:`start` once (it inserts the empty version row), then :meth:`write` for the
    blocks in order, then :meth:`finish`, which waits for the blocks still in flight.
    """

    __slots__ = ("_garage", "_limiter", "_part_number", "_tg", "_uuid", "backlink", "blocks")

    def __init__(
        self, garage: Garage, uuid: Uuid, backlink: VersionBacklink, *, part_number: int = 1
    ) -> None:
        self._garage = garage
        self._uuid = uuid
        self.backlink = backlink
        self._part_number = part_number
        self._limiter = anyio.Semaphore(BLOCKS_IN_FLIGHT)
        self._tg: anyio.abc.TaskGroup | None = None
        self.blocks: list[Hash] = []
        """The hashes of the blocks written so far, in order."""

    async def start(self) -> None:
        """Inserts the version row with no block (before any block exists)."""
        await self._garage.version_table.table.insert(Version.new(self._uuid, self.backlink))

    async def write_all(
        self,
        chunks: AsyncIterable[bytes],
        *,
        first: bytes = b"",
        digest: Callable[[bytes], object] | None = None,
    ) -> int:
        """Cuts ``first`` then ``chunks`` into blocks and stores them, at most
        :data:`BLOCKS_IN_FLIGHT` at a time; returns the number of bytes written.

        Args:
            chunks: the data.
            first: bytes already read from the data, written before ``chunks``.
            digest: called with every block in order, in the worker thread that hashes
                the block (feed the caller's MD5 or checksums there, off the event loop).

        Raises:
            Exception: the first failed block store (the others are cancelled).
        """

        def hash_block(block: bytes) -> Hash:
            if digest is not None:
                digest(block)
            return blake2sum(block)

        async def prefixed() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk

        offset = 0
        async with anyio.create_task_group() as tg:
            async for block in _rechunk(prefixed(), self._garage.config.block_size):
                await self._limiter.acquire()
                hash = await anyio.to_thread.run_sync(hash_block, block)
                self.blocks.append(hash)
                tg.start_soon(self._put, offset, block, hash)
                offset += len(block)
        return offset

    async def _put(self, offset: int, data: bytes, hash: Hash) -> None:
        try:
            garage = self._garage
            version = Version.new(self._uuid, self.backlink).with_block(
                self._part_number, offset, VersionBlock(hash, len(data))
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(garage.block_manager.rpc_put_block, hash, data)
                tg.start_soon(garage.version_table.table.insert, version)
                tg.start_soon(garage.block_ref_table.table.insert, BlockRef.new(hash, self._uuid))
        finally:
            self._limiter.release()


@final
class ObjectWriter:
    """Stores one object: :meth:`put` writes it whole from a stream of bytes.

    Args:
        garage: the node.
        bucket_id: the bucket.
        key: the object key.
        headers: the headers to store and return with the object.
    """

    __slots__ = ("_bucket_id", "_garage", "_headers", "_key")

    def __init__(
        self,
        garage: Garage,
        bucket_id: Uuid,
        key: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._garage = garage
        self._bucket_id = bucket_id
        self._key = key
        self._headers = headers

    async def _timestamp(self) -> int:
        """A timestamp newer than every version of the object (Garage's ``next_timestamp``)."""
        existing = await self._garage.object_table.table.get(
            UuidKey(self._bucket_id), StringKey(self._key)
        )
        return _next_timestamp(existing)

    def _object(self, uuid: Uuid, timestamp: int, state: ObjectVersionState) -> Object:
        version = ObjectVersion(uuid, timestamp, state)
        return Object.new(self._bucket_id, self._key, [version])

    async def put(self, chunks: AsyncIterable[bytes]) -> PutResult:
        """Stores the bytes of ``chunks`` as the object's newest version.

        Raises:
            Exception: storing failed; the version is then marked aborted (in the background
                of this call, before it raises) and the object keeps its previous version.
        """
        garage = self._garage
        uuid, timestamp = gen_uuid(), await self._timestamp()
        md5 = hashlib.md5(usedforsecurity=False)
        stream = aiter(chunks)
        first = bytearray()
        async for chunk in stream:
            first += chunk
            if len(first) >= INLINE_THRESHOLD:
                break
        inner = ObjectVersionMetaInner(headers=self._headers)
        if len(first) < INLINE_THRESHOLD:
            md5.update(first)  # under 3 KiB: cheap enough for the event loop
            meta = ObjectVersionMeta(len(first), md5.hexdigest(), Plaintext(inner))
            state = Complete(Inline(meta, bytes(first)))
            await garage.object_table.table.insert(self._object(uuid, timestamp, state))
            return PutResult(uuid, len(first), meta.etag, ())

        uploading = Uploading(multipart=False, checksum_algorithm=None, encryption=Plaintext(inner))
        await garage.object_table.table.insert(self._object(uuid, timestamp, uploading))
        writer = VersionWriter(garage, uuid, ObjectBacklink(self._bucket_id, self._key))
        try:
            await writer.start()
            size = await writer.write_all(stream, first=bytes(first), digest=md5.update)
            meta = ObjectVersionMeta(size, md5.hexdigest(), Plaintext(inner))
            state = Complete(FirstBlock(meta, writer.blocks[0]))
            await garage.object_table.table.insert(self._object(uuid, timestamp, state))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await garage.object_table.table.insert(self._object(uuid, timestamp, Aborted()))
            raise
        return PutResult(uuid, size, meta.etag, tuple(writer.blocks))


async def delete_object(garage: Garage, bucket_id: Uuid, key: str) -> bool:
    """Hides every version of the object behind a delete marker; False if there was no
    object with data (S3 answers 204 either way)."""
    existing = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    if existing is None or not existing.is_data():
        return False
    timestamp = _next_timestamp(existing)
    marker = Object.new(
        bucket_id, key, [ObjectVersion(gen_uuid(), timestamp, Complete(DeleteMarker()))]
    )
    await garage.object_table.table.insert(marker)
    return True


async def read_object(garage: Garage, bucket_id: Uuid, key: str) -> AsyncIterator[bytes]:
    """The bytes of the object's newest complete version, block by block.

    Raises:
        NoSuchObjectError: no such object, or it was deleted.
        MissingBlockError: a block could not be read from any of its nodes.
    """
    obj = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    version = None if obj is None else obj.last_complete_version()
    data = None if version is None else version.data()
    if version is None or data is None or isinstance(data, DeleteMarker):
        raise NoSuchObjectError(f"no object {key!r} in bucket {bucket_id.hex()}")
    if isinstance(data, Inline):
        yield data.data
        return
    assert isinstance(data, FirstBlock)
    row = await garage.version_table.table.get(UuidKey(version.uuid), EmptyKey())
    if row is None or row.is_deleted:
        raise NoSuchObjectError(f"the version of {key!r} is gone (deleted meanwhile)")
    for entry in row.blocks.items():
        yield await garage.block_manager.rpc_get_block(entry[1].hash)

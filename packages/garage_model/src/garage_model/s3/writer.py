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

Hooks for the API (:meth:`ObjectWriter.put`): ``digest`` receives every piece of the data in
order, in the worker thread that hashes the block (the API's MD5 and checksums, off the event
loop); ``before_complete`` runs once all the data is stored and before the ``Complete``
insert: it verifies what the client announced and says which ETag and checksum to store. If
it raises, the version is aborted and the previous version stays the one served.

Encryption (SSE-C, design §10.9) is the API's: the writers and readers take a
:class:`DataEncryption` (None: in clear) and call it where the stored bytes differ from the
object's. A block is encrypted in the thread that digests and hashes it, *after* ``digest``
(which sees the plaintext) and *before* blake2 (the block's hash is of what is stored); it
is put with ``prevent_compression`` (the API compressed it before encrypting); its
``VersionBlock.size`` and its offset count plaintext bytes. The metadata of every state the
writer inserts and inline data go through it too. :func:`read_blocks` reads each encrypted
block whole and decrypts the slice it needs in a worker thread.

Reading (:func:`read_blocks`): the blocks of a byte range, streamed block by block. Block
``i + 1`` (and ``i + 2``) is requested as soon as block ``i`` starts flowing, so its bytes are
already on their way (each stream buffers up to the transport's flow-control window) while
the client receives block ``i``; no background task is needed, which keeps the response body
a plain async generator. Only the blocks overlapping the range are fetched, and only the
needed slice of the first and last ones is sent.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import deque
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Protocol, final

import anyio

from garage_model.bucket_table import UuidKey
from garage_table.schema import EmptyKey, StringKey
from garage_util.clock import now_msec
from garage_util.data import Hash, Uuid, blake2sum, gen_uuid

from .block_ref_table import BlockRef
from .mpu_table import ChecksumValue
from .object_table import (
    Aborted,
    Complete,
    DeleteMarker,
    FirstBlock,
    Inline,
    Object,
    ObjectVersion,
    ObjectVersionEncryption,
    ObjectVersionMeta,
    ObjectVersionMetaInner,
    ObjectVersionState,
    Plaintext,
    Uploading,
)
from .version_table import ObjectBacklink, Version, VersionBacklink, VersionBlock

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterable,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
    )

    from garage_model.block import BlockStream
    from garage_model.garage import Garage

    from .mpu_table import ChecksumAlgorithm

__all__ = [
    "BLOCKS_IN_FLIGHT",
    "INLINE_THRESHOLD",
    "READ_AHEAD_BLOCKS",
    "BlockSlice",
    "Completion",
    "DataEncryption",
    "NoSuchObjectError",
    "ObjectWriter",
    "PutResult",
    "VersionWriter",
    "block_slices",
    "delete_object",
    "get_version",
    "newest_data",
    "part_bounds",
    "read_blocks",
    "read_object",
]

#: Objects smaller than this are stored inline in the object table (Garage's value).
INLINE_THRESHOLD: Final = 3072
#: Blocks of one object being stored at once (Garage puts up to 3 in parallel).
BLOCKS_IN_FLIGHT: Final = 3
#: Blocks requested ahead of the one being sent by :func:`read_blocks`: two keep the next
#: block's bytes arriving while the client drains the current one (Garage's channel of 2).
READ_AHEAD_BLOCKS: Final = 2


class NoSuchObjectError(LookupError):
    """The object does not exist, or its newest version is a delete marker."""


class DataEncryption(Protocol):
    """How an encrypted object's metadata and data are stored (the S3 API's SSE-C
    ``Encryption``); wherever one is accepted, None means in clear.

    The block methods are CPU work: the writers and readers call them in worker threads.
    """

    def encrypt_meta(self, inner: ObjectVersionMetaInner) -> ObjectVersionEncryption:
        """The stored form of the object's headers and checksum."""
        ...

    def encrypt_blob(self, data: bytes) -> bytes:
        """Inline data as stored."""
        ...

    def decrypt_blob(self, blob: bytes) -> bytes:
        """The plaintext of :meth:`encrypt_blob`'s output."""
        ...

    def encrypt_block(self, block: bytes) -> bytes:
        """A block as stored (its hash is of these bytes)."""
        ...

    def decrypt_block(self, stored: bytes, start: int = 0, end: int | None = None) -> bytes:
        """The plaintext bytes ``[start, end)`` of a stored block (all of it by default)."""
        ...


def _seal(
    encryption: DataEncryption | None, inner: ObjectVersionMetaInner
) -> ObjectVersionEncryption:
    return Plaintext(inner) if encryption is None else encryption.encrypt_meta(inner)


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a completed write stored.

    Attributes:
        version: the new version's uuid.
        size: bytes stored.
        etag: the stored ETag (the hex MD5 of the data unless ``before_complete`` chose).
        blocks: the hashes of the blocks, in order (empty for an inline object).
        checksum: the stored checksum, if any.
        timestamp: the new version's timestamp (ms; the object's Last-Modified).
    """

    version: Uuid
    size: int
    etag: str
    blocks: tuple[Hash, ...]
    checksum: ChecksumValue | None = None
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """What ``before_complete`` tells :meth:`ObjectWriter.put` to store.

    Attributes:
        etag: the ETag; None for the MD5 the writer computed (only when it hashed the data
            itself, i.e. no ``digest`` was given).
        checksum: the ``x-amz-checksum-*`` to store with the object.
    """

    etag: str | None = None
    checksum: ChecksumValue | None = None


# Fault-testing mutation switch (faults/, issue 11), read once at import: with
# GARAGE_TEST_MUTATION=no-ts-bump a new version takes the node's clock as its timestamp,
# without the "newer than every existing version" rule, so the fault checker can show it
# catches the lost writes this causes under clock skew. Never set outside fault runs.
_NO_TS_BUMP: Final = os.environ.get("GARAGE_TEST_MUTATION") == "no-ts-bump"


def _next_timestamp(existing: Object | None) -> int:
    """A timestamp newer than every version of ``existing`` and not older than now."""
    if _NO_TS_BUMP:
        return now_msec()
    newest = max((v.timestamp for v in existing.versions), default=0) if existing else 0
    return max(newest + 1, now_msec())


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (a task group wraps its children's errors);
    callers and the API map plain exceptions."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _prefixed(first: bytes, chunks: AsyncIterable[bytes]) -> AsyncGenerator[bytes]:
    if first:
        yield first
    async for chunk in chunks:
        yield chunk


async def _rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[bytes]:
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

    Call :meth:`start` once (it inserts the empty version row), then :meth:`write_all`,
    which returns once every block is stored. With an ``encryption``, each block is stored
    encrypted (see the module docstring).
    """

    __slots__ = (
        "_encryption",
        "_garage",
        "_limiter",
        "_part_number",
        "_uuid",
        "backlink",
        "blocks",
    )

    def __init__(
        self,
        garage: Garage,
        uuid: Uuid,
        backlink: VersionBacklink,
        *,
        part_number: int = 1,
        encryption: DataEncryption | None = None,
    ) -> None:
        self._garage = garage
        self._uuid = uuid
        self.backlink = backlink
        self._part_number = part_number
        self._encryption = encryption
        self._limiter = anyio.Semaphore(BLOCKS_IN_FLIGHT)
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
            Exception: the first failure, as raised (not in an exception group): reading
                ``chunks`` or storing a block (the other stores are then cancelled).
        """

        encryption = self._encryption

        def hash_block(block: bytes) -> tuple[Hash, bytes]:
            if digest is not None:
                digest(block)
            stored = block if encryption is None else encryption.encrypt_block(block)
            return blake2sum(stored), stored

        failures: list[BaseException] = []
        offset = 0
        block_size = self._garage.config.block_size
        async with anyio.create_task_group() as tg:
            try:
                async with (
                    aclosing(_prefixed(first, chunks)) as data,
                    aclosing(_rechunk(data, block_size)) as blocks,
                ):
                    async for block in blocks:
                        await self._limiter.acquire()
                        try:
                            hash, stored = await anyio.to_thread.run_sync(hash_block, block)
                        except BaseException:
                            self._limiter.release()
                            raise
                        self.blocks.append(hash)
                        size = len(block)
                        del block  # only the stored form stays in memory while it is put
                        tg.start_soon(
                            self._put, offset, size, stored, hash, failures, tg.cancel_scope
                        )
                        offset += size
            except Exception as exc:  # the body failed: stop the stores in flight
                failures.insert(0, _first_error(exc))
                tg.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return offset

    async def _put(
        self,
        offset: int,
        size: int,
        data: bytes,
        hash: Hash,
        failures: list[BaseException],
        scope: anyio.CancelScope,
    ) -> None:
        """Stores one block (``data`` as stored, ``size`` plaintext bytes); a failure is
        recorded and cancels the whole write (so that :meth:`write_all` raises it as it is,
        not wrapped in an exception group)."""
        try:
            garage = self._garage
            version = Version.new(self._uuid, self.backlink).with_block(
                self._part_number, offset, VersionBlock(hash, size)
            )
            put = functools.partial(
                garage.block_manager.rpc_put_block,
                hash,
                data,
                prevent_compression=self._encryption is not None,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(put)
                tg.start_soon(garage.version_table.table.insert, version)
                tg.start_soon(garage.block_ref_table.table.insert, BlockRef.new(hash, self._uuid))
        except Exception as exc:
            failures.append(_first_error(exc))
            scope.cancel()
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
        checksum_algorithm: the checksum the upload announced (kept in its ``Uploading``
            state while it is received).
        encryption: how to encrypt the metadata, inline data and blocks (SSE-C); None to
            store them in clear.
    """

    __slots__ = (
        "_bucket_id",
        "_checksum_algorithm",
        "_encryption",
        "_garage",
        "_headers",
        "_key",
    )

    def __init__(
        self,
        garage: Garage,
        bucket_id: Uuid,
        key: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        checksum_algorithm: ChecksumAlgorithm | None = None,
        encryption: DataEncryption | None = None,
    ) -> None:
        self._garage = garage
        self._bucket_id = bucket_id
        self._key = key
        self._headers = headers
        self._checksum_algorithm = checksum_algorithm
        self._encryption = encryption

    async def _timestamp(self) -> int:
        """A timestamp newer than every version of the object (Garage's ``next_timestamp``)."""
        existing = await self._garage.object_table.table.get(
            UuidKey(self._bucket_id), StringKey(self._key)
        )
        return _next_timestamp(existing)

    def _object(self, uuid: Uuid, timestamp: int, state: ObjectVersionState) -> Object:
        version = ObjectVersion(uuid, timestamp, state)
        return Object.new(self._bucket_id, self._key, [version])

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        digest: Callable[[bytes], object] | None = None,
        before_complete: Callable[[int], Awaitable[Completion]] | None = None,
    ) -> PutResult:
        """Stores the bytes of ``chunks`` as the object's newest version.

        Args:
            chunks: the data.
            digest: called with every piece of the data, in order (in a worker thread for
                blocks); the writer then computes no MD5 of its own, and
                ``before_complete`` must name the ETag.
            before_complete: awaited with the size once the data is stored, before the
                version is marked complete: it may verify the data (raising aborts the
                write) and returns the ETag and checksum to store. Without it the ETag
                is the writer's MD5 and no checksum is stored.

        Raises:
            ValueError: ``digest`` without ``before_complete``.
            Exception: reading, storing or ``before_complete`` failed: nothing new is
                served; a version that had started storing blocks is marked aborted
                before this raises, and the object keeps its previous version.
        """
        if digest is not None and before_complete is None:
            raise ValueError("with a digest of its own, the caller must give the ETag")
        garage = self._garage
        md5 = None
        hasher = digest
        if hasher is None:
            md5 = hashlib.md5(usedforsecurity=False)
            hasher = md5.update

        async def complete(size: int) -> tuple[str, ChecksumValue | None]:
            done = Completion() if before_complete is None else await before_complete(size)
            etag = done.etag
            if etag is None:
                if md5 is None:
                    raise ValueError("before_complete must give the ETag when digest is given")
                etag = md5.hexdigest()
            return etag, done.checksum

        uuid, timestamp = gen_uuid(), await self._timestamp()
        stream = aiter(chunks)
        first = bytearray()
        async for chunk in stream:
            first += chunk
            if len(first) >= INLINE_THRESHOLD:
                break
        inner = ObjectVersionMetaInner(headers=self._headers)
        encryption = self._encryption
        if len(first) < INLINE_THRESHOLD:
            data = bytes(first)
            hasher(data)  # under 3 KiB: cheap enough for the event loop
            etag, checksum = await complete(len(data))
            inner = replace(inner, checksum=checksum)
            meta = ObjectVersionMeta(len(data), etag, _seal(encryption, inner))
            stored = data if encryption is None else encryption.encrypt_blob(data)
            state = Complete(Inline(meta, stored))
            await garage.object_table.table.insert(self._object(uuid, timestamp, state))
            return PutResult(uuid, len(data), etag, (), checksum, timestamp)

        uploading = Uploading(
            multipart=False,
            checksum_algorithm=self._checksum_algorithm,
            encryption=_seal(encryption, inner),
        )
        await garage.object_table.table.insert(self._object(uuid, timestamp, uploading))
        writer = VersionWriter(
            garage, uuid, ObjectBacklink(self._bucket_id, self._key), encryption=encryption
        )
        try:
            await writer.start()
            size = await writer.write_all(stream, first=bytes(first), digest=hasher)
            etag, checksum = await complete(size)
            inner = replace(inner, checksum=checksum)
            meta = ObjectVersionMeta(size, etag, _seal(encryption, inner))
            state = Complete(FirstBlock(meta, writer.blocks[0]))
            await garage.object_table.table.insert(self._object(uuid, timestamp, state))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await garage.object_table.table.insert(self._object(uuid, timestamp, Aborted()))
            raise
        return PutResult(uuid, size, etag, tuple(writer.blocks), checksum, timestamp)


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


# ---------------------------------------------------------------------------- reading


def newest_data(obj: Object | None) -> tuple[ObjectVersion, Inline | FirstBlock] | None:
    """The version reads serve (the newest complete one) and its data; None when there is
    no object or that version is a delete marker."""
    version = None if obj is None else obj.last_complete_version()
    data = None if version is None else version.data()
    if version is None or not isinstance(data, Inline | FirstBlock):
        return None
    return version, data


async def get_version(garage: Garage, uuid: Uuid) -> Version:
    """The version row (block list) of a complete object version.

    Raises:
        NoSuchObjectError: the row is missing or deleted (the object was overwritten or
            deleted meanwhile).
    """
    row = await garage.version_table.table.get(UuidKey(uuid), EmptyKey())
    if row is None or row.is_deleted:
        raise NoSuchObjectError(f"version {uuid.hex()} is gone (deleted meanwhile)")
    return row


@dataclass(frozen=True, slots=True)
class BlockSlice:
    """The bytes ``[start, end)`` of block ``hash`` (offsets inside the block).

    Attributes:
        hash: the block.
        start: the first byte wanted.
        end: one past the last byte wanted.
        size: the block's size.
    """

    hash: Hash
    start: int
    end: int
    size: int


def block_slices(blocks: Iterable[VersionBlock], start: int, end: int) -> list[BlockSlice]:
    """The parts of ``blocks`` (in object order) that hold the bytes ``[start, end)``.

    Blocks are laid end to end: a block's position in the object is the sum of the sizes
    before it (a multipart part's offsets are inside its part, so they are not used).
    Empty blocks and blocks outside the range are left out.
    """
    slices = []
    position = 0
    for block in blocks:
        if position >= end:
            break
        block_end = position + block.size
        lo = max(start - position, 0)
        hi = min(end, block_end) - position
        if lo < hi:
            slices.append(BlockSlice(block.hash, lo, hi, block.size))
        position = block_end
    return slices


def part_bounds(row: Version, part_number: int) -> tuple[int, int] | None:
    """The bytes ``[start, end)`` of part ``part_number`` in the object of ``row``, or
    None when it has no such part (Garage: ``calculate_part_bounds``)."""
    position = 0
    bounds: tuple[int, int] | None = None
    for (part, _offset), block in row.blocks.items():
        if part == part_number:
            bounds = (position if bounds is None else bounds[0], position + block.size)
        elif part > part_number:
            break
        position += block.size
    return bounds


async def _sliced(stream: BlockStream, piece: BlockSlice) -> AsyncGenerator[bytes]:
    """The bytes ``[piece.start, piece.end)`` of a block stream, chunk by chunk.

    A slice that reaches the end of the block reads the stream to its end, which is when
    the block's hash is checked; one that stops before only reads what it needs.
    """
    position = 0
    async for chunk in stream:
        chunk_end = position + len(chunk)
        if chunk_end > piece.start and position < piece.end:
            lo = max(piece.start - position, 0)
            hi = min(piece.end - position, len(chunk))
            yield chunk if lo == 0 and hi == len(chunk) else chunk[lo:hi]
        position = chunk_end
        if position >= piece.end and piece.end < piece.size:
            return


async def _whole(stream: BlockStream) -> AsyncGenerator[bytes]:
    """Every chunk of a block stream (read to its end: the hash is checked)."""
    async for chunk in stream:
        yield chunk


async def read_blocks(
    garage: Garage,
    blocks: Iterable[VersionBlock],
    start: int = 0,
    end: int | None = None,
    *,
    encryption: DataEncryption | None = None,
) -> AsyncIterator[bytes]:
    """The bytes ``[start, end)`` of an object made of ``blocks``, streamed.

    Fetches only the blocks overlapping the range, :data:`READ_AHEAD_BLOCKS` ahead of the
    one being sent (see the module docstring). Close the generator (``aclose``) to stop
    early: the streams opened are closed with it. With an ``encryption`` (the one the
    object was stored with), each block is read whole and the slice sent is decrypted in
    a worker thread.

    Raises:
        MissingBlockError: no node could start sending a block.
        CorruptBlockError: a block's data did not match its hash (found at its end).
        RpcError: a transfer failed midway.
        ValueError: an encrypted block did not decrypt.
    """
    listed = list(blocks)
    if end is None:
        end = sum(b.size for b in listed)
    pieces = block_slices(listed, start, end)
    manager = garage.block_manager
    opened: deque[BlockStream] = deque()
    requested = 0
    try:
        for piece in pieces:
            if not opened:
                opened.append(await manager.rpc_get_block_streaming(pieces[requested].hash))
                requested += 1
            stream = opened[0]
            flowing = False
            stored: list[bytes] = []
            source = _sliced(stream, piece) if encryption is None else _whole(stream)
            async with aclosing(source) as data:
                async for chunk in data:
                    if encryption is None:
                        yield chunk
                    else:
                        stored.append(chunk)
                    if not flowing:  # block i flows: ask for the next ones now
                        flowing = True
                        while requested < len(pieces) and len(opened) <= READ_AHEAD_BLOCKS:
                            nxt = pieces[requested].hash
                            opened.append(await manager.rpc_get_block_streaming(nxt))
                            requested += 1
            if encryption is not None:
                block = b"".join(stored)
                del stored
                yield await anyio.to_thread.run_sync(
                    encryption.decrypt_block, block, piece.start, piece.end
                )
            opened.popleft()
            await stream.aclose()  # ends the transfer of a block not read to its end
    finally:
        with anyio.CancelScope(shield=True):
            for stream in opened:
                await stream.aclose()


async def read_object(garage: Garage, bucket_id: Uuid, key: str) -> AsyncIterator[bytes]:
    """The bytes of the object's newest complete version, block by block (each block read
    whole and verified before it is yielded). They are the stored bytes: an SSE-C object's
    come out encrypted (decrypting takes the customer key, which only a request carries).

    Raises:
        NoSuchObjectError: no such object, or it was deleted.
        MissingBlockError: a block could not be read from any of its nodes.
    """
    obj = await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key))
    found = newest_data(obj)
    if found is None:
        raise NoSuchObjectError(f"no object {key!r} in bucket {bucket_id.hex()}")
    version, data = found
    if isinstance(data, Inline):
        yield data.data
        return
    row = await get_version(garage, version.uuid)
    for entry in row.blocks.items():
        yield await garage.block_manager.rpc_get_block(entry[1].hash)

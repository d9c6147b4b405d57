"""Block files on local disk (Garage: src/block/manager.rs, the local half).

Theory of operation: a block ``h`` is the file ``<dir>/<hex(h[0])>/<hex(h[1])>/<hex(h)>``,
with a ``.zst`` suffix when it is stored compressed, where ``<dir>`` is one of the data
directories of the :class:`DataLayout`: the partition's primary directory, or one of its
secondaries (searched when reading, primary first).

Invariants:

- A block file is complete or absent: writes go to ``<name>.tmp<8 hex>``, optionally
  fsynced, then renamed over the final name (and, with ``fsync``, the directory is fsynced
  too, so the rename survives power loss).
- At most one copy is kept after a write: a compressed copy is never replaced (same
  content, already smaller); a plain copy is replaced by a compressed one; a copy found in a
  non-primary directory is rewritten in the primary and the old file is removed.
- Writes and deletes of one block are serialised by one of 256 ``threading.Lock``s keyed by
  ``u16 BE(hash[0:2]) % 256`` (Garage's ``mutexes``), so a delete never races a write.
  Reads take no lock: renames are atomic, and a file vanishing under a reader is retried.
- A copy that fails verification is renamed with a ``.corrupted`` suffix (kept for a
  human to look at, out of the way of lookups) and :class:`CorruptBlockError` raised.

Every method blocks on file I/O and CPU (hashing, zstd): async callers run them through
``anyio.to_thread.run_sync``, usually with a ``CapacityLimiter``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

from ._data import DataBlock, DataBlockHeader
from ._errors import CorruptBlockError, NoSuchBlockError
from ._layout import load_data_layout

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from garage_util.config import DataDir
    from garage_util.data import Hash

    from ._layout import DataLayout

__all__ = ["BlockPath", "BlockStore"]

logger = logging.getLogger(__name__)

#: Number of per-block write locks (Garage: MUTEX_COUNT): enough that unrelated blocks
#: rarely wait on each other, few enough to allocate up front.
_MUTEX_COUNT: Final = 256

#: Suffix of a compressed block file.
_ZST: Final = ".zst"

#: Suffix given to a block file that failed verification.
_CORRUPTED: Final = ".corrupted"

#: A file can vanish between finding and opening it (a concurrent delete or rewrite into the
#: primary); lookups are retried this many times before giving up.
_READ_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class BlockPath:
    """Where one copy of a block is stored.

    Attributes:
        path: the block file.
        compressed: whether it holds a zstd frame (``.zst``).
    """

    path: Path
    compressed: bool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@final
class BlockStore:
    """The blocks stored on this node's data directories.

    All methods are synchronous and blocking; from async code, call them with
    ``anyio.to_thread.run_sync``. Safe to use from several threads at once.
    """

    def __init__(self, layout: DataLayout, *, compression_enabled: bool = True) -> None:
        """Uses the directories of ``layout``.

        Args:
            layout: the data layout (see :func:`load_data_layout`).
            compression_enabled: whether blocks are usually written compressed; with it off,
                lookups try the plain file first (Garage does the same).
        """
        self._layout = layout
        self._compression_enabled = compression_enabled
        self._locks = tuple(threading.Lock() for _ in range(_MUTEX_COUNT))

    @classmethod
    def open(
        cls,
        metadata_dir: Path,
        data_dirs: Sequence[DataDir],
        *,
        compression_level: int | None,
    ) -> BlockStore:
        """Loads the data layout (checking markers) and returns the store.

        Raises:
            DataLayoutError: see :func:`load_data_layout`.
        """
        layout = load_data_layout(metadata_dir, data_dirs)
        return cls(layout, compression_enabled=compression_level is not None)

    @property
    def layout(self) -> DataLayout:
        """The data layout in use."""
        return self._layout

    # -------------------------------------------------------------------- paths

    def _lock(self, hash: Hash) -> threading.Lock:
        return self._locks[int.from_bytes(hash[0:2], "big") % _MUTEX_COUNT]

    @staticmethod
    def block_dir(data_dir: Path, hash: Hash) -> Path:
        """The sub-directory of ``data_dir`` that holds ``hash``."""
        return data_dir / hash[0:1].hex() / hash[1:2].hex()

    def block_path(self, hash: Hash, *, compressed: bool) -> Path:
        """The path of ``hash`` in its primary directory."""
        return self._path_in(self._layout.primary_dir(hash), hash, compressed)

    def _path_in(self, data_dir: Path, hash: Hash, compressed: bool) -> Path:
        name = bytes(hash).hex() + (_ZST if compressed else "")
        return self.block_dir(data_dir, hash) / name

    def _candidates(self, hash: Hash) -> Iterator[BlockPath]:
        order = (True, False) if self._compression_enabled else (False, True)
        dirs = [self._layout.primary_dir(hash), *self._layout.secondary_dirs(hash)]
        for d in dirs:
            for compressed in order:
                yield BlockPath(self._path_in(d, hash, compressed), compressed)

    def find_block(self, hash: Hash) -> BlockPath | None:
        """The first stored copy of ``hash``: primary directory first, then secondaries."""
        for cand in self._candidates(hash):
            if cand.path.is_file():
                return cand
        return None

    def has_block(self, hash: Hash) -> bool:
        """Whether a copy of ``hash`` is stored (it is not verified)."""
        return self.find_block(hash) is not None

    # -------------------------------------------------------------------- read

    def read_block(self, hash: Hash) -> DataBlock:
        """Reads and verifies the block ``hash``.

        Returns:
            The block as stored (compressed or plain), verified.

        Raises:
            NoSuchBlockError: no directory holds a copy.
            CorruptBlockError: the copy failed verification; it was renamed ``.corrupted``.
        """
        for _ in range(_READ_ATTEMPTS):
            found = self.find_block(hash)
            if found is None:
                break
            try:
                data = found.path.read_bytes()
            except FileNotFoundError:
                continue  # deleted or moved meanwhile: look again
            header = DataBlockHeader.COMPRESSED if found.compressed else DataBlockHeader.PLAIN
            block = DataBlock(header, data)
            try:
                block.verify(hash)
            except CorruptBlockError:
                self._move_to_corrupted(hash, found.path)
                raise
            return block
        raise NoSuchBlockError(hash)

    def _move_to_corrupted(self, hash: Hash, path: Path) -> None:
        logger.warning("block %s is corrupted: renaming %s to %s", hash, path, _CORRUPTED)
        # FileNotFoundError: already moved or deleted by another thread.
        with self._lock(hash), contextlib.suppress(FileNotFoundError):
            path.replace(path.with_name(path.name + _CORRUPTED))

    # -------------------------------------------------------------------- write

    def write_block(self, hash: Hash, block: DataBlock, *, fsync: bool) -> None:
        """Stores ``block`` under ``hash`` in its primary directory, atomically.

        Idempotent: a compressed copy already in the primary directory is kept, as is a
        plain copy when ``block`` is plain too. A plain copy is replaced by a compressed
        ``block``; a copy in a non-primary directory is moved to the primary. The caller
        verifies ``block`` beforehand (it came from the network or the API).

        Args:
            hash: the block's hash.
            block: its content as it will be stored.
            fsync: fsync the file and its directory (the ``data_fsync`` setting).
        """
        primary = self._layout.primary_dir(hash)
        with self._lock(hash):
            existing = self.find_block(hash)
            to_delete: Path | None = None
            if existing is not None:
                in_primary = existing.path.parent == self.block_dir(primary, hash)
                if in_primary and (existing.compressed or not block.is_compressed):
                    return
                to_delete = existing.path
            target = self._path_in(primary, hash, block.is_compressed)
            self._write_file(target, block.data, fsync=fsync)
            if to_delete is not None and to_delete != target:
                to_delete.unlink(missing_ok=True)
                if fsync:
                    _fsync_dir(to_delete.parent)

    @staticmethod
    def _write_file(target: Path, data: bytes, *, fsync: bool) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{secrets.token_hex(4)}")
        try:
            with tmp.open("xb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if fsync:
            _fsync_dir(target.parent)

    # -------------------------------------------------------------------- delete

    def delete_block(self, hash: Hash) -> bool:
        """Removes every stored copy of ``hash`` (the caller checked it is deletable).

        Returns:
            Whether any copy was removed.
        """
        removed = False
        with self._lock(hash):
            for cand in self._candidates(hash):
                try:
                    cand.path.unlink()
                except FileNotFoundError:
                    continue
                removed = True
        return removed

"""Errors of the local block store (Garage: src/block/, error cases of manager.rs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from garage_util.data import Hash

__all__ = ["BlockError", "CorruptBlockError", "DataLayoutError", "NoSuchBlockError"]


class BlockError(GarageError):
    """Base of the block store's errors."""


class CorruptBlockError(BlockError):
    """Raised when a block's bytes fail verification.

    A plain block whose blake2 sum is not its hash, or a compressed block whose zstd frame
    does not decode (bad checksum, truncated). When read from disk, the file has already been
    renamed with a ``.corrupted`` suffix when this is raised, so the next read finds no copy
    and a resync fetches a good one from another node.

    Attributes:
        hash: the block's hash.
    """

    def __init__(self, hash: Hash, reason: str = "") -> None:
        self.hash = hash
        detail = f": {reason}" if reason else ""
        super().__init__(f"block {hash.hex()} is corrupted{detail}")


class NoSuchBlockError(BlockError, KeyError):
    """Raised when no data directory holds a copy of the block.

    Attributes:
        hash: the block's hash.
    """

    def __init__(self, hash: Hash) -> None:
        self.hash = hash
        super().__init__(f"block {hash.hex()} is not stored on this node")

    def __str__(self) -> str:
        # KeyError's __str__ would quote the message like a dict key.
        return str(self.args[0])


class DataLayoutError(BlockError):
    """Raised at startup when the data directories cannot be used as configured.

    A directory's ``garage-marker`` is missing or does not match the recorded one (the wrong
    drive is mounted, or none), the configuration has no writable directory, or a writable
    directory has no capacity. Startup stops: writing blocks into the wrong place would lose
    them.
    """

"""Errors of the local block store (Garage: src/block/, error cases of manager.rs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from garage_util.data import Hash, Uuid

__all__ = [
    "BlockError",
    "CorruptBlockError",
    "DataLayoutError",
    "MissingBlockError",
    "NoSuchBlockError",
]


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


class MissingBlockError(BlockError):
    """Raised when no node returned a valid copy of a block (Garage: ``Error::MissingBlock``).

    Every candidate node (those that store it in a live or recent layout version) was asked
    in turn: each lacked it, had a corrupt copy, failed or timed out.

    Attributes:
        hash: the block's hash.
        errors: ``(node, what went wrong)`` for each node asked, in the order asked.
    """

    def __init__(self, hash: Hash, errors: Sequence[tuple[Uuid, str]]) -> None:
        self.hash = hash
        self.errors = tuple(errors)
        tried = "; ".join(f"{node.short_hex()}: {msg}" for node, msg in self.errors)
        super().__init__(
            f"block {hash.hex()}: no node returned a valid copy "
            f"({len(self.errors)} asked{': ' if tried else ''}{tried})"
        )

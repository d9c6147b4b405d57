"""The exceptions of garage_table."""

from __future__ import annotations

from garage_util.errors import GarageError

__all__ = ["NoLayoutError", "TableError"]


class TableError(GarageError):
    """Base of the errors garage_table raises on purpose."""


class NoLayoutError(TableError):
    """Raised when a sharded table is used before the cluster has a layout: no node is
    assigned to store anything yet (``garage layout assign`` then ``apply``)."""

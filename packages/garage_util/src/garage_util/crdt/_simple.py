"""The small CRDTs: ``Bool`` (true wins) and ``Deletable`` (deleted absorbs).

Garage: src/util/crdt/bool.rs, src/util/crdt/deletable.rs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from ._base import Crdt, merge_values

__all__ = ["Bool", "Deletable"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Bool(Crdt):
    """A boolean that, once true, stays true (merge is logical OR)."""

    value: bool = False

    def merge(self, other: Self) -> Self:
        return self if self.value or not other.value else other

    def __bool__(self) -> bool:
        return self.value


@dataclass(frozen=True, slots=True)
class Deletable(Crdt, Generic[T]):
    """A value that can be deleted for good: ``Deleted`` absorbs every other state.

    Used for rows that are never garbage-collected (buckets, keys): a deleted row stays as a
    small tombstone forever, so a stale replica can never bring it back. ``value`` is None
    exactly when the row is deleted; two present values merge with their own rule.
    """

    value: T | None = None

    @classmethod
    def present(cls, value: T) -> Deletable[T]:
        """A present value. ``value`` must not be None."""
        if value is None:
            raise ValueError("Deletable.present needs a value; use Deletable.deleted()")
        return cls(value)

    @classmethod
    def deleted(cls) -> Deletable[T]:
        """The deleted state."""
        return cls(None)

    @property
    def is_deleted(self) -> bool:
        """True when the value was deleted."""
        return self.value is None

    def merge(self, other: Self) -> Self:
        if self.value is None:
            return self
        if other.value is None:
            return other
        return type(self)(merge_values(self.value, other.value))

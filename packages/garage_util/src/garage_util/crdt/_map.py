"""A map whose values are CRDTs merged key by key (Garage: src/util/crdt/map.rs).

Unlike :class:`LwwMap`, there is no timestamp per key: when both sides have a key, their
values are merged with their own rule. Entries are never removed. Stored as a tuple of
``(key, value)`` sorted by key, so equal maps encode to equal bytes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from ._base import Crdt, Ordered, check_sorted_keys, merge_values

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Map"]

K = TypeVar("K", bound=Ordered)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Map(Crdt, Generic[K, T]):
    """A map merged per key with each value's merge.

    Attributes:
        vals: ``(key, value)`` entries, sorted by key, keys unique.

    Raises:
        ValueError: on construction from unsorted or duplicate keys.
    """

    vals: tuple[tuple[K, T], ...] = ()

    def __post_init__(self) -> None:
        check_sorted_keys(self.vals, "Map")

    @classmethod
    def from_items(cls, items: dict[K, T]) -> Map[K, T]:
        """Builds a map from a dict."""
        return cls(tuple(sorted(items.items(), key=_first)))

    def get(self, key: K) -> T | None:
        """The value of ``key``, or None."""
        i = bisect.bisect_left(self.vals, key, key=_first)
        if i < len(self.vals) and self.vals[i][0] == key:
            return self.vals[i][1]
        return None

    def items(self) -> Iterator[tuple[K, T]]:
        """The ``(key, value)`` pairs in key order."""
        return iter(self.vals)

    def __len__(self) -> int:
        return len(self.vals)

    def put_mutator(self, key: K, value: T) -> Map[K, T]:
        """A one-entry map that, merged into this one, merges ``value`` into ``key``."""
        return type(self)(((key, value),))

    def merge(self, other: Self) -> Self:
        if not other.vals:
            return self
        if not self.vals:
            return other
        merged: dict[K, T] = dict(self.vals)
        for k, v in other.vals:
            merged[k] = merge_values(merged[k], v) if k in merged else v
        return type(self)(tuple(sorted(merged.items(), key=_first)))


def _first(entry: tuple[K, T]) -> K:
    return entry[0]

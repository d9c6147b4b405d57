"""Last-writer-wins registers and maps (Garage: src/util/crdt/lww.rs, lww_map.rs).

``Lww`` is a timestamped value: the larger timestamp wins. Timestamps come from the logical
clock (``max(previous + 1, now)``, see :mod:`garage_util.clock`), so the node that updates a
register always moves it forward, even if its wall clock lags the writer before it. Two
writers that picked the same timestamp are reconciled by merging their values
(:func:`merge_values`): every replica picks the same winner.

``LwwMap`` is a map of such registers, stored as a tuple of ``(key, ts, value)`` sorted by
key so that equal maps encode to equal bytes. Entries are never removed by a merge: to delete,
write a tombstone value (``False``, ``None``, ``Deletable.deleted()``) with a newer timestamp.

Mutations produce *mutators*: small values that must be merged into the current state,
never assigned over it (assigning would drop concurrent updates of other keys).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from garage_util.clock import increment_logical_clock

from ._base import Crdt, Ordered, check_sorted_keys, merge_values

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Lww", "LwwMap"]

K = TypeVar("K", bound=Ordered)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Lww(Crdt, Generic[T]):
    """A last-writer-wins register.

    Attributes:
        ts: the timestamp in milliseconds of the write that set ``v``.
        v: the value.
    """

    ts: int
    v: T

    @classmethod
    def new(cls, value: T, now_ms: int) -> Lww[T]:
        """A register holding ``value`` written at ``now_ms``."""
        return cls(now_ms, value)

    @property
    def value(self) -> T:
        """The current value."""
        return self.v

    def update(self, value: T, now_ms: int) -> Self:
        """A register that supersedes this one with ``value`` (timestamp ``max(ts+1, now)``)."""
        return type(self)(increment_logical_clock(self.ts, now_ms), value)

    def merge(self, other: Self) -> Self:
        if other.ts > self.ts:
            return other
        if other.ts < self.ts:
            return self
        merged = merge_values(self.v, other.v)
        if merged is self.v:
            return self
        return other if merged is other.v else type(self)(self.ts, merged)


@dataclass(frozen=True, slots=True)
class LwwMap(Crdt, Generic[K, T]):
    """A map from keys to last-writer-wins registers.

    Keys of one map must be of one totally ordered type (str, bytes, int, an id...).

    Attributes:
        vals: ``(key, ts, value)`` entries, sorted by key, keys unique.

    Raises:
        ValueError: on construction from unsorted or duplicate keys.
    """

    vals: tuple[tuple[K, int, T], ...] = ()

    def __post_init__(self) -> None:
        check_sorted_keys(self.vals, "LwwMap")

    @classmethod
    def from_items(cls, items: dict[K, tuple[int, T]]) -> LwwMap[K, T]:
        """Builds a map from ``{key: (ts, value)}``."""
        entries = sorted(((k, ts, v) for k, (ts, v) in items.items()), key=_first)
        return cls(tuple(entries))

    def get(self, key: K) -> T | None:
        """The value of ``key``, or None when the map has no entry for it."""
        entry = self._find(key)
        return None if entry is None else entry[2]

    def get_timestamp(self, key: K) -> int | None:
        """The timestamp of ``key``'s entry, or None when absent."""
        entry = self._find(key)
        return None if entry is None else entry[1]

    def items(self) -> Iterator[tuple[K, T]]:
        """The ``(key, value)`` pairs in key order."""
        return ((k, v) for k, _, v in self.vals)

    def keys(self) -> Iterator[K]:
        """The keys in order."""
        return (k for k, _, _ in self.vals)

    def __len__(self) -> int:
        return len(self.vals)

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None  # type: ignore[arg-type]  # any key may be probed

    def update_mutator(self, key: K, value: T, now_ms: int) -> LwwMap[K, T]:
        """A one-entry map that, merged into this one, sets ``key`` to ``value``.

        Its timestamp is newer than the entry it replaces (logical clock), so the merge
        makes it win here and on every replica that has the old entry.
        """
        old_ts = self.get_timestamp(key)
        ts = now_ms if old_ts is None else increment_logical_clock(old_ts, now_ms)
        return type(self)(((key, ts, value),))

    def update_in_place(self, key: K, value: T, now_ms: int) -> Self:
        """This map with ``key`` set to ``value``: ``merge(update_mutator(...))``."""
        return self.merge(self.update_mutator(key, value, now_ms))  # type: ignore[arg-type]

    def merge(self, other: Self) -> Self:
        if not other.vals:
            return self
        if not self.vals:
            return other
        merged: dict[K, tuple[int, T]] = {k: (ts, v) for k, ts, v in self.vals}
        for k, ts, v in other.vals:
            cur = merged.get(k)
            if cur is None or ts > cur[0]:
                merged[k] = (ts, v)
            elif ts == cur[0]:
                merged[k] = (ts, merge_values(cur[1], v))
        return type(self)(tuple(sorted(((k, ts, v) for k, (ts, v) in merged.items()), key=_first)))

    def _find(self, key: K) -> tuple[K, int, T] | None:
        i = bisect.bisect_left(self.vals, key, key=_first)
        if i < len(self.vals) and self.vals[i][0] == key:
            return self.vals[i]
        return None


def _first(entry: tuple[K, int, T]) -> K:
    return entry[0]

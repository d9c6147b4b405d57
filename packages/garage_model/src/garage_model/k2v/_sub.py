"""Local subscriptions to K2V item changes, for PollItem and PollRange.

Garage: src/model/k2v/sub.rs. A poller subscribes to one item (:class:`PollKey`) or to a
whole partition (the :class:`PollRange` filter is applied by the poller), then reads the
current state, then waits for changes: subscribing *before* reading means no change can
slip between the two.

Changes are reported by the item table's ``updated`` hook after its transaction commits,
from whatever thread committed (a worker thread, usually), through :meth:`notify`. Each
subscription keeps, per sort key, the latest state it was told about (a change replaces an
older one: item states only grow by merge, so the latest is all a poller needs), and wakes
its task with a :class:`~garage_table.Notifier`, which is safe across threads and never
loses a wake-up. Memory per subscription is bounded by the items of its partition that
changed while it was not looking.

Invariant: a subscription is registered with the manager exactly while its ``with`` block
runs; the manager never holds one that nobody will drain.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, final

from garage_table import Notifier

from ._item_table import K2VItem, K2VItemPartition

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["PollKey", "PollRange", "Subscription", "SubscriptionManager"]

K = TypeVar("K")


@final
@dataclass(frozen=True, slots=True)
class PollKey:
    """One item: its partition and sort key."""

    partition: K2VItemPartition
    sort_key: str


@final
@dataclass(frozen=True, slots=True)
class PollRange:
    """A range of one partition's items, as PollRange selects them.

    Attributes:
        partition: the bucket and partition key.
        prefix: only sort keys starting with it (None: any).
        start: only sort keys at or after it (None: from the first).
        end: only sort keys strictly before it (None: to the last).
    """

    partition: K2VItemPartition
    prefix: str | None = None
    start: str | None = None
    end: str | None = None

    def matches_key(self, sort_key: str) -> bool:
        """True when ``sort_key`` is in the range (Python's str order is the UTF-8 byte
        order the table sorts by)."""
        return (
            (self.prefix is None or sort_key.startswith(self.prefix))
            and (self.start is None or sort_key >= self.start)
            and (self.end is None or sort_key < self.end)
        )

    def matches(self, item: K2VItem) -> bool:
        """True when ``item`` is of this partition and in the range."""
        return item.partition == self.partition and self.matches_key(item.sk)

    def first_key(self) -> str | None:
        """The lowest sort key the range can hold (to start a scan), or None for the
        partition's first."""
        bounds = [b for b in (self.start, self.prefix) if b is not None]
        return max(bounds) if bounds else None

    def is_past(self, sort_key: str) -> bool:
        """True when ``sort_key``, met in ascending order from :meth:`first_key`, and every
        key after it, are out of the range (the end of a scan)."""
        if self.end is not None and sort_key >= self.end:
            return True
        # From first_key on, a key without the prefix is above every key with it.
        return self.prefix is not None and not sort_key.startswith(self.prefix)


@final
class Subscription:
    """The changes one poller waits for (made by :meth:`SubscriptionManager.subscribe_item`
    or :meth:`~SubscriptionManager.subscribe_partition`)."""

    __slots__ = ("_lock", "_notifier", "_pending")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._notifier = Notifier()
        self._pending: dict[str, K2VItem] = {}

    def _push(self, item: K2VItem) -> None:
        """Records a change; the caller holds the manager's lock.

        Merged with a pending state of the same item: notifications of two commits may
        arrive out of order, and the join is at least as new as both.
        """
        prev = self._pending.get(item.sk)
        self._pending[item.sk] = item if prev is None else prev.merge(item)

    def take_nowait(self) -> list[K2VItem]:
        """The items changed since the last take (latest state of each), possibly none."""
        with self._lock:
            items, self._pending = list(self._pending.values()), {}
        return items

    async def take(self) -> list[K2VItem]:
        """Waits until some item changed, then returns the changed items (latest state of
        each, at least one). Bound it with the caller's ``move_on_after``."""
        while True:
            items = self.take_nowait()
            if items:
                return items
            await self._notifier.wait()


@final
class SubscriptionManager:
    """The subscriptions of one node to item changes (thread-safe)."""

    __slots__ = ("_items", "_lock", "_partitions")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[PollKey, set[Subscription]] = {}
        self._partitions: dict[K2VItemPartition, set[Subscription]] = {}

    def __repr__(self) -> str:
        return f"<SubscriptionManager items={len(self._items)} partitions={len(self._partitions)}>"

    @contextmanager
    def subscribe_item(self, key: PollKey) -> Iterator[Subscription]:
        """Subscribes to the changes of one item for the duration of the ``with`` block."""
        with self._subscribed(self._items, key) as sub:
            yield sub

    @contextmanager
    def subscribe_partition(self, partition: K2VItemPartition) -> Iterator[Subscription]:
        """Subscribes to the changes of every item of a partition for the ``with`` block."""
        with self._subscribed(self._partitions, partition) as sub:
            yield sub

    @contextmanager
    def _subscribed(self, table: dict[K, set[Subscription]], key: K) -> Iterator[Subscription]:
        sub = Subscription(self._lock)
        with self._lock:
            table.setdefault(key, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = table.get(key)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del table[key]

    def notify(self, item: K2VItem) -> None:
        """Tells the subscribers of ``item`` and of its partition that it changed.

        Safe from any thread; call it after the change committed (the table's hook does).
        """
        with self._lock:
            subs = [
                *self._items.get(PollKey(item.partition, item.sk), ()),
                *self._partitions.get(item.partition, ()),
            ]
            for sub in subs:
                sub._push(item)
        for sub in subs:
            sub._notifier.notify()

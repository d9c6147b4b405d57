"""Subscriptions: changes reported from any thread wake the pollers of the item and of its
partition, and nothing stays registered after a poll."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from garage_model.k2v import (
    K2VItem,
    K2VItemPartition,
    PollKey,
    Subscription,
    SubscriptionManager,
)
from garage_util.data import FixedBytes32

pytestmark = pytest.mark.anyio

BUCKET = FixedBytes32(b"\xb4" * 32)


def item(pk: str, sk: str, node: int, value: bytes) -> K2VItem:
    out, _ = K2VItem.new(BUCKET, pk, sk).update(node, None, value, 0)
    return out


async def test_a_change_from_a_worker_thread_wakes_item_and_partition_pollers() -> None:
    subs = SubscriptionManager()
    part = K2VItemPartition(BUCKET, "pk")
    changed = item("pk", "a", 1, b"x")
    with (
        subs.subscribe_item(PollKey(part, "a")) as on_item,
        subs.subscribe_item(PollKey(part, "b")) as on_other_item,
        subs.subscribe_partition(part) as on_part,
        subs.subscribe_partition(K2VItemPartition(BUCKET, "other")) as on_other_part,
    ):
        got: dict[str, list[K2VItem]] = {}

        async def take(name: str, sub: Subscription) -> None:
            got[name] = await sub.take()

        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "item", on_item)
            tg.start_soon(take, "part", on_part)
            await anyio.sleep(0.05)  # not needed for correctness: the takes usually wait
            await anyio.to_thread.run_sync(subs.notify, changed)
        assert got == {"item": [changed], "part": [changed]}
        assert on_other_item.take_nowait() == []
        assert on_other_part.take_nowait() == []
    assert repr(subs) == "<SubscriptionManager items=0 partitions=0>"


async def test_changes_while_not_waiting_are_kept_and_merged() -> None:
    subs = SubscriptionManager()
    part = K2VItemPartition(BUCKET, "pk")
    first = item("pk", "a", 1, b"x")
    later, _ = first.update(2, None, b"y", 0)
    with subs.subscribe_partition(part) as sub:
        # Two commits notified out of order: the subscriber still sees the newest state.
        subs.notify(later)
        subs.notify(first)
        subs.notify(item("pk", "b", 1, b"z"))
        taken = await sub.take()
        assert [(i.sk, i.values()) for i in taken] == [("a", [b"x", b"y"]), ("b", [b"z"])]
        assert sub.take_nowait() == []
        with anyio.move_on_after(0.05):
            await sub.take()
            pytest.fail("nothing changed: take must wait")

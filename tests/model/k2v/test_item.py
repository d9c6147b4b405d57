"""K2V items: dotted version vectors (merge laws, write and delete semantics), the
encoding, the counts and the range filter."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.bucket_table import UuidKey
from garage_model.k2v import (
    BYTES,
    CONFLICTS,
    DELETED,
    ENTRIES,
    VALUES,
    CausalContext,
    DvvsEntry,
    DvvsValue,
    K2VItem,
    K2VItemFilter,
    K2VItemPartition,
    make_node_id,
)
from garage_table.schema import StringKey
from garage_util.data import FixedBytes32, blake2sum
from garage_util.testing import check_crdt_laws

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn

BUCKET = FixedBytes32(b"\xb1" * 32)
PART = K2VItemPartition(BUCKET, "pk")
NODES = (1, 2, 3)

# A few values, so that two nodes often write the same one (values() de-duplicates).
dvvs_values = st.sampled_from([None, b"", b"a", b"bb", b"ccc"]).map(DvvsValue)

Dot = tuple[int, int, DvvsValue]


def dots(item: K2VItem) -> set[Dot]:
    """The item's values as (node, time, value)."""
    return {(n, t, v) for n, e in item.items for t, v in e.values}


@st.composite
def replica_views(draw: DrawFn, n_views: int = 3) -> list[K2VItem]:
    """Copies of one item as replicas can hold them.

    Each node n writes one history H_n of values with strictly increasing times (only n
    appends to its entry, above its own clock). A replica's copy of entry n is then
    H_n ∩ (t_discard, T] for some t_discard and T: those are the states generated here.
    """
    nodes = sorted(draw(st.lists(st.sampled_from(NODES), min_size=1, unique=True)))
    histories = {}
    for n in nodes:
        times = sorted(draw(st.sets(st.integers(1, 20), max_size=6)))
        histories[n] = [(t, draw(dvvs_values)) for t in times]
    views = []
    for _ in range(n_views):
        entries = []
        for n in nodes:
            if draw(st.booleans()):
                d, top = draw(st.integers(0, 21)), draw(st.integers(0, 21))
                entries.append(
                    (n, DvvsEntry(d, tuple((t, v) for t, v in histories[n] if d < t <= top)))
                )
        views.append(K2VItem(PART, "sk", tuple(entries)))
    return views


@given(replica_views())
def test_merge_is_a_crdt(views: list[K2VItem]) -> None:
    check_crdt_laws(*views)


def test_dvvs_entry_merge_of_garage() -> None:
    # Garage's test (src/model/k2v/item_table.rs): the newer copy absorbs the older one.
    e1 = DvvsEntry(4, ((5, DvvsValue(b"\x0f")), (6, DvvsValue(b"\x10"))))
    e2 = DvvsEntry(5, ((6, DvvsValue(b"\x10")), (7, DELETED)))
    assert e1.merge(e2) == e2
    assert e2.merge(e1) == e2


@given(st.data())
def test_writes_discard_exactly_what_their_context_saw(data: st.DataObject) -> None:
    """A simulated cluster: each node holds a copy of the item, writes happen on any node
    with the context read from any copy (or none), copies are merged pairwise."""
    copies = {n: K2VItem(PART, "sk") for n in NODES}
    clocks = dict.fromkeys(NODES, 0)
    written: set[Dot] = set()
    contexts: list[CausalContext] = []
    for _ in range(data.draw(st.integers(1, 25))):
        if data.draw(st.booleans()):
            n = data.draw(st.sampled_from(NODES))
            source = data.draw(st.sampled_from((None, *NODES)))
            value = data.draw(dvvs_values)
            ctx = None if source is None else copies[source].causal_context()
            ts = max(clocks[n], data.draw(st.integers(0, 40)))
            before = copies[n]
            after, t = before.update(n, ctx, value, ts)
            assert t > ts
            kept = {d for d in dots(before) if ctx is None or d[1] > ctx.vector_clock.get(d[0], 0)}
            assert dots(after) == kept | {(n, t, value)}
            # Everything the writer had seen is gone (it is overwritten).
            if source is not None:
                assert not (dots(copies[source]) & dots(after))
            copies[n], clocks[n] = after, t
            written.add((n, t, value))
            if ctx is not None:
                contexts.append(ctx)
        else:
            a, b = data.draw(st.sampled_from(NODES)), data.draw(st.sampled_from(NODES))
            copies[b] = copies[b].merge(copies[a])
    final = functools.reduce(K2VItem.merge, copies.values())
    assert final == functools.reduce(K2VItem.merge, reversed(copies.values()))
    survivors = {d for d in written if all(d[1] > c.vector_clock.get(d[0], 0) for c in contexts)}
    assert dots(final) == survivors


def test_concurrent_writes_are_siblings_until_a_write_with_the_token() -> None:
    empty = K2VItem.new(BUCKET, "pk", "sk")
    a, _ = empty.update(1, None, b"from node 1", 100)
    b, _ = empty.update(2, None, b"from node 2", 50)
    both = a.merge(b)
    assert sorted(v or b"" for v in both.values()) == [b"from node 1", b"from node 2"]
    assert both.counts()[CONFLICTS] == 1
    # The token of what was read travels as text and resolves both.
    token = both.causal_context().serialize()
    resolved, _ = b.update(2, CausalContext.parse(token), b"resolved", 60)
    assert resolved.merge(a).values() == [b"resolved"]
    assert resolved.merge(a).counts()[CONFLICTS] == 0


def test_a_write_without_token_is_concurrent_with_everything() -> None:
    item, _ = K2VItem.new(BUCKET, "pk", "sk").update(1, None, b"v1", 10)
    again, _ = item.update(1, None, b"v2", 11)
    assert again.values() == [b"v1", b"v2"]
    third, _ = again.update(1, again.causal_context(), b"v3", 12)
    assert third.values() == [b"v3"]


def test_deletes_are_tombstones_of_the_same_kind() -> None:
    item, _ = K2VItem.new(BUCKET, "pk", "sk").update(1, None, b"data", 10)
    deleted, _ = item.update(2, item.causal_context(), None, 5)
    assert deleted.values() == [None]
    assert deleted.is_tombstone()
    assert deleted.counts() == {ENTRIES: 0, CONFLICTS: 0, VALUES: 0, BYTES: 0}
    # A delete concurrent with a write keeps both: not a tombstone.
    other, _ = item.update(3, item.causal_context(), b"new", 7)
    both = deleted.merge(other)
    assert sorted(both.values(), key=lambda v: v or b"") == [None, b"new"]
    assert not both.is_tombstone()
    assert both.counts() == {ENTRIES: 1, CONFLICTS: 1, VALUES: 1, BYTES: 3}
    assert K2VItem.new(BUCKET, "pk", "sk").is_tombstone()


def test_times_follow_the_node_clock_and_never_go_back() -> None:
    item, t1 = K2VItem.new(BUCKET, "pk", "sk").update(1, None, b"a", 1000)
    assert t1 == 1001
    item, t2 = item.update(1, None, b"b", 10)  # the clock went back: the item's time rules
    assert t2 == 1002
    node = FixedBytes32(b"\x00" * 7 + b"\x05" + b"\xff" * 24)
    item, _ = item.update(node, None, b"c", 0)
    assert make_node_id(node) == 5
    assert dict(item.causal_context().vector_clock) == {1: 1002, 5: 1}


def test_values_are_deduplicated_in_node_order() -> None:
    e = DvvsEntry(0, ((3, DvvsValue(b"x")), (4, DvvsValue(b"y"))))
    f = DvvsEntry(7, ((9, DvvsValue(b"y")), (10, DELETED)))
    item = K2VItem(PART, "sk", ((1, e), (2, f)))
    assert item.values() == [b"x", b"y", None]
    assert item.counts() == {ENTRIES: 1, CONFLICTS: 1, VALUES: 2, BYTES: 2}
    assert dict(item.causal_context().vector_clock) == {1: 4, 2: 10}


@given(replica_views(1))
def test_encoding_round_trip(views: list[K2VItem]) -> None:
    (item,) = views
    assert K2VItem.decode(item.encode()) == item


def test_keys_of_an_item() -> None:
    item = K2VItem.new(BUCKET, "pk", "sk")
    assert item.partition_key() == PART
    assert item.sort_key() == StringKey("sk")
    assert item.sk == "sk"
    assert PART.hash() == blake2sum(bytes(BUCKET) + b"pk")
    assert item.counter_partition_key() == UuidKey(BUCKET)
    assert item.counter_sort_key() == StringKey("pk")


def test_invalid_states_are_refused() -> None:
    with pytest.raises(ValueError, match="increase"):
        DvvsEntry(0, ((2, DELETED), (2, DELETED)))
    with pytest.raises(ValueError, match="increase"):
        DvvsEntry(5, ((5, DELETED),))
    with pytest.raises(ValueError, match="sorted"):
        K2VItem(PART, "sk", ((2, DvvsEntry()), (1, DvvsEntry())))
    with pytest.raises(ValueError, match="different"):
        K2VItem.new(BUCKET, "pk", "a").merge(K2VItem.new(BUCKET, "pk", "b"))


def test_filter() -> None:
    one, _ = K2VItem.new(BUCKET, "pk", "sk").update(1, None, b"a", 1)
    two, _ = one.update(1, None, b"b", 2)
    gone, _ = one.update(1, one.causal_context(), None, 3)
    everything = K2VItemFilter()
    live = K2VItemFilter(exclude_only_tombstones=True)
    conflicts = K2VItemFilter(conflicts_only=True)
    assert [everything.matches(i) for i in (one, two, gone)] == [True, True, True]
    assert [live.matches(i) for i in (one, two, gone)] == [True, True, False]
    assert [conflicts.matches(i) for i in (one, two, gone)] == [False, True, False]

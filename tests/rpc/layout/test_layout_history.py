"""Layout history: transitions, trackers, pruning, merge laws, encoding, helper queries."""

from __future__ import annotations

import dataclasses
import functools
import logging

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc.layout import (
    NB_PARTITIONS,
    OLD_VERSION_COUNT,
    InvalidLayoutError,
    LayoutHelper,
    LayoutHistory,
    LayoutParameters,
    LayoutStaging,
    LayoutVersion,
    NodeRole,
    NodeRoleV,
    UpdateTracker,
    UpdateTrackers,
    layout_digest,
)
from garage_util.config import ConsistencyMode
from garage_util.crdt import Lww, LwwMap
from garage_util.data import FixedBytes32, Uuid, blake2sum
from garage_util.encode import decode_versioned, encode_versioned, pack, to_wire
from garage_util.errors import DecodeError, UnknownVersionError
from garage_util.testing import check_crdt_laws, timestamps

GB = 10**9


def node_id(i: int) -> Uuid:
    return blake2sum(f"node {i}".encode())


def apply(h: LayoutHistory, roles: dict[int, NodeRole | None], now_ms: int) -> LayoutHistory:
    for i, role in roles.items():
        h = (
            h.stage_removal(node_id(i), now_ms)
            if role is None
            else h.stage_role(node_id(i), role, now_ms)
        )
    new, _ = h.apply_staged_changes(h.current.version + 1, now_ms + 1)
    return new


def first_layout(n: int = 4, rf: int = 3) -> LayoutHistory:
    return apply(LayoutHistory.new(rf), {i: NodeRole(f"dc{i % 3}", GB) for i in range(n)}, 1_000)


def a_key_that_moved(old: LayoutVersion, new: LayoutVersion) -> FixedBytes32:
    for p, first in new.partitions():
        if set(old.partition_nodes(p)) != set(new.partition_nodes(p)):
            return first
    raise AssertionError("no partition moved")


# ---------------------------------------------------------------- transitions


def test_a_new_history_is_empty() -> None:
    h = LayoutHistory.new(3)
    assert h.current.version == 0
    assert h.min_stored == 0
    assert h.all_nodes() == ()
    helper = LayoutHelper(h)
    assert helper.storage_sets_of(node_id(1)) == ((),)
    assert helper.read_nodes_of(node_id(1)) == ()
    with pytest.raises(InvalidLayoutError, match="ring_assignment_data has length 0"):
        h.check()


def test_a_transition_keeps_old_and_new_versions_live() -> None:
    h1 = first_layout()
    h2 = apply(h1, {9: NodeRole("dc9", GB)}, 2_000)
    assert [v.version for v in h2.versions] == [1, 2]
    helper = LayoutHelper(h2)
    key = a_key_that_moved(h2.versions[0], h2.versions[1])
    sets = helper.storage_sets_of(key)
    assert sets == (h2.versions[0].nodes_of(key), h2.versions[1].nodes_of(key))
    assert sets[0] != sets[1]
    assert set(helper.storage_nodes_of(key)) == set(sets[0]) | set(sets[1])
    # nobody has synced version 2 yet: reads still go to version 1
    assert helper.sync_map_min == 1
    assert helper.read_nodes_of(key) == sets[0]
    assert helper.ack_map_min == 1
    assert node_id(9) in helper.all_nodes
    assert node_id(9) in helper.all_storage_nodes


def test_pruning_after_every_node_synced() -> None:
    h2 = apply(first_layout(), {9: NodeRole("dc9", GB)}, 2_000)
    helper = LayoutHelper(h2)
    nodes = helper.all_nodes
    helper, changed = helper.sync(nodes[0], 2)
    assert changed
    assert helper.sync_map_min == 1  # old node sets have 2 of 3 nodes that did not sync
    for n in nodes[1:]:
        helper, _ = helper.sync(n, 2)
    assert helper.sync_map_min == 2
    key = a_key_that_moved(h2.versions[0], h2.versions[1])
    assert helper.read_nodes_of(key) == h2.versions[1].nodes_of(key)
    assert len(helper.versions) == 2  # not everyone has acknowledged the syncs yet
    for n in nodes:
        helper, _ = helper.sync_ack(n)
    assert [v.version for v in helper.versions] == [2]
    assert [v.version for v in helper.history.old_versions] == [1]
    assert helper.storage_sets_of(key) == (h2.versions[1].nodes_of(key),)
    helper, changed = helper.sync(nodes[0], 2)
    assert not changed


def test_reads_move_on_with_a_quorum_of_synced_nodes() -> None:
    """With rf 3 (write quorum 2), a version is readable once, in every old node set,
    2 nodes have synced it: any acknowledged write reached one of them."""
    h2 = apply(first_layout(), {9: NodeRole("dc9", GB)}, 2_000)
    helper = LayoutHelper(h2)
    laggard = node_id(0)
    for n in helper.all_nodes:
        if n != laggard:
            helper, _ = helper.sync(n, 2)
    assert helper.sync_map_min == 2
    # With rf 2 the write quorum is 2 = rf: every storage node must have synced.
    h2b = apply(first_layout(rf=2), {9: NodeRole("dc9", GB)}, 2_000)
    helper_b = LayoutHelper(h2b)
    for n in helper_b.all_nodes:
        if n != laggard:
            helper_b, _ = helper_b.sync(n, 2)
    assert helper_b.sync_map_min == 1


def test_trackers_of_this_node() -> None:
    h2 = apply(first_layout(), {9: NodeRole("dc9", GB)}, 2_000)
    helper = LayoutHelper(h2)
    me = node_id(1)
    assert helper.max_free_ack({}) == 2
    assert helper.max_free_ack({1: 3, 2: 1}) == 1
    assert helper.max_free_ack({1: 0, 2: 1}) == 2
    helper, changed = helper.ack_max(me, in_flight={1: 2})
    assert not changed  # already acked 1 (clamped to the oldest live version)
    helper, changed = helper.ack_max(me)
    assert changed
    assert helper.history.update_trackers.ack_map.get(me, 0) == 2
    helper, changed = helper.update_trackers(me)
    assert helper.history.update_trackers.sync_map.get(me, 0) == 1
    assert helper.history.update_trackers.sync_ack_map.get(me, 0) == helper.sync_map_min
    helper, changed = helper.update_trackers(me)
    assert not changed
    # every node acknowledging version 2 moves ack_map_min
    for n in helper.all_nodes:
        helper, _ = helper.ack_max(n)
    assert helper.ack_map_min == 2


def test_old_versions_are_bounded() -> None:
    h = first_layout(6)
    helper = LayoutHelper(h)
    for k in range(2, 10):
        h = apply(helper.history, {100 + k: NodeRole(f"dc{k % 3}", GB)}, 1_000 * k)
        helper = LayoutHelper(h)
        for n in helper.all_nodes:
            helper, _ = helper.sync(n, k)
        for n in helper.all_nodes:
            helper, _ = helper.sync_ack(n)
        assert [v.version for v in helper.versions] == [k]
    old = [v.version for v in helper.history.old_versions]
    assert old == list(range(9 - OLD_VERSION_COUNT, 9))


def test_degraded_mode_keeps_only_the_current_version() -> None:
    h2 = apply(first_layout(), {9: NodeRole("dc9", GB)}, 2_000)
    helper = LayoutHelper(h2, consistency_mode=ConsistencyMode.DEGRADED)
    assert [v.version for v in helper.versions] == [2]
    assert [v.version for v in helper.history.old_versions] == [1]
    assert helper.sync_map_min == 2
    assert helper.with_history(h2).versions == helper.versions


# ---------------------------------------------------------------- merge


def test_merge_takes_newer_versions_and_replaces_an_outdated_history() -> None:
    h1 = first_layout()
    h2 = apply(h1, {9: NodeRole("dc9", GB)}, 2_000)
    merged, changed = h1.merge(h2)
    assert changed
    assert merged.versions == h2.versions
    assert h2.merge(h1) == (h2, False)
    # h3 has retired everything h1 knows: h1 adopts it whole
    helper = LayoutHelper(apply(h2, {10: NodeRole("dc0", GB)}, 3_000))
    for n in helper.all_nodes:
        helper, _ = helper.sync(n, 3)
    for n in helper.all_nodes:
        helper, _ = helper.sync_ack(n)
    h3 = helper.history
    assert [v.version for v in h3.versions] == [3]
    merged, changed = h1.merge(h3)
    assert changed
    assert merged.versions == h3.versions
    assert [v.version for v in merged.old_versions] == [1, 2]


def test_two_different_versions_with_one_number_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h1 = first_layout()
    a = apply(h1, {9: NodeRole("dc9", GB)}, 2_000)
    b = apply(h1, {10: NodeRole("dc10", GB)}, 2_000)
    with caplog.at_level(logging.ERROR):
        merged, _ = a.merge(b)
    assert "different layout compositions for version 2" in caplog.text
    assert merged.current == a.current  # ours is kept


@functools.cache
def chain() -> tuple[LayoutVersion, ...]:
    """Versions 1..8 of one cluster (the common ancestor of the histories below)."""
    h = apply(LayoutHistory.new(2), {i: NodeRole(f"dc{i % 2}", GB) for i in range(3)}, 1_000)
    versions = [h.current]
    for k in range(2, 9):
        change: dict[int, NodeRole | None] = {k + 10: NodeRole(f"dc{k % 3}", GB)}
        if k % 3 == 0:
            change = {k + 9: None}  # the node added at step k - 1
        h = apply(dataclasses.replace(h, versions=h.versions[-1:]), change, 1_000 * k)
        versions.append(h.current)
    return tuple(versions)


ids = st.sampled_from([node_id(i) for i in (0, 1, 2, 12, 13, 15)])
trackers = st.dictionaries(ids, st.integers(0, 8), max_size=4).map(UpdateTracker.from_items)


@st.composite
def histories(draw: st.DrawFn) -> LayoutHistory:
    """Histories derived from one chain: a live window, old versions, trackers, staging."""
    versions = chain()
    lo = draw(st.integers(1, len(versions)))
    hi = draw(st.integers(lo, len(versions)))
    old_from = draw(st.integers(max(1, lo - OLD_VERSION_COUNT), lo))
    staging = LayoutStaging(
        Lww(draw(timestamps()), draw(st.sampled_from([LayoutParameters(), LayoutParameters(1)]))),
        LwwMap.from_items(
            draw(
                st.dictionaries(
                    ids,
                    st.tuples(timestamps(), st.sampled_from([NodeRoleV(None), NodeRoleV()])),
                    max_size=2,
                )
            )
        ),
    )
    return LayoutHistory(
        versions=versions[lo - 1 : hi],
        old_versions=versions[old_from - 1 : lo - 1],
        update_trackers=UpdateTrackers(draw(trackers), draw(trackers), draw(trackers)),
        staging=Lww(draw(timestamps()), staging),
    )


def merged(a: LayoutHistory, b: LayoutHistory) -> LayoutHistory:
    result, changed = a.merge(b)
    assert changed == (result != a)
    return result


@given(histories(), histories(), histories())
def test_history_merge_is_a_crdt_for_one_chain(
    a: LayoutHistory, b: LayoutHistory, c: LayoutHistory
) -> None:
    ab, ba = merged(a, b), merged(b, a)
    assert ab == ba
    assert encode_versioned(ab) == encode_versioned(ba)
    assert merged(ab, c) == merged(a, merged(b, c))
    assert merged(a, a) == a
    assert merged(ab, a) == ab
    assert ab.current.version == max(a.current.version, b.current.version)
    assert ab.min_stored == max(a.min_stored, b.min_stored)


@given(trackers, trackers, trackers)
def test_tracker_merge_is_a_crdt(a: UpdateTracker, b: UpdateTracker, c: UpdateTracker) -> None:
    check_crdt_laws(a, b, c)
    m = a.merge(b)
    for node, version in (*a.vals, *b.vals):
        assert m.get(node, -1) >= version


all_trackers = st.builds(UpdateTrackers, trackers, trackers, trackers)


@given(all_trackers, all_trackers, all_trackers)
def test_trackers_merge_is_a_crdt(a: UpdateTrackers, b: UpdateTrackers, c: UpdateTrackers) -> None:
    check_crdt_laws(a, b, c)


def test_tracker_values() -> None:
    t = UpdateTracker.from_items({node_id(1): 3})
    assert t.set_max(node_id(1), 2) is t
    assert t.set_max(node_id(1), 4).get(node_id(1), 0) == 4
    assert t.get(node_id(2), 7) == 7
    assert t.min_among([node_id(1), node_id(2)], 1) == 1
    assert t.min_among([], 5) == 5
    with pytest.raises(ValueError, match="sorted"):
        UpdateTracker(((node_id(1), 1), (node_id(1), 2)))
    with pytest.raises(ValueError, match=">= 0"):
        UpdateTracker(((node_id(1), -1),))


# ---------------------------------------------------------------- encoding and digest


@given(histories())
def test_history_round_trips(h: LayoutHistory) -> None:
    data = encode_versioned(h)
    assert data.startswith(b"G01lh")
    assert decode_versioned(LayoutHistory, data) == h


def test_version_round_trips() -> None:
    for v in (*chain(), LayoutVersion.new(3)):
        data = encode_versioned(v)
        assert data.startswith(b"G01lv")
        assert decode_versioned(LayoutVersion, data) == v


def test_unknown_markers_and_bad_bodies_are_refused() -> None:
    h = first_layout()
    with pytest.raises(UnknownVersionError, match="unknown version marker"):
        decode_versioned(LayoutHistory, b"G99lh" + pack(h))
    with pytest.raises(UnknownVersionError, match="LayoutHistory"):
        decode_versioned(LayoutHistory, encode_versioned(h.current))
    with pytest.raises(DecodeError):
        decode_versioned(LayoutHistory, b"G01lh" + msgpack.packb({"versions": []}))
    wire = to_wire(h)
    assert isinstance(wire, dict)
    wire["versions"] = []  # no live version at all
    with pytest.raises(DecodeError, match="at least one live version"):
        decode_versioned(LayoutHistory, b"G01lh" + msgpack.packb(wire))


def test_history_invariants() -> None:
    v = chain()
    h = first_layout()
    with pytest.raises(ValueError, match="consecutive"):
        dataclasses.replace(h, versions=(v[0], v[2]))
    with pytest.raises(ValueError, match="older than live"):
        dataclasses.replace(h, versions=(v[1],), old_versions=(v[2],))
    with pytest.raises(ValueError, match="at most 5"):
        dataclasses.replace(h, versions=(v[7],), old_versions=v[:6])


def test_digest_follows_trackers_and_staging() -> None:
    h = first_layout()
    d = layout_digest(h)
    assert (d.current_version, d.active_versions) == (1, 1)
    assert d.trackers_hash == blake2sum(pack(h.update_trackers))
    staged = h.stage_role(node_id(9), NodeRole("dc9", GB), 5_000)
    assert layout_digest(staged).staging_hash != d.staging_hash
    assert layout_digest(staged).trackers_hash == d.trackers_hash
    helper, _ = LayoutHelper(h).sync(node_id(0), 1)
    helper, _ = helper.ack_max(node_id(42))
    assert helper.digest().trackers_hash != d.trackers_hash
    assert helper.digest() == layout_digest(helper.history)


def test_helper_merge() -> None:
    h1 = first_layout()
    h2 = apply(h1, {9: NodeRole("dc9", GB)}, 2_000)
    helper = LayoutHelper(h1)
    same, changed = helper.merge(h1)
    assert same is helper
    assert not changed
    newer, changed = helper.merge(h2)
    assert changed
    assert newer.current.version == 2
    assert newer.read_version().version == 1
    assert len(newer.storage_sets_of(FixedBytes32(bytes(32)))) == 2
    assert all(len(s) == 3 for s in newer.storage_sets_of(FixedBytes32(bytes(32))))
    assert sum(newer.current.get_node_usage(n) for n in newer.all_nodes) == NB_PARTITIONS * 3

"""The sharded and full-copy strategies over real layout values."""

from __future__ import annotations

from garage_rpc.layout import LayoutHelper, LayoutHistory, NodeRole, partition_first_hash
from garage_rpc.replication_mode import ReplicationParams
from garage_table._strategies import TableFullReplication, TableShardedReplication
from garage_util.config import ConsistencyMode
from garage_util.data import FixedBytes32, blake2sum

NODES = [FixedBytes32(bytes([i]) * 32) for i in range(1, 6)]


def layout(nodes: list[FixedBytes32], *, base: LayoutHistory | None = None) -> LayoutHistory:
    history = base or LayoutHistory.new(3)
    for n in nodes:  # one zone per node
        history = history.stage_role(n, NodeRole(f"z{n[0]}", 10**9, ()), now_ms=10 + n[0])
    applied, _ = history.apply_staged_changes(history.current.version + 1, now_ms=100)
    return applied


def test_sharded_places_each_partition_on_rf_nodes_with_consistent_quorums() -> None:
    helper = LayoutHelper(layout(NODES[:3]))
    rep = TableShardedReplication(lambda: helper, ReplicationParams(3))
    h = blake2sum(b"some bucket")
    assert sorted(rep.storage_nodes(h)) == sorted(NODES[:3])
    assert rep.write_sets(h) == [list(helper.storage_nodes_of(h))]
    assert (rep.read_quorum(), rep.write_quorum()) == (2, 2)
    assert rep.partition_of(h) == h[0]
    degraded = TableShardedReplication(
        lambda: helper, ReplicationParams(3, ConsistencyMode.DEGRADED)
    )
    assert (degraded.read_quorum(), degraded.write_quorum()) == (1, 2)


def test_sync_partitions_cover_every_hash_exactly_once() -> None:
    helper = LayoutHelper(layout(NODES[:3]))
    parts = TableShardedReplication(lambda: helper, ReplicationParams(3)).sync_partitions()
    assert [p.partition for p in parts.partitions] == list(range(256))
    assert parts.partitions[0].first_hash == FixedBytes32.zero()
    assert parts.partitions[-1].last_hash == FixedBytes32(b"\xff" * 32)
    for prev, nxt in zip(parts.partitions, parts.partitions[1:], strict=False):
        assert prev.last_hash.increment() == nxt.first_hash
    assert all(len(p.storage_sets) == 1 and len(p.storage_sets[0]) == 3 for p in parts.partitions)


def test_during_a_transition_writes_go_to_both_versions() -> None:
    first = layout(NODES[:3])
    second = layout(NODES[3:5], base=first)  # two more nodes: some partitions move
    helper = LayoutHelper(second)
    rep = TableShardedReplication(lambda: helper, ReplicationParams(3))
    # Two live versions: every partition has two write sets, different where it moved.
    assert all(len(rep.write_sets(partition_first_hash(p))) == 2 for p in range(256))
    moved = [
        p
        for p in range(256)
        if len({frozenset(s) for s in rep.write_sets(partition_first_hash(p))}) == 2
    ]
    assert moved, "adding nodes must move some partitions"
    p = partition_first_hash(moved[0])
    old_set, new_set = rep.write_sets(p)
    assert set(rep.storage_nodes(p)) == set(old_set) | set(new_set)
    assert set(old_set) != set(new_set)


def test_full_copy_is_everywhere_read_locally_written_to_all_but_one() -> None:
    helper = LayoutHelper(layout(NODES[:4]))
    rep = TableFullReplication(lambda: helper, NODES[1])
    h = blake2sum(b"key")
    assert sorted(rep.storage_nodes(h)) == sorted(NODES[:4])
    assert rep.read_nodes(h) == [NODES[1]]
    assert (rep.read_quorum(), rep.write_quorum()) == (1, 3)
    assert rep.partition_of(h) == 0
    (only,) = rep.sync_partitions().partitions
    assert (only.first_hash, only.last_hash) == (FixedBytes32.zero(), FixedBytes32(b"\xff" * 32))


def test_without_a_layout_nothing_is_assigned() -> None:
    helper = LayoutHelper(LayoutHistory.new(3))
    rep = TableShardedReplication(lambda: helper, ReplicationParams(3))
    assert rep.write_sets(blake2sum(b"x")) in ([[]], [])

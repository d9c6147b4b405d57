"""The partition assignment: invariants on random clusters, optimality checked against an
independent networkx computation, determinism, and minimal data movement."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import TYPE_CHECKING

import networkx as nx
from hypothesis import event, given, settings
from hypothesis import strategies as st

from garage_rpc.layout import (
    NB_PARTITIONS,
    InvalidLayoutError,
    LayoutHistory,
    LayoutParameters,
    LayoutVersion,
    NodeRole,
    ZoneRedundancy,
)
from garage_util.data import FixedBytes32, Uuid, blake2sum
from garage_util.encode import encode_versioned

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

#: Capacities of the random clusters: unequal on purpose, and small enough for the
#: independent binary search (networkx) to stay quick. None is a gateway.
CAPACITIES = [None, 1_000, 2_000, 3_000, 5_000, 8_000]


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A cluster description: ``(node id, zone, capacity)`` and the parameters."""

    nodes: tuple[tuple[Uuid, str, int | None], ...]
    replication_factor: int
    zone_redundancy: ZoneRedundancy

    @property
    def storage(self) -> list[tuple[Uuid, str, int]]:
        return [(n, z, c) for n, z, c in self.nodes if c is not None]

    @property
    def zones(self) -> list[str]:
        return sorted({z for _, z, _ in self.storage})

    @property
    def effective_zone_redundancy(self) -> int:
        if self.zone_redundancy == "maximum":
            return min(len(self.zones), self.replication_factor)
        return int(self.zone_redundancy)


def node_id(i: int) -> Uuid:
    return blake2sum(f"node {i}".encode())


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    nb_zones = draw(st.integers(min_value=1, max_value=5))
    nb_nodes = draw(st.integers(min_value=1, max_value=12))
    ids = draw(
        st.lists(
            st.binary(min_size=32, max_size=32).map(FixedBytes32),
            min_size=nb_nodes,
            max_size=nb_nodes,
            unique=True,
        )
    )
    nodes = tuple(
        (i, f"zone{draw(st.integers(0, nb_zones - 1))}", draw(st.sampled_from(CAPACITIES)))
        for i in ids
    )
    rf = draw(st.integers(min_value=1, max_value=3))
    zr: ZoneRedundancy = draw(st.one_of(st.just("maximum"), st.integers(1, 3)))
    return Cluster(nodes, rf, zr)


def stage(
    cluster: Cluster,
    *,
    history: LayoutHistory | None = None,
    order: Sequence[int] | None = None,
    now_ms: int = 1_000,
) -> LayoutHistory:
    """A history with the cluster's roles and parameters staged (in ``order``)."""
    h = history or LayoutHistory.new(cluster.replication_factor)
    for i in order if order is not None else range(len(cluster.nodes)):
        node, zone, cap = cluster.nodes[i]
        h = h.stage_role(node, NodeRole(zone, cap), now_ms)
    return h.stage_parameters(LayoutParameters(cluster.zone_redundancy), now_ms)


# ---------------------------------------------------------------- independent check


def reference_network(cluster: Cluster) -> nx.DiGraph:
    """Garage's flow network, built here from the cluster description alone."""
    rf, zr = cluster.replication_factor, cluster.effective_zone_redundancy
    g = nx.DiGraph()
    for p in range(NB_PARTITIONS):
        g.add_edge("source", ("up", p), capacity=zr)
        g.add_edge("source", ("down", p), capacity=rf - zr)
        for z in cluster.zones:
            g.add_edge(("up", p), ("pz", p, z), capacity=1)
            g.add_edge(("down", p), ("pz", p, z), capacity=rf)
        for node, zone, _ in cluster.storage:
            g.add_edge(("pz", p, zone), ("node", node), capacity=1)
    for node, _, _ in cluster.storage:
        g.add_edge(("node", node), "sink", capacity=0)
    return g


def reference_flow(g: nx.DiGraph, cluster: Cluster, size: int) -> int:
    for node, _, cap in cluster.storage:
        g[("node", node)]["sink"]["capacity"] = cap // size
    return int(nx.maximum_flow_value(g, "source", "sink"))


def reference_partition_size(cluster: Cluster) -> int | None:
    """The largest partition size with a full flow (own binary search), or None."""
    target = NB_PARTITIONS * cluster.replication_factor
    g = reference_network(cluster)
    if reference_flow(g, cluster, 1) < target:
        return None
    # Above total/target even a perfect split cannot hold `target` partitions.
    low, high = 1, sum(c for _, _, c in cluster.storage) // target + 1
    assert reference_flow(g, cluster, high) < target
    while high - low > 1:
        mid = (low + high) // 2
        if reference_flow(g, cluster, mid) == target:
            low = mid
        else:
            high = mid
    return low


def explain_refusal(cluster: Cluster) -> bool:
    """True when an independent reason makes the cluster impossible to lay out."""
    rf, zr = cluster.replication_factor, cluster.effective_zone_redundancy
    return (
        len(cluster.storage) < rf
        or zr > rf
        or len(cluster.zones) < zr
        or reference_partition_size(cluster) is None
    )


# ---------------------------------------------------------------- invariants


def check_invariants(cluster: Cluster, version: LayoutVersion) -> None:
    roles = {n: (z, c) for n, z, c in cluster.nodes}
    rf = cluster.replication_factor
    usage: Counter[Uuid] = Counter()
    for p, first in version.partitions():
        nodes = version.nodes_of(first)
        assert nodes == version.partition_nodes(p)
        assert len(nodes) == rf
        assert len(set(nodes)) == rf, "a partition has a node twice"
        assert all(roles[n][1] is not None for n in nodes), "a gateway stores a partition"
        zones = {roles[n][0] for n in nodes}
        if cluster.zone_redundancy == "maximum":
            assert len(zones) == min(rf, len(cluster.zones))
        else:
            assert len(zones) >= cluster.zone_redundancy
        usage.update(nodes)
    for node, (_, cap) in roles.items():
        if cap is not None:
            assert usage[node] <= cap // version.partition_size
            assert version.get_node_usage(node) == usage[node]
        else:
            assert usage[node] == 0
    assert set(version.all_nodes) == set(roles)
    assert set(version.storage_nodes) == {n for n, (_, c) in roles.items() if c is not None}
    version.check()


@given(clusters())
def test_random_clusters_get_valid_assignments(cluster: Cluster) -> None:
    history = stage(cluster)
    try:
        new, summary = history.apply_staged_changes(1, 2_000)
    except InvalidLayoutError:
        assert explain_refusal(cluster)
        event("refused")
        return
    event("laid out")
    version = new.current
    check_invariants(cluster, version)
    assert summary.partition_size == version.partition_size
    assert sum(n.partitions for n in summary.nodes) == NB_PARTITIONS * cluster.replication_factor
    assert summary.moved_replicas == NB_PARTITIONS * cluster.replication_factor  # all new


@settings(max_examples=25)
@given(clusters())
def test_partition_size_is_the_independent_max_flow_optimum(cluster: Cluster) -> None:
    try:
        new, _ = stage(cluster).apply_staged_changes(1, 2_000)
    except InvalidLayoutError:
        assert explain_refusal(cluster)
        event("refused")
        return
    event("laid out")
    assert new.current.partition_size == reference_partition_size(cluster)


def test_partition_size_optimum_at_byte_scale() -> None:
    """Real capacities are bytes: the binary search runs over a range of ~2**30."""
    tb = 10**12
    cluster = Cluster(
        tuple((node_id(i), f"dc{i % 3}", (i + 1) * tb) for i in range(7)),
        replication_factor=3,
        zone_redundancy="maximum",
    )
    new, _ = stage(cluster).apply_staged_changes(1, 2_000)
    size = new.current.partition_size
    check_invariants(cluster, new.current)
    g = reference_network(cluster)
    assert reference_flow(g, cluster, size) == NB_PARTITIONS * 3
    assert reference_flow(g, cluster, size + 1) < NB_PARTITIONS * 3


# ---------------------------------------------------------------- determinism


@settings(max_examples=40)
@given(clusters(), st.randoms(use_true_random=False))
def test_assignment_is_deterministic(cluster: Cluster, rnd: random.Random) -> None:
    order = list(range(len(cluster.nodes)))
    rnd.shuffle(order)
    a, b = stage(cluster), stage(cluster, order=order)
    assert a == b
    try:
        first, _ = a.calculate_next_version()
    except InvalidLayoutError:
        return
    again, _ = a.calculate_next_version()
    shuffled, _ = b.calculate_next_version()
    assert encode_versioned(first) == encode_versioned(again) == encode_versioned(shuffled)


def test_roles_given_in_any_order_give_identical_bytes() -> None:
    nodes = [(node_id(i), f"dc{i % 3}", (1 + i % 4) * 1000) for i in range(6)]
    results = set()
    for perm in itertools.islice(itertools.permutations(range(6)), 0, 720, 97):
        cluster = Cluster(tuple(nodes[i] for i in perm), 3, "maximum")
        version, _ = stage(cluster).calculate_next_version()
        results.add(encode_versioned(version))
    assert len(results) == 1


# ---------------------------------------------------------------- data movement


def moves(old: LayoutVersion, new: LayoutVersion) -> int:
    """Partition replicas on a node that did not hold them before (counted here)."""
    return sum(
        len(set(new.partition_nodes(p)) - set(old.partition_nodes(p))) for p in range(NB_PARTITIONS)
    )


def test_adding_a_fifth_zone_moves_close_to_the_minimum() -> None:
    cap = 10**12
    four = Cluster(tuple((node_id(i), f"dc{i}", cap) for i in range(4)), 3, "maximum")
    h1, _ = stage(four).apply_staged_changes(1, 1_000)
    h1b = h1.stage_role(node_id(4), NodeRole("dc4", cap), 2_000)
    h2, summary = h1b.apply_staged_changes(2, 3_000)
    old, new = h2.versions[0], h2.versions[1]
    moved = moves(old, new)
    new_node_share = new.get_node_usage(node_id(4))
    print(f"4 -> 5 equal nodes in 5 zones, rf 3: {moved} partition replicas moved")
    assert moved == summary.moved_replicas
    # The new node takes ~256 * 3 / 5 = 154 replicas, and nothing else needs to move.
    assert moved == new_node_share
    assert abs(new_node_share - NB_PARTITIONS * 3 / 5) <= 3
    assert moved <= 1.1 * NB_PARTITIONS * 3 / 5
    check_invariants(dataclasses.replace(four, nodes=(*four.nodes, (node_id(4), "dc4", cap))), new)


def test_applying_an_unchanged_layout_moves_nothing() -> None:
    cluster = Cluster(
        tuple((node_id(i), f"dc{i % 3}", (1 + i % 3) * 10**9) for i in range(7)), 3, 2
    )
    h1, _ = stage(cluster).apply_staged_changes(1, 1_000)
    h2, summary = h1.apply_staged_changes(2, 2_000)
    assert summary.moved_replicas == 0
    assert h2.current.ring_assignment_data == h1.current.ring_assignment_data
    assert moves(h1.current, h2.current) == 0


def test_removing_a_node_moves_only_its_replicas() -> None:
    cluster = Cluster(tuple((node_id(i), f"dc{i % 3}", 10**9) for i in range(6)), 3, "maximum")
    h1, _ = stage(cluster).apply_staged_changes(1, 1_000)
    gone = node_id(5)
    held = h1.current.get_node_usage(gone)
    h2, summary = h1.stage_removal(gone, 2_000).apply_staged_changes(2, 3_000)
    assert gone not in h2.current.all_nodes
    assert h2.current.get_node_role(gone) is None
    assert summary.moved_replicas == held


def reference_min_moves(cluster: Cluster, size: int, old: LayoutVersion) -> int:
    """The minimum number of new replicas over every assignment of partition size
    ``size`` (networkx min-cost max-flow on the independently built network)."""
    g = reference_network(cluster)
    for node, _, cap in cluster.storage:
        g[("node", node)]["sink"]["capacity"] = cap // size
    for p in range(NB_PARTITIONS):
        held = set(old.partition_nodes(p))
        for node, zone, _ in cluster.storage:
            g[("pz", p, zone)][("node", node)]["weight"] = 0 if node in held else 1
    flow = nx.max_flow_min_cost(g, "source", "sink")
    assert sum(flow["source"].values()) == NB_PARTITIONS * cluster.replication_factor
    return int(nx.cost_of_flow(g, flow))


@st.composite
def cluster_changes(draw: st.DrawFn) -> tuple[Cluster, Cluster]:
    """A cluster and a modified one (nodes added, removed, resized, moved)."""
    rf = draw(st.integers(1, 3))
    size = draw(st.integers(rf + 1, 8))
    nodes = [
        (node_id(i), f"dc{draw(st.integers(0, 3))}", draw(st.sampled_from(CAPACITIES[1:])))
        for i in range(size)
    ]
    changed = list(nodes)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["add", "remove", "resize", "move"]))
        if what == "add":
            changed.append(
                (node_id(len(nodes) + len(changed)), "dc4", draw(st.sampled_from(CAPACITIES[1:])))
            )
        elif len(changed) > rf + 1:
            i = draw(st.integers(0, len(changed) - 1))
            n, z, c = changed[i]
            if what == "remove":
                del changed[i]
            elif what == "resize":
                changed[i] = (n, z, draw(st.sampled_from(CAPACITIES[1:])))
            else:
                changed[i] = (n, f"dc{draw(st.integers(0, 4))}", c)
    zr: ZoneRedundancy = draw(st.sampled_from(["maximum", 1]))
    return Cluster(tuple(nodes), rf, zr), Cluster(tuple(changed), rf, zr)


@settings(max_examples=20)
@given(cluster_changes())
def test_movement_is_the_independent_min_cost_optimum(change: tuple[Cluster, Cluster]) -> None:
    before, after = change
    try:
        h1, _ = stage(before).apply_staged_changes(1, 1_000)
    except InvalidLayoutError:
        return
    h = h1
    kept = {n for n, _, _ in after.nodes}
    for node, _, _ in before.nodes:
        if node not in kept:
            h = h.stage_removal(node, 2_000)
    h = stage(after, history=h, now_ms=2_000)
    try:
        h2, summary = h.apply_staged_changes(2, 3_000)
    except InvalidLayoutError:
        assert explain_refusal(after)
        event("change refused")
        return
    event("changed")
    check_invariants(after, h2.current)
    assert summary.moved_replicas == moves(h1.current, h2.current)
    expected = reference_min_moves(after, h2.current.partition_size, h1.current)
    assert summary.moved_replicas == expected


def test_assignments_are_dispersed() -> None:
    """Partitions do not all land on the same node sets (Garage shuffles edges for this)."""
    cluster = Cluster(tuple((node_id(i), f"dc{i % 4}", 10**9) for i in range(8)), 3, "maximum")
    new, _ = stage(cluster).apply_staged_changes(1, 1_000)
    sets = Counter(frozenset(new.current.partition_nodes(p)) for p in range(NB_PARTITIONS))
    assert len(sets) >= 20

"""The partition assignment: which storage nodes hold each of the 256 partitions.

Garage: src/rpc/layout/version.rs (``calculate_partition_assignment`` and helpers) and
doc/optimal_layout_report. This module works on plain numbers (storage node indices,
zone indices, capacities); :mod:`._version` maps node ids and roles to them.

**Goal.** Give each partition ``rf`` (replication factor) distinct storage nodes, spread
over at least ``zr`` (effective zone redundancy) distinct zones, such that every partition
can hold as much data as possible, ``partition_size`` bytes, given that node ``n`` holds at
most ``floor(capacity(n) / partition_size)`` partitions; then, among the assignments that
reach that size, choose one that moves the fewest partition replicas compared with the
previous assignment.

**The flow network** for a candidate partition size ``s`` (Garage's, exactly)::

    source -> Pup(p)     capacity zr          (zr replicas go to distinct zones...)
    source -> Pdown(p)   capacity rf - zr     (...the others anywhere)
    Pup(p)   -> PZ(p, z) capacity 1           (at most one of the zr per zone)
    Pdown(p) -> PZ(p, z) capacity rf
    PZ(p, zone(n)) -> N(n)   capacity 1       (a node holds a partition at most once)
    N(n) -> sink         capacity floor(capacity(n) / s)

An assignment with partition size ``s`` exists iff the max flow is ``256 * rf``
(integral flows are assignments: the unit through ``PZ(p, z) -> N(n)`` is a replica of
``p`` on ``n``). Feasibility is monotone in ``s``, so the optimal size is found by binary
search, on ``[1, total_capacity // (256 * rf)]``: above that bound even a perfect split of
the capacity cannot hold ``256 * rf`` partitions.

**Aggregated feasibility.** Without a previous assignment all 256 partitions are
interchangeable, so the binary search runs the max flow on the network where the 256
copies of each vertex are merged (capacities multiplied by 256): a few dozen vertices
instead of thousands. Both networks have the same max flow: summing a flow of the full
network gives one of the merged network, and dividing a flow of the merged network by 256
gives a fractional flow of the full network of equal value, whose integral max flow is at
least as large (max-flow integrality). The tests check this against networkx on the full
network.

**Minimal movement.** The full network is then built for the optimal size, with cost 1 on
``PZ(p, zone(n)) -> N(n)`` when ``n`` did not hold ``p`` before and 0 when it did, and a
minimum-cost maximum flow is computed. Every unit of flow crosses exactly one such edge,
so its cost is the number of replicas that must be copied to a new node. Garage uses costs
-1/0 and cancels negative cycles; costs 1/0 differ by the constant ``256 * rf`` on every
maximum flow, so the optimum is the same, and non-negative costs allow the faster
primal-dual method (see :mod:`._graph`).

**Determinism.** Zones are numbered in sorted order, nodes in the order given (sorted by
id by the caller), and edges are added in an order drawn from a fixed-seed shuffle, so
equal inputs always give the same assignment (``garage layout show`` previews what
``garage layout apply`` computes). The computation is CPU-bound (about 0.1 s for 50
nodes, 0.4 s for 250): it is a plain function, so that the node can run it in a worker
thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._errors import InvalidLayoutError
from ._graph import FlowGraph, SeededShuffle
from ._roles import NB_PARTITIONS

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["AssignmentInput", "compute_assignment", "optimal_partition_size"]

#: Seed of the edge-order shuffle. Any constant works; Garage seeds its RNG with 0x12 bytes.
_SHUFFLE_SEED: Final = 0x1212_1212_1212_1212

_SOURCE: Final = 0
_SINK: Final = 1


@dataclass(frozen=True, slots=True)
class AssignmentInput:
    """The storage nodes and constraints of one assignment computation.

    Attributes:
        replication_factor: replicas per partition (``rf``).
        zone_redundancy: the effective zone redundancy (``zr``, an integer).
        nb_zones: the number of zones holding storage nodes.
        node_zones: the zone index (``0 .. nb_zones - 1``) of each storage node.
        capacities: the capacity in bytes of each storage node (all ``> 0``).
    """

    replication_factor: int
    zone_redundancy: int
    nb_zones: int
    node_zones: tuple[int, ...]
    capacities: tuple[int, ...]

    def check(self) -> None:
        """Checks the rules an assignment needs before any flow is computed.

        Raises:
            InvalidLayoutError: naming the broken rule.
        """
        rf, zr = self.replication_factor, self.zone_redundancy
        if len(self.capacities) < rf:
            raise InvalidLayoutError(
                f"the number of nodes with a positive capacity ({len(self.capacities)}) is "
                f"smaller than the replication factor ({rf})"
            )
        if zr > rf:
            raise InvalidLayoutError(
                f"the zone redundancy ({zr}) is larger than the replication factor ({rf})"
            )
        if self.nb_zones < zr:
            raise InvalidLayoutError(
                f"the number of zones with storage nodes ({self.nb_zones}) is smaller than "
                f"the zone redundancy ({zr})"
            )

    @property
    def target_flow(self) -> int:
        """The flow of a complete assignment: ``256 * rf`` replicas."""
        return NB_PARTITIONS * self.replication_factor


def optimal_partition_size(problem: AssignmentInput) -> int:
    """The largest partition size for which an assignment exists (binary search).

    Raises:
        InvalidLayoutError: when the rules of :meth:`AssignmentInput.check` are broken, or
            when even partitions of 1 byte cannot all be stored.
    """
    problem.check()
    graph, sink_edges = _aggregated_network(problem)
    target = problem.target_flow

    def feasible(size: int) -> bool:
        graph.reset_flow()
        for e, cap in zip(sink_edges, problem.capacities, strict=True):
            graph.set_capacity(e, cap // size)
        return graph.max_flow(_SOURCE, _SINK) >= target

    if not feasible(1):
        raise InvalidLayoutError(
            "the storage capacity of the cluster is too small: it is impossible to store "
            f"{NB_PARTITIONS} partitions * {problem.replication_factor} replicas of even 1 "
            "byte each with these zones and capacities"
        )
    low, high = 1, sum(problem.capacities) // target + 1  # low feasible, high infeasible
    while low + 1 < high:
        mid = (low + high) // 2
        if feasible(mid):
            low = mid
        else:
            high = mid
    return low


def _aggregated_network(problem: AssignmentInput) -> tuple[FlowGraph, list[int]]:
    """The network with the 256 partitions merged (see the module docstring)."""
    rf, zr, nb_zones = problem.replication_factor, problem.zone_redundancy, problem.nb_zones
    p_up, p_down, first_zone = 2, 3, 4
    first_node = first_zone + nb_zones
    graph = FlowGraph(first_node + len(problem.capacities))
    graph.add_edge(_SOURCE, p_up, NB_PARTITIONS * zr)
    graph.add_edge(_SOURCE, p_down, NB_PARTITIONS * (rf - zr))
    for z in range(nb_zones):
        graph.add_edge(p_up, first_zone + z, NB_PARTITIONS)
        graph.add_edge(p_down, first_zone + z, NB_PARTITIONS * rf)
    sink_edges = []
    for n, z in enumerate(problem.node_zones):
        graph.add_edge(first_zone + z, first_node + n, NB_PARTITIONS)
        sink_edges.append(graph.add_edge(first_node + n, _SINK, 0))
    return graph, sink_edges


def compute_assignment(
    problem: AssignmentInput,
    partition_size: int,
    previous: Sequence[frozenset[int]] | None,
) -> list[list[int]]:
    """Assigns ``rf`` storage nodes to every partition, moving as little as possible.

    Args:
        problem: the storage nodes and constraints.
        partition_size: the optimal partition size (:func:`optimal_partition_size`).
        previous: for each partition, the indices of the storage nodes that held it in the
            previous layout (still storage nodes now), or None for a first layout.

    Returns:
        For each partition, its ``rf`` storage node indices: zone by zone in zone order,
        and in the shuffled edge order within a zone.

    Raises:
        InvalidLayoutError: when no complete assignment exists at ``partition_size`` (the
            size was not computed by :func:`optimal_partition_size` for this input).
    """
    rf, zr, nb_zones = problem.replication_factor, problem.zone_redundancy, problem.nb_zones
    stride = 2 + nb_zones
    first_node = 2 + NB_PARTITIONS * stride
    zone_nodes: list[list[int]] = [[] for _ in range(nb_zones)]
    for n, z in enumerate(problem.node_zones):
        zone_nodes[z].append(n)

    rng = SeededShuffle(_SHUFFLE_SEED)
    graph = FlowGraph(first_node + len(problem.capacities))
    for p in rng.shuffled(range(NB_PARTITIONS)):
        base = 2 + p * stride
        graph.add_edge(_SOURCE, base, zr)
        if rf > zr:
            graph.add_edge(_SOURCE, base + 1, rf - zr)
    for p in range(NB_PARTITIONS):
        base = 2 + p * stride
        for z in rng.shuffled(range(nb_zones)):
            graph.add_edge(base, base + 2 + z, 1)
            if rf > zr:
                graph.add_edge(base + 1, base + 2 + z, rf)
    for p in range(NB_PARTITIONS):
        base = 2 + p * stride
        held = previous[p] if previous is not None else frozenset()
        for z in range(nb_zones):
            for n in rng.shuffled(zone_nodes[z]):
                cost = 0 if previous is None or n in held else 1
                graph.add_edge(base + 2 + z, first_node + n, 1, cost)
    for n, cap in enumerate(problem.capacities):
        graph.add_edge(first_node + n, _SINK, cap // partition_size)

    if previous is None:
        flow = graph.max_flow(_SOURCE, _SINK)
    else:
        flow = graph.min_cost_max_flow(_SOURCE, _SINK)
    if flow != problem.target_flow:
        raise InvalidLayoutError(
            f"no assignment stores every partition with partition size {partition_size} "
            f"(flow {flow} of {problem.target_flow})"
        )

    ring: list[list[int]] = []
    for p in range(NB_PARTITIONS):
        base = 2 + p * stride
        nodes = [
            graph.head(e) - first_node
            for z in range(nb_zones)
            for e in graph.out_edges(base + 2 + z)
            if graph.flow(e) > 0
        ]
        ring.append(nodes)
    return ring

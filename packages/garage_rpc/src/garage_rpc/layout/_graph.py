"""Flow networks: maximum flow (Dinic) and minimum-cost maximum flow (primal-dual).

Garage: src/rpc/layout/graph_algo.rs. The layout assignment (see :mod:`._assignment`) is a
flow problem on small integer capacities: a few thousand vertices and a few tens of
thousands of edges, one unit of flow per partition replica. This module knows nothing about
partitions or nodes; it is a plain graph with integer vertices.

**Representation.** Edges live in flat lists indexed by edge id, which is the fastest
layout pure Python has: ``_to[e]`` (head), ``_res[e]`` (residual capacity), ``_cap[e]``,
``_cost[e]``. Edges are added in pairs: edge ``e`` (even) is the forward edge and ``e ^ 1``
its reverse, with capacity 0 and the opposite cost. The flow on a forward edge is
``cap - res``. Adjacency lists keep insertion order, so results depend only on the order
in which the caller adds edges: callers that want variety (Garage shuffles adjacency
lists "to ensure the dispersion of the associations") add edges in an order drawn from
:class:`SeededShuffle`, which is deterministic.

**Max flow.** Dinic's algorithm: a BFS assigns levels from the source over edges with
residual capacity, then a DFS with per-vertex "current edge" pointers pushes flow along
level-increasing paths until the level graph is blocked; repeat until the sink is
unreachable. It continues from whatever flow is already present, so a caller may compute
a flow, add edges and continue (Garage's candidate assignment does this).

**Min-cost max flow.** Garage finds an assignment, then cancels negative cycles found by
Bellman-Ford bounded to ``4 * nodes`` rounds over every edge. That is
``O(nodes * edges)`` per round: seconds per round in pure Python for 50 nodes. We compute
the same optimum (a maximum flow of minimum cost) with the primal-dual method instead:
from the zero flow, with non-negative costs, repeat { Dijkstra with vertex potentials
(Johnson's reduced costs, never negative), then a Dinic max flow restricted to the
*admissible* edges, those whose reduced cost is 0 }. Each round raises the cost of the
cheapest augmenting path by at least 1, and in the layout problem path costs are tiny, so
a handful of rounds suffice.

Invariants:
    - ``0 <= res[e] <= cap[e] + cap[e ^ 1]`` and ``res[e] + res[e ^ 1] == cap[e] + cap[e ^ 1]``.
    - During :meth:`FlowGraph.min_cost_max_flow`, every residual edge between vertices
      reachable from the source has a non-negative reduced cost.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Final, TypeVar, final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["FlowGraph", "SeededShuffle"]

T = TypeVar("T")

_MASK64: Final = (1 << 64) - 1
#: An unreachable vertex's distance in Dijkstra; any value above every real path cost.
_INF: Final = 1 << 62


@final
class SeededShuffle:
    """A deterministic shuffler (SplitMix64 and Fisher-Yates).

    Garage seeds a ``StdRng`` with a constant so that ``garage layout show`` previews
    exactly what ``garage layout apply`` computes. We use our own tiny generator rather
    than :mod:`random`, so that the sequence depends on nothing outside this file.
    """

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64

    def _next(self) -> int:
        # SplitMix64 (Steele, Lea, Flood 2014): one addition and two xor-multiply rounds,
        # plenty for spreading edges, and trivially reproducible.
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def shuffled(self, items: Sequence[T]) -> list[T]:
        """A new list with the items of ``items`` in a pseudo-random order."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self._next() % (i + 1)
            out[i], out[j] = out[j], out[i]
        return out


@final
class FlowGraph:
    """A directed graph with integer capacities and costs on its edges.

    Vertices are ``0 .. nb_vertices - 1``. The graph is mutable: flows change in place.
    """

    __slots__ = ("_adj", "_cap", "_cost", "_res", "_to")

    def __init__(self, nb_vertices: int) -> None:
        self._adj: list[list[int]] = [[] for _ in range(nb_vertices)]
        self._to: list[int] = []
        self._res: list[int] = []
        self._cap: list[int] = []
        self._cost: list[int] = []

    @property
    def nb_vertices(self) -> int:
        """The number of vertices."""
        return len(self._adj)

    @property
    def nb_edges(self) -> int:
        """The number of edges added (reverse edges not counted)."""
        return len(self._to) // 2

    def add_edge(self, u: int, v: int, cap: int, cost: int = 0) -> int:
        """Adds an edge ``u -> v`` with capacity ``cap`` and cost per unit ``cost``.

        Returns:
            The edge id (even); its reverse edge is ``id ^ 1``.

        Raises:
            ValueError: on a loop or a negative capacity.
        """
        if u == v:
            raise ValueError("a flow graph has no loops")
        if cap < 0:
            raise ValueError(f"capacity must be >= 0, got {cap}")
        e = len(self._to)
        self._to += (v, u)
        self._res += (cap, 0)
        self._cap += (cap, 0)
        self._cost += (cost, -cost)
        self._adj[u].append(e)
        self._adj[v].append(e + 1)
        return e

    def set_capacity(self, e: int, cap: int) -> None:
        """Changes the capacity of forward edge ``e``; its flow must fit in it.

        Raises:
            ValueError: when ``e`` is a reverse edge or the current flow exceeds ``cap``.
        """
        if e & 1:
            raise ValueError("only forward edges have a capacity to set")
        flow = self._cap[e] - self._res[e]
        if flow > cap:
            raise ValueError(f"edge {e} carries {flow}, more than the new capacity {cap}")
        self._cap[e] = cap
        self._res[e] = cap - flow

    def reset_flow(self) -> None:
        """Sets the flow of every edge back to 0."""
        self._res = self._cap.copy()

    def flow(self, e: int) -> int:
        """The flow on forward edge ``e``."""
        return self._cap[e] - self._res[e]

    def head(self, e: int) -> int:
        """The vertex edge ``e`` points to."""
        return self._to[e]

    def out_edges(self, u: int) -> list[int]:
        """The forward edges leaving ``u``, in insertion order."""
        return [e for e in self._adj[u] if not e & 1]

    def flow_value(self, source: int) -> int:
        """The net flow leaving ``source``."""
        return sum(self._cap[e] - self._res[e] for e in self._adj[source] if not e & 1) - sum(
            self._res[e] for e in self._adj[source] if e & 1
        )

    def cost(self) -> int:
        """The total cost of the current flow."""
        return sum(
            (self._cap[e] - self._res[e]) * self._cost[e] for e in range(0, len(self._to), 2)
        )

    # ------------------------------------------------------------------ max flow

    def max_flow(self, source: int, sink: int) -> int:
        """Augments the current flow to a maximum flow (Dinic's algorithm).

        Returns:
            The amount of flow added by this call.
        """
        return self._dinic(source, sink, None)

    def _dinic(self, source: int, sink: int, admissible: bytearray | None) -> int:
        total = 0
        while True:
            level = self._levels(source, sink, admissible)
            if level[sink] < 0:
                return total
            next_edge = [0] * len(self._adj)
            while (pushed := self._augment(source, sink, level, next_edge, admissible)) > 0:
                total += pushed

    def _levels(self, source: int, sink: int, admissible: bytearray | None) -> list[int]:
        adj, to, res = self._adj, self._to, self._res
        level = [-1] * len(adj)
        level[source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            lv = level[u] + 1
            for e in adj[u]:
                v = to[e]
                if level[v] < 0 and res[e] > 0 and (admissible is None or admissible[e]):
                    level[v] = lv
                    if v == sink:
                        # Vertices further than the sink cannot be on a shortest path.
                        return level
                    queue.append(v)
        return level

    def _augment(
        self,
        source: int,
        sink: int,
        level: list[int],
        next_edge: list[int],
        admissible: bytearray | None,
    ) -> int:
        """Finds one path in the level graph and pushes its bottleneck; 0 when blocked."""
        adj, to, res = self._adj, self._to, self._res
        sink_level = level[sink]
        path: list[int] = []
        u = source
        while True:
            if u == sink:
                pushed = min(res[e] for e in path)
                for e in path:
                    res[e] -= pushed
                    res[e ^ 1] += pushed
                return pushed
            edges = adj[u]
            i = next_edge[u]
            lv = level[u] + 1
            while i < len(edges):
                e = edges[i]
                v = to[e]
                if (
                    res[e] > 0
                    and level[v] == lv
                    and (lv < sink_level or v == sink)
                    and (admissible is None or admissible[e])
                ):
                    break
                i += 1
            next_edge[u] = i
            if i < len(edges):
                path.append(e)
                u = v
                continue
            # Dead end: no path to the sink through u in this level graph.
            if not path:
                return 0
            level[u] = -1
            e = path.pop()
            u = to[e ^ 1]
            next_edge[u] += 1

    # ------------------------------------------------------------------ min-cost flow

    def min_cost_max_flow(self, source: int, sink: int) -> int:
        """Computes a maximum flow of minimum total cost (primal-dual method).

        Must start from the zero flow, with non-negative costs on forward edges (then the
        residual graph has no negative cycle and Dijkstra applies).

        Returns:
            The value of the flow.

        Raises:
            ValueError: when the graph already carries flow or has a negative cost.
        """
        if self._res != self._cap:
            raise ValueError("min_cost_max_flow starts from the zero flow")
        if any(c < 0 for c in self._cost[0::2]):
            raise ValueError("min_cost_max_flow needs non-negative costs")
        adj, to, res, cost = self._adj, self._to, self._res, self._cost
        nb_edges = len(to)
        potential = [0] * len(adj)
        total = 0
        while True:
            dist = self._dijkstra(source, potential)
            if dist[sink] >= _INF:
                return total
            for v, d in enumerate(dist):
                if d < _INF:
                    potential[v] += d
            # Edges of reduced cost 0 are exactly those on some shortest path; vertices
            # unreachable now stay unreachable (new residual edges only appear along
            # augmenting paths), so their stale potentials never matter.
            admissible = bytearray(nb_edges)
            for e in range(nb_edges):
                if res[e] > 0 and cost[e] + potential[to[e ^ 1]] == potential[to[e]]:
                    admissible[e] = 1
            total += self._dinic(source, sink, admissible)

    def _dijkstra(self, source: int, potential: list[int]) -> list[int]:
        adj, to, res, cost = self._adj, self._to, self._res, self._cost
        dist = [_INF] * len(adj)
        dist[source] = 0
        heap = [(0, source)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            base = d + potential[u]
            for e in adj[u]:
                if res[e] > 0:
                    v = to[e]
                    nd = base + cost[e] - potential[v]
                    if nd < dist[v]:
                        dist[v] = nd
                        heapq.heappush(heap, (nd, v))
        return dist

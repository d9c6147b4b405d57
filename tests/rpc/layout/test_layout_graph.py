"""The flow algorithms of the layout, checked against networkx on random small graphs."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garage_rpc.layout._graph import FlowGraph, SeededShuffle

Edge = tuple[int, int, int, int]  # (u, v, capacity, cost)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, list[Edge]]:
    """Small graphs (no loops, no parallel edges) from vertex 0 (source) to 1 (sink)."""
    n = draw(st.integers(min_value=2, max_value=8))
    pairs = [(u, v) for u in range(n) for v in range(n) if u != v]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=20))
    edges = [
        (u, v, draw(st.integers(min_value=0, max_value=4)), draw(st.integers(0, 3)))
        for u, v in chosen
    ]
    return n, edges


def _networkx(n: int, edges: list[Edge]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    for u, v, cap, cost in edges:
        g.add_edge(u, v, capacity=cap, weight=cost)
    return g


def _ours(n: int, edges: list[Edge]) -> FlowGraph:
    g = FlowGraph(n)
    for u, v, cap, cost in edges:
        g.add_edge(u, v, cap, cost)
    return g


@given(graphs())
def test_max_flow_matches_networkx(graph: tuple[int, list[Edge]]) -> None:
    n, edges = graph
    ours = _ours(n, edges)
    value = ours.max_flow(0, 1)
    assert value == nx.maximum_flow_value(_networkx(n, edges), 0, 1)
    assert ours.flow_value(0) == value
    assert ours.max_flow(0, 1) == 0  # already maximal


@settings(max_examples=60)
@given(graphs())
def test_min_cost_max_flow_matches_networkx(graph: tuple[int, list[Edge]]) -> None:
    n, edges = graph
    ours = _ours(n, edges)
    value = ours.min_cost_max_flow(0, 1)
    reference = _networkx(n, edges)
    flow = nx.max_flow_min_cost(reference, 0, 1)
    assert value == nx.maximum_flow_value(reference, 0, 1)
    assert ours.cost() == nx.cost_of_flow(reference, flow)


def test_flow_continues_after_adding_edges() -> None:
    g = FlowGraph(4)
    g.add_edge(0, 2, 2)
    g.add_edge(2, 1, 1)
    assert g.max_flow(0, 1) == 1
    g.add_edge(2, 3, 5)
    g.add_edge(3, 1, 5)
    assert g.max_flow(0, 1) == 1
    assert g.flow_value(0) == 2


def test_capacities_can_be_changed_and_flows_reset() -> None:
    g = FlowGraph(2)
    e = g.add_edge(0, 1, 3)
    assert g.max_flow(0, 1) == 3
    with pytest.raises(ValueError, match="more than the new capacity"):
        g.set_capacity(e, 2)
    with pytest.raises(ValueError, match="forward edges"):
        g.set_capacity(e ^ 1, 2)
    g.reset_flow()
    g.set_capacity(e, 2)
    assert g.max_flow(0, 1) == 2
    assert g.out_edges(0) == [e]
    assert g.head(e) == 1
    assert (g.nb_vertices, g.nb_edges) == (2, 1)


def test_invalid_graphs_are_refused() -> None:
    g = FlowGraph(3)
    with pytest.raises(ValueError, match="no loops"):
        g.add_edge(1, 1, 1)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        g.add_edge(0, 1, -1)
    g.add_edge(0, 1, 1, -1)
    with pytest.raises(ValueError, match="non-negative costs"):
        g.min_cost_max_flow(0, 1)
    h = FlowGraph(2)
    h.add_edge(0, 1, 1)
    h.max_flow(0, 1)
    with pytest.raises(ValueError, match="zero flow"):
        h.min_cost_max_flow(0, 1)


def test_seeded_shuffle_is_deterministic_and_a_permutation() -> None:
    a = SeededShuffle(42).shuffled(range(100))
    b = SeededShuffle(42).shuffled(range(100))
    assert a == b
    assert sorted(a) == list(range(100))
    assert a != list(range(100))
    assert SeededShuffle(43).shuffled(range(100)) != a

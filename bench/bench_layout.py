"""Benchmark: computing the cluster layout's partition assignment.

For clusters of 5, 20 and 50 storage nodes over 5 zones (unequal capacities of 1-4 TB,
replication factor 3, zone redundancy "maximum"): the time to compute a first assignment,
the time to recompute it after adding one node (the min-cost flow that minimises data
movement), and how many partition replicas that move copies compared with the new node's
share, which is the minimum. Run it with ``uv run nox -s bench -- bench_layout``.
"""

from __future__ import annotations

import time

from garage_rpc.layout import LayoutHistory, NodeRole
from garage_util.data import Uuid, blake2sum

Row = tuple[str, str, float, str]

SIZES = (5, 20, 50)
TB = 10**12


def _node(i: int) -> Uuid:
    return blake2sum(f"bench node {i}".encode())


def _role(i: int) -> NodeRole:
    return NodeRole(f"dc{i % 5}", (1 + i % 4) * TB)


def _staged(n: int) -> LayoutHistory:
    h = LayoutHistory.new(3)
    for i in range(n):
        h = h.stage_role(_node(i), _role(i), 1_000)
    return h


def _best_ms(h: LayoutHistory, repeat: int) -> tuple[float, LayoutHistory, int, int]:
    """Best time of ``repeat`` applies, the new history, moved replicas, last node's share."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        new, summary = h.apply_staged_changes(h.current.version + 1, 2_000)
        best = min(best, time.perf_counter() - start)
    share = summary.nodes[-1].partitions if summary.nodes else 0
    return best * 1000, new, summary.moved_replicas, share


def run(quick: bool) -> list[Row]:
    """Assignment times (ms) and replicas moved when a node joins, per cluster size."""
    repeat = 1 if quick else 3
    rows: list[Row] = []
    for n in SIZES:
        first_ms, h1, _, _ = _best_ms(_staged(n), repeat)
        rows.append(("layout: first assignment", f"{n} nodes", first_ms, "ms"))
        joined = h1.stage_role(_node(n), _role(n), 3_000)
        add_ms, h2, moved, _ = _best_ms(joined, repeat)
        share = h2.current.get_node_usage(_node(n))
        rows.append(("layout: add a node", f"{n} nodes", add_ms, "ms"))
        rows.append(("layout: replicas moved (add)", f"{n} nodes", float(moved), "replicas"))
        rows.append(("layout: new node's share", f"{n} nodes", float(share), "replicas"))
    return rows


if __name__ == "__main__":
    for row in run(quick=False):
        print(*row)

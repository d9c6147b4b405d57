"""Partition shapes (Jepsen's *grudges*) and the nftables ruleset that enforces one.

A grudge is a set of directed links ``(src, dst)`` between node numbers: packets from
``src``'s address to ``dst``'s are dropped. A symmetric cut holds both directions. The shapes
(fault-testing.md §3.2, after Jepsen's ``jepsen.nemesis``):

- ``isolate``: one node cut off from all the others;
- ``halves``: a random minority and majority, cut from each other;
- ``ring``: majorities ring: each node sees a majority of the cluster (itself included)
  but no two nodes see the same majority (directed cuts on a shuffled ring);
- ``bridge``: two halves joined by one node that sees both;
- ``oneway``: one node receives nothing from the others but can still send to them.

:func:`nft_ruleset` renders a grudge as the whole ``inet gtest`` table (regenerated on
each change, never patched), with a counter on each rule: the dropped packets prove that
nodes tried to talk across the partition (Garage's d7ab2c63 lesson: a nemesis that does
nothing must not pass as a passed test). Pure: no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Collection, Sequence

__all__ = ["GRUDGES", "NFT_TABLE", "Grudge", "grudge", "nft_ruleset", "visible"]

#: The table every partition rule lives in (its own: heal is flushing it).
NFT_TABLE: Final = "inet gtest"

Grudge = frozenset[tuple[int, int]]

#: The shapes :func:`grudge` knows.
GRUDGES: Final = ("isolate", "halves", "ring", "bridge", "oneway")


def _both(a: Collection[int], b: Collection[int]) -> Grudge:
    return frozenset({(x, y) for x in a for y in b} | {(y, x) for x in a for y in b})


def grudge(kind: str, nodes: Sequence[int], rng: random.Random) -> Grudge:
    """A random grudge of shape ``kind`` over ``nodes`` (at least 3: with 2, a majority
    is both nodes and the shapes collapse).

    Raises:
        ValueError: an unknown kind, or fewer than 3 nodes.
    """
    if len(nodes) < 3:
        raise ValueError("partition shapes need at least 3 nodes")
    order = list(nodes)
    rng.shuffle(order)
    n = len(order)
    if kind == "isolate":
        return _both(order[:1], order[1:])
    if kind == "halves":
        return _both(order[: n // 2], order[n // 2 :])
    if kind == "ring":
        # Node i hears from the window of m = n // 2 + 1 nodes starting at itself.
        m = n // 2 + 1
        cut: set[tuple[int, int]] = set()
        for i, dst in enumerate(order):
            hears = {order[(i + k) % n] for k in range(m)}
            cut |= {(src, dst) for src in order if src not in hears}
        return frozenset(cut)
    if kind == "bridge":
        # order[(n - 1) // 2] is the bridge: in neither half, it hears and reaches both.
        return _both(order[: (n - 1) // 2], order[(n + 1) // 2 :])
    if kind == "oneway":
        victim = order[0]
        return frozenset((src, victim) for src in order[1:])
    raise ValueError(f"unknown partition kind {kind!r}: one of {', '.join(GRUDGES)}")


def visible(g: Grudge, nodes: Sequence[int], dst: int) -> set[int]:
    """The nodes ``dst`` still hears from under ``g`` (itself included)."""
    return {src for src in nodes if (src, dst) not in g}


def nft_ruleset(g: Grudge, host: Callable[[int], str]) -> str:
    """The ``nft -f`` script that replaces the ``gtest`` table with ``g``'s rules.

    Args:
        g: the links to cut.
        host: a node number's IP address.
    """
    rules = "".join(
        f"    ip saddr {host(src)} ip daddr {host(dst)} counter drop\n" for src, dst in sorted(g)
    )
    return (
        f"table {NFT_TABLE}\n"
        f"delete table {NFT_TABLE}\n"
        f"table {NFT_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"{rules}"
        "  }\n"
        "}\n"
    )

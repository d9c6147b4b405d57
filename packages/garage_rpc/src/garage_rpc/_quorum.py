"""Quorum bookkeeping and request ordering: the pure core of the RPC helper.

Garage: src/rpc/rpc_helper.rs (``QuorumSetResultTracker``, ``request_order``). Kept apart
from sending (STYLE §5): the async helper feeds results in and asks what to do next.

A *write set* is the list of nodes that hold a partition in one live layout version. While
a layout change is in progress there are several, and a write is acknowledged only when
**every** set has at least ``quorum`` successes; it has failed as soon as one set has more
than ``len(set) - quorum`` failures, since that set can no longer reach its quorum. A node
in several sets counts in each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from garage_util.data import FixedBytes32

__all__ = ["UNKNOWN_RTT_S", "QuorumError", "QuorumSetResultTracker", "request_order"]

R = TypeVar("R")

#: Round-trip time assumed for a peer never pinged: Garage's 10 s puts it after every
#: measured peer while keeping a deterministic order among unknowns.
UNKNOWN_RTT_S: Final = 10.0

#: At most this many distinct error messages are quoted in a QuorumError, so that a
#: cluster-wide failure gives a readable message.
_MAX_ERRORS_SHOWN: Final = 5


class QuorumError(GarageError):
    """Raised when too few nodes answered successfully for a quorum.

    Attributes:
        quorum: successes needed (in each set, for a write to several sets).
        n_sets: number of write sets (1 for a plain quorum call).
        successes: successful answers received (in the worst set).
        total: nodes that were asked (in the worst set).
        errors: ``(node, error message)`` of the failed calls.
    """

    def __init__(
        self,
        quorum: int,
        n_sets: int,
        successes: int,
        total: int,
        errors: Sequence[tuple[FixedBytes32, str]],
    ) -> None:
        self.quorum = quorum
        self.n_sets = n_sets
        self.successes = successes
        self.total = total
        self.errors = tuple(errors)
        shown = "; ".join(f"{node.short_hex()}: {msg}" for node, msg in errors[:_MAX_ERRORS_SHOWN])
        more = (
            f" (+{len(errors) - _MAX_ERRORS_SHOWN} more)" if len(errors) > _MAX_ERRORS_SHOWN else ""
        )
        where = f" in each of {n_sets} sets" if n_sets > 1 else ""
        super().__init__(
            f"quorum not reached: {successes} of {quorum} needed successes{where} "
            f"({total} nodes asked, {len(errors)} failed){': ' if errors else ''}{shown}{more}"
        )


@final
class QuorumSetResultTracker(Generic[R]):
    """Counts the results of a request sent to one or several sets of nodes.

    Args:
        sets: the node sets (each without duplicates); a node may appear in several.
        quorum: successes needed in every set.

    Raises:
        ValueError: when a set is smaller than the quorum (success would be impossible).
    """

    __slots__ = ("_errors", "_nodes", "_quorum", "_set_failed", "_set_ok", "_sets", "_successes")

    def __init__(self, sets: Sequence[Sequence[FixedBytes32]], quorum: int) -> None:
        if quorum < 1:
            raise ValueError(f"quorum must be >= 1, got {quorum}")
        if not sets:
            raise ValueError("at least one node set is needed")
        for s in sets:
            if len(s) < quorum:
                raise ValueError(f"a set of {len(s)} nodes cannot reach a quorum of {quorum}")
        self._sets = [tuple(s) for s in sets]
        self._quorum = quorum
        self._nodes = tuple(dict.fromkeys(n for s in self._sets for n in s))
        self._successes: dict[FixedBytes32, R] = {}
        self._errors: dict[FixedBytes32, str] = {}
        self._set_ok = [0] * len(self._sets)
        self._set_failed = [0] * len(self._sets)

    @property
    def nodes(self) -> tuple[FixedBytes32, ...]:
        """Every distinct node of every set, in first-seen order."""
        return self._nodes

    def register_ok(self, node: FixedBytes32, value: R) -> None:
        """Records a successful answer of ``node`` (each node answers once)."""
        self._check_new(node)
        self._successes[node] = value
        for i, s in enumerate(self._sets):
            if node in s:
                self._set_ok[i] += 1

    def register_err(self, node: FixedBytes32, error: str) -> None:
        """Records a failed call to ``node``."""
        self._check_new(node)
        self._errors[node] = error
        for i, s in enumerate(self._sets):
            if node in s:
                self._set_failed[i] += 1

    def all_quorums_ok(self) -> bool:
        """True when every set has at least ``quorum`` successes."""
        return all(ok >= self._quorum for ok in self._set_ok)

    def too_many_failures(self) -> bool:
        """True when some set can no longer reach its quorum."""
        return any(
            failed > len(s) - self._quorum
            for s, failed in zip(self._sets, self._set_failed, strict=True)
        )

    def is_finished(self) -> bool:
        """True when the outcome is decided (success or impossible)."""
        return self.all_quorums_ok() or self.too_many_failures()

    def success_values(self) -> list[R]:
        """The successful answers, in the order the nodes were registered."""
        return list(self._successes.values())

    def quorum_error(self) -> QuorumError:
        """The error describing the worst set (fewest successes)."""
        worst = min(range(len(self._sets)), key=lambda i: self._set_ok[i])
        return QuorumError(
            quorum=self._quorum,
            n_sets=len(self._sets),
            successes=self._set_ok[worst],
            total=len(self._sets[worst]),
            errors=list(self._errors.items()),
        )

    def _check_new(self, node: FixedBytes32) -> None:
        if node not in self._nodes:
            raise ValueError(f"{node!r} is in no set of this request")
        if node in self._successes or node in self._errors:
            raise ValueError(f"{node!r} answered twice")


def request_order(
    nodes: Sequence[FixedBytes32],
    *,
    our_id: FixedBytes32,
    zone_of: Mapping[FixedBytes32, str] | Callable[[FixedBytes32], str | None],
    rtt_of: Mapping[FixedBytes32, float] | Callable[[FixedBytes32], float | None],
) -> list[FixedBytes32]:
    """Orders ``nodes`` for a quorum call: ourself, then our zone, then lowest round trip.

    Ties are broken by node id, so that the order is deterministic.

    Args:
        nodes: candidate nodes (duplicates are dropped).
        our_id: this node.
        zone_of: the zone of a node (unknown → treated as another zone).
        rtt_of: the average ping of a node in seconds (unknown → ``UNKNOWN_RTT_S``).
    """
    zone = zone_of.get if isinstance(zone_of, Mapping) else zone_of
    rtt = rtt_of.get if isinstance(rtt_of, Mapping) else rtt_of
    our_zone = zone(our_id)

    def key(node: FixedBytes32) -> tuple[bool, bool, float, bytes]:
        node_rtt = rtt(node)
        return (
            node != our_id,
            our_zone is None or zone(node) != our_zone,
            UNKNOWN_RTT_S if node_rtt is None else node_rtt,
            bytes(node),
        )

    return sorted(dict.fromkeys(nodes), key=key)

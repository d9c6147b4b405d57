"""Roles, parameters, partitions and the staged changes of the cluster layout.

Garage: src/rpc/layout/mod.rs (types), src/rpc/layout/history.rs (staging). Theory of
operation:

**Partitions.** The hash space is cut into ``NB_PARTITIONS`` = 256 partitions by the
first ``PARTITION_BITS`` = 8 bits of a hash. Every piece of data (a table entry by its
partition key hash, a block by its content hash) lives on the nodes that the layout
assigns to its partition. Partition ``p`` covers the hashes whose first byte is ``p``.

**Roles.** An operator gives each node a :class:`NodeRole`: a zone (a failure domain, e.g.
a datacenter), a capacity in bytes, and free-form tags. A role without capacity is a
*gateway*: it handles API requests but stores no partition. :class:`NodeRoleV` wraps a role
or ``None``; ``None`` in a staged change means "remove this node from the layout".

**Staging.** Role and parameter changes are not applied one by one: they are *staged* in a
:class:`LayoutStaging`, reviewed (``garage layout show``), then applied all at once as a
new layout version. Staging is a CRDT (an LWW register of parameters and an LWW map of
roles), so operators editing it through different nodes converge. Mutators take the time
(``now_ms``) as an argument and return new values; nothing here reads a clock.

Invariants:
    - A :class:`NodeRole`'s capacity is ``None`` (gateway) or an integer ``>= 0``.
      Capacity 0 is representable (it can arrive through a merge) but a layout that gives
      a node capacity 0 is refused when applied.
    - ``zone_redundancy`` is ``"maximum"`` or an integer ``>= 1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from garage_util.crdt import CrdtStruct, Lww, LwwMap
from garage_util.data import HASH_LEN, FixedBytes32, Hash, Uuid

__all__ = [
    "MAX_NODE_NUMBER",
    "NB_PARTITIONS",
    "PARTITION_BITS",
    "LayoutParameters",
    "LayoutStaging",
    "NodeRole",
    "NodeRoleV",
    "ZoneRedundancy",
    "partition_first_hash",
    "partition_of",
]

#: Bits of a hash that select its partition. 8 bits (256 partitions) is Garage's value: it
#: spreads data evenly over up to a few dozen nodes while keeping the ring (256 * rf node
#: indices) small enough to be sent with every layout update.
PARTITION_BITS: Final = 8

#: The number of partitions, ``2 ** PARTITION_BITS``.
NB_PARTITIONS: Final = 1 << PARTITION_BITS

#: Storage nodes are numbered on one byte in the ring (Garage's ``CompactNodeType = u8``),
#: so a layout has at most 256 of them. Gateways are not limited.
MAX_NODE_NUMBER: Final = 256

#: Zone redundancy: the minimum number of distinct zones that hold each partition, or
#: ``"maximum"`` for as many as possible, ``min(number of zones, replication factor)``.
ZoneRedundancy: TypeAlias = int | Literal["maximum"]

_MAXIMUM: Final = "maximum"


def partition_of(position: Hash | bytes) -> int:
    """The partition of a hash: its top ``PARTITION_BITS`` bits (its first byte).

    Raises:
        ValueError: when ``position`` is shorter than 2 bytes.
    """
    if len(position) < 2:
        raise ValueError("a hash has at least 2 bytes")
    return int.from_bytes(position[:2], "big") >> (16 - PARTITION_BITS)


def partition_first_hash(partition: int) -> Hash:
    """The smallest hash that falls in ``partition`` (its first bits, then zeros).

    Raises:
        ValueError: when ``partition`` is not in ``range(NB_PARTITIONS)``.
    """
    if not 0 <= partition < NB_PARTITIONS:
        raise ValueError(f"partition must be in 0..{NB_PARTITIONS - 1}, got {partition}")
    top = partition << (16 - PARTITION_BITS)
    return FixedBytes32(top.to_bytes(2, "big") + bytes(HASH_LEN - 2))


@dataclass(frozen=True, slots=True)
class LayoutParameters:
    """The parameters of the assignment algorithm, chosen by the operator.

    Attributes:
        zone_redundancy: the minimum number of zones each partition is spread over (an
            integer ``>= 1``), or ``"maximum"`` (the default) for
            ``min(number of zones, replication factor)``.

    Raises:
        ValueError: when ``zone_redundancy`` is neither ``"maximum"`` nor an int ``>= 1``.
    """

    zone_redundancy: ZoneRedundancy = _MAXIMUM

    def __post_init__(self) -> None:
        zr = self.zone_redundancy
        if zr == _MAXIMUM:
            return
        if type(zr) is not int or zr < 1:
            raise ValueError(f"zone_redundancy must be 'maximum' or an integer >= 1, got {zr!r}")

    def effective_zone_redundancy(self, nb_zones: int, replication_factor: int) -> int:
        """The zone redundancy the assignment enforces, for a cluster with ``nb_zones``
        zones holding storage nodes.

        ``"maximum"`` resolves to ``min(nb_zones, replication_factor)``; an integer is
        returned as is (the assignment refuses it if it exceeds either bound).
        """
        if self.zone_redundancy == _MAXIMUM:
            return min(nb_zones, replication_factor)
        return int(self.zone_redundancy)

    def __to_wire__(self) -> object:
        # A custom encoding, because the field is a union of int and str, which the
        # generic decoder (only `X | None` unions) does not take.
        return {"zone_redundancy": self.zone_redundancy}

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> LayoutParameters:
        del type_args  # not generic
        if type(obj) is not dict or set(obj) != {"zone_redundancy"}:
            raise ValueError("expected a map with exactly the key 'zone_redundancy'")
        zr = obj["zone_redundancy"]
        if zr != _MAXIMUM and type(zr) is not int:
            raise ValueError(f"zone_redundancy must be 'maximum' or an integer, got {zr!r}")
        return cls(zr)


@dataclass(frozen=True, slots=True)
class NodeRole:
    """The role an operator gives a node (``garage layout assign``).

    Attributes:
        zone: the failure domain of the node (a datacenter, a rack...). Partitions are
            spread over distinct zones first.
        capacity: the bytes this node offers, or ``None`` for a gateway, which stores no
            partition and only serves requests.
        tags: free-form labels, shown by ``garage status``.

    Raises:
        ValueError: when ``capacity`` is negative or not an integer.
    """

    zone: str
    capacity: int | None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        cap = self.capacity
        if cap is not None and (type(cap) is not int or cap < 0):
            raise ValueError(f"capacity must be None (gateway) or an integer >= 0, got {cap!r}")

    @property
    def is_gateway(self) -> bool:
        """True for a gateway (no capacity): it stores no partition."""
        return self.capacity is None


@dataclass(frozen=True, slots=True)
class NodeRoleV:
    """A role or its absence, as stored in the layout's LWW map of roles.

    ``role is None`` in staged changes means "remove the node"; removed nodes are dropped
    from the roles of the next layout version.
    """

    role: NodeRole | None = None


@dataclass(frozen=True, slots=True)
class LayoutStaging(CrdtStruct):
    """Role and parameter changes staged for the next layout version.

    A CRDT: merging is field by field (LWW register, LWW map), so edits made through
    different nodes converge. Values are immutable; the ``with_*`` methods return new
    values.

    Attributes:
        parameters: the parameters the next version will use.
        roles: the staged role changes, by node id (``NodeRoleV(None)`` = removal).
    """

    parameters: Lww[LayoutParameters]
    roles: LwwMap[Uuid, NodeRoleV]

    @classmethod
    def empty(cls, parameters: LayoutParameters, ts: int = 0) -> LayoutStaging:
        """Staging with no role change, and ``parameters`` written at ``ts``."""
        return cls(Lww(ts, parameters), LwwMap())

    def with_role(
        self,
        node: Uuid,
        role: NodeRole | None,
        now_ms: int,
        *,
        current_roles: LwwMap[Uuid, NodeRoleV] | None = None,
    ) -> LayoutStaging:
        """Stages ``role`` for ``node`` (``None``: stage its removal).

        Args:
            node: the node id.
            role: its new role, or None to remove it from the layout.
            now_ms: the current time, for the LWW timestamp.
            current_roles: the roles of the current layout version. The staged entry gets
                a timestamp newer than the node's entry there, so that applying merges it
                over the current role even if this node's clock lags the one that wrote it.
        """
        base = self.roles if current_roles is None else current_roles.merge(self.roles)
        mutator = base.update_mutator(node, NodeRoleV(role), now_ms)
        return dataclasses.replace(self, roles=self.roles.merge(mutator))

    def with_parameters(self, parameters: LayoutParameters, now_ms: int) -> LayoutStaging:
        """Stages new assignment parameters."""
        return dataclasses.replace(self, parameters=self.parameters.update(parameters, now_ms))

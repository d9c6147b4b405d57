"""What an assignment computation reports: the numbers and text of ``garage layout show``.

Garage: ``LayoutVersion::output_stat`` in src/rpc/layout/version.rs. After computing a new
assignment, the operator sees the partition size, the usable capacity, how many partition
replicas must be copied to new nodes, and a table per zone of what each node stores. The
numbers are a frozen value (:class:`LayoutSummary`), so that the CLI, the admin API and the
tests read the same figures; :func:`format_summary` renders them as Garage's text.

Definitions (all integers, no floats):
    - usable capacity = ``partition_size * 256 * rf``: what the cluster can store,
      replicas included; effective capacity = ``partition_size * 256``, once per object.
    - a node's usable capacity = ``partitions stored * partition_size``.
    - moved replicas = the (partition, node) pairs of the new assignment absent from the
      previous one: each is a partition copy to transfer. For a first layout, every
      replica is new.
"""

# The annotations below must resolve at runtime (``typing.get_type_hints``, which
# garage_util.encode uses on dataclasses), so the names they use are imported for real.

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from garage_util.data import Uuid

from ._roles import NB_PARTITIONS

__all__ = ["LayoutSummary", "NodeSummary", "ZoneSummary", "format_bytes", "format_summary"]

#: Below this share of the total capacity, Garage explains why capacity is lost
#: (zone constraints forcing the use of small nodes or zones).
_LOW_USAGE_PERMILLE: Final = 800
#: Below 100 bytes, rounding capacities to whole partitions distorts the shares.
_LOW_PARTITION_SIZE: Final = 100
#: Decimal units, as Garage's ``ByteSize::to_string_as(false)``.
_UNITS: Final = ("KB", "MB", "GB", "TB", "PB", "EB")


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """What one storage node stores in a new assignment.

    Attributes:
        id: the node id.
        zone: its zone.
        capacity: its capacity in bytes.
        tags: its tags.
        partitions: the number of partitions it stores.
        new_partitions: how many of them it did not store in the previous layout.
        usable_capacity: ``partitions * partition_size``, in bytes.
    """

    id: Uuid
    zone: str
    capacity: int
    tags: tuple[str, ...]
    partitions: int
    new_partitions: int
    usable_capacity: int


@dataclass(frozen=True, slots=True)
class ZoneSummary:
    """What one zone stores in a new assignment.

    Attributes:
        zone: the zone name.
        nodes: its number of storage nodes.
        partitions: the partition replicas its nodes store in total.
        unique_partitions: the partitions with at least one replica in the zone.
        capacity: the total capacity of its nodes, in bytes.
        usable_capacity: ``partitions * partition_size``, in bytes.
    """

    zone: str
    nodes: int
    partitions: int
    unique_partitions: int
    capacity: int
    usable_capacity: int


@dataclass(frozen=True, slots=True)
class LayoutSummary:
    """The statistics of an assignment computation (``garage layout show``/``apply``).

    Attributes:
        version: the number of the new layout version.
        replication_factor: replicas per partition.
        zone_redundancy: the effective zone redundancy enforced.
        partition_size: the optimal partition size, in bytes.
        previous_partition_size: the previous version's partition size, or None when the
            previous version had no assignment (first layout).
        total_capacity: the sum of the storage nodes' capacities, in bytes.
        moved_replicas: partition replicas to copy to a node that did not hold them.
        nodes: per storage node, in node id order.
        zones: per zone, in zone name order.
    """

    version: int
    replication_factor: int
    zone_redundancy: int
    partition_size: int
    previous_partition_size: int | None
    total_capacity: int
    moved_replicas: int
    nodes: tuple[NodeSummary, ...]
    zones: tuple[ZoneSummary, ...]

    @property
    def usable_capacity(self) -> int:
        """What the cluster can store, replicas included: ``partition_size * 256 * rf``."""
        return self.partition_size * NB_PARTITIONS * self.replication_factor

    @property
    def effective_capacity(self) -> int:
        """What the cluster can store once per object: ``partition_size * 256``."""
        return self.partition_size * NB_PARTITIONS

    def node(self, node_id: Uuid) -> NodeSummary:
        """The line of one storage node.

        Raises:
            KeyError: when ``node_id`` is not a storage node of this layout.
        """
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


def format_bytes(size: int) -> str:
    """A size in decimal units with one decimal, as Garage prints them (``"1.5 TB"``)."""
    if size < 1000:
        return f"{size} B"
    unit = 1000
    for name in _UNITS:
        tenths = (size * 10 + unit // 2) // unit  # rounded first: 999.96 KB prints 1.0 MB
        if tenths < 10_000 or name == _UNITS[-1]:
            return f"{tenths // 10}.{tenths % 10} {name}"
        unit *= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _percent(part: int, whole: int) -> str:
    if whole == 0:
        return "n/a"
    permille = (part * 1000 + whole // 2) // whole
    return f"{permille // 10}.{permille % 10}%"


def _table(rows: list[list[str]]) -> list[str]:
    """Aligns tab-separated cells in columns, as Garage's ``format_table`` does."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]


def format_summary(summary: LayoutSummary) -> str:
    """Renders ``summary`` as the text ``garage layout show`` prints for a new assignment."""
    s = summary
    lines = [
        "==== COMPUTATION OF A NEW PARTITION ASSIGNATION ====",
        "",
        f"Partitions are replicated {s.replication_factor} times on at least "
        f"{s.zone_redundancy} distinct zones.",
        "",
    ]
    size = format_bytes(s.partition_size)
    if s.previous_partition_size is not None:
        size += f" ({format_bytes(s.previous_partition_size)} in previous layout)"
    lines.append(f"Optimal partition size:                     {size}")
    if s.partition_size < _LOW_PARTITION_SIZE:
        lines.append(
            "WARNING: The partition size is low (< 100), make sure the capacities of your "
            "nodes are correct and are of at least a few MB"
        )
    lines += [
        f"Usable capacity / total cluster capacity:   {format_bytes(s.usable_capacity)} / "
        f"{format_bytes(s.total_capacity)} ({_percent(s.usable_capacity, s.total_capacity)})",
        f"Effective capacity (replication factor {s.replication_factor}):  "
        f"{format_bytes(s.effective_capacity)}",
    ]
    if s.usable_capacity * 1000 < _LOW_USAGE_PERMILLE * s.total_capacity:
        lines += [
            "",
            "If the percentage is too low, it might be that the cluster topology and "
            "redundancy constraints are forcing the use of nodes/zones with small storage "
            "capacities.",
            "You might want to move storage capacity between zones or relax the redundancy "
            "constraint.",
            "See the detailed statistics below and look for saturated nodes/zones.",
        ]
    lines.append("")
    if s.previous_partition_size is not None:
        lines += [
            f"A total of {s.moved_replicas} new copies of partitions need to be transferred.",
            "",
        ]
    rows: list[list[str]] = []
    for zone in s.zones:
        rows.append([zone.zone, "Tags", "Partitions", "Capacity", "Usable capacity"])
        rows.extend(
            [
                f"  {node.id.short_hex()}",
                ",".join(node.tags),
                f"{node.partitions} ({node.new_partitions} new)",
                format_bytes(node.capacity),
                f"{format_bytes(node.usable_capacity)} "
                f"({_percent(node.usable_capacity, node.capacity)})",
            ]
            for node in s.nodes
            if node.zone == zone.zone
        )
        rows.append(
            [
                "  TOTAL",
                "",
                f"{zone.partitions} ({zone.unique_partitions} unique)",
                format_bytes(zone.capacity),
                f"{format_bytes(zone.usable_capacity)} "
                f"({_percent(zone.usable_capacity, zone.capacity)})",
            ]
        )
        rows.append([""])
    lines += _table(rows) if rows else []
    return "\n".join(lines).rstrip() + "\n"

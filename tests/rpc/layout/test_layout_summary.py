"""The report of ``garage layout show``: numbers and text."""

from __future__ import annotations

import pytest

from garage_rpc.layout import (
    NB_PARTITIONS,
    LayoutHistory,
    LayoutParameters,
    NodeRole,
    format_bytes,
    format_summary,
)
from garage_util.data import Uuid, blake2sum

TB = 10**12


def node_id(i: int) -> Uuid:
    return blake2sum(f"node {i}".encode())


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1_500, "1.5 KB"),
        (999_960, "1.0 MB"),
        (5_208_333_333, "5.2 GB"),
        (1_500 * TB, "1.5 PB"),
        (10**24, "1000000.0 EB"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_summary_of_a_first_layout_and_a_change() -> None:
    h = LayoutHistory.new(2)
    caps = [1 * TB, 1 * TB, 2 * TB, None]
    for i, cap in enumerate(caps):
        h = h.stage_role(node_id(i), NodeRole(f"dc{i % 2}", cap, (f"t{i}",)), 1_000)
    h1, first = h.apply_staged_changes(1, 2_000)
    assert first.previous_partition_size is None
    assert first.moved_replicas == NB_PARTITIONS * 2
    assert first.total_capacity == 4 * TB
    assert first.usable_capacity == first.partition_size * NB_PARTITIONS * 2
    assert first.effective_capacity == first.partition_size * NB_PARTITIONS
    assert [z.zone for z in first.zones] == ["dc0", "dc1"]
    assert [n.id for n in first.nodes] == list(h1.current.storage_nodes)
    for line in first.nodes:
        assert line.usable_capacity == line.partitions * first.partition_size
        assert line.new_partitions == line.partitions
    dc0 = first.zones[0]
    assert dc0.nodes == 2
    assert dc0.unique_partitions == NB_PARTITIONS  # zone redundancy 2: every partition in both
    assert dc0.partitions == sum(n.partitions for n in first.nodes if n.zone == "dc0")
    with pytest.raises(KeyError):
        first.node(node_id(3))  # the gateway is not a storage node
    text = format_summary(first)
    assert "Partitions are replicated 2 times on at least 2 distinct zones." in text
    assert "new copies" not in text
    assert f"  {node_id(0).short_hex()}  t0" in text
    assert "TOTAL" in text

    h2, change = h1.stage_parameters(LayoutParameters(1), 3_000).apply_staged_changes(2, 4_000)
    assert change.previous_partition_size == first.partition_size
    assert change.zone_redundancy == 1
    assert change.moved_replicas == sum(n.new_partitions for n in change.nodes)
    assert change.node(node_id(2)).partitions >= first.node(node_id(2)).partitions
    text = format_summary(change)
    assert f"A total of {change.moved_replicas} new copies of partitions" in text
    assert "in previous layout" in text
    assert h2.current.version == change.version == 2


def test_summary_warnings() -> None:
    h = LayoutHistory.new(2)
    h = h.stage_role(node_id(0), NodeRole("a", 300), 1)
    h = h.stage_role(node_id(1), NodeRole("b", 10 * TB), 1)
    _, summary = h.stage_parameters(LayoutParameters(2), 1).calculate_next_version()
    text = format_summary(summary)
    assert "WARNING: The partition size is low (< 100)" in text
    assert "If the percentage is too low" in text

"""Cluster health as a pure function of the live layout versions' node sets and up nodes."""

from __future__ import annotations

from garage_rpc.system import HealthStatus, cluster_health
from garage_util.data import FixedBytes32

A, B, C, D = (FixedBytes32(bytes([i]) * 32) for i in range(1, 5))


def test_all_up_is_healthy() -> None:
    h = cluster_health([[(A, B, C)]] * 4, {A, B, C}, write_quorum=2)
    assert h.status is HealthStatus.HEALTHY
    assert (h.partitions, h.partitions_quorum, h.partitions_all_ok) == (4, 4, 4)
    assert h.replicas_up == (3, 3, 3, 3)


def test_a_quorum_everywhere_is_degraded_and_less_is_unavailable() -> None:
    sets = [[(A, B, C)], [(A, B, D)]]
    degraded = cluster_health(sets, {A, B}, write_quorum=2)
    assert degraded.status is HealthStatus.DEGRADED
    assert degraded.replicas_up == (2, 2)
    unavailable = cluster_health(sets, {A, C}, write_quorum=2)
    assert unavailable.status is HealthStatus.UNAVAILABLE
    assert unavailable.partitions_quorum == 1
    assert unavailable.replicas_up == (2, 1)


def test_during_a_transition_every_live_version_needs_its_quorum() -> None:
    # Partition 0 moves from {A, B, C} to {B, C, D}: with A and D down, each set has 2 up.
    both = cluster_health([[(A, B, C), (B, C, D)]], {B, C}, write_quorum=2)
    assert both.status is HealthStatus.DEGRADED
    only_old = cluster_health([[(A, B, C), (B, C, D)]], {A, B}, write_quorum=2)
    assert only_old.status is HealthStatus.UNAVAILABLE  # the new set has only B
    assert only_old.replicas_up == (1,)


def test_no_layout_is_unavailable() -> None:
    assert cluster_health([[()]] * 3, {A}, write_quorum=2).status is HealthStatus.UNAVAILABLE

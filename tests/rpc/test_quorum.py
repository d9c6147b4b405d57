"""The pure quorum core: result tracking over several sets, request ordering, quorums."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_rpc._quorum import UNKNOWN_RTT_S, QuorumSetResultTracker, request_order
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.rpc_helper import QuorumError
from garage_util.config import ConsistencyMode
from garage_util.data import FixedBytes32

NODES = [FixedBytes32(bytes([i]) * 32) for i in range(8)]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[list[FixedBytes32]], int, list[tuple[FixedBytes32, bool]]]:
    quorum = draw(st.integers(1, 3))
    sets = draw(
        st.lists(
            st.lists(st.sampled_from(NODES), min_size=quorum, max_size=5, unique=True),
            min_size=1,
            max_size=3,
        )
    )
    nodes = list(dict.fromkeys(n for s in sets for n in s))
    answered = draw(st.permutations(nodes))
    outcomes = [(n, draw(st.booleans())) for n in answered[: draw(st.integers(0, len(nodes)))]]
    return sets, quorum, outcomes


@given(scenarios())
def test_tracker_matches_a_brute_force_count(
    scenario: tuple[list[list[FixedBytes32]], int, list[tuple[FixedBytes32, bool]]],
) -> None:
    sets, quorum, outcomes = scenario
    tracker: QuorumSetResultTracker[int] = QuorumSetResultTracker(sets, quorum)
    for i, (node, ok) in enumerate(outcomes):
        if ok:
            tracker.register_ok(node, i)
        else:
            tracker.register_err(node, f"boom {i}")
    oks = {n for n, ok in outcomes if ok}
    fails = {n for n, ok in outcomes if not ok}
    expect_ok = all(len(oks & set(s)) >= quorum for s in sets)
    expect_impossible = any(len(fails & set(s)) > len(s) - quorum for s in sets)
    assert tracker.all_quorums_ok() == expect_ok
    assert tracker.too_many_failures() == expect_impossible
    assert not (expect_ok and expect_impossible)
    assert tracker.success_values() == [i for i, (_, ok) in enumerate(outcomes) if ok]
    if expect_impossible:
        err = tracker.quorum_error()
        assert err.quorum == quorum
        assert err.successes < quorum
        assert len(err.errors) == len(fails)


def test_tracker_refuses_impossible_sets_and_double_answers() -> None:
    with pytest.raises(ValueError, match="cannot reach a quorum of 3"):
        QuorumSetResultTracker([NODES[:2]], 3)
    tracker: QuorumSetResultTracker[int] = QuorumSetResultTracker([NODES[:3]], 2)
    tracker.register_ok(NODES[0], 1)
    with pytest.raises(ValueError, match="answered twice"):
        tracker.register_err(NODES[0], "x")
    with pytest.raises(ValueError, match="in no set"):
        tracker.register_ok(NODES[5], 1)


def test_quorum_error_message_says_how_many_of_how_many() -> None:
    err = QuorumError(2, 1, 1, 3, [(NODES[1], "timed out after 5 s"), (NODES[2], "refused")])
    assert "1 of 2 needed successes" in str(err)
    assert "3 nodes asked, 2 failed" in str(err)
    assert NODES[1].short_hex() in str(err)
    assert "timed out" in str(err)
    multi = QuorumError(2, 2, 0, 3, [(n, "down") for n in NODES])
    assert "in each of 2 sets" in str(multi)
    assert "(+3 more)" in str(multi)


def test_request_order_is_self_then_zone_then_rtt_then_id() -> None:
    me, same_zone_slow, same_zone_fast, far_fast, unknown = NODES[:5]
    zones = {me: "paris", same_zone_slow: "paris", same_zone_fast: "paris", far_fast: "berlin"}
    rtts = {same_zone_slow: 0.050, same_zone_fast: 0.002, far_fast: 0.001}
    order = request_order(
        [far_fast, unknown, same_zone_slow, me, same_zone_fast, far_fast],
        our_id=me,
        zone_of=zones,
        rtt_of=rtts,
    )
    assert order == [me, same_zone_fast, same_zone_slow, far_fast, unknown]
    assert max(rtts.values()) < UNKNOWN_RTT_S


@pytest.mark.parametrize(
    ("rf", "mode", "read", "write"),
    [
        (1, ConsistencyMode.CONSISTENT, 1, 1),
        (2, ConsistencyMode.CONSISTENT, 1, 2),
        (3, ConsistencyMode.CONSISTENT, 2, 2),
        (5, ConsistencyMode.CONSISTENT, 3, 3),
        (3, ConsistencyMode.DEGRADED, 1, 2),
        (2, ConsistencyMode.DANGEROUS, 1, 1),
        (3, ConsistencyMode.DANGEROUS, 1, 1),
    ],
)
def test_quorums_follow_garage(rf: int, mode: ConsistencyMode, read: int, write: int) -> None:
    params = ReplicationParams(rf, mode)
    assert (params.read_quorum, params.write_quorum) == (read, write)
    assert params.is_read_after_write_consistent == (mode is ConsistencyMode.CONSISTENT)


def test_replication_factor_must_be_positive() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ReplicationParams(0)

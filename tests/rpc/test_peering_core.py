"""The pure peering state machine, driven with an explicit clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from garage_rpc._peering_core import (
    PING_WINDOW,
    Connect,
    Disconnect,
    PeeringConfig,
    PeeringCore,
    PeerState,
    Ping,
)
from garage_util.data import FixedBytes32

ME, A, B, C = (FixedBytes32(bytes([i]) * 32) for i in range(4))
ADDR_A, ADDR_A2 = ("127.0.0.2", 3901), ("127.0.0.22", 3901)
CFG = PeeringConfig(
    ping_interval_s=15, ping_timeout_s=10, max_failed_pings=4, retry_interval_s=30, max_retries=3
)


def test_a_learned_peer_is_connected_to_and_then_pinged_periodically() -> None:
    core = PeeringCore(ME, CFG)
    core.learn(A, ADDR_A, now=0)
    assert core.tick(0) == [Connect(A, (ADDR_A,))]
    assert core.tick(0.5) == []  # already trying
    core.connected(A, ADDR_A, now=1)
    assert core.tick(1) == [Ping(A)]
    assert core.tick(10) == []
    assert core.tick(16) == [Ping(A)]
    assert core.up_peers() == sorted([ME, A])


def test_failed_connections_back_off_then_give_up_until_a_new_address() -> None:
    core = PeeringCore(ME, CFG)
    core.learn(A, ADDR_A, now=0)
    now = 0.0
    for attempt in range(1, CFG.max_retries):
        assert core.tick(now) == [Connect(A, (ADDR_A,))]
        core.connect_failed(A, now)
        peer = core.get(A)
        assert peer is not None
        assert (peer.state, peer.retries) == (PeerState.WAITING, attempt)
        assert core.tick(now + CFG.retry_interval_s - 1) == []
        now += CFG.retry_interval_s
    assert core.tick(now) == [Connect(A, (ADDR_A,))]
    core.connect_failed(A, now)
    abandoned = core.get(A)
    assert abandoned is not None
    assert abandoned.state is PeerState.ABANDONED
    assert core.tick(now + 1000) == []
    core.learn(A, ADDR_A, now + 1000)  # a known address does not revive it
    assert core.tick(now + 1000) == []
    core.learn(A, ADDR_A2, now + 1000)  # a new one does
    assert core.tick(now + 1000) == [Connect(A, (ADDR_A, ADDR_A2))]


def test_too_many_failed_pings_disconnect_and_the_peer_is_retried() -> None:
    core = PeeringCore(ME, CFG)
    core.connected(B, ("127.0.0.3", 3901), now=0)
    for _ in range(CFG.max_failed_pings):
        assert core.ping_failed(B) == []
    assert core.ping_failed(B) == [Disconnect(B)]
    core.disconnected(B, now=5)
    assert B not in core.up_peers()
    assert core.tick(5 + CFG.retry_interval_s) == [Connect(B, (("127.0.0.3", 3901),))]


def test_a_ping_answer_resets_the_failure_count_and_feeds_the_average() -> None:
    core = PeeringCore(ME, CFG)
    core.connected(A, ADDR_A, now=0)
    for _ in range(CFG.max_failed_pings):
        core.ping_failed(A)
    core.ping_ok(A, 0.010, now=1)
    assert core.ping_failed(A) == []
    for i in range(PING_WINDOW + 5):
        core.ping_ok(A, 0.001 * i, now=2)
    peer = core.get(A)
    assert peer is not None
    assert len(peer.pings) == PING_WINDOW
    expected = sum(0.001 * i for i in range(5, PING_WINDOW + 5)) / PING_WINDOW
    assert abs((peer.avg_ping_s or 0) - expected) < 1e-12


def test_announced_address_goes_first_and_peer_lists_carry_connected_peers() -> None:
    core = PeeringCore(ME, CFG)
    core.learn(A, ADDR_A, now=0)
    core.announced(A, ADDR_A2)
    assert core.tick(0) == [Connect(A, (ADDR_A2, ADDR_A))]
    core.connected(A, ADDR_A2, now=0)
    core.learn(C, ("127.0.0.4", 3901), now=0)
    assert core.peer_list() == [(A, ADDR_A2)]


def test_digest_depends_only_on_the_set_of_up_peers() -> None:
    one, two = PeeringCore(ME, CFG), PeeringCore(ME, CFG)
    one.connected(A, ADDR_A, now=0)
    one.connected(B, None, now=0)
    two.connected(B, None, now=3)
    two.connected(A, ADDR_A2, now=4)
    assert one.peer_list_digest() == two.peer_list_digest()
    two.disconnected(A, now=5)
    assert one.peer_list_digest() != two.peer_list_digest()


events = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "learn",
                "tick",
                "connected",
                "connect_failed",
                "disconnected",
                "ping_ok",
                "ping_failed",
            ]
        ),
        st.sampled_from([ME, A, B, C]),
        st.floats(0, 100),
    ),
    max_size=60,
)


@given(events)
def test_actions_always_target_the_right_states(evs: list[tuple[str, FixedBytes32, float]]) -> None:
    core = PeeringCore(ME, CFG)
    now = 0.0
    for kind, node, dt in evs:
        now += dt
        if kind == "tick":
            before = {p.node_id: p.state for p in core.peers()}
            for action in core.tick(now):
                assert action.node_id != ME
                if isinstance(action, Ping):
                    assert before[action.node_id] is PeerState.CONNECTED
                else:
                    assert isinstance(action, Connect)
                    assert before[action.node_id] is PeerState.WAITING
                    assert action.addrs
        elif kind == "learn":
            core.learn(node, ("127.0.0.9", int(dt) + 1), now)
        elif kind == "connected":
            core.connected(node, None, now)
        elif kind == "connect_failed":
            core.connect_failed(node, now)
        elif kind == "disconnected":
            core.disconnected(node, now)
        elif kind == "ping_ok":
            core.ping_ok(node, dt / 1000, now)
        else:
            for action in core.ping_failed(node):
                assert isinstance(action, Disconnect)
        me = core.get(ME)
        assert me is not None
        assert me.state is PeerState.OURSELF
        assert ME in core.up_peers()
        for p in core.peers():
            assert p.retries <= CFG.max_retries

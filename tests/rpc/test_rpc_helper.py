"""The async RPC helper over in-process calls, on trio and asyncio.

The calls are plain async functions, so every interleaving is driven by events: no test
depends on how long anything takes.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

from garage_rpc.rpc_helper import QuorumError, RequestStrategy, RpcHelper
from garage_util.data import FixedBytes32

NODES = [FixedBytes32(bytes([i]) * 32) for i in range(6)]
ME = NODES[0]
QUICK = RequestStrategy(timeout_s=0.05)

pytestmark = pytest.mark.anyio


def helper() -> RpcHelper:
    return RpcHelper(ME, zone_of={}, rtt_of={n: i / 100 for i, n in enumerate(NODES)})


class Cluster:
    """Nodes that answer, fail, or hang until released; records what was called."""

    def __init__(
        self,
        *,
        failing: frozenset[FixedBytes32] = frozenset(),
        hanging: frozenset[FixedBytes32] = frozenset(),
    ) -> None:
        self.failing = set(failing)
        self.hanging = set(hanging)
        self.called: list[FixedBytes32] = []
        self.finished: list[FixedBytes32] = []
        self.cancelled: list[FixedBytes32] = []
        self.release = anyio.Event()

    async def call(self, node: FixedBytes32) -> str:
        self.called.append(node)
        try:
            if node in self.hanging:
                await self.release.wait()
            await anyio.lowlevel.checkpoint()
            if node in self.failing:
                raise ConnectionError(f"node {node.short_hex()} is down")
            self.finished.append(node)
            return f"answer of {node.short_hex()}"
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(node)
            raise


async def test_try_call_many_asks_only_a_quorum_in_preference_order() -> None:
    cluster = Cluster()
    answers = await helper().try_call_many(cluster.call, NODES[:5][::-1], quorum=2)
    # The two preferred nodes, started together (so in either order).
    assert sorted(cluster.called) == [NODES[0], NODES[1]]
    assert sorted(answers) == [f"answer of {n.short_hex()}" for n in NODES[:2]]


async def test_each_failure_starts_the_next_candidate() -> None:
    cluster = Cluster(failing=frozenset({NODES[0], NODES[2]}))
    answers = await helper().try_call_many(cluster.call, NODES[:5], quorum=2)
    assert sorted(cluster.called[:2]) == [NODES[0], NODES[1]]
    assert set(cluster.called) == set(NODES[:4])
    assert len(answers) == 2


async def test_slow_calls_are_cancelled_once_the_quorum_is_reached() -> None:
    cluster = Cluster(hanging=frozenset({NODES[0]}))
    answers = await helper().try_call_many(
        cluster.call, NODES[:3], quorum=2, strategy=RequestStrategy(send_all_at_once=True)
    )
    assert len(answers) == 2
    assert cluster.cancelled == [NODES[0]]


async def test_unreachable_quorum_is_a_quorum_error_naming_the_failures() -> None:
    # Node 1 fails at once, node 2 (its replacement) answers, node 0 never does.
    cluster = Cluster(failing=frozenset({NODES[1]}), hanging=frozenset({NODES[0]}))
    with pytest.raises(QuorumError) as info:
        await helper().try_call_many(cluster.call, NODES[:3], quorum=2, strategy=QUICK)
    err = info.value
    assert (err.successes, err.quorum, err.total) == (1, 2, 3)
    messages = dict(err.errors)
    assert "timed out" in messages[NODES[0]]
    assert "ConnectionError" in messages[NODES[1]]


async def test_call_applies_the_timeout() -> None:
    cluster = Cluster(hanging=frozenset({NODES[3]}))
    with pytest.raises(TimeoutError):
        await helper().call(cluster.call, NODES[3], strategy=QUICK)
    assert await helper().call(cluster.call, NODES[2], strategy=RequestStrategy(timeout_s=math.inf))


async def test_call_many_returns_every_outcome_in_order() -> None:
    cluster = Cluster(failing=frozenset({NODES[2]}))
    outcomes = await helper().call_many(cluster.call, [NODES[3], NODES[2], NODES[1]])
    assert [o.node for o in outcomes] == [NODES[3], NODES[2], NODES[1]]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, ConnectionError)


async def test_write_returns_at_quorum_and_the_last_replica_is_still_written() -> None:
    rpc = helper()
    cluster = Cluster(hanging=frozenset({NODES[2]}))
    async with anyio.create_task_group() as tg:
        await tg.start(rpc.run)
        answers = await rpc.try_write_many_sets(cluster.call, [NODES[:3]], quorum=2)
        assert len(answers) == 2
        assert NODES[2] not in cluster.finished  # still in flight after the answer
        cluster.release.set()
        with anyio.fail_after(5):
            while NODES[2] not in cluster.finished:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert NODES[2] in cluster.finished


async def test_write_needs_a_quorum_in_every_set() -> None:
    rpc = helper()
    old_set, new_set = NODES[:3], NODES[2:5]
    # The old set has its quorum (0, 1), the new one only node 2: 1 of 2 needed.
    cluster = Cluster(failing=frozenset({NODES[3], NODES[4]}))
    async with anyio.create_task_group() as tg:
        await tg.start(rpc.run)
        with pytest.raises(QuorumError) as info:
            await rpc.try_write_many_sets(cluster.call, [old_set, new_set], quorum=2)
        tg.cancel_scope.cancel()
    assert info.value.n_sets == 2
    assert info.value.successes < 2
    assert {node for node, _ in info.value.errors} == {NODES[3], NODES[4]}
    assert "in each of 2 sets" in str(info.value)


async def test_write_succeeds_with_a_node_counting_in_both_sets() -> None:
    rpc = helper()
    cluster = Cluster(failing=frozenset({NODES[0], NODES[4]}))
    async with anyio.create_task_group() as tg:
        await tg.start(rpc.run)
        answers = await rpc.try_write_many_sets(cluster.call, [NODES[:3], NODES[1:5]], quorum=2)
        tg.cancel_scope.cancel()
    assert len(answers) >= 2


async def test_write_without_the_background_service_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"run\(\) must be running"):
        await helper().try_write_many_sets(Cluster().call, [NODES[:3]], quorum=2)

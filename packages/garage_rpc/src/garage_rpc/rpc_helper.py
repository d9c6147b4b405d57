"""Calls to one node, to many, and quorum calls: the RPC helper (Garage: src/rpc/rpc_helper.rs).

The helper is independent of the transport: a request is an async callable ``call(node)``
that sends one message to one node and returns its answer (the table layer binds the
endpoint and message; tests bind anything). The helper adds what every layer above needs:

- **Timeouts**: each call runs under ``fail_after(timeout_s)`` (default 300 s, Garage's
  ``rpc_timeout_msec``), a policy applied inside the helper (STYLE §6).
- **Preference order**: ourself, then our zone, then lowest ping (:func:`request_order`).
- ``try_call_many`` (reads): starts ``quorum`` calls on the preferred nodes, starts the next
  candidate for each failure, and returns at the quorum-th success, cancelling the rest
  (the happy-eyeballs pattern). ``send_all_at_once`` starts every call at once.
- ``try_write_many_sets`` (writes): sends to every node of every set at once and returns
  when every set has a quorum of successes. The remaining calls **keep running** in the
  helper's own background task group (owned by :meth:`RpcHelper.run`), not in the caller's:
  this is how the last replica gets written after the client has its answer. If the caller
  is cancelled before the quorum, the calls also keep running; CRDT writes are idempotent,
  so a write that lands late is harmless.

A failed call is any ``Exception`` from ``call`` (cancellation is not a failure). Failures
are reported in :class:`QuorumError` with the node and message of each one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

import anyio
import anyio.abc

from garage_util.background import BackgroundTasks
from garage_util.data import FixedBytes32

from ._quorum import QuorumError, QuorumSetResultTracker, request_order

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Outcome",
    "QuorumError",
    "RequestStrategy",
    "RpcHelper",
]

R = TypeVar("R")

#: Garage's default RPC timeout (``rpc_timeout_msec`` = 300 000): long enough for a block
#: transfer over a slow home uplink, short enough that a dead peer is eventually given up.
DEFAULT_TIMEOUT_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class RequestStrategy:
    """How a request is sent.

    Attributes:
        timeout_s: deadline of each call in seconds, or ``math.inf`` for none.
        send_all_at_once: for ``try_call_many``, start every call at once instead of only
            ``quorum`` of them (lower latency, more load).
    """

    timeout_s: float = DEFAULT_TIMEOUT_S
    send_all_at_once: bool = False


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """The result of one call of ``call_many``: a value, or the error it raised."""

    node: FixedBytes32
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error is None


_Call = Callable[["FixedBytes32"], Awaitable[R]]


@final
class RpcHelper:
    """Sends requests to nodes with timeouts, preference order and quorums.

    Args:
        our_id: this node's id.
        zone_of: the zone of a node, or None when unknown (from the current layout).
        rtt_of: a node's average ping in seconds, or None when unknown (from peering).
    """

    __slots__ = ("_background", "_our_id", "_rtt_of", "_zone_of")

    def __init__(
        self,
        our_id: FixedBytes32,
        *,
        zone_of: Callable[[FixedBytes32], str | None] | Mapping[FixedBytes32, str],
        rtt_of: Callable[[FixedBytes32], float | None] | Mapping[FixedBytes32, float],
    ) -> None:
        self._our_id = our_id
        self._zone_of = zone_of
        self._rtt_of = rtt_of
        self._background = BackgroundTasks("write continuations (RpcHelper.run)")

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Owns the task group where writes continue after their quorum; runs until cancelled."""
        await self._background.run(task_status=task_status)

    def request_order(self, nodes: Sequence[FixedBytes32]) -> list[FixedBytes32]:
        """``nodes`` in preference order: ourself, our zone, lowest ping."""
        return request_order(nodes, our_id=self._our_id, zone_of=self._zone_of, rtt_of=self._rtt_of)

    async def call(
        self, call: _Call[R], node: FixedBytes32, *, strategy: RequestStrategy = RequestStrategy()
    ) -> R:
        """One call with the strategy's timeout.

        Raises:
            TimeoutError: when the node did not answer in time.
            Exception: whatever ``call`` raised.
        """
        with anyio.fail_after(strategy.timeout_s if math.isfinite(strategy.timeout_s) else None):
            return await call(node)

    async def call_many(
        self,
        call: _Call[R],
        nodes: Sequence[FixedBytes32],
        *,
        strategy: RequestStrategy = RequestStrategy(),
    ) -> list[Outcome[R]]:
        """Calls every node at once and returns every outcome, in the order of ``nodes``."""
        outcomes: dict[FixedBytes32, Outcome[R]] = {}

        async def one(node: FixedBytes32) -> None:
            try:
                outcomes[node] = Outcome(node, value=await self.call(call, node, strategy=strategy))
            except Exception as exc:
                outcomes[node] = Outcome(node, error=exc)

        unique = list(dict.fromkeys(nodes))
        async with anyio.create_task_group() as tg:
            for node in unique:
                tg.start_soon(one, node)
        return [outcomes[n] for n in unique]

    async def try_call_many(
        self,
        call: _Call[R],
        nodes: Sequence[FixedBytes32],
        *,
        quorum: int,
        strategy: RequestStrategy = RequestStrategy(),
    ) -> list[R]:
        """Returns as soon as ``quorum`` nodes answered successfully (the fastest answers).

        Raises:
            QuorumError: when too many calls failed for the quorum to be reached.
        """
        order = self.request_order(nodes)
        tracker: QuorumSetResultTracker[R] = QuorumSetResultTracker([order], quorum)
        send, receive = anyio.create_memory_object_stream[tuple["FixedBytes32", object, bool]](
            len(order)
        )
        candidates = iter(order)
        async with anyio.create_task_group() as tg, send, receive:
            initial = len(order) if strategy.send_all_at_once else quorum
            for node in _take(candidates, initial):
                tg.start_soon(self._report, call, node, strategy, send.clone())
            async for node, result, ok in receive:
                if ok:
                    tracker.register_ok(node, result)  # type: ignore[arg-type]  # a call's R
                else:
                    tracker.register_err(node, str(result))
                    for nxt in _take(candidates, 1):
                        tg.start_soon(self._report, call, nxt, strategy, send.clone())
                if tracker.is_finished():
                    tg.cancel_scope.cancel()
                    break
        if not tracker.all_quorums_ok():
            raise tracker.quorum_error()
        return tracker.success_values()

    async def try_write_many_sets(
        self,
        call: _Call[R],
        sets: Sequence[Sequence[FixedBytes32]],
        *,
        quorum: int,
        strategy: RequestStrategy = RequestStrategy(),
    ) -> list[R]:
        """Writes to every node of every set; returns when each set has ``quorum`` successes.

        The calls run in the helper's background task group and go on after this returns.

        Raises:
            QuorumError: as soon as one set can no longer reach its quorum.
            RuntimeError: when :meth:`run` is not running.
        """
        background = self._background
        if not background.running:
            raise RuntimeError("RpcHelper.run() must be running for try_write_many_sets")
        tracker: QuorumSetResultTracker[R] = QuorumSetResultTracker(sets, quorum)
        nodes = self.request_order(tracker.nodes)
        send, receive = anyio.create_memory_object_stream[tuple["FixedBytes32", object, bool]](
            len(nodes)
        )
        with send:
            for node in nodes:
                background.start_soon(self._report, call, node, strategy, send.clone())
        with receive:
            async for node, result, ok in receive:
                if ok:
                    tracker.register_ok(node, result)  # type: ignore[arg-type]  # a call's R
                else:
                    tracker.register_err(node, str(result))
                if tracker.is_finished():
                    break
        if not tracker.all_quorums_ok():
            raise tracker.quorum_error()
        return tracker.success_values()

    async def _report(
        self,
        call: _Call[R],
        node: FixedBytes32,
        strategy: RequestStrategy,
        send: MemoryObjectSendStream[tuple[FixedBytes32, object, bool]],
    ) -> None:
        """Runs one call and reports its outcome; a reader that left is not an error."""
        with send:
            try:
                item: tuple[FixedBytes32, object, bool] = (
                    node,
                    await self.call(call, node, strategy=strategy),
                    True,
                )
            except TimeoutError:
                item = (node, f"timed out after {strategy.timeout_s:g} s", False)
            except Exception as exc:
                item = (node, f"{type(exc).__name__}: {exc}", False)
            # A reader that left already has its answer: this write simply finished late.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                send.send_nowait(item)


def _take(it: Iterator[FixedBytes32], n: int) -> list[FixedBytes32]:
    out = []
    for _ in range(n):
        node = next(it, None)
        if node is None:
            break
        out.append(node)
    return out

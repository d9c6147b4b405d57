"""The worker-side values: WorkerState and WorkerStatus, and the Worker ABC's defaults."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from garage_util.background import Worker, WorkerState, WorkerStateKind, WorkerStatus


def test_state_constants() -> None:
    assert WorkerState.BUSY.kind is WorkerStateKind.BUSY
    assert WorkerState.IDLE.kind is WorkerStateKind.IDLE
    assert WorkerState.DONE.kind is WorkerStateKind.DONE
    assert WorkerState.BUSY.delay_s == 0.0
    assert WorkerState(WorkerStateKind.BUSY) == WorkerState.BUSY


def test_throttled_carries_its_delay() -> None:
    state = WorkerState.throttled(1.5)
    assert state.kind is WorkerStateKind.THROTTLED
    assert state.delay_s == 1.5
    assert state == WorkerState.throttled(1.5)
    assert state != WorkerState.throttled(2)
    assert WorkerState.throttled(0).delay_s == 0.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_throttled_rejects_bad_delays(bad: float) -> None:
    with pytest.raises(ValueError, match="delay_s"):
        WorkerState.throttled(bad)


def test_only_throttled_carries_a_delay() -> None:
    with pytest.raises(ValueError, match="only a THROTTLED"):
        WorkerState(WorkerStateKind.BUSY, 1.0)


def test_values_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        WorkerState.BUSY.delay_s = 1.0  # type: ignore[misc]  # checking the runtime guard
    with pytest.raises(FrozenInstanceError):
        WorkerStatus().progress = "x"  # type: ignore[misc]  # checking the runtime guard


def test_status_defaults_to_nothing() -> None:
    class Minimal(Worker):
        name = "minimal"

        async def work(self) -> WorkerState:
            return WorkerState.DONE

        async def wait_for_work(self) -> WorkerState:
            return WorkerState.BUSY

    w = Minimal()
    assert w.name == "minimal"
    assert w.status() == WorkerStatus(None, None, None, None, ())


def test_worker_is_abstract() -> None:
    with pytest.raises(TypeError):
        Worker()  # type: ignore[abstract]  # checking that the ABC refuses instantiation

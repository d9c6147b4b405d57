"""The tranquilizer core: delay = tranquility * mean of the last <= 30 step durations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_util.background import Tranquilizer, WorkerState, WorkerStateKind

durations = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
tranquilities = st.integers(min_value=0, max_value=1000)


@given(st.lists(durations, max_size=100), tranquilities)
def test_delay_is_tranquility_times_mean_of_last_30(
    observed: list[float], tranquility: int
) -> None:
    t = Tranquilizer()
    for d in observed:
        t.observe(d)
    window = observed[-30:]
    assert t.observations == tuple(window)
    expected = tranquility * math.fsum(window) / len(window) if window else 0.0
    assert math.isclose(t.delay_s(tranquility), expected, rel_tol=1e-9, abs_tol=1e-12)


@given(st.lists(durations, max_size=50))
def test_zero_tranquility_means_no_delay(observed: list[float]) -> None:
    t = Tranquilizer()
    for d in observed:
        t.observe(d)
    assert t.delay_s(0) == 0.0


@given(st.integers(min_value=1, max_value=10), st.lists(durations, max_size=40), tranquilities)
def test_window_size_is_configurable(n: int, observed: list[float], tranquility: int) -> None:
    t = Tranquilizer(n_observations=n)
    for d in observed:
        t.observe(d)
    window = observed[-n:]
    assert t.observations == tuple(window)
    expected = tranquility * math.fsum(window) / len(window) if window else 0.0
    assert math.isclose(t.delay_s(tranquility), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_nothing_observed_means_no_delay() -> None:
    assert Tranquilizer().delay_s(5) == 0.0


def test_tranquilize_worker_observes_step_and_throttles() -> None:
    t = Tranquilizer()
    t.reset(100.0)
    assert t.tranquilize_worker(2, 100.5) == WorkerState.throttled(1.0)
    t.reset(200.0)
    # mean(0.5, 1.5) = 1.0; times 3
    assert t.tranquilize_worker(3, 201.5) == WorkerState.throttled(3.0)
    assert t.observations == (0.5, 1.5)


def test_tranquilize_worker_returns_busy_when_delay_is_zero() -> None:
    t = Tranquilizer()
    t.reset(10.0)
    assert t.tranquilize_worker(0, 11.0) is WorkerState.BUSY  # tranquility 0
    u = Tranquilizer()
    u.reset(20.0)
    assert u.tranquilize_worker(4, 20.0) is WorkerState.BUSY  # steps took no time
    assert u.observations == (0.0,)


def test_tranquilize_worker_result_kind() -> None:
    t = Tranquilizer()
    t.reset(0.0)
    state = t.tranquilize_worker(1, 2.0)
    assert state.kind is WorkerStateKind.THROTTLED
    assert state.delay_s == 2.0


def test_clock_going_backwards_counts_as_zero() -> None:
    t = Tranquilizer()
    t.reset(10.0)
    assert t.tranquilize_worker(1, 9.0) is WorkerState.BUSY
    assert t.observations == (0.0,)


def test_tranquilize_worker_needs_reset() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        Tranquilizer().tranquilize_worker(1, 0.0)


def test_clear_forgets_observations() -> None:
    t = Tranquilizer()
    t.observe(1.0)
    t.clear()
    assert t.observations == ()
    assert t.delay_s(3) == 0.0


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_observe_rejects_bad_durations(bad: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        Tranquilizer().observe(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_observations"):
        Tranquilizer(n_observations=0)
    with pytest.raises(ValueError, match="tranquility"):
        Tranquilizer().delay_s(-1)

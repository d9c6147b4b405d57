from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from garage_util.clock import (
    increment_logical_clock,
    increment_logical_clock_2,
    msec_to_rfc3339,
    now_msec,
)

stamps = st.integers(min_value=0, max_value=2**62)


@given(stamps, stamps)
def test_logical_clock_moves_forward_and_follows_the_wall_clock(prev: int, now: int) -> None:
    ts = increment_logical_clock(prev, now)
    assert ts > prev
    assert ts >= now
    assert ts in (prev + 1, now)


@given(stamps, stamps, stamps)
def test_two_argument_clock_passes_both(prev: int, prev2: int, now: int) -> None:
    ts = increment_logical_clock_2(prev, prev2, now)
    assert ts > prev
    assert ts > prev2
    assert ts >= now


def test_lagging_clock_still_produces_increasing_stamps() -> None:
    stamp = 1_000_000
    for _ in range(5):
        nxt = increment_logical_clock(stamp, now_ms=10)  # wall clock far behind
        assert nxt == stamp + 1
        stamp = nxt


def test_now_is_plausible_milliseconds() -> None:
    assert 1_600_000_000_000 < now_msec() < 10_000_000_000_000


def test_rfc3339_has_millisecond_precision() -> None:
    assert msec_to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert msec_to_rfc3339(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert msec_to_rfc3339(1_000) == "1970-01-01T00:00:01.000Z"

"""Wall-clock time and the logical clock of LWW timestamps (Garage: src/util/time.rs).

Garage never trusts node clocks to be synchronised. A timestamp given to a new write is
``max(previous + 1, now)``: it follows the wall clock when clocks agree, and still moves
strictly forward past what the node has seen when its own clock lags. Every ``Lww`` stamp and
every object version timestamp is made this way.

Cores take ``now_ms`` as an argument (the clock is passed in, never read inside a merge);
only drivers call :func:`now_msec`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = [
    "increment_logical_clock",
    "increment_logical_clock_2",
    "msec_to_rfc3339",
    "now_msec",
]


def now_msec() -> int:
    """The wall clock in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def increment_logical_clock(prev: int, now_ms: int) -> int:
    """A timestamp strictly greater than ``prev`` and at least ``now_ms``."""
    return max(prev + 1, now_ms)


def increment_logical_clock_2(prev: int, prev2: int, now_ms: int) -> int:
    """A timestamp strictly greater than both ``prev`` and ``prev2`` and at least ``now_ms``."""
    return max(prev + 1, prev2 + 1, now_ms)


def msec_to_rfc3339(ts_ms: int) -> str:
    """Formats a millisecond timestamp as RFC 3339 in UTC with millisecond precision.

    >>> msec_to_rfc3339(0)
    '1970-01-01T00:00:00.000Z'
    """
    dt = datetime.fromtimestamp(ts_ms // 1000, tz=UTC).replace(microsecond=(ts_ms % 1000) * 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"

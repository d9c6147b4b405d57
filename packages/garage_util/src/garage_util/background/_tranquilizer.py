"""The tranquilizer: a sans-I/O pacing core for background workers.

Theory of operation (Garage: src/util/tranquilizer.rs)
------------------------------------------------------
A background worker that could run flat out (scrubbing every block, resyncing a long
queue) would starve the requests the node exists to serve. Instead, after each step it
pauses in proportion to how long its steps take::

    delay = tranquility * mean(duration of the last N steps)

With a tranquility of 2 the worker sleeps, on average, two units of time for every unit
spent working, so it uses about a third of the time; a tranquility of 0 means full speed.
Averaging over recent steps, rather than using the last step alone, keeps one unusually
slow or fast step (a cold disk read, an empty batch) from making the pace jerky.

This module is a pure core: it never reads a clock and never sleeps. The worker passes the
current monotonic time in (``anyio.current_time()``), and hands the returned
:class:`~garage_util.background.WorkerState` (``throttled(delay)`` or ``BUSY``) back to
the runner, which does the sleeping::

    async def work(self) -> WorkerState:
        self._tranquilizer.reset(anyio.current_time())
        ...  # one step
        return self._tranquilizer.tranquilize_worker(self._tranquility, anyio.current_time())

Invariants:

* At most ``n_observations`` durations are kept, the most recent ones, in order.
* Every kept duration is finite and >= 0, so every delay is finite and >= 0.
* ``delay_s(t)`` is 0 when ``t`` is 0 or when nothing has been observed.
"""

from __future__ import annotations

import math
from collections import deque
from typing import final

from ._worker import WorkerState

__all__ = ["TRANQUILIZER_OBSERVATIONS", "Tranquilizer"]

# How many recent step durations the mean covers. Garage's workers all use
# `Tranquilizer::new(30)` (src/block/resync.rs, src/block/repair.rs): long enough that one
# outlier step moves the pace by only ~3%, short enough that the pace follows a change of
# load (disk contention, bigger batches) within a few dozen steps.
TRANQUILIZER_OBSERVATIONS = 30


@final
class Tranquilizer:
    """Paces a worker: remembers recent step durations and derives the pause after a step.

    Use one per worker. Either feed durations directly with :meth:`observe` and read
    :meth:`delay_s`, or bracket each step with :meth:`reset` and
    :meth:`tranquilize_worker`, passing the current monotonic time to both.

    Args:
        n_observations: how many of the most recent durations the mean covers (>= 1).

    Raises:
        ValueError: if ``n_observations`` is less than 1.
    """

    __slots__ = ("_observations", "_step_start_s")

    def __init__(self, *, n_observations: int = TRANQUILIZER_OBSERVATIONS) -> None:
        if n_observations < 1:
            raise ValueError(f"n_observations must be >= 1, got {n_observations}")
        self._observations: deque[float] = deque(maxlen=n_observations)
        self._step_start_s: float | None = None

    @property
    def observations(self) -> tuple[float, ...]:
        """The durations currently remembered, oldest first."""
        return tuple(self._observations)

    def observe(self, duration_s: float) -> None:
        """Remember the duration of one step, forgetting the oldest beyond the window.

        Args:
            duration_s: how long the step took, in seconds (finite, >= 0).

        Raises:
            ValueError: if ``duration_s`` is negative or not finite.
        """
        if not math.isfinite(duration_s) or duration_s < 0:
            raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
        self._observations.append(float(duration_s))

    def delay_s(self, tranquility: int) -> float:
        """The pause to take now: ``tranquility`` * the mean of the remembered durations.

        Args:
            tranquility: the pacing factor (>= 0); 0 means no pause.

        Returns:
            The delay in seconds; 0.0 if ``tranquility`` is 0 or nothing was observed.

        Raises:
            ValueError: if ``tranquility`` is negative.
        """
        if tranquility < 0:
            raise ValueError(f"tranquility must be >= 0, got {tranquility}")
        if tranquility == 0 or not self._observations:
            return 0.0
        # fsum over at most a few dozen floats: exact enough, and unlike a running sum it
        # does not drift as old observations are subtracted out.
        return tranquility * (math.fsum(self._observations) / len(self._observations))

    def reset(self, now_s: float) -> None:
        """Mark the start of a step (call it as the step begins).

        Args:
            now_s: the current monotonic time in seconds.
        """
        self._step_start_s = now_s

    def tranquilize_worker(self, tranquility: int, now_s: float) -> WorkerState:
        """End a step: observe its duration and say how long the worker should pause.

        The step's duration is ``now_s`` minus the time given to the last :meth:`reset`
        (clamped at 0, like Rust's saturating ``Instant`` subtraction).

        Args:
            tranquility: the pacing factor (>= 0).
            now_s: the current monotonic time in seconds, on the same clock as ``reset``.

        Returns:
            ``WorkerState.throttled(delay)`` to hand back to the runner, or
            ``WorkerState.BUSY`` when the delay is 0.

        Raises:
            RuntimeError: if :meth:`reset` was never called, so the step has no start.
            ValueError: if ``tranquility`` is negative.
        """
        if self._step_start_s is None:
            raise RuntimeError("Tranquilizer.reset(now_s) must be called when a step starts")
        self.observe(max(0.0, now_s - self._step_start_s))
        delay = self.delay_s(tranquility)
        return WorkerState.throttled(delay) if delay > 0 else WorkerState.BUSY

    def clear(self) -> None:
        """Forget every observation (e.g. when the worker's kind of work changes)."""
        self._observations.clear()

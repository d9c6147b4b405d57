"""The worker extension point: what a background task tells the runner, step by step.

Theory of operation (Garage: src/util/background/worker.rs)
------------------------------------------------------------
A background task (block resync, scrub, Merkle updater, table GC, lifecycle) is not a
free-running coroutine but an object the :class:`~garage_util.background.BackgroundRunner`
drives one *step* at a time. After every step the worker returns a :class:`WorkerState`
saying what the runner should do next:

========================  ===============================================================
``WorkerState.BUSY``      there is more to do: call :meth:`Worker.work` again at once.
``WorkerState.throttled`` sleep ``delay_s`` seconds, then behave as ``BUSY`` (tranquility,
                          or backing off after an error).
``WorkerState.IDLE``      nothing to do: call :meth:`Worker.wait_for_work`, which returns
                          when there may be work again.
``WorkerState.DONE``      the worker has finished for good; the runner retires it.
========================  ===============================================================

Invariants the runner relies on:

* ``work()`` performs one bounded unit of work. The runner avoids interrupting it: on
  shutdown it gets up to the runner's exit deadline to finish, so a step should be short
  enough to complete in that time (a batch of a few hundred items, one block).
* ``wait_for_work()`` holds no partial work: the runner cancels it at any moment (shutdown).
* Neither method needs to catch its own errors. A raised ``Exception`` is counted, logged
  and answered with an exponential back-off; ``status()`` and ``name`` are plain reads that
  never block.

A worker that makes progress in small steps can keep its own pace with a
:class:`~garage_util.background.Tranquilizer`, whose ``tranquilize_worker`` returns the
``WorkerState`` to hand back to the runner.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Worker", "WorkerState", "WorkerStateKind", "WorkerStatus"]


class WorkerStateKind(enum.Enum):
    """The four kinds of :class:`WorkerState` (Garage's ``WorkerState`` variants)."""

    BUSY = "busy"
    THROTTLED = "throttled"
    IDLE = "idle"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class WorkerState:
    """What the runner should do after a step: the value ``work()``/``wait_for_work()`` return.

    Use the constants ``WorkerState.BUSY``, ``WorkerState.IDLE`` and ``WorkerState.DONE``,
    and :meth:`throttled` for a pause. Only a throttled state carries a delay.

    Attributes:
        kind: which of the four states this is.
        delay_s: how long to sleep before working again (``THROTTLED`` only, else 0.0).

    Raises:
        ValueError: if ``delay_s`` is negative or not finite, or non-zero for a state other
            than ``THROTTLED``.
    """

    kind: WorkerStateKind
    delay_s: float = 0.0

    BUSY: ClassVar[WorkerState]
    """Call ``work()`` again at once."""
    IDLE: ClassVar[WorkerState]
    """Nothing to do: call ``wait_for_work()``."""
    DONE: ClassVar[WorkerState]
    """Finished for good: retire the worker."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.delay_s) or self.delay_s < 0:
            raise ValueError(f"delay_s must be finite and >= 0, got {self.delay_s!r}")
        if self.kind is not WorkerStateKind.THROTTLED and self.delay_s != 0:
            raise ValueError(f"only a THROTTLED state carries a delay, not {self.kind.name}")

    @classmethod
    def throttled(cls, delay_s: float) -> WorkerState:
        """Sleep ``delay_s`` seconds, then call ``work()`` again.

        Args:
            delay_s: the pause in seconds (finite, >= 0).

        Returns:
            The ``THROTTLED`` state carrying that delay.
        """
        return cls(WorkerStateKind.THROTTLED, float(delay_s))


WorkerState.BUSY = WorkerState(WorkerStateKind.BUSY)
WorkerState.IDLE = WorkerState(WorkerStateKind.IDLE)
WorkerState.DONE = WorkerState(WorkerStateKind.DONE)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What a worker reports about itself for ``garage worker list/info``; all optional.

    Attributes:
        tranquility: the worker's current tranquility factor, if it has one.
        progress: a short human-readable progress note ("42.1%", a cursor position).
        queue_length: how many items wait in the worker's queue.
        persistent_errors: how many items keep failing (e.g. blocks that cannot be resynced).
        freeform: further lines of free text.
    """

    tranquility: int | None = None
    progress: str | None = None
    queue_length: int | None = None
    persistent_errors: int | None = None
    freeform: tuple[str, ...] = ()


class Worker(abc.ABC):
    """A background task driven step by step by a ``BackgroundRunner`` (the extension point).

    Subclass it and implement :attr:`name`, :meth:`work` and :meth:`wait_for_work`;
    override :meth:`status` to report progress. A worker instance is driven by one runner
    loop at a time, so its methods are never called concurrently.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short human-readable name ("Block resync worker #1"), shown in listings and logs."""

    def status(self) -> WorkerStatus:
        """Report the worker's current status; must not block. The default reports nothing.

        Returns:
            A snapshot of the worker's status.
        """
        return WorkerStatus()

    @abc.abstractmethod
    async def work(self) -> WorkerState:
        """Do one bounded unit of work, if there is some (else return ``IDLE`` at once).

        The runner does its best not to interrupt this: on shutdown a running step gets the
        runner's exit deadline to finish, and is cancelled only after it. An exception means
        the unit could not be processed; it is logged and ``work()`` is called again after a
        back-off.

        Returns:
            What to do next: ``BUSY``, ``throttled(delay_s)``, ``IDLE`` or ``DONE``.
        """

    @abc.abstractmethod
    async def wait_for_work(self) -> WorkerState:
        """Wait until there may be work again (called after ``work()`` returned ``IDLE``).

        This may be cancelled at any point (for example on shutdown), so it must hold no
        partial work.

        Returns:
            What to do next, usually ``BUSY``.
        """

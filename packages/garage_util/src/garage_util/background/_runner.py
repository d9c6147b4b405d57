"""The background runner: drives every worker in its own loop inside one task group.

Theory of operation (Garage: src/util/background/mod.rs, worker.rs)
-------------------------------------------------------------------
:class:`BackgroundRunner` is a service in the STYLE §6 sense: ``run()`` opens a task group,
reports ready through ``task_status.started()`` and returns only after every worker loop
has ended. Each spawned worker gets one loop (one task) that repeats a *step* chosen by
the worker's last :class:`~garage_util.background.WorkerState`:

* ``BUSY``: ``await worker.work()``; its result becomes the new state.
* ``THROTTLED(d)``: sleep ``d`` seconds, then ``BUSY``.
* ``IDLE``: ``await worker.wait_for_work()``; its result becomes the new state.
* ``DONE``: the loop ends; the worker stays listed as done.

Errors. A step that raises an ``Exception`` (never a cancellation or other
``BaseException``, which propagate) does not end the loop: the runner counts it
(``errors``, ``consecutive_errors``), records the message and the wall-clock time, logs it
at WARNING with its traceback, and throttles the worker for
``error_backoff_s * 1.5 ** min(10, consecutive_errors - 1)`` before calling ``work()``
again. A successful step resets ``consecutive_errors``. With ``max_consecutive_errors``
set, a worker reaching it is marked failed and its loop ends; the others go on.

Shutdown. :meth:`BackgroundRunner.stop` (or :meth:`~BackgroundRunner.shutdown`, which also
waits) asks every loop to end after its current step. A loop sleeping (throttled) or
waiting for work is interrupted at once, since it holds no partial work. A loop inside
``work()`` is left to finish that step; ``run()`` puts a deadline of ``exit_deadline_s``
on its task group, so a step still running then is cancelled in the middle. Cancelling
the scope around ``run()`` cancels every loop the same way, without the grace period.

Invariants:

* One task per live worker, all in the task group ``run()`` owns; none outlives ``run()``.
* Task ids are 1, 2, 3... in spawn order and never reused; a worker's info stays listed
  after its loop ended (done, failed or stopped), as in ``garage worker list``.
* Once stop is requested no worker step starts, and ``spawn_worker`` raises.
* A worker's methods are never called concurrently (one loop per worker).
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import anyio
import anyio.abc
import anyio.lowlevel

from ._errors import RunnerClosedError
from ._worker import Worker, WorkerState, WorkerStateKind, WorkerStatus

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ERROR_BACKOFF_BASE",
    "ERROR_BACKOFF_MAX_EXPONENT",
    "EXIT_DEADLINE_S",
    "BackgroundRunner",
    "LastError",
    "WorkerInfo",
    "WorkerInfoState",
]

logger = logging.getLogger(__name__)

# How long a worker caught in the middle of work() may take to finish its step once
# shutdown is requested, before it is cancelled. Garage's EXIT_DEADLINE
# (src/util/background/worker.rs): a step is one bounded unit (a block written and
# fsynced, a Merkle batch), which takes well under a second on a healthy disk; 8 s covers
# a slow or loaded one while staying far below a service manager's stop timeout (systemd
# sends SIGKILL after 90 s by default).
EXIT_DEADLINE_S = 8.0

# Exponential back-off after a failed step: error_backoff_s * BASE ** min(MAX_EXPONENT,
# consecutive_errors - 1). As in Garage (worker.rs), the first retry comes after 1 s, so a
# transient failure costs little, and the pause grows by half at each further failure up
# to 1.5 ** 10 ≈ 58 s: a persistently failing worker retries about once a minute, which
# bounds the log noise and the load it adds without ever giving up on its own.
ERROR_BACKOFF_BASE = 1.5
ERROR_BACKOFF_MAX_EXPONENT = 10

# The default error_backoff_s: Garage's back-off starts at exactly one second.
DEFAULT_ERROR_BACKOFF_S = 1.0


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _error_backoff_s(base_s: float, consecutive_errors: int) -> float:
    """The pause after the ``consecutive_errors``-th failure in a row (>= 1)."""
    exponent = min(ERROR_BACKOFF_MAX_EXPONENT, max(0, consecutive_errors - 1))
    return base_s * ERROR_BACKOFF_BASE**exponent


class WorkerInfoState(enum.Enum):
    """What a worker is doing, as listed by ``garage worker list``."""

    BUSY = "busy"
    """Inside ``work()``, or about to call it."""
    THROTTLED = "throttled"
    """Pausing before the next ``work()`` (tranquility or error back-off)."""
    IDLE = "idle"
    """Waiting for work in ``wait_for_work()``."""
    DONE = "done"
    """Finished: ``work()`` returned ``DONE``."""
    FAILED = "failed"
    """Given up after ``max_consecutive_errors`` failed steps in a row."""


_INFO_STATE = {
    WorkerStateKind.BUSY: WorkerInfoState.BUSY,
    WorkerStateKind.THROTTLED: WorkerInfoState.THROTTLED,
    WorkerStateKind.IDLE: WorkerInfoState.IDLE,
    WorkerStateKind.DONE: WorkerInfoState.DONE,
}


@dataclass(frozen=True, slots=True)
class LastError:
    """The most recent error of a worker.

    Attributes:
        message: the exception's message (its type name if the message is empty).
        ts_msec: when it happened, in milliseconds since the Unix epoch.
    """

    message: str
    ts_msec: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A snapshot of one worker, as returned by :meth:`BackgroundRunner.worker_info`.

    Attributes:
        name: the worker's name.
        state: what the worker is doing (or was doing when the runner stopped).
        errors: how many steps failed in total.
        consecutive_errors: how many steps failed since the last successful one.
        last_error: the most recent failure, or ``None`` if it never failed.
        status: what the worker reports about itself.
    """

    name: str
    state: WorkerInfoState
    errors: int
    consecutive_errors: int
    last_error: LastError | None
    status: WorkerStatus


@final
class _Slot:
    """The runner's bookkeeping for one worker (mutated only by its loop and by stop())."""

    __slots__ = (
        "consecutive_errors",
        "errors",
        "failed",
        "last_error",
        "state",
        "task_id",
        "wait_scope",
        "worker",
    )

    def __init__(self, task_id: int, worker: Worker) -> None:
        self.task_id = task_id
        self.worker = worker
        self.state = WorkerState.BUSY
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error: LastError | None = None
        self.failed = False
        # Set while the loop sleeps or waits for work: the scope stop() cancels.
        self.wait_scope: anyio.CancelScope | None = None


@final
class BackgroundRunner:
    """Runs background workers, each in its own loop, until shut down.

    Start it as a service and spawn workers before or after::

        runner = BackgroundRunner()
        runner.spawn_worker(MyWorker())
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            ...
            await runner.shutdown()

    All methods must be called from the event loop's thread.

    Args:
        exit_deadline_s: on shutdown, how long a worker inside ``work()`` may take to
            finish its step before it is cancelled.
        error_backoff_s: the pause after a first failed step; it grows by 1.5 times with each
            further consecutive failure, up to 1.5 ** 10 times this.
        max_consecutive_errors: after this many failed steps in a row a worker is marked
            failed and stops; ``None`` (the default, as in Garage) retries forever.
        clock_ms: the wall clock for error timestamps, in milliseconds since the epoch.

    Raises:
        ValueError: if a duration is negative or ``max_consecutive_errors`` is below 1.
    """

    __slots__ = (
        "_clock_ms",
        "_error_backoff_s",
        "_exit_deadline_s",
        "_finished",
        "_max_consecutive_errors",
        "_next_task_id",
        "_pending",
        "_run_called",
        "_slots",
        "_stop_event",
        "_stopping",
        "_tg",
    )

    def __init__(
        self,
        *,
        exit_deadline_s: float = EXIT_DEADLINE_S,
        error_backoff_s: float = DEFAULT_ERROR_BACKOFF_S,
        max_consecutive_errors: int | None = None,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        if not exit_deadline_s >= 0:
            raise ValueError(f"exit_deadline_s must be >= 0, got {exit_deadline_s!r}")
        if not error_backoff_s >= 0:
            raise ValueError(f"error_backoff_s must be >= 0, got {error_backoff_s!r}")
        if max_consecutive_errors is not None and max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors must be >= 1, got {max_consecutive_errors}")
        self._exit_deadline_s = exit_deadline_s
        self._error_backoff_s = error_backoff_s
        self._max_consecutive_errors = max_consecutive_errors
        self._clock_ms = clock_ms
        self._slots: dict[int, _Slot] = {}
        self._pending: list[_Slot] = []  # spawned before run() started
        self._next_task_id = 1
        self._tg: anyio.abc.TaskGroup | None = None
        self._run_called = False
        self._stopping = False
        # Created by run(): an anyio.Event needs a running event loop.
        self._stop_event: anyio.Event | None = None
        self._finished: anyio.Event | None = None

    # ------------------------------------------------------------------ service

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the workers until :meth:`stop` is called, then wind them down.

        Start it with ``await tg.start(runner.run)``: it reports ready once the workers
        spawned so far have been started. It returns after every worker loop has ended:
        at once for idle and throttled workers, after at most ``exit_deadline_s`` for a
        worker inside ``work()``. If stop was requested before ``run()``, it reports ready
        and returns without starting any worker.

        Raises:
            RuntimeError: if ``run()`` was already called on this runner.
        """
        if self._run_called:
            raise RuntimeError("BackgroundRunner.run() can only be called once")
        self._run_called = True
        self._stop_event = anyio.Event()
        self._finished = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                pending, self._pending = self._pending, []
                if not self._stopping:
                    for slot in pending:
                        self._start_loop(tg, slot)
                    logger.info("Background runner started with %d workers", len(pending))
                task_status.started()
                if not self._stopping:
                    await self._stop_event.wait()
                # Loops that wait or sleep were interrupted by stop(); the deadline
                # cancels whatever step is still running when it passes.
                tg.cancel_scope.deadline = anyio.current_time() + self._exit_deadline_s
            if tg.cancel_scope.cancelled_caught:
                logger.error(
                    "Some workers did not finish their step within %.1f s and were "
                    "cancelled in the middle of it",
                    self._exit_deadline_s,
                )
            else:
                logger.info("All background workers exited")
        finally:
            self._stopping = True
            self._tg = None
            self._finished.set()

    def stop(self) -> None:
        """Ask every worker loop to end after its current step; return at once.

        Idle and throttled workers stop immediately, a worker inside ``work()`` when its
        step ends (or at the exit deadline). Calling it again does nothing.
        """
        if self._stopping:
            return
        self._stopping = True
        logger.info("Background runner stopping")
        for slot in self._slots.values():
            if slot.wait_scope is not None:
                slot.wait_scope.cancel()
        if self._stop_event is not None:
            self._stop_event.set()

    async def shutdown(self) -> None:
        """Stop the workers (:meth:`stop`) and wait until :meth:`run` has returned.

        Returns at once if ``run()`` was never started or has already returned.
        """
        self.stop()
        if self._finished is not None:
            await self._finished.wait()
        else:
            await anyio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ workers

    def spawn_worker(self, worker: Worker) -> int:
        """Add a worker; it starts now if ``run()`` is running, else when it starts.

        Args:
            worker: the worker to drive; it starts in the ``BUSY`` state (``work()`` first).

        Returns:
            The worker's task id, the key of its entry in :meth:`worker_info`.

        Raises:
            RunnerClosedError: if stop was requested or ``run()`` has returned.
        """
        if self._stopping:
            raise RunnerClosedError(
                f"cannot spawn worker {worker.name!r}: the background runner is shutting down"
            )
        slot = _Slot(self._next_task_id, worker)
        self._next_task_id += 1
        self._slots[slot.task_id] = slot
        if self._tg is None:
            self._pending.append(slot)
        else:
            self._start_loop(self._tg, slot)
        return slot.task_id

    def worker_info(self) -> dict[int, WorkerInfo]:
        """A snapshot of every worker spawned so far, by task id (ascending).

        Asks each worker for its ``name`` and ``status()``; a ``status()`` that raises is
        logged and reported as a one-line freeform status rather than propagated.
        """
        return {task_id: self._info(slot) for task_id, slot in self._slots.items()}

    def _info(self, slot: _Slot) -> WorkerInfo:
        try:
            status = slot.worker.status()
        except Exception as exc:
            logger.warning("status() of worker TID %d raised", slot.task_id, exc_info=exc)
            status = WorkerStatus(freeform=(f"status() failed: {_message(exc)}",))
        return WorkerInfo(
            name=slot.worker.name,
            state=WorkerInfoState.FAILED if slot.failed else _INFO_STATE[slot.state.kind],
            errors=slot.errors,
            consecutive_errors=slot.consecutive_errors,
            last_error=slot.last_error,
            status=status,
        )

    # ------------------------------------------------------------------ the loop

    def _start_loop(self, tg: anyio.abc.TaskGroup, slot: _Slot) -> None:
        tg.start_soon(self._drive, slot, name=f"background worker TID {slot.task_id}")

    async def _drive(self, slot: _Slot) -> None:
        """One worker's loop: step until done, failed or stopped."""
        logger.debug("Worker %s (TID %d) started", slot.worker.name, slot.task_id)
        try:
            while not self._stopping and not slot.failed:
                if slot.state.kind is WorkerStateKind.DONE:
                    break
                await self._step(slot)
                # A worker whose work() never awaits would otherwise hold the event loop
                # for as long as it stays busy.
                await anyio.lowlevel.checkpoint()
        finally:
            logger.info(
                "Worker %s (TID %d) exited (last state: %s)",
                slot.worker.name,
                slot.task_id,
                "failed" if slot.failed else slot.state.kind.value,
            )

    async def _step(self, slot: _Slot) -> None:
        """Run one step from ``slot.state`` and store the state it leads to."""
        kind = slot.state.kind
        new_state: object = None
        try:
            if kind is WorkerStateKind.BUSY:
                new_state = await slot.worker.work()
            else:
                # Sleeping or waiting holds no partial work: stop() may cancel it.
                with anyio.CancelScope() as scope:
                    slot.wait_scope = scope
                    if self._stopping:
                        scope.cancel()
                    try:
                        if kind is WorkerStateKind.THROTTLED:
                            await anyio.sleep(slot.state.delay_s)
                            new_state = WorkerState.BUSY
                        else:
                            new_state = await slot.worker.wait_for_work()
                    finally:
                        slot.wait_scope = None
                if scope.cancelled_caught:
                    return  # interrupted by stop(): keep the state, the loop ends
            if not isinstance(new_state, WorkerState):
                raise TypeError(
                    f"worker returned {new_state!r} instead of a WorkerState"
                )  # counted as a failed step, like any other error
        except Exception as exc:
            self._record_error(slot, exc)
            return
        if kind is not WorkerStateKind.THROTTLED:
            slot.consecutive_errors = 0
        slot.state = new_state

    def _record_error(self, slot: _Slot, exc: Exception) -> None:
        slot.errors += 1
        slot.consecutive_errors += 1
        slot.last_error = LastError(_message(exc), self._clock_ms())
        logger.warning(
            "Error in worker %s (TID %d): %s", slot.worker.name, slot.task_id, exc, exc_info=exc
        )
        limit = self._max_consecutive_errors
        if limit is not None and slot.consecutive_errors >= limit:
            slot.failed = True
            logger.error(
                "Worker %s (TID %d) failed %d times in a row; giving up on it",
                slot.worker.name,
                slot.task_id,
                slot.consecutive_errors,
            )
            return
        slot.state = WorkerState.throttled(
            _error_backoff_s(self._error_backoff_s, slot.consecutive_errors)
        )


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

"""BackgroundRunner: worker loops, error handling, info snapshots, spawning and shutdown.

No assertion here is about elapsed time. Tests wait for conditions with events or by
polling ``worker_info()`` with tiny sleeps, under a generous ``fail_after`` that only
guards against hangs; exit deadlines and back-offs are set tiny where they must pass, and
huge where a test shows they are not waited for.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from tests.polling import wait_until

from garage_util.background import (
    BackgroundRunner,
    LastError,
    RunnerClosedError,
    Worker,
    WorkerInfoState,
    WorkerState,
    WorkerStatus,
)
from garage_util.background._runner import _error_backoff_s
from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

RUNNER_LOGGER = "garage_util.background._runner"
HANG_GUARD_S = 10.0  # only to fail instead of hanging; no test relies on its value
FOREVER_S = 3600.0  # a deadline or back-off a test must never wait for
TINY_S = 0.001


@asynccontextmanager
async def running(runner: BackgroundRunner) -> AsyncIterator[BackgroundRunner]:
    """Run ``runner`` for the body of the block, then shut it down."""
    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            try:
                yield runner
            finally:
                await runner.shutdown()


# ---------------------------------------------------------------- workers used by the tests


class StepsWorker(Worker):
    """Does ``n`` steps, then is done."""

    def __init__(self, n: int, name: str = "steps") -> None:
        self._name = name
        self.n = n
        self.steps = 0

    @property
    def name(self) -> str:
        return self._name

    def status(self) -> WorkerStatus:
        return WorkerStatus(progress=f"{self.steps}/{self.n}", queue_length=self.n - self.steps)

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        self.steps += 1
        return WorkerState.DONE if self.steps >= self.n else WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        raise AssertionError("never idle")


class ForeverWorker(Worker):
    """Healthy and always busy: counts its steps."""

    name = "forever"

    def __init__(self) -> None:
        self.steps = 0

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        self.steps += 1
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        raise AssertionError("never idle")


class QueueWorker(Worker):
    """Processes a queue; idle when it is empty, woken by ``push``."""

    name = "queue"

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.processed: list[int] = []
        self.waits = 0
        self._wake = anyio.Event()

    def push(self, item: int) -> None:
        self.queue.append(item)
        self._wake.set()

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        if not self.queue:
            return WorkerState.IDLE
        self.processed.append(self.queue.pop(0))
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        self.waits += 1
        await self._wake.wait()
        self._wake = anyio.Event()
        return WorkerState.BUSY


class FailingWorker(Worker):
    """Raises at every step."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        raise RuntimeError(f"boom {self.calls}")

    async def wait_for_work(self) -> WorkerState:
        raise AssertionError("never idle")


class ScriptedWorker(Worker):
    """Plays a script: each step returns the next state or raises the next exception."""

    name = "scripted"

    def __init__(self, script: list[WorkerState | Exception]) -> None:
        self.script = list(script)
        self.calls = 0

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def wait_for_work(self) -> WorkerState:
        return WorkerState.BUSY


class BlockingWorker(Worker):
    """Its first step waits for ``release``; records whether it finished or was cancelled."""

    name = "blocking"

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.calls = 0
        self.finished = False
        self.cancelled = False

    async def work(self) -> WorkerState:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        self.finished = True
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        raise AssertionError("never idle")


class WaitingWorker(Worker):
    """Returns ``first`` from work(), then waits forever; records if its wait was cancelled."""

    name = "waiting"

    def __init__(self, first: WorkerState) -> None:
        self.first = first
        self.works = 0
        self.waiting = anyio.Event()
        self.wait_cancelled = False

    async def work(self) -> WorkerState:
        await anyio.lowlevel.checkpoint()
        self.works += 1
        return self.first

    async def wait_for_work(self) -> WorkerState:
        self.waiting.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.wait_cancelled = True
            raise
        raise AssertionError("unreachable")


# ---------------------------------------------------------------- the loop


async def test_worker_does_n_steps_then_is_done() -> None:
    runner = BackgroundRunner()
    worker = StepsWorker(5)
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.DONE)
        info = runner.worker_info()[tid]
    assert worker.steps == 5
    assert info.name == "steps"
    assert info.errors == 0
    assert info.consecutive_errors == 0
    assert info.last_error is None
    assert info.status == WorkerStatus(progress="5/5", queue_length=0)


async def test_idle_worker_is_woken_and_continues() -> None:
    runner = BackgroundRunner()
    worker = QueueWorker()
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.IDLE)
        assert worker.waits == 1
        worker.push(1)
        worker.push(2)
        await wait_until(lambda: worker.processed == [1, 2])
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.IDLE)
        worker.push(3)
        await wait_until(lambda: worker.processed == [1, 2, 3])
    assert worker.waits >= 2


async def test_throttled_worker_is_called_again() -> None:
    runner = BackgroundRunner()
    worker = ScriptedWorker([WorkerState.throttled(TINY_S), WorkerState.BUSY, WorkerState.DONE])
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.DONE)
    assert worker.calls == 3


async def test_info_lists_every_worker_by_task_id() -> None:
    runner = BackgroundRunner()
    done, busy = StepsWorker(1, name="one-step"), ForeverWorker()
    async with running(runner):
        tid_done = runner.spawn_worker(done)
        tid_busy = runner.spawn_worker(busy)
        await wait_until(lambda: runner.worker_info()[tid_done].state is WorkerInfoState.DONE)
        await wait_until(lambda: busy.steps >= 3)
        info = runner.worker_info()
        assert list(info) == [tid_done, tid_busy] == [1, 2]
        assert info[tid_done].name == "one-step"
        assert info[tid_busy].name == "forever"
        assert info[tid_busy].state is WorkerInfoState.BUSY
        assert info[tid_busy].status == WorkerStatus()
    # Listed after shutdown too, as garage worker list does for finished workers.
    assert set(runner.worker_info()) == {1, 2}


# ---------------------------------------------------------------- errors


async def test_failing_worker_backs_off_while_sibling_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = BackgroundRunner(error_backoff_s=TINY_S / 1000, clock_ms=lambda: 1_700_000_000_123)
    failing, healthy = FailingWorker(), ForeverWorker()
    with caplog.at_level(logging.WARNING, logger=RUNNER_LOGGER):
        async with running(runner):
            tid_failing = runner.spawn_worker(failing)
            tid_healthy = runner.spawn_worker(healthy)
            await wait_until(lambda: runner.worker_info()[tid_failing].errors >= 3)
            steps_then = healthy.steps
            await wait_until(lambda: healthy.steps > steps_then + 3)
            info = runner.worker_info()
            assert info[tid_healthy].errors == 0
            assert info[tid_healthy].state is WorkerInfoState.BUSY
            bad = info[tid_failing]
            assert bad.errors >= 3
            assert bad.consecutive_errors == bad.errors
            assert bad.state in (WorkerInfoState.THROTTLED, WorkerInfoState.BUSY)
            assert bad.last_error is not None
            assert bad.last_error.message.startswith("boom ")
            assert bad.last_error.ts_msec == 1_700_000_000_123
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= 3
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in warnings)
    assert "failing" in warnings[0].getMessage()


async def test_consecutive_errors_reset_after_a_successful_step() -> None:
    runner = BackgroundRunner(error_backoff_s=TINY_S / 1000, clock_ms=iter(range(1, 100)).__next__)
    worker = ScriptedWorker(
        [
            ValueError("first"),
            ValueError("second"),
            WorkerState.BUSY,
            KeyError("third"),
            WorkerState.DONE,
        ]
    )
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.DONE)
    info = runner.worker_info()[tid]
    assert worker.calls == 5
    assert info.errors == 3
    assert info.consecutive_errors == 0
    assert info.last_error == LastError(message="'third'", ts_msec=3)


async def test_max_consecutive_errors_marks_the_worker_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = BackgroundRunner(error_backoff_s=TINY_S / 1000, max_consecutive_errors=3)
    failing, healthy = FailingWorker(), ForeverWorker()
    with caplog.at_level(logging.WARNING, logger=RUNNER_LOGGER):
        async with running(runner):
            tid_failing = runner.spawn_worker(failing)
            runner.spawn_worker(healthy)
            await wait_until(
                lambda: runner.worker_info()[tid_failing].state is WorkerInfoState.FAILED
            )
            steps_then = healthy.steps
            await wait_until(lambda: healthy.steps > steps_then + 3)
            info = runner.worker_info()[tid_failing]
            assert failing.calls == 3
            assert info.errors == info.consecutive_errors == 3
            assert info.last_error is not None
            assert info.last_error.message == "boom 3"
    assert failing.calls == 3
    assert any(r.levelno == logging.ERROR and "giving up" in r.getMessage() for r in caplog.records)


async def test_error_in_wait_for_work_is_counted_and_retried() -> None:
    class BadWaiter(Worker):
        name = "bad-waiter"

        def __init__(self) -> None:
            self.works = 0

        async def work(self) -> WorkerState:
            await anyio.lowlevel.checkpoint()
            self.works += 1
            return WorkerState.IDLE if self.works == 1 else WorkerState.DONE

        async def wait_for_work(self) -> WorkerState:
            await anyio.lowlevel.checkpoint()
            raise OSError("watch failed")

    runner = BackgroundRunner(error_backoff_s=TINY_S / 1000)
    worker = BadWaiter()
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.DONE)
    info = runner.worker_info()[tid]
    assert worker.works == 2
    assert info.errors == 1
    assert info.last_error is not None
    assert info.last_error.message == "watch failed"


async def test_returning_something_else_than_a_state_is_an_error() -> None:
    worker = ScriptedWorker(
        [None, WorkerState.DONE]  # type: ignore[list-item]  # the runtime check under test
    )
    runner = BackgroundRunner(error_backoff_s=TINY_S / 1000)
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is WorkerInfoState.DONE)
    info = runner.worker_info()[tid]
    assert info.errors == 1
    assert info.last_error is not None
    assert "instead of a WorkerState" in info.last_error.message


async def test_a_raising_status_is_reported_not_propagated() -> None:
    class BadStatus(ForeverWorker):
        def status(self) -> WorkerStatus:
            raise ZeroDivisionError("oops")

    runner = BackgroundRunner()
    tid = runner.spawn_worker(BadStatus())
    async with running(runner):
        status = runner.worker_info()[tid].status
    assert status.freeform == ("status() failed: oops",)


def test_error_backoff_grows_by_half_and_plateaus_after_ten() -> None:
    assert _error_backoff_s(1.0, 1) == 1.0
    assert _error_backoff_s(1.0, 2) == 1.5
    assert _error_backoff_s(2.0, 3) == 2.0 * 1.5**2
    assert _error_backoff_s(1.0, 11) == 1.5**10
    assert _error_backoff_s(1.0, 1000) == 1.5**10


# ---------------------------------------------------------------- spawning


async def test_spawn_before_and_after_run_started() -> None:
    runner = BackgroundRunner()
    early, late = StepsWorker(2, name="early"), StepsWorker(3, name="late")
    tid_early = runner.spawn_worker(early)
    assert runner.worker_info()[tid_early].state is WorkerInfoState.BUSY  # not started yet
    assert early.steps == 0
    async with running(runner):
        tid_late = runner.spawn_worker(late)
        await wait_until(
            lambda: all(i.state is WorkerInfoState.DONE for i in runner.worker_info().values())
        )
    assert (tid_early, tid_late) == (1, 2)
    assert (early.steps, late.steps) == (2, 3)


async def test_spawn_after_stop_is_refused() -> None:
    runner = BackgroundRunner()
    async with running(runner):
        runner.stop()
        with pytest.raises(RunnerClosedError, match="shutting down"):
            runner.spawn_worker(ForeverWorker())
    with pytest.raises(RunnerClosedError) as info:
        runner.spawn_worker(ForeverWorker())
    assert isinstance(info.value, GarageError)
    assert runner.worker_info() == {}


async def test_run_can_only_be_called_once() -> None:
    runner = BackgroundRunner()
    async with running(runner):
        with pytest.raises(RuntimeError, match="once"):
            await runner.run()
    with pytest.raises(RuntimeError, match="once"):
        await runner.run()


async def test_stop_before_run_starts_nothing() -> None:
    runner = BackgroundRunner()
    worker = ForeverWorker()
    runner.spawn_worker(worker)
    await runner.shutdown()  # run() never started: returns at once
    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
    assert worker.steps == 0


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="exit_deadline_s"):
        BackgroundRunner(exit_deadline_s=-1)
    with pytest.raises(ValueError, match="error_backoff_s"):
        BackgroundRunner(error_backoff_s=float("nan"))
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        BackgroundRunner(max_consecutive_errors=0)


# ---------------------------------------------------------------- shutdown


@pytest.mark.parametrize(
    "first", [WorkerState.IDLE, WorkerState.throttled(FOREVER_S)], ids=["idle", "throttled"]
)
async def test_idle_and_throttled_workers_stop_at_once(first: WorkerState) -> None:
    # With an hour-long exit deadline and back-off, shutdown can only return through the
    # loops being interrupted, not by waiting.
    runner = BackgroundRunner(exit_deadline_s=FOREVER_S)
    worker = WaitingWorker(first)
    expected = WorkerInfoState.IDLE if first == WorkerState.IDLE else WorkerInfoState.THROTTLED
    async with running(runner):
        tid = runner.spawn_worker(worker)
        await wait_until(lambda: runner.worker_info()[tid].state is expected)
        if first == WorkerState.IDLE:
            await worker.waiting.wait()
    assert worker.works == 1
    assert worker.wait_cancelled == (first == WorkerState.IDLE)
    assert runner.worker_info()[tid].state is expected


async def test_busy_step_that_finishes_in_time_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = BackgroundRunner(exit_deadline_s=FOREVER_S)
    worker = BlockingWorker()
    run_returned = False

    async def run_it(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal run_returned
        await runner.run(task_status=task_status)
        run_returned = True

    with caplog.at_level(logging.INFO, logger=RUNNER_LOGGER), anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(run_it)
            runner.spawn_worker(worker)
            await worker.started.wait()
            runner.stop()
            await anyio.sleep(TINY_S)  # let the runner react to the stop
            assert not run_returned  # the step is still running
            worker.release.set()
            await runner.shutdown()
            assert run_returned
    assert worker.finished
    assert not worker.cancelled
    assert worker.calls == 1  # no step starts after stop
    assert any("All background workers exited" in r.getMessage() for r in caplog.records)


async def test_busy_step_past_the_exit_deadline_is_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = BackgroundRunner(exit_deadline_s=TINY_S)
    stuck, idle = BlockingWorker(), WaitingWorker(WorkerState.IDLE)
    with caplog.at_level(logging.ERROR, logger=RUNNER_LOGGER):
        async with running(runner):
            runner.spawn_worker(stuck)
            runner.spawn_worker(idle)
            await stuck.started.wait()
            await idle.waiting.wait()
            # running() shuts down here; the stuck step never gets its release.
    assert stuck.cancelled
    assert not stuck.finished
    assert idle.wait_cancelled
    assert any("cancelled in the middle" in r.getMessage() for r in caplog.records)


async def test_cancelling_the_outer_scope_cancels_every_worker() -> None:
    runner = BackgroundRunner(exit_deadline_s=FOREVER_S)
    stuck, idle, busy = BlockingWorker(), WaitingWorker(WorkerState.IDLE), ForeverWorker()
    with anyio.fail_after(HANG_GUARD_S), anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            for w in (stuck, idle, busy):
                runner.spawn_worker(w)
            await stuck.started.wait()
            await idle.waiting.wait()
            await wait_until(lambda: busy.steps > 0)
            outer.cancel()
    assert outer.cancelled_caught
    assert stuck.cancelled
    assert idle.wait_cancelled
    await runner.shutdown()  # run() has returned: nothing to wait for
    with pytest.raises(RunnerClosedError):
        runner.spawn_worker(ForeverWorker())


async def test_shutdown_is_idempotent() -> None:
    runner = BackgroundRunner()
    async with running(runner):
        runner.spawn_worker(ForeverWorker())
        await runner.shutdown()
        await runner.shutdown()
    await runner.shutdown()

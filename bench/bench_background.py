"""Benchmark: the runner's overhead per worker step, on trio and on asyncio.

Each worker's step does nothing but count, so the figure is the cost the runner adds per
step (state dispatch, bookkeeping, the fairness checkpoint). Run it with
``uv run nox -s bench -- bench_background``.
"""

from __future__ import annotations

import time

import anyio

from garage_util.background import BackgroundRunner, Worker, WorkerState

Row = tuple[str, str, float, str]

STEPS_PER_WORKER = 20_000
WORKERS = (1, 10)


class CountingWorker(Worker):
    """Returns BUSY ``n`` times, then DONE; sets ``done`` when finished."""

    name = "counting"

    def __init__(self, n: int, done: anyio.Event) -> None:
        self._left = n
        self._done = done

    async def work(self) -> WorkerState:
        self._left -= 1
        if self._left > 0:
            return WorkerState.BUSY
        self._done.set()
        return WorkerState.DONE

    async def wait_for_work(self) -> WorkerState:
        raise AssertionError("never idle")


async def measure(n_workers: int, steps: int = STEPS_PER_WORKER) -> float:
    """Steps per second with ``n_workers`` workers stepping concurrently."""
    runner = BackgroundRunner()
    events = [anyio.Event() for _ in range(n_workers)]
    for ev in events:
        runner.spawn_worker(CountingWorker(steps, ev))
    async with anyio.create_task_group() as tg:
        start = time.perf_counter()
        await tg.start(runner.run)
        for ev in events:
            await ev.wait()
        elapsed = time.perf_counter() - start
        await runner.shutdown()
    return n_workers * steps / elapsed


def run(quick: bool) -> list[Row]:
    """Runner steps per second for 1 and 10 workers, trio first (the ratio baseline)."""
    steps = STEPS_PER_WORKER // 10 if quick else STEPS_PER_WORKER
    return [
        (
            f"runner steps, {n} workers",
            backend,
            anyio.run(measure, n, steps, backend=backend),
            "steps/s",
        )
        for n in WORKERS
        for backend in ("trio", "asyncio")
    ]


if __name__ == "__main__":
    for row in run(quick=False):
        print(*row)

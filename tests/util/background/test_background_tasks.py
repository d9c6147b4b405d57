"""BackgroundTasks: work that outlives the request that started it, owned by a service."""

from __future__ import annotations

import anyio
import pytest

from garage_util.background import BackgroundTasks

pytestmark = pytest.mark.anyio


async def test_tasks_outlive_their_starter_and_end_with_the_service() -> None:
    tasks = BackgroundTasks("test work")
    with pytest.raises(RuntimeError, match="test work must be started first"):
        tasks.start_soon(anyio.sleep, 0)
    finished = anyio.Event()
    cancelled = anyio.Event()

    async def short() -> None:
        finished.set()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with anyio.create_task_group() as service:
        await service.start(tasks.run)
        assert tasks.running

        async def request() -> None:  # returns at once; its work goes on
            tasks.start_soon(short)
            tasks.start_soon(forever)

        await request()
        with anyio.fail_after(5):
            await finished.wait()
        assert not cancelled.is_set()
        service.cancel_scope.cancel()
    assert cancelled.is_set()
    assert not tasks.running

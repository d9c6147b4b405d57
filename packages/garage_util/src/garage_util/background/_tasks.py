"""A long-lived task group for work that must outlive the request that started it.

A quorum write returns to its caller once a quorum acknowledged, while the remaining
replicas are still being written; a read returns while its read repair goes on. That work
cannot live in the request's own task group (leaving it would cancel the work) and must
not be fire-and-forget (STYLE §6). It runs in the task group of a service started once
with the node: :meth:`BackgroundTasks.run`, and ends when that service is cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVarTuple, Unpack, final

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["BackgroundTasks"]

Ts = TypeVarTuple("Ts")


@final
class BackgroundTasks:
    """Owns a task group from :meth:`run` until that service is cancelled.

    Args:
        what: what the tasks are, for error messages (``"write continuations"``).
    """

    __slots__ = ("_tg", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        """True while :meth:`run` is running (tasks can be started)."""
        return self._tg is not None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hosts the tasks until cancelled; start it with ``await tg.start(tasks.run)``."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def start_soon(
        self, fn: Callable[[Unpack[Ts]], Coroutine[object, object, object]], *args: *Ts
    ) -> None:
        """Starts ``fn(*args)`` in the service's task group.

        Raises:
            RuntimeError: when :meth:`run` is not running.
        """
        if self._tg is None:
            raise RuntimeError(f"the service running {self._what} must be started first")
        self._tg.start_soon(fn, *args)

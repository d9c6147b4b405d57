"""Waiting in tests for state that has no change notification (other services, a db)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable


async def wait_until(
    condition: Callable[[], bool],
    what: str = "condition",
    *,
    timeout_s: float = 15,
    poll_s: float = 0.01,
) -> None:
    """Polls ``condition`` until it holds; fails the test after ``timeout_s``.

    A deadline guards against hangs only: tests never assert how long anything took.
    """
    try:
        with anyio.fail_after(timeout_s):
            # Polling on purpose: the conditions are other services' state, with no events.
            while not condition():  # noqa: ASYNC110
                await anyio.sleep(poll_s)
    except TimeoutError:
        raise AssertionError(f"gave up waiting: {what}") from None

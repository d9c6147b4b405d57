"""A wake-up signal raised from any thread and awaited by tasks (tokio's ``Notify``).

Theory of operation
-------------------
Table writes are synchronous db transactions. They normally run in an anyio worker thread
(``anyio.to_thread.run_sync``), sometimes directly in the event-loop thread (tests, short
local writes), and their ``on_commit`` callbacks run on whichever thread committed. Those
callbacks must wake background workers (Merkle updater, insert queue) that sleep in
:meth:`Notifier.wait` on the event loop, and an ``anyio.Event`` may only be set from its own
loop's thread. :class:`Notifier` bridges the two:

* A *permit* flag, guarded by a ``threading.Lock``, records "notified since the last wait
  returned". :meth:`Notifier.notify` sets it; :meth:`Notifier.wait` consumes it.
* A waiter registers a fresh ``anyio.Event`` (re-armed per wait, never reused) together with
  its loop's token and thread id. ``notify`` sets that event directly when it runs on the
  waiter's thread, and otherwise hands ``event.set`` to the loop with
  ``anyio.from_thread.run_sync(..., token=...)``, which works from anyio worker threads and
  from foreign threads alike, on trio and asyncio. If that loop has already finished there
  is nobody left to wake, and the call is dropped.

Invariants:

* A permit is never lost: a ``notify`` that finds no waiter leaves the permit set, and the
  next ``wait`` returns at once. A ``wait`` that is cancelled after being woken (a timeout
  racing the wake-up) leaves the permit set for the next one.
* ``permit set`` implies "no registered waiter": ``notify`` wakes and unregisters every
  waiter when it sets the permit, and ``wait`` only registers while the permit is clear.
  So a burst of ``notify`` calls (every ``queue_insert`` of a transaction registers one)
  costs one cross-thread hand-off, the rest only take the lock and return.
* A woken waiter clears the permit when it returns. Notifications that arrive between the
  wake-up and the caller's next look at the db are covered by that look, since every
  ``notify`` is sent after its transaction committed.

``notify`` blocks the calling worker thread for one event-loop round trip when it has a
waiter to wake from another thread (``from_thread.run_sync`` waits for the loop). It is
called after the transaction released the db write lock, so this cannot deadlock with a loop
that is itself waiting for the db. Workers still put a deadline on every wait
(``anyio.move_on_after``: 60 s for Merkle, 600 s for the queue, as in Garage), so that even
a wake-up that could not be delivered delays work by at most that long.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import final

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class _Waiter:
    """One pending :meth:`Notifier.wait`: its event, its loop and the loop's thread."""

    event: anyio.Event
    token: anyio.lowlevel.EventLoopToken
    thread_id: int


@final
class Notifier:
    """A thread-safe wake-up signal with a single stored permit.

    Any thread may call :meth:`notify`; tasks on an event loop await :meth:`wait`. Use one
    per kind of work (the Merkle todo, the insert queue); several tasks may wait on it.
    """

    __slots__ = ("_lock", "_permit", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._permit = False
        self._waiters: list[_Waiter] = []

    def __repr__(self) -> str:
        return f"<Notifier permit={self._permit} waiters={len(self._waiters)}>"

    @property
    def pending(self) -> bool:
        """True when a notification is stored that no ``wait`` has consumed yet."""
        return self._permit

    def notify(self) -> None:
        """Wake every task waiting now, or store a permit for the next ``wait``.

        Safe from any thread, inside or outside an event loop; never raises because a
        waiter's loop has ended. Typically passed to ``Transaction.on_commit``.
        """
        with self._lock:
            if self._permit:
                # Already signalled: the waiters of that signal were all woken then, and
                # nobody registers while the permit is set.
                return
            self._permit = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _wake(waiter)

    async def wait(self) -> None:
        """Return once notified since the previous ``wait`` returned, consuming the permit.

        Returns at once (after a checkpoint) if a permit is already stored. Bound it with
        the caller's ``anyio.move_on_after``; cancelling it never loses a notification.
        """
        with self._lock:
            if self._permit:
                self._permit = False
                waiter = None
            else:
                waiter = _Waiter(
                    anyio.Event(), anyio.lowlevel.current_token(), threading.get_ident()
                )
                self._waiters.append(waiter)
        if waiter is None:
            await anyio.lowlevel.checkpoint()
            return
        completed = False
        try:
            await waiter.event.wait()
            completed = True
        finally:
            with self._lock:
                if waiter in self._waiters:
                    # Not woken (cancelled, timed out): just unregister.
                    self._waiters.remove(waiter)
                elif completed:
                    # Woken and returning: this wait consumes the permit.
                    self._permit = False
                # Woken but cancelled before returning: keep the permit for the next wait.


def _wake(waiter: _Waiter) -> None:
    """Set a waiter's event from whatever thread ``notify`` runs on."""
    if threading.get_ident() == waiter.thread_id:
        waiter.event.set()
        return
    try:
        anyio.from_thread.run_sync(waiter.event.set, token=waiter.token)
    except RuntimeError:
        # The waiter's event loop has finished (trio.RunFinishedError and asyncio's "event
        # loop is closed" are RuntimeErrors): nobody is left to wake.
        logger.debug("notify: the waiting event loop is gone; wake-up dropped")

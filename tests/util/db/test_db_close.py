"""Closing the db while another thread reads must neither deadlock nor crash.

A node shutting down closes its db while a worker thread may still be in a read (a worker
cancelled mid-step leaves its thread running to the end of the call). Found by the table
cluster tests: sqlite's close waited for the reading thread, which waited for the GIL.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from garage_util.db import open_db
from garage_util.errors import DbError

if TYPE_CHECKING:
    from pathlib import Path


def test_close_while_another_thread_reads(engine: str, tmp_path: Path) -> None:
    db = open_db(tmp_path, engine)
    tree = db.open_tree("t")

    def fill(tx: object) -> None:
        for i in range(5000):
            tx.insert(tree, i.to_bytes(4, "big"), b"v" * 100)  # type: ignore[attr-defined]

    db.transaction(fill)
    started = threading.Event()
    outcome: list[str] = []

    def reader() -> None:
        try:
            while True:
                assert sum(1 for _ in tree.range()) == 5000
                started.set()
        except DbError:
            outcome.append("DbError")
        finally:
            started.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert started.wait(30)
    db.close()
    thread.join(30)
    assert not thread.is_alive(), "close() deadlocked with a reading thread"
    assert outcome == ["DbError"]  # reads after close fail clearly

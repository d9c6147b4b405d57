"""Crash test: a writer killed with SIGKILL loses no acknowledged transaction, and leaves none
half-applied.

A child process (``crash_child.py``) commits numbered transactions spanning three trees and
acknowledges each on stdout once ``Db.transaction`` has returned. The parent kills it after a
random number of acknowledgements, checks the db, and starts it again on the same db (it
continues where the previous round ended), a few times. SIGKILL leaves the OS page cache
intact, so this checks atomicity and process-crash durability (the ``fsync=False`` promise),
not power loss.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from garage_util.db import open_db

CHILD = Path(__file__).with_name("crash_child.py")
PER_TX = 8  # keys of tree "b:pairs" per transaction, as in crash_child.py
ROUNDS = 8


def check_db(db_dir: Path, engine: str, acked_max: int) -> int:
    """Assert the db holds exactly the complete transactions 0..last; return ``last``."""
    with open_db(db_dir, engine) as db:
        a, b, meta = db.open_tree("a"), db.open_tree("b:pairs"), db.open_tree("meta")
        raw = meta.get(b"last")
        last = -1 if raw is None else int.from_bytes(raw, "big")
        # Every acknowledged transaction is there; at most one more (committed, then killed
        # before its acknowledgement was written).
        assert acked_max <= last <= acked_max + 1
        # Whatever is there at all is complete: exactly the transactions 0..last.
        assert list(a.iter()) == [(i.to_bytes(8, "big"), b"a%d" % i) for i in range(last + 1)]
        assert list(b.iter()) == [
            (i.to_bytes(8, "big") + bytes([j]), b"b%d.%d" % (i, j))
            for i in range(last + 1)
            for j in range(PER_TX)
        ]
    return last


@pytest.mark.timeout(60)
def test_sigkill_loses_no_acknowledged_and_exposes_no_partial_transaction(
    engine: str, db_dir: Path, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    acked_max = -1
    stderr_path = tmp_path / "child.stderr"
    for round_no in range(ROUNDS):
        target = rng.randint(3, 300)
        acks = 0
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(db_dir), engine],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                i = int(line)
                # Sequential, starting right after the last transaction of the last round.
                assert i == acked_max + 1, f"seed={seed} round={round_no}: ack {i}"
                acked_max = i
                acks += 1
                if acks >= target:
                    break
            proc.send_signal(signal.SIGKILL)
            # Lines already in the pipe were acknowledged before the kill.
            for line in proc.stdout.read().splitlines(keepends=True):
                if line.endswith("\n"):
                    acked_max = max(acked_max, int(line))
                    acks += 1
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        context = f"seed={seed} round={round_no} acks={acks}: {stderr_path.read_text()}"
        assert acks >= target, f"child stopped early, {context}"
        assert returncode == -signal.SIGKILL, context
        last = check_db(db_dir, engine, acked_max)
        # The next round continues after the last committed transaction, acked or not.
        acked_max = last

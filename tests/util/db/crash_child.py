"""Child process of the crash test: commit numbered transactions until killed.

Usage: ``python crash_child.py DB_DIR ENGINE``. Transaction ``i`` writes tree ``a`` key ``i``,
tree ``b`` keys ``(i, j)`` for ``j < 8`` and tree ``meta`` key ``last`` = ``i``. It continues
after the ``last`` already stored, and writes ``i`` to stdout (flushed) once the commit has
returned, so every number the parent reads is an acknowledged, durable transaction.
"""

from __future__ import annotations

import sys

from garage_util.db import Transaction, open_db

PER_TX = 8


def main(db_dir: str, engine: str) -> None:
    db = open_db(db_dir, engine)
    a, b, meta = db.open_tree("a"), db.open_tree("b:pairs"), db.open_tree("meta")
    last = meta.get(b"last")
    i = 0 if last is None else int.from_bytes(last, "big") + 1
    out = sys.stdout
    while True:

        def write(tx: Transaction, i: int = i) -> None:
            key = i.to_bytes(8, "big")
            tx.insert(a, key, b"a%d" % i)
            for j in range(PER_TX):
                tx.insert(b, key + bytes([j]), b"b%d.%d" % (i, j))
            tx.insert(meta, b"last", key)

        db.transaction(write)
        out.write(f"{i}\n")
        out.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

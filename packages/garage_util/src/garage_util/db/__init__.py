"""The metadata database: named sorted trees of bytes, with atomic transactions.

Two engines store it: sqlite (stdlib, the default) and LMDB (the ``garage-util[lmdb]``
extra). Both behave identically through this interface (Garage: src/db/).

Example::

    from garage_util.db import open_db

    with open_db("/var/lib/garage/meta", "sqlite") as db:
        objects = db.open_tree("object:table")
        counters = db.open_tree("counters")

        def put(tx):
            tx.insert(objects, b"bucket/key", b"...")
            n = int.from_bytes(tx.get(counters, b"objects") or b"\\0", "big")
            tx.insert(counters, b"objects", (n + 1).to_bytes(8, "big"))

        db.transaction(put)
        for key, value in objects.range(b"bucket/", b"bucket0"):
            ...

All calls are synchronous and short: from async code run each through
``anyio.to_thread.run_sync``.

Keys are 1 to ``db.max_key_bytes`` bytes: 4,096 on sqlite (``SQLITE_MAX_KEY_BYTES``), 511 on
LMDB (``LMDB_MAX_KEY_BYTES``, LMDB's own limit). ``MAX_KEY_BYTES`` (511) is the portable
limit: a db whose keys fit it can be copied to either engine.
"""

from ._api import Db as Db
from ._api import Transaction as Transaction
from ._api import Tree as Tree
from ._bounds import LMDB_MAX_KEY_BYTES as LMDB_MAX_KEY_BYTES
from ._bounds import MAX_KEY_BYTES as MAX_KEY_BYTES
from ._bounds import SQLITE_MAX_KEY_BYTES as SQLITE_MAX_KEY_BYTES
from ._bounds import Bound as Bound
from ._bounds import Excluded as Excluded
from ._bounds import Included as Included
from ._open import ENGINES as ENGINES
from ._open import open_db as open_db

__all__ = [
    "ENGINES",
    "LMDB_MAX_KEY_BYTES",
    "MAX_KEY_BYTES",
    "SQLITE_MAX_KEY_BYTES",
    "Bound",
    "Db",
    "Excluded",
    "Included",
    "Transaction",
    "Tree",
    "open_db",
]

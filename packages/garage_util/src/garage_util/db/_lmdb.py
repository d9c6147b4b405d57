"""The LMDB engine (py-lmdb, the ``garage-util[lmdb]`` extra; Garage: src/db/lmdb_adapter.rs).

Theory of operation:
    The db is one LMDB environment, the directory ``<dir>/db.lmdb/``. Each tree is a named
    sub-database, whose name (UTF-8) is a key of the environment's main database; that is
    where :meth:`LmdbEngine.list_trees` reads them from. LMDB keeps keys sorted with
    memcmp-then-length, i.e. bytewise order, and limits them to 511 bytes
    (``LMDB_MAX_KEY_BYTES``).

    * Reads outside transactions each run in their own short read transaction (MVCC: they
      never block and are never blocked by the writer). py-lmdb always uses ``MDB_NOTLS``,
      so a thread may read while it also holds the write transaction.
    * Every write is a write transaction, started, run and committed on one thread, with the
      db's write lock held: LMDB's own writer mutex is then never contended within the
      process, and a nested transaction is reported as an error by the neutral layer instead
      of deadlocking on that mutex.
    * Durability: with ``fsync=False`` the environment uses ``MDB_NOSYNC | MDB_NOMETASYNC``:
      a commit has been written to the OS when it returns (it survives the process being
      killed), but is not fsynced, so power loss may undo the last commits. LMDB's
      copy-on-write B-tree and double meta page keep the db consistent regardless. With
      ``fsync=True`` each commit is fsynced before it returns.
    * The map size is the maximum size of the db (address space is reserved, not disk). When
      it is exhausted, writes fail with a :class:`DbError` saying to raise ``lmdb_map_size``.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, ClassVar, final

import lmdb

from garage_util.errors import DbError

from ._bounds import LMDB_MAX_KEY_BYTES, Excluded, Included
from ._engine import Engine, EngineTx

if TYPE_CHECKING:
    from pathlib import Path

    from ._bounds import NormBound
    from ._engine import Item

__all__ = ["LmdbEngine"]

logger = logging.getLogger(__name__)

# Named databases (trees) the environment can hold. Garage uses 5 trees per table and a few
# more for blocks and counters, about 70 in all; LMDB searches the open slots linearly and
# reserves a few words per slot per transaction, so a moderate bound is cheap.
_MAX_DBS = 256

_Txn = lmdb.Transaction


def _error(engine: LmdbEngine, what: str, e: lmdb.Error) -> DbError:
    if isinstance(e, lmdb.MapFullError):
        return DbError(
            f"lmdb: {what} failed: the LMDB map is full (lmdb_map_size = {engine.map_size} "
            "bytes): raise lmdb_map_size in the configuration and restart"
        )
    if isinstance(e, lmdb.DbsFullError):
        return DbError(f"lmdb: {what} failed: too many trees (at most {_MAX_DBS}): {e}")
    return DbError(f"lmdb: {what} failed: {e}")


def _scan(
    txn: _Txn[bytes],
    db: lmdb._Database,
    lo: NormBound,
    hi: NormBound,
    reverse: bool,
    limit: int,
) -> list[Item]:
    """One bounded batch of a range scan; the cursor is closed before returning."""
    out: list[Item] = []
    with txn.cursor(db=db) as cur:
        if not reverse:
            if lo is None:
                positioned = cur.first()
            else:
                positioned = cur.set_range(lo.key)
                if positioned and isinstance(lo, Excluded) and cur.key() == lo.key:
                    positioned = cur.next()
            if not positioned:
                return out
            hi_key = None if hi is None else hi.key
            hi_incl = isinstance(hi, Included)
            for k, v in cur.iternext():
                if hi_key is not None and (k > hi_key if hi_incl else k >= hi_key):
                    break
                out.append((k, v))
                if len(out) >= limit:
                    break
        else:
            if hi is None:
                positioned = cur.last()
            elif cur.set_range(hi.key):
                # At the first key >= hi: step back unless it is exactly an included hi.
                if isinstance(hi, Included) and cur.key() == hi.key:
                    positioned = True
                else:
                    positioned = cur.prev()
            else:
                positioned = cur.last()  # every key is < hi
            if not positioned:
                return out
            lo_key = None if lo is None else lo.key
            lo_incl = isinstance(lo, Included)
            for k, v in cur.iterprev():
                if lo_key is not None and (k < lo_key if lo_incl else k <= lo_key):
                    break
                out.append((k, v))
                if len(out) >= limit:
                    break
    return out


@final
class _LmdbTx(EngineTx):
    """One LMDB write transaction."""

    __slots__ = ("_dbs", "_engine", "_finished", "_txn")

    def __init__(
        self, engine: LmdbEngine, txn: _Txn[bytes], dbs: dict[str, lmdb._Database]
    ) -> None:
        self._engine = engine
        self._txn = txn
        self._dbs = dbs
        self._finished = False

    def get(self, tree: str, key: bytes) -> bytes | None:
        try:
            return self._txn.get(key, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self._engine, "get", e) from e

    def len(self, tree: str) -> int:
        try:
            return self._txn.stat(self._dbs[tree])["entries"]
        except lmdb.Error as e:
            raise _error(self._engine, "count", e) from e

    def range_batch(
        self, tree: str, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> list[Item]:
        try:
            return _scan(self._txn, self._dbs[tree], lo, hi, reverse, limit)
        except lmdb.Error as e:
            raise _error(self._engine, "range scan", e) from e

    def insert(self, tree: str, key: bytes, value: bytes) -> None:
        try:
            self._txn.put(key, value, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self._engine, "insert", e) from e

    def remove(self, tree: str, key: bytes) -> None:
        try:
            self._txn.delete(key, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self._engine, "remove", e) from e

    def clear(self, tree: str) -> None:
        try:
            self._txn.drop(self._dbs[tree], delete=False)
        except lmdb.Error as e:
            raise _error(self._engine, "clear", e) from e

    def commit(self) -> None:
        self._finished = True
        try:
            self._txn.commit()
        except lmdb.Error as e:
            # mdb_txn_commit frees the transaction even when it fails: nothing was written.
            raise _error(self._engine, "commit", e) from e

    def rollback(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._txn.abort()
        except lmdb.Error as e:
            raise _error(self._engine, "rollback", e) from e


@final
class LmdbEngine(Engine):
    """The LMDB engine; see the module docstring."""

    __slots__ = ("_dbs", "_env", "map_size")

    name: ClassVar[str] = "lmdb"
    max_key_bytes: ClassVar[int] = LMDB_MAX_KEY_BYTES

    def __init__(self, path: Path, *, fsync: bool, map_size: int) -> None:
        """Open (creating if needed) the LMDB environment in the directory ``path``.

        Raises:
            DbError: LMDB refused to open the environment.
        """
        self.map_size = map_size
        self._dbs: dict[str, lmdb._Database] = {}
        try:
            self._env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=_MAX_DBS,
                subdir=True,
                sync=fsync,
                metasync=fsync,
                lock=True,
                # Garage opens with MDB_NORDAHEAD too: metadata reads are random, and OS
                # readahead would evict useful pages once the db outgrows RAM.
                readahead=False,
            )
        except lmdb.Error as e:
            raise _error(self, f"opening {path}", e) from e
        try:
            # Free reader slots left behind by a process that was killed (crash recovery).
            stale = self._env.reader_check()
        except lmdb.Error as e:
            self._env.close()
            raise _error(self, f"opening {path}", e) from e
        if stale:
            logger.warning("lmdb: cleared %d stale reader slots in %s", stale, path)
        logger.info("opened lmdb metadata db %s (fsync=%s, map_size=%d)", path, fsync, map_size)

    # The Engine interface ------------------------------------------------------------------

    def has_tree(self, name: str) -> bool:
        return name in self._dbs

    def open_tree(self, name: str) -> None:
        try:
            self._dbs[name] = self._env.open_db(name.encode("utf-8"), create=True)
        except lmdb.Error as e:
            raise _error(self, f"opening tree {name!r}", e) from e

    def list_trees(self) -> list[str]:
        try:
            with self._env.begin() as txn, txn.cursor() as cur:
                raw = list(cur.iternext(values=False))
        except lmdb.Error as e:
            raise _error(self, "listing trees", e) from e
        names = []
        for key in raw:
            try:
                names.append(key.decode("utf-8"))
            except UnicodeDecodeError:
                continue  # not a tree this package created
        return names

    def get(self, tree: str, key: bytes) -> bytes | None:
        try:
            with self._env.begin() as txn:
                return txn.get(key, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self, "get", e) from e

    def len(self, tree: str) -> int:
        try:
            with self._env.begin() as txn:
                return txn.stat(self._dbs[tree])["entries"]
        except lmdb.Error as e:
            raise _error(self, "count", e) from e

    def range_batch(
        self, tree: str, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> list[Item]:
        try:
            with self._env.begin() as txn:
                return _scan(txn, self._dbs[tree], lo, hi, reverse, limit)
        except lmdb.Error as e:
            raise _error(self, "range scan", e) from e

    def insert(self, tree: str, key: bytes, value: bytes) -> None:
        try:
            with self._env.begin(write=True) as txn:
                txn.put(key, value, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self, "insert", e) from e

    def remove(self, tree: str, key: bytes) -> None:
        try:
            with self._env.begin(write=True) as txn:
                txn.delete(key, db=self._dbs[tree])
        except lmdb.Error as e:
            raise _error(self, "remove", e) from e

    def clear(self, tree: str) -> None:
        try:
            with self._env.begin(write=True) as txn:
                txn.drop(self._dbs[tree], delete=False)
        except lmdb.Error as e:
            raise _error(self, "clear", e) from e

    def begin(self) -> EngineTx:
        try:
            txn = self._env.begin(write=True)
        except lmdb.Error as e:
            raise _error(self, "begin", e) from e
        return _LmdbTx(self, txn, self._dbs)

    def snapshot(self, to_dir: Path) -> Path:
        target = to_dir / "db.lmdb"
        if target.exists():
            raise DbError(f"cannot snapshot into {target}: it already exists")
        try:
            target.mkdir()
        except OSError as e:
            raise DbError(f"cannot create the snapshot directory {target}: {e}") from e
        try:
            # The copy reads one MVCC snapshot; compact=True also drops free pages.
            self._env.copy(str(target), compact=True)
        except lmdb.Error as e:
            shutil.rmtree(target, ignore_errors=True)
            raise _error(self, f"snapshot into {target}", e) from e
        return target

    def close(self) -> None:
        self._dbs.clear()
        try:
            self._env.close()
        except lmdb.Error as e:
            raise _error(self, "close", e) from e

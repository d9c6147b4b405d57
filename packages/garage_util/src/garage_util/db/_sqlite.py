"""The sqlite engine (stdlib ``sqlite3``), the default (Garage: src/db/sqlite_adapter.rs).

Theory of operation:
    The db is one file, ``<dir>/db.sqlite``, in WAL mode. Each tree is a table
    ``(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID``, so entries are stored clustered
    by key and BLOB comparison (memcmp, then length) gives bytewise order.

    * One writer connection performs every write, under the db's write lock (held by the
      neutral layer). Autocommit writes are single statements, hence atomic. Transactions are
      ``BEGIN IMMEDIATE ... COMMIT``: IMMEDIATE takes sqlite's write lock at the start, so a
      transaction never fails half-way with SQLITE_BUSY on a lock upgrade.
    * Reads outside transactions use one reader connection per thread (WAL lets readers run
      alongside the writer, each statement on its own consistent snapshot). Readers are
      tracked so that ``close`` closes all of them, and one is closed as soon as its thread
      exits (anyio's worker threads come and go), so connections do not accumulate.
    * Durability: ``synchronous=OFF`` by default: a commit is in the OS cache when it
      returns, which survives the process dying but not power loss. With ``fsync=True``
      (``metadata_fsync``) it is ``FULL``: the WAL is fsynced at every commit. Garage uses
      NORMAL there, but in WAL mode NORMAL does not sync at commit and can lose the last
      commits on power loss, while metadata_fsync asks for exactly that durability.

Table names: ``"tree_<name>"`` as a quoted identifier (``"`` doubled). SQLite folds ASCII
case in identifiers, even quoted ones, so "Foo" and "foo" would share a table; to keep the
mapping injective an ASCII capital ``X`` is written ``^x`` and ``^`` is written ``^^``. The
names Garage uses are lower case and map to exactly ``tree_<name>``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import weakref
from typing import TYPE_CHECKING, ClassVar, final

from garage_util.errors import DbError

from ._bounds import SQLITE_MAX_KEY_BYTES, Included
from ._engine import Engine, EngineTx

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ._bounds import NormBound
    from ._engine import Item

__all__ = ["SqliteEngine"]

logger = logging.getLogger(__name__)

# How long a connection waits for a lock held by another connection before failing with
# SQLITE_BUSY. Within one process the writer lock makes this rare: it covers WAL recovery at
# open and checkpoints. Generous, because failing a metadata write is worse than waiting.
_BUSY_TIMEOUT_MS = 10_000

# Prepared statements cached per connection: each tree uses ~5 fixed statements plus up to
# 18 range shapes, and Garage has a few dozen trees, so the stdlib default (128) would churn.
_CACHED_STATEMENTS = 1024

_TABLE_PREFIX = "tree_"

# Bound kinds, indexing the prepared range queries of a tree.
_UNBOUNDED, _INCLUDED, _EXCLUDED = 0, 1, 2


def _encode_name(name: str) -> str:
    out: list[str] = []
    for c in name:
        if c == "^":
            out.append("^^")
        elif "A" <= c <= "Z":
            out.append("^" + c.lower())
        else:
            out.append(c)
    return "".join(out)


def _decode_name(encoded: str) -> str | None:
    """Inverse of :func:`_encode_name`; ``None`` if ``encoded`` is not one of its outputs."""
    out: list[str] = []
    chars = iter(encoded)
    for c in chars:
        if c != "^":
            out.append(c)
            continue
        nxt = next(chars, None)
        if nxt == "^":
            out.append("^")
        elif nxt is not None and "a" <= nxt <= "z":
            out.append(nxt.upper())
        else:
            return None
    return "".join(out)


def table_name(tree: str) -> str:
    """Return the (unquoted) sqlite table name that stores ``tree``."""
    return _TABLE_PREFIX + _encode_name(tree)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as e:
        raise DbError(f"sqlite: {what} failed: {e}") from e


@final
class _TreeSql:
    """The SQL text of every statement on one tree, built once."""

    __slots__ = ("clear", "count", "delete", "get", "insert", "ranges")

    def __init__(self, tree: str) -> None:
        table = '"' + table_name(tree).replace('"', '""') + '"'
        self.get = f"SELECT v FROM {table} WHERE k = ?"
        self.count = f"SELECT COUNT(*) FROM {table}"
        self.insert = f"INSERT OR REPLACE INTO {table} (k, v) VALUES (?, ?)"
        self.delete = f"DELETE FROM {table} WHERE k = ?"
        self.clear = f"DELETE FROM {table}"
        # (start kind, end kind, reverse) -> query taking [start key] [end key] limit, where a
        # kind is _UNBOUNDED, _INCLUDED or _EXCLUDED.
        self.ranges: dict[tuple[int, int, bool], str] = {}
        for lo in (_UNBOUNDED, _INCLUDED, _EXCLUDED):
            for hi in (_UNBOUNDED, _INCLUDED, _EXCLUDED):
                for reverse in (False, True):
                    conds = []
                    if lo != _UNBOUNDED:
                        conds.append("k >= ?" if lo == _INCLUDED else "k > ?")
                    if hi != _UNBOUNDED:
                        conds.append("k <= ?" if hi == _INCLUDED else "k < ?")
                    where = (" WHERE " + " AND ".join(conds)) if conds else ""
                    order = "DESC" if reverse else "ASC"
                    self.ranges[lo, hi, reverse] = (
                        f"SELECT k, v FROM {table}{where} ORDER BY k {order} LIMIT ?"
                    )

    def range_query(
        self, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> tuple[str, list[object]]:
        params: list[object] = []
        lo_kind = hi_kind = _UNBOUNDED
        if lo is not None:
            params.append(lo.key)
            lo_kind = _INCLUDED if isinstance(lo, Included) else _EXCLUDED
        if hi is not None:
            params.append(hi.key)
            hi_kind = _INCLUDED if isinstance(hi, Included) else _EXCLUDED
        params.append(limit)
        return self.ranges[lo_kind, hi_kind, reverse], params


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: the stdlib never opens transactions implicitly; we issue BEGIN.
    # check_same_thread=False: the writer is used by whichever thread holds the write lock,
    # and close() may close a reader from another thread; no connection is ever used by two
    # threads at once.
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=_CACHED_STATEMENTS,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


@final
class _Reader:
    """Owner of one thread's reader connection; it lives in that thread's local storage.

    ``lock`` is held while the connection runs a statement. Only ``close`` ever contends
    for it: closing a connection another thread is stepping would deadlock (sqlite waits
    for that thread, which waits for the GIL held by the closing thread), so ``close``
    waits for the statement to finish first (``Lock.acquire`` releases the GIL).
    """

    __slots__ = ("__weakref__", "conn", "lock")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()


class _ReaderLocal(threading.local):
    reader: _Reader | None = None


def _error(what: str, e: sqlite3.Error) -> DbError:
    return DbError(f"sqlite: {what} failed: {e}")


# The data operations below use explicit try/except rather than _translate: they are the hot
# path, and a generator-based context manager costs about as much as a cached point read.


def _ops_get(conn: sqlite3.Connection, sql: _TreeSql, key: bytes) -> bytes | None:
    try:
        row = conn.execute(sql.get, (key,)).fetchone()
    except sqlite3.Error as e:
        raise _error("get", e) from e
    if row is None:
        return None
    value: bytes = row[0]  # a BLOB column reads back as bytes
    return value


def _ops_len(conn: sqlite3.Connection, sql: _TreeSql) -> int:
    try:
        (n,) = conn.execute(sql.count).fetchone()
    except sqlite3.Error as e:
        raise _error("count", e) from e
    return int(n)


def _ops_range(
    conn: sqlite3.Connection, sql: _TreeSql, lo: NormBound, hi: NormBound, reverse: bool, limit: int
) -> list[Item]:
    query, params = sql.range_query(lo, hi, reverse, limit)
    try:
        # fetchall() steps the statement to its end, which ends its read transaction.
        rows: list[Item] = conn.execute(query, params).fetchall()
    except sqlite3.Error as e:
        raise _error("range scan", e) from e
    return rows


def _ops_write(conn: sqlite3.Connection, what: str, query: str, params: tuple[bytes, ...]) -> None:
    try:
        conn.execute(query, params)
    except sqlite3.Error as e:
        raise _error(what, e) from e


@final
class _SqliteTx(EngineTx):
    """A ``BEGIN IMMEDIATE`` transaction on the writer connection."""

    __slots__ = ("_conn", "_sql")

    def __init__(self, conn: sqlite3.Connection, sql: dict[str, _TreeSql]) -> None:
        self._conn = conn
        self._sql = sql

    def get(self, tree: str, key: bytes) -> bytes | None:
        return _ops_get(self._conn, self._sql[tree], key)

    def len(self, tree: str) -> int:
        return _ops_len(self._conn, self._sql[tree])

    def range_batch(
        self, tree: str, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> list[Item]:
        return _ops_range(self._conn, self._sql[tree], lo, hi, reverse, limit)

    def insert(self, tree: str, key: bytes, value: bytes) -> None:
        _ops_write(self._conn, "insert", self._sql[tree].insert, (key, value))

    def remove(self, tree: str, key: bytes) -> None:
        _ops_write(self._conn, "remove", self._sql[tree].delete, (key,))

    def clear(self, tree: str) -> None:
        _ops_write(self._conn, "clear", self._sql[tree].clear, ())

    def commit(self) -> None:
        try:
            with _translate("commit"):
                self._conn.execute("COMMIT")
        except DbError:
            self.rollback()
            raise

    def rollback(self) -> None:
        with _translate("rollback"):
            # A failed COMMIT may already have rolled back (e.g. SQLITE_FULL).
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")


@final
class SqliteEngine(Engine):
    """The sqlite engine; see the module docstring."""

    __slots__ = ("_path", "_readers", "_readers_lock", "_sql", "_tls", "_writer")

    name: ClassVar[str] = "sqlite"
    max_key_bytes: ClassVar[int] = SQLITE_MAX_KEY_BYTES

    def __init__(self, path: Path, *, fsync: bool) -> None:
        """Open (creating if needed) the db file at ``path``.

        Raises:
            DbError: the file cannot be opened as a sqlite db in WAL mode.
        """
        self._path = path
        self._sql: dict[str, _TreeSql] = {}
        self._tls = _ReaderLocal()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        with _translate(f"opening {path}"):
            self._writer = _connect(path)
            try:
                (mode,) = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()
                if str(mode).lower() != "wal":
                    raise DbError(f"sqlite: cannot put {path} in WAL mode (got {mode!r})")
                sync = "FULL" if fsync else "OFF"
                self._writer.execute(f"PRAGMA synchronous = {sync}")
            except BaseException:
                self._writer.close()
                raise
        logger.info("opened sqlite metadata db %s (fsync=%s)", path, fsync)

    # ------------------------------------------------------------------ connections

    def _reader(self) -> _Reader:
        reader = self._tls.reader
        if reader is not None:
            return reader
        with _translate("opening a reader connection"):
            conn = _connect(self._path)
            try:
                conn.execute("PRAGMA query_only = ON")
            except BaseException:
                conn.close()
                raise
        reader = _Reader(conn)
        # When the thread exits, its local storage (and so `reader`) is freed: close then.
        weakref.finalize(reader, conn.close)
        with self._readers_lock:
            self._readers.add(reader)
        self._tls.reader = reader
        return reader

    # ------------------------------------------------------------------ Engine

    def has_tree(self, name: str) -> bool:
        return name in self._sql

    def open_tree(self, name: str) -> None:
        sql = _TreeSql(name)
        table = '"' + table_name(name).replace('"', '""') + '"'
        with _translate(f"creating tree {name!r}"):
            self._writer.execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
            )
        self._sql[name] = sql

    def list_trees(self) -> list[str]:
        reader = self._reader()
        with _translate("listing trees"), reader.lock:
            rows = reader.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall()
        names = []
        for (table,) in rows:
            if isinstance(table, str) and table.startswith(_TABLE_PREFIX):
                name = _decode_name(table[len(_TABLE_PREFIX) :])
                if name is not None:
                    names.append(name)
        return names

    def get(self, tree: str, key: bytes) -> bytes | None:
        reader = self._reader()
        with reader.lock:
            return _ops_get(reader.conn, self._sql[tree], key)

    def len(self, tree: str) -> int:
        reader = self._reader()
        with reader.lock:
            return _ops_len(reader.conn, self._sql[tree])

    def range_batch(
        self, tree: str, lo: NormBound, hi: NormBound, reverse: bool, limit: int
    ) -> list[Item]:
        reader = self._reader()
        with reader.lock:
            return _ops_range(reader.conn, self._sql[tree], lo, hi, reverse, limit)

    def insert(self, tree: str, key: bytes, value: bytes) -> None:
        _ops_write(self._writer, "insert", self._sql[tree].insert, (key, value))

    def remove(self, tree: str, key: bytes) -> None:
        _ops_write(self._writer, "remove", self._sql[tree].delete, (key,))

    def clear(self, tree: str) -> None:
        _ops_write(self._writer, "clear", self._sql[tree].clear, ())

    def begin(self) -> EngineTx:
        with _translate("begin"):
            if self._writer.in_transaction:
                # Only after a ROLLBACK itself failed; recover instead of failing forever.
                logger.warning("sqlite: rolling back a transaction left open on the writer")
                self._writer.execute("ROLLBACK")
            self._writer.execute("BEGIN IMMEDIATE")
        return _SqliteTx(self._writer, self._sql)

    def snapshot(self, to_dir: Path) -> Path:
        target = to_dir / "db.sqlite"
        if target.exists():
            raise DbError(f"cannot snapshot into {target}: the file already exists")
        # A dedicated connection: VACUUM INTO reads one consistent snapshot (a read
        # transaction) and never blocks the writer in WAL mode.
        with _translate(f"snapshot into {target}"):
            conn = _connect(self._path)
            try:
                conn.execute("VACUUM INTO ?", (str(target),))
            finally:
                conn.close()
        return target

    def close(self) -> None:
        with self._readers_lock:
            readers = list(self._readers)
        for reader in readers:
            with _translate("closing a reader connection"), reader.lock:
                reader.conn.close()
        # Last: closing the last connection checkpoints the WAL into the main file.
        with _translate("closing the writer connection"):
            self._writer.close()

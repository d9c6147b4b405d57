"""Opening a metadata db by engine name (Garage: src/db/open.rs).

The sqlite engine (stdlib) is always available. The LMDB engine needs py-lmdb, an optional
extra, so its module is imported only when an LMDB db is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from garage_util.errors import DbError

from ._api import Db

if TYPE_CHECKING:
    import os

    from ._engine import Engine

__all__ = ["DEFAULT_LMDB_MAP_SIZE", "ENGINES", "open_db"]

ENGINES = ("lmdb", "sqlite")
"""The engine names :func:`open_db` accepts."""

# 1 TiB: LMDB reserves the map as address space (cheap on 64-bit) and only the pages in use
# occupy disk. It bounds the db size, so it is generous; Garage's default is the same.
DEFAULT_LMDB_MAP_SIZE = 1 << 40


def open_db(
    path_dir: str | os.PathLike[str],
    engine: str = "sqlite",
    *,
    fsync: bool = False,
    lmdb_map_size: int = DEFAULT_LMDB_MAP_SIZE,
) -> Db:
    """Open (creating if needed) the metadata db stored in the directory ``path_dir``.

    The sqlite engine uses the file ``<path_dir>/db.sqlite``; the LMDB engine the directory
    ``<path_dir>/db.lmdb/``. A db directory must be open in one ``Db`` at a time.

    Args:
        path_dir: the metadata directory; created if missing.
        engine: ``"sqlite"`` (default) or ``"lmdb"``.
        fsync: make every commit durable against power loss before it returns (Garage's
            ``metadata_fsync``); slower. Without it a commit survives the process dying but
            the last ones may be lost on power loss; the db stays consistent either way.
        lmdb_map_size: LMDB only: the maximum size of the db in bytes.

    Returns:
        The opened :class:`Db`; close it (or use it as a context manager).

    Raises:
        DbError: unknown engine, or the engine cannot open the db.
        ImportError: the LMDB engine was asked for but py-lmdb is not installed.
        ValueError: ``lmdb_map_size`` is not positive.
    """
    if engine not in ENGINES:
        raise DbError(
            f"unknown metadata db engine {engine!r}: expected one of "
            + ", ".join(repr(e) for e in ENGINES)
        )
    path = Path(path_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DbError(f"cannot create the metadata directory {path}: {e}") from e
    eng: Engine
    if engine == "lmdb":
        if lmdb_map_size <= 0:
            raise ValueError(f"lmdb_map_size must be positive, not {lmdb_map_size}")
        try:
            from ._lmdb import LmdbEngine
        except ModuleNotFoundError as e:
            if e.name != "lmdb":
                raise
            raise ImportError(
                "the lmdb metadata db engine needs py-lmdb: install `garage-util[lmdb]`"
            ) from e
        eng = LmdbEngine(path / "db.lmdb", fsync=fsync, map_size=lmdb_map_size)
    else:
        from ._sqlite import SqliteEngine

        eng = SqliteEngine(path / "db.sqlite", fsync=fsync)
    return Db(eng)

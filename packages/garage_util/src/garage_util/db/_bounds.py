"""Keys, values and range bounds, checked and normalised once for every engine.

Theory of operation:
    Keys and values are raw bytes, ordered bytewise lexicographically (a proper prefix sorts
    first), which is both ``memcmp``-then-length (LMDB's default comparator) and sqlite's BLOB
    ordering. Callers hand in ``bytes`` (other buffers are copied to ``bytes``), and range
    bounds as ``None``, plain ``bytes`` or explicit :class:`Included` / :class:`Excluded`.

    Each engine has its own key size limit (``Engine.max_key_bytes``, exposed as
    ``Db.max_key_bytes``): :data:`LMDB_MAX_KEY_BYTES` for LMDB, :data:`SQLITE_MAX_KEY_BYTES`
    for sqlite. The functions here take that limit as an argument, called ``limit`` below.

Invariants this module establishes, so that the engines never see anything else:
    * A stored key is never empty and never longer than ``limit``. Writes with such a key are
      refused (empty: ``ValueError``, too long: ``DbError`` naming the key length, the engine
      and its limit). A db holding keys over :data:`MAX_KEY_BYTES` (only sqlite can) cannot
      be copied into LMDB; such a copy fails on the first long key with that ``DbError``.
    * Lookups with such a key cannot match anything, so they answer "absent" without asking
      the engine.
    * A normalised bound is ``None`` or an ``Included``/``Excluded`` holding a key of 1 to
      ``limit`` bytes. A bound key that no stored key can equal is rewritten into an
      equivalent one that the engine accepts (see :func:`normalize_range`), and a range that
      is provably empty is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from garage_util.errors import DbError

__all__ = [
    "LMDB_MAX_KEY_BYTES",
    "MAX_KEY_BYTES",
    "SQLITE_MAX_KEY_BYTES",
    "Bound",
    "Excluded",
    "Included",
    "NormBound",
    "as_bytes",
    "check_write_key",
    "lookup_key",
    "normalize_range",
]

# LMDB's compile-time MDB_MAXKEYSIZE: 511 bytes, the default py-lmdb builds with (and the
# limit LMDB refuses keys and comparison bounds over).
LMDB_MAX_KEY_BYTES = 511

# sqlite itself only limits a BLOB to SQLITE_MAX_LENGTH (1 GB); this limit is ours. Garage's
# longest db keys are a table's GC todo keys: 8-byte timestamp + 32-byte partition hash +
# sort key, and S3 object keys (the longest sort keys) are up to 1,024 bytes: 1,064 bytes in
# all. 4 KiB (sqlite's default page size) holds that with a wide margin for other layouts
# (K2V keys, future prefixes) while bounding what one key costs: at that page size an entry
# over about 1 KB already spills into overflow pages, which every comparison on it reads,
# so much longer keys would only slow the tree down and can only come from a bug upstream.
SQLITE_MAX_KEY_BYTES = 4096

# The portable limit: keys no longer than this fit every engine, so a db whose keys respect
# it can be copied to any engine. It is also the limit on tree names (LMDB stores them as
# keys of its main database).
MAX_KEY_BYTES = min(LMDB_MAX_KEY_BYTES, SQLITE_MAX_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class Included:
    """A range bound that includes its key (``k >= key`` as a start, ``k <= key`` as an end)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Excluded:
    """A range bound that excludes its key (``k > key`` as a start, ``k < key`` as an end)."""

    key: bytes


Bound: TypeAlias = Included | Excluded | bytes | None
"""What callers pass as a range bound: ``None`` is unbounded; plain ``bytes`` is inclusive as
a start and exclusive as an end (Python's half-open ``[start, end)``)."""

NormBound: TypeAlias = Included | Excluded | None
"""A bound after :func:`normalize_range`: its key is 1 to ``limit`` bytes long."""


def as_bytes(data: object, what: str = "key") -> bytes:
    """Return ``data`` as ``bytes``, copying other buffers (``bytearray``, ``memoryview``).

    Raises:
        TypeError: ``data`` is not a bytes-like object. A ``str`` would be stored by sqlite
            as TEXT, which sorts apart from BLOBs, so it is refused rather than encoded.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"db {what} must be bytes, not {type(data).__name__}")


def check_write_key(key: object, limit: int, engine: str) -> bytes:
    """Return ``key`` as bytes if it may be stored (inserted or removed).

    Args:
        key: the key.
        limit: the engine's key size limit in bytes (``Engine.max_key_bytes``).
        engine: the engine's name, for the error message.

    Raises:
        TypeError: the key is not bytes-like.
        ValueError: the key is empty.
        DbError: the key is longer than ``limit``.
    """
    k = as_bytes(key)
    if not k:
        raise ValueError("db keys must not be empty (LMDB cannot store an empty key)")
    if len(k) > limit:
        raise DbError(
            f"db key of {len(k)} bytes is too long for the {engine} metadata db engine, "
            f"which stores keys of at most {limit} bytes"
        )
    return k


def lookup_key(key: object, limit: int) -> bytes | None:
    """Return ``key`` as bytes, or ``None`` when no stored key can be equal to it.

    ``limit`` is the engine's key size limit: no stored key is longer.
    """
    k = as_bytes(key)
    if not k or len(k) > limit:
        return None
    return k


def _split(bound: Included | Excluded | bytes, *, plain_inclusive: bool) -> tuple[bytes, bool]:
    """A bound's key and whether it is inclusive; a plain key is ``plain_inclusive``."""
    if isinstance(bound, Included | Excluded):
        return as_bytes(bound.key), isinstance(bound, Included)
    return as_bytes(bound), plain_inclusive


def _lower(bound: Bound, limit: int) -> NormBound:
    if bound is None:
        return None
    key, inclusive = _split(bound, plain_inclusive=True)
    if not key:
        # Every stored key is > b"", so both kinds of empty start are unbounded.
        return None
    if len(key) > limit:
        # No stored key s equals key. With p = key[:limit]: s == p is a proper prefix of key
        # (so s < key), and s > p means s differs from p at some index below limit (s can't
        # extend p), so s > key. Hence s >= key <=> s > p.
        return Excluded(key[:limit])
    return Included(key) if inclusive else Excluded(key)


def _upper(bound: Bound, limit: int) -> NormBound | Literal[False]:
    """Like :func:`_lower` for an end bound; ``False`` means the range is empty."""
    if bound is None:
        return None
    key, inclusive = _split(bound, plain_inclusive=False)
    if not key:
        # Nothing sorts below or equal to b"" once empty keys are excluded.
        return False
    if len(key) > limit:
        # Mirror of the argument in _lower: s <= key <=> s < key <=> s <= key[:limit].
        return Included(key[:limit])
    return Included(key) if inclusive else Excluded(key)


def normalize_range(start: Bound, end: Bound, limit: int) -> tuple[NormBound, NormBound] | None:
    """Normalise public range bounds, or return ``None`` if the range is certainly empty.

    The result selects exactly the stored keys the public bounds select, and only holds keys
    of at most ``limit`` bytes (the engine's key size limit, which its comparisons accept).
    A range whose start lies after its end is not detected here; the engines simply find
    nothing in it.

    Raises:
        TypeError: a bound key is not bytes-like.
    """
    hi = _upper(end, limit)
    if hi is False:
        return None
    return _lower(start, limit), hi

"""Keys, values and range bounds, checked and normalised once for every engine.

Theory of operation:
    Keys and values are raw bytes, ordered bytewise lexicographically (a proper prefix sorts
    first), which is both ``memcmp``-then-length (LMDB's default comparator) and sqlite's BLOB
    ordering. Callers hand in ``bytes`` (other buffers are copied to ``bytes``), and range
    bounds as ``None``, plain ``bytes`` or explicit :class:`Included` / :class:`Excluded`.

Invariants this module establishes, so that the engines never see anything else:
    * A stored key is never empty and never longer than :data:`MAX_KEY_BYTES`. Writes with
      such a key are refused identically on both engines (empty: ``ValueError``, too long:
      ``DbError``), because LMDB cannot store them and a db must be convertible between
      engines without losing entries.
    * Lookups with such a key cannot match anything, so they answer "absent" without asking
      the engine.
    * A normalised bound is ``None`` or an ``Included``/``Excluded`` holding a key of 1 to
      :data:`MAX_KEY_BYTES` bytes. A bound key that no stored key can equal is rewritten into
      an equivalent one that LMDB accepts (see :func:`normalize_range`), and a range that is
      provably empty is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from garage_util.errors import DbError

__all__ = [
    "MAX_KEY_BYTES",
    "Bound",
    "Excluded",
    "Included",
    "NormBound",
    "as_bytes",
    "check_write_key",
    "lookup_key",
    "normalize_range",
]

# LMDB's compile-time MDB_MAXKEYSIZE (511 bytes, the default py-lmdb builds with). sqlite has
# no such limit, but both engines refuse longer keys so that a db converts between them.
MAX_KEY_BYTES = 511


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
"""A bound after :func:`normalize_range`: its key is 1 to ``MAX_KEY_BYTES`` bytes long."""


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


def check_write_key(key: object) -> bytes:
    """Return ``key`` as bytes if it may be stored (inserted or removed).

    Raises:
        TypeError: the key is not bytes-like.
        ValueError: the key is empty.
        DbError: the key is longer than :data:`MAX_KEY_BYTES`.
    """
    k = as_bytes(key)
    if not k:
        raise ValueError("db keys must not be empty (LMDB cannot store an empty key)")
    if len(k) > MAX_KEY_BYTES:
        raise DbError(
            f"db key of {len(k)} bytes is too long: keys are limited to {MAX_KEY_BYTES} bytes "
            "(the LMDB key size limit, enforced on every engine so that dbs stay convertible)"
        )
    return k


def lookup_key(key: object) -> bytes | None:
    """Return ``key`` as bytes, or ``None`` when no stored key can be equal to it."""
    k = as_bytes(key)
    if not k or len(k) > MAX_KEY_BYTES:
        return None
    return k


def _split(bound: Included | Excluded | bytes, *, plain_inclusive: bool) -> tuple[bytes, bool]:
    """A bound's key and whether it is inclusive; a plain key is ``plain_inclusive``."""
    if isinstance(bound, Included | Excluded):
        return as_bytes(bound.key), isinstance(bound, Included)
    return as_bytes(bound), plain_inclusive


def _lower(bound: Bound) -> NormBound:
    if bound is None:
        return None
    key, inclusive = _split(bound, plain_inclusive=True)
    if not key:
        # Every stored key is > b"", so both kinds of empty start are unbounded.
        return None
    if len(key) > MAX_KEY_BYTES:
        # No stored key s equals key. With p = key[:MAX_KEY_BYTES]: s == p is a proper prefix
        # of key (so s < key), and s > p means s differs from p at some index below
        # MAX_KEY_BYTES (s can't extend p), so s > key. Hence s >= key <=> s > p.
        return Excluded(key[:MAX_KEY_BYTES])
    return Included(key) if inclusive else Excluded(key)


def _upper(bound: Bound) -> NormBound | Literal[False]:
    """Like :func:`_lower` for an end bound; ``False`` means the range is empty."""
    if bound is None:
        return None
    key, inclusive = _split(bound, plain_inclusive=False)
    if not key:
        # Nothing sorts below or equal to b"" once empty keys are excluded.
        return False
    if len(key) > MAX_KEY_BYTES:
        # Mirror of the argument in _lower: s <= key <=> s < key <=> s <= key[:MAX_KEY_BYTES].
        return Included(key[:MAX_KEY_BYTES])
    return Included(key) if inclusive else Excluded(key)


def normalize_range(start: Bound, end: Bound) -> tuple[NormBound, NormBound] | None:
    """Normalise public range bounds, or return ``None`` if the range is certainly empty.

    The result selects exactly the stored keys the public bounds select, and only holds keys
    that every engine accepts in a comparison. A range whose start lies after its end is not
    detected here; the engines simply find nothing in it.

    Raises:
        TypeError: a bound key is not bytes-like.
    """
    hi = _upper(end)
    if hi is False:
        return None
    return _lower(start), hi

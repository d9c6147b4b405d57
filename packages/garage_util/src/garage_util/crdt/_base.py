"""The CRDT protocol, and merge rules for plain values, optional values and dataclasses.

Garage: src/util/crdt/crdt.rs. A CRDT is a value with a ``merge`` that is a semilattice
join: for all a, b, c,

    a ⊔ b = b ⊔ a                 (commutative)
    (a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)     (associative)
    a ⊔ a = a                     (idempotent)

so replicas that received the same writes in any order, any number of times, hold equal
values, and (since encoding is canonical) equal bytes. Values here are immutable: ``merge``
returns a new value and never changes its operands.

Plain values that are not CRDTs (str, bytes, ints, ids, enums...) merge by Garage's
``AutoCrdt`` rule, "keep the larger", which is a join for any total order. Python has no
total order across types (``1 == True``, ``None < 1`` fails), so the order used is the
value's canonical msgpack encoding, compared bytewise, with ``None`` below everything. Any
total order would do: it only decides between two values that two writers gave the same
timestamp, and every replica decides the same way.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, cast

from garage_util.encode import pack

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Crdt", "CrdtStruct", "Ordered", "merge_optional", "merge_values"]

T = TypeVar("T")


class Ordered(Protocol):
    """Keys of ``LwwMap`` and ``Map``: values with a total order (str, bytes, int, ids)."""

    # Any, not object: str.__lt__ takes a str, and a parameter must accept what the
    # protocol's does.
    def __lt__(self, other: Any, /) -> bool: ...


class Crdt:
    """Base of the CRDT types: a value with a commutative, associative, idempotent merge."""

    __slots__ = ()

    def merge(self, other: Self) -> Self:
        """Returns the join of ``self`` and ``other`` (neither is changed)."""
        raise NotImplementedError


def check_sorted_keys(entries: Sequence[Sequence[object]], what: str) -> None:
    """Checks that map entries are sorted by their first item, with no repeated key.

    Maps must be canonical (equal maps, equal bytes), so a map built from unsorted entries,
    by hand or by a decoder, is refused rather than silently sorted.

    Raises:
        ValueError: naming the map type.
    """
    for i in range(1, len(entries)):
        if not cast("Ordered", entries[i - 1][0]) < entries[i][0]:
            raise ValueError(f"{what} entries must be sorted by key, with unique keys")


def merge_values(a: T, b: T) -> T:
    """Merges two values of the same type: by their own ``merge`` if they are CRDTs,
    otherwise by the "keep the larger" rule (see the module docstring).

    Raises:
        TypeError: when one operand is a CRDT and the other is not.
    """
    if isinstance(a, Crdt):
        if not isinstance(b, type(a)) and not isinstance(a, type(b)):
            raise TypeError(f"cannot merge {type(a).__qualname__} with {type(b).__qualname__}")
        return cast("T", cast("Crdt", a).merge(cast("Crdt", b)))
    if isinstance(b, Crdt):
        raise TypeError(f"cannot merge {type(a).__qualname__} with {type(b).__qualname__}")
    if a is None:
        return b
    if b is None:
        return a
    return a if pack(a) >= pack(b) else b


def merge_optional(a: T | None, b: T | None) -> T | None:
    """Merges optional values: ``None`` is the bottom (absent), two present values merge.

    This differs on purpose from Garage's ``impl Crdt for Option<T>`` ("different → None"),
    which forgets both values on a conflict; with None as bottom, a value once written is
    never lost by a merge.
    """
    if a is None:
        return b
    if b is None:
        return a
    return merge_values(a, b)


class CrdtStruct(Crdt):
    """Mixin that makes a dataclass whose fields are CRDTs (or plain values) a CRDT.

    ``merge`` merges field by field with :func:`merge_values`, which is a join when each
    field's merge is one; a product of semilattices is a semilattice.

    Example:
        >>> from dataclasses import dataclass
        >>> from garage_util.crdt import Bool, CrdtStruct, Lww
        >>> @dataclass(frozen=True, slots=True)
        ... class Params(CrdtStruct):
        ...     name: Lww[str]
        ...     website: Bool
    """

    __slots__ = ()

    def merge(self, other: Self) -> Self:
        values = {
            f.name: merge_values(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]  # subclasses are dataclasses
        }
        return type(self)(**values)

"""Test helpers for embedders: hypothesis strategies and CRDT law checkers.

Requires hypothesis (``pip install garage-util[testing]``). Typical use, for your own CRDT::

    from hypothesis import given
    from garage_util.testing import check_crdt_laws

    @given(my_values(), my_values(), my_values())
    def test_my_crdt_is_a_crdt(a, b, c):
        check_crdt_laws(a, b, c)

The strategies draw timestamps from a small range on purpose: concurrent writes with equal
timestamps are the interesting case, and a wide range would almost never produce them.
"""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

from .crdt import Bool, Crdt, Deletable, Lww, LwwMap, Map, Ordered
from .data import FixedBytes32
from .encode import pack

__all__ = [
    "bools",
    "check_crdt_laws",
    "deletables",
    "fixed_bytes32",
    "lww_maps",
    "lwws",
    "maps",
    "timestamps",
]

C = TypeVar("C", bound=Crdt)
K = TypeVar("K", bound=Ordered)
T = TypeVar("T")

#: Timestamps in 0..5: collisions (concurrent writers on one stamp) happen in most examples.
_MAX_TS = 5


def check_crdt_laws(a: C, b: C, c: C) -> None:
    """Asserts that merge is commutative, associative and idempotent on ``a, b, c``, that
    merging does not change its operands, and that equal results encode to equal bytes.

    Raises:
        AssertionError: naming the law that failed.
    """
    before = (pack(a), pack(b), pack(c))
    ab, ba = a.merge(b), b.merge(a)
    assert ab == ba, f"merge is not commutative: {ab!r} != {ba!r}"
    assert pack(ab) == pack(ba), "equal merges encode differently"
    left, right = ab.merge(c), a.merge(b.merge(c))
    assert left == right, f"merge is not associative: {left!r} != {right!r}"
    assert pack(left) == pack(right), "equal merges encode differently"
    assert a.merge(a) == a, f"merge is not idempotent: {a.merge(a)!r} != {a!r}"
    assert ab.merge(b) == ab, "merging an already merged value changed the result"
    assert (pack(a), pack(b), pack(c)) == before, "merge changed one of its operands"


def timestamps() -> st.SearchStrategy[int]:
    """Millisecond timestamps from a small range, so that equal stamps are common."""
    return st.integers(min_value=0, max_value=_MAX_TS)


def fixed_bytes32() -> st.SearchStrategy[FixedBytes32]:
    """32-byte ids, biased towards a few values so that collisions happen."""
    return st.sampled_from([bytes([i]) * 32 for i in range(4)]).map(FixedBytes32) | st.binary(
        min_size=32, max_size=32
    ).map(FixedBytes32)


def bools() -> st.SearchStrategy[Bool]:
    """Any :class:`Bool`."""
    return st.booleans().map(Bool)


def lwws(values: st.SearchStrategy[T]) -> st.SearchStrategy[Lww[T]]:
    """:class:`Lww` registers with small timestamps and values drawn from ``values``."""
    return st.builds(Lww, timestamps(), values)


def lww_maps(
    keys: st.SearchStrategy[K], values: st.SearchStrategy[T]
) -> st.SearchStrategy[LwwMap[K, T]]:
    """:class:`LwwMap` s of up to 6 keys with small timestamps."""
    return st.dictionaries(keys, st.tuples(timestamps(), values), max_size=6).map(LwwMap.from_items)


def maps(keys: st.SearchStrategy[K], values: st.SearchStrategy[T]) -> st.SearchStrategy[Map[K, T]]:
    """:class:`Map` s of up to 6 keys (values should be CRDTs or plain values)."""
    return st.dictionaries(keys, values, max_size=6).map(Map.from_items)


def deletables(values: st.SearchStrategy[T]) -> st.SearchStrategy[Deletable[T]]:
    """:class:`Deletable` values, deleted about a third of the time."""
    return st.one_of(
        st.just(Deletable[T].deleted()),
        values.map(Deletable.present),
        values.map(Deletable.present),
    )

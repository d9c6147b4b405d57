"""Property test: random writes then random range queries equal a sorted-dict model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garage_util.db import MAX_KEY_BYTES, Excluded, Included

if TYPE_CHECKING:
    from garage_util.db import Bound, Db, Transaction, Tree

# A small alphabet and short keys make collisions, prefixes and neighbours likely; a few keys
# at the 511-byte limit, and bounds just past it, exercise the long-bound rewriting.
_LONG = b"\x01" * (MAX_KEY_BYTES - 1)
_SHORT_KEYS = st.lists(st.sampled_from(b"\x00\x01\x02\xff"), min_size=1, max_size=3).map(bytes)
KEYS = st.one_of(
    _SHORT_KEYS,
    st.sampled_from([_LONG + b"\x00", _LONG + b"\x01", _LONG + b"\x02", _LONG[:-1] + b"\x02"]),
)
BOUND_KEYS = st.one_of(
    KEYS,
    st.just(b""),
    st.sampled_from([_LONG + b"\x01\x00", _LONG + b"\x01" * 5, _LONG + b"\x00\xff"]),
)
BOUNDS: st.SearchStrategy[Bound] = st.one_of(
    st.none(), BOUND_KEYS, BOUND_KEYS.map(Included), BOUND_KEYS.map(Excluded)
)
VALUES = st.binary(max_size=3)

Op = tuple[str, bytes, bytes]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), KEYS, VALUES),
        st.tuples(st.just("remove"), KEYS, st.just(b"")),
        st.tuples(st.just("clear"), st.just(b""), st.just(b"")),
    ),
    max_size=30,
)
# Each chunk of operations runs either as autocommit tree calls or in one transaction.
CHUNKS = st.lists(st.tuples(st.booleans(), OPS), min_size=1, max_size=4)
QUERIES = st.lists(st.tuples(BOUNDS, BOUNDS, st.booleans()), min_size=1, max_size=8)


def model_range(
    model: dict[bytes, bytes], start: Bound, end: Bound, reverse: bool
) -> list[tuple[bytes, bytes]]:
    def above_start(k: bytes) -> bool:
        if start is None:
            return True
        if isinstance(start, Included):
            return k >= start.key
        if isinstance(start, Excluded):
            return k > start.key
        return k >= start

    def below_end(k: bytes) -> bool:
        if end is None:
            return True
        if isinstance(end, Included):
            return k <= end.key
        if isinstance(end, Excluded):
            return k < end.key
        return k < end

    items = [(k, model[k]) for k in sorted(model) if above_start(k) and below_end(k)]
    return items[::-1] if reverse else items


def _apply(model: dict[bytes, bytes], op: Op) -> None:
    kind, key, value = op
    if kind == "insert":
        model[key] = value
    elif kind == "remove":
        model.pop(key, None)
    else:
        model.clear()


def _apply_tree(tree: Tree, op: Op) -> None:
    kind, key, value = op
    if kind == "insert":
        tree.insert(key, value)
    elif kind == "remove":
        tree.remove(key)
    else:
        tree.clear()


def _apply_tx(tx: Transaction, tree: Tree, op: Op) -> None:
    kind, key, value = op
    if kind == "insert":
        tx.insert(tree, key, value)
    elif kind == "remove":
        tx.remove(tree, key)
    else:
        tx.clear(tree)


def _check(tree: Tree, model: dict[bytes, bytes], queries: list[tuple[Bound, Bound, bool]]) -> None:
    ordered = sorted(model.items())
    assert list(tree.iter()) == ordered
    assert list(tree.iter_rev()) == ordered[::-1]
    assert tree.len() == len(model)
    assert tree.first() == (ordered[0] if ordered else None)
    assert tree.last() == (ordered[-1] if ordered else None)
    for start, end, reverse in queries:
        assert list(tree.range(start, end, reverse=reverse)) == model_range(
            model, start, end, reverse
        )
        for bound in (start, end):
            if isinstance(bound, bytes):
                gt = model_range(model, Excluded(bound), None, False)
                lt = model_range(model, None, Excluded(bound), True)
                assert tree.get_gt(bound) == (gt[0] if gt else None)
                assert tree.get_lt(bound) == (lt[0] if lt else None)
                assert tree.get(bound) == model.get(bound)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=CHUNKS, queries=QUERIES)
def test_ranges_match_a_sorted_dict_model(
    db: Db, chunks: list[tuple[bool, list[Op]]], queries: list[tuple[Bound, Bound, bool]]
) -> None:
    # One db per test run (the fixture), so each example starts from an emptied tree.
    tree = db.open_tree("model")
    tree.clear()
    model: dict[bytes, bytes] = {}
    for in_tx, ops in chunks:
        if in_tx:

            def run(tx: Transaction, ops: list[Op] = ops) -> None:
                for op in ops:
                    _apply_tx(tx, tree, op)
                    _apply(model, op)
                # The transaction's own view equals the model before the commit.
                for start, end, reverse in queries:
                    got = list(tx.range(tree, start, end, reverse=reverse))
                    assert got == model_range(model, start, end, reverse)
                assert tx.len(tree) == len(model)

            db.transaction(run)
        else:
            for op in ops:
                _apply_tree(tree, op)
                _apply(model, op)
    _check(tree, model, queries)

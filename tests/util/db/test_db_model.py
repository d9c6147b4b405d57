"""Property test: random writes then random range queries equal a sorted-dict model."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garage_util.db import Bound, Excluded, Included

if TYPE_CHECKING:
    from garage_util.db import Db, Transaction, Tree

Op = tuple[str, bytes, bytes]
Query = tuple[Bound, Bound, bool]


@functools.cache
def strategies(
    limit: int,
) -> tuple[st.SearchStrategy[list[tuple[bool, list[Op]]]], st.SearchStrategy[list[Query]]]:
    """Operation chunks and queries for an engine whose keys are at most ``limit`` bytes.

    A small alphabet and short keys make collisions, prefixes and neighbours likely; a few
    keys at the engine's limit, and bounds just past it, exercise the long-bound rewriting.
    """
    long = b"\x01" * (limit - 1)
    short_keys = st.lists(st.sampled_from(b"\x00\x01\x02\xff"), min_size=1, max_size=3).map(bytes)
    keys = st.one_of(
        short_keys,
        st.sampled_from([long + b"\x00", long + b"\x01", long + b"\x02", long[:-1] + b"\x02"]),
    )
    bound_keys = st.one_of(
        keys,
        st.just(b""),
        st.sampled_from([long + b"\x01\x00", long + b"\x01" * 5, long + b"\x00\xff"]),
    )
    bounds: st.SearchStrategy[Bound] = st.one_of(
        st.none(), bound_keys, bound_keys.map(Included), bound_keys.map(Excluded)
    )
    values = st.binary(max_size=3)
    ops = st.lists(
        st.one_of(
            st.tuples(st.just("insert"), keys, values),
            st.tuples(st.just("remove"), keys, st.just(b"")),
            st.tuples(st.just("clear"), st.just(b""), st.just(b"")),
        ),
        max_size=30,
    )
    # Each chunk of operations runs either as autocommit tree calls or in one transaction.
    chunks = st.lists(st.tuples(st.booleans(), ops), min_size=1, max_size=4)
    queries = st.lists(st.tuples(bounds, bounds, st.booleans()), min_size=1, max_size=8)
    return chunks, queries


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


def _check(tree: Tree, model: dict[bytes, bytes], queries: list[Query]) -> None:
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
@given(data=st.data())
def test_ranges_match_a_sorted_dict_model(db: Db, data: st.DataObject) -> None:
    # Keys near the limit of the db's own engine (511 bytes on LMDB, 4,096 on sqlite).
    chunks_strategy, queries_strategy = strategies(db.max_key_bytes)
    chunks = data.draw(chunks_strategy, label="chunks")
    queries = data.draw(queries_strategy, label="queries")
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

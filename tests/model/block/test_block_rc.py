"""BlockRc against a simple model (Garage: src/block/rc.rs)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garage_model.block import BLOCK_GC_DELAY_MS, BlockRc, RcEntry
from garage_util.data import Hash, blake2sum
from garage_util.db import Db, Transaction, open_db
from garage_util.errors import DecodeError, TransactionAborted

if TYPE_CHECKING:
    from pathlib import Path

H1 = Hash(blake2sum(b"one"))
H2 = Hash(blake2sum(b"two"))


@pytest.fixture
def db(tmp_path: Path) -> Db:
    return open_db(tmp_path / "meta", "sqlite")


def test_incref_decref_and_gc_delay(db: Db) -> None:
    rc = BlockRc(db)
    assert rc.get(H1) == RcEntry()
    assert rc.is_deletable(H1, 0)
    change = db.transaction(lambda tx: rc.incref(tx, H1))
    assert change.became_nonzero
    assert not db.transaction(lambda tx: rc.incref(tx, H1)).became_nonzero
    assert rc.get(H1).count == 2
    assert rc.tree.get(bytes(H1)) == (2).to_bytes(8, "big")
    assert not db.transaction(lambda tx: rc.decref(tx, H1, 1000)).became_zero
    change = db.transaction(lambda tx: rc.decref(tx, H1, 1000))
    assert change.became_zero
    at = 1000 + BLOCK_GC_DELAY_MS
    assert rc.tree.get(bytes(H1)) == bytes(8) + at.to_bytes(8, "big")
    assert rc.is_needed(H1, at)
    assert not rc.is_deletable(H1, at)
    assert rc.is_deletable(H1, at + 1)
    # A decrement of a zero count changes nothing.
    change = db.transaction(lambda tx: rc.decref(tx, H1, 5000))
    assert change.old == change.new
    rc.clear_deleted_block_rc(db, H1, at)
    assert rc.tree.get(bytes(H1)) is not None  # still within the delay
    rc.clear_deleted_block_rc(db, H1, at + 1)
    assert rc.tree.get(bytes(H1)) is None
    db.close()


def test_aborted_transaction_leaves_the_count(db: Db) -> None:
    rc = BlockRc(db)

    def inc_then_abort(tx: Transaction) -> None:
        rc.incref(tx, H1)
        tx.abort()

    with pytest.raises(TransactionAborted):
        db.transaction(inc_then_abort)
    assert rc.get(H1) == RcEntry()
    db.close()


@pytest.mark.parametrize("raw", [b"", bytes(8), b"\x00" * 7 + b"\x01" + bytes(8), b"x" * 9])
def test_invalid_values_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        RcEntry.parse(raw)


OPS = st.lists(
    st.tuples(st.sampled_from(["inc", "dec"]), st.sampled_from([H1, H2]), st.integers(0, 10**6)),
    max_size=30,
)


@settings(max_examples=30)
@given(ops=OPS)
def test_matches_a_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, Hash, int]]
) -> None:
    db = open_db(tmp_path_factory.mktemp("rc"), "sqlite")
    try:
        rc = BlockRc(db)
        count = {H1: 0, H2: 0}
        zero_since: dict[Hash, int | None] = {H1: None, H2: None}
        for op, h, now in ops:
            if op == "inc":
                change = db.transaction(functools.partial(rc.incref, hash=h))
                assert change.became_nonzero == (count[h] == 0)
                count[h] += 1
                zero_since[h] = None
            else:
                change = db.transaction(functools.partial(rc.decref, hash=h, now_ms=now))
                assert change.became_zero == (count[h] == 1)
                if count[h] == 1:
                    zero_since[h] = now + BLOCK_GC_DELAY_MS
                count[h] = max(0, count[h] - 1)
            for k in (H1, H2):
                entry = rc.get(k)
                assert entry.count == count[k]
                assert entry.deletable_at_ms == zero_since[k]
                at = zero_since[k]
                if count[k] > 0:
                    assert entry.is_needed(10**9)
                elif at is not None:
                    assert entry.is_needed(at)
                    assert entry.is_deletable(at + 1)
                else:
                    assert entry.is_deletable(0)
    finally:
        db.close()

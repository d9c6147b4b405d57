"""The CRDT laws for every type, and the behaviour each type promises."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_util import FixedBytes32, pack, unpack
from garage_util.crdt import (
    Bool,
    CrdtStruct,
    Deletable,
    Lww,
    LwwMap,
    Map,
    merge_optional,
    merge_values,
)
from garage_util.testing import (
    bools,
    check_crdt_laws,
    deletables,
    fixed_bytes32,
    lww_maps,
    lwws,
    maps,
)

# Plain values of several types, including values equal in Python but not in encoding
# (1 == True, b"a" vs "a"): the tie-break must still be one total order.
plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "a", "b", "ab"]),
    st.sampled_from([b"", b"a", b"b"]),
    fixed_bytes32(),
)
small_keys = st.sampled_from(["a", "b", "c", "d"])


@dataclass(frozen=True, slots=True)
class Params(CrdtStruct):
    name: Lww[str]
    website: Bool
    tags: LwwMap[str, bool]
    owner: Deletable[Lww[int]]


params = st.builds(
    Params,
    lwws(st.sampled_from(["x", "y", "z"])),
    bools(),
    lww_maps(small_keys, st.booleans()),
    deletables(lwws(st.integers(0, 3))),
)


@given(plain, plain, plain)
def test_plain_values_merge_as_a_semilattice(a: object, b: object, c: object) -> None:
    assert merge_values(a, b) is merge_values(b, a) or pack(merge_values(a, b)) == pack(
        merge_values(b, a)
    )
    assert pack(merge_values(merge_values(a, b), c)) == pack(merge_values(a, merge_values(b, c)))
    assert merge_values(a, a) == a


@given(bools(), bools(), bools())
def test_bool_laws(a: Bool, b: Bool, c: Bool) -> None:
    check_crdt_laws(a, b, c)
    assert a.merge(b).value == (a.value or b.value)


@given(lwws(plain), lwws(plain), lwws(plain))
def test_lww_laws_including_equal_timestamps(
    a: Lww[object], b: Lww[object], c: Lww[object]
) -> None:
    check_crdt_laws(a, b, c)
    assert a.merge(b).ts == max(a.ts, b.ts)


@given(lww_maps(small_keys, plain), lww_maps(small_keys, plain), lww_maps(small_keys, plain))
def test_lww_map_laws(
    a: LwwMap[str, object], b: LwwMap[str, object], c: LwwMap[str, object]
) -> None:
    check_crdt_laws(a, b, c)
    merged = a.merge(b)
    assert set(merged.keys()) == set(a.keys()) | set(b.keys())


@given(
    maps(small_keys, lwws(st.integers(0, 3))),
    maps(small_keys, lwws(st.integers(0, 3))),
    maps(small_keys, lwws(st.integers(0, 3))),
)
def test_map_laws(a: Map[str, Lww[int]], b: Map[str, Lww[int]], c: Map[str, Lww[int]]) -> None:
    check_crdt_laws(a, b, c)


@given(deletables(bools()), deletables(bools()), deletables(bools()))
def test_deletable_laws(a: Deletable[Bool], b: Deletable[Bool], c: Deletable[Bool]) -> None:
    check_crdt_laws(a, b, c)
    assert a.merge(b).is_deleted == (a.is_deleted or b.is_deleted)


@given(params, params, params)
def test_dataclass_of_crdts_is_a_crdt(a: Params, b: Params, c: Params) -> None:
    check_crdt_laws(a, b, c)


@given(params)
def test_dataclass_of_crdts_round_trips_through_msgpack(p: Params) -> None:
    assert unpack(Params, pack(p)) == p


@given(st.one_of(st.none(), lwws(st.integers(0, 3))), st.one_of(st.none(), lwws(st.integers(0, 3))))
def test_merge_optional_treats_none_as_absent(a: Lww[int] | None, b: Lww[int] | None) -> None:
    merged = merge_optional(a, b)
    if a is None or b is None:
        assert merged == (b if a is None else a)
    else:
        assert merged == a.merge(b)
    assert merge_optional(a, b) == merge_optional(b, a)


def test_concurrent_writes_with_equal_timestamps_pick_the_same_winner() -> None:
    left, right = Lww(100, "from node A"), Lww(100, "from node B")
    assert left.merge(right) == right.merge(left)
    assert left.merge(right).v in ("from node A", "from node B")


def test_lww_update_supersedes_even_with_a_lagging_clock() -> None:
    reg = Lww.new("v1", now_ms=1_000)
    newer = reg.update("v2", now_ms=5)  # this node's clock is far behind
    assert newer.ts == 1_001
    assert reg.merge(newer).v == "v2"


def test_lww_map_mutators_merge_without_losing_concurrent_keys() -> None:
    base: LwwMap[str, str] = LwwMap.from_items({"a": (10, "a0"), "b": (10, "b0")})
    # Two nodes update different keys of the same map concurrently.
    mut_a = base.update_mutator("a", "a1", now_ms=11)
    mut_b = base.update_mutator("b", "b1", now_ms=11)
    assert len(mut_a) == 1
    assert mut_a.get_timestamp("a") == 11
    on_node_1 = base.merge(mut_a).merge(mut_b)
    on_node_2 = base.merge(mut_b).merge(mut_a)
    assert on_node_1 == on_node_2
    assert dict(on_node_1.items()) == {"a": "a1", "b": "b1"}
    # Deleting is writing a tombstone value with a newer timestamp.
    deleted = on_node_1.update_in_place("a", "", now_ms=0)
    assert deleted.get("a") == ""
    assert deleted.get_timestamp("a") == 12
    assert "a" in deleted
    assert "z" not in deleted
    assert deleted.get("z") is None


def test_map_put_mutator_merges_into_the_existing_value() -> None:
    m: Map[str, Bool] = Map.from_items({"x": Bool(False)})
    m = m.merge(m.put_mutator("x", Bool(True))).merge(m.put_mutator("y", Bool(False)))
    assert m.get("x") == Bool(True)
    assert m.get("y") == Bool(False)
    assert len(m) == 2
    assert m.get("nope") is None


def test_deleted_absorbs_and_present_needs_a_value() -> None:
    alive = Deletable.present(Bool(True))
    gone: Deletable[Bool] = Deletable.deleted()
    assert alive.merge(gone).is_deleted
    assert gone.merge(alive).is_deleted
    with pytest.raises(ValueError, match="needs a value"):
        Deletable.present(None)


def test_maps_refuse_unsorted_or_duplicate_entries() -> None:
    with pytest.raises(ValueError, match="sorted"):
        LwwMap((("b", 1, 1), ("a", 1, 1)))
    with pytest.raises(ValueError, match="sorted"):
        Map((("a", 1), ("a", 2)))


def test_merging_a_crdt_with_a_plain_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot merge"):
        merge_values(Bool(True), True)
    with pytest.raises(TypeError, match="cannot merge"):
        merge_values(True, Bool(True))


def test_lww_of_ids_round_trips() -> None:
    reg = Lww(7, FixedBytes32(b"\x01" * 32))
    back: Lww[FixedBytes32] = unpack(Lww[FixedBytes32], pack(reg))
    assert back == reg
    assert type(back.v) is FixedBytes32

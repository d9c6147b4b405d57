"""The fault checkers, tested first: hand-written histories, one valid and one per anomaly.

Each hand-written history must give exactly the expected anomaly kinds (Garage's set2
checker once passed everything, cfbfa09d). Property tests: histories of a sequential
reference register / set (every read sees the latest write) are always valid, and turning
one read into an older, superseded state is always caught. Times are in seconds here
(``S`` ns), as the harness records ``time.monotonic_ns()``.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from faults.checkers import (
    INVALID,
    UNKNOWN,
    VALID,
    Anomaly,
    check_convergence,
    check_copy,
    check_history,
    check_listing,
    check_multipart,
    check_register,
    check_set,
)
from faults.history import FAIL, FINAL, INFO, NEMESIS, OK, History, Op
from hypothesis import given
from hypothesis import strategies as st

if TYPE_CHECKING:
    from collections.abc import Sequence

S = 1_000_000_000


def o(
    f: str,
    key: str,
    value: str | None,
    t0: float,
    t1: float | None,
    outcome: str = OK,
    process: int = 0,
    **data: Any,
) -> Op:
    """One op, times in seconds."""
    return Op(
        process, f, key, value, outcome, int(t0 * S), None if t1 is None else int(t1 * S), data
    )


def final(t0: float, t1: float | None = None, outcome: str = OK) -> Op:
    return Op(-1, FINAL, "", None, outcome, int(t0 * S), None if t1 is None else int(t1 * S))


def nemesis(name: str, action: str, t0: float) -> Op:
    return Op(-1, NEMESIS, name, action, OK, int(t0 * S), int(t0 * S))


def kinds(anomalies: Sequence[Anomaly]) -> list[str]:
    return sorted(a.kind for a in anomalies)


# ---------------------------------------------------------------- register

K = "reg/1"


def test_register_valid_history() -> None:
    ops = [
        o("put", K, "a", 0, 1),
        o("get", K, "a", 2, 3),
        o("put", K, "b", 4, 6),
        o("get", K, "a", 4.5, 5),  # b not yet acked: a is still allowed
        o("get", K, "b", 5, 5.5),  # b may already be visible
        o("delete", K, None, 7, 8),
        o("get", K, None, 9, 10),
        o("put", K, "c", 11, None, outcome=INFO),  # indeterminate: may land, or not
        o("get", K, None, 12, 13),
        o("get", K, "c", 14, 15),
        o("get", K, "c", 16, 17),
        o("put", K, "z", 18, 19, outcome=FAIL),  # no effect
        o("get", K, "c", 20, 21, sha256="x"),
        o("get", K, "a", 2, 3, outcome=FAIL),  # failed reads are not judged
    ]
    assert check_register(ops) == []


def test_register_stale_read() -> None:
    ops = [o("put", K, "a", 0, 1), o("put", K, "b", 2, 3), o("get", K, "a", 4, 5)]
    [anomaly] = check_register(ops)
    assert (anomaly.kind, anomaly.op) == ("stale", ops[2])


def test_register_404_after_an_acked_put_is_stale() -> None:
    ops = [o("put", K, "a", 0, 1), o("get", K, None, 2, 3)]
    assert kinds(check_register(ops)) == ["stale"]


def test_register_read_of_deleted_value_is_stale() -> None:
    ops = [o("put", K, "a", 0, 1), o("delete", K, None, 2, 3), o("get", K, "a", 4, 5)]
    assert kinds(check_register(ops)) == ["stale"]


def test_register_garbage_reads() -> None:
    ops = [
        o("put", K, "z", 0, 1, outcome=FAIL),
        o("get", K, "z", 2, 3),  # the put failed: it had no effect
        o("get", K, "never", 4, 5),
    ]
    assert kinds(check_register(ops)) == ["garbage", "garbage"]


def test_register_future_read() -> None:
    ops = [o("get", K, "a", 0, 1), o("put", K, "a", 2, 3)]
    assert kinds(check_register(ops)) == ["future-read"]


def test_register_corrupt_bodies() -> None:
    ops = [
        o("put", K, "a", 0, 1, sha256="good"),
        o("get", K, "a", 2, 3, corrupt=True),
        o("get", K, "a", 4, 5, sha256="bad"),
        o("get", K, "a", 6, 7, sha256="good"),
    ]
    assert kinds(check_register(ops)) == ["corrupt", "corrupt"]


def test_register_flip_flop_between_concurrent_winners() -> None:
    ops = [
        o("put", K, "a", 0, 2),
        o("put", K, "b", 1, 3),  # concurrent: either may win...
        o("get", K, "a", 4, 5),
        o("get", K, "b", 6, 7),  # ...but not both, once both are acked
    ]
    assert kinds(check_register(ops)) == ["flip-flop"]


def test_register_indeterminate_write_may_land_once_but_not_unland() -> None:
    base = [o("put", K, "a", 0, 1), o("put", K, "b", 2, None, outcome=INFO)]
    lands = [o("get", K, "a", 3, 4), o("get", K, "b", 5, 6), o("get", K, "b", 7, 8)]
    assert check_register(base + lands) == []
    back = [*lands[:2], o("get", K, "a", 7, 8)]
    assert kinds(check_register(base + back)) == ["flip-flop"]


def test_register_keys_are_checked_apart() -> None:
    ops = [o("put", "reg/1", "a", 0, 1), o("get", "reg/2", "a", 2, 3)]
    assert kinds(check_register(ops)) == ["garbage"]


# ---------------------------------------------------------------- sets and listings

P = "set/1/"


def test_set_valid_history_with_recovered_add() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        o("put", P + "b", "2", 0, 1),
        o("put", P + "c", "3", 2, None, outcome=INFO),
        o("put", P + "d", "4", 2, 3, outcome=FAIL),
        o("list", P, None, 1.5, 2.5, pages=[[P + "a"], [P + "b"]]),
        o("put", P + "e", "5", 3, 5),
        o("list", P, None, 4, 4.5, pages=[[P + "a", P + "b"]]),  # e in flight: either way
        final(10),
        o("list", P, None, 11, 12, pages=[[P + "a", P + "b"], [P + "c", P + "e"]]),
    ]
    assert kinds(check_listing(ops)) == ["recovered"]


def test_set_missed() -> None:
    ops = [o("put", P + "a", "1", 0, 1), o("list", P, None, 2, 3, pages=[[]])]
    assert kinds(check_set(ops)) == ["missed"]


def test_set_resurrected() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        o("delete", P + "a", None, 2, 3),
        o("list", P, None, 4, 5, keys=[P + "a"]),
    ]
    assert kinds(check_set(ops)) == ["resurrected"]


def test_set_concurrent_delete_allows_both() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        o("delete", P + "a", None, 2, 6),
        o("list", P, None, 3, 4, keys=[P + "a"]),
        o("list", P, None, 3, 4, keys=[]),
        o("delete", P + "b", None, 0, None, outcome=INFO),
        o("put", P + "b", "2", 1, 2),  # may be before or after the indeterminate delete
        o("list", P, None, 7, 8, keys=[]),
    ]
    assert check_set(ops) == []


def test_set_unexpected() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1, outcome=FAIL),
        o("list", P, None, 2, 3, keys=[P + "a", P + "zz", "set/2/x"]),
        o("put", P + "late", "2", 4, 5),
        o("list", P, None, 2, 3, keys=[P + "late"]),
    ]
    assert kinds(check_set(ops)) == ["unexpected"] * 4


def test_set_lost_in_final_read() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        final(5, 20),
        o("list", P, None, 6, 7, keys=[]),
        o("list", P, None, 8, 9, keys=[]),  # reported once per element
    ]
    assert kinds(check_set(ops)) == ["lost"]
    assert kinds(check_set(ops, final_t0=100 * S)) == ["missed", "missed"]


def test_listing_duplicate_across_pages() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        o("put", P + "b", "2", 0, 1),
        o("list", P, None, 2, 3, pages=[[P + "a", P + "b"], [P + "b"]]),
    ]
    assert kinds(check_listing(ops)) == ["duplicate"]


def test_listing_out_of_order_across_pages() -> None:
    ops = [
        o("put", P + "a", "1", 0, 1),
        o("put", P + "b", "2", 0, 1),
        o("list", P, None, 2, 3, pages=[[P + "b"], [P + "a"]]),
    ]
    assert kinds(check_listing(ops)) == ["out-of-order"]


def test_listing_without_keys_is_malformed() -> None:
    assert kinds(check_listing([o("list", P, None, 0, 1)])) == ["malformed"]


# ---------------------------------------------------------------- multipart

M = "mpu/1"
PARTS = ["u1-1", "u1-2", "u1-3"]


def test_multipart_valid_with_duplicate_complete() -> None:
    ops = [
        o("upload-part", M, "u1-2-old", 0, 0.5),  # replaced before Complete: counted only
        o("mpu", M, "u1", 1, 2, parts=PARTS),
        o("mpu", M, "u1", 2.5, 3, parts=PARTS),  # duplicate Complete
        o("get", M, "u1", 4, 5, parts=PARTS),
        o("mpu", M, "u2", 6, 7, outcome=FAIL, parts=["u2-1"]),
        o("get", M, "u1", 8, 9, parts=PARTS),
    ]
    assert check_multipart(ops) == []


def test_multipart_wrong_part() -> None:
    ops = [
        o("mpu", M, "u1", 1, 2, parts=PARTS),
        o("get", M, "u1", 3, 4, parts=["u1-1", "u1-2-old", "u1-3"]),
    ]
    assert kinds(check_multipart(ops)) == ["mpu-wrong-part"]


def test_multipart_missing_part() -> None:
    ops = [o("mpu", M, "u1", 1, 2, parts=PARTS), o("get", M, "u1", 3, 4, parts=["u1-1", "u1-3"])]
    assert kinds(check_multipart(ops)) == ["mpu-missing-part"]


def test_multipart_duplicate_complete_never_empties() -> None:
    ops = [
        o("mpu", M, "u1", 1, 2, parts=PARTS),
        o("mpu", M, "u1", 2.5, 3, parts=PARTS),
        o("get", M, "u1", 4, 5, parts=[]),
        o("get", M, None, 6, 7),  # 404 after an acked Complete
    ]
    assert kinds(check_multipart(ops)) == ["mpu-empty", "stale"]


def test_multipart_older_upload_after_newer_is_stale() -> None:
    ops = [
        o("mpu", M, "u1", 1, 2, parts=PARTS),
        o("mpu", M, "u2", 3, 4, parts=["u2-1"]),
        o("get", M, "u1", 5, 6, parts=PARTS),
    ]
    assert kinds(check_multipart(ops)) == ["stale"]


# ---------------------------------------------------------------- copy

SRC, DST = "copy/1/src", "copy/1/dst"


def copy_op(t0: float, t1: float | None, outcome: str = OK) -> Op:
    return o("copy", DST, None, t0, t1, outcome, source=SRC)


def test_copy_valid_history() -> None:
    ops = [
        o("put", SRC, "a", 0, 1),
        copy_op(2, 3),
        o("get", DST, "a", 4, 5, values=["a", "a"]),
        o("put", SRC, "b", 6, 8),
        copy_op(7, 9),  # concurrent with the put of b: a or b
        o("get", DST, "b", 10, 11),
        o("get", SRC, "b", 10, 11),
        copy_op(12, 13, outcome=FAIL),
        o("get", DST, "b", 14, 15),
    ]
    assert check_copy(ops) == []


def test_copy_partial_and_mixed() -> None:
    ops = [
        o("put", SRC, "a", 0, 1),
        o("put", SRC, "b", 2, 3),
        copy_op(4, 5),
        o("get", DST, "b", 6, 7, corrupt=True),
        o("get", DST, "b", 6, 7, values=["a", "b"]),
    ]
    assert kinds(check_copy(ops)) == ["copy-mixed", "copy-partial"]


def test_copy_garbage_future_and_superseded() -> None:
    ops = [
        o("put", SRC, "a", 0, 1),
        o("put", SRC, "b", 2, 3),
        copy_op(4, 5),
        o("put", SRC, "c", 6, 7),  # written after the only copy ended
        o("get", DST, "zz", 8, 9),
        o("get", DST, "c", 8, 9),
        o("get", DST, "a", 8, 9),  # overwritten by b before the copy began
    ]
    assert kinds(check_copy(ops)) == ["copy-future", "copy-garbage", "copy-superseded"]


def test_copy_destination_stale_after_a_newer_copy() -> None:
    ops = [
        o("put", SRC, "a", 0, 1),
        copy_op(2, 3),
        o("put", SRC, "b", 4, 5),
        copy_op(6, 7),
        o("get", DST, "a", 8, 9),
    ]
    assert kinds(check_copy(ops)) == ["stale"]


def test_copy_source_reads_get_register_rules() -> None:
    ops = [
        o("put", SRC, "a", 0, 1),
        o("put", SRC, "b", 2, 3),
        o("get", SRC, "a", 4, 5),
        copy_op(6, 7),
    ]
    assert kinds(check_copy(ops)) == ["stale"]


# ---------------------------------------------------------------- convergence

ROOTS = {("object", 0): {"n1": b"\x01", "n2": b"\x01", "n3": b"\x01"}}
BLOCKS = {"n1": {"h1": "h1", "h2": "h2"}, "n2": {"h1": "h1"}, "n3": {"h2": "h2"}}
REFERENCED = {"h1": ["n1", "n2"], "h2": ["n1", "n3"]}


def test_convergence_valid() -> None:
    assert check_convergence(ROOTS, BLOCKS, REFERENCED) == []


def test_convergence_divergent_merkle() -> None:
    roots = {**ROOTS, ("version", 3): {"n1": b"\x01", "n2": b"\x02"}}
    [anomaly] = check_convergence(roots, BLOCKS, REFERENCED)
    assert anomaly.kind == "divergent-merkle"
    assert "version partition 3" in anomaly.detail


def test_convergence_missing_block() -> None:
    blocks = {**BLOCKS, "n2": {}}
    assert kinds(check_convergence(ROOTS, blocks, REFERENCED)) == ["missing-block"]
    assert kinds(check_convergence(ROOTS, BLOCKS, {"h3": ["n4"]})) == ["missing-block"]


def test_convergence_corrupt_block() -> None:
    blocks = {**BLOCKS, "n3": {"h2": "other"}}
    assert kinds(check_convergence(ROOTS, blocks, REFERENCED)) == ["corrupt-block"]


# ---------------------------------------------------------------- the whole history


def full_history() -> list[Op]:
    return [
        o("put", "reg/1", "a", 0, 1, process=1),
        nemesis("kill", "kill", 1.5),
        o("get", "reg/1", "a", 2, 3, process=2),
        o("put", "set/1/a", "1", 0, 1, process=3),
        o("list", "set/1/", None, 2, 3, process=3, pages=[["set/1/a"]]),
        o("put", "list/1/a", "1", 0, 1, process=4),
        o("delete", "list/1/a", None, 2, 3, process=4),
        o("list", "list/1/", None, 4, 5, process=4, pages=[[]]),
        o("mpu", "mpu/1", "u1", 0, 1, process=5, parts=PARTS),
        o("get", "mpu/1", "u1", 2, 3, process=5, parts=PARTS),
        o("put", SRC, "a", 0, 1, process=6),
        o("copy", DST, None, 2, 3, process=6, source=SRC),
        o("get", DST, "a", 4, 5, process=6),
        o("get", "other/1", "x", 4, 5, process=7),  # no family: counted, not judged
        nemesis("kill", "restart", 6),
        final(8, 12),
        o("get", "reg/1", "a", 9, 10, process=1),
        o("list", "set/1/", None, 9, 10, process=3, pages=[["set/1/a"]]),
    ]


def test_history_valid_with_counts() -> None:
    verdict = check_history(History(full_history()))
    assert (verdict.status, verdict.anomalies, verdict.contexts) == (VALID, (), ())
    assert verdict.valid
    assert verdict.counts[("get", OK)] == 5
    assert verdict.counts[("nemesis", OK)] == 2
    assert verdict.checked == {"copy/": 1, "list/": 1, "mpu/": 1, "reg/": 2, "set/": 2}


def test_history_unknown_without_complete_final_reads() -> None:
    ops = [op for op in full_history() if op.f != FINAL]
    verdict = check_history(ops)
    assert verdict.status == UNKNOWN
    assert "final" in verdict.reason
    failed = [*ops, final(8, None, outcome=FAIL)]
    assert check_history(failed).status == UNKNOWN


def test_history_unknown_when_nothing_is_checked() -> None:
    ops = [o("get", "register/1", "a", 0, 1), final(2, 3)]
    verdict = check_history(ops)
    assert (verdict.status, verdict.checked["reg/"]) == (UNKNOWN, 0)


def test_history_invalid_wins_over_unknown_and_gives_context() -> None:
    ops = [
        o("put", "reg/1", "a", 0, 1),
        o("put", "reg/1", "b", 2, 3),
        nemesis("partition", "start", 1),
        o("get", "reg/1", "a", 5, 6),
        nemesis("partition", "heal", 7.5),
        o("get", "reg/1", "b", 20, 21),
        nemesis("clock", "bump", 30),
    ]
    verdict = check_history(ops, convergence=[Anomaly("missing-block", None, "h on n1")])
    assert verdict.status == INVALID
    assert verdict.kinds() == {"missing-block": 1, "stale": 1}
    assert [a.kind for a in verdict.anomalies] == ["stale", "missing-block"]
    context = verdict.contexts[0]
    assert context.anomaly is verdict.anomalies[0]
    assert context.ops == (ops[1], ops[3])  # b ended at 3 s, within 2 s of the read
    assert context.nemesis == (ops[2], ops[4])  # the partition in force, and its heal
    assert verdict.contexts[1].ops == ()


def test_history_routes_recovered_to_allowed() -> None:
    ops = [
        o("put", "set/1/a", "1", 0, None, outcome=INFO),
        final(1, 3),
        o("list", "set/1/", None, 2, 3, keys=["set/1/a"]),
    ]
    verdict = check_history(ops)
    assert verdict.status == VALID
    assert [a.kind for a in verdict.allowed] == ["recovered"]


# ---------------------------------------------------------------- history records


def test_op_rejects_bad_outcome_and_times() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Op(0, "get", K, None, "maybe", 0, 1)
    with pytest.raises(ValueError, match="before it starts"):
        Op(0, "get", K, None, OK, 5, 1)


def test_from_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    good = (
        '{"process": 0, "f": "get", "key": "k", "value": null, "outcome": "ok", "t0": 1, "t1": 2}'
    )
    path.write_text(good + "\n\n" + '{"process": "x"}\n')
    with pytest.raises(ValueError, match=r"h\.jsonl:3: .*'f' is missing"):
        History.from_jsonl(path)
    path.write_text(good.replace('"t0": 1', '"t0": true') + "\n")
    with pytest.raises(ValueError, match="'t0' has the wrong type"):
        History.from_jsonl(path)
    path.write_text(good + "\n")
    assert History.from_jsonl(path).ops == (Op(0, "get", "k", None, OK, 1, 2),)


def test_history_append_from_threads() -> None:
    history = History()

    def worker(process: int) -> None:
        for i in range(200):
            history.append(Op(process, "get", K, None, OK, i, i))

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history) == 800
    assert sorted((op.process, op.t0) for op in history) == [
        (p, i) for p in range(4) for i in range(200)
    ]
    assert history.nemesis_events() == ()
    assert history.final_marker() is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
ops_strategy = st.builds(
    lambda process, f, key, value, outcome, t0, dt, data: Op(
        process, f, key, value, outcome, t0, None if dt is None else t0 + dt, data
    ),
    st.integers(-1, 20),
    st.sampled_from(["put", "get", "delete", "list", "mpu", "copy", NEMESIS, FINAL]),
    st.text(),
    st.none() | st.text(),
    st.sampled_from([OK, FAIL, INFO]),
    st.integers(0, 2**63),
    st.none() | st.integers(0, 2**40),
    st.dictionaries(st.text(), json_values, max_size=3),
)


@given(st.lists(ops_strategy, max_size=20))
def test_jsonl_round_trip(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        History(ops).to_jsonl(path)
        assert History.from_jsonl(path).ops == tuple(ops)


# ---------------------------------------------------------------- sequential references

register_actions = st.lists(
    st.tuples(
        st.sampled_from(["reg/1", "reg/2"]),
        st.sampled_from(["put", "put", "delete", "get", "get", "get"]),
        st.sampled_from([OK, OK, OK, INFO, FAIL]),
        st.booleans(),  # an indeterminate write: did it land?
    ),
    max_size=40,
)


def sequential_register(actions: list[tuple[str, str, str, bool]], *, with_info: bool) -> list[Op]:
    """One op at a time, [2i, 2i+1] s; every read sees the latest landed write."""
    state: dict[str, str | None] = {}
    ops = []
    for i, (key, f, outcome, lands) in enumerate(actions):
        outcome = OK if f == "get" or (outcome == INFO and not with_info) else outcome
        value = f"{i}" if f == "put" else None
        if f == "get":
            ops.append(o("get", key, state.get(key), 2 * i, 2 * i + 1))
            continue
        if outcome == OK or (outcome == INFO and lands):
            state[key] = value
        t1 = None if outcome == INFO else 2 * i + 1
        ops.append(o(f, key, value, 2 * i, t1, outcome))
    return ops


@given(register_actions)
def test_sequential_register_histories_are_valid(actions: list[tuple[str, str, str, bool]]) -> None:
    ops = sequential_register(actions, with_info=True)
    assert check_register(ops) == []
    verdict = check_history([*ops, final(2 * len(ops), 2 * len(ops) + 1)])
    assert verdict.status in (VALID, UNKNOWN)  # unknown: no read was drawn
    assert verdict.anomalies == ()


@given(register_actions, st.data())
def test_a_superseded_read_is_always_flagged(
    actions: list[tuple[str, str, str, bool]], data: st.DataObject
) -> None:
    ops = sequential_register(actions, with_info=False)
    # For each read, the values its key held earlier but no longer holds: all superseded
    # by an acked write that ended before the read began.
    choices = []
    held: dict[str, list[str | None]] = {"reg/1": [None], "reg/2": [None]}
    for i, op in enumerate(ops):
        if op.f == "get":
            older = {v for v in held[op.key] if v != op.value}
            choices += [(i, v) for v in sorted(older, key=str)]
        elif op.outcome == OK:
            held[op.key].append(op.value)
    if not choices:
        return
    i, older_value = data.draw(st.sampled_from(choices))
    mutated = ops[i]
    ops[i] = Op(mutated.process, "get", mutated.key, older_value, OK, mutated.t0, mutated.t1)
    assert ("stale", ops[i]) in [(a.kind, a.op) for a in check_register(ops)]


set_actions = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "delete", "list", "list"]),
        st.sampled_from([OK, OK, OK, INFO, FAIL]),
        st.booleans(),  # an indeterminate write: did it land?
        st.integers(1, 4),  # page size of a listing
        st.integers(0, 1000),  # which element a delete picks
    ),
    max_size=40,
)


def sequential_set(actions: list[tuple[str, str, bool, int, int]], *, with_info: bool) -> list[Op]:
    """One op at a time, [2i, 2i+1] s; listings see the current set, sorted, in pages."""
    present: set[str] = set()
    ever: list[str] = []
    ops = []
    for i, (f, outcome, lands, page, pick) in enumerate(actions):
        outcome = OK if f == "list" or (outcome == INFO and not with_info) else outcome
        t1 = None if outcome == INFO else 2 * i + 1
        if f == "list":
            keys = sorted(present)
            pages = [keys[j : j + page] for j in range(0, len(keys), page)]
            ops.append(o("list", P, None, 2 * i, 2 * i + 1, pages=pages))
            continue
        effect = outcome == OK or (outcome == INFO and lands)
        if f == "add":
            key = f"{P}{i:04d}"
            ever.append(key)
            ops.append(o("put", key, str(i), 2 * i, t1, outcome))
            if effect:
                present.add(key)
        elif ever:
            key = ever[pick % len(ever)]
            ops.append(o("delete", key, None, 2 * i, t1, outcome))
            if effect:
                present.discard(key)
    return ops


@given(set_actions, st.booleans())
def test_sequential_set_histories_are_valid(
    actions: list[tuple[str, str, bool, int, int]], with_final: bool
) -> None:
    ops = sequential_set(actions, with_info=True)
    final_t0 = ops[-1].t0 if with_final and ops and ops[-1].f == "list" else None
    found = check_listing(ops, final_t0=final_t0)
    assert [a.kind for a in found if a.kind != "recovered"] == []


@given(set_actions, st.data())
def test_a_superseded_listing_is_always_flagged(
    actions: list[tuple[str, str, bool, int, int]], data: st.DataObject
) -> None:
    ops = sequential_set(actions, with_info=False)
    # Replay to know, before each listing, every earlier state of the set.
    choices = []
    present: set[str] = set()
    states: list[frozenset[str]] = [frozenset()]
    for i, op in enumerate(ops):
        if op.f == "list":
            now = frozenset(present)
            choices += [(i, s) for s in sorted(set(states), key=sorted) if s != now]
        elif op.outcome == OK:
            (present.add if op.f == "put" else present.discard)(op.key)
            states.append(frozenset(present))
    if not choices:
        return
    i, older = data.draw(st.sampled_from(choices))
    listing = ops[i]
    ops[i] = Op(
        listing.process, "list", P, None, OK, listing.t0, listing.t1, {"keys": sorted(older)}
    )
    flagged = {(a.kind, id(a.op)) for a in check_listing(ops)}
    assert flagged & {("missed", id(ops[i])), ("resurrected", id(ops[i]))}


def test_verdict_summary_is_json() -> None:
    ops = [
        o("put", K, "a", 0, 1),
        o("put", K, "b", 2, 3),
        nemesis("kill", "kill", 3.5),
        o("get", K, "a", 4, 5),
    ]
    summary = check_history(ops).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["kinds"] == {"stale": 1}
    assert summary["counts"] == {"get/ok": 1, "nemesis/ok": 1, "put/ok": 2}
    anomalies = summary["anomalies"]
    assert isinstance(anomalies, list)
    [anomaly] = anomalies
    assert anomaly["op"]["value"] == "a"
    assert [e["value"] for e in anomaly["nemesis"]] == ["kill"]

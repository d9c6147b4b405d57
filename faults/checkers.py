"""Consistency checkers: pure functions that judge a fault run's history.

The record format and the ``data`` each workload writes are in :mod:`faults.history`
(register ``reg/``, set ``set/``, listing ``list/``, multipart ``mpu/``, copy ``copy/``).
The guarantees are fault-testing.md §3.6; this is §3.7 made exact and tested first
(tests/faults/test_checkers.py), after Garage's vacuous set2 checker (cfbfa09d).

Theory of operation
-------------------
Time is the runner's monotonic clock. A *write* (put, delete, CompleteMultipartUpload,
CopyObject) that did not fail spans ``[t0, t1]``; an ``info`` write may land at any time
after ``t0``, so it spans ``[t0, +inf)``. The initial state is a delete at ``-inf``.

- A write ``w`` is *provably superseded* before time ``T`` when an ``ok`` write ``w2``
  started after ``w`` ended and ended before ``T``: ``w.t1 < w2.t0 and w2.t1 < T``.
  ``deadline(w)`` is the least such ``w2.t1``, so superseded means ``deadline(w) < T``.
- A read ``r`` that returns some content has *sources*: the writes that would produce that
  exact content (the put of its unique value id; for 404, the deletes and the initial state;
  for multipart, the Completes naming exactly those parts; for a copy destination, the copies
  that could have read that source value). Then, in order:

  - no source, or only failed ones: **garbage**;
  - every source started after ``r`` ended: **future-read**;
  - every source provably superseded before ``r`` began: **stale**.

- **flip-flop**: let ``T`` be the end of the last ``ok`` write. Reads starting after ``T``
  see settled writes, so for two reads ``r1`` ending before ``r2`` starts, a different
  value in ``r2`` is a flip-flop, unless an ``info`` write (which may still land) produces it
  and ``r2`` does not return to a value already left behind.
- Sets and listings (Jepsen's set-full, per element ``e``, for a listing ``r``):
  ``must``: some ok add ended before ``r`` began, and every delete invoked before ``r``
  ended had ended before that add began; ``must_not`` is the mirror for deletes. Then
  **missed** = must - seen, **resurrected** = seen ∩ must_not, **unexpected** = seen elements
  with no add (ok or info) invoked before ``r`` ended. In final reads a missed element is
  **lost**, and an element added only by ``info`` writes that is present is **recovered**
  (allowed: counted, not an anomaly). Each paginated listing must hold no key twice
  (**duplicate**) and be strictly sorted (**out-of-order**).
- Multipart: a read's parts must equal the parts of one Complete: else **mpu-empty** (no
  parts at all), **mpu-missing-part** (a proper subsequence of a Complete's parts) or
  **mpu-wrong-part**; then the register rules (a 404 after an ok Complete is stale).
- Copy: a destination read is one complete source value (**copy-partial**: a corrupt body;
  **copy-mixed**: chunks of several values; **copy-garbage**: never written to the source)
  that a copy could have read: written before the copy ended (**copy-future**) and not
  provably superseded on the source before the copy began (**copy-superseded**); then the
  register rules on the destination.
- **corrupt**: a read whose body failed its self-checksum, or whose ``sha256`` differs from
  the one its put recorded. **malformed**: an op lacking the ``data`` its family needs (a
  harness bug must not pass as a valid run).
- Convergence (after heal and sync): **divergent-merkle** (replicas of one table partition
  with different Merkle roots), **missing-block**, **corrupt-block** (a replica's block file
  whose content hash is not its name).

Complexity: per key, O(W log W) for deadlines, O(R) for reads with unique values and
O(R_after²) for flip-flops; per listing O(elements under its prefix). A few thousand ops
take well under a second.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from faults.history import FAIL, FINAL, NEMESIS, NEMESIS_PROCESS, OK, History, Op

__all__ = [
    "ALLOWED_KINDS",
    "CONTEXT_WINDOW_NS",
    "FAMILIES",
    "INVALID",
    "UNKNOWN",
    "VALID",
    "Anomaly",
    "Context",
    "Verdict",
    "check_convergence",
    "check_copy",
    "check_history",
    "check_listing",
    "check_multipart",
    "check_register",
    "check_set",
]

VALID = "valid"
INVALID = "invalid"
UNKNOWN = "unknown"
#: Kinds a checker reports that do not make a run invalid (counted in the report).
ALLOWED_KINDS = frozenset({"recovered"})
#: History shown around each anomaly in the report: ±2 s (fault-testing.md §3.7).
CONTEXT_WINDOW_NS = 2_000_000_000

_INF = float("inf")
_READS = frozenset({"get", "head"})
# How many keys an anomaly's detail names at most (a listing may hold hundreds).
_DETAIL_KEYS = 10


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One violated guarantee.

    Attributes:
        kind: What went wrong (the module docstring lists the kinds).
        op: The read or listing that shows it; ``None`` for convergence anomalies.
        detail: A sentence for the report.
    """

    kind: str
    op: Op | None
    detail: str


# ---------------------------------------------------------------- the register core


@dataclass(frozen=True, slots=True, eq=False)
class _Write:
    """A write that did not fail; ``t1`` is +inf for an info write (in flight forever)."""

    op: Op | None  # None: the initial state (absent)
    t0: float
    t1: float
    ok: bool

    @classmethod
    def of(cls, op: Op) -> _Write:
        done = op.outcome == OK and op.t1 is not None
        return cls(op, op.t0, op.t1 if done and op.t1 is not None else _INF, done)


_INIT = _Write(None, -_INF, -_INF, ok=True)


def _deadlines(writes: Sequence[_Write]) -> list[float]:
    """For each write, the earliest end of an ok write that started after it ended."""
    oks = sorted((w.t0, w.t1) for w in writes if w.ok and w.op is not None)
    starts = [t0 for t0, _ in oks]
    suffix_min = [_INF] * (len(oks) + 1)
    for i in range(len(oks) - 1, -1, -1):
        suffix_min[i] = min(oks[i][1], suffix_min[i + 1])
    return [suffix_min[bisect.bisect_right(starts, w.t1)] for w in writes]


@dataclass(frozen=True, slots=True)
class _Judged:
    """A read that passed the source checks, kept for the flip-flop check."""

    op: Op
    ident: Hashable
    by_info: bool  # an info write (which may land any time) produces this content


class _Register:
    """The writes of one key and the source rules every family shares."""

    __slots__ = ("deadlines", "settled_ns", "writes")

    def __init__(self, writes: Sequence[_Write]) -> None:
        self.writes = list(writes)
        self.deadlines = _deadlines(self.writes)
        self.settled_ns = max((w.t1 for w in self.writes if w.ok), default=-_INF)

    def judge(
        self, read: Op, ident: Hashable, sources: Sequence[int], garbage: str
    ) -> Anomaly | _Judged:
        """Applies garbage / future-read / stale to one ok read with the given sources."""
        if not sources:
            return Anomaly("garbage", read, garbage)
        r_t1 = _INF if read.t1 is None else read.t1
        live = [i for i in sources if self.writes[i].t0 < r_t1]
        if not live:
            return Anomaly("future-read", read, f"{_show(ident)} was written after the read ended")
        if all(self.deadlines[i] < read.t0 for i in live):
            return Anomaly("stale", read, f"{_show(ident)} was overwritten before the read began")
        return _Judged(read, ident, any(not self.writes[i].ok for i in live))

    def flip_flops(self, judged: Iterable[_Judged]) -> list[Anomaly]:
        """Reads after the last ok write that disagree with an earlier settled read."""
        after = sorted((j for j in judged if j.op.t0 > self.settled_ns), key=lambda j: j.op.t0)
        out = []
        for r2 in after:
            prior = [r1 for r1 in after if r1.op.t1 is not None and r1.op.t1 < r2.op.t0]
            differing = [r1 for r1 in prior if r1.ident != r2.ident]
            if not differing:
                continue
            left_at = min(
                (r0.op.t1 for r0 in prior if r0.ident == r2.ident and r0.op.t1 is not None),
                default=_INF,
            )
            returned = any(r1.op.t0 > left_at for r1 in differing)
            if not r2.by_info or returned:
                out.append(
                    Anomaly(
                        "flip-flop",
                        r2.op,
                        f"read {_show(r2.ident)} after an earlier read saw "
                        f"{_show(differing[-1].ident)}, all writes having settled",
                    )
                )
        return out


def _show(ident: Hashable) -> str:
    if ident is None:
        return "absent (404)"
    if isinstance(ident, tuple):
        return "parts [" + ", ".join(map(str, ident)) + "]"
    return repr(ident)


def _by_key(ops: Iterable[Op]) -> dict[str, list[Op]]:
    groups: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        groups[op.key].append(op)
    return groups


def _ok_reads(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if op.f in _READS and op.outcome == OK]


def _is_corrupt(read: Op) -> bool:
    return bool(read.data.get("corrupt"))


def _finish(reg: _Register, results: Iterable[Anomaly | _Judged]) -> list[Anomaly]:
    results = list(results)
    out = [r for r in results if isinstance(r, Anomaly)]
    out += reg.flip_flops(r for r in results if isinstance(r, _Judged))
    return out


class _KeyWrites:
    """The puts and deletes of one key, indexed by value."""

    __slots__ = ("absent", "by_value", "failed_values", "writes")

    def __init__(self, ops: Iterable[Op]) -> None:
        self.writes: list[_Write] = [_INIT]
        self.by_value: dict[str, list[int]] = defaultdict(list)
        self.absent: list[int] = [0]
        self.failed_values: set[str] = set()
        for op in ops:
            if op.f == "put" and op.value is not None:
                if op.outcome == FAIL:
                    self.failed_values.add(op.value)
                else:
                    self.by_value[op.value].append(self.add(op))
            elif op.f == "delete" and op.outcome != FAIL:
                self.absent.append(self.add(op))

    def add(self, op: Op) -> int:
        self.writes.append(_Write.of(op))
        return len(self.writes) - 1

    def garbage(self, value: str) -> str:
        if value in self.failed_values:
            return f"{value!r} was written only by a failed put (no effect)"
        return f"{value!r} was never written to this key"


# ---------------------------------------------------------------- register


def check_register(ops: Iterable[Op]) -> list[Anomaly]:
    """Register rules per key: stale, garbage, future-read, corrupt, flip-flop.

    Args:
        ops: ``put``/``delete``/``get``/``head`` ops of one or more keys (grouped by key;
            other ``f`` are ignored).

    Returns:
        The anomalies, per key in read order.
    """
    out: list[Anomaly] = []
    for kops in _by_key(ops).values():
        out += _check_register_key(kops)
    return out


def _sha256(w: _Write) -> object:
    return None if w.op is None else w.op.data.get("sha256")


def _check_register_key(ops: Sequence[Op]) -> list[Anomaly]:
    kw = _KeyWrites(ops)
    reg = _Register(kw.writes)
    results: list[Anomaly | _Judged] = []
    for r in _ok_reads(ops):
        if _is_corrupt(r):
            results.append(Anomaly("corrupt", r, "the body failed its self-checksum"))
            continue
        if r.value is None:
            results.append(reg.judge(r, None, kw.absent, ""))
            continue
        sources = kw.by_value.get(r.value, [])
        got = r.data.get("sha256")
        wrote = {_sha256(reg.writes[i]) for i in sources} - {None}
        if got is not None and wrote and got not in wrote:
            results.append(Anomaly("corrupt", r, f"the body of {r.value!r} has another sha256"))
            continue
        results.append(reg.judge(r, r.value, sources, kw.garbage(r.value)))
    return _finish(reg, results)


# ---------------------------------------------------------------- multipart


def check_multipart(ops: Iterable[Op]) -> list[Anomaly]:
    """Multipart rules per key: the object is exactly the parts of one completed upload.

    Args:
        ops: ``mpu`` (CompleteMultipartUpload), ``put``, ``delete`` and ``get`` ops of one or
            more keys; a read's ``data["parts"]`` is compared with the Completes'.

    Returns:
        mpu-empty, mpu-missing-part, mpu-wrong-part, corrupt, malformed, and the register
        anomalies (garbage, future-read, stale, flip-flop).
    """
    out: list[Anomaly] = []
    for kops in _by_key(ops).values():
        out += _check_multipart_key(kops)
    return out


def _check_multipart_key(ops: Sequence[Op]) -> list[Anomaly]:
    writes: list[_Write] = [_INIT]
    absent = [0]
    by_parts: dict[tuple[str, ...], list[int]] = defaultdict(list)
    failed: set[tuple[str, ...]] = set()
    out: list[Anomaly] = []
    for op in ops:
        if op.f == "mpu":
            if not isinstance(op.data.get("parts"), list):
                out.append(Anomaly("malformed", op, "a Complete without data['parts']"))
                continue
            parts = tuple(map(str, op.data["parts"]))
        elif op.f == "put" and op.value is not None:
            parts = (op.value,)
        elif op.f == "delete":
            if op.outcome != FAIL:
                writes.append(_Write.of(op))
                absent.append(len(writes) - 1)
            continue
        else:
            continue
        if op.outcome == FAIL:
            failed.add(parts)
        else:
            writes.append(_Write.of(op))
            by_parts[parts].append(len(writes) - 1)
    reg = _Register(writes)
    results: list[Anomaly | _Judged] = []
    for r in _ok_reads(ops):
        if _is_corrupt(r):
            results.append(Anomaly("corrupt", r, "a part failed its self-checksum"))
        elif r.value is None:
            results.append(reg.judge(r, None, absent, ""))
        elif not isinstance(r.data.get("parts"), list):
            results.append(Anomaly("malformed", r, "a multipart read without data['parts']"))
        elif not r.data["parts"]:
            results.append(Anomaly("mpu-empty", r, "the object exists but has no data"))
        else:
            parts = tuple(map(str, r.data["parts"]))
            if parts in by_parts or parts in failed:
                garbage = "these parts were completed only by a failed Complete"
                results.append(reg.judge(r, parts, by_parts.get(parts, []), garbage))
            elif any(_proper_subsequence(parts, c) for c in by_parts):
                results.append(Anomaly("mpu-missing-part", r, f"{_show(parts)} lacks parts"))
            else:
                results.append(
                    Anomaly("mpu-wrong-part", r, f"{_show(parts)} match no completed upload")
                )
    return out + _finish(reg, results)


def _proper_subsequence(short: Sequence[str], long: Sequence[str]) -> bool:
    if len(short) >= len(long):
        return False
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


# ---------------------------------------------------------------- copy


def check_copy(ops: Iterable[Op]) -> list[Anomaly]:
    """Copy rules: a destination holds one complete source version a copy could have read.

    Keys that are the target of a ``copy`` op are destinations; every other key (the
    sources) gets the register rules.

    Args:
        ops: ``copy`` ops (``data["source"]`` = the source key) and ``put``/``delete``/
            ``get`` ops on sources and destinations.

    Returns:
        copy-partial, copy-mixed, copy-garbage, copy-future, copy-superseded, malformed, and
        the register anomalies of sources and destinations.
    """
    groups = _by_key(ops)
    out: list[Anomaly] = []
    dests = {k for k, kops in groups.items() if any(op.f == "copy" for op in kops)}
    sources: dict[str, tuple[_KeyWrites, list[float]]] = {}
    for key, kops in groups.items():
        if key in dests:
            continue
        out += _check_register_key(kops)
        kw = _KeyWrites(kops)
        sources[key] = (kw, _deadlines(kw.writes))
    for key in sorted(dests):
        out += _check_copy_dest(groups[key], sources)
    return out


def _check_copy_dest(
    ops: Sequence[Op], sources: Mapping[str, tuple[_KeyWrites, list[float]]]
) -> list[Anomaly]:
    out: list[Anomaly] = []
    empty = (_KeyWrites(()), [_INF])
    kw = _KeyWrites(ops)
    copies: list[tuple[int, str]] = []  # (write index, source key)
    for op in ops:
        if op.f != "copy" or op.outcome == FAIL:
            continue
        source = op.data.get("source")
        if not isinstance(source, str):
            out.append(Anomaly("malformed", op, "a copy without data['source']"))
            continue
        copies.append((kw.add(op), source))
    reg = _Register(kw.writes)

    def copy_reads(i: int, source: str, value: str) -> bool | None:
        """True: copy i could have read value; False: only superseded ones; None: none."""
        src, deadlines = sources.get(source, empty)
        c = kw.writes[i]
        begun = [j for j in src.by_value.get(value, []) if src.writes[j].t0 < c.t1]
        if not begun:
            return None
        return any(deadlines[j] >= c.t0 for j in begun)

    results: list[Anomaly | _Judged] = []
    for r in _ok_reads(ops):
        values = {str(v) for v in r.data.get("values", ())}
        if _is_corrupt(r):
            results.append(Anomaly("copy-partial", r, "the copied body failed its checksum"))
        elif len(values) > 1:
            results.append(
                Anomaly("copy-mixed", r, f"the body mixes values {sorted(values)[:_DETAIL_KEYS]}")
            )
        elif r.value is None:
            results.append(reg.judge(r, None, kw.absent, ""))
        else:
            verdicts = {i: copy_reads(i, s, r.value) for i, s in copies}
            direct = kw.by_value.get(r.value, [])
            found = [i for i, ok in verdicts.items() if ok] + direct
            if found:
                results.append(reg.judge(r, r.value, found, ""))
            elif any(v is False for v in verdicts.values()):
                results.append(
                    Anomaly(
                        "copy-superseded",
                        r,
                        f"{r.value!r} was overwritten on the source before every copy began",
                    )
                )
            elif any(r.value in sources.get(s, empty)[0].by_value for _, s in copies):
                results.append(
                    Anomaly("copy-future", r, f"{r.value!r} was written after every copy ended")
                )
            else:
                results.append(
                    Anomaly("copy-garbage", r, f"{r.value!r} was never written to the source")
                )
    return out + _finish(reg, results)


# ---------------------------------------------------------------- sets and listings


def check_set(ops: Iterable[Op], *, final_t0: int | None = None) -> list[Anomaly]:
    """Set membership rules: missed, resurrected, unexpected, lost; recovered (allowed).

    Args:
        ops: ``put`` (add) and ``delete`` ops of element keys and ``list`` ops whose key is
            the prefix listed (``data["pages"]`` or ``data["keys"]``).
        final_t0: Listings invoked at or after it are final reads; ``None`` takes the
            ``t0`` of a final-phase marker op among ``ops`` (no marker: no final reads).

    Returns:
        The anomalies, including ``recovered`` ones (in :data:`ALLOWED_KINDS`).
    """
    ops = list(ops)
    if final_t0 is None:
        final_t0 = next((op.t0 for op in reversed(ops) if op.f == FINAL), None)
    adds: dict[str, list[_Write]] = defaultdict(list)
    deletes: dict[str, list[_Write]] = defaultdict(list)
    for op in ops:
        if op.outcome == FAIL:
            continue
        if op.f == "put":
            adds[op.key].append(_Write.of(op))
        elif op.f == "delete":
            deletes[op.key].append(_Write.of(op))
    elements = sorted(adds.keys() | deletes.keys())
    under: dict[str, list[str]] = {}
    out: list[Anomaly] = []
    lost: set[str] = set()
    recovered: set[str] = set()
    for r in (op for op in ops if op.f == "list" and op.outcome == OK):
        seen = _listed(r)
        if seen is None:
            out.append(Anomaly("malformed", r, "a listing without data['pages'] or ['keys']"))
            continue
        final = final_t0 is not None and r.t0 >= final_t0
        r_t1 = _INF if r.t1 is None else r.t1
        seen_set = set(seen)
        for e in sorted(seen_set):
            if not e.startswith(r.key):
                out.append(Anomaly("unexpected", r, f"{e!r} is outside the prefix {r.key!r}"))
            elif not any(a.t0 < r_t1 for a in adds.get(e, ())):
                out.append(Anomaly("unexpected", r, f"{e!r} was never added before the listing"))
        if r.key not in under:
            lo = bisect.bisect_left(elements, r.key)
            hi = lo
            while hi < len(elements) and elements[hi].startswith(r.key):
                hi += 1
            under[r.key] = elements[lo:hi]
        for e in under[r.key]:
            e_adds, e_deletes = adds.get(e, []), deletes.get(e, [])
            if e not in seen_set:
                if _must_hold(e_adds, e_deletes, r.t0, r_t1):
                    if not final:
                        out.append(Anomaly("missed", r, f"{e!r} was added before the listing"))
                    elif e not in lost:
                        lost.add(e)
                        out.append(Anomaly("lost", r, f"ack'd add of {e!r} is gone at the end"))
            elif _must_hold(e_deletes, e_adds, r.t0, r_t1):
                out.append(Anomaly("resurrected", r, f"{e!r} was deleted before the listing"))
            elif final and e_adds and not any(a.ok for a in e_adds) and e not in recovered:
                recovered.add(e)
                out.append(Anomaly("recovered", r, f"indeterminate add of {e!r} landed"))
    return out


def _must_hold(mine: Sequence[_Write], theirs: Sequence[_Write], r_t0: float, r_t1: float) -> bool:
    """Some ok write of mine ended before r began, after every rival invoked before r ended."""
    rivals = [w for w in theirs if w.t0 < r_t1]
    return any(w.ok and w.t1 < r_t0 and all(x.t1 < w.t0 for x in rivals) for w in mine)


def _listed(r: Op) -> list[str] | None:
    """The keys of a listing in the order returned, or ``None`` if it records none."""
    pages = r.data.get("pages")
    if isinstance(pages, list) and all(isinstance(p, list) for p in pages):
        return [str(k) for page in pages for k in page]
    keys = r.data.get("keys")
    if isinstance(keys, list):
        return [str(k) for k in keys]
    return None


def check_listing(ops: Iterable[Op], *, final_t0: int | None = None) -> list[Anomaly]:
    """Listing rules: the set rules plus, per listing, no duplicates and strict order.

    Args:
        ops: As for :func:`check_set`; each ``list`` op's keys across all its pages are
            checked as one sequence (duplicates and order across continuation tokens).
        final_t0: As for :func:`check_set`.

    Returns:
        duplicate and out-of-order anomalies (one per listing), then :func:`check_set`'s.
    """
    ops = list(ops)
    out: list[Anomaly] = []
    for r in (op for op in ops if op.f == "list" and op.outcome == OK):
        keys = _listed(r)
        if keys is None:
            continue  # reported as malformed by check_set
        dups = sorted(k for k, n in Counter(keys).items() if n > 1)
        if dups:
            out.append(Anomaly("duplicate", r, f"listed twice: {dups[:_DETAIL_KEYS]}"))
        bad = next((i for i in range(len(keys) - 1) if keys[i] > keys[i + 1]), None)
        if bad is not None:
            out.append(Anomaly("out-of-order", r, f"{keys[bad]!r} listed before {keys[bad + 1]!r}"))
    return out + check_set(ops, final_t0=final_t0)


# ---------------------------------------------------------------- convergence


def check_convergence(
    merkle_roots: Mapping[tuple[str, int], Mapping[str, object]],
    blocks: Mapping[str, Mapping[str, str]],
    referenced: Mapping[str, Collection[str]],
) -> list[Anomaly]:
    """Final convergence: equal Merkle roots, every referenced block on its replicas intact.

    Args:
        merkle_roots: Per ``(table, partition)``, each replica node's Merkle root (any value
            compared with ``==``; an absent tree as ``None`` or the empty root).
        blocks: Per node, its block files: block hash -> hash of the file's content (as the
            harness computed it, decompressed, with the same algorithm as the name).
        referenced: Per block hash referenced by a live object version, the nodes that must
            hold it.

    Returns:
        divergent-merkle, missing-block and corrupt-block anomalies (``op=None``).
    """
    out: list[Anomaly] = []
    for (table, partition), roots in sorted(merkle_roots.items()):
        by_root: dict[str, list[str]] = defaultdict(list)
        for node, root in sorted(roots.items()):
            by_root[_hex(root)].append(node)
        if len(by_root) > 1:
            groups = "; ".join(f"{nodes} have {root}" for root, nodes in sorted(by_root.items()))
            out.append(
                Anomaly("divergent-merkle", None, f"{table} partition {partition}: {groups}")
            )
    for block, nodes in sorted(referenced.items()):
        for node in sorted(nodes):
            held = blocks.get(node, {})
            if block not in held:
                out.append(Anomaly("missing-block", None, f"block {block} is missing on {node}"))
            elif held[block] != block:
                out.append(
                    Anomaly(
                        "corrupt-block",
                        None,
                        f"block {block} on {node} has content hash {held[block]}",
                    )
                )
    return out


def _hex(root: object) -> str:
    if isinstance(root, bytes | bytearray):
        return root.hex()[:16]
    return str(root)[:32]


# ---------------------------------------------------------------- the whole history

#: The checker of each key prefix (one family of workloads).
FAMILIES: Mapping[str, Callable[..., list[Anomaly]]] = {
    "copy/": check_copy,
    "list/": check_listing,
    "mpu/": check_multipart,
    "reg/": check_register,
    "set/": check_listing,
}
_LISTINGS = frozenset({"list/", "set/"})


@dataclass(frozen=True, slots=True)
class Context:
    """The history around one anomaly, for the report.

    Attributes:
        anomaly: The anomaly.
        ops: Client ops overlapping ``[op.t0 - 2 s, op.t1 + 2 s]``, by ``t0``.
        nemesis: Nemesis events in that window, plus the last one before it (the fault then
            in force), by ``t0``.
    """

    anomaly: Anomaly
    ops: tuple[Op, ...]
    nemesis: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one run.

    Attributes:
        status: ``"valid"``, ``"invalid"`` (some anomaly) or ``"unknown"`` (no anomaly, but
            the final reads did not complete or nothing was checked).
        reason: Why, in one sentence.
        anomalies: Every anomaly that makes the run invalid, by time.
        allowed: Findings in :data:`ALLOWED_KINDS` (recovered indeterminate writes).
        contexts: The history around each anomaly, aligned with ``anomalies``.
        counts: Ops by ``(f, outcome)``.
        checked: Ok reads and listings judged, per family prefix (0 everywhere would make
            a vacuous verdict, so that is *unknown*).
    """

    status: str
    reason: str
    anomalies: tuple[Anomaly, ...] = ()
    allowed: tuple[Anomaly, ...] = ()
    contexts: tuple[Context, ...] = ()
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    checked: Mapping[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """True when the status is ``"valid"``."""
        return self.status == VALID

    def kinds(self) -> dict[str, int]:
        """How many anomalies (and allowed findings) of each kind, sorted by kind."""
        found = Counter(a.kind for a in (*self.anomalies, *self.allowed))
        return dict(sorted(found.items()))

    def summary(self) -> dict[str, object]:
        """The verdict as JSON values, for the report and the kept histories of failed runs."""
        return {
            "status": self.status,
            "reason": self.reason,
            "kinds": self.kinds(),
            "counts": {f"{f}/{outcome}": n for (f, outcome), n in self.counts.items()},
            "checked": dict(self.checked),
            "anomalies": [
                {
                    "kind": c.anomaly.kind,
                    "detail": c.anomaly.detail,
                    "op": None if c.anomaly.op is None else c.anomaly.op.to_json(),
                    "nemesis": [e.to_json() for e in c.nemesis],
                }
                for c in self.contexts
            ],
        }


def check_history(
    history: History | Iterable[Op], *, convergence: Iterable[Anomaly] = ()
) -> Verdict:
    """Routes a run's client ops by key prefix (:data:`FAMILIES`) and judges the run.

    Args:
        history: The run's ops, with its nemesis events and final-phase marker.
        convergence: Anomalies from :func:`check_convergence`, when the harness compared the
            replicas after the run.

    Returns:
        The verdict: invalid if any anomaly; else unknown if the final-phase marker is
        missing or not ``ok``, or no read was checked; else valid.
    """
    ops = list(history.ops if isinstance(history, History) else history)
    markers = [op for op in ops if op.f == FINAL]
    marker = markers[-1] if markers else None
    client = [op for op in ops if op.process != NEMESIS_PROCESS and op.f not in (NEMESIS, FINAL)]
    routed: dict[str, list[Op]] = defaultdict(list)
    for op in client:
        prefix = next((p for p in FAMILIES if op.key.startswith(p)), None)
        if prefix is not None:
            routed[prefix].append(op)
    found: list[Anomaly] = []
    for prefix, checker in FAMILIES.items():
        if prefix in _LISTINGS:
            found += checker(routed[prefix], final_t0=marker.t0 if marker else None)
        else:
            found += checker(routed[prefix])
    found += convergence
    found.sort(key=lambda a: (_INF if a.op is None else a.op.t0, a.kind))
    anomalies = tuple(a for a in found if a.kind not in ALLOWED_KINDS)
    allowed = tuple(a for a in found if a.kind in ALLOWED_KINDS)
    checked = {
        p: sum(1 for op in routed[p] if op.outcome == OK and (op.f in _READS or op.f == "list"))
        for p in FAMILIES
    }
    if anomalies:
        kinds = Counter(a.kind for a in anomalies)
        status, reason = (
            INVALID,
            "anomalies: " + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())),
        )
    elif marker is None:
        status, reason = UNKNOWN, "no final-phase marker: the final reads were not run"
    elif marker.outcome != OK:
        status, reason = UNKNOWN, "the final reads could not complete"
    elif not any(checked.values()):
        status, reason = UNKNOWN, "no read of a checked key prefix completed"
    else:
        status, reason = VALID, f"{sum(checked.values())} reads and listings checked"
    return Verdict(
        status=status,
        reason=reason,
        anomalies=anomalies,
        allowed=allowed,
        contexts=_contexts(anomalies, client, [op for op in ops if op.f == NEMESIS]),
        counts=dict(sorted(Counter((op.f, op.outcome) for op in ops).items())),
        checked=checked,
    )


def _contexts(
    anomalies: Sequence[Anomaly], client: Sequence[Op], nemesis: Sequence[Op]
) -> tuple[Context, ...]:
    by_t0 = sorted(client, key=lambda op: op.t0)
    starts = [op.t0 for op in by_t0]
    longest = max((_end(op) - op.t0 for op in by_t0), default=0)
    events = sorted(nemesis, key=lambda op: op.t0)
    out = []
    for a in anomalies:
        if a.op is None:
            out.append(Context(a, (), ()))
            continue
        lo, hi = a.op.t0 - CONTEXT_WINDOW_NS, _end(a.op) + CONTEXT_WINDOW_NS
        first = bisect.bisect_left(starts, lo - longest)
        last = bisect.bisect_right(starts, hi)
        near = tuple(op for op in by_t0[first:last] if _end(op) >= lo)
        earlier = [e for e in events if e.t0 < lo]
        in_force = earlier[-1] if earlier else None
        window = [e for e in events if e.t0 <= hi and (_end(e) >= lo or e is in_force)]
        out.append(Context(a, near, tuple(window)))
    return tuple(out)


def _end(op: Op) -> int:
    """An op's end for display: an indeterminate op is shown at its start."""
    return op.t0 if op.t1 is None else op.t1

"""The history of a fault run: every client operation and nemesis event, as JSON lines.

Theory of operation
-------------------
A run's client tasks and its nemesis append :class:`Op` records to one :class:`History`.
Each record is written once, when the operation completes (or is given up on), with the
runner's ``time.monotonic_ns()`` at invoke (``t0``) and at completion (``t1``). All checking
uses this single runner clock, never a node's clock (nodes run under faketime).

Outcomes (fault-testing.md §3.6):

- ``"ok"``: 2xx, and also GET/HEAD 404 (an ok read of "absent", ``value=None``).
- ``"fail"``: the operation provably had no effect: a 4xx on input, or a connection refused
  before the request was sent; and any read that did not answer.
- ``"info"``: indeterminate: a 5xx, a timeout or a reset after a write was sent. The write
  may land at any time, now or later, so checkers treat it as in flight forever; ``t1`` is
  ``None`` (or, when recorded, ignored for writes).

Invariants: ``value`` ids written by one workload are unique per write (``"{process}-{seq}"``),
so each read maps to exactly one write; ``t0 <= t1``; nemesis events use ``process=-1``.

The ``data`` contract per workload (key prefixes route ops to checkers, :mod:`faults.checkers`)
------------------------------------------------------------------------------------------------
Register, keys ``reg/<k>``:
    ``put`` (``value`` = the id written; optional ``data["sha256"]`` of the body written),
    ``delete`` (``value=None``), ``get`` (``value`` = the id decoded from the body, ``None``
    on 404; ``data["corrupt"]=True`` when the body's self-checksum failed; optional
    ``data["sha256"]`` of the body read, compared with the put's).
Set and listing, keys ``set/<s>/<n>`` (adds only) and ``list/<s>/<n>`` (adds and deletes):
    ``put`` and ``delete`` of the element key; ``list`` with ``key`` = the prefix listed
    (``set/<s>/``) and ``data["pages"]`` = ``[[key, ...], ...]``, each page's keys in the order
    the server returned them (``data["keys"]`` = one flat list is accepted too).
Multipart, keys ``mpu/<k>``:
    ``mpu``, one per CompleteMultipartUpload call: ``value`` = the upload's unique id (a
    duplicate Complete of the same upload repeats it), ``data["parts"]`` = the part value
    ids named in the Complete request, in part-number order (the last upload of each part
    number that the workload listed). ``get``: ``value=None`` on 404, else any non-None id;
    ``data["parts"]`` = the part value ids decoded from the body, in order (``[]`` for an
    empty body); ``data["corrupt"]`` as for registers. Other ``f`` (``"upload-part"``,
    ``"create-mpu"``...) may be recorded; checkers only count them.
Copy, keys ``copy/...``:
    plain ``put``/``get``/``delete`` on source keys; ``copy`` with ``key`` = the destination
    and ``data["source"]`` = the source key (``value`` is optional and ignored); ``get`` on
    the destination as for registers, plus optional ``data["values"]`` = the value ids found in
    each self-checksummed chunk of the body (more than one distinct id: a mixed body).
Nemesis events:
    ``process=-1, f="nemesis", key=<nemesis name>`` (``"kill"``, ``"partition"``...),
    ``value`` = the action (``"start"``, ``"stop"``, ``"kill"``, ``"restart"``, ``"heal"``...),
    ``data`` = its parameters (nodes, grudge, offsets...), ``outcome`` as the action went.
Final-phase marker:
    ``process=-1, f="final", key="", value=None``; ``t0`` = when the final phase (heal, wait,
    final reads) began, ``t1`` = when it ended; ``outcome="ok"`` when every final read
    completed, else ``"fail"`` (the verdict is then *unknown*). Reads invoked at or after
    ``t0`` are the final reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FAIL",
    "FINAL",
    "INFO",
    "NEMESIS",
    "NEMESIS_PROCESS",
    "OK",
    "OUTCOMES",
    "History",
    "Op",
]

OK = "ok"
FAIL = "fail"
INFO = "info"
#: Every outcome an :class:`Op` may have.
OUTCOMES = frozenset({OK, FAIL, INFO})
#: ``process`` of the events that are not client operations (nemesis, final-phase marker).
NEMESIS_PROCESS = -1
#: ``f`` of a nemesis event.
NEMESIS = "nemesis"
#: ``f`` of the final-phase marker op.
FINAL = "final"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation or nemesis event, as completed.

    Attributes:
        process: The client task id; ``-1`` for nemesis events and the final-phase marker.
        f: What was done: ``"put"``, ``"get"``, ``"delete"``, ``"list"``, ``"mpu"``,
            ``"copy"``, ``"nemesis"``, ``"final"``...
        key: The object key, the prefix for ``"list"``, the nemesis name for ``"nemesis"``.
        value: The unique value id written or read; ``None`` for absent (404) or none.
        outcome: ``"ok"``, ``"fail"`` or ``"info"`` (module docstring).
        t0: The runner's ``time.monotonic_ns()`` at invoke.
        t1: The same clock at completion; ``None`` when indeterminate.
        data: Op-specific JSON values (listing pages, parts...; module docstring).

    Raises:
        ValueError: On an unknown outcome or ``t1 < t0``.
    """

    process: int
    f: str
    key: str
    value: str | None
    outcome: str
    t0: int
    t1: int | None
    # JSON values of any shape; checkers read the keys the module docstring names.
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r} (expected ok, fail or info)")
        if self.t1 is not None and self.t1 < self.t0:
            raise ValueError(f"op completes before it starts: t0={self.t0} t1={self.t1}")

    def to_json(self) -> dict[str, Any]:
        """This op as a JSON object (one line of a history file)."""
        return {
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "outcome": self.outcome,
            "t0": self.t0,
            "t1": self.t1,
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, obj: object) -> Op:
        """Reads an op written by :meth:`to_json`.

        Raises:
            ValueError: When a field is missing or has the wrong type.
        """
        if not isinstance(obj, dict):
            raise ValueError(f"an op is a JSON object, not {type(obj).__name__}")
        try:
            process, f, key, value = obj["process"], obj["f"], obj["key"], obj["value"]
            outcome, t0, t1 = obj["outcome"], obj["t0"], obj["t1"]
        except KeyError as e:
            raise ValueError(f"op field {e.args[0]!r} is missing") from None
        data = obj.get("data", {})
        checks = (
            ("process", process, _is_int(process)),
            ("f", f, isinstance(f, str)),
            ("key", key, isinstance(key, str)),
            ("value", value, value is None or isinstance(value, str)),
            ("outcome", outcome, isinstance(outcome, str)),
            ("t0", t0, _is_int(t0)),
            ("t1", t1, t1 is None or _is_int(t1)),
            ("data", data, isinstance(data, dict)),
        )
        for name, got, good in checks:
            if not good:
                raise ValueError(f"op field {name!r} has the wrong type: {got!r}")
        return cls(process, f, key, value, outcome, t0, t1, data)


def _is_int(x: object) -> bool:
    # bool is an int subclass, but never a process id or a time.
    return isinstance(x, int) and not isinstance(x, bool)


class History:
    """The ops of one run, in the order they were appended.

    ``append`` may be called from several threads (client workers) and tasks at once.
    """

    __slots__ = ("_lock", "_ops")

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = list(ops)

    def append(self, op: Op) -> None:
        """Adds one completed op (thread-safe, never blocks for long)."""
        with self._lock:
            self._ops.append(op)

    @property
    def ops(self) -> tuple[Op, ...]:
        """A snapshot of every op, in append order."""
        with self._lock:
            return tuple(self._ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def nemesis_events(self) -> tuple[Op, ...]:
        """The nemesis events (``f == "nemesis"``), in append order."""
        return tuple(op for op in self.ops if op.f == NEMESIS)

    def final_marker(self) -> Op | None:
        """The last final-phase marker op (``f == "final"``), or ``None`` if there is none."""
        markers = [op for op in self.ops if op.f == FINAL]
        return markers[-1] if markers else None

    def to_jsonl(self, path: str | Path) -> None:
        """Writes one JSON object per line (a snapshot; appends made meanwhile may be left)."""
        text = "".join(json.dumps(op.to_json(), sort_keys=True) + "\n" for op in self.ops)
        Path(path).write_text(text, encoding="utf-8")

    @classmethod
    def from_jsonl(cls, path: str | Path) -> History:
        """Reads a file written by :meth:`to_jsonl` (blank lines are skipped).

        Raises:
            ValueError: Naming the line that is not valid JSON or not a valid op.
        """
        ops = []
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                ops.append(Op.from_json(json.loads(line)))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{n}: {e}") from None
        return cls(ops)

"""Known issues: implementation bugs these runs found that are not fixed yet.

Each known issue has a *signature*: a predicate on one anomaly (and the history around it)
that matches exactly that bug's symptom and nothing else. A run whose anomalies all match
known signatures is still invalid (the bugs are real), but the report says which bugs, the
CI tests mark it as an expected failure naming them, and a mutation check only counts as
caught by an anomaly that no known issue explains. Remove an entry when its bug is fixed:
its anomalies then fail the runs again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from faults.checkers import Anomaly
    from faults.history import Op

__all__ = ["KNOWN_ISSUES", "explain", "signature"]

#: Known bug name -> what is wrong, where, and the fix it needs. Empty: the last one
#: ("listing-resurrects": a listing showed a deleted key when a stale replica was in the
#: read quorum) was fixed in garage_table ``Table.get_range``, which now filters after
#: merging. Add an entry, with its ``signature`` case, when a run finds a bug not fixed yet.
KNOWN_ISSUES: Final[dict[str, str]] = {}


def signature(anomaly: Anomaly, ops_by_key: Mapping[str, Sequence[Op]]) -> str | None:
    """The known issue ``anomaly`` is an instance of, if any (none is known today)."""
    return None


def explain(anomalies: Iterable[Anomaly], ops: Iterable[Op]) -> tuple[list[str], int]:
    """The known issues among ``anomalies``, and how many anomalies none explains."""
    ops_by_key: dict[str, list[Op]] = {}
    for op in ops:
        ops_by_key.setdefault(op.key, []).append(op)
    found: set[str] = set()
    unexplained = 0
    for a in anomalies:
        name = signature(a, ops_by_key)
        if name is None:
            unexplained += 1
        else:
            found.add(name)
    return sorted(found), unexplained

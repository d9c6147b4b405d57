"""Jepsen-style fault testing of Garage in Python: ``python -m faults`` (``nox -s faults``).

Real node processes in a private network namespace, nemeses (kill, pause, partitions, clock
skew, disk full, block corruption, layout changes), client workloads that record every
operation in one history (:mod:`faults.history`), and pure checkers that judge it
(:mod:`faults.checkers`). The plan is ``fault-testing.md`` §3.
"""

"""Background workers: long-running node tasks driven step by step (Garage: src/util/background).

A node runs a handful of background tasks beside the requests it serves: block resync and
scrub, Merkle tree updates, table GC, lifecycle. Each is a :class:`Worker` that does one
bounded step per ``work()`` call and says what should happen next with a
:class:`WorkerState` (busy, throttled, idle, done). A :class:`BackgroundRunner` drives all
of them in one task group, survives their errors with an exponential back-off, reports
per-worker :class:`WorkerInfo` for ``garage worker list``, and on shutdown lets a running
step finish (up to a deadline) while idle workers stop at once.

A :class:`Tranquilizer` paces a worker to a fraction of the machine (sleep tranquility *
the mean step time), and :class:`BgVars` with :class:`Tunable` exposes knobs such as
``resync-tranquility`` to ``garage worker get/set``.
"""

from ._errors import BgVarError as BgVarError
from ._errors import InvalidBgVarValueError as InvalidBgVarValueError
from ._errors import ReadOnlyBgVarError as ReadOnlyBgVarError
from ._errors import RunnerClosedError as RunnerClosedError
from ._errors import UnknownBgVarError as UnknownBgVarError
from ._runner import BackgroundRunner as BackgroundRunner
from ._runner import LastError as LastError
from ._runner import WorkerInfo as WorkerInfo
from ._runner import WorkerInfoState as WorkerInfoState
from ._tasks import BackgroundTasks as BackgroundTasks
from ._tranquilizer import Tranquilizer as Tranquilizer
from ._vars import BgVars as BgVars
from ._vars import Tunable as Tunable
from ._vars import int_tunable as int_tunable
from ._worker import Worker as Worker
from ._worker import WorkerState as WorkerState
from ._worker import WorkerStateKind as WorkerStateKind
from ._worker import WorkerStatus as WorkerStatus

__all__ = [
    "BackgroundRunner",
    "BackgroundTasks",
    "BgVarError",
    "BgVars",
    "InvalidBgVarValueError",
    "LastError",
    "ReadOnlyBgVarError",
    "RunnerClosedError",
    "Tranquilizer",
    "Tunable",
    "UnknownBgVarError",
    "Worker",
    "WorkerInfo",
    "WorkerInfoState",
    "WorkerState",
    "WorkerStateKind",
    "WorkerStatus",
    "int_tunable",
]

"""The exceptions of ``garage_util.background``.

Two kinds of failure are told apart:

* A condition a caller may meet in normal operation and want to answer (a worker spawned
  while the node shuts down, a user typing ``garage worker set`` with a misspelt name or a
  bad value) raises a :class:`~garage_util.errors.GarageError` subclass defined here, whose
  message can be shown to the user as is.
* Misuse of the API by the programmer (a negative duration, ``run()`` called twice, a
  variable registered twice) raises the built-in ``ValueError``/``RuntimeError``, as the
  standard library does; such a bug is fixed, not handled.
"""

from __future__ import annotations

from garage_util.errors import GarageError

__all__ = [
    "BgVarError",
    "InvalidBgVarValueError",
    "ReadOnlyBgVarError",
    "RunnerClosedError",
    "UnknownBgVarError",
]


class RunnerClosedError(GarageError):
    """Raised by ``BackgroundRunner.spawn_worker`` once the runner is stopping or stopped.

    A worker spawned then would never run: the runner no longer starts loops once shutdown
    has been requested (Garage drops such workers silently; we say so instead).
    """


class BgVarError(GarageError):
    """Base of the errors raised by ``BgVars.get``/``BgVars.set`` (``garage worker get/set``).

    Attributes:
        name: the variable the user asked for.
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class UnknownBgVarError(BgVarError):
    """Raised when no background variable has the requested name.

    Attributes:
        name: the requested name.
        known: the registered names, sorted, so the message can suggest the right one.
    """

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.known = known
        listing = ", ".join(known) if known else "(none registered)"
        super().__init__(name, f"unknown background variable {name!r}; known variables: {listing}")


class ReadOnlyBgVarError(BgVarError):
    """Raised when setting a variable that was registered read-only (a status value)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"background variable {name!r} is read-only")


class InvalidBgVarValueError(BgVarError, ValueError):
    """Raised when a variable's setter rejected the value (its ``ValueError`` is the cause).

    Attributes:
        name: the variable.
        value: the string the user gave.
        reason: the setter's message (what a valid value looks like).
    """

    def __init__(self, name: str, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(
            name, f"invalid value {value!r} for background variable {name!r}: {reason}"
        )

"""Background variables ("bg vars"): the tunables behind ``garage worker get/set``.

Theory of operation (Garage: src/util/background/vars.rs)
---------------------------------------------------------
Workers expose a few knobs an operator may turn while the node runs
(``resync-tranquility``, ``resync-worker-count``, ``scrub-tranquility``) and a few values
to read (``scrub-last-completed``). Each is registered by name in one :class:`BgVars`
registry, as a getter returning a string and, for the writable ones, a setter taking a
string. The CLI and admin API speak only strings; parsing and validation belong to the
setter, which raises ``ValueError`` with a message saying what a valid value looks like.

A worker usually keeps a knob in a :class:`Tunable`, a typed cell with a parser and a
check, reads ``tunable.value`` at each step, and registers it with
:meth:`Tunable.register`. Persisting a value across restarts (Garage writes these to
files in the metadata directory) is the registrant's business: wrap the setter.

Invariants:

* Names are unique within a registry; ``get_all()`` lists them sorted.
* ``set`` never changes a read-only variable, and a rejected value leaves the variable
  as it was (a setter validates before it stores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, final

from ._errors import InvalidBgVarValueError, ReadOnlyBgVarError, UnknownBgVarError

__all__ = ["BgVars", "Tunable", "int_tunable"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _BgVar:
    get: Callable[[], str]
    set: Callable[[str], None] | None  # None: read-only


@final
class BgVars:
    """The registry of named background variables, read and written as strings.

    Register every variable once at start-up, before the CLI or admin API can reach the
    registry; ``get`` and ``set`` then run the registered callables, which must not block.
    """

    __slots__ = ("_vars",)

    def __init__(self) -> None:
        self._vars: dict[str, _BgVar] = {}

    def register_rw(self, name: str, get: Callable[[], str], set: Callable[[str], None]) -> None:
        """Register a variable that can be read and written.

        Args:
            name: the variable's name, e.g. ``"resync-tranquility"``.
            get: returns the current value, rendered as a string.
            set: parses, validates and stores a new value; raises ``ValueError`` (with a
                message saying what is valid) to reject it, leaving the value unchanged.

        Raises:
            ValueError: if ``name`` is empty or already registered.
        """
        self._register(name, _BgVar(get, set))

    def register_ro(self, name: str, get: Callable[[], str]) -> None:
        """Register a variable that can only be read (a status value).

        Args:
            name: the variable's name, e.g. ``"scrub-last-completed"``.
            get: returns the current value, rendered as a string.

        Raises:
            ValueError: if ``name`` is empty or already registered.
        """
        self._register(name, _BgVar(get, None))

    def _register(self, name: str, var: _BgVar) -> None:
        if not name or name != name.strip():
            raise ValueError(f"invalid background variable name {name!r}")
        if name in self._vars:
            raise ValueError(f"background variable {name!r} is already registered")
        self._vars[name] = var

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._vars)

    def get(self, name: str) -> str:
        """Read a variable.

        Args:
            name: the variable's name.

        Returns:
            Its current value as a string.

        Raises:
            UnknownBgVarError: if no variable has that name (the message lists the known ones).
        """
        return self._lookup(name).get()

    def set(self, name: str, value: str) -> None:
        """Write a variable from its string form.

        Args:
            name: the variable's name.
            value: the new value as the user typed it.

        Raises:
            UnknownBgVarError: if no variable has that name.
            ReadOnlyBgVarError: if the variable was registered read-only.
            InvalidBgVarValueError: if the setter rejected the value with a ``ValueError``
                (chained as ``__cause__``); the variable keeps its old value.
        """
        setter = self._lookup(name).set
        if setter is None:
            raise ReadOnlyBgVarError(name)
        try:
            setter(value)
        except ValueError as exc:
            raise InvalidBgVarValueError(name, value, str(exc)) from exc

    def get_all(self) -> list[tuple[str, str]]:
        """Read every variable.

        Returns:
            ``(name, value)`` pairs sorted by name.
        """
        return [(name, self._vars[name].get()) for name in sorted(self._vars)]

    def _lookup(self, name: str) -> _BgVar:
        try:
            return self._vars[name]
        except KeyError:
            raise UnknownBgVarError(name, tuple(sorted(self._vars))) from None


@final
class Tunable(Generic[T]):
    """A typed knob a worker reads at each step and an operator sets as a string.

    Args:
        value: the initial value (checked like any other).
        parse: turns the user's string into a ``T``; raises ``ValueError`` if it cannot.
        check: raises ``ValueError`` if a parsed value is out of range; ``None`` accepts all.
        render: turns a value back into a string (``str`` by default).

    Raises:
        ValueError: if the initial value fails ``check``.
    """

    __slots__ = ("_check", "_parse", "_render", "_value")

    def __init__(
        self,
        value: T,
        *,
        parse: Callable[[str], T],
        check: Callable[[T], None] | None = None,
        render: Callable[[T], str] = str,
    ) -> None:
        self._parse = parse
        self._check = check
        self._render = render
        if check is not None:
            check(value)
        self._value = value

    @property
    def value(self) -> T:
        """The current value."""
        return self._value

    def set(self, value: T) -> None:
        """Store a new value after checking it.

        Raises:
            ValueError: if ``check`` rejects it; the old value is kept.
        """
        if self._check is not None:
            self._check(value)
        self._value = value

    def get_str(self) -> str:
        """The current value rendered as a string (a ``BgVars`` getter)."""
        return self._render(self._value)

    def set_str(self, text: str) -> None:
        """Parse, check and store a value given as a string (a ``BgVars`` setter).

        Raises:
            ValueError: if it does not parse or fails the check; the old value is kept.
        """
        self.set(self._parse(text))

    def register(self, bg_vars: BgVars, name: str) -> None:
        """Register this tunable as a read-write variable of ``bg_vars`` under ``name``.

        Raises:
            ValueError: if ``name`` is already registered there.
        """
        bg_vars.register_rw(name, self.get_str, self.set_str)


def int_tunable(value: int, *, min_value: int = 0, max_value: int | None = None) -> Tunable[int]:
    """A :class:`Tunable` holding an integer in ``[min_value, max_value]``.

    For example a tranquility (``int_tunable(2)``, any value >= 0) or
    ``resync-worker-count`` (``int_tunable(1, min_value=1, max_value=8)``).

    Args:
        value: the initial value.
        min_value: the smallest accepted value.
        max_value: the largest accepted value, or ``None`` for no upper bound.

    Returns:
        The tunable; its ``set_str`` accepts a decimal integer (surrounding blanks allowed).

    Raises:
        ValueError: if ``value`` is out of bounds, or ``max_value < min_value``.
    """
    if max_value is not None and max_value < min_value:
        raise ValueError(f"max_value {max_value} is below min_value {min_value}")
    bounds = f"between {min_value} and {max_value}" if max_value is not None else f">= {min_value}"

    def parse(text: str) -> int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer {bounds}") from None

    def check(v: int) -> None:
        if v < min_value or (max_value is not None and v > max_value):
            raise ValueError(f"{v} is out of range: expected an integer {bounds}")

    return Tunable(value, parse=parse, check=check)

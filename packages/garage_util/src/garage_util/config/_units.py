"""Sizes and durations as written by people in garage.toml.

Sizes follow the ``bytesize`` crate that Garage uses for ``capacity``, ``block_size`` and
friends: an integer is a number of bytes, and a string is a number with an optional unit.
SI units are decimal (``"1M"`` = ``"1MB"`` = 10**6 bytes), IEC units are binary
(``"1MiB"`` = ``"1Mi"`` = 2**20 bytes). Units are case-insensitive and may be separated from
the number by spaces. A decimal fraction is allowed (``"1.5GB"``); the result is truncated
to whole bytes, as ``bytesize`` does. The arithmetic uses :class:`fractions.Fraction`, so
``"0.1KB"`` is exactly 100 bytes and never 99.999... truncated to 99.

Durations follow the ``humantime`` crate that Garage uses for
``metadata_auto_snapshot_interval``: one or more ``<integer><unit>`` terms, optionally
separated by spaces (``"1h 30m"``, ``"1h30m"``, ``"2d"``). Units are case-sensitive as in
humantime (``m`` is minutes). A bare number is refused: a duration always needs a unit,
because "is 600 seconds or minutes?" is exactly the mistake a unit prevents. The result is
a :class:`datetime.timedelta`, whose resolution is one microsecond; sub-microsecond parts
are truncated.

Both parsers raise :class:`ValueError` with a message meant for the user;
``garage_util.config`` wraps it into a ``ConfigError`` that names the key.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

__all__ = ["parse_duration", "parse_size"]

# Garage stores sizes in u64; anything larger cannot be a real size and is most likely a
# typo (an extra unit, a misplaced decimal point).
_MAX_SIZE = 2**64 - 1

# Multipliers of size units, lower-case. "k" is lower-case in SI but people write "K"
# too, hence the case-insensitive match. "Ki" without "B" is accepted because bytesize does.
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    **{
        f"{prefix}{suffix}": 1000**power
        for power, prefix in enumerate("kmgtp", 1)
        for suffix in ("", "b")
    },
    **{
        f"{prefix}{suffix}": 1024**power
        for power, prefix in enumerate("kmgtp", 1)
        for suffix in ("i", "ib")
    },
}

# A number (digits, optional fraction), optional spaces, optional unit letters. ASCII only:
# str.isdigit() would accept "²" or Arabic-Indic digits.
_SIZE_RE = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)\s*", re.ASCII)

# Nanoseconds per duration unit: humantime's names (Garage parses durations with it),
# minus months and years, whose length is a convention rather than a fact.
_NS_PER_UNIT: dict[str, int] = {
    **dict.fromkeys(("ns", "nsec"), 1),
    **dict.fromkeys(("us", "usec"), 1_000),
    **dict.fromkeys(("ms", "msec"), 1_000_000),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 10**9),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60 * 10**9),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600 * 10**9),
    **dict.fromkeys(("d", "day", "days"), 86400 * 10**9),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400 * 10**9),
}

# One "<integer><unit>" term of a duration, with the spaces around it.
# The number may hold a "." only so that "1.5h" gets a precise error rather than a vague one.
_DURATION_TERM_RE = re.compile(r"\s*(?P<number>[0-9][0-9.]*)\s*(?P<unit>[a-zA-Z]*)\s*", re.ASCII)

# Shown in error messages, so that every refusal says what would have been accepted.
_SIZE_EXAMPLES = '"1048576", "1MiB", "10 GB" or "1.5T"'
_DURATION_EXAMPLES = '"10m", "6h", "1h 30m" or "2d"'


def parse_size(value: int | str) -> int:
    """Parses a size in bytes, given as an integer or as a string with an optional unit.

    Use it for every byte count a person writes (capacities, block sizes, buffer limits).

    >>> parse_size("1MiB"), parse_size("1M"), parse_size("1.5 kB"), parse_size(42)
    (1048576, 1000000, 1500, 42)

    Args:
        value: a non-negative integer of bytes, or a string such as ``"10GB"``,
            ``"1MiB"``, ``"1.5T"`` or ``"512"``. Units: B; k/KB, M/MB, G/GB, T/TB, P/PB
            (powers of 1000); Ki/KiB, Mi/MiB, Gi/GiB, Ti/TiB, Pi/PiB (powers of 1024).
            Case-insensitive.

    Returns:
        The size in whole bytes (a fraction of a byte is truncated).

    Raises:
        ValueError: the value is negative, is not a number with a known unit, or is larger
            than 2**64 - 1 bytes.
        TypeError: the value is neither an ``int`` nor a ``str`` (``bool`` counts as
            neither).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a size must be an int or a str, not {type(value).__name__}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(value.lower())
        if match is None:
            raise ValueError(
                f"{value!r} is not a size: expected a non-negative number with an optional "
                f"unit, such as {_SIZE_EXAMPLES}"
            )
        unit = match["unit"]
        multiplier = _SIZE_UNITS.get(unit)
        if multiplier is None:
            raise ValueError(
                f"{value!r} has an unknown size unit {unit!r}: use B, KB/MB/GB/TB/PB "
                f"(powers of 1000) or KiB/MiB/GiB/TiB/PiB (powers of 1024)"
            )
        size = int(Fraction(match["number"]) * multiplier)
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    if size > _MAX_SIZE:
        raise ValueError(f"{value!r} is too large for a size (more than 2**64 - 1 bytes)")
    return size


def parse_duration(text: str) -> timedelta:
    """Parses a humantime-style duration such as ``"6h"``, ``"1h 30m"`` or ``"2d"``.

    >>> parse_duration("1h 30m")
    datetime.timedelta(seconds=5400)

    Args:
        text: one or more ``<integer><unit>`` terms, optionally separated by spaces. Units:
            ns/nsec, us/usec, ms/msec, s/sec/secs/second/seconds, m/min/mins/minute/minutes,
            h/hr/hrs/hour/hours, d/day/days, w/week/weeks.

    Returns:
        The sum of the terms, truncated to whole microseconds.

    Raises:
        ValueError: the text is empty, a number lacks its unit, a unit is unknown, or the
            total does not fit a ``timedelta``.
        TypeError: the value is not a ``str`` (an integer is refused on purpose: a
            duration needs a unit).
    """
    if not isinstance(text, str):
        raise TypeError(
            f"a duration must be a string with a unit, such as {_DURATION_EXAMPLES}, "
            f"not {type(text).__name__}"
        )
    if not text.strip():
        raise ValueError(f"a duration cannot be empty; write for example {_DURATION_EXAMPLES}")
    total_ns = 0
    pos = 0
    while pos < len(text):
        match = _DURATION_TERM_RE.match(text, pos)
        if match is None:
            raise ValueError(
                f"{text!r} is not a duration: expected terms like {_DURATION_EXAMPLES}"
            )
        number, unit = match["number"], match["unit"]
        if not number.isdigit():
            raise ValueError(
                f"{text!r}: a duration takes whole numbers ({number!r} is not); write for "
                f"example 90m rather than 1.5h"
            )
        if not unit:
            raise ValueError(
                f"{text!r}: the number {number} needs a unit, such as {_DURATION_EXAMPLES}"
            )
        ns_per_unit = _NS_PER_UNIT.get(unit)
        if ns_per_unit is None:
            raise ValueError(
                f"{text!r} has an unknown duration unit {unit!r}: use ns, us, ms, s, m "
                f"(minutes), h, d or w, or their long names (seconds, minutes, hours...)"
            )
        total_ns += int(number) * ns_per_unit
        pos = match.end()
    try:
        return timedelta(microseconds=total_ns // 1000)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None

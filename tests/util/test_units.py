"""Sizes and durations as people write them (garage_util.config._units, re-exported by config)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_util.config import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0),
        (1048576, 2**20),
        ("1048576", 2**20),
        ("0", 0),
        ("10B", 10),
        ("10 b", 10),
        ("1k", 1000),
        ("1K", 1000),
        ("1KB", 1000),
        ("1kb", 1000),
        ("1M", 10**6),
        ("1MB", 10**6),
        ("2G", 2 * 10**9),
        ("2 GB", 2 * 10**9),
        ("3T", 3 * 10**12),
        ("3TB", 3 * 10**12),
        ("1P", 10**15),
        ("1PB", 10**15),
        ("1KiB", 2**10),
        ("1kib", 2**10),
        ("1Ki", 2**10),
        ("1MiB", 2**20),
        ("256 MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("1TiB", 2**40),
        ("1PiB", 2**50),
        ("1.5GB", 1_500_000_000),
        ("1.5 GiB", 3 * 2**29),
        ("0.1KB", 100),
        ("0.5B", 0),
        ("  7MiB  ", 7 * 2**20),
    ],
)
def test_parse_size_units(text: int | str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("-1", "not a size"),
        ("-1MiB", "not a size"),
        ("", "not a size"),
        ("MiB", "not a size"),
        ("1.MiB", "not a size"),
        ("1e6", "not a size"),
        ("12 parsecs", "unknown size unit 'parsecs'"),
        ("1 XB", "unknown size unit"),
        ("1 0MB", "not a size"),
        ("\u0661\u0662MB", "not a size"),  # Arabic-Indic digits are not ASCII digits
        ("100000PiB", "too large"),
    ],
)
def test_parse_size_refuses_garbage(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        parse_size(text)


def test_parse_size_refuses_negative_int() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(-5)


@pytest.mark.parametrize("value", [True, 1.5, None, b"1M"])
def test_parse_size_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError, match="int or a str"):
        parse_size(value)  # type: ignore[arg-type]  # checking the runtime guard on purpose


@given(st.integers(min_value=0, max_value=2**40))
def test_parse_size_mib_is_binary(n: int) -> None:
    assert parse_size(f"{n}MiB") == n * 2**20
    assert parse_size(f"{n} mib") == n * 2**20


@given(st.integers(min_value=0, max_value=2**63))
def test_parse_size_plain_integers_round_trip(n: int) -> None:
    assert parse_size(n) == n
    assert parse_size(str(n)) == n
    assert parse_size(f"{n}B") == n


@given(
    st.integers(min_value=0, max_value=10**3),
    st.sampled_from([("k", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12), ("P", 10**15)]),
    st.integers(min_value=0, max_value=999),
)
def test_parse_size_si_is_decimal(n: int, unit: tuple[str, int], milli: int) -> None:
    suffix, multiplier = unit
    assert parse_size(f"{n}{suffix}") == n * multiplier
    assert parse_size(f"{n}{suffix}B") == n * multiplier
    # A three-digit fraction of a unit of at least 1000 bytes is a whole number of bytes.
    assert parse_size(f"{n}.{milli:03d}{suffix}B") == n * multiplier + milli * multiplier // 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h 30m", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("  1 hour 2 minutes 3 seconds ", timedelta(hours=1, minutes=2, seconds=3)),
        ("3 days", timedelta(days=3)),
        ("2 weeks", timedelta(weeks=2)),
        ("5 mins", timedelta(minutes=5)),
        ("2 hrs 1 hr", timedelta(hours=3)),
        ("1sec 1secs", timedelta(seconds=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("250msec", timedelta(milliseconds=250)),
        ("7us", timedelta(microseconds=7)),
        ("1500ns", timedelta(microseconds=1)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("600", "needs a unit"),
        ("1h 30", "needs a unit"),
        ("-5m", "not a duration"),
        ("1.5h", "whole numbers"),
        ("1..5h", "whole numbers"),
        ("5 fortnights", "unknown duration unit 'fortnights'"),
        ("1H", "unknown duration unit 'H'"),  # units are case-sensitive, as in humantime
        ("99999999999999w", "too long"),
    ],
)
def test_parse_duration_refuses_garbage(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        parse_duration(text)


def test_parse_duration_refuses_an_int() -> None:
    with pytest.raises(TypeError, match="with a unit"):
        parse_duration(600)  # type: ignore[arg-type]  # checking the runtime guard on purpose


@given(
    st.integers(min_value=0, max_value=10**4),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_parse_duration_sums_terms(h: int, m: int, s: int) -> None:
    expected = timedelta(hours=h, minutes=m, seconds=s)
    assert parse_duration(f"{h}h {m}m {s}s") == expected
    assert parse_duration(f"{h}h{m}m{s}s") == expected

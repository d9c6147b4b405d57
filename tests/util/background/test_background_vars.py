"""Background variables: the string registry behind `garage worker get/set`, and Tunable."""

from __future__ import annotations

import pytest

from garage_util.background import (
    BgVarError,
    BgVars,
    InvalidBgVarValueError,
    ReadOnlyBgVarError,
    Tunable,
    UnknownBgVarError,
    int_tunable,
)
from garage_util.errors import GarageError


def make_vars() -> tuple[BgVars, dict[str, str]]:
    store = {"resync-tranquility": "2"}
    bg = BgVars()

    def set_tranquility(value: str) -> None:
        if not value.isdigit():
            raise ValueError("expected a non-negative integer")
        store["resync-tranquility"] = value

    bg.register_rw("resync-tranquility", lambda: store["resync-tranquility"], set_tranquility)
    bg.register_ro("scrub-last-completed", lambda: "2024-01-01T00:00:00Z")
    return bg, store


def test_get_and_set() -> None:
    bg, store = make_vars()
    assert bg.get("resync-tranquility") == "2"
    bg.set("resync-tranquility", "5")
    assert store["resync-tranquility"] == "5"
    assert bg.get("resync-tranquility") == "5"
    assert bg.get("scrub-last-completed") == "2024-01-01T00:00:00Z"


def test_get_all_is_sorted_by_name() -> None:
    bg, _ = make_vars()
    bg.register_ro("a-first", lambda: "x")
    assert bg.get_all() == [
        ("a-first", "x"),
        ("resync-tranquility", "2"),
        ("scrub-last-completed", "2024-01-01T00:00:00Z"),
    ]
    assert bg.names() == ["a-first", "resync-tranquility", "scrub-last-completed"]


def test_unknown_variable_lists_known_names() -> None:
    bg, _ = make_vars()
    for op in (lambda: bg.get("nope"), lambda: bg.set("nope", "1")):
        with pytest.raises(UnknownBgVarError) as info:
            op()
        assert info.value.name == "nope"
        assert info.value.known == ("resync-tranquility", "scrub-last-completed")
        assert "resync-tranquility, scrub-last-completed" in str(info.value)
        assert isinstance(info.value, GarageError)


def test_unknown_variable_in_empty_registry() -> None:
    with pytest.raises(UnknownBgVarError, match="none registered"):
        BgVars().get("x")


def test_setting_read_only_variable_fails() -> None:
    bg, _ = make_vars()
    with pytest.raises(ReadOnlyBgVarError, match="read-only") as info:
        bg.set("scrub-last-completed", "now")
    assert info.value.name == "scrub-last-completed"
    assert isinstance(info.value, BgVarError)
    assert bg.get("scrub-last-completed") == "2024-01-01T00:00:00Z"


def test_setter_value_error_is_wrapped_with_the_name() -> None:
    bg, store = make_vars()
    with pytest.raises(InvalidBgVarValueError) as info:
        bg.set("resync-tranquility", "fast")
    err = info.value
    assert err.name == "resync-tranquility"
    assert err.value == "fast"
    assert err.reason == "expected a non-negative integer"
    assert "resync-tranquility" in str(err)
    assert "expected a non-negative integer" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert isinstance(err, ValueError)
    assert store["resync-tranquility"] == "2"


def test_other_setter_errors_propagate_unwrapped() -> None:
    bg = BgVars()

    def broken(value: str) -> None:
        raise OSError("disk full")

    bg.register_rw("x", lambda: "0", broken)
    with pytest.raises(OSError, match="disk full"):
        bg.set("x", "1")


@pytest.mark.parametrize("name", ["", " padded "])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid background variable name"):
        BgVars().register_ro(name, lambda: "")


def test_duplicate_registration_is_refused() -> None:
    bg, _ = make_vars()
    with pytest.raises(ValueError, match="already registered"):
        bg.register_ro("resync-tranquility", lambda: "")


def test_int_tunable_with_bounds() -> None:
    bg = BgVars()
    count = int_tunable(1, min_value=1, max_value=8)
    count.register(bg, "resync-worker-count")
    assert bg.get("resync-worker-count") == "1"
    bg.set("resync-worker-count", " 8 ")
    assert count.value == 8
    for bad in ("9", "0", "-1", "two", "1.5", ""):
        with pytest.raises(InvalidBgVarValueError, match="between 1 and 8"):
            bg.set("resync-worker-count", bad)
    assert count.value == 8


def test_int_tunable_without_upper_bound() -> None:
    tranquility = int_tunable(2)
    tranquility.set_str("1000")
    assert tranquility.value == 1000
    assert tranquility.get_str() == "1000"
    with pytest.raises(ValueError, match=">= 0"):
        tranquility.set_str("-1")
    with pytest.raises(ValueError, match=">= 0"):
        tranquility.set(-1)
    assert tranquility.value == 1000


def test_int_tunable_bad_construction() -> None:
    with pytest.raises(ValueError, match="out of range"):
        int_tunable(9, min_value=1, max_value=8)
    with pytest.raises(ValueError, match="below min_value"):
        int_tunable(1, min_value=2, max_value=1)


def test_generic_tunable() -> None:
    def parse(text: str) -> float:
        return float(text)

    def check(v: float) -> None:
        if not 0.0 <= v <= 1.0:
            raise ValueError("expected a fraction between 0 and 1")

    ratio = Tunable(0.5, parse=parse, check=check, render=lambda v: f"{v:.2f}")
    bg = BgVars()
    ratio.register(bg, "ratio")
    assert bg.get("ratio") == "0.50"
    bg.set("ratio", "0.25")
    assert ratio.value == 0.25
    with pytest.raises(InvalidBgVarValueError, match="between 0 and 1"):
        bg.set("ratio", "2")
    unchecked = Tunable("a", parse=str.upper)
    unchecked.set_str("b")
    assert unchecked.value == "B"

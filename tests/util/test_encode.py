"""Canonical encoding, typed decoding and the versioned migration chain."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_util import (
    DecodeError,
    FixedBytes32,
    UnknownVersionError,
    Versioned,
    decode_versioned,
    encode_versioned,
    pack,
    unpack,
)
from garage_util.crdt import Lww
from garage_util.encode import TaggedUnion, tagged_variants

DATA = Path(__file__).parent / "data"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Inner:
    id: FixedBytes32
    color: Color


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    size: int
    data: bytes
    inner: tuple[Inner, ...]
    note: str | None = None
    tags: dict[str, int] = field(default_factory=dict)


# --- a versioned type with three historical formats ---------------------------------------
# NoteV1 was written without a marker (the oldest format may be unmarked), V2 renamed
# `text` to `body` and added `ts`, V3 made the body an Lww register and added `tags`.


@dataclass(frozen=True, slots=True)
class NoteV1(Versioned):
    VERSION_MARKER: ClassVar[bytes] = b""
    text: str


@dataclass(frozen=True, slots=True)
class NoteV2(Versioned):
    VERSION_MARKER: ClassVar[bytes] = b"Gt1note"
    PREVIOUS: ClassVar[type[Versioned]] = NoteV1
    body: str
    ts: int

    @classmethod
    def migrate(cls, previous: object) -> NoteV2:
        assert isinstance(previous, NoteV1)
        return cls(body=previous.text, ts=0)


@dataclass(frozen=True, slots=True)
class NoteV3(Versioned):
    VERSION_MARKER: ClassVar[bytes] = b"Gt2note"
    PREVIOUS: ClassVar[type[Versioned]] = NoteV2
    body: Lww[str]
    tags: tuple[str, ...]

    @classmethod
    def migrate(cls, previous: object) -> NoteV3:
        assert isinstance(previous, NoteV2)
        return cls(body=Lww(previous.ts, previous.body), tags=())


# Bytes as each release wrote them, kept as files so that a change of the encoding that
# would make old data unreadable fails here (regenerate only for a *new* format).
STORED = {
    "note_v1.bin": NoteV3(Lww(0, "written by v1"), ()),
    "note_v2.bin": NoteV3(Lww(1234, "written by v2"), ()),
    "note_v3.bin": NoteV3(Lww(5678, "written by v3"), ("a", "b")),
}


@pytest.mark.parametrize(("name", "expected"), sorted(STORED.items()))
def test_stored_bytes_of_every_older_version_decode_as_the_current_one(
    name: str, expected: NoteV3
) -> None:
    raw = (DATA / name).read_bytes()
    assert decode_versioned(NoteV3, raw) == expected


def test_current_version_still_writes_the_stored_bytes() -> None:
    assert encode_versioned(STORED["note_v3.bin"]) == (DATA / "note_v3.bin").read_bytes()
    assert encode_versioned(NoteV2("written by v2", 1234)) == (DATA / "note_v2.bin").read_bytes()


def test_intermediate_version_decodes_older_and_its_own() -> None:
    assert decode_versioned(NoteV2, (DATA / "note_v1.bin").read_bytes()) == NoteV2(
        "written by v1", 0
    )
    with pytest.raises(UnknownVersionError, match="Gt2note"):
        decode_versioned(NoteV2, (DATA / "note_v3.bin").read_bytes())  # newer: a downgrade


@pytest.mark.parametrize("raw", [b"Gzznote\x80", b"GARBAGE", b"X"])
def test_unknown_marker_is_a_clear_error(raw: bytes) -> None:
    with pytest.raises(UnknownVersionError, match=r"NoteV3: unknown version marker"):
        decode_versioned(NoteV3, raw)


def test_known_marker_with_a_bad_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="body"):
        decode_versioned(NoteV3, b"Gt2note" + msgpack.packb({"body": 3, "tags": []}))
    with pytest.raises(DecodeError, match="not valid msgpack"):
        decode_versioned(NoteV3, b"Gt2note\xc1")


def test_chain_definitions_are_checked() -> None:
    with pytest.raises(TypeError, match="share the version marker"):

        class Clash(Versioned):
            VERSION_MARKER: ClassVar[bytes] = b"Gt1note"
            PREVIOUS: ClassVar[type[Versioned]] = NoteV2

    with pytest.raises(TypeError, match="must define VERSION_MARKER"):

        class NoMarker(Versioned):
            pass

    class AbstractBase(Versioned, abstract=True):  # an intermediate base: no format
        pass

    with pytest.raises(TypeError, match="must define VERSION_MARKER"):

        class ConcreteWithoutMarker(AbstractBase):
            pass

    with pytest.raises(TypeError, match="only the oldest"):

        class UnmarkedNewer(Versioned):
            VERSION_MARKER: ClassVar[bytes] = b""
            PREVIOUS: ClassVar[type[Versioned]] = NoteV3


# --- canonical encoding ---------------------------------------------------------------

outers = st.builds(
    Outer,
    name=st.text(max_size=10),
    size=st.integers(-(2**63), 2**64 - 1),
    data=st.binary(max_size=20),
    inner=st.lists(
        st.builds(
            Inner, st.binary(min_size=32, max_size=32).map(FixedBytes32), st.sampled_from(Color)
        ),
        max_size=3,
    ).map(tuple),
    note=st.none() | st.text(max_size=5),
    tags=st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=4),
)


@given(outers)
def test_round_trip(value: Outer) -> None:
    assert unpack(Outer, pack(value)) == value


@given(st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=6))
def test_dict_encoding_does_not_depend_on_insertion_order(d: dict[str, int]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert pack(d) == pack(reordered)


def test_bytes_and_str_stay_distinct() -> None:
    assert pack(b"a") != pack("a")
    with pytest.raises(DecodeError, match=r"at \$: expected bytes, got str"):
        unpack(bytes, pack("a"))


@pytest.mark.parametrize("value", [1.5, {1, 2}, object()])
def test_values_without_a_canonical_encoding_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="no canonical encoding"):
        pack(value)


def test_decode_errors_name_the_path() -> None:
    good = Outer("n", 1, b"", (Inner(FixedBytes32.zero(), Color.RED),))
    obj = msgpack.unpackb(pack(good))
    obj["inner"][0]["color"] = "green"
    with pytest.raises(DecodeError, match=r"at \$\.inner\[0\]\.color: 'green' is not a Color"):
        unpack(Outer, msgpack.packb(obj))
    obj["inner"][0] = {"id": b"short", "color": "red"}
    with pytest.raises(DecodeError, match=r"\$\.inner\[0\]\.id: expected 32-byte bin"):
        unpack(Outer, msgpack.packb(obj))
    with pytest.raises(DecodeError, match="missing data, inner, name, size"):
        unpack(Outer, msgpack.packb({}))
    with pytest.raises(DecodeError, match="has no field 'extra'"):
        unpack(Outer, msgpack.packb({**msgpack.unpackb(pack(good)), "extra": 1}))
    with pytest.raises(DecodeError, match="expected int, got bool"):
        unpack(int, pack(True))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="not valid msgpack"):
        unpack(int, pack(1) + b"\x00")


def test_a_map_with_an_unhashable_key_is_a_decode_error() -> None:
    raw = b"\x81\x91\x01\x02"  # {[1]: 2}: msgpack allows it, Python dicts do not
    with pytest.raises(DecodeError, match="not valid msgpack"):
        unpack(dict[int, int], raw)


def test_unpack_is_typed_as_the_class_it_decodes() -> None:
    value = unpack(Inner, pack(Inner(FixedBytes32.zero(), Color.BLUE)))
    assert value.color is Color.BLUE  # mypy checks this attribute access on Inner


# ------------------------------------------------------------------ tagged unions


class Shape(TaggedUnion):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Dot(Shape):
    pass


@dataclass(frozen=True, slots=True)
class Circle(Shape):
    radius: int
    label: str | None = None


Shape.VARIANTS = tagged_variants(Dot, Circle)


@given(
    st.one_of(
        st.just(Dot()), st.builds(Circle, st.integers(-(2**63), 2**64 - 1), st.none() | st.text())
    )
)
def test_tagged_union_round_trips(shape: Shape) -> None:
    assert unpack(Shape, pack(shape)) == shape


def test_tagged_union_wire_shape_is_serde_external_tagging() -> None:
    assert msgpack.unpackb(pack(Dot())) == "Dot"
    assert msgpack.unpackb(pack(Circle(2))) == {"Circle": {"radius": 2, "label": None}}
    assert unpack(Shape, msgpack.packb({"Dot": {}})) == Dot()
    assert unpack(Shape, msgpack.packb({"Circle": {"radius": 3}})) == Circle(3)


@pytest.mark.parametrize(
    "wire",
    [
        "Square",
        {"Circle": {"radius": 1, "colour": "red"}},
        {"Circle": [1]},
        {"Dot": {}, "Circle": {"radius": 1}},
        7,
        {"Circle": {"radius": "big"}},
    ],
)
def test_tagged_union_refuses_bad_shapes(wire: object) -> None:
    with pytest.raises(DecodeError):
        unpack(Shape, msgpack.packb(wire))

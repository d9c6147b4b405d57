"""Canonical msgpack encoding, typed decoding, and versioned formats with migrations.

Garage: src/util/encode.rs and src/util/migrate.rs. Theory of operation:

**Canonical.** Stored bytes are hashed (Merkle leaves, GC compare-and-delete, "did the entry
change?"), so two replicas holding equal values must produce identical bytes. The encoder
therefore accepts only values with one obvious encoding:

- ``None``, ``bool``, ``int``, ``str``, ``bytes`` (including :class:`FixedBytes32`) as
  themselves; ``bytes`` and ``str`` stay distinct (msgpack ``bin`` vs ``str``);
- ``tuple``/``list`` as arrays; ``Enum`` members as their value;
- dataclasses as maps from field name to value, in field declaration order (names make
  format changes visible and migrations explicit);
- ``dict`` as maps with keys sorted by their own encoding;
- any class defining ``__to_wire__(self)`` and ``__from_wire__(cls, obj, type_args)``, such
  as the variants of a :class:`TaggedUnion` (Rust serde's externally tagged enums).

Floats, sets and arbitrary objects are refused: their encoding would not be canonical.

**Typed decoding.** :func:`unpack` takes the expected type (``Lww[int]``,
``tuple[Hash, ...]``, ``Foo | None``) and checks the decoded structure against it: a wrong
shape is a :class:`DecodeError` naming the path inside the value, never a half-built object.
Decoders are compiled once per type and cached.

**Versions.** A persisted type is a :class:`Versioned` with a ``VERSION_MARKER`` byte prefix
and a ``PREVIOUS`` format it can ``migrate`` from. :func:`decode_versioned` finds the format
by its marker and migrates the value forward through the chain, one version at a time, so
bytes written by any older release decode as the current type. A marker that no format of the
chain uses is an :class:`UnknownVersionError`. Only the oldest format of a chain may have an
empty marker (data written before markers existed); msgpack maps never start with an ASCII
letter, so markers cannot be confused with unmarked data.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Final, Self, TypeVar, cast, overload

import msgpack

from .data import HASH_LEN, FixedBytes32
from .errors import DecodeError, UnknownVersionError

__all__ = [
    "TaggedUnion",
    "Versioned",
    "decode_versioned",
    "encode_versioned",
    "from_wire",
    "pack",
    "tagged_variants",
    "to_wire",
    "unpack",
]

T = TypeVar("T")
V = TypeVar("V", bound="Versioned")

_Encoder = Callable[[object], object]
_Decoder = Callable[[object], object]

#: Longest marker printed in an UnknownVersionError: enough to recognise one of ours.
_MARKER_PREVIEW: Final = 12


# ------------------------------------------------------------------------------ encoding

#: Types that msgpack encodes canonically as they are: no conversion, no recursion.
_NATIVE: Final = frozenset({type(None), bool, int, str, bytes})


def to_wire(value: object) -> object:
    """Converts ``value`` to the msgpack-native structure it encodes as.

    Raises:
        TypeError: when the value (or something inside it) has no canonical encoding.
    """
    cls = type(value)
    if cls in _NATIVE:
        return value
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        encoder = _ENCODERS[cls] = _encoder_for(cls)
    return encoder(value)


def pack(value: object) -> bytes:
    """Encodes ``value`` as canonical msgpack bytes (see the module docstring)."""
    return cast("bytes", msgpack.packb(to_wire(value), use_bin_type=True))


#: Encoders compiled per type (a plain dict: types are few, and lookups are the hot path).
_ENCODERS: dict[type, _Encoder] = {}


def _encoder_for(cls: type) -> _Encoder:
    if cls in _NATIVE:
        return _identity
    if issubclass(cls, FixedBytes32):
        return _to_bytes
    if hasattr(cls, "__to_wire__"):
        return operator.methodcaller("__to_wire__")
    if issubclass(cls, enum.Enum):
        return lambda v: to_wire(cast("enum.Enum", v).value)
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))

        def encode_dataclass(v: object) -> object:
            return {n: to_wire(getattr(v, n)) for n in names}

        return encode_dataclass
    if issubclass(cls, tuple | list):
        return _encode_sequence
    if issubclass(cls, dict):
        return _encode_dict
    if issubclass(cls, int | str | bytes):  # subclasses, e.g. IntEnum handled above
        return _identity
    raise TypeError(
        f"{cls.__qualname__} has no canonical encoding (floats, sets and plain objects are "
        "refused; use int, str, bytes, tuples, dataclasses or define __to_wire__)"
    )


def _identity(v: object) -> object:
    return v


def _to_bytes(v: object) -> object:
    return bytes(cast("bytes", v))


def _encode_sequence(v: object) -> object:
    native = _NATIVE
    return [x if type(x) in native else to_wire(x) for x in cast("list[object]", v)]


def _encode_dict(v: object) -> object:
    items = [(pack(k), to_wire(k), to_wire(x)) for k, x in cast("dict[object, object]", v).items()]
    items.sort(key=operator.itemgetter(0))
    return {k: x for _, k, x in items}


# ------------------------------------------------------------------------------ decoding
#
# A decoder is a function of the msgpack-native object only. On a mismatch it raises
# _Mismatch; each container decoder it passes through prepends its step to the path while the
# exception unwinds, so the success path never formats a path string.


class _Mismatch(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _expected(expected: str, obj: object) -> _Mismatch:
    return _Mismatch(f"expected {expected}, got {type(obj).__name__}")


def _at(step: str, exc: _Mismatch) -> _Mismatch:
    exc.path.append(step)
    return exc


@overload
def from_wire(tp: type[T], obj: object) -> T: ...
@overload
def from_wire(tp: object, obj: object) -> Any: ...
def from_wire(tp: object, obj: object) -> object:
    """Builds a value of type ``tp`` from its msgpack-native structure.

    Raises:
        DecodeError: when ``obj`` does not have the shape of ``tp``.
    """
    try:
        return _decoder_for(tp)(obj)
    except _Mismatch as exc:
        path = "$" + "".join(reversed(exc.path))
        raise DecodeError(f"at {path}: {exc.message}") from None


# A type expression that is not a class (``Foo | None``, ``tuple[int, ...]``) has no
# static type mypy can turn into the decoded value's type: those calls return Any.
@overload
def unpack(tp: type[T], data: bytes | bytearray | memoryview) -> T: ...
@overload
def unpack(tp: object, data: bytes | bytearray | memoryview) -> Any: ...
def unpack(tp: object, data: bytes | bytearray | memoryview) -> object:
    """Decodes msgpack bytes as a value of type ``tp`` (the whole input must be consumed).

    Raises:
        DecodeError: when the bytes are not msgpack or do not have the shape of ``tp``.
    """
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # TypeError: a map whose key is an array or a map (unhashable in Python).
        raise DecodeError(f"{_type_name(tp)}: bytes are not valid msgpack ({exc})") from exc
    return from_wire(tp, obj)


def _type_name(tp: object) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


#: Decoders compiled per type: ``Lww[int]`` and ``Lww[str]`` are different entries.
_DECODERS: dict[object, _Decoder] = {}


def _decoder_for(tp: object) -> _Decoder:
    decoder = _DECODERS.get(tp)
    if decoder is None:
        decoder = _DECODERS[tp] = _build_decoder(tp)
    return decoder


def _build_decoder(tp: object) -> _Decoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None) or tp is None:
        return _expect_none
    if tp is bool or tp is int or tp is str or tp is bytes:
        return _expect_exact(cast("type", tp))
    if origin is typing.Union or origin is types.UnionType:
        return _union_decoder(tp, args)
    if origin is tuple:
        return _tuple_decoder(args)
    if origin is list:
        return _list_decoder(args[0])
    if origin is dict:
        return _dict_decoder(args[0], args[1])
    cls = origin if isinstance(origin, type) else tp
    if not isinstance(cls, type):
        raise TypeError(f"cannot decode values of type {tp!r}")
    if issubclass(cls, FixedBytes32):
        return _fixed_bytes_decoder(cls)
    if hasattr(cls, "__from_wire__"):
        return _custom_decoder(cls, args)
    if issubclass(cls, enum.Enum):
        return _enum_decoder(cls)
    if dataclasses.is_dataclass(cls):
        return _dataclass_decoder(cls, args)
    raise TypeError(f"cannot decode values of type {tp!r}")


def _expect_none(obj: object) -> object:
    if obj is not None:
        raise _expected("nil", obj)
    return None


def _expect_exact(cls: type) -> _Decoder:
    name = cls.__name__

    def decode(obj: object) -> object:
        if type(obj) is not cls:  # exact: a bool is not an int here
            raise _expected(name, obj)
        return obj

    return decode


def _union_decoder(tp: object, args: tuple[object, ...]) -> _Decoder:
    non_none = [a for a in args if a is not type(None)]
    if len(non_none) != 1:
        raise TypeError(f"only `X | None` unions can be decoded, not {tp!r}")
    inner = _decoder_for(non_none[0])

    def decode(obj: object) -> object:
        return None if obj is None else inner(obj)

    return decode


def _decode_items(item: _Decoder, obj: list[object]) -> list[object]:
    try:
        return list(map(item, obj))
    except _Mismatch:
        for i, x in enumerate(obj):  # slow path, errors only: find which item failed
            try:
                item(x)
            except _Mismatch as exc:
                raise _at(f"[{i}]", exc) from None
        raise


def _tuple_decoder(args: tuple[object, ...]) -> _Decoder:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder_for(args[0])

        def decode_var(obj: object) -> object:
            if type(obj) is not list:
                raise _expected("array", obj)
            return tuple(_decode_items(item, obj))

        return decode_var
    items = [_decoder_for(a) for a in args]
    n = len(items)

    def decode_fixed(obj: object) -> object:
        if type(obj) is not list or len(obj) != n:
            raise _expected(f"array of {n}", obj)
        try:
            return tuple([dec(x) for dec, x in zip(items, obj, strict=True)])
        except _Mismatch:
            for i, (dec, x) in enumerate(zip(items, obj, strict=True)):
                try:
                    dec(x)
                except _Mismatch as exc:  # slow path, errors only: find the failing item
                    raise _at(f"[{i}]", exc) from None
            raise

    return decode_fixed


def _list_decoder(arg: object) -> _Decoder:
    item = _decoder_for(arg)

    def decode(obj: object) -> object:
        if type(obj) is not list:
            raise _expected("array", obj)
        return _decode_items(item, obj)

    return decode


def _dict_decoder(karg: object, varg: object) -> _Decoder:
    kdec, vdec = _decoder_for(karg), _decoder_for(varg)

    def decode(obj: object) -> object:
        if type(obj) is not dict:
            raise _expected("map", obj)
        out = {}
        for k, v in obj.items():
            try:
                out[kdec(k)] = vdec(v)
            except _Mismatch as exc:
                raise _at(f"[{k!r}]", exc) from None
        return out

    return decode


def _fixed_bytes_decoder(cls: type[FixedBytes32]) -> _Decoder:
    def decode(obj: object) -> object:
        if type(obj) is not bytes or len(obj) != HASH_LEN:
            raise _expected("32-byte bin", obj)
        return cls(obj)

    return decode


def _custom_decoder(cls: type, args: tuple[object, ...]) -> _Decoder:
    method = cls.__from_wire__  # type: ignore[attr-defined]  # checked by the caller

    def decode(obj: object) -> object:
        try:
            return method(obj, args)
        except (TypeError, ValueError) as exc:
            raise _Mismatch(f"invalid {cls.__qualname__}: {exc}") from exc

    return decode


def _enum_decoder(cls: type[enum.Enum]) -> _Decoder:
    def decode(obj: object) -> object:
        try:
            return cls(obj)
        except ValueError:
            raise _Mismatch(f"{obj!r} is not a {cls.__qualname__}") from None

    return decode


def _dataclass_decoder(cls: type, args: tuple[object, ...]) -> _Decoder:
    hints = typing.get_type_hints(cls)
    params: tuple[object, ...] = getattr(cls, "__parameters__", ())
    subst = dict(zip(params, args, strict=False)) if args else {}
    fields = [f for f in dataclasses.fields(cls) if f.init]
    field_types = {f.name: _substitute(hints[f.name], subst) for f in fields}
    # Field decoders are resolved on first use: a dataclass may refer to itself.
    decoders: dict[str, _Decoder] = {}
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    name = cls.__qualname__

    def decode(obj: object) -> object:
        if type(obj) is not dict:
            raise _expected(f"map for {name}", obj)
        kwargs: dict[str, object] = {}
        for key, raw in obj.items():
            dec = decoders.get(key) if type(key) is str else None
            if dec is None:
                if type(key) is not str or key not in field_types:
                    raise _Mismatch(f"{name} has no field {key!r}")
                dec = decoders[key] = _decoder_for(field_types[key])
            try:
                kwargs[key] = dec(raw)
            except _Mismatch as exc:
                raise _at(f".{key}", exc) from None
        if len(kwargs) < len(required):
            missing = required - kwargs.keys()
            if missing:
                raise _Mismatch(f"{name} is missing {', '.join(sorted(missing))}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _Mismatch(f"invalid {name}: {exc}") from exc

    return decode


def _substitute(tp: object, subst: dict[object, object]) -> object:
    """Replaces the type variables of a generic dataclass's field type by its arguments."""
    if not subst:
        return tp
    if isinstance(tp, TypeVar):
        return subst.get(tp, tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args:
        return tp
    new_args = tuple(_substitute(a, subst) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return functools.reduce(operator.or_, new_args)
    return cast("typing.Any", origin)[new_args[0] if len(new_args) == 1 else new_args]


# ------------------------------------------------------------------------------ versions


class Versioned:
    """Mixin for a persisted type with a version marker and a migration chain.

    A subclass sets ``VERSION_MARKER`` (a short byte prefix, unique in its chain, e.g.
    ``b"G01obj"``), and, unless it is the first format, ``PREVIOUS`` (the class of the
    format before it) and ``migrate`` (build this version from a value of ``PREVIOUS``).
    Older formats stay in the code base for as long as data written by them may exist.
    """

    __slots__ = ()

    VERSION_MARKER: ClassVar[bytes]
    PREVIOUS: ClassVar[type[Versioned] | None] = None

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: object) -> None:
        """Checks the format chain; ``abstract=True`` marks an intermediate base class
        (e.g. a table entry base) that has no format of its own."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if "VERSION_MARKER" not in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} must define VERSION_MARKER")
        seen: dict[bytes, str] = {}
        for fmt in _chain(cls):
            marker = fmt.VERSION_MARKER
            if marker in seen:
                raise TypeError(
                    f"{cls.__qualname__}: formats {seen[marker]} and {fmt.__qualname__} "
                    f"share the version marker {marker!r}"
                )
            if not marker and fmt.PREVIOUS is not None:
                raise TypeError(f"{fmt.__qualname__}: only the oldest format may be unmarked")
            seen[marker] = fmt.__qualname__

    @classmethod
    def migrate(cls, previous: object) -> Self:
        """Builds a value of this format from a value of ``PREVIOUS``."""
        raise NotImplementedError(f"{cls.__qualname__} does not define migrate()")


def _chain(cls: type[Versioned]) -> list[type[Versioned]]:
    chain: list[type[Versioned]] = []
    fmt: type[Versioned] | None = cls
    while fmt is not None:
        chain.append(fmt)
        fmt = fmt.PREVIOUS
    return chain


def encode_versioned(value: Versioned) -> bytes:
    """Encodes ``value`` as its type's version marker followed by its canonical msgpack."""
    return type(value).VERSION_MARKER + pack(value)


def decode_versioned(cls: type[V], data: bytes | bytearray | memoryview) -> V:
    """Decodes bytes written by ``cls`` or any older format of its chain, as a ``cls``.

    Raises:
        UnknownVersionError: when no format of the chain has the marker the bytes start with.
        DecodeError: when the marker is known but the body does not decode.
    """
    raw = bytes(data)
    chain = _chain(cls)
    # Longest marker first, so that a marker that happens to prefix another cannot win.
    for depth, fmt in sorted(enumerate(chain), key=lambda e: -len(e[1].VERSION_MARKER)):
        marker = fmt.VERSION_MARKER
        if marker and raw.startswith(marker):
            return cast("V", _migrate_up(chain, depth, unpack(fmt, memoryview(raw)[len(marker) :])))
    oldest = chain[-1]
    if not oldest.VERSION_MARKER and raw[:1] and not raw[:1].isalpha():
        return cast("V", _migrate_up(chain, len(chain) - 1, unpack(oldest, raw)))
    known = ", ".join(repr(f.VERSION_MARKER) for f in chain)
    raise UnknownVersionError(
        f"{cls.__qualname__}: unknown version marker at {raw[:_MARKER_PREVIEW]!r} "
        f"(known formats: {known}); written by a newer release, or not a {cls.__qualname__}"
    )


def _migrate_up(chain: list[type[Versioned]], depth: int, value: object) -> object:
    for fmt in reversed(chain[:depth]):
        value = fmt.migrate(value)
    return value


# ------------------------------------------------------------------------------ tagged unions


class TaggedUnion:
    """Base of a union whose variants are frozen dataclasses, encoded like Rust serde's
    externally tagged enums: a variant without fields as its name, any other as
    ``{name: {field: value}}`` (a fieldless variant given as ``{name: {}}`` decodes too).

    Each union is a subclass that lists its variants, once they are defined, with
    ``Union.VARIANTS = tagged_variants(A, B)``; the variants subclass the union. Decoding
    refuses an unknown variant, an unknown field, or a shape that is neither form.

    Example::

        class Shape(TaggedUnion): ...

        @dataclass(frozen=True, slots=True)
        class Dot(Shape): ...  # encodes as "Dot"

        @dataclass(frozen=True, slots=True)
        class Circle(Shape):
            radius: int  # encodes as {"Circle": {"radius": 2}}

        Shape.VARIANTS = tagged_variants(Dot, Circle)
    """

    __slots__ = ()

    #: The variants by name (set by the union with :func:`tagged_variants`).
    VARIANTS: ClassVar[dict[str, type[TaggedUnion]]]

    def __to_wire__(self) -> object:
        names = _variant_fields(type(self))
        if not names:
            return type(self).__name__
        return {type(self).__name__: {n: to_wire(getattr(self, n)) for n in names}}

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> Self:
        del type_args  # not generic
        body: object
        if type(obj) is str:
            tag, body = obj, {}
        elif type(obj) is dict and len(obj) == 1:
            ((tag, body),) = obj.items()
        else:
            raise ValueError(f"a {cls.__name__} is a variant name or a one-entry map")
        variant = cls.VARIANTS.get(tag) if type(tag) is str else None
        if variant is None or not issubclass(variant, cls):
            raise ValueError(f"{tag!r} is not a variant of {cls.__name__}")
        if type(body) is not dict:
            raise ValueError(f"the fields of {tag} must be a map")
        types = _variant_fields(variant)
        kwargs: dict[str, object] = {}
        for name, raw in body.items():
            if name not in types:
                raise ValueError(f"{tag} has no field {name!r}")
            kwargs[name] = from_wire(types[name], raw)
        return variant(**kwargs)


def tagged_variants(*variants: type[TaggedUnion]) -> dict[str, type[TaggedUnion]]:
    """The ``VARIANTS`` of a :class:`TaggedUnion`: each variant class by its name."""
    return {v.__name__: v for v in variants}


#: Field types per variant, resolved on first use (every variant class exists by then).
_VARIANT_FIELDS: dict[type, dict[str, object]] = {}


def _variant_fields(variant: type) -> dict[str, object]:
    """The fields of a variant dataclass and their types, in declaration order."""
    types = _VARIANT_FIELDS.get(variant)
    if types is None:
        hints = typing.get_type_hints(variant)
        fields = dataclasses.fields(variant)
        types = _VARIANT_FIELDS[variant] = {f.name: hints[f.name] for f in fields}
    return types

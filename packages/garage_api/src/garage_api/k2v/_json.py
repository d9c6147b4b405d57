"""The JSON documents of the K2V API, both ways: the server's and the client's codec.

Garage: the serde structs of src/api/k2v/{batch.rs, index.rs, item.rs} and the examples of
doc/drafts/k2v-spec.md (design §10.11). Each document is a frozen dataclass with
``to_json()`` (the bytes on the wire, pretty-printed as Garage does) and ``from_json()``
(strict parsing: a wrong type, a missing required field or bad base64 is a
:class:`~garage_api.k2v.K2VError` ``400``; unknown fields are ignored, as serde does).

Values are binary: base64 (standard alphabet, padded) in every JSON document, ``null`` for
a deletion (a tombstone). Causality tokens are opaque strings here.

========================= ============================ ================================
endpoint                  request body                 response body
========================= ============================ ================================
ReadItem / PollItem       —                            ``[v|null, ...]`` (:func:`encode_values`)
InsertBatch               [:class:`InsertBatchItem`]   — (204)
ReadBatch                 [:class:`ReadBatchQuery`]    [:class:`ReadBatchResult`]
DeleteBatch               [:class:`DeleteBatchQuery`]  [:class:`DeleteBatchResult`]
ReadIndex                 — (query string)             :class:`ReadIndexResult`
PollRange                 :class:`PollRangeQuery`      :class:`PollRangeResult` (or 304)
========================= ============================ ================================
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from ._errors import K2VError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "DeleteBatchQuery",
    "DeleteBatchResult",
    "InsertBatchItem",
    "ItemValues",
    "PartitionKeyCounts",
    "PollRangeQuery",
    "PollRangeResult",
    "ReadBatchQuery",
    "ReadBatchResult",
    "ReadIndexResult",
    "ReturnFormat",
    "decode_values",
    "encode_values",
    "parse_accept",
]

T = TypeVar("T")

_U64_MAX: Final = (1 << 64) - 1
_OCTET_STREAM: Final = "application/octet-stream"
_JSON: Final = "application/json"


# ---------------------------------------------------------------- low-level helpers


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode()


def _loads(body: bytes | str) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise K2VError.bad_request(f"Invalid JSON: {exc}") from None


def _object(doc: object, what: str) -> Mapping[str, object]:
    if not isinstance(doc, dict):
        raise K2VError.bad_request(f"Invalid JSON: {what} must be an object")
    return doc


def _array(doc: object, what: str) -> list[object]:
    if not isinstance(doc, list):
        raise K2VError.bad_request(f"Invalid JSON: {what} must be an array")
    return doc


def _utf8(value: str, name: str) -> str:
    # JSON may escape lone surrogates ("\ud800"), which no UTF-8 key can hold.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise K2VError.invalid_utf8(f"{name!r} holds a lone surrogate") from None
    return value


def _str(doc: Mapping[str, object], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise K2VError.bad_request(f"Invalid JSON: {name!r} must be a string")
    return _utf8(value, name)


def _opt_str(doc: Mapping[str, object], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise K2VError.bad_request(f"Invalid JSON: {name!r} must be a string or null")
    return _utf8(value, name)


def _opt_u64(doc: Mapping[str, object], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    # bool is an int in Python, not in JSON.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64_MAX:
        raise K2VError.bad_request(f"Invalid JSON: {name!r} must be a non-negative integer")
    return value


def _u64(doc: Mapping[str, object], name: str) -> int:
    value = _opt_u64(doc, name)
    if value is None:
        raise K2VError.bad_request(f"Invalid JSON: {name!r} is required")
    return value


def _bool(doc: Mapping[str, object], name: str) -> bool:
    value = doc.get(name)
    if value is None:  # absent or null: the default (serde's #[serde(default)])
        return False
    if not isinstance(value, bool):
        raise K2VError.bad_request(f"Invalid JSON: {name!r} must be true or false")
    return value


def _b64encode(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _b64decode(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise K2VError.bad_request("Invalid JSON: a value must be a base64 string or null")
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise K2VError.invalid_base64(str(exc)) from None


def _list_of(body: bytes | str, what: str, parse: Callable[[Mapping[str, object]], T]) -> list[T]:
    doc = _array(_loads(body), "the body")
    return [parse(_object(entry, what)) for entry in doc]


# ---------------------------------------------------------------- item values


def encode_values(values: Sequence[bytes | None]) -> bytes:
    """ReadItem's JSON answer: the base64 of each value, ``null`` for a tombstone."""
    return _dumps([_b64encode(v) for v in values])


def decode_values(body: bytes | str) -> tuple[bytes | None, ...]:
    """Parses :func:`encode_values`'s output.

    Raises:
        K2VError: not a JSON array of base64 strings and nulls.
    """
    return tuple(_b64decode(v) for v in _array(_loads(body), "the body"))


class ReturnFormat(enum.Enum):
    """How ReadItem and PollItem answer, from the ``Accept`` header (k2v-spec, ReadItem)."""

    JSON = "json"
    """Always the JSON array of values (no ``Accept``, or only ``application/json``)."""
    BINARY = "binary"
    """The single value as the body (204 for a tombstone); 409 on concurrent values."""
    EITHER = "either"
    """The single value as the body; the JSON array when there are concurrent values."""


def parse_accept(accept: str | None) -> ReturnFormat:
    """The answer format a client accepts (Garage: ``ReturnFormat::from``).

    ``*/*`` accepts both. Media-type parameters (``;q=0.5``) are ignored, like Garage.

    Raises:
        K2VError: ``406 NotAcceptable`` when neither JSON nor octet-stream is accepted.
    """
    if accept is None:
        return ReturnFormat.JSON
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    json_ok = _JSON in types or "*/*" in types
    binary_ok = _OCTET_STREAM in types or "*/*" in types
    if json_ok and binary_ok:
        return ReturnFormat.EITHER
    if json_ok:
        return ReturnFormat.JSON
    if binary_ok:
        return ReturnFormat.BINARY
    raise K2VError.not_acceptable(
        "Invalid Accept: header value, must contain either application/json or "
        "application/octet-stream (or both)"
    )


@dataclass(frozen=True, slots=True)
class ItemValues:
    """An item as the API returns it: its values and the token to supersede them.

    Attributes:
        sort_key: the item's sort key.
        causality_token: what a write must carry to replace exactly these values.
        values: the concurrent values, de-duplicated; ``None`` is a deletion.
    """

    sort_key: str
    causality_token: str
    values: tuple[bytes | None, ...]

    @property
    def is_conflict(self) -> bool:
        """True when several concurrent values (or a value and a deletion) exist."""
        return len(self.values) > 1

    @property
    def is_tombstone(self) -> bool:
        """True when every value is a deletion."""
        return all(v is None for v in self.values)

    @property
    def value(self) -> bytes | None:
        """The single value (``None``: deleted).

        Raises:
            ValueError: the item has concurrent values (see :attr:`values`).
        """
        if len(self.values) != 1:
            raise ValueError(f"the item has {len(self.values)} concurrent values")
        return self.values[0]

    def to_doc(self) -> dict[str, object]:
        """The ``{sk, ct, v}`` object of batch answers."""
        return {
            "sk": self.sort_key,
            "ct": self.causality_token,
            "v": [_b64encode(v) for v in self.values],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> ItemValues:
        """Parses a ``{sk, ct, v}`` object.

        Raises:
            K2VError: a field is missing or of the wrong type.
        """
        values = _array(doc.get("v"), "'v'")
        return cls(_str(doc, "sk"), _str(doc, "ct"), tuple(_b64decode(v) for v in values))


# ---------------------------------------------------------------- InsertBatch


@dataclass(frozen=True, slots=True)
class InsertBatchItem:
    """One write of an InsertBatch: ``{pk, sk, ct, v}``.

    Attributes:
        partition_key: ``pk``.
        sort_key: ``sk``.
        causality_token: ``ct``: the token of the values this write supersedes (``None``
            for a first write: concurrent with whatever exists).
        value: ``v``: the new value; ``None`` deletes (a tombstone).
    """

    partition_key: str
    sort_key: str
    causality_token: str | None = None
    value: bytes | None = None

    def _doc(self) -> dict[str, object]:
        return {
            "pk": self.partition_key,
            "sk": self.sort_key,
            "ct": self.causality_token,
            "v": _b64encode(self.value),
        }

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> InsertBatchItem:
        return cls(_str(doc, "pk"), _str(doc, "sk"), _opt_str(doc, "ct"), _b64decode(doc.get("v")))

    @staticmethod
    def list_to_json(items: Sequence[InsertBatchItem]) -> bytes:
        """The InsertBatch request body."""
        return _dumps([item._doc() for item in items])

    @classmethod
    def list_from_json(cls, body: bytes | str) -> list[InsertBatchItem]:
        """Parses an InsertBatch request body.

        Raises:
            K2VError: not a JSON array of ``{pk, sk, ct?, v?}``, or bad base64.
        """
        return _list_of(body, "an item", cls._from_doc)


# ---------------------------------------------------------------- ReadBatch


@dataclass(frozen=True, slots=True)
class ReadBatchQuery:
    """One search of a ReadBatch (k2v-spec, ReadBatch).

    Attributes:
        partition_key: the partition to read.
        prefix: only sort keys with this prefix.
        start: the first sort key (the one item, with ``single_item``).
        end: stop before this sort key.
        limit: the most items.
        reverse: walk sort keys in decreasing order (``start`` is then the highest).
        single_item: read only the item whose sort key is ``start``.
        conflicts_only: only items with concurrent values.
        tombstones: also return deleted items (values all ``None``).
    """

    partition_key: str
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    limit: int | None = None
    reverse: bool = False
    single_item: bool = False
    conflicts_only: bool = False
    tombstones: bool = False

    def _doc(self) -> dict[str, object]:
        return {
            "partitionKey": self.partition_key,
            "prefix": self.prefix,
            "start": self.start,
            "end": self.end,
            "limit": self.limit,
            "reverse": self.reverse,
            "singleItem": self.single_item,
            "conflictsOnly": self.conflicts_only,
            "tombstones": self.tombstones,
        }

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> ReadBatchQuery:
        return cls(
            _str(doc, "partitionKey"),
            _opt_str(doc, "prefix"),
            _opt_str(doc, "start"),
            _opt_str(doc, "end"),
            _opt_u64(doc, "limit"),
            _bool(doc, "reverse"),
            _bool(doc, "singleItem"),
            _bool(doc, "conflictsOnly"),
            _bool(doc, "tombstones"),
        )

    @staticmethod
    def list_to_json(queries: Sequence[ReadBatchQuery]) -> bytes:
        """The ReadBatch request body."""
        return _dumps([q._doc() for q in queries])

    @classmethod
    def list_from_json(cls, body: bytes | str) -> list[ReadBatchQuery]:
        """Parses a ReadBatch request body.

        Raises:
            K2VError: not a JSON array of searches with a ``partitionKey`` string.
        """
        return _list_of(body, "a search", cls._from_doc)


@dataclass(frozen=True, slots=True)
class ReadBatchResult:
    """The answer to one search: the query repeated, the items, and where to go on.

    Attributes:
        query: the search, as the client sent it.
        items: the items found, in the walk's order.
        more: True when ``limit`` stopped the walk before its end.
        next_start: with ``more``, the sort key to start the next page at.
    """

    query: ReadBatchQuery
    items: tuple[ItemValues, ...]
    more: bool = False
    next_start: str | None = None

    def _doc(self) -> dict[str, object]:
        doc = self.query._doc()
        doc.update(
            items=[item.to_doc() for item in self.items],
            more=self.more,
            nextStart=self.next_start,
        )
        return doc

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> ReadBatchResult:
        items = _array(doc.get("items"), "'items'")
        return cls(
            ReadBatchQuery._from_doc(doc),
            tuple(ItemValues.from_doc(_object(item, "an item")) for item in items),
            _bool(doc, "more"),
            _opt_str(doc, "nextStart"),
        )

    @staticmethod
    def list_to_json(results: Sequence[ReadBatchResult]) -> bytes:
        """The ReadBatch response body."""
        return _dumps([r._doc() for r in results])

    @classmethod
    def list_from_json(cls, body: bytes | str) -> list[ReadBatchResult]:
        """Parses a ReadBatch response body.

        Raises:
            K2VError: not the shape :meth:`list_to_json` writes.
        """
        return _list_of(body, "a search result", cls._from_doc)


# ---------------------------------------------------------------- DeleteBatch


@dataclass(frozen=True, slots=True)
class DeleteBatchQuery:
    """One range of a DeleteBatch (the ReadBatch search without limit, order or filters).

    Attributes:
        partition_key: the partition.
        prefix: only sort keys with this prefix.
        start: the first sort key (the one item, with ``single_item``).
        end: stop before this sort key.
        single_item: delete only the item whose sort key is ``start``.
    """

    partition_key: str
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    single_item: bool = False

    def _doc(self) -> dict[str, object]:
        return {
            "partitionKey": self.partition_key,
            "prefix": self.prefix,
            "start": self.start,
            "end": self.end,
            "singleItem": self.single_item,
        }

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> DeleteBatchQuery:
        return cls(
            _str(doc, "partitionKey"),
            _opt_str(doc, "prefix"),
            _opt_str(doc, "start"),
            _opt_str(doc, "end"),
            _bool(doc, "singleItem"),
        )

    @staticmethod
    def list_to_json(queries: Sequence[DeleteBatchQuery]) -> bytes:
        """The DeleteBatch request body."""
        return _dumps([q._doc() for q in queries])

    @classmethod
    def list_from_json(cls, body: bytes | str) -> list[DeleteBatchQuery]:
        """Parses a DeleteBatch request body.

        Raises:
            K2VError: not a JSON array of ranges with a ``partitionKey`` string.
        """
        return _list_of(body, "a range", cls._from_doc)


@dataclass(frozen=True, slots=True)
class DeleteBatchResult:
    """The answer to one range of a DeleteBatch.

    Attributes:
        query: the range, as the client sent it.
        deleted_items: how many items were found and deleted.
    """

    query: DeleteBatchQuery
    deleted_items: int

    def _doc(self) -> dict[str, object]:
        doc = self.query._doc()
        doc["deletedItems"] = self.deleted_items
        return doc

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> DeleteBatchResult:
        return cls(DeleteBatchQuery._from_doc(doc), _u64(doc, "deletedItems"))

    @staticmethod
    def list_to_json(results: Sequence[DeleteBatchResult]) -> bytes:
        """The DeleteBatch response body."""
        return _dumps([r._doc() for r in results])

    @classmethod
    def list_from_json(cls, body: bytes | str) -> list[DeleteBatchResult]:
        """Parses a DeleteBatch response body.

        Raises:
            K2VError: not the shape :meth:`list_to_json` writes.
        """
        return _list_of(body, "a range result", cls._from_doc)


# ---------------------------------------------------------------- ReadIndex


@dataclass(frozen=True, slots=True)
class PartitionKeyCounts:
    """One partition key of the index and its counters (eventually consistent).

    Attributes:
        partition_key: ``pk``.
        entries: items that are not tombstones.
        conflicts: items with concurrent values.
        values: values of those items (more than ``entries`` when there are conflicts).
        bytes: total size of those values.
    """

    partition_key: str
    entries: int
    conflicts: int
    values: int
    bytes: int

    def _doc(self) -> dict[str, object]:
        return {
            "pk": self.partition_key,
            "entries": self.entries,
            "conflicts": self.conflicts,
            "values": self.values,
            "bytes": self.bytes,
        }

    @classmethod
    def _from_doc(cls, doc: Mapping[str, object]) -> PartitionKeyCounts:
        counts = []
        for name in ("entries", "conflicts", "values", "bytes"):
            value = doc.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise K2VError.bad_request(f"Invalid JSON: {name!r} must be an integer")
            counts.append(value)
        return cls(_str(doc, "pk"), *counts)


@dataclass(frozen=True, slots=True)
class ReadIndexResult:
    """The answer of ReadIndex: the query repeated, the partition keys, where to go on.

    Attributes:
        prefix: as asked.
        start: as asked.
        end: as asked.
        limit: as asked.
        reverse: as asked.
        partition_keys: the partition keys with items, and their counters.
        more: True when ``limit`` stopped the walk.
        next_start: with ``more``, the partition key to start the next page at.
    """

    prefix: str | None
    start: str | None
    end: str | None
    limit: int | None
    reverse: bool
    partition_keys: tuple[PartitionKeyCounts, ...]
    more: bool = False
    next_start: str | None = None

    def to_json(self) -> bytes:
        """The ReadIndex response body."""
        return _dumps(
            {
                "prefix": self.prefix,
                "start": self.start,
                "end": self.end,
                "limit": self.limit,
                "reverse": self.reverse,
                "partitionKeys": [p._doc() for p in self.partition_keys],
                "more": self.more,
                "nextStart": self.next_start,
            }
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> ReadIndexResult:
        """Parses a ReadIndex response body.

        Raises:
            K2VError: not the shape :meth:`to_json` writes.
        """
        doc = _object(_loads(body), "the body")
        keys = _array(doc.get("partitionKeys"), "'partitionKeys'")
        return cls(
            _opt_str(doc, "prefix"),
            _opt_str(doc, "start"),
            _opt_str(doc, "end"),
            _opt_u64(doc, "limit"),
            _bool(doc, "reverse"),
            tuple(PartitionKeyCounts._from_doc(_object(k, "a partition key")) for k in keys),
            _bool(doc, "more"),
            _opt_str(doc, "nextStart"),
        )


# ---------------------------------------------------------------- PollRange


@dataclass(frozen=True, slots=True)
class PollRangeQuery:
    """The PollRange request body.

    Attributes:
        prefix: only sort keys with this prefix.
        start: the first sort key.
        end: stop before this sort key.
        timeout_s: how long to wait for a change (default 300, clamped to 1..600).
        seen_marker: the marker of the previous answer; ``None`` on the first call, which
            returns the current items at once.
    """

    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    timeout_s: int | None = None
    seen_marker: str | None = None

    def to_json(self) -> bytes:
        """The PollRange request body."""
        return _dumps(
            {
                "prefix": self.prefix,
                "start": self.start,
                "end": self.end,
                "timeout": self.timeout_s,
                "seenMarker": self.seen_marker,
            }
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> PollRangeQuery:
        """Parses a PollRange request body.

        Raises:
            K2VError: not a JSON object of the fields above.
        """
        doc = _object(_loads(body), "the body")
        return cls(
            _opt_str(doc, "prefix"),
            _opt_str(doc, "start"),
            _opt_str(doc, "end"),
            _opt_u64(doc, "timeout"),
            _opt_str(doc, "seenMarker"),
        )


@dataclass(frozen=True, slots=True)
class PollRangeResult:
    """The PollRange answer: the items that changed, and the marker for the next call.

    Attributes:
        items: the new or changed items since the marker, in sort key order.
        seen_marker: pass it to the next PollRange of the same range.
    """

    items: tuple[ItemValues, ...]
    seen_marker: str

    def to_json(self) -> bytes:
        """The PollRange response body."""
        return _dumps(
            {"items": [item.to_doc() for item in self.items], "seenMarker": self.seen_marker}
        )

    @classmethod
    def from_json(cls, body: bytes | str) -> PollRangeResult:
        """Parses a PollRange response body.

        Raises:
            K2VError: not the shape :meth:`to_json` writes.
        """
        doc = _object(_loads(body), "the body")
        items = _array(doc.get("items"), "'items'")
        return cls(
            tuple(ItemValues.from_doc(_object(item, "an item")) for item in items),
            _str(doc, "seenMarker"),
        )

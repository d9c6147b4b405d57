"""The K2V JSON documents (garage_api.k2v): wire shapes, round trips, refusals, answer formats.

Pure. The field names are pinned by literal documents (k2v-spec's examples and Garage's
serde names), compared with what the codec writes and parsed by it; every document the
server writes, the client parses back to the same value (and the other way round for
requests); malformed documents are refused with a 400 naming the problem; ReadItem's
answer follows the Accept header on real K2V items built with the model's pure write
(K2VItem.update).
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_api.k2v import (
    DeleteBatchQuery,
    DeleteBatchResult,
    InsertBatchItem,
    ItemValues,
    K2VError,
    PartitionKeyCounts,
    PollRangeQuery,
    PollRangeResult,
    ReadBatchQuery,
    ReadBatchResult,
    ReadIndexResult,
    ReturnFormat,
    decode_values,
    encode_values,
    item_response,
    parse_accept,
)
from garage_model.k2v import CausalContext, K2VItem
from garage_util.data import Uuid

_text = st.text(st.characters(codec="utf-8"), max_size=20)
_opt_text = st.none() | _text
_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_value = st.none() | st.binary(max_size=40)
_values = st.lists(_value, min_size=1, max_size=4).map(tuple)
_items = st.builds(ItemValues, _text, _text, _values)

_read_query = st.builds(
    ReadBatchQuery,
    _text,
    _opt_text,
    _opt_text,
    _opt_text,
    st.none() | _u64,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
_delete_query = st.builds(DeleteBatchQuery, _text, _opt_text, _opt_text, _opt_text, st.booleans())


@given(st.lists(st.builds(InsertBatchItem, _text, _text, _opt_text, _value), max_size=5))
def test_insert_batch_round_trips(items: list[InsertBatchItem]) -> None:
    assert InsertBatchItem.list_from_json(InsertBatchItem.list_to_json(items)) == items


@given(st.lists(_read_query, max_size=4))
def test_read_batch_query_round_trips(queries: list[ReadBatchQuery]) -> None:
    assert ReadBatchQuery.list_from_json(ReadBatchQuery.list_to_json(queries)) == queries


@given(
    st.lists(
        st.builds(
            ReadBatchResult,
            _read_query,
            st.lists(_items, max_size=3).map(tuple),
            st.booleans(),
            _opt_text,
        ),
        max_size=3,
    )
)
def test_read_batch_result_round_trips(results: list[ReadBatchResult]) -> None:
    assert ReadBatchResult.list_from_json(ReadBatchResult.list_to_json(results)) == results


@given(st.lists(_delete_query, max_size=4), st.lists(_u64, min_size=4, max_size=4))
def test_delete_batch_round_trips(queries: list[DeleteBatchQuery], counts: list[int]) -> None:
    assert DeleteBatchQuery.list_from_json(DeleteBatchQuery.list_to_json(queries)) == queries
    results = [DeleteBatchResult(q, n) for q, n in zip(queries, counts, strict=False)]
    assert DeleteBatchResult.list_from_json(DeleteBatchResult.list_to_json(results)) == results


@given(
    st.builds(
        ReadIndexResult,
        _opt_text,
        _opt_text,
        _opt_text,
        st.none() | _u64,
        st.booleans(),
        st.lists(st.builds(PartitionKeyCounts, _text, _u64, _u64, _u64, _u64), max_size=3).map(
            tuple
        ),
        st.booleans(),
        _opt_text,
    )
)
def test_read_index_round_trips(result: ReadIndexResult) -> None:
    assert ReadIndexResult.from_json(result.to_json()) == result


@given(
    st.builds(PollRangeQuery, _opt_text, _opt_text, _opt_text, st.none() | _u64, _opt_text),
    st.builds(PollRangeResult, st.lists(_items, max_size=3).map(tuple), _text),
)
def test_poll_range_round_trips(query: PollRangeQuery, result: PollRangeResult) -> None:
    assert PollRangeQuery.from_json(query.to_json()) == query
    assert PollRangeResult.from_json(result.to_json()) == result


@given(_values)
def test_values_round_trip(values: tuple[bytes | None, ...]) -> None:
    assert decode_values(encode_values(values)) == values


def test_wire_shape_is_garage() -> None:
    """Field names and encodings as in k2v-spec (camelCase, base64, null tombstones)."""
    doc = json.loads(InsertBatchItem.list_to_json([InsertBatchItem("p", "s", None, b"\x00\xff")]))
    assert doc == [{"pk": "p", "sk": "s", "ct": None, "v": "AP8="}]
    result = ReadBatchResult(ReadBatchQuery("p", limit=2), (ItemValues("s", "ct", (b"a", None)),))
    [doc] = json.loads(ReadBatchResult.list_to_json([result]))
    assert doc == {
        "partitionKey": "p",
        "prefix": None,
        "start": None,
        "end": None,
        "limit": 2,
        "reverse": False,
        "singleItem": False,
        "conflictsOnly": False,
        "tombstones": False,
        "items": [{"sk": "s", "ct": "ct", "v": ["YQ==", None]}],
        "more": False,
        "nextStart": None,
    }
    # Absent optional fields take their defaults (serde's #[serde(default)]).
    assert ReadBatchQuery.list_from_json(b'[{"partitionKey": "p"}]') == [ReadBatchQuery("p")]
    assert InsertBatchItem.list_from_json(b'[{"pk": "p", "sk": "s"}]') == [
        InsertBatchItem("p", "s")
    ]


# The wire field names, pinned by literal documents (k2v-spec; Garage's serde structs in
# src/api/k2v/{index.rs, batch.rs}), not by round trips through this package's codec.


def test_read_index_wire_shape() -> None:
    result = ReadIndexResult(
        "mail",
        "mailbox:A",
        "mailbox:Z",
        2,
        False,
        (
            PartitionKeyCounts("mailbox:INBOX", 42, 1, 43, 142029),
            PartitionKeyCounts("mailbox:Junk", 2991, 0, 2991, 12019322),
        ),
        True,
        "mailbox:Trash",
    )
    assert json.loads(result.to_json()) == {
        "prefix": "mail",
        "start": "mailbox:A",
        "end": "mailbox:Z",
        "limit": 2,
        "reverse": False,
        "partitionKeys": [
            {"pk": "mailbox:INBOX", "entries": 42, "conflicts": 1, "values": 43, "bytes": 142029},
            {
                "pk": "mailbox:Junk",
                "entries": 2991,
                "conflicts": 0,
                "values": 2991,
                "bytes": 12019322,
            },
        ],
        "more": True,
        "nextStart": "mailbox:Trash",
    }


def test_read_index_parses_the_spec_example() -> None:
    """The k2v-spec ReadIndex example answer (JSON5 made JSON), as Garage writes it."""
    body = b"""{
      "prefix": null, "start": null, "end": null, "limit": null, "reverse": false,
      "partitionKeys": [
        {"pk": "keys", "entries": 3043, "conflicts": 0, "values": 3043, "bytes": 121720},
        {"pk": "mailbox:INBOX", "entries": 42, "conflicts": 1, "values": 43, "bytes": 142029}
      ],
      "more": false, "nextStart": null
    }"""
    assert ReadIndexResult.from_json(body) == ReadIndexResult(
        None,
        None,
        None,
        None,
        False,
        (
            PartitionKeyCounts("keys", 3043, 0, 3043, 121720),
            PartitionKeyCounts("mailbox:INBOX", 42, 1, 43, 142029),
        ),
    )


def test_delete_batch_wire_shape() -> None:
    queries = [
        DeleteBatchQuery("mailbox:Old"),
        DeleteBatchQuery("inbox", start="0018", single_item=True),
    ]
    assert json.loads(DeleteBatchQuery.list_to_json(queries)) == [
        {
            "partitionKey": "mailbox:Old",
            "prefix": None,
            "start": None,
            "end": None,
            "singleItem": False,
        },
        {"partitionKey": "inbox", "prefix": None, "start": "0018", "end": None, "singleItem": True},
    ]
    results = [DeleteBatchResult(queries[0], 35), DeleteBatchResult(queries[1], 1)]
    assert json.loads(DeleteBatchResult.list_to_json(results)) == [
        {
            "partitionKey": "mailbox:Old",
            "prefix": None,
            "start": None,
            "end": None,
            "singleItem": False,
            "deletedItems": 35,
        },
        {
            "partitionKey": "inbox",
            "prefix": None,
            "start": "0018",
            "end": None,
            "singleItem": True,
            "deletedItems": 1,
        },
    ]
    # The spec's example request: only the fields given, the others take their defaults.
    spec_request = (
        b'[{"partitionKey": "mailbox:OldMailbox"},'
        b' {"partitionKey": "mailbox:INBOX", "start": "0018928321", "singleItem": true}]'
    )
    assert DeleteBatchQuery.list_from_json(spec_request) == [
        DeleteBatchQuery("mailbox:OldMailbox"),
        DeleteBatchQuery("mailbox:INBOX", start="0018928321", single_item=True),
    ]


def test_poll_range_wire_shape() -> None:
    query = PollRangeQuery("0391.", "0391.000001973107", None, 30, "opaquestring123")
    assert json.loads(query.to_json()) == {
        "prefix": "0391.",
        "start": "0391.000001973107",
        "end": None,
        "timeout": 30,
        "seenMarker": "opaquestring123",
    }
    # The spec's example request: seenMarker and timeout by those names, the rest absent.
    assert PollRangeQuery.from_json(
        b'{"prefix": "0391.", "timeout": 10, "seenMarker": "opaquestring123"}'
    ) == PollRangeQuery(prefix="0391.", timeout_s=10, seen_marker="opaquestring123")
    result = PollRangeResult(
        (ItemValues("0391.000001973221", "ct1", (b"a", None)),), "opaquestring456"
    )
    assert json.loads(result.to_json()) == {
        "items": [{"sk": "0391.000001973221", "ct": "ct1", "v": ["YQ==", None]}],
        "seenMarker": "opaquestring456",
    }
    spec_answer = b"""{
      "seenMarker": "opaquestring456",
      "items": [{"sk": "0391.000001974191", "ct": "opaquetoken456", "v": ["YQ==", "Yg=="]}]
    }"""
    assert PollRangeResult.from_json(spec_answer) == PollRangeResult(
        (ItemValues("0391.000001974191", "opaquetoken456", (b"a", b"b")),), "opaquestring456"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "InvalidRequest"),
        (b"\xff", "InvalidRequest"),
        (b'{"pk": "p"}', "InvalidRequest"),  # not an array
        (b"[1]", "InvalidRequest"),
        (b'[{"sk": "s"}]', "InvalidRequest"),  # no pk
        (b'[{"pk": 1, "sk": "s"}]', "InvalidRequest"),
        (b'[{"pk": "p", "sk": "s", "ct": 5}]', "InvalidRequest"),
        (b'[{"pk": "p", "sk": "s", "v": 5}]', "InvalidRequest"),
        (b'[{"pk": "p", "sk": "s", "v": "not base64!"}]', "InvalidBase64"),
        (b'[{"pk": "p", "sk": "s", "v": "YQ"}]', "InvalidBase64"),  # missing padding
        (b'[{"pk": "p", "sk": "s", "v": "\\u00e9"}]', "InvalidBase64"),
        (b'[{"pk": "\\ud800", "sk": "s"}]', "InvalidUtf8String"),  # a lone surrogate
    ],
)
def test_insert_batch_refusals(body: bytes, code: str) -> None:
    with pytest.raises(K2VError) as info:
        InsertBatchItem.list_from_json(body)
    assert (info.value.code, info.value.status) == (code, 400)


@pytest.mark.parametrize(
    "body",
    [
        b'[{"partitionKey": "p", "limit": -1}]',
        b'[{"partitionKey": "p", "limit": 1.5}]',
        b'[{"partitionKey": "p", "limit": true}]',
        b'[{"partitionKey": "p", "reverse": "yes"}]',
        b'[{"partitionKey": null}]',
        b'[{"prefix": "a"}]',
    ],
)
def test_read_batch_refusals(body: bytes) -> None:
    with pytest.raises(K2VError) as info:
        ReadBatchQuery.list_from_json(body)
    assert info.value.status == 400


def test_poll_range_query_refusals() -> None:
    for body in (b"[]", b'{"timeout": "5"}', b'{"seenMarker": 3}'):
        with pytest.raises(K2VError):
            PollRangeQuery.from_json(body)
    assert PollRangeQuery.from_json(b"{}") == PollRangeQuery()


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, ReturnFormat.JSON),
        ("application/json", ReturnFormat.JSON),
        ("application/octet-stream", ReturnFormat.BINARY),
        ("application/json, application/octet-stream", ReturnFormat.EITHER),
        ("*/*", ReturnFormat.EITHER),
        ("text/html, application/octet-stream;q=0.9", ReturnFormat.BINARY),
    ],
)
def test_accept(accept: str | None, fmt: ReturnFormat) -> None:
    assert parse_accept(accept) is fmt


def test_accept_neither_is_406() -> None:
    with pytest.raises(K2VError) as info:
        parse_accept("text/plain")
    assert (info.value.code, info.value.status) == ("NotAcceptable", 406)


def test_error_document() -> None:
    error = K2VError.no_such_key()
    doc = json.loads(error.to_json(region="garage", path="/b/pk"))
    assert doc == {
        "code": "NoSuchKey",
        "message": "Key not found",
        "region": "garage",
        "path": "/b/pk",
    }
    assert error.status == 404


# ---------------------------------------------------------------- ReadItem answers

_BUCKET = Uuid(bytes(range(32)))
_NODE_A, _NODE_B = 1, 2


def _item(*writes: bytes | None) -> K2VItem:
    """An item after concurrent writes (no context), alternately from two nodes."""
    item = K2VItem.new(_BUCKET, "pk", "sk")
    for i, value in enumerate(writes):
        item, _ = item.update(_NODE_A if i % 2 == 0 else _NODE_B, None, value, 100 + i)
    return item


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


def test_item_answer_json_lists_all_values() -> None:
    item = _item(b"one", b"two")
    response = item_response(ReturnFormat.JSON, item)
    assert response.status == 200
    assert _header(response.headers, "content-type") == "application/json"
    assert isinstance(response.body, bytes)
    assert sorted(json.loads(response.body)) == sorted(
        base64.b64encode(v).decode() for v in (b"one", b"two")
    )
    token = _header(response.headers, "x-garage-causality-token")
    assert token is not None
    assert CausalContext.parse(token) == item.causal_context()


def test_item_answer_binary() -> None:
    single = item_response(ReturnFormat.BINARY, _item(b"raw"))
    assert (single.status, single.body) == (200, b"raw")
    assert _header(single.headers, "content-type") == "application/octet-stream"
    conflict = item_response(ReturnFormat.BINARY, _item(b"one", b"two"))
    assert (conflict.status, conflict.body) == (409, b"")
    assert _header(conflict.headers, "x-garage-causality-token") is not None
    tombstone = item_response(ReturnFormat.BINARY, _item(None))
    assert (tombstone.status, tombstone.body) == (204, b"")
    # Either: binary for one value, JSON for concurrent ones (a value and a deletion).
    assert item_response(ReturnFormat.EITHER, _item(b"raw")).body == b"raw"
    both = item_response(ReturnFormat.EITHER, _item(b"v", None))
    assert both.status == 200
    assert isinstance(both.body, bytes)
    assert set(json.loads(both.body)) == {"dg==", None}


def test_item_answer_without_values_is_404() -> None:
    for item in (None, K2VItem.new(_BUCKET, "pk", "sk")):
        with pytest.raises(K2VError) as info:
            item_response(ReturnFormat.JSON, item)
        assert info.value.code == "NoSuchKey"

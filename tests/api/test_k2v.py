"""The K2V API on a real single node, through K2VClient and raw signed httpx requests.

One ``garage server --single-node`` process with ``[k2v_api]`` for the module
(tests/api/k2v_node.py). Each test works in its own partition keys, so tests do not see
each other's items. On one node there is no concurrency between nodes, but two writes
without a causality token are still concurrent (siblings): the DVVS semantics do not
depend on the number of nodes. Counters (ReadIndex) are propagated by the insert queue,
so the index tests wait for them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from tests.api.k2v_node import K2VNode, cli_json, start_k2v_node, stop_k2v_node

from garage_api.k2v import (
    MAX_VALUE_BYTES,
    DeleteBatchQuery,
    InsertBatchItem,
    K2VError,
    ReadBatchQuery,
    ReadIndexResult,
)
from garage_api.k2v.client import ConcurrentValuesError
from garage_api.signature import sign_request, uri_encode
from garage_util.clock import now_msec
from garage_util.encode import pack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from garage_api.k2v.client import K2VClient

CT = "x-garage-causality-token"
OCTET = (("accept", "application/octet-stream"),)


@pytest.fixture
def anyio_backend() -> str:
    """The node's clients run on trio here (one test below runs the client on asyncio)."""
    return "trio"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K2VNode]:
    started = start_k2v_node(Path(tmp_path_factory.mktemp("k2vnode")))
    try:
        yield started
    finally:
        assert stop_k2v_node(started) == 0


@pytest.fixture(scope="module")
def reader(node: K2VNode) -> tuple[str, str]:
    """A key allowed to read the bucket, not to write it."""
    key = cli_json(node.config, "key", "create", "k2v-reader")
    cli_json(node.config, "bucket", "allow", "--read", node.bucket, "--key", key["key_id"])
    return key["key_id"], key["secret_key"]


@pytest.fixture(scope="module")
def stranger(node: K2VNode) -> tuple[str, str]:
    """A key with no permission on the bucket."""
    key = cli_json(node.config, "key", "create", "k2v-stranger")
    return key["key_id"], key["secret_key"]


@pytest.fixture
async def k2v(node: K2VNode) -> AsyncIterator[K2VClient]:
    async with node.client() as client:
        yield client


@pytest.fixture
def pk() -> str:
    """A partition key of this test's own (with characters that need encoding)."""
    return f"test/{uuid.uuid4().hex[:12]} é+"


async def raw(
    node: K2VNode,
    method: str,
    path: str,
    query: str = "",
    *,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    key: tuple[str, str] | None = None,
    service: str = "k2v",
    region: str | None = None,
    payload_hash: str | None = None,
    sign: bool = True,
) -> httpx.Response:
    """A request signed by hand (or not), for the cases the client never sends."""
    url = httpx.URL(node.endpoint)
    host = url.netloc.decode()
    all_headers = [("host", host), *headers]
    if sign:
        key_id, secret = key if key is not None else (node.s3.key_id, node.s3.secret)
        all_headers = sign_request(
            method,
            path,
            query,
            all_headers,
            key_id=key_id,
            secret=secret,
            region=region or node.s3.region,
            service=service,
            now_ms=now_msec(),
            payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
        )
    target = path + (f"?{query}" if query else "")
    async with httpx.AsyncClient() as http:
        del http.headers["accept"]  # httpx's default "*/*" would pick the format
        return await http.request(
            method, url.copy_with(raw_path=target.encode()), headers=all_headers, content=body
        )


def item_path(node: K2VNode, pk: str) -> str:
    return f"/{node.bucket}/{uri_encode(pk)}"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def json_of(response: httpx.Response, status: int = 200) -> Any:
    """The JSON document of a successful answer (status and content type checked)."""
    assert response.status_code == status, response.content
    assert response.headers["content-type"] == "application/json"
    return json.loads(response.content)


async def token_of(node: K2VNode, pk: str, sk: str) -> str:
    """The causality token a raw ReadItem answers with."""
    read = await raw(node, "GET", item_path(node, pk), f"sort_key={uri_encode(sk)}")
    assert read.status_code == 200
    return read.headers[CT]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error document of a failed answer (checked for its four fields)."""
    assert response.headers["content-type"] == "application/json"
    doc: dict[str, Any] = json.loads(response.content)
    assert set(doc) == {"code", "message", "region", "path"}
    assert doc["message"]
    return doc


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Waits for a condition on the node's state (counters are propagated in the
    background); fails after a generous deadline, never asserting on time."""
    with anyio.move_on_after(30):
        # Polling on purpose: other processes' state, with no events to wait on.
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.1)
        return
    raise AssertionError(f"gave up waiting: {what}")


# ---------------------------------------------------------------- single items


@pytest.mark.anyio
async def test_causality_siblings_and_resolution(k2v: K2VClient, pk: str) -> None:
    assert await k2v.read_item(pk, "sk") is None
    await k2v.insert_item(pk, "sk", b"v1")
    first = await k2v.read_item(pk, "sk")
    assert first is not None
    assert first.values == (b"v1",)
    assert not first.is_conflict
    # A write that saw v1 replaces it.
    await k2v.insert_item(pk, "sk", b"v2", first.causality_token)
    second = await k2v.read_item(pk, "sk")
    assert second is not None
    assert second.values == (b"v2",)
    # A write without the token is concurrent: both values are kept.
    await k2v.insert_item(pk, "sk", b"v3")
    siblings = await k2v.read_item(pk, "sk")
    assert siblings is not None
    assert set(siblings.values) == {b"v2", b"v3"}
    assert siblings.is_conflict
    # A write with an old token still only replaces what that token saw (v2), not v3.
    await k2v.insert_item(pk, "sk", b"v4", second.causality_token)
    still = await k2v.read_item(pk, "sk")
    assert still is not None
    assert set(still.values) == {b"v3", b"v4"}
    # The token of the conflicting read resolves the conflict.
    await k2v.insert_item(pk, "sk", b"resolved", still.causality_token)
    resolved = await k2v.read_item(pk, "sk")
    assert resolved is not None
    assert resolved.values == (b"resolved",)
    # A deletion with the token leaves a tombstone.
    await k2v.delete_item(pk, "sk", resolved.causality_token)
    deleted = await k2v.read_item(pk, "sk")
    assert deleted is not None
    assert deleted.values == (None,)
    assert deleted.is_tombstone


@pytest.mark.anyio
async def test_values_are_binary_and_empty_allowed(k2v: K2VClient, pk: str) -> None:
    blob = bytes(range(256)) * 8
    await k2v.insert_item(pk, "blob", blob)
    await k2v.insert_item(pk, "empty", b"")
    blob_item = await k2v.read_item(pk, "blob")
    empty_item = await k2v.read_item(pk, "empty")
    assert blob_item is not None
    assert blob_item.value == blob
    assert empty_item is not None
    assert empty_item.value == b""


@pytest.mark.anyio
async def test_raw_read_formats(node: K2VNode, k2v: K2VClient, pk: str) -> None:
    path, query = item_path(node, pk), "sort_key=s"
    octet = (("accept", "application/octet-stream"),)
    await k2v.insert_item(pk, "s", b"single")
    one = await raw(node, "GET", path, query, headers=octet)
    assert (one.status_code, one.content) == (200, b"single")
    assert one.headers["content-type"] == "application/octet-stream"
    token = one.headers[CT]
    # Without Accept: JSON.
    as_json = await raw(node, "GET", path, query)
    assert as_json.headers["content-type"] == "application/json"
    assert json.loads(as_json.content) == ["c2luZ2xl"]
    # Several values: 409 with the token, no body; "either" falls back to JSON.
    await k2v.insert_item(pk, "s", b"other")
    conflict = await raw(node, "GET", path, query, headers=octet)
    assert (conflict.status_code, conflict.content) == (409, b"")
    assert CT in conflict.headers
    either = await raw(
        node, "GET", path, query, headers=(("accept", "application/json,application/octet-stream"),)
    )
    assert either.status_code == 200
    assert sorted(json.loads(either.content)) == ["b3RoZXI=", "c2luZ2xl"]
    # A tombstone: 204 with the token.
    await k2v.delete_item(pk, "s", conflict.headers[CT])
    tomb = await raw(node, "GET", path, query, headers=octet)
    assert (tomb.status_code, tomb.content) == (204, b"")
    assert tomb.headers[CT] != token
    # Neither format acceptable: 406.
    refused = await raw(node, "GET", path, query, headers=(("accept", "text/plain"),))
    assert refused.status_code == 406
    assert error_of(refused)["code"] == "NotAcceptable"
    # No such item: 404 NoSuchKey.
    missing = await raw(node, "GET", path, "sort_key=nothing")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "NoSuchKey"


@pytest.mark.anyio
async def test_poll_item_times_out_then_wakes(node: K2VNode, k2v: K2VClient, pk: str) -> None:
    await k2v.insert_item(pk, "p", b"before")
    seen = await k2v.read_item(pk, "p")
    assert seen is not None
    assert await k2v.poll_item(pk, "p", seen.causality_token, timeout_s=1) is None
    timed_out = await raw(
        node,
        "GET",
        item_path(node, pk),
        f"sort_key=p&causality_token={seen.causality_token}&timeout=1",
    )
    assert (timed_out.status_code, timed_out.content) == (304, b"")

    got: list[Any] = []

    async def poll() -> None:
        got.append(await k2v.poll_item(pk, "p", seen.causality_token, timeout_s=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await anyio.sleep(0.3)  # usually the poll is waiting by now; either way it must wake
        async with node.client() as writer:
            await writer.insert_item(pk, "p", b"after", seen.causality_token)
    [woken] = got
    assert woken is not None
    assert woken.values == (b"after",)
    # Polling with a token older than the item answers at once.
    again = await k2v.poll_item(pk, "p", seen.causality_token, timeout_s=60)
    assert again is not None
    assert again.values == (b"after",)


@pytest.mark.anyio
async def test_raw_writes_answer_204(node: K2VNode, pk: str) -> None:
    """InsertItem, DeleteItem and InsertBatch answer ``204 No Content`` (k2v-spec)."""
    path = item_path(node, pk)
    put = await raw(node, "PUT", path, "sort_key=s", body=b"v1")
    assert (put.status_code, put.content) == (204, b"")
    token = await token_of(node, pk, "s")
    delete = await raw(node, "DELETE", path, "sort_key=s", headers=((CT, token),))
    assert (delete.status_code, delete.content) == (204, b"")
    batch = json.dumps(
        [
            {"pk": pk, "sk": "b1", "ct": None, "v": b64(b"one")},
            {"pk": pk, "sk": "b2", "v": b64(b"two")},  # ct absent: null
        ]
    ).encode()
    inserted = await raw(node, "POST", f"/{node.bucket}", body=batch)
    assert (inserted.status_code, inserted.content) == (204, b"")
    tomb = await raw(node, "GET", path, "sort_key=s")
    assert json_of(tomb) == [None]
    assert json_of(await raw(node, "GET", path, "sort_key=b2")) == [b64(b"two")]


@pytest.mark.anyio
async def test_delete_without_token_keeps_the_value_next_to_a_tombstone(
    node: K2VNode, pk: str
) -> None:
    """A DeleteItem without a causality token is concurrent with the values present (as
    in Garage, whose handle_delete_item takes the token as optional): reads return the
    value and a tombstone, ``[value, null]``, until a write with a token resolves them."""
    path = item_path(node, pk)
    assert (await raw(node, "PUT", path, "sort_key=s", body=b"kept")).status_code == 204
    deleted = await raw(node, "DELETE", path, "sort_key=s")
    assert (deleted.status_code, deleted.content) == (204, b"")
    as_json = await raw(node, "GET", path, "sort_key=s")
    assert json_of(as_json) == [b64(b"kept"), None]
    # Two values (one a tombstone): binary is a conflict, "either" falls back to JSON.
    binary = await raw(node, "GET", path, "sort_key=s", headers=OCTET)
    assert (binary.status_code, binary.content) == (409, b"")
    assert binary.headers[CT] == as_json.headers[CT]
    # ReadBatch lists it without asking for tombstones: it is a conflict, not deleted.
    search = json.dumps([{"partitionKey": pk, "conflictsOnly": True}]).encode()
    [found] = json_of(await raw(node, "SEARCH", f"/{node.bucket}", body=search))
    assert found["items"] == [{"sk": "s", "ct": as_json.headers[CT], "v": [b64(b"kept"), None]}]
    # A delete with the token supersedes both: a plain tombstone.
    resolved = await raw(node, "DELETE", path, "sort_key=s", headers=((CT, as_json.headers[CT]),))
    assert resolved.status_code == 204
    assert json_of(await raw(node, "GET", path, "sort_key=s")) == [None]

    # A delete and a write, both without a token, concurrent with each other and with the
    # value present: all three are kept.
    assert (await raw(node, "PUT", path, "sort_key=c", body=b"first")).status_code == 204
    statuses: list[int] = []

    async def send(method: str, body: bytes) -> None:
        statuses.append((await raw(node, method, path, "sort_key=c", body=body)).status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, "DELETE", b"")
        tg.start_soon(send, "PUT", b"second")
    assert statuses == [204, 204]
    values = json_of(await raw(node, "GET", path, "sort_key=c"))
    assert len(values) == 3
    assert set(values) == {b64(b"first"), b64(b"second"), None}


@pytest.mark.anyio
async def test_client_binary_read(k2v: K2VClient, pk: str) -> None:
    """read_item_binary: the raw value without base64, a tombstone, a conflict (409 with
    the token, which resolves it), and no item."""
    blob = bytes(range(256))
    await k2v.insert_item(pk, "b", blob)
    item = await k2v.read_item_binary(pk, "b")
    assert item is not None
    assert item.values == (blob,)
    json_item = await k2v.read_item(pk, "b")
    assert json_item is not None
    assert item.causality_token == json_item.causality_token
    assert await k2v.read_item_binary(pk, "nothing") is None
    await k2v.insert_item(pk, "b", b"sibling")
    with pytest.raises(ConcurrentValuesError) as info:
        await k2v.read_item_binary(pk, "b")
    assert (info.value.code, info.value.status) == ("Conflict", 409)
    await k2v.delete_item(pk, "b", info.value.causality_token)
    tomb = await k2v.read_item_binary(pk, "b")
    assert tomb is not None
    assert tomb.values == (None,)
    assert tomb.is_tombstone


# ---------------------------------------------------------------- batches


@pytest.mark.anyio
async def test_batches_over_ranges(k2v: K2VClient, pk: str) -> None:
    other = pk + "-other"
    items = [InsertBatchItem(pk, f"a{i:02}", None, f"value {i}".encode()) for i in range(10)]
    items += [InsertBatchItem(other, f"b{i}", None, b"x") for i in range(3)]
    await k2v.insert_batch(items)

    results = await k2v.read_batch(
        [
            ReadBatchQuery(pk),
            ReadBatchQuery(pk, prefix="a0", start="a03", end="a07"),
            ReadBatchQuery(pk, limit=3),
            ReadBatchQuery(pk, reverse=True, limit=2),
            ReadBatchQuery(pk, start="a05", single_item=True),
            ReadBatchQuery(other),
            ReadBatchQuery(pk, prefix="zz"),
        ]
    )
    every, window, first3, last2, single, others, none = results
    assert [i.sort_key for i in every.items] == [f"a{i:02}" for i in range(10)]
    assert every.items[4].values == (b"value 4",)
    assert (every.more, every.next_start) == (False, None)
    assert [i.sort_key for i in window.items] == ["a03", "a04", "a05", "a06"]
    assert [i.sort_key for i in first3.items] == ["a00", "a01", "a02"]
    assert (first3.more, first3.next_start) == (True, "a03")
    assert [i.sort_key for i in last2.items] == ["a09", "a08"]
    assert (last2.more, last2.next_start) == (True, "a07")
    assert [i.sort_key for i in single.items] == ["a05"]
    assert [i.sort_key for i in others.items] == ["b0", "b1", "b2"]
    assert none.items == ()
    assert window.query == ReadBatchQuery(pk, prefix="a0", start="a03", end="a07")

    # A concurrent write makes a conflict, which conflictsOnly finds.
    await k2v.insert_batch([InsertBatchItem(pk, "a01", None, b"sibling")])
    [conflicts] = await k2v.read_batch([ReadBatchQuery(pk, conflicts_only=True)])
    assert [i.sort_key for i in conflicts.items] == ["a01"]
    assert set(conflicts.items[0].values) == {b"value 1", b"sibling"}

    deleted = await k2v.delete_batch(
        [
            DeleteBatchQuery(pk, start="a02", end="a05"),
            DeleteBatchQuery(other, start="b1", single_item=True),
        ]
    )
    assert [d.deleted_items for d in deleted] == [3, 1]
    live, with_tombstones, others_left = await k2v.read_batch(
        [ReadBatchQuery(pk), ReadBatchQuery(pk, tombstones=True), ReadBatchQuery(other)]
    )
    assert [i.sort_key for i in live.items] == ["a00", "a01"] + [f"a{i:02}" for i in range(5, 10)]
    assert len(with_tombstones.items) == 10
    assert [i.values for i in with_tombstones.items[2:5]] == [(None,)] * 3
    assert [i.sort_key for i in others_left.items] == ["b0", "b2"]
    # The range delete superseded both siblings of a01? No: a01 was outside the range.
    assert set(live.items[1].values) == {b"value 1", b"sibling"}

    # InsertBatch with tokens and deletions: resolve a01, delete a00.
    a00, a01 = live.items[0], live.items[1]
    await k2v.insert_batch(
        [
            InsertBatchItem(pk, "a01", a01.causality_token, b"one"),
            InsertBatchItem(pk, "a00", a00.causality_token, None),
        ]
    )
    [after] = await k2v.read_batch([ReadBatchQuery(pk, end="a02", tombstones=True)])
    assert [(i.sort_key, i.values) for i in after.items] == [("a00", (None,)), ("a01", (b"one",))]


@pytest.mark.anyio
async def test_read_index_counts_follow_writes_and_deletes(k2v: K2VClient, pk: str) -> None:
    px, py = pk + "/x", pk + "/y"
    await k2v.insert_batch(
        [InsertBatchItem(px, f"k{i}", None, b"12345") for i in range(3)]
        + [InsertBatchItem(py, "one", None, b"ab"), InsertBatchItem(py, "two", None, b"c")]
    )
    await k2v.insert_item(py, "two", b"def")  # a sibling: a conflict in py

    def counts(index: ReadIndexResult) -> dict[str, tuple[int, int, int, int]]:
        return {
            p.partition_key: (p.entries, p.conflicts, p.values, p.bytes)
            for p in index.partition_keys
        }

    expected = {px: (3, 0, 3, 15), py: (2, 1, 3, 6)}

    async def counted() -> bool:
        return counts(await k2v.read_index(prefix=pk)) == expected

    await eventually(counted, "the index counts the inserted items")
    page = await k2v.read_index(prefix=pk, limit=1)
    assert [p.partition_key for p in page.partition_keys] == [px]
    assert (page.more, page.next_start) == (True, py)
    backwards = await k2v.read_index(prefix=pk, reverse=True)
    assert [p.partition_key for p in backwards.partition_keys] == [py, px]
    assert [
        p.partition_key for p in (await k2v.read_index(start=py, end=py + "~")).partition_keys
    ] == [py]

    await k2v.delete_batch(
        [DeleteBatchQuery(px), DeleteBatchQuery(py, start="two", single_item=True)]
    )
    expected = {py: (1, 0, 1, 2)}
    await eventually(counted, "the index forgets the deleted items")


@pytest.mark.anyio
async def test_poll_range(node: K2VNode, k2v: K2VClient, pk: str) -> None:
    await k2v.insert_batch([InsertBatchItem(pk, f"r{i}", None, b"v") for i in range(3)])
    await k2v.insert_item(pk, "zzz", b"outside the range")
    first = await k2v.poll_range(pk, prefix="r", timeout_s=5)
    assert first is not None
    assert [i.sort_key for i in first.items] == ["r0", "r1", "r2"]
    # Nothing new: 304 after the timeout.
    assert await k2v.poll_range(pk, prefix="r", seen_marker=first.seen_marker, timeout_s=1) is None
    await k2v.insert_item(pk, "zzz", b"still outside")
    await k2v.insert_item(pk, "r1", b"changed", first.items[1].causality_token)
    changed = await k2v.poll_range(pk, prefix="r", seen_marker=first.seen_marker, timeout_s=30)
    assert changed is not None
    assert [(i.sort_key, i.values) for i in changed.items] == [("r1", (b"changed",))]
    bad = await raw(
        node, "POST", item_path(node, pk), "poll_range", body=b'{"seenMarker": "not a marker"}'
    )
    assert bad.status_code == 400
    assert error_of(bad)["code"] == "InvalidRequest"


# ---------------------------------------------------------------- the wire, raw
# The server's JSON checked as literal documents against k2v-spec (and Garage's serde
# structs, src/api/k2v/{index.rs, batch.rs}): field names and shapes, not a round trip
# through this package's codec.


@pytest.mark.anyio
async def test_raw_read_batch_and_delete_batch_documents(node: K2VNode, pk: str) -> None:
    batch = [{"pk": pk, "sk": f"k{i}", "ct": None, "v": b64(f"v{i}".encode())} for i in range(4)]
    inserted = await raw(node, "POST", f"/{node.bucket}", body=json.dumps(batch).encode())
    assert inserted.status_code == 204
    tokens = [await token_of(node, pk, f"k{i}") for i in range(4)]

    # ReadBatch as SEARCH /<bucket> (k2v-spec: the alternative to POST /<bucket>?search).
    searches = [
        {"partitionKey": pk, "start": "k1", "limit": 2},
        {"partitionKey": pk, "start": "k3", "singleItem": True},
    ]
    answer = await raw(node, "SEARCH", f"/{node.bucket}", body=json.dumps(searches).encode())
    assert json_of(answer) == [
        {
            "partitionKey": pk,
            "prefix": None,
            "start": "k1",
            "end": None,
            "limit": 2,
            "reverse": False,
            "singleItem": False,
            "conflictsOnly": False,
            "tombstones": False,
            "items": [
                {"sk": "k1", "ct": tokens[1], "v": [b64(b"v1")]},
                {"sk": "k2", "ct": tokens[2], "v": [b64(b"v2")]},
            ],
            "more": True,
            "nextStart": "k3",
        },
        {
            "partitionKey": pk,
            "prefix": None,
            "start": "k3",
            "end": None,
            "limit": None,
            "reverse": False,
            "singleItem": True,
            "conflictsOnly": False,
            "tombstones": False,
            "items": [{"sk": "k3", "ct": tokens[3], "v": [b64(b"v3")]}],
            "more": False,
            "nextStart": None,
        },
    ]
    # POST /<bucket>?search is the same endpoint.
    post = await raw(node, "POST", f"/{node.bucket}", "search", body=json.dumps(searches).encode())
    assert json_of(post) == json_of(answer)

    ranges = [
        {"partitionKey": pk, "start": "k0", "end": "k2"},
        {"partitionKey": pk, "start": "k3", "singleItem": True},
    ]
    deleted = await raw(node, "POST", f"/{node.bucket}", "delete", body=json.dumps(ranges).encode())
    assert json_of(deleted) == [
        {
            "partitionKey": pk,
            "prefix": None,
            "start": "k0",
            "end": "k2",
            "singleItem": False,
            "deletedItems": 2,
        },
        {
            "partitionKey": pk,
            "prefix": None,
            "start": "k3",
            "end": None,
            "singleItem": True,
            "deletedItems": 1,
        },
    ]
    left = json.dumps([{"partitionKey": pk, "tombstones": True}]).encode()
    [doc] = json_of(await raw(node, "SEARCH", f"/{node.bucket}", body=left))
    assert [(i["sk"], i["v"]) for i in doc["items"]] == [
        ("k0", [None]),
        ("k1", [None]),
        ("k2", [b64(b"v2")]),
        ("k3", [None]),
    ]


@pytest.mark.anyio
async def test_raw_read_index_document(node: K2VNode, pk: str) -> None:
    pa, pb = pk + "/a", pk + "/b"
    batch = [
        {"pk": pa, "sk": "1", "ct": None, "v": b64(b"123")},
        {"pk": pa, "sk": "2", "ct": None, "v": b64(b"45")},
        {"pk": pb, "sk": "1", "ct": None, "v": b64(b"6")},
        {"pk": pb, "sk": "1", "ct": None, "v": b64(b"78")},  # a sibling: a conflict
    ]
    inserted = await raw(node, "POST", f"/{node.bucket}", body=json.dumps(batch).encode())
    assert inserted.status_code == 204
    row_a = {"pk": pa, "entries": 2, "conflicts": 0, "values": 2, "bytes": 5}
    row_b = {"pk": pb, "entries": 1, "conflicts": 1, "values": 2, "bytes": 3}
    query = f"prefix={uri_encode(pk + '/')}"

    async def indexed() -> bool:
        doc = json_of(await raw(node, "GET", f"/{node.bucket}", query))
        return bool(doc["partitionKeys"] == [row_a, row_b])

    await eventually(indexed, "the index counts the items")
    full = await raw(node, "GET", f"/{node.bucket}", query)
    assert json_of(full) == {
        "prefix": pk + "/",
        "start": None,
        "end": None,
        "limit": None,
        "reverse": False,
        "partitionKeys": [row_a, row_b],
        "more": False,
        "nextStart": None,
    }
    page = await raw(node, "GET", f"/{node.bucket}", f"{query}&limit=1&reverse=true")
    assert json_of(page) == {
        "prefix": pk + "/",
        "start": None,
        "end": None,
        "limit": 1,
        "reverse": True,
        "partitionKeys": [row_b],
        "more": True,
        "nextStart": pa,
    }


@pytest.mark.anyio
async def test_raw_poll_range_with_search(node: K2VNode, pk: str) -> None:
    """PollRange as ``SEARCH /<bucket>/<partition key>?poll_range`` (the spec's heading;
    its example omits the partition key, but Garage's router takes PollRange only with
    one), with the request and answer documents checked field by field."""
    path = item_path(node, pk)
    for sk, value in (("r1", b"one"), ("r2", b"two"), ("z", b"out")):
        assert (await raw(node, "PUT", path, f"sort_key={sk}", body=value)).status_code == 204
    r1, r2 = await token_of(node, pk, "r1"), await token_of(node, pk, "r2")

    first = await raw(
        node, "SEARCH", path, "poll_range", body=json.dumps({"prefix": "r", "timeout": 5}).encode()
    )
    doc = json_of(first)
    assert set(doc) == {"items", "seenMarker"}
    assert doc["items"] == [
        {"sk": "r1", "ct": r1, "v": [b64(b"one")]},
        {"sk": "r2", "ct": r2, "v": [b64(b"two")]},
    ]
    marker = doc["seenMarker"]
    assert isinstance(marker, str)
    base64.b64decode(marker, validate=True)  # standard base64

    # Nothing new in the range before the timeout: 304 with an empty body.
    again = {"prefix": "r", "timeout": 1, "seenMarker": marker}
    quiet = await raw(node, "SEARCH", path, "poll_range", body=json.dumps(again).encode())
    assert (quiet.status_code, quiet.content) == (304, b"")

    put = await raw(node, "PUT", path, "sort_key=r2", body=b"new", headers=((CT, r2),))
    assert put.status_code == 204
    again["timeout"] = 30
    changed = await raw(node, "SEARCH", path, "poll_range", body=json.dumps(again).encode())
    new_r2 = await token_of(node, pk, "r2")
    doc = json_of(changed)
    assert doc["items"] == [{"sk": "r2", "ct": new_r2, "v": [b64(b"new")]}]
    assert doc["seenMarker"] != marker

    # A marker of the zlib format of earlier versions: a clear 400, not a 500.
    old = base64.b64encode(zlib.compress(pack({"vector_clock": {}, "items": {}}))).decode()
    stale = await raw(
        node, "SEARCH", path, "poll_range", body=json.dumps({"seenMarker": old}).encode()
    )
    assert stale.status_code == 400
    error = error_of(stale)
    assert error["code"] == "InvalidRequest"
    assert "zlib" in error["message"]
    assert "without seenMarker" in error["message"]


# ---------------------------------------------------------------- refusals


@pytest.mark.anyio
async def test_authentication_refusals(node: K2VNode) -> None:
    path, query = f"/{node.bucket}/pk", "sort_key=s"
    bad_secret = await raw(node, "GET", path, query, key=(node.s3.key_id, "wrong"))
    assert bad_secret.status_code == 403
    doc = error_of(bad_secret)
    assert doc["code"] == "SignatureDoesNotMatch"
    assert (doc["region"], doc["path"]) == (node.s3.region, path)
    wrong_service = await raw(node, "GET", path, query, service="s3")
    assert wrong_service.status_code == 400
    assert error_of(wrong_service)["code"] == "AuthorizationHeaderMalformed"
    wrong_region = await raw(node, "GET", path, query, region="elsewhere")
    assert wrong_region.status_code == 400
    assert error_of(wrong_region)["code"] == "AuthorizationHeaderMalformed"
    unsigned = await raw(node, "GET", path, query, sign=False)
    assert unsigned.status_code == 403
    assert error_of(unsigned)["code"] == "AccessDenied"
    unknown_key = await raw(node, "GET", path, query, key=("GK" + "0" * 24, "secret"))
    assert unknown_key.status_code == 403
    assert error_of(unknown_key)["code"] == "InvalidAccessKeyId"


@pytest.mark.anyio
async def test_bucket_and_permission_refusals(
    node: K2VNode, reader: tuple[str, str], stranger: tuple[str, str], pk: str
) -> None:
    async with node.client(bucket="no-such-bucket") as lost:
        with pytest.raises(K2VError) as info:
            await lost.read_item(pk, "s")
        assert (info.value.code, info.value.status) == ("NoSuchBucket", 404)
    async with node.client(key=stranger) as outsider:
        with pytest.raises(K2VError) as info:
            await outsider.read_item(pk, "s")
        assert (info.value.code, info.value.status) == ("AccessDenied", 403)
    async with node.client(key=reader) as read_only, node.client() as owner:
        await owner.insert_item(pk, "s", b"mine")
        readable = await read_only.read_item(pk, "s")
        assert readable is not None
        assert readable.values == (b"mine",)
        await read_only.read_index(prefix=pk)
        assert await read_only.poll_range(pk, timeout_s=1) is not None  # a read
        for write in (
            read_only.insert_item(pk, "s", b"theirs", readable.causality_token),
            read_only.delete_item(pk, "s", readable.causality_token),
            read_only.insert_batch([InsertBatchItem(pk, "s", None, b"x")]),
            read_only.delete_batch([DeleteBatchQuery(pk)]),
        ):
            with pytest.raises(K2VError) as info:
                await write
            assert (info.value.code, info.value.status) == ("AccessDenied", 403)
        unchanged = await owner.read_item(pk, "s")
        assert unchanged is not None
        assert unchanged.values == (b"mine",)


@pytest.mark.anyio
async def test_bad_input_is_refused_and_nothing_is_lost(
    node: K2VNode, k2v: K2VClient, pk: str
) -> None:
    path = item_path(node, pk)
    await k2v.insert_item(pk, "keep", b"precious")

    async def kept() -> None:
        item = await k2v.read_item(pk, "keep")
        assert item is not None
        assert item.values == (b"precious",)

    bad_token = await raw(
        node, "PUT", path, "sort_key=keep", body=b"lost", headers=((CT, "not-a-token"),)
    )
    assert bad_token.status_code == 400
    assert error_of(bad_token)["code"] == "CausalityToken"
    bad_poll = await raw(node, "GET", path, "sort_key=keep&causality_token=%21%21")
    assert bad_poll.status_code == 400
    assert error_of(bad_poll)["code"] == "CausalityToken"
    await kept()

    # A body that does not match its signed sha256.
    mismatch = await raw(
        node,
        "PUT",
        path,
        "sort_key=keep",
        body=b"tampered",
        payload_hash=hashlib.sha256(b"x").hexdigest(),
    )
    assert mismatch.status_code == 400
    assert error_of(mismatch)["code"] == "XAmzContentSHA256Mismatch"
    await kept()

    # An InsertBatch with one bad item writes nothing, not even the good ones before it.
    batch = json.dumps(
        [
            {"pk": pk, "sk": "keep", "ct": None, "v": "bG9zdA=="},
            {"pk": pk, "sk": "new", "ct": None, "v": "not base64!"},
        ]
    ).encode()
    bad_batch = await raw(node, "POST", f"/{node.bucket}", body=batch)
    assert bad_batch.status_code == 400
    assert error_of(bad_batch)["code"] == "InvalidBase64"
    bad_ct = json.dumps([{"pk": pk, "sk": "keep", "ct": "??", "v": "bG9zdA=="}]).encode()
    refused = await raw(node, "POST", f"/{node.bucket}", body=bad_ct)
    assert error_of(refused)["code"] == "CausalityToken"
    not_json = await raw(node, "POST", f"/{node.bucket}", body=b"[{")
    assert not_json.status_code == 400
    assert error_of(not_json)["code"] == "InvalidRequest"
    assert await k2v.read_item(pk, "new") is None
    await kept()

    # Too large a value.
    with pytest.raises(K2VError) as info:
        await k2v.insert_item(pk, "keep", b"x" * (MAX_VALUE_BYTES + 1))
    assert (info.value.code, info.value.status) == ("EntityTooLarge", 413)
    await kept()

    # Malformed requests.
    no_sort_key = await raw(node, "PUT", path, "", body=b"x")
    assert no_sort_key.status_code == 400
    assert error_of(no_sort_key)["code"] == "InvalidRequest"
    patch = await raw(node, "PATCH", path, "sort_key=keep")
    assert patch.status_code == 501
    assert error_of(patch)["code"] == "NotImplemented"
    bad_start = await raw(
        node,
        "SEARCH",
        f"/{node.bucket}",
        body=json.dumps([{"partitionKey": pk, "prefix": "a", "start": "b"}]).encode(),
    )
    assert bad_start.status_code == 400
    single_with_range = await raw(
        node,
        "POST",
        f"/{node.bucket}",
        "search",
        body=json.dumps(
            [{"partitionKey": pk, "singleItem": True, "start": "keep", "limit": 3}]
        ).encode(),
    )
    assert single_with_range.status_code == 400
    await kept()


@pytest.fixture(scope="module")
def cors_bucket(node: K2VNode) -> str:
    """A bucket with a global name (made with the CLI) whose CORS rules (set through S3)
    allow GET and PUT from https://app.example."""
    name = f"k2v-cors-{uuid.uuid4().hex[:8]}"
    cli_json(node.config, "bucket", "create", name)
    cli_json(
        node.config, "bucket", "allow", "--read", "--write", "--owner", name,
        "--key", node.s3.key_id,
    )  # fmt: skip
    s3 = node.s3.client()
    rule = {
        "AllowedOrigins": ["https://app.example"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["X-Garage-Causality-Token"],
    }
    s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [rule]})
    return name


@pytest.mark.anyio
async def test_cors(node: K2VNode, cors_bucket: str) -> None:
    origin = ("origin", "https://app.example")
    preflight = (origin, ("access-control-request-method", "PUT"))
    # Preflights are unauthenticated. A global bucket name answers from its rules...
    allowed = await raw(node, "OPTIONS", f"/{cors_bucket}/pk", headers=preflight, sign=False)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    # ...and refuses without a matching rule (the quick start's bucket has none).
    closed = await raw(node, "OPTIONS", f"/{node.bucket}/pk", headers=preflight, sign=False)
    assert closed.status_code == 403
    assert error_of(closed)["code"] == "AccessForbidden"
    # Another name may be a key's local alias, which cannot be resolved without a key.
    maybe = await raw(node, "OPTIONS", "/maybe-local/pk", headers=preflight, sign=False)
    assert maybe.status_code == 200
    assert maybe.headers["access-control-allow-origin"] == "*"
    # An actual GET from the page gets the rule's headers with its answer.
    async with node.client(bucket=cors_bucket) as client:
        await client.insert_item("pk", "sk", b"for the browser")
    got = await raw(node, "GET", f"/{cors_bucket}/pk", "sort_key=sk", headers=(origin,))
    assert got.status_code == 200
    assert got.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-garage-causality-token" in got.headers["access-control-expose-headers"].lower()
    other = await raw(node, "GET", f"/{cors_bucket}/pk", "sort_key=sk")
    assert "access-control-allow-origin" not in other.headers


def test_client_runs_on_asyncio(node: K2VNode, pk: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with node.client() as client:
            await client.insert_item(pk, "asyncio", b"works")
            item = await client.read_item(pk, "asyncio")
            assert item is not None
            timed_out = await client.poll_item(pk, "asyncio", item.causality_token, timeout_s=1)
            return item, timed_out

    item, timed_out = anyio.run(scenario, backend="asyncio")
    assert item.values == (b"works",)
    assert timed_out is None


README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.anyio
async def test_the_readme_example_runs(node: K2VNode) -> None:
    """The README's K2V example, run as written against a node."""
    readme = await anyio.Path(README).read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "k2v_example" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md[k2v]", "exec"), namespace)
    await namespace["k2v_example"](node.endpoint, node.s3.key_id, node.s3.secret, node.bucket)
    async with node.client() as k2v:
        inbox = await k2v.read_item("mailbox", "inbox")
    assert inbox is not None
    assert inbox.values == (b"world",)

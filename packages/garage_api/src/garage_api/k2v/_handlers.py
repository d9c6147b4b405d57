"""The K2V endpoints: items, batches, the index and the polls.

Garage: src/api/k2v/{item.rs, batch.rs, index.rs} (design §10.11, k2v-spec). Each handler
takes a :class:`~garage_api.k2v._api.K2VCtx` (the node, the request, the routed endpoint
and the resolved bucket) and returns a :class:`~garage_api.http.Response`, or raises a
:class:`~garage_api.k2v.K2VError`.

- Reads go straight to the tables with a read quorum: ``k2v_item`` for items,
  ``k2v_index_counter_v2`` for the index (per partition key, the max over the storage
  nodes of the live layout, as every replica counts the same items).
- Writes go through ``garage.k2v_rpc``, which sends each write to one storage node of the
  partition: that node stamps it with its own clock (the dotted version vectors need it)
  and then writes it to a quorum.
- Polls wait in ``garage.k2v_rpc`` on the storage nodes; a timeout is ``304``.

Sizes: a value lives in the metadata db and travels whole in RPC messages (16 MiB at most,
``garage_rpc.net.DEFAULT_MAX_MESSAGE_SIZE``) together with its concurrent siblings, so a
value is at most :data:`MAX_VALUE_BYTES`; JSON bodies are bounded as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeVar

import anyio

from garage_api.http import Response
from garage_model.k2v import (
    BYTES,
    CONFLICTS,
    ENTRIES,
    RANGE_PAGE_SIZE,
    VALUES,
    CausalContext,
    K2VItem,
    K2VItemFilter,
    K2VItemPartition,
    PollRange,
    read_range,
)
from garage_model.k2v import read_index as read_index_page
from garage_table.schema import StringKey

from ._errors import JSON_CONTENT_TYPE, K2VError
from ._json import (
    DeleteBatchQuery,
    DeleteBatchResult,
    InsertBatchItem,
    ItemValues,
    PartitionKeyCounts,
    PollRangeQuery,
    PollRangeResult,
    ReadBatchQuery,
    ReadBatchResult,
    ReadIndexResult,
    ReturnFormat,
    encode_values,
    parse_accept,
)
from ._router import K2VOperation, clamp_poll_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._api import K2VCtx

__all__ = [
    "HANDLERS",
    "MAX_BATCH_BODY_BYTES",
    "MAX_QUERY_BODY_BYTES",
    "MAX_VALUE_BYTES",
    "item_response",
]

Q = TypeVar("Q")
R = TypeVar("R")

#: The largest value (InsertItem body, or one value of an InsertBatch): a quarter of the
#: RPC message limit, leaving room for a few concurrent siblings in the same item.
MAX_VALUE_BYTES: Final = 4 * 1024 * 1024
#: The largest InsertBatch body: base64 makes 4/3 of the values, and the batch's items
#: travel to a node set in one message, which must stay under the 16 MiB RPC limit.
MAX_BATCH_BODY_BYTES: Final = 12 * 1024 * 1024
#: The largest ReadBatch, DeleteBatch or PollRange body (searches and ranges only).
MAX_QUERY_BODY_BYTES: Final = 1024 * 1024

_CT_HEADER: Final = "x-garage-causality-token"
_OCTET_STREAM: Final = "application/octet-stream"


# ---------------------------------------------------------------- helpers


def _parse_token(token: str) -> CausalContext:
    """A client's causality token (the model raises InvalidCausalityToken, mapped to 400
    ``CausalityToken`` by the server)."""
    return CausalContext.parse(token)


def _json_response(body: bytes, status: int = 200) -> Response:
    return Response(status, [("content-type", JSON_CONTENT_TYPE)], body)


def _values(item: K2VItem) -> ItemValues:
    return ItemValues(item.sk, item.causal_context().serialize(), tuple(item.values()))


def item_response(fmt: ReturnFormat, item: K2VItem | None) -> Response:
    """ReadItem's and PollItem's answer for ``item`` in the format the client accepts.

    JSON: ``200`` with the array of values. Binary: ``200`` with the single value,
    ``204`` for a single tombstone, ``409`` (empty, with the token) for concurrent values.
    Either: binary for a single value, JSON otherwise. Always with the causality token.

    Raises:
        K2VError: ``404 NoSuchKey`` when there is no item or it has no value at all.
    """
    values = [] if item is None else item.values()
    if item is None or not values:
        raise K2VError.no_such_key()
    token = item.causal_context().serialize()
    if fmt is ReturnFormat.BINARY and len(values) > 1:
        return Response(409, [(_CT_HEADER, token)])
    if fmt is not ReturnFormat.JSON and len(values) == 1:
        headers = [(_CT_HEADER, token), ("content-type", _OCTET_STREAM)]
        value = values[0]
        if value is None:
            return Response(204, headers)
        return Response(200, headers, value)
    return Response(
        200, [(_CT_HEADER, token), ("content-type", JSON_CONTENT_TYPE)], encode_values(values)
    )


def _header_token(ctx: K2VCtx) -> CausalContext | None:
    token = ctx.request.header(_CT_HEADER)
    return None if token is None else _parse_token(token)


async def _gather(
    run_one: Callable[[K2VCtx, Q], Awaitable[R]], ctx: K2VCtx, queries: Sequence[Q]
) -> list[R]:
    """Runs ``run_one`` on every query concurrently (Garage: ``join_all``); the results in
    query order. The first failure fails the request, as a plain exception (not a group)
    so that the server maps it to its error answer."""
    results: dict[int, R] = {}

    async def run(i: int, query: Q) -> None:
        results[i] = await run_one(ctx, query)

    try:
        async with anyio.create_task_group() as tg:
            for i, query in enumerate(queries):
                tg.start_soon(run, i, query)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if all(isinstance(exc, Exception) for exc in leaves):
            raise leaves[0] from None
        raise
    return [results[i] for i in range(len(queries))]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


# ---------------------------------------------------------------- single items


async def read_item(ctx: K2VCtx) -> Response:
    """ReadItem: ``GET /<bucket>/<pk>?sort_key=``."""
    fmt = parse_accept(ctx.request.header("accept"))
    pk, sk = ctx.endpoint.require_item()
    partition = K2VItemPartition(ctx.bucket_id, pk)
    item = await ctx.garage.k2v_item_table.table.get(partition, StringKey(sk))
    return item_response(fmt, item)


async def poll_item(ctx: K2VCtx) -> Response:
    """PollItem: ``GET /<bucket>/<pk>?sort_key=&causality_token=&timeout=``; ``304`` when
    nothing newer than the token was written before the timeout."""
    fmt = parse_accept(ctx.request.header("accept"))
    pk, sk = ctx.endpoint.require_item()
    assert ctx.endpoint.causality_token is not None
    context = _parse_token(ctx.endpoint.causality_token)
    timeout_ms = clamp_poll_timeout(ctx.endpoint.timeout_s) * 1000
    item = await ctx.garage.k2v_rpc.poll_item(ctx.bucket_id, pk, sk, context, timeout_ms)
    if item is None:
        return Response(304)
    return item_response(fmt, item)


async def insert_item(ctx: K2VCtx) -> Response:
    """InsertItem: ``PUT /<bucket>/<pk>?sort_key=`` with the value as the body."""
    pk, sk = ctx.endpoint.require_item()
    context = _header_token(ctx)
    value = await ctx.read_body(MAX_VALUE_BYTES, "the value")
    await ctx.garage.k2v_rpc.insert(ctx.bucket_id, pk, sk, context, value)
    return Response(204)


async def delete_item(ctx: K2VCtx) -> Response:
    """DeleteItem: ``DELETE /<bucket>/<pk>?sort_key=``: a deletion superseding the values
    of the token (without one, the deletion is concurrent with every value)."""
    pk, sk = ctx.endpoint.require_item()
    context = _header_token(ctx)
    await ctx.garage.k2v_rpc.insert(ctx.bucket_id, pk, sk, context, None)
    return Response(204)


# ---------------------------------------------------------------- index


async def read_index(ctx: K2VCtx) -> Response:
    """ReadIndex: ``GET /<bucket>?prefix=&start=&end=&limit=&reverse=``: the partition keys
    with items, and their counters (eventually consistent)."""
    ep = ctx.endpoint
    reverse = bool(ep.reverse)
    page = await read_index_page(
        ctx.garage, ctx.bucket_id, ep.prefix, ep.start, ep.end, ep.limit, reverse
    )
    rows = tuple(
        PartitionKeyCounts(pk, c[ENTRIES], c[CONFLICTS], c[VALUES], c[BYTES])
        for pk, c in page.partition_keys
    )
    result = ReadIndexResult(
        ep.prefix, ep.start, ep.end, ep.limit, reverse, rows, page.more, page.next_start
    )
    return _json_response(result.to_json())


# ---------------------------------------------------------------- batches


async def insert_batch(ctx: K2VCtx) -> Response:
    """InsertBatch: ``POST /<bucket>`` with ``[{pk, sk, ct, v}]`` (``v`` null deletes)."""
    body = await ctx.read_body(MAX_BATCH_BODY_BYTES, "the InsertBatch body")
    items = InsertBatchItem.list_from_json(body)
    writes: list[tuple[str, str, CausalContext | None, bytes | None]] = []
    for item in items:
        if item.value is not None and len(item.value) > MAX_VALUE_BYTES:
            raise K2VError.too_large(f"the value of {item.sort_key!r}", MAX_VALUE_BYTES)
        token = None if item.causality_token is None else _parse_token(item.causality_token)
        writes.append((item.partition_key, item.sort_key, token, item.value))
    if writes:
        await ctx.garage.k2v_rpc.insert_batch(ctx.bucket_id, writes)
    return Response(204)


async def _read_batch_query(ctx: K2VCtx, query: ReadBatchQuery) -> ReadBatchResult:
    partition = K2VItemPartition(ctx.bucket_id, query.partition_key)
    filter = K2VItemFilter(
        exclude_only_tombstones=not query.tombstones, conflicts_only=query.conflicts_only
    )
    if query.single_item:
        ranged = (query.prefix, query.end, query.limit)
        if any(p is not None for p in ranged) or query.reverse:
            raise K2VError.bad_request(
                "Batch query parameters 'prefix', 'end', 'limit' and 'reverse' must not be "
                "set when singleItem is true."
            )
        if query.start is None:
            raise K2VError.bad_request("start should be specified if single_item is set")
        item = await ctx.garage.k2v_item_table.table.get(partition, StringKey(query.start))
        found = () if item is None or not filter.matches(item) else (_values(item),)
        return ReadBatchResult(query, found)
    page = await read_range(
        ctx.garage.k2v_item_table.table,
        partition,
        prefix=query.prefix,
        start=query.start,
        end=query.end,
        limit=query.limit,
        filter=filter,
        reverse=query.reverse,
    )
    items = tuple(_values(i) for i in page.entries)
    return ReadBatchResult(query, items, page.more, page.next_start)


async def read_batch(ctx: K2VCtx) -> Response:
    """ReadBatch: ``POST /<bucket>?search`` or ``SEARCH /<bucket>`` with searches."""
    body = await ctx.read_body(MAX_QUERY_BODY_BYTES, "the ReadBatch body")
    queries = ReadBatchQuery.list_from_json(body)
    results = await _gather(_read_batch_query, ctx, queries)
    return _json_response(ReadBatchResult.list_to_json(results))


async def _delete_batch_query(ctx: K2VCtx, query: DeleteBatchQuery) -> DeleteBatchResult:
    partition = K2VItemPartition(ctx.bucket_id, query.partition_key)
    filter = K2VItemFilter(exclude_only_tombstones=True)
    rpc = ctx.garage.k2v_rpc
    if query.single_item:
        if query.prefix is not None or query.end is not None:
            raise K2VError.bad_request(
                "Batch query parameters 'prefix' and 'end' must not be set when singleItem is true."
            )
        if query.start is None:
            raise K2VError.bad_request("start should be specified if single_item is set")
        item = await ctx.garage.k2v_item_table.table.get(partition, StringKey(query.start))
        if item is None or not filter.matches(item):
            return DeleteBatchResult(query, 0)
        await rpc.insert(ctx.bucket_id, query.partition_key, item.sk, item.causal_context(), None)
        return DeleteBatchResult(query, 1)
    page = await read_range(
        ctx.garage.k2v_item_table.table,
        partition,
        prefix=query.prefix,
        start=query.start,
        end=query.end,
        filter=filter,
    )
    # Each deletion carries the context of what was read: it supersedes exactly those
    # values, and a value written meanwhile survives (k2v-spec, DeleteBatch).
    deletions: list[tuple[str, str, CausalContext | None, bytes | None]] = [
        (i.partition.partition_key, i.sk, i.causal_context(), None) for i in page.entries
    ]
    # In pages, so that one InsertManyItems message stays small.
    for first in range(0, len(deletions), RANGE_PAGE_SIZE):
        await rpc.insert_batch(ctx.bucket_id, deletions[first : first + RANGE_PAGE_SIZE])
    return DeleteBatchResult(query, len(deletions))


async def delete_batch(ctx: K2VCtx) -> Response:
    """DeleteBatch: ``POST /<bucket>?delete`` with ranges; answers the count per range."""
    body = await ctx.read_body(MAX_QUERY_BODY_BYTES, "the DeleteBatch body")
    queries = DeleteBatchQuery.list_from_json(body)
    results = await _gather(_delete_batch_query, ctx, queries)
    return _json_response(DeleteBatchResult.list_to_json(results))


# ---------------------------------------------------------------- PollRange


async def poll_range(ctx: K2VCtx) -> Response:
    """PollRange: ``POST /<bucket>/<pk>?poll_range`` with ``{prefix, start, end, timeout,
    seenMarker}``: the items of the range changed since the marker, or ``304``."""
    assert ctx.endpoint.partition_key is not None
    body = await ctx.read_body(MAX_QUERY_BODY_BYTES, "the PollRange body")
    query = PollRangeQuery.from_json(body)
    prefix, start = query.prefix, query.start
    if prefix is not None and start is not None and not start.startswith(prefix):
        raise K2VError.bad_request(
            f"Start key {query.start!r} does not start with prefix {query.prefix!r}"
        )
    timeout_ms = clamp_poll_timeout(query.timeout_s) * 1000
    partition = K2VItemPartition(ctx.bucket_id, ctx.endpoint.partition_key)
    range_ = PollRange(partition, query.prefix, query.start, query.end)
    answer = await ctx.garage.k2v_rpc.poll_range(range_, query.seen_marker, timeout_ms)
    if answer is None:
        return Response(304)
    items, marker = answer
    values = tuple(_values(items[sk]) for sk in sorted(items))
    return _json_response(PollRangeResult(values, marker).to_json())


HANDLERS: Final[dict[K2VOperation, Callable[[K2VCtx], Awaitable[Response]]]] = {
    K2VOperation.DELETE_BATCH: delete_batch,
    K2VOperation.DELETE_ITEM: delete_item,
    K2VOperation.INSERT_BATCH: insert_batch,
    K2VOperation.INSERT_ITEM: insert_item,
    K2VOperation.POLL_ITEM: poll_item,
    K2VOperation.POLL_RANGE: poll_range,
    K2VOperation.READ_BATCH: read_batch,
    K2VOperation.READ_INDEX: read_index,
    K2VOperation.READ_ITEM: read_item,
}

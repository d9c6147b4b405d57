"""The K2V RPC: routed inserts, PollItem and PollRange (Garage: src/model/k2v/rpc.rs).

Theory of operation (design §8.6)
---------------------------------
**Inserts are routed.** A value's time comes from the clock of the node that applies the
write, and each node appends only to its own entry of an item; if every API node applied
writes itself, items would carry one entry per API node ever used. So the API node sends
``InsertItem`` to *one* storage node of the partition (``try_call_many`` with quorum 1, in
preference order: ourself if we store it, then our zone, then the fastest). That node
applies the write locally — under a lock, in one transaction, with
``ts = max(persisted k2v clock, now)`` — and then writes the resulting item to a write
quorum with a normal table insert. ``InsertManyItems`` does the same for a batch; the API
node sends one per distinct set of storage nodes.

**PollItem** is sent to every storage node of the partition at once; each subscribes to
the item, reads it, and answers as soon as the item's causal context is newer than the
client's (or with nothing when ``timeout_msec`` passes). The API node answers with the
merge of a read quorum of answers, or None (HTTP 304) at the timeout.

**PollRange** is sent to every storage node at once too. Each answers with the items of the
range that are new to the seen marker: at once when there is no marker (the initial view),
else as soon as there is at least one. The API node waits for every answer, but no longer
than 200 ms after a read quorum answered (more answers mean a tighter marker), merges
them, and advances the marker (see ``_seen``). With a marker and nothing new by the
timeout, the answer is None (HTTP 304).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_model.helper import BadRequestError
from garage_rpc.net import PRIO_NORMAL, Endpoint
from garage_rpc.rpc_helper import QuorumError, RequestStrategy
from garage_table import NoLayoutError
from garage_table.schema import StringKey, tree_key
from garage_util.clock import now_msec
from garage_util.data import Uuid

from ._causality import CausalContext, make_node_id
from ._item_table import DvvsValue, K2VItem, K2VItemPartition, K2VItemSchema
from ._seen import RangeSeenMarker
from ._sub import PollKey, PollRange, SubscriptionManager

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.abc import ByteReceiveStream
    from anyio.streams.memory import MemoryObjectSendStream

    from garage_rpc.net import AttachedStream, NetApp, NodeId
    from garage_rpc.rpc_helper import RpcHelper
    from garage_table import ReplicatedTable

__all__ = [
    "INSERT_ITEM",
    "INSERT_MANY_ITEMS",
    "POLL_ITEM",
    "POLL_RANGE",
    "POLL_RANGE_EXTRA_DELAY_S",
    "InsertManyItems",
    "InsertedItem",
    "K2VRpcHandler",
    "PollItem",
    "PollItemResponse",
    "PollRangeRequest",
    "PollRangeResponse",
]

logger = logging.getLogger(__name__)

#: After a read quorum of PollRange answers, how long to wait for the others (Garage's
#: ``POLL_RANGE_EXTRA_DELAY``): a late answer still tightens the seen marker.
POLL_RANGE_EXTRA_DELAY_S: Final = 0.2

_PATH: Final = "garage_model/k2v/Rpc"
_DEFAULT_STRATEGY: Final = RequestStrategy()
#: PollItem/PollRange calls have no timeout of their own: the poll's timeout bounds them.
_POLL_STRATEGY: Final = RequestStrategy(timeout_s=math.inf, send_all_at_once=True)


@dataclass(frozen=True, slots=True)
class InsertedItem:
    """A write to apply on a storage node: the item, what the writer saw, the value."""

    partition: K2VItemPartition
    sort_key: str
    causal_context: CausalContext | None
    value: DvvsValue


@dataclass(frozen=True, slots=True)
class InsertManyItems:
    """Several writes, all stored by the node that receives them."""

    items: tuple[InsertedItem, ...]


@dataclass(frozen=True, slots=True)
class PollItem:
    """Answer once the item is newer than ``causal_context``, or after ``timeout_msec``."""

    key: PollKey
    causal_context: CausalContext
    timeout_msec: int


@dataclass(frozen=True, slots=True)
class PollItemResponse:
    """The item (its table encoding), or None on timeout."""

    item: bytes | None


@dataclass(frozen=True, slots=True)
class PollRangeRequest:
    """Answer with the items of ``range`` new to the seen marker (see the module doc)."""

    range: PollRange
    seen_str: str | None
    timeout_msec: int


@dataclass(frozen=True, slots=True)
class PollRangeResponse:
    """The answering node and the new items it found (table encodings)."""

    node: Uuid
    items: tuple[bytes, ...]


INSERT_ITEM: Final = Endpoint(f"{_PATH}/InsertItem", InsertedItem, type(None))
INSERT_MANY_ITEMS: Final = Endpoint(f"{_PATH}/InsertManyItems", InsertManyItems, type(None))
POLL_ITEM: Final = Endpoint(f"{_PATH}/PollItem", PollItem, PollItemResponse)
POLL_RANGE: Final = Endpoint(f"{_PATH}/PollRange", PollRangeRequest, PollRangeResponse)


def _check_key(what: str, key: str) -> str:
    """Refuses keys the table cannot store (not encodable as UTF-8)."""
    try:
        key.encode()
    except UnicodeEncodeError:
        raise BadRequestError(f"invalid {what}: not valid unicode text") from None
    return key


def _check_timeout(timeout_ms: int) -> int:
    if timeout_ms < 0:
        raise BadRequestError(f"invalid poll timeout: {timeout_ms} ms")
    return timeout_ms


@final
class K2VRpcHandler:
    """K2V writes and polls on a node: the public calls the API uses, and the handlers of
    the K2V RPC (registered on ``netapp`` here).

    Args:
        item_table: the ``k2v_item`` table (its schema a :class:`K2VItemSchema`).
        netapp: the node's transport.
        rpc: the node's RPC helper.
        subscriptions: the node's subscriptions, fed by the item table's hook.
        strategy: timeout of insert requests (the node's RPC timeout).
        clock_ms: the wall clock in ms (values' times are above it).

    Raises:
        TypeError: the table's schema is not a :class:`K2VItemSchema`.
    """

    __slots__ = (
        "_clock_ms",
        "_insert_lock",
        "_netapp",
        "_node",
        "_rpc",
        "_schema",
        "_strategy",
        "_subs",
        "_table",
    )

    def __init__(
        self,
        item_table: ReplicatedTable[K2VItem],
        netapp: NetApp,
        rpc: RpcHelper,
        subscriptions: SubscriptionManager,
        *,
        strategy: RequestStrategy = _DEFAULT_STRATEGY,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        schema = item_table.data.schema
        if not isinstance(schema, K2VItemSchema):
            raise TypeError(f"K2VRpcHandler needs the k2v_item table, not {schema.TABLE_NAME}")
        self._schema = schema
        self._table = item_table
        self._netapp = netapp
        self._node = make_node_id(netapp.id)
        self._rpc = rpc
        self._subs = subscriptions
        self._strategy = strategy
        self._clock_ms = clock_ms
        # Not needed for correctness (each write is one transaction), but writes of this
        # node then never race for the db's write lock with the same clock reading.
        self._insert_lock = threading.Lock()
        netapp.endpoint(INSERT_ITEM, self._handle_insert)
        netapp.endpoint(INSERT_MANY_ITEMS, self._handle_insert_many)
        netapp.endpoint(POLL_ITEM, self._handle_poll_item)
        netapp.endpoint(POLL_RANGE, self._handle_poll_range)

    def __repr__(self) -> str:
        return f"<K2VRpcHandler node={self._node:016x}>"

    # ------------------------------------------------------------------ public interface

    async def insert(
        self,
        bucket_id: Uuid,
        partition_key: str,
        sort_key: str,
        causal_context: CausalContext | None,
        value: bytes | None,
    ) -> None:
        """Writes ``value`` (None: deletes) to an item, replacing the values the writer saw.

        Args:
            bucket_id: the bucket.
            partition_key: the item's partition key.
            sort_key: the item's sort key.
            causal_context: the context of the item as the client read it (from its
                causality token), or None for a write concurrent with every value present.
            value: the new value, or None for a deletion (a tombstone value).

        Raises:
            BadRequestError: a key is not valid unicode.
            NoLayoutError: the cluster has no layout yet.
            QuorumError: no storage node of the partition could apply the write.
        """
        item = _inserted(bucket_id, partition_key, sort_key, causal_context, value)
        who = self._storage_nodes(item.partition)

        async def call(node: Uuid) -> None:
            await self._netapp.call(node, INSERT_ITEM, item, prio=PRIO_NORMAL)

        await self._rpc.try_call_many(call, who, quorum=1, strategy=self._strategy)

    async def insert_batch(
        self,
        bucket_id: Uuid,
        items: Sequence[tuple[str, str, CausalContext | None, bytes | None]],
    ) -> None:
        """Writes several items of a bucket: ``(partition key, sort key, context, value)``
        each, as :meth:`insert` (one request per set of storage nodes, sent concurrently).

        Raises:
            BadRequestError, NoLayoutError, QuorumError: as :meth:`insert` (the first
            failing group's error; the other groups may have been written).
        """
        groups: dict[tuple[Uuid, ...], list[InsertedItem]] = {}
        for pk, sk, cc, value in items:
            item = _inserted(bucket_id, pk, sk, cc, value)
            groups.setdefault(tuple(self._storage_nodes(item.partition)), []).append(item)
        logger.debug("K2V insert_batch: %d requests for %d items", len(groups), len(items))
        errors: list[Exception] = []

        async def send(nodes: tuple[Uuid, ...], batch: InsertManyItems) -> None:
            async def call(node: Uuid) -> None:
                await self._netapp.call(node, INSERT_MANY_ITEMS, batch, prio=PRIO_NORMAL)

            try:
                await self._rpc.try_call_many(call, nodes, quorum=1, strategy=self._strategy)
            except Exception as exc:  # reported after the other groups are done
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for nodes, group in groups.items():
                tg.start_soon(send, nodes, InsertManyItems(tuple(group)))
        if errors:
            raise errors[0]

    async def poll_item(
        self,
        bucket_id: Uuid,
        partition_key: str,
        sort_key: str,
        causal_context: CausalContext,
        timeout_ms: int,
    ) -> K2VItem | None:
        """Waits until the item changes past ``causal_context`` (PollItem).

        Returns:
            The item (merged from a read quorum) once newer than ``causal_context``, or
            None when ``timeout_ms`` passed first.

        Raises:
            BadRequestError: a key is not valid unicode, or the timeout is negative.
            NoLayoutError: the cluster has no layout yet.
            QuorumError: too many storage nodes failed to answer.
        """
        key = PollKey(
            K2VItemPartition(bucket_id, _check_key("partition key", partition_key)),
            _check_key("sort key", sort_key),
        )
        msg = PollItem(key, causal_context, _check_timeout(timeout_ms))
        nodes = self._storage_nodes(key.partition)

        async def call(node: Uuid) -> PollItemResponse:
            return await self._netapp.call(node, POLL_ITEM, msg, prio=PRIO_NORMAL)

        with anyio.move_on_after(timeout_ms / 1000):
            answers = await self._rpc.try_call_many(
                call,
                nodes,
                quorum=self._table.data.replication.read_quorum(),
                strategy=_POLL_STRATEGY,
            )
            merged: K2VItem | None = None
            for answer in answers:
                if answer.item is not None:
                    item = K2VItem.decode(answer.item)
                    merged = item if merged is None else merged.merge(item)
            return merged
        return None

    async def poll_range(
        self, range: PollRange, seen_str: str | None, timeout_ms: int
    ) -> tuple[dict[str, K2VItem], str] | None:
        """Waits for items of ``range`` that are new to the seen marker (PollRange).

        Args:
            range: the partition and the range of sort keys.
            seen_str: the seen marker of the previous poll, or None for the first one
                (answered at once with every item of the range).
            timeout_ms: how long to wait for something new.

        Returns:
            ``(new items by sort key, in key order; the new seen marker)``, or None when a
            marker was given and nothing new came before the timeout.

        Raises:
            InvalidSeenMarker: ``seen_str`` is not a marker made by this cluster.
            BadRequestError: a key is not valid unicode, or the timeout is negative.
            NoLayoutError: the cluster has no layout yet.
            QuorumError: too many storage nodes failed to answer.
        """
        _check_key("partition key", range.partition.partition_key)
        for what, key in (("prefix", range.prefix), ("start", range.start), ("end", range.end)):
            if key is not None:
                _check_key(what, key)
        seen = RangeSeenMarker() if seen_str is None else RangeSeenMarker.decode(seen_str)
        seen = seen.restrict(range)
        nodes = self._storage_nodes(range.partition)
        quorum = self._table.data.replication.read_quorum()
        msg = PollRangeRequest(range, seen_str, _check_timeout(timeout_ms))
        answers: list[PollRangeResponse] = []
        errors: list[tuple[Uuid, str]] = []
        send, receive = anyio.create_memory_object_stream[tuple[Uuid, PollRangeResponse | str]](
            len(nodes)
        )
        with anyio.move_on_after(timeout_ms / 1000) as scope:
            async with anyio.create_task_group() as tg, receive:
                with send:
                    for node in nodes:
                        tg.start_soon(self._poll_range_call, node, msg, send.clone())
                async for node, answer in receive:
                    if isinstance(answer, str):
                        errors.append((node, answer))
                        continue
                    answers.append(answer)
                    if len(answers) >= quorum:
                        extra = anyio.current_time() + POLL_RANGE_EXTRA_DELAY_S
                        scope.deadline = min(scope.deadline, extra)
        if len(errors) > len(nodes) - quorum:
            raise QuorumError(quorum, 1, len(answers), len(nodes), errors)
        new_items: dict[str, K2VItem] = {}
        for answer in answers:
            items = [K2VItem.decode(raw) for raw in answer.items]
            seen = seen.mark_seen_node_items(make_node_id(answer.node), items)
            for item in items:
                prev = new_items.get(item.sk)
                new_items[item.sk] = item if prev is None else prev.merge(item)
        if not new_items and seen_str is not None:
            return None
        return {sk: new_items[sk] for sk in sorted(new_items)}, seen.encode()

    async def _poll_range_call(
        self,
        node: Uuid,
        msg: PollRangeRequest,
        send: MemoryObjectSendStream[tuple[Uuid, PollRangeResponse | str]],
    ) -> None:
        with send:
            answer: PollRangeResponse | str
            try:
                answer = await self._netapp.call(node, POLL_RANGE, msg, prio=PRIO_NORMAL)
            except Exception as exc:
                answer = f"{type(exc).__name__}: {exc}"
            # The buffer holds one answer per node: this never blocks.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                send.send_nowait((node, answer))

    def _storage_nodes(self, partition: K2VItemPartition) -> list[Uuid]:
        nodes = sorted(self._table.data.replication.storage_nodes(partition.hash()))
        if not nodes:
            raise NoLayoutError(
                "k2v_item: no node stores this partition yet; the cluster needs a layout "
                "(garage layout assign, then apply)"
            )
        return nodes

    # ------------------------------------------------------------------ local work

    def local_insert(self, items: Sequence[InsertedItem]) -> list[K2VItem]:
        """Applies writes on this node with its own clock (blocking: run it in a thread).

        Returns:
            The new state of each item.
        """
        data = self._table.data
        out: list[K2VItem] = []
        with self._insert_lock:
            for ins in items:
                ts = max(self._schema.local_timestamp(), self._clock_ms())

                def apply(old: K2VItem | None, ins: InsertedItem = ins, ts: int = ts) -> K2VItem:
                    base = old if old is not None else K2VItem(ins.partition, ins.sort_key)
                    new, _t = base.update(self._node, ins.causal_context, ins.value, ts)
                    return new

                new = data.update_entry_with(ins.partition, StringKey(ins.sort_key), apply)
                if new is not None:
                    out.append(new)
        return out

    def read_local(self, partition: K2VItemPartition, sort_key: str) -> K2VItem:
        """This node's copy of an item (an empty item if absent). Blocking."""
        raw = self._table.data.read_entry(partition, StringKey(sort_key))
        return K2VItem(partition, sort_key) if raw is None else self._table.data.decode_entry(raw)

    def read_range_local(self, range: PollRange, seen: RangeSeenMarker) -> list[K2VItem]:
        """The items of ``range`` on this node that are new to ``seen``. Blocking."""
        data = self._table.data
        prefix = range.partition.hash()
        first_key = range.first_key()
        first = (
            bytes(prefix) if first_key is None else tree_key(range.partition, StringKey(first_key))
        )
        after = prefix.increment()
        out: list[K2VItem] = []
        for _key, raw in data.store.range(first, None if after is None else bytes(after)):
            item = data.decode_entry(raw)
            if item.partition != range.partition:
                continue  # a partition hash collision: not ours
            if range.is_past(item.sk):
                break
            if range.matches_key(item.sk) and seen.is_new_item(item):
                out.append(item)
        return out

    # ------------------------------------------------------------------ handlers

    async def _handle_insert(
        self, msg: InsertedItem, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        await self._apply_and_propagate([msg])
        return None, None

    async def _handle_insert_many(
        self, msg: InsertManyItems, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[None, AttachedStream | None]:
        await self._apply_and_propagate(msg.items)
        return None, None

    async def _apply_and_propagate(self, items: Sequence[InsertedItem]) -> None:
        updated = await anyio.to_thread.run_sync(self.local_insert, items)
        if updated:
            await self._table.table.insert_many(updated)

    async def _handle_poll_item(
        self, msg: PollItem, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[PollItemResponse, AttachedStream | None]:
        with anyio.move_on_after(msg.timeout_msec / 1000):
            item = await self._wait_item(msg.key, msg.causal_context)
            return PollItemResponse(item.encode()), None
        return PollItemResponse(None), None

    async def _wait_item(self, key: PollKey, ct: CausalContext) -> K2VItem:
        with self._subs.subscribe_item(key) as sub:
            value = await anyio.to_thread.run_sync(self.read_local, key.partition, key.sort_key)
            while not value.causal_context().is_newer_than(ct):
                for changed in await sub.take():
                    value = value.merge(changed)
            return value

    async def _handle_poll_range(
        self, msg: PollRangeRequest, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[PollRangeResponse, AttachedStream | None]:
        items: list[K2VItem] = []
        with anyio.move_on_after(msg.timeout_msec / 1000):
            items = await self._wait_range(msg.range, msg.seen_str)
        return PollRangeResponse(self._netapp.id, tuple(i.encode() for i in items)), None

    async def _wait_range(self, range: PollRange, seen_str: str | None) -> list[K2VItem]:
        if seen_str is None:
            # No marker: the initial view of the range, at once (even if empty).
            return await anyio.to_thread.run_sync(self.read_range_local, range, RangeSeenMarker())
        seen = RangeSeenMarker.decode(seen_str)
        with self._subs.subscribe_partition(range.partition) as sub:
            new = await anyio.to_thread.run_sync(self.read_range_local, range, seen)
            while not new:
                new = [i for i in await sub.take() if range.matches(i) and seen.is_new_item(i)]
            return new


def _inserted(
    bucket_id: Uuid,
    partition_key: str,
    sort_key: str,
    causal_context: CausalContext | None,
    value: bytes | None,
) -> InsertedItem:
    partition = K2VItemPartition(bucket_id, _check_key("partition key", partition_key))
    return InsertedItem(
        partition, _check_key("sort key", sort_key), causal_context, DvvsValue(value)
    )

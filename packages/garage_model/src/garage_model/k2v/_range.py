"""Range reads over K2V tables (prefix, start, end, limit, reverse) and ReadIndex.

Garage: src/api/k2v/range.rs and index.rs. K2V selects items (ReadBatch, DeleteBatch) and
partition keys (ReadIndex) with the same parameters:

- ``prefix``: only sort keys starting with it;
- ``start``: the first key (inclusive), which must start with ``prefix``; in reverse
  order, the last key, the scan going down;
- ``end``: stop before this key (exclusive; in reverse order, stop at or below it);
- ``limit``: at most this many; if more remain, ``more`` is true and ``next_start`` is the
  key to start the next page from;
- ``reverse``: descending order.

:func:`read_range` reads pages of at most 1000 entries from the table (quorum reads) until
the range or the limit is exhausted. :func:`read_index` applies it to the counter table
``k2v_index_counter_v2`` of a bucket: one row per partition key, with the counts the storage
nodes report (the max over the current storage nodes, as for the bucket counters), leaving
out partition keys whose counts are all zero.

How to read the counters of one partition key directly::

    row = await garage.k2v_counter_table.table.get(UuidKey(bucket_id), StringKey(pk))
    counts = {} if row is None else row.filtered_values(garage.counter_nodes())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, final

from garage_model.bucket_table import UuidKey
from garage_model.helper import BadRequestError
from garage_model.index_counter import CounterFilter
from garage_table.schema import DeletedFilter, EnumerationOrder, StringKey, TableEntry

from ._item_table import BYTES, CONFLICTS, ENTRIES, VALUES

if TYPE_CHECKING:
    from garage_model.index_counter import CounterEntry
    from garage_table import ReplicatedTable, Table
    from garage_table.schema import PartitionKey
    from garage_util.data import Uuid

__all__ = [
    "RANGE_PAGE_SIZE",
    "K2VIndexPage",
    "K2VIndexSource",
    "RangePage",
    "key_after_prefix",
    "read_index",
    "read_range",
]

E = TypeVar("E", bound="TableEntry[Any, StringKey]")

#: Entries fetched per quorum read (Garage's): bounds the size of one RPC answer.
RANGE_PAGE_SIZE: Final = 1000

#: The last unicode code point, and the surrogates, which are not text (no UTF-8 form).
_MAX_CHAR: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)


def key_after_prefix(prefix: str) -> str | None:
    """The smallest key above every key starting with ``prefix`` (None if there is none:
    ``prefix`` is empty or made only of the last code point)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop())
        if code >= _MAX_CHAR:
            continue
        code += 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        chars.append(chr(code))
        return "".join(chars)
    return None


@final
@dataclass(frozen=True, slots=True)
class RangePage(Generic[E]):
    """A page of a range read.

    Attributes:
        entries: the entries, in the requested order.
        more: entries remain after the limit.
        next_start: when ``more``, the ``start`` of the next page (the next entry's key).
    """

    entries: list[E]
    more: bool = False
    next_start: str | None = None


async def read_range(
    table: Table[E],
    partition_key: PartitionKey,
    *,
    prefix: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
    filter: object | None = None,
    reverse: bool = False,
    page_size: int = RANGE_PAGE_SIZE,
) -> RangePage[E]:
    """Reads the entries of one partition selected as the module docstring says.

    Args:
        table: a table whose sort keys are :class:`StringKey` (``k2v_item`` with a
            :class:`~garage_model.k2v.K2VItemFilter`, or ``k2v_index_counter_v2``).
        partition_key: the partition to read.
        prefix, start, end, limit, reverse: the selection (see the module docstring).
        filter: the table's range filter, or None.
        page_size: the most entries asked of the replicas per quorum read (at least 2).

    Raises:
        BadRequestError: ``start`` does not start with ``prefix``, ``limit`` is negative,
            or a prefix with no upper bound is listed in reverse order.
        QuorumError: too few replicas answered.
    """
    if limit is not None and limit < 0:
        raise BadRequestError(f"invalid limit: {limit}")
    if page_size < 2:
        raise ValueError(f"page_size must be at least 2, got {page_size}")
    order = EnumerationOrder.REVERSE if reverse else EnumerationOrder.FORWARD
    skip_start = False
    if start is not None:
        if prefix is not None and not start.startswith(prefix):
            raise BadRequestError(f"start key {start!r} does not start with prefix {prefix!r}")
    elif prefix is not None and reverse:
        start = key_after_prefix(prefix)
        if start is None:
            raise BadRequestError(f"cannot list prefix {prefix!r} in reverse order")
        skip_start = True
    elif prefix is not None:
        start = prefix

    entries: list[E] = []
    while True:
        wanted = (
            RANGE_PAGE_SIZE if limit is None else min(RANGE_PAGE_SIZE, limit - len(entries) + 2)
        )
        page = await table.get_range(
            partition_key,
            None if start is None else StringKey(start),
            filter=filter,
            limit=wanted,
            order=order,
        )
        for entry in page:
            key = _key_of(entry)
            if skip_start and key == start:
                continue
            if prefix is not None and not key.startswith(prefix):
                return RangePage(entries)
            if end is not None and (key <= end if reverse else key >= end):
                return RangePage(entries)
            if limit is not None and len(entries) >= limit:
                return RangePage(entries, more=True, next_start=key)
            entries.append(entry)
        if len(page) < wanted:
            return RangePage(entries)
        start, skip_start = _key_of(page[-1]), True


def _key_of(entry: TableEntry[Any, StringKey]) -> str:
    return entry.sort_key().value


class K2VIndexSource(Protocol):
    """Where :func:`read_index` reads: a :class:`garage_model.Garage`."""

    @property
    def k2v_counter_table(self) -> ReplicatedTable[CounterEntry[UuidKey, StringKey]]:
        """The ``k2v_index_counter_v2`` table."""
        ...

    def counter_nodes(self) -> list[Uuid]:
        """The nodes whose counter values count (storage nodes of the live layouts)."""
        ...


@final
@dataclass(frozen=True, slots=True)
class K2VIndexPage:
    """A page of ReadIndex.

    Attributes:
        partition_keys: ``(partition key, {"entries", "conflicts", "values", "bytes"})``
            for each partition key of the bucket with something counted, in order.
        more: partition keys remain after the limit.
        next_start: when ``more``, the ``start`` of the next page.
    """

    partition_keys: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    more: bool = False
    next_start: str | None = None


async def read_index(
    garage: K2VIndexSource,
    bucket_id: Uuid,
    prefix: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
    reverse: bool = False,
) -> K2VIndexPage:
    """ReadIndex: the partition keys of a bucket with their counters.

    Args:
        garage: the node (a :class:`garage_model.Garage`).
        bucket_id: the bucket.
        prefix, start, end, limit, reverse: the selection (see the module docstring).

    Returns:
        The page; each row has the four counters (0 when a counter was never reported).

    Raises:
        BadRequestError, QuorumError: as :func:`read_range`.
    """
    nodes = tuple(garage.counter_nodes())
    page = await read_range(
        garage.k2v_counter_table.table,
        UuidKey(bucket_id),
        prefix=prefix,
        start=start,
        end=end,
        limit=limit,
        filter=CounterFilter(DeletedFilter.NOT_DELETED, nodes),
        reverse=reverse,
    )
    rows: list[tuple[str, dict[str, int]]] = []
    for entry in page.entries:
        values = entry.filtered_values(nodes)
        counts = {name: values.get(name, 0) for name in (ENTRIES, CONFLICTS, VALUES, BYTES)}
        rows.append((entry.sk.value, counts))
    return K2VIndexPage(rows, page.more, page.next_start)

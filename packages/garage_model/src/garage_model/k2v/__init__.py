"""K2V: a key-value store with causality tokens, beside S3 in the same buckets.

Garage: src/model/k2v/ (design §8.6). The K2V API (in ``garage_api``) works on:

- the ``k2v_item`` table (:class:`K2VItemSchema`): items ``(bucket, partition key, sort
  key)`` whose values are kept with dotted version vectors (:class:`K2VItem`): a write with
  the causality token of what it read replaces exactly those values, concurrent writes are
  all kept (siblings) until a later write resolves them, and deletes are values of the same
  kind (tombstones);
- the ``k2v_index_counter_v2`` counter table: per (bucket, partition key), the counts of
  ``entries``, ``conflicts``, ``values`` and ``bytes``, read with :func:`read_index`;
- :class:`K2VRpcHandler`: inserts routed to a storage node that applies them with its own
  clock, PollItem and PollRange (long polls woken by :class:`SubscriptionManager`);
- :class:`CausalContext` and its text form, the causality token; the PollRange seen
  marker (:class:`RangeSeenMarker`).

On a node, :class:`garage_model.Garage` builds them: ``garage.k2v_item_table``,
``garage.k2v_counter_table``, ``garage.k2v_counter`` and ``garage.k2v_rpc``. Reads go to the
tables directly, e.g. the non-tombstone items of a partition::

    page = await read_range(garage.k2v_item_table.table,
                            K2VItemPartition(bucket_id, "pk"), prefix="a", limit=100,
                            filter=K2VItemFilter(exclude_only_tombstones=True))
    for item in page.entries:
        print(item.sk, item.values(), item.causal_context().serialize())
"""

from ._causality import U64_MAX as U64_MAX
from ._causality import CausalContext as CausalContext
from ._causality import InvalidCausalityToken as InvalidCausalityToken
from ._causality import make_node_id as make_node_id
from ._causality import vclock_gt as vclock_gt
from ._causality import vclock_max as vclock_max
from ._item_table import BYTES as BYTES
from ._item_table import CONFLICTS as CONFLICTS
from ._item_table import DELETED as DELETED
from ._item_table import ENTRIES as ENTRIES
from ._item_table import K2V_COUNTER_TABLE as K2V_COUNTER_TABLE
from ._item_table import K2V_ITEM_TABLE as K2V_ITEM_TABLE
from ._item_table import K2V_LOCAL_TIMESTAMP_TREE as K2V_LOCAL_TIMESTAMP_TREE
from ._item_table import VALUES as VALUES
from ._item_table import DvvsEntry as DvvsEntry
from ._item_table import DvvsValue as DvvsValue
from ._item_table import K2VItem as K2VItem
from ._item_table import K2VItemFilter as K2VItemFilter
from ._item_table import K2VItemPartition as K2VItemPartition
from ._item_table import K2VItemSchema as K2VItemSchema
from ._range import RANGE_PAGE_SIZE as RANGE_PAGE_SIZE
from ._range import K2VIndexPage as K2VIndexPage
from ._range import K2VIndexSource as K2VIndexSource
from ._range import RangePage as RangePage
from ._range import key_after_prefix as key_after_prefix
from ._range import read_index as read_index
from ._range import read_range as read_range
from ._rpc import INSERT_ITEM as INSERT_ITEM
from ._rpc import INSERT_MANY_ITEMS as INSERT_MANY_ITEMS
from ._rpc import POLL_ITEM as POLL_ITEM
from ._rpc import POLL_RANGE as POLL_RANGE
from ._rpc import POLL_RANGE_EXTRA_DELAY_S as POLL_RANGE_EXTRA_DELAY_S
from ._rpc import InsertedItem as InsertedItem
from ._rpc import InsertManyItems as InsertManyItems
from ._rpc import K2VRpcHandler as K2VRpcHandler
from ._rpc import PollItem as PollItem
from ._rpc import PollItemResponse as PollItemResponse
from ._rpc import PollRangeRequest as PollRangeRequest
from ._rpc import PollRangeResponse as PollRangeResponse
from ._seen import MAX_SEEN_MARKER_BYTES as MAX_SEEN_MARKER_BYTES
from ._seen import InvalidSeenMarker as InvalidSeenMarker
from ._seen import RangeSeenMarker as RangeSeenMarker
from ._sub import PollKey as PollKey
from ._sub import PollRange as PollRange
from ._sub import Subscription as Subscription
from ._sub import SubscriptionManager as SubscriptionManager

__all__ = [
    "BYTES",
    "CONFLICTS",
    "DELETED",
    "ENTRIES",
    "INSERT_ITEM",
    "INSERT_MANY_ITEMS",
    "K2V_COUNTER_TABLE",
    "K2V_ITEM_TABLE",
    "K2V_LOCAL_TIMESTAMP_TREE",
    "MAX_SEEN_MARKER_BYTES",
    "POLL_ITEM",
    "POLL_RANGE",
    "POLL_RANGE_EXTRA_DELAY_S",
    "RANGE_PAGE_SIZE",
    "U64_MAX",
    "VALUES",
    "CausalContext",
    "DvvsEntry",
    "DvvsValue",
    "InsertManyItems",
    "InsertedItem",
    "InvalidCausalityToken",
    "InvalidSeenMarker",
    "K2VIndexPage",
    "K2VIndexSource",
    "K2VItem",
    "K2VItemFilter",
    "K2VItemPartition",
    "K2VItemSchema",
    "K2VRpcHandler",
    "PollItem",
    "PollItemResponse",
    "PollKey",
    "PollRange",
    "PollRangeRequest",
    "PollRangeResponse",
    "RangePage",
    "RangeSeenMarker",
    "Subscription",
    "SubscriptionManager",
    "key_after_prefix",
    "make_node_id",
    "read_index",
    "read_range",
    "vclock_gt",
    "vclock_max",
]

"""The K2V API: a key/key/value store with causality tokens, next to S3 (design §10.11).

Garage: src/api/k2v/ and doc/drafts/k2v-spec.md. Items are ``(partition key, sort key) ->
values`` in a bucket; concurrent writes are all kept until a write carrying the causality
token of what it read resolves them (the model side is :mod:`garage_model.k2v`).

- :class:`K2VApi`: the HTTP handler (``serve(K2VApi(garage).handle, addr)``); SigV4 with
  the service ``k2v``, buckets and keys shared with S3.
- :func:`parse_request` routes a request to an :class:`Endpoint` (one
  :class:`K2VOperation`); :class:`K2VError` is every error answer, a JSON document.
- The JSON documents, for the server and for clients: :class:`InsertBatchItem`,
  :class:`ReadBatchQuery` / :class:`ReadBatchResult`, :class:`DeleteBatchQuery` /
  :class:`DeleteBatchResult`, :class:`ReadIndexResult`, :class:`PollRangeQuery` /
  :class:`PollRangeResult`, :class:`ItemValues`.
- :mod:`garage_api.k2v.client`: :class:`~garage_api.k2v.client.K2VClient`, an async
  client (httpx).

Example::

    >>> from garage_api.k2v import K2VOperation, parse_request
    >>> ep = parse_request("GET", "/bucket/mailbox", "sort_key=inbox")
    >>> (ep.operation is K2VOperation.READ_ITEM, ep.partition_key, ep.sort_key)
    (True, 'mailbox', 'inbox')
"""

from ._api import CAUSALITY_TOKEN_HEADER as CAUSALITY_TOKEN_HEADER
from ._api import K2VApi as K2VApi
from ._api import K2VCtx as K2VCtx
from ._errors import JSON_CONTENT_TYPE as JSON_CONTENT_TYPE
from ._errors import K2VError as K2VError
from ._handlers import MAX_BATCH_BODY_BYTES as MAX_BATCH_BODY_BYTES
from ._handlers import MAX_QUERY_BODY_BYTES as MAX_QUERY_BODY_BYTES
from ._handlers import MAX_VALUE_BYTES as MAX_VALUE_BYTES
from ._handlers import item_response as item_response
from ._json import DeleteBatchQuery as DeleteBatchQuery
from ._json import DeleteBatchResult as DeleteBatchResult
from ._json import InsertBatchItem as InsertBatchItem
from ._json import ItemValues as ItemValues
from ._json import PartitionKeyCounts as PartitionKeyCounts
from ._json import PollRangeQuery as PollRangeQuery
from ._json import PollRangeResult as PollRangeResult
from ._json import ReadBatchQuery as ReadBatchQuery
from ._json import ReadBatchResult as ReadBatchResult
from ._json import ReadIndexResult as ReadIndexResult
from ._json import ReturnFormat as ReturnFormat
from ._json import decode_values as decode_values
from ._json import encode_values as encode_values
from ._json import parse_accept as parse_accept
from ._router import DEFAULT_POLL_TIMEOUT_S as DEFAULT_POLL_TIMEOUT_S
from ._router import MAX_POLL_TIMEOUT_S as MAX_POLL_TIMEOUT_S
from ._router import Endpoint as Endpoint
from ._router import K2VOperation as K2VOperation
from ._router import clamp_poll_timeout as clamp_poll_timeout
from ._router import parse_request as parse_request

__all__ = [
    "CAUSALITY_TOKEN_HEADER",
    "DEFAULT_POLL_TIMEOUT_S",
    "JSON_CONTENT_TYPE",
    "MAX_BATCH_BODY_BYTES",
    "MAX_POLL_TIMEOUT_S",
    "MAX_QUERY_BODY_BYTES",
    "MAX_VALUE_BYTES",
    "DeleteBatchQuery",
    "DeleteBatchResult",
    "Endpoint",
    "InsertBatchItem",
    "ItemValues",
    "K2VApi",
    "K2VCtx",
    "K2VError",
    "K2VOperation",
    "PartitionKeyCounts",
    "PollRangeQuery",
    "PollRangeResult",
    "ReadBatchQuery",
    "ReadBatchResult",
    "ReadIndexResult",
    "ReturnFormat",
    "clamp_poll_timeout",
    "decode_values",
    "encode_values",
    "item_response",
    "parse_accept",
    "parse_request",
]

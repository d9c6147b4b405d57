"""K2V request routing: which endpoint a request is, on which bucket and partition key.

Garage: src/api/k2v/router.rs and src/api/common/router_macros.rs (design §10.11). Pure
and synchronous: the server passes the method, the raw path and the raw query string, and
gets an :class:`Endpoint` back, or a :class:`~garage_api.k2v.K2VError`.

Theory of operation
-------------------
1. **Path.** ``/<bucket>[/<partition key>]``: the first segment is the bucket (required),
   everything after its ``/`` (leading slashes trimmed, as Garage does) is the partition
   key, percent-decoded as strict UTF-8. The bucket is always in the path: K2V has no
   virtual-hosted style.
2. **Query.** Form-decoded (``+`` is a space, as Garage's ``form_urlencoded``), strict
   UTF-8. At most one *keyword* (``delete``, ``search``, ``poll_range``; value ignored).
   *Fields* (``sort_key``, ``causality_token``, ``timeout``, ``prefix``, ``start``,
   ``end``, ``limit``, ``reverse``) with an empty value count as absent, a repeated one is
   an error; anything else (the ``X-Amz-*`` of presigned URLs...) is ignored.
3. **Endpoint.** ``(method, partition key present, keyword)``:

   ======== ============= ============ ======================================
   method   partition key keyword      endpoint
   ======== ============= ============ ======================================
   GET      yes           —            PollItem if ``causality_token`` else ReadItem
   GET      no            —            ReadIndex
   PUT      yes           —            InsertItem
   DELETE   yes           —            DeleteItem
   POST     no            — / delete   InsertBatch / DeleteBatch
   POST     no            search       ReadBatch
   SEARCH   no            —            ReadBatch
   POST     yes           poll_range   PollRange
   SEARCH   yes           poll_range   PollRange
   OPTIONS  any           any          Options (CORS preflight)
   ======== ============= ============ ======================================

   Another method is ``501 NotImplemented``; a known method in another shape is
   ``400 InvalidRequest`` naming what is wrong.

Read endpoints (ReadItem, PollItem, ReadIndex, ReadBatch, PollRange) need the key's
``read`` permission on the bucket, the others ``write`` (Garage: ``authorization_type``,
which asks ``write`` for PollRange although it only reads: a read-only key may poll here).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote_to_bytes

from garage_api.s3 import Authorization

from ._errors import K2VError

__all__ = [
    "DEFAULT_POLL_TIMEOUT_S",
    "MAX_POLL_TIMEOUT_S",
    "Endpoint",
    "K2VOperation",
    "clamp_poll_timeout",
    "parse_request",
]

#: PollItem and PollRange wait this long by default (Garage: ``unwrap_or(300)``).
DEFAULT_POLL_TIMEOUT_S: Final = 300
#: The longest wait a client may ask for (Garage: ``clamp(1, 600)``; k2v-spec "10 minutes").
MAX_POLL_TIMEOUT_S: Final = 600

# A u64 as Garage's ``parse::<u64>()`` takes it: decimal digits only (int() alone would
# accept "+5", " 5" and "5_0"); 20 digits hold every u64.
_DECIMAL: Final = re.compile(r"[0-9]{1,20}")
_U64_MAX: Final = (1 << 64) - 1

_KEYWORDS: Final = frozenset({"delete", "search", "poll_range"})
_FIELDS: Final = frozenset(
    {"sort_key", "causality_token", "timeout", "prefix", "start", "end", "limit", "reverse"}
)


class K2VOperation(enum.Enum):
    """Every K2V endpoint, valued by Garage's name (``K2VOperation.READ_ITEM.value``)."""

    DELETE_BATCH = "DeleteBatch"
    DELETE_ITEM = "DeleteItem"
    INSERT_BATCH = "InsertBatch"
    INSERT_ITEM = "InsertItem"
    OPTIONS = "Options"
    POLL_ITEM = "PollItem"
    POLL_RANGE = "PollRange"
    READ_BATCH = "ReadBatch"
    READ_INDEX = "ReadIndex"
    READ_ITEM = "ReadItem"


_READ_ONLY: Final = frozenset(
    {
        K2VOperation.POLL_ITEM,
        K2VOperation.POLL_RANGE,
        K2VOperation.READ_BATCH,
        K2VOperation.READ_INDEX,
        K2VOperation.READ_ITEM,
    }
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A routed K2V request.

    Attributes:
        operation: which endpoint.
        bucket: the bucket name as written in the path.
        partition_key: the partition key (item endpoints and PollRange), else None.
        sort_key: the sort key (ReadItem, PollItem, InsertItem, DeleteItem), else None.
        causality_token: PollItem's token (still encoded), else None.
        timeout_s: PollItem's ``timeout`` as given (see :func:`clamp_poll_timeout`).
        prefix: ReadIndex's partition key prefix.
        start: ReadIndex's first partition key.
        end: ReadIndex's end partition key (excluded).
        limit: ReadIndex's most partition keys.
        reverse: ReadIndex's order.
    """

    operation: K2VOperation
    bucket: str
    partition_key: str | None = None
    sort_key: str | None = None
    causality_token: str | None = None
    timeout_s: int | None = None
    prefix: str | None = None
    start: str | None = None
    end: str | None = None
    limit: int | None = None
    reverse: bool | None = None

    @property
    def name(self) -> str:
        """The endpoint's name (``"ReadItem"``), for logs and metrics."""
        return self.operation.value

    @property
    def authorization(self) -> Authorization:
        """The bucket permission this endpoint needs (read or write)."""
        if self.operation is K2VOperation.OPTIONS:
            return Authorization.NONE
        return Authorization.READ if self.operation in _READ_ONLY else Authorization.WRITE

    def require_item(self) -> tuple[str, str]:
        """``(partition_key, sort_key)`` of an item endpoint."""
        assert self.partition_key is not None
        assert self.sort_key is not None
        return self.partition_key, self.sort_key


def clamp_poll_timeout(timeout_s: int | None) -> int:
    """The wait of a poll, in seconds: the default when absent, clamped to 1..600."""
    value = DEFAULT_POLL_TIMEOUT_S if timeout_s is None else timeout_s
    return min(max(value, 1), MAX_POLL_TIMEOUT_S)


def _decode_path(segment: str, what: str) -> str:
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise K2VError.invalid_utf8(f"the {what} in the path: {exc}") from None


@dataclass(slots=True)
class _Query:
    keyword: str | None
    fields: dict[str, str]

    @classmethod
    def parse(cls, raw_query: str) -> _Query:
        try:
            pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError as exc:
            raise K2VError.invalid_utf8(f"the query string: {exc}") from None
        keyword: str | None = None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in _KEYWORDS:
                if keyword is not None:
                    raise K2VError.bad_request(
                        f"the query has two endpoint keywords: {keyword!r} and {name!r}"
                    )
                keyword = name
            elif name in _FIELDS and value:
                if name in fields:
                    raise K2VError.bad_request(f"Query parameter repeated: {name!r}")
                fields[name] = value
        return cls(keyword, fields)

    def required(self, name: str) -> str:
        value = self.fields.get(name)
        if value is None:
            raise K2VError.bad_request(f"the query parameter {name!r} is required")
        return value

    def u64(self, name: str) -> int | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if _DECIMAL.fullmatch(value) is None or int(value) > _U64_MAX:
            raise K2VError.bad_request(f"{name}={value!r} is not a non-negative integer")
        return int(value)

    def boolean(self, name: str) -> bool | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise K2VError.bad_request(f"{name}={value!r} is not true or false")
        return value == "true"


def parse_request(method: str, raw_path: str, raw_query: str) -> Endpoint:
    """Routes a K2V request (see the module docstring for the table).

    Args:
        method: the HTTP method (compared upper-cased).
        raw_path: the path as on the wire, still percent-encoded.
        raw_query: the query string as on the wire, without ``?``.

    Returns:
        The endpoint and its parameters.

    Raises:
        K2VError: ``400 InvalidRequest`` (no bucket, missing or malformed parameter, no
            endpoint of that shape), ``400 InvalidUtf8String``, or ``501 NotImplemented``
            for a method the K2V API does not use.
    """
    method = method.upper()
    path = raw_path.lstrip("/")
    bucket_raw, _, pk_raw = path.partition("/")
    bucket = _decode_path(bucket_raw, "bucket name")
    if not bucket:
        raise K2VError.bad_request("Missing bucket name")
    if method == "OPTIONS":
        return Endpoint(K2VOperation.OPTIONS, bucket)
    if method not in ("GET", "PUT", "DELETE", "POST", "SEARCH"):
        raise K2VError.not_implemented(f"the K2V API has no {method} endpoint")
    partition_key = _decode_path(pk_raw.lstrip("/"), "partition key")
    query = _Query.parse(raw_query)
    keyword = query.keyword
    if partition_key:
        return _item_endpoint(method, keyword, bucket, partition_key, query)
    return _bucket_endpoint(method, keyword, bucket, query)


def _no_endpoint(method: str, keyword: str | None, *, with_key: bool) -> K2VError:
    shape = "/<bucket>/<partition key>" if with_key else "/<bucket>"
    kw = f"?{keyword}" if keyword else ""
    return K2VError.bad_request(f"Invalid endpoint: no K2V endpoint is {method} {shape}{kw}")


def _item_endpoint(
    method: str, keyword: str | None, bucket: str, partition_key: str, query: _Query
) -> Endpoint:
    op: K2VOperation | None = None
    if keyword is None:
        if method == "GET":
            token = query.fields.get("causality_token")
            if token is not None:
                return Endpoint(
                    K2VOperation.POLL_ITEM,
                    bucket,
                    partition_key,
                    query.required("sort_key"),
                    causality_token=token,
                    timeout_s=query.u64("timeout"),
                )
            op = K2VOperation.READ_ITEM
        elif method == "PUT":
            op = K2VOperation.INSERT_ITEM
        elif method == "DELETE":
            op = K2VOperation.DELETE_ITEM
    elif keyword == "poll_range" and method in ("POST", "SEARCH"):
        return Endpoint(K2VOperation.POLL_RANGE, bucket, partition_key)
    if op is None:
        raise _no_endpoint(method, keyword, with_key=True)
    return Endpoint(op, bucket, partition_key, query.required("sort_key"))


def _bucket_endpoint(method: str, keyword: str | None, bucket: str, query: _Query) -> Endpoint:
    table: dict[tuple[str, str | None], K2VOperation] = {
        ("POST", None): K2VOperation.INSERT_BATCH,
        ("POST", "delete"): K2VOperation.DELETE_BATCH,
        ("POST", "search"): K2VOperation.READ_BATCH,
        ("SEARCH", None): K2VOperation.READ_BATCH,
    }
    if method == "GET" and keyword is None:
        return Endpoint(
            K2VOperation.READ_INDEX,
            bucket,
            prefix=query.fields.get("prefix"),
            start=query.fields.get("start"),
            end=query.fields.get("end"),
            limit=query.u64("limit"),
            reverse=query.boolean("reverse"),
        )
    op = table.get((method, keyword))
    if op is None:
        raise _no_endpoint(method, keyword, with_key=False)
    return Endpoint(op, bucket)

"""A small async client of the K2V API (httpx, SigV4 with the service ``k2v``).

Every endpoint of doc/drafts/k2v-spec.md is one method of :class:`K2VClient`, with typed
results: the documents of :mod:`garage_api.k2v` (:class:`~garage_api.k2v.ItemValues`,
:class:`~garage_api.k2v.ReadBatchResult`...). An error answer raises
:class:`~garage_api.k2v.K2VError` with the server's code, message and status.

Causality in three lines: a read gives the values of an item and a *causality token*; a
write that carries that token replaces exactly those values; a write without it (or with
an older one) is concurrent and its value is kept *next to* the others, which every read
then returns until a write with a newer token resolves them.

Example::

    from garage_api.k2v.client import K2VClient

    async with K2VClient("http://127.0.0.1:3904", key_id, secret, "garage", "bucket") as k2v:
        await k2v.insert_item("mailbox", "inbox", b"hello")
        item = await k2v.read_item("mailbox", "inbox")
        assert item is not None and item.values == (b"hello",)
        # Replace what was read (without the token, both values would be kept):
        await k2v.insert_item("mailbox", "inbox", b"world", item.causality_token)
        # Wait (up to 10 s) until someone writes after what we saw:
        changed = await k2v.poll_item("mailbox", "inbox", item.causality_token, timeout_s=10)

:meth:`K2VClient.read_item_binary` reads a single value as the raw answer body
(``Accept: application/octet-stream``), without JSON and base64.

It runs on any anyio backend (trio, asyncio). Requests are signed with the body's sha256
(``x-amz-content-sha256``), so the server checks the body too. It speaks HTTP through
httpx, which the ``k2v-client`` extra installs: ``pip install 'garage-api[k2v-client]'``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Final, Self, final

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "garage_api.k2v.client needs httpx: install the extra with "
        "`pip install 'garage-api[k2v-client]'`"
    ) from exc

from garage_api.signature import sign_request, uri_encode
from garage_util.clock import now_msec

from ._errors import K2VError
from ._json import (
    DeleteBatchQuery,
    DeleteBatchResult,
    InsertBatchItem,
    ItemValues,
    PollRangeQuery,
    PollRangeResult,
    ReadBatchQuery,
    ReadBatchResult,
    ReadIndexResult,
    decode_values,
)
from ._router import DEFAULT_POLL_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

__all__ = ["DEFAULT_TIMEOUT_S", "ConcurrentValuesError", "K2VClient"]

#: How long a request (other than a poll) may take, in seconds.
DEFAULT_TIMEOUT_S: Final = 30.0
# A poll's answer may come this long after its own timeout: the server waits for a read
# quorum of storage nodes, then for the stragglers.
_POLL_GRACE_S: Final = 30.0

_CT_HEADER: Final = "x-garage-causality-token"
_JSON: Final = "application/json"
_OCTET_STREAM: Final = "application/octet-stream"


class ConcurrentValuesError(K2VError):
    """Raised by :meth:`K2VClient.read_item_binary` when the item has concurrent values
    (``409 Conflict``): one raw body cannot hold them. Read them with
    :meth:`K2VClient.read_item`, or replace them all with a write that carries
    :attr:`causality_token`.

    Attributes:
        causality_token: the token of the item's values, from the 409 answer.
    """

    def __init__(self, causality_token: str) -> None:
        super().__init__("Conflict", "the item has concurrent values", 409)
        self.causality_token = causality_token


@final
class K2VClient:
    """A K2V client for one bucket.

    Use it as an async context manager (or call :meth:`aclose`): it owns a connection pool.

    Args:
        endpoint: the K2V API's base URL (``http://127.0.0.1:3904``).
        key_id: the access key id.
        secret: its secret key.
        region: the node's ``s3_region``.
        bucket: the bucket name (a global alias, or a local alias of the key).
        http: an httpx client to use instead of a new one (not closed by :meth:`aclose`).
        timeout_s: the timeout of each request (polls get theirs plus a margin).
        clock_ms: the clock for request dates, in ms (tests inject one).
    """

    __slots__ = (
        "_base",
        "_bucket",
        "_clock_ms",
        "_host",
        "_http",
        "_key_id",
        "_owns_http",
        "_region",
        "_secret",
        "_timeout_s",
    )

    def __init__(
        self,
        endpoint: str,
        key_id: str,
        secret: str,
        region: str,
        bucket: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock_ms: Callable[[], int] = now_msec,
    ) -> None:
        if not bucket:
            raise ValueError("the bucket name must not be empty")
        self._base = httpx.URL(endpoint)
        self._host = self._base.netloc.decode("ascii")
        self._key_id = key_id
        self._secret = secret
        self._region = region
        self._bucket = bucket
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout_s)
        self._timeout_s = timeout_s
        self._clock_ms = clock_ms

    def __repr__(self) -> str:
        return f"<K2VClient {self._base} bucket={self._bucket!r}>"

    @property
    def bucket(self) -> str:
        """The bucket this client reads and writes."""
        return self._bucket

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connection pool (unless it was given to the constructor)."""
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def _request(
        self,
        method: str,
        partition_key: str | None,
        query: Sequence[tuple[str, str | None]] = (),
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        wait_s: float | None = None,
    ) -> httpx.Response:
        """Signs and sends one request; returns the answer if it is 2xx or 304.

        Args:
            query: ``(name, value)``; a ``None`` value is a bare keyword (``?search``).
            wait_s: a poll's own timeout (the request's is longer by a margin).

        Raises:
            K2VError: the server answered with an error.
        """
        path = "/" + uri_encode(self._bucket)
        if partition_key is not None:
            if not partition_key:
                raise ValueError("the partition key must not be empty")
            path += "/" + uri_encode(partition_key)
        raw_query = "&".join(
            uri_encode(name) if value is None else f"{uri_encode(name)}={uri_encode(value)}"
            for name, value in query
        )
        target = path + ("?" + raw_query if raw_query else "")
        signed = sign_request(
            method,
            path,
            raw_query,
            [("host", self._host), *headers],
            key_id=self._key_id,
            secret=self._secret,
            region=self._region,
            service="k2v",
            now_ms=self._clock_ms(),
            payload_hash=hashlib.sha256(body).hexdigest(),
        )
        timeout = self._timeout_s if wait_s is None else wait_s + _POLL_GRACE_S
        request = self._http.build_request(
            method,
            self._base.copy_with(raw_path=target.encode("ascii")),
            headers=signed,
            content=body,
            timeout=timeout,
        )
        response = await self._http.send(request)
        if response.status_code >= 400:
            raise _error(response)
        return response

    # ------------------------------------------------------------------ single items

    async def read_item(self, partition_key: str, sort_key: str) -> ItemValues | None:
        """ReadItem: the values of an item and its causality token; ``None`` if no item.

        A deleted item (not yet collected) reads as values ``(None,)``.

        Raises:
            K2VError: any error but ``404 NoSuchKey``.
        """
        try:
            response = await self._request(
                "GET", partition_key, [("sort_key", sort_key)], headers=[("accept", _JSON)]
            )
        except K2VError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        return _item(sort_key, response)

    async def read_item_binary(self, partition_key: str, sort_key: str) -> ItemValues | None:
        """ReadItem in binary form (``Accept: application/octet-stream``): the item's single
        value is the raw answer body, with no JSON or base64 around it.

        Returns:
            The item with its one value (``(None,)`` for a tombstone, which the server
            answers with ``204``) and its causality token; ``None`` if there is no item.

        Raises:
            ConcurrentValuesError: the item has concurrent values (``409``).
            K2VError: any other error but ``404 NoSuchKey``.
        """
        try:
            response = await self._request(
                "GET",
                partition_key,
                [("sort_key", sort_key)],
                headers=[("accept", _OCTET_STREAM)],
            )
        except K2VError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        token = _token(response)
        if response.status_code == 204:
            return ItemValues(sort_key, token, (None,))
        return ItemValues(sort_key, token, (response.content,))

    async def insert_item(
        self,
        partition_key: str,
        sort_key: str,
        value: bytes,
        causality_token: str | None = None,
    ) -> None:
        """InsertItem: writes ``value``, superseding the values ``causality_token`` was
        read with (none: concurrent with every value present)."""
        headers = [] if causality_token is None else [(_CT_HEADER, causality_token)]
        await self._request(
            "PUT", partition_key, [("sort_key", sort_key)], body=value, headers=headers
        )

    async def delete_item(
        self, partition_key: str, sort_key: str, causality_token: str | None
    ) -> None:
        """DeleteItem: a deletion superseding the values read with ``causality_token``
        (``None``: a deletion concurrent with every value, kept next to them)."""
        headers = [] if causality_token is None else [(_CT_HEADER, causality_token)]
        await self._request("DELETE", partition_key, [("sort_key", sort_key)], headers=headers)

    async def poll_item(
        self,
        partition_key: str,
        sort_key: str,
        causality_token: str,
        *,
        timeout_s: int = DEFAULT_POLL_TIMEOUT_S,
    ) -> ItemValues | None:
        """PollItem: waits until the item changes past ``causality_token``; its new values,
        or ``None`` when ``timeout_s`` (1..600) passed without a change."""
        query = [
            ("sort_key", sort_key),
            ("causality_token", causality_token),
            ("timeout", str(timeout_s)),
        ]
        response = await self._request(
            "GET", partition_key, query, headers=[("accept", _JSON)], wait_s=timeout_s
        )
        if response.status_code == 304:
            return None
        return _item(sort_key, response)

    # ------------------------------------------------------------------ batches

    async def insert_batch(self, items: Sequence[InsertBatchItem]) -> None:
        """InsertBatch: several writes (``value=None`` deletes). Not a transaction: on an
        error, some writes may be done and others not."""
        body = InsertBatchItem.list_to_json(items)
        await self._request("POST", None, body=body, headers=[("content-type", _JSON)])

    async def read_batch(self, queries: Sequence[ReadBatchQuery]) -> list[ReadBatchResult]:
        """ReadBatch: one result per search (items, ``more``, ``next_start``)."""
        body = ReadBatchQuery.list_to_json(queries)
        response = await self._request(
            "POST", None, [("search", None)], body=body, headers=[("content-type", _JSON)]
        )
        return ReadBatchResult.list_from_json(response.content)

    async def delete_batch(self, queries: Sequence[DeleteBatchQuery]) -> list[DeleteBatchResult]:
        """DeleteBatch: deletes the items of each range (superseding the values read);
        one result per range with the number of items deleted."""
        body = DeleteBatchQuery.list_to_json(queries)
        response = await self._request(
            "POST", None, [("delete", None)], body=body, headers=[("content-type", _JSON)]
        )
        return DeleteBatchResult.list_from_json(response.content)

    async def read_index(
        self,
        *,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> ReadIndexResult:
        """ReadIndex: the partition keys holding items, with their (eventually consistent)
        counts of entries, conflicts, values and bytes."""
        query: list[tuple[str, str | None]] = []
        for name, value in (("prefix", prefix), ("start", start), ("end", end)):
            if value is not None:
                query.append((name, value))
        if limit is not None:
            query.append(("limit", str(limit)))
        if reverse:
            query.append(("reverse", "true"))
        response = await self._request("GET", None, query)
        return ReadIndexResult.from_json(response.content)

    async def poll_range(
        self,
        partition_key: str,
        *,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        seen_marker: str | None = None,
        timeout_s: int = DEFAULT_POLL_TIMEOUT_S,
    ) -> PollRangeResult | None:
        """PollRange: the items of a range that changed since ``seen_marker`` (every item
        when it is ``None``), waiting up to ``timeout_s`` for one; ``None`` on timeout.
        Pass the result's ``seen_marker`` to the next call."""
        body = PollRangeQuery(prefix, start, end, timeout_s, seen_marker).to_json()
        response = await self._request(
            "POST",
            partition_key,
            [("poll_range", None)],
            body=body,
            headers=[("content-type", _JSON)],
            wait_s=timeout_s,
        )
        if response.status_code == 304:
            return None
        return PollRangeResult.from_json(response.content)


def _token(response: httpx.Response) -> str:
    token: str | None = response.headers.get(_CT_HEADER)
    if token is None:
        raise K2VError("InvalidResponse", "the answer has no causality token", 502)
    return token


def _item(sort_key: str, response: httpx.Response) -> ItemValues:
    return ItemValues(sort_key, _token(response), decode_values(response.content))


def _error(response: httpx.Response) -> K2VError:
    """The error a failed answer describes (the K2V JSON error document, if it is one)."""
    status = response.status_code
    token: str | None = response.headers.get(_CT_HEADER)
    if status == 409 and token is not None:
        # A binary ReadItem of concurrent values: an empty answer with their token.
        return ConcurrentValuesError(token)
    try:
        doc = json.loads(response.content)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), str):
        return K2VError(doc["code"], str(doc.get("message", "")), status)
    text = response.content.decode("utf-8", "replace")[:200]
    return K2VError(f"Http{status}", text or response.reason_phrase, status)

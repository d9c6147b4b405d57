"""A small S3 client for fault runs, and how its outcomes are classified.

The clients are httpx (async, on the runner's trio loop) with SigV4 from
:mod:`garage_api.signature`: a thin layer whose failures are easy to tell apart, which is
what the classification of fault-testing.md §3.6 needs:

- a 2xx is ``ok``; a GET/HEAD 404 is an ``ok`` read of "absent";
- another 4xx is ``fail`` (the request was refused: no effect);
- a connection refused or a connect timeout is ``fail`` (nothing was sent);
- a 5xx, a timeout, a reset or a broken response after the request was (maybe) sent is
  ``info`` for a write (it may land, now or later) and ``fail`` for a read.

Every request has the clients' 10 s deadline (Garage's harness uses the same), applied
around the whole exchange.
"""

from __future__ import annotations

import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio
import httpx

from faults.history import FAIL, INFO, OK
from garage_api.signature import sign_request, uri_encode

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CLIENT_TIMEOUT_S", "Reply", "S3Client", "classify", "xml_texts"]

#: The clients' deadline per request (fault-testing.md §3.5), above the nodes' 5 s RPC
#: timeout so that a lost quorum shows as an error answer rather than a client timeout.
CLIENT_TIMEOUT_S: Final = 10.0
_NS: Final = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True, slots=True)
class Reply:
    """One request's result.

    Attributes:
        status: the HTTP status, or None when no answer arrived.
        body: the response body (empty without an answer).
        headers: the response headers, lower-cased names.
        error: why there is no answer ("" when there is one).
        sent: False only when the request provably never left (connection refused).
    """

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] | None = None
    error: str = ""
    sent: bool = True

    def header(self, name: str) -> str | None:
        """A response header, or None."""
        return None if self.headers is None else self.headers.get(name)


def classify(reply: Reply, *, write: bool) -> str:
    """The outcome of a request (module docstring): ``ok``, ``fail`` or ``info``."""
    if reply.status is None:
        return INFO if write and reply.sent else FAIL
    if 200 <= reply.status < 300:
        return OK
    if reply.status == 404 and not write:
        return OK
    if reply.status < 500:
        return FAIL
    return INFO if write else FAIL


def xml_texts(body: bytes, *path: str) -> list[str]:
    """The texts of the elements at ``path`` below the root of an S3 XML answer."""
    root = ET.fromstring(body)
    found = root.findall("/".join(_NS + p for p in path))
    if not found:  # answers without the S3 namespace
        found = root.findall("/".join(path))
    return [e.text or "" for e in found]


@final
class S3Client:
    """Signed requests to one node's S3 endpoint, on one bucket.

    Args:
        endpoint: ``http://host:port`` of the node.
        key_id: the access key id.
        secret: its secret key.
        bucket: the bucket every key lives in.
        region: the S3 region.
    """

    def __init__(self, endpoint: str, key_id: str, secret: str, bucket: str, region: str) -> None:
        self._endpoint = endpoint
        self._host = endpoint.removeprefix("http://")
        self._key_id = key_id
        self._secret = secret
        self._bucket = bucket
        self._region = region
        # One connection: a client task has one request in flight at a time.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(CLIENT_TIMEOUT_S, connect=CLIENT_TIMEOUT_S / 2)
        self._http = httpx.AsyncClient(limits=limits, timeout=timeout)

    @property
    def endpoint(self) -> str:
        """The node's endpoint URL."""
        return self._endpoint

    async def aclose(self) -> None:
        """Closes the connection."""
        await self._http.aclose()

    async def request(
        self,
        method: str,
        key: str = "",
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        """Sends one signed request within :data:`CLIENT_TIMEOUT_S`; never raises for
        network errors (they come back as a :class:`Reply` without status)."""
        path = f"/{self._bucket}" + (f"/{uri_encode(key, encode_slash=False)}" if key else "")
        raw_query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(query))
        signed = sign_request(
            method,
            path,
            raw_query,
            [("host", self._host), *headers],
            key_id=self._key_id,
            secret=self._secret,
            region=self._region,
            service="s3",
            now_ms=time.time_ns() // 1_000_000,
            payload_hash=hashlib.sha256(body).hexdigest(),
        )
        url = self._endpoint + path + (f"?{raw_query}" if raw_query else "")
        try:
            with anyio.fail_after(CLIENT_TIMEOUT_S):
                resp = await self._http.request(method, url, content=body, headers=signed)
                data = await resp.aread()
        except TimeoutError:
            return Reply(None, error="client timeout")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return Reply(None, error=f"connect: {exc!r}", sent=False)
        except httpx.HTTPError as exc:
            return Reply(None, error=repr(exc))
        return Reply(resp.status_code, data, dict(resp.headers))

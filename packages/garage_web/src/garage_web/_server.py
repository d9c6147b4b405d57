"""The website server: buckets served to browsers (Garage: src/web/web_server.rs; design §11).

:class:`WebServer` is an HTTP handler (``garage_api.http.serve(WebServer(garage,
config.s3_web).handle, addr)``). Nothing is signed: anyone may read a bucket whose owner
turned website access on (S3 PutBucketWebsite, ``garage bucket website --allow``), and
nobody can read any other bucket through it. For each request it:

1. refuses methods other than GET, HEAD and OPTIONS (``405`` with ``Allow``);
2. picks the bucket from the ``Host`` (:func:`~garage_web.host_to_bucket_name`: a global
   alias, or ``<bucket>.<root_domain>``) and answers ``404`` unless the bucket exists and
   has a website configuration; the same ``404`` page for every such case, so that the
   website server tells nothing about buckets that are not websites;
3. maps the path to a key (:func:`~garage_web.path_to_keys`: index documents for ``/`` and
   ``dir/``);
4. answers OPTIONS as a CORS preflight on the bucket's rules, and GET/HEAD with the S3
   read path (:func:`garage_api.s3.read_object`: ``Range``, ``If-*`` preconditions, SSE-C,
   streamed blocks). Query parameters are ignored, as in Garage: a link cannot override the
   stored ``Content-Type`` (``response-content-type``) and turn an upload into a page;
5. turns a missing key whose ``<key>/<index>`` exists into a ``302`` to ``<path>/``, and an
   object carrying ``x-amz-website-redirect-location`` into a ``301`` to that location
   (AWS: "(Optional) Configuring a webpage redirect");
6. adds the CORS headers of the first rule matching the request's ``Origin`` to a
   successful answer;
7. answers a ``4xx`` of a GET with the bucket's error document, if it has one and it can be
   read, with the error's status and the error's text in ``X-Garage-Error``; every other
   error is a small HTML page (never the S3 XML document). An unreachable quorum is ``503``;
   anything unexpected is ``500``, logged with its traceback;
8. names the answer for the metrics (:attr:`Response.endpoint`): the method, followed by
   the site's host with ``add_host_to_metrics`` (only for hosts that are websites, so that
   invented ``Host`` headers cannot add labels without bound).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from garage_api.http import Request, Response
from garage_api.s3 import S3Error, cors_preflight_headers, cors_response_headers, read_object
from garage_model.bucket_alias_table import is_valid_bucket_name
from garage_model.bucket_table import CorsRule, UuidKey, WebsiteConfig
from garage_model.s3.writer import newest_data
from garage_rpc.net import RpcError
from garage_rpc.rpc_helper import QuorumError
from garage_table import NoLayoutError
from garage_table.schema import EmptyKey, StringKey
from garage_util.data import Uuid

from ._errors import ALLOWED_METHODS, WebError, error_page
from ._routing import authority_to_host, host_to_bucket_name, path_to_keys

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from garage_model import Garage
    from garage_util.config import WebConfig

    from ._routing import WebTarget

__all__ = ["WebServer"]

logger = logging.getLogger(__name__)

#: The stored header of an object that is a redirection (AWS: PutObject
#: ``WebsiteRedirectLocation``; PutObject checks its value starts with /, http:// or https://).
_REDIRECT_HEADER: Final = "x-amz-website-redirect-location"
#: The header carrying the error's text when the error document answers (Garage's name).
_ERROR_HEADER: Final = "x-garage-error"
_HTML: Final = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Site:
    """A website a request is for: its host, bucket and configurations."""

    host: str
    bucket_id: Uuid
    website: WebsiteConfig
    cors_rules: tuple[CorsRule, ...] | None


def _error_response(error: WebError) -> Response:
    """The HTML page of ``error`` (or, for a ``304``, its headers alone)."""
    headers = list(error.headers)
    if error.status == 304:
        return Response(304, headers)
    headers.append(("content-type", _HTML))
    return Response(error.status, headers, error_page(error.status, error.message))


def _header_text(text: str) -> str:
    """``text`` made safe for one header value: Latin-1 only, no line breaks."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")


async def _discard(body: bytes | AsyncIterable[bytes]) -> None:
    """Closes a streamed body that will not be sent (its block streams with it)."""
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


@final
class WebServer:
    """The static website server of a node.

    Args:
        garage: the node.
        config: the ``[s3_web]`` section (``root_domain``; ``bind_addr`` is the caller's).
    """

    __slots__ = ("_garage", "config")

    def __init__(self, garage: Garage, config: WebConfig) -> None:
        self._garage = garage
        self.config = config
        """The ``[s3_web]`` configuration."""

    @property
    def root_domain(self) -> str:
        """Hosts ``<bucket>.<root_domain>`` serve bucket ``<bucket>``."""
        return self.config.root_domain

    async def handle(self, request: Request) -> Response:
        """Answers one request (never raises; see the module's steps)."""
        site: _Site | None = None
        try:
            site = await self._site(request)
            response = await self._serve(request, site)
        except WebError as exc:
            response = _error_response(exc)
        except (QuorumError, RpcError, NoLayoutError) as exc:
            logger.warning("web %s %s: %s", request.method, request.raw_path, exc)
            response = _error_response(WebError(503, "The site cannot be served right now."))
        except Exception:
            logger.exception("web %s %s failed", request.method, request.raw_path)
            response = _error_response(WebError(500, "Internal error."))
        response.endpoint = request.method
        if self.config.add_host_to_metrics and site is not None:
            # Only hosts that are websites: a label per Host a client invents would let
            # anyone grow the metrics without bound.
            response.endpoint = f"{request.method} {site.host}"
        logger.debug(
            "web %s %s %s: %d", request.host, request.method, request.raw_path, response.status
        )
        return response

    async def _site(self, request: Request) -> _Site:
        """The website a request is for (steps 1-2).

        Raises:
            WebError: ``405`` for a method websites do not answer, ``400`` without a usable
                ``Host``, and the same ``404`` for an unknown name, a deleted bucket and a
                bucket without website access.
        """
        method = request.method
        if method not in ALLOWED_METHODS:
            raise WebError.method_not_allowed(method)
        authority = request.header("host")
        if authority is None:
            raise WebError.bad_request("a Host header is required")
        host = authority_to_host(authority)
        name = host_to_bucket_name(host, self.root_domain)
        # A name no bucket can have is not looked up (a Host may be up to 64 KiB).
        if not is_valid_bucket_name(name, allow_punycode=True):
            raise WebError.not_found()
        alias = await self._garage.bucket_alias_table.table.get(EmptyKey(), StringKey(name))
        bucket_id = None if alias is None else alias.bucket_id
        if bucket_id is None:
            raise WebError.not_found()
        bucket = await self._garage.bucket_table.table.get(EmptyKey(), UuidKey(bucket_id))
        params = None if bucket is None else bucket.params
        website = None if params is None else params.website_config.value
        if params is None or website is None:
            raise WebError.not_found()
        return _Site(host, bucket_id, website, params.cors_config.value)

    async def _serve(self, request: Request, site: _Site) -> Response:
        """Answers a request for ``site`` (steps 3-7)."""
        method = request.method
        target = path_to_keys(request.raw_path, site.website.index_document)
        if method == "OPTIONS":
            return self._preflight(site.cors_rules, request)
        try:
            response = await self._read(request, site.bucket_id, target, head=method == "HEAD")
        except S3Error as exc:
            error = WebError.from_s3(exc)
            document = site.website.error_document
            if method == "HEAD" or not error.is_client_error or document is None:
                raise error from None
            return await self._error_document(site.bucket_id, document, error)
        response.headers += cors_response_headers(site.cors_rules, method, request.headers)
        return response

    @staticmethod
    def _preflight(rules: tuple[CorsRule, ...] | None, request: Request) -> Response:
        """A CORS preflight, answered from the bucket's rules (403 when none matches)."""
        try:
            return Response(200, cors_preflight_headers(rules, request.headers))
        except S3Error as exc:
            raise WebError.from_s3(exc) from None

    async def _read(
        self, request: Request, bucket_id: Uuid, target: WebTarget, *, head: bool
    ) -> Response:
        """GET or HEAD of the target, with the implicit (302) and explicit (301) redirects.

        Raises:
            S3Error: from the S3 read path (``NoSuchKey`` when no redirect applies).
        """
        try:
            response = await read_object(self._garage, request, bucket_id, target.key, head=head)
        except S3Error as exc:
            redirect = target.redirect
            if (
                exc.code == "NoSuchKey"
                and redirect is not None
                and await self._has_data(bucket_id, redirect.key)
            ):
                return Response(302, [("location", redirect.location)])
            raise
        location = next((v for n, v in response.headers if n == _REDIRECT_HEADER), None)
        if location is not None:
            await _discard(response.body)
            return Response(301, [("location", location)])
        return response

    async def _has_data(self, bucket_id: Uuid, key: str) -> bool:
        """Whether ``key`` has a readable version (not deleted) in the bucket."""
        table = self._garage.object_table.table
        return newest_data(await table.get(UuidKey(bucket_id), StringKey(key))) is not None

    async def _error_document(self, bucket_id: Uuid, document: str, error: WebError) -> Response:
        """The bucket's error document with the status of ``error``, or ``error``'s page
        when the document cannot be read.

        The document is read with a bare GET: the visitor's ``Range`` and ``If-*`` were
        about the page they asked for, not this one.
        """
        key = document.lstrip("/")
        try:
            response = await read_object(
                self._garage, Request("GET", f"/{key}", "", []), bucket_id, key, head=False
            )
        except (S3Error, QuorumError, RpcError, NoLayoutError) as exc:
            logger.warning(
                "bucket %s: cannot read its error document %r: %s", bucket_id.hex(), key, exc
            )
            raise error from None
        response.status = error.status
        response.headers += error.headers
        response.headers.append((_ERROR_HEADER, _header_text(error.message)))
        return response

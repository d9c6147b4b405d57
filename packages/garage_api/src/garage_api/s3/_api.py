"""The S3 API server: one request from the socket to its handler and back (design §10.1-10.2).

:class:`S3Api` is the HTTP handler (``garage_api.http.serve(S3Api(garage).handle, addr)``).
For each request it:

1. routes it (:func:`parse_request`) to an :class:`Endpoint`; a CORS preflight
   (``OPTIONS``) is answered right there, unauthenticated, from the CORS rules of the
   bucket if its name is global (design §10.2);
2. authenticates it: SigV4 from the header or the query, with the key's secret from the
   key table; anonymous requests are refused;
3. resolves the bucket name for that key (its local aliases first, then the global ones)
   and checks the key's permission for the operation;
4. calls the operation's handler with a :class:`ReqCtx`; an operation without one answers
   ``501 NotImplemented`` naming it; a successful answer to a browser (``Origin``) gets
   the CORS headers of the bucket's first matching rule;
5. turns every failure into an S3 error document with a request id: S3 errors as raised,
   signature and model errors with their S3 codes, unreachable quorums as ``503``, and
   anything else as ``500 InternalError`` (logged).

Handlers live in the ``_h_*`` modules, each exporting ``HANDLERS``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias, final
from urllib.parse import parse_qsl

import anyio

from garage_api.http import Request, Response
from garage_api.signature import Authenticated, AuthPolicy, SignatureError, parse_auth, verify
from garage_model import Garage
from garage_model.bucket_table import Bucket
from garage_model.helper import (
    AccessDeniedError,
    BadRequestError,
    BucketAlreadyExistsError,
    BucketNotEmptyError,
    HelperError,
    InvalidBucketNameError,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)
from garage_model.key_table import Key
from garage_rpc.net import RpcError
from garage_rpc.rpc_helper import QuorumError
from garage_table import NoLayoutError
from garage_util.clock import now_msec
from garage_util.data import Uuid

from ._cors import permissive_preflight_headers, preflight_headers, response_headers
from ._errors import S3Error
from ._router import Authorization, Endpoint, Operation, parse_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


__all__ = ["ANY_REGION", "ReqCtx", "S3Api", "S3Handler", "xml_response"]

logger = logging.getLogger(__name__)

#: The region reported when ``s3_region`` is ``"*"`` (accept any): clients that hard-code
#: one use this one.
ANY_REGION: Final = "*"
_XML: Final = "application/xml"


@dataclass(slots=True)
class ReqCtx:
    """What a handler gets: the node, the request, who made it, and on which bucket.

    Attributes:
        garage: the node.
        api: the server (configuration, clock).
        request: the HTTP request.
        endpoint: the routed operation and its parameters.
        auth: the verified signature.
        key: the access key that signed.
        bucket_name: the bucket name as the client wrote it (None for service requests).
        bucket_id: the resolved bucket (None for service requests and CreateBucket).
        bucket: the bucket entry (None when ``bucket_id`` is).
        request_id: this request's id (in logs and error documents).
    """

    garage: Garage
    api: S3Api
    request: Request
    endpoint: Endpoint
    auth: Authenticated
    key: Key
    bucket_name: str | None
    bucket_id: Uuid | None
    bucket: Bucket | None
    request_id: str

    def require_bucket(self) -> tuple[Uuid, Bucket]:
        """The resolved bucket (handlers of bucket and object operations)."""
        assert self.bucket_id is not None
        assert self.bucket is not None
        return self.bucket_id, self.bucket


S3Handler: TypeAlias = "Callable[[ReqCtx], Awaitable[Response]]"
"""A handler of one S3 operation."""


def xml_response(document: bytes, *, status: int = 200) -> Response:
    """An XML answer."""
    return Response(status, [("content-type", _XML)], document)


def _handlers() -> dict[Operation, Callable[[ReqCtx], Awaitable[Response]]]:
    from . import (
        _h_bucket,
        _h_cors,
        _h_lifecycle,
        _h_list,
        _h_multipart,
        _h_object,
        _h_post,
        _h_website,
    )

    table: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {}
    modules = (_h_bucket, _h_object, _h_list, _h_multipart, _h_website, _h_cors)
    for module in (*modules, _h_lifecycle, _h_post):
        table.update(module.HANDLERS)
    return table


def _helper_error(exc: HelperError) -> S3Error:
    """The S3 error of a model helper's refusal."""
    message = str(exc)
    if isinstance(exc, NoSuchBucketError):
        return S3Error.from_code("NoSuchBucket", message)
    if isinstance(exc, NoSuchAccessKeyError):
        return S3Error.from_code("InvalidAccessKeyId", message)
    if isinstance(exc, BucketAlreadyExistsError):
        return S3Error.from_code("BucketAlreadyExists", message)
    if isinstance(exc, BucketNotEmptyError):
        return S3Error.from_code("BucketNotEmpty")  # AWS's words; the model's name the id
    if isinstance(exc, InvalidBucketNameError):
        return S3Error.from_code("InvalidBucketName", message)
    if isinstance(exc, AccessDeniedError):
        return S3Error.from_code("AccessDenied", message)
    if isinstance(exc, BadRequestError):
        return S3Error.from_code("InvalidRequest", message)
    return S3Error.from_code("InvalidRequest", message)


@final
class S3Api:
    """The S3 API of a node.

    Args:
        garage: the node.
        clock_ms: the wall clock in ms (signature dates; injected in tests).
    """

    __slots__ = ("_clock_ms", "_handlers", "_policy", "garage", "region", "root_domain")

    def __init__(self, garage: Garage, *, clock_ms: Callable[[], int] = now_msec) -> None:
        s3 = garage.config.s3_api
        self.garage = garage
        self.region = s3.s3_region
        """The region reported to clients (``s3_region``)."""
        self.root_domain = s3.root_domain
        """Virtual-hosted-style requests are ``<bucket>.<root_domain>``."""
        accept_any = s3.s3_region == ANY_REGION
        self._policy = AuthPolicy(
            region="us-east-1" if accept_any else s3.s3_region,
            service="s3",
            accept_any_region=accept_any,
        )
        self._clock_ms = clock_ms
        self._handlers = _handlers()

    @property
    def clock_ms(self) -> Callable[[], int]:
        """The wall clock the API uses."""
        return self._clock_ms

    async def handle(self, request: Request) -> Response:
        """Answers one request (never raises)."""
        request_id = secrets.token_hex(8).upper()
        endpoint: Endpoint | None = None
        try:
            endpoint = self._route(request)
            response = await self._handle(request, endpoint, request_id)
        except S3Error as exc:
            response = self._error(exc, request, request_id)
        except SignatureError as exc:
            error = S3Error(exc.code, exc.message, exc.http_status, region=exc.region)
            response = self._error(error, request, request_id)
        except HelperError as exc:
            response = self._error(_helper_error(exc), request, request_id)
        except (QuorumError, RpcError, NoLayoutError) as exc:
            logger.warning("%s %s: %s", request.method, request.raw_path, exc)
            error = S3Error.from_code("ServiceUnavailable", f"the cluster cannot serve: {exc}")
            response = self._error(error, request, request_id)
        except anyio.BrokenResourceError:
            error = S3Error.from_code("IncompleteBody", "the request body ended early")
            response = self._error(error, request, request_id)
        except Exception:
            logger.exception(
                "request %s: %s %s failed", request_id, request.method, request.raw_path
            )
            error = S3Error.from_code("InternalError", "internal error (see the node's log)")
            response = self._error(error, request, request_id)
        response.headers.append(("x-amz-request-id", request_id))
        if endpoint is not None:
            response.endpoint = endpoint.name
        return response

    def _error(self, error: S3Error, request: Request, request_id: str) -> Response:
        error = error.with_context(resource=request.raw_path, region=self.region)
        headers = list(error.headers)
        if not error.has_body:
            return Response(error.status, headers)
        headers.append(("content-type", _XML))
        return Response(error.status, headers, error.to_xml(request_id))

    def _route(self, request: Request) -> Endpoint:
        query = parse_qsl(request.query_string, keep_blank_values=True)
        return parse_request(
            request.method,
            request.header("host"),
            request.raw_path,
            query,
            request.headers,
            root_domain=self.root_domain,
        )

    async def _handle(self, request: Request, endpoint: Endpoint, request_id: str) -> Response:
        if endpoint.operation is Operation.OPTIONS:
            return await self._preflight(request, endpoint)
        if endpoint.operation is Operation.POST_OBJECT:
            # A browser form upload signs its policy, not the request: the handler reads
            # the form and verifies that signature itself (AWS: sigv4-UsingHTTPPOST).
            from ._h_post import post_object

            return await post_object(self, request, endpoint, self._policy)
        auth, key = await self._authenticate(request)
        bucket_id: Uuid | None = None
        bucket: Bucket | None = None
        if endpoint.bucket is not None and endpoint.operation is not Operation.CREATE_BUCKET:
            helper = self.garage.bucket_helper
            bucket_id = await helper.resolve_bucket(endpoint.bucket, key)
            bucket = await helper.get_existing_bucket(bucket_id)
            self._authorize(endpoint, key, bucket_id)
        handler = self._handlers.get(endpoint.operation)
        if handler is None or not endpoint.implemented:
            raise S3Error.not_implemented(endpoint.name)
        ctx = ReqCtx(
            self.garage,
            self,
            request,
            endpoint,
            auth,
            key,
            endpoint.bucket,
            bucket_id,
            bucket,
            request_id,
        )
        response = await handler(ctx)
        if bucket is not None and bucket.params is not None:
            # A browser's actual request: its answer says whether the page may read it.
            rules = bucket.params.cors_config.value
            response.headers += response_headers(rules, request.method, request.headers)
        return response

    async def _preflight(self, request: Request, endpoint: Endpoint) -> Response:
        """Answers a CORS preflight, unauthenticated (browsers send no credentials with it).

        A global name answers from its bucket's rules. Any other name may be a local alias
        of some key, which cannot be resolved without one: it gets a permissive answer, as
        does the service (ListBuckets) with GET only (Garage: ``handle_options_s3api``).
        """
        if endpoint.bucket is None:
            return Response(200, permissive_preflight_headers(request.headers, ("GET",)))
        helper = self.garage.bucket_helper
        bucket_id = await helper.resolve_global_bucket_name(endpoint.bucket)
        if bucket_id is None:
            return Response(200, permissive_preflight_headers(request.headers))
        params = (await helper.get_existing_bucket(bucket_id)).params
        assert params is not None  # get_existing_bucket refuses deleted buckets
        return Response(200, preflight_headers(params.cors_config.value, request.headers))

    async def _authenticate(self, request: Request) -> tuple[Authenticated, Key]:
        parsed = parse_auth(request.method, request.raw_path, request.query_string, request.headers)
        try:
            key: Key | None = await self.garage.bucket_helper.get_existing_key(parsed.key_id)
        except NoSuchAccessKeyError:
            key = None
        params = None if key is None else key.params
        secret = None if params is None else params.secret_key
        auth = verify(parsed, secret, policy=self._policy, now_ms=self._clock_ms())
        assert key is not None  # verify refuses an unknown key
        return auth, key

    @staticmethod
    def _authorize(endpoint: Endpoint, key: Key, bucket_id: Uuid) -> None:
        needed = endpoint.authorization
        allowed = {
            Authorization.NONE: True,
            Authorization.READ: key.allow_read(bucket_id),
            Authorization.WRITE: key.allow_write(bucket_id),
            Authorization.OWNER: key.allow_owner(bucket_id),
        }[needed]
        if not allowed:
            raise S3Error.from_code(
                "AccessDenied",
                f"key {key.key_id} has no {needed.value} permission on this bucket",
            )

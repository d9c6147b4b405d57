"""The K2V API server: one request from the socket to its handler and back (design §10.11).

Garage: src/api/k2v/api_server.rs. :class:`K2VApi` is the HTTP handler
(``garage_api.http.serve(K2VApi(garage).handle, addr)``). For each request it:

1. routes it (:func:`~garage_api.k2v.parse_request`); a CORS preflight (``OPTIONS``) is
   answered right there, unauthenticated, as the S3 API does;
2. authenticates it: SigV4 for the service ``k2v`` in the region of ``[s3_api]`` (Garage
   shares ``s3_region`` between its APIs), the canonical URI being the path URI-encoded
   once more, as the AWS SDKs do for every service but S3; anonymous requests are refused;
3. resolves the bucket name for that key (its local aliases first, then the global ones,
   as S3) and checks the key's ``read`` or ``write`` permission for the endpoint;
4. calls the endpoint's handler (``_handlers.py``) with a :class:`K2VCtx`; a successful
   GET or POST from a browser (``Origin``) gets the CORS headers of the bucket's first
   matching rule (other methods are always preflighted);
5. turns every failure into the JSON error document of :class:`~garage_api.k2v.K2VError`:
   K2V errors as raised, signature and model errors with their codes, unreachable quorums
   as ``503``, and anything else as ``500 InternalError`` (logged with its traceback).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_api.http import Request, Response
from garage_api.s3 import (
    ANY_REGION,
    Authorization,
    RequestBody,
    S3Error,
    cors_permissive_preflight_headers,
    cors_preflight_headers,
    cors_response_headers,
)
from garage_api.signature import Authenticated, AuthPolicy, SignatureError, parse_auth, verify
from garage_model import Garage
from garage_model.helper import (
    AccessDeniedError,
    HelperError,
    InvalidBucketNameError,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)
from garage_model.k2v import InvalidCausalityToken
from garage_rpc.net import RpcError
from garage_rpc.rpc_helper import QuorumError
from garage_table import NoLayoutError
from garage_util.clock import now_msec
from garage_util.data import Uuid

from ._errors import JSON_CONTENT_TYPE, K2VError
from ._handlers import HANDLERS
from ._router import Endpoint, K2VOperation, parse_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from garage_model.bucket_table import Bucket
    from garage_model.key_table import Key

__all__ = ["CAUSALITY_TOKEN_HEADER", "K2VApi", "K2VCtx"]

logger = logging.getLogger(__name__)

#: The header carrying causality tokens, both ways (Garage: ``X_GARAGE_CAUSALITY_TOKEN``).
CAUSALITY_TOKEN_HEADER: Final = "x-garage-causality-token"

# Browsers preflight every method but these "simple" ones, so only their answers carry
# CORS headers (Garage: api_server.rs, "Requests for methods different than GET, HEAD or
# POST are always preflighted").
_CORS_SIMPLE_METHODS: Final = frozenset({"GET", "HEAD", "POST"})


@dataclass(slots=True)
class K2VCtx:
    """What a handler gets: the node, the request, and the bucket it is on.

    Attributes:
        garage: the node.
        request: the HTTP request.
        endpoint: the routed endpoint and its parameters.
        auth: the verified signature (reading the body needs it).
        bucket_id: the resolved bucket.
    """

    garage: Garage
    request: Request
    endpoint: Endpoint
    auth: Authenticated
    bucket_id: Uuid

    async def read_body(self, limit: int, what: str) -> bytes:
        """The whole payload, decoded (aws-chunked) and verified against its signed sha256
        and checksums.

        Raises:
            K2VError: ``413`` when it is over ``limit`` bytes.
            SignatureError: the payload does not match its signature or checksums.
        """
        body = RequestBody(self.request, self.auth)
        buf = bytearray()
        async for chunk in body.chunks():
            buf += chunk
            if len(buf) > limit:
                raise K2VError.too_large(what, limit)
        await anyio.to_thread.run_sync(body.digest, buf)
        body.verify()
        return bytes(buf)


def _helper_error(exc: HelperError, bucket: str) -> K2VError:
    """The K2V error of a model helper's refusal (Garage: ``From<HelperError>``)."""
    if isinstance(exc, InvalidCausalityToken):
        return K2VError.invalid_causality_token()
    if isinstance(exc, NoSuchBucketError):
        return K2VError.no_such_bucket(bucket)
    if isinstance(exc, NoSuchAccessKeyError):
        return K2VError("InvalidAccessKeyId", str(exc), 403)
    if isinstance(exc, InvalidBucketNameError):
        return K2VError("InvalidBucketName", str(exc), 400)
    if isinstance(exc, AccessDeniedError):
        return K2VError.access_denied(str(exc))
    return K2VError.bad_request(str(exc))


@final
class K2VApi:
    """The K2V API of a node.

    Args:
        garage: the node (its ``k2v_item_table``, ``k2v_counter_table`` and ``k2v_rpc``).
        clock_ms: the wall clock in ms (signature dates; injected in tests).
    """

    __slots__ = ("_clock_ms", "_policy", "garage", "region")

    def __init__(self, garage: Garage, *, clock_ms: Callable[[], int] = now_msec) -> None:
        region = garage.config.s3_api.s3_region
        self.garage = garage
        self.region = region
        """The region clients sign for and errors report (``s3_api.s3_region``)."""
        accept_any = region == ANY_REGION
        self._policy = AuthPolicy(
            region="us-east-1" if accept_any else region,
            service="k2v",
            accept_any_region=accept_any,
        )
        self._clock_ms = clock_ms

    async def handle(self, request: Request) -> Response:
        """Answers one request (never raises)."""
        endpoint: Endpoint | None = None
        try:
            endpoint = parse_request(request.method, request.raw_path, request.query_string)
            response = await self._handle(request, endpoint)
        except K2VError as exc:
            response = self._error(exc, request)
        except SignatureError as exc:
            response = self._error(K2VError.from_signature(exc), request)
        except S3Error as exc:  # a CORS preflight refused
            response = self._error(K2VError(exc.code, exc.message, exc.status), request)
        except HelperError as exc:
            bucket = "" if endpoint is None else endpoint.bucket
            response = self._error(_helper_error(exc, bucket), request)
        except (QuorumError, RpcError, NoLayoutError) as exc:
            logger.warning("%s %s: %s", request.method, request.raw_path, exc)
            error = K2VError.service_unavailable(f"the cluster cannot serve: {exc}")
            response = self._error(error, request)
        except anyio.BrokenResourceError:
            error = K2VError("IncompleteBody", "the request body ended early", 400)
            response = self._error(error, request)
        except Exception:
            logger.exception("K2V: %s %s failed", request.method, request.raw_path)
            error = K2VError.internal("internal error (see the node's log)")
            response = self._error(error, request)
        if endpoint is not None:
            response.endpoint = endpoint.name  # for the metrics
        return response

    def _error(self, error: K2VError, request: Request) -> Response:
        body = error.to_json(region=self.region, path=request.raw_path)
        return Response(error.status, [("content-type", JSON_CONTENT_TYPE)], body)

    async def _handle(self, request: Request, endpoint: Endpoint) -> Response:
        if endpoint.operation is K2VOperation.OPTIONS:
            return await self._preflight(request, endpoint.bucket)
        auth, key = await self._authenticate(request)
        helper = self.garage.bucket_helper
        bucket_id = await helper.resolve_bucket(endpoint.bucket, key)
        bucket = await helper.get_existing_bucket(bucket_id)
        self._authorize(endpoint, key, bucket_id)
        logger.debug("K2V %s on bucket %s", endpoint.name, endpoint.bucket)
        ctx = K2VCtx(self.garage, request, endpoint, auth, bucket_id)
        response = await HANDLERS[endpoint.operation](ctx)
        if request.method in _CORS_SIMPLE_METHODS:
            response.headers += self._cors(bucket, request)
        return response

    @staticmethod
    def _cors(bucket: Bucket, request: Request) -> list[tuple[str, str]]:
        if bucket.params is None:
            return []
        rules = bucket.params.cors_config.value
        return cors_response_headers(rules, request.method, request.headers)

    async def _preflight(self, request: Request, bucket_name: str) -> Response:
        """Answers a CORS preflight, unauthenticated: from the rules of a global bucket
        name, permissively for any other name (maybe a key's local alias), like S3 does
        (Garage: ``handle_options_s3api``)."""
        helper = self.garage.bucket_helper
        bucket_id = await helper.resolve_global_bucket_name(bucket_name)
        if bucket_id is None:
            return Response(200, cors_permissive_preflight_headers(request.headers))
        params = (await helper.get_existing_bucket(bucket_id)).params
        assert params is not None  # get_existing_bucket refuses deleted buckets
        return Response(200, cors_preflight_headers(params.cors_config.value, request.headers))

    async def _authenticate(self, request: Request) -> tuple[Authenticated, Key]:
        parsed = parse_auth(
            request.method,
            request.raw_path,
            request.query_string,
            request.headers,
            double_encode_path=self._policy.double_encode_path,
        )
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
            Authorization.READ: key.allow_read(bucket_id),
            Authorization.WRITE: key.allow_write(bucket_id),
        }.get(needed, False)
        if not allowed:
            raise K2VError.access_denied(
                f"Operation is not allowed for this key: {endpoint.name} needs "
                f"{needed.value} permission on the bucket"
            )

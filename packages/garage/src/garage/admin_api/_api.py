"""The admin API server: routing, bearer tokens, the special endpoints and error answers
(Garage: src/api/admin/api_server.rs).

:meth:`AdminApi.handle` is an ``async (Request) -> Response`` handler for
:func:`garage_api.http.serve`. For each request it:

1. routes it (:func:`~garage.admin_api.route`: method, path and query to an endpoint);
2. checks its ``Authorization: Bearer <token>`` against what the endpoint needs
   (:func:`check_authorization`): nothing for ``/health``, ``/check``, the OpenAPI
   document and preflights; the metrics token (or the admin token) for ``/metrics``, open
   when no metrics token is configured; the admin token for everything else, and with no
   admin token configured those endpoints are disabled (403), as in Garage. Tokens are
   compared in constant time;
3. answers: the special endpoints here (health as text for load balancers, the domain
   check for reverse proxies' on-demand TLS, Prometheus metrics, the OpenAPI document, CORS
   preflights), the JSON endpoints in :mod:`._handlers`.

Every refusal is Garage's JSON error document with its status (:mod:`._errors`). An error
that is not a refusal (a quorum failure, a bug) is logged with its traceback and answered
``500 InternalError``: the operator sees it, and the node keeps serving.
"""

from __future__ import annotations

import hmac
import logging
from functools import cache
from importlib.resources import files
from importlib.util import find_spec
from typing import TYPE_CHECKING, Final, final

from garage._admin_server import AdminRpcHandler
from garage.metrics import CONTENT_TYPE
from garage_api.http import BodyTooLargeError, Response
from garage_api.s3 import host_to_bucket
from garage_rpc.replication_mode import ReplicationParams
from garage_rpc.system import HealthStatus
from garage_util.errors import GarageError

from ._codec import encode_json, parse_json
from ._errors import JSON_CONTENT_TYPE, AdminApiError, error_body, error_from
from ._handlers import Handlers
from ._router import Authorization, Endpoint, Route, allowed_methods, route

if TYPE_CHECKING:
    from garage.metrics import NodeMetrics
    from garage_api.http import Request
    from garage_model import Garage
    from garage_util.config import Config

__all__ = ["MAX_BODY_BYTES", "AdminApi", "check_authorization", "openapi_document"]

logger = logging.getLogger(__name__)

#: The largest request body read: admin documents are a few hundred bytes; a layout
#: change for a few thousand nodes stays well under this.
MAX_BODY_BYTES: Final = 1 << 20
_CORS: Final = (("access-control-allow-origin", "*"),)
_ALL_METHODS: Final = "OPTIONS, GET, POST, PUT, DELETE"


@cache
def openapi_document() -> bytes:
    """The OpenAPI 3.0 document of this admin API (``GET /v1/openapi.json``)."""
    return files(__package__).joinpath("openapi.json").read_bytes()


def _bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _same(given: str, expected: str) -> bool:
    # Constant time: how long the comparison takes says nothing about the token.
    return hmac.compare_digest(given.encode(), expected.encode())


def check_authorization(
    needed: Authorization,
    header: str | None,
    *,
    admin_token: str | None,
    metrics_token: str | None,
) -> None:
    """Checks the ``Authorization`` header of a request (see the module docstring).

    Args:
        needed: what the endpoint needs.
        header: the request's ``Authorization`` header, if any.
        admin_token, metrics_token: the configured tokens (None: not configured).

    Raises:
        AdminApiError: 403 when the admin API is disabled (no admin token) or the token is
            wrong, 401 when a needed token is missing.
    """
    if needed is Authorization.NONE:
        return
    if needed is Authorization.METRICS_TOKEN:
        if metrics_token is None:
            return  # Garage: /metrics is open when no metrics token is configured
        accepted = [metrics_token, *([] if admin_token is None else [admin_token])]
    else:
        if admin_token is None:
            raise AdminApiError.forbidden(
                "the admin API is disabled: no admin_token is configured in [admin]"
            )
        accepted = [admin_token]
    if header is None:
        raise AdminApiError.unauthorized(
            "this endpoint needs a token: send 'Authorization: Bearer <token>'"
        )
    token = _bearer(header)
    # Every accepted token is compared, so the time taken does not say which one matched.
    if token is None or not any([_same(token, t) for t in accepted]):
        raise AdminApiError.forbidden("invalid authorization token")


def _features() -> tuple[str, ...]:
    """What this build has, named as Garage's ``garageFeatures``."""
    found = ["metrics", "sqlite"]
    if find_spec("lmdb") is not None:
        found.append("lmdb")
    if find_spec("garage_api.k2v") is not None:
        found.append("k2v")
    return tuple(sorted(found))


@final
class AdminApi:
    """The admin API of one node (see the module docstring).

    Args:
        garage: the node.
        config: its configuration (tokens, region, root domains).
        metrics: the node's metrics, served at ``/metrics``.
    """

    __slots__ = ("_config", "_garage", "_handlers", "_metrics")

    def __init__(self, garage: Garage, config: Config, metrics: NodeMetrics) -> None:
        self._garage = garage
        self._config = config
        self._metrics = metrics
        self._handlers = Handlers(garage, AdminRpcHandler(garage), _features())

    async def handle(self, request: Request) -> Response:
        """Answers one request; never raises for a bad request."""
        endpoint: Endpoint | None = None
        try:
            r = route(request.method, request.raw_path, request.query_string)
            endpoint = r.endpoint
            response = await self._answer(r, request)
        except AdminApiError as exc:
            response = self._error(request, exc)
        except GarageError as exc:
            refusal = error_from(exc)
            if refusal is None:
                response = self._internal_error(request)
            else:
                response = self._error(request, refusal)
        except Exception:
            response = self._internal_error(request)
        if endpoint is not None:
            response.endpoint = endpoint.value  # the metrics' label
        return response

    def _internal_error(self, request: Request) -> Response:
        logger.exception("admin API: %s %s failed", request.method, request.raw_path)
        internal = AdminApiError("InternalError", "internal error: see the node's log", 500)
        return self._error(request, internal)

    def _error(self, request: Request, error: AdminApiError) -> Response:
        body = error_body(error, region=self._config.s3_api.s3_region, path=request.raw_path)
        headers = [("content-type", JSON_CONTENT_TYPE), *_CORS, *error.headers]
        return Response(error.status, headers, body)

    async def _answer(self, r: Route, request: Request) -> Response:
        admin = self._config.admin
        check_authorization(
            r.endpoint.authorization,
            request.header("authorization"),
            admin_token=admin.admin_token,
            metrics_token=admin.metrics_token,
        )
        logger.debug("admin API: %s", r.endpoint.value)
        match r.endpoint:
            case Endpoint.OPTIONS:
                return self._options(request)
            case Endpoint.HEALTH:
                return self._health()
            case Endpoint.CHECK_DOMAIN:
                return await self._check_domain(r)
            case Endpoint.METRICS:
                return Response(200, [("content-type", CONTENT_TYPE)], await self._metrics.scrape())
            case Endpoint.OPENAPI:
                headers = [("content-type", JSON_CONTENT_TYPE), *_CORS]
                return Response(200, headers, openapi_document())
        try:
            raw = await request.read_body(MAX_BODY_BYTES)
        except BodyTooLargeError as exc:
            raise AdminApiError.bad_request(str(exc)) from None
        reply = await self._handlers.handle(r, parse_json(raw))
        if reply.body is None:
            return Response(reply.status, list(_CORS))
        headers = [("content-type", JSON_CONTENT_TYPE), *_CORS]
        return Response(reply.status, headers, encode_json(reply.body))

    # ------------------------------------------------------------------ special endpoints

    def _options(self, request: Request) -> Response:
        allowed = allowed_methods(request.raw_path)
        methods = _ALL_METHODS if allowed is None else ", ".join(("OPTIONS", *allowed))
        headers = [
            ("allow", methods),
            ("access-control-allow-methods", methods),
            ("access-control-allow-headers", "authorization, content-type"),
            *_CORS,
        ]
        return Response(204, headers)

    def _health(self) -> Response:
        """Garage's ``/health``: 200 while every partition has a quorum, 503 otherwise."""
        cfg = self._config
        health = self._garage.system.health(
            ReplicationParams(cfg.replication_factor, cfg.consistency_mode)
        )
        if health.status is HealthStatus.HEALTHY:
            status, text = 200, "Garage is fully operational"
        elif health.status is HealthStatus.DEGRADED:
            status, text = 200, "Garage is operational but some storage nodes are unavailable"
        else:
            status = 503
            text = "Quorum is not available for some/all partitions, reads and writes will fail"
        text += "\nConsult the full health check API endpoint at /v1/health for more details\n"
        return Response(status, [("content-type", "text/plain; charset=utf-8")], text.encode())

    async def _check_domain(self, r: Route) -> Response:
        domain = r.param("domain")
        if domain is None:
            raise AdminApiError.bad_request("no domain query parameter: use /check?domain=<name>")
        if not await self._is_managed(domain):
            raise AdminApiError.bad_request(f"domain {domain!r} is not managed by Garage")
        text = f"Domain '{domain}' is managed by Garage\n"
        return Response(200, [("content-type", "text/plain; charset=utf-8")], text.encode())

    async def _is_managed(self, domain: str) -> bool:
        """Garage's rule: ``<bucket>.<s3 root domain>`` of an existing global bucket, or
        ``<bucket>.<web root domain>`` / ``<bucket>`` of a bucket serving a website."""
        cfg, helper = self._config, self._garage.bucket_helper
        name = None
        if cfg.s3_api.root_domain is not None:
            name = host_to_bucket(domain, cfg.s3_api.root_domain)
        must_be_website = name is None
        if name is None and cfg.s3_web is not None:
            name = host_to_bucket(domain, cfg.s3_web.root_domain)
        if name is None:
            name = domain.lower()
        bucket_id = await helper.resolve_global_bucket_name(name)
        if bucket_id is None:
            return False
        if not must_be_website:
            return True
        bucket = await helper.get_existing_bucket(bucket_id)
        return bucket.params is not None and bucket.params.website_config.v is not None

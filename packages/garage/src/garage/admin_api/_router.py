"""Routing of the admin API v1: method, path and query string to an endpoint
(Garage: src/api/admin/router_v1.rs).

Pure: :func:`route` takes the request line's parts and returns a :class:`Route` (the
:class:`Endpoint`, with the query parameters it takes) or raises
:class:`~garage.admin_api.AdminApiError`:

- a path the API does not have: ``404 NoSuchEndpoint``;
- a known path with another method: ``405 MethodNotAllowed`` with an ``Allow`` header;
- a missing required parameter, or one given twice: ``400 BadRequest``.

Admin API v0 (Garage 0.8's ``/v0/...``) is answered as Garage 0.9+ does (Garage:
src/api/admin/router_v0.rs, ``Endpoint::from_v0`` in router_v1.rs): a v0 endpoint whose
request and response are the same in v1 is routed to its v1 endpoint, the same handler
(``GET /v0/key?id=`` always shows the secret key, as v0 did); the others changed format
(``GetClusterStatus``, ``GetClusterHealth``, ``GetClusterLayout``, ``UpdateClusterLayout``,
``ApplyClusterLayout``, ``UpdateKey``, ``ImportKey``) and are refused ``400 BadRequest``
naming their v1 path. v0 paths are not in the OpenAPI document, which describes v1.

As in Garage, a few paths choose their endpoint by the parameters present: ``GET /v1/key``
is ``GetKeyInfo`` with ``id`` or ``search`` and ``ListKeys`` without; ``POST /v1/key`` is
``UpdateKey`` with ``id`` and ``CreateKey`` without; ``GET /v1/bucket`` is
``GetBucketInfo`` with ``id`` or ``globalAlias``. Unknown query parameters are ignored.

Each endpoint needs one :class:`Authorization`: ``/health``, ``/check``, the OpenAPI
document and CORS preflights none, ``/metrics`` the metrics token, the rest the admin
token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl

from ._errors import AdminApiError

__all__ = [
    "ALLOWED_METHODS",
    "V0_COMPATIBLE",
    "Authorization",
    "Endpoint",
    "Route",
    "allowed_methods",
    "route",
]


class Authorization(enum.Enum):
    """What a request must show to reach an endpoint."""

    NONE = "none"
    METRICS_TOKEN = "metrics_token"
    ADMIN_TOKEN = "admin_token"


class Endpoint(enum.Enum):
    """The endpoints of the admin API; values are Garage's names (metrics labels)."""

    OPTIONS = "Options"
    CHECK_DOMAIN = "CheckDomain"
    HEALTH = "Health"
    METRICS = "Metrics"
    OPENAPI = "OpenApi"
    GET_CLUSTER_STATUS = "GetClusterStatus"
    GET_CLUSTER_HEALTH = "GetClusterHealth"
    CONNECT_CLUSTER_NODES = "ConnectClusterNodes"
    GET_CLUSTER_LAYOUT = "GetClusterLayout"
    UPDATE_CLUSTER_LAYOUT = "UpdateClusterLayout"
    APPLY_CLUSTER_LAYOUT = "ApplyClusterLayout"
    REVERT_CLUSTER_LAYOUT = "RevertClusterLayout"
    LIST_KEYS = "ListKeys"
    CREATE_KEY = "CreateKey"
    IMPORT_KEY = "ImportKey"
    GET_KEY_INFO = "GetKeyInfo"
    UPDATE_KEY = "UpdateKey"
    DELETE_KEY = "DeleteKey"
    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    GET_BUCKET_INFO = "GetBucketInfo"
    UPDATE_BUCKET = "UpdateBucket"
    DELETE_BUCKET = "DeleteBucket"
    BUCKET_ALLOW_KEY = "BucketAllowKey"
    BUCKET_DENY_KEY = "BucketDenyKey"
    GLOBAL_ALIAS_BUCKET = "GlobalAliasBucket"
    GLOBAL_UNALIAS_BUCKET = "GlobalUnaliasBucket"
    LOCAL_ALIAS_BUCKET = "LocalAliasBucket"
    LOCAL_UNALIAS_BUCKET = "LocalUnaliasBucket"

    @property
    def authorization(self) -> Authorization:
        """The token this endpoint needs."""
        if self in _OPEN:
            return Authorization.NONE
        if self is Endpoint.METRICS:
            return Authorization.METRICS_TOKEN
        return Authorization.ADMIN_TOKEN


_OPEN: Final = frozenset(
    {Endpoint.OPTIONS, Endpoint.CHECK_DOMAIN, Endpoint.HEALTH, Endpoint.OPENAPI}
)


@dataclass(frozen=True, slots=True)
class Route:
    """A routed request.

    Attributes:
        endpoint: what the request asks for.
        params: the query parameters the endpoint takes, by their API names (``id``,
            ``globalAlias``, ``accessKeyId``...); required ones are always present.
    """

    endpoint: Endpoint
    params: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """The value of the query parameter ``name``, if given."""
        return self.params.get(name)


@dataclass(frozen=True, slots=True)
class _Rule:
    method: str
    path: str
    endpoint: Endpoint
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    when: tuple[str, ...] = ()  # the rule applies only when one of these parameters is given


_ID: Final = ("id",)
# Tried in order: the first rule whose method, path and condition match wins (Garage's
# order, so that "GET /v1/key?id=" is GetKeyInfo and "GET /v1/key" is ListKeys).
_RULES: Final = (
    _Rule("GET", "/check", Endpoint.CHECK_DOMAIN, optional=("domain",)),
    _Rule("GET", "/health", Endpoint.HEALTH),
    _Rule("GET", "/metrics", Endpoint.METRICS),
    _Rule("GET", "/v1/openapi.json", Endpoint.OPENAPI),
    _Rule("GET", "/v1/status", Endpoint.GET_CLUSTER_STATUS),
    _Rule("GET", "/v1/health", Endpoint.GET_CLUSTER_HEALTH),
    _Rule("POST", "/v1/connect", Endpoint.CONNECT_CLUSTER_NODES),
    _Rule("GET", "/v1/layout", Endpoint.GET_CLUSTER_LAYOUT),
    _Rule("POST", "/v1/layout", Endpoint.UPDATE_CLUSTER_LAYOUT),
    _Rule("POST", "/v1/layout/apply", Endpoint.APPLY_CLUSTER_LAYOUT),
    _Rule("POST", "/v1/layout/revert", Endpoint.REVERT_CLUSTER_LAYOUT),
    _Rule(
        "GET",
        "/v1/key",
        Endpoint.GET_KEY_INFO,
        optional=("id", "search", "showSecretKey"),
        when=("id", "search"),
    ),
    _Rule("POST", "/v1/key", Endpoint.UPDATE_KEY, required=_ID, when=_ID),
    _Rule("POST", "/v1/key", Endpoint.CREATE_KEY),
    _Rule("POST", "/v1/key/import", Endpoint.IMPORT_KEY),
    _Rule("DELETE", "/v1/key", Endpoint.DELETE_KEY, required=_ID),
    _Rule("GET", "/v1/key", Endpoint.LIST_KEYS),
    _Rule(
        "GET",
        "/v1/bucket",
        Endpoint.GET_BUCKET_INFO,
        optional=("id", "globalAlias"),
        when=("id", "globalAlias"),
    ),
    _Rule("GET", "/v1/bucket", Endpoint.LIST_BUCKETS),
    _Rule("POST", "/v1/bucket", Endpoint.CREATE_BUCKET),
    _Rule("DELETE", "/v1/bucket", Endpoint.DELETE_BUCKET, required=_ID),
    _Rule("PUT", "/v1/bucket", Endpoint.UPDATE_BUCKET, required=_ID),
    _Rule("POST", "/v1/bucket/allow", Endpoint.BUCKET_ALLOW_KEY),
    _Rule("POST", "/v1/bucket/deny", Endpoint.BUCKET_DENY_KEY),
    _Rule("PUT", "/v1/bucket/alias/global", Endpoint.GLOBAL_ALIAS_BUCKET, ("id", "alias")),
    _Rule("DELETE", "/v1/bucket/alias/global", Endpoint.GLOBAL_UNALIAS_BUCKET, ("id", "alias")),
    _Rule(
        "PUT", "/v1/bucket/alias/local", Endpoint.LOCAL_ALIAS_BUCKET, ("id", "accessKeyId", "alias")
    ),
    _Rule(
        "DELETE",
        "/v1/bucket/alias/local",
        Endpoint.LOCAL_UNALIAS_BUCKET,
        ("id", "accessKeyId", "alias"),
    ),
)

#: The methods of each path (``Allow`` of a 405; CORS preflights allow all of them).
ALLOWED_METHODS: Final = {
    path: tuple(sorted({r.method for r in _RULES if r.path == path}))
    for path in dict.fromkeys(r.path for r in _RULES)
}

#: The v0 endpoints answered as their v1 twin (Garage: ``Endpoint::from_v0``, router_v1.rs).
#: The others changed their request or response format between v0 and v1.
V0_COMPATIBLE: Final = frozenset(
    {
        Endpoint.CONNECT_CLUSTER_NODES,
        Endpoint.REVERT_CLUSTER_LAYOUT,
        Endpoint.LIST_KEYS,
        Endpoint.CREATE_KEY,
        Endpoint.GET_KEY_INFO,
        Endpoint.DELETE_KEY,
        Endpoint.LIST_BUCKETS,
        Endpoint.CREATE_BUCKET,
        Endpoint.GET_BUCKET_INFO,
        Endpoint.DELETE_BUCKET,
        Endpoint.UPDATE_BUCKET,
        Endpoint.BUCKET_ALLOW_KEY,
        Endpoint.BUCKET_DENY_KEY,
        Endpoint.GLOBAL_ALIAS_BUCKET,
        Endpoint.GLOBAL_UNALIAS_BUCKET,
        Endpoint.LOCAL_ALIAS_BUCKET,
        Endpoint.LOCAL_UNALIAS_BUCKET,
    }
)
_V0_PREFIX: Final = "/v0/"


def _as_v1(path: str) -> str | None:
    """The v1 path of an admin API v0 path (None: not a v0 path)."""
    return "/v1/" + path.removeprefix(_V0_PREFIX) if path.startswith(_V0_PREFIX) else None


def allowed_methods(path: str) -> tuple[str, ...] | None:
    """The methods ``path`` takes (a v0 path: those of its v1 twin); None for no endpoint."""
    return ALLOWED_METHODS.get(_as_v1(path) or path)


def _query(query_string: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name in params:
            # Garage refuses repeated parameters: which one was meant is ambiguous.
            raise AdminApiError.bad_request(f"query parameter {name!r} is given more than once")
        params[name] = value
    return params


def route(method: str, path: str, query_string: str) -> Route:
    """The endpoint of a request (see the module docstring).

    Args:
        method: the upper-case HTTP method.
        path: the request path, without the query string.
        query_string: the raw query string, without ``?``.

    Raises:
        AdminApiError: 404 for an unknown path, 405 for a method the path does not take,
            400 for a missing or repeated parameter or an admin API v0 endpoint whose
            format changed in v1.
    """
    if method == "OPTIONS":
        return Route(Endpoint.OPTIONS)
    v1_path = _as_v1(path)
    if v1_path is None:
        return _route(method, path, query_string, shown=path)
    r = _route(method, v1_path, query_string, shown=path)
    if r.endpoint is Endpoint.OPENAPI:  # v0 had no such document
        raise _no_such_endpoint(path)
    if r.endpoint not in V0_COMPATIBLE:
        raise AdminApiError.bad_request(
            f"admin API v0 endpoint {r.endpoint.value} is no longer supported (its format "
            f"changed in v1): use {method} {v1_path}"
        )
    if r.endpoint is Endpoint.GET_KEY_INFO:
        # v0 had no showSecretKey: it always showed the secret (Garage: from_v0).
        return Route(r.endpoint, {**r.params, "showSecretKey": "true"})
    return r


def _no_such_endpoint(path: str) -> AdminApiError:
    return AdminApiError.not_found(
        "NoSuchEndpoint", f"the admin API has no endpoint {path!r} (see /v1/openapi.json)"
    )


def _route(method: str, path: str, query_string: str, *, shown: str) -> Route:
    """Routes a v1 (or unversioned) ``path``; errors name the request's path, ``shown``."""
    allowed = ALLOWED_METHODS.get(path)
    if allowed is None:
        raise _no_such_endpoint(shown)
    if method not in allowed:
        raise AdminApiError(
            "MethodNotAllowed",
            f"{shown} does not take {method} (allowed: {', '.join(allowed)})",
            405,
            headers=(("allow", ", ".join(("OPTIONS", *allowed))),),
        )
    query = _query(query_string)
    for rule in _RULES:
        if rule.method != method or rule.path != path:
            continue
        if rule.when and not any(p in query for p in rule.when):
            continue
        missing = [p for p in rule.required if p not in query]
        if missing:
            raise AdminApiError.bad_request(
                f"{rule.endpoint.value} needs the query parameter{'s' * (len(missing) > 1)} "
                + ", ".join(missing)
            )
        names = (*rule.required, *rule.optional)
        return Route(rule.endpoint, {n: query[n] for n in names if n in query})
    raise AssertionError(f"no rule for {method} {path}")  # every allowed pair has a rule

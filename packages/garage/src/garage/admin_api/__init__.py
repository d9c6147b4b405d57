"""The admin HTTP API v1 of a node (Garage: src/api/admin/, doc/api/garage-admin-v1.yml).

Served on ``[admin] api_bind_addr``; JSON in and out, with Garage's field names:

- ``GET /health`` (no token: for load balancers), ``GET /check?domain=`` (no token: for
  reverse proxies' on-demand TLS), ``GET /metrics`` (the metrics token, if configured);
- ``/v1/status``, ``/v1/health``, ``/v1/connect``; the layout (``/v1/layout``, ``/apply``,
  ``/revert``); keys (``/v1/key``, ``/v1/key/import``); buckets (``/v1/bucket``,
  ``/allow``, ``/deny``, ``/alias/global``, ``/alias/local``), with the admin token;
- ``GET /v1/openapi.json``: the OpenAPI 3.0 document of all of the above;
- ``/v0/...``: Garage's admin API v0, answered by the v1 endpoint where the format did not
  change, refused (400, naming the v1 path) where it did (see :func:`route`).

:class:`AdminApi` is the server's handler; :func:`route`, :func:`check_authorization` and
the JSON codec are pure, and :class:`AdminApiError` carries each refusal's code and status.

Example::

    >>> from garage.admin_api import Endpoint, route
    >>> r = route("GET", "/v1/bucket", "globalAlias=photos")
    >>> (r.endpoint is Endpoint.GET_BUCKET_INFO, r.params)
    (True, {'globalAlias': 'photos'})
"""

from ._api import MAX_BODY_BYTES as MAX_BODY_BYTES
from ._api import AdminApi as AdminApi
from ._api import check_authorization as check_authorization
from ._api import openapi_document as openapi_document
from ._errors import AdminApiError as AdminApiError
from ._router import Authorization as Authorization
from ._router import Endpoint as Endpoint
from ._router import Route as Route
from ._router import route as route

__all__ = [
    "MAX_BODY_BYTES",
    "AdminApi",
    "AdminApiError",
    "Authorization",
    "Endpoint",
    "Route",
    "check_authorization",
    "openapi_document",
    "route",
]

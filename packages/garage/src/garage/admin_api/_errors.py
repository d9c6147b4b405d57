"""Errors of the admin API and their JSON rendering (Garage: src/api/admin/error.rs).

Every refusal the admin API answers is an :class:`AdminApiError`: a machine-readable
``code`` (Garage's names: ``NoSuchBucket``, ``BucketNotEmpty``, ``NoSuchAccessKey``...),
the HTTP status, and a message for the operator. It renders as Garage's JSON error body::

    {"code": "NoSuchBucket", "message": "...", "region": "garage", "path": "/v1/bucket"}

The model and the admin RPC handler raise their own errors (``garage_model.helper``'s,
:class:`~garage.admin_rpc.AdminRpcError`, the layout's); :func:`error_from` translates them
at this boundary, so the status depends on the cause and never on where it was raised.
Anything it does not know is a bug, answered ``500 InternalError`` by the server.
"""

from __future__ import annotations

import json
from typing import Final

from garage.admin_rpc import AdminRpcError
from garage_model.helper import (
    AccessDeniedError,
    BadRequestError,
    BucketAlreadyExistsError,
    BucketNotEmptyError,
    InvalidBucketNameError,
    KeyAlreadyExistsError,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)
from garage_rpc.layout import LayoutError
from garage_rpc.net import RpcError
from garage_rpc.rpc_helper import QuorumError
from garage_table.errors import NoLayoutError
from garage_util.errors import GarageError

__all__ = ["JSON_CONTENT_TYPE", "AdminApiError", "error_body", "error_from"]

#: The media type of every JSON answer (errors included).
JSON_CONTENT_TYPE: Final = "application/json"


class AdminApiError(GarageError):
    """An answer of the admin API that is not a success.

    Raised by the router (unknown endpoint, missing parameter), the token check and the
    handlers (bad JSON, an invalid value, a missing bucket...), and answered by
    :class:`~garage.admin_api.AdminApi` with :func:`error_body`.

    Attributes:
        code: Garage's error code (``BadRequest``, ``NoSuchBucket``...).
        status: the HTTP status.
        message: what went wrong, for the operator.
        headers: extra response headers (``Allow`` on a 405, ``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self, code: str, message: str, status: int, *, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers

    @classmethod
    def bad_request(cls, message: str) -> AdminApiError:
        """400 ``BadRequest``: the request is malformed or asks for something impossible."""
        return cls("BadRequest", message, 400)

    @classmethod
    def unauthorized(cls, message: str) -> AdminApiError:
        """401 ``Unauthorized``: no bearer token was sent."""
        return cls("Unauthorized", message, 401, headers=(("www-authenticate", "Bearer"),))

    @classmethod
    def forbidden(cls, message: str) -> AdminApiError:
        """403 ``Forbidden``: a wrong token, or the admin API is disabled."""
        return cls("Forbidden", message, 403)

    @classmethod
    def not_found(cls, code: str, message: str) -> AdminApiError:
        """404 with ``code`` (``NoSuchBucket``, ``NoSuchAccessKey``, ``NoSuchEndpoint``)."""
        return cls(code, message, 404)


def error_from(exc: GarageError) -> AdminApiError | None:
    """The admin API answer for an error of the model, the admin RPC handler, the layout or
    the cluster (no quorum: ``503 ServiceUnavailable``); None when ``exc`` is none of
    those (a database failure, a bug): the server answers that ``500 InternalError`` and
    logs it."""
    if isinstance(exc, AdminApiError):
        return exc
    message = str(exc)
    if isinstance(exc, NoSuchBucketError):
        return AdminApiError.not_found("NoSuchBucket", message)
    if isinstance(exc, NoSuchAccessKeyError):
        return AdminApiError.not_found("NoSuchAccessKey", message)
    if isinstance(exc, BucketAlreadyExistsError):
        return AdminApiError("BucketAlreadyExists", message, 409)
    if isinstance(exc, BucketNotEmptyError):
        return AdminApiError("BucketNotEmpty", message, 409)
    if isinstance(exc, KeyAlreadyExistsError):
        return AdminApiError("KeyAlreadyExists", message, 409)
    if isinstance(exc, InvalidBucketNameError):
        return AdminApiError("InvalidBucketName", message, 400)
    if isinstance(exc, AccessDeniedError):
        return AdminApiError("AccessDenied", message, 403)
    if isinstance(exc, BadRequestError | AdminRpcError | LayoutError):
        return AdminApiError.bad_request(message)
    if isinstance(exc, QuorumError | RpcError | NoLayoutError):
        # Garage: not enough nodes answered; retrying later may work (common_error.rs).
        return AdminApiError("ServiceUnavailable", f"the cluster cannot serve: {message}", 503)
    return None


def error_body(error: AdminApiError, *, region: str, path: str) -> bytes:
    """Garage's JSON error document for ``error`` on the request path ``path``."""
    doc = {"code": error.code, "message": error.message, "region": region, "path": path}
    return json.dumps(doc, indent=2).encode()

"""K2V errors: one exception type carrying what the HTTP boundary answers with.

Garage: src/api/k2v/error.rs and src/api/common/common_error.rs. The K2V API is not S3, so
its errors are JSON documents rather than XML (Garage's ``CustomApiErrorBody``)::

    {
      "code": "NoSuchKey",
      "message": "Key not found",
      "region": "garage",
      "path": "/bucket/partition"
    }

with ``Content-Type: application/json``. The codes are Garage's: the common ones
(``InvalidRequest``, ``AccessDenied``, ``NoSuchBucket``, ``InternalError``,
``ServiceUnavailable``...) and the K2V ones (``NoSuchKey``, ``NotAcceptable``,
``CausalityToken``, ``InvalidBase64``, ``InvalidUtf8String``). Signature errors keep their
S3 code and status (``SignatureDoesNotMatch`` 403, ``AuthorizationHeaderMalformed`` 400).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from garage_api.signature import SignatureError

__all__ = ["JSON_CONTENT_TYPE", "K2VError"]

#: The content type of every JSON document of the K2V API, errors included.
JSON_CONTENT_TYPE: Final = "application/json"


class K2VError(GarageError):
    """A K2V error answer: a code, a message and an HTTP status.

    Raised by the K2V cores (router, JSON codec, range reads) and handlers; the server
    catches it and answers with :attr:`status` and :meth:`to_json`. The named constructors
    cover the codes the API uses.

    Args:
        code: the error code (``"NoSuchKey"``).
        message: what was wrong, in words a user can act on.
        status: the HTTP status.

    Attributes:
        code: as given.
        message: as given.
        status: as given.
    """

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"K2VError({self.code!r}, {self.message!r}, {self.status})"

    def to_json(self, *, region: str, path: str) -> bytes:
        """The JSON error document (Garage's field order: code, message, region, path).

        Args:
            region: the configured region (``s3_api.s3_region``).
            path: the request path.
        """
        doc = {"code": self.code, "message": self.message, "region": region, "path": path}
        return json.dumps(doc, indent=2).encode()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def bad_request(cls, message: str) -> K2VError:
        """``400 InvalidRequest``: the request is malformed (Garage's ``BadRequest``)."""
        return cls("InvalidRequest", message, 400)

    @classmethod
    def invalid_causality_token(cls) -> K2VError:
        """``400 CausalityToken``: a causality token does not decode."""
        return cls("CausalityToken", "Invalid causality token", 400)

    @classmethod
    def invalid_base64(cls, message: str) -> K2VError:
        """``400 InvalidBase64``: a value of a JSON document is not base64."""
        return cls("InvalidBase64", f"Invalid base64: {message}", 400)

    @classmethod
    def invalid_utf8(cls, message: str) -> K2VError:
        """``400 InvalidUtf8String``: a key in the path or query is not UTF-8."""
        return cls("InvalidUtf8String", f"Invalid UTF-8: {message}", 400)

    @classmethod
    def too_large(cls, what: str, limit: int) -> K2VError:
        """``413 EntityTooLarge``: a body or a value is over its limit."""
        return cls("EntityTooLarge", f"{what} is over {limit} bytes", 413)

    @classmethod
    def access_denied(cls, message: str) -> K2VError:
        """``403 AccessDenied``: the key lacks the permission the endpoint needs."""
        return cls("AccessDenied", message, 403)

    @classmethod
    def no_such_bucket(cls, name: str) -> K2VError:
        """``404 NoSuchBucket``: no bucket of that name for this key."""
        return cls("NoSuchBucket", f"Bucket not found: {name}", 404)

    @classmethod
    def no_such_key(cls) -> K2VError:
        """``404 NoSuchKey``: no item (or an item with no value at all)."""
        return cls("NoSuchKey", "Key not found", 404)

    @classmethod
    def not_acceptable(cls, message: str) -> K2VError:
        """``406 NotAcceptable``: the ``Accept`` header allows neither format."""
        return cls("NotAcceptable", f"Not acceptable: {message}", 406)

    @classmethod
    def not_implemented(cls, message: str) -> K2VError:
        """``501 NotImplemented``: a request the K2V API has no endpoint for."""
        return cls("NotImplemented", message, 501)

    @classmethod
    def service_unavailable(cls, message: str) -> K2VError:
        """``503 ServiceUnavailable``: too few nodes answered (quorum, timeout)."""
        return cls("ServiceUnavailable", message, 503)

    @classmethod
    def internal(cls, message: str) -> K2VError:
        """``500 InternalError``: a bug or an unexpected failure (logged by the server)."""
        return cls("InternalError", message, 500)

    @classmethod
    def from_signature(cls, exc: SignatureError) -> K2VError:
        """The answer to a failed authentication or payload check (its S3 code and status)."""
        return cls(exc.code, exc.message, exc.http_status)

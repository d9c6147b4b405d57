"""Errors of request authentication and payload verification.

Garage: src/api/common/signature/error.rs.

Every error carries what the HTTP boundary needs to answer it, after h11's
``error_status_hint``: the S3 error ``code`` (``"SignatureDoesNotMatch"``), the
``http_status`` and a human ``message``. The S3 and K2V layers translate a
:class:`SignatureError` into their own error document with those three values (and their
configured region where the code calls for one, like ``AuthorizationHeaderMalformed``).

Codes and statuses follow AWS's S3 error table
(https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). Where Garage and AWS
disagree, AWS wins because clients branch on these codes: a wrong checksum is ``BadDigest``
(the value did not match), a malformed one ``InvalidDigest`` (Garage says ``InvalidDigest``
for both), and a body whose sha256 does not match ``x-amz-content-sha256`` is
``XAmzContentSHA256Mismatch``.
"""

from __future__ import annotations

from typing import ClassVar

from garage_util.errors import GarageError

__all__ = [
    "AccessDeniedError",
    "AuthorizationHeaderMalformedError",
    "AuthorizationQueryParametersError",
    "BadDigestError",
    "IncompleteBodyError",
    "InvalidAccessKeyIdError",
    "InvalidArgumentError",
    "InvalidDigestError",
    "InvalidRequestError",
    "MalformedTrailerError",
    "MissingSecurityHeaderError",
    "RequestTimeTooSkewedError",
    "SignatureDoesNotMatchError",
    "SignatureError",
    "XAmzContentSHA256MismatchError",
]


class SignatureError(GarageError):
    """Base of every error raised by :mod:`garage_api.signature`.

    Raised when a request is not authenticated (bad or missing signature, unknown key, stale
    date) or when its payload fails verification (framing, chunk signatures, checksums).
    Subclasses fix ``code`` and ``http_status``.

    Attributes:
        code: the S3 error code, as the XML ``<Code>`` and clients spell it.
        http_status: the HTTP status of the answer.
        message: what was wrong, in words a user can act on. Never contains a secret or a
            signature.
        region: the region the server expected, when the error is about the scope's
            region (``AuthorizationHeaderMalformed``); ``None`` otherwise, and the boundary
            fills in its configured region if its error document needs one.
    """

    code: ClassVar[str] = "InvalidRequest"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, region: str | None = None) -> None:
        self.message = message
        self.region = region
        super().__init__(f"{self.code}: {message}")


class AccessDeniedError(SignatureError):
    """Raised when a request carries no signature at all (Garage has no anonymous access),
    or when a presigned URL has expired."""

    code = "AccessDenied"
    http_status = 403


class AuthorizationHeaderMalformedError(SignatureError):
    """Raised when the ``Authorization`` header or the credential scope is malformed.

    Also raised when the scope names another region than the server's (S3 answers so, and
    clients that guessed ``us-east-1`` read the ``<Region>`` of the answer to retry), another
    service, or a date that is not the day of ``x-amz-date``.
    """

    code = "AuthorizationHeaderMalformed"
    http_status = 400


class AuthorizationQueryParametersError(SignatureError):
    """Raised when the ``X-Amz-*`` query parameters of a presigned URL are malformed
    (missing, duplicated, or ``X-Amz-Expires`` not an integer in 1..604800)."""

    code = "AuthorizationQueryParametersError"
    http_status = 400


class BadDigestError(SignatureError):
    """Raised when the payload does not match its ``Content-MD5`` or ``x-amz-checksum-*``."""

    code = "BadDigest"
    http_status = 400


class IncompleteBodyError(SignatureError):
    """Raised when the body ends before what its framing or declared length promised.

    Truncated aws-chunked bodies (the stream ended inside a chunk, before the final
    zero-length chunk, or inside the trailer), and decoded payloads shorter than
    ``x-amz-decoded-content-length``.
    """

    code = "IncompleteBody"
    http_status = 400


class InvalidAccessKeyIdError(SignatureError):
    """Raised when the access key id of the signature is not a known, live key."""

    code = "InvalidAccessKeyId"
    http_status = 403


class InvalidArgumentError(SignatureError):
    """Raised when ``x-amz-content-sha256`` is neither a sha256 in hex nor a payload mode
    this server knows, or a request carries both a presigned query and an Authorization
    header."""

    code = "InvalidArgument"
    http_status = 400


class InvalidDigestError(SignatureError):
    """Raised when ``Content-MD5`` is not the base64 of 16 bytes."""

    code = "InvalidDigest"
    http_status = 400


class InvalidRequestError(SignatureError):
    """Raised when a request is malformed in a way no narrower code covers.

    Unsupported signature algorithms (SigV2, SigV4a), an ``x-amz-*`` header left out of
    ``SignedHeaders``, bad aws-chunked framing (chunk-size lines, chunk signatures that are
    not hex, data past the end), conflicting checksum headers.
    """

    code = "InvalidRequest"
    http_status = 400


class MalformedTrailerError(SignatureError):
    """Raised when the trailer of an aws-chunked body is malformed or lacks the announced
    checksum (a trailer signature that does not match is ``SignatureDoesNotMatch``)."""

    code = "MalformedTrailerError"
    http_status = 400


class MissingSecurityHeaderError(SignatureError):
    """Raised when a header-signed request lacks ``x-amz-date`` or ``x-amz-content-sha256``."""

    code = "MissingSecurityHeader"
    http_status = 400


class RequestTimeTooSkewedError(SignatureError):
    """Raised when ``x-amz-date`` is further than the allowed skew from the server's clock
    (15 minutes by default, like S3), or a presigned URL is dated in the future."""

    code = "RequestTimeTooSkewed"
    http_status = 403


class SignatureDoesNotMatchError(SignatureError):
    """Raised when a signature does not match: the request's (header or presigned), or a
    chunk's of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body."""

    code = "SignatureDoesNotMatch"
    http_status = 403


class XAmzContentSHA256MismatchError(SignatureError):
    """Raised when the payload's sha256 is not the one ``x-amz-content-sha256`` announced."""

    code = "XAmzContentSHA256Mismatch"
    http_status = 400

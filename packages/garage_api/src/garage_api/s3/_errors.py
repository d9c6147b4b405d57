"""S3 errors: one exception type that carries what the HTTP boundary needs to answer.

Garage: src/api/s3/error.rs and src/api/common/common_error.rs; the codes and statuses are
the ones of the AWS "Error responses" list (S3 API reference, ErrorResponses.html).

Every error the S3 API answers with is an :class:`S3Error`: an ``aws_code`` such as
``"NoSuchKey"``, a human message, the HTTP status, and optionally the resource (the request
path), the region and extra response headers (``Content-Range: bytes */size`` for
``InvalidRange``). It follows h11's ``error_status_hint`` idea: the core that notices the
problem picks the code and status, and the driver only renders it with :meth:`S3Error.to_xml`::

    <?xml version="1.0" encoding="UTF-8"?>
    <Error><Code>NoSuchKey</Code><Message>...</Message><Resource>/b/k</Resource>
    <Region>garage</Region><RequestId>...</RequestId></Error>

Named constructors (``S3Error.no_such_key(key)``, ``S3Error.invalid_range(size)``, ...) cover
the codes the API uses; :meth:`S3Error.from_code` builds any code of :data:`ERROR_CODES` with
its usual status. ``NotModified`` (304) is an error only in the sense that it ends the request
early: it has no body (:attr:`S3Error.has_body`).

Garage has no ``QuotaExceeded`` code: a bucket quota refusal is ``403 AccessDenied`` whose
message says which quota was reached (:meth:`S3Error.quota_reached`); clients that look for it
match on that message, so we keep Garage's behaviour.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["ERROR_CODES", "S3Error"]

# code -> (HTTP status, default message). Messages are AWS's wording where it has one, so a
# client's error text reads the same against Garage as against S3.
_CODES: Final[dict[str, tuple[int, str]]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "BadDigest": (400, "The Content-MD5 or checksum you specified did not match what we received."),
    "BucketAlreadyExists": (
        409,
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again.",
    ),
    "BucketAlreadyOwnedByYou": (
        409,
        "The bucket you tried to create already exists, and you own it.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "ConditionalRequestConflict": (
        409,
        "A conflicting operation occurred. If using PutObject you can retry the request.",
    ),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "EntityTooSmall": (
        400,
        "Your proposed upload is smaller than the minimum allowed object size.",
    ),
    "IncompleteBody": (
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    ),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (
        403,
        "The AWS access key ID you provided does not exist in our records.",
    ),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 or checksum you specified is not valid."),
    "InvalidHeaderValue": (400, "A header has an invalid value."),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found. The part might not have been "
        "uploaded, or the specified entity tag might not have matched the part's entity tag.",
    ),
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
    ),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    ),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    "MetadataTooLarge": (
        400,
        "Your metadata headers exceed the maximum allowed metadata size.",
    ),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchCORSConfiguration": (404, "The CORS configuration does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchLifecycleConfiguration": (404, "The lifecycle configuration does not exist."),
    "NoSuchUpload": (
        404,
        "The specified multipart upload does not exist. The upload ID might be invalid, or "
        "the multipart upload might have been aborted or completed.",
    ),
    "NoSuchWebsiteConfiguration": (
        404,
        "The specified bucket does not have a website configuration.",
    ),
    "NotImplemented": (
        501,
        "A header or query you provided implies functionality that is not implemented.",
    ),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (
        412,
        "At least one of the preconditions you specified did not hold.",
    ),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the server's time is too large.",
    ),
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period.",
    ),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "SlowDown": (503, "Please reduce your request rate."),
    "XAmzContentSHA256Mismatch": (
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
}

ERROR_CODES: Final[Mapping[str, int]] = MappingProxyType(
    {code: status for code, (status, _) in _CODES.items()}
)
"""The S3 error codes this API knows, with the HTTP status each is answered with."""


class S3Error(GarageError):
    """An S3 error response: ``<Error><Code/><Message/>...</Error>`` with an HTTP status.

    Raised by the S3 cores (router, XML codec, range and precondition checks, listing
    tokens) and by the handlers; the HTTP driver catches it and answers with
    :attr:`status`, :attr:`headers` and :meth:`to_xml`. Anything that is not an
    ``S3Error`` is the driver's to turn into ``500 InternalError``.

    Args:
        code: the AWS error code (``"NoSuchKey"``).
        message: a human-readable explanation.
        status: the HTTP status code.
        resource: the bucket or object the error is about (usually the request path); the
            driver may fill it later with :meth:`with_context`.
        region: the region to report (``AuthorizationHeaderMalformed`` carries the expected
            one).
        headers: extra response headers, as ``(name, value)`` pairs.
        details: extra elements of the error document, as ``(tag, text)`` pairs, written
            after ``<Message>`` (S3 adds ``<Key>`` to NoSuchKey, ``<BucketName>`` to
            NoSuchBucket, ``<UploadId>`` to NoSuchUpload).

    Attributes:
        code: as given.
        message: as given.
        status: as given.
        resource: as given.
        region: as given.
        headers: as given, as a tuple.
        details: as given, as a tuple.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        *,
        resource: str | None = None,
        region: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        details: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.resource = resource
        self.region = region
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        self.details: tuple[tuple[str, str], ...] = tuple(details)

    def __repr__(self) -> str:
        return f"S3Error({self.code!r}, {self.message!r}, {self.status})"

    @property
    def has_body(self) -> bool:
        """False for ``304 NotModified``, which must be answered without a body (RFC 7232)."""
        return self.status != 304

    def with_context(self, *, resource: str | None = None, region: str | None = None) -> S3Error:
        """A copy with ``resource`` and ``region`` filled in where this error has none.

        The driver calls this at the boundary, where it knows the request path and the
        configured region; values the raiser already set win.
        """
        return S3Error(
            self.code,
            self.message,
            self.status,
            resource=self.resource if self.resource is not None else resource,
            region=self.region if self.region is not None else region,
            headers=self.headers,
            details=self.details,
        )

    def to_xml(self, request_id: str | None = None) -> bytes:
        """The XML error document, or ``b""`` when the status forbids a body (304).

        Args:
            request_id: reported as ``<RequestId>`` when given.
        """
        if not self.has_body:
            return b""
        root = ET.Element("Error")
        ET.SubElement(root, "Code").text = self.code
        ET.SubElement(root, "Message").text = self.message
        for tag, text in self.details:
            ET.SubElement(root, tag).text = text
        if self.resource is not None:
            ET.SubElement(root, "Resource").text = self.resource
        if self.region is not None:
            ET.SubElement(root, "Region").text = self.region
        if request_id is not None:
            ET.SubElement(root, "RequestId").text = request_id
        body = ET.tostring(root, encoding="unicode")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_code(
        cls,
        code: str,
        message: str | None = None,
        *,
        resource: str | None = None,
        region: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        details: Iterable[tuple[str, str]] = (),
    ) -> S3Error:
        """An error of a known ``code`` with its usual status (and message if none given).

        Raises:
            ValueError: ``code`` is not in :data:`ERROR_CODES`.
        """
        try:
            status, default = _CODES[code]
        except KeyError:
            raise ValueError(f"unknown S3 error code {code!r}") from None
        return cls(
            code,
            default if message is None else message,
            status,
            resource=resource,
            region=region,
            headers=headers,
            details=details,
        )

    @classmethod
    def access_denied(cls, message: str | None = None) -> S3Error:
        """``403 AccessDenied``: the key lacks the permission the endpoint needs."""
        return cls.from_code("AccessDenied", message)

    @classmethod
    def authorization_header_malformed(cls, message: str, *, region: str) -> S3Error:
        """``400 AuthorizationHeaderMalformed``, naming the region the server expects."""
        return cls.from_code("AuthorizationHeaderMalformed", message, region=region)

    @classmethod
    def bad_digest(cls, message: str | None = None) -> S3Error:
        """``400 BadDigest``: Content-MD5 or an ``x-amz-checksum-*`` did not match the body."""
        return cls.from_code("BadDigest", message)

    @classmethod
    def bucket_already_exists(cls, bucket: str) -> S3Error:
        """``409 BucketAlreadyExists``: the name is taken by a bucket of another key."""
        return cls.from_code("BucketAlreadyExists", details=[("BucketName", bucket)])

    @classmethod
    def bucket_already_owned_by_you(cls, bucket: str) -> S3Error:
        """``409 BucketAlreadyOwnedByYou``: the name is already one of this key's buckets."""
        return cls.from_code("BucketAlreadyOwnedByYou", details=[("BucketName", bucket)])

    @classmethod
    def bucket_not_empty(cls, bucket: str) -> S3Error:
        """``409 BucketNotEmpty``: DeleteBucket on a bucket that still holds objects."""
        return cls.from_code("BucketNotEmpty", details=[("BucketName", bucket)])

    @classmethod
    def entity_too_large(cls, message: str | None = None) -> S3Error:
        """``400 EntityTooLarge``: the upload exceeds the maximum object or part size."""
        return cls.from_code("EntityTooLarge", message)

    @classmethod
    def entity_too_small(cls, message: str | None = None) -> S3Error:
        """``400 EntityTooSmall``: CompleteMultipartUpload with a non-final part too small."""
        return cls.from_code("EntityTooSmall", message)

    @classmethod
    def incomplete_body(cls, message: str | None = None) -> S3Error:
        """``400 IncompleteBody``: the body ended before Content-Length bytes."""
        return cls.from_code("IncompleteBody", message)

    @classmethod
    def internal_error(cls, message: str | None = None) -> S3Error:
        """``500 InternalError``: a bug or an unexpected failure (the driver logs it)."""
        return cls.from_code("InternalError", message)

    @classmethod
    def invalid_access_key_id(cls) -> S3Error:
        """``403 InvalidAccessKeyId``: the request is signed with an unknown key id."""
        return cls.from_code("InvalidAccessKeyId")

    @classmethod
    def invalid_argument(cls, message: str) -> S3Error:
        """``400 InvalidArgument``: a query parameter or header has an unusable value."""
        return cls.from_code("InvalidArgument", message)

    @classmethod
    def invalid_bucket_name(cls, bucket: str) -> S3Error:
        """``400 InvalidBucketName``: the name breaks the S3 bucket naming rules."""
        return cls.from_code(
            "InvalidBucketName",
            f"The specified bucket is not valid: {bucket!r}",
            details=[("BucketName", bucket)],
        )

    @classmethod
    def invalid_digest(cls, message: str | None = None) -> S3Error:
        """``400 InvalidDigest``: Content-MD5 or a checksum header does not decode."""
        return cls.from_code("InvalidDigest", message)

    @classmethod
    def invalid_part(cls, message: str | None = None) -> S3Error:
        """``400 InvalidPart``: a completed part is unknown, unfinished or has another ETag."""
        return cls.from_code("InvalidPart", message)

    @classmethod
    def invalid_part_number(cls, part_number: int, parts_count: int) -> S3Error:
        """``416 InvalidPartNumber``: GetObject ``partNumber`` beyond the object's parts."""
        return cls.from_code(
            "InvalidPartNumber",
            f"The requested partnumber is not satisfiable: part {part_number} of an object "
            f"with {parts_count} part(s)",
        )

    @classmethod
    def invalid_part_order(cls) -> S3Error:
        """``400 InvalidPartOrder``: CompleteMultipartUpload parts not in ascending order."""
        return cls.from_code("InvalidPartOrder")

    @classmethod
    def invalid_range(cls, size: int) -> S3Error:
        """``416 InvalidRange`` with ``Content-Range: bytes */size`` (RFC 7233 §4.4)."""
        return cls.from_code("InvalidRange", headers=[("Content-Range", f"bytes */{size}")])

    @classmethod
    def invalid_request(cls, message: str) -> S3Error:
        """``400 InvalidRequest``: Garage's generic "bad request" (its ``bad_request``)."""
        return cls.from_code("InvalidRequest", message)

    @classmethod
    def key_too_long(cls) -> S3Error:
        """``400 KeyTooLongError``: the object key is over 1024 bytes of UTF-8."""
        return cls.from_code("KeyTooLongError")

    @classmethod
    def malformed_xml(cls, detail: str | None = None) -> S3Error:
        """``400 MalformedXML``: a request body is not the XML the endpoint expects."""
        base = _CODES["MalformedXML"][1]
        return cls.from_code("MalformedXML", base if detail is None else f"{base} ({detail})")

    @classmethod
    def max_message_length_exceeded(cls) -> S3Error:
        """``400 MaxMessageLengthExceeded``: an XML request body over the size limit."""
        return cls.from_code("MaxMessageLengthExceeded")

    @classmethod
    def method_not_allowed(cls, method: str) -> S3Error:
        """``405 MethodNotAllowed``: no S3 operation uses this HTTP method."""
        return cls.from_code("MethodNotAllowed", f"The specified method is not allowed: {method}")

    @classmethod
    def missing_content_length(cls) -> S3Error:
        """``411 MissingContentLength``: an upload without Content-Length nor chunked body."""
        return cls.from_code("MissingContentLength")

    @classmethod
    def no_such_bucket(cls, bucket: str) -> S3Error:
        """``404 NoSuchBucket``: no bucket by that name is visible to the request's key."""
        return cls.from_code(
            "NoSuchBucket", f"Bucket not found: {bucket}", details=[("BucketName", bucket)]
        )

    @classmethod
    def no_such_key(cls, key: str | None = None) -> S3Error:
        """``404 NoSuchKey``: no current version of the object (or a delete marker)."""
        return cls.from_code("NoSuchKey", details=[] if key is None else [("Key", key)])

    @classmethod
    def no_such_upload(cls, upload_id: str | None = None) -> S3Error:
        """``404 NoSuchUpload``: the upload id is malformed, aborted, completed or unknown."""
        return cls.from_code(
            "NoSuchUpload", details=[] if upload_id is None else [("UploadId", upload_id)]
        )

    @classmethod
    def not_implemented(cls, operation: str) -> S3Error:
        """``501 NotImplemented`` naming the S3 operation Garage routes but does not do."""
        return cls.from_code("NotImplemented", f"Unimplemented action: {operation}")

    @classmethod
    def not_modified(cls) -> S3Error:
        """``304 NotModified`` (no body): a GET/HEAD precondition says the cache is fresh."""
        return cls.from_code("NotModified")

    @classmethod
    def precondition_failed(cls) -> S3Error:
        """``412 PreconditionFailed``: an If-* or ``x-amz-copy-source-if-*`` did not hold."""
        return cls.from_code("PreconditionFailed")

    @classmethod
    def quota_reached(cls, message: str) -> S3Error:
        """``403 AccessDenied`` for a bucket quota, as Garage answers (there is no S3 code).

        Garage: ``check_quotas`` in src/api/s3/put.rs ("Bucket size quota is reached...").
        """
        return cls.from_code("AccessDenied", message)

    @classmethod
    def request_time_too_skewed(cls, message: str | None = None) -> S3Error:
        """``403 RequestTimeTooSkewed``: the signed date is too far from the server's clock."""
        return cls.from_code("RequestTimeTooSkewed", message)

    @classmethod
    def service_unavailable(cls, message: str | None = None) -> S3Error:
        """``503 ServiceUnavailable``: no quorum, or a timeout talking to other nodes."""
        return cls.from_code("ServiceUnavailable", message)

    @classmethod
    def signature_does_not_match(cls, message: str | None = None) -> S3Error:
        """``403 SignatureDoesNotMatch``: a SigV4 signature (or chunk signature) is wrong."""
        return cls.from_code("SignatureDoesNotMatch", message)

    @classmethod
    def slow_down(cls) -> S3Error:
        """``503 SlowDown``: the node refuses more load for now; clients back off."""
        return cls.from_code("SlowDown")

    @classmethod
    def x_amz_content_sha256_mismatch(cls) -> S3Error:
        """``400 XAmzContentSHA256Mismatch``: the body's sha256 is not the signed one."""
        return cls.from_code("XAmzContentSHA256Mismatch")

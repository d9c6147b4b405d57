"""The headers stored with an object, and how they come back (design §10.3, §10.4).

PutObject, CreateMultipartUpload and CopyObject (``REPLACE``) keep the standard content
headers and the user metadata (``x-amz-meta-*``) of the request; GetObject and HeadObject
return them, with the ``response-*`` query overrides applied last.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Final

from ._errors import S3Error

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "STORED_HEADERS",
    "USER_META_PREFIX",
    "http_date",
    "object_headers",
    "quote_etag",
    "unquote_etag",
]

#: Standard headers kept with an object (lower-case).
STORED_HEADERS: Final = frozenset(
    {
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-type",
        "expires",
        "x-amz-website-redirect-location",
    }
)
#: User metadata headers.
USER_META_PREFIX: Final = "x-amz-meta-"
#: S3's limit on the size of user metadata (names and values, in bytes).
MAX_USER_META_BYTES: Final = 2048


def object_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The headers of a request to store with the object, in request order.

    ``aws-chunked`` is removed from ``Content-Encoding`` (it describes the upload, not the
    object); a missing ``Content-Type`` becomes ``binary/octet-stream`` (as S3).

    Raises:
        S3Error: ``InvalidArgument`` for a website redirect that is not ``/...`` or an
            http(s) URL; ``MetadataTooLarge`` (400) when user metadata exceeds 2 KiB.
    """
    kept: list[tuple[str, str]] = []
    meta_bytes = 0
    for name, value in headers:
        lname = name.lower()
        if lname == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip().lower() != "aws-chunked"]
            if not codings:
                continue
            value = ", ".join(codings)
        if lname == "x-amz-website-redirect-location" and not value.startswith(
            ("/", "http://", "https://")
        ):
            raise S3Error.from_code(
                "InvalidArgument",
                "x-amz-website-redirect-location must start with /, http:// or https://",
            )
        if lname.startswith(USER_META_PREFIX):
            meta_bytes += len(lname) - len(USER_META_PREFIX) + len(value.encode())
            kept.append((lname, value))
        elif lname in STORED_HEADERS:
            kept.append((lname, value))
    if meta_bytes > MAX_USER_META_BYTES:
        raise S3Error.from_code(
            "MetadataTooLarge",
            f"user metadata is {meta_bytes} bytes; the limit is {MAX_USER_META_BYTES}",
        )
    if not any(n == "content-type" for n, _ in kept):
        kept.insert(0, ("content-type", "binary/octet-stream"))
    return tuple(kept)


def quote_etag(etag: str) -> str:
    """The ETag as sent in headers and XML: in double quotes."""
    return f'"{etag}"'


def unquote_etag(value: str) -> str:
    """An ETag as a client sent it, without quotes (and without a ``W/`` weak prefix)."""
    value = value.strip()
    value = value.removeprefix("W/")
    return value.strip('"')


def http_date(ms: int) -> str:
    """An HTTP date (``Last-Modified``) from milliseconds since the epoch."""
    return format_datetime(datetime.fromtimestamp(ms / 1000, tz=UTC), usegmt=True)

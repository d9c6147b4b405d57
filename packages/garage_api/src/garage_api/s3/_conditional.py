"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

Garage: ``PreconditionHeaders`` of src/api/s3/get.rs and copy.rs (design §10.4, §10.7);
RFC 7232 §6 for the order of evaluation. Pure: the caller gives the headers and the
object's ETag and last-modified time, and gets a :class:`Precondition` back.

Order of evaluation (RFC 7232 §6)
---------------------------------
1. If-Match present: if no listed ETag matches (or ``*`` and the object exists) → 412.
2. Else If-Unmodified-Since present: modified after that date → 412.
3. If-None-Match present: an ETag matches (or ``*`` and the object exists) → 304 for
   GET/HEAD, 412 otherwise.
4. Else If-Modified-Since present (GET/HEAD only): not modified after that date → 304.
5. Otherwise proceed.

AWS documents one deviation for GetObject (If-None-Match false but If-Modified-Since true
→ 304); like Garage we follow the RFC, where If-None-Match overrides If-Modified-Since.

Details
-------
- ETags are compared without their quotes; ``W/`` weak tags never satisfy If-Match (strong
  comparison) but do match in If-None-Match (weak comparison).
- Dates are HTTP-dates (``email.utils``). HTTP-dates have one-second resolution, so the
  object's millisecond timestamp is truncated to the second before comparing: a client
  sending back the ``Last-Modified`` it received must get 304, not 200. A date that does not
  parse makes the header ignored (RFC 7232 §3.3, §3.4).
- CopyObject and UploadPartCopy read ``x-amz-copy-source-if-*``, the same four conditions
  on the source object; any failure is ``412 PreconditionFailed`` (never 304).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from ._errors import S3Error
from ._router import header_values

if TYPE_CHECKING:
    from ._router import Headers

__all__ = ["Precondition", "Preconditions"]


class Precondition(enum.Enum):
    """What the preconditions of a request say to do."""

    PROCEED = "proceed"
    """Every condition holds (or there is none): answer normally."""
    NOT_MODIFIED = "not_modified"
    """Answer ``304 Not Modified`` without a body (GET and HEAD only)."""
    FAILED = "failed"
    """Answer ``412 Precondition Failed``."""


def _etag_list(values: list[str]) -> tuple[str, ...] | None:
    """The entity tags of every occurrence of an If-Match/If-None-Match header."""
    if not values:
        return None
    return tuple(tag.strip() for value in values for tag in value.split(",") if tag.strip())


def _http_date_s(values: list[str]) -> int | None:
    """An HTTP-date header as Unix seconds, or None if absent or not a valid date."""
    if not values:
        return None
    try:
        date = parsedate_to_datetime(values[-1].strip())
    except (TypeError, ValueError, IndexError):
        return None
    if date.tzinfo is None:
        # asctime dates carry no zone; every HTTP-date is GMT (RFC 7231 §7.1.1.1).
        date = date.replace(tzinfo=UTC)
    return int(date.timestamp())


def _unquote(tag: str) -> str:
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        return tag[1:-1]
    return tag


def _strong_match(tags: tuple[str, ...], etag: str | None) -> bool:
    """If-Match: ``*`` matches any existing object, a weak tag never matches."""
    if etag is None:
        return False
    return any(tag == "*" or (not tag.startswith("W/") and _unquote(tag) == etag) for tag in tags)


def _weak_match(tags: tuple[str, ...], etag: str | None) -> bool:
    """If-None-Match: ``*`` matches any existing object, ``W/`` is ignored."""
    if etag is None:
        return False
    return any(tag == "*" or _unquote(tag.removeprefix("W/")) == etag for tag in tags)


@dataclass(frozen=True, slots=True)
class Preconditions:
    """The four conditional headers of a request, parsed.

    Build it with :meth:`from_headers` (GetObject, HeadObject, PutObject...) or
    :meth:`from_copy_source_headers` (CopyObject, UploadPartCopy), then ask
    :meth:`evaluate` or one of the ``check`` methods.

    Attributes:
        if_match: the entity tags of If-Match as sent (quoted), or None if absent.
        if_none_match: the entity tags of If-None-Match, or None if absent.
        if_modified_since_s: If-Modified-Since in Unix seconds, or None if absent/invalid.
        if_unmodified_since_s: If-Unmodified-Since in Unix seconds, or None.
    """

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None
    if_modified_since_s: int | None = None
    if_unmodified_since_s: int | None = None

    @classmethod
    def from_headers(cls, headers: Headers) -> Preconditions:
        """The ``If-*`` headers of a request."""
        return cls._parse(headers, "if-")

    @classmethod
    def from_copy_source_headers(cls, headers: Headers) -> Preconditions:
        """The ``x-amz-copy-source-if-*`` headers of a CopyObject or UploadPartCopy."""
        return cls._parse(headers, "x-amz-copy-source-if-")

    @classmethod
    def _parse(cls, headers: Headers, prefix: str) -> Preconditions:
        return cls(
            if_match=_etag_list(header_values(headers, prefix + "match")),
            if_none_match=_etag_list(header_values(headers, prefix + "none-match")),
            if_modified_since_s=_http_date_s(header_values(headers, prefix + "modified-since")),
            if_unmodified_since_s=_http_date_s(header_values(headers, prefix + "unmodified-since")),
        )

    @property
    def is_empty(self) -> bool:
        """True if the request has no condition at all."""
        return (
            self.if_match is None
            and self.if_none_match is None
            and self.if_modified_since_s is None
            and self.if_unmodified_since_s is None
        )

    def evaluate(
        self,
        etag: str | None,
        last_modified_ms: int | None,
        *,
        read: bool = True,
    ) -> Precondition:
        """Evaluates the conditions against the current object, in RFC 7232 order.

        Args:
            etag: the object's ETag without quotes, or None if there is no object (a
                conditional PutObject on a new key).
            last_modified_ms: the object's last-modified time in Unix milliseconds, or None
                if there is no object.
            read: True for GET and HEAD. For other methods a matching If-None-Match is a
                412 rather than a 304, and If-Modified-Since is ignored (RFC 7232 §3.2,
                §3.3).
        """
        modified_s = None if last_modified_ms is None else last_modified_ms // 1000
        if self.if_match is not None:
            if not _strong_match(self.if_match, etag):
                return Precondition.FAILED
        elif (
            self.if_unmodified_since_s is not None
            and modified_s is not None
            and modified_s > self.if_unmodified_since_s
        ):
            return Precondition.FAILED

        if self.if_none_match is not None:
            if _weak_match(self.if_none_match, etag):
                return Precondition.NOT_MODIFIED if read else Precondition.FAILED
        elif (
            read
            and self.if_modified_since_s is not None
            and modified_s is not None
            and modified_s <= self.if_modified_since_s
        ):
            return Precondition.NOT_MODIFIED
        return Precondition.PROCEED

    def check(self, etag: str | None, last_modified_ms: int | None, *, read: bool = True) -> None:
        """Like :meth:`evaluate`, raising unless the request may proceed.

        Raises:
            S3Error: ``304 NotModified`` or ``412 PreconditionFailed``.
        """
        outcome = self.evaluate(etag, last_modified_ms, read=read)
        if outcome is Precondition.NOT_MODIFIED:
            raise S3Error.not_modified()
        if outcome is Precondition.FAILED:
            raise S3Error.precondition_failed()

    def check_copy_source(self, etag: str, last_modified_ms: int) -> None:
        """Checks ``x-amz-copy-source-if-*`` against the source object: any failure is 412.

        Raises:
            S3Error: ``412 PreconditionFailed``.
        """
        if self.evaluate(etag, last_modified_ms) is not Precondition.PROCEED:
            raise S3Error.precondition_failed()

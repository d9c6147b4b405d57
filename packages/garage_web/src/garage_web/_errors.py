"""Errors of the website server, and the small HTML page a visitor sees for one.

Garage: ``error_to_res`` in src/web/web_server.rs. A website answers people with browsers,
not S3 clients: an error is a short HTML page (never the S3 XML document), unless the
bucket has an error document, which the server serves instead for a ``4xx`` of a GET.

What a page may say: the status, and a message that is either fixed (unknown site, bad
method) or the S3 read path's message about the requested object. Nothing tells an
unknown host from a bucket that exists but is not a website, so a private bucket's name,
let alone its contents, is never revealed. Every message is HTML-escaped.
"""

from __future__ import annotations

import html
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from garage_api.s3 import S3Error

__all__ = ["ALLOWED_METHODS", "WebError", "error_page"]

ALLOWED_METHODS: Final = ("GET", "HEAD", "OPTIONS")
"""The methods a website answers (Garage: ``serve_file``)."""

#: The message of every 404 about the site itself: the same for an unknown host, a deleted
#: bucket and a bucket without website access, so that none can be told from the others.
_NO_SUCH_WEBSITE: Final = "There is no website at this address."


class WebError(GarageError):
    """A request the website server answers with an error page.

    Args:
        status: the HTTP status (``4xx``/``5xx``, or ``304`` which has no page).
        message: what went wrong, for the visitor (plain text; escaped in the page).
        headers: extra response headers (``Allow`` of a 405, ``ETag`` of a 304...).
    """

    def __init__(self, status: int, message: str, *, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)

    def __repr__(self) -> str:
        return f"WebError({self.status}, {self.message!r})"

    @property
    def is_client_error(self) -> bool:
        """True for ``4xx``: the ones a bucket's error document stands in for."""
        return 400 <= self.status < 500

    @classmethod
    def bad_request(cls, message: str) -> WebError:
        """``400``: a request no website can answer (no Host, a path that is no path)."""
        return cls(400, message)

    @classmethod
    def not_found(cls, message: str = _NO_SUCH_WEBSITE) -> WebError:
        """``404``: no website at this host (by default), or no such page."""
        return cls(404, message)

    @classmethod
    def method_not_allowed(cls, method: str) -> WebError:
        """``405`` with ``Allow``: websites are read with GET, HEAD and OPTIONS only."""
        return cls(
            405,
            f"the method {method} is not allowed on a website",
            headers=[("allow", ", ".join(ALLOWED_METHODS))],
        )

    @classmethod
    def from_s3(cls, error: S3Error) -> WebError:
        """The website's version of an error of the S3 read path (same status, message and
        headers: ``Content-Range`` of a 416, ``ETag`` of a 304)."""
        return cls(error.status, error.message, headers=error.headers)


def error_page(status: int, message: str) -> bytes:
    """The HTML page of an error: its status, reason phrase and ``message``, escaped."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    title = html.escape(f"{status} {reason}")
    text = html.escape(message)
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8"><title>'
        f"{title}</title></head>\n"
        f"<body><h1>{title}</h1>\n<p>{text}</p>\n"
        "<hr><p>Garage static website</p></body></html>\n"
    ).encode()

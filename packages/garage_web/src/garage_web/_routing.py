"""Which bucket and which object a website request names (Garage: src/web/web_server.rs).

Pure and synchronous: the server passes the ``Host`` header, the raw path and the bucket's
index document, and gets names and keys back, or a :class:`WebError` to answer with.

Theory of operation
-------------------
1. **Bucket.** The ``Host`` header (required) loses its port (``[::1]:3902`` → ``[::1]``)
   and a trailing root dot, and is lower-cased. Under ``s3_web.root_domain`` (label-wise:
   ``blog.web.example.com`` under ``web.example.com``) the labels before the root domain
   are the bucket name; any other host is taken whole as the bucket name, so that a bucket
   with the global alias ``www.example.com`` serves ``http://www.example.com/``. The server
   then looks the name up among **global** aliases only: local aliases belong to one
   access key, and an anonymous visitor has none.
2. **Key.** The path must start with ``/``; it is percent-decoded as UTF-8 (``+`` stays a
   plus, as in S3 paths). Then, as S3 website endpoints do (AWS: "Configuring an index
   document"):

   - ``/`` is the index document (nothing can be stored under the empty key);
   - a path ending in ``/`` is that "folder"'s index document, ``dir/`` + index;
   - any other path is the key itself, with an :class:`ImplicitRedirect` candidate: if
     the key does not exist but ``<key>/<index>`` does, the visitor is sent (302) to
     ``<path>/``.

Invariant: a key comes only from the decoded path, so a request can only ever name
objects of the bucket its Host names; ``..`` and ``//`` are plain key characters (an
object store has no directories to escape from). A redirect :attr:`~ImplicitRedirect.location`
is always a path on the same site: it starts with exactly one ``/`` and contains no
backslash, so no browser can read it as another host (``//evil.example`` or
``/\\evil.example`` would be).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from garage_api.s3 import MAX_KEY_BYTES, host_to_bucket

from ._errors import WebError

__all__ = [
    "ImplicitRedirect",
    "WebTarget",
    "authority_to_host",
    "host_to_bucket_name",
    "path_to_keys",
]

# Characters left as they are in a redirect location: RFC 3986 pchar sub-delims and "/"
# (unreserved ones are never quoted). "%" is quoted, so the location decodes back to the key.
_SAFE_PATH_CHARS: Final = "/!$&'()*+,;=:@"


@dataclass(frozen=True, slots=True)
class ImplicitRedirect:
    """Where to send a visitor when a key is missing but it is a "folder" with an index.

    Attributes:
        key: the index document to look for (``dir/index.html``).
        location: the ``Location`` of the 302 answer (``/dir/``), a path on this site.
    """

    key: str
    location: str


@dataclass(frozen=True, slots=True)
class WebTarget:
    """The object a request path names.

    Attributes:
        key: the object key to serve.
        redirect: the implicit redirect to try when ``key`` does not exist, if any.
    """

    key: str
    redirect: ImplicitRedirect | None = None


def authority_to_host(authority: str) -> str:
    """The host of a ``Host`` header: port and trailing root dot removed, lower-cased.

    Raises:
        WebError: ``400`` for an empty host or a malformed IPv6 literal.
    """
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :] if end >= 0 else None
        if rest is None or (rest and not rest.startswith(":")):
            raise WebError.bad_request(f"Host {authority!r} has an illegal format")
        host = authority[: end + 1]
    else:
        host = authority.split(":", 1)[0].rstrip(".")
    if not host:
        raise WebError.bad_request("the Host header names no host")
    return host.lower()


def host_to_bucket_name(host: str, root_domain: str) -> str:
    """The bucket name a host (see :func:`authority_to_host`) designates: the labels before
    ``root_domain`` when the host is under it, else the whole host."""
    return host_to_bucket(host, root_domain) or host


def _redirect_location(key: str) -> str:
    """``/<key>/`` percent-encoded, safe to send as a same-site ``Location``."""
    encoded = quote(key, safe=_SAFE_PATH_CHARS)
    if encoded.startswith("/"):
        # A key starting with "/" would make "//host/": a protocol-relative URL.
        encoded = "%2F" + encoded[1:]
    return f"/{encoded}/"


def path_to_keys(raw_path: str, index_document: str) -> WebTarget:
    """The object a request path names (see the module's theory of operation).

    Args:
        raw_path: the request path, still percent-encoded, without the query.
        index_document: the bucket's index document suffix (``index.html``).

    Returns:
        The key, and the implicit redirect to try if it does not exist.

    Raises:
        WebError: ``400`` for a path not starting with ``/`` or not valid UTF-8 once
            decoded; ``404`` for a key longer than S3 allows (no object can have it).
    """
    if not raw_path.startswith("/"):
        raise WebError.bad_request("the path must start with a / (slash)")
    try:
        base_key = unquote(raw_path[1:], encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise WebError.bad_request("the path is not valid UTF-8 once percent-decoded") from None
    if not base_key:
        target = WebTarget(index_document)
    elif base_key.endswith("/"):
        target = WebTarget(base_key + index_document)
    else:
        candidate = f"{base_key}/{index_document}"
        redirect = None
        if len(candidate.encode()) <= MAX_KEY_BYTES:
            redirect = ImplicitRedirect(candidate, _redirect_location(base_key))
        target = WebTarget(base_key, redirect)
    if len(target.key.encode()) > MAX_KEY_BYTES:
        raise WebError.not_found()
    return target

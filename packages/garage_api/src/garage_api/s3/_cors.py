"""CORS for buckets: which rule lets a browser's request through, and the headers that say so.

Garage: src/api/s3/cors.rs (design §10.2); AWS: "Using cross-origin resource sharing (CORS)"
in the S3 user guide, and the OPTIONS object appendix of the API reference. Pure: rules,
methods and headers in, header pairs out (or an :class:`S3Error`); the S3 server
(``_api.py``) and the website server call it.

Theory of operation
-------------------
A bucket's CORS configuration is an ordered list of :class:`CorsRule`. A browser asks in
two ways:

1. **Preflight** (``OPTIONS`` with ``Origin``, ``Access-Control-Request-Method`` and maybe
   ``Access-Control-Request-Headers``): the **first** rule whose ``AllowedOrigin`` matches
   the origin, whose ``AllowedMethod`` holds the requested method, and whose
   ``AllowedHeader`` patterns cover **every** requested header answers it
   (:func:`preflight_headers`). No such rule is ``403 AccessForbidden``, a preflight without
   ``Origin`` or requested method is ``400 BadRequest`` (AWS's codes).
2. **Actual request** (any method with an ``Origin``): the first rule matching the origin
   and the request's own method decorates the handler's successful response
   (:func:`response_headers`); no match adds nothing, and the browser then refuses to hand
   the response to the page.

Patterns: an ``AllowedOrigin`` or ``AllowedHeader`` may hold one ``*`` standing for any
run of characters (``https://*.example.com``, ``x-amz-*``); ``*`` alone matches
everything. Origins match case-sensitively (browsers send them lower-cased already); header
names match case-insensitively (RFC 9110 §5.1).

The answer follows AWS rather than Garage where they differ: ``Access-Control-Allow-Origin``
is the request's origin (a browser accepts only one origin there, never a list), or ``*``
when the rule allows every origin; ``Access-Control-Allow-Credentials: true`` goes with an
echoed origin; a preflight's ``Access-Control-Allow-Headers`` repeats the requested headers
(all of them are allowed, or no rule would match); and ``Vary`` names the request headers
the answer depends on, so that caches keep one answer per origin.

Invariant: every value written into a response header comes from the request itself or from
a rule that :func:`check_cors_rules` accepted (methods from :data:`CORS_METHODS`, header
names made of RFC 9110 token characters), so no stored rule can inject a header.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from ._errors import S3Error
from ._router import header_values

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from garage_model.bucket_table import CorsRule

    from ._router import Headers

__all__ = [
    "CORS_METHODS",
    "MAX_CORS_RULES",
    "check_cors_rules",
    "find_cors_rule",
    "parse_request_headers",
    "permissive_preflight_headers",
    "preflight_headers",
    "response_headers",
    "wildcard_match",
]

CORS_METHODS: Final = ("GET", "PUT", "POST", "DELETE", "HEAD")
"""The methods an ``AllowedMethod`` may name (AWS: CORSRule, AllowedMethods)."""

# AWS: "You can add up to 100 rules to the configuration" (Elements of a CORS configuration).
MAX_CORS_RULES: Final = 100

# AWS: CORSRule ID "cannot be longer than 255 characters".
_MAX_ID_CHARS: Final = 255

# A header name is an RFC 9110 §5.6.2 token. (``*`` is a token character too: an
# AllowedHeader uses it as its wildcard.)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# What a CORS answer depends on besides the URL; AWS sends the same list.
_VARY: Final = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"

_ALLOW_ORIGIN: Final = "access-control-allow-origin"
_ALLOW_METHODS: Final = "access-control-allow-methods"
_ALLOW_HEADERS: Final = "access-control-allow-headers"
_ALLOW_CREDENTIALS: Final = "access-control-allow-credentials"
_EXPOSE_HEADERS: Final = "access-control-expose-headers"
_MAX_AGE: Final = "access-control-max-age"


# ---------------------------------------------------------------------- matching


def wildcard_match(pattern: str, value: str) -> bool:
    """Whether ``value`` matches ``pattern``, where each ``*`` stands for any run of
    characters (possibly empty) and every other character for itself."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    head, *middle, tail = parts
    if len(value) < len(head) + len(tail):
        return False
    if not value.startswith(head) or not value.endswith(tail):
        return False
    pos, end = len(head), len(value) - len(tail)
    for part in middle:
        # Leftmost match of each middle piece is enough: ``*`` only ever widens.
        found = value.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def _origin_allowed(rule: CorsRule, origin: str) -> bool:
    return any(wildcard_match(pattern, origin) for pattern in rule.allow_origins)


def _method_allowed(rule: CorsRule, method: str) -> bool:
    # "*" is not a valid AllowedMethod for S3, but Garage matches it: keep configurations
    # written elsewhere working.
    return any(allowed in ("*", method) for allowed in rule.allow_methods)


def _header_allowed(rule: CorsRule, name: str) -> bool:
    lowered = name.lower()
    return any(wildcard_match(pattern.lower(), lowered) for pattern in rule.allow_headers)


def find_cors_rule(
    rules: Iterable[CorsRule], origin: str, method: str, request_headers: Iterable[str] = ()
) -> CorsRule | None:
    """The first rule that allows ``origin`` to send ``method`` with ``request_headers``.

    Args:
        rules: the bucket's rules, in order.
        origin: the request's ``Origin``.
        method: the actual request's method (``Access-Control-Request-Method`` for a
            preflight), upper-case.
        request_headers: header names the browser will send (a preflight's
            ``Access-Control-Request-Headers``); every one must be allowed.

    Returns:
        The rule, or None when none matches.
    """
    wanted = tuple(request_headers)
    for rule in rules:
        if (
            _origin_allowed(rule, origin)
            and _method_allowed(rule, method)
            and all(_header_allowed(rule, h) for h in wanted)
        ):
            return rule
    return None


def parse_request_headers(value: str | None) -> tuple[str, ...]:
    """The names of an ``Access-Control-Request-Headers`` value, lower-cased, in order."""
    if value is None:
        return ()
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


def _first(headers: Headers, name: str) -> str | None:
    values = header_values(headers, name)
    return values[0] if values else None


def _rule_headers(rule: CorsRule, origin: str) -> list[tuple[str, str]]:
    """The headers every answer of ``rule`` carries: origin, methods, credentials, vary."""
    if "*" in rule.allow_origins:
        out = [(_ALLOW_ORIGIN, "*")]
    else:
        out = [(_ALLOW_ORIGIN, origin), (_ALLOW_CREDENTIALS, "true")]
    out.append((_ALLOW_METHODS, ", ".join(rule.allow_methods)))
    return out


# ---------------------------------------------------------------------- answers


def preflight_headers(rules: Sequence[CorsRule] | None, headers: Headers) -> list[tuple[str, str]]:
    """The headers of a ``200`` answer to a preflight, from the bucket's rules.

    Args:
        rules: the bucket's CORS rules, or None when it has no CORS configuration.
        headers: the preflight's request headers.

    Returns:
        ``Access-Control-Allow-Origin``, ``-Methods``, ``-Headers`` (the requested ones, if
        any), ``-Expose-Headers`` and ``-Max-Age`` (when the rule sets them),
        ``-Allow-Credentials`` (with an echoed origin) and ``Vary``.

    Raises:
        S3Error: ``400 BadRequest`` without ``Origin`` or ``Access-Control-Request-Method``;
            ``403 AccessForbidden`` when the bucket has no rules or none matches.
    """
    origin = _first(headers, "origin")
    if origin is None:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.", 400)
    method = _first(headers, "access-control-request-method")
    if method is None:
        raise S3Error("BadRequest", "Invalid Access-Control-Request-Method: null", 400)
    if rules is None:
        raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", 403)
    requested = parse_request_headers(_first(headers, "access-control-request-headers"))
    rule = find_cors_rule(rules, origin, method.strip(), requested)
    if rule is None:
        raise S3Error(
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the "
            "evaluation of Origin, request method / Access-Control-Request-Method or "
            "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            403,
        )
    out = _rule_headers(rule, origin)
    if requested:
        out.append((_ALLOW_HEADERS, ", ".join(requested)))
    if rule.expose_headers:
        out.append((_EXPOSE_HEADERS, ", ".join(rule.expose_headers)))
    if rule.max_age_seconds is not None:
        out.append((_MAX_AGE, str(rule.max_age_seconds)))
    out.append(("vary", _VARY))
    return out


def permissive_preflight_headers(
    headers: Headers, methods: Sequence[str] = CORS_METHODS
) -> list[tuple[str, str]]:
    """The headers of a preflight answer that allows everything (Garage's answer for a name
    that is no global alias: maybe a key's local alias, which an unauthenticated preflight
    cannot resolve; and for the service, ListBuckets, with ``methods=("GET",)``).

    The requested headers are repeated in ``Access-Control-Allow-Headers``: a ``*`` there
    would not cover ``Authorization`` (Fetch standard), which every S3 call sends.
    """
    out = [(_ALLOW_ORIGIN, "*"), (_ALLOW_METHODS, ", ".join(methods))]
    requested = parse_request_headers(_first(headers, "access-control-request-headers"))
    if requested:
        out.append((_ALLOW_HEADERS, ", ".join(requested)))
    return out


def response_headers(
    rules: Sequence[CorsRule] | None, method: str, headers: Headers
) -> list[tuple[str, str]]:
    """The CORS headers to add to a successful answer to an actual (not preflight) request.

    Args:
        rules: the bucket's CORS rules, or None when it has none.
        method: the request's method.
        headers: the request's headers.

    Returns:
        Nothing when the request has no ``Origin`` or no rule allows it; otherwise
        ``Access-Control-Allow-Origin``, ``-Methods``, ``-Headers`` (the rule's, if any),
        ``-Expose-Headers`` (if any), ``-Allow-Credentials`` (with an echoed origin) and
        ``Vary``.
    """
    origin = _first(headers, "origin")
    if origin is None or not rules:
        return []
    rule = find_cors_rule(rules, origin, method.upper())
    if rule is None:
        return []
    out = _rule_headers(rule, origin)
    if rule.allow_headers:
        out.append((_ALLOW_HEADERS, ", ".join(rule.allow_headers)))
    if rule.expose_headers:
        out.append((_EXPOSE_HEADERS, ", ".join(rule.expose_headers)))
    out.append(("vary", _VARY))
    return out


# ---------------------------------------------------------------------- validation


def _invalid(message: str) -> S3Error:
    return S3Error.invalid_request(message)


def check_cors_rules(rules: Sequence[CorsRule]) -> None:
    """Checks a PutBucketCors configuration as S3 does.

    Raises:
        S3Error: ``MalformedXML`` for no rule, or a rule without an ``AllowedOrigin`` or
            an ``AllowedMethod``; ``InvalidRequest`` for more than :data:`MAX_CORS_RULES`
            rules, an ``ID`` over 255 characters, a method outside :data:`CORS_METHODS`,
            an origin or allowed header with more than one ``*``, or a header name that
            is not an HTTP token.
    """
    if not rules:
        raise S3Error.malformed_xml("a CORS configuration has at least one CORSRule")
    if len(rules) > MAX_CORS_RULES:
        raise _invalid(f"a CORS configuration has at most {MAX_CORS_RULES} rules")
    for rule in rules:
        if not rule.allow_origins or not rule.allow_methods:
            raise S3Error.malformed_xml("a CORSRule has an AllowedOrigin and an AllowedMethod")
        if rule.id is not None and len(rule.id) > _MAX_ID_CHARS:
            raise _invalid(f"a CORSRule ID is at most {_MAX_ID_CHARS} characters")
        for method in rule.allow_methods:
            if method not in CORS_METHODS:
                raise _invalid(
                    f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
                )
        for origin in rule.allow_origins:
            if not origin:
                raise _invalid("an AllowedOrigin is empty")
            if origin.count("*") > 1:
                raise _invalid(f'AllowedOrigin "{origin}" can not have more than one wildcard.')
        for header in rule.allow_headers:
            if not _TOKEN.fullmatch(header):
                raise _invalid(f"Invalid HTTP header name in AllowedHeader: {header!r}")
            if header.count("*") > 1:
                raise _invalid(f'AllowedHeader "{header}" can not have more than one wildcard.')
        for header in rule.expose_headers:
            if not _TOKEN.fullmatch(header):
                raise _invalid(f"Invalid HTTP header name in ExposeHeader: {header!r}")

"""AWS Signature Version 4: parse, canonicalise and verify a request (sans-IO).

Garage: src/api/common/signature/{mod.rs,payload.rs}. AWS: "Authenticating Requests (AWS
Signature Version 4)" in the S3 API reference (sig-v4-header-based-auth.html,
sigv4-query-string-auth.html, sigv4-UsingHTTPPOST.html).

Theory of operation
-------------------
A request proves it holds a key's secret by an HMAC-SHA256 over a *string to sign*::

    AWS4-HMAC-SHA256 \\n <x-amz-date> \\n <scope> \\n hex(sha256(<canonical request>))

with the *signing key* ``HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
"aws4_request")``. The canonical request is::

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n \\n
    signed header names \\n payload hash

Verification is split in two so that the async driver can look the key up in between:

1. :func:`parse_auth` reads the signature's pieces from the ``Authorization`` header, the
   ``X-Amz-*`` query parameters of a presigned URL (checked first, as Garage does, because a
   browser may add an unrelated ``Authorization`` header), or the fields of a browser POST
   form (:func:`parse_post_form`), and builds the string to sign. It needs no secret.
2. The driver resolves ``ParsedAuth.key_id`` in the key table.
3. :func:`verify` checks scope, region, service and clock against an :class:`AuthPolicy`,
   recomputes the signature with the secret, compares in constant time, and returns an
   :class:`Authenticated` that carries what the payload decoder needs (payload mode, seed
   signature, signing key).

Invariants and choices
----------------------
- Canonical URI: S3 signs the raw path as sent (no normalisation, no second encoding);
  every other service, K2V included, signs the raw path URI-encoded once more
  (``double_encode_path``), which is what the AWS SDKs do. Garage never normalises ``..``
  or ``//`` since K2V partition keys may contain them.
- Canonical query: each ``k=v`` of the raw query is percent-decoded (``+`` is a space, as
  in Garage's form decoding) then URI-encoded the AWS way (everything but ``A-Za-z0-9-_.~``),
  and the pairs are sorted by key, then value: re-encoding makes the check independent
  of how the client escaped the URL. Presigned URLs leave ``X-Amz-Signature`` out.
- Canonical headers: ``name:value`` with values trimmed and runs of whitespace collapsed,
  repeated headers joined with ``,`` (as botocore does). ``host`` and every ``x-amz-*``
  header present must be signed, otherwise a proxy could add unsigned meaning to a request;
  ``content-type`` need not be (minio-go does not sign it).
- Clock: header-signed requests must be within ``max_skew_s`` (15 min, like S3) of the
  server clock; presigned URLs are valid from ``X-Amz-Date`` (minus the skew) to
  ``X-Amz-Date + X-Amz-Expires`` (at most 7 days). Forms carry a policy whose own
  expiration the PostObject handler checks.
- Region: the scope's region must be the server's, unless ``accept_any_region`` (some
  clients hard-code ``us-east-1``); the signing key always uses the scope's region, since
  that is what the client signed with.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote_to_bytes

from ._errors import (
    AccessDeniedError,
    AuthorizationHeaderMalformedError,
    AuthorizationQueryParametersError,
    InvalidAccessKeyIdError,
    InvalidArgumentError,
    InvalidRequestError,
    MissingSecurityHeaderError,
    RequestTimeTooSkewedError,
    SignatureDoesNotMatchError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "AWS4_HMAC_SHA256",
    "DEFAULT_MAX_SKEW_S",
    "EMPTY_SHA256_HEX",
    "MAX_PRESIGNED_EXPIRES_S",
    "UNSIGNED_PAYLOAD",
    "AuthKind",
    "AuthPolicy",
    "Authenticated",
    "ParsedAuth",
    "PayloadMode",
    "Scope",
    "canonical_query",
    "canonical_request",
    "format_amz_date",
    "parse_amz_date",
    "parse_auth",
    "parse_content_sha256",
    "parse_post_form",
    "presign",
    "sign_request",
    "signing_key",
    "string_to_sign",
    "uri_encode",
    "verify",
    "verify_request",
]

#: The only signature algorithm Garage speaks (no SigV2, no SigV4a).
AWS4_HMAC_SHA256: Final = "AWS4-HMAC-SHA256"
#: ``x-amz-content-sha256`` of a request whose body is not covered by the signature.
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
#: ``hex(sha256(b""))``, the payload hash of an empty body.
EMPTY_SHA256_HEX: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: S3's limit on ``X-Amz-Expires``: one week, in seconds.
MAX_PRESIGNED_EXPIRES_S: Final = 7 * 24 * 3600
#: S3 rejects header-signed requests dated more than 15 minutes away from its clock.
DEFAULT_MAX_SKEW_S: Final = 15 * 60

_AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE: Final = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_SHA256_HEX_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
# Characters that uri_encode never escapes (RFC 3986 unreserved, as AWS's UriEncode).
_UNRESERVED: Final = "-_.~"
# Presigned-URL parameters that carry the signature itself, not a stand-in header.
_PRESIGN_PARAMS: Final = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
    }
)


class PayloadMode(enum.Enum):
    """How the body is covered, from ``x-amz-content-sha256``.

    ``SHA256``: the header is the hex sha256 of the whole body, checked once the body is
    read. The ``STREAMING_*`` modes send an ``aws-chunked`` body (see
    :class:`~garage_api.signature.AwsChunkedDecoder`): each chunk signed and chained on the
    previous signature, and/or a trailer carrying a checksum.
    """

    UNSIGNED = "UNSIGNED-PAYLOAD"
    SHA256 = "SHA256"
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def is_streaming(self) -> bool:
        """True for the ``aws-chunked`` modes."""
        return self.value.startswith("STREAMING-")

    @property
    def signed_chunks(self) -> bool:
        """True when every chunk (and the trailer) carries a chained signature."""
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        """True when the aws-chunked body ends with trailing headers."""
        return self.value.endswith("-TRAILER")


class AuthKind(enum.Enum):
    """Where a request carried its signature."""

    HEADER = "header"
    QUERY = "query"
    FORM = "form"


@dataclass(frozen=True, slots=True)
class Scope:
    """A credential scope, ``<yyyymmdd>/<region>/<service>/aws4_request``.

    Attributes:
        date: the day, ``yyyymmdd``.
        region: the region the client signed for.
        service: ``s3`` or ``k2v`` for Garage.
    """

    date: str
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parses the scope part of a credential (after the key id).

        Raises:
            AuthorizationHeaderMalformedError: not four ``/``-separated parts ending with
                ``aws4_request``, or a date that is not eight digits.
        """
        parts = text.split("/")
        if len(parts) != 4 or parts[3] != "aws4_request":
            raise AuthorizationHeaderMalformedError(
                f"the credential scope {text!r} is not <date>/<region>/<service>/aws4_request"
            )
        date, region, service, _ = parts
        if len(date) != 8 or not date.isascii() or not date.isdigit():
            raise AuthorizationHeaderMalformedError(
                f"the credential scope's date {date!r} is not yyyymmdd"
            )
        if not region or not service:
            raise AuthorizationHeaderMalformedError(
                f"the credential scope {text!r} has an empty region or service"
            )
        return cls(date=date, region=region, service=service)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """What the server accepts (from the ``[s3_api]``/``[k2v_api]`` configuration).

    Attributes:
        region: the server's region (``s3_region``).
        service: the service this API signs for: ``"s3"`` or ``"k2v"``.
        accept_any_region: accept a scope naming any region (for clients that hard-code
            ``us-east-1``).
        max_skew_s: how far ``x-amz-date`` may be from the server clock.
    """

    region: str
    service: str = "s3"
    accept_any_region: bool = False
    max_skew_s: int = DEFAULT_MAX_SKEW_S

    @property
    def double_encode_path(self) -> bool:
        """True when the canonical URI is the raw path URI-encoded again (all but S3)."""
        return _double_encode(self.service)


@dataclass(frozen=True, slots=True)
class ParsedAuth:
    """A request's signature, parsed but not verified (the key is not known yet).

    Attributes:
        kind: where the signature was (header, presigned query, POST form).
        key_id: the access key id that claims to have signed.
        scope: the credential scope, as the client wrote it.
        amz_date: the signing time, ``yyyymmddThhmmssZ``.
        date_ms: the same, in milliseconds since the Unix epoch.
        signed_headers: the signed header names, sorted.
        signature: the request's signature (lowercase hex).
        string_to_sign: what the signature must be the HMAC of.
        payload: how the body is covered.
        payload_sha256: the announced sha256 of the body (``PayloadMode.SHA256`` only).
        expires_s: ``X-Amz-Expires`` of a presigned URL; ``None`` otherwise.
        query_headers: the ``x-amz-*`` query parameters of a presigned URL other than the
            signature's own, lower-cased: they stand in for headers the URL's user could
            not set, and the handler treats them as headers (Garage: payload.rs).
    """

    kind: AuthKind
    key_id: str
    scope: Scope
    amz_date: str
    date_ms: int
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)
    string_to_sign: str = field(repr=False)
    payload: PayloadMode
    payload_sha256: bytes | None = None
    expires_s: int | None = None
    query_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose signature was verified.

    Attributes:
        key_id: the access key that signed.
        scope: the credential scope the client signed with.
        amz_date: the signing time, ``yyyymmddThhmmssZ`` (chunk signatures reuse it).
        kind: where the signature was.
        payload: how the body is covered.
        payload_sha256: the body's announced sha256 (``PayloadMode.SHA256`` only): check it
            with a :class:`~garage_api.signature.Checksummer` while reading the body.
        seed_signature: the request's signature (hex), which the first chunk signature of a
            signed aws-chunked body chains on.
        signing_key: the derived key for this scope, to verify chunk signatures.
        query_headers: see :attr:`ParsedAuth.query_headers`.
    """

    key_id: str
    scope: Scope
    amz_date: str
    kind: AuthKind
    payload: PayloadMode
    payload_sha256: bytes | None
    seed_signature: str = field(repr=False)
    signing_key: bytes = field(repr=False)
    query_headers: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------- encoding


def uri_encode(text: str | bytes, *, encode_slash: bool = True) -> str:
    """AWS's ``UriEncode``: percent-encodes every byte but ``A-Za-z0-9-_.~`` (and ``/``
    when ``encode_slash`` is false), with upper-case hex. ``str`` is encoded as UTF-8."""
    return quote(text, safe=_UNRESERVED if encode_slash else _UNRESERVED + "/")


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a raw query string, decoded; empty segments skipped.

    ``+`` decodes to a space (form encoding, as Garage's ``url::form_urlencoded``).
    Invalid UTF-8 is kept as surrogate escapes so that re-encoding restores the bytes.
    """
    pairs = []
    for segment in raw_query.split("&"):
        if not segment:
            continue
        key, _, value = segment.partition("=")
        pairs.append((_form_decode(key), _form_decode(value)))
    return pairs


def _form_decode(text: str) -> str:
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "surrogateescape")


def _reencode(text: str) -> str:
    return uri_encode(text.encode("utf-8", "surrogateescape"))


def canonical_query(raw_query: str, *, exclude: str | None = None) -> str:
    """The canonical query string of a raw (percent-encoded) query.

    Args:
        raw_query: the query as on the wire, without ``?``.
        exclude: a parameter name to leave out, compared case-insensitively
            (``X-Amz-Signature`` for presigned URLs).

    Returns:
        ``k=v`` pairs, each part decoded then URI-encoded, sorted by key then value, joined
        with ``&``.
    """
    skip = None if exclude is None else exclude.lower()
    encoded = sorted(
        (_reencode(k), _reencode(v)) for k, v in _query_pairs(raw_query) if k.lower() != skip
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _trimall(value: str) -> str:
    # SigV4 "Trimall": trim, and collapse whitespace runs to one space (as botocore does).
    return " ".join(value.split())


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def _double_encode(service: str) -> bool:
    # The AWS SDKs URI-encode the path a second time for every service but S3 (Garage:
    # payload.rs canonical_request, after aws-sigv4's `double_uri_encode`).
    return service != "s3"


def canonical_request(
    method: str,
    raw_path: str,
    canonical_query_string: str,
    headers: Mapping[str, list[str]],
    signed_headers: Iterable[str],
    payload_hash: str,
    *,
    double_encode_path: bool = False,
) -> str:
    """The SigV4 canonical request.

    Args:
        method: the HTTP method.
        raw_path: the path as on the wire (percent-encoded), ``/`` if empty.
        canonical_query_string: from :func:`canonical_query`.
        headers: lower-case header name to values (in order of appearance).
        signed_headers: the names to sign, lower-case.
        payload_hash: ``x-amz-content-sha256`` (or ``UNSIGNED-PAYLOAD``).
        double_encode_path: URI-encode the raw path again (every service but S3).

    Raises:
        InvalidRequestError: a signed header is not in ``headers``.
    """
    path = raw_path or "/"
    if double_encode_path:
        path = uri_encode(path, encode_slash=False)
    names = sorted(signed_headers)
    lines = []
    for name in names:
        values = headers.get(name)
        if values is None:
            raise InvalidRequestError(f"the signed header {name!r} is not in the request")
        lines.append(f"{name}:{','.join(_trimall(v) for v in values)}")
    return "\n".join(
        [
            method.upper(),
            path,
            canonical_query_string,
            "\n".join(lines),
            "",
            ";".join(names),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: Scope | str, canonical_request: str) -> str:
    """``AWS4-HMAC-SHA256 \\n date \\n scope \\n hex(sha256(canonical request))``."""
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{AWS4_HMAC_SHA256}\n{amz_date}\n{scope}\n{digest}"


# Deriving the key costs four HMACs per request; a node serves few (secret, day, region,
# service) combinations, so a small cache removes that work. 1024 covers thousands of keys
# active on one day without holding much memory.
@functools.lru_cache(maxsize=1024)
def _derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key of a secret for one scope (cached).

    ``HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")``.
    """
    return _derive_signing_key(secret, date, region, service)


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- dates


def parse_amz_date(text: str) -> int:
    """Parses ``yyyymmddThhmmssZ`` (UTC) into milliseconds since the Unix epoch.

    Raises:
        AuthorizationHeaderMalformedError: not that format, or not a real date.
    """
    if not _AMZ_DATE_RE.fullmatch(text):
        raise AuthorizationHeaderMalformedError(f"the date {text!r} is not yyyymmddThhmmssZ")
    try:
        # The fields by position (the pattern above checked the shape): strptime costs
        # ~10x more, on every request. datetime() refuses what strptime would (a month 13,
        # a February 30th, a second 60).
        moment = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise AuthorizationHeaderMalformedError(f"the date {text!r} does not exist") from None
    return int(moment.timestamp()) * 1000


def format_amz_date(ts_ms: int) -> str:
    """Formats a millisecond timestamp as ``yyyymmddThhmmssZ`` (UTC, seconds truncated).

    >>> format_amz_date(1369353600000)
    '20130524T000000Z'
    """
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).strftime(_AMZ_DATE_FORMAT)


def _http_date_to_amz(text: str) -> str:
    # A client may sign the `Date` header instead of `x-amz-date` (botocore does when the
    # request has a Date header): its time is the signing time.
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise AuthorizationHeaderMalformedError(f"the Date header {text!r} is invalid") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)


# ---------------------------------------------------------------- parsing


def parse_content_sha256(value: str) -> tuple[PayloadMode, bytes | None]:
    """Parses ``x-amz-content-sha256`` into a payload mode (and the sha256 if it is one).

    Raises:
        InvalidRequestError: a streaming mode Garage does not support (SigV4a's
            ``STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD``, or ``STREAMING-UNSIGNED-PAYLOAD``
            without trailer).
        InvalidArgumentError: neither a known mode nor 64 hex digits.
    """
    if value.startswith("STREAMING-") or value == UNSIGNED_PAYLOAD:
        try:
            mode = PayloadMode(value)
        except ValueError:
            raise InvalidRequestError(
                f"x-amz-content-sha256 {value!r} is not a supported payload mode"
            ) from None
        return mode, None
    if _SHA256_HEX_RE.fullmatch(value):
        return PayloadMode.SHA256, bytes.fromhex(value)
    raise InvalidArgumentError(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* mode or a sha256 in hex"
    )


def _split_credential(credential: str) -> tuple[str, Scope]:
    key_id, slash, scope = credential.partition("/")
    if not slash or not key_id:
        raise AuthorizationHeaderMalformedError(
            "the credential is not <key id>/<date>/<region>/<service>/aws4_request"
        )
    return key_id, Scope.parse(scope)


def _split_signed_headers(text: str) -> tuple[str, ...]:
    names = [n.strip().lower() for n in text.split(";")]
    if not all(names):
        raise AuthorizationHeaderMalformedError(f"SignedHeaders {text!r} has an empty name")
    return tuple(sorted(set(names)))


def _check_signature_syntax(signature: str) -> str:
    if not _SIGNATURE_RE.fullmatch(signature):
        raise AuthorizationHeaderMalformedError("the signature is not 64 hex digits")
    return signature.lower()


def _check_signed_headers(
    headers: Mapping[str, list[str]], signed: tuple[str, ...], *, require_host: bool = True
) -> None:
    # Garage: payload.rs verify_signed_headers. An unsigned x-amz-* header could change the
    # request's meaning (copy source, metadata, checksums) behind the signature's back.
    if require_host and "host" not in signed:
        raise InvalidRequestError("the Host header must be signed")
    signed_set = set(signed)
    for name in headers:
        if name.startswith("x-amz-") and name not in signed_set:
            raise InvalidRequestError(f"the header {name!r} must be signed")


def _parse_authorization(value: str) -> tuple[str, tuple[str, ...], str]:
    """(credential, signed headers, signature) of an ``Authorization`` header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != AWS4_HMAC_SHA256:
        raise InvalidRequestError(
            f"unsupported authorization algorithm {algorithm!r} (only {AWS4_HMAC_SHA256})"
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, param = part.strip().partition("=")
        if not eq:
            raise AuthorizationHeaderMalformedError(
                f"the Authorization header has a field without value: {name!r}"
            )
        if name in params:
            raise AuthorizationHeaderMalformedError(f"the Authorization header has {name!r} twice")
        params[name] = param.strip()
    try:
        credential = params["Credential"]
        signed = params["SignedHeaders"]
        signature = params["Signature"]
    except KeyError as missing:
        raise AuthorizationHeaderMalformedError(
            f"the Authorization header lacks {missing.args[0]}"
        ) from None
    return credential, _split_signed_headers(signed), _check_signature_syntax(signature)


def parse_auth(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    *,
    double_encode_path: bool = False,
) -> ParsedAuth:
    """Reads a request's signature and builds its string to sign.

    A presigned URL (an ``X-Amz-Algorithm`` query parameter) wins over an ``Authorization``
    header. Nothing here needs the secret; :func:`verify` finishes the job.

    Args:
        method: the HTTP method.
        raw_path: the request path as on the wire (still percent-encoded).
        raw_query: the query string as on the wire, without ``?`` (``""`` if none).
        headers: every request header as ``(name, value)``; names are compared
            lower-cased, repeated names keep their order.
        double_encode_path: URI-encode the path again in the canonical request (K2V and
            every other service but S3).

    Returns:
        The parsed signature.

    Raises:
        AccessDeniedError: the request is not signed at all.
        InvalidArgumentError: signed both by a presigned query and an Authorization header.
        SignatureError: any other subclass, when the signature's pieces are malformed
            (see each error's docstring).
    """
    header_map = _header_map(headers)
    pairs = _query_pairs(raw_query)
    auth_params: dict[str, str] = {}
    for key, value in pairs:
        lower = key.lower()
        if lower in _PRESIGN_PARAMS:
            if lower in auth_params:
                raise AuthorizationQueryParametersError(f"the query has {key!r} twice")
            auth_params[lower] = value
    if "x-amz-algorithm" in auth_params:
        if "authorization" in header_map:
            # As S3: one signature per request, never a choice between two.
            raise InvalidArgumentError(
                "only one auth mechanism is allowed: the X-Amz-Algorithm query parameter "
                "or the Authorization header"
            )
        return _parse_presigned(
            method, raw_path, raw_query, header_map, pairs, auth_params, double_encode_path
        )
    authorization = header_map.get("authorization")
    if authorization is None:
        raise AccessDeniedError("the request is not signed (Garage has no anonymous access)")
    if len(authorization) != 1:
        raise AuthorizationHeaderMalformedError("the request has several Authorization headers")
    credential, signed, signature = _parse_authorization(authorization[0])
    key_id, scope = _split_credential(credential)
    _check_signed_headers(header_map, signed)

    content_sha256 = _single_header(header_map, "x-amz-content-sha256")
    if content_sha256 is None:
        raise MissingSecurityHeaderError("the request lacks x-amz-content-sha256")
    payload, payload_sha256 = parse_content_sha256(content_sha256)
    amz_date = _single_header(header_map, "x-amz-date")
    if amz_date is None:
        http_date = _single_header(header_map, "date")
        if http_date is None or "date" not in signed:
            raise MissingSecurityHeaderError("the request lacks x-amz-date")
        amz_date = _http_date_to_amz(http_date)
    date_ms = parse_amz_date(amz_date)

    request = canonical_request(
        method,
        raw_path,
        canonical_query(raw_query),
        header_map,
        signed,
        content_sha256,
        double_encode_path=double_encode_path,
    )
    return ParsedAuth(
        kind=AuthKind.HEADER,
        key_id=key_id,
        scope=scope,
        amz_date=amz_date,
        date_ms=date_ms,
        signed_headers=signed,
        signature=signature,
        string_to_sign=string_to_sign(amz_date, scope, request),
        payload=payload,
        payload_sha256=payload_sha256,
    )


def _single_header(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidRequestError(f"the request has several {name} headers")
    return values[0].strip()


def _parse_presigned(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, list[str]],
    pairs: list[tuple[str, str]],
    auth: dict[str, str],
    double_encode_path: bool,
) -> ParsedAuth:
    if auth["x-amz-algorithm"] != AWS4_HMAC_SHA256:
        raise InvalidRequestError(
            f"unsupported X-Amz-Algorithm {auth['x-amz-algorithm']!r} (only {AWS4_HMAC_SHA256})"
        )
    missing = sorted(_PRESIGN_PARAMS - auth.keys())
    if missing:
        raise AuthorizationQueryParametersError(f"the presigned URL lacks {', '.join(missing)}")
    expires = auth["x-amz-expires"]
    if not (expires.isascii() and expires.isdigit()) or not (
        1 <= int(expires) <= MAX_PRESIGNED_EXPIRES_S
    ):
        raise AuthorizationQueryParametersError(
            f"X-Amz-Expires must be an integer from 1 to {MAX_PRESIGNED_EXPIRES_S} (a week)"
        )
    key_id, scope = _split_credential(auth["x-amz-credential"])
    signed = _split_signed_headers(auth["x-amz-signedheaders"])
    signature = _check_signature_syntax(auth["x-amz-signature"])
    amz_date = auth["x-amz-date"]
    date_ms = parse_amz_date(amz_date)
    _check_signed_headers(headers, signed)

    # Query parameters named like x-amz-* headers stand for headers the URL's user cannot
    # set; a signed header with another value contradicts them (S3 answers InvalidRequest).
    query_headers = []
    content_sha256 = UNSIGNED_PAYLOAD
    for key, value in pairs:
        lower = key.lower()
        if not lower.startswith("x-amz-") or lower in _PRESIGN_PARAMS:
            continue
        present = headers.get(lower)
        if present is not None and lower in signed and present != [value]:
            raise InvalidRequestError(
                f"the query parameter {key!r} and the header {lower!r} have different values"
            )
        if lower == "x-amz-content-sha256":
            content_sha256 = value
        query_headers.append((lower, value))
    # A presigned URL is made before its body exists: S3 signs UNSIGNED-PAYLOAD unless the
    # signer put an X-Amz-Content-Sha256 parameter in the URL (aws-c-auth can).
    payload, payload_sha256 = parse_content_sha256(content_sha256)
    # The payload mode is the query's, so an aws-chunked body announced in a header would
    # be stored with its framing: refuse that too.
    declared = _single_header(headers, "x-amz-content-sha256")
    if payload.is_streaming or (
        declared is not None and parse_content_sha256(declared)[0].is_streaming
    ):
        raise InvalidRequestError("a presigned URL cannot use a STREAMING-* payload")

    request = canonical_request(
        method,
        raw_path,
        canonical_query(raw_query, exclude="X-Amz-Signature"),
        headers,
        signed,
        content_sha256,
        double_encode_path=double_encode_path,
    )
    return ParsedAuth(
        kind=AuthKind.QUERY,
        key_id=key_id,
        scope=scope,
        amz_date=amz_date,
        date_ms=date_ms,
        signed_headers=signed,
        signature=signature,
        string_to_sign=string_to_sign(amz_date, scope, request),
        payload=payload,
        payload_sha256=payload_sha256,
        expires_s=int(expires),
        query_headers=tuple(query_headers),
    )


def parse_post_form(fields: Mapping[str, str]) -> ParsedAuth:
    """Reads the signature of a browser POST upload (PostObject) from its form fields.

    The string to sign is the base64 ``policy`` field itself (AWS: sigv4-UsingHTTPPOST).
    The PostObject handler must still check the policy's expiration and conditions.

    Args:
        fields: the form fields; names are compared case-insensitively.

    Raises:
        AccessDeniedError: no ``x-amz-credential`` (an anonymous form).
        AuthorizationQueryParametersError: a signature field is missing.
        InvalidRequestError: an unsupported ``x-amz-algorithm``.
        AuthorizationHeaderMalformedError: a malformed credential, date or signature.
    """
    lower = {k.lower(): v for k, v in fields.items()}
    if "x-amz-credential" not in lower:
        raise AccessDeniedError("the form is not signed (Garage has no anonymous access)")
    for name in ("x-amz-algorithm", "x-amz-date", "x-amz-signature", "policy"):
        if name not in lower:
            raise AuthorizationQueryParametersError(f"the form lacks the {name} field")
    if lower["x-amz-algorithm"] != AWS4_HMAC_SHA256:
        raise InvalidRequestError(
            f"unsupported x-amz-algorithm {lower['x-amz-algorithm']!r} (only {AWS4_HMAC_SHA256})"
        )
    key_id, scope = _split_credential(lower["x-amz-credential"])
    amz_date = lower["x-amz-date"]
    return ParsedAuth(
        kind=AuthKind.FORM,
        key_id=key_id,
        scope=scope,
        amz_date=amz_date,
        date_ms=parse_amz_date(amz_date),
        signed_headers=(),
        signature=_check_signature_syntax(lower["x-amz-signature"]),
        string_to_sign=lower["policy"],
        payload=PayloadMode.UNSIGNED,
    )


# ---------------------------------------------------------------- verification


def verify(
    parsed: ParsedAuth, secret: str | None, *, policy: AuthPolicy, now_ms: int
) -> Authenticated:
    """Verifies a parsed signature with the key's secret.

    Args:
        parsed: from :func:`parse_auth` or :func:`parse_post_form`.
        secret: the secret of ``parsed.key_id``; ``None`` when no live key has that id.
        policy: the server's region, service, and clock tolerance.
        now_ms: the server clock, in milliseconds since the Unix epoch.

    Returns:
        The authenticated request.

    Raises:
        AuthorizationHeaderMalformedError: the scope's service, region (unless
            ``policy.accept_any_region``) or day is not the expected one; ``region`` is set
            to the server's region.
        RequestTimeTooSkewedError: a header-signed request dated too far from ``now_ms``.
        AccessDeniedError: a presigned URL that has expired or is not valid yet.
        InvalidAccessKeyIdError: ``secret`` is ``None``.
        SignatureDoesNotMatchError: the signature is not the one the secret gives.
    """
    scope = parsed.scope
    if scope.service != policy.service:
        raise AuthorizationHeaderMalformedError(
            f"the credential's service {scope.service!r} is wrong; expecting {policy.service!r}",
            region=policy.region,
        )
    if not policy.accept_any_region and scope.region != policy.region:
        raise AuthorizationHeaderMalformedError(
            f"the region {scope.region!r} is wrong; expecting {policy.region!r}",
            region=policy.region,
        )
    if scope.date != parsed.amz_date[:8]:
        raise AuthorizationHeaderMalformedError(
            f"the credential's date {scope.date} is not the day of {parsed.amz_date}",
            region=policy.region,
        )
    skew_ms = policy.max_skew_s * 1000
    if parsed.kind is AuthKind.HEADER:
        if abs(now_ms - parsed.date_ms) > skew_ms:
            raise RequestTimeTooSkewedError(
                "the difference between the request time and the server's time is too large"
            )
    elif parsed.kind is AuthKind.QUERY:
        if parsed.expires_s is None:
            raise AuthorizationQueryParametersError("the presigned URL lacks X-Amz-Expires")
        if now_ms + skew_ms < parsed.date_ms:
            raise AccessDeniedError("the presigned URL is not valid yet")
        if now_ms > parsed.date_ms + parsed.expires_s * 1000:
            raise AccessDeniedError("the presigned URL has expired")
    if secret is None:
        raise InvalidAccessKeyIdError(f"no such access key: {parsed.key_id}")
    key = signing_key(secret, scope.date, scope.region, scope.service)
    expected = _hmac_hex(key, parsed.string_to_sign)
    if not hmac.compare_digest(expected, parsed.signature):
        raise SignatureDoesNotMatchError(
            "the request signature does not match the one calculated with the key's secret"
        )
    return Authenticated(
        key_id=parsed.key_id,
        scope=scope,
        amz_date=parsed.amz_date,
        kind=parsed.kind,
        payload=parsed.payload,
        payload_sha256=parsed.payload_sha256,
        seed_signature=parsed.signature,
        signing_key=key,
        query_headers=parsed.query_headers,
    )


def verify_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    lookup_secret: Callable[[str], str | None],
    *,
    policy: AuthPolicy,
    now_ms: int,
) -> Authenticated:
    """:func:`parse_auth` then :func:`verify`, with a synchronous key lookup.

    For callers whose keys are at hand (tests, a single-key tool). The API servers call the
    two steps themselves to look the key up asynchronously in between.

    Args:
        lookup_secret: the secret of a key id, or ``None`` if no live key has it.

    Raises:
        SignatureError: see :func:`parse_auth` and :func:`verify`.
    """
    parsed = parse_auth(
        method, raw_path, raw_query, headers, double_encode_path=policy.double_encode_path
    )
    return verify(parsed, lookup_secret(parsed.key_id), policy=policy, now_ms=now_ms)


# ---------------------------------------------------------------- signing (clients)


def sign_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    *,
    key_id: str,
    secret: str,
    region: str,
    service: str,
    now_ms: int,
    payload_hash: str = UNSIGNED_PAYLOAD,
) -> list[tuple[str, str]]:
    """Signs a request in the ``Authorization`` header (for our tests and the K2V client).

    Every given header is signed; ``host`` must be among them.

    Args:
        raw_path: the path as it will be sent (percent-encoded).
        raw_query: the query as it will be sent, without ``?``.
        headers: the request's headers; ``authorization``, ``x-amz-date`` and
            ``x-amz-content-sha256`` are replaced.
        payload_hash: ``x-amz-content-sha256``: the body's hex sha256,
            ``UNSIGNED-PAYLOAD``, or a ``STREAMING-*`` mode.

    Returns:
        The headers to send, lower-cased, with ``x-amz-date``, ``x-amz-content-sha256``
        and ``authorization`` added.

    Raises:
        ValueError: no ``host`` header.
    """
    amz_date = format_amz_date(now_ms)
    replaced = {"authorization", "x-amz-date", "x-amz-content-sha256"}
    out = [(n.lower(), v) for n, v in headers if n.lower() not in replaced]
    out += [("x-amz-date", amz_date), ("x-amz-content-sha256", payload_hash)]
    header_map = _header_map(out)
    if "host" not in header_map:
        raise ValueError("a signed request needs a host header")
    scope = Scope(amz_date[:8], region, service)
    signed = sorted(header_map)
    request = canonical_request(
        method,
        raw_path,
        canonical_query(raw_query),
        header_map,
        signed,
        payload_hash,
        double_encode_path=_double_encode(service),
    )
    key = signing_key(secret, scope.date, region, service)
    signature = _hmac_hex(key, string_to_sign(amz_date, scope, request))
    out.append(
        (
            "authorization",
            f"{AWS4_HMAC_SHA256} Credential={key_id}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={signature}",
        )
    )
    return out


def presign(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    *,
    key_id: str,
    secret: str,
    region: str,
    service: str,
    now_ms: int,
    expires_s: int,
) -> str:
    """Presigns a URL: returns its query string with the ``X-Amz-*`` parameters added.

    The given headers (``host`` at least) are signed and must be sent with the URL.

    Raises:
        ValueError: no ``host`` header, or ``expires_s`` outside 1..604800.
    """
    if not 1 <= expires_s <= MAX_PRESIGNED_EXPIRES_S:
        raise ValueError(f"expires_s must be from 1 to {MAX_PRESIGNED_EXPIRES_S}")
    header_map = _header_map(headers)
    if "host" not in header_map:
        raise ValueError("a presigned URL needs a host header")
    amz_date = format_amz_date(now_ms)
    scope = Scope(amz_date[:8], region, service)
    signed = sorted(header_map)
    params = [
        ("X-Amz-Algorithm", AWS4_HMAC_SHA256),
        ("X-Amz-Credential", f"{key_id}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", ";".join(signed)),
    ]
    added = "&".join(f"{k}={uri_encode(v)}" for k, v in params)
    query = f"{raw_query}&{added}" if raw_query else added
    request = canonical_request(
        method,
        raw_path,
        canonical_query(query),
        header_map,
        signed,
        UNSIGNED_PAYLOAD,
        double_encode_path=_double_encode(service),
    )
    key = signing_key(secret, scope.date, region, service)
    signature = _hmac_hex(key, string_to_sign(amz_date, scope, request))
    return f"{query}&X-Amz-Signature={signature}"

"""PostObject: browser form uploads (``POST /<bucket>`` with ``multipart/form-data``).

Garage: src/api/s3/post_object.rs. AWS: "Browser-Based Uploads Using POST"
(sigv4-UsingHTTPPOST.html, sigv4-HTTPPOSTConstructPolicy.html, RESTObjectPOST.html).

Theory of operation
-------------------
A web page holds a form that a server signed ahead of time: hidden fields (``key``,
``policy``, ``x-amz-credential``, ``x-amz-date``, ``x-amz-algorithm``,
``x-amz-signature``, maybe ``Content-Type``, ``x-amz-meta-*``, ``acl``,
``success_action_*``) then the ``file`` input. The request carries no ``Authorization``:
the signature is the HMAC of the base64 ``policy`` field, so the server (``S3Api``) routes
the request here *before* its header authentication, and this handler:

1. reads the form as a stream (:class:`FormReader`, a sans-IO core over
   python-multipart's parser): every field before ``file`` is read whole (each at most
   :data:`MAX_FIELD_BYTES`, all together at most :data:`MAX_FIELDS_BYTES`); the file's
   bytes are only ever held one request chunk at a time. Fields after the file are
   ignored (as S3);
2. verifies the signature of the policy with the key named in ``x-amz-credential``
   (:func:`~garage_api.signature.parse_post_form`, then
   :func:`~garage_api.signature.verify`), resolves the bucket for that key and checks its
   ``write`` permission;
3. decodes the policy (:class:`PostPolicy`) and checks it against the form: not expired,
   every condition holds (``eq``, ``starts-with``; ``$bucket`` against the bucket of the
   URL, ``$key`` against the key once ``${filename}`` is replaced by the file's name), and
   every field is covered by at least one condition, except ``policy``,
   ``x-amz-signature``, ``file`` and ``x-ignore-*`` (as S3); a field a condition names
   but the form lacks counts as empty;
4. stores the file like PutObject (:class:`~garage_model.s3.writer.ObjectWriter`), with
   the stored headers taken from the fields (``Content-Type``, ``Cache-Control``...,
   ``x-amz-meta-*``). ``content-length-range`` is enforced while the file streams (too
   large stops the upload at once; too small, and the bucket's quotas, are checked before
   the version is marked complete), as are ``Content-MD5`` and ``x-amz-checksum-*``
   fields (like PutObject's headers), so a refused upload never replaces the object;
5. answers ``303`` to a valid ``success_action_redirect`` (with ``bucket``, ``key`` and
   ``etag`` added to its query), else ``success_action_status``: ``200`` (empty),
   ``201`` (a ``PostResponse`` document) or ``204`` (the default).

Errors are S3's: a policy violation is ``403 AccessDenied`` ("Invalid according to
Policy: ..."), a malformed policy ``400 InvalidPolicyDocument``, a file outside
``content-length-range`` ``400 EntityTooLarge``/``EntityTooSmall``, a form without key or
file ``400 InvalidArgument``, a body that is not a form ``412 PreconditionFailed`` and a
malformed one ``400 MalformedPOSTRequest`` (Garage answers ``400 InvalidRequest`` to all
but the signature errors; the codes of S3 tell a client more).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeAlias, final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from garage_api.http import Response
from garage_api.signature import (
    CONTENT_MD5,
    Checksummer,
    checksum_header_name,
    encode_checksum,
    parse_expected_checksums,
    parse_post_form,
    verify,
)
from garage_model.helper import NoSuchAccessKeyError
from garage_model.s3.writer import Completion, ObjectWriter

from ._api import xml_response
from ._cors import response_headers
from ._errors import S3Error
from ._h_object import _max_stored_key_bytes
from ._meta import object_headers, quote_etag
from ._quotas import check_quotas
from ._xml import PostResponse

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Mapping,
    )

    from python_multipart.multipart import MultipartCallbacks

    from garage_api.http import Request
    from garage_api.signature import AuthPolicy
    from garage_model.key_table import Key
    from garage_model.s3.writer import PutResult

    from ._api import ReqCtx, S3Api
    from ._router import Endpoint, Operation

__all__ = [
    "HANDLERS",
    "MAX_FIELDS_BYTES",
    "MAX_FIELD_BYTES",
    "MAX_FILE_BYTES",
    "FileData",
    "FileEnd",
    "FileStart",
    "FormField",
    "FormReader",
    "PolicyCondition",
    "PostPolicy",
    "form_boundary",
    "post_object",
]

logger = logging.getLogger(__name__)

#: The longest value of one form field (Garage's limit: plenty for a policy document).
MAX_FIELD_BYTES: Final = 16 * 1024
#: The most bytes of fields before the file (S3 allows 20 KB, ``MaxPostPreDataLength
#: Exceeded``; a little more room for long policies): the fields are held in memory.
MAX_FIELDS_BYTES: Final = 64 * 1024
#: The largest file (S3's limit on a single upload, Garage's limit on the file field).
MAX_FILE_BYTES: Final = 5 * 1024**3
#: Fields that need no condition in the policy (AWS: sigv4-HTTPPOSTConstructPolicy).
_UNCOVERED: Final = frozenset({"policy", "x-amz-signature", "file"})
_IGNORED_PREFIX: Final = "x-ignore-"
#: The fields of a form that announce digests of the file (verified like PutObject's).
_CHECKSUM_PREFIX: Final = "x-amz-checksum-"
_SSE_C_PREFIX: Final = "x-amz-server-side-encryption-customer-"

_FORM_ERROR: Final = "Invalid according to Policy"


# ---------------------------------------------------------------------- the form reader


@dataclass(frozen=True, slots=True)
class FormField:
    """A whole form field before the file.

    Attributes:
        name: the field name, lower-cased (S3 compares them case-insensitively).
        value: its value (UTF-8).
    """

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileStart:
    """The ``file`` part begins.

    Attributes:
        filename: the file's name as the browser sent it (``filename=``), if any.
    """

    filename: str | None


@dataclass(frozen=True, slots=True)
class FileData:
    """Some bytes of the file."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FileEnd:
    """The ``file`` part is complete."""


FormEvent: TypeAlias = FormField | FileStart | FileData | FileEnd


def _malformed(detail: str) -> S3Error:
    return S3Error(
        "MalformedPOSTRequest",
        f"The body of your POST request is not well-formed multipart/form-data. ({detail})",
        400,
    )


def form_boundary(content_type: str | None) -> bytes:
    """The multipart boundary of a PostObject's ``Content-Type``.

    Raises:
        S3Error: ``412 PreconditionFailed`` when the body is not ``multipart/form-data``
            (S3's answer), ``400 MalformedPOSTRequest`` when it has no boundary.
    """
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise S3Error(
            "PreconditionFailed",
            "Bucket POST must be of the enclosure-type multipart/form-data",
            412,
        )
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 70:  # RFC 2046 §5.1.1: 1 to 70 characters
        raise _malformed("no valid boundary in the Content-Type")
    return boundary


@final
class FormReader:
    """A ``multipart/form-data`` body as :data:`FormEvent` values (sans-IO).

    Feed it the body's bytes with :meth:`feed` and read back the events: a
    :class:`FormField` for each whole field, then :class:`FileStart`, :class:`FileData`
    pieces and :class:`FileEnd` for the part named ``file``. Parts without a name are
    skipped, and parts after the file produce no events. :meth:`finish` checks that the
    body ended with the closing boundary.

    Args:
        boundary: the boundary from the ``Content-Type`` (:func:`form_boundary`).
    """

    __slots__ = (
        "_disposition",
        "_ended",
        "_events",
        "_fields_bytes",
        "_header_name",
        "_header_value",
        "_in_file",
        "_parser",
        "_part_name",
        "_seen_file",
        "_value",
    )

    def __init__(self, boundary: bytes) -> None:
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(boundary, callbacks)
        self._events: list[FormEvent] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition: bytes | None = None
        self._part_name: str | None = None
        self._value = bytearray()
        self._fields_bytes = 0
        self._in_file = False
        self._seen_file = False
        self._ended = False

    def feed(self, data: bytes) -> list[FormEvent]:
        """The events completed by the next bytes of the body.

        Raises:
            S3Error: ``MalformedPOSTRequest`` for a body that is not a valid form,
                ``MaxPostPreDataLengthExceeded`` for fields over the limits.
        """
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise _malformed(str(exc)) from None
        events, self._events = self._events, []
        return events

    def finish(self) -> list[FormEvent]:
        """The last events, once the body has ended.

        Raises:
            S3Error: ``IncompleteBody`` when the body stopped before its closing boundary.
        """
        if not self._ended:
            raise S3Error.incomplete_body("the form ended before its closing boundary")
        events, self._events = self._events, []
        return events

    # -------------------------------------------------------------- parser callbacks

    def _on_part_begin(self) -> None:
        self._disposition = None
        self._part_name = None
        self._value.clear()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        if self._seen_file or self._disposition is None:
            return  # after the file (ignored, as S3), or no name: skipped
        # Header bytes are UTF-8 in browsers' forms; parse them as latin-1 (one character
        # per byte) and decode the parts as UTF-8.
        _kind, options = parse_options_header(self._disposition.decode("latin-1"))
        raw_name = options.get(b"name")
        if raw_name is None:
            return
        name = _utf8(raw_name, "a field name").lower()
        if name == "file":
            raw_filename = options.get(b"filename")
            filename = None if raw_filename is None else _utf8(raw_filename, "the file name")
            self._seen_file = self._in_file = True
            self._events.append(FileStart(filename))
            return
        self._count(len(name))
        self._part_name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._events.append(FileData(bytes(data[start:end])))
            return
        if self._part_name is None:
            return
        size = end - start
        self._count(size, field_bytes=len(self._value) + size)
        self._value += data[start:end]

    def _count(self, size: int, *, field_bytes: int = 0) -> None:
        """Counts ``size`` more bytes of fields (names count too: many empty fields are
        as large as one long one)."""
        self._fields_bytes += size
        if field_bytes > MAX_FIELD_BYTES or self._fields_bytes > MAX_FIELDS_BYTES:
            raise S3Error(
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceding the upload file were too large "
                f"(at most {MAX_FIELD_BYTES} bytes a field, {MAX_FIELDS_BYTES} in all).",
                400,
            )

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._events.append(FileEnd())
        elif self._part_name is not None:
            value = _utf8(bytes(self._value), f"the field {self._part_name!r}")
            self._events.append(FormField(self._part_name, value))
        self._part_name = None
        self._value.clear()

    def _on_end(self) -> None:
        self._ended = True


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise S3Error.invalid_argument(f"{what} is not valid UTF-8") from None


# ---------------------------------------------------------------------- the policy


def _invalid_policy(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}", 400)


@dataclass(frozen=True, slots=True)
class PolicyCondition:
    """One condition of a POST policy on one form field.

    Attributes:
        field: the field, lower-cased, without the ``$``.
        operation: ``"eq"`` or ``"starts-with"``.
        value: the value compared with.
    """

    field: str
    operation: str
    value: str

    def holds(self, actual: str) -> bool:
        """Whether the field's value ``actual`` satisfies the condition.

        ``starts-with`` on ``Content-Type`` checks every value of a comma-separated list
        (AWS: sigv4-HTTPPOSTConstructPolicy).
        """
        if self.operation == "eq":
            return actual == self.value
        if self.field == "content-type":
            return all(v.strip().startswith(self.value) for v in actual.split(","))
        return actual.startswith(self.value)

    def __str__(self) -> str:
        return json.dumps([self.operation, f"${self.field}", self.value])


@dataclass(frozen=True, slots=True)
class PostPolicy:
    """A decoded POST policy document.

    Attributes:
        expiration_ms: when the policy stops being valid (ms since the epoch).
        conditions: its field conditions.
        min_size: the smallest file allowed (``content-length-range``; 0 without).
        max_size: the largest file allowed (None without ``content-length-range``).
    """

    expiration_ms: int
    conditions: tuple[PolicyCondition, ...]
    min_size: int = 0
    max_size: int | None = None

    @classmethod
    def decode(cls, policy_b64: str) -> PostPolicy:
        """Decodes the ``policy`` field: base64 of a JSON ``{"expiration": ...,
        "conditions": [...]}``.

        Conditions are ``{"field": "value"}`` (exact match), ``["eq", "$field", "value"]``,
        ``["starts-with", "$field", "prefix"]`` or ``["content-length-range", min, max]``
        (several ranges intersect). Field names are compared lower-cased.

        Raises:
            S3Error: ``400 InvalidPolicyDocument`` naming what is wrong.
        """
        try:
            document = json.loads(base64.b64decode(policy_b64, validate=True))
        except (binascii.Error, ValueError):
            raise _invalid_policy("Invalid JSON.") from None
        if not isinstance(document, dict):
            raise _invalid_policy("the policy is not a JSON object.")
        if "expiration" not in document:
            raise _invalid_policy("Policy missing expiration.")
        if "conditions" not in document:
            raise _invalid_policy("Policy missing conditions.")
        expiration_ms = _expiration_ms(document["expiration"])
        raw_conditions = document["conditions"]
        if not isinstance(raw_conditions, list):
            raise _invalid_policy("'conditions' is not a list.")
        conditions: list[PolicyCondition] = []
        min_size, max_size = 0, None
        for raw in raw_conditions:
            if isinstance(raw, list) and raw and str(raw[0]).lower() == "content-length-range":
                low, high = _length_range(raw)
                min_size = max(min_size, low)
                max_size = high if max_size is None else min(max_size, high)
            else:
                conditions.append(_condition(raw))
        return cls(expiration_ms, tuple(conditions), min_size, max_size)

    def check(self, fields: Mapping[str, str], *, bucket: str, key: str, now_ms: int) -> None:
        """Checks the form against the policy (before the file is read).

        Args:
            fields: the form's fields before the file, names lower-cased.
            bucket: the bucket of the request's URL (what ``$bucket`` is compared with).
            key: the object key, ``${filename}`` replaced (what ``$key`` is compared with).
            now_ms: the server clock.

        Raises:
            S3Error: ``403 AccessDenied``: the policy expired, a condition does not hold,
                or a field has no condition.
        """
        if now_ms > self.expiration_ms:
            raise S3Error.access_denied(f"{_FORM_ERROR}: Policy expired.")
        for cond in self.conditions:
            if cond.field == "bucket":
                actual = bucket
            elif cond.field == "key":
                actual = key
            else:
                actual = fields.get(cond.field, "")
            if not cond.holds(actual):
                raise S3Error.access_denied(f"{_FORM_ERROR}: Policy Condition failed: {cond}")
        covered = {cond.field for cond in self.conditions}
        extra = [
            name
            for name in fields
            if name not in covered
            and name not in _UNCOVERED
            and not name.startswith(_IGNORED_PREFIX)
        ]
        if extra:
            raise S3Error.access_denied(f"{_FORM_ERROR}: Extra input fields: {', '.join(extra)}")

    def check_size(self, size: int, *, final: bool) -> None:
        """Checks the file's size against ``content-length-range``.

        Args:
            size: the bytes of the file received so far.
            final: True once the whole file is received (then the minimum is checked).

        Raises:
            S3Error: ``400 EntityTooLarge`` or ``EntityTooSmall``.
        """
        limit = MAX_FILE_BYTES if self.max_size is None else min(self.max_size, MAX_FILE_BYTES)
        if size > limit:
            raise S3Error.entity_too_large(
                f"Your proposed upload exceeds the maximum allowed size ({limit} bytes)"
            )
        if final and size < self.min_size:
            raise S3Error.entity_too_small(
                f"Your proposed upload is smaller than the minimum allowed size "
                f"({self.min_size} bytes)"
            )


def _expiration_ms(value: object) -> int:
    if not isinstance(value, str):
        raise _invalid_policy("Invalid 'expiration' value: not a string.")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: {value!r}.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # ISO 8601 GMT is the documented form
    return int(when.timestamp() * 1000)


def _length_range(raw: list[object]) -> tuple[int, int]:
    def bound(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        raise ValueError(value)

    try:
        if len(raw) != 3:
            raise ValueError(raw)
        low, high = bound(raw[1]), bound(raw[2])
    except ValueError:
        raise _invalid_policy(f"Invalid 'content-length-range' condition: {raw!r}.") from None
    if low < 0 or high < low:
        raise _invalid_policy(f"Invalid 'content-length-range' condition: {raw!r}.")
    return low, high


def _condition(raw: object) -> PolicyCondition:
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise _invalid_policy(f"Invalid Simple-Condition: {raw!r} has not one entry.")
        ((name, value),) = raw.items()
        if not isinstance(value, str):
            raise _invalid_policy(f"Invalid Simple-Condition: the value of {name!r} is not text.")
        return PolicyCondition(str(name).lower().removeprefix("$"), "eq", value)
    if isinstance(raw, list) and len(raw) == 3 and all(isinstance(x, str) for x in raw):
        operation, name, value = (str(x) for x in raw)
        operation = operation.lower()
        if operation not in ("eq", "starts-with"):
            raise _invalid_policy(f"Invalid Condition: unknown operation {operation!r}.")
        if not name.startswith("$"):
            raise _invalid_policy(f"Invalid Condition: the field {name!r} must start with '$'.")
        return PolicyCondition(name[1:].lower(), operation, value)
    raise _invalid_policy(f"Invalid Condition: {raw!r}.")


# ---------------------------------------------------------------------- the handler


async def _events(reader: FormReader, body: AsyncIterator[bytes]) -> AsyncGenerator[FormEvent]:
    """The form's events as the body arrives."""
    async for chunk in body:
        for event in reader.feed(chunk):
            yield event
    for event in reader.finish():
        yield event


async def _read_fields(
    events: AsyncIterator[FormEvent],
) -> tuple[dict[str, str], str | None]:
    """The fields before the file, and the file's name.

    Raises:
        S3Error: ``InvalidArgument`` for a repeated field or a form without a file.
    """
    fields: dict[str, str] = {}
    async for event in events:
        if isinstance(event, FileStart):
            return fields, event.filename
        if isinstance(event, FormField):
            if event.name in fields:
                raise S3Error.invalid_argument(f"Field '{event.name}' provided more than once")
            fields[event.name] = event.value
    raise S3Error.invalid_argument("POST requires exactly one file upload per request.")


async def _file_bytes(
    events: AsyncIterator[FormEvent], policy: PostPolicy
) -> AsyncGenerator[bytes]:
    """The file's bytes, checked against the policy's maximum as they come."""
    size = 0
    async for event in events:
        if isinstance(event, FileEnd):
            return
        if isinstance(event, FileData):
            size += len(event.data)
            policy.check_size(size, final=False)
            yield event.data
    raise S3Error.incomplete_body("the form ended inside the file")  # pragma: no cover


async def _authenticate(api: S3Api, fields: Mapping[str, str], auth_policy: AuthPolicy) -> Key:
    """The key that signed the form's policy.

    Raises:
        SignatureError: no or a bad signature (mapped to S3 errors by the server).
    """
    parsed = parse_post_form(fields)
    try:
        key: Key | None = await api.garage.bucket_helper.get_existing_key(parsed.key_id)
    except NoSuchAccessKeyError:
        key = None
    params = None if key is None else key.params
    secret = None if params is None else params.secret_key
    verify(parsed, secret, policy=auth_policy, now_ms=api.clock_ms())
    assert key is not None  # verify refuses an unknown key
    return key


def _object_key(fields: Mapping[str, str], filename: str | None) -> str:
    """The ``key`` field, ``${filename}`` replaced by the file's name (when it has one:
    S3 leaves the key as it is otherwise)."""
    key = fields.get("key")
    if key is None:
        raise S3Error.invalid_argument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please "
            "check the order of the fields."
        )
    if filename is not None:
        key = key.replace("${filename}", filename)
    if not key:
        raise S3Error.invalid_argument("User key must have a length greater than 0.")
    return key


def _redirect(target: str | None, bucket: str, key: str, etag: str) -> str | None:
    """The ``Location`` of a ``303`` to ``success_action_redirect`` (None unless it is
    an absolute http(s) URL, as Garage), with bucket, key and ETag in its query."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    added = urlencode([("bucket", bucket), ("key", key), ("etag", quote_etag(etag))])
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


def _location(request: Request, endpoint: Endpoint, bucket: str, key: str) -> str:
    """The object's URL, as Garage writes it (https, the request's host)."""
    path = f"/{quote(key, safe='')}"
    if not endpoint.vhost:
        path = f"/{bucket}{path}"
    host = request.host
    return f"https://{host}{path}" if host else path


def _digest_headers(fields: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    """The fields that announce digests of the file, as the headers PutObject reads."""
    for name, value in fields.items():
        if name == CONTENT_MD5 or name.startswith(_CHECKSUM_PREFIX):
            yield name, value


async def post_object(
    api: S3Api, request: Request, endpoint: Endpoint, auth_policy: AuthPolicy
) -> Response:
    """PostObject: stores the form's file at the form's key (see the module docstring).

    Called by the server for :attr:`Operation.POST_OBJECT` instead of its header
    authentication: the signature is in the form.

    Args:
        api: the server (node, clock).
        request: the HTTP request.
        endpoint: the routed request (the bucket, and whether it was virtual-hosted).
        auth_policy: the server's signature policy (region, service).

    Raises:
        S3Error, SignatureError, HelperError: mapped to S3 errors by the server, once the
            rest of the body is read (see :func:`_drain`).
    """
    body = request.body()
    try:
        return await _store(api, request, endpoint, auth_policy, body)
    except Exception:
        await _drain(body)
        raise


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Reads and drops what is left of a refused form's body.

    A browser sends the whole form before it reads the answer: draining lets it see the
    error document rather than a reset connection. It also keeps the HTTP server sane:
    hypercorn queues each body chunk for the application and waits for room in that
    queue, so chunks nobody reads would block the connection for good (and the server's
    graceful stop with it).
    """
    try:
        async for _chunk in body:
            pass
    except Exception:  # the body itself failed (a disconnect): nothing left to read
        logger.debug("PostObject: the refused body ended badly", exc_info=True)


async def _store(
    api: S3Api,
    request: Request,
    endpoint: Endpoint,
    auth_policy: AuthPolicy,
    body: AsyncIterator[bytes],
) -> Response:
    """:func:`post_object` without the draining of a refused body."""
    bucket_name = endpoint.bucket
    assert bucket_name is not None  # the router sends bucket POSTs here
    reader = FormReader(form_boundary(request.header("content-type")))
    garage = api.garage
    async with aclosing(_events(reader, body)) as events:
        fields, filename = await _read_fields(events)
        key = _object_key(fields, filename)
        api_key = await _authenticate(api, fields, auth_policy)
        helper = garage.bucket_helper
        bucket_id = await helper.resolve_bucket(bucket_name, api_key)
        bucket = await helper.get_existing_bucket(bucket_id)
        if not api_key.allow_write(bucket_id):
            raise S3Error.access_denied(
                f"key {api_key.key_id} has no write permission on this bucket"
            )
        policy = PostPolicy.decode(fields["policy"])
        policy.check(fields, bucket=bucket_name, key=key, now_ms=api.clock_ms())
        if any(name.startswith(_SSE_C_PREFIX) for name in fields):
            raise S3Error.not_implemented("SSE-C (customer keys) in a POST form")
        max_key_bytes = _max_stored_key_bytes(garage.db.max_key_bytes)
        if len(key.encode()) > max_key_bytes:
            raise S3Error.key_too_long()

        expected = parse_expected_checksums(_digest_headers(fields))
        summer = Checksummer.for_expected(expected, md5=True)

        async def before_complete(size: int) -> Completion:
            policy.check_size(size, final=True)
            sums = summer.finalize()
            sums.verify(expected)
            await check_quotas(garage, bucket_id, bucket, key, size)
            assert sums.md5 is not None  # asked for
            return Completion(sums.md5.hex(), sums.extra)

        writer = ObjectWriter(
            garage,
            bucket_id,
            key,
            headers=object_headers(fields.items()),
            checksum_algorithm=expected.algorithm,
        )
        async with aclosing(_file_bytes(events, policy)) as data:
            result = await writer.put(data, digest=summer.update, before_complete=before_complete)
    logger.debug("post %r: %d bytes, etag %s", key, result.size, result.etag)

    response = _answer(request, endpoint, fields, bucket_name, key, result)
    params = bucket.params
    if params is not None:
        # A page reading the answer needs the bucket's CORS headers (Garage does the same).
        rules = params.cors_config.value
        response.headers += response_headers(rules, request.method, request.headers)
    return response


def _answer(
    request: Request,
    endpoint: Endpoint,
    fields: Mapping[str, str],
    bucket: str,
    key: str,
    result: PutResult,
) -> Response:
    """The answer to a stored upload: a redirect, or the status the form asked for."""
    headers = [("etag", quote_etag(result.etag))]
    if result.checksum is not None:
        name = checksum_header_name(result.checksum.algorithm)
        headers.append((name, encode_checksum(result.checksum)))
    target = fields.get("success_action_redirect") or fields.get("redirect")
    redirect = _redirect(target, bucket, key, result.etag)
    if redirect is not None:
        return Response(303, [*headers, ("location", redirect)], redirect.encode())
    location = _location(request, endpoint, bucket, key)
    headers.append(("location", location))
    status = fields.get("success_action_status")
    if status == "200":
        return Response(200, headers)
    if status == "201":
        document = PostResponse(location, bucket, key, result.etag).to_xml()
        response = xml_response(document, status=201)
        response.headers.extend(headers)
        return response
    return Response(204, headers)


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {}
"""Empty: PostObject is not an authenticated request; the server calls :func:`post_object`
directly, before its header authentication."""

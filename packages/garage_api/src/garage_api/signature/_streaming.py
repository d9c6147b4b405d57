"""aws-chunked request bodies: a sans-IO decoder that checks chunk and trailer signatures.

Garage: src/api/common/signature/streaming.rs. AWS: "Transferring payload in multiple
chunks" (sigv4-streaming.html), "Including trailing headers" (sigv4-streaming-trailers.html),
"Checking object integrity" (checking-object-integrity.html).

Theory of operation
-------------------
With ``x-amz-content-sha256: STREAMING-…`` the body is a sequence of chunks::

    <hex size>[;chunk-signature=<sig>]\\r\\n <size bytes> \\r\\n
    ...
    0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n]]
    \\r\\n

In the signed modes each chunk's signature is
``HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD\\n" date "\\n" scope "\\n" previous signature
"\\n" sha256("") "\\n" sha256(chunk data))``, chaining from the request's (seed) signature
through every chunk to the final empty one, so chunks can be neither altered, reordered,
dropped nor appended. The trailer signature chains on the final chunk's with
``AWS4-HMAC-SHA256-TRAILER`` over ``sha256`` of the canonical trailers (``name:value\\n``
each, sorted). In ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` nothing is signed and the trailer
checksum protects the data.

:class:`AwsChunkedDecoder` is fed the raw body in pieces of any size and returns the
decoded payload as ``memoryview`` slices of the pieces it was given (no copy: the body of a
1 MiB chunk is never concatenated). Data of a signed chunk is held back until the chunk's
signature has been checked, so everything returned is authentic; at most one chunk (up
to :data:`MAX_SIGNED_CHUNK_BYTES`) is held. Header and trailer lines are the only bytes
buffered, and their length is bounded.

Leniency, for the clients seen in the wild: a bare ``\\n`` ends a line like ``\\r\\n``;
blank lines may precede the trailers (AWS's own example has one); a trailer value may be
followed by an extra ``\\n`` (Garage accepts it); and a body may end right after a complete
trailer without the final blank line. Everything else is strict.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from typing import TYPE_CHECKING, Final, final

from ._checksum import ChecksumAlgorithm, checksum_header_name, trailer_algorithm
from ._errors import (
    IncompleteBodyError,
    InvalidRequestError,
    MalformedTrailerError,
    SignatureDoesNotMatchError,
    SignatureError,
)
from ._sigv4 import EMPTY_SHA256_HEX, Authenticated, PayloadMode, Scope

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AWS4_HMAC_SHA256_PAYLOAD",
    "AWS4_HMAC_SHA256_TRAILER",
    "MAX_CHUNK_LINE_BYTES",
    "MAX_SIGNED_CHUNK_BYTES",
    "MAX_TRAILER_BYTES",
    "AwsChunkedDecoder",
    "canonical_trailers",
    "chunk_signature",
    "strip_aws_chunked",
    "trailer_signature",
]

#: The algorithm line of a chunk's string to sign.
AWS4_HMAC_SHA256_PAYLOAD: Final = "AWS4-HMAC-SHA256-PAYLOAD"
#: The algorithm line of the trailer's string to sign.
AWS4_HMAC_SHA256_TRAILER: Final = "AWS4-HMAC-SHA256-TRAILER"
#: Longest chunk-size or trailer line: a size line is at most ~100 bytes (16 hex digits and
#: a signature); 4 KiB is MinIO's limit (cmd/streaming-signature-v4.go, maxLineLength).
MAX_CHUNK_LINE_BYTES: Final = 4096
#: Largest signed chunk, held in memory until its signature is checked: 16 MiB, MinIO's
#: limit (maxChunkSize); SDKs send 64 KiB (minio-go, AWS SDKs) to 1 MiB (botocore) chunks.
MAX_SIGNED_CHUNK_BYTES: Final = 16 * 1024 * 1024
#: Largest trailer section: a few checksum headers and a signature fit in far less.
MAX_TRAILER_BYTES: Final = 16 * 1024
# A chunk size has at most 16 hex digits: beyond that it exceeds any object size.
_MAX_SIZE_DIGITS: Final = 16
_SIGNATURE_PREFIX: Final = b"chunk-signature="
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


def chunk_signature(
    signing_key: bytes,
    amz_date: str,
    scope: Scope | str,
    previous_signature: str,
    data_sha256_hex: str,
) -> str:
    """The signature of one chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body.

    Args:
        signing_key: the request's signing key.
        amz_date: the request's ``x-amz-date``.
        scope: the request's credential scope.
        previous_signature: the previous chunk's signature (the request's for the first).
        data_sha256_hex: the hex sha256 of the chunk's data.
    """
    message = (
        f"{AWS4_HMAC_SHA256_PAYLOAD}\n{amz_date}\n{scope}\n{previous_signature}\n"
        f"{EMPTY_SHA256_HEX}\n{data_sha256_hex}"
    )
    return hmac.new(signing_key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def canonical_trailers(trailers: Iterable[tuple[str, str]]) -> bytes:
    """The bytes the trailer signature covers: ``name:value\\n`` each, sorted by name,
    values trimmed (as aws-c-auth and the AWS SDK for .NET canonicalise them)."""
    lines = sorted((name.lower(), " ".join(value.split())) for name, value in trailers)
    return "".join(f"{name}:{value}\n" for name, value in lines).encode("utf-8")


def trailer_signature(
    signing_key: bytes,
    amz_date: str,
    scope: Scope | str,
    previous_signature: str,
    trailers: Iterable[tuple[str, str]],
) -> str:
    """The ``x-amz-trailer-signature`` of a signed aws-chunked body's trailers.

    Args:
        previous_signature: the final (empty) chunk's signature.
        trailers: the trailing headers, without the signature itself.
    """
    digest = hashlib.sha256(canonical_trailers(trailers)).hexdigest()
    message = f"{AWS4_HMAC_SHA256_TRAILER}\n{amz_date}\n{scope}\n{previous_signature}\n{digest}"
    return hmac.new(signing_key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def strip_aws_chunked(content_encoding: str | None) -> str | None:
    """The ``Content-Encoding`` to store for an aws-chunked upload: without ``aws-chunked``.

    S3 does not store the transfer coding ``aws-chunked``; the other codings (``gzip``)
    describe the object. Returns ``None`` when nothing is left.
    """
    if content_encoding is None:
        return None
    codings = [c.strip() for c in content_encoding.split(",")]
    kept = [c for c in codings if c and c.lower() != "aws-chunked"]
    return ",".join(kept) or None


class _State(enum.Enum):
    HEADER = "a chunk-size line"
    DATA = "chunk data"
    DATA_END = "the CRLF after chunk data"
    FINAL = "the CRLF after the final chunk"
    TRAILER = "the trailer"
    DONE = "the end of the body"
    FAILED = "nothing: decoding failed"


@final
class AwsChunkedDecoder:
    """Decodes an ``aws-chunked`` body, checking chunk and trailer signatures.

    Feed the raw body with :meth:`feed` in pieces of any size, pass on what it returns,
    then call :meth:`finish` at the end of the body. Once a call raised, the decoder is
    failed and every later call raises; the upload must then be abandoned, and anything
    received before is still authentic but incomplete.

    Args:
        mode: a streaming payload mode (``payload.is_streaming``).
        seed_signature: the request's signature (signed modes).
        signing_key: the request's signing key (signed modes).
        scope: the request's credential scope (signed modes).
        amz_date: the request's ``x-amz-date`` (signed modes).
        trailer_algorithm: the checksum announced in ``x-amz-trailer``; :meth:`finish`
            fails unless the trailer carries it.
        decoded_content_length: ``x-amz-decoded-content-length``, if the request gave it:
            the decoded payload must have exactly this size.

    Raises:
        ValueError: a non-streaming mode, or a signed mode without its parameters.
    """

    __slots__ = (
        "_amz_date",
        "_declared",
        "_decoded",
        "_expected_trailer",
        "_hasher",
        "_held",
        "_key",
        "_mode",
        "_partial",
        "_previous",
        "_remaining",
        "_scope",
        "_signature",
        "_state",
        "_trailer_bytes",
        "_trailer_signed",
        "_trailers",
    )

    def __init__(
        self,
        mode: PayloadMode,
        *,
        seed_signature: str | None = None,
        signing_key: bytes | None = None,
        scope: Scope | str | None = None,
        amz_date: str | None = None,
        trailer_algorithm: ChecksumAlgorithm | None = None,
        decoded_content_length: int | None = None,
    ) -> None:
        if not mode.is_streaming:
            raise ValueError(f"{mode.value} is not an aws-chunked payload mode")
        if mode.signed_chunks and (
            seed_signature is None or signing_key is None or scope is None or amz_date is None
        ):
            raise ValueError(f"{mode.value} needs the seed signature, key, scope and date")
        if decoded_content_length is not None and decoded_content_length < 0:
            raise ValueError("decoded_content_length cannot be negative")
        self._mode = mode
        self._previous = (seed_signature or "").lower()
        self._key = signing_key or b""
        self._scope = str(scope)
        self._amz_date = amz_date or ""
        self._expected_trailer = (
            checksum_header_name(trailer_algorithm)
            if trailer_algorithm is not None and mode.has_trailer
            else None
        )
        self._declared = decoded_content_length
        self._state = _State.HEADER
        self._partial = bytearray()  # an incomplete line, across feeds
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._signature = ""  # the current chunk's announced signature
        self._hasher: hashlib._Hash | None = None  # sha256 of the current signed chunk
        self._held: list[memoryview] = []  # the current signed chunk's data, unverified
        self._decoded = 0
        self._trailers: dict[str, str] = {}
        self._trailer_bytes = 0
        self._trailer_signed = False

    @classmethod
    def for_request(
        cls, auth: Authenticated, headers: Iterable[tuple[str, str]]
    ) -> AwsChunkedDecoder:
        """The decoder of an authenticated request's aws-chunked body.

        Reads ``x-amz-trailer`` (required by the trailer modes) and
        ``x-amz-decoded-content-length`` (optional) from the headers.

        Raises:
            ValueError: the request's payload mode is not a streaming one.
            InvalidRequestError: no ``x-amz-trailer`` in a trailer mode, or a malformed
                ``x-amz-decoded-content-length``.
        """
        header_list = list(headers)
        algorithm = None
        if auth.payload.has_trailer:
            algorithm = trailer_algorithm(header_list)
            if algorithm is None:
                raise InvalidRequestError(
                    f"{auth.payload.value} needs an x-amz-trailer header naming a checksum"
                )
        declared = None
        for name, value in header_list:
            if name.lower() == "x-amz-decoded-content-length":
                text = value.strip()
                if declared is not None or not (text.isascii() and text.isdigit()):
                    raise InvalidRequestError("x-amz-decoded-content-length is invalid")
                declared = int(text)
        signed = auth.payload.signed_chunks
        return cls(
            auth.payload,
            seed_signature=auth.seed_signature if signed else None,
            signing_key=auth.signing_key if signed else None,
            scope=auth.scope if signed else None,
            amz_date=auth.amz_date if signed else None,
            trailer_algorithm=algorithm,
            decoded_content_length=declared,
        )

    @property
    def decoded_bytes(self) -> int:
        """How many payload bytes were returned so far."""
        return self._decoded

    @property
    def done(self) -> bool:
        """True once the end of the body (final chunk and trailer) has been read."""
        return self._state is _State.DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Decodes the next piece of the raw body.

        Args:
            data: the next bytes of the body. ``bytes`` are used without copy (the returned
                slices refer to them); other buffers are copied first, since the caller
                may reuse them.

        Returns:
            The decoded payload bytes these completed, in order (maybe none).

        Raises:
            SignatureDoesNotMatchError: a chunk or trailer signature does not match.
            InvalidRequestError: bad framing (size line, missing CRLF, data past the end),
                a chunk over the limits or past ``x-amz-decoded-content-length``.
            MalformedTrailerError: a malformed trailer.
        """
        if self._state is _State.FAILED:
            raise InvalidRequestError("the aws-chunked body already failed to decode")
        raw = data if isinstance(data, bytes) else bytes(data)
        out: list[memoryview] = []
        try:
            self._feed(raw, out)
        except SignatureError:
            self._fail()
            raise
        return out

    def finish(self) -> dict[str, str]:
        """Checks that the body ended where it may, and returns its trailers.

        Returns:
            The trailing headers (lower-case name to value), without the signature.

        Raises:
            IncompleteBodyError: the body ended early (inside a chunk, before the final
                chunk, inside a line), or the payload is shorter than declared.
            MalformedTrailerError: the announced checksum trailer is missing.
            InvalidRequestError: the decoder already failed.
        """
        state = self._state
        try:
            if state is _State.FAILED:
                raise InvalidRequestError("the aws-chunked body already failed to decode")
            if self._partial and state is not _State.DONE:
                raise IncompleteBodyError(f"the body ended inside {state.value}")
            if self._partial:
                raise InvalidRequestError("unexpected data after the end of the aws-chunked body")
            complete_trailer = state is _State.TRAILER and self._trailer_complete()
            if state is not _State.DONE and not complete_trailer:
                raise IncompleteBodyError(f"the body ended before {state.value}")
            if self._declared is not None and self._decoded != self._declared:
                raise IncompleteBodyError(
                    f"the payload has {self._decoded} bytes, x-amz-decoded-content-length "
                    f"announced {self._declared}"
                )
            if self._expected_trailer is not None and self._expected_trailer not in self._trailers:
                raise MalformedTrailerError(f"the trailer lacks {self._expected_trailer}")
        except SignatureError:
            self._fail()
            raise
        self._state = _State.DONE
        return dict(self._trailers)

    # ------------------------------------------------------------ internals

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._held.clear()
        self._partial.clear()

    def _feed(self, data: bytes, out: list[memoryview]) -> None:
        view = memoryview(data)
        pos = 0
        end = len(data)
        while pos < end:
            if self._state is _State.DATA:
                take = min(self._remaining, end - pos)
                piece = view[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._hasher is None:
                    self._emit(piece, out)
                else:
                    self._hasher.update(piece)
                    self._held.append(piece)
                if self._remaining == 0:
                    self._end_chunk(out)
                continue
            # Every other state reads a line; search no further than a line may be long.
            room = MAX_CHUNK_LINE_BYTES - len(self._partial)
            newline = data.find(b"\n", pos, pos + room + 1)
            if newline < 0:
                if end - pos > room:
                    raise InvalidRequestError(f"{self._state.value} is too long")
                self._partial += view[pos:]
                return
            line = bytes(self._partial) + data[pos:newline] if self._partial else data[pos:newline]
            self._partial.clear()
            pos = newline + 1
            self._on_line(line.removesuffix(b"\r"), out)

    def _emit(self, piece: memoryview, out: list[memoryview]) -> None:
        self._decoded += len(piece)
        out.append(piece)

    def _on_line(self, line: bytes, out: list[memoryview]) -> None:
        state = self._state
        if state is _State.HEADER:
            self._on_chunk_header(line, out)
        elif state is _State.DATA_END:
            if line:
                raise InvalidRequestError("chunk data is longer than its chunk size")
            self._state = _State.HEADER
        elif state is _State.FINAL:
            if line:
                raise InvalidRequestError("unexpected data after the final chunk")
            self._state = _State.DONE
        elif state is _State.TRAILER:
            self._on_trailer_line(line)
        elif line:  # DONE: only blank lines may follow
            raise InvalidRequestError("unexpected data after the end of the aws-chunked body")

    def _on_chunk_header(self, line: bytes, out: list[memoryview]) -> None:
        size_text, _, extension = line.partition(b";")
        if (
            not size_text
            or len(size_text) > _MAX_SIZE_DIGITS
            or not _HEX_DIGITS.issuperset(size_text)
        ):
            raise InvalidRequestError("invalid chunk-size line in the aws-chunked body")
        size = int(size_text, 16)
        if self._mode.signed_chunks:
            if not extension.startswith(_SIGNATURE_PREFIX):
                raise InvalidRequestError(
                    "a chunk of a signed aws-chunked body lacks its signature"
                )
            signature = extension[len(_SIGNATURE_PREFIX) :]
            if len(signature) != 64 or not _HEX_DIGITS.issuperset(signature):
                raise InvalidRequestError("a chunk signature is not 64 hex digits")
            if size > MAX_SIGNED_CHUNK_BYTES:
                raise InvalidRequestError(
                    f"a signed chunk of {size} bytes exceeds {MAX_SIGNED_CHUNK_BYTES} bytes"
                )
            self._signature = signature.decode("ascii").lower()
            self._hasher = hashlib.sha256()
        if self._declared is not None and self._decoded + size > self._declared:
            raise InvalidRequestError(
                f"the chunks exceed x-amz-decoded-content-length ({self._declared} bytes)"
            )
        if size == 0:
            self._end_chunk(out)
        else:
            self._remaining = size
            self._state = _State.DATA

    def _end_chunk(self, out: list[memoryview]) -> None:
        """All of a chunk's data has arrived: check its signature, release its data."""
        final = self._state is _State.HEADER  # a zero-size chunk never enters DATA
        if self._hasher is not None:
            expected = chunk_signature(
                self._key, self._amz_date, self._scope, self._previous, self._hasher.hexdigest()
            )
            if not hmac.compare_digest(expected, self._signature):
                raise SignatureDoesNotMatchError("a chunk signature of the body does not match")
            self._previous = self._signature
            self._hasher = None
            for piece in self._held:
                self._emit(piece, out)
            self._held.clear()
        if not final:
            self._state = _State.DATA_END
        elif self._mode.has_trailer:
            self._state = _State.TRAILER
        else:
            self._state = _State.FINAL

    def _trailer_complete(self) -> bool:
        if self._mode.signed_chunks:
            return self._trailer_signed
        return bool(self._trailers)

    def _on_trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise MalformedTrailerError(f"the trailer exceeds {MAX_TRAILER_BYTES} bytes")
        if not line.strip():
            # A blank line ends a complete trailer; before that it is padding some clients
            # send (AWS's example puts one between the final chunk and the trailer).
            if self._trailer_complete():
                self._state = _State.DONE
            return
        if self._trailer_signed:
            raise MalformedTrailerError("a trailer follows x-amz-trailer-signature")
        name_bytes, colon, value_bytes = line.partition(b":")
        try:
            name = name_bytes.decode("ascii").strip().lower()
            value = value_bytes.decode("ascii").strip()
        except UnicodeDecodeError:
            raise MalformedTrailerError("a trailer is not ASCII") from None
        if not colon or not name:
            raise MalformedTrailerError("a trailer line is not <name>:<value>")
        if name == _TRAILER_SIGNATURE and self._mode.signed_chunks:
            expected = trailer_signature(
                self._key, self._amz_date, self._scope, self._previous, self._trailers.items()
            )
            if not hmac.compare_digest(expected, value.lower()):
                raise SignatureDoesNotMatchError("the trailer signature does not match")
            self._trailer_signed = True
            return
        if name in self._trailers:
            raise MalformedTrailerError(f"the trailer {name!r} appears twice")
        self._trailers[name] = value

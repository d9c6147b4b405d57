"""The payload of an authenticated S3 request: decoded and digested (design §10.1).

:class:`RequestBody` hides the payload modes from the handlers: an ``aws-chunked`` body is
decoded (every chunk signature checked on the way), and the digests the request announced
(``Content-MD5``, ``x-amz-content-sha256``, ``x-amz-checksum-*``, trailers) are computed and
checked by :meth:`RequestBody.verify` once the body is consumed — before the handler
commits anything.

Hashing is CPU work: handlers that stream large bodies call :meth:`RequestBody.digest` on
each block in the worker thread that already hashes it (see
``garage_model.s3.writer.VersionWriter.write_all``); small bodies go through
:meth:`RequestBody.read_all`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import anyio

from garage_api.signature import (
    AwsChunkedDecoder,
    Checksummer,
    parse_expected_checksums,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from garage_api.http import Request
    from garage_api.signature import Authenticated, Checksums, ExpectedChecksums

__all__ = ["RequestBody"]


@final
class RequestBody:
    """The body of ``request``, as its signature ``auth`` says to read it.

    Args:
        request: the HTTP request.
        auth: its verified signature.
        md5: also compute the MD5 (it is the ETag of a plaintext upload).

    Raises:
        SignatureError: the checksum headers or the aws-chunked headers are malformed.
    """

    __slots__ = ("_checksummer", "_decoder", "_request", "_trailers", "expected")

    def __init__(self, request: Request, auth: Authenticated, *, md5: bool = False) -> None:
        self._request = request
        self.expected: ExpectedChecksums = parse_expected_checksums(
            request.headers, content_sha256=auth.payload_sha256
        )
        """The digests the request announced."""
        self._checksummer = Checksummer.for_expected(self.expected, md5=md5)
        self._decoder = (
            AwsChunkedDecoder.for_request(auth, request.headers)
            if auth.payload.is_streaming
            else None
        )
        self._trailers: dict[str, str] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The payload's bytes (decoded from aws-chunked if need be), not yet digested:
        pass each piece to :meth:`digest`, in order.

        Raises:
            SignatureError: a chunk signature, the framing or the trailer is bad, or the
                body is truncated.
            anyio.BrokenResourceError: the client went away.
        """
        decoder = self._decoder
        async for data in self._request.body():
            if decoder is None:
                yield data
                continue
            for piece in decoder.feed(data):
                yield bytes(piece)
        if decoder is not None:
            self._trailers = decoder.finish()

    def digest(self, data: bytes | bytearray | memoryview) -> None:
        """Hashes the next piece of the payload (call it from a worker thread for big data)."""
        self._checksummer.update(data)

    def verify(self) -> Checksums:
        """Checks the announced digests against the payload, once it is all consumed.

        Returns:
            The computed digests (the MD5 if asked for, the additional checksum).

        Raises:
            SignatureError: ``BadDigest``, ``XAmzContentSHA256Mismatch``, a malformed or
                missing trailer.
        """
        expected = self.expected
        if self._trailers is not None:
            expected = expected.with_trailers(self._trailers)
        sums = self._checksummer.finalize()
        sums.verify(expected)
        return sums

    async def read_all(self, limit: int) -> bytes:
        """The whole payload, digested and verified (XML and other small documents).

        Raises:
            S3Error: ``MaxMessageLengthExceeded``-style 400 when longer than ``limit``.
            SignatureError: see :meth:`chunks` and :meth:`verify`.
        """
        from ._errors import S3Error

        buf = bytearray()
        async for chunk in self.chunks():
            buf += chunk
            if len(buf) > limit:
                raise S3Error.from_code(
                    "MaxMessageLengthExceeded", f"the request body is over {limit} bytes"
                )
        await anyio.to_thread.run_sync(self.digest, buf)
        self.verify()
        return bytes(buf)

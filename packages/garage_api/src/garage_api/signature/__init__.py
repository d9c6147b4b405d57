"""SigV4 request authentication and payload verification, as pure sans-IO cores.

Garage: src/api/common/signature/. Shared by the S3 and K2V APIs, which drive these cores
from their HTTP servers and translate :class:`SignatureError` (it carries the S3 error
``code`` and ``http_status``) into their error documents.

A request goes through three steps:

1. Authenticate: :func:`parse_auth` reads the signature from the ``Authorization`` header
   or a presigned URL's query (:func:`parse_post_form` for browser form uploads); the
   driver looks ``key_id`` up in the key table; :func:`verify` checks the scope, the clock
   and the signature, returning :class:`Authenticated`. :func:`verify_request` chains
   them for a synchronous lookup. :func:`sign_request` and :func:`presign` are the client
   side (tests, the K2V client).
2. Decode the body: with a ``STREAMING-*`` payload mode, an :class:`AwsChunkedDecoder`
   (:meth:`AwsChunkedDecoder.for_request`) turns the ``aws-chunked`` body into payload
   bytes, checking every chunk signature and the trailer's.
3. Check digests: :func:`parse_expected_checksums` reads ``Content-MD5``,
   ``x-amz-checksum-*`` and friends; a :class:`Checksummer` hashes the payload; after
   :meth:`ExpectedChecksums.with_trailers`, :meth:`Checksums.verify` raises ``BadDigest``
   and the like on a mismatch, before anything is committed. :func:`composite_checksum` and
   :func:`combine_crc` make multipart objects' checksums.

Example:
    >>> policy = AuthPolicy(region="garage")
    >>> headers = sign_request(
    ...     "GET", "/bucket/key", "", [("host", "localhost:3900")],
    ...     key_id="GK1", secret="s3cr3t", region="garage", service="s3",
    ...     now_ms=1_700_000_000_000,
    ... )
    >>> auth = verify_request(
    ...     "GET", "/bucket/key", "", headers, {"GK1": "s3cr3t"}.get,
    ...     policy=policy, now_ms=1_700_000_000_000,
    ... )
    >>> auth.key_id, auth.payload
    ('GK1', <PayloadMode.UNSIGNED: 'UNSIGNED-PAYLOAD'>)
"""

from ._checksum import CONTENT_MD5 as CONTENT_MD5
from ._checksum import X_AMZ_CHECKSUM_ALGORITHM as X_AMZ_CHECKSUM_ALGORITHM
from ._checksum import X_AMZ_CHECKSUM_TYPE as X_AMZ_CHECKSUM_TYPE
from ._checksum import X_AMZ_SDK_CHECKSUM_ALGORITHM as X_AMZ_SDK_CHECKSUM_ALGORITHM
from ._checksum import X_AMZ_TRAILER as X_AMZ_TRAILER
from ._checksum import ChecksumAlgorithm as ChecksumAlgorithm
from ._checksum import Checksummer as Checksummer
from ._checksum import Checksums as Checksums
from ._checksum import ChecksumType as ChecksumType
from ._checksum import ChecksumValue as ChecksumValue
from ._checksum import ExpectedChecksums as ExpectedChecksums
from ._checksum import checksum_header_name as checksum_header_name
from ._checksum import checksum_type as checksum_type
from ._checksum import combine_crc as combine_crc
from ._checksum import composite_checksum as composite_checksum
from ._checksum import decode_checksum as decode_checksum
from ._checksum import decode_multipart_checksum as decode_multipart_checksum
from ._checksum import encode_checksum as encode_checksum
from ._checksum import parse_checksum_algorithm as parse_checksum_algorithm
from ._checksum import parse_expected_checksums as parse_expected_checksums
from ._checksum import trailer_algorithm as trailer_algorithm
from ._errors import AccessDeniedError as AccessDeniedError
from ._errors import AuthorizationHeaderMalformedError as AuthorizationHeaderMalformedError
from ._errors import AuthorizationQueryParametersError as AuthorizationQueryParametersError
from ._errors import BadDigestError as BadDigestError
from ._errors import IncompleteBodyError as IncompleteBodyError
from ._errors import InvalidAccessKeyIdError as InvalidAccessKeyIdError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import InvalidDigestError as InvalidDigestError
from ._errors import InvalidRequestError as InvalidRequestError
from ._errors import MalformedTrailerError as MalformedTrailerError
from ._errors import MissingSecurityHeaderError as MissingSecurityHeaderError
from ._errors import RequestTimeTooSkewedError as RequestTimeTooSkewedError
from ._errors import SignatureDoesNotMatchError as SignatureDoesNotMatchError
from ._errors import SignatureError as SignatureError
from ._errors import XAmzContentSHA256MismatchError as XAmzContentSHA256MismatchError
from ._sigv4 import AWS4_HMAC_SHA256 as AWS4_HMAC_SHA256
from ._sigv4 import DEFAULT_MAX_SKEW_S as DEFAULT_MAX_SKEW_S
from ._sigv4 import EMPTY_SHA256_HEX as EMPTY_SHA256_HEX
from ._sigv4 import MAX_PRESIGNED_EXPIRES_S as MAX_PRESIGNED_EXPIRES_S
from ._sigv4 import UNSIGNED_PAYLOAD as UNSIGNED_PAYLOAD
from ._sigv4 import Authenticated as Authenticated
from ._sigv4 import AuthKind as AuthKind
from ._sigv4 import AuthPolicy as AuthPolicy
from ._sigv4 import ParsedAuth as ParsedAuth
from ._sigv4 import PayloadMode as PayloadMode
from ._sigv4 import Scope as Scope
from ._sigv4 import canonical_query as canonical_query
from ._sigv4 import canonical_request as canonical_request
from ._sigv4 import format_amz_date as format_amz_date
from ._sigv4 import parse_amz_date as parse_amz_date
from ._sigv4 import parse_auth as parse_auth
from ._sigv4 import parse_content_sha256 as parse_content_sha256
from ._sigv4 import parse_post_form as parse_post_form
from ._sigv4 import presign as presign
from ._sigv4 import sign_request as sign_request
from ._sigv4 import signing_key as signing_key
from ._sigv4 import string_to_sign as string_to_sign
from ._sigv4 import uri_encode as uri_encode
from ._sigv4 import verify as verify
from ._sigv4 import verify_request as verify_request
from ._streaming import AWS4_HMAC_SHA256_PAYLOAD as AWS4_HMAC_SHA256_PAYLOAD
from ._streaming import AWS4_HMAC_SHA256_TRAILER as AWS4_HMAC_SHA256_TRAILER
from ._streaming import MAX_CHUNK_LINE_BYTES as MAX_CHUNK_LINE_BYTES
from ._streaming import MAX_SIGNED_CHUNK_BYTES as MAX_SIGNED_CHUNK_BYTES
from ._streaming import MAX_TRAILER_BYTES as MAX_TRAILER_BYTES
from ._streaming import AwsChunkedDecoder as AwsChunkedDecoder
from ._streaming import canonical_trailers as canonical_trailers
from ._streaming import chunk_signature as chunk_signature
from ._streaming import strip_aws_chunked as strip_aws_chunked
from ._streaming import trailer_signature as trailer_signature

__all__ = [
    "AWS4_HMAC_SHA256",
    "AWS4_HMAC_SHA256_PAYLOAD",
    "AWS4_HMAC_SHA256_TRAILER",
    "CONTENT_MD5",
    "DEFAULT_MAX_SKEW_S",
    "EMPTY_SHA256_HEX",
    "MAX_CHUNK_LINE_BYTES",
    "MAX_PRESIGNED_EXPIRES_S",
    "MAX_SIGNED_CHUNK_BYTES",
    "MAX_TRAILER_BYTES",
    "UNSIGNED_PAYLOAD",
    "X_AMZ_CHECKSUM_ALGORITHM",
    "X_AMZ_CHECKSUM_TYPE",
    "X_AMZ_SDK_CHECKSUM_ALGORITHM",
    "X_AMZ_TRAILER",
    "AccessDeniedError",
    "AuthKind",
    "AuthPolicy",
    "Authenticated",
    "AuthorizationHeaderMalformedError",
    "AuthorizationQueryParametersError",
    "AwsChunkedDecoder",
    "BadDigestError",
    "ChecksumAlgorithm",
    "ChecksumType",
    "ChecksumValue",
    "Checksummer",
    "Checksums",
    "ExpectedChecksums",
    "IncompleteBodyError",
    "InvalidAccessKeyIdError",
    "InvalidArgumentError",
    "InvalidDigestError",
    "InvalidRequestError",
    "MalformedTrailerError",
    "MissingSecurityHeaderError",
    "ParsedAuth",
    "PayloadMode",
    "RequestTimeTooSkewedError",
    "Scope",
    "SignatureDoesNotMatchError",
    "SignatureError",
    "XAmzContentSHA256MismatchError",
    "canonical_query",
    "canonical_request",
    "canonical_trailers",
    "checksum_header_name",
    "checksum_type",
    "chunk_signature",
    "combine_crc",
    "composite_checksum",
    "decode_checksum",
    "decode_multipart_checksum",
    "encode_checksum",
    "format_amz_date",
    "parse_amz_date",
    "parse_auth",
    "parse_checksum_algorithm",
    "parse_content_sha256",
    "parse_expected_checksums",
    "parse_post_form",
    "presign",
    "sign_request",
    "signing_key",
    "string_to_sign",
    "strip_aws_chunked",
    "trailer_algorithm",
    "trailer_signature",
    "uri_encode",
    "verify",
    "verify_request",
]

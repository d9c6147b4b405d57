"""The S3 API's pure cores: routing, errors, XML, ranges, preconditions and listing pages.

Garage: src/api/s3/ (design §10.1, §10.2, §10.4, §10.6, §10.8, §10.10). Everything here is
synchronous and free of I/O and HTTP framework types: the HTTP driver passes methods, paths,
query pairs, headers and bytes in, and gets values out or an :class:`S3Error` to answer with.

- :class:`S3Api`: the server (authentication, bucket resolution, permissions, the
  handlers); :class:`RequestBody` reads a verified payload.
- :func:`parse_request` routes a request to an :class:`Endpoint`: one :class:`Operation` of
  the whole S3 API (unimplemented ones answer ``501 NotImplemented``), its bucket and key
  (path or virtual-hosted style), its query parameters and the :class:`Authorization` it
  needs.
- :class:`S3Error` carries the code, status, message and extra headers of an error answer
  and renders the XML error document.
- The XML codec: response documents (``ListBucketResult``, ``DeleteResult``...) with
  ``to_xml()``, and safe parsers of request bodies (:func:`parse_delete`,
  :func:`parse_complete_multipart_upload`, :func:`parse_create_bucket_configuration`).
- :func:`parse_range_header` and :func:`part_range` pick the bytes of a GET;
  :class:`Preconditions` evaluates ``If-*`` and ``x-amz-copy-source-if-*``.
- :func:`read_object` is GetObject/HeadObject without an S3 request context, and
  :func:`cors_preflight_headers` / :func:`cors_response_headers` apply a bucket's CORS
  rules: the website server (``garage_web``) reuses them.
- :class:`Lister` builds a listing page from table reads (common prefixes, max-keys,
  continuation tokens and V1 markers); :func:`paginate` does it over an iterator.

Example::

    >>> from garage_api.s3 import Operation, parse_request
    >>> ep = parse_request("GET", "b.s3.garage.localhost:3900", "/photos/2024/a.jpg",
    ...                    [], {}, root_domain="s3.garage.localhost")
    >>> (ep.operation is Operation.GET_OBJECT, ep.bucket, ep.key)
    (True, 'b', 'photos/2024/a.jpg')
"""

from ._api import ANY_REGION as ANY_REGION
from ._api import ReqCtx as ReqCtx
from ._api import S3Api as S3Api
from ._body import RequestBody as RequestBody
from ._conditional import Precondition as Precondition
from ._conditional import Preconditions as Preconditions
from ._cors import permissive_preflight_headers as cors_permissive_preflight_headers
from ._cors import preflight_headers as cors_preflight_headers
from ._cors import response_headers as cors_response_headers
from ._errors import ERROR_CODES as ERROR_CODES
from ._errors import S3Error as S3Error
from ._h_object import read_object as read_object
from ._range import ByteRange as ByteRange
from ._range import check_range_or_part as check_range_or_part
from ._range import format_content_range as format_content_range
from ._range import parse_copy_source_range as parse_copy_source_range
from ._range import parse_range_header as parse_range_header
from ._range import part_range as part_range
from ._router import KEYWORDS as KEYWORDS
from ._router import MAX_KEY_BYTES as MAX_KEY_BYTES
from ._router import Authorization as Authorization
from ._router import Endpoint as Endpoint
from ._router import Headers as Headers
from ._router import Operation as Operation
from ._router import header_values as header_values
from ._router import host_to_bucket as host_to_bucket
from ._router import parse_request as parse_request
from ._tokens import MAX_LIST_KEYS as MAX_LIST_KEYS
from ._tokens import MAX_PART_NUMBER_MARKER as MAX_PART_NUMBER_MARKER
from ._tokens import UPLOAD_ID_INCLUDE as UPLOAD_ID_INCLUDE
from ._tokens import ListEntry as ListEntry
from ._tokens import Lister as Lister
from ._tokens import ListingPage as ListingPage
from ._tokens import ListStart as ListStart
from ._tokens import clamp_max_keys as clamp_max_keys
from ._tokens import common_prefix as common_prefix
from ._tokens import decode_continuation_token as decode_continuation_token
from ._tokens import decode_upload_id as decode_upload_id
from ._tokens import encode_continuation_token as encode_continuation_token
from ._tokens import key_after_prefix as key_after_prefix
from ._tokens import list_objects_start as list_objects_start
from ._tokens import list_uploads_start as list_uploads_start
from ._tokens import paginate as paginate
from ._tokens import paginate_parts as paginate_parts
from ._xml import CHECKSUM_ALGORITHMS as CHECKSUM_ALGORITHMS
from ._xml import MAX_DELETE_OBJECTS as MAX_DELETE_OBJECTS
from ._xml import MAX_XML_BODY_BYTES as MAX_XML_BODY_BYTES
from ._xml import S3_XMLNS as S3_XMLNS
from ._xml import AccessControlPolicy as AccessControlPolicy
from ._xml import BucketEntry as BucketEntry
from ._xml import Checksums as Checksums
from ._xml import CompletedPart as CompletedPart
from ._xml import CompleteMultipartUpload as CompleteMultipartUpload
from ._xml import CompleteMultipartUploadResult as CompleteMultipartUploadResult
from ._xml import CopyObjectResult as CopyObjectResult
from ._xml import CopyPartResult as CopyPartResult
from ._xml import CreateBucketConfiguration as CreateBucketConfiguration
from ._xml import Deleted as Deleted
from ._xml import DeleteError as DeleteError
from ._xml import DeleteRequest as DeleteRequest
from ._xml import DeleteResult as DeleteResult
from ._xml import Grant as Grant
from ._xml import InitiateMultipartUploadResult as InitiateMultipartUploadResult
from ._xml import ListAllMyBucketsResult as ListAllMyBucketsResult
from ._xml import ListBucketResult as ListBucketResult
from ._xml import ListMultipartUploadsResult as ListMultipartUploadsResult
from ._xml import ListPartsResult as ListPartsResult
from ._xml import LocationConstraint as LocationConstraint
from ._xml import ObjectEntry as ObjectEntry
from ._xml import ObjectIdentifier as ObjectIdentifier
from ._xml import Owner as Owner
from ._xml import PartEntry as PartEntry
from ._xml import PostResponse as PostResponse
from ._xml import UploadEntry as UploadEntry
from ._xml import VersioningConfiguration as VersioningConfiguration
from ._xml import parse_complete_multipart_upload as parse_complete_multipart_upload
from ._xml import parse_create_bucket_configuration as parse_create_bucket_configuration
from ._xml import parse_delete as parse_delete
from ._xml import url_encode as url_encode

__all__ = [
    "ANY_REGION",
    "CHECKSUM_ALGORITHMS",
    "ERROR_CODES",
    "KEYWORDS",
    "MAX_DELETE_OBJECTS",
    "MAX_KEY_BYTES",
    "MAX_LIST_KEYS",
    "MAX_PART_NUMBER_MARKER",
    "MAX_XML_BODY_BYTES",
    "S3_XMLNS",
    "UPLOAD_ID_INCLUDE",
    "AccessControlPolicy",
    "Authorization",
    "BucketEntry",
    "ByteRange",
    "Checksums",
    "CompleteMultipartUpload",
    "CompleteMultipartUploadResult",
    "CompletedPart",
    "CopyObjectResult",
    "CopyPartResult",
    "CreateBucketConfiguration",
    "DeleteError",
    "DeleteRequest",
    "DeleteResult",
    "Deleted",
    "Endpoint",
    "Grant",
    "Headers",
    "InitiateMultipartUploadResult",
    "ListAllMyBucketsResult",
    "ListBucketResult",
    "ListEntry",
    "ListMultipartUploadsResult",
    "ListPartsResult",
    "ListStart",
    "Lister",
    "ListingPage",
    "LocationConstraint",
    "ObjectEntry",
    "ObjectIdentifier",
    "Operation",
    "Owner",
    "PartEntry",
    "PostResponse",
    "Precondition",
    "Preconditions",
    "ReqCtx",
    "RequestBody",
    "S3Api",
    "S3Error",
    "UploadEntry",
    "VersioningConfiguration",
    "check_range_or_part",
    "clamp_max_keys",
    "common_prefix",
    "cors_permissive_preflight_headers",
    "cors_preflight_headers",
    "cors_response_headers",
    "decode_continuation_token",
    "decode_upload_id",
    "encode_continuation_token",
    "format_content_range",
    "header_values",
    "host_to_bucket",
    "key_after_prefix",
    "list_objects_start",
    "list_uploads_start",
    "paginate",
    "paginate_parts",
    "parse_complete_multipart_upload",
    "parse_copy_source_range",
    "parse_create_bucket_configuration",
    "parse_delete",
    "parse_range_header",
    "parse_request",
    "part_range",
    "read_object",
    "url_encode",
]

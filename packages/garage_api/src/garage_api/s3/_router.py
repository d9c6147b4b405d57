"""S3 request routing: which operation a request is, on which bucket and key.

Garage: src/api/s3/router.rs, src/api/common/router_macros.rs and the host helpers of
src/api/common/helpers.rs (design §10.2). Pure and synchronous: the HTTP driver passes the
method, the ``Host`` header, the raw path, the decoded query pairs and the headers, and gets
an :class:`Endpoint` back, or an :class:`~garage_api.s3.S3Error`.

Theory of operation
-------------------
1. **Bucket.** If ``root_domain`` is configured and the Host (port stripped, lower-cased)
   ends with it label-wise (``b.s3.example.com`` under ``s3.example.com``), the labels before
   it are the bucket (virtual-hosted style) and the whole path is the key. Otherwise the
   first path segment is the bucket (path style). No bucket and an empty path is the
   service: ``GET /`` is ListBuckets.
2. **Key.** Everything after the bucket's ``/``, percent-decoded as UTF-8 (``+`` stays a
   plus: S3 paths are not form-encoded). An empty key means a bucket-level request.
3. **Sub-resource keyword.** At most one query parameter from :data:`KEYWORDS`
   (``?acl``, ``?uploads``, ``?tagging``...) names the sub-resource; its value is ignored.
   Two keywords is an error.
4. **Operation.** ``(method, key present, keyword)`` selects a short list of candidates,
   tried in order; a candidate may require a query field (``uploadId``, ``partNumber``,
   ``list-type``, ``id``) or a header (``x-amz-copy-source``). No candidate → 400
   ``InvalidRequest`` (an unknown method → 405 ``MethodNotAllowed``).
5. **Parameters.** Each operation reads its own query fields. Fields with an empty value
   count as absent (Garage does the same), a repeated field is an error, integers must be
   plain decimal, and unknown parameters (``x-id``, ``X-Amz-*`` of presigned URLs, ...)
   are ignored.

Every operation of the S3 API reference is routed, so an unimplemented one is answered
``501 NotImplemented`` naming it (:attr:`Endpoint.implemented`), after the permission check
of :attr:`Endpoint.authorization` like any other (Garage does the same). A few AWS names
share one request shape; the router answers with the current name: GetBucketLifecycle →
GetBucketLifecycleConfiguration (and Put), GetBucketNotification →
GetBucketNotificationConfiguration (and Put), ListDirectoryBuckets → ListBuckets.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from ._errors import S3Error

__all__ = [
    "KEYWORDS",
    "MAX_KEY_BYTES",
    "Authorization",
    "Endpoint",
    "Headers",
    "Operation",
    "header_values",
    "host_to_bucket",
    "parse_request",
]

# S3's limit on object key length, in bytes of UTF-8 (AWS: "Creating object key names").
MAX_KEY_BYTES: Final = 1024

# Part numbers of multipart uploads are 1..10000 (AWS: UploadPart, "Amazon S3 multipart
# upload limits"); GetObject's partNumber lives in the same range.
_MAX_PART_NUMBER: Final = 10_000

# A decimal integer as S3 takes it in a query string: digits only (int() alone would accept
# "+5", " 5" and "5_0"), at most 19 of them and at most _MAX_INT64, so that every value fits
# a signed 64-bit integer (19 digits alone would allow 9999999999999999999).
_DECIMAL = re.compile(r"[0-9]{1,19}")
_MAX_INT64: Final = 2**63 - 1

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
"""Request headers: a mapping or ``(name, value)`` pairs; names match case-insensitively."""


def header_values(headers: Headers, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive), in order; empty if absent."""
    wanted = name.lower()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [value for key, value in pairs if key.lower() == wanted]


class Authorization(enum.Enum):
    """The bucket permission an endpoint needs (Garage: ``Authorization``, design §10.2)."""

    NONE = "none"
    """Only a valid key (ListBuckets), or no authentication at all (OPTIONS preflight)."""
    READ = "read"
    """The key's ``read`` flag on the bucket."""
    WRITE = "write"
    """The key's ``write`` flag on the bucket."""
    OWNER = "owner"
    """The key's ``owner`` flag on the bucket."""


class Operation(enum.Enum):
    """Every S3 operation, valued by its AWS name (``Operation.GET_OBJECT.value``).

    ``OPTIONS`` (CORS preflight) and ``POST_OBJECT`` (browser form upload) are Garage's
    names for the two requests that are not operations of the S3 API reference.
    """

    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    COPY_OBJECT = "CopyObject"
    CREATE_BUCKET = "CreateBucket"
    CREATE_BUCKET_METADATA_CONFIGURATION = "CreateBucketMetadataConfiguration"
    CREATE_BUCKET_METADATA_TABLE_CONFIGURATION = "CreateBucketMetadataTableConfiguration"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    CREATE_SESSION = "CreateSession"
    DELETE_BUCKET = "DeleteBucket"
    DELETE_BUCKET_ANALYTICS_CONFIGURATION = "DeleteBucketAnalyticsConfiguration"
    DELETE_BUCKET_CORS = "DeleteBucketCors"
    DELETE_BUCKET_ENCRYPTION = "DeleteBucketEncryption"
    DELETE_BUCKET_INTELLIGENT_TIERING_CONFIGURATION = "DeleteBucketIntelligentTieringConfiguration"
    DELETE_BUCKET_INVENTORY_CONFIGURATION = "DeleteBucketInventoryConfiguration"
    DELETE_BUCKET_LIFECYCLE = "DeleteBucketLifecycle"
    DELETE_BUCKET_METADATA_CONFIGURATION = "DeleteBucketMetadataConfiguration"
    DELETE_BUCKET_METADATA_TABLE_CONFIGURATION = "DeleteBucketMetadataTableConfiguration"
    DELETE_BUCKET_METRICS_CONFIGURATION = "DeleteBucketMetricsConfiguration"
    DELETE_BUCKET_OWNERSHIP_CONTROLS = "DeleteBucketOwnershipControls"
    DELETE_BUCKET_POLICY = "DeleteBucketPolicy"
    DELETE_BUCKET_REPLICATION = "DeleteBucketReplication"
    DELETE_BUCKET_TAGGING = "DeleteBucketTagging"
    DELETE_BUCKET_WEBSITE = "DeleteBucketWebsite"
    DELETE_OBJECT = "DeleteObject"
    DELETE_OBJECT_ANNOTATION = "DeleteObjectAnnotation"
    DELETE_OBJECT_TAGGING = "DeleteObjectTagging"
    DELETE_OBJECTS = "DeleteObjects"
    DELETE_PUBLIC_ACCESS_BLOCK = "DeletePublicAccessBlock"
    GET_BUCKET_ABAC = "GetBucketAbac"
    GET_BUCKET_ACCELERATE_CONFIGURATION = "GetBucketAccelerateConfiguration"
    GET_BUCKET_ACL = "GetBucketAcl"
    GET_BUCKET_ANALYTICS_CONFIGURATION = "GetBucketAnalyticsConfiguration"
    GET_BUCKET_CORS = "GetBucketCors"
    GET_BUCKET_ENCRYPTION = "GetBucketEncryption"
    GET_BUCKET_INTELLIGENT_TIERING_CONFIGURATION = "GetBucketIntelligentTieringConfiguration"
    GET_BUCKET_INVENTORY_CONFIGURATION = "GetBucketInventoryConfiguration"
    GET_BUCKET_LIFECYCLE_CONFIGURATION = "GetBucketLifecycleConfiguration"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    GET_BUCKET_LOGGING = "GetBucketLogging"
    GET_BUCKET_METADATA_CONFIGURATION = "GetBucketMetadataConfiguration"
    GET_BUCKET_METADATA_TABLE_CONFIGURATION = "GetBucketMetadataTableConfiguration"
    GET_BUCKET_METRICS_CONFIGURATION = "GetBucketMetricsConfiguration"
    GET_BUCKET_NOTIFICATION_CONFIGURATION = "GetBucketNotificationConfiguration"
    GET_BUCKET_OWNERSHIP_CONTROLS = "GetBucketOwnershipControls"
    GET_BUCKET_POLICY = "GetBucketPolicy"
    GET_BUCKET_POLICY_STATUS = "GetBucketPolicyStatus"
    GET_BUCKET_REPLICATION = "GetBucketReplication"
    GET_BUCKET_REQUEST_PAYMENT = "GetBucketRequestPayment"
    GET_BUCKET_TAGGING = "GetBucketTagging"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    GET_BUCKET_WEBSITE = "GetBucketWebsite"
    GET_OBJECT = "GetObject"
    GET_OBJECT_ACL = "GetObjectAcl"
    GET_OBJECT_ANNOTATION = "GetObjectAnnotation"
    GET_OBJECT_ATTRIBUTES = "GetObjectAttributes"
    GET_OBJECT_LEGAL_HOLD = "GetObjectLegalHold"
    GET_OBJECT_LOCK_CONFIGURATION = "GetObjectLockConfiguration"
    GET_OBJECT_RETENTION = "GetObjectRetention"
    GET_OBJECT_TAGGING = "GetObjectTagging"
    GET_OBJECT_TORRENT = "GetObjectTorrent"
    GET_PUBLIC_ACCESS_BLOCK = "GetPublicAccessBlock"
    HEAD_BUCKET = "HeadBucket"
    HEAD_OBJECT = "HeadObject"
    LIST_BUCKET_ANALYTICS_CONFIGURATIONS = "ListBucketAnalyticsConfigurations"
    LIST_BUCKET_INTELLIGENT_TIERING_CONFIGURATIONS = "ListBucketIntelligentTieringConfigurations"
    LIST_BUCKET_INVENTORY_CONFIGURATIONS = "ListBucketInventoryConfigurations"
    LIST_BUCKET_METRICS_CONFIGURATIONS = "ListBucketMetricsConfigurations"
    LIST_BUCKETS = "ListBuckets"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    LIST_OBJECT_ANNOTATIONS = "ListObjectAnnotations"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_PARTS = "ListParts"
    OPTIONS = "Options"
    POST_OBJECT = "PostObject"
    PUT_BUCKET_ABAC = "PutBucketAbac"
    PUT_BUCKET_ACCELERATE_CONFIGURATION = "PutBucketAccelerateConfiguration"
    PUT_BUCKET_ACL = "PutBucketAcl"
    PUT_BUCKET_ANALYTICS_CONFIGURATION = "PutBucketAnalyticsConfiguration"
    PUT_BUCKET_CORS = "PutBucketCors"
    PUT_BUCKET_ENCRYPTION = "PutBucketEncryption"
    PUT_BUCKET_INTELLIGENT_TIERING_CONFIGURATION = "PutBucketIntelligentTieringConfiguration"
    PUT_BUCKET_INVENTORY_CONFIGURATION = "PutBucketInventoryConfiguration"
    PUT_BUCKET_LIFECYCLE_CONFIGURATION = "PutBucketLifecycleConfiguration"
    PUT_BUCKET_LOGGING = "PutBucketLogging"
    PUT_BUCKET_METRICS_CONFIGURATION = "PutBucketMetricsConfiguration"
    PUT_BUCKET_NOTIFICATION_CONFIGURATION = "PutBucketNotificationConfiguration"
    PUT_BUCKET_OWNERSHIP_CONTROLS = "PutBucketOwnershipControls"
    PUT_BUCKET_POLICY = "PutBucketPolicy"
    PUT_BUCKET_REPLICATION = "PutBucketReplication"
    PUT_BUCKET_REQUEST_PAYMENT = "PutBucketRequestPayment"
    PUT_BUCKET_TAGGING = "PutBucketTagging"
    PUT_BUCKET_VERSIONING = "PutBucketVersioning"
    PUT_BUCKET_WEBSITE = "PutBucketWebsite"
    PUT_OBJECT = "PutObject"
    PUT_OBJECT_ACL = "PutObjectAcl"
    PUT_OBJECT_ANNOTATION = "PutObjectAnnotation"
    PUT_OBJECT_LEGAL_HOLD = "PutObjectLegalHold"
    PUT_OBJECT_LOCK_CONFIGURATION = "PutObjectLockConfiguration"
    PUT_OBJECT_RETENTION = "PutObjectRetention"
    PUT_OBJECT_TAGGING = "PutObjectTagging"
    PUT_PUBLIC_ACCESS_BLOCK = "PutPublicAccessBlock"
    RENAME_OBJECT = "RenameObject"
    RESTORE_OBJECT = "RestoreObject"
    SELECT_OBJECT_CONTENT = "SelectObjectContent"
    UPDATE_BUCKET_METADATA_ANNOTATION_TABLE_CONFIGURATION = (
        "UpdateBucketMetadataAnnotationTableConfiguration"
    )
    UPDATE_BUCKET_METADATA_INVENTORY_TABLE_CONFIGURATION = (
        "UpdateBucketMetadataInventoryTableConfiguration"
    )
    UPDATE_BUCKET_METADATA_JOURNAL_TABLE_CONFIGURATION = (
        "UpdateBucketMetadataJournalTableConfiguration"
    )
    UPDATE_OBJECT_ENCRYPTION = "UpdateObjectEncryption"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    WRITE_GET_OBJECT_RESPONSE = "WriteGetObjectResponse"

    @property
    def implemented(self) -> bool:
        """Whether Garage implements it (design §10.10); if not, answer 501 NotImplemented."""
        return self in _IMPLEMENTED

    @property
    def authorization(self) -> Authorization:
        """The bucket permission the operation needs (Garage: ``authorization_type``).

        ListBuckets and OPTIONS need none; reads (every GET and HEAD, and
        SelectObjectContent) need ``read``; DeleteBucket and the website and CORS
        configurations need ``owner``; everything else needs ``write``.
        """
        if self in _NO_PERMISSION:
            return Authorization.NONE
        if self in _OWNER:
            return Authorization.OWNER
        if self in _READ:
            return Authorization.READ
        return Authorization.WRITE


_O = Operation

_IMPLEMENTED: Final = frozenset(
    {
        _O.ABORT_MULTIPART_UPLOAD,
        _O.COMPLETE_MULTIPART_UPLOAD,
        _O.COPY_OBJECT,
        _O.CREATE_BUCKET,
        _O.CREATE_MULTIPART_UPLOAD,
        _O.DELETE_BUCKET,
        _O.DELETE_BUCKET_CORS,
        _O.DELETE_BUCKET_LIFECYCLE,
        _O.DELETE_BUCKET_WEBSITE,
        _O.DELETE_OBJECT,
        _O.DELETE_OBJECTS,
        _O.GET_BUCKET_ACL,
        _O.GET_BUCKET_CORS,
        _O.GET_BUCKET_LIFECYCLE_CONFIGURATION,
        _O.GET_BUCKET_LOCATION,
        _O.GET_BUCKET_VERSIONING,
        _O.GET_BUCKET_WEBSITE,
        _O.GET_OBJECT,
        _O.HEAD_BUCKET,
        _O.HEAD_OBJECT,
        _O.LIST_BUCKETS,
        _O.LIST_MULTIPART_UPLOADS,
        _O.LIST_OBJECTS,
        _O.LIST_OBJECTS_V2,
        _O.LIST_PARTS,
        _O.OPTIONS,
        _O.POST_OBJECT,
        _O.PUT_BUCKET_CORS,
        _O.PUT_BUCKET_LIFECYCLE_CONFIGURATION,
        _O.PUT_BUCKET_WEBSITE,
        _O.PUT_OBJECT,
        _O.UPLOAD_PART,
        _O.UPLOAD_PART_COPY,
    }
)

_NO_PERMISSION: Final = frozenset({_O.LIST_BUCKETS, _O.OPTIONS})

_OWNER: Final = frozenset(
    {
        _O.DELETE_BUCKET,
        _O.DELETE_BUCKET_CORS,
        _O.DELETE_BUCKET_WEBSITE,
        _O.GET_BUCKET_CORS,
        _O.GET_BUCKET_WEBSITE,
        _O.PUT_BUCKET_CORS,
        _O.PUT_BUCKET_WEBSITE,
    }
)


@dataclass(frozen=True, slots=True)
class _Route:
    """A candidate operation for a (method, key present, keyword) triple."""

    operation: Operation
    if_field: str | None = None  # this query field must be present
    if_header: str | None = None  # this header must be present


def _r(op: Operation, *, field: str | None = None, header: str | None = None) -> _Route:
    return _Route(op, field, header)


# (method, request has a key, keyword) -> candidates, first match wins. "" is "no keyword".
_ROUTES: Final[dict[tuple[str, bool, str], tuple[_Route, ...]]] = {
    # ---- GET, object level
    ("GET", True, ""): (_r(_O.LIST_PARTS, field="uploadId"), _r(_O.GET_OBJECT)),
    ("GET", True, "acl"): (_r(_O.GET_OBJECT_ACL),),
    ("GET", True, "annotation"): (
        _r(_O.GET_OBJECT_ANNOTATION, field="annotationName"),
        _r(_O.LIST_OBJECT_ANNOTATIONS),
    ),
    ("GET", True, "attributes"): (_r(_O.GET_OBJECT_ATTRIBUTES),),
    ("GET", True, "legal-hold"): (_r(_O.GET_OBJECT_LEGAL_HOLD),),
    ("GET", True, "retention"): (_r(_O.GET_OBJECT_RETENTION),),
    ("GET", True, "tagging"): (_r(_O.GET_OBJECT_TAGGING),),
    ("GET", True, "torrent"): (_r(_O.GET_OBJECT_TORRENT),),
    # ---- GET, bucket level
    ("GET", False, ""): (_r(_O.LIST_OBJECTS_V2, field="list-type"), _r(_O.LIST_OBJECTS)),
    ("GET", False, "abac"): (_r(_O.GET_BUCKET_ABAC),),
    ("GET", False, "accelerate"): (_r(_O.GET_BUCKET_ACCELERATE_CONFIGURATION),),
    ("GET", False, "acl"): (_r(_O.GET_BUCKET_ACL),),
    ("GET", False, "analytics"): (
        _r(_O.GET_BUCKET_ANALYTICS_CONFIGURATION, field="id"),
        _r(_O.LIST_BUCKET_ANALYTICS_CONFIGURATIONS),
    ),
    ("GET", False, "cors"): (_r(_O.GET_BUCKET_CORS),),
    ("GET", False, "encryption"): (_r(_O.GET_BUCKET_ENCRYPTION),),
    ("GET", False, "intelligent-tiering"): (
        _r(_O.GET_BUCKET_INTELLIGENT_TIERING_CONFIGURATION, field="id"),
        _r(_O.LIST_BUCKET_INTELLIGENT_TIERING_CONFIGURATIONS),
    ),
    ("GET", False, "inventory"): (
        _r(_O.GET_BUCKET_INVENTORY_CONFIGURATION, field="id"),
        _r(_O.LIST_BUCKET_INVENTORY_CONFIGURATIONS),
    ),
    ("GET", False, "lifecycle"): (_r(_O.GET_BUCKET_LIFECYCLE_CONFIGURATION),),
    ("GET", False, "location"): (_r(_O.GET_BUCKET_LOCATION),),
    ("GET", False, "logging"): (_r(_O.GET_BUCKET_LOGGING),),
    ("GET", False, "metadataConfiguration"): (_r(_O.GET_BUCKET_METADATA_CONFIGURATION),),
    ("GET", False, "metadataTable"): (_r(_O.GET_BUCKET_METADATA_TABLE_CONFIGURATION),),
    ("GET", False, "metrics"): (
        _r(_O.GET_BUCKET_METRICS_CONFIGURATION, field="id"),
        _r(_O.LIST_BUCKET_METRICS_CONFIGURATIONS),
    ),
    ("GET", False, "notification"): (_r(_O.GET_BUCKET_NOTIFICATION_CONFIGURATION),),
    ("GET", False, "object-lock"): (_r(_O.GET_OBJECT_LOCK_CONFIGURATION),),
    ("GET", False, "ownershipControls"): (_r(_O.GET_BUCKET_OWNERSHIP_CONTROLS),),
    ("GET", False, "policy"): (_r(_O.GET_BUCKET_POLICY),),
    ("GET", False, "policyStatus"): (_r(_O.GET_BUCKET_POLICY_STATUS),),
    ("GET", False, "publicAccessBlock"): (_r(_O.GET_PUBLIC_ACCESS_BLOCK),),
    ("GET", False, "replication"): (_r(_O.GET_BUCKET_REPLICATION),),
    ("GET", False, "requestPayment"): (_r(_O.GET_BUCKET_REQUEST_PAYMENT),),
    ("GET", False, "session"): (_r(_O.CREATE_SESSION),),
    ("GET", False, "tagging"): (_r(_O.GET_BUCKET_TAGGING),),
    ("GET", False, "uploads"): (_r(_O.LIST_MULTIPART_UPLOADS),),
    ("GET", False, "versioning"): (_r(_O.GET_BUCKET_VERSIONING),),
    ("GET", False, "versions"): (_r(_O.LIST_OBJECT_VERSIONS),),
    ("GET", False, "website"): (_r(_O.GET_BUCKET_WEBSITE),),
    # ---- HEAD
    ("HEAD", True, ""): (_r(_O.HEAD_OBJECT),),
    ("HEAD", False, ""): (_r(_O.HEAD_BUCKET),),
    # ---- POST
    ("POST", True, ""): (_r(_O.COMPLETE_MULTIPART_UPLOAD, field="uploadId"),),
    ("POST", True, "restore"): (_r(_O.RESTORE_OBJECT),),
    ("POST", True, "select"): (_r(_O.SELECT_OBJECT_CONTENT),),
    ("POST", True, "uploads"): (_r(_O.CREATE_MULTIPART_UPLOAD),),
    ("POST", False, ""): (_r(_O.POST_OBJECT),),
    ("POST", False, "delete"): (_r(_O.DELETE_OBJECTS),),
    ("POST", False, "metadataConfiguration"): (_r(_O.CREATE_BUCKET_METADATA_CONFIGURATION),),
    ("POST", False, "metadataTable"): (_r(_O.CREATE_BUCKET_METADATA_TABLE_CONFIGURATION),),
    # ---- PUT, object level
    ("PUT", True, ""): (
        _r(_O.UPLOAD_PART_COPY, field="partNumber", header="x-amz-copy-source"),
        _r(_O.COPY_OBJECT, header="x-amz-copy-source"),
        _r(_O.UPLOAD_PART, field="partNumber"),
        _r(_O.PUT_OBJECT),
    ),
    ("PUT", True, "acl"): (_r(_O.PUT_OBJECT_ACL),),
    ("PUT", True, "annotation"): (_r(_O.PUT_OBJECT_ANNOTATION),),
    ("PUT", True, "encryption"): (_r(_O.UPDATE_OBJECT_ENCRYPTION),),
    ("PUT", True, "legal-hold"): (_r(_O.PUT_OBJECT_LEGAL_HOLD),),
    ("PUT", True, "renameObject"): (_r(_O.RENAME_OBJECT),),
    ("PUT", True, "retention"): (_r(_O.PUT_OBJECT_RETENTION),),
    ("PUT", True, "tagging"): (_r(_O.PUT_OBJECT_TAGGING),),
    # ---- PUT, bucket level
    ("PUT", False, ""): (_r(_O.CREATE_BUCKET),),
    ("PUT", False, "abac"): (_r(_O.PUT_BUCKET_ABAC),),
    ("PUT", False, "accelerate"): (_r(_O.PUT_BUCKET_ACCELERATE_CONFIGURATION),),
    ("PUT", False, "acl"): (_r(_O.PUT_BUCKET_ACL),),
    ("PUT", False, "analytics"): (_r(_O.PUT_BUCKET_ANALYTICS_CONFIGURATION),),
    ("PUT", False, "cors"): (_r(_O.PUT_BUCKET_CORS),),
    ("PUT", False, "encryption"): (_r(_O.PUT_BUCKET_ENCRYPTION),),
    ("PUT", False, "intelligent-tiering"): (_r(_O.PUT_BUCKET_INTELLIGENT_TIERING_CONFIGURATION),),
    ("PUT", False, "inventory"): (_r(_O.PUT_BUCKET_INVENTORY_CONFIGURATION),),
    ("PUT", False, "lifecycle"): (_r(_O.PUT_BUCKET_LIFECYCLE_CONFIGURATION),),
    ("PUT", False, "logging"): (_r(_O.PUT_BUCKET_LOGGING),),
    ("PUT", False, "metadataAnnotationTable"): (
        _r(_O.UPDATE_BUCKET_METADATA_ANNOTATION_TABLE_CONFIGURATION),
    ),
    ("PUT", False, "metadataInventoryTable"): (
        _r(_O.UPDATE_BUCKET_METADATA_INVENTORY_TABLE_CONFIGURATION),
    ),
    ("PUT", False, "metadataJournalTable"): (
        _r(_O.UPDATE_BUCKET_METADATA_JOURNAL_TABLE_CONFIGURATION),
    ),
    ("PUT", False, "metrics"): (_r(_O.PUT_BUCKET_METRICS_CONFIGURATION),),
    ("PUT", False, "notification"): (_r(_O.PUT_BUCKET_NOTIFICATION_CONFIGURATION),),
    ("PUT", False, "object-lock"): (_r(_O.PUT_OBJECT_LOCK_CONFIGURATION),),
    ("PUT", False, "ownershipControls"): (_r(_O.PUT_BUCKET_OWNERSHIP_CONTROLS),),
    ("PUT", False, "policy"): (_r(_O.PUT_BUCKET_POLICY),),
    ("PUT", False, "publicAccessBlock"): (_r(_O.PUT_PUBLIC_ACCESS_BLOCK),),
    ("PUT", False, "replication"): (_r(_O.PUT_BUCKET_REPLICATION),),
    ("PUT", False, "requestPayment"): (_r(_O.PUT_BUCKET_REQUEST_PAYMENT),),
    ("PUT", False, "tagging"): (_r(_O.PUT_BUCKET_TAGGING),),
    ("PUT", False, "versioning"): (_r(_O.PUT_BUCKET_VERSIONING),),
    ("PUT", False, "website"): (_r(_O.PUT_BUCKET_WEBSITE),),
    # ---- DELETE, object level
    ("DELETE", True, ""): (_r(_O.ABORT_MULTIPART_UPLOAD, field="uploadId"), _r(_O.DELETE_OBJECT)),
    ("DELETE", True, "annotation"): (_r(_O.DELETE_OBJECT_ANNOTATION),),
    ("DELETE", True, "tagging"): (_r(_O.DELETE_OBJECT_TAGGING),),
    # ---- DELETE, bucket level
    ("DELETE", False, ""): (_r(_O.DELETE_BUCKET),),
    ("DELETE", False, "analytics"): (_r(_O.DELETE_BUCKET_ANALYTICS_CONFIGURATION),),
    ("DELETE", False, "cors"): (_r(_O.DELETE_BUCKET_CORS),),
    ("DELETE", False, "encryption"): (_r(_O.DELETE_BUCKET_ENCRYPTION),),
    ("DELETE", False, "intelligent-tiering"): (
        _r(_O.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIGURATION),
    ),
    ("DELETE", False, "inventory"): (_r(_O.DELETE_BUCKET_INVENTORY_CONFIGURATION),),
    ("DELETE", False, "lifecycle"): (_r(_O.DELETE_BUCKET_LIFECYCLE),),
    ("DELETE", False, "metadataConfiguration"): (_r(_O.DELETE_BUCKET_METADATA_CONFIGURATION),),
    ("DELETE", False, "metadataTable"): (_r(_O.DELETE_BUCKET_METADATA_TABLE_CONFIGURATION),),
    ("DELETE", False, "metrics"): (_r(_O.DELETE_BUCKET_METRICS_CONFIGURATION),),
    ("DELETE", False, "ownershipControls"): (_r(_O.DELETE_BUCKET_OWNERSHIP_CONTROLS),),
    ("DELETE", False, "policy"): (_r(_O.DELETE_BUCKET_POLICY),),
    ("DELETE", False, "publicAccessBlock"): (_r(_O.DELETE_PUBLIC_ACCESS_BLOCK),),
    ("DELETE", False, "replication"): (_r(_O.DELETE_BUCKET_REPLICATION),),
    ("DELETE", False, "tagging"): (_r(_O.DELETE_BUCKET_TAGGING),),
    ("DELETE", False, "website"): (_r(_O.DELETE_BUCKET_WEBSITE),),
}

KEYWORDS: Final[frozenset[str]] = frozenset(kw for (_, _, kw) in _ROUTES if kw)
"""The sub-resource query parameters (``acl``, ``uploads``, ...) that select an operation."""

_METHODS: Final = frozenset(method for (method, _, _) in _ROUTES) | {"OPTIONS"}

# Reads: every GET and HEAD endpoint, plus SelectObjectContent (a POST that only reads).
# CreateSession is a GET too; on S3 Express it hands out credentials of the key's own mode.
_READ: Final = frozenset(
    {
        r.operation
        for (method, _, _), routes in _ROUTES.items()
        for r in routes
        if method in {"GET", "HEAD"}
    }
    | {_O.SELECT_OBJECT_CONTENT}
)

# The response-* query parameters of GetObject and HeadObject, and the header each one
# overrides (AWS: GetObject, "Overriding response header values through the request").
_RESPONSE_OVERRIDES: Final = {
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
    "response-content-language": "content-language",
    "response-content-type": "content-type",
    "response-expires": "expires",
}

# Query field -> Endpoint attribute, for the fields any operation reads.
_FIELDS: Final = {
    "annotationName": "annotation_name",
    "bucket-region": "bucket_region",
    "continuation-token": "continuation_token",
    "delimiter": "delimiter",
    "encoding-type": "encoding_type",
    "fetch-owner": "fetch_owner",
    "id": "config_id",
    "key-marker": "key_marker",
    "list-type": "list_type",
    "marker": "marker",
    "max-buckets": "max_buckets",
    "max-keys": "max_keys",
    "max-parts": "max_parts",
    "max-uploads": "max_uploads",
    "partNumber": "part_number",
    "part-number-marker": "part_number_marker",
    "prefix": "prefix",
    "select-type": "select_type",
    "start-after": "start_after",
    "uploadId": "upload_id",
    "upload-id-marker": "upload_id_marker",
    "versionId": "version_id",
    "version-id-marker": "version_id_marker",
}

_LIST_COMMON: Final = ("delimiter", "encoding-type", "prefix")
_VERSIONED: Final = ("versionId",)

# Operation -> (required fields, optional fields). Operations not listed take none.
_PARAMS: Final[dict[Operation, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    _O.ABORT_MULTIPART_UPLOAD: (("uploadId",), ()),
    _O.COMPLETE_MULTIPART_UPLOAD: (("uploadId",), ()),
    _O.LIST_PARTS: (("uploadId",), ("max-parts", "part-number-marker")),
    _O.UPLOAD_PART: (("partNumber", "uploadId"), ()),
    _O.UPLOAD_PART_COPY: (("partNumber", "uploadId"), ()),
    _O.GET_OBJECT: ((), ("versionId", "partNumber")),
    _O.HEAD_OBJECT: ((), ("versionId", "partNumber")),
    _O.DELETE_OBJECT: ((), _VERSIONED),
    _O.DELETE_OBJECT_TAGGING: ((), _VERSIONED),
    _O.GET_OBJECT_ACL: ((), _VERSIONED),
    _O.GET_OBJECT_ATTRIBUTES: ((), _VERSIONED),
    _O.GET_OBJECT_LEGAL_HOLD: ((), _VERSIONED),
    _O.GET_OBJECT_RETENTION: ((), _VERSIONED),
    _O.GET_OBJECT_TAGGING: ((), _VERSIONED),
    _O.PUT_OBJECT_ACL: ((), _VERSIONED),
    _O.PUT_OBJECT_LEGAL_HOLD: ((), _VERSIONED),
    _O.PUT_OBJECT_RETENTION: ((), _VERSIONED),
    _O.PUT_OBJECT_TAGGING: ((), _VERSIONED),
    _O.RESTORE_OBJECT: ((), _VERSIONED),
    _O.UPDATE_OBJECT_ENCRYPTION: ((), _VERSIONED),
    _O.GET_OBJECT_ANNOTATION: (("annotationName",), _VERSIONED),
    _O.PUT_OBJECT_ANNOTATION: (("annotationName",), _VERSIONED),
    _O.DELETE_OBJECT_ANNOTATION: (("annotationName",), _VERSIONED),
    _O.LIST_OBJECT_ANNOTATIONS: ((), ("versionId", "continuation-token")),
    _O.SELECT_OBJECT_CONTENT: (("select-type",), ()),
    _O.LIST_OBJECTS: ((), (*_LIST_COMMON, "marker", "max-keys")),
    _O.LIST_OBJECTS_V2: (
        ("list-type",),
        (*_LIST_COMMON, "continuation-token", "fetch-owner", "max-keys", "start-after"),
    ),
    _O.LIST_OBJECT_VERSIONS: ((), (*_LIST_COMMON, "key-marker", "max-keys", "version-id-marker")),
    _O.LIST_MULTIPART_UPLOADS: (
        (),
        (*_LIST_COMMON, "key-marker", "max-uploads", "upload-id-marker"),
    ),
    _O.LIST_BUCKETS: ((), ("bucket-region", "continuation-token", "max-buckets", "prefix")),
    _O.GET_BUCKET_ANALYTICS_CONFIGURATION: (("id",), ()),
    _O.PUT_BUCKET_ANALYTICS_CONFIGURATION: (("id",), ()),
    _O.DELETE_BUCKET_ANALYTICS_CONFIGURATION: (("id",), ()),
    _O.GET_BUCKET_INTELLIGENT_TIERING_CONFIGURATION: (("id",), ()),
    _O.PUT_BUCKET_INTELLIGENT_TIERING_CONFIGURATION: (("id",), ()),
    _O.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIGURATION: (("id",), ()),
    _O.GET_BUCKET_INVENTORY_CONFIGURATION: (("id",), ()),
    _O.PUT_BUCKET_INVENTORY_CONFIGURATION: (("id",), ()),
    _O.DELETE_BUCKET_INVENTORY_CONFIGURATION: (("id",), ()),
    _O.GET_BUCKET_METRICS_CONFIGURATION: (("id",), ()),
    _O.PUT_BUCKET_METRICS_CONFIGURATION: (("id",), ()),
    _O.DELETE_BUCKET_METRICS_CONFIGURATION: (("id",), ()),
    _O.LIST_BUCKET_ANALYTICS_CONFIGURATIONS: ((), ("continuation-token",)),
    _O.LIST_BUCKET_INTELLIGENT_TIERING_CONFIGURATIONS: ((), ("continuation-token",)),
    _O.LIST_BUCKET_INVENTORY_CONFIGURATIONS: ((), ("continuation-token",)),
    _O.LIST_BUCKET_METRICS_CONFIGURATIONS: ((), ("continuation-token",)),
}

_INT_FIELDS: Final = frozenset(
    {"max-buckets", "max-keys", "max-parts", "max-uploads", "partNumber", "part-number-marker"}
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A routed S3 request: the operation, its bucket and key, and its query parameters.

    Only the parameters the operation reads are set; the others stay ``None``. Strings are
    as the client sent them (decoded from the query string); integers are parsed and range
    checked, but not clamped (see ``garage_api.s3.clamp_max_keys``).

    Attributes:
        operation: what the request asks for.
        bucket: the bucket name, from the Host or the path; ``None`` for service requests
            (ListBuckets, and OPTIONS on the service).
        key: the object key, percent-decoded; ``None`` for bucket-level requests.
        vhost: True if the bucket came from the Host header (virtual-hosted style).
        upload_id: ``uploadId`` of multipart operations.
        part_number: ``partNumber`` (UploadPart, UploadPartCopy, GetObject, HeadObject).
        version_id: ``versionId``.
        config_id: ``id`` of analytics, inventory, metrics and intelligent-tiering configs.
        prefix: ``prefix`` of listings.
        delimiter: ``delimiter`` of listings.
        encoding_type: ``encoding-type`` (only ``"url"`` is accepted).
        marker: ``marker`` of ListObjects (V1).
        start_after: ``start-after`` of ListObjectsV2.
        continuation_token: ``continuation-token`` of V2 and configuration listings.
        fetch_owner: ``fetch-owner`` of ListObjectsV2.
        max_keys: ``max-keys`` of ListObjects, ListObjectsV2 and ListObjectVersions.
        key_marker: ``key-marker`` of ListMultipartUploads and ListObjectVersions.
        upload_id_marker: ``upload-id-marker`` of ListMultipartUploads.
        version_id_marker: ``version-id-marker`` of ListObjectVersions.
        max_uploads: ``max-uploads`` of ListMultipartUploads.
        max_parts: ``max-parts`` of ListParts.
        part_number_marker: ``part-number-marker`` of ListParts.
        max_buckets: ``max-buckets`` of ListBuckets.
        bucket_region: ``bucket-region`` of ListBuckets.
        annotation_name: ``annotationName`` of the object annotation operations.
        response_headers: for GetObject and HeadObject, the ``response-*`` overrides as
            ``(header name, value)`` pairs (``("content-type", "text/plain")``).
    """

    operation: Operation
    bucket: str | None = None
    key: str | None = None
    vhost: bool = False
    upload_id: str | None = None
    part_number: int | None = None
    version_id: str | None = None
    config_id: str | None = None
    prefix: str | None = None
    delimiter: str | None = None
    encoding_type: str | None = None
    marker: str | None = None
    start_after: str | None = None
    continuation_token: str | None = None
    fetch_owner: bool | None = None
    max_keys: int | None = None
    key_marker: str | None = None
    upload_id_marker: str | None = None
    version_id_marker: str | None = None
    max_uploads: int | None = None
    max_parts: int | None = None
    part_number_marker: int | None = None
    max_buckets: int | None = None
    bucket_region: str | None = None
    annotation_name: str | None = None
    response_headers: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The operation's AWS name (``"GetObject"``), for logs, metrics and 501 messages."""
        return self.operation.value

    @property
    def implemented(self) -> bool:
        """Whether Garage implements the operation; if not, answer 501 NotImplemented."""
        return self.operation.implemented

    @property
    def authorization(self) -> Authorization:
        """The bucket permission the request needs (design §10.2)."""
        return self.operation.authorization


# ---------------------------------------------------------------------- host and path


def _authority_to_host(authority: str) -> str:
    """The Host header without its port, lower-cased (``[::1]:3900`` → ``[::1]``)."""
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :] if end >= 0 else None
        if rest is None or (rest and not rest.startswith(":")):
            raise S3Error.invalid_request(f"Host {authority!r} has an illegal format")
        host = authority[: end + 1]
    else:
        host = authority.split(":", 1)[0]
    return host.lower()


def host_to_bucket(host: str, root_domain: str) -> str | None:
    """The bucket named by ``host`` under ``root_domain``, or None if it is not under it.

    The match is label-wise: ``john.doe.garage.tld`` under ``garage.tld`` (or
    ``.garage.tld``) is bucket ``john.doe``; ``garage.tld`` itself and ``notgarage.tld`` are
    not buckets (Garage: ``host_to_bucket``). The port must already be stripped; both are
    compared case-insensitively.
    """
    root = root_domain.lstrip(".").lower()
    host = host.lower()
    if not root or not host.endswith("." + root):
        return None
    bucket = host[: -len(root) - 1]
    return bucket or None


def _split_path(raw_path: str, host_bucket: str | None) -> tuple[str | None, str]:
    """``(bucket, raw key)`` from the path; the raw key is still percent-encoded."""
    if not raw_path.startswith("/"):
        raise S3Error.invalid_request(f"Invalid request path {raw_path!r}")
    path = raw_path[1:]
    if host_bucket is not None:
        return host_bucket, path
    bucket, _, key = path.partition("/")
    if not bucket and key:
        raise S3Error.invalid_request("No bucket specified")
    return (_decode(bucket, "bucket name") or None), key


def _decode(raw: str, what: str) -> str:
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise S3Error.invalid_request(f"Invalid UTF-8 in {what}") from None


# ---------------------------------------------------------------------- query


@dataclass(slots=True)
class _Query:
    keyword: str
    fields: dict[str, str]


def _parse_query(query: Iterable[tuple[str, str]]) -> _Query:
    keyword = ""
    fields: dict[str, str] = {}
    for name, value in query:
        if name in KEYWORDS:
            if keyword:
                raise S3Error.invalid_request(f"Multiple keywords: {keyword!r} and {name!r}")
            keyword = name
        elif name in _FIELDS or name in _RESPONSE_OVERRIDES:
            if not value:
                # An empty field is an absent one (Garage: router_macros.rs): SDKs send
                # `prefix=` for an unset prefix.
                continue
            if name in fields:
                raise S3Error.invalid_request(f"Query parameter repeated: {name!r}")
            fields[name] = value
        # Anything else (x-id, X-Amz-* of presigned URLs, cache busters) is ignored.
    return _Query(keyword, fields)


def _int_field(name: str, value: str) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) > _MAX_INT64:
        raise S3Error.invalid_argument(f"Query parameter {name!r} must be an integer: {value!r}")
    return int(value)


def _field_values(op: Operation, query: _Query) -> dict[str, Any]:
    """The Endpoint attributes of ``op`` from the query, parsed and checked.

    Typed ``Any`` because the values are keyword arguments of ``Endpoint`` of several
    types; ``_check_values`` has normalised each one to its field's type.
    """
    required, optional = _PARAMS.get(op, ((), ()))
    values: dict[str, Any] = {}
    for name in (*required, *optional):
        raw = query.fields.get(name)
        if raw is None:
            if name in required:
                raise S3Error.invalid_request(f"Missing argument {name!r} for {op.value}")
            continue
        value: object = raw
        if name in _INT_FIELDS:
            value = _int_field(name, raw)
        values[_FIELDS[name]] = value
    _check_values(op, values)
    if op in (_O.GET_OBJECT, _O.HEAD_OBJECT):
        values["response_headers"] = tuple(
            (header, query.fields[name])
            for name, header in _RESPONSE_OVERRIDES.items()
            if name in query.fields
        )
    return values


def _check_values(op: Operation, values: dict[str, object]) -> None:
    """Range and enum checks of the parsed fields (mutates booleans in place)."""
    part = values.get("part_number")
    if isinstance(part, int) and not 1 <= part <= _MAX_PART_NUMBER:
        raise S3Error.invalid_argument(
            f"Part number must be an integer between 1 and {_MAX_PART_NUMBER}, inclusive"
        )
    marker = values.get("part_number_marker")
    if isinstance(marker, int) and marker > _MAX_PART_NUMBER:
        raise S3Error.invalid_argument(
            f"part-number-marker must be an integer between 0 and {_MAX_PART_NUMBER}"
        )
    encoding = values.get("encoding_type")
    if encoding is not None:
        if not isinstance(encoding, str) or encoding.lower() != "url":
            raise S3Error.invalid_argument("Invalid Encoding Method specified in Request")
        values["encoding_type"] = "url"
    owner = values.get("fetch_owner")
    if owner is not None:
        if not isinstance(owner, str) or owner.lower() not in ("true", "false"):
            raise S3Error.invalid_argument("fetch-owner must be true or false")
        values["fetch_owner"] = owner.lower() == "true"
    # The values that only pick a variant of the operation: S3 defines only "2" for both.
    if values.pop("list_type", "2") != "2":
        raise S3Error.invalid_argument("Invalid list-type: only list-type=2 exists")
    if values.pop("select_type", "2") != "2":
        raise S3Error.invalid_argument("Invalid select-type: only select-type=2 exists")


# ---------------------------------------------------------------------- entry point


def parse_request(
    method: str,
    host: str | None,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: Headers,
    *,
    root_domain: str | None,
) -> Endpoint:
    """Routes an S3 request to its :class:`Endpoint`.

    Args:
        method: the HTTP method (``"GET"``, case-insensitive).
        host: the ``Host`` header (port allowed), or None if the request had none.
        raw_path: the path of the request target, still percent-encoded, without the query.
        query: the query string as decoded ``(name, value)`` pairs, blank values kept
            (``urllib.parse.parse_qsl(qs, keep_blank_values=True)``).
        headers: the request headers; only ``x-amz-copy-source`` and
            ``x-amz-request-route`` matter here.
        root_domain: ``s3_api.root_domain``: when set, requests to ``<bucket>.<root_domain>``
            are virtual-hosted style.

    Returns:
        The endpoint, with its bucket, key and the operation's query parameters.

    Raises:
        S3Error: ``MethodNotAllowed`` for a method no operation uses, ``InvalidRequest``
            for a combination that is no S3 operation (or a repeated parameter, two
            keywords, a missing required parameter, invalid UTF-8), ``InvalidArgument`` for
            an unusable parameter value, ``KeyTooLongError`` for a key over 1024 bytes.
    """
    method = method.upper()
    if method not in _METHODS:
        raise S3Error.method_not_allowed(method)

    host_bucket = None
    if root_domain and host:
        host_bucket = host_to_bucket(_authority_to_host(host), root_domain)

    if method == "OPTIONS" and raw_path == "*":
        return Endpoint(_O.OPTIONS)
    bucket, raw_key = _split_path(raw_path, host_bucket)
    vhost = host_bucket is not None
    if bucket is None:
        if method == "OPTIONS":
            return Endpoint(_O.OPTIONS)
        if method != "GET":
            raise S3Error.method_not_allowed(method)
        return Endpoint(_O.LIST_BUCKETS, **_field_values(_O.LIST_BUCKETS, _parse_query(query)))

    key = _decode(raw_key, "object key") or None
    if key is not None and len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error.key_too_long()
    if method == "OPTIONS":
        return Endpoint(_O.OPTIONS, bucket=bucket, key=key, vhost=vhost)
    if method == "POST" and header_values(headers, "x-amz-request-route"):
        # S3 Object Lambda's callback; its route is a host prefix, not a bucket.
        return Endpoint(_O.WRITE_GET_OBJECT_RESPONSE, bucket=bucket, key=key, vhost=vhost)

    parsed = _parse_query(query)
    for route in _ROUTES.get((method, key is not None, parsed.keyword), ()):
        if route.if_field is not None and route.if_field not in parsed.fields:
            continue
        if route.if_header is not None and not header_values(headers, route.if_header):
            continue
        op = route.operation
        return Endpoint(op, bucket=bucket, key=key, vhost=vhost, **_field_values(op, parsed))
    where = "an object" if key is not None else "a bucket"
    keyword = f"?{parsed.keyword}" if parsed.keyword else "no sub-resource"
    raise S3Error.invalid_request(f"Invalid endpoint: {method} on {where} with {keyword}")

"""The S3 XML codec: response documents out, request bodies in.

Garage: src/api/s3/xml.rs, and the body parsers of src/api/s3/{bucket,delete,multipart}.rs.
Pure: values in, bytes out; bytes in, frozen dataclasses out.

Responses are dataclasses with a ``to_xml() -> bytes`` method, rendered with
``xml.etree.ElementTree`` under the S3 namespace ``http://s3.amazonaws.com/doc/2006-03-01/``
with an XML declaration. Timestamps are milliseconds since the epoch, written as ISO 8601
with milliseconds and ``Z`` (``2025-01-01T00:00:00.000Z``); ETags are stored unquoted and
written quoted. With ``encoding-type=url`` a listing URL-encodes its keys, prefixes,
delimiter and markers (keeping ``/``, as S3 does); SDKs decode them back.

Request bodies are parsed by expat with everything dangerous off: a DOCTYPE (and so any
entity declaration) is refused, no entity is ever expanded, and bodies over
:data:`MAX_XML_BODY_BYTES` are refused before parsing. Element names are matched by local
name, with or without the S3 namespace; unknown elements are ignored (newer SDKs add
fields). Anything malformed is ``400 MalformedXML``.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote
from xml.parsers import expat

from garage_model.bucket_table import (
    CorsRule,
    LifecycleExpiration,
    LifecycleFilter,
    LifecycleRule,
    WebsiteConfig,
)
from garage_model.lifecycle import parse_lifecycle_date
from garage_util.clock import msec_to_rfc3339

from ._cors import check_cors_rules
from ._errors import S3Error

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "MAX_DELETE_OBJECTS",
    "MAX_LIFECYCLE_RULES",
    "MAX_XML_BODY_BYTES",
    "S3_XMLNS",
    "AccessControlPolicy",
    "BucketEntry",
    "CORSConfiguration",
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
    "Grant",
    "InitiateMultipartUploadResult",
    "LifecycleConfiguration",
    "ListAllMyBucketsResult",
    "ListBucketResult",
    "ListMultipartUploadsResult",
    "ListPartsResult",
    "LocationConstraint",
    "ObjectEntry",
    "ObjectIdentifier",
    "Owner",
    "PartEntry",
    "PostResponse",
    "UploadEntry",
    "VersioningConfiguration",
    "WebsiteConfiguration",
    "parse_complete_multipart_upload",
    "parse_cors_configuration",
    "parse_create_bucket_configuration",
    "parse_delete",
    "parse_lifecycle_configuration",
    "parse_website_configuration",
    "url_encode",
]

S3_XMLNS: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
"""The namespace of every S3 response document."""

# The largest request body we parse. The biggest legitimate one is a CompleteMultipartUpload
# of 10000 parts with a checksum each, about 300 bytes per part (3 MB).
MAX_XML_BODY_BYTES: Final = 4 * 1024 * 1024

# DeleteObjects takes at most 1000 keys per request (AWS: DeleteObjects).
MAX_DELETE_OBJECTS: Final = 1000

# A multipart upload has at most 10000 parts (AWS: multipart upload limits).
_MAX_PARTS: Final = 10_000

CHECKSUM_ALGORITHMS: Final = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
"""The S3 checksum algorithms Garage supports (the SDKs' defaults and the five of the AWS
integrity guide); element ``Checksum<ALG>`` holds the base64 value. Others in a request body
are ignored."""

_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>\n'

Checksums = tuple[tuple[str, str], ...]
"""``(algorithm, base64 value)`` pairs, algorithms from :data:`CHECKSUM_ALGORITHMS`."""


# ---------------------------------------------------------------------- writing


def url_encode(value: str) -> str:
    """The ``encoding-type=url`` form of a key or prefix: UTF-8 percent-encoding.

    Unreserved characters and ``/`` stay as they are; everything else, ``+`` and space
    included, is ``%XX``, so both ``unquote`` and ``unquote_plus`` (botocore) decode it back.
    """
    return quote(value, safe="/-_.~")


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, {"xmlns": S3_XMLNS})


def _text(parent: ET.Element, tag: str, value: str | int | None) -> None:
    """Appends ``<tag>value</tag>``, or nothing when ``value`` is None."""
    if value is not None:
        ET.SubElement(parent, tag).text = str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _etag(etag: str) -> str:
    """An ETag as S3 writes it: in double quotes."""
    return etag if etag.startswith('"') else f'"{etag}"'


def _checksums(parent: ET.Element, checksums: Checksums, checksum_type: str | None) -> None:
    for algorithm, value in checksums:
        if algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        _text(parent, f"Checksum{algorithm}", value)
    _text(parent, "ChecksumType", checksum_type)


def _serialize(root: ET.Element) -> bytes:
    # ElementTree leaves a CR in text as is, and XML parsers read it back as LF (XML 1.0
    # §2.11): a key with a CR would come back changed. We write no CR of our own, so every
    # one is data and becomes a character reference.
    text = ET.tostring(root, encoding="unicode").replace("\r", "&#13;")
    return (_DECLARATION + text).encode()


def _maybe_encode(value: str | None, url: bool) -> str | None:
    if value is None or not url:
        return value
    return url_encode(value)


@dataclass(frozen=True, slots=True)
class Owner:
    """An owner or initiator: Garage reports the access key.

    Attributes:
        id: the ID (Garage: the access key id).
        display_name: the DisplayName (Garage: the key's name).
    """

    id: str
    display_name: str

    def _append(self, parent: ET.Element, tag: str = "Owner") -> None:
        el = ET.SubElement(parent, tag)
        _text(el, "ID", self.id)
        _text(el, "DisplayName", self.display_name)


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """A bucket of ListAllMyBucketsResult.

    Attributes:
        name: the bucket name (the key's alias, local or global).
        creation_date_ms: when the bucket was created.
        region: reported as ``BucketRegion`` when given.
    """

    name: str
    creation_date_ms: int
    region: str | None = None


@dataclass(frozen=True, slots=True)
class ListAllMyBucketsResult:
    """The ListBuckets response.

    Attributes:
        buckets: the buckets, in name order.
        owner: the key that listed them.
        continuation_token: ``ContinuationToken`` when the list is paginated.
        prefix: ``Prefix`` echoed from the request.
    """

    buckets: Sequence[BucketEntry]
    owner: Owner
    continuation_token: str | None = None
    prefix: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("ListAllMyBucketsResult")
        self.owner._append(root)
        buckets = ET.SubElement(root, "Buckets")
        for bucket in self.buckets:
            el = ET.SubElement(buckets, "Bucket")
            _text(el, "Name", bucket.name)
            _text(el, "CreationDate", msec_to_rfc3339(bucket.creation_date_ms))
            _text(el, "BucketRegion", bucket.region)
        _text(root, "ContinuationToken", self.continuation_token)
        _text(root, "Prefix", self.prefix)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class LocationConstraint:
    """The GetBucketLocation response: the region as the element's text.

    Attributes:
        region: Garage's ``s3_region``.
    """

    region: str

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("LocationConstraint")
        root.text = self.region
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class VersioningConfiguration:
    """The GetBucketVersioning response: empty, as versioning was never enabled.

    Attributes:
        status: ``Enabled`` or ``Suspended``; None (Garage's answer) omits it.
    """

    status: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("VersioningConfiguration")
        _text(root, "Status", self.status)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant of an ACL: ``permission`` (``FULL_CONTROL``, ``READ``...) to a user."""

    grantee: Owner
    permission: str


@dataclass(frozen=True, slots=True)
class AccessControlPolicy:
    """The GetBucketAcl/GetObjectAcl response; Garage's stub grants the owner everything.

    Attributes:
        owner: the owner.
        grants: the grants; by default ``FULL_CONTROL`` to the owner.
    """

    owner: Owner
    grants: Sequence[Grant] | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("AccessControlPolicy")
        root.set("xmlns:xsi", _XSI)
        self.owner._append(root)
        acl = ET.SubElement(root, "AccessControlList")
        grants = self.grants if self.grants is not None else [Grant(self.owner, "FULL_CONTROL")]
        for grant in grants:
            el = ET.SubElement(acl, "Grant")
            grantee = ET.SubElement(el, "Grantee", {"xsi:type": "CanonicalUser"})
            _text(grantee, "ID", grant.grantee.id)
            _text(grantee, "DisplayName", grant.grantee.display_name)
            _text(el, "Permission", grant.permission)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """An object of a listing (``Contents``).

    Attributes:
        key: the key.
        last_modified_ms: the version's timestamp.
        etag: the ETag, unquoted.
        size: the size in bytes.
        storage_class: always ``STANDARD`` in Garage.
        owner: written when given (V1 always, V2 with ``fetch-owner=true``).
        checksum_algorithm: the algorithms of the object's checksums (``ChecksumAlgorithm``).
        checksum_type: ``FULL_OBJECT`` or ``COMPOSITE`` when the object has a checksum.
    """

    key: str
    last_modified_ms: int
    etag: str
    size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None
    checksum_algorithm: tuple[str, ...] = ()
    checksum_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListBucketResult:
    """The ListObjects (V1) and ListObjectsV2 response.

    Attributes:
        name: the bucket name.
        prefix: the request's prefix ("" if none).
        max_keys: the page size used (after clamping).
        is_truncated: whether more entries follow.
        contents: the objects.
        common_prefixes: the rolled-up prefixes.
        delimiter: the request's delimiter.
        encoding_type: ``"url"`` to URL-encode keys, prefixes, delimiter and markers.
        is_v2: renders the V2 fields (KeyCount, tokens, StartAfter) instead of V1's.
        marker: V1 ``Marker`` echoed from the request.
        next_marker: V1 ``NextMarker`` when truncated.
        continuation_token: V2 ``ContinuationToken`` echoed from the request.
        next_continuation_token: V2 ``NextContinuationToken`` when truncated.
        start_after: V2 ``StartAfter`` echoed from the request.
    """

    name: str
    prefix: str
    max_keys: int
    is_truncated: bool
    contents: Sequence[ObjectEntry] = ()
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    encoding_type: str | None = None
    is_v2: bool = False
    marker: str | None = None
    next_marker: str | None = None
    continuation_token: str | None = None
    next_continuation_token: str | None = None
    start_after: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        url = self.encoding_type == "url"
        root = _root("ListBucketResult")
        _text(root, "Name", self.name)
        _text(root, "Prefix", _maybe_encode(self.prefix, url))
        if self.is_v2:
            _text(root, "StartAfter", _maybe_encode(self.start_after, url))
            _text(root, "ContinuationToken", self.continuation_token)
            _text(root, "NextContinuationToken", self.next_continuation_token)
            _text(root, "KeyCount", len(self.contents) + len(self.common_prefixes))
        else:
            _text(root, "Marker", _maybe_encode(self.marker or "", url))
            _text(root, "NextMarker", _maybe_encode(self.next_marker, url))
        _text(root, "MaxKeys", self.max_keys)
        _text(root, "Delimiter", _maybe_encode(self.delimiter, url))
        _text(root, "EncodingType", self.encoding_type)
        _text(root, "IsTruncated", _bool(self.is_truncated))
        for obj in self.contents:
            el = ET.SubElement(root, "Contents")
            _text(el, "Key", _maybe_encode(obj.key, url))
            _text(el, "LastModified", msec_to_rfc3339(obj.last_modified_ms))
            _text(el, "ETag", _etag(obj.etag))
            for algorithm in obj.checksum_algorithm:
                _text(el, "ChecksumAlgorithm", algorithm)
            _text(el, "ChecksumType", obj.checksum_type)
            _text(el, "Size", obj.size)
            _text(el, "StorageClass", obj.storage_class)
            if obj.owner is not None:
                obj.owner._append(el)
        for prefix in self.common_prefixes:
            el = ET.SubElement(root, "CommonPrefixes")
            _text(el, "Prefix", _maybe_encode(prefix, url))
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class InitiateMultipartUploadResult:
    """The CreateMultipartUpload response."""

    bucket: str
    key: str
    upload_id: str

    def to_xml(self) -> bytes:
        """The XML document (the checksum algorithm and type are response headers)."""
        root = _root("InitiateMultipartUploadResult")
        _text(root, "Bucket", self.bucket)
        _text(root, "Key", self.key)
        _text(root, "UploadId", self.upload_id)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class CompleteMultipartUploadResult:
    """The CompleteMultipartUpload response.

    Attributes:
        location: the object's URL, when known.
        bucket: the bucket name.
        key: the key.
        etag: the multipart ETag (``hex-N``), unquoted.
        checksums: the object's checksum, full-object or composite (``"...-N"``).
        checksum_type: ``FULL_OBJECT`` or ``COMPOSITE``.
    """

    location: str | None
    bucket: str
    key: str
    etag: str
    checksums: Checksums = ()
    checksum_type: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("CompleteMultipartUploadResult")
        _text(root, "Location", self.location)
        _text(root, "Bucket", self.bucket)
        _text(root, "Key", self.key)
        _text(root, "ETag", _etag(self.etag))
        _checksums(root, self.checksums, self.checksum_type)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """An upload of ListMultipartUploadsResult.

    Attributes:
        key: the key.
        upload_id: the upload id (hex).
        initiated_ms: when the upload was created.
        owner: reported as both Initiator and Owner.
        storage_class: always ``STANDARD``.
        checksum_algorithm: the upload's checksum algorithm, if any.
        checksum_type: ``FULL_OBJECT`` or ``COMPOSITE``, if any.
    """

    key: str
    upload_id: str
    initiated_ms: int
    owner: Owner
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListMultipartUploadsResult:
    """The ListMultipartUploads response (fields as in :class:`ListBucketResult`)."""

    bucket: str
    prefix: str
    max_uploads: int
    is_truncated: bool
    uploads: Sequence[UploadEntry] = ()
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    encoding_type: str | None = None
    key_marker: str | None = None
    upload_id_marker: str | None = None
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        url = self.encoding_type == "url"
        root = _root("ListMultipartUploadsResult")
        _text(root, "Bucket", self.bucket)
        _text(root, "KeyMarker", _maybe_encode(self.key_marker or "", url))
        _text(root, "UploadIdMarker", self.upload_id_marker or "")
        _text(root, "NextKeyMarker", _maybe_encode(self.next_key_marker, url))
        _text(root, "NextUploadIdMarker", self.next_upload_id_marker)
        _text(root, "Prefix", _maybe_encode(self.prefix, url))
        _text(root, "Delimiter", _maybe_encode(self.delimiter, url))
        _text(root, "MaxUploads", self.max_uploads)
        _text(root, "EncodingType", self.encoding_type)
        _text(root, "IsTruncated", _bool(self.is_truncated))
        for upload in self.uploads:
            el = ET.SubElement(root, "Upload")
            _text(el, "Key", _maybe_encode(upload.key, url))
            _text(el, "UploadId", upload.upload_id)
            upload.owner._append(el, "Initiator")
            upload.owner._append(el, "Owner")
            _text(el, "StorageClass", upload.storage_class)
            _text(el, "Initiated", msec_to_rfc3339(upload.initiated_ms))
            _text(el, "ChecksumAlgorithm", upload.checksum_algorithm)
            _text(el, "ChecksumType", upload.checksum_type)
        for prefix in self.common_prefixes:
            el = ET.SubElement(root, "CommonPrefixes")
            _text(el, "Prefix", _maybe_encode(prefix, url))
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class PartEntry:
    """A part of ListPartsResult.

    Attributes:
        part_number: the part number.
        last_modified_ms: when the part was uploaded.
        etag: the part's ETag (hex MD5), unquoted.
        size: the size in bytes.
        checksums: the part's checksum, if the upload has an algorithm.
    """

    part_number: int
    last_modified_ms: int
    etag: str
    size: int
    checksums: Checksums = ()


@dataclass(frozen=True, slots=True)
class ListPartsResult:
    """The ListParts response."""

    bucket: str
    key: str
    upload_id: str
    max_parts: int
    is_truncated: bool
    owner: Owner
    parts: Sequence[PartEntry] = ()
    part_number_marker: int | None = None
    next_part_number_marker: int | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_type: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("ListPartsResult")
        _text(root, "Bucket", self.bucket)
        _text(root, "Key", self.key)
        _text(root, "UploadId", self.upload_id)
        _text(root, "PartNumberMarker", self.part_number_marker)
        _text(root, "NextPartNumberMarker", self.next_part_number_marker)
        _text(root, "MaxParts", self.max_parts)
        _text(root, "IsTruncated", _bool(self.is_truncated))
        for part in self.parts:
            el = ET.SubElement(root, "Part")
            _text(el, "PartNumber", part.part_number)
            _text(el, "LastModified", msec_to_rfc3339(part.last_modified_ms))
            _text(el, "ETag", _etag(part.etag))
            _text(el, "Size", part.size)
            _checksums(el, part.checksums, None)
        self.owner._append(root, "Initiator")
        self.owner._append(root, "Owner")
        _text(root, "StorageClass", self.storage_class)
        _text(root, "ChecksumAlgorithm", self.checksum_algorithm)
        _text(root, "ChecksumType", self.checksum_type)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class CopyObjectResult:
    """The CopyObject response: the new object's ETag and timestamp."""

    etag: str
    last_modified_ms: int
    checksums: Checksums = ()
    checksum_type: str | None = None

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("CopyObjectResult")
        _text(root, "ETag", _etag(self.etag))
        _text(root, "LastModified", msec_to_rfc3339(self.last_modified_ms))
        _checksums(root, self.checksums, self.checksum_type)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class CopyPartResult:
    """The UploadPartCopy response: the new part's ETag and timestamp."""

    etag: str
    last_modified_ms: int
    checksums: Checksums = ()

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("CopyPartResult")
        _text(root, "ETag", _etag(self.etag))
        _text(root, "LastModified", msec_to_rfc3339(self.last_modified_ms))
        _checksums(root, self.checksums, None)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class Deleted:
    """A key DeleteObjects deleted (or found already absent: S3 reports it deleted too).

    Attributes:
        key: the key.
        version_id: the version the request named, if any.
        delete_marker: whether a delete marker was written.
        delete_marker_version_id: the delete marker's version id, if one was written.
    """

    key: str
    version_id: str | None = None
    delete_marker: bool | None = None
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    """A key DeleteObjects failed to delete, with the error's code and message."""

    key: str
    code: str
    message: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The DeleteObjects response.

    Attributes:
        deleted: the keys deleted.
        errors: the keys that failed.
        quiet: the request's quiet mode: only the errors are reported.
    """

    deleted: Sequence[Deleted] = ()
    errors: Sequence[DeleteError] = ()
    quiet: bool = False

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("DeleteResult")
        if not self.quiet:
            for d in self.deleted:
                el = ET.SubElement(root, "Deleted")
                _text(el, "Key", d.key)
                _text(el, "VersionId", d.version_id)
                if d.delete_marker is not None:
                    _text(el, "DeleteMarker", _bool(d.delete_marker))
                _text(el, "DeleteMarkerVersionId", d.delete_marker_version_id)
        for e in self.errors:
            el = ET.SubElement(root, "Error")
            _text(el, "Key", e.key)
            _text(el, "VersionId", e.version_id)
            _text(el, "Code", e.code)
            _text(el, "Message", e.message)
        return _serialize(root)


@dataclass(frozen=True, slots=True)
class PostResponse:
    """The PostObject response body for ``success_action_status=201``."""

    location: str
    bucket: str
    key: str
    etag: str

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("PostResponse")
        _text(root, "Location", self.location)
        _text(root, "Bucket", self.bucket)
        _text(root, "Key", self.key)
        _text(root, "ETag", _etag(self.etag))
        return _serialize(root)


# ---------------------------------------------------------------------- reading


class _Refused(Exception):
    """A construct the parser refuses (DOCTYPE, entities), raised from expat handlers."""


def _local(name: str) -> str:
    """The local part of an expat name (``"<uri> <local>"`` with our separator)."""
    return name.rpartition(" ")[2]


def _refuse_doctype(*_args: object) -> None:
    raise _Refused("DOCTYPE is not allowed")


def _refuse_entity(*_args: object) -> None:
    raise _Refused("entities are not allowed")


def _parse_xml(body: bytes) -> ET.Element:
    """Parses a request body into an element tree of local names, refusing anything risky.

    Raises:
        S3Error: ``MaxMessageLengthExceeded`` for a body over the limit, ``MalformedXML``
            for anything that is not a plain well-formed document.
    """
    if len(body) > MAX_XML_BODY_BYTES:
        raise S3Error.max_message_length_exceeded()
    parser = expat.ParserCreate(namespace_separator=" ")
    builder = ET.TreeBuilder()

    def start(name: str, _attrs: object) -> None:
        builder.start(_local(name), {})

    def end(name: str) -> None:
        builder.end(_local(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity  # type: ignore[assignment]  # raises
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
        return builder.close()
    except _Refused as e:
        raise S3Error.malformed_xml(str(e)) from None
    except expat.ExpatError as e:
        raise S3Error.malformed_xml(str(e)) from None


def _expect_root(root: ET.Element, tag: str) -> None:
    if root.tag != tag:
        raise S3Error.malformed_xml(f"expected a <{tag}> document, got <{root.tag}>")


def _child_text(el: ET.Element, tag: str) -> str | None:
    """The text of the first child ``tag`` of ``el``, or None if there is none."""
    child = el.find(tag)
    if child is None:
        return None
    return child.text or ""


def _required_text(el: ET.Element, tag: str) -> str:
    value = _child_text(el, tag)
    if value is None:
        raise S3Error.malformed_xml(f"<{el.tag}> has no <{tag}>")
    return value


def _parse_bool(value: str, tag: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise S3Error.malformed_xml(f"<{tag}> must be true or false")
    return v == "true"


@dataclass(frozen=True, slots=True)
class CreateBucketConfiguration:
    """The CreateBucket request body.

    Attributes:
        location_constraint: the region asked for, or None if the body gave none.
    """

    location_constraint: str | None = None


def parse_create_bucket_configuration(body: bytes) -> CreateBucketConfiguration:
    """Parses a CreateBucket body; an empty body is a configuration with no constraint.

    Raises:
        S3Error: ``MalformedXML``.
    """
    if not body.strip():
        return CreateBucketConfiguration()
    root = _parse_xml(body)
    _expect_root(root, "CreateBucketConfiguration")
    constraint = _child_text(root, "LocationConstraint")
    return CreateBucketConfiguration(None if constraint is None else constraint.strip())


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """A part of a CompleteMultipartUpload request.

    Attributes:
        part_number: the part number, 1..10000.
        etag: the ETag the client got for the part, without quotes.
        checksums: the part checksums the client sent (``ChecksumCRC32``...).
    """

    part_number: int
    etag: str
    checksums: Checksums = ()


@dataclass(frozen=True, slots=True)
class CompleteMultipartUpload:
    """The CompleteMultipartUpload request body.

    Attributes:
        parts: the parts, in request order.
    """

    parts: tuple[CompletedPart, ...]

    def check_order(self) -> None:
        """Checks part numbers strictly increase (gaps allowed; design §10.6).

        Raises:
            S3Error: ``400 InvalidPartOrder``.
        """
        numbers = [p.part_number for p in self.parts]
        if any(a >= b for a, b in itertools.pairwise(numbers)):
            raise S3Error.invalid_part_order()


def parse_complete_multipart_upload(body: bytes) -> CompleteMultipartUpload:
    """Parses a CompleteMultipartUpload body.

    Raises:
        S3Error: ``MalformedXML`` if it is not a ``<CompleteMultipartUpload>`` of 1..10000
            ``<Part>`` with a ``PartNumber`` in 1..10000 and an ``ETag`` each.
    """
    root = _parse_xml(body)
    _expect_root(root, "CompleteMultipartUpload")
    parts = []
    for el in root.iterfind("Part"):
        number = _required_text(el, "PartNumber").strip()
        if not number.isascii() or not number.isdigit() or not 1 <= int(number) <= _MAX_PARTS:
            raise S3Error.malformed_xml(f"invalid PartNumber {number!r}")
        etag = _required_text(el, "ETag").strip().strip('"')
        checksums = tuple(
            (algorithm, value.strip())
            for algorithm in CHECKSUM_ALGORITHMS
            if (value := _child_text(el, f"Checksum{algorithm}")) is not None
        )
        parts.append(CompletedPart(int(number), etag, checksums))
    if not parts or len(parts) > _MAX_PARTS:
        raise S3Error.malformed_xml(f"a multipart upload has 1 to {_MAX_PARTS} parts")
    return CompleteMultipartUpload(tuple(parts))


@dataclass(frozen=True, slots=True)
class ObjectIdentifier:
    """An object of a DeleteObjects request: a key and maybe a version."""

    key: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """The DeleteObjects request body.

    Attributes:
        objects: the objects to delete, in request order.
        quiet: report only the errors.
    """

    objects: tuple[ObjectIdentifier, ...]
    quiet: bool = False


def parse_delete(body: bytes) -> DeleteRequest:
    """Parses a DeleteObjects body.

    Raises:
        S3Error: ``MalformedXML`` if it is not a ``<Delete>`` of 1..1000 ``<Object>`` with
            a ``<Key>`` each.
    """
    root = _parse_xml(body)
    _expect_root(root, "Delete")
    objects = tuple(
        ObjectIdentifier(_required_text(el, "Key"), _child_text(el, "VersionId"))
        for el in root.iterfind("Object")
    )
    if not objects or len(objects) > MAX_DELETE_OBJECTS:
        raise S3Error.malformed_xml(f"DeleteObjects takes 1 to {MAX_DELETE_OBJECTS} keys")
    quiet = _child_text(root, "Quiet")
    return DeleteRequest(objects, quiet=quiet is not None and _parse_bool(quiet, "Quiet"))


# ---------------------------------------------------------------------- website and CORS
# Garage: src/api/s3/website.rs and cors.rs. The parsed values are the model's own
# (garage_model.bucket_table.WebsiteConfig, CorsRule): what is stored on the bucket.


def _stripped(el: ET.Element | None) -> str | None:
    """The text of ``el`` without surrounding whitespace (None if there is no element)."""
    return None if el is None else (el.text or "").strip()


@dataclass(frozen=True, slots=True)
class WebsiteConfiguration:
    """The GetBucketWebsite response: the index document suffix and the error document.

    Attributes:
        config: the bucket's website configuration.
    """

    config: WebsiteConfig

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("WebsiteConfiguration")
        index = ET.SubElement(root, "IndexDocument")
        _text(index, "Suffix", self.config.index_document)
        if self.config.error_document is not None:
            error = ET.SubElement(root, "ErrorDocument")
            _text(error, "Key", self.config.error_document)
        return _serialize(root)


def parse_website_configuration(body: bytes) -> WebsiteConfig:
    """Parses a PutBucketWebsite body: an index document and maybe an error document.

    Garage serves websites with an index and an error document only: redirections are
    refused rather than stored and ignored.

    Raises:
        S3Error: ``MalformedXML`` for a document that is not a ``<WebsiteConfiguration>``
            or an ``IndexDocument`` without ``Suffix`` (``ErrorDocument`` without ``Key``);
            ``InvalidRequest`` for ``RedirectAllRequestsTo`` next to other elements;
            ``NotImplemented`` (501) for ``RedirectAllRequestsTo`` or ``RoutingRules``;
            ``InvalidArgument`` for a missing ``IndexDocument``, a suffix that is empty or
            holds a ``/``, or an empty error document key.
    """
    root = _parse_xml(body)
    _expect_root(root, "WebsiteConfiguration")
    index = root.find("IndexDocument")
    error = root.find("ErrorDocument")
    routing = root.find("RoutingRules")
    if root.find("RedirectAllRequestsTo") is not None:
        if index is not None or error is not None or routing is not None:
            raise S3Error.invalid_request(
                "RedirectAllRequestsTo cannot be given with any other element"
            )
        raise S3Error.from_code(
            "NotImplemented",
            "RedirectAllRequestsTo is not implemented: Garage websites have an index "
            "document and an error document only",
        )
    if routing is not None and routing.find("RoutingRule") is not None:
        raise S3Error.from_code(
            "NotImplemented",
            "RoutingRules are not implemented: Garage websites have an index document and "
            "an error document only",
        )
    if index is None:
        raise S3Error.invalid_argument(
            "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty"
        )
    suffix = _stripped(index.find("Suffix"))
    if suffix is None:
        raise S3Error.malformed_xml("<IndexDocument> has no <Suffix>")
    if not suffix or "/" in suffix:
        raise S3Error.invalid_argument("The IndexDocument Suffix is not well formed")
    error_key = None
    if error is not None:
        error_key = _stripped(error.find("Key"))
        if error_key is None:
            raise S3Error.malformed_xml("<ErrorDocument> has no <Key>")
        if not error_key:
            raise S3Error.invalid_argument("The ErrorDocument Key is not well formed")
    return WebsiteConfig(suffix, error_key)


@dataclass(frozen=True, slots=True)
class CORSConfiguration:
    """The GetBucketCors response.

    Attributes:
        rules: the bucket's CORS rules, in order.
    """

    rules: Sequence[CorsRule]

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("CORSConfiguration")
        for rule in self.rules:
            el = ET.SubElement(root, "CORSRule")
            _text(el, "ID", rule.id)
            for origin in rule.allow_origins:
                _text(el, "AllowedOrigin", origin)
            for method in rule.allow_methods:
                _text(el, "AllowedMethod", method)
            for header in rule.allow_headers:
                _text(el, "AllowedHeader", header)
            for header in rule.expose_headers:
                _text(el, "ExposeHeader", header)
            _text(el, "MaxAgeSeconds", rule.max_age_seconds)
        return _serialize(root)


# MaxAgeSeconds is an Integer in S3's schema; 19 digits keep it in a signed 64-bit integer.
_MAX_AGE = re.compile(r"[0-9]{1,19}")


def _parse_cors_rule(el: ET.Element) -> CorsRule:
    def texts(tag: str) -> tuple[str, ...]:
        return tuple((child.text or "").strip() for child in el.iterfind(tag))

    max_age = _stripped(el.find("MaxAgeSeconds"))
    if max_age is not None and not _MAX_AGE.fullmatch(max_age):
        raise S3Error.malformed_xml(f"invalid MaxAgeSeconds {max_age!r}")
    return CorsRule(
        id=_stripped(el.find("ID")),
        max_age_seconds=None if max_age is None else int(max_age),
        allow_origins=texts("AllowedOrigin"),
        allow_methods=texts("AllowedMethod"),
        allow_headers=texts("AllowedHeader"),
        expose_headers=texts("ExposeHeader"),
    )


def parse_cors_configuration(body: bytes) -> tuple[CorsRule, ...]:
    """Parses and checks a PutBucketCors body.

    Raises:
        S3Error: ``MalformedXML`` for a document that is not a ``<CORSConfiguration>`` of
            ``<CORSRule>`` each with an ``AllowedOrigin`` and an ``AllowedMethod``, or a
            ``MaxAgeSeconds`` that is not a non-negative integer; ``InvalidRequest`` for
            what :func:`~garage_api.s3._cors.check_cors_rules` refuses.
    """
    root = _parse_xml(body)
    _expect_root(root, "CORSConfiguration")
    rules = tuple(_parse_cors_rule(el) for el in root.iterfind("CORSRule"))
    check_cors_rules(rules)
    return rules


# ---------------------------------------------------------------------- lifecycle
# Garage: src/api/s3/lifecycle.rs. The parsed values are the model's own
# (garage_model.bucket_table.LifecycleRule): what is stored on the bucket.

# S3 takes at most 1000 rules per bucket (AWS: PutBucketLifecycleConfiguration).
MAX_LIFECYCLE_RULES: Final = 1000
# A rule ID is at most 255 characters (AWS: LifecycleRule.ID).
_MAX_RULE_ID: Final = 255
# Day counts and sizes are S3 Integers/Longs: 19 digits keep them in a signed 64-bit integer.
_LIFECYCLE_INT = re.compile(r"[0-9]{1,19}")
# The conditions of a lifecycle <Filter> (or of its <And>).
_LIFECYCLE_CONDITIONS: Final = ("Prefix", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "Tag")
# Actions and filters of S3 that Garage does not do: refused (501), never stored and
# ignored, which would apply a rule to more objects than the user meant (tags) or drop
# what they asked for (transitions, noncurrent versions: Garage has one storage class and
# no versioning; expired delete markers do not exist without versioning).
_LIFECYCLE_UNSUPPORTED: Final = (
    "Transition",
    "Transitions",
    "NoncurrentVersionTransition",
    "NoncurrentVersionTransitions",
    "NoncurrentVersionExpiration",
)


def _lifecycle_date_text(value: str) -> str:
    """A stored expiration date as S3 writes it: ISO 8601 at midnight UTC."""
    try:
        return parse_lifecycle_date(value).isoformat() + "T00:00:00.000Z"
    except ValueError:
        return value  # written by an older release: shown as stored


def _append_lifecycle_filter(parent: ET.Element, lf: LifecycleFilter) -> None:
    el = ET.SubElement(parent, "Filter")
    conditions = [
        ("Prefix", lf.prefix),
        ("ObjectSizeGreaterThan", lf.size_gt),
        ("ObjectSizeLessThan", lf.size_lt),
    ]
    present = [(tag, value) for tag, value in conditions if value is not None]
    target = ET.SubElement(el, "And") if len(present) > 1 else el
    for tag, value in present:
        _text(target, tag, value)


@dataclass(frozen=True, slots=True)
class LifecycleConfiguration:
    """The GetBucketLifecycleConfiguration response.

    A rule's filter is written as S3 does: one condition alone in ``<Filter>``, several in
    ``<Filter><And>``, none as an empty ``<Filter/>`` (every object).

    Attributes:
        rules: the bucket's lifecycle rules, in order.
    """

    rules: Sequence[LifecycleRule]

    def to_xml(self) -> bytes:
        """The XML document."""
        root = _root("LifecycleConfiguration")
        for rule in self.rules:
            el = ET.SubElement(root, "Rule")
            expiration = rule.expiration
            if expiration is not None:
                exp = ET.SubElement(el, "Expiration")
                _text(exp, "Days", expiration.after_days)
                if expiration.at_date is not None:
                    _text(exp, "Date", _lifecycle_date_text(expiration.at_date))
            _text(el, "ID", rule.id)
            _append_lifecycle_filter(el, rule.filter)
            _text(el, "Status", "Enabled" if rule.enabled else "Disabled")
            if rule.abort_incomplete_mpu_days is not None:
                abort = ET.SubElement(el, "AbortIncompleteMultipartUpload")
                _text(abort, "DaysAfterInitiation", rule.abort_incomplete_mpu_days)
        return _serialize(root)


def _lifecycle_int(el: ET.Element, tag: str, *, minimum: int) -> int | None:
    """The integer in ``<tag>`` (None if absent).

    Raises:
        S3Error: ``MalformedXML`` if it is not an integer, ``InvalidArgument`` if it is
            below ``minimum``.
    """
    text = _stripped(el.find(tag))
    if text is None:
        return None
    negative = text.startswith("-")
    if not _LIFECYCLE_INT.fullmatch(text[1:] if negative else text):
        raise S3Error.malformed_xml(f"<{tag}> must be an integer, not {text!r}")
    value = -int(text[1:]) if negative else int(text)
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise S3Error.invalid_argument(f"'{tag}' must be {what}")
    return value


def _refuse_unsupported(el: ET.Element, tags: Sequence[str], where: str) -> None:
    for tag in tags:
        if el.find(tag) is not None:
            raise S3Error.from_code(
                "NotImplemented", f"{tag} in a lifecycle {where} is not implemented by Garage"
            )


def _parse_lifecycle_conditions(el: ET.Element) -> LifecycleFilter:
    _refuse_unsupported(el, ("Tag",), "filter")
    gt = _lifecycle_int(el, "ObjectSizeGreaterThan", minimum=0)
    lt = _lifecycle_int(el, "ObjectSizeLessThan", minimum=1)
    if gt is not None and lt is not None and gt >= lt:
        raise S3Error.invalid_argument("ObjectSizeGreaterThan must be less than ObjectSizeLessThan")
    prefix = el.find("Prefix")
    return LifecycleFilter(None if prefix is None else prefix.text or "", gt, lt)


def _parse_lifecycle_filter(el: ET.Element) -> LifecycleFilter:
    """A ``<Filter>``: no condition (every object), one condition, or ``<And>`` of some."""
    conditions = [c for c in el if c.tag in _LIFECYCLE_CONDITIONS]
    conjunction = el.find("And")
    if conjunction is None:
        if len(conditions) > 1:
            raise S3Error.malformed_xml("several Filter conditions must be wrapped in <And>")
        return _parse_lifecycle_conditions(el)
    if conditions:
        raise S3Error.malformed_xml("<Filter> cannot hold both <And> and another condition")
    if conjunction.find("And") is not None:
        raise S3Error.malformed_xml("nested <And> in a lifecycle <Filter>")
    return _parse_lifecycle_conditions(conjunction)


def _parse_lifecycle_expiration(el: ET.Element) -> LifecycleExpiration:
    _refuse_unsupported(el, ("ExpiredObjectDeleteMarker",), "expiration")
    days = _lifecycle_int(el, "Days", minimum=1)
    at = _stripped(el.find("Date"))
    if (days is None) == (at is None):
        raise S3Error.malformed_xml("<Expiration> must hold exactly one of <Days> and <Date>")
    if days is not None:
        return LifecycleExpiration.after(days)
    assert at is not None
    try:
        return LifecycleExpiration.at(parse_lifecycle_date(at).isoformat())
    except ValueError as exc:
        raise S3Error.invalid_argument(f"invalid expiration Date: {exc}") from None


def _parse_lifecycle_rule(el: ET.Element) -> LifecycleRule:
    _refuse_unsupported(el, _LIFECYCLE_UNSUPPORTED, "rule")
    status = _stripped(el.find("Status"))
    if status not in ("Enabled", "Disabled"):
        raise S3Error.malformed_xml("a lifecycle <Rule> needs a <Status> Enabled or Disabled")
    rule_id = _child_text(el, "ID")
    if rule_id is not None and len(rule_id) > _MAX_RULE_ID:
        raise S3Error.invalid_argument(f"a rule ID is at most {_MAX_RULE_ID} characters")
    filter_el, legacy_prefix = el.find("Filter"), el.find("Prefix")
    if filter_el is not None and legacy_prefix is not None:
        raise S3Error.malformed_xml("a lifecycle <Rule> cannot hold both <Filter> and <Prefix>")
    if filter_el is not None:
        lifecycle_filter = _parse_lifecycle_filter(filter_el)
    elif legacy_prefix is not None:  # the deprecated form: the same as <Filter><Prefix>
        lifecycle_filter = LifecycleFilter(prefix=legacy_prefix.text or "")
    else:
        lifecycle_filter = LifecycleFilter()
    expiration_el = el.find("Expiration")
    expiration = None if expiration_el is None else _parse_lifecycle_expiration(expiration_el)
    abort_el = el.find("AbortIncompleteMultipartUpload")
    abort_days = None
    if abort_el is not None:
        abort_days = _lifecycle_int(abort_el, "DaysAfterInitiation", minimum=1)
        if abort_days is None:
            raise S3Error.malformed_xml(
                "<AbortIncompleteMultipartUpload> has no <DaysAfterInitiation>"
            )
    if expiration is None and abort_days is None:
        raise S3Error.invalid_request("At least one action needs to be specified in a rule")
    return LifecycleRule(
        id=rule_id,
        enabled=status == "Enabled",
        filter=lifecycle_filter,
        abort_incomplete_mpu_days=abort_days,
        expiration=expiration,
    )


def parse_lifecycle_configuration(body: bytes) -> tuple[LifecycleRule, ...]:
    """Parses and checks a PutBucketLifecycleConfiguration body.

    Each ``<Rule>`` has a ``Status`` (``Enabled``/``Disabled``), an optional ``ID``, a
    ``Filter`` (``Prefix``, ``ObjectSizeGreaterThan``, ``ObjectSizeLessThan``, several of
    them in ``And``; none: every object) or the deprecated top-level ``Prefix``, and at
    least one action: ``Expiration`` (``Days`` or a ``Date`` at midnight UTC, stored as
    ``YYYY-MM-DD``) and ``AbortIncompleteMultipartUpload`` (``DaysAfterInitiation``).

    Raises:
        S3Error: ``MalformedXML`` for a document that is not a ``<LifecycleConfiguration>``
            of 1 or more ``<Rule>``, a missing or unknown ``Status``, a filter with several
            conditions outside ``And`` (or ``And`` beside another, or nested), ``Filter``
            beside a top-level ``Prefix``, an ``Expiration`` without exactly one of
            ``Days`` and ``Date``, or a number that is not an integer;
            ``InvalidArgument`` for more than 1000 rules, a repeated or over-long rule
            ID, a day count below 1, a negative size, sizes that leave no room
            (greater-than >= less-than), or a date that is not one (or not at midnight);
            ``InvalidRequest`` for a rule without action; ``NotImplemented`` (501) for
            transitions, noncurrent-version actions, ``ExpiredObjectDeleteMarker`` and
            tag filters.
    """
    root = _parse_xml(body)
    _expect_root(root, "LifecycleConfiguration")
    elements = root.findall("Rule")
    if not elements:
        raise S3Error.malformed_xml("a lifecycle configuration has at least one <Rule>")
    if len(elements) > MAX_LIFECYCLE_RULES:
        raise S3Error.invalid_argument(
            f"a lifecycle configuration has at most {MAX_LIFECYCLE_RULES} rules"
        )
    rules = tuple(_parse_lifecycle_rule(el) for el in elements)
    ids = [r.id for r in rules if r.id is not None]
    if len(set(ids)) != len(ids):
        raise S3Error.invalid_argument(
            "Rule ID must be unique. Found same ID for more than one rule"
        )
    return rules

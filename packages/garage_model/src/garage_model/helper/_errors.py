"""Errors of the bucket and key helpers (Garage: src/model/helper/error.rs).

Each error names what the request got wrong, and carries the name or id the API layer puts
in its answer (S3 ``<BucketName>``, admin API messages). The mapping to HTTP is the API's:
for instance :class:`NoSuchAccessKeyError` is ``InvalidAccessKeyId`` (403) in S3 but
``NoSuchAccessKey`` (404) in the admin API.
"""

from __future__ import annotations

from garage_util.errors import GarageError

__all__ = [
    "AccessDeniedError",
    "BadRequestError",
    "BucketAlreadyExistsError",
    "BucketNotEmptyError",
    "HelperError",
    "InvalidBucketNameError",
    "KeyAlreadyExistsError",
    "NoSuchAccessKeyError",
    "NoSuchBucketError",
]


class HelperError(GarageError):
    """Base of the errors of the bucket and key helpers."""


class NoSuchBucketError(HelperError):
    """Raised when a bucket name or id does not resolve to an existing bucket.

    Attributes:
        bucket: the name or hex id that was asked for.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(f"bucket not found: {bucket}")


class NoSuchAccessKeyError(HelperError):
    """Raised when an access key id (or search pattern) names no existing key.

    Attributes:
        key_id: the key id or pattern asked for.
    """

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"access key not found: {key_id}")


class BucketAlreadyExistsError(HelperError):
    """Raised when creating a bucket, or giving an alias, with a name that is taken.

    Attributes:
        bucket: the name.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(f"bucket name already in use: {bucket}")


class BucketNotEmptyError(HelperError):
    """Raised when deleting a bucket that still holds objects (or K2V items).

    Attributes:
        bucket: the bucket's hex id.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(f"bucket is not empty: {bucket}; delete its objects first")


class InvalidBucketNameError(HelperError, ValueError):
    """Raised when a bucket name breaks S3's naming rules
    (:func:`garage_model.bucket_alias_table.is_valid_bucket_name`).

    Attributes:
        bucket: the refused name.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(
            f"invalid bucket name {bucket!r}: use 3 to 63 characters among a-z, 0-9, '.' and "
            "'-', starting and ending with a letter or digit, not an IP address"
        )


class KeyAlreadyExistsError(HelperError):
    """Raised when importing an access key whose id is already in use (even deleted).

    Attributes:
        key_id: the key id.
    """

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"access key already exists: {key_id}")


class AccessDeniedError(HelperError):
    """Raised when the requesting access key lacks a right the operation needs (e.g.
    creating buckets without ``allow_create_bucket``)."""


class BadRequestError(HelperError, ValueError):
    """Raised when an admin operation is refused as asked: an alias that points elsewhere,
    removing a bucket's last alias, a malformed imported key, an ambiguous key pattern..."""

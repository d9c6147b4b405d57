"""Bucket quotas: the most bytes and objects a bucket may hold (design §8.1, §8.5).

Garage: ``check_quotas`` in src/api/s3/put.rs. A bucket's quotas (``garage bucket
set-quotas``) are checked by every write that makes an object: PutObject, PostObject,
CopyObject and CompleteMultipartUpload, once the new object's size is known and before its
``Complete`` version is inserted, so that a refused write stores nothing new.

Theory of operation
-------------------
The bucket's usage comes from its index counters (``bucket_object_counter``: ``objects``
and ``bytes``), which count the newest complete version of every object. Writing a key
*replaces* what the key held, so the write changes the usage by::

    objects: 1 - previous.objects        (0 when the key already holds an object)
    bytes:   size - previous.bytes       (negative when the new object is smaller)

with ``previous`` the key's current object as the counters count it
(:meth:`~garage_model.s3.Object.counts`). A write is refused only when it *grows* a
counter past its quota (Garage's rule): replacing an object by a smaller one, or by one
of the same size, always succeeds, even in a bucket already over quota (the quota may
have been lowered).

The counters are eventually consistent (each node's count is queued into the counter
table), so two concurrent writes may both pass a quota that only one of them fits:
quotas bound a bucket's growth, they are not transactions (as in Garage).

Garage has no ``QuotaExceeded`` error: the refusal is ``403 AccessDenied`` with a message
naming the quota (:meth:`S3Error.quota_reached`), which is what clients match on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_model.bucket_table import BucketQuotas, UuidKey
from garage_model.s3.multipart import concurrently
from garage_model.s3.object_table import BYTES, OBJECTS
from garage_table.schema import StringKey

from ._errors import S3Error

if TYPE_CHECKING:
    from collections.abc import Mapping

    from garage_model import Garage
    from garage_model.bucket_table import Bucket
    from garage_model.s3 import Object
    from garage_util.data import Uuid

__all__ = ["bucket_quotas", "check_quotas", "quota_refusal"]


def bucket_quotas(bucket: Bucket) -> BucketQuotas:
    """The quotas of ``bucket`` (none for a deleted bucket)."""
    params = bucket.params
    return BucketQuotas() if params is None else params.quotas.v


def quota_refusal(
    quotas: BucketQuotas, counters: Mapping[str, int], previous: Object | None, size: int
) -> str | None:
    """Why writing a ``size``-byte object over ``previous`` would break ``quotas``.

    Pure: the caller reads the bucket's counters and the key's current object.

    Args:
        quotas: the bucket's quotas.
        counters: the bucket's object counters (``objects``, ``bytes``; missing is 0).
        previous: the key's current object (None when the key was never written).
        size: the new object's size in bytes.

    Returns:
        The refusal's message (Garage's wording), or None when the write fits.
    """
    counted = {} if previous is None else previous.counts()
    objects_diff = 1 - counted.get(OBJECTS, 0)
    bytes_diff = size - counted.get(BYTES, 0)
    max_objects = quotas.max_objects
    if max_objects is not None and objects_diff > 0:
        current = counters.get(OBJECTS, 0)
        if current + objects_diff > max_objects:
            return f"Object quota is reached, maximum objects for this bucket: {max_objects}"
    max_size = quotas.max_size
    if max_size is not None and bytes_diff > 0:
        current = counters.get(BYTES, 0)
        if current + bytes_diff > max_size:
            return (
                f"Bucket size quota is reached, maximum total size of objects for this "
                f"bucket: {max_size}. The bucket is already {current} bytes, and this "
                f"object would add {size} bytes."
            )
    return None


async def check_quotas(
    garage: Garage, bucket_id: Uuid, bucket: Bucket, key: str, size: int
) -> None:
    """Refuses writing a ``size``-byte object at ``key`` if it breaks the bucket's quotas.

    Call it once the size is known and before the new version is marked complete. A
    bucket without quotas costs nothing; otherwise the counters and the key's object are
    read (quorum reads, at once).

    Args:
        garage: the node.
        bucket_id: the bucket.
        bucket: its entry (read at the start of the request).
        key: the object key being written.
        size: the new object's size in bytes.

    Raises:
        S3Error: ``403 AccessDenied`` naming the quota reached.
    """
    quotas = bucket_quotas(bucket)
    if quotas.max_objects is None and quotas.max_size is None:
        return
    counters: dict[str, int] = {}
    previous: list[Object | None] = []

    async def read_counters() -> None:
        counters.update(await garage.bucket_counters(bucket_id))

    async def read_object() -> None:
        previous.append(await garage.object_table.table.get(UuidKey(bucket_id), StringKey(key)))

    await concurrently(read_counters, read_object)
    refusal = quota_refusal(quotas, counters, previous[0], size)
    if refusal is not None:
        raise S3Error.quota_reached(refusal)

"""Resolving bucket names and reading buckets (Garage: src/model/helper/bucket.rs).

How an S3 request finds its bucket (:meth:`BucketHelper.resolve_bucket`):

1. the requesting key's local aliases (its private namespace, where S3 CreateBucket puts
   names), then
2. the global alias table, where a 64-hex-digit name is also accepted as a raw bucket id.
   Such a string can never be a bucket name (names have at most 63 characters), so the two
   cannot clash.

All three tables are fully replicated, so every lookup here is a local read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, final

from garage_model.bucket_table import Bucket, UuidKey
from garage_table.schema import DeletedFilter, EmptyKey, StringKey
from garage_util.data import FixedBytes32

from ._errors import NoSuchAccessKeyError, NoSuchBucketError
from ._key import KeyHelper, scan_partition

if TYPE_CHECKING:
    from garage_model.bucket_alias_table import BucketAlias
    from garage_model.key_table import Key
    from garage_table import Table
    from garage_util.data import Uuid

__all__ = ["BucketHelper"]

_HEX_ID: Final = re.compile(r"[0-9a-fA-F]{64}")


@final
class BucketHelper:
    """Lookups in the bucket, bucket alias and key tables.

    Args:
        bucket_table: the ``bucket_v2`` table of this node.
        alias_table: the ``bucket_alias`` table.
        key_table: the ``key`` table.
    """

    __slots__ = ("_aliases", "_buckets", "_keys")

    def __init__(
        self,
        bucket_table: Table[Bucket],
        alias_table: Table[BucketAlias],
        key_table: Table[Key],
    ) -> None:
        self._buckets = bucket_table
        self._aliases = alias_table
        self._keys = KeyHelper(key_table)

    @property
    def bucket_table(self) -> Table[Bucket]:
        """The bucket table."""
        return self._buckets

    @property
    def alias_table(self) -> Table[BucketAlias]:
        """The global alias table."""
        return self._aliases

    @property
    def key_table(self) -> Table[Key]:
        """The key table."""
        return self._keys.key_table

    @property
    def keys(self) -> KeyHelper:
        """Key lookups (search by pattern, listing)."""
        return self._keys

    # ------------------------------------------------------------------ names

    async def resolve_global_bucket_name(self, name: str) -> Uuid | None:
        """The bucket a global name (or a 64-hex-digit bucket id) designates, or None.

        A hex id resolves only if that bucket exists and is not deleted.
        """
        if _HEX_ID.fullmatch(name):
            bucket_id = FixedBytes32.from_hex(name)
            bucket = await self._buckets.get(EmptyKey(), UuidKey(bucket_id))
            return None if bucket is None or bucket.is_deleted else bucket_id
        alias = await self._aliases.get(EmptyKey(), StringKey(name))
        return None if alias is None else alias.bucket_id

    async def resolve_bucket(self, name: str, key: Key) -> Uuid:
        """The bucket an S3 request made with ``key`` means by ``name``: the key's local
        alias first, then the global names.

        Raises:
            NoSuchBucketError: when the name resolves to nothing.
            NoSuchAccessKeyError: when ``key`` is deleted.
        """
        if key.is_deleted:
            raise NoSuchAccessKeyError(key.key_id)
        local = key.local_alias(name)
        if local is not None:
            return local
        bucket_id = await self.resolve_global_bucket_name(name)
        if bucket_id is None:
            raise NoSuchBucketError(name)
        return bucket_id

    # ------------------------------------------------------------------ buckets

    async def get_internal_bucket(self, bucket_id: Uuid) -> Bucket:
        """The bucket with this id, even if deleted.

        Raises:
            NoSuchBucketError: when no bucket ever had this id.
        """
        bucket = await self._buckets.get(EmptyKey(), UuidKey(bucket_id))
        if bucket is None:
            raise NoSuchBucketError(bucket_id.hex())
        return bucket

    async def get_existing_bucket(self, bucket_id: Uuid) -> Bucket:
        """The bucket with this id, if not deleted.

        Raises:
            NoSuchBucketError: when there is no such bucket, or it was deleted.
        """
        bucket = await self._buckets.get(EmptyKey(), UuidKey(bucket_id))
        if bucket is None or bucket.is_deleted:
            raise NoSuchBucketError(bucket_id.hex())
        return bucket

    async def list_buckets(self) -> list[Bucket]:
        """Every existing (not deleted) bucket, sorted by id."""
        return await scan_partition(self._buckets, DeletedFilter.NOT_DELETED)

    # ------------------------------------------------------------------ keys

    async def get_existing_key(self, key_id: str) -> Key:
        """The access key with this id, if not deleted.

        Raises:
            NoSuchAccessKeyError: when there is no such key, or it was deleted.
        """
        return await self._keys.get_existing_key(key_id)

    async def get_internal_key(self, key_id: str) -> Key:
        """The access key with this id, even if deleted.

        Raises:
            NoSuchAccessKeyError: when no key ever had this id.
        """
        return await self._keys.get_internal_key(key_id)

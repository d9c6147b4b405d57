"""What an access key may do on a bucket (Garage: src/model/permission.rs).

A permission is stored twice: in the bucket (``authorized_keys[key_id]``) and in the key
(``authorized_buckets[bucket_id]``), so that both "which keys can use this bucket" and "which
buckets can this key use" are one local read. The two copies are written by the same
operation with **the same timestamp** (see :mod:`garage_model.helper`), so that whatever
order replicas receive concurrent changes in, both sides converge to the same permission.

Merge rule (a join): the larger timestamp wins; two different permissions with the same
timestamp (two admins on two nodes in the same millisecond) keep only the flags both grant,
so a conflict never grants more than either writer meant to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from garage_util.crdt import Crdt

__all__ = ["ALL_PERMISSIONS", "NO_PERMISSIONS", "BucketKeyPerm"]


@dataclass(frozen=True, slots=True)
class BucketKeyPerm(Crdt):
    """The permissions of one key on one bucket.

    Attributes:
        timestamp: when the permission was set (logical clock, milliseconds); the larger
            one wins a merge.
        allow_read: the key may read objects (GetObject, ListObjects...).
        allow_write: the key may write and delete objects.
        allow_owner: the key may change the bucket's configuration (website, CORS,
            lifecycle) and delete the bucket.
    """

    timestamp: int
    allow_read: bool = False
    allow_write: bool = False
    allow_owner: bool = False

    def is_any(self) -> bool:
        """True when at least one flag is set."""
        return self.allow_read or self.allow_write or self.allow_owner

    def with_timestamp(self, timestamp: int) -> BucketKeyPerm:
        """The same flags, set at ``timestamp``."""
        return BucketKeyPerm(timestamp, self.allow_read, self.allow_write, self.allow_owner)

    def merge(self, other: BucketKeyPerm) -> BucketKeyPerm:
        if other.timestamp > self.timestamp:
            return other
        if other.timestamp < self.timestamp or other == self:
            return self
        # Same timestamp, different flags: keep what both grant (AND is a join on each flag).
        return BucketKeyPerm(
            self.timestamp,
            self.allow_read and other.allow_read,
            self.allow_write and other.allow_write,
            self.allow_owner and other.allow_owner,
        )


#: No access; with timestamp 0, the logical clock of the writer decides the real stamp.
NO_PERMISSIONS: Final = BucketKeyPerm(0)
#: Read, write and owner: what S3 CreateBucket gives the creating key.
ALL_PERMISSIONS: Final = BucketKeyPerm(0, allow_read=True, allow_write=True, allow_owner=True)

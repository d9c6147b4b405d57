"""The global bucket names (Garage: src/model/bucket_alias_table.rs, and the name rules of
src/model/helper/bucket.rs ``is_valid_bucket_name``).

A global alias maps a name to a bucket id: ``BucketAlias { name, state: Lww[Uuid | None] }``.
``None`` means the name was taken back; such an entry is a tombstone and is garbage
collected once every node has it (the name becomes free again, and the bucket side
``BucketParams.aliases`` keeps the history). Two admins that give the same name to two
buckets at the same timestamp get the same winner on every node (the larger id).

The alias table is the authority for global names: S3 requests resolve a bucket name here
(after the key's local aliases). Changing an alias also updates the reverse index in the
bucket with the same timestamp (:mod:`garage_model.helper`).

Bucket names follow S3's rules for virtual-host-compatible names, as Garage checks them:
3 to 63 characters of ``a-z``, ``0-9``, ``.`` and ``-``; starting and ending with a letter
or digit; not an IPv4 address; no punycode (``xn--`` prefix or label) unless allowed by the
configuration; not ending in ``-s3alias`` (reserved by AWS for access points).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar, Final

from garage_table.schema import DeletedFilter, EmptyKey, StringKey, TableEntry, TableSchema
from garage_util.crdt import Lww
from garage_util.data import Uuid

__all__ = ["BucketAlias", "BucketAliasSchema", "is_valid_bucket_name"]

#: S3's length limits for bucket names (AWS: "Bucket naming rules").
_MIN_NAME_LEN: Final = 3
_MAX_NAME_LEN: Final = 63
_NAME_CHARS: Final = re.compile(r"[a-z0-9.-]+")


def is_valid_bucket_name(name: str, *, allow_punycode: bool = False) -> bool:
    """True when ``name`` may be used as a bucket name (global or local alias).

    Args:
        name: the candidate name.
        allow_punycode: accept internationalised names (``xn--`` labels), as Garage's
            ``allow_punycode`` option does.
    """
    if not _MIN_NAME_LEN <= len(name) <= _MAX_NAME_LEN:
        return False
    if _NAME_CHARS.fullmatch(name) is None:
        return False
    if name[0] in ".-" or name[-1] in ".-":
        return False
    if name.endswith("-s3alias"):
        return False
    if not allow_punycode and (name.startswith("xn--") or ".xn--" in name):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class BucketAlias(TableEntry[EmptyKey, StringKey]):
    """A global bucket name and the bucket it points to.

    Attributes:
        name: the bucket name.
        state: the bucket id, or None when the name was taken back (a tombstone).
    """

    VERSION_MARKER: ClassVar[bytes] = b"G01bal"

    name: str
    state: Lww[Uuid | None]

    @classmethod
    def new(cls, name: str, ts: int, bucket_id: Uuid | None) -> BucketAlias:
        """``name`` pointing to ``bucket_id`` (None: unset) at timestamp ``ts``."""
        return cls(name, Lww(ts, bucket_id))

    @property
    def bucket_id(self) -> Uuid | None:
        """The bucket the name points to, or None."""
        return self.state.v

    def partition_key(self) -> EmptyKey:
        return EmptyKey()

    def sort_key(self) -> StringKey:
        return StringKey(self.name)

    def is_tombstone(self) -> bool:
        return self.state.v is None

    def merge(self, other: BucketAlias) -> BucketAlias:
        if self.name != other.name:
            raise ValueError("cannot merge aliases of different names")
        state = self.state.merge(other.state)
        return self if state is self.state else BucketAlias(self.name, state)


class BucketAliasSchema(TableSchema[EmptyKey, StringKey, BucketAlias, DeletedFilter]):
    """The ``bucket_alias`` table: every global name in one partition, sorted by name.

    Filter: :class:`DeletedFilter` on whether the name is unset.
    """

    TABLE_NAME: ClassVar[str] = "bucket_alias"
    PARTITION_KEY = EmptyKey
    SORT_KEY = StringKey
    ENTRY = BucketAlias
    FILTER = DeletedFilter

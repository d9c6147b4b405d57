"""The bucket table: one entry per bucket, on every node (Garage: src/model/bucket_table.rs).

A bucket is identified by a random 32-byte id, never by its name: names are *aliases*,
either global (the ``bucket_alias`` table, :mod:`garage_model.bucket_alias_table`) or local
to an access key (``KeyParams.local_aliases``). Renaming is adding an alias and removing
another, and two buckets can never be confused because two admins chose the same name.

Entry shape::

    Bucket       { id, state: Deletable[BucketParams] }
    BucketParams { creation_date (min), authorized_keys: Map[key_id, BucketKeyPerm],
                   aliases: LwwMap[name, bool], local_aliases: LwwMap[(key_id, name), bool],
                   website_config, cors_config, lifecycle_config: Lww[... | None],
                   quotas: Lww[BucketQuotas] }

Invariants and why:

- ``aliases`` and ``local_aliases`` mirror the alias table and the keys' local aliases; each
  pair is written with the same timestamp (:mod:`garage_model.helper`) so that both sides
  converge to the same answer under concurrent changes. They are a reverse index (what
  ListBuckets shows), not the authority: name resolution reads the alias table and the key.
- A deleted bucket stays as a ``Deletable.deleted()`` row forever and is never garbage
  collected (``is_tombstone`` is False, as in Garage): a late write of the bucket from a slow
  node, or a permission still pointing at it, would otherwise bring it back to life.
- The table is replicated to every node (``TableFullReplication``), with everything in one
  partition (``EmptyKey``) sorted by bucket id: every node can resolve and authorise an S3
  request with local reads only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from garage_table.schema import DeletedFilter, EmptyKey, TableEntry, TableSchema, UuidKey
from garage_util.crdt import Crdt, Deletable, Lww, LwwMap, Map, merge_values
from garage_util.data import Uuid

from .permission import BucketKeyPerm

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "Bucket",
    "BucketParams",
    "BucketQuotas",
    "BucketSchema",
    "CorsRule",
    "LifecycleExpiration",
    "LifecycleFilter",
    "LifecycleRule",
    "UuidKey",
    "WebsiteConfig",
]


# ------------------------------------------------------------------ configuration values


@dataclass(frozen=True, slots=True)
class WebsiteConfig:
    """The static website configuration of a bucket (S3 PutBucketWebsite).

    Attributes:
        index_document: the object served for a path ending in ``/`` (e.g. ``index.html``).
        error_document: the object served with a 404, or None for Garage's own error page.
    """

    index_document: str
    error_document: str | None = None


@dataclass(frozen=True, slots=True)
class CorsRule:
    """One CORS rule (S3 PutBucketCors). Lists are tuples, in the order given by the user.

    Attributes:
        id: the rule's optional id.
        max_age_seconds: how long browsers may cache a preflight answer.
        allow_origins: origins allowed (``*`` wildcards allowed).
        allow_methods: HTTP methods allowed.
        allow_headers: request headers allowed in a preflight.
        expose_headers: response headers the browser may expose.
    """

    id: str | None = None
    max_age_seconds: int | None = None
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LifecycleFilter:
    """The objects a lifecycle rule applies to: all conditions that are set must hold.

    Attributes:
        prefix: the object key must start with this.
        size_gt: the object size must be more than this many bytes.
        size_lt: the object size must be less than this many bytes.
    """

    prefix: str | None = None
    size_gt: int | None = None
    size_lt: int | None = None

    def matches(self, key: str, size: int) -> bool:
        """True when an object with this key and size passes the filter."""
        if self.prefix is not None and not key.startswith(self.prefix):
            return False
        if self.size_gt is not None and not size > self.size_gt:
            return False
        return self.size_lt is None or size < self.size_lt


@dataclass(frozen=True, slots=True)
class LifecycleExpiration:
    """When objects expire: ``after_days`` days after creation, or at the date ``at_date``.

    Exactly one of the two is set; build it with :meth:`after` or :meth:`at`.

    Attributes:
        after_days: days after the object's creation.
        at_date: a date in ``YYYY-MM-DD`` form (S3 allows only midnight UTC).

    Raises:
        ValueError: when both or neither are set.
    """

    after_days: int | None = None
    at_date: str | None = None

    def __post_init__(self) -> None:
        if (self.after_days is None) == (self.at_date is None):
            raise ValueError("LifecycleExpiration needs exactly one of after_days and at_date")

    @classmethod
    def after(cls, days: int) -> LifecycleExpiration:
        """Expiration ``days`` days after creation."""
        return cls(after_days=days)

    @classmethod
    def at(cls, date: str) -> LifecycleExpiration:
        """Expiration at ``date`` (``YYYY-MM-DD``)."""
        return cls(at_date=date)


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """One lifecycle rule (S3 PutBucketLifecycleConfiguration).

    Attributes:
        id: the rule's optional id.
        enabled: whether the lifecycle worker applies it.
        filter: which objects it applies to.
        abort_incomplete_mpu_days: abort multipart uploads older than this many days.
        expiration: when matching objects are deleted.
    """

    id: str | None = None
    enabled: bool = True
    filter: LifecycleFilter = LifecycleFilter()
    abort_incomplete_mpu_days: int | None = None
    expiration: LifecycleExpiration | None = None


@dataclass(frozen=True, slots=True)
class BucketQuotas:
    """Limits on a bucket's contents; None means unlimited.

    Attributes:
        max_size: the most bytes the bucket may hold (sum of its objects' sizes).
        max_objects: the most (non-deleted) objects it may hold.
    """

    max_size: int | None = None
    max_objects: int | None = None


# ------------------------------------------------------------------ the entry


@dataclass(frozen=True, slots=True)
class BucketParams(Crdt):
    """The state of a bucket that exists. Every field is a CRDT except ``creation_date``,
    which merges by minimum (the first creation wins).

    Attributes:
        creation_date: creation time in milliseconds.
        authorized_keys: the permission of each access key id.
        aliases: global names given to the bucket (True) or taken back (False).
        local_aliases: ``(key_id, name)`` local aliases given (True) or taken back (False).
        website_config: the website configuration, or None when not a website.
        cors_config: the CORS rules, or None.
        lifecycle_config: the lifecycle rules, or None.
        quotas: the size and object-count limits.
    """

    creation_date: int
    authorized_keys: Map[str, BucketKeyPerm]
    aliases: LwwMap[str, bool]
    local_aliases: LwwMap[tuple[str, str], bool]
    website_config: Lww[WebsiteConfig | None]
    cors_config: Lww[tuple[CorsRule, ...] | None]
    lifecycle_config: Lww[tuple[LifecycleRule, ...] | None]
    quotas: Lww[BucketQuotas]

    @classmethod
    def new(cls, now_ms: int) -> BucketParams:
        """The parameters of a bucket created at ``now_ms``: no key, alias or configuration."""
        return cls(
            creation_date=now_ms,
            authorized_keys=Map(),
            aliases=LwwMap(),
            local_aliases=LwwMap(),
            website_config=Lww(now_ms, None),
            cors_config=Lww(now_ms, None),
            lifecycle_config=Lww(now_ms, None),
            quotas=Lww(now_ms, BucketQuotas()),
        )

    def merge(self, other: BucketParams) -> BucketParams:
        return BucketParams(
            creation_date=min(self.creation_date, other.creation_date),
            authorized_keys=self.authorized_keys.merge(other.authorized_keys),
            aliases=self.aliases.merge(other.aliases),
            local_aliases=self.local_aliases.merge(other.local_aliases),
            website_config=merge_values(self.website_config, other.website_config),
            cors_config=merge_values(self.cors_config, other.cors_config),
            lifecycle_config=merge_values(self.lifecycle_config, other.lifecycle_config),
            quotas=self.quotas.merge(other.quotas),
        )

    def active_aliases(self) -> list[str]:
        """The global names currently given to the bucket, sorted."""
        return [name for name, active in self.aliases.items() if active]

    def active_local_aliases(self) -> list[tuple[str, str]]:
        """The ``(key_id, name)`` local aliases currently given to the bucket, sorted."""
        return [k for k, active in self.local_aliases.items() if active]


@dataclass(frozen=True, slots=True)
class Bucket(TableEntry[EmptyKey, UuidKey]):
    """A bucket: its id and, unless deleted, its parameters.

    Attributes:
        id: the bucket's random id.
        state: the parameters, or deleted.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G01bkt"

    id: Uuid
    state: Deletable[BucketParams]

    @classmethod
    def new(cls, bucket_id: Uuid, now_ms: int) -> Bucket:
        """A new bucket, created at ``now_ms`` (pass ``gen_uuid()`` as ``bucket_id``)."""
        return cls(bucket_id, Deletable.present(BucketParams.new(now_ms)))

    @classmethod
    def deleted(cls, bucket_id: Uuid) -> Bucket:
        """The deleted state of a bucket: merged into any state of it, deletes it."""
        return cls(bucket_id, Deletable.deleted())

    @property
    def is_deleted(self) -> bool:
        """True when the bucket was deleted."""
        return self.state.is_deleted

    @property
    def params(self) -> BucketParams | None:
        """The parameters, or None when deleted."""
        return self.state.value

    def with_params(self, params: BucketParams) -> Bucket:
        """This bucket with its parameters replaced (to insert: merges on every replica)."""
        return replace(self, state=Deletable.present(params))

    def authorized_keys(self) -> Iterator[tuple[str, BucketKeyPerm]]:
        """``(key_id, permission)`` of every key ever given a permission (none if deleted)."""
        params = self.state.value
        return iter(()) if params is None else params.authorized_keys.items()

    def partition_key(self) -> EmptyKey:
        return EmptyKey()

    def sort_key(self) -> UuidKey:
        return UuidKey(self.id)

    def is_tombstone(self) -> bool:
        # Deleted buckets are kept forever (see the module docstring).
        return False

    def merge(self, other: Bucket) -> Bucket:
        if self.id != other.id:
            raise ValueError("cannot merge two different buckets")
        state = self.state.merge(other.state)
        return self if state is self.state else Bucket(self.id, state)


class BucketSchema(TableSchema[EmptyKey, UuidKey, Bucket, DeletedFilter]):
    """The ``bucket_v2`` table: all buckets in one partition, sorted by id.

    Filter: :class:`DeletedFilter` on the bucket's deleted state.
    """

    TABLE_NAME: ClassVar[str] = "bucket_v2"
    PARTITION_KEY = EmptyKey
    SORT_KEY = UuidKey
    ENTRY = Bucket
    FILTER = DeletedFilter

    def matches_filter(self, entry: Bucket, filter: DeletedFilter) -> bool:
        return filter.apply(entry.is_deleted)

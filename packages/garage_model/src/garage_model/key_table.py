"""The access key table: one entry per S3 access key, on every node (Garage:
src/model/key_table.rs).

Entry shape::

    Key       { key_id: "GK" + 24 hex, state: Deletable[KeyParams] }
    KeyParams { secret_key: 64 hex (never changes), name: Lww[str],
                allow_create_bucket: Lww[bool],
                authorized_buckets: Map[bucket_id, BucketKeyPerm],
                local_aliases: LwwMap[name, bucket_id | None] }

Invariants and why:

- The secret lives inside the ``Deletable``: deleting a key forgets its secret on every
  replica, and no merge can bring it back. It is set once, so two replicas never hold
  different secrets for one id; should they ever (an import racing a creation), the merge
  still picks the same one everywhere.
- ``authorized_buckets`` mirrors ``BucketParams.authorized_keys`` and ``local_aliases``
  mirrors ``BucketParams.local_aliases``; each pair is written with the same timestamp.
- A key's local aliases are its private bucket namespace (S3 CreateBucket puts the name
  there); they are looked up before the global names.
- Deleted keys are kept forever (``is_tombstone`` is False, as in Garage), so that a key id
  is never silently reused by a late write.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final

from garage_table.schema import DeletedFilter, EmptyKey, StringKey, TableEntry, TableSchema
from garage_util.crdt import Crdt, Deletable, Lww, LwwMap, Map, merge_values
from garage_util.data import Uuid

from .permission import BucketKeyPerm

__all__ = ["InvalidKeyFormatError", "Key", "KeyFilter", "KeyParams", "KeySchema"]

#: "GK" then 12 random bytes in hex: Garage's access key id format (AWS ids are 20 chars;
#: clients accept any length, and the prefix makes Garage keys recognisable).
_KEY_ID_RE: Final = re.compile(r"GK[0-9a-f]{24}")
_KEY_ID_RANDOM_BYTES: Final = 12
#: 32 random bytes in hex: the secret is an HMAC key for SigV4, 256 bits is plenty.
_SECRET_RE: Final = re.compile(r"[0-9a-f]{64}")
_SECRET_RANDOM_BYTES: Final = 32


class InvalidKeyFormatError(ValueError):
    """Raised by :meth:`Key.import_` when the key id or secret does not have Garage's
    format (``GK`` + 24 lowercase hex digits; 64 lowercase hex digits)."""


@dataclass(frozen=True, slots=True)
class KeyParams(Crdt):
    """The state of an access key that exists.

    Attributes:
        secret_key: the secret, 64 hex digits; never changes.
        name: a human-friendly name (not unique).
        allow_create_bucket: whether S3 CreateBucket is allowed with this key.
        authorized_buckets: the permission of the key on each bucket id.
        local_aliases: the key's own bucket names: bucket id, or None once removed.
    """

    secret_key: str = field(repr=False)  # never in logs or test reports
    name: Lww[str]
    allow_create_bucket: Lww[bool]
    authorized_buckets: Map[Uuid, BucketKeyPerm]
    local_aliases: LwwMap[str, Uuid | None]

    def merge(self, other: KeyParams) -> KeyParams:
        return KeyParams(
            secret_key=merge_values(self.secret_key, other.secret_key),
            name=self.name.merge(other.name),
            allow_create_bucket=self.allow_create_bucket.merge(other.allow_create_bucket),
            authorized_buckets=self.authorized_buckets.merge(other.authorized_buckets),
            local_aliases=self.local_aliases.merge(other.local_aliases),
        )

    def active_local_aliases(self) -> list[tuple[str, Uuid]]:
        """The ``(name, bucket_id)`` local aliases currently set, sorted by name."""
        return [(name, b) for name, b in self.local_aliases.items() if b is not None]


@dataclass(frozen=True, slots=True)
class Key(TableEntry[EmptyKey, StringKey]):
    """An S3 access key.

    Attributes:
        key_id: the access key id (``GK`` + 24 hex digits).
        state: the key's parameters, or deleted.
    """

    VERSION_MARKER: ClassVar[bytes] = b"G01key"

    key_id: str
    state: Deletable[KeyParams]

    @classmethod
    def new(cls, name: str, *, now_ms: int) -> Key:
        """A new key with a random id and secret (from :mod:`secrets`), no permissions and
        bucket creation not allowed."""
        key_id = "GK" + secrets.token_hex(_KEY_ID_RANDOM_BYTES)
        return cls._build(key_id, secrets.token_hex(_SECRET_RANDOM_BYTES), name, now_ms)

    @classmethod
    def import_(cls, key_id: str, secret_key: str, name: str, *, now_ms: int) -> Key:
        """A key with a given id and secret (``garage key import``, migrations from another
        S3 service).

        Raises:
            InvalidKeyFormatError: when the id or the secret is not in Garage's format.
        """
        if _KEY_ID_RE.fullmatch(key_id) is None:
            raise InvalidKeyFormatError(
                f"invalid access key id {key_id!r}: expected 'GK' followed by 24 lowercase "
                "hex digits"
            )
        if _SECRET_RE.fullmatch(secret_key) is None:
            # Never echo the secret itself.
            raise InvalidKeyFormatError(
                f"invalid secret key for {key_id}: expected 64 lowercase hex digits"
            )
        return cls._build(key_id, secret_key, name, now_ms)

    @classmethod
    def _build(cls, key_id: str, secret_key: str, name: str, now_ms: int) -> Key:
        params = KeyParams(secret_key, Lww(now_ms, name), Lww(now_ms, False), Map(), LwwMap())
        return cls(key_id, Deletable.present(params))

    @classmethod
    def deleted(cls, key_id: str) -> Key:
        """The deleted state of a key: merged into any state of it, deletes it."""
        return cls(key_id, Deletable.deleted())

    def __repr__(self) -> str:
        # The dataclass repr would print the secret into logs and test reports.
        state = "deleted" if self.state.is_deleted else "present"
        return f"Key({self.key_id!r}, {state})"

    @property
    def is_deleted(self) -> bool:
        """True when the key was deleted."""
        return self.state.is_deleted

    @property
    def params(self) -> KeyParams | None:
        """The parameters, or None when deleted."""
        return self.state.value

    @property
    def name(self) -> str:
        """The key's name ("" when deleted)."""
        params = self.state.value
        return "" if params is None else params.name.v

    def with_params(self, params: KeyParams) -> Key:
        """This key with its parameters replaced (to insert: merges on every replica)."""
        return replace(self, state=Deletable.present(params))

    def bucket_permission(self, bucket_id: Uuid) -> BucketKeyPerm | None:
        """The key's permission on ``bucket_id``, or None (never set, or key deleted)."""
        params = self.state.value
        return None if params is None else params.authorized_buckets.get(bucket_id)

    def allow_read(self, bucket_id: Uuid) -> bool:
        """True when the key may read the bucket."""
        perm = self.bucket_permission(bucket_id)
        return perm is not None and perm.allow_read

    def allow_write(self, bucket_id: Uuid) -> bool:
        """True when the key may write to the bucket."""
        perm = self.bucket_permission(bucket_id)
        return perm is not None and perm.allow_write

    def allow_owner(self, bucket_id: Uuid) -> bool:
        """True when the key owns the bucket (configuration, deletion)."""
        perm = self.bucket_permission(bucket_id)
        return perm is not None and perm.allow_owner

    def local_alias(self, name: str) -> Uuid | None:
        """The bucket the key's local alias ``name`` points to, or None."""
        params = self.state.value
        return None if params is None else params.local_aliases.get(name)

    def partition_key(self) -> EmptyKey:
        return EmptyKey()

    def sort_key(self) -> StringKey:
        return StringKey(self.key_id)

    def is_tombstone(self) -> bool:
        # Deleted keys are kept forever (see the module docstring).
        return False

    def merge(self, other: Key) -> Key:
        if self.key_id != other.key_id:
            raise ValueError("cannot merge two different keys")
        state = self.state.merge(other.state)
        return self if state is self.state else Key(self.key_id, state)


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """The filter of key listings: on the deleted state, or matching a pattern.

    Exactly one field is set; build it with :meth:`deleted_state` or :meth:`matching`.
    Filters travel in ``ReadRange`` RPCs, hence a plain encodable dataclass.

    Attributes:
        deleted: keep keys in this deleted state.
        matches: keep keys that are not deleted and whose id starts with this, or whose
            name contains it (case-insensitive; what ``garage key info <pattern>`` searches).

    Raises:
        ValueError: when both or neither are set.
    """

    deleted: DeletedFilter | None = None
    matches: str | None = None

    def __post_init__(self) -> None:
        if (self.deleted is None) == (self.matches is None):
            raise ValueError("KeyFilter needs exactly one of deleted and matches")

    @classmethod
    def deleted_state(cls, filter: DeletedFilter) -> KeyFilter:
        """Keys in a deleted state."""
        return cls(deleted=filter)

    @classmethod
    def matching(cls, pattern: str) -> KeyFilter:
        """Keys not deleted whose id starts with, or name contains, ``pattern``."""
        return cls(matches=pattern)

    def apply(self, key: Key) -> bool:
        """True when ``key`` passes the filter."""
        if self.deleted is not None:
            return self.deleted.apply(key.is_deleted)
        params = key.state.value
        if params is None:
            return False
        pattern = (self.matches or "").lower()
        return key.key_id.lower().startswith(pattern) or pattern in params.name.v.lower()


class KeySchema(TableSchema[EmptyKey, StringKey, Key, KeyFilter]):
    """The ``key`` table: every access key in one partition, sorted by key id."""

    TABLE_NAME: ClassVar[str] = "key"
    PARTITION_KEY = EmptyKey
    SORT_KEY = StringKey
    ENTRY = Key
    FILTER = KeyFilter

    def matches_filter(self, entry: Key, filter: KeyFilter) -> bool:
        return filter.apply(entry)

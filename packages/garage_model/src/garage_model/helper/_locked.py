"""Admin mutations of buckets, aliases, keys and permissions (Garage:
src/model/helper/locked.rs, and the create/delete logic of src/api/s3/bucket.rs and
src/api/admin/bucket.rs).

Theory of operation:

- **Denormalised pairs, one timestamp.** A permission lives in the bucket and in the key; a
  global alias in the alias table and in ``bucket.aliases``; a local alias in
  ``key.local_aliases`` and ``bucket.local_aliases``. Each change computes one timestamp,
  ``increment_logical_clock_2(ts on one side, ts on the other, now)``, *before* writing
  either side, and writes both with it. Both sides then hold the same LWW stamp for the
  pair, so any set of concurrent changes, merged in any order, leaves both sides agreeing.
- **One node-wide lock.** Check-then-write sequences ("is this name free? then take it")
  are not atomic across a cluster. Every mutation here runs under one lock per node, so
  requests sent to the same node cannot interleave (Garage issues #649, #723). Requests to
  different nodes still can; that is Garage's accepted limit.
- **Checks first, writes last.** Each operation reads and validates everything it needs,
  then writes; a refusal never leaves a half-done change behind. Writes merge the new state
  into every replica (``Table.insert``), so writing a whole entry read a moment ago is
  the same as sending only the changed field.

Bucket configuration setters (website, CORS, lifecycle, quotas) are plain LWW updates with
no cross-entry invariant, so they do not take the lock.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, final

import anyio

from garage_model.bucket_alias_table import BucketAlias, is_valid_bucket_name
from garage_model.bucket_table import (
    Bucket,
    BucketParams,
    BucketQuotas,
    CorsRule,
    LifecycleRule,
    WebsiteConfig,
)
from garage_model.key_table import InvalidKeyFormatError, Key, KeyParams
from garage_model.permission import ALL_PERMISSIONS, NO_PERMISSIONS, BucketKeyPerm
from garage_table.schema import EmptyKey, StringKey
from garage_util.clock import increment_logical_clock_2, now_msec
from garage_util.crdt import LwwMap, Map
from garage_util.data import gen_uuid

from ._errors import (
    AccessDeniedError,
    BadRequestError,
    BucketAlreadyExistsError,
    BucketNotEmptyError,
    InvalidBucketNameError,
    KeyAlreadyExistsError,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from garage_util.data import Uuid

    from ._bucket import BucketHelper

__all__ = ["LockedHelper"]


@final
class LockedHelper:
    """The mutations of buckets, aliases, access keys and permissions, one at a time.

    Args:
        helper: lookups in the three tables.
        bucket_is_empty: ``await bucket_is_empty(bucket_id)`` is True when the bucket holds
            no object and no K2V item (the object layer provides it).
        clock_ms: the wall clock, in milliseconds (tests pass a fixed one).
        allow_punycode: accept ``xn--`` bucket names (Garage's ``allow_punycode``).
    """

    __slots__ = ("_allow_punycode", "_bucket_is_empty", "_clock_ms", "_helper", "_lock")

    def __init__(
        self,
        helper: BucketHelper,
        *,
        bucket_is_empty: Callable[[Uuid], Awaitable[bool]],
        clock_ms: Callable[[], int] = now_msec,
        allow_punycode: bool = False,
    ) -> None:
        self._helper = helper
        self._bucket_is_empty = bucket_is_empty
        self._clock_ms = clock_ms
        self._allow_punycode = allow_punycode
        self._lock = anyio.Lock()

    @property
    def helper(self) -> BucketHelper:
        """The lookups this helper uses."""
        return self._helper

    def _check_name(self, name: str) -> None:
        if not is_valid_bucket_name(name, allow_punycode=self._allow_punycode):
            raise InvalidBucketNameError(name)

    def _ts(self, one_side: int | None, other_side: int | None) -> int:
        """A timestamp newer than both sides' stamps of a pair (None: no entry yet), and at
        least now: ``increment_logical_clock_2``."""
        return increment_logical_clock_2(one_side or 0, other_side or 0, self._clock_ms())

    # ------------------------------------------------------------------ buckets

    async def create_bucket(
        self, name: str | None, *, owner_key_id: str | None = None, local: bool = False
    ) -> Uuid:
        """Creates a bucket and returns its id.

        Two flavours:

        - ``local=True`` is S3 CreateBucket: ``name`` becomes a local alias of the key
          ``owner_key_id``, which needs ``allow_create_bucket`` and gets all permissions.
          If the name already designates a bucket (the key's local alias, else a global
          name) on which the key can write or is owner, that bucket's id is returned and
          nothing changes (S3 answers 200); otherwise the name is taken.
        - ``local=False`` is the admin API/CLI: ``name`` (if given) becomes a global alias;
          ``owner_key_id`` (if given) gets all permissions, with no need for
          ``allow_create_bucket``.

        Raises:
            InvalidBucketNameError: when ``name`` breaks the naming rules.
            BucketAlreadyExistsError: when the name is taken.
            AccessDeniedError: S3 flavour, when the key may not create buckets.
            NoSuchAccessKeyError: when ``owner_key_id`` is not an existing key.
            BadRequestError: ``local=True`` without a name or an owner key.
        """
        async with self._lock:
            if local:
                if name is None or owner_key_id is None:
                    raise BadRequestError("a bucket with a local alias needs a name and a key")
                return await self._create_local(name, owner_key_id)
            return await self._create_global(name, owner_key_id)

    async def _create_local(self, name: str, key_id: str) -> Uuid:
        self._check_name(name)
        key = await self._helper.get_existing_key(key_id)
        existing = key.local_alias(name)
        if existing is None:
            alias = await self._helper.alias_table.get(EmptyKey(), StringKey(name))
            existing = None if alias is None else alias.bucket_id
        if existing is not None:
            # Garage answers 200 when the key may already use the bucket (S3 returns
            # BucketAlreadyOwnedByYou in us-east-1 only; elsewhere, 200 too).
            if key.allow_write(existing) or key.allow_owner(existing):
                return existing
            raise BucketAlreadyExistsError(name)
        if not _key_params(key).allow_create_bucket.v:
            raise AccessDeniedError(f"access key {key_id} is not allowed to create buckets")
        bucket_id = gen_uuid()
        await self._helper.bucket_table.insert(Bucket.new(bucket_id, self._clock_ms()))
        await self._set_permissions(bucket_id, key_id, ALL_PERMISSIONS)
        await self._set_local_alias(bucket_id, key_id, name)
        return bucket_id

    async def _create_global(self, name: str | None, owner_key_id: str | None) -> Uuid:
        if name is not None:
            self._check_name(name)
            alias = await self._helper.alias_table.get(EmptyKey(), StringKey(name))
            if alias is not None and alias.bucket_id is not None:
                raise BucketAlreadyExistsError(name)
        if owner_key_id is not None:
            await self._helper.get_existing_key(owner_key_id)
        bucket_id = gen_uuid()
        await self._helper.bucket_table.insert(Bucket.new(bucket_id, self._clock_ms()))
        if name is not None:
            await self._set_global_alias(bucket_id, name)
        if owner_key_id is not None:
            await self._set_permissions(bucket_id, owner_key_id, ALL_PERMISSIONS)
        return bucket_id

    async def delete_bucket(self, bucket_id: Uuid) -> None:
        """Deletes an empty bucket: takes back every permission, local and global alias,
        then marks the bucket deleted.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
            BucketNotEmptyError: when ``bucket_is_empty`` says it still holds data.
        """
        async with self._lock:
            bucket = await self._helper.get_existing_bucket(bucket_id)
            if not await self._bucket_is_empty(bucket_id):
                raise BucketNotEmptyError(bucket_id.hex())
            params = _params(bucket)
            for key_id, perm in params.authorized_keys.items():
                if perm.is_any():
                    await self._set_permissions(bucket_id, key_id, NO_PERMISSIONS)
            for key_id, name in params.active_local_aliases():
                await self._purge_local_alias(bucket_id, key_id, name)
            for name in params.active_aliases():
                await self._purge_global_alias(bucket_id, name)
            await self._helper.bucket_table.insert(Bucket.deleted(bucket_id))

    # ------------------------------------------------------------------ global aliases

    async def set_global_alias(self, bucket_id: Uuid, name: str) -> None:
        """Gives the bucket the global name ``name`` (no-op if it already has it).

        Raises:
            InvalidBucketNameError: when ``name`` breaks the naming rules.
            NoSuchBucketError: when the bucket does not exist.
            BucketAlreadyExistsError: when the name points to another bucket.
        """
        async with self._lock:
            await self._set_global_alias(bucket_id, name)

    async def _set_global_alias(self, bucket_id: Uuid, name: str) -> None:
        self._check_name(name)
        bucket = await self._helper.get_existing_bucket(bucket_id)
        alias = await self._helper.alias_table.get(EmptyKey(), StringKey(name))
        if alias is not None and alias.bucket_id not in (None, bucket_id):
            raise BucketAlreadyExistsError(name)
        params = _params(bucket)
        ts = self._ts(params.aliases.get_timestamp(name), None if alias is None else alias.state.ts)
        # ---- both sides are written with ts ----
        await self._helper.alias_table.insert(BucketAlias.new(name, ts, bucket_id))
        aliases = params.aliases.merge(LwwMap(((name, ts, True),)))
        await self._write_bucket(bucket, dataclasses.replace(params, aliases=aliases))

    async def unset_global_alias(self, bucket_id: Uuid, name: str) -> None:
        """Takes the global name ``name`` back from the bucket.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
            BadRequestError: when the name does not point to this bucket, or is the
                bucket's last alias (delete the bucket instead).
        """
        async with self._lock:
            bucket = await self._helper.get_existing_bucket(bucket_id)
            alias = await self._helper.alias_table.get(EmptyKey(), StringKey(name))
            if alias is None or alias.bucket_id != bucket_id:
                raise BadRequestError(f"bucket {bucket_id.hex()} has no global alias {name!r}")
            params = _params(bucket)
            others = [n for n in params.active_aliases() if n != name]
            if not others and not params.active_local_aliases():
                raise _last_alias(name)
            ts = self._ts(alias.state.ts, params.aliases.get_timestamp(name))
            await self._helper.alias_table.insert(BucketAlias.new(name, ts, None))
            aliases = params.aliases.merge(LwwMap(((name, ts, False),)))
            await self._write_bucket(bucket, dataclasses.replace(params, aliases=aliases))

    async def _purge_global_alias(self, bucket_id: Uuid, name: str) -> None:
        """Removes the name from the bucket (deleted or not), and from the alias table if it
        still points there; never refuses."""
        bucket = await self._helper.get_internal_bucket(bucket_id)
        alias = await self._helper.alias_table.get(EmptyKey(), StringKey(name))
        params = bucket.params
        ts = self._ts(
            None if alias is None else alias.state.ts,
            None if params is None else params.aliases.get_timestamp(name),
        )
        if alias is not None and alias.bucket_id == bucket_id:
            await self._helper.alias_table.insert(BucketAlias.new(name, ts, None))
        if params is not None:
            aliases = params.aliases.merge(LwwMap(((name, ts, False),)))
            await self._write_bucket(bucket, dataclasses.replace(params, aliases=aliases))

    # ------------------------------------------------------------------ local aliases

    async def set_local_alias(self, bucket_id: Uuid, key_id: str, name: str) -> None:
        """Gives the bucket the name ``name`` in the namespace of the key ``key_id``.

        Raises:
            InvalidBucketNameError: when ``name`` breaks the naming rules.
            NoSuchBucketError: when the bucket does not exist.
            NoSuchAccessKeyError: when the key does not exist.
            BucketAlreadyExistsError: when the key's alias points to another bucket.
        """
        async with self._lock:
            await self._set_local_alias(bucket_id, key_id, name)

    async def _set_local_alias(self, bucket_id: Uuid, key_id: str, name: str) -> None:
        self._check_name(name)
        bucket = await self._helper.get_existing_bucket(bucket_id)
        key = await self._helper.get_existing_key(key_id)
        existing = key.local_alias(name)
        if existing is not None and existing != bucket_id:
            raise BucketAlreadyExistsError(name)
        bparams, kparams = _params(bucket), _key_params(key)
        ts = self._ts(
            kparams.local_aliases.get_timestamp(name),
            bparams.local_aliases.get_timestamp((key_id, name)),
        )
        # ---- both sides are written with ts ----
        local = kparams.local_aliases.merge(LwwMap(((name, ts, bucket_id),)))
        await self._write_key(key, dataclasses.replace(kparams, local_aliases=local))
        blocal = bparams.local_aliases.merge(LwwMap((((key_id, name), ts, True),)))
        await self._write_bucket(bucket, dataclasses.replace(bparams, local_aliases=blocal))

    async def unset_local_alias(self, bucket_id: Uuid, key_id: str, name: str) -> None:
        """Takes back the name ``name`` of the bucket in the namespace of ``key_id``.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
            NoSuchAccessKeyError: when the key does not exist.
            BadRequestError: when the key's alias does not point to this bucket, or is the
                bucket's last alias (delete the bucket instead).
        """
        async with self._lock:
            bucket = await self._helper.get_existing_bucket(bucket_id)
            key = await self._helper.get_existing_key(key_id)
            if key.local_alias(name) != bucket_id:
                raise BadRequestError(
                    f"bucket {bucket_id.hex()} has no alias {name!r} for access key {key_id}"
                )
            params = _params(bucket)
            others = [a for a in params.active_local_aliases() if a != (key_id, name)]
            if not others and not params.active_aliases():
                raise _last_alias(name)
            await self._purge_local_alias(bucket_id, key_id, name)

    async def _purge_local_alias(self, bucket_id: Uuid, key_id: str, name: str) -> None:
        """Removes the local alias from both sides (either may be deleted); never refuses."""
        key = await self._helper.get_internal_key(key_id)
        bucket = await self._helper.get_internal_bucket(bucket_id)
        kparams, bparams = key.params, bucket.params
        ts = self._ts(
            None if kparams is None else kparams.local_aliases.get_timestamp(name),
            None if bparams is None else bparams.local_aliases.get_timestamp((key_id, name)),
        )
        # Only clear the key's side if it still points here (it may have been re-pointed).
        if kparams is not None and key.local_alias(name) == bucket_id:
            local = kparams.local_aliases.merge(LwwMap(((name, ts, None),)))
            await self._write_key(key, dataclasses.replace(kparams, local_aliases=local))
        if bparams is not None:
            blocal = bparams.local_aliases.merge(LwwMap((((key_id, name), ts, False),)))
            await self._write_bucket(bucket, dataclasses.replace(bparams, local_aliases=blocal))

    # ------------------------------------------------------------------ permissions

    async def set_bucket_key_permissions(
        self, bucket_id: Uuid, key_id: str, perm: BucketKeyPerm
    ) -> BucketKeyPerm:
        """Sets the flags of ``perm`` for the key on the bucket, on both sides, and returns
        the permission written (with its timestamp).

        The timestamp is newer than both sides' current ones and than ``perm.timestamp``.
        Taking permissions away is allowed on a deleted bucket or key (clean-up).

        Raises:
            NoSuchBucketError: when the bucket never existed.
            NoSuchAccessKeyError: when the key never existed.
            BadRequestError: when granting anything on a deleted bucket or to a deleted key.
        """
        async with self._lock:
            return await self._set_permissions(bucket_id, key_id, perm)

    async def _set_permissions(
        self, bucket_id: Uuid, key_id: str, perm: BucketKeyPerm
    ) -> BucketKeyPerm:
        bucket = await self._helper.get_internal_bucket(bucket_id)
        key = await self._helper.get_internal_key(key_id)
        bparams, kparams = bucket.params, key.params
        if perm.is_any() and bparams is None:
            raise BadRequestError(f"cannot give permissions on deleted bucket {bucket_id.hex()}")
        if perm.is_any() and kparams is None:
            raise BadRequestError(f"cannot give permissions to deleted access key {key_id}")
        on_bucket = None if bparams is None else bparams.authorized_keys.get(key_id)
        on_key = None if kparams is None else kparams.authorized_buckets.get(bucket_id)
        ts = increment_logical_clock_2(
            0 if on_bucket is None else on_bucket.timestamp,
            0 if on_key is None else on_key.timestamp,
            max(self._clock_ms(), perm.timestamp),
        )
        perm = perm.with_timestamp(ts)
        # ---- both sides are written with ts ----
        if bparams is not None:
            keys = bparams.authorized_keys.merge(Map(((key_id, perm),)))
            await self._write_bucket(bucket, dataclasses.replace(bparams, authorized_keys=keys))
        if kparams is not None:
            buckets = kparams.authorized_buckets.merge(Map(((bucket_id, perm),)))
            await self._write_key(key, dataclasses.replace(kparams, authorized_buckets=buckets))
        return perm

    # ------------------------------------------------------------------ keys

    async def create_key(self, name: str) -> Key:
        """Creates an access key with a random id and secret; it may not create buckets
        and has no permission yet."""
        async with self._lock:
            key = Key.new(name, now_ms=self._clock_ms())
            await self._helper.key_table.insert(key)
            return key

    async def import_key(self, key_id: str, secret_key: str, name: str) -> Key:
        """Creates an access key with a given id and secret.

        Raises:
            BadRequestError: when the id or secret is not in Garage's format.
            KeyAlreadyExistsError: when a key with this id exists or existed (a deleted id
                is never reused).
        """
        async with self._lock:
            try:
                key = Key.import_(key_id, secret_key, name, now_ms=self._clock_ms())
            except InvalidKeyFormatError as exc:
                raise BadRequestError(str(exc)) from exc
            if await self._helper.key_table.get(EmptyKey(), StringKey(key_id)) is not None:
                raise KeyAlreadyExistsError(key_id)
            await self._helper.key_table.insert(key)
            return key

    async def delete_key(self, key_id: str) -> None:
        """Deletes an access key: removes its local aliases and its permissions (on both
        sides), then marks it deleted, which forgets its secret.

        Raises:
            NoSuchAccessKeyError: when the key does not exist.
            BadRequestError: when one of its local aliases is the last alias of a bucket
                (nothing is changed then: delete or alias those buckets first).
        """
        async with self._lock:
            key = await self._helper.get_existing_key(key_id)
            params = _key_params(key)
            locals_ = params.active_local_aliases()
            orphaned = [
                name
                for name, bucket_id in locals_
                if not await self._has_other_alias(bucket_id, (key_id, name))
            ]
            if orphaned:
                raise BadRequestError(
                    f"access key {key_id} holds the only alias of buckets {orphaned}: delete "
                    "those buckets, or give them another alias, first"
                )
            for name, bucket_id in locals_:
                await self._purge_local_alias(bucket_id, key_id, name)
            for bucket_id, perm in params.authorized_buckets.items():
                if perm.is_any():
                    await self._set_permissions(bucket_id, key_id, NO_PERMISSIONS)
            await self._helper.key_table.insert(Key.deleted(key_id))

    async def _has_other_alias(self, bucket_id: Uuid, local: tuple[str, str]) -> bool:
        """False when ``local`` is the last alias of an existing bucket."""
        try:
            bucket = await self._helper.get_existing_bucket(bucket_id)
        except NoSuchBucketError:
            return True  # a deleted bucket needs no alias
        params = _params(bucket)
        if params.active_aliases():
            return True
        return any(a != local for a in params.active_local_aliases())

    async def rename_key(self, key_id: str, name: str) -> Key:
        """Changes the name of an access key; returns the updated key.

        Raises:
            NoSuchAccessKeyError: when the key does not exist.
        """
        async with self._lock:
            key = await self._helper.get_existing_key(key_id)
            params = _key_params(key)
            new_name = params.name.update(name, self._clock_ms())
            return await self._write_key(key, dataclasses.replace(params, name=new_name))

    async def allow_key_create_bucket(self, key_id: str, allow: bool) -> Key:
        """Allows (or forbids) S3 CreateBucket with this key; returns the updated key.

        Raises:
            NoSuchAccessKeyError: when the key does not exist.
        """
        async with self._lock:
            key = await self._helper.get_existing_key(key_id)
            params = _key_params(key)
            flag = params.allow_create_bucket.update(allow, self._clock_ms())
            return await self._write_key(key, dataclasses.replace(params, allow_create_bucket=flag))

    # ------------------------------------------------------------------ bucket configuration

    async def update_bucket_website(self, bucket_id: Uuid, config: WebsiteConfig | None) -> Bucket:
        """Sets (or with None, removes) the bucket's website configuration.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
        """
        bucket = await self._helper.get_existing_bucket(bucket_id)
        params = _params(bucket)
        value = params.website_config.update(config, self._clock_ms())
        return await self._write_bucket(bucket, dataclasses.replace(params, website_config=value))

    async def update_bucket_cors(self, bucket_id: Uuid, rules: Sequence[CorsRule] | None) -> Bucket:
        """Sets (or with None, removes) the bucket's CORS rules.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
        """
        bucket = await self._helper.get_existing_bucket(bucket_id)
        params = _params(bucket)
        value = params.cors_config.update(None if rules is None else tuple(rules), self._clock_ms())
        return await self._write_bucket(bucket, dataclasses.replace(params, cors_config=value))

    async def update_bucket_lifecycle(
        self, bucket_id: Uuid, rules: Sequence[LifecycleRule] | None
    ) -> Bucket:
        """Sets (or with None, removes) the bucket's lifecycle rules.

        Raises:
            NoSuchBucketError: when the bucket does not exist.
        """
        bucket = await self._helper.get_existing_bucket(bucket_id)
        params = _params(bucket)
        value = params.lifecycle_config.update(
            None if rules is None else tuple(rules), self._clock_ms()
        )
        return await self._write_bucket(bucket, dataclasses.replace(params, lifecycle_config=value))

    async def update_bucket_quotas(self, bucket_id: Uuid, quotas: BucketQuotas) -> Bucket:
        """Sets the bucket's quotas (``BucketQuotas()`` for none).

        Raises:
            NoSuchBucketError: when the bucket does not exist.
        """
        bucket = await self._helper.get_existing_bucket(bucket_id)
        params = _params(bucket)
        value = params.quotas.update(quotas, self._clock_ms())
        return await self._write_bucket(bucket, dataclasses.replace(params, quotas=value))

    # ------------------------------------------------------------------ writes

    async def _write_bucket(self, bucket: Bucket, params: BucketParams) -> Bucket:
        new = bucket.with_params(params)
        await self._helper.bucket_table.insert(new)
        return new

    async def _write_key(self, key: Key, params: KeyParams) -> Key:
        new = key.with_params(params)
        await self._helper.key_table.insert(new)
        return new


def _params(bucket: Bucket) -> BucketParams:
    params = bucket.params
    if params is None:  # callers read it with get_existing_bucket
        raise NoSuchBucketError(bucket.id.hex())
    return params


def _key_params(key: Key) -> KeyParams:
    params = key.params
    if params is None:  # callers read it with get_existing_key
        raise NoSuchAccessKeyError(key.key_id)
    return params


def _last_alias(name: str) -> BadRequestError:
    return BadRequestError(
        f"{name!r} is the bucket's last alias: delete the bucket instead of removing it"
    )

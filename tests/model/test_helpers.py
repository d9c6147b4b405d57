"""BucketHelper and LockedHelper against real tables on a one-node cluster.

The stack is real: the encrypted transport listening on 127.0.0.1, a layout manager with
an applied one-node layout, the RPC helper, full-copy replication, a sqlite db per test and
the three tables (bucket_v2, bucket_alias, key). Only ``bucket_is_empty`` (the object layer's
job) is a plain function reading a set the tests fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from garage_model.bucket_alias_table import BucketAlias, BucketAliasSchema
from garage_model.bucket_table import (
    Bucket,
    BucketQuotas,
    BucketSchema,
    CorsRule,
    LifecycleExpiration,
    LifecycleRule,
    WebsiteConfig,
)
from garage_model.helper import (
    AccessDeniedError,
    BadRequestError,
    BucketAlreadyExistsError,
    BucketHelper,
    BucketNotEmptyError,
    HelperError,
    InvalidBucketNameError,
    KeyAlreadyExistsError,
    LockedHelper,
    NoSuchAccessKeyError,
    NoSuchBucketError,
)
from garage_model.key_table import Key, KeySchema
from garage_model.permission import ALL_PERMISSIONS, BucketKeyPerm
from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.layout_manager import LayoutManager
from garage_rpc.net import NetApp, NodeKey
from garage_rpc.rpc_helper import RequestStrategy, RpcHelper
from garage_table import Table, TableData, TableFullReplication
from garage_table.schema import EmptyKey, StringKey
from garage_util.data import FixedBytes32, Uuid, gen_uuid
from garage_util.db import open_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from garage_table.schema import TableEntry, TableSchema

SECRET = bytes(range(32))
QUICK = RequestStrategy(timeout_s=5.0)
KEY_ID = "GK" + "12" * 12
KEY_SECRET = "ab" * 32
E = TypeVar("E", bound="TableEntry[Any, Any]")

#: A fixed start for the helper's clock: timestamps are checked against it.
T0 = 1_700_000_000_000


@dataclass
class Clock:
    """The helper's wall clock, moved by hand."""

    now_ms: int = T0

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Stack:
    buckets: Table[Bucket]
    aliases: Table[BucketAlias]
    keys: Table[Key]
    helper: BucketHelper
    locked: LockedHelper
    clock: Clock
    not_empty: set[Uuid] = field(default_factory=set)

    async def bucket(self, bucket_id: Uuid) -> Bucket:
        return await self.helper.get_internal_bucket(bucket_id)

    async def key(self, key_id: str) -> Key:
        return await self.helper.get_internal_key(key_id)

    async def alias(self, name: str) -> BucketAlias | None:
        return await self.aliases.get(EmptyKey(), StringKey(name))


def one_node_layout(node: FixedBytes32) -> LayoutHistory:
    history = LayoutHistory.new(1).stage_role(node, NodeRole("z1", 10**9, ()), now_ms=1)
    applied, _ = history.apply_staged_changes(1, now_ms=2)
    return applied


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    netapp = NetApp(NodeKey.generate(), SECRET, handshake_timeout_s=2.0)
    manager = LayoutManager(netapp, replication_factor=1)
    rpc = RpcHelper(netapp.id, zone_of={}, rtt_of={})
    replication = TableFullReplication(lambda: manager.helper, netapp.id)
    db = open_db(tmp_path / "meta")

    def table(schema: TableSchema[Any, Any, E, Any]) -> Table[E]:
        data: TableData[E] = TableData(schema, replication, db, node_id=netapp.id)
        return Table(schema, replication, data, netapp, rpc, strategy=QUICK)

    buckets: Table[Bucket] = table(BucketSchema())
    aliases: Table[BucketAlias] = table(BucketAliasSchema())
    keys: Table[Key] = table(KeySchema())
    helper = BucketHelper(buckets, aliases, keys)
    clock = Clock()
    not_empty: set[Uuid] = set()

    async def bucket_is_empty(bucket_id: Uuid) -> bool:
        await anyio.lowlevel.checkpoint()
        return bucket_id not in not_empty

    locked = LockedHelper(helper, bucket_is_empty=bucket_is_empty, clock_ms=clock)
    try:
        async with anyio.create_task_group() as tg:
            await manager.update(one_node_layout(netapp.id))
            await tg.start(netapp.run, ("127.0.0.1", 0))
            await tg.start(rpc.run)
            for t in (buckets, aliases, keys):
                await tg.start(t.run)
            yield Stack(buckets, aliases, keys, helper, locked, clock, not_empty)
            tg.cancel_scope.cancel()
    finally:
        db.close()


async def s3_key(stack: Stack, *, allow_create: bool = True) -> Key:
    key = await stack.locked.import_key(KEY_ID, KEY_SECRET, "app")
    if allow_create:
        key = await stack.locked.allow_key_create_bucket(key.key_id, True)
    return key


# ---------------------------------------------------------------- creation and resolution


@pytest.mark.anyio
async def test_s3_create_bucket_makes_a_local_alias_with_all_permissions(stack: Stack) -> None:
    key = await s3_key(stack)
    bucket_id = await stack.locked.create_bucket("photos", owner_key_id=key.key_id, local=True)

    key = await stack.key(key.key_id)
    assert key.local_alias("photos") == bucket_id
    assert key.allow_read(bucket_id)
    assert key.allow_write(bucket_id)
    assert key.allow_owner(bucket_id)
    bucket = await stack.helper.get_existing_bucket(bucket_id)
    assert bucket.params is not None
    assert bucket.params.active_local_aliases() == [(key.key_id, "photos")]
    assert bucket.params.active_aliases() == []
    assert await stack.alias("photos") is None  # the name is not global

    assert await stack.helper.resolve_bucket("photos", key) == bucket_id
    assert await stack.helper.resolve_global_bucket_name("photos") is None
    # Creating it again with the same key is fine (S3 answers 200) and changes nothing.
    again = await stack.locked.create_bucket("photos", owner_key_id=key.key_id, local=True)
    assert again == bucket_id
    assert len(await stack.helper.list_buckets()) == 1


@pytest.mark.anyio
async def test_s3_create_bucket_needs_allow_create_bucket(stack: Stack) -> None:
    key = await s3_key(stack, allow_create=False)
    with pytest.raises(AccessDeniedError, match=f"{key.key_id} is not allowed to create buckets"):
        await stack.locked.create_bucket("photos", owner_key_id=key.key_id, local=True)
    assert await stack.helper.list_buckets() == []
    await stack.locked.allow_key_create_bucket(key.key_id, True)
    assert await stack.locked.create_bucket("photos", owner_key_id=key.key_id, local=True)


@pytest.mark.anyio
async def test_admin_create_bucket_takes_a_global_name(stack: Stack) -> None:
    bucket_id = await stack.locked.create_bucket("shared")
    alias = await stack.alias("shared")
    assert alias is not None
    assert alias.bucket_id == bucket_id
    bucket = await stack.bucket(bucket_id)
    assert bucket.params is not None
    assert bucket.params.active_aliases() == ["shared"]
    # The alias and the bucket's reverse entry carry the same timestamp.
    assert bucket.params.aliases.get_timestamp("shared") == alias.state.ts

    with pytest.raises(BucketAlreadyExistsError, match="already in use: shared") as info:
        await stack.locked.create_bucket("shared")
    assert info.value.bucket == "shared"
    assert len(await stack.helper.list_buckets()) == 1

    # Raw hex ids resolve as themselves, if the bucket exists.
    assert await stack.helper.resolve_global_bucket_name(bucket_id.hex()) == bucket_id
    assert await stack.helper.resolve_global_bucket_name(gen_uuid().hex()) is None


@pytest.mark.anyio
async def test_s3_create_with_a_taken_global_name(stack: Stack) -> None:
    key = await s3_key(stack)
    other = await stack.locked.create_bucket("shared")
    # The key has no right on the bucket called "shared": the name is taken.
    with pytest.raises(BucketAlreadyExistsError):
        await stack.locked.create_bucket("shared", owner_key_id=key.key_id, local=True)
    # Once it may write there, "creating" it is a no-op that returns the bucket.
    await stack.locked.set_bucket_key_permissions(other, key.key_id, BucketKeyPerm(0, True, True))
    assert await stack.locked.create_bucket("shared", owner_key_id=key.key_id, local=True) == other


@pytest.mark.anyio
async def test_resolve_prefers_the_key_local_alias(stack: Stack) -> None:
    key = await s3_key(stack)
    global_id = await stack.locked.create_bucket("data")
    local_id = await stack.locked.create_bucket(None)
    await stack.locked.set_local_alias(local_id, key.key_id, "data")
    key = await stack.key(key.key_id)

    assert await stack.helper.resolve_bucket("data", key) == local_id
    assert await stack.helper.resolve_global_bucket_name("data") == global_id
    other = await stack.locked.create_key("other")
    assert await stack.helper.resolve_bucket("data", other) == global_id
    with pytest.raises(NoSuchBucketError, match="bucket not found: nothing"):
        await stack.helper.resolve_bucket("nothing", key)
    with pytest.raises(NoSuchAccessKeyError):
        await stack.helper.resolve_bucket("data", Key.deleted(key.key_id))


@pytest.mark.anyio
async def test_invalid_names_are_refused(stack: Stack) -> None:
    key = await s3_key(stack)
    with pytest.raises(InvalidBucketNameError, match="invalid bucket name 'Bad_Name'"):
        await stack.locked.create_bucket("Bad_Name")
    with pytest.raises(InvalidBucketNameError):
        await stack.locked.create_bucket("10.0.0.1", owner_key_id=key.key_id, local=True)
    bucket_id = await stack.locked.create_bucket("fine")
    with pytest.raises(InvalidBucketNameError):
        await stack.locked.set_global_alias(bucket_id, "xn--punycode")
    with pytest.raises(InvalidBucketNameError):
        await stack.locked.set_local_alias(bucket_id, key.key_id, "a")
    assert issubclass(InvalidBucketNameError, HelperError)
    assert [b.id for b in await stack.helper.list_buckets()] == [bucket_id]


# ---------------------------------------------------------------- aliases


@pytest.mark.anyio
async def test_global_aliases_and_the_last_alias_rule(stack: Stack) -> None:
    bucket_id = await stack.locked.create_bucket("first")
    other_id = await stack.locked.create_bucket("other")
    await stack.locked.set_global_alias(bucket_id, "second")
    await stack.locked.set_global_alias(bucket_id, "second")  # idempotent
    assert await stack.helper.resolve_global_bucket_name("second") == bucket_id
    with pytest.raises(BucketAlreadyExistsError):
        await stack.locked.set_global_alias(other_id, "second")

    await stack.locked.unset_global_alias(bucket_id, "first")
    assert await stack.helper.resolve_global_bucket_name("first") is None
    alias = await stack.alias("first")
    assert alias is not None
    assert alias.is_tombstone()
    bucket = await stack.bucket(bucket_id)
    assert bucket.params is not None
    assert bucket.params.active_aliases() == ["second"]
    assert bucket.params.aliases.get_timestamp("first") == alias.state.ts

    with pytest.raises(BadRequestError, match="last alias"):
        await stack.locked.unset_global_alias(bucket_id, "second")
    with pytest.raises(BadRequestError, match="has no global alias 'other'"):
        await stack.locked.unset_global_alias(bucket_id, "other")
    # The freed name can be taken by another bucket.
    await stack.locked.set_global_alias(other_id, "first")
    assert await stack.helper.resolve_global_bucket_name("first") == other_id


@pytest.mark.anyio
async def test_local_aliases_same_timestamp_on_both_sides(stack: Stack) -> None:
    key = await s3_key(stack)
    bucket_id = await stack.locked.create_bucket("global-name")
    stack.clock.now_ms = T0 - 10_000  # a lagging clock still moves stamps forward
    await stack.locked.set_local_alias(bucket_id, key.key_id, "mine")
    key = await stack.key(key.key_id)
    bucket = await stack.bucket(bucket_id)
    assert key.params is not None
    assert bucket.params is not None
    ts = key.params.local_aliases.get_timestamp("mine")
    assert ts is not None
    assert bucket.params.local_aliases.get_timestamp((key.key_id, "mine")) == ts

    await stack.locked.unset_local_alias(bucket_id, key.key_id, "mine")
    key = await stack.key(key.key_id)
    bucket = await stack.bucket(bucket_id)
    assert key.params is not None
    assert bucket.params is not None
    assert key.local_alias("mine") is None
    assert bucket.params.active_local_aliases() == []
    ts2 = key.params.local_aliases.get_timestamp("mine")
    assert ts2 is not None
    assert ts2 > ts
    assert bucket.params.local_aliases.get_timestamp((key.key_id, "mine")) == ts2

    with pytest.raises(BadRequestError, match=f"no alias 'mine' for access key {key.key_id}"):
        await stack.locked.unset_local_alias(bucket_id, key.key_id, "mine")
    other = await stack.locked.create_bucket(None)
    await stack.locked.set_local_alias(other, key.key_id, "taken")
    with pytest.raises(BucketAlreadyExistsError):
        await stack.locked.set_local_alias(bucket_id, key.key_id, "taken")
    with pytest.raises(BadRequestError, match="last alias"):
        await stack.locked.unset_local_alias(other, key.key_id, "taken")


# ---------------------------------------------------------------- permissions


@pytest.mark.anyio
async def test_permissions_are_written_on_both_sides_with_one_timestamp(stack: Stack) -> None:
    key = await stack.locked.create_key("reader")
    bucket_id = await stack.locked.create_bucket("data")
    written = await stack.locked.set_bucket_key_permissions(
        bucket_id, key.key_id, BucketKeyPerm(0, allow_read=True)
    )
    assert written.timestamp >= T0
    key = await stack.key(key.key_id)
    bucket = await stack.bucket(bucket_id)
    assert bucket.params is not None
    assert bucket.params.authorized_keys.get(key.key_id) == written
    assert key.bucket_permission(bucket_id) == written
    assert key.allow_read(bucket_id)
    assert not key.allow_write(bucket_id)

    # Same wall clock: the logical clock still makes the next change win on both sides.
    changed = await stack.locked.set_bucket_key_permissions(bucket_id, key.key_id, ALL_PERMISSIONS)
    assert changed.timestamp == written.timestamp + 1
    key = await stack.key(key.key_id)
    bucket = await stack.bucket(bucket_id)
    assert bucket.params is not None
    assert bucket.params.authorized_keys.get(key.key_id) == changed
    assert key.allow_owner(bucket_id)

    with pytest.raises(NoSuchBucketError):
        await stack.locked.set_bucket_key_permissions(gen_uuid(), key.key_id, ALL_PERMISSIONS)
    with pytest.raises(NoSuchAccessKeyError, match="access key not found: GKnope"):
        await stack.locked.set_bucket_key_permissions(bucket_id, "GKnope", ALL_PERMISSIONS)


# ---------------------------------------------------------------- deleting buckets


@pytest.mark.anyio
async def test_delete_non_empty_bucket_is_refused(stack: Stack) -> None:
    bucket_id = await stack.locked.create_bucket("full")
    stack.not_empty.add(bucket_id)
    with pytest.raises(BucketNotEmptyError, match=f"bucket is not empty: {bucket_id.hex()}"):
        await stack.locked.delete_bucket(bucket_id)
    assert await stack.helper.resolve_global_bucket_name("full") == bucket_id
    assert not (await stack.bucket(bucket_id)).is_deleted


@pytest.mark.anyio
async def test_delete_bucket_removes_aliases_and_permissions_everywhere(stack: Stack) -> None:
    key = await s3_key(stack)
    bucket_id = await stack.locked.create_bucket("mine", owner_key_id=key.key_id, local=True)
    await stack.locked.set_global_alias(bucket_id, "public")
    await stack.locked.delete_bucket(bucket_id)

    bucket = await stack.bucket(bucket_id)
    assert bucket.is_deleted
    with pytest.raises(NoSuchBucketError):
        await stack.helper.get_existing_bucket(bucket_id)
    key = await stack.key(key.key_id)
    assert key.local_alias("mine") is None
    assert not key.allow_read(bucket_id)
    assert not key.allow_owner(bucket_id)
    perm = key.bucket_permission(bucket_id)
    assert perm is not None
    assert not perm.is_any()
    alias = await stack.alias("public")
    assert alias is not None
    assert alias.bucket_id is None
    assert await stack.helper.resolve_global_bucket_name(bucket_id.hex()) is None
    assert await stack.helper.list_buckets() == []
    with pytest.raises(NoSuchBucketError):
        await stack.helper.resolve_bucket("mine", key)
    # Both names are free again.
    assert (
        await stack.locked.create_bucket("mine", owner_key_id=key.key_id, local=True) != bucket_id
    )
    with pytest.raises(BadRequestError, match="deleted bucket"):
        await stack.locked.set_bucket_key_permissions(bucket_id, key.key_id, ALL_PERMISSIONS)


# ---------------------------------------------------------------- keys


@pytest.mark.anyio
async def test_create_and_import_keys(stack: Stack) -> None:
    created = await stack.locked.create_key("laptop")
    assert (await stack.helper.get_existing_key(created.key_id)) == created
    imported = await stack.locked.import_key(KEY_ID, KEY_SECRET, "migrated")
    stored = await stack.helper.get_existing_key(KEY_ID)
    assert stored.params is not None
    assert stored.params.secret_key == KEY_SECRET
    assert stored == imported

    with pytest.raises(KeyAlreadyExistsError, match=f"access key already exists: {KEY_ID}"):
        await stack.locked.import_key(KEY_ID, "cd" * 32, "again")
    assert (await stack.key(KEY_ID)).params == stored.params  # secret unchanged
    with pytest.raises(BadRequestError, match="invalid access key id"):
        await stack.locked.import_key("AKIAIOSFODNN7EXAMPLE", KEY_SECRET, "aws")
    with pytest.raises(NoSuchAccessKeyError):
        await stack.helper.get_existing_key("AKIAIOSFODNN7EXAMPLE")

    renamed = await stack.locked.rename_key(KEY_ID, "renamed")
    assert (await stack.key(KEY_ID)).name == "renamed" == renamed.name
    assert [k.key_id for k in await stack.helper.keys.list_keys()] == sorted(
        [created.key_id, KEY_ID]
    )
    assert (await stack.helper.keys.get_existing_matching_key("renam")).key_id == KEY_ID
    assert (await stack.helper.keys.get_existing_matching_key(KEY_ID[:6])).key_id == KEY_ID
    with pytest.raises(BadRequestError, match="2 access keys match 'GK'"):
        await stack.helper.keys.get_existing_matching_key("GK")
    with pytest.raises(NoSuchAccessKeyError):
        await stack.helper.keys.get_existing_matching_key("nobody")


@pytest.mark.anyio
async def test_delete_key_removes_its_permissions_and_aliases(stack: Stack) -> None:
    key = await s3_key(stack)
    bucket_id = await stack.locked.create_bucket("shared")
    await stack.locked.set_bucket_key_permissions(bucket_id, key.key_id, ALL_PERMISSIONS)
    await stack.locked.set_local_alias(bucket_id, key.key_id, "my-name")
    await stack.locked.delete_key(key.key_id)

    deleted = await stack.key(key.key_id)
    assert deleted.is_deleted
    assert deleted.params is None
    with pytest.raises(NoSuchAccessKeyError):
        await stack.helper.get_existing_key(key.key_id)
    bucket = await stack.bucket(bucket_id)
    assert bucket.params is not None
    perm = bucket.params.authorized_keys.get(key.key_id)
    assert perm is not None
    assert not perm.is_any()
    assert bucket.params.active_local_aliases() == []
    assert await stack.helper.keys.list_keys() == []
    # A deleted id is never reused.
    with pytest.raises(KeyAlreadyExistsError):
        await stack.locked.import_key(key.key_id, KEY_SECRET, "back")


@pytest.mark.anyio
async def test_delete_key_holding_a_bucket_last_alias_is_refused(stack: Stack) -> None:
    key = await s3_key(stack)
    bucket_id = await stack.locked.create_bucket("only-mine", owner_key_id=key.key_id, local=True)
    with pytest.raises(BadRequestError, match=r"only alias of buckets \['only-mine'\]"):
        await stack.locked.delete_key(key.key_id)
    key = await stack.key(key.key_id)
    assert not key.is_deleted
    assert key.allow_owner(bucket_id)  # nothing was changed
    await stack.locked.set_global_alias(bucket_id, "now-global")
    await stack.locked.delete_key(key.key_id)
    assert (await stack.key(key.key_id)).is_deleted


# ---------------------------------------------------------------- bucket configuration


@pytest.mark.anyio
async def test_bucket_configuration_setters(stack: Stack) -> None:
    bucket_id = await stack.locked.create_bucket("site")
    website = WebsiteConfig("index.html", "404.html")
    cors = [CorsRule(allow_origins=("*",), allow_methods=("GET",))]
    lifecycle = [LifecycleRule(id="old", expiration=LifecycleExpiration.after(30))]
    await stack.locked.update_bucket_website(bucket_id, website)
    await stack.locked.update_bucket_cors(bucket_id, cors)
    await stack.locked.update_bucket_lifecycle(bucket_id, lifecycle)
    returned = await stack.locked.update_bucket_quotas(bucket_id, BucketQuotas(max_objects=10))
    params = (await stack.bucket(bucket_id)).params
    assert params is not None
    assert returned.params == params
    assert params.website_config.v == website
    assert params.cors_config.v == tuple(cors)
    assert params.lifecycle_config.v == tuple(lifecycle)
    assert params.quotas.v == BucketQuotas(max_objects=10)
    assert params.active_aliases() == ["site"]  # untouched

    await stack.locked.update_bucket_website(bucket_id, None)
    params = (await stack.bucket(bucket_id)).params
    assert params is not None
    assert params.website_config.v is None
    with pytest.raises(NoSuchBucketError):
        await stack.locked.update_bucket_quotas(gen_uuid(), BucketQuotas())

"""The node's side of the admin RPC: buckets, keys, peers and layout (Garage:
src/garage/admin/bucket.rs, key.rs, mod.rs).

:class:`AdminRpcHandler` answers :data:`~garage.admin_rpc.ADMIN_RPC`. It resolves what
the operator typed (bucket names or id prefixes, key patterns, node addresses), then
calls the model: every bucket and key mutation goes through ``LockedHelper``, which checks
and writes both sides of each denormalised pair under one node-wide lock. Workers,
repairs, statistics, blocks and snapshots are in :mod:`._admin_ops`.

A refusal (a :class:`~garage_util.errors.GarageError`: unknown bucket, ambiguous key,
bucket not empty, invalid value...) is answered as ``Failed(message)``; anything else is a
bug and propagates (the caller sees a ``RemoteError``). ``all_nodes`` requests are fanned
out here to every node of the current layout.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Final, final

import anyio

from garage_model.bucket_table import BucketQuotas, WebsiteConfig
from garage_model.helper import NoSuchBucketError
from garage_model.permission import BucketKeyPerm
from garage_rpc.net import PRIO_NORMAL, RpcError
from garage_rpc.replication_mode import ReplicationParams
from garage_table.schema import EmptyKey, StringKey
from garage_util.errors import GarageError

from . import _admin_ops as ops
from .admin_rpc import (
    ADMIN_RPC,
    AdminRequest,
    AdminResponse,
    AdminRpcError,
    AdvertiseLayout,
    AliasBucket,
    BucketDetails,
    BucketKeyInfo,
    BucketListing,
    BucketSummary,
    ConnectNode,
    CreateBucket,
    CreateKey,
    DeleteBucket,
    DeleteKey,
    Done,
    Failed,
    GetBucketInfo,
    GetHealth,
    GetKeyInfo,
    GetStats,
    GetWorkerVars,
    HealthReport,
    ImportKey,
    KeyBucketInfo,
    KeyDetails,
    KeyListing,
    KeySummary,
    LaunchRepair,
    ListBuckets,
    ListKeys,
    LocalAliasInfo,
    NodeAnswer,
    PerNode,
    RenameKey,
    SetBucketPermissions,
    SetBucketQuotas,
    SetBucketWebsite,
    SetKeyCreateBucket,
    SetWorkerVar,
    SnapshotMetadata,
    UnaliasBucket,
    parse_node_address,
)

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

    from garage_model import Garage
    from garage_model.bucket_table import Bucket, BucketParams
    from garage_model.key_table import Key, KeyParams
    from garage_rpc.layout import LayoutHistory
    from garage_rpc.net import AttachedStream, NodeId
    from garage_util.data import FixedBytes32, Uuid

__all__ = ["FAN_OUT_TIMEOUT_S", "MIN_ID_PREFIX", "AdminRpcHandler", "parse_quota"]

logger = logging.getLogger(__name__)

#: Shortest bucket id prefix accepted for a bucket: 8 hex digits (what listings show
#: first) make an accidental match among a few thousand buckets unlikely.
MIN_ID_PREFIX: Final = 8
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
#: How long a fanned-out request or a `node connect` may take on one node: the peer may
#: be down, and the operator should get the other nodes' answers anyway.
FAN_OUT_TIMEOUT_S: Final = 60.0


def parse_quota(text: str | None, what: str) -> int | None:
    """A quota as sent by the CLI: decimal digits (> 0), or ``"none"`` for no limit.

    Raises:
        AdminRpcError: anything else.
    """
    if text is None or text == "none":
        return None
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise AdminRpcError(f"invalid {what} {text!r}: expected a positive number or 'none'")
    return int(text)


def _perm(perm: BucketKeyPerm | None) -> BucketKeyPerm:
    """A permission as set, or none at all when it never was."""
    return perm if perm is not None else BucketKeyPerm(0)


def _bucket_params(bucket: Bucket) -> BucketParams:
    if bucket.params is None:  # read with get_existing_bucket
        raise NoSuchBucketError(bucket.id.hex())
    return bucket.params


def _key_params(key: Key) -> KeyParams:
    if key.params is None:  # read with get_existing_*key
        raise AdminRpcError(f"access key {key.key_id} is deleted")
    return key.params


def _single_node_form(msg: AdminRequest) -> AdminRequest | None:
    """The request each node answers when ``msg`` asks all nodes; None when it does not."""
    if isinstance(msg, GetStats) and msg.all_nodes:
        return dataclasses.replace(msg, all_nodes=False, skip_global=True)
    if isinstance(msg, GetWorkerVars) and msg.all_nodes:
        return dataclasses.replace(msg, all_nodes=False)
    if isinstance(msg, SetWorkerVar) and msg.all_nodes:
        return dataclasses.replace(msg, all_nodes=False)
    if isinstance(msg, LaunchRepair) and msg.all_nodes:
        return dataclasses.replace(msg, all_nodes=False)
    if isinstance(msg, SnapshotMetadata) and msg.all_nodes:
        return dataclasses.replace(msg, all_nodes=False)
    return None


@final
class AdminRpcHandler:
    """Answers the admin RPC with the node's helpers (see the module docstring).

    Args:
        garage: the node.
    """

    __slots__ = ("_garage",)

    def __init__(self, garage: Garage) -> None:
        self._garage = garage

    async def handle(
        self, msg: AdminRequest, from_node: NodeId, stream: ByteReceiveStream | None
    ) -> tuple[AdminResponse, AttachedStream | None]:
        """The endpoint handler: dispatches, and turns refusals into ``Failed``."""
        try:
            return await self.dispatch(msg), None
        except GarageError as exc:
            logger.debug("admin request %s refused: %s", type(msg).__name__, exc)
            return Failed(str(exc)), None

    async def dispatch(self, msg: AdminRequest) -> AdminResponse:
        """Answers one request.

        Raises:
            GarageError: the request is refused (the message says why).
        """
        g = self._garage
        local = _single_node_form(msg)
        if local is not None:
            return await self._fan_out(local)
        match msg:
            case ListBuckets():
                return await self._list_buckets()
            case GetBucketInfo(name=name):
                return await self._bucket_info(await self._find_bucket(name))
            case CreateBucket(name=name):
                bucket_id = await g.locked_helper.create_bucket(name)
                return Done(f"Bucket {name} was created (id {bucket_id.hex()}).")
            case DeleteBucket(name=name):
                return await self._delete_bucket(name)
            case AliasBucket():
                return await self._alias(msg)
            case UnaliasBucket():
                return await self._unalias(msg)
            case SetBucketPermissions():
                return await self._permissions(msg)
            case SetBucketWebsite():
                return await self._website(msg)
            case SetBucketQuotas():
                return await self._quotas(msg)
            case ListKeys():
                keys = await g.bucket_helper.keys.list_keys()
                return KeyListing(tuple(KeySummary(k.key_id, k.name) for k in keys))
            case GetKeyInfo(pattern=pattern, show_secret=show):
                return await self._key_info(await self._find_key(pattern), show_secret=show)
            case CreateKey(name=name):
                key = await g.locked_helper.create_key(name)
                return await self._key_info(key, show_secret=True)
            case RenameKey(pattern=pattern, new_name=new_name):
                key = await self._find_key(pattern)
                return await self._key_info(await g.locked_helper.rename_key(key.key_id, new_name))
            case DeleteKey(pattern=pattern):
                key = await self._find_key(pattern)
                await g.locked_helper.delete_key(key.key_id)
                return Done(f"Access key {key.key_id} ({key.name}) was deleted.")
            case SetKeyCreateBucket(pattern=pattern, allow=allow):
                key = await self._find_key(pattern)
                key = await g.locked_helper.allow_key_create_bucket(key.key_id, allow)
                return await self._key_info(key)
            case ImportKey(key_id=key_id, secret_key=secret, name=name):
                key = await g.locked_helper.import_key(key_id, secret, name)
                return await self._key_info(key, show_secret=True)
            case ConnectNode(node=node):
                return await self._connect(node)
            case AdvertiseLayout(history=history):
                return await self._advertise_layout(history)
            case GetHealth():
                return self._health()
            case _:
                return await ops.dispatch(g, msg)

    # ------------------------------------------------------------------ fan-out

    async def _fan_out(self, msg: AdminRequest) -> PerNode:
        g = self._garage
        nodes = sorted({*g.layout.history.current.all_nodes, g.node_id})
        answers: dict[FixedBytes32, NodeAnswer] = {}

        async def ask(node: FixedBytes32) -> None:
            try:
                with anyio.fail_after(FAN_OUT_TIMEOUT_S):
                    answer = await g.netapp.call(node, ADMIN_RPC, msg, prio=PRIO_NORMAL)
                answers[node] = NodeAnswer(node.hex(), answer)
            except (RpcError, TimeoutError) as exc:
                answers[node] = NodeAnswer(node.hex(), None, str(exc) or "no answer in time")

        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(ask, node)
        return PerNode(tuple(answers[n] for n in nodes))

    # ------------------------------------------------------------------ reads (admin HTTP API)

    async def bucket_info(self, bucket_id: Uuid) -> BucketDetails:
        """The details of an existing bucket, as ``garage bucket info`` shows them.

        Raises:
            NoSuchBucketError: the bucket does not exist.
        """
        return await self._bucket_info(bucket_id)

    async def key_info(self, key: Key, *, show_secret: bool = False) -> KeyDetails:
        """The details of an existing key, as ``garage key info`` shows them; its secret
        only with ``show_secret``."""
        return await self._key_info(key, show_secret=show_secret)

    # ------------------------------------------------------------------ lookups

    async def _find_bucket(self, name: str) -> Uuid:
        """A bucket by global name, full hex id, or unique id prefix (8+ hex digits).

        Raises:
            NoSuchBucketError: nothing matches.
            AdminRpcError: an id prefix matches several buckets.
        """
        helper = self._garage.bucket_helper
        bucket_id = await helper.resolve_global_bucket_name(name)
        if bucket_id is not None:
            return bucket_id
        if len(name) >= MIN_ID_PREFIX and _HEX.fullmatch(name):
            prefix = name.lower()
            found = [b.id for b in await helper.list_buckets() if b.id.hex().startswith(prefix)]
            if len(found) > 1:
                raise AdminRpcError(
                    f"{len(found)} buckets have an id starting with {name!r}: give more digits"
                )
            if found:
                return found[0]
        raise NoSuchBucketError(name)

    async def _find_key(self, pattern: str) -> Key:
        return await self._garage.bucket_helper.keys.get_existing_matching_key(pattern)

    # ------------------------------------------------------------------ buckets

    async def _list_buckets(self) -> BucketListing:
        out = []
        for bucket in await self._garage.bucket_helper.list_buckets():
            params = _bucket_params(bucket)
            out.append(
                BucketSummary(
                    bucket.id.hex(),
                    params.creation_date,
                    tuple(params.active_aliases()),
                    tuple(LocalAliasInfo(k, a) for k, a in params.active_local_aliases()),
                )
            )
        return BucketListing(tuple(out))

    async def _bucket_info(self, bucket_id: Uuid) -> BucketDetails:
        g = self._garage
        bucket = await g.bucket_helper.get_existing_bucket(bucket_id)
        params = _bucket_params(bucket)
        counters = await g.bucket_counters(bucket_id)
        local = params.active_local_aliases()
        key_ids = {k for k, perm in params.authorized_keys.items() if perm.is_any()}
        key_ids |= {k for k, _ in local}
        keys = []
        for key_id in sorted(key_ids):
            key = await g.bucket_helper.get_internal_key(key_id)
            perm = _perm(params.authorized_keys.get(key_id))
            keys.append(
                BucketKeyInfo(
                    key_id,
                    key.name,
                    perm.allow_read,
                    perm.allow_write,
                    perm.allow_owner,
                    tuple(a for k, a in local if k == key_id),
                )
            )
        website = params.website_config.v
        quotas = params.quotas.v
        return BucketDetails(
            id=bucket_id.hex(),
            created_ms=params.creation_date,
            global_aliases=tuple(params.active_aliases()),
            local_aliases=tuple(LocalAliasInfo(k, a) for k, a in local),
            website=website is not None,
            index_document=None if website is None else website.index_document,
            error_document=None if website is None else website.error_document,
            max_size=quotas.max_size,
            max_objects=quotas.max_objects,
            objects=counters.get("objects", 0),
            bytes=counters.get("bytes", 0),
            unfinished_uploads=counters.get("unfinished_uploads", 0),
            mpu_uploads=counters.get("mpu_uploads", 0),
            mpu_parts=counters.get("mpu_parts", 0),
            mpu_bytes=counters.get("mpu_bytes", 0),
            keys=tuple(keys),
        )

    async def _delete_bucket(self, name: str) -> Done:
        g = self._garage
        bucket_id = await g.bucket_helper.resolve_global_bucket_name(name)
        if bucket_id is None:
            raise NoSuchBucketError(name)
        params = _bucket_params(await g.bucket_helper.get_existing_bucket(bucket_id))
        # Garage refuses to delete a bucket known under other names: the operator may not
        # know that the name they typed is not the only way to reach it.
        others = [a for a in params.active_aliases() if a != name]
        if others:
            raise AdminRpcError(
                f"bucket {name} still has other global aliases ({', '.join(others)}): "
                "remove them with `garage bucket unalias` first"
            )
        if params.active_local_aliases():
            raise AdminRpcError(
                f"bucket {name} still has local aliases: remove them with "
                "`garage bucket unalias --local <key>` first"
            )
        await g.locked_helper.delete_bucket(bucket_id)
        return Done(f"Bucket {name} was deleted.")

    async def _alias(self, msg: AliasBucket) -> Done:
        g = self._garage
        bucket_id = await self._find_bucket(msg.bucket)
        if msg.local_key is None:
            await g.locked_helper.set_global_alias(bucket_id, msg.new_name)
            return Done(f"Alias {msg.new_name} now points to bucket {bucket_id.hex()}.")
        key = await self._find_key(msg.local_key)
        await g.locked_helper.set_local_alias(bucket_id, key.key_id, msg.new_name)
        return Done(
            f"Alias {msg.new_name} now points to bucket {bucket_id.hex()} "
            f"in the namespace of key {key.key_id}."
        )

    async def _unalias(self, msg: UnaliasBucket) -> Done:
        g = self._garage
        if msg.local_key is None:
            alias = await g.bucket_helper.alias_table.get(EmptyKey(), StringKey(msg.name))
            if alias is None or alias.bucket_id is None:
                raise NoSuchBucketError(msg.name)
            await g.locked_helper.unset_global_alias(alias.bucket_id, msg.name)
            return Done(f"Alias {msg.name} no longer points to bucket {alias.bucket_id.hex()}.")
        key = await self._find_key(msg.local_key)
        bucket_id = key.local_alias(msg.name)
        if bucket_id is None:
            raise NoSuchBucketError(f"{msg.name} (local to key {key.key_id})")
        await g.locked_helper.unset_local_alias(bucket_id, key.key_id, msg.name)
        return Done(
            f"Alias {msg.name} of key {key.key_id} no longer points to bucket {bucket_id.hex()}."
        )

    async def _permissions(self, msg: SetBucketPermissions) -> Done:
        if not (msg.read or msg.write or msg.owner):
            raise AdminRpcError("nothing to do: give at least one of --read, --write, --owner")
        g = self._garage
        bucket_id = await self._find_bucket(msg.bucket)
        key = await self._find_key(msg.key_pattern)
        cur = _perm(key.bucket_permission(bucket_id))
        if msg.allow:
            read, write = cur.allow_read or msg.read, cur.allow_write or msg.write
            owner = cur.allow_owner or msg.owner
        else:
            read, write = cur.allow_read and not msg.read, cur.allow_write and not msg.write
            owner = cur.allow_owner and not msg.owner
        perm = await g.locked_helper.set_bucket_key_permissions(
            bucket_id, key.key_id, BucketKeyPerm(0, read, write, owner)
        )
        flags = {"read": perm.allow_read, "write": perm.allow_write, "owner": perm.allow_owner}
        granted = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in flags.items())
        return Done(f"New permissions for key {key.key_id} on bucket {msg.bucket}: {granted}.")

    async def _website(self, msg: SetBucketWebsite) -> Done:
        bucket_id = await self._find_bucket(msg.bucket)
        config = WebsiteConfig(msg.index_document, msg.error_document) if msg.allow else None
        await self._garage.locked_helper.update_bucket_website(bucket_id, config)
        verb = "allowed" if msg.allow else "denied"
        return Done(f"Website access {verb} for bucket {msg.bucket}.")

    async def _quotas(self, msg: SetBucketQuotas) -> Done:
        if msg.max_size is None and msg.max_objects is None:
            raise AdminRpcError("nothing to do: give --max-size, --max-objects or both")
        max_size = parse_quota(msg.max_size, "maximum size")
        max_objects = parse_quota(msg.max_objects, "maximum number of objects")
        g = self._garage
        bucket_id = await self._find_bucket(msg.bucket)
        current = _bucket_params(await g.bucket_helper.get_existing_bucket(bucket_id)).quotas.v
        quotas = BucketQuotas(
            max_size=current.max_size if msg.max_size is None else max_size,
            max_objects=current.max_objects if msg.max_objects is None else max_objects,
        )
        await g.locked_helper.update_bucket_quotas(bucket_id, quotas)
        return Done(f"Quotas updated for bucket {msg.bucket}.")

    # ------------------------------------------------------------------ keys

    async def _key_info(self, key: Key, *, show_secret: bool = False) -> KeyDetails:
        helper = self._garage.bucket_helper
        params = _key_params(key)
        local = params.active_local_aliases()
        bucket_ids = {b for b, perm in params.authorized_buckets.items() if perm.is_any()}
        bucket_ids |= {b for _, b in local}
        buckets = []
        for bucket_id in sorted(bucket_ids):
            bucket = await helper.get_internal_bucket(bucket_id)
            if bucket.params is None:
                continue  # deleted: its permissions are being cleaned up
            perm = _perm(params.authorized_buckets.get(bucket_id))
            buckets.append(
                KeyBucketInfo(
                    bucket_id.hex(),
                    tuple(bucket.params.active_aliases()),
                    tuple(n for n, b in local if b == bucket_id),
                    perm.allow_read,
                    perm.allow_write,
                    perm.allow_owner,
                )
            )
        return KeyDetails(
            key.key_id,
            params.name.v,
            params.secret_key if show_secret else None,
            params.allow_create_bucket.v,
            tuple(buckets),
        )

    # ------------------------------------------------------------------ node and layout

    async def _connect(self, text: str) -> Done:
        try:
            node_id, host, port = parse_node_address(text)
        except ValueError as exc:
            raise AdminRpcError(str(exc)) from None
        try:
            with anyio.fail_after(FAN_OUT_TIMEOUT_S):
                await self._garage.peering.connect_to(node_id, (host, port))
        except TimeoutError:
            raise AdminRpcError(f"could not connect to {node_id.short_hex()} in time") from None
        return Done(f"Connected to node {node_id.hex()} at {host}:{port}.")

    async def _advertise_layout(self, history: LayoutHistory) -> Done:
        g = self._garage
        ours = g.layout.history.current.replication_factor
        if history.current.replication_factor != ours:
            raise AdminRpcError(
                "refusing a layout with replication factor "
                f"{history.current.replication_factor}: this node uses {ours}"
            )
        # Unlike a peer's advertisement, the operator's change is pushed to every peer at
        # once: the other nodes need not wait for the next status exchange to see it.
        changed = await g.layout.update(history, push_to=g.peering.up_peers())
        version = g.layout.history.current.version
        what = "updated" if changed else "unchanged"
        return Done(f"Cluster layout {what}; current version {version}.")

    def _health(self) -> HealthReport:
        g = self._garage
        params = ReplicationParams(g.config.replication_factor, g.config.consistency_mode)
        h = g.system.health(params)
        return HealthReport(
            str(h.status),
            h.storage_nodes,
            h.storage_nodes_up,
            h.partitions,
            h.partitions_quorum,
            h.partitions_all_ok,
        )

"""The endpoints of the admin API v1 that act on the cluster, keys and buckets (Garage:
src/api/admin/cluster.rs, key.rs, bucket.rs).

Each handler reads what it needs, checks it, then changes the model through the node's
``LockedHelper`` (the admin mutations, one at a time, both sides of each denormalised pair
with one timestamp) or the admin RPC handler (layout pushes, node connections, the details
of keys and buckets): the HTTP API and the CLI share one implementation of each operation.

Layout changes follow Garage and the CLI: read the node's layout history, change it with
the pure layout operations (stage a role, apply or revert the staged changes), and hand
it to the node, which merges it (a CRDT merge, so concurrent operators converge) and
pushes it to its peers. Computing a new assignment is CPU work, done in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Final, final

import anyio

from garage.admin_rpc import (
    AdvertiseLayout,
    BucketListing,
    ConnectNode,
    GetHealth,
    HealthReport,
    KeyListing,
    ListBuckets,
    ListKeys,
)
from garage_model.bucket_alias_table import is_valid_bucket_name
from garage_model.bucket_table import BucketQuotas, WebsiteConfig
from garage_model.helper import (
    BucketAlreadyExistsError,
    InvalidBucketNameError,
    NoSuchBucketError,
)
from garage_model.permission import BucketKeyPerm
from garage_rpc.layout import LayoutVersionError, format_summary
from garage_util.clock import now_msec
from garage_util.errors import GarageError

from ._codec import (
    bucket_info_json,
    bucket_list_json,
    health_json,
    key_info_json,
    key_list_json,
    layout_json,
    node_json,
    nodes_json,
    parse_bucket_creation,
    parse_bucket_update,
    parse_connect,
    parse_key_import,
    parse_key_update,
    parse_layout_version,
    parse_permission_change,
    parse_role_changes,
    parse_uuid,
)
from ._errors import AdminApiError
from ._router import Endpoint

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage._admin_server import AdminRpcHandler
    from garage_model import Garage
    from garage_rpc.layout import LayoutHistory
    from garage_util.data import Uuid

    from ._router import Route

__all__ = ["DEFAULT_IMPORTED_KEY_NAME", "DEFAULT_KEY_NAME", "Handlers", "Reply"]

#: Names given to keys created or imported without one (Garage's).
DEFAULT_KEY_NAME: Final = "Unnamed key"
DEFAULT_IMPORTED_KEY_NAME: Final = "Imported key"


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: a status and a JSON value (``None``: no body)."""

    status: int
    body: object = None


def _ok(value: object) -> Reply:
    return Reply(200, value)


@final
class Handlers:
    """The JSON endpoints of the admin API (see the module docstring).

    Args:
        garage: the node.
        rpc: the node's admin RPC handler, whose operations are reused.
        features: what ``GetClusterStatus`` reports in ``garageFeatures``.
    """

    __slots__ = ("_features", "_garage", "_rpc", "_table")

    def __init__(self, garage: Garage, rpc: AdminRpcHandler, features: tuple[str, ...]) -> None:
        self._garage = garage
        self._rpc = rpc
        self._features = features
        E = Endpoint
        self._table: dict[Endpoint, Callable[[Route, object], Awaitable[Reply]]] = {
            E.GET_CLUSTER_STATUS: self._status,
            E.GET_CLUSTER_HEALTH: self._health,
            E.CONNECT_CLUSTER_NODES: self._connect,
            E.GET_CLUSTER_LAYOUT: self._layout,
            E.UPDATE_CLUSTER_LAYOUT: self._update_layout,
            E.APPLY_CLUSTER_LAYOUT: self._apply_layout,
            E.REVERT_CLUSTER_LAYOUT: self._revert_layout,
            E.LIST_KEYS: self._list_keys,
            E.CREATE_KEY: self._create_key,
            E.IMPORT_KEY: self._import_key,
            E.GET_KEY_INFO: self._key_info,
            E.UPDATE_KEY: self._update_key,
            E.DELETE_KEY: self._delete_key,
            E.LIST_BUCKETS: self._list_buckets,
            E.CREATE_BUCKET: self._create_bucket,
            E.GET_BUCKET_INFO: self._bucket_info,
            E.UPDATE_BUCKET: self._update_bucket,
            E.DELETE_BUCKET: self._delete_bucket,
            E.BUCKET_ALLOW_KEY: self._allow,
            E.BUCKET_DENY_KEY: self._deny,
            E.GLOBAL_ALIAS_BUCKET: self._global_alias,
            E.GLOBAL_UNALIAS_BUCKET: self._global_unalias,
            E.LOCAL_ALIAS_BUCKET: self._local_alias,
            E.LOCAL_UNALIAS_BUCKET: self._local_unalias,
        }

    def handles(self, endpoint: Endpoint) -> bool:
        """True for the endpoints answered here (everything but the special ones)."""
        return endpoint in self._table

    async def handle(self, route: Route, body: object) -> Reply:
        """Answers ``route`` with the request's JSON ``body`` (``{}`` when empty).

        Raises:
            AdminApiError: the request is refused.
            GarageError: from the model (mapped by the caller with ``error_from``).
        """
        return await self._table[route.endpoint](route, body)

    # ------------------------------------------------------------------ cluster

    async def _status(self, route: Route, body: object) -> Reply:
        g = self._garage
        known = g.system.known_nodes()
        history = g.layout.history
        return _ok(
            {
                "node": g.node_id.hex(),
                "garageVersion": version("garage"),
                "garageFeatures": list(self._features),
                "rustVersion": "none (Garage in Python)",
                "dbEngine": g.db.engine,
                "knownNodes": [node_json(k) for k in known],
                "layout": layout_json(history),
                # Garage 1.x's shape of the same information:
                "layoutVersion": history.current.version,
                "nodes": nodes_json(known, history),
            }
        )

    async def _health(self, route: Route, body: object) -> Reply:
        report = await self._rpc.dispatch(GetHealth())
        assert isinstance(report, HealthReport)
        known = self._garage.system.known_nodes()
        return _ok(health_json(report, known=len(known), connected=sum(k.is_up for k in known)))

    async def _connect(self, route: Route, body: object) -> Reply:
        nodes = parse_connect(body)
        results: list[dict[str, object]] = [{} for _ in nodes]

        async def connect(i: int, node: str) -> None:
            try:
                await self._rpc.dispatch(ConnectNode(node))
                results[i] = {"success": True, "error": None}
            except Exception as exc:  # a refusal or a failed connection: reported, per node
                results[i] = {"success": False, "error": str(exc)}

        async with anyio.create_task_group() as tg:
            for i, node in enumerate(nodes):
                tg.start_soon(connect, i, node)
        return _ok(results)

    # ------------------------------------------------------------------ layout

    async def _send_layout(self, history: LayoutHistory) -> LayoutHistory:
        """Hands ``history`` to the node (merge, save, push to peers); returns the result."""
        await self._rpc.dispatch(AdvertiseLayout(history))
        return self._garage.layout.history

    async def _layout(self, route: Route, body: object) -> Reply:
        return _ok(layout_json(self._garage.layout.history))

    async def _update_layout(self, route: Route, body: object) -> Reply:
        changes = parse_role_changes(body)
        history = self._garage.layout.history
        now = now_msec()
        for change in changes:
            if change.role is None:
                history = history.stage_removal(change.node, now)
            else:
                history = history.stage_role(change.node, change.role, now)
        return _ok(layout_json(await self._send_layout(history)))

    async def _apply_layout(self, route: Route, body: object) -> Reply:
        version = parse_layout_version(body)
        history = self._garage.layout.history
        expected = history.current.version + 1
        if version != expected:
            raise LayoutVersionError(expected, version)
        if not history.has_staged_changes:
            raise AdminApiError.bad_request("there are no staged layout changes to apply")
        new, summary = await anyio.to_thread.run_sync(
            history.apply_staged_changes, version, now_msec()
        )
        applied = await self._send_layout(new)
        message = format_summary(summary).rstrip().split("\n")
        return _ok({"message": message, "layout": layout_json(applied)})

    async def _revert_layout(self, route: Route, body: object) -> Reply:
        # Garage's v1 document asks for {"version"}, its code ignores it: so do we.
        history = self._garage.layout.history
        return _ok(layout_json(await self._send_layout(history.revert_staged_changes(now_msec()))))

    # ------------------------------------------------------------------ keys

    async def _key_reply(self, key_id: str, *, show_secret: bool = False) -> Reply:
        key = await self._garage.bucket_helper.get_existing_key(key_id)
        return _ok(key_info_json(await self._rpc.key_info(key, show_secret=show_secret)))

    async def _list_keys(self, route: Route, body: object) -> Reply:
        listing = await self._rpc.dispatch(ListKeys())
        assert isinstance(listing, KeyListing)
        return _ok(key_list_json(listing))

    async def _create_key(self, route: Route, body: object) -> Reply:
        # The body of an update (a deliberate difference: Garage reads only the name, so a
        # key asked for with allow.createBucket silently lacks it; the document has one
        # body for POST /v1/key, and every field of it means what it says).
        req = parse_key_update(body)
        locked = self._garage.locked_helper
        key = await locked.create_key(DEFAULT_KEY_NAME if req.name is None else req.name)
        if req.create_bucket:
            await locked.allow_key_create_bucket(key.key_id, True)
        return await self._key_reply(key.key_id, show_secret=True)

    async def _import_key(self, route: Route, body: object) -> Reply:
        req = parse_key_import(body)
        name = DEFAULT_IMPORTED_KEY_NAME if req.name is None else req.name
        key = await self._garage.locked_helper.import_key(
            req.access_key_id, req.secret_access_key, name
        )
        return await self._key_reply(key.key_id, show_secret=True)

    async def _key_info(self, route: Route, body: object) -> Reply:
        key_id, search = route.param("id"), route.param("search")
        if (key_id is None) == (search is None):
            raise AdminApiError.bad_request("give either id or search (but not both)")
        show = route.param("showSecretKey") or "false"
        if show not in ("true", "false"):
            raise AdminApiError.bad_request("showSecretKey must be true or false")
        if search is not None:
            keys = self._garage.bucket_helper.keys
            key_id = (await keys.get_existing_matching_key(search)).key_id
        assert key_id is not None
        return await self._key_reply(key_id, show_secret=show == "true")

    async def _update_key(self, route: Route, body: object) -> Reply:
        key_id = route.params["id"]
        update = parse_key_update(body)
        locked = self._garage.locked_helper
        await self._garage.bucket_helper.get_existing_key(key_id)
        if update.name is not None:
            await locked.rename_key(key_id, update.name)
        if update.create_bucket is not None:
            await locked.allow_key_create_bucket(key_id, update.create_bucket)
        return await self._key_reply(key_id)

    async def _delete_key(self, route: Route, body: object) -> Reply:
        key_id = route.params["id"]
        await self._garage.bucket_helper.get_existing_key(key_id)
        await self._garage.locked_helper.delete_key(key_id)
        return Reply(200)

    # ------------------------------------------------------------------ buckets

    async def _existing_bucket(self, text: str) -> Uuid:
        bucket_id = parse_uuid(text, "bucket id")
        await self._garage.bucket_helper.get_existing_bucket(bucket_id)
        return bucket_id

    async def _bucket_reply(self, bucket_id: Uuid) -> Reply:
        return _ok(bucket_info_json(await self._rpc.bucket_info(bucket_id)))

    async def _list_buckets(self, route: Route, body: object) -> Reply:
        listing = await self._rpc.dispatch(ListBuckets())
        assert isinstance(listing, BucketListing)
        return _ok(bucket_list_json(listing))

    async def _bucket_info(self, route: Route, body: object) -> Reply:
        text, alias = route.param("id"), route.param("globalAlias")
        if (text is None) == (alias is None):
            raise AdminApiError.bad_request("give either id or globalAlias (but not both)")
        if alias is not None:
            bucket_id = await self._garage.bucket_helper.resolve_global_bucket_name(alias)
            if bucket_id is None:
                raise NoSuchBucketError(alias)
        else:
            assert text is not None
            bucket_id = await self._existing_bucket(text)
        return await self._bucket_reply(bucket_id)

    def _check_name(self, name: str) -> None:
        if not is_valid_bucket_name(name, allow_punycode=self._garage.config.allow_punycode):
            raise InvalidBucketNameError(name)

    async def _create_bucket(self, route: Route, body: object) -> Reply:
        req = parse_bucket_creation(body)
        g, local = self._garage, req.local_alias
        # Every check first (Garage's order), so that a refusal leaves no bucket behind;
        # the locked helper checks again under its lock.
        if req.global_alias is not None:
            self._check_name(req.global_alias)
            if await g.bucket_helper.resolve_global_bucket_name(req.global_alias) is not None:
                raise BucketAlreadyExistsError(req.global_alias)
        if local is not None:
            self._check_name(local.alias)
            key = await g.bucket_helper.get_existing_key(local.access_key_id)
            if key.local_alias(local.alias) is not None:
                raise BucketAlreadyExistsError(local.alias)
        bucket_id = await g.locked_helper.create_bucket(req.global_alias)
        if local is not None:
            try:
                await g.locked_helper.set_local_alias(bucket_id, local.access_key_id, local.alias)
            except GarageError:
                if req.global_alias is None:  # a bucket nobody can name: take it back
                    await g.locked_helper.delete_bucket(bucket_id)
                raise
            perm = BucketKeyPerm(0, local.read, local.write, local.owner)
            if perm.is_any():
                await g.locked_helper.set_bucket_key_permissions(
                    bucket_id, local.access_key_id, perm
                )
        return await self._bucket_reply(bucket_id)

    async def _update_bucket(self, route: Route, body: object) -> Reply:
        bucket_id = await self._existing_bucket(route.params["id"])
        update = parse_bucket_update(body)
        locked = self._garage.locked_helper
        if update.website is not None:
            w = update.website
            config = None
            if w.enabled:
                assert w.index_document is not None
                config = WebsiteConfig(w.index_document, w.error_document)
            await locked.update_bucket_website(bucket_id, config)
        if update.quotas is not None:
            q = update.quotas
            await locked.update_bucket_quotas(bucket_id, BucketQuotas(q.max_size, q.max_objects))
        return await self._bucket_reply(bucket_id)

    async def _delete_bucket(self, route: Route, body: object) -> Reply:
        # As Garage's admin API: every alias goes with the bucket (the CLI is stricter).
        bucket_id = await self._existing_bucket(route.params["id"])
        await self._garage.locked_helper.delete_bucket(bucket_id)
        return Reply(204)

    async def _permissions(self, body: object, *, allow: bool) -> Reply:
        change = parse_permission_change(body)
        g = self._garage
        await g.bucket_helper.get_existing_bucket(change.bucket_id)
        key = await g.bucket_helper.get_existing_key(change.access_key_id)
        cur = key.bucket_permission(change.bucket_id) or BucketKeyPerm(0)
        # Flags sent as true change, the others stay (Garage's documented semantics).
        if allow:
            flags = (cur.allow_read or change.read, cur.allow_write or change.write)
            owner = cur.allow_owner or change.owner
        else:
            flags = (cur.allow_read and not change.read, cur.allow_write and not change.write)
            owner = cur.allow_owner and not change.owner
        await g.locked_helper.set_bucket_key_permissions(
            change.bucket_id, key.key_id, BucketKeyPerm(0, *flags, owner)
        )
        return await self._bucket_reply(change.bucket_id)

    async def _allow(self, route: Route, body: object) -> Reply:
        return await self._permissions(body, allow=True)

    async def _deny(self, route: Route, body: object) -> Reply:
        return await self._permissions(body, allow=False)

    async def _global_alias(self, route: Route, body: object) -> Reply:
        bucket_id = await self._existing_bucket(route.params["id"])
        await self._garage.locked_helper.set_global_alias(bucket_id, route.params["alias"])
        return await self._bucket_reply(bucket_id)

    async def _global_unalias(self, route: Route, body: object) -> Reply:
        bucket_id = await self._existing_bucket(route.params["id"])
        await self._garage.locked_helper.unset_global_alias(bucket_id, route.params["alias"])
        return await self._bucket_reply(bucket_id)

    async def _local_alias(self, route: Route, body: object) -> Reply:
        p = route.params
        bucket_id = await self._existing_bucket(p["id"])
        await self._garage.locked_helper.set_local_alias(bucket_id, p["accessKeyId"], p["alias"])
        return await self._bucket_reply(bucket_id)

    async def _local_unalias(self, route: Route, body: object) -> Reply:
        p = route.params
        bucket_id = await self._existing_bucket(p["id"])
        await self._garage.locked_helper.unset_local_alias(bucket_id, p["accessKeyId"], p["alias"])
        return await self._bucket_reply(bucket_id)

"""The JSON of the admin API v1: request bodies in, response documents out (Garage:
src/api/admin/{cluster,key,bucket}.rs, doc/api/garage-admin-v1.yml).

Pure. Field names are Garage's camelCase ones. Request bodies are read strictly: a field
of the wrong type, a missing required field, a number that is not a non-negative integer
(``1.5``, ``true``, ``-3``) is a ``400 BadRequest`` naming the field; unknown fields are
ignored (as serde does). An empty body reads as ``{}``, so ``POST /v1/key`` with no body
creates an unnamed key, as with ``{}``.

Responses are built from the values the node already has: the admin RPC's
:class:`~garage.admin_rpc.KeyDetails` and :class:`~garage.admin_rpc.BucketDetails` (one
lookup code for the CLI and the HTTP API), the layout history and the known nodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from garage_rpc.layout import NodeRole
from garage_util.data import FixedBytes32

from ._errors import AdminApiError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from garage.admin_rpc import (
        BucketDetails,
        BucketListing,
        HealthReport,
        KeyDetails,
        KeyListing,
    )
    from garage_rpc.layout import LayoutHistory
    from garage_rpc.system import KnownNode

__all__ = [
    "MAX_INT",
    "MIN_CAPACITY",
    "BucketCreation",
    "BucketUpdate",
    "KeyImport",
    "KeyUpdate",
    "LocalAliasCreation",
    "PermissionChange",
    "QuotasUpdate",
    "RoleChange",
    "WebsiteUpdate",
    "bucket_info_json",
    "bucket_list_json",
    "encode_json",
    "health_json",
    "key_info_json",
    "key_list_json",
    "layout_json",
    "node_json",
    "nodes_json",
    "parse_bucket_creation",
    "parse_bucket_update",
    "parse_connect",
    "parse_json",
    "parse_key_import",
    "parse_key_update",
    "parse_layout_version",
    "parse_permission_change",
    "parse_role_changes",
    "parse_uuid",
]

#: Integers are int64 in the OpenAPI document (Garage: u64 on the wire, but JSON clients
#: often use doubles or int64): larger values are refused rather than silently rounded.
MAX_INT: Final = 2**63 - 1
#: Garage refuses smaller storage capacities (src/api/admin/cluster.rs): a node that small
#: would hold no partition anyway, and a capacity in "weights" (pre-0.9) is a mistake.
MIN_CAPACITY: Final = 1024


# ------------------------------------------------------------------ reading JSON


def parse_json(body: bytes) -> object:
    """The JSON value of a request body; an empty body is ``{}``.

    Raises:
        AdminApiError: 400 when the body is not UTF-8 JSON.
    """
    if not body.strip():
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, an int too long
        raise AdminApiError.bad_request(f"the request body is not valid JSON: {exc}") from None


def _object(value: object, what: str) -> dict[str, object]:
    if type(value) is not dict:
        raise AdminApiError.bad_request(f"{what} must be a JSON object")
    return value


def _str(obj: Mapping[str, object], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise AdminApiError.bad_request(f"field {name!r} is required (a string)")
        return None
    if type(value) is not str:
        raise AdminApiError.bad_request(f"field {name!r} must be a string")
    return value


def _req_str(obj: Mapping[str, object], name: str) -> str:
    value = _str(obj, name, required=True)
    assert value is not None
    return value


def _bool(obj: Mapping[str, object], name: str, *, default: bool = False) -> bool:
    value = obj.get(name)
    if value is None:
        return default
    if type(value) is not bool:
        raise AdminApiError.bad_request(f"field {name!r} must be true or false")
    return value


def _uint(obj: Mapping[str, object], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise AdminApiError.bad_request(
            f"field {name!r} must be an integer from 0 to {MAX_INT}, or null"
        )
    return value


def parse_uuid(text: str, what: str) -> FixedBytes32:
    """A bucket or node id: 64 hex digits.

    Raises:
        AdminApiError: 400 otherwise.
    """
    if len(text) != 64:
        raise AdminApiError.bad_request(f"invalid {what} {text!r}: expected 64 hex digits")
    try:
        return FixedBytes32.from_hex(text)
    except ValueError:
        raise AdminApiError.bad_request(
            f"invalid {what} {text!r}: expected 64 hex digits"
        ) from None


# ------------------------------------------------------------------ keys


@dataclass(frozen=True, slots=True)
class KeyImport:
    """``ImportKey``'s body."""

    access_key_id: str
    secret_access_key: str
    name: str | None


def parse_key_import(body: object) -> KeyImport:
    """``{"accessKeyId", "secretAccessKey", "name"?}``."""
    obj = _object(body, "the request body")
    return KeyImport(
        _req_str(obj, "accessKeyId"), _req_str(obj, "secretAccessKey"), _str(obj, "name")
    )


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """``UpdateKey``'s body: a new name, and ``allow``/``deny`` of bucket creation.

    Attributes:
        name: the new name, if given.
        create_bucket: True to allow S3 CreateBucket, False to deny it, None to keep it.
    """

    name: str | None
    create_bucket: bool | None


def parse_key_update(body: object) -> KeyUpdate:
    """``{"name"?, "allow"?: {"createBucket"}, "deny"?: {"createBucket"}}``: the body of
    ``UpdateKey``, and of ``CreateKey``.

    A flag set to true in ``allow`` is granted, in ``deny`` taken away; false leaves it.

    Raises:
        AdminApiError: 400 when both allow and deny ``createBucket``.
    """
    obj = _object(body, "the request body")
    allow = deny = False
    if obj.get("allow") is not None:
        allow = _bool(_object(obj["allow"], "field 'allow'"), "createBucket")
    if obj.get("deny") is not None:
        deny = _bool(_object(obj["deny"], "field 'deny'"), "createBucket")
    if allow and deny:
        raise AdminApiError.bad_request("createBucket cannot be both allowed and denied")
    return KeyUpdate(_str(obj, "name"), True if allow else False if deny else None)


def key_list_json(listing: KeyListing) -> list[dict[str, object]]:
    """``ListKeys``: ``[{"id", "name"}]``."""
    return [{"id": k.key_id, "name": k.name} for k in listing.keys]


def key_info_json(key: KeyDetails) -> dict[str, object]:
    """``KeyInfo``: the key, its secret (or null), its permissions and its buckets."""
    return {
        "name": key.name,
        "accessKeyId": key.key_id,
        "secretAccessKey": key.secret_key,
        "permissions": {"createBucket": key.allow_create_bucket},
        "buckets": [
            {
                "id": b.bucket_id,
                "globalAliases": list(b.global_aliases),
                "localAliases": list(b.local_aliases),
                "permissions": {"read": b.read, "write": b.write, "owner": b.owner},
            }
            for b in key.buckets
        ],
    }


# ------------------------------------------------------------------ buckets


@dataclass(frozen=True, slots=True)
class LocalAliasCreation:
    """The ``localAlias`` of ``CreateBucket``: a name for one key, and its permissions."""

    access_key_id: str
    alias: str
    read: bool
    write: bool
    owner: bool


@dataclass(frozen=True, slots=True)
class BucketCreation:
    """``CreateBucket``'s body: a global alias, a local alias, both, or neither."""

    global_alias: str | None
    local_alias: LocalAliasCreation | None


def parse_bucket_creation(body: object) -> BucketCreation:
    """``{"globalAlias"?, "localAlias"?: {"accessKeyId", "alias", "allow"?: {...}}}``."""
    obj = _object(body, "the request body")
    local = None
    if obj.get("localAlias") is not None:
        la = _object(obj["localAlias"], "field 'localAlias'")
        raw_allow = la.get("allow")
        allow = {} if raw_allow is None else _object(raw_allow, "field 'localAlias.allow'")
        local = LocalAliasCreation(
            _req_str(la, "accessKeyId"),
            _req_str(la, "alias"),
            _bool(allow, "read"),
            _bool(allow, "write"),
            _bool(allow, "owner"),
        )
    return BucketCreation(_str(obj, "globalAlias"), local)


@dataclass(frozen=True, slots=True)
class WebsiteUpdate:
    """``websiteAccess`` of ``UpdateBucket``: on with an index (and error) document, or off."""

    enabled: bool
    index_document: str | None
    error_document: str | None


@dataclass(frozen=True, slots=True)
class QuotasUpdate:
    """``quotas`` of ``UpdateBucket``: both values replace the current ones (null: none)."""

    max_size: int | None
    max_objects: int | None


@dataclass(frozen=True, slots=True)
class BucketUpdate:
    """``UpdateBucket``'s body; an absent part is left as it is."""

    website: WebsiteUpdate | None
    quotas: QuotasUpdate | None


def parse_bucket_update(body: object) -> BucketUpdate:
    """``{"websiteAccess"?: {"enabled", "indexDocument"?, "errorDocument"?},
    "quotas"?: {"maxSize"?, "maxObjects"?}}``.

    Raises:
        AdminApiError: 400 when enabling a website without an index document, when giving
            documents while disabling it, or for an empty index document.
    """
    obj = _object(body, "the request body")
    website = quotas = None
    if obj.get("websiteAccess") is not None:
        wa = _object(obj["websiteAccess"], "field 'websiteAccess'")
        enabled = wa.get("enabled")
        if type(enabled) is not bool:
            raise AdminApiError.bad_request("field 'websiteAccess.enabled' must be true or false")
        index, error = _str(wa, "indexDocument"), _str(wa, "errorDocument")
        # Garage's rules (src/api/admin/bucket.rs).
        if enabled and not index:
            raise AdminApiError.bad_request(
                "give a non-empty indexDocument when enabling website access"
            )
        if not enabled and (index is not None or error is not None):
            raise AdminApiError.bad_request(
                "indexDocument and errorDocument cannot be given when disabling website access"
            )
        website = WebsiteUpdate(enabled, index, error or None)
    if obj.get("quotas") is not None:
        q = _object(obj["quotas"], "field 'quotas'")
        quotas = QuotasUpdate(_uint(q, "maxSize"), _uint(q, "maxObjects"))
    return BucketUpdate(website, quotas)


@dataclass(frozen=True, slots=True)
class PermissionChange:
    """``BucketAllowKey``/``BucketDenyKey``'s body: the flags set to true change."""

    bucket_id: FixedBytes32
    access_key_id: str
    read: bool
    write: bool
    owner: bool


def parse_permission_change(body: object) -> PermissionChange:
    """``{"bucketId", "accessKeyId", "permissions": {"read", "write", "owner"}}``."""
    obj = _object(body, "the request body")
    perms = _object(obj.get("permissions"), "field 'permissions'")
    for flag in ("read", "write", "owner"):
        if type(perms.get(flag)) is not bool:
            raise AdminApiError.bad_request(f"field 'permissions.{flag}' must be true or false")
    return PermissionChange(
        parse_uuid(_req_str(obj, "bucketId"), "bucket id"),
        _req_str(obj, "accessKeyId"),
        _bool(perms, "read"),
        _bool(perms, "write"),
        _bool(perms, "owner"),
    )


def bucket_list_json(listing: BucketListing) -> list[dict[str, object]]:
    """``ListBuckets``: ``[{"id", "globalAliases", "localAliases": [{"accessKeyId",
    "alias"}]}]``."""
    return [
        {
            "id": b.id,
            "globalAliases": list(b.global_aliases),
            "localAliases": [{"accessKeyId": a.key_id, "alias": a.alias} for a in b.local_aliases],
        }
        for b in listing.buckets
    ]


def bucket_info_json(bucket: BucketDetails) -> dict[str, object]:
    """``BucketInfo``: aliases, website, keys and their permissions, counters, quotas."""
    website = None
    if bucket.website:
        website = {"indexDocument": bucket.index_document, "errorDocument": bucket.error_document}
    return {
        "id": bucket.id,
        "globalAliases": list(bucket.global_aliases),
        "websiteAccess": bucket.website,
        "websiteConfig": website,
        "keys": [
            {
                "accessKeyId": k.key_id,
                "name": k.name,
                "permissions": {"read": k.read, "write": k.write, "owner": k.owner},
                "bucketLocalAliases": list(k.local_aliases),
            }
            for k in bucket.keys
        ],
        "objects": bucket.objects,
        "bytes": bucket.bytes,
        "unfinishedUploads": bucket.unfinished_uploads,
        "unfinishedMultipartUploads": bucket.mpu_uploads,
        "unfinishedMultipartUploadParts": bucket.mpu_parts,
        "unfinishedMultipartUploadBytes": bucket.mpu_bytes,
        "quotas": {"maxSize": bucket.max_size, "maxObjects": bucket.max_objects},
    }


# ------------------------------------------------------------------ cluster and layout


def parse_connect(body: object) -> list[str]:
    """``ConnectClusterNodes``'s ``["<node id>@<host>:<port>", ...]``."""
    if type(body) is not list or any(type(n) is not str for n in body):
        raise AdminApiError.bad_request(
            'the request body must be a JSON array of "<node id>@<host>:<port>" strings'
        )
    return list(body)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """One staged role change: a new role for ``node``, or its removal (``role`` None)."""

    node: FixedBytes32
    role: NodeRole | None


def _role_change(item: object) -> RoleChange:
    obj = _object(item, "each layout change")
    node = parse_uuid(_req_str(obj, "id"), "node id")
    if "remove" in obj:
        if obj["remove"] is not True:
            raise AdminApiError.bad_request("'remove' must be true (or absent, to set a role)")
        return RoleChange(node, None)
    zone = _req_str(obj, "zone")
    if not zone.strip():
        raise AdminApiError.bad_request("field 'zone' cannot be empty")
    if "capacity" not in obj:
        raise AdminApiError.bad_request(
            "field 'capacity' is required: a number of bytes, or null for a gateway"
        )
    capacity = _uint(obj, "capacity")
    if capacity is not None and capacity < MIN_CAPACITY:
        raise AdminApiError.bad_request(
            f"capacity must be at least {MIN_CAPACITY} bytes (or null for a gateway)"
        )
    tags = obj.get("tags", [])
    if type(tags) is not list or any(type(t) is not str for t in tags):
        raise AdminApiError.bad_request("field 'tags' must be an array of strings")
    return RoleChange(node, NodeRole(zone, capacity, tuple(tags)))


def parse_role_changes(body: object) -> list[RoleChange]:
    """``UpdateClusterLayout``'s ``[{"id", "zone", "capacity", "tags"} | {"id",
    "remove": true}]``."""
    if type(body) is not list:
        raise AdminApiError.bad_request("the request body must be a JSON array of role changes")
    return [_role_change(item) for item in body]


def parse_layout_version(body: object) -> int:
    """``ApplyClusterLayout``'s ``{"version": n}``."""
    version = _uint(_object(body, "the request body"), "version")
    if version is None:
        raise AdminApiError.bad_request(
            "field 'version' is required: the current layout version + 1"
        )
    return version


def _role_json(node: FixedBytes32, role: NodeRole) -> dict[str, object]:
    return {"id": node.hex(), "zone": role.zone, "capacity": role.capacity, "tags": list(role.tags)}


def layout_json(history: LayoutHistory) -> dict[str, object]:
    """``ClusterLayout``: the current version's roles and the staged role changes."""
    current = history.current
    roles = [_role_json(n, e.role) for n, e in current.roles.items() if e.role is not None]
    staged: list[dict[str, object]] = []
    for node, entry in history.staged.roles.items():
        if current.roles.get(node) == entry:
            continue  # staged, but the same as now: not a change
        if entry.role is None:
            staged.append({"id": node.hex(), "remove": True})
        else:
            staged.append(_role_json(node, entry.role))
    return {"version": current.version, "roles": roles, "stagedRoleChanges": staged}


def health_json(report: HealthReport, *, known: int, connected: int) -> dict[str, object]:
    """``GetClusterHealth``: the status and the node and partition counts (§3.3)."""
    return {
        "status": report.status,
        "knownNodes": known,
        "connectedNodes": connected,
        "storageNodes": report.storage_nodes,
        "storageNodesOk": report.storage_nodes_up,
        "partitions": report.partitions,
        "partitionsQuorum": report.partitions_quorum,
        "partitionsAllOk": report.partitions_all_ok,
    }


def _addr(k: KnownNode) -> str | None:
    """Where the node is connected, else the address it advertises (ourself: ours)."""
    if k.host is None or k.port is None:
        return None if k.status is None else k.status.public_addr
    return f"[{k.host}]:{k.port}" if ":" in k.host else f"{k.host}:{k.port}"


def node_json(k: KnownNode) -> dict[str, object]:
    """``NodeNetworkInfo``: a known node, its address and liveness."""
    return {
        "id": k.node_id.hex(),
        "addr": _addr(k),
        "isUp": k.is_up,
        "lastSeenSecsAgo": None if k.last_seen_ms_ago is None else k.last_seen_ms_ago // 1000,
        "hostname": None if k.status is None else k.status.hostname,
    }


def nodes_json(known: Sequence[KnownNode], history: LayoutHistory) -> list[dict[str, object]]:
    """Garage 1.x's ``nodes`` of ``GetClusterStatus``: every known node or node of a live
    layout version, with its current role, free space, and ``draining`` when it only has
    a storage role in an older live version (its data is moving away)."""
    current = history.current
    out: dict[FixedBytes32, dict[str, object]] = {}
    for k in known:
        entry = node_json(k)
        entry.update(role=None, draining=False)
        disks = (None, None) if k.status is None else (k.status.data_disk, k.status.meta_disk)
        for name, disk in zip(("dataPartition", "metadataPartition"), disks, strict=True):
            if disk is not None:
                entry[name] = {"available": disk.avail, "total": disk.total}
        out[k.node_id] = entry
    blank = {"addr": None, "isUp": False, "lastSeenSecsAgo": None, "hostname": None}
    for node, e in current.roles.items():
        if e.role is not None:
            out.setdefault(node, {"id": node.hex(), **blank, "draining": False})
            out[node]["role"] = _role_json(node, e.role)
    for version in history.versions[:-1]:
        for node, e in version.roles.items():
            if e.role is not None and e.role.capacity is not None:
                entry = out.setdefault(node, {"id": node.hex(), **blank, "role": None})
                if entry.get("role") is None:
                    entry["draining"] = True
    return [out[n] for n in sorted(out)]


def encode_json(value: object) -> bytes:
    """A response body: pretty JSON, as Garage sends."""
    return json.dumps(value, indent=2).encode()

"""The admin RPC: what the ``garage`` CLI asks a running node (Garage: src/garage/admin/).

The CLI is a throw-away node: it connects to the daemon with the cluster's ``rpc_secret``
and calls one endpoint, :data:`ADMIN_RPC` (``garage/admin_rpc.rs/Rpc``), whose request is
one :class:`AdminRequest` and whose answer is one :class:`AdminResponse`. Cluster status
and layout reads use the system endpoints (``GetKnownNodes``, ``PullClusterLayout``);
everything that reads or changes buckets, keys, workers, blocks and the metadata db goes
through here, so that the node applies it with its own helpers (every bucket and key
mutation through ``LockedHelper``, which serialises them node-wide).

Wire format. Requests and responses are tagged unions: each variant is a frozen dataclass
encoded as ``{VariantName: {field: value}}`` (Rust serde's externally tagged enums, as in
Garage's ``AdminRpc``), so adding a variant is a compatible change and renaming one is
not. Answers carry plain values (hex ids, names, counts, millisecond timestamps), not
table entries: the CLI renders them as tables for people or as JSON for scripts, and a
node never sends a secret key unless ``show_secret`` asked for it.

Errors. An operation the node refuses (unknown bucket, ambiguous key pattern, bucket not
empty, bad value) is answered with :class:`Failed` and its one-line message; only a bug
in a handler crosses as an RPC ``RemoteError``. Requests with ``all_nodes`` are fanned
out by the node that receives them to every node of the current layout, and answered with
:class:`PerNode` (one :class:`NodeAnswer` per node, failures included).
"""

# The annotations below must resolve at run time (garage_util.encode decodes dataclasses
# from their type hints), so every name they use is a real import or defined here.

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from garage_rpc.layout import LayoutHistory
from garage_rpc.net import Endpoint
from garage_util.data import FixedBytes32
from garage_util.encode import TaggedUnion, tagged_variants
from garage_util.errors import GarageError

if TYPE_CHECKING:
    from garage_model import Garage

__all__ = [
    "ADMIN_RPC",
    "AdminRequest",
    "AdminResponse",
    "AdminRpcError",
    "AdvertiseLayout",
    "AliasBucket",
    "BlockDetails",
    "BlockErrorInfo",
    "BlockErrors",
    "BlockRefInfo",
    "BucketDetails",
    "BucketKeyInfo",
    "BucketListing",
    "BucketSummary",
    "ConnectNode",
    "CreateBucket",
    "CreateKey",
    "DeleteBucket",
    "DeleteKey",
    "Done",
    "Failed",
    "GetBlockInfo",
    "GetBucketInfo",
    "GetHealth",
    "GetKeyInfo",
    "GetStats",
    "GetWorkerInfo",
    "GetWorkerVars",
    "HealthReport",
    "ImportKey",
    "KeyBucketInfo",
    "KeyDetails",
    "KeyListing",
    "KeySummary",
    "LaunchRepair",
    "ListBlockErrors",
    "ListBuckets",
    "ListKeys",
    "ListWorkers",
    "LocalAliasInfo",
    "NodeAnswer",
    "NodeDisk",
    "NodeStats",
    "PerNode",
    "PurgeBlocks",
    "RenameKey",
    "RetryBlocks",
    "SetBucketPermissions",
    "SetBucketQuotas",
    "SetBucketWebsite",
    "SetKeyCreateBucket",
    "SetWorkerVar",
    "SnapshotMetadata",
    "TableStats",
    "UnaliasBucket",
    "WorkerDescription",
    "WorkerDetails",
    "WorkerListing",
    "WorkerVarValue",
    "WorkerVars",
    "parse_node_address",
    "register",
]


class AdminRpcError(GarageError):
    """Raised by an admin handler when it refuses a request as asked (a malformed value,
    nothing to do, a missing confirmation); answered as :class:`Failed`."""


# ------------------------------------------------------------------ tagged unions


class AdminRequest(TaggedUnion):
    """What the CLI asks a node: one of the request variants of this module."""

    __slots__ = ()


class AdminResponse(TaggedUnion):
    """What a node answers: one of the response variants of this module."""

    __slots__ = ()


# ------------------------------------------------------------------ requests: buckets


@dataclass(frozen=True, slots=True)
class ListBuckets(AdminRequest):
    """``garage bucket list``: answered with :class:`BucketListing`."""


@dataclass(frozen=True, slots=True)
class GetBucketInfo(AdminRequest):
    """``garage bucket info``: answered with :class:`BucketDetails`.

    Attributes:
        name: a global name, or a bucket id (64 hex digits, or a unique prefix of 8+).
    """

    name: str


@dataclass(frozen=True, slots=True)
class CreateBucket(AdminRequest):
    """``garage bucket create``: a new bucket with this global name."""

    name: str


@dataclass(frozen=True, slots=True)
class DeleteBucket(AdminRequest):
    """``garage bucket delete``: deletes an empty bucket whose only alias is ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class AliasBucket(AdminRequest):
    """``garage bucket alias``: gives the bucket ``bucket`` the name ``new_name``.

    Attributes:
        bucket: the existing bucket (global name or id).
        new_name: the new name.
        local_key: a key pattern: the alias goes in that key's namespace; None: global.
    """

    bucket: str
    new_name: str
    local_key: str | None = None


@dataclass(frozen=True, slots=True)
class UnaliasBucket(AdminRequest):
    """``garage bucket unalias``: takes a name back (global, or local to ``local_key``)."""

    name: str
    local_key: str | None = None


@dataclass(frozen=True, slots=True)
class SetBucketPermissions(AdminRequest):
    """``garage bucket allow`` / ``deny``: adds (``allow``) or removes the flags given.

    Attributes:
        bucket: the bucket (global name or id).
        key_pattern: the key (id, id prefix or part of its name).
        read: the read flag is concerned.
        write: the write flag is concerned.
        owner: the owner flag is concerned.
        allow: True to grant the flags, False to take them away.
    """

    bucket: str
    key_pattern: str
    read: bool
    write: bool
    owner: bool
    allow: bool


@dataclass(frozen=True, slots=True)
class SetBucketWebsite(AdminRequest):
    """``garage bucket website``: serves the bucket as a website (``allow``) or stops."""

    bucket: str
    allow: bool
    index_document: str = "index.html"
    error_document: str | None = None


@dataclass(frozen=True, slots=True)
class SetBucketQuotas(AdminRequest):
    """``garage bucket set-quotas``.

    Attributes:
        bucket: the bucket (global name or id).
        max_size: bytes as decimal digits, ``"none"`` for no limit, None to keep.
        max_objects: a count as decimal digits, ``"none"``, or None to keep.
    """

    bucket: str
    max_size: str | None = None
    max_objects: str | None = None


# ------------------------------------------------------------------ requests: keys


@dataclass(frozen=True, slots=True)
class ListKeys(AdminRequest):
    """``garage key list``: answered with :class:`KeyListing`."""


@dataclass(frozen=True, slots=True)
class GetKeyInfo(AdminRequest):
    """``garage key info``: answered with :class:`KeyDetails` (the secret only if asked)."""

    pattern: str
    show_secret: bool = False


@dataclass(frozen=True, slots=True)
class CreateKey(AdminRequest):
    """``garage key create``: answered with :class:`KeyDetails`, secret included."""

    name: str


@dataclass(frozen=True, slots=True)
class RenameKey(AdminRequest):
    """``garage key rename``."""

    pattern: str
    new_name: str


@dataclass(frozen=True, slots=True)
class DeleteKey(AdminRequest):
    """``garage key delete``: removes its aliases and permissions, then the key."""

    pattern: str


@dataclass(frozen=True, slots=True)
class SetKeyCreateBucket(AdminRequest):
    """``garage key allow/deny --create-bucket``."""

    pattern: str
    allow: bool


@dataclass(frozen=True, slots=True)
class ImportKey(AdminRequest):
    """``garage key import``: a key with a given id and secret."""

    key_id: str
    secret_key: str
    name: str


# ------------------------------------------------------------------ requests: node


@dataclass(frozen=True, slots=True)
class ConnectNode(AdminRequest):
    """``garage node connect``: the node connects to ``<id>@<host>:<port>``."""

    node: str


@dataclass(frozen=True, slots=True)
class AdvertiseLayout(AdminRequest):
    """The layout commands: merge this history and tell every connected peer at once."""

    history: LayoutHistory


@dataclass(frozen=True, slots=True)
class GetHealth(AdminRequest):
    """``garage status``: answered with :class:`HealthReport`."""


@dataclass(frozen=True, slots=True)
class ListWorkers(AdminRequest):
    """``garage worker list``: answered with :class:`WorkerListing`."""

    busy_only: bool = False
    errors_only: bool = False


@dataclass(frozen=True, slots=True)
class GetWorkerInfo(AdminRequest):
    """``garage worker info``: answered with :class:`WorkerDetails`."""

    tid: int


@dataclass(frozen=True, slots=True)
class GetWorkerVars(AdminRequest):
    """``garage worker get``: one variable, or all (None); answered with
    :class:`WorkerVars`."""

    variable: str | None = None
    all_nodes: bool = False


@dataclass(frozen=True, slots=True)
class SetWorkerVar(AdminRequest):
    """``garage worker set``: answered with :class:`WorkerVars` (the new value)."""

    variable: str
    value: str
    all_nodes: bool = False


@dataclass(frozen=True, slots=True)
class LaunchRepair(AdminRequest):
    """``garage repair``.

    Attributes:
        what: ``tables``, ``blocks``, ``versions``, ``mpu``, ``block-refs``, ``block-rc``,
            ``rebalance`` or ``scrub``.
        scrub_command: for ``scrub``: ``start``, ``pause``, ``resume``, ``cancel`` or
            ``set-tranquility``.
        tranquility: for ``scrub set-tranquility``.
        all_nodes: on every node of the layout.
    """

    what: str
    scrub_command: str | None = None
    tranquility: int | None = None
    all_nodes: bool = False


@dataclass(frozen=True, slots=True)
class GetStats(AdminRequest):
    """``garage stats``: answered with :class:`NodeStats` (or :class:`PerNode`).

    Attributes:
        all_nodes: from every node of the layout.
        skip_global: leave out the cluster-wide part (set on fanned-out requests).
    """

    all_nodes: bool = False
    skip_global: bool = False


@dataclass(frozen=True, slots=True)
class ListBlockErrors(AdminRequest):
    """``garage block list-errors``: answered with :class:`BlockErrors`."""


@dataclass(frozen=True, slots=True)
class GetBlockInfo(AdminRequest):
    """``garage block info``: answered with :class:`BlockDetails`."""

    hash: str


@dataclass(frozen=True, slots=True)
class RetryBlocks(AdminRequest):
    """``garage block retry-now``: the given blocks, or every errored one (``all``)."""

    blocks: tuple[str, ...] = ()
    all: bool = False


@dataclass(frozen=True, slots=True)
class PurgeBlocks(AdminRequest):
    """``garage block purge``: deletes every object and upload that uses these blocks."""

    blocks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SnapshotMetadata(AdminRequest):
    """``garage meta snapshot``: a copy of the metadata db in ``metadata_snapshots_dir``."""

    all_nodes: bool = False


AdminRequest.VARIANTS = tagged_variants(
    ListBuckets,
    GetBucketInfo,
    CreateBucket,
    DeleteBucket,
    AliasBucket,
    UnaliasBucket,
    SetBucketPermissions,
    SetBucketWebsite,
    SetBucketQuotas,
    ListKeys,
    GetKeyInfo,
    CreateKey,
    RenameKey,
    DeleteKey,
    SetKeyCreateBucket,
    ImportKey,
    ConnectNode,
    AdvertiseLayout,
    GetHealth,
    ListWorkers,
    GetWorkerInfo,
    GetWorkerVars,
    SetWorkerVar,
    LaunchRepair,
    GetStats,
    ListBlockErrors,
    GetBlockInfo,
    RetryBlocks,
    PurgeBlocks,
    SnapshotMetadata,
)


# ------------------------------------------------------------------ values in answers


@dataclass(frozen=True, slots=True)
class LocalAliasInfo:
    """A name of a bucket in the namespace of one access key."""

    key_id: str
    alias: str


@dataclass(frozen=True, slots=True)
class BucketSummary:
    """One line of ``garage bucket list``.

    Attributes:
        id: the bucket id (64 hex digits).
        created_ms: creation time (ms since the epoch).
        global_aliases: its global names, sorted.
        local_aliases: its names local to access keys.
    """

    id: str
    created_ms: int
    global_aliases: tuple[str, ...]
    local_aliases: tuple[LocalAliasInfo, ...]


@dataclass(frozen=True, slots=True)
class BucketKeyInfo:
    """An access key that has permissions on (or a local alias of) a bucket."""

    key_id: str
    name: str
    read: bool
    write: bool
    owner: bool
    local_aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KeySummary:
    """One line of ``garage key list``."""

    key_id: str
    name: str


@dataclass(frozen=True, slots=True)
class KeyBucketInfo:
    """A bucket an access key has permissions on, or names locally.

    Attributes:
        bucket_id: the bucket id (hex).
        global_aliases: the bucket's global names.
        local_aliases: the bucket's names in this key's namespace.
        read, write, owner: the key's permissions on it.
    """

    bucket_id: str
    global_aliases: tuple[str, ...]
    local_aliases: tuple[str, ...]
    read: bool
    write: bool
    owner: bool


@dataclass(frozen=True, slots=True)
class WorkerDescription:
    """A background worker as ``garage worker list/info`` shows it.

    Attributes:
        tid: its task id on the node.
        name: its name.
        state: busy, throttled, idle, done or failed.
        errors: failed steps in total.
        consecutive_errors: failed steps since the last good one.
        last_error: the last failure's message, if any.
        last_error_ms: when it happened (ms since the epoch).
        tranquility, progress, queue_length, persistent_errors, freeform: what the worker
            reports about itself.
    """

    tid: int
    name: str
    state: str
    errors: int
    consecutive_errors: int
    last_error: str | None
    last_error_ms: int | None
    tranquility: int | None
    progress: str | None
    queue_length: int | None
    persistent_errors: int | None
    freeform: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkerVarValue:
    """One background variable of one node."""

    node: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class TableStats:
    """The local size of one table (``garage stats``)."""

    name: str
    items: int
    merkle_nodes: int
    merkle_todo: int
    insert_queue: int
    gc_todo: int


@dataclass(frozen=True, slots=True)
class NodeDisk:
    """A storage node's role and free space, as its last status said (``garage stats``).

    Attributes:
        node: the node id (hex).
        hostname: its host name, if known.
        zone: its zone in the current layout.
        partitions: partitions it stores in the current layout.
        data_avail, data_total: free and total bytes of its data directory (None: unknown).
        meta_avail, meta_total: the same for its metadata directory.
    """

    node: str
    hostname: str | None
    zone: str
    partitions: int
    data_avail: int | None
    data_total: int | None
    meta_avail: int | None
    meta_total: int | None


@dataclass(frozen=True, slots=True)
class BlockErrorInfo:
    """A block whose resync keeps failing (``garage block list-errors``)."""

    hash: str
    refcount: int
    errors: int
    last_try_ms: int
    next_try_ms: int


@dataclass(frozen=True, slots=True)
class BlockRefInfo:
    """A version that references a block, and what owns that version.

    Attributes:
        version: the version uuid (hex).
        ref_deleted: the reference is deleted.
        version_found: the version row exists.
        version_deleted: the version is deleted.
        bucket_id, key: the object owning the version, if it is an object's.
        upload_id: the multipart upload owning it, if it is a part's.
    """

    version: str
    ref_deleted: bool
    version_found: bool
    version_deleted: bool
    bucket_id: str | None = None
    key: str | None = None
    upload_id: str | None = None


# ------------------------------------------------------------------ responses


@dataclass(frozen=True, slots=True)
class Done(AdminResponse):
    """The operation was done; ``message`` says what happened."""

    message: str


@dataclass(frozen=True, slots=True)
class Failed(AdminResponse):
    """The node refused the request; ``message`` says why, in one line."""

    message: str


@dataclass(frozen=True, slots=True)
class BucketListing(AdminResponse):
    """Every bucket, by id."""

    buckets: tuple[BucketSummary, ...]


@dataclass(frozen=True, slots=True)
class BucketDetails(AdminResponse):
    """One bucket (``garage bucket info``).

    Attributes:
        id: the bucket id (hex).
        created_ms: creation time.
        global_aliases: its global names.
        local_aliases: its names local to keys.
        website: whether it is served as a website.
        index_document, error_document: its website configuration.
        max_size, max_objects: its quotas (None: no limit).
        objects, bytes, unfinished_uploads: its object counters.
        mpu_uploads, mpu_parts, mpu_bytes: its multipart upload counters.
        keys: the keys with permissions or local aliases on it.
    """

    id: str
    created_ms: int
    global_aliases: tuple[str, ...]
    local_aliases: tuple[LocalAliasInfo, ...]
    website: bool
    index_document: str | None
    error_document: str | None
    max_size: int | None
    max_objects: int | None
    objects: int
    bytes: int
    unfinished_uploads: int
    mpu_uploads: int
    mpu_parts: int
    mpu_bytes: int
    keys: tuple[BucketKeyInfo, ...]


@dataclass(frozen=True, slots=True)
class KeyListing(AdminResponse):
    """Every access key, by id."""

    keys: tuple[KeySummary, ...]


@dataclass(frozen=True, slots=True)
class KeyDetails(AdminResponse):
    """One access key (``garage key info/create/...``).

    Attributes:
        key_id: the access key id.
        name: its name.
        secret_key: the secret, only when asked for (or just created); else None.
        allow_create_bucket: it may create buckets with S3 CreateBucket.
        buckets: the buckets it has permissions on or names locally.
    """

    key_id: str
    name: str
    secret_key: str | None
    allow_create_bucket: bool
    buckets: tuple[KeyBucketInfo, ...]


@dataclass(frozen=True, slots=True)
class HealthReport(AdminResponse):
    """The cluster's health as the node sees it (``garage status``)."""

    status: str
    storage_nodes: int
    storage_nodes_up: int
    partitions: int
    partitions_quorum: int
    partitions_all_ok: int


@dataclass(frozen=True, slots=True)
class WorkerListing(AdminResponse):
    """The node's background workers, by task id."""

    workers: tuple[WorkerDescription, ...]


@dataclass(frozen=True, slots=True)
class WorkerDetails(AdminResponse):
    """One background worker."""

    worker: WorkerDescription


@dataclass(frozen=True, slots=True)
class WorkerVars(AdminResponse):
    """Background variables, by node then name."""

    vars: tuple[WorkerVarValue, ...]


@dataclass(frozen=True, slots=True)
class NodeStats(AdminResponse):
    """``garage stats`` of one node.

    Attributes:
        node: the node id (hex).
        hostname: its host name.
        version: the garage version it runs.
        db_engine: its metadata db engine.
        tables: the size of each table.
        block_rc_entries: blocks with a reference count.
        resync_queue: blocks queued for resync.
        resync_errors: blocks whose resync is failing.
        cluster: the storage nodes' free space (empty when skipped).
        data_avail_estimate, meta_avail_estimate: what the cluster can still store, from
            the fullest node for its share of partitions (None: unknown).
    """

    node: str
    hostname: str
    version: str
    db_engine: str
    tables: tuple[TableStats, ...]
    block_rc_entries: int
    resync_queue: int
    resync_errors: int
    cluster: tuple[NodeDisk, ...] = ()
    data_avail_estimate: int | None = None
    meta_avail_estimate: int | None = None


@dataclass(frozen=True, slots=True)
class BlockErrors(AdminResponse):
    """Blocks whose resync keeps failing."""

    errors: tuple[BlockErrorInfo, ...]


@dataclass(frozen=True, slots=True)
class BlockDetails(AdminResponse):
    """One block: its local reference count and the versions that use it."""

    hash: str
    refcount: int
    refs: tuple[BlockRefInfo, ...]


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """One node's answer to a fanned-out request: ``answer``, or ``error`` if the call
    failed."""

    node: str
    answer: AdminResponse | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PerNode(AdminResponse):
    """The answers of every node to an ``all_nodes`` request, by node id."""

    answers: tuple[NodeAnswer, ...]


AdminResponse.VARIANTS = tagged_variants(
    Done,
    Failed,
    BucketListing,
    BucketDetails,
    KeyListing,
    KeyDetails,
    HealthReport,
    WorkerListing,
    WorkerDetails,
    WorkerVars,
    NodeStats,
    BlockErrors,
    BlockDetails,
    PerNode,
)

_NODE_ID: Final = re.compile(r"[0-9a-fA-F]{64}")


def parse_node_address(text: str) -> tuple[FixedBytes32, str, int]:
    """Parses ``<64 hex node id>@<host>:<port>`` (an IPv6 host in brackets).

    Raises:
        ValueError: naming what is wrong.
    """
    node_hex, at, address = text.partition("@")
    if not at or _NODE_ID.fullmatch(node_hex) is None:
        raise ValueError(f"{text!r} is not <node id>@<host>:<port> (a node id is 64 hex digits)")
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [<ipv6>]:<port> after '@'")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"{text!r}: expected <host>:<port> after '@' ([<ipv6>]:<port>)")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r}: the host is empty or contains spaces")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"{text!r}: the port must be a number in 1..65535")
    return FixedBytes32.from_hex(node_hex), host, int(port_text)


#: The admin endpoint (Garage's path, so that the two can tell they do not match).
ADMIN_RPC: Final = Endpoint("garage/admin_rpc.rs/Rpc", AdminRequest, AdminResponse)


def register(garage: Garage) -> None:
    """Installs the admin RPC handler on the node's transport.

    Call it once, right after the :class:`~garage_model.Garage` is built and before it
    runs (``garage server`` does).

    Raises:
        ValueError: when the handler is already registered on this node.
    """
    from ._admin_server import AdminRpcHandler  # the handlers import this module's types

    handler = AdminRpcHandler(garage)
    garage.netapp.endpoint(ADMIN_RPC, handler.handle)

"""The configuration as values: the frozen dataclasses and enums that a parse returns.

Everything here is a plain value (``@dataclass(frozen=True, slots=True)`` or a
``StrEnum``): no validation, no I/O. :mod:`._parse` is the only place that builds a
:class:`Config`, so every ``Config`` seen elsewhere has been validated. Fields carry the
names of garage.toml keys, defaults are Garage's (with their reasons next to them), and
secrets are hidden from ``repr``.
"""

# The annotations below must resolve at runtime (``typing.get_type_hints``, which
# garage_util.encode uses on dataclasses), so the names they use are imported for real.

from __future__ import annotations

import enum
import ipaddress
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from garage_util.data import FixedBytes32

__all__ = [
    "DEFAULT_BLOCK_RAM_BUFFER_MAX",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_COMPRESSION_LEVEL",
    "DEFAULT_LMDB_MAP_SIZE",
    "DEFAULT_RPC_PING_TIMEOUT_MSEC",
    "DEFAULT_RPC_TIMEOUT_MSEC",
    "AdminConfig",
    "BindAddr",
    "BootstrapPeer",
    "Config",
    "ConsistencyMode",
    "ConsulDiscoveryApi",
    "ConsulDiscoveryConfig",
    "DataDir",
    "DbEngine",
    "K2VApiConfig",
    "KubernetesDiscoveryConfig",
    "S3ApiConfig",
    "SecretOverrides",
    "TcpAddr",
    "UnixSocketAddr",
    "WebConfig",
]

# Garage's default block size (src/util/config.rs `default_block_size`): large enough that
# per-block overhead (a table row, an RPC) is small, small enough to stream and to buffer.
DEFAULT_BLOCK_SIZE: Final = 2**20
# Bytes of block sends allowed in flight before writers wait (Garage's default): bounds
# RAM under load without slowing a single upload.
DEFAULT_BLOCK_RAM_BUFFER_MAX: Final = 256 * 2**20
# LMDB reserves its map as address space, not RAM; 1 TiB is Garage's 64-bit default and is
# far beyond any metadata size seen in practice.
DEFAULT_LMDB_MAP_SIZE: Final = 2**40
# zstd level 1 (Garage's default): most of the gain for a small CPU cost.
DEFAULT_COMPRESSION_LEVEL: Final = 1
# Garage's defaults (src/rpc/system.rs, src/rpc/rpc_helper.rs): a ping should answer in
# well under 10 s; a block transfer of 1 MiB over a slow link may take minutes.
DEFAULT_RPC_PING_TIMEOUT_MSEC: Final = 10_000
DEFAULT_RPC_TIMEOUT_MSEC: Final = 300_000


class DbEngine(enum.StrEnum):
    """Metadata database engine (``db_engine``)."""

    SQLITE = "sqlite"
    """The default here (Garage defaults to LMDB): stdlib, robust to power loss."""
    LMDB = "lmdb"
    """Faster, needs the ``lmdb`` extra; can corrupt on power loss without fsync."""


class ConsistencyMode(enum.StrEnum):
    """How strictly quorums are enforced (``consistency_mode``; Garage: replication_mode.rs)."""

    CONSISTENT = "consistent"
    """Read and write quorums overlap: read-after-write consistency."""
    DEGRADED = "degraded"
    """Read quorum of 1: reads survive more failures, may return stale data."""
    DANGEROUS = "dangerous"
    """Read and write quorums of 1: for emergencies only."""


class ConsulDiscoveryApi(enum.StrEnum):
    """Which Consul API registers the node (``consul_discovery.api``)."""

    CATALOG = "catalog"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class TcpAddr:
    """A TCP address ``host:port``; the host is an IP or a name, never resolved here.

    ``str()`` gives back the ``host:port`` form, with IPv6 in brackets (``[::1]:3901``).
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixSocketAddr:
    """A Unix socket to listen on; written in the config as an absolute path."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


BindAddr = TcpAddr | UnixSocketAddr
"""Where an HTTP server listens (Garage's ``UnixOrTCPSocketAddress``)."""


@dataclass(frozen=True, slots=True)
class BootstrapPeer:
    """A peer to connect to at startup: ``<64 hex node id>@host:port``."""

    node_id: FixedBytes32
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.node_id.hex()}@{TcpAddr(self.host, self.port)}"


@dataclass(frozen=True, slots=True)
class DataDir:
    """One data directory (Garage: src/block/layout.rs).

    Attributes:
        path: where block files live.
        capacity_bytes: how much this directory should hold, which sets its share of the
            1024 drive partitions. ``None`` for a read-only directory, and for the single
            directory of ``data_dir = "<path>"`` (which needs no share).
        read_only: blocks are read from here but never written (a drive being retired).
    """

    path: Path
    capacity_bytes: int | None
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulDiscoveryConfig:
    """The ``[consul_discovery]`` section: find peers through Consul."""

    consul_http_addr: str
    service_name: str
    api: ConsulDiscoveryApi = ConsulDiscoveryApi.CATALOG
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    token: str | None = field(default=None, repr=False)
    tls_skip_verify: bool = False
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    """Service metadata as ``(key, value)`` pairs in file order (a tuple keeps it hashable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesDiscoveryConfig:
    """The ``[kubernetes_discovery]`` section: find peers through GarageNode resources."""

    namespace: str
    service_name: str
    skip_crd: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class S3ApiConfig:
    """The ``[s3_api]`` section (required)."""

    s3_region: str
    api_bind_addr: BindAddr | None = None
    root_domain: str | None = None
    """Suffix of virtual-host-style bucket names; ``None`` disables vhost-style requests."""


@dataclass(frozen=True, slots=True, kw_only=True)
class K2VApiConfig:
    """The ``[k2v_api]`` section; its absence turns the K2V API off."""

    api_bind_addr: BindAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """The ``[s3_web]`` section; its absence turns static website serving off."""

    bind_addr: BindAddr
    root_domain: str
    add_host_to_metrics: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """The ``[admin]`` section, with its tokens already resolved (see :mod:`garage_util.config`)."""

    api_bind_addr: BindAddr | None = None
    metrics_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    trace_sink: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretOverrides:
    """Secrets given on the command line; they win over the environment and the file.

    Each field mirrors a CLI flag (``--rpc-secret``, ``--rpc-secret-file``...). ``None``
    means "not given".
    """

    rpc_secret: str | None = field(default=None, repr=False)
    rpc_secret_file: str | os.PathLike[str] | None = None
    admin_token: str | None = field(default=None, repr=False)
    admin_token_file: str | os.PathLike[str] | None = None
    metrics_token: str | None = field(default=None, repr=False)
    metrics_token_file: str | os.PathLike[str] | None = None
    allow_world_readable_secrets: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration of a node, validated. Build it with :func:`load_config`.

    Fields carry the names of garage.toml keys. Secrets are resolved (see
    :mod:`garage_util.config`) and hidden from ``repr``. ``replication_mode`` is not a
    field: it is converted into ``replication_factor`` and ``consistency_mode`` while
    parsing.

    Attributes:
        metadata_dir: node key, layout, metadata DB and other persisted state.
        data_dir: block directories; one entry with no capacity for ``data_dir = "<path>"``.
        metadata_snapshots_dir: where ``garage meta snapshot`` writes
            (default ``<metadata_dir>/snapshots``).
        rpc_secret: the 32-byte network key shared by all nodes of the cluster.
        rpc_bind_addr: where the RPC server listens (TCP only).
        replication_factor: copies of each piece of data; the same on every node.
        s3_api: the S3 API server.
        consistency_mode: quorum strictness.
        metadata_fsync: sync the metadata DB on commit (sqlite ``synchronous=NORMAL``).
        data_fsync: fsync block files and their directory after writing.
        disable_scrub: run no periodic scrub worker.
        use_local_tz: lifecycle rules run at local midnight instead of UTC midnight.
        metadata_auto_snapshot_interval: take a metadata snapshot this often; ``None``: never.
        db_engine: the metadata DB engine.
        lmdb_map_size: LMDB's maximum DB size, in bytes.
        block_size: size of the chunks objects are split into, in bytes.
        block_ram_buffer_max: bytes of block sends in flight before writers wait.
        compression_level: zstd level of stored blocks; ``None`` disables compression.
        rpc_bind_outgoing: bind outgoing RPC sockets to the IP of ``rpc_bind_addr``.
        rpc_public_addr: the address advertised to peers; ``None``: autodetect.
        rpc_public_addr_subnet: restrict address autodetection to this subnet.
        rpc_ping_timeout_msec: timeout of peer pings.
        rpc_timeout_msec: default timeout of RPCs.
        bootstrap_peers: peers to connect to at startup (names are resolved later).
        allow_world_readable_secrets: the effective value, after CLI and environment.
        allow_punycode: accept ``xn--`` bucket names.
        consul_discovery: discover peers through Consul; ``None``: off.
        kubernetes_discovery: discover peers through Kubernetes; ``None``: off.
        k2v_api: the K2V API server; ``None``: off.
        s3_web: the static website server; ``None``: off.
        admin: the admin API server and its tokens.
    """

    metadata_dir: Path
    data_dir: tuple[DataDir, ...]
    metadata_snapshots_dir: Path
    rpc_secret: bytes = field(repr=False)
    rpc_bind_addr: TcpAddr
    replication_factor: int
    s3_api: S3ApiConfig
    consistency_mode: ConsistencyMode = ConsistencyMode.CONSISTENT
    metadata_fsync: bool = False
    data_fsync: bool = False
    disable_scrub: bool = False
    use_local_tz: bool = False
    metadata_auto_snapshot_interval: timedelta | None = None
    db_engine: DbEngine = DbEngine.SQLITE
    lmdb_map_size: int = DEFAULT_LMDB_MAP_SIZE
    block_size: int = DEFAULT_BLOCK_SIZE
    block_ram_buffer_max: int = DEFAULT_BLOCK_RAM_BUFFER_MAX
    compression_level: int | None = DEFAULT_COMPRESSION_LEVEL
    rpc_bind_outgoing: bool = False
    rpc_public_addr: TcpAddr | None = None
    rpc_public_addr_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    rpc_ping_timeout_msec: int = DEFAULT_RPC_PING_TIMEOUT_MSEC
    rpc_timeout_msec: int = DEFAULT_RPC_TIMEOUT_MSEC
    bootstrap_peers: tuple[BootstrapPeer, ...] = ()
    allow_world_readable_secrets: bool = False
    allow_punycode: bool = False
    consul_discovery: ConsulDiscoveryConfig | None = None
    kubernetes_discovery: KubernetesDiscoveryConfig | None = None
    k2v_api: K2VApiConfig | None = None
    s3_web: WebConfig | None = None
    admin: AdminConfig = field(default_factory=AdminConfig)

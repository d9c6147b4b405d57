"""The garage.toml configuration: one frozen value, validated once, at startup.

Garage: src/util/config.rs, doc/book/reference-manual/configuration.md.

Theory of operation
-------------------
:func:`load_config` is the I/O shell: it reads the file as UTF-8 and hands the text to
:func:`parse_config` together with the directory the file lives in. ``parse_config`` is the
core. It validates the whole document and returns a :class:`Config`; the only I/O it does
is reading secret files. The process environment is never read by the core: callers pass
``env`` explicitly (``load_config`` defaults it to ``os.environ``), and the CLI passes its
flags as :class:`SecretOverrides`.

Validation stops at the first problem and raises
:class:`~garage_util.errors.ConfigError` with the dotted key at fault
(``"s3_api.s3_region"``, ``"data_dir[1].capacity"``) and a reason a user can act on:

1. Keys. Each table's keys are checked against the keys it accepts *before* any value is
   read, so a typo is reported as the typo, with a "did you mean" hint, and not as the
   required key that it hides. **This differs from Rust Garage on purpose**: its serde
   structs ignore unknown keys, so a misspelt optional key there silently keeps its default.
   Keys that older Garage versions accepted (``sled_*``, ``consul_host``...) get a message
   saying what replaced them.
2. Types. Each value must have the TOML type of its key (``true`` is not an integer) and
   the message names the expected type. Values of secret keys are never echoed.
3. Values. Ranges, sizes and durations (see ``garage_util._units``), addresses, the legacy
   ``replication_mode`` (converted to ``replication_factor`` + ``consistency_mode``, and
   exclusive with them), the combinations that go together (``client_cert`` with
   ``client_key``; ``capacity`` unless ``read_only``).
4. Paths. Relative paths in the file are resolved against the directory of the file
   (``base_dir``), lexically, without touching the file system. Paths given in the
   environment or on the command line are used as given (relative to the working
   directory, like any command-line path). A Unix socket address must be absolute.
5. Secrets. ``rpc_secret``, ``admin.admin_token`` and ``admin.metrics_token`` may each be
   given inline or as a file (``X`` or ``X_file``), in three places. The first place that
   gives one wins: command line (:class:`SecretOverrides`) > environment
   (``GARAGE_RPC_SECRET``, ``GARAGE_RPC_SECRET_FILE``...) > configuration file. Giving both
   ``X`` and ``X_file`` in one place is an error, even in a place that loses. Empty
   environment variables count as unset. A secret file has its trailing whitespace
   stripped and is refused when its mode gives any permission to group or others, unless
   ``allow_world_readable_secrets`` is true (again: command line > environment > file).
   ``rpc_secret`` must be 64 hex digits and is stored as 32 bytes; the repr of every value
   here hides secrets.

Host names are never resolved here: resolving is I/O that can fail transiently, and the
peering code retries it (Garage resolves ``bootstrap_peers`` while parsing, so a DNS hiccup
at startup is fatal there).
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final, final

from garage_util._units import parse_duration, parse_size
from garage_util.errors import ConfigError

__all__ = [
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
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]

# Garage's default block size (src/util/config.rs `default_block_size`): large enough that
# per-block overhead (a table row, an RPC) is small, small enough to stream and to buffer.
_DEFAULT_BLOCK_SIZE: Final = 2**20
# Bytes of block sends allowed in flight before writers wait (Garage's default): bounds
# RAM under load without slowing a single upload.
_DEFAULT_BLOCK_RAM_BUFFER_MAX: Final = 256 * 2**20
# LMDB reserves its map as address space, not RAM; 1 TiB is Garage's 64-bit default and is
# far beyond any metadata size seen in practice.
_DEFAULT_LMDB_MAP_SIZE: Final = 2**40
# zstd level 1 (Garage's default): most of the gain for a small CPU cost.
_DEFAULT_COMPRESSION_LEVEL: Final = 1
# zstd accepts levels up to 22; negative levels are "fast" modes. -99 is Garage's
# documented lower bound, far below any useful fast level.
_MIN_COMPRESSION_LEVEL: Final = -99
_MAX_COMPRESSION_LEVEL: Final = 22
# Garage's defaults (src/rpc/system.rs, src/rpc/rpc_helper.rs): a ping should answer in
# well under 10 s; a block transfer of 1 MiB over a slow link may take minutes.
_DEFAULT_RPC_PING_TIMEOUT_MSEC: Final = 10_000
_DEFAULT_RPC_TIMEOUT_MSEC: Final = 300_000
# A snapshot copies the whole metadata DB; more often than every 10 min would mostly cost
# I/O (Garage refuses shorter intervals too).
_MIN_AUTO_SNAPSHOT_INTERVAL: Final = timedelta(minutes=10)
# A node id is an Ed25519 public key: 32 bytes, written as 64 hex digits.
_NODE_ID_BYTES: Final = 32
# rpc_secret is the 32-byte network key of the secret handshake (§2.2), 64 hex digits.
_RPC_SECRET_BYTES: Final = 32
# Highest TCP port. Port 0 means "pick a free one" and is only meaningful to bind.
_MAX_PORT: Final = 65535
# Permission bits that let group or others read (or write) a file: `chmod 600` clears them.
_NOT_OWNER_ONLY_BITS: Final = 0o077
# Spellings of booleans accepted in GARAGE_ALLOW_WORLD_READABLE_SECRETS: the usual ones of
# environment variables (Garage's own parser takes only true/false; "1" is too common to refuse).
_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})
# An empty environment: `parse_config`'s default, so the core never reads os.environ.
_NO_ENV: Final[Mapping[str, str]] = MappingProxyType({})


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

    node_id: bytes
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
    """The ``[admin]`` section, with its tokens already resolved (see the module doc)."""

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

    Fields carry the names of garage.toml keys. Secrets are resolved (see the module
    doc) and hidden from ``repr``. ``replication_mode`` is not a field: it is converted into
    ``replication_factor`` and ``consistency_mode`` while parsing.

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
    lmdb_map_size: int = _DEFAULT_LMDB_MAP_SIZE
    block_size: int = _DEFAULT_BLOCK_SIZE
    block_ram_buffer_max: int = _DEFAULT_BLOCK_RAM_BUFFER_MAX
    compression_level: int | None = _DEFAULT_COMPRESSION_LEVEL
    rpc_bind_outgoing: bool = False
    rpc_public_addr: TcpAddr | None = None
    rpc_public_addr_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    rpc_ping_timeout_msec: int = _DEFAULT_RPC_PING_TIMEOUT_MSEC
    rpc_timeout_msec: int = _DEFAULT_RPC_TIMEOUT_MSEC
    bootstrap_peers: tuple[BootstrapPeer, ...] = ()
    allow_world_readable_secrets: bool = False
    allow_punycode: bool = False
    consul_discovery: ConsulDiscoveryConfig | None = None
    kubernetes_discovery: KubernetesDiscoveryConfig | None = None
    k2v_api: K2VApiConfig | None = None
    s3_web: WebConfig | None = None
    admin: AdminConfig = field(default_factory=AdminConfig)


# ---------------------------------------------------------------- accepted keys

# Keys each table accepts; anything else is refused with a hint (see the module doc).
# fmt: off
_ROOT_KEYS: Final = frozenset({
    "metadata_dir", "data_dir", "metadata_fsync", "data_fsync", "disable_scrub",
    "use_local_tz", "metadata_snapshots_dir", "metadata_auto_snapshot_interval", "db_engine",
    "lmdb_map_size", "block_size", "block_ram_buffer_max", "compression_level",
    "replication_factor", "consistency_mode", "replication_mode", "rpc_secret",
    "rpc_secret_file", "rpc_bind_addr", "rpc_bind_outgoing", "rpc_public_addr",
    "rpc_public_addr_subnet", "rpc_ping_timeout_msec", "rpc_timeout_msec", "bootstrap_peers",
    "allow_world_readable_secrets", "allow_punycode",
    "consul_discovery", "kubernetes_discovery", "s3_api", "k2v_api", "s3_web", "admin",
})
_SECTION_KEYS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    "consul_discovery": frozenset({
        "api", "consul_http_addr", "service_name", "ca_cert", "client_cert", "client_key",
        "token", "tls_skip_verify", "tags", "meta",
    }),
    "kubernetes_discovery": frozenset({"namespace", "service_name", "skip_crd"}),
    "s3_api": frozenset({"api_bind_addr", "s3_region", "root_domain"}),
    "k2v_api": frozenset({"api_bind_addr"}),
    "s3_web": frozenset({"bind_addr", "root_domain", "add_host_to_metrics"}),
    "admin": frozenset({
        "api_bind_addr", "metrics_token", "metrics_token_file", "admin_token",
        "admin_token_file", "trace_sink",
    }),
})
# fmt: on
_DATA_DIR_KEYS: Final = frozenset({"path", "capacity", "read_only"})

# Garage v1 dropped sled (it corrupted on crashes); this port never had it.
_SLED_GONE: Final = 'sled is not supported; set db_engine = "sqlite" (the default) or "lmdb"'
# Top-level keys of older Garage versions, and what replaced them.
_OBSOLETE_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sled_cache_capacity": _SLED_GONE,
        "sled_flush_every_ms": _SLED_GONE,
        "sled_sync_interval": _SLED_GONE,
        "consul_host": "obsolete: use consul_http_addr in a [consul_discovery] section",
        "consul_service_name": "obsolete: use service_name in a [consul_discovery] section",
        "kubernetes_namespace": "obsolete: use namespace in a [kubernetes_discovery] section",
        "kubernetes_service_name": (
            "obsolete: use service_name in a [kubernetes_discovery] section"
        ),
        "kubernetes_skip_crd": "obsolete: use skip_crd in a [kubernetes_discovery] section",
        "block_manager_background_tranquility": (
            "obsolete: set it at runtime with `garage worker set resync-tranquility`"
        ),
    }
)

# Legacy replication_mode values → (replication_factor, consistency_mode)
# (Garage: src/rpc/replication_mode.rs `parse_replication_mode`).
_LEGACY_REPLICATION_MODES: Final[Mapping[str, tuple[int, ConsistencyMode]]] = MappingProxyType(
    {
        "none": (1, ConsistencyMode.CONSISTENT),
        "1": (1, ConsistencyMode.CONSISTENT),
        "2": (2, ConsistencyMode.CONSISTENT),
        "2-dangerous": (2, ConsistencyMode.DANGEROUS),
        "3": (3, ConsistencyMode.CONSISTENT),
        "3-degraded": (3, ConsistencyMode.DEGRADED),
        "3-dangerous": (3, ConsistencyMode.DANGEROUS),
    }
)

# Hex digit runs of exact length: node ids in bootstrap_peers, and rpc_secret. ASCII only, so
# that no exotic Unicode digit reaches bytes.fromhex. Ports have at most 5 digits (65535).
_NODE_ID_RE: Final = re.compile(f"[0-9a-fA-F]{{{2 * _NODE_ID_BYTES}}}", re.ASCII)
_RPC_SECRET_RE: Final = re.compile(f"[0-9a-fA-F]{{{2 * _RPC_SECRET_BYTES}}}", re.ASCII)
_PORT_RE: Final = re.compile(r"[0-9]{1,5}", re.ASCII)


# ---------------------------------------------------------------- reading TOML values


def _type_name(value: object) -> str:
    """How TOML calls the type of a parsed value, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def _wrong_type(key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(key, f"expected {expected}, got {_type_name(value)}")


def _unknown_key_reason(name: str, prefix: str, allowed: Collection[str]) -> str:
    if not prefix and name in _OBSOLETE_KEYS:
        return _OBSOLETE_KEYS[name]
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        guess = f"{prefix}.{close[0]}" if prefix else close[0]
    else:
        # At the top level, maybe a key of a section: s3_region instead of s3_api.s3_region.
        elsewhere = {k: s for s, keys in _SECTION_KEYS.items() for k in keys} if not prefix else {}
        close = difflib.get_close_matches(name, elsewhere, n=1)
        guess = f"{elsewhere[close[0]]}.{close[0]}" if close else ""
    if guess:
        return f"unknown key; did you mean {guess}? (Rust Garage would ignore it silently)"
    return f"unknown key; expected one of: {', '.join(sorted(allowed))}"


@final
class _Table:
    """A TOML table being read: it knows its dotted name and refuses unknown keys."""

    __slots__ = ("_base_dir", "_data", "_prefix")

    def __init__(
        self, value: object, prefix: str, allowed: Collection[str], base_dir: Path | None
    ) -> None:
        if not isinstance(value, Mapping):
            raise _wrong_type(prefix, "a table", value)
        data: dict[str, object] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise ConfigError(prefix, f"keys must be strings, got {_type_name(name)}")
            data[name] = item
        for name in data:
            if name not in allowed:
                key = f"{prefix}.{name}" if prefix else name
                raise ConfigError(key, _unknown_key_reason(name, prefix, allowed))
        self._data = data
        self._prefix = prefix
        self._base_dir = base_dir

    def key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str) -> object | None:
        return self._data.get(name)

    def sub(self, value: object, prefix: str, allowed: Collection[str]) -> _Table:
        """A table nested in this one (same base directory)."""
        return _Table(value, prefix, allowed, self._base_dir)

    def table(self, name: str) -> _Table | None:
        value = self._data.get(name)
        if value is None:
            return None
        return self.sub(value, self.key(name), _SECTION_KEYS[name])

    def opt_str(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _wrong_type(self.key(name), "a string", value)
        if not value.strip():
            raise ConfigError(self.key(name), "must not be empty")
        return value

    def req_str(self, name: str, hint: str = "") -> str:
        value = self.opt_str(name)
        if value is None:
            raise ConfigError(self.key(name), f"is required{hint}")
        return value

    def bool_(self, name: str) -> bool:
        value = self._data.get(name, False)
        if not isinstance(value, bool):
            raise _wrong_type(self.key(name), "a boolean (true or false)", value)
        return value

    def int_(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self._data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(self.key(name), "an integer", value)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise ConfigError(self.key(name), f"must be {bound}, got {value}")
        return value

    def size(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self._data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _wrong_type(
                self.key(name), 'a number of bytes or a string with a unit, like "1MiB"', value
            )
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise ConfigError(self.key(name), str(exc)) from None
        if size < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum} bytes, got {size}")
        return size

    def resolve(self, text: str) -> Path:
        """A path from the file, relative to the file's directory (lexically)."""
        path = Path(text)
        if self._base_dir is not None and not path.is_absolute():
            path = self._base_dir / path
        return path

    def opt_path(self, name: str) -> Path | None:
        text = self.opt_str(name)
        return None if text is None else self.resolve(text)

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self._data.get(name, [])
        if not isinstance(value, list):
            raise _wrong_type(self.key(name), "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _wrong_type(f"{self.key(name)}[{i}]", "a string", item)
        return tuple(value)

    def bind_addr(self, name: str) -> BindAddr | None:
        text = self.opt_str(name)
        if text is None:
            return None
        if text.startswith("/"):
            return UnixSocketAddr(Path(text))
        try:
            return TcpAddr(*_parse_host_port(text, allow_port_zero=True))
        except ValueError as exc:
            raise ConfigError(
                self.key(name), f"{exc} (or an absolute path for a Unix socket)"
            ) from None


# ---------------------------------------------------------------- addresses


def _parse_host_port(text: str, *, allow_port_zero: bool) -> tuple[str, int]:
    """Splits ``host:port`` (IPv6 as ``[::1]:3901``); raises ValueError."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"{text!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, like [::1]:3901")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r}: the host is empty or contains spaces")
    if _PORT_RE.fullmatch(port_text) is None:
        raise ValueError(f"{text!r}: the port {port_text!r} is not a number")
    port = int(port_text)
    lowest = 0 if allow_port_zero else 1
    if not lowest <= port <= _MAX_PORT:
        raise ValueError(f"{text!r}: the port must be in {lowest}..{_MAX_PORT}")
    return host, port


def _parse_bootstrap_peer(key: str, value: object) -> BootstrapPeer:
    if not isinstance(value, str):
        raise _wrong_type(key, 'a string "<node id>@<host>:<port>"', value)
    node_hex, at, address = value.partition("@")
    if not at or _NODE_ID_RE.fullmatch(node_hex) is None:
        raise ConfigError(
            key, f"{value!r} is not <node id>@<host>:<port> with a node id of 64 hex digits"
        )
    try:
        host, port = _parse_host_port(address, allow_port_zero=False)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return BootstrapPeer(node_id=bytes.fromhex(node_hex), host=host, port=port)


# ---------------------------------------------------------------- sections


def _parse_data_dirs(root: _Table) -> tuple[DataDir, ...]:
    value = root.raw("data_dir")
    if value is None:
        raise ConfigError("data_dir", "is required: a path, or an array of {path, capacity}")
    if isinstance(value, str):
        return (DataDir(path=root.resolve(root.req_str("data_dir")), capacity_bytes=None),)
    if not isinstance(value, list):
        raise _wrong_type("data_dir", "a path or an array of tables", value)
    if not value:
        raise ConfigError("data_dir", "lists no directory")
    dirs: list[DataDir] = []
    for i, item in enumerate(value):
        t = root.sub(item, f"data_dir[{i}]", _DATA_DIR_KEYS)
        path = t.resolve(t.req_str("path"))
        read_only = t.bool_("read_only")
        if read_only and t.has("capacity"):
            raise ConfigError(t.key("capacity"), "a read_only directory must not have one")
        if not read_only and not t.has("capacity"):
            raise ConfigError(t.key("capacity"), "is required unless read_only = true")
        capacity = None if read_only else t.size("capacity", 0, minimum=1)
        for j, other in enumerate(dirs):
            if other.path == path:
                raise ConfigError(t.key("path"), f"same directory as data_dir[{j}]")
        dirs.append(DataDir(path=path, capacity_bytes=capacity, read_only=read_only))
    if all(d.read_only for d in dirs):
        raise ConfigError("data_dir", "at least one directory must not be read_only")
    return tuple(dirs)


def _parse_replication(root: _Table) -> tuple[int, ConsistencyMode]:
    legacy = root.raw("replication_mode")
    if legacy is not None:
        for name in ("replication_factor", "consistency_mode"):
            if root.has(name):
                raise ConfigError(
                    "replication_mode", f"is legacy and cannot be combined with {name}"
                )
        if not isinstance(legacy, str):
            raise _wrong_type("replication_mode", 'a string, like "3"', legacy)
        mode = _LEGACY_REPLICATION_MODES.get(legacy)
        if mode is None:
            raise ConfigError(
                "replication_mode",
                f"unknown value {legacy!r}: use {', '.join(_LEGACY_REPLICATION_MODES)}, or "
                f"better replication_factor and consistency_mode",
            )
        return mode
    if not root.has("replication_factor"):
        raise ConfigError("replication_factor", "is required (or the legacy replication_mode)")
    factor = root.int_("replication_factor", 0, minimum=1)
    mode_text = root.opt_str("consistency_mode") or ConsistencyMode.CONSISTENT.value
    try:
        return factor, ConsistencyMode(mode_text)
    except ValueError:
        choices = ", ".join(m.value for m in ConsistencyMode)
        raise ConfigError("consistency_mode", f"must be one of {choices}") from None


def _parse_db_engine(root: _Table) -> DbEngine:
    text = root.opt_str("db_engine") or DbEngine.SQLITE.value
    if text == "sled":
        raise ConfigError("db_engine", _SLED_GONE)
    try:
        return DbEngine(text)
    except ValueError:
        raise ConfigError("db_engine", f'must be "sqlite" or "lmdb", got {text!r}') from None


def _parse_compression_level(root: _Table) -> int | None:
    value = root.raw("compression_level")
    if isinstance(value, str):
        if value.lower() == "none":
            return None
        raise ConfigError("compression_level", f'must be an integer or "none", got {value!r}')
    return root.int_(
        "compression_level",
        _DEFAULT_COMPRESSION_LEVEL,
        minimum=_MIN_COMPRESSION_LEVEL,
        maximum=_MAX_COMPRESSION_LEVEL,
    )


def _parse_snapshot_interval(root: _Table) -> timedelta | None:
    value = root.raw("metadata_auto_snapshot_interval")
    key = "metadata_auto_snapshot_interval"
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong_type(key, 'a duration with a unit, like "6h"', value)
    try:
        interval = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    if interval < _MIN_AUTO_SNAPSHOT_INTERVAL:
        raise ConfigError(key, f"must be at least 10 minutes, got {value!r}")
    return interval


def _parse_rpc_bind_addr(root: _Table) -> TcpAddr:
    addr = root.bind_addr("rpc_bind_addr")
    if addr is None:
        raise ConfigError("rpc_bind_addr", 'is required, like "[::]:3901"')
    if isinstance(addr, UnixSocketAddr):
        raise ConfigError("rpc_bind_addr", "must be host:port: peers connect over TCP")
    return addr


def _parse_public_addr(root: _Table) -> TcpAddr | None:
    text = root.opt_str("rpc_public_addr")
    if text is None:
        return None
    try:
        return TcpAddr(*_parse_host_port(text, allow_port_zero=False))
    except ValueError as exc:
        raise ConfigError("rpc_public_addr", str(exc)) from None


def _parse_subnet(root: _Table) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = root.opt_str("rpc_public_addr_subnet")
    if text is None:
        return None
    try:
        if "/" not in text:
            raise ValueError("no /prefix length")
        # strict=False: "10.0.0.1/8" means "the /8 that holds 10.0.0.1", as ipnet does.
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ConfigError(
            "rpc_public_addr_subnet", f"{text!r} is not a CIDR subnet like 10.0.0.0/8: {exc}"
        ) from None


def _parse_consul(t: _Table) -> ConsulDiscoveryConfig:
    api_text = t.opt_str("api") or ConsulDiscoveryApi.CATALOG.value
    try:
        api = ConsulDiscoveryApi(api_text)
    except ValueError:
        raise ConfigError(t.key("api"), f'must be "catalog" or "agent", got {api_text!r}') from None
    if t.has("client_cert") != t.has("client_key"):
        raise ConfigError(t.key("client_key"), "client_cert and client_key go together")
    raw_meta = t.raw("meta") or {}
    if not isinstance(raw_meta, Mapping):
        raise _wrong_type(t.key("meta"), "a table of strings", raw_meta)
    meta: list[tuple[str, str]] = []
    for name, value in raw_meta.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise _wrong_type(f"{t.key('meta')}.{name}", "a string", value)
        meta.append((name, value))
    return ConsulDiscoveryConfig(
        api=api,
        consul_http_addr=t.req_str("consul_http_addr"),
        service_name=t.req_str("service_name"),
        ca_cert=t.opt_path("ca_cert"),
        client_cert=t.opt_path("client_cert"),
        client_key=t.opt_path("client_key"),
        token=t.opt_str("token"),
        tls_skip_verify=t.bool_("tls_skip_verify"),
        tags=t.str_list("tags"),
        meta=tuple(meta),
    )


def _parse_s3_web(t: _Table) -> WebConfig:
    bind_addr = t.bind_addr("bind_addr")
    if bind_addr is None:
        raise ConfigError(t.key("bind_addr"), 'is required, like "[::]:3902"')
    return WebConfig(
        bind_addr=bind_addr,
        root_domain=t.req_str("root_domain", ', like ".web.garage"'),
        add_host_to_metrics=t.bool_("add_host_to_metrics"),
    )


def _parse_k2v_api(t: _Table) -> K2VApiConfig:
    bind_addr = t.bind_addr("api_bind_addr")
    if bind_addr is None:
        raise ConfigError(t.key("api_bind_addr"), 'is required, like "[::]:3904"')
    return K2VApiConfig(api_bind_addr=bind_addr)


# ---------------------------------------------------------------- secrets


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    text = env.get(name, "").strip().lower()
    if not text:
        return None
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ConfigError("allow_world_readable_secrets", f"{name} must be true or false, got {text!r}")


def _read_secret_file(key: str, path: Path, *, allow_world_readable: bool) -> str:
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and not allow_world_readable and mode & _NOT_OWNER_ONLY_BITS:
            raise ConfigError(
                key,
                f"secret file {path} has mode {stat.S_IMODE(mode):04o}, readable by other "
                f"users: run `chmod 600 {path}`, or set allow_world_readable_secrets = true",
            )
        secret = path.read_text(encoding="utf-8").rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read secret file {path}: {exc}") from None
    if not secret:
        raise ConfigError(key, f"secret file {path} is empty")
    return secret


def _resolve_secret(
    table: _Table,
    name: str,
    *,
    env: Mapping[str, str],
    cli: tuple[str | None, str | os.PathLike[str] | None],
    allow_world_readable: bool,
) -> str | None:
    """The secret ``name`` of ``table``: command line, else environment, else file."""
    key = table.key(name)
    flag = "--" + name.replace("_", "-")
    env_name = f"GARAGE_{name.upper()}"
    env_value, env_path = env.get(env_name) or None, env.get(f"{env_name}_FILE") or None
    # (inline value, file, how to name them), in precedence order. Empty env vars are unset.
    sources = (
        (cli[0], None if cli[1] is None else Path(cli[1]), (flag, f"{flag}-file")),
        (env_value, None if env_path is None else Path(env_path), (env_name, f"{env_name}_FILE")),
        (table.opt_str(name), table.opt_path(f"{name}_file"), (key, f"{key}_file")),
    )
    for value, path, (value_name, path_name) in sources:
        if value is not None and path is not None:
            raise ConfigError(key, f"{value_name} and {path_name} are both set; give only one")
    for value, path, (value_name, _) in sources:
        if value is not None:
            if not value.strip():
                raise ConfigError(key, f"{value_name} is empty")
            return value
        if path is not None:
            return _read_secret_file(key, path, allow_world_readable=allow_world_readable)
    return None


def _parse_rpc_secret(text: str | None) -> bytes:
    if text is None:
        raise ConfigError(
            "rpc_secret",
            "is required: set rpc_secret or rpc_secret_file in the configuration file, "
            "GARAGE_RPC_SECRET or GARAGE_RPC_SECRET_FILE in the environment, or pass "
            "--rpc-secret or --rpc-secret-file",
        )
    text = text.strip()
    if _RPC_SECRET_RE.fullmatch(text) is None:
        # Never echo the secret: say only what shape it has.
        raise ConfigError(
            "rpc_secret",
            f"must be {2 * _RPC_SECRET_BYTES} hex digits ({_RPC_SECRET_BYTES} bytes, e.g. from "
            f"`openssl rand -hex 32`), got {len(text)} characters",
        )
    return bytes.fromhex(text)


# ---------------------------------------------------------------- entry points


def parse_config(
    source: str | Mapping[str, object],
    *,
    env: Mapping[str, str] = _NO_ENV,
    overrides: SecretOverrides | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Validates a configuration document and resolves its secrets.

    This is the core of :func:`load_config`, for callers that already hold the text or a
    dict (tests, embedders). Its only I/O is reading secret files.

    Args:
        source: TOML text, or the dict that ``tomllib`` made of it.
        env: environment variables to take secret overrides from (``GARAGE_RPC_SECRET``...).
            Defaults to none at all: the core never reads ``os.environ``.
        overrides: secrets given on the command line; they win over ``env`` and the file.
        base_dir: directory that relative paths of the document are relative to, normally
            the directory of the file. ``None`` leaves them relative (to the working
            directory at the time they are used).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the document is not TOML, a key is unknown, missing, of the wrong type
            or out of range, or a secret is missing, malformed or unreadable.
    """
    if isinstance(source, str):
        try:
            source = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"not valid TOML: {exc}") from None
    overrides = overrides or SecretOverrides()
    root = _Table(source, "", _ROOT_KEYS, None if base_dir is None else Path(base_dir))

    metadata_dir = root.resolve(root.req_str("metadata_dir"))
    factor, consistency_mode = _parse_replication(root)
    allow_world_readable = overrides.allow_world_readable_secrets
    if allow_world_readable is None:
        allow_world_readable = _env_bool(env, "GARAGE_ALLOW_WORLD_READABLE_SECRETS")
    if allow_world_readable is None:
        allow_world_readable = root.bool_("allow_world_readable_secrets")

    s3_api = root.table("s3_api")
    if s3_api is None:
        raise ConfigError("s3_api", "section is required (with at least s3_region)")
    admin = root.table("admin") or root.sub({}, "admin", ())
    secrets = {
        name: _resolve_secret(
            table,
            name,
            env=env,
            cli=cli,
            allow_world_readable=allow_world_readable,
        )
        for table, name, cli in (
            (root, "rpc_secret", (overrides.rpc_secret, overrides.rpc_secret_file)),
            (admin, "admin_token", (overrides.admin_token, overrides.admin_token_file)),
            (admin, "metrics_token", (overrides.metrics_token, overrides.metrics_token_file)),
        )
    }
    consul = root.table("consul_discovery")
    kubernetes = root.table("kubernetes_discovery")
    k2v_api = root.table("k2v_api")
    s3_web = root.table("s3_web")
    peers = root.raw("bootstrap_peers") or []
    if not isinstance(peers, list):
        raise _wrong_type("bootstrap_peers", "an array of strings", peers)

    return Config(
        metadata_dir=metadata_dir,
        data_dir=_parse_data_dirs(root),
        metadata_snapshots_dir=(
            root.opt_path("metadata_snapshots_dir") or metadata_dir / "snapshots"
        ),
        rpc_secret=_parse_rpc_secret(secrets["rpc_secret"]),
        rpc_bind_addr=_parse_rpc_bind_addr(root),
        replication_factor=factor,
        consistency_mode=consistency_mode,
        s3_api=S3ApiConfig(
            api_bind_addr=s3_api.bind_addr("api_bind_addr"),
            s3_region=s3_api.req_str("s3_region", ', like "garage"'),
            root_domain=s3_api.opt_str("root_domain"),
        ),
        metadata_fsync=root.bool_("metadata_fsync"),
        data_fsync=root.bool_("data_fsync"),
        disable_scrub=root.bool_("disable_scrub"),
        use_local_tz=root.bool_("use_local_tz"),
        metadata_auto_snapshot_interval=_parse_snapshot_interval(root),
        db_engine=_parse_db_engine(root),
        lmdb_map_size=root.size("lmdb_map_size", _DEFAULT_LMDB_MAP_SIZE, minimum=1),
        block_size=root.size("block_size", _DEFAULT_BLOCK_SIZE, minimum=1),
        block_ram_buffer_max=root.size("block_ram_buffer_max", _DEFAULT_BLOCK_RAM_BUFFER_MAX),
        compression_level=_parse_compression_level(root),
        rpc_bind_outgoing=root.bool_("rpc_bind_outgoing"),
        rpc_public_addr=_parse_public_addr(root),
        rpc_public_addr_subnet=_parse_subnet(root),
        rpc_ping_timeout_msec=root.int_(
            "rpc_ping_timeout_msec", _DEFAULT_RPC_PING_TIMEOUT_MSEC, minimum=1
        ),
        rpc_timeout_msec=root.int_("rpc_timeout_msec", _DEFAULT_RPC_TIMEOUT_MSEC, minimum=1),
        bootstrap_peers=tuple(
            _parse_bootstrap_peer(f"bootstrap_peers[{i}]", p) for i, p in enumerate(peers)
        ),
        allow_world_readable_secrets=allow_world_readable,
        allow_punycode=root.bool_("allow_punycode"),
        consul_discovery=None if consul is None else _parse_consul(consul),
        kubernetes_discovery=None
        if kubernetes is None
        else KubernetesDiscoveryConfig(
            namespace=kubernetes.req_str("namespace"),
            service_name=kubernetes.req_str("service_name"),
            skip_crd=kubernetes.bool_("skip_crd"),
        ),
        k2v_api=None if k2v_api is None else _parse_k2v_api(k2v_api),
        s3_web=None if s3_web is None else _parse_s3_web(s3_web),
        admin=AdminConfig(
            api_bind_addr=admin.bind_addr("api_bind_addr"),
            admin_token=secrets["admin_token"],
            metrics_token=secrets["metrics_token"],
            trace_sink=admin.opt_str("trace_sink"),
        ),
    )


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] = os.environ,
    overrides: SecretOverrides | None = None,
) -> Config:
    """Reads and validates a garage.toml file.

    Relative paths in the file are relative to the file's directory. See the module doc for
    what is validated and for the precedence of secrets.

    Args:
        path: the configuration file (the CLI's ``-c``, default ``/etc/garage.toml``).
        env: environment variables for secret overrides; the process environment unless
            given.
        overrides: secrets given on the command line.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file cannot be read (key ``""``) or its content is invalid.
    """
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read configuration file {file}: {exc}") from None
    try:
        return parse_config(text, env=env, overrides=overrides, base_dir=file.absolute().parent)
    except ConfigError as exc:
        if exc.key:
            raise
        raise ConfigError("", f"{file}: {exc.reason}") from None

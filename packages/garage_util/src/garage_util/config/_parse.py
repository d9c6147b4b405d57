"""Building a :class:`Config`: the section parsers, ``parse_config`` and ``load_config``.

:func:`load_config` is the I/O shell: it reads the file and hands its text to
:func:`parse_config` with the directory it lives in. ``parse_config`` is the core: it reads
the document through :class:`~._reader.TableReader` (which checks keys and types), converts
and cross-checks values section by section, lets :mod:`._secrets` find the secrets, and
returns one frozen :class:`Config`. Validation stops at the first problem; the order of the
checks below is the order in which problems are reported.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final

from garage_util.data import FixedBytes32
from garage_util.errors import ConfigError

from ._model import (
    DEFAULT_BLOCK_RAM_BUFFER_MAX,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_LMDB_MAP_SIZE,
    DEFAULT_RPC_PING_TIMEOUT_MSEC,
    DEFAULT_RPC_TIMEOUT_MSEC,
    AdminConfig,
    BootstrapPeer,
    Config,
    ConsistencyMode,
    ConsulDiscoveryApi,
    ConsulDiscoveryConfig,
    DataDir,
    DbEngine,
    K2VApiConfig,
    KubernetesDiscoveryConfig,
    S3ApiConfig,
    SecretOverrides,
    TcpAddr,
    UnixSocketAddr,
    WebConfig,
)
from ._reader import DATA_DIR_KEYS, ROOT_KEYS, SLED_GONE, TableReader, parse_host_port, wrong_type
from ._secrets import parse_rpc_secret, resolve_allow_world_readable, resolve_secrets
from ._units import parse_duration

__all__ = ["load_config", "parse_config"]

# zstd accepts levels up to 22; negative levels are "fast" modes. -99 is Garage's
# documented lower bound, far below any useful fast level.
_MIN_COMPRESSION_LEVEL: Final = -99
_MAX_COMPRESSION_LEVEL: Final = 22
# A snapshot copies the whole metadata DB; more often than every 10 min would mostly cost
# I/O (Garage refuses shorter intervals too).
_MIN_AUTO_SNAPSHOT_INTERVAL: Final = timedelta(minutes=10)
# A node id is an Ed25519 public key: 32 bytes, written as 64 hex digits. ASCII only, so
# that no exotic Unicode digit reaches bytes.fromhex.
_NODE_ID_BYTES: Final = 32
_NODE_ID_RE: Final = re.compile(f"[0-9a-fA-F]{{{2 * _NODE_ID_BYTES}}}", re.ASCII)
# An empty environment: `parse_config`'s default, so the core never reads os.environ.
_NO_ENV: Final[Mapping[str, str]] = MappingProxyType({})

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


# ---------------------------------------------------------------- values and sections


def _parse_bootstrap_peer(key: str, value: object) -> BootstrapPeer:
    if not isinstance(value, str):
        raise wrong_type(key, 'a string "<node id>@<host>:<port>"', value)
    node_hex, at, address = value.partition("@")
    if not at or _NODE_ID_RE.fullmatch(node_hex) is None:
        raise ConfigError(
            key, f"{value!r} is not <node id>@<host>:<port> with a node id of 64 hex digits"
        )
    try:
        host, port = parse_host_port(address, allow_port_zero=False)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return BootstrapPeer(node_id=FixedBytes32.from_hex(node_hex), host=host, port=port)


def _parse_data_dirs(root: TableReader) -> tuple[DataDir, ...]:
    value = root.raw("data_dir")
    if value is None:
        raise ConfigError("data_dir", "is required: a path, or an array of {path, capacity}")
    if isinstance(value, str):
        return (DataDir(path=root.resolve(root.req_str("data_dir")), capacity_bytes=None),)
    if not isinstance(value, list):
        raise wrong_type("data_dir", "a path or an array of tables", value)
    if not value:
        raise ConfigError("data_dir", "lists no directory")
    dirs: list[DataDir] = []
    for i, item in enumerate(value):
        t = root.sub(item, f"data_dir[{i}]", DATA_DIR_KEYS)
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


def _parse_replication(root: TableReader) -> tuple[int, ConsistencyMode]:
    legacy = root.raw("replication_mode")
    if legacy is not None:
        for name in ("replication_factor", "consistency_mode"):
            if root.has(name):
                raise ConfigError(
                    "replication_mode", f"is legacy and cannot be combined with {name}"
                )
        if not isinstance(legacy, str):
            raise wrong_type("replication_mode", 'a string, like "3"', legacy)
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


def _parse_db_engine(root: TableReader) -> DbEngine:
    text = root.opt_str("db_engine") or DbEngine.SQLITE.value
    if text == "sled":
        raise ConfigError("db_engine", SLED_GONE)
    try:
        return DbEngine(text)
    except ValueError:
        raise ConfigError("db_engine", f'must be "sqlite" or "lmdb", got {text!r}') from None


def _parse_compression_level(root: TableReader) -> int | None:
    value = root.raw("compression_level")
    if isinstance(value, str):
        if value.lower() == "none":
            return None
        raise ConfigError("compression_level", f'must be an integer or "none", got {value!r}')
    return root.int_(
        "compression_level",
        DEFAULT_COMPRESSION_LEVEL,
        minimum=_MIN_COMPRESSION_LEVEL,
        maximum=_MAX_COMPRESSION_LEVEL,
    )


def _parse_snapshot_interval(root: TableReader) -> timedelta | None:
    value = root.raw("metadata_auto_snapshot_interval")
    key = "metadata_auto_snapshot_interval"
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type(key, 'a duration with a unit, like "6h"', value)
    try:
        interval = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    if interval < _MIN_AUTO_SNAPSHOT_INTERVAL:
        raise ConfigError(key, f"must be at least 10 minutes, got {value!r}")
    return interval


def _parse_rpc_bind_addr(root: TableReader) -> TcpAddr:
    addr = root.bind_addr("rpc_bind_addr")
    if addr is None:
        raise ConfigError("rpc_bind_addr", 'is required, like "[::]:3901"')
    if isinstance(addr, UnixSocketAddr):
        raise ConfigError("rpc_bind_addr", "must be host:port: peers connect over TCP")
    return addr


def _parse_public_addr(root: TableReader) -> TcpAddr | None:
    text = root.opt_str("rpc_public_addr")
    if text is None:
        return None
    try:
        return TcpAddr(*parse_host_port(text, allow_port_zero=False))
    except ValueError as exc:
        raise ConfigError("rpc_public_addr", str(exc)) from None


def _parse_subnet(root: TableReader) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
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


def _parse_consul(t: TableReader) -> ConsulDiscoveryConfig:
    api_text = t.opt_str("api") or ConsulDiscoveryApi.CATALOG.value
    try:
        api = ConsulDiscoveryApi(api_text)
    except ValueError:
        raise ConfigError(t.key("api"), f'must be "catalog" or "agent", got {api_text!r}') from None
    if t.has("client_cert") != t.has("client_key"):
        raise ConfigError(t.key("client_key"), "client_cert and client_key go together")
    raw_meta = t.raw("meta") or {}
    if not isinstance(raw_meta, Mapping):
        raise wrong_type(t.key("meta"), "a table of strings", raw_meta)
    meta: list[tuple[str, str]] = []
    for name, value in raw_meta.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise wrong_type(f"{t.key('meta')}.{name}", "a string", value)
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


def _parse_s3_web(t: TableReader) -> WebConfig:
    bind_addr = t.bind_addr("bind_addr")
    if bind_addr is None:
        raise ConfigError(t.key("bind_addr"), 'is required, like "[::]:3902"')
    return WebConfig(
        bind_addr=bind_addr,
        root_domain=t.req_str("root_domain", ', like ".web.garage"'),
        add_host_to_metrics=t.bool_("add_host_to_metrics"),
    )


def _parse_k2v_api(t: TableReader) -> K2VApiConfig:
    bind_addr = t.bind_addr("api_bind_addr")
    if bind_addr is None:
        raise ConfigError(t.key("api_bind_addr"), 'is required, like "[::]:3904"')
    return K2VApiConfig(api_bind_addr=bind_addr)


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
    root = TableReader(source, "", ROOT_KEYS, None if base_dir is None else Path(base_dir))

    metadata_dir = root.resolve(root.req_str("metadata_dir"))
    factor, consistency_mode = _parse_replication(root)
    allow_world_readable = resolve_allow_world_readable(root, env=env, overrides=overrides)

    s3_api = root.table("s3_api")
    if s3_api is None:
        raise ConfigError("s3_api", "section is required (with at least s3_region)")
    admin = root.table("admin") or root.sub({}, "admin", ())
    secrets = resolve_secrets(
        root, admin, env=env, overrides=overrides, allow_world_readable=allow_world_readable
    )
    consul = root.table("consul_discovery")
    kubernetes = root.table("kubernetes_discovery")
    k2v_api = root.table("k2v_api")
    s3_web = root.table("s3_web")
    peers = root.raw("bootstrap_peers") or []
    if not isinstance(peers, list):
        raise wrong_type("bootstrap_peers", "an array of strings", peers)

    return Config(
        metadata_dir=metadata_dir,
        data_dir=_parse_data_dirs(root),
        metadata_snapshots_dir=(
            root.opt_path("metadata_snapshots_dir") or metadata_dir / "snapshots"
        ),
        rpc_secret=parse_rpc_secret(secrets.rpc_secret),
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
        lmdb_map_size=root.size("lmdb_map_size", DEFAULT_LMDB_MAP_SIZE, minimum=1),
        block_size=root.size("block_size", DEFAULT_BLOCK_SIZE, minimum=1),
        block_ram_buffer_max=root.size("block_ram_buffer_max", DEFAULT_BLOCK_RAM_BUFFER_MAX),
        compression_level=_parse_compression_level(root),
        rpc_bind_outgoing=root.bool_("rpc_bind_outgoing"),
        rpc_public_addr=_parse_public_addr(root),
        rpc_public_addr_subnet=_parse_subnet(root),
        rpc_ping_timeout_msec=root.int_(
            "rpc_ping_timeout_msec", DEFAULT_RPC_PING_TIMEOUT_MSEC, minimum=1
        ),
        rpc_timeout_msec=root.int_("rpc_timeout_msec", DEFAULT_RPC_TIMEOUT_MSEC, minimum=1),
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
            admin_token=secrets.admin_token,
            metrics_token=secrets.metrics_token,
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

    Relative paths in the file are relative to the file's directory. See
    :mod:`garage_util.config` for what is validated and for the precedence of secrets.

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

"""Reading TOML tables: accepted keys, "did you mean" hints, typed getters, ``host:port``.

A :class:`TableReader` wraps one table of the parsed document. It checks the table's keys
against the keys it accepts as soon as it is built, *before* any value is read, so a typo
is reported as the typo and not as the required key that it hides (steps 1 and 2 of the
theory of operation in :mod:`garage_util.config`). Its getters then check each value's TOML
type and range and raise :class:`~garage_util.errors.ConfigError` with the dotted key at
fault. Relative paths are resolved against the file's directory, lexically.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final, final

from garage_util.errors import ConfigError

from ._model import BindAddr, TcpAddr, UnixSocketAddr
from ._units import parse_size

__all__ = [
    "DATA_DIR_KEYS",
    "ROOT_KEYS",
    "SLED_GONE",
    "TableReader",
    "parse_host_port",
    "wrong_type",
]

# Highest TCP port. Port 0 means "pick a free one" and is only meaningful to bind.
_MAX_PORT: Final = 65535
# Ports have at most 5 digits (65535). ASCII only, so that no exotic Unicode digit reaches int.
_PORT_RE: Final = re.compile(r"[0-9]{1,5}", re.ASCII)

# Keys each table accepts; anything else is refused with a hint (see garage_util.config).
# fmt: off
ROOT_KEYS: Final = frozenset({
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
DATA_DIR_KEYS: Final = frozenset({"path", "capacity", "read_only"})

# Garage v1 dropped sled (it corrupted on crashes); this port never had it.
SLED_GONE: Final = 'sled is not supported; set db_engine = "sqlite" (the default) or "lmdb"'
# Top-level keys of older Garage versions, and what replaced them.
_OBSOLETE_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sled_cache_capacity": SLED_GONE,
        "sled_flush_every_ms": SLED_GONE,
        "sled_sync_interval": SLED_GONE,
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


def wrong_type(key: str, expected: str, value: object) -> ConfigError:
    """The error for ``key`` holding a value of another TOML type than ``expected``."""
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
class TableReader:
    """A TOML table being read: it knows its dotted name and refuses unknown keys."""

    __slots__ = ("_base_dir", "_data", "_prefix")

    def __init__(
        self, value: object, prefix: str, allowed: Collection[str], base_dir: Path | None
    ) -> None:
        if not isinstance(value, Mapping):
            raise wrong_type(prefix, "a table", value)
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

    def sub(self, value: object, prefix: str, allowed: Collection[str]) -> TableReader:
        """A table nested in this one (same base directory)."""
        return TableReader(value, prefix, allowed, self._base_dir)

    def table(self, name: str) -> TableReader | None:
        value = self._data.get(name)
        if value is None:
            return None
        return self.sub(value, self.key(name), _SECTION_KEYS[name])

    def opt_str(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise wrong_type(self.key(name), "a string", value)
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
            raise wrong_type(self.key(name), "a boolean (true or false)", value)
        return value

    def int_(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self._data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(self.key(name), "an integer", value)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"at least {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise ConfigError(self.key(name), f"must be {bound}, got {value}")
        return value

    def size(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self._data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise wrong_type(
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
            raise wrong_type(self.key(name), "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise wrong_type(f"{self.key(name)}[{i}]", "a string", item)
        return tuple(value)

    def bind_addr(self, name: str) -> BindAddr | None:
        text = self.opt_str(name)
        if text is None:
            return None
        if text.startswith("/"):
            return UnixSocketAddr(Path(text))
        try:
            return TcpAddr(*parse_host_port(text, allow_port_zero=True))
        except ValueError as exc:
            raise ConfigError(
                self.key(name), f"{exc} (or an absolute path for a Unix socket)"
            ) from None


def parse_host_port(text: str, *, allow_port_zero: bool) -> tuple[str, int]:
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

"""garage_util.config: the garage.toml model, its validation and its secrets."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from garage_util import FixedBytes32
from garage_util.config import (
    AdminConfig,
    BootstrapPeer,
    Config,
    ConsistencyMode,
    ConsulDiscoveryApi,
    DataDir,
    DbEngine,
    K2VApiConfig,
    S3ApiConfig,
    SecretOverrides,
    TcpAddr,
    UnixSocketAddr,
    WebConfig,
    load_config,
    parse_config,
)
from garage_util.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

SECRET = "0123456789abcdef" * 4
OTHER_SECRET = "fedcba9876543210" * 4
NODE_ID = "ab" * 32

MINIMAL: dict[str, object] = {
    "metadata_dir": "/var/lib/garage/meta",
    "data_dir": "/var/lib/garage/data",
    "replication_factor": 3,
    "rpc_secret": SECRET,
    "rpc_bind_addr": "[::]:3901",
    "s3_api": {"s3_region": "garage"},
}

MINIMAL_TOML = f"""
metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
replication_factor = 3
rpc_secret = "{SECRET}"
rpc_bind_addr = "[::]:3901"

[s3_api]
s3_region = "garage"
"""


def doc_with(*, drop: tuple[str, ...] = (), **changes: object) -> dict[str, object]:
    """MINIMAL with some keys changed or dropped."""
    return {k: v for k, v in MINIMAL.items() if k not in drop} | changes


def config_with(
    changes: Mapping[str, object] | None = None,
    /,
    *,
    drop: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    overrides: SecretOverrides | None = None,
    base_dir: Path | None = None,
    **more: object,
) -> Config:
    """parse_config on MINIMAL with some keys changed (``changes`` and ``more``) or dropped."""
    doc = doc_with(drop=drop, **(dict(changes or {}) | more))
    return parse_config(doc, env=env or {}, overrides=overrides, base_dir=base_dir)


def refusal(
    changes: Mapping[str, object] | None = None,
    /,
    *,
    drop: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    overrides: SecretOverrides | None = None,
    **more: object,
) -> ConfigError:
    """The ConfigError that config_with(...) raises."""
    with pytest.raises(ConfigError) as info:
        config_with(dict(changes or {}) | more, drop=drop, env=env, overrides=overrides)
    return info.value


def secret_file(tmp_path: Path, name: str, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(content)
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------- defaults and values


def test_minimal_config_defaults() -> None:
    cfg = parse_config(MINIMAL_TOML)
    assert cfg.metadata_dir == Path("/var/lib/garage/meta")
    assert cfg.data_dir == (DataDir(Path("/var/lib/garage/data"), None, read_only=False),)
    assert cfg.metadata_snapshots_dir == Path("/var/lib/garage/meta/snapshots")
    assert cfg.rpc_secret == bytes.fromhex(SECRET)
    assert cfg.rpc_bind_addr == TcpAddr("::", 3901)
    assert cfg.replication_factor == 3
    assert cfg.consistency_mode is ConsistencyMode.CONSISTENT
    assert cfg.s3_api == S3ApiConfig(s3_region="garage")
    assert cfg.db_engine is DbEngine.SQLITE
    assert cfg.lmdb_map_size == 2**40
    assert cfg.block_size == 2**20
    assert cfg.block_ram_buffer_max == 256 * 2**20
    assert cfg.compression_level == 1
    assert cfg.metadata_auto_snapshot_interval is None
    assert cfg.rpc_ping_timeout_msec == 10_000
    assert cfg.rpc_timeout_msec == 300_000
    assert cfg.rpc_public_addr is None
    assert cfg.rpc_public_addr_subnet is None
    assert cfg.bootstrap_peers == ()
    assert cfg.admin == AdminConfig()
    assert (cfg.consul_discovery, cfg.kubernetes_discovery, cfg.k2v_api, cfg.s3_web) == (
        None,
        None,
        None,
        None,
    )
    assert not any(
        (
            cfg.metadata_fsync,
            cfg.data_fsync,
            cfg.disable_scrub,
            cfg.use_local_tz,
            cfg.rpc_bind_outgoing,
            cfg.allow_world_readable_secrets,
            cfg.allow_punycode,
        )
    )
    assert cfg == config_with()


def test_config_is_frozen_and_hashable() -> None:
    cfg = config_with()
    with pytest.raises(AttributeError):
        cfg.block_size = 1  # type: ignore[misc]  # asserting the dataclass is frozen
    assert hash(cfg) == hash(config_with())


def test_full_config() -> None:
    cfg = parse_config(
        f"""
        metadata_dir = "/meta"
        metadata_fsync = true
        data_fsync = true
        disable_scrub = true
        use_local_tz = true
        metadata_snapshots_dir = "/snaps"
        metadata_auto_snapshot_interval = "6h"
        db_engine = "lmdb"
        lmdb_map_size = "2TiB"
        block_size = "10MiB"
        block_ram_buffer_max = "1G"
        compression_level = "none"
        replication_factor = 2
        consistency_mode = "degraded"
        rpc_secret = "{SECRET}"
        rpc_bind_addr = "0.0.0.0:3901"
        rpc_bind_outgoing = true
        rpc_public_addr = "node1.example.com:3901"
        rpc_public_addr_subnet = "10.0.0.0/8"
        rpc_ping_timeout_msec = 2000
        rpc_timeout_msec = 60000
        bootstrap_peers = ["{NODE_ID}@10.0.0.2:3901", "{NODE_ID}@[fd00::2]:3901"]
        allow_world_readable_secrets = true
        allow_punycode = true

        [[data_dir]]
        path = "/data1"
        capacity = "2T"

        [[data_dir]]
        path = "/data2"
        capacity = 1000000
        read_only = false

        [[data_dir]]
        path = "/old"
        read_only = true

        [consul_discovery]
        api = "agent"
        consul_http_addr = "https://consul:8500"
        service_name = "garage"
        ca_cert = "/ca.pem"
        client_cert = "/c.pem"
        client_key = "/k.pem"
        token = "consul-secret"
        tls_skip_verify = true
        tags = ["a", "b"]
        meta = {{ dc = "paris", rack = "3" }}

        [kubernetes_discovery]
        namespace = "garage"
        service_name = "garage-daemon"
        skip_crd = true

        [s3_api]
        s3_region = "garage"
        api_bind_addr = "[::]:3900"
        root_domain = ".s3.garage"

        [k2v_api]
        api_bind_addr = "/run/garage/k2v.sock"

        [s3_web]
        bind_addr = "[::]:0"
        root_domain = ".web.garage"
        add_host_to_metrics = true

        [admin]
        api_bind_addr = "127.0.0.1:3903"
        admin_token = "adm"
        metrics_token = "met"
        trace_sink = "http://localhost:4317"
        """
    )
    assert cfg.metadata_fsync
    assert cfg.data_fsync
    assert cfg.disable_scrub
    assert cfg.use_local_tz
    assert cfg.metadata_snapshots_dir == Path("/snaps")
    assert cfg.metadata_auto_snapshot_interval == timedelta(hours=6)
    assert cfg.db_engine is DbEngine.LMDB
    assert cfg.lmdb_map_size == 2 * 2**40
    assert cfg.block_size == 10 * 2**20
    assert cfg.block_ram_buffer_max == 10**9
    assert cfg.compression_level is None
    assert (cfg.replication_factor, cfg.consistency_mode) == (2, ConsistencyMode.DEGRADED)
    assert cfg.rpc_bind_addr == TcpAddr("0.0.0.0", 3901)
    assert cfg.rpc_bind_outgoing
    assert cfg.rpc_public_addr == TcpAddr("node1.example.com", 3901)
    assert cfg.rpc_public_addr_subnet == ipaddress.ip_network("10.0.0.0/8")
    assert (cfg.rpc_ping_timeout_msec, cfg.rpc_timeout_msec) == (2000, 60000)
    assert cfg.bootstrap_peers == (
        BootstrapPeer(FixedBytes32.from_hex(NODE_ID), "10.0.0.2", 3901),
        BootstrapPeer(FixedBytes32.from_hex(NODE_ID), "fd00::2", 3901),
    )
    assert str(cfg.bootstrap_peers[1]) == f"{NODE_ID}@[fd00::2]:3901"
    assert cfg.allow_world_readable_secrets
    assert cfg.allow_punycode
    assert cfg.data_dir == (
        DataDir(Path("/data1"), 2 * 10**12),
        DataDir(Path("/data2"), 10**6),
        DataDir(Path("/old"), None, read_only=True),
    )
    consul = cfg.consul_discovery
    assert consul is not None
    assert consul.api is ConsulDiscoveryApi.AGENT
    assert consul.consul_http_addr == "https://consul:8500"
    assert (consul.ca_cert, consul.client_cert, consul.client_key) == (
        Path("/ca.pem"),
        Path("/c.pem"),
        Path("/k.pem"),
    )
    assert consul.token == "consul-secret"
    assert consul.tls_skip_verify
    assert consul.tags == ("a", "b")
    assert consul.meta == (("dc", "paris"), ("rack", "3"))
    k8s = cfg.kubernetes_discovery
    assert k8s is not None
    assert (k8s.namespace, k8s.service_name, k8s.skip_crd) == ("garage", "garage-daemon", True)
    assert cfg.s3_api == S3ApiConfig(
        s3_region="garage", api_bind_addr=TcpAddr("::", 3900), root_domain=".s3.garage"
    )
    assert cfg.k2v_api == K2VApiConfig(api_bind_addr=UnixSocketAddr(Path("/run/garage/k2v.sock")))
    assert cfg.s3_web == WebConfig(
        bind_addr=TcpAddr("::", 0), root_domain=".web.garage", add_host_to_metrics=True
    )
    assert cfg.admin == AdminConfig(
        api_bind_addr=TcpAddr("127.0.0.1", 3903),
        admin_token="adm",
        metrics_token="met",
        trace_sink="http://localhost:4317",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[::]:3900", TcpAddr("::", 3900)),
        ("[::1]:0", TcpAddr("::1", 0)),
        ("0.0.0.0:65535", TcpAddr("0.0.0.0", 65535)),
        ("localhost:3900", TcpAddr("localhost", 3900)),
        ("/run/garage/s3.sock", UnixSocketAddr(Path("/run/garage/s3.sock"))),
    ],
)
def test_bind_addresses(text: str, expected: object) -> None:
    cfg = config_with(s3_api={"s3_region": "garage", "api_bind_addr": text})
    assert cfg.s3_api.api_bind_addr == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("mode", "factor", "consistency"),
    [
        ("none", 1, ConsistencyMode.CONSISTENT),
        ("1", 1, ConsistencyMode.CONSISTENT),
        ("2", 2, ConsistencyMode.CONSISTENT),
        ("2-dangerous", 2, ConsistencyMode.DANGEROUS),
        ("3", 3, ConsistencyMode.CONSISTENT),
        ("3-degraded", 3, ConsistencyMode.DEGRADED),
        ("3-dangerous", 3, ConsistencyMode.DANGEROUS),
    ],
)
def test_legacy_replication_mode(mode: str, factor: int, consistency: ConsistencyMode) -> None:
    cfg = config_with(drop=("replication_factor",), replication_mode=mode)
    assert (cfg.replication_factor, cfg.consistency_mode) == (factor, consistency)


@pytest.mark.parametrize(
    ("level", "expected"), [(-99, -99), (0, 0), (22, 22), ("none", None), ("None", None)]
)
def test_compression_level(level: object, expected: int | None) -> None:
    assert config_with(compression_level=level).compression_level == expected


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    secret_file(etc, "rpc_secret", SECRET + "\n")
    (etc / "garage.toml").write_text(
        """
        metadata_dir = "meta"
        data_dir = [{ path = "../data", capacity = "1T" }]
        metadata_snapshots_dir = "/abs/snaps"
        replication_factor = 1
        rpc_secret_file = "rpc_secret"
        rpc_bind_addr = "[::]:3901"
        [s3_api]
        s3_region = "garage"
        [consul_discovery]
        consul_http_addr = "http://consul:8500"
        service_name = "garage"
        ca_cert = "certs/ca.pem"
        """
    )
    cfg = load_config(etc / "garage.toml", env={})
    assert cfg.metadata_dir == etc / "meta"
    assert cfg.metadata_snapshots_dir == Path("/abs/snaps")
    assert cfg.data_dir[0].path == etc / "../data"
    assert cfg.rpc_secret == bytes.fromhex(SECRET)
    assert cfg.consul_discovery is not None
    assert cfg.consul_discovery.ca_cert == etc / "certs/ca.pem"


def test_snapshots_dir_defaults_under_the_resolved_metadata_dir(tmp_path: Path) -> None:
    cfg = config_with(metadata_dir="meta", base_dir=tmp_path)
    assert cfg.metadata_snapshots_dir == tmp_path / "meta" / "snapshots"


def test_load_config_uses_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "garage.toml"
    path.write_text(MINIMAL_TOML.replace(f'rpc_secret = "{SECRET}"', ""))
    monkeypatch.setenv("GARAGE_RPC_SECRET", OTHER_SECRET)
    assert load_config(path).rpc_secret == bytes.fromhex(OTHER_SECRET)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("changes", "drop", "key", "phrase"),
    [
        ({}, ("metadata_dir",), "metadata_dir", "is required"),
        ({}, ("data_dir",), "data_dir", "is required"),
        ({}, ("rpc_bind_addr",), "rpc_bind_addr", "is required"),
        ({}, ("s3_api",), "s3_api", "section is required"),
        ({"s3_api": {}}, (), "s3_api.s3_region", "is required"),
        ({"s3_api": "garage"}, (), "s3_api", "expected a table, got a string"),
        ({}, ("replication_factor",), "replication_factor", "replication_mode"),
        ({"replication_factor": 0}, (), "replication_factor", "at least 1"),
        (
            {"replication_factor": "3"},
            (),
            "replication_factor",
            "expected an integer, got a string",
        ),
        (
            {"replication_factor": True},
            (),
            "replication_factor",
            "expected an integer, got a boolean",
        ),
        ({"replication_factor": 3.0}, (), "replication_factor", "expected an integer, got a float"),
        ({"consistency_mode": "strict"}, (), "consistency_mode", "consistent, degraded, dangerous"),
        (
            {"replication_mode": "3"},
            (),
            "replication_mode",
            "cannot be combined with replication_factor",
        ),
        (
            {"replication_mode": "4"},
            ("replication_factor",),
            "replication_mode",
            "unknown value '4'",
        ),
        ({"replication_mode": 3}, ("replication_factor",), "replication_mode", "expected a string"),
        (
            {"replication_mode": "3", "consistency_mode": "degraded"},
            ("replication_factor",),
            "replication_mode",
            "cannot be combined with consistency_mode",
        ),
        ({"metadata_dir": ""}, (), "metadata_dir", "must not be empty"),
        ({"metadata_dir": 5}, (), "metadata_dir", "expected a string, got an integer"),
        ({"metadata_fsync": "yes"}, (), "metadata_fsync", "expected a boolean"),
        ({"db_engine": "sled"}, (), "db_engine", "sled is not supported"),
        ({"db_engine": "rocksdb"}, (), "db_engine", '"sqlite" or "lmdb"'),
        ({"block_size": "1 MiBs"}, (), "block_size", "unknown size unit"),
        ({"block_size": -1}, (), "block_size", "negative"),
        ({"block_size": 0}, (), "block_size", "at least 1 bytes"),
        ({"block_size": 1.5}, (), "block_size", "a number of bytes or a string with a unit"),
        ({"lmdb_map_size": "lots"}, (), "lmdb_map_size", "not a size"),
        ({"block_ram_buffer_max": "-5M"}, (), "block_ram_buffer_max", "not a size"),
        ({"compression_level": 23}, (), "compression_level", "in -99..22"),
        ({"compression_level": -100}, (), "compression_level", "in -99..22"),
        ({"compression_level": "max"}, (), "compression_level", 'integer or "none"'),
        (
            {"metadata_auto_snapshot_interval": "5m"},
            (),
            "metadata_auto_snapshot_interval",
            "at least 10 minutes",
        ),
        (
            {"metadata_auto_snapshot_interval": 3600},
            (),
            "metadata_auto_snapshot_interval",
            "with a unit",
        ),
        (
            {"metadata_auto_snapshot_interval": "6 hourz"},
            (),
            "metadata_auto_snapshot_interval",
            "unknown duration unit",
        ),
        ({"rpc_bind_addr": "/run/garage.sock"}, (), "rpc_bind_addr", "peers connect over TCP"),
        ({"rpc_bind_addr": "3901"}, (), "rpc_bind_addr", "not host:port"),
        ({"rpc_bind_addr": ":3901"}, (), "rpc_bind_addr", "host is empty"),
        ({"rpc_bind_addr": "0.0.0.0:65536"}, (), "rpc_bind_addr", "port must be in 0..65535"),
        ({"rpc_bind_addr": "0.0.0.0:http"}, (), "rpc_bind_addr", "not a number"),
        ({"rpc_bind_addr": "::1:3901"}, (), "rpc_bind_addr", "in brackets"),
        ({"rpc_bind_addr": "[::1]3901"}, (), "rpc_bind_addr", "not [ipv6]:port"),
        ({"rpc_bind_addr": "[example]:3901"}, (), "rpc_bind_addr", "not an IPv6 address"),
        ({"rpc_public_addr": "node1:0"}, (), "rpc_public_addr", "port must be in 1..65535"),
        ({"rpc_public_addr": "node1"}, (), "rpc_public_addr", "not host:port"),
        ({"rpc_public_addr_subnet": "10.0.0.0"}, (), "rpc_public_addr_subnet", "CIDR"),
        ({"rpc_public_addr_subnet": "10.0.0.0/33"}, (), "rpc_public_addr_subnet", "CIDR"),
        ({"rpc_ping_timeout_msec": 0}, (), "rpc_ping_timeout_msec", "at least 1"),
        ({"rpc_timeout_msec": "5m"}, (), "rpc_timeout_msec", "expected an integer"),
        ({"bootstrap_peers": f"{NODE_ID}@h:1"}, (), "bootstrap_peers", "an array of strings"),
        ({"bootstrap_peers": ["10.0.0.2:3901"]}, (), "bootstrap_peers[0]", "64 hex digits"),
        ({"bootstrap_peers": [f"{NODE_ID[:-2]}@h:1"]}, (), "bootstrap_peers[0]", "64 hex digits"),
        ({"bootstrap_peers": [f"{NODE_ID}@h:0"]}, (), "bootstrap_peers[0]", "1..65535"),
        ({"bootstrap_peers": [f"{NODE_ID}@h:1", 7]}, (), "bootstrap_peers[1]", "expected a string"),
        ({"data_dir": []}, (), "data_dir", "lists no directory"),
        ({"data_dir": 7}, (), "data_dir", "a path or an array of tables"),
        ({"data_dir": [{"path": "/d"}]}, (), "data_dir[0].capacity", "required unless read_only"),
        (
            {
                "data_dir": [
                    {"path": "/d", "capacity": "1T"},
                    {"path": "/e", "capacity": "1T", "read_only": True},
                ]
            },
            (),
            "data_dir[1].capacity",
            "must not have one",
        ),
        (
            {"data_dir": [{"path": "/d", "read_only": True}]},
            (),
            "data_dir",
            "must not be read_only",
        ),
        ({"data_dir": [{"capacity": "1T"}]}, (), "data_dir[0].path", "is required"),
        ({"data_dir": [{"path": "/d", "capacity": "0"}]}, (), "data_dir[0].capacity", "at least 1"),
        (
            {"data_dir": [{"path": "/d", "capacity": "1T"}, {"path": "/d", "capacity": "2T"}]},
            (),
            "data_dir[1].path",
            "same directory as data_dir[0]",
        ),
        ({"data_dir": ["/d"]}, (), "data_dir[0]", "expected a table"),
        ({"s3_web": {"root_domain": ".web"}}, (), "s3_web.bind_addr", "is required"),
        ({"s3_web": {"bind_addr": "[::]:3902"}}, (), "s3_web.root_domain", "is required"),
        (
            {"s3_web": {"bind_addr": "web", "root_domain": ".w"}},
            (),
            "s3_web.bind_addr",
            "Unix socket",
        ),
        ({"k2v_api": {}}, (), "k2v_api.api_bind_addr", "is required"),
        ({"admin": {"api_bind_addr": 3903}}, (), "admin.api_bind_addr", "expected a string"),
        (
            {"kubernetes_discovery": {"namespace": "g"}},
            (),
            "kubernetes_discovery.service_name",
            "is required",
        ),
        (
            {"consul_discovery": {"service_name": "g"}},
            (),
            "consul_discovery.consul_http_addr",
            "is required",
        ),
        (
            {"consul_discovery": {"consul_http_addr": "h", "service_name": "g", "api": "kv"}},
            (),
            "consul_discovery.api",
            '"catalog" or "agent"',
        ),
        (
            {
                "consul_discovery": {
                    "consul_http_addr": "h",
                    "service_name": "g",
                    "client_cert": "/c",
                }
            },
            (),
            "consul_discovery.client_key",
            "go together",
        ),
        (
            {"consul_discovery": {"consul_http_addr": "h", "service_name": "g", "tags": ["a", 1]}},
            (),
            "consul_discovery.tags[1]",
            "expected a string",
        ),
        (
            {"consul_discovery": {"consul_http_addr": "h", "service_name": "g", "meta": {"a": 1}}},
            (),
            "consul_discovery.meta.a",
            "expected a string",
        ),
        ({"allow_punycode": 1}, (), "allow_punycode", "expected a boolean"),
    ],
)
def test_refusals(changes: dict[str, object], drop: tuple[str, ...], key: str, phrase: str) -> None:
    error = refusal(changes, drop=drop)
    assert error.key == key
    assert phrase in error.reason
    assert key in str(error)


def test_invalid_toml_is_refused_with_an_empty_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("metadata_dir = ")
    assert info.value.key == ""
    assert "not valid TOML" in info.value.reason


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == ""
    assert str(path) in info.value.reason


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})  # a directory
    assert info.value.key == ""
    assert "cannot read configuration file" in info.value.reason


def test_invalid_toml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garage.toml"
    path.write_text("metadata_dir = [")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == ""
    assert str(path) in info.value.reason
    assert "not valid TOML" in info.value.reason


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("changes", "key", "hint"),
    [
        ({"s3_api": {"s3_regoin": "garage"}}, "s3_api.s3_regoin", "did you mean s3_api.s3_region?"),
        ({"block_sise": "1M"}, "block_sise", "did you mean block_size?"),
        ({"s3api": {}}, "s3api", "did you mean s3_api?"),
        ({"s3_region": "garage"}, "s3_region", "did you mean s3_api.s3_region?"),
        ({"admin": {"admin_tokn": "x"}}, "admin.admin_tokn", "did you mean admin.admin_token?"),
        (
            {"data_dir": [{"path": "/d", "capacty": "1T"}]},
            "data_dir[0].capacty",
            "did you mean data_dir[0].capacity?",
        ),
        ({"k2v_api": {"zzz": 1}}, "k2v_api.zzz", "expected one of: api_bind_addr"),
        ({"sled_cache_capacity": 1}, "sled_cache_capacity", "sled is not supported"),
        ({"consul_host": "h"}, "consul_host", "[consul_discovery]"),
    ],
)
def test_unknown_keys_are_refused_with_a_hint(
    changes: dict[str, object], key: str, hint: str
) -> None:
    error = refusal(changes)
    assert error.key == key
    assert (
        error.reason.startswith("unknown key")
        or "not supported" in error.reason
        or ("obsolete" in error.reason)
    )
    assert hint in error.reason


def test_unknown_key_is_reported_before_the_missing_key_it_hides() -> None:
    error = refusal(s3_api={"s3_regoin": "garage"})
    assert error.key == "s3_api.s3_regoin"


# ---------------------------------------------------------------- secrets


def test_missing_rpc_secret_names_the_three_ways() -> None:
    error = refusal(drop=("rpc_secret",))
    assert error.key == "rpc_secret"
    for way in ("rpc_secret_file", "GARAGE_RPC_SECRET", "--rpc-secret"):
        assert way in error.reason


@pytest.mark.parametrize("bad", ["abc", SECRET + "00", SECRET[:-1] + "g"])
def test_malformed_rpc_secret_is_refused_without_echoing_it(bad: str) -> None:
    error = refusal(rpc_secret=bad)
    assert error.key == "rpc_secret"
    assert "64 hex digits" in error.reason
    assert bad not in str(error)


def test_rpc_secret_type_error_does_not_echo_it() -> None:
    error = refusal(rpc_secret=1234567)
    assert error.key == "rpc_secret"
    assert "expected a string" in error.reason
    assert "1234567" not in str(error)


def test_rpc_secret_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    env_file = secret_file(tmp_path, "env_secret", OTHER_SECRET)
    cli = SecretOverrides(rpc_secret="11" * 32)
    assert config_with().rpc_secret == bytes.fromhex(SECRET)
    assert config_with(env={"GARAGE_RPC_SECRET": OTHER_SECRET}).rpc_secret == bytes.fromhex(
        OTHER_SECRET
    )
    assert config_with(env={"GARAGE_RPC_SECRET_FILE": str(env_file)}).rpc_secret == (
        bytes.fromhex(OTHER_SECRET)
    )
    assert config_with(env={"GARAGE_RPC_SECRET": OTHER_SECRET}, overrides=cli).rpc_secret == (
        bytes.fromhex("11" * 32)
    )
    cli_file = SecretOverrides(rpc_secret_file=secret_file(tmp_path, "cli", "22" * 32))
    assert config_with(overrides=cli_file).rpc_secret == bytes.fromhex("22" * 32)


def test_empty_env_vars_count_as_unset() -> None:
    env = {"GARAGE_RPC_SECRET": "", "GARAGE_RPC_SECRET_FILE": "", "GARAGE_ADMIN_TOKEN": ""}
    cfg = config_with(env=env)
    assert cfg.rpc_secret == bytes.fromhex(SECRET)
    assert cfg.admin.admin_token is None


def test_env_overrides_are_only_read_from_the_given_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GARAGE_RPC_SECRET", OTHER_SECRET)
    assert parse_config(MINIMAL_TOML).rpc_secret == bytes.fromhex(SECRET)


def test_tokens_precedence(tmp_path: Path) -> None:
    admin = {"admin_token": "from-file", "metrics_token": "m-file"}
    assert config_with(admin=admin).admin.admin_token == "from-file"
    env = {"GARAGE_ADMIN_TOKEN": "from-env", "GARAGE_METRICS_TOKEN_FILE": ""}
    cfg = config_with(admin=admin, env=env)
    assert (cfg.admin.admin_token, cfg.admin.metrics_token) == ("from-env", "m-file")
    metrics = secret_file(tmp_path, "metrics", "m-cli-file\n\n")
    cli = SecretOverrides(admin_token="from-cli", metrics_token_file=str(metrics))
    cfg = config_with(admin=admin, env=env, overrides=cli)
    assert (cfg.admin.admin_token, cfg.admin.metrics_token) == ("from-cli", "m-cli-file")


def test_tokens_without_admin_section() -> None:
    cfg = config_with(env={"GARAGE_METRICS_TOKEN": "m"})
    assert cfg.admin == AdminConfig(metrics_token="m")


def test_secret_file_trailing_whitespace_is_stripped(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "rpc_secret", f"{SECRET}  \n\n")
    cfg = config_with(drop=("rpc_secret",), rpc_secret_file=str(path))
    assert cfg.rpc_secret == bytes.fromhex(SECRET)


def test_secret_file_mode_0600_is_accepted_and_0644_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "rpc_secret", SECRET)
    assert config_with(drop=("rpc_secret",), rpc_secret_file=str(path)).rpc_secret == (
        bytes.fromhex(SECRET)
    )
    os.chmod(path, 0o644)
    error = refusal(drop=("rpc_secret",), rpc_secret_file=str(path))
    assert error.key == "rpc_secret"
    assert str(path) in error.reason
    assert "0644" in error.reason
    assert "chmod 600" in error.reason
    assert "allow_world_readable_secrets" in error.reason


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_secret_file_any_group_or_other_bit_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, "token", "t", mode)
    error = refusal(admin={"admin_token_file": str(path)})
    assert error.key == "admin.admin_token"
    assert f"{mode:04o}" in error.reason


@pytest.mark.parametrize(
    ("extra", "env", "overrides"),
    [
        ({"allow_world_readable_secrets": True}, {}, None),
        ({}, {"GARAGE_ALLOW_WORLD_READABLE_SECRETS": "true"}, None),
        ({}, {"GARAGE_ALLOW_WORLD_READABLE_SECRETS": "1"}, None),
        ({}, {}, SecretOverrides(allow_world_readable_secrets=True)),
        (
            {"allow_world_readable_secrets": False},
            {"GARAGE_ALLOW_WORLD_READABLE_SECRETS": "TRUE"},
            None,
        ),
    ],
)
def test_world_readable_secret_file_accepted_with_the_allow_flag(
    tmp_path: Path,
    extra: dict[str, object],
    env: dict[str, str],
    overrides: SecretOverrides | None,
) -> None:
    path = secret_file(tmp_path, "rpc_secret", SECRET, 0o644)
    doc = doc_with(drop=("rpc_secret",), rpc_secret_file=str(path)) | extra
    cfg = parse_config(doc, env=env, overrides=overrides)
    assert cfg.rpc_secret == bytes.fromhex(SECRET)
    assert cfg.allow_world_readable_secrets


def test_allow_flag_precedence_cli_false_beats_env_and_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "rpc_secret", SECRET, 0o644)
    error = refusal(
        drop=("rpc_secret",),
        rpc_secret_file=str(path),
        allow_world_readable_secrets=True,
        env={"GARAGE_ALLOW_WORLD_READABLE_SECRETS": "true"},
        overrides=SecretOverrides(allow_world_readable_secrets=False),
    )
    assert "chmod 600" in error.reason


def test_allow_flag_env_garbage_is_refused() -> None:
    error = refusal(env={"GARAGE_ALLOW_WORLD_READABLE_SECRETS": "maybe"})
    assert error.key == "allow_world_readable_secrets"
    assert "GARAGE_ALLOW_WORLD_READABLE_SECRETS" in error.reason


def test_missing_and_empty_secret_files(tmp_path: Path) -> None:
    error = refusal(drop=("rpc_secret",), rpc_secret_file=str(tmp_path / "nope"))
    assert error.key == "rpc_secret"
    assert "cannot read secret file" in error.reason
    empty = secret_file(tmp_path, "empty", "\n")
    error = refusal(admin={"metrics_token_file": str(empty)})
    assert error.key == "admin.metrics_token"
    assert "is empty" in error.reason


@pytest.mark.parametrize(
    ("changes", "env", "overrides", "phrase"),
    [
        ({"rpc_secret_file": "/s"}, {}, None, "rpc_secret and rpc_secret_file are both set"),
        (
            {},
            {"GARAGE_RPC_SECRET": SECRET, "GARAGE_RPC_SECRET_FILE": "/s"},
            None,
            "GARAGE_RPC_SECRET and GARAGE_RPC_SECRET_FILE are both set",
        ),
        (
            {},
            {},
            SecretOverrides(rpc_secret=SECRET, rpc_secret_file="/s"),
            "--rpc-secret and --rpc-secret-file are both set",
        ),
    ],
)
def test_secret_and_secret_file_together_are_refused(
    changes: dict[str, object],
    env: dict[str, str],
    overrides: SecretOverrides | None,
    phrase: str,
) -> None:
    error = refusal(changes, env=env, overrides=overrides)
    assert error.key == "rpc_secret"
    assert phrase in error.reason


def test_token_and_token_file_together_are_refused() -> None:
    error = refusal(admin={"admin_token": "a", "admin_token_file": "/a"})
    assert error.key == "admin.admin_token"
    assert "admin.admin_token and admin.admin_token_file are both set" in error.reason


def test_empty_cli_secret_is_refused() -> None:
    error = refusal(overrides=SecretOverrides(admin_token=" "))
    assert error.key == "admin.admin_token"
    assert "--admin-token is empty" in error.reason


def test_repr_hides_secrets() -> None:
    cfg = config_with(
        admin={"admin_token": "adm-token-value", "metrics_token": "met-token-value"},
        consul_discovery={"consul_http_addr": "h", "service_name": "g", "token": "consul-tok"},
    )
    overrides = SecretOverrides(rpc_secret=OTHER_SECRET, admin_token="cli-token-value")
    text = repr(cfg) + str(cfg) + repr(overrides)
    for secret in (
        SECRET,
        OTHER_SECRET,
        repr(bytes.fromhex(SECRET)),
        "adm-token-value",
        "met-token-value",
        "consul-tok",
        "cli-token-value",
    ):
        assert secret not in text
    assert "rpc_secret" not in repr(cfg)
    assert "s3_region='garage'" in repr(cfg)

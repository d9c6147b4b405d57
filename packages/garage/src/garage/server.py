"""``garage server``: run a node, and the single-node quick start (Garage: src/garage/server.rs).

:func:`run_server` builds the node (:class:`garage_model.Garage`), starts what the
configuration enables (RPC, the S3 API), and stops gracefully on SIGINT or SIGTERM: the
API servers stop accepting connections and let requests in flight finish, then the node's
services and workers stop and the metadata db is closed (queues are in the db, so they
persist).

:func:`prepare_single_node` makes a working one-node setup out of nothing: a
configuration with fresh secrets in a data directory; after the node starts,
:func:`setup_single_node` assigns the one-node layout and creates a default key and bucket
(kept across restarts).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import anyio
import anyio.abc

from garage import admin_rpc
from garage.admin_api import AdminApi
from garage.metrics import NodeMetrics
from garage_api.http import serve
from garage_api.k2v import K2VApi
from garage_api.s3 import S3Api
from garage_model import Garage
from garage_model.helper import NoSuchAccessKeyError
from garage_model.permission import ALL_PERMISSIONS
from garage_rpc.layout import NodeRole
from garage_util.clock import now_msec
from garage_web import WebServer

if TYPE_CHECKING:
    from garage_util.config import Config

__all__ = [
    "DEFAULT_BUCKET",
    "QuickStart",
    "default_data_dir",
    "prepare_single_node",
    "run_server",
    "setup_logging",
    "setup_single_node",
]

logger = logging.getLogger("garage")

#: The bucket the quick start creates.
DEFAULT_BUCKET: Final = "default"
_KEY_NAME: Final = "quick-start key"
_ZONE: Final = "dc1"
_STATE_FILE: Final = "single-node.json"
_CONFIG_FILE: Final = "garage.toml"


def setup_logging() -> None:
    """Logs to stderr at the level of ``GARAGE_LOG`` (debug, info, warning, error; info by
    default)."""
    level = os.environ.get("GARAGE_LOG", "info").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def default_data_dir() -> Path:
    """Where the quick start keeps its node: ``$XDG_DATA_HOME/garage`` (``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "garage"


def prepare_single_node(
    data_dir: Path,
    *,
    s3_api_bind: str | None = None,
    rpc_bind: str | None = None,
    admin_bind: str | None = None,
) -> Path:
    """Writes the quick start's configuration in ``data_dir`` if it has none yet; returns
    its path. An existing configuration is kept as it is (restarts keep everything).

    Args:
        data_dir: the directory of the node (created if missing).
        s3_api_bind: the S3 API address for a new configuration (default 127.0.0.1:3900).
        rpc_bind: the RPC address for a new configuration (default 127.0.0.1:3901).
        admin_bind: the admin API address for a new configuration (default 127.0.0.1:3903);
            its admin and metrics tokens are generated.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / _CONFIG_FILE
    if path.exists():
        return path
    text = f"""# Garage single-node quick start configuration (made by garage server --single-node).
metadata_dir = "meta"
data_dir = "data"
replication_factor = 1
rpc_secret = "{secrets.token_hex(32)}"
rpc_bind_addr = "{rpc_bind or "127.0.0.1:3901"}"

[s3_api]
s3_region = "garage"
api_bind_addr = "{s3_api_bind or "127.0.0.1:3900"}"

[admin]
api_bind_addr = "{admin_bind or "127.0.0.1:3903"}"
admin_token = "{secrets.token_urlsafe(32)}"
metrics_token = "{secrets.token_urlsafe(32)}"
"""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
    return path


@dataclass(frozen=True, slots=True)
class QuickStart:
    """What the quick start made: the key to use and its bucket."""

    key_id: str
    secret_key: str
    bucket: str


async def setup_single_node(garage: Garage, data_dir: Path) -> QuickStart:
    """Assigns the one-node layout if there is none, and makes (or finds) the default key
    and bucket. Idempotent: a restart finds what the first start made."""
    layout = garage.layout
    if layout.history.current.version == 0:
        capacity = max(shutil.disk_usage(data_dir).total, 1 << 30)
        history = layout.history.stage_role(
            garage.node_id, NodeRole(_ZONE, capacity, ()), now_msec()
        )
        applied, _ = history.apply_staged_changes(1, now_msec())
        await layout.update(applied)
        logger.info("assigned the single-node layout (zone %s)", _ZONE)
    state_path = data_dir / _STATE_FILE
    locked = garage.locked_helper
    if state_path.exists():
        state = json.loads(state_path.read_text())
        try:
            key = await garage.bucket_helper.get_existing_key(state["key_id"])
        except NoSuchAccessKeyError:
            key = None
        if key is not None and key.params is not None:
            return QuickStart(key.key_id, key.params.secret_key, state["bucket"])
    key = await locked.create_key(_KEY_NAME)
    await locked.allow_key_create_bucket(key.key_id, True)
    bucket_id = await garage.bucket_helper.resolve_global_bucket_name(DEFAULT_BUCKET)
    if bucket_id is None:
        bucket_id = await locked.create_bucket(DEFAULT_BUCKET)
    await locked.set_bucket_key_permissions(bucket_id, key.key_id, ALL_PERMISSIONS)
    state_path.write_text(json.dumps({"key_id": key.key_id, "bucket": DEFAULT_BUCKET}))
    assert key.params is not None
    return QuickStart(key.key_id, key.params.secret_key, DEFAULT_BUCKET)


def _print_quick_start(
    out: TextIO,
    quick: QuickStart,
    s3: str | None,
    region: str,
    dir: Path,
    *,
    admin: str | None = None,
    config: Config | None = None,
) -> None:
    endpoint = f"http://{s3}"
    lines = [
        f"Garage is running as a single node (data in {dir}).",
        f"  S3 endpoint: {endpoint}",
        f"  S3 region:   {region}",
        f"  Key ID:      {quick.key_id}",
        f"  Secret key:  {quick.secret_key}",
        f"  Bucket:      {quick.bucket}",
    ]
    if admin is not None:
        tokens = None if config is None else config.admin
        lines.append(f"  Admin API:   {'unix:' if admin.startswith('/') else 'http://'}{admin}")
        if tokens is not None and tokens.admin_token is not None:
            lines.append(f"  Admin token: {tokens.admin_token}")
        if tokens is not None and tokens.metrics_token is not None:
            lines.append(f"  Metrics token: {tokens.metrics_token}")
    lines += [
        "Try it:",
        f"  AWS_ACCESS_KEY_ID={quick.key_id} AWS_SECRET_ACCESS_KEY={quick.secret_key} "
        f"AWS_DEFAULT_REGION={region} aws --endpoint-url {endpoint} s3 ls s3://{quick.bucket}",
        "Stop it with Ctrl-C; start it again with the same command.",
    ]
    print("\n".join(lines), file=out, flush=True)


async def run_server(
    config: Config,
    *,
    single_node_dir: Path | None = None,
    out: TextIO = sys.stdout,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Runs a node until SIGINT or SIGTERM, then stops gracefully.

    Args:
        config: the node's configuration.
        single_node_dir: the quick start's directory: set the node up as a single node and
            print the endpoint and the key.
        out: where the quick start's summary goes.
        task_status: started once everything listens.
    """
    garage = await anyio.to_thread.run_sync(Garage, config)
    admin_rpc.register(garage)
    metrics = NodeMetrics(garage)
    api_stop = anyio.Event()
    async with anyio.create_task_group() as node:
        rpc_addr = await node.start(garage.run)
        logger.info("node %s: RPC on %s:%s", garage.node_id.hex()[:16], *rpc_addr)
        async with anyio.create_task_group() as apis:
            s3_addr = None
            bind = config.s3_api.api_bind_addr
            if bind is not None:
                handler = metrics.instrument("s3", S3Api(garage).handle)
                s3 = functools.partial(serve, handler, bind, shutdown=api_stop)
                s3_addr = await apis.start(s3)
                logger.info("S3 API on %s", s3_addr)
            k2v_config = config.k2v_api
            if k2v_config is not None:
                k2v_handler = metrics.instrument("k2v", K2VApi(garage).handle)
                k2v = functools.partial(
                    serve, k2v_handler, k2v_config.api_bind_addr, shutdown=api_stop
                )
                k2v_addr = await apis.start(k2v)
                logger.info("K2V API on %s", k2v_addr)
            web_config = config.s3_web
            if web_config is not None:
                web_handler = metrics.instrument("web", WebServer(garage, web_config).handle)
                web = functools.partial(serve, web_handler, web_config.bind_addr, shutdown=api_stop)
                web_addr = await apis.start(web)
                logger.info("web on %s (root domain %s)", web_addr, web_config.root_domain)
            admin_addr = None
            admin_bind = config.admin.api_bind_addr
            if admin_bind is not None:
                admin_api = AdminApi(garage, config, metrics)
                admin_handler = metrics.instrument("admin", admin_api.handle)
                # Garage's mode for the admin socket: only its owner and group may connect.
                admin = functools.partial(
                    serve, admin_handler, admin_bind, shutdown=api_stop, unix_mode=0o220
                )
                admin_addr = await apis.start(admin)
                logger.info("admin API on %s", admin_addr)
            if single_node_dir is not None:
                quick = await setup_single_node(garage, single_node_dir)
                region = config.s3_api.s3_region
                _print_quick_start(
                    out, quick, s3_addr, region, single_node_dir, admin=admin_addr, config=config
                )
            task_status.started()
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    logger.info("%s: stopping gracefully", signal.Signals(signum).name)
                    break
            api_stop.set()  # the API servers finish their requests, then return
        node.cancel_scope.cancel()  # then the node's services and workers stop
    logger.info("stopped")

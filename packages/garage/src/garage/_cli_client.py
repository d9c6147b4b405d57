"""How the ``garage`` CLI reaches a running node (Garage: src/garage/main.rs, cli_command).

Finding the node (:func:`resolve_target`), in Garage's order:

1. the secret: ``-s/--rpc-secret``, ``--rpc-secret-file``, the ``GARAGE_RPC_SECRET[_FILE]``
   environment, then the configuration file (``load_config`` applies that precedence);
2. the node: ``-h/--rpc-host <id>@<host>:<port>`` (``GARAGE_RPC_HOST``), else the id in
   ``<metadata_dir>/node_key.pub`` and the address ``rpc_public_addr``, or the host and port
   of ``rpc_bind_addr`` (``127.0.0.1`` when it binds every address).

The configuration is read from ``-c`` (``GARAGE_CONFIG_FILE``, default
``/etc/garage.toml``); it may be missing when ``--rpc-host`` and a secret are given. Its
relative paths are relative to its own directory, so ``garage -c DIR/garage.toml`` works
for a ``garage server --single-node --data-dir DIR`` node from anywhere.

Talking to it (:class:`Client`): a throw-away node key, a transport that does not listen,
one connection (the secret handshake proves both sides know ``rpc_secret``), then calls.
Every failure becomes a :class:`CliError` whose message is the one line the CLI prints.
A call that takes more than a second shows its elapsed time on stderr when stderr is a
terminal.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, TypeVar, final

import anyio
import anyio.abc

from garage_rpc.net import (
    PRIO_NORMAL,
    HandshakeError,
    NetApp,
    NodeKey,
    NoSuchEndpoint,
    RemoteError,
    RpcError,
)
from garage_util.config import Config, SecretOverrides, load_config
from garage_util.data import FixedBytes32
from garage_util.errors import ConfigError, GarageError

from .admin_rpc import ADMIN_RPC, AdminRequest, AdminResponse, Failed, parse_node_address

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from garage_rpc.net import Endpoint

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "DEFAULT_CONFIG",
    "CliError",
    "Client",
    "Target",
    "node_address",
    "open_client",
    "read_config",
    "read_node_id",
    "resolve_target",
]

ReqT = TypeVar("ReqT")
RespT = TypeVar("RespT")
R = TypeVar("R", bound=AdminResponse)

#: Where the configuration is when neither -c nor GARAGE_CONFIG_FILE say (Garage's).
DEFAULT_CONFIG: Final = Path("/etc/garage.toml")
#: Connecting and handshaking: a node on the same machine answers in milliseconds; a
#: remote one within a few seconds unless it is down.
CONNECT_TIMEOUT_S: Final = 10.0
#: One admin call: most answer at once, some read every row of a table (bucket list on a
#: big cluster, stats); Garage's RPC timeout (300 s) bounds them.
CALL_TIMEOUT_S: Final = 300.0
#: Calls shorter than this show no progress line.
_PROGRESS_AFTER_S: Final = 1.0
_NODE_PUB_FILE: Final = "node_key.pub"
_SECRET_LEN: Final = 32


class CliError(GarageError):
    """Raised for anything the CLI reports as ``garage: <message>`` and exit status 1."""


@dataclass(frozen=True, slots=True)
class Target:
    """The node to talk to.

    Attributes:
        node_id: its id (public key).
        host: where it listens for RPC.
        port: its RPC port.
        secret: the cluster's ``rpc_secret`` (32 bytes).
        config: the configuration read, if any.
    """

    node_id: FixedBytes32
    host: str
    port: int
    secret: bytes
    config: Config | None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.node_id.short_hex()} at {host}:{self.port}"


def read_config(
    path: str | None, *, overrides: SecretOverrides, env: Mapping[str, str] = os.environ
) -> Config | None:
    """The configuration at ``path`` (None: the default file, which may be absent).

    Raises:
        CliError: the file is unreadable or invalid (or an explicit path is missing).
    """
    file = DEFAULT_CONFIG if path is None else Path(path)
    if path is None and not file.exists():
        return None
    try:
        return load_config(file, env=env, overrides=overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def read_node_id(metadata_dir: Path) -> FixedBytes32:
    """The id of the node whose metadata directory this is (``node_key.pub``).

    Raises:
        CliError: the file is missing or malformed.
    """
    path = metadata_dir / _NODE_PUB_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(
            f"cannot read the node id from {path} ({exc.strerror or exc}): has the node been "
            "started once? Or give the node with -h/--rpc-host <id>@<host>:<port>"
        ) from None
    try:
        return FixedBytes32(data)
    except ValueError:
        raise CliError(f"{path} does not hold a node id (32 bytes)") from None


def node_address(config: Config) -> tuple[str, int]:
    """Where the node of ``config`` listens for RPC, as seen from this machine.

    Raises:
        CliError: the configuration binds port 0 (the port is not known in advance).
    """
    if config.rpc_public_addr is not None:
        return config.rpc_public_addr.host, config.rpc_public_addr.port
    bind = config.rpc_bind_addr
    if bind.port == 0:
        raise CliError(
            f"rpc_bind_addr ({bind}) picks a free port at startup, so the CLI cannot know "
            "it: give the node with -h/--rpc-host <id>@<host>:<port>"
        )
    host = bind.host
    try:
        if ipaddress.ip_address(host).is_unspecified:  # 0.0.0.0 or ::: every address
            host = "::1" if ":" in host else "127.0.0.1"
    except ValueError:
        pass  # a host name: use it as is
    return host, bind.port


def _secret_from_flags(overrides: SecretOverrides, env: Mapping[str, str]) -> bytes:
    """The ``rpc_secret`` without a configuration file: flags, then environment."""
    text = overrides.rpc_secret or env.get("GARAGE_RPC_SECRET") or None
    file = overrides.rpc_secret_file or env.get("GARAGE_RPC_SECRET_FILE") or None
    if text is None and file is not None:
        try:
            text = Path(file).read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the rpc secret file {file}: {exc.strerror}") from None
    if text is None:
        raise CliError(
            f"no configuration file ({DEFAULT_CONFIG} does not exist): give one with -c, or "
            "give the rpc secret with -s/--rpc-secret"
        )
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != _SECRET_LEN:
        raise CliError("the rpc secret must be 64 hex digits")
    return secret


def resolve_target(
    *,
    config_path: str | None,
    rpc_host: str | None,
    overrides: SecretOverrides,
    env: Mapping[str, str] = os.environ,
) -> Target:
    """Finds the node to talk to and the secret to talk with (see the module docstring).

    Raises:
        CliError: something is missing or malformed; the message says what to give.
    """
    config = read_config(config_path, overrides=overrides, env=env)
    secret = config.rpc_secret if config is not None else _secret_from_flags(overrides, env)
    if rpc_host:
        try:
            node_id, host, port = parse_node_address(rpc_host)
        except ValueError as exc:
            raise CliError(f"invalid -h/--rpc-host: {exc}") from None
        return Target(node_id, host, port, secret, config)
    if config is None:
        raise CliError(
            f"no configuration file ({DEFAULT_CONFIG} does not exist): give one with -c, or "
            "give the node with -h/--rpc-host <id>@<host>:<port>"
        )
    node_id = read_node_id(config.metadata_dir)
    host, port = node_address(config)
    return Target(node_id, host, port, secret, config)


@final
class Client:
    """A connection to one node, for the duration of one CLI command.

    Build it with :func:`open_client`.
    """

    __slots__ = ("_err", "_netapp", "_tg", "target")

    def __init__(
        self, netapp: NetApp, target: Target, tg: anyio.abc.TaskGroup, err: TextIO
    ) -> None:
        self._netapp = netapp
        self._tg = tg
        self._err = err
        self.target = target

    async def call(self, endpoint: Endpoint[ReqT, RespT], msg: ReqT, *, what: str = "") -> RespT:
        """Calls ``endpoint`` on the node.

        Args:
            endpoint: the endpoint.
            msg: the request.
            what: what the call does, for the progress line of slow calls.

        Raises:
            CliError: the call failed, timed out, or the node does not know the endpoint.
        """
        ticker = self._progress(what or "waiting for the node")
        try:
            with anyio.fail_after(CALL_TIMEOUT_S):
                return await self._netapp.call(self.target.node_id, endpoint, msg, prio=PRIO_NORMAL)
        except TimeoutError:
            raise CliError(
                f"no answer from node {self.target} within {CALL_TIMEOUT_S:.0f} s"
            ) from None
        except NoSuchEndpoint:
            raise CliError(
                f"node {self.target} does not answer {endpoint.path}: is it a garage server "
                "of this version?"
            ) from None
        except RemoteError as exc:
            raise CliError(f"node {self.target} failed: {exc.message}") from None
        except RpcError as exc:
            raise CliError(f"lost the connection to node {self.target}: {exc}") from None
        finally:
            ticker.cancel()

    async def admin(self, request: AdminRequest, *, what: str = "") -> AdminResponse:
        """Sends an admin request; a refusal (``Failed``) becomes a :class:`CliError`."""
        response = await self.call(ADMIN_RPC, request, what=what)
        if isinstance(response, Failed):
            raise CliError(response.message)
        return response

    async def expect(self, request: AdminRequest, kind: type[R], *, what: str = "") -> R:
        """Sends an admin request whose answer must be a ``kind``.

        Raises:
            CliError: refused, or answered with something else.
        """
        response = await self.admin(request, what=what)
        if not isinstance(response, kind):
            raise CliError(
                f"unexpected answer from node {self.target}: {type(response).__name__} "
                f"instead of {kind.__name__}"
            )
        return response

    def _progress(self, what: str) -> anyio.CancelScope:
        """Shows ``what... N s`` on stderr while a call runs, once it took a second."""
        scope = anyio.CancelScope()
        if not self._err.isatty():
            return scope
        err = self._err

        async def tick() -> None:
            shown = False
            try:
                with scope:
                    elapsed = 0
                    while True:
                        await anyio.sleep(_PROGRESS_AFTER_S)
                        elapsed += 1
                        shown = True
                        print(f"\r{what}... {elapsed} s", end="", file=err, flush=True)
            finally:
                if shown:
                    print("\r\033[K", end="", file=err, flush=True)

        self._tg.start_soon(tick)
        return scope


@asynccontextmanager
async def open_client(target: Target, *, err: TextIO = sys.stderr) -> AsyncIterator[Client]:
    """Connects to ``target`` and yields a :class:`Client`; disconnects on exit.

    Exceptions raised in the body propagate unchanged (not in an exception group).

    Raises:
        CliError: the node cannot be reached, or the handshake failed.
    """
    netapp = NetApp(NodeKey.generate(), target.secret, handshake_timeout_s=CONNECT_TIMEOUT_S)
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(netapp.run)
        try:
            await _connect(netapp, target)
            yield Client(netapp, target, tg, err)
        except Exception as exc:  # re-raised below, outside the task group
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _connect(netapp: NetApp, target: Target) -> None:
    where = f"{target.host}:{target.port}"
    try:
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            await netapp.connect(target.node_id, (target.host, target.port))
    except TimeoutError:
        raise CliError(f"no answer from node {target} within {CONNECT_TIMEOUT_S:.0f} s") from None
    except HandshakeError as exc:
        raise CliError(
            f"the node at {where} refused the connection ({exc}): check that rpc_secret is "
            "the cluster's and that the node id is right"
        ) from None
    except RpcError as exc:
        raise CliError(f"{exc}; is `garage server` running there?") from None

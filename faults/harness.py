"""The cluster under test: real node processes on 127.0.0.N inside a private network namespace.

Theory of operation (fault-testing.md §3.2)
--------------------------------------------
**Namespace.** ``python -m faults`` re-executes itself under ``unshare --net --mount``
(:func:`reexec_in_namespace`; ``unshare -r`` too when not root) and brings ``lo`` up
(:func:`enter_namespace`). The new network namespace has only a loopback interface and no
route out of it, so nothing a run does can reach another machine, and its nftables ruleset
is its own: partitions never touch the host's firewall. The mount namespace lets the
disk-full nemesis mount tmpfs directories that nobody else sees. Both vanish with the runner.

**Nodes.** Node ``i`` (1-based) listens for RPC on ``127.0.0.(10+i):3901`` and for S3 on
``127.0.0.(10+i):3900`` and binds its outgoing RPC sockets to its own address
(``rpc_bind_outgoing``), so an nftables rule on a pair of addresses cuts exactly that
node-to-node link. Clients and the CLI connect from 127.0.0.1, which no rule names: in
Jepsen's style, a client always reaches its node, and partitions cut only the cluster.
Each node is ``python -m faults._node`` (``garage server`` with shortened timings) in its
own session (``start_new_session``), so ``killpg`` stops, pauses or kills it whole. When a
run skews clocks, each node reads its wall clock's offset from its own file
(:meth:`NodeProc.set_clock_offset` rewrites it), through libfaketime
(``FAKETIME_DONT_FAKE_MONOTONIC=1`` keeps trio's timeouts true) or the lighter in-process
hook of :mod:`faults._clockskew`. A node's stdout and stderr go to ``node.log`` in its
directory.

**Cluster.** Node ids are generated before the nodes start (as a node does on its first
start), every node lists the others as ``bootstrap_peers``, and the cluster is laid out with
the ``garage`` CLI as an operator does: ``layout assign -z dcN -c 1G`` for each storage
node (``-g`` for the others: gateways) and ``layout apply --version <shown + 1>``, then one
key and one bucket. The CLI runs
in-process (its entry point, in a worker thread, one command at a time) against any node.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from garage.cli import main as garage_cli
from garage_rpc.net import NodeKey

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "BUCKET",
    "NAMESPACE_ENV",
    "REGION",
    "RPC_PORT",
    "S3_PORT",
    "SKIP_EXIT",
    "CliResult",
    "Cluster",
    "ClusterSpec",
    "HarnessError",
    "NodeProc",
    "Tools",
    "enter_namespace",
    "in_namespace",
    "node_host",
    "reexec_in_namespace",
]

logger = logging.getLogger(__name__)

#: Set (to "1") in the environment of the runner re-executed inside its own namespaces.
NAMESPACE_ENV: Final = "GARAGE_FAULTS_NETNS"
#: Exit status of a run that could not happen on this machine (automake's "skipped").
SKIP_EXIT: Final = 77
#: Every node uses Garage's usual ports: each has its own address in the namespace.
RPC_PORT: Final = 3901
S3_PORT: Final = 3900
REGION: Final = "garage"
#: The bucket every workload writes to.
BUCKET: Final = "faults"
#: Node i is 127.0.0.(10+i): clear of 127.0.0.1, the clients' and the CLI's source address.
_FIRST_OCTET: Final = 10
#: A node imports the whole stack (~2 s of CPU on a loaded 2-core machine) before listening.
_START_TIMEOUT_S: Final = 60.0
#: A graceful stop lets requests finish, then workers get Garage's 8 s exit deadline.
_STOP_TIMEOUT_S: Final = 20.0
#: Forming the cluster waits for gossip (layout, bucket) to reach every node.
_FORM_TIMEOUT_S: Final = 90.0
#: libfaketime for multi-threaded programs (the node runs worker threads).
_FAKETIME_LIB: Final = "libfaketimeMT.so.1"
#: prctl option: the signal a child gets when its parent thread exits (linux/prctl.h).
_PR_SET_PDEATHSIG: Final = 1
#: The repository root, so that ``python -m faults._node`` imports this package.
_ROOT: Final = Path(__file__).resolve().parent.parent


class HarnessError(Exception):
    """The cluster could not be started, formed or driven (not a finding about Garage)."""


def node_host(index: int) -> str:
    """The loopback address of node ``index`` (1-based): ``127.0.0.(10+index)``."""
    return f"127.0.0.{_FIRST_OCTET + index}"


# ---------------------------------------------------------------- namespace


def in_namespace() -> bool:
    """Whether this process is the runner re-executed inside its private namespaces."""
    return os.environ.get(NAMESPACE_ENV) == "1"


def reexec_in_namespace(argv: Sequence[str]) -> int:
    """Runs ``python -m faults <argv>`` inside new network and mount namespaces; its status.

    Returns :data:`SKIP_EXIT` (after saying why on stderr) when ``unshare`` is missing or
    refused: fault runs need a private network namespace and never run without one.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        print("faults: skipped: `unshare` (util-linux) is not installed", file=sys.stderr)
        return SKIP_EXIT
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    probe = subprocess.run(
        [unshare, *userns, "--net", "--mount", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        why = probe.stderr.strip() or f"status {probe.returncode}"
        print(f"faults: skipped: cannot make a private network namespace: {why}", file=sys.stderr)
        return SKIP_EXIT
    env = dict(os.environ, **{NAMESPACE_ENV: "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    cmd = [unshare, *userns, "--net", "--mount", "--propagation", "private"]
    return subprocess.call([*cmd, sys.executable, "-m", "faults", *argv], env=env, cwd=_ROOT)


def enter_namespace() -> None:
    """Brings up ``lo`` in the fresh namespace and checks that no route leaves it.

    Raises:
        HarnessError: not in the namespace, ``ip`` failed, or a non-loopback route exists.
    """
    if not in_namespace():
        raise HarnessError("the fault runner must run inside its own network namespace")
    ip = shutil.which("ip")
    if ip is None:
        raise HarnessError("`ip` (iproute2) is not installed")
    subprocess.run([ip, "link", "set", "lo", "up"], check=True)
    routes = subprocess.run([ip, "-4", "route", "show"], capture_output=True, text=True)
    if routes.stdout.strip():
        raise HarnessError(f"the namespace has routes out of it: {routes.stdout.strip()}")


# ---------------------------------------------------------------- tools


@dataclass(frozen=True, slots=True)
class Tools:
    """The Debian tools the nemeses use, or why each is missing.

    Attributes:
        nft: the ``nft`` program (package nftables), for partitions.
        faketime_lib: libfaketime (package faketime), for clock skew.
        missing: tool name -> the reason it is not available.
    """

    nft: str | None
    faketime_lib: Path | None
    missing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls) -> Tools:
        """Finds (installing with apt-get as root when missing) nftables and faketime."""
        from tests.debian import find_or_install  # the repository's apt-get helper

        missing: dict[str, str] = {}
        nft, why = find_or_install("nft", "nftables")
        if nft is None:
            missing["nft"] = why
        lib: Path | None = None
        faketime, why = find_or_install("faketime")
        if faketime is None:
            missing["faketime"] = why
        else:
            found = sorted(Path("/usr/lib").glob(f"*/faketime/{_FAKETIME_LIB}"))
            if found:
                lib = found[0]
            else:
                missing["faketime"] = f"faketime is installed but no {_FAKETIME_LIB} was found"
        return cls(nft, lib, missing)


# ---------------------------------------------------------------- one node


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """What cluster a run starts.

    Attributes:
        nodes: how many node processes.
        storage_nodes: how many of them get a storage role at the start (the others wait
            for a layout nemesis to add them); ``None``: all, at most 5.
        consistency_mode: ``consistent``, ``degraded`` or ``dangerous``.
        mutation: ``GARAGE_TEST_MUTATION`` of the nodes ("" for the real build).
        block_size_bytes: the nodes' ``block_size``.
        tmpfs: put each node's ``data`` or ``meta`` directory on its own tmpfs ("" for none).
        tmpfs_mib: the size of those tmpfs mounts.
        clock: how nodes read their skewed clock file: ``"hook"`` (:mod:`faults._clockskew`),
            ``"faketime"`` (libfaketime), or "" (real clock: no clock nemesis).
    """

    nodes: int = 3
    storage_nodes: int | None = None
    consistency_mode: str = "consistent"
    mutation: str = ""
    # 1 MiB blocks: a 1.5 MiB object spans two blocks (fault-testing.md §3.3).
    block_size_bytes: int = 1 << 20
    tmpfs: str = ""
    tmpfs_mib: int = 256
    clock: str = ""

    @property
    def initial_storage(self) -> int:
        """How many nodes are storage nodes in layout version 1."""
        return self.storage_nodes if self.storage_nodes is not None else min(self.nodes, 5)


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one ``garage`` command printed, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


@final
class NodeProc:
    """One node process, its directory (config, metadata, data, clock file) and address.

    Args:
        index: the node's number, from 1.
        root: the run's directory; the node's is ``root/node<index>``.
        spec: the cluster being started.
        tools: where libfaketime is (None: the node runs on the real clock).
    """

    def __init__(self, index: int, root: Path, spec: ClusterSpec, tools: Tools) -> None:
        self.index = index
        self.host = node_host(index)
        self.dir = root / f"node{index}"
        self.meta = self.dir / "meta"
        self.data = self.dir / "data"
        self.config = self.dir / "garage.toml"
        self.clock_file = self.dir / "faketime"
        self.log = self.dir / "node.log"
        self.node_id = ""
        self.clock_offset_s = 0.0
        self.paused = False
        self._spec = spec
        self._tools = tools
        self._proc: subprocess.Popen[bytes] | None = None
        self._mounted: list[Path] = []

    def __repr__(self) -> str:
        return f"<node{self.index} {self.host}>"

    @property
    def name(self) -> str:
        """``n<index>``, as history events name nodes."""
        return f"n{self.index}"

    @property
    def rpc_address(self) -> str:
        """``<node id>@<host>:3901``, as ``bootstrap_peers`` and ``-h`` take it."""
        return f"{self.node_id}@{self.host}:{RPC_PORT}"

    @property
    def endpoint(self) -> str:
        """The node's S3 endpoint URL."""
        return f"http://{self.host}:{S3_PORT}"

    @property
    def running(self) -> bool:
        """Whether the process exists (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def prepare(self) -> None:
        """Creates the directories (on tmpfs if the spec says so) and the node key."""
        for d in (self.meta, self.data):
            d.mkdir(parents=True, exist_ok=True)
        if self._spec.tmpfs:
            target = self.data if self._spec.tmpfs == "data" else self.meta
            size = f"size={self._spec.tmpfs_mib}m"
            subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(target)], check=True)
            self._mounted.append(target)
        self.node_id = NodeKey.load_or_create(self.meta).node_id.hex()
        self.clock_file.write_text("+0s\n")

    def write_config(self, secret: str, peers: Sequence[str]) -> None:
        """Writes ``garage.toml``: this node's addresses, the cluster's peers and settings."""
        bootstrap = ", ".join(f'"{p}"' for p in peers)
        self.config.write_text(
            f'metadata_dir = "{self.meta}"\n'
            f'data_dir = "{self.data}"\n'
            f"replication_factor = 3\n"
            f'consistency_mode = "{self._spec.consistency_mode}"\n'
            f"block_size = {self._spec.block_size_bytes}\n"
            f'rpc_secret = "{secret}"\n'
            f'rpc_bind_addr = "{self.host}:{RPC_PORT}"\n'
            f'rpc_public_addr = "{self.host}:{RPC_PORT}"\n'
            f"rpc_bind_outgoing = true\n"
            f"rpc_timeout_msec = 5000\n"
            f"rpc_ping_timeout_msec = 2000\n"
            f"bootstrap_peers = [{bootstrap}]\n"
            f"[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "{self.host}:{S3_PORT}"\n'
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GARAGE_", "FAKETIME"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env["GARAGE_LOG"] = os.environ.get("FAULTS_NODE_LOG", "warning")
        if self._spec.mutation:
            env["GARAGE_TEST_MUTATION"] = self._spec.mutation
        lib = self._tools.faketime_lib
        if self._spec.clock == "faketime" and lib is not None:
            env["LD_PRELOAD"] = str(lib)
            env["FAKETIME_TIMESTAMP_FILE"] = str(self.clock_file)
            env["FAKETIME_NO_CACHE"] = "1"
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        elif self._spec.clock == "hook":
            env["FAULTS_CLOCK_FILE"] = str(self.clock_file)
        return env

    def start(self) -> None:
        """Starts the process (returns at once: see :meth:`wait_listening`)."""
        if self.running:
            raise HarnessError(f"{self} is already running")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "faults._node", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._env(),
                cwd=_ROOT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.paused = False

    async def wait_listening(self) -> None:
        """Waits until both ports accept connections.

        Raises:
            HarnessError: the process exited, or did not listen in time.
        """
        with anyio.move_on_after(_START_TIMEOUT_S):
            while True:
                if not self.running:
                    raise HarnessError(f"{self} exited at start: see {self.log}")
                if await _listening(self.host, RPC_PORT) and await _listening(self.host, S3_PORT):
                    return
                await anyio.sleep(0.2)
        raise HarnessError(f"{self} did not listen within {_START_TIMEOUT_S} s: see {self.log}")

    def kill(self) -> None:
        """SIGKILL to the whole process group: the crash case (a no-op if not running)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP to the process group: it keeps its sockets but answers nothing."""
        if self._proc is not None and self.running:
            os.killpg(self._proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT to the process group."""
        if self._proc is not None and self.running:
            os.killpg(self._proc.pid, signal.SIGCONT)
        self.paused = False

    async def stop(self) -> int | None:
        """Graceful stop (SIGTERM; SIGKILL after a deadline); the exit status, None if it
        was not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        self.resume()
        self._proc.send_signal(signal.SIGTERM)
        proc = self._proc
        with anyio.move_on_after(_STOP_TIMEOUT_S):
            # Polling: a child's exit has no async notification here.
            while proc.poll() is None:  # noqa: ASYNC110
                await anyio.sleep(0.1)
            return proc.returncode
        self.kill()
        return proc.returncode

    def set_clock_offset(self, offset_s: float) -> None:
        """Makes the node's wall clock run ``offset_s`` ahead (negative: behind) of real time.

        The file is replaced atomically; libfaketime re-reads it at every time call
        (``FAKETIME_NO_CACHE``), the hook when it changes. The monotonic clock never moves.
        """
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.3f}s\n")
        tmp.replace(self.clock_file)
        self.clock_offset_s = offset_s

    def unmount(self) -> None:
        """Unmounts the node's tmpfs (after it stopped)."""
        for target in self._mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)
        self._mounted.clear()


def _die_with_parent() -> None:
    """In the node's child process: SIGKILL it if the runner dies (no stray nodes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def _listening(host: str, port: int) -> bool:
    try:
        with anyio.fail_after(1):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True


# ---------------------------------------------------------------- the cluster

#: The CLI writes to sys.stdout/stderr, which are process-wide: one command at a time.
_CLI_LOCK = threading.Lock()


def _run_cli(argv: list[str]) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with _CLI_LOCK, redirect_stdout(out), redirect_stderr(err):
        try:
            code = garage_cli(argv)
        except SystemExit as exc:  # argparse refusing the command line
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@final
class Cluster:
    """The nodes of one run, and the key and bucket the workloads use.

    Args:
        root: the run's directory.
        spec: what to start.
        tools: the nemeses' tools (libfaketime is preloaded into nodes when found).
    """

    def __init__(self, root: Path, spec: ClusterSpec, tools: Tools) -> None:
        self.root = root
        self.spec = spec
        self.tools = tools
        self.nodes = [NodeProc(i, root, spec, tools) for i in range(1, spec.nodes + 1)]
        self.key_id = ""
        self.secret = ""
        self.bucket = BUCKET
        # Nodes with a storage role, and nodes with any role (storage or gateway): a node
        # removed from the layout serves no S3 request (it holds no bucket table).
        self.storage: set[int] = set()
        self.members: set[int] = {n.index for n in self.nodes}

    def node(self, index: int) -> NodeProc:
        """Node ``index`` (1-based)."""
        return self.nodes[index - 1]

    async def start(self) -> None:
        """Starts every node, forms the cluster and creates the key and bucket.

        Raises:
            HarnessError: a node did not start, or the cluster did not form in time.
        """
        rpc_secret = secrets.token_hex(32)
        for node in self.nodes:
            node.prepare()
        for node in self.nodes:
            peers = [n.rpc_address for n in self.nodes if n is not node]
            node.write_config(rpc_secret, peers)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            await node.wait_listening()
        await self._form()

    async def cli(self, node: NodeProc, *args: str) -> CliResult:
        """``garage -c <node's config> <args>`` (in-process, in a worker thread)."""
        argv = ["-c", str(node.config), *args]
        return await anyio.to_thread.run_sync(_run_cli, argv)

    async def cli_ok(self, node: NodeProc, *args: str) -> str:
        """Runs a command that must succeed; its stdout.

        Raises:
            HarnessError: the command failed.
        """
        done = await self.cli(node, *args)
        if done.returncode != 0:
            msg = f"garage {' '.join(args)} on {node}: {done.stderr.strip()}"
            raise HarnessError(msg)
        return done.stdout

    async def cli_json(self, node: NodeProc, *args: str) -> Any:
        """Runs a command with ``--json``; its parsed output."""
        return json.loads(await self.cli_ok(node, "--json", *args))

    def live_nodes(self) -> list[NodeProc]:
        """The nodes running and not paused."""
        return [n for n in self.nodes if n.running and not n.paused]

    async def layout_version(self, node: NodeProc) -> int:
        """The current layout version as ``node`` shows it."""
        shown = await self.cli_json(node, "layout", "show")
        return int(shown["version"])

    async def apply_layout(self, node: NodeProc) -> int:
        """``layout apply --version <shown + 1>`` on ``node``; the applied version."""
        version = await self.layout_version(node) + 1
        await self.cli_ok(node, "layout", "apply", "--version", str(version))
        return version

    async def _form(self) -> None:
        first = self.nodes[0]
        initial = self.nodes[: self.spec.initial_storage]
        for node in self.nodes:
            zone = f"dc{(node.index - 1) % 3 + 1}"
            # The others are gateways: a node with no role holds no bucket table and
            # cannot serve S3 (Garage's Jepsen setup gives every node a role too).
            role = ["-c", "1G"] if node in initial else ["-g"]
            await self._retry(first, "layout", "assign", "-z", zone, *role, node.node_id[:16])
            if node in initial:
                self.storage.add(node.index)
        await self.apply_layout(first)
        await self._wait_formed(self._healthy, "every node up, with a healthy layout")
        key = json.loads(await self._retry(first, "--json", "key", "create", "faults"))
        self.key_id, self.secret = key["key_id"], key["secret_key"]
        created = await self.cli(first, "bucket", "create", self.bucket)
        # An error answer may still have created it: only retry if it is not there.
        if created.returncode != 0 and (await self._sees_bucket(first)) is False:
            await self._retry(first, "bucket", "create", self.bucket)
        await self._retry(
            first, "bucket", "allow", "--read", "--write", "--owner", self.bucket,
            "--key", self.key_id,
        )  # fmt: skip
        await self._wait_formed(self._sees_bucket, "the bucket on every node")

    async def _retry(self, node: NodeProc, *args: str) -> str:
        """A setup command that may fail while the cluster settles: 5 tries, 1 s apart."""
        for _ in range(4):
            done = await self.cli(node, *args)
            if done.returncode == 0:
                return done.stdout
            logger.info("garage %s: %s (retrying)", " ".join(args), done.stderr.strip())
            await anyio.sleep(1)
        return await self.cli_ok(node, *args)

    async def _wait_formed(self, ready: Callable[[NodeProc], Awaitable[bool]], what: str) -> None:
        with anyio.move_on_after(_FORM_TIMEOUT_S):
            for node in self.nodes:
                # Polling: gossip reaching a node has no notification outside it.
                while not await ready(node):  # noqa: ASYNC110
                    await anyio.sleep(0.5)
            return
        raise HarnessError(f"the cluster did not form within {_FORM_TIMEOUT_S} s: {what}")

    async def _healthy(self, node: NodeProc) -> bool:
        """Whether ``node`` sees every node up and a healthy layout."""
        done = await self.cli(node, "--json", "status")
        if done.returncode != 0:
            return False
        status = json.loads(done.stdout)
        up = sum(bool(n["is_up"]) for n in status["nodes"])
        return up == len(self.nodes) and status["health"]["status"] == "healthy"

    async def _sees_bucket(self, node: NodeProc) -> bool:
        """Whether ``node`` knows the bucket."""
        info = await self.cli(node, "--json", "bucket", "info", self.bucket)
        return info.returncode == 0

    async def stop(self) -> dict[str, int | None]:
        """Stops every node gracefully (in parallel); node name -> exit status."""
        codes: dict[str, int | None] = {}

        async def stop_one(node: NodeProc) -> None:
            codes[node.name] = await node.stop()

        async with anyio.create_task_group() as tg:
            for node in self.nodes:
                tg.start_soon(stop_one, node)
        return codes

    def kill_all(self) -> None:
        """SIGKILL every node and unmount their tmpfs (the cleanup of last resort)."""
        for node in self.nodes:
            node.kill()
            node.unmount()

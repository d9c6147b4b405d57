"""The servers the benchmarks measure, each a process of its own on 127.0.0.1.

- ``garage``: ``garage server --single-node`` (sqlite metadata, block files, the quick
  start's key and bucket) on a runtime chosen by ``GARAGE_RUNTIME`` (trio or asyncio);
- ``ceiling``: bench/_ceiling_app.py, the trivial hypercorn app on the same runtime;
- ``moto``: ``python -m moto.server``, a Python S3 server (Flask on werkzeug's threaded
  server, objects in memory): the peer;
- ``cluster``: three ``garage server`` processes laid out in three zones (bench/_cluster.py).

A :class:`Server` names its processes (their CPU time is what a request costs the
server; their resident memory is watched) and the :class:`~bench._load.Target` the load
generator aims at. :func:`call` is a plain one-request client for the few requests the
load tool cannot send (those whose answer the next one needs: multipart uploads, listings).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench._load import Creds, Target

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "RUNTIMES",
    "Reply",
    "Server",
    "ServerError",
    "call",
    "free_port",
    "node_env",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "start_ceiling",
    "start_garage",
    "start_moto",
    "stop",
    "wait_for",
]

#: The node's runtimes, default first (``GARAGE_RUNTIME``).
RUNTIMES: Final = ("trio", "asyncio")
GARAGE: Final = Path(sys.executable).parent / "garage"
CEILING_APP: Final = Path(__file__).with_name("_ceiling_app.py")
#: A local server that takes longer than this to start or stop is broken.
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.1
#: Any key works with moto (it checks no signature): requests are signed all the same.
MOTO_CREDS: Final = Creds("AKIABENCHMOTO0000000", "moto-secret-" + "x" * 28, "us-east-1", "bench")


class ServerError(RuntimeError):
    """A server did not start, or answered a setup request with an error."""


@dataclass(frozen=True, slots=True)
class Server:
    """Running server processes and where to send requests.

    Attributes:
        label: how the tables name it ("garage trio", "moto"...).
        kind: ``garage``, ``cluster``, ``ceiling`` or ``moto``.
        runtime: the event loop of the node or ceiling (``None`` for moto).
        target: the addresses and key for the load generator.
        procs: the processes (CPU time and memory are theirs).
        logs: their log files, shown when something fails.
    """

    label: str
    kind: str
    runtime: str | None
    target: Target
    procs: tuple[subprocess.Popen[bytes], ...]
    logs: tuple[Path, ...] = ()

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.procs)

    def log_tail(self, size: int = 3000) -> str:
        """The end of each log, to explain a failure."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-size:]}"
            for path in self.logs
            if path.exists()
        )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Polls ``condition`` (another process's state) until it holds.

    Raises:
        ServerError: it still does not hold after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ServerError(f"gave up waiting: {what}")
        time.sleep(POLL_S)  # noqa: TID251  # synchronous driver waiting for other processes


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def node_env(runtime: str | None) -> dict[str, str]:
    """This environment without GARAGE_* variables, and ``GARAGE_RUNTIME=runtime``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
    if runtime is not None:
        env["GARAGE_RUNTIME"] = runtime
    return env


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop(server: Server) -> None:
    """SIGTERM to every process (a graceful stop), SIGKILL after STOP_TIMEOUT_S."""
    for proc in server.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in server.procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def start_garage(runtime: str, tmp: Path) -> Server:
    """``garage server --single-node`` in ``tmp/garage-<runtime>`` on free ports."""
    data_dir = tmp / f"garage-{runtime}"
    log = tmp / f"garage-{runtime}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                str(GARAGE), "server", "--single-node", "--data-dir", str(data_dir),
                "--s3-api-bind", "127.0.0.1:0", "--rpc-bind", f"127.0.0.1:{free_port()}",
                # Not the default 3903: another node on this machine may hold it.
                "--admin-bind", "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=node_env(runtime),
            start_new_session=True,
        )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for raw in proc.stdout:
        lines.append(raw.decode())
        if lines[-1].startswith("Stop it with"):
            break
    text = "".join(lines)
    fields = dict(
        re.findall(r"^\s+(S3 endpoint|S3 region|Key ID|Secret key|Bucket):\s+(\S+)", text, re.M)
    )
    if len(fields) != 5:
        _kill(proc)
        proc.stdout.close()
        raise ServerError(f"garage ({runtime}) did not start: {text!r}\n{log.read_text()[-3000:]}")
    host, port = fields["S3 endpoint"].removeprefix("http://").rsplit(":", 1)
    creds = Creds(fields["Key ID"], fields["Secret key"], fields["S3 region"], fields["Bucket"])
    target = Target(((host, int(port)),), creds, creds.bucket)
    return Server(f"garage {runtime}", "garage", runtime, target, (proc,), (log,))


def start_ceiling(runtime: str, tmp: Path) -> Server:
    """bench/_ceiling_app.py on ``runtime``."""
    log = tmp / f"ceiling-{runtime}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CEILING_APP), "--runtime", runtime],
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.isdigit():
        _kill(proc)
        raise ServerError(f"the ceiling app did not start: {line!r} {log.read_text()[-2000:]}")
    target = Target((("127.0.0.1", int(line)),), None, "bench")
    return Server(f"ceiling {runtime}", "ceiling", runtime, target, (proc,), (log,))


def start_moto(tmp: Path) -> Server:
    """moto's S3 server on a free port, with the bucket ``bench`` created."""
    port = free_port()
    log = tmp / "moto.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    target = Target((("127.0.0.1", port),), MOTO_CREDS, MOTO_CREDS.bucket)
    server = Server("moto", "moto", None, target, (proc,), (log,))
    try:
        wait_for(lambda: proc.poll() is None and _listening(port), "moto listens")
        reply = call(target, "PUT", f"/{target.bucket}")
        if reply.status != 200:
            raise ServerError(f"moto: create bucket: {reply.status} {reply.body[:300]!r}")
    except BaseException:
        stop(server)
        raise
    return server


# ---------------------------------------------------------------- memory


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ServerError(f"/proc/{pid}/status has no {field}")


def rss_bytes(pid: int) -> int:
    """The process's resident memory now."""
    return 1024 * _status_kib(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; False if it cannot."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory since it started or since :func:`reset_peak_rss`."""
    return 1024 * _status_kib(pid, "VmHWM")


# ---------------------------------------------------------------- one request


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer of :func:`call`."""

    status: int
    headers: dict[str, str]
    body: bytes


def call(
    target: Target,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    extra: Sequence[tuple[str, str]] = (),
    *,
    address: int = 0,
) -> Reply:
    """One signed request (``path`` and ``query`` as sent: already percent-encoded) to the
    ``address``-th address of ``target``, answer read whole."""
    host, port = target.addresses[address]
    headers = target.headers(method, path, query, extra)
    conn = http.client.HTTPConnection(host, port, timeout=START_TIMEOUT_S)
    try:
        url = path + (f"?{query}" if query else "")
        conn.request(method, url, body=body, headers=dict(headers))
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()

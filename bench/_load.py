"""The load generator's Python side: requests built and signed up front, fired by a C tool.

The client shares the machine's two cores with the servers it measures, so it must cost
them little: every request is built (and signed, ``UNSIGNED-PAYLOAD``) here before the
clock starts, written to a file, and sent by bench/_loadgen.c, an epoll loop that only
parses status lines and lengths (see its header for the file format). It is compiled once
per source version with the system's C compiler (gcc, installed from Debian by
``tests.debian.find_or_install`` when missing) into the temporary directory.

:func:`fire` runs one batch and returns a :class:`Load`: each answer's status, latency,
body size and ETag, the wall time, the client's own CPU time (from the tool's
``getrusage``) and the CPU time the server processes used meanwhile (``/proc/<pid>/stat``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from garage_api.signature import sign_request

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Answer",
    "Creds",
    "Load",
    "LoadError",
    "RawRequest",
    "Target",
    "cpu_seconds",
    "fire",
    "loadgen",
]

SOURCE: Final = Path(__file__).with_name("_loadgen.c")
#: A batch of local requests that takes longer than this is stuck, not slow.
BATCH_TIMEOUT_S: Final = 900.0
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_MAGIC: Final = b"GLG1"
_RECORD: Final = struct.Struct("<IQQ")


class LoadError(RuntimeError):
    """The load tool failed, or a server answered with an unexpected status."""


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process used so far (user + system, all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def loadgen() -> Path:
    """The compiled tool (built on first use, per version of the source)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"garage-bench-loadgen-{digest}"
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        from tests.debian import find_or_install

        compiler, reason = find_or_install("gcc")
        if compiler is None:
            raise LoadError(f"the load generator needs a C compiler: {reason}")
    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run([compiler, "-O2", "-o", str(partial), str(SOURCE)], check=True)
    partial.replace(binary)
    return binary


@dataclass(frozen=True, slots=True)
class Creds:
    """An S3 key and the bucket it may use."""

    key_id: str
    secret: str
    region: str
    bucket: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go and how they are signed (``creds=None``: unsigned)."""

    addresses: tuple[tuple[str, int], ...]
    creds: Creds | None
    bucket: str

    @property
    def host(self) -> str:
        """The Host header: the first address (servers do not check it against their own)."""
        host, port = self.addresses[0]
        return f"{host}:{port}"

    def object_path(self, key: str) -> str:
        return f"/{self.bucket}/{key}"

    def headers(
        self,
        method: str,
        path: str,
        query: str = "",
        extra: Sequence[tuple[str, str]] = (),
    ) -> list[tuple[str, str]]:
        """The request's headers, signed now when the target has a key."""
        headers = [("host", self.host), *extra]
        if self.creds is None:
            return headers
        return sign_request(
            method,
            path,
            query,
            headers,
            key_id=self.creds.key_id,
            secret=self.creds.secret,
            region=self.creds.region,
            service="s3",
            now_ms=int(time.time() * 1000),
        )

    def request(
        self,
        method: str,
        key: str,
        *,
        query: str = "",
        body: bytes = b"",
        generated: int = 0,
        seed: int = 0,
        extra: Sequence[tuple[str, str]] = (),
    ) -> RawRequest:
        """A request for one object; ``generated`` bytes of distinct data follow ``body``."""
        return self.raw(
            method,
            self.object_path(key),
            query=query,
            body=body,
            generated=generated,
            seed=seed,
            extra=extra,
        )

    def raw(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        generated: int = 0,
        seed: int = 0,
        extra: Sequence[tuple[str, str]] = (),
    ) -> RawRequest:
        """A request for ``path`` and ``query`` as sent (already percent-encoded)."""
        length = len(body) + generated
        sent = [*extra, ("content-length", str(length))] if length or method == "PUT" else extra
        headers = self.headers(method, path, query, sent)
        target = path + (f"?{query}" if query else "")
        lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return RawRequest(head + body, generated, seed)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """Bytes to send as they are, then ``generated`` bytes of distinct data (see the tool)."""

    head: bytes
    generated: int = 0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome (status 0: the connection failed)."""

    index: int
    status: int
    latency_s: float
    body_bytes: int
    etag: str | None


@dataclass(frozen=True, slots=True)
class Load:
    """A batch: its answers (in request order), wall time and CPU times."""

    answers: tuple[Answer, ...]
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    latencies_s: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "latencies_s", tuple(sorted(a.latency_s for a in self.answers)))

    @property
    def ops(self) -> int:
        return len(self.answers)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall_s

    def latency_ms(self, quantile: float) -> float:
        """The latency at ``quantile`` (0.5: median), nearest rank."""
        ordered = self.latencies_s
        return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    @property
    def server_cpu_per_op_ms(self) -> float:
        return 1000 * self.server_cpu_s / self.ops

    @property
    def client_share_pct(self) -> float:
        """The client's CPU as a share of one core over the run."""
        return 100 * self.client_cpu_s / self.wall_s

    @property
    def body_bytes(self) -> int:
        return sum(a.body_bytes for a in self.answers)


def _write(requests: Sequence[RawRequest], path: Path) -> None:
    with path.open("wb") as f:
        f.write(_MAGIC)
        for r in requests:
            f.write(_RECORD.pack(len(r.head), r.generated, r.seed))
            f.write(r.head)


def _parse(text: str, count: int) -> tuple[list[Answer], float, float]:
    answers: list[Answer | None] = [None] * count
    wall_s = client_s = -1.0
    for line in text.splitlines():
        parts = line.split()
        if parts[0] == "R":
            index = int(parts[1])
            etag = None if parts[5] == "-" else parts[5].strip('"')
            answers[index] = Answer(index, int(parts[2]), int(parts[3]) / 1e6, int(parts[4]), etag)
        elif parts[0] == "T":
            wall_s = int(parts[2]) / 1e6
            client_s = (int(parts[3]) + int(parts[4])) / 1e6
    done = [a for a in answers if a is not None]
    if len(done) != count or wall_s < 0:
        raise LoadError(f"the load tool answered {len(done)} of {count} requests")
    return done, wall_s, client_s


def fire(
    target: Target,
    requests: Sequence[RawRequest],
    *,
    connections: int,
    server_pids: Sequence[int] = (),
    expect: Sequence[int] = (200,),
    body_bytes: int | None = None,
) -> Load:
    """Sends ``requests`` over ``connections`` keep-alive connections and times them.

    Args:
        target: where they go (connections spread over its addresses).
        requests: built and signed already; sent in order.
        connections: how many are in flight at once.
        server_pids: the processes whose CPU time the batch is charged.
        expect: the statuses that count as success.
        body_bytes: when given, the size every answer's body must have.

    Raises:
        LoadError: the tool failed, an answer had another status, or a body another size.
    """
    tool = loadgen()
    with tempfile.TemporaryDirectory(prefix="garage-bench-load-") as tmp:
        path = Path(tmp) / "requests"
        _write(requests, path)
        addresses = [f"{host}:{port}" for host, port in target.addresses]
        cpu0 = sum(cpu_seconds(pid) for pid in server_pids)
        done = subprocess.run(
            [str(tool), str(connections), str(path), *addresses],
            capture_output=True,
            text=True,
            timeout=BATCH_TIMEOUT_S,
            check=False,
        )
        server_cpu = sum(cpu_seconds(pid) for pid in server_pids) - cpu0
    if done.returncode != 0:
        raise LoadError(f"the load tool exited with {done.returncode}: {done.stderr[-2000:]}")
    answers, wall_s, client_s = _parse(done.stdout, len(requests))
    for answer in answers:
        if answer.status not in expect:
            head = requests[answer.index].head[:200].decode(errors="replace").splitlines()[0]
            raise LoadError(f"{head}: status {answer.status}, expected one of {tuple(expect)}")
        if body_bytes is not None and answer.body_bytes != body_bytes:
            raise LoadError(
                f"request {answer.index}: {answer.body_bytes} body bytes, not {body_bytes}"
            )
    return Load(tuple(answers), wall_s, client_s, server_cpu)

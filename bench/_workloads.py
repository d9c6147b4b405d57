"""The S3 workloads of bench_s3, each run against one :class:`~bench._servers.Server`.

- :func:`small_ops`: distinct random 4 KiB objects (above the 3 KiB inline threshold, so
  each is a block plus table rows) put, got, headed then deleted, N requests with 1 or 16
  in flight (one keep-alive connection each);
- :func:`listing`: ListObjectsV2 over a bucket of L empty objects, 1,000 keys per page,
  page after page as a client must (each page needs the previous one's continuation
  token): time per page and per full listing;
- :func:`big`: one object of B bytes (256 MiB) put in one request and got in one; then
  put as a multipart upload of 8 MiB parts, 4 in flight, and got as 8 MiB ranges, 4 in
  flight; in MB/s (10^6 bytes per second);
- :func:`rss`: 16 uploads of B bytes at once while the server's resident memory is
  watched: streaming must keep it bounded, whatever the object size.

Bodies are sent by the load tool: every 1 MiB chunk distinct and incompressible (no block
deduplication, nothing for zstd to win). Requests are signed before the clock starts.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from bench._load import Load, LoadError, RawRequest, cpu_seconds, fire
from bench._servers import Server, call, peak_rss_bytes, reset_peak_rss, rss_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MB",
    "MIB",
    "OPS",
    "SMALL",
    "BigResult",
    "ListResult",
    "RssResult",
    "SmallResult",
    "big",
    "listing",
    "rss",
    "small_ops",
    "small_requests",
    "warm_up",
]

MIB: Final = 1 << 20
MB: Final = 10**6
SMALL: Final = 4096
OPS: Final = ("PUT", "GET", "HEAD", "DELETE")
#: What S3 answers each small operation with (the ceiling answers 200 to everything).
_EXPECT: Final = {"PUT": (200,), "GET": (200,), "HEAD": (200,), "DELETE": (200, 204)}
PART: Final = 8 * MIB
PARTS_IN_FLIGHT: Final = 4
PAGE_KEYS: Final = 1000
RSS_UPLOADS: Final = 16
#: How often the memory watcher samples RSS (the kernel's peak mark is read as well).
RSS_SAMPLE_S: Final = 0.05


# ---------------------------------------------------------------- small objects


@dataclass(frozen=True, slots=True)
class SmallResult:
    """One server's small-object runs, by (operation, concurrency)."""

    loads: dict[tuple[str, int], Load]


def small_requests(
    server: Server, method: str, keys: Sequence[str], bodies: Sequence[bytes]
) -> list[RawRequest]:
    """One request per key (a PUT carries its body), built and signed now."""
    target = server.target
    if method == "PUT":
        return [target.request("PUT", k, body=b) for k, b in zip(keys, bodies, strict=True)]
    return [target.request(method, k) for k in keys]


def small_ops(server: Server, counts: dict[int, int], *, tag: str = "small") -> SmallResult:
    """PUT, GET, HEAD then DELETE of ``counts[c]`` distinct objects, ``c`` in flight.

    Raises:
        LoadError: a request failed, or a GET's body is not the object's size.
    """
    loads: dict[tuple[str, int], Load] = {}
    for concurrency, count in counts.items():
        keys = [f"{tag}/x{concurrency}/{i:06d}" for i in range(count)]
        bodies = [os.urandom(SMALL) for _ in keys]
        for method in OPS:
            requests = small_requests(server, method, keys, bodies)
            expect = (200,) if server.kind == "ceiling" else _EXPECT[method]
            size = SMALL if method == "GET" else (0 if method == "HEAD" else None)
            loads[method, concurrency] = fire(
                server.target,
                requests,
                connections=concurrency,
                server_pids=server.pids,
                expect=expect,
                body_bytes=size,
            )
    return SmallResult(loads)


def warm_up(server: Server, count: int = 64) -> None:
    """A few requests first: connections, caches and lazy imports settle outside the clock."""
    small_ops(server, {8: count}, tag="warm-up")


# ---------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class ListResult:
    """Full listings of ``keys`` keys: seconds per listing, pages per listing, CPU."""

    keys: int
    listing_s: tuple[float, ...]
    pages: int
    server_cpu_s: float
    client_cpu_s: float
    fill_per_s: float

    @property
    def best_s(self) -> float:
        return min(self.listing_s)

    @property
    def page_ms(self) -> float:
        return 1000 * self.best_s / self.pages

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.best_s

    @property
    def server_cpu_per_page_ms(self) -> float:
        return 1000 * self.server_cpu_s / (self.pages * len(self.listing_s))


_TOKEN = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")
_KEY_COUNT = re.compile(rb"<KeyCount>(\d+)</KeyCount>")


def _list_all(server: Server, prefix: str, page_keys: int) -> tuple[int, int]:
    """Lists every key under ``prefix``, ``page_keys`` a page; (keys, pages)."""
    path, token, keys, pages = f"/{server.target.bucket}", "", 0, 0
    while True:
        params = [("list-type", "2"), ("max-keys", str(page_keys)), ("prefix", prefix)]
        if token:
            params.append(("continuation-token", token))
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params))
        reply = call(server.target, "GET", path, query)
        if reply.status != 200:
            raise LoadError(f"ListObjectsV2: {reply.status} {reply.body[:300]!r}")
        pages += 1
        found = _KEY_COUNT.search(reply.body)
        keys += int(found.group(1)) if found else 0
        more = _TOKEN.search(reply.body)
        if more is None:
            return keys, pages
        token = more.group(1).decode()


def listing(server: Server, keys: int, repeat: int, *, page_keys: int = PAGE_KEYS) -> ListResult:
    """Fills the bucket with ``keys`` empty objects, then lists them ``repeat`` times,
    ``page_keys`` a page.

    Raises:
        LoadError: a request failed or a listing missed keys.
    """
    names = [f"list/{i:06d}" for i in range(keys)]
    fill = fire(
        server.target,
        [server.target.request("PUT", k) for k in names],
        connections=16,
        server_pids=server.pids,
    )
    times = []
    cpu0 = sum(_cpu(server))
    client0 = time.process_time()
    pages = 0
    for _ in range(repeat):
        start = time.perf_counter()
        found, pages = _list_all(server, "list/", page_keys)
        times.append(time.perf_counter() - start)
        if found != keys:
            raise LoadError(f"ListObjectsV2 found {found} keys of {keys}")
    server_cpu = sum(_cpu(server)) - cpu0
    client = time.process_time() - client0
    return ListResult(keys, tuple(times), pages, server_cpu, client, fill.ops_per_s)


def _cpu(server: Server) -> list[float]:
    return [cpu_seconds(pid) for pid in server.pids]


# ---------------------------------------------------------------- big objects


@dataclass(frozen=True, slots=True)
class BigResult:
    """MB/s of each way to move one big object, with its CPU costs."""

    size: int
    loads: dict[str, Load]  # "PUT", "GET", "multipart PUT", "ranged GET"
    multipart_wall_s: float

    def mb_per_s(self, what: str) -> float:
        wall = self.multipart_wall_s if what == "multipart PUT" else self.loads[what].wall_s
        return self.size / MB / wall

    def server_cpu_s_per_gb(self, what: str) -> float:
        """The server's CPU seconds per 10^9 bytes moved."""
        return self.loads[what].server_cpu_s / (self.size / 1e9)


def _multipart(server: Server, key: str, size: int, seed: int, part: int) -> tuple[Load, float]:
    """Create, parts of ``part`` bytes (``PARTS_IN_FLIGHT`` at once), complete; the parts'
    load, wall time."""
    target = server.target
    parts = range(1, -(-size // part) + 1)
    start = time.perf_counter()
    if server.kind == "ceiling":  # no multipart API: only the parts' transfer
        requests = [
            target.request("PUT", key, generated=min(part, size - (n - 1) * part), seed=seed + n)
            for n in parts
        ]
        load = fire(target, requests, connections=PARTS_IN_FLIGHT, server_pids=server.pids)
        return load, time.perf_counter() - start
    path = target.object_path(key)
    created = call(target, "POST", path, "uploads=")
    found = re.search(rb"<UploadId>([^<]+)</UploadId>", created.body)
    if created.status != 200 or found is None:
        raise LoadError(f"CreateMultipartUpload: {created.status} {created.body[:300]!r}")
    upload_id = found.group(1).decode()
    requests = [
        target.request(
            "PUT",
            key,
            query=f"partNumber={n}&uploadId={quote(upload_id, safe='')}",
            generated=min(part, size - (n - 1) * part),
            seed=seed + n,
        )
        for n in parts
    ]
    load = fire(target, requests, connections=PARTS_IN_FLIGHT, server_pids=server.pids)
    etags = {a.index + 1: a.etag for a in load.answers}
    xml = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;{etags[n]}&quot;</ETag></Part>"
        for n in parts
    )
    body = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
    done = call(target, "POST", path, f"uploadId={quote(upload_id, safe='')}", body)
    if done.status != 200 or b"Error" in done.body:
        raise LoadError(f"CompleteMultipartUpload: {done.status} {done.body[:300]!r}")
    return load, time.perf_counter() - start


def _ranged_get(server: Server, key: str, size: int, part: int) -> Load:
    target = server.target
    if server.kind == "ceiling":
        requests = [
            target.request("GET", key, query=f"size={min(part, size - start)}")
            for start in range(0, size, part)
        ]
        expect: tuple[int, ...] = (200,)
    else:
        requests = [
            target.request(
                "GET", key, extra=[("range", f"bytes={start}-{min(size, start + part) - 1}")]
            )
            for start in range(0, size, part)
        ]
        expect = (206,)
    load = fire(
        target, requests, connections=PARTS_IN_FLIGHT, server_pids=server.pids, expect=expect
    )
    for answer in load.answers:
        wanted = min(part, size - answer.index * part)
        if answer.body_bytes != wanted:
            raise LoadError(f"ranged GET {answer.index}: {answer.body_bytes} bytes, not {wanted}")
    return load


def big(server: Server, size: int, *, part: int = PART) -> BigResult:
    """Single PUT and GET of ``size`` bytes, then multipart PUT and ranged GET, in parts
    and ranges of ``part`` bytes (S3 wants parts of 5 MiB at least, but the last).

    Raises:
        LoadError: a request failed or a body had the wrong size.
    """
    target = server.target
    ceiling = server.kind == "ceiling"
    put = fire(
        target,
        [target.request("PUT", "big/single", generated=size, seed=1)],
        connections=1,
        server_pids=server.pids,
    )
    get_request = target.request("GET", "big/single", query=f"size={size}" if ceiling else "")
    get = fire(target, [get_request], connections=1, server_pids=server.pids, body_bytes=size)
    parts, multipart_s = _multipart(server, "big/multipart", size, seed=1000, part=part)
    ranged = _ranged_get(server, "big/multipart", size, part)
    loads = {"PUT": put, "GET": get, "multipart PUT": parts, "ranged GET": ranged}
    return BigResult(size, loads, multipart_s)


# ---------------------------------------------------------------- memory


@dataclass(frozen=True, slots=True)
class RssResult:
    """Resident memory of each server process before and at peak during the uploads."""

    size: int
    uploads: int
    before_bytes: tuple[int, ...]
    peak_bytes: tuple[int, ...]
    load: Load

    @property
    def mb_per_s(self) -> float:
        return self.uploads * self.size / MB / self.load.wall_s


def rss(server: Server, size: int, uploads: int = RSS_UPLOADS) -> RssResult:
    """``uploads`` PUTs of ``size`` bytes at once; each process's RSS before and at peak.

    The peak is the kernel's mark (VmHWM, reset before the uploads through
    ``/proc/<pid>/clear_refs``) or, where it cannot be reset, the highest of samples taken
    every RSS_SAMPLE_S.
    """
    pids = server.pids
    before = tuple(rss_bytes(pid) for pid in pids)
    reset = all(reset_peak_rss(pid) for pid in pids)
    sampled = list(before)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(RSS_SAMPLE_S):
            for i, pid in enumerate(pids):
                sampled[i] = max(sampled[i], rss_bytes(pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        requests = [
            server.target.request("PUT", f"rss/{i}", generated=size, seed=10_000 + i)
            for i in range(uploads)
        ]
        load = fire(server.target, requests, connections=uploads, server_pids=pids)
    finally:
        stop.set()
        watcher.join()
    peaks = tuple(
        max(s, peak_rss_bytes(pid)) if reset else s for s, pid in zip(sampled, pids, strict=True)
    )
    return RssResult(size, uploads, before, peaks, load)

"""Benchmark: a geo-distributed cluster, latency of each S3 call in round-trip times.

Garage's claim over consensus-based stores is that an operation costs about one round
trip between zones (a quorum write or read goes to all replicas at once and waits for
the fastest two), not the two or more of a leader-based protocol. This measures it.

Three nodes (``garage server`` on trio, one zone each, replication 3) run in a private
network namespace (``unshare -n``: the benchmark re-runs this module there as
``--inside``, so nothing it does touches the machine's network). The kernel has no netem,
so the WAN is bench/_relay.py: a relay in front of each node's RPC port, announced as the
node's address (``rpc_public_addr`` and the other nodes' ``bootstrap_peers``), delays each
direction of every node-to-node connection by the one-way delay (default 50 ms, so RTT =
100 ms; ``--geo-delay-ms``). The client talks to node 1's S3 endpoint directly (not
delayed), one request at a time.

For each call (PutObject, GetObject, HeadObject and DeleteObject of a 4 KiB object, which
is a block plus table rows, and of a 1 KiB one, which is inline in the object table;
ListObjectsV2; ListBuckets) the table gives the median latency with the delay, the same
with the relays' delay set to zero (the nodes' own time: CPU, disk, the relays' copying),
and both as multiples of the RTT: ``latency / RTT`` is the figure the target is about
(<= 1.2 for PUT and GET), ``(latency - local) / RTT`` the number of sequential round
trips the call makes.

Run it with ``uv run python -m bench bench_geo [--geo-delay-ms 50] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench._cluster import start_cluster
from bench._load import Load, Target, fire
from bench._profile import Summary
from bench._report import Outcome, Table
from bench._report import Target as Goal
from bench._servers import free_port, stop

if TYPE_CHECKING:
    from bench._load import RawRequest

__all__ = ["CALLS", "PATHS", "PATH_SOURCES", "run"]

ROOT: Final = Path(__file__).resolve().parent.parent
#: The calls, in the order they run (each on the keys the previous ones made).
CALLS: Final = (
    "PutObject 4 KiB",
    "GetObject 4 KiB",
    "HeadObject 4 KiB",
    "ListObjectsV2",
    "ListBuckets",
    "DeleteObject 4 KiB",
    "PutObject 1 KiB",
    "GetObject 1 KiB",
    "HeadObject 1 KiB",
    "DeleteObject 1 KiB",
)
#: Calls whose latency has a target (in RTTs).
GOALS: Final = {"PutObject": 1.2, "GetObject": 1.2}
#: Where a call's round trips go, and the obvious next step. Hand-written from the code
#: in PATH_SOURCES (garage_model/s3/writer.py: ObjectWriter._timestamp, ObjectWriter.put,
#: VersionWriter; garage_api/s3/_h_object.py: _current_version, read_object): update it
#: when they change. The measured count (the last column of the table) says whether it
#: still holds. Each step waits for a quorum (2 of 3: the local node and the nearest other).
PATHS: Final = {
    "PutObject 4 KiB": (
        "5 sequential quorum round trips: read the object (a timestamp newer than every "
        "version), insert it as 'uploading', insert the version, then the block (2 copies) "
        "with the version's block and its block_ref at once, then the object as 'complete' "
        "(Garage's own PutObject makes the same five for an object that is not inline)",
        "write the 'uploading' object row and the empty version row in the same round "
        "(two tables, one round of RPCs), and take the timestamp from the local replica when "
        "it has the object (a quorum read only when it has not): 3 round trips",
    ),
    "PutObject 1 KiB": (
        "2 sequential round trips: read the object (timestamp), insert it with its data inline",
        "take the timestamp from the local replica's copy (the write quorum then orders it): "
        "1 round trip",
    ),
    "GetObject 4 KiB": (
        "2 sequential round trips: read the object, then its version row (the block list), "
        "then the block, from the local replica",
        "a single-block object needs no version row (its FirstBlock hash is the whole "
        "list): skip that read, or start the first block while it runs (Garage's way): 1 "
        "round trip",
    ),
    "GetObject 1 KiB": (
        "1 round trip: read the object, whose data is inline; the rest is the nodes' own "
        "time (see the no-delay column)",
        "the node's per-request CPU (see bench_s3's profiles)",
    ),
}
#: The functions PATHS describes, by module (tests/bench checks that they still exist).
PATH_SOURCES: Final = {
    "garage_model.s3.writer": (
        "ObjectWriter._timestamp",
        "ObjectWriter.put",
        "VersionWriter.start",
        "VersionWriter.write_all",
        "get_version",
        "read_blocks",
    ),
    "garage_api.s3._h_object": ("put_object", "_current_version", "read_object"),
}
SAMPLES: Final = 15
SAMPLES_QUICK: Final = 4
#: The whole inside run: forming a cluster over the delayed links and every call.
INSIDE_TIMEOUT_S: Final = 900.0


def _requests(target: Target, call: str, samples: int, round_: str) -> list[RawRequest]:
    op, _, size = call.partition(" ")
    body = os.urandom(1024 if size == "1 KiB" else 4096)
    keys = [f"geo/{round_}/{size.replace(' ', '')}/{i}" for i in range(samples)]
    if op == "PutObject":
        return [target.request("PUT", k, body=body) for k in keys]
    if op == "ListObjectsV2":
        query = "list-type=2&max-keys=1000&prefix=geo%2F"
        return [target.raw("GET", f"/{target.bucket}", query=query) for _ in keys]
    if op == "ListBuckets":
        return [target.raw("GET", "/") for _ in keys]
    method = {"GetObject": "GET", "HeadObject": "HEAD", "DeleteObject": "DELETE"}[op]
    return [target.request(method, k) for k in keys]


def _measure_round(target: Target, samples: int, round_: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for call in CALLS:
        requests = _requests(target, call, samples, round_)
        expect = (204, 200) if call.startswith("Delete") else (200,)
        load: Load = fire(target, requests, connections=1, expect=expect)
        out[call] = [a.latency_s for a in load.answers]
    return out


def inside(delay_ms: float, samples: int) -> dict[str, object]:
    """In the private namespace: relays, the cluster, every call delayed and not."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rpc_ports = [free_port() for _ in range(3)]
    public_ports = [free_port() for _ in range(3)]
    pairs = [f"{p}:{r}" for p, r in zip(public_ports, rpc_ports, strict=True)]
    relay = subprocess.Popen(
        [sys.executable, "-m", "bench._relay", "--delay-ms", str(delay_ms), *pairs],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "READY":
            raise RuntimeError("the relay did not start")
        with tempfile.TemporaryDirectory(prefix="garage-bench-geo-") as tmp:
            server, _ = start_cluster(
                "trio", Path(tmp), rpc_ports=rpc_ports, public_ports=public_ports
            )
            try:
                first = server.target.addresses[:1]
                target = Target(first, server.target.creds, server.target.bucket)
                _measure_round(target, 2, "warm-up")
                delayed = _measure_round(target, samples, "delayed")
                relay.send_signal(signal.SIGUSR1)
                local = _measure_round(target, samples, "local")
                relay.send_signal(signal.SIGUSR2)
            except BaseException:
                print(server.log_tail(), file=sys.stderr)
                raise
            finally:
                stop(server)
    finally:
        relay.terminate()
        relay.wait(timeout=30)
        if relay.stdout is not None:
            relay.stdout.close()
    return {"delay_ms": delay_ms, "delayed": delayed, "local": local}


def _outcome(data: dict[str, object], samples: int) -> Outcome:
    delay_ms = float(data["delay_ms"])  # type: ignore[arg-type]  # JSON we wrote ourselves
    delayed: dict[str, list[float]] = data["delayed"]  # type: ignore[assignment]  # same
    local: dict[str, list[float]] = data["local"]  # type: ignore[assignment]  # same
    rtt_s = 2 * delay_ms / 1000
    rows = []
    goals = []
    explained: list[Summary] = []
    for call in CALLS:
        with_delay = statistics.median(delayed[call])
        without = statistics.median(local[call])
        rows.append(
            (
                call,
                1000 * with_delay,
                1000 * without,
                with_delay / rtt_s,
                (with_delay - without) / rtt_s,
            )
        )
        goal = GOALS.get(call.split()[0])
        if goal is None:
            continue
        title = f"geo {call}"
        target = Goal(f"{title}: latency / RTT", with_delay / rtt_s, goal, at_most=True, unit="RTT")
        goals.append(target)
        if target.met is False and call in PATHS:
            path, step = PATHS[call]
            measured = (
                f"measured: {(with_delay - without) / rtt_s:.1f} round trips of network and "
                f"{1000 * without:.0f} ms of the nodes' own time (no-delay run)"
            )
            explained.append(Summary(title, (path, measured), None, next_step=step))
    table = Table(
        f"Geo: 3 zones, RTT {2 * delay_ms:g} ms between nodes (median of {samples})",
        ("call", "latency ms", "no-delay ms", "latency / RTT", "(latency - no-delay) / RTT"),
        tuple(rows),
        (
            "client -> node 1 is not delayed; node <-> node crosses a relay that delays each "
            "direction by half the RTT",
            "no-delay: the same cluster with the relays' delay at zero (the nodes' own time); "
            "the last column counts the sequential round trips of a call",
            "ListBuckets costs ~0 RTT: the bucket and key tables are replicated in full on "
            "every node (TableFullReplication), so node 1 reads its own copy",
        ),
    )
    return Outcome(tables=[table], targets=goals, profiles=explained)


def run(quick: bool) -> Outcome:
    """Runs the geo cluster in a private network namespace; latency per call in RTTs."""
    delay_ms = float(os.environ.get("BENCH_GEO_DELAY_MS", "50"))
    samples = SAMPLES_QUICK if quick else SAMPLES
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0 or shutil.which("ip") is None:
        why = "needs root, unshare and ip (a private network namespace)"
        return Outcome(tables=[Table("Geo: skipped", ("reason",), ((why,),))])
    done = subprocess.run(
        [
            unshare, "-n", sys.executable, "-m", "bench.bench_geo", "--inside",
            "--delay-ms", str(delay_ms), "--samples", str(samples),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=INSIDE_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench_geo --inside exited with {done.returncode}")
    return _outcome(json.loads(done.stdout.strip().splitlines()[-1]), samples)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_geo")
    parser.add_argument("--inside", action="store_true", help="internal: in the namespace")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.delay_ms, args.samples)), flush=True)
        return
    os.environ["BENCH_GEO_DELAY_MS"] = str(args.delay_ms)
    from bench._report import render_text

    for table in run(args.quick).tables:
        print(render_text(table))


if __name__ == "__main__":
    main()

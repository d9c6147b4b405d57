"""Nemesis probes: fire each nemesis once on a small cluster and record what it did.

``python -m faults --probe all --json PATH`` (inside the runner's namespaces) starts one
cluster of 4 nodes (3 storage nodes, 1 spare for the layout change, data directories on
tmpfs, clock files) and runs each probe in turn. A probe injects its fault through the
same nemesis code the scenarios use, observes the cluster with the real S3 client, and
writes plain facts (outcomes, statuses, offsets, counters) under its name in the JSON
file. It judges nothing: tests/faults/test_nemeses.py asserts on the facts. A probe that
raises records ``{"error": ...}`` and the others still run.

The probes, in order (the layout change last, as it moves partitions):

- ``clock``: a node's wall clock set +200 s shows in the Last-Modified of an object it
  writes, and not in another node's; the reset brings it back.
- ``pause``: a paused node (state ``T``) answers no request within the client timeout, and
  answers again after SIGCONT.
- ``kill``: a killed node refuses connections; the cluster still serves reads; the
  restarted node serves the object written before.
- ``partition``: with one node isolated, a write through it fails or is indeterminate, one
  through the majority succeeds, a TCP connect between the cut addresses times out while
  the client's address still connects; healing reports dropped packets and the isolated
  node writes again.
- ``corruption``: a bit-flipped block on one replica is served with the right bytes and
  quarantined (``.corrupted``) by the node that read it.
- ``disk-full``: with every node's data tmpfs full, a 1.5 MiB PutObject fails cleanly, the
  nodes stay up, an older object reads back byte for byte, and writes succeed again
  (without restart) once the ballast is gone.
- ``layout``: three layout changes through the CLI, each applied with the version
  ``layout show`` gave plus one; every node ends on the last version.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
import traceback
from typing import TYPE_CHECKING, Any, Final

import anyio

from faults._body import decode_chunks, encode_body
from faults._s3 import S3Client, classify
from faults.harness import REGION, RPC_PORT, Cluster, ClusterSpec, HarnessError
from faults.history import OK, History
from faults.nemesis import (
    ClockNemesis,
    CorruptionNemesis,
    DiskFullNemesis,
    FaultBudget,
    KillNemesis,
    LayoutNemesis,
    PartitionNemesis,
    PauseNemesis,
    block_files,
    corrupt_block,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from faults.harness import NodeProc, Tools

__all__ = ["PROBES", "run_probe"]

#: The probes, in the order they run.
PROBES: Final = ("clock", "pause", "kill", "partition", "corruption", "disk-full", "layout")
_BIG: Final = 3 * (1 << 20) // 2
#: How long a probe waits for the cluster to recover from a healed fault.
_RECOVER_S: Final = 60.0

Facts = dict[str, Any]


class _Probe:
    """The cluster, a client per node and a seeded random source, shared by the probes."""

    def __init__(self, cluster: Cluster, history: History) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(11)
        self.budget = FaultBudget(limit=1)
        self.seq = 0

    def args(self) -> tuple[Cluster, History, random.Random, FaultBudget]:
        return self.cluster, self.history, self.rng, self.budget

    def client(self, node: NodeProc) -> S3Client:
        c = self.cluster
        return S3Client(node.endpoint, c.key_id, c.secret, c.bucket, REGION)

    def value(self) -> str:
        self.seq += 1
        return f"probe-{self.seq}"

    async def put(self, node: NodeProc, key: str, size: int = 100) -> tuple[str, str, Any]:
        """PUT a fresh value through ``node``: (value, outcome, reply)."""
        value = self.value()
        client = self.client(node)
        try:
            reply = await client.request("PUT", key, body=encode_body(value, size))
        finally:
            await client.aclose()
        return value, classify(reply, write=True), reply

    async def get(self, node: NodeProc, key: str) -> Facts:
        """GET through ``node``: outcome, status, decoded values, corrupt flag."""
        client = self.client(node)
        try:
            reply = await client.request("GET", key)
        finally:
            await client.aclose()
        facts: Facts = {"outcome": classify(reply, write=False), "status": reply.status}
        facts["error"] = reply.error
        facts["sent"] = reply.sent
        if reply.status == 200:
            decoded = decode_chunks(reply.body)
            facts["values"] = list(decoded.values)
            facts["corrupt"] = decoded.corrupt
        return facts

    async def until_put_ok(self, node: NodeProc, key: str, size: int = 100) -> str | None:
        """Retries a PUT through ``node`` until ok; the value written, None on timeout."""
        with anyio.move_on_after(_RECOVER_S):
            while True:
                value, outcome, _ = await self.put(node, key, size)
                if outcome == OK:
                    return value
                await anyio.sleep(1)
        return None

    async def last_modified_skew_s(self, node: NodeProc, key: str) -> float | None:
        """Writes ``key`` through ``node``; its Last-Modified minus the runner's clock."""
        before = time.time()
        _, outcome, _ = await self.put(node, key)
        if outcome != OK:
            return None
        client = self.client(node)
        try:
            reply = await client.request("HEAD", key)
        finally:
            await client.aclose()
        header = reply.header("last-modified")
        if header is None:
            return None
        return email.utils.parsedate_to_datetime(header).timestamp() - before


# ---------------------------------------------------------------- the probes


async def _clock(p: _Probe) -> Facts:
    n1, n2 = p.cluster.node(1), p.cluster.node(2)
    nemesis = ClockNemesis(*p.args())
    nemesis.bump(n2, 200.0)
    await anyio.sleep(0.5)
    skewed = await p.last_modified_skew_s(n2, "probe/clock/n2")
    normal = await p.last_modified_skew_s(n1, "probe/clock/n1")
    await nemesis.heal()
    await anyio.sleep(0.5)
    reset = await p.last_modified_skew_s(n2, "probe/clock/n2-reset")
    return {"skewed_s": skewed, "normal_s": normal, "reset_s": reset}


async def _pause(p: _Probe) -> Facts:
    n2 = p.cluster.node(2)
    nemesis = PauseNemesis(*p.args())
    nemesis.pause(n2)
    try:
        # SIGSTOP is delivered asynchronously: the state turns to T (stopped) shortly.
        with anyio.move_on_after(2):
            while (state := _proc_state(n2)) != "T":  # noqa: ASYNC110 (/proc has no events)
                await anyio.sleep(0.01)
        t0 = time.monotonic()
        paused = await p.get(n2, "probe/pause")
        waited = time.monotonic() - t0
    finally:
        nemesis.resume(n2)
    after = await p.get(n2, "probe/pause")
    return {"state": state, "paused": paused, "waited_s": waited, "after": after}


def _proc_state(node: NodeProc) -> str:
    pid = node.pid
    if pid is None:
        return "gone"
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


async def _kill(p: _Probe) -> Facts:
    n1, n3 = p.cluster.node(1), p.cluster.node(3)
    value, outcome, _ = await p.put(n1, "probe/kill")
    nemesis = KillNemesis(*p.args())
    n3.kill()
    nemesis.record("kill", {"node": n3.name})
    dead = await p.get(n3, "probe/kill")
    alive = await p.get(n1, "probe/kill")
    await nemesis.restart(n3)
    with anyio.move_on_after(_RECOVER_S):
        # Polling: the restarted node catching up has no notification outside it.
        while (after := await p.get(n3, "probe/kill"))["outcome"] != OK:  # noqa: ASYNC110
            await anyio.sleep(1)
    return {"written": value, "put": outcome, "dead": dead, "alive": alive, "after": after}


async def _connect(src: str | None, host: str, port: int) -> str:
    """``connected``, ``refused`` or ``timeout``: a TCP connect from ``src`` to host:port."""
    try:
        with anyio.fail_after(2):
            stream = await anyio.connect_tcp(host, port, local_host=src)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"
    await stream.aclose()
    return "connected"


async def _partition(p: _Probe) -> Facts:
    assert p.cluster.tools.nft is not None
    nemesis = PartitionNemesis(*p.args(), nft=p.cluster.tools.nft, kinds=("isolate",))
    g = await nemesis.start("isolate")
    (isolated,) = set.intersection(*({a, b} for a, b in g))  # in every cut link
    lone = p.cluster.node(isolated)
    other = next(n for n in p.cluster.nodes[:3] if n.index != isolated)
    await anyio.sleep(4)  # failure detection: pings time out after ~3 s
    facts: Facts = {"isolated": lone.name, "cut": sorted(f"n{a}->n{b}" for a, b in g)}
    facts["cut_link"] = await _connect(lone.host, other.host, RPC_PORT)
    facts["client_link"] = await _connect(None, lone.host, RPC_PORT)
    _, facts["put_isolated"], reply = await p.put(lone, "probe/partition/lone")
    facts["put_isolated_status"] = reply.status
    _, facts["put_majority"], _ = await p.put(other, "probe/partition/major")
    facts["dropped"] = await nemesis.stop()
    facts["fired"] = nemesis.fired
    facts["put_after_heal"] = await p.until_put_ok(lone, "probe/partition/lone") is not None
    return facts


async def _corruption(p: _Probe) -> Facts:
    n1 = p.cluster.node(1)
    value, outcome, _ = await p.put(n1, "probe/corrupt", _BIG)
    before = set(block_files(n1.data))
    await anyio.sleep(1)
    mine = [f for f in block_files(n1.data) if f not in before] or block_files(n1.data)
    # The object's blocks: written just now, so the newest files on the node.
    target = max(mine, key=lambda f: f.stat().st_mtime_ns)
    nemesis = CorruptionNemesis(*p.args())
    detail = corrupt_block(target, "bitflip", p.rng, other=None)
    nemesis.record("corrupt", {"node": n1.name, "block": target.name, "detail": detail})
    got = await p.get(n1, "probe/corrupt")
    quarantined = target.with_name(target.name + ".corrupted").exists()
    return {"written": value, "put": outcome, "get": got, "quarantined": quarantined}


async def _disk_full(p: _Probe) -> Facts:
    n1 = p.cluster.node(1)
    old, old_outcome, _ = await p.put(n1, "probe/disk/old", _BIG)
    nemesis = DiskFullNemesis(*p.args(), target="data")
    await nemesis.fill(p.cluster.nodes)
    try:
        _, full_outcome, reply = await p.put(n1, "probe/disk/new", _BIG)
        full_status = reply.status
        read_old = await p.get(n1, "probe/disk/old")
        alive = [n.name for n in p.cluster.nodes if n.running]
    finally:
        nemesis.free()
    recovered = await p.until_put_ok(n1, "probe/disk/new", _BIG) is not None
    return {
        "old": old, "old_put": old_outcome, "full_put": full_outcome, "full_status": full_status,
        "read_old": read_old, "alive_when_full": alive, "put_after_free": recovered,
    }  # fmt: skip


async def _layout(p: _Probe) -> Facts:
    nemesis = LayoutNemesis(*p.args())
    first = p.cluster.node(1)
    versions = [await p.cluster.layout_version(first)]
    applied = []
    for _ in range(3):
        ok = await nemesis.change()
        applied.append(ok)
        versions.append(await p.cluster.layout_version(first))
    await anyio.sleep(3)
    seen = {}
    for node in p.cluster.nodes:
        with anyio.move_on_after(_RECOVER_S):
            # Polling: layout gossip reaching a node has no notification outside it.
            while (v := await p.cluster.layout_version(node)) != versions[-1]:  # noqa: ASYNC110
                await anyio.sleep(1)
        seen[node.name] = v
    changes = [e.data for e in p.history.nemesis_events() if e.key == "layout"]
    return {"versions": versions, "applied": applied, "seen": seen, "changes": changes}


_RUN: Final[dict[str, Callable[[_Probe], Awaitable[Facts]]]] = {
    "clock": _clock,
    "pause": _pause,
    "kill": _kill,
    "partition": _partition,
    "corruption": _corruption,
    "disk-full": _disk_full,
    "layout": _layout,
}


async def run_probe(name: str, out: Path, workdir: Path, tools: Tools) -> int:
    """Runs probe ``name`` (or ``all``) on a fresh cluster and writes the facts to ``out``."""
    names = PROBES if name == "all" else (name,)
    spec = ClusterSpec(nodes=4, storage_nodes=3, tmpfs="data", clock="hook")
    root = workdir / "probe-nodes"
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, spec, tools)
    history = History()
    facts: dict[str, Facts] = {}
    try:
        await cluster.start()
        probe = _Probe(cluster, history)
        for n in names:
            try:
                facts[n] = await _RUN[n](probe)
            except Exception as exc:  # one probe's failure must not hide the others'
                facts[n] = {"error": f"{exc!r}", "trace": traceback.format_exc()[-2000:]}
            facts[n]["events"] = [
                {"nemesis": e.key, "action": e.value, **e.data} for e in history.nemesis_events()
            ]
            history = probe.history = History()
    except HarnessError as exc:
        facts["harness"] = {"error": str(exc)}
    finally:
        with anyio.CancelScope(shield=True):
            await cluster.stop()
        cluster.kill_all()
    text = json.dumps(facts, indent=1, default=str)
    await anyio.to_thread.run_sync(out.write_text, text)
    return 0

"""Nemeses: the faults a run injects while the clients work (fault-testing.md §3.4).

Theory of operation
-------------------
A nemesis is a task that loops until cancelled, injecting one fault at a time and undoing
it, and a :meth:`Nemesis.heal` that undoes whatever is still in force (it runs shielded,
once the run's fault phase ends). Every action is recorded in the run's history as an op
with ``process=-1, f="nemesis", key=<nemesis name>, value=<action>``, the runner's
monotonic clock and its parameters in ``data``; the report shows them around anomalies.

Several nemeses may run at once (``clock+kill+partition``). Those that take nodes down
(kill, pause) share a :class:`FaultBudget`: at most a minority of the replication factor
(one node) is down at a time, so that quorums stay possible and a run measures safety,
not only unavailability (Garage's Jepsen suite does the same).

*Proving the nemesis fired* (Garage's d7ab2c63): :attr:`Nemesis.fired` counts the faults
that took effect; the partition nemesis counts only partitions whose nftables counters
dropped packets (nodes tried to talk across them). A run whose nemeses fired nothing fails.

The nemeses:

- ``kill``: SIGKILL a node's process group, restart it 2-5 s later, every 5-10 s.
- ``pause``: SIGSTOP for 2-10 s, then SIGCONT, every 5-10 s.
- ``partition``: a random grudge (:mod:`faults._grudge`) for 3-5 s, then healed for 3-5 s.
- ``clock``: every 1-2 s, bump a node's clock by ±2^(2..18) ms (Jepsen's exponential
  spread, at most ±262 s, within SigV4's 15 min skew), strobe it (alternate two offsets
  every 10-50 ms for 2-5 s), or reset every clock; healing resets them all.
- ``disk-full``: fill a node's tmpfs (data or metadata directory) to 100% with a ballast
  file for 10 s (now and then every node's), then remove it.
- ``corruption``: every 5 s, damage one block file on one node: bit flips, truncation,
  zero-fill, another block's bytes, deletion, or renaming it to another hash; never more
  than one replica of a block.
- ``layout``: every 5-10 s, one layout change applied with the CLI (re-pick the storage
  nodes, add, remove, ``--replace``, change a capacity or a zone), each ``apply`` with the
  version ``layout show`` gives plus one, through a node that knows the latest version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from faults._grudge import GRUDGES, NFT_TABLE, Grudge, grudge, nft_ruleset
from faults.harness import node_host
from faults.history import FAIL, NEMESIS, NEMESIS_PROCESS, OK, History, Op

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from faults.harness import Cluster, NodeProc

__all__ = [
    "NEMESES",
    "ClockNemesis",
    "CorruptionNemesis",
    "DiskFullNemesis",
    "FaultBudget",
    "KillNemesis",
    "LayoutNemesis",
    "Nemesis",
    "PartitionNemesis",
    "PauseNemesis",
    "block_files",
    "corrupt_block",
    "make_nemesis",
]

logger = logging.getLogger(__name__)

#: A block file: 64 hex digits, maybe ``.zst`` (garage_model.block._store).
_BLOCK_NAME: Final = re.compile(r"^[0-9a-f]{64}(\.zst)?$")
#: How long a restarted node may take to listen before the kill nemesis gives up waiting
#: (and lets another node go down); Python nodes import for seconds on a busy machine.
_RESTART_WAIT_S: Final = 60.0
#: Jepsen's clock bumps: ±2^(2..18) ms, i.e. up to ±262 s.
_CLOCK_EXP: Final = (2.0, 18.0)
#: Chunk of the disk-full ballast after the first big allocation.
_BALLAST_CHUNK: Final = 64 * 1024


class FaultBudget:
    """Which nodes are down (killed, restarting or paused); at most ``limit`` at once.

    Args:
        limit: how many nodes may be down together.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._down: set[int] = set()

    def take(self, candidates: Sequence[int], rng: random.Random) -> int | None:
        """Marks a random candidate down and returns it; None if the budget is spent."""
        free = [n for n in candidates if n not in self._down]
        if len(self._down) >= self._limit or not free:
            return None
        node = rng.choice(free)
        self._down.add(node)
        return node

    def release(self, node: int) -> None:
        """The node is up again."""
        self._down.discard(node)


class Nemesis(ABC):
    """One kind of fault, injected in a loop and healed at the end.

    Args:
        cluster: the nodes.
        history: where events are recorded.
        rng: the nemesis's random source (seeded per run).
        budget: the down-node budget shared with the other nemeses of the run.
    """

    name: str = ""

    def __init__(
        self, cluster: Cluster, history: History, rng: random.Random, budget: FaultBudget
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.budget = budget
        self.fired = 0

    def record(
        self, action: str, data: dict[str, Any] | None = None, *, t0: int | None = None,
        outcome: str = OK,
    ) -> None:  # fmt: skip
        """Appends one event of this nemesis to the history."""
        t1 = time.monotonic_ns()
        op = Op(NEMESIS_PROCESS, NEMESIS, self.name, action, outcome, t0 or t1, t1, data or {})
        self.history.append(op)

    async def sleep(self, lo: float, hi: float) -> None:
        """Sleeps a random time in ``[lo, hi]`` seconds."""
        await anyio.sleep(self.rng.uniform(lo, hi))

    @abstractmethod
    async def run(self) -> None:
        """Injects faults until cancelled."""

    @abstractmethod
    async def heal(self) -> None:
        """Undoes every fault still in force (called shielded, after :meth:`run`)."""

    def evidence(self) -> str:
        """Why the nemesis counts as having fired (or not), for the report."""
        return f"{self.fired} {self.name} events took effect"


# ---------------------------------------------------------------- kill and pause


@final
class KillNemesis(Nemesis):
    """SIGKILL a node, restart it 2-5 s later; every 5-10 s."""

    name = "kill"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._killed: set[int] = set()

    async def run(self) -> None:
        while True:
            await self.sleep(5, 10)
            running = [n.index for n in self.cluster.nodes if n.running]
            index = self.budget.take(running, self.rng)
            if index is None:
                continue
            node = self.cluster.node(index)
            try:
                node.kill()
                self._killed.add(index)
                self.fired += 1
                self.record("kill", {"node": node.name})
                await self.sleep(2, 5)
                await self.restart(node)
            finally:
                self.budget.release(index)

    async def restart(self, node: NodeProc) -> None:
        """Starts a killed node again and waits (bounded) until it listens."""
        t0 = time.monotonic_ns()
        node.start()
        self._killed.discard(node.index)
        try:
            with anyio.fail_after(_RESTART_WAIT_S):
                await node.wait_listening()
        except Exception as exc:  # a node that does not come back is a finding: record it
            self.record("restart", {"node": node.name, "error": str(exc)}, t0=t0, outcome=FAIL)
            return
        self.record("restart", {"node": node.name}, t0=t0)

    async def heal(self) -> None:
        for index in sorted(self._killed):
            await self.restart(self.cluster.node(index))


@final
class PauseNemesis(Nemesis):
    """SIGSTOP a node for 2-10 s, then SIGCONT; every 5-10 s."""

    name = "pause"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._paused: set[int] = set()

    async def run(self) -> None:
        while True:
            await self.sleep(5, 10)
            running = [n.index for n in self.cluster.nodes if n.running and not n.paused]
            index = self.budget.take(running, self.rng)
            if index is None:
                continue
            node = self.cluster.node(index)
            try:
                self.pause(node)
                await self.sleep(2, 10)
                self.resume(node)
            finally:
                self.budget.release(index)

    def pause(self, node: NodeProc) -> None:
        """SIGSTOP ``node`` now."""
        node.pause()
        self._paused.add(node.index)
        self.fired += 1
        self.record("pause", {"node": node.name})

    def resume(self, node: NodeProc) -> None:
        """SIGCONT ``node`` now."""
        node.resume()
        self._paused.discard(node.index)
        self.record("resume", {"node": node.name})

    async def heal(self) -> None:
        for index in sorted(self._paused):
            self.resume(self.cluster.node(index))


# ---------------------------------------------------------------- partitions


@final
class PartitionNemesis(Nemesis):
    """A random grudge for 3-5 s, then no partition for 3-5 s.

    Args:
        nft: the ``nft`` program.
        kinds: the grudge shapes to pick from (default: all).
    """

    name = "partition"

    def __init__(self, *args: Any, nft: str, kinds: Sequence[str] = GRUDGES) -> None:
        super().__init__(*args)
        self._nft = nft
        self._kinds = tuple(kinds)
        self._active = False
        self.dropped = 0

    def _apply(self, g: Grudge) -> None:
        script = nft_ruleset(g, node_host)
        subprocess.run([self._nft, "-f", "-"], input=script, text=True, check=True)
        self._active = bool(g)

    def _drops(self) -> int:
        listed = subprocess.run(
            [self._nft, "-j", "list", "table", *NFT_TABLE.split()],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if listed.returncode != 0:
            return 0
        return sum(
            item["rule"]["expr"][2]["counter"]["packets"]
            for item in json.loads(listed.stdout)["nftables"]
            if "rule" in item
        )

    async def start(self, kind: str) -> Grudge:
        """Applies a random grudge of ``kind`` now; the grudge."""
        nodes = [n.index for n in self.cluster.nodes]
        g = grudge(kind, nodes, self.rng)
        await anyio.to_thread.run_sync(self._apply, g)
        links = [f"n{a}->n{b}" for a, b in sorted(g)]
        self.record("start", {"kind": kind, "cut": links})
        return g

    async def stop(self) -> int:
        """Heals the partition in force; the packets it dropped."""
        drops = await anyio.to_thread.run_sync(self._drops)
        flush = [self._nft, "flush", "table", *NFT_TABLE.split()]
        await anyio.run_process(flush, check=False)
        self._active = False
        self.dropped += drops
        if drops > 0:
            self.fired += 1
        self.record("stop", {"dropped_packets": drops})
        return drops

    async def run(self) -> None:
        while True:
            await self.sleep(3, 5)
            await self.start(self.rng.choice(self._kinds))
            await self.sleep(3, 5)
            await self.stop()

    async def heal(self) -> None:
        if self._active:
            await self.stop()

    def evidence(self) -> str:
        return f"{self.fired} partitions dropped node-to-node packets ({self.dropped} in all)"


# ---------------------------------------------------------------- clocks


@final
class ClockNemesis(Nemesis):
    """Bumps, strobes and resets the nodes' wall clocks through their faketime files."""

    name = "clock"

    def _bump_s(self) -> float:
        ms = 2 ** self.rng.uniform(*_CLOCK_EXP)
        return self.rng.choice((-1, 1)) * ms / 1000

    async def run(self) -> None:
        while True:
            await self.sleep(1, 2)
            roll = self.rng.random()
            node = self.rng.choice(self.cluster.nodes)
            if roll < 0.6:
                self.bump(node, round(self._bump_s(), 3))
            elif roll < 0.85:
                await self._strobe(node)
            else:
                self._reset()

    def bump(self, node: NodeProc, offset_s: float) -> None:
        """Sets ``node``'s clock offset now."""
        node.set_clock_offset(offset_s)
        self.fired += 1
        self.record("bump", {"node": node.name, "offset_s": offset_s})

    async def _strobe(self, node: NodeProc) -> None:
        base, delta = node.clock_offset_s, abs(self._bump_s())
        period_s, duration_s = self.rng.uniform(0.01, 0.05), self.rng.uniform(2, 5)
        t0 = time.monotonic_ns()
        self.fired += 1
        with anyio.move_on_after(duration_s):
            high = False
            while True:
                node.set_clock_offset(base + delta if high else base)
                high = not high
                await anyio.sleep(period_s)
        node.set_clock_offset(base)
        data = {"node": node.name, "base_s": base, "delta_s": round(delta, 3)}
        data["period_s"] = round(period_s, 3)
        self.record("strobe", data, t0=t0)

    def _reset(self) -> None:
        for node in self.cluster.nodes:
            node.set_clock_offset(0.0)
        self.record("reset")

    async def heal(self) -> None:
        self._reset()


# ---------------------------------------------------------------- disk full


def _fill(directory: Path) -> int:
    """Writes a ballast file in ``directory`` until its filesystem is full; its size."""
    path = directory / "faults-ballast"
    stat = os.statvfs(directory)
    written = 0
    with path.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize)
            written = os.fstat(f.fileno()).st_size
        zeros = bytes(_BALLAST_CHUNK)
        try:
            f.seek(written)
            while True:
                written += f.write(zeros)
        except OSError:  # ENOSPC: full
            pass
    return written


@final
class DiskFullNemesis(Nemesis):
    """Fills a node's tmpfs to 100% for 10 s, then frees it.

    Args:
        target: ``"data"`` or ``"meta"``: which directory of each node is a tmpfs.
    """

    name = "disk-full"

    def __init__(self, *args: Any, target: str) -> None:
        super().__init__(*args)
        self._target = target
        self._full: set[int] = set()

    def _dir(self, node: NodeProc) -> Path:
        return node.data if self._target == "data" else node.meta

    async def fill(self, nodes: Sequence[NodeProc]) -> None:
        """Fills the tmpfs of ``nodes`` now."""
        sizes = {}
        for node in nodes:
            sizes[node.name] = await anyio.to_thread.run_sync(_fill, self._dir(node))
            self._full.add(node.index)
        self.fired += 1
        self.record("fill", {"dir": self._target, "ballast_bytes": sizes})

    def free(self) -> None:
        """Removes every ballast file."""
        names = []
        for index in sorted(self._full):
            node = self.cluster.node(index)
            (self._dir(node) / "faults-ballast").unlink(missing_ok=True)
            names.append(node.name)
        self._full.clear()
        self.record("free", {"nodes": names})

    async def run(self) -> None:
        while True:
            await self.sleep(3, 6)
            nodes = self.cluster.nodes
            chosen = list(nodes) if self.rng.random() < 0.3 else [self.rng.choice(nodes)]
            await self.fill(chosen)
            await anyio.sleep(10)
            self.free()

    async def heal(self) -> None:
        if self._full:
            self.free()


# ---------------------------------------------------------------- block corruption


def block_files(data_dir: Path) -> list[Path]:
    """The block files under a node's data directory."""
    found = []
    for dirpath, _, files in os.walk(data_dir):
        found += [Path(dirpath) / f for f in files if _BLOCK_NAME.match(f)]
    return sorted(found)


def corrupt_block(path: Path, kind: str, rng: random.Random, *, other: Path | None) -> str:
    """Damages one block file; what was done (for the history).

    Kinds: ``bitflip`` (each bit flipped with p = 1e-3, at least one), ``truncate`` (to a
    random shorter length), ``zero`` (same length, all zeros), ``swap`` (the bytes of
    ``other``: valid-looking wrong data), ``delete``, ``rename`` (to another hash's name).
    """
    if kind == "delete":
        path.unlink()
        return "deleted"
    if kind == "rename":
        target = path.with_name("".join(rng.choice("0123456789abcdef") for _ in range(64)))
        path.rename(target)
        return f"renamed to {target.name[:16]}"
    data = bytearray(path.read_bytes())
    if kind == "bitflip":
        flips = max(1, int(len(data) * 8 * 1e-3 * rng.random() * 2))
        for _ in range(flips):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        detail = f"{flips} bits flipped"
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
        detail = f"truncated to {len(data)} bytes"
    elif kind == "zero":
        data = bytearray(len(data))
        detail = "zero-filled"
    elif kind == "swap" and other is not None:
        data = bytearray(other.read_bytes())
        detail = f"overwritten with block {other.name[:16]}"
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    path.write_bytes(bytes(data))
    return detail


#: The corruptions the nemesis picks from.
_CORRUPTIONS: Final = ("bitflip", "truncate", "zero", "swap", "delete", "rename")


@final
class CorruptionNemesis(Nemesis):
    """Damages one block file on one node every 5 s (at most one replica per block)."""

    name = "corruption"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.corrupted: dict[str, str] = {}  # block hash -> node name

    def corrupt_one(self, node: NodeProc) -> dict[str, str] | None:
        """Damages a random block of ``node`` never damaged before; the event's data."""
        files = [p for p in block_files(node.data) if p.name[:64] not in self.corrupted]
        if not files:
            return None
        path = self.rng.choice(files)
        kind = self.rng.choice(_CORRUPTIONS)
        others = [p for p in files if p != path]
        if kind == "swap" and not others:
            kind = "bitflip"
        other = self.rng.choice(others) if others else None
        try:
            detail = corrupt_block(path, kind, self.rng, other=other)
        except OSError:  # the node deleted or rewrote it meanwhile
            return None
        self.corrupted[path.name[:64]] = node.name
        self.fired += 1
        return {"node": node.name, "block": path.name[:64], "kind": kind, "detail": detail}

    async def run(self) -> None:
        while True:
            await anyio.sleep(5)
            node = self.rng.choice(self.cluster.nodes)
            data = await anyio.to_thread.run_sync(self.corrupt_one, node)
            if data is not None:
                self.record("corrupt", data)

    async def heal(self) -> None:
        # Damage stays: healing is the cluster's job (read repair, scrub, resync), which
        # the final phase starts and the convergence check judges.
        return


# ---------------------------------------------------------------- layout changes


@final
class LayoutNemesis(Nemesis):
    """Applies a layout change every 5-10 s with the CLI."""

    name = "layout"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._applied = 0  # the newest version this nemesis applied
        self._zones = {n.index: f"dc{(n.index - 1) % 3 + 1}" for n in self.cluster.nodes}

    async def _pick_cli_node(self) -> NodeProc | None:
        """A live node that knows the newest layout version (never apply an old number)."""
        nodes = self.cluster.live_nodes()
        self.rng.shuffle(nodes)
        for node in nodes:
            with contextlib.suppress(Exception):
                version = await self.cluster.layout_version(node)
                if version >= self._applied:
                    self._applied = version
                    return node
        return None

    def _plan(self) -> tuple[str, list[list[str]]]:
        """A random change: its name and the ``layout`` commands staging it."""
        nodes = self.cluster.nodes
        storage = sorted(self.cluster.storage)
        others = [n.index for n in nodes if n.index not in storage]
        short = {n.index: n.node_id[:16] for n in nodes}
        # Changes that move partitions come more often: they are what stresses the
        # layout-history machinery (capacity and zone changes may move nothing), and a
        # rotation onto the nodes that hold nothing moves the most.
        choices = ["capacity", "zone", "shuffle"]
        if others:
            choices += ["rotate", "rotate", "rotate", "add", "add", "replace", "replace"]
        if len(storage) > 3:
            choices += ["remove", "remove"]
        what = self.rng.choice(choices)

        def assign(i: int, *extra: str) -> list[str]:
            cap = self.rng.choice(("1G", "2G"))
            return ["assign", "-z", self._zones[i], "-c", cap, *extra, short[i]]

        if what == "add":
            i = self.rng.choice(others)
            return f"add n{i}", [assign(i)]
        if what == "remove":
            i = self.rng.choice(storage)
            return f"remove n{i}", [["remove", short[i]]]
        if what == "replace":
            old, new = self.rng.choice(storage), self.rng.choice(others)
            self._zones[new] = self._zones[old]
            return f"replace n{old} by n{new}", [assign(new, "--replace", short[old])]
        if what == "capacity":
            i = self.rng.choice(storage)
            return f"capacity of n{i}", [assign(i)]
        if what == "zone":
            i = self.rng.choice(storage)
            self._zones[i] = self.rng.choice([z for z in ("dc1", "dc2", "dc3", "dc4")])
            return f"zone of n{i}", [assign(i)]
        # shuffle: 3 storage nodes, the others gateways (as Garage's Jepsen r nemesis);
        # rotate: the same, preferring the nodes that store nothing now.
        if what == "rotate":
            fresh = self.rng.sample(others, min(3, len(others)))
            picked = fresh + self.rng.sample(storage, 3 - len(fresh))
        else:
            picked = self.rng.sample([n.index for n in nodes], 3)
        for zone, i in enumerate(picked, start=1):  # three zones: full zone redundancy
            self._zones[i] = f"dc{zone}"
        cmds = [assign(i) for i in picked]
        cmds += [["assign", "-g", short[n.index]] for n in nodes if n.index not in picked]
        return f"storage on {[f'n{i}' for i in sorted(picked)]}", cmds

    def _roles_after(self, cmds: list[list[str]]) -> tuple[set[int], set[int]]:
        """(storage nodes, nodes with any role) once ``cmds`` are applied."""
        by_short = {n.node_id[:16]: n.index for n in self.cluster.nodes}
        storage, members = set(self.cluster.storage), set(self.cluster.members)
        for cmd in cmds:
            target = by_short[cmd[-1]]
            members.add(target)
            if cmd[0] == "remove":
                storage.discard(target)
                members.discard(target)
            elif "-g" in cmd:
                storage.discard(target)
            else:
                storage.add(target)
            if "--replace" in cmd:
                old = by_short[cmd[cmd.index("--replace") + 1]]
                storage.discard(old)
                members.discard(old)
        return storage, members

    async def change(self) -> bool:
        """Stages and applies one random change; whether it was applied."""
        node = await self._pick_cli_node()
        if node is None:
            self.record("skip", {"why": "no live node knows the newest layout"}, outcome=FAIL)
            return False
        what, cmds = self._plan()
        t0 = time.monotonic_ns()
        try:
            await self.cluster.cli_ok(node, "layout", "revert", "--yes")
            for cmd in cmds:
                await self.cluster.cli_ok(node, "layout", *cmd)
            version = await self.cluster.apply_layout(node)
        except Exception as exc:  # refused (e.g. too few zones): recorded, not fatal
            with contextlib.suppress(Exception):
                await self.cluster.cli_ok(node, "layout", "revert", "--yes")
            self.record("apply", {"change": what, "via": node.name, "error": str(exc)[:300]},
                        t0=t0, outcome=FAIL)  # fmt: skip
            return False
        self._applied = version
        self.cluster.storage, self.cluster.members = self._roles_after(cmds)
        self.fired += 1
        self.record("apply", {"change": what, "via": node.name, "version": version}, t0=t0)
        return True

    async def run(self) -> None:
        while True:
            await self.sleep(5, 10)
            await self.change()

    async def heal(self) -> None:
        return  # a layout change is not undone: the cluster must finish the transition


# ---------------------------------------------------------------- registry

#: Every nemesis name :func:`make_nemesis` knows.
NEMESES: Final = ("clock", "corruption", "disk-full", "disk-full-meta", "kill", "layout",
                  "partition", "pause")  # fmt: skip


def make_nemesis(
    name: str,
    cluster: Cluster,
    history: History,
    rng: random.Random,
    budget: FaultBudget,
) -> Nemesis:
    """Builds the nemesis called ``name`` (see :data:`NEMESES`).

    Raises:
        ValueError: an unknown name, or a tool the nemesis needs is missing.
    """
    args = (cluster, history, rng, budget)
    tools = cluster.tools
    if name == "kill":
        return KillNemesis(*args)
    if name == "pause":
        return PauseNemesis(*args)
    if name == "partition":
        if tools.nft is None:
            raise ValueError(f"partitions need nftables: {tools.missing.get('nft')}")
        return PartitionNemesis(*args, nft=tools.nft)
    if name == "clock":
        if cluster.spec.clock == "faketime" and tools.faketime_lib is None:
            raise ValueError(f"clock skew needs libfaketime: {tools.missing.get('faketime')}")
        if not cluster.spec.clock:
            raise ValueError("the cluster was started without a clock file (spec.clock)")
        return ClockNemesis(*args)
    if name in ("disk-full", "disk-full-meta"):
        return DiskFullNemesis(*args, target="meta" if name.endswith("meta") else "data")
    if name == "corruption":
        return CorruptionNemesis(*args)
    if name == "layout":
        return LayoutNemesis(*args)
    raise ValueError(f"unknown nemesis {name!r}: one of {', '.join(NEMESES)}")

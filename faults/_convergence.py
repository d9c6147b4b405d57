"""What every replica holds after a run: Merkle roots, referenced blocks, block files.

Theory of operation (fault-testing.md §3.3 final phase, §3.6 "after heal + sync"): the
harness reads each node's metadata db **read-only** with sqlite3 (no node code runs: a
broken node cannot vouch for itself) and its data directory, and hands
:func:`faults.checkers.check_convergence` three maps:

- per ``(table, partition)``, each replica's Merkle root: ``blake2sum`` of the root node
  stored at key ``u16 BE partition`` in the ``<table>:merkle_tree`` tree (absent: empty).
  The replicas of a partition are the storage nodes the current layout version assigns it;
  the bucket, alias and key tables are copied to every node of the layout (partition 0);
- per node, the content hash of each referenced block file it holds (blake2 of the plain
  content, decompressing ``.zst`` files: the hash the block is named by);
- per block referenced by a complete object version (object table → version table →
  blocks), the storage nodes of the block's partition.

The Merkle trie lags behind the store (``<table>:merkle_todo``): roots are only compared
once every todo queue is empty, and :func:`wait_converged` polls until the three maps
agree (or a deadline passes): the time it took is the run's convergence time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio

from faults.checkers import Anomaly, check_convergence
from garage_model.block import DataBlock, DataBlockHeader
from garage_model.s3.object_table import Complete, FirstBlock, Object
from garage_model.s3.version_table import Version
from garage_rpc.layout import NB_PARTITIONS, LayoutHistory, partition_of
from garage_rpc.layout_manager import LAYOUT_FILE
from garage_util.data import blake2sum
from garage_util.encode import decode_versioned

if TYPE_CHECKING:
    from pathlib import Path

    from faults.harness import Cluster, NodeProc

__all__ = ["ReplicaState", "read_replicas", "wait_converged"]

#: The tables every node of the layout holds whole (TableFullReplication).
_FULL_TABLES: Final = frozenset({"bucket_v2", "bucket_alias", "key"})
_MERKLE_SUFFIX: Final = ":merkle_tree"
_TODO_SUFFIX: Final = ":merkle_todo"
#: Polling the replicas reads every node's db: every 3 s is cheap enough for 2 cores.
_POLL_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """The replicas as read at one moment.

    Attributes:
        merkle_roots: ``(table, partition)`` -> node name -> root hash (hex).
        blocks: node name -> block hash -> content hash, for the referenced blocks it holds.
        referenced: block hash -> node names that must hold it.
        pending: Merkle todo items not yet applied, summed over nodes (roots lag if > 0).
        problems: anomalies found while reading (a version row missing everywhere...).
    """

    merkle_roots: dict[tuple[str, int], dict[str, object]]
    blocks: dict[str, dict[str, str]]
    referenced: dict[str, set[str]]
    pending: int
    problems: list[Anomaly] = field(default_factory=list)

    def anomalies(self) -> list[Anomaly]:
        """What :func:`~faults.checkers.check_convergence` finds, plus reading problems."""
        found = check_convergence(self.merkle_roots, self.blocks, self.referenced)
        if self.pending:
            found.append(
                Anomaly("merkle-pending", None, f"{self.pending} Merkle updates not applied")
            )
        return found + self.problems


def _connect(node: NodeProc) -> sqlite3.Connection:
    uri = f"file:{node.meta / 'db.sqlite'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    conn.execute("PRAGMA query_only = 1")
    return conn


def _quoted(tree: str) -> str:
    return '"tree_' + tree.replace('"', '""') + '"'


def _trees(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return [name.removeprefix("tree_") for (name,) in rows if name.startswith("tree_")]


def _layout(cluster: Cluster) -> LayoutHistory:
    """The newest layout history any node persisted."""
    best: LayoutHistory | None = None
    for node in cluster.nodes:
        path = node.meta / LAYOUT_FILE
        with contextlib.suppress(OSError, ValueError):
            history = decode_versioned(LayoutHistory, path.read_bytes())
            if best is None or history.current.version > best.current.version:
                best = history
    if best is None:
        raise FileNotFoundError("no node has a cluster_layout file")
    return best


def _content_hash(path: Path) -> str:
    raw = path.read_bytes()
    header = DataBlockHeader.COMPRESSED if path.name.endswith(".zst") else DataBlockHeader.PLAIN
    try:
        return blake2sum(DataBlock(header, raw).content()).hex()
    except ValueError:
        return "undecodable"


def _block_path(node: NodeProc, block: str) -> Path | None:
    sub = node.data / block[:2] / block[2:4]
    for name in (block, block + ".zst"):
        if (sub / name).is_file():
            return sub / name
    return None


def read_replicas(cluster: Cluster) -> ReplicaState:
    """Reads every node's metadata db and block files (blocking: run it in a thread)."""
    history = _layout(cluster)
    current = history.current
    by_id = {n.node_id: n for n in cluster.nodes}
    layout_nodes = [by_id[u.hex()] for u in current.all_nodes if u.hex() in by_id]
    replicas = {
        p: [by_id[u.hex()] for u in current.partition_nodes(p) if u.hex() in by_id]
        for p in range(NB_PARTITIONS)
    }
    roots: dict[tuple[str, int], dict[str, object]] = {}
    pending = 0
    objects: dict[bytes, bytes] = {}
    versions: dict[bytes, bytes] = {}
    for node in layout_nodes:
        conn = _connect(node)
        try:
            trees = _trees(conn)
            for tree in trees:
                if tree.endswith(_TODO_SUFFIX):
                    (n,) = conn.execute(f"SELECT COUNT(*) FROM {_quoted(tree)}").fetchone()
                    pending += n
                if not tree.endswith(_MERKLE_SUFFIX):
                    continue
                table = tree.removesuffix(_MERKLE_SUFFIX)
                full = table in _FULL_TABLES
                for p in [0] if full else range(NB_PARTITIONS):
                    if not full and node not in replicas[p]:
                        continue
                    row = conn.execute(
                        f"SELECT v FROM {_quoted(tree)} WHERE k = ?", (p.to_bytes(2, "big"),)
                    ).fetchone()
                    root = "empty" if row is None else blake2sum(row[0]).hex()
                    roots.setdefault((table, p), {})[node.name] = root
            if "object:table" in trees:
                objects.update(conn.execute('SELECT k, v FROM "tree_object:table"').fetchall())
            if "version:table" in trees:
                versions.update(conn.execute('SELECT k, v FROM "tree_version:table"').fetchall())
        finally:
            conn.close()
    referenced: dict[str, set[str]] = {}
    problems: list[Anomaly] = []
    for raw in objects.values():
        obj = Object.decode(raw)
        for v in obj.versions:
            if not (isinstance(v.state, Complete) and isinstance(v.state.data, FirstBlock)):
                continue
            row = versions.get(bytes(v.uuid))  # tree key: the uuid, then an empty sort key
            if row is None:
                detail = f"{obj.key!r}: version {bytes(v.uuid).hex()[:16]} is on no replica"
                problems.append(Anomaly("missing-version", None, detail))
                continue
            for _, vblock in Version.decode(row).blocks.vals:
                h = bytes(vblock.hash)
                holders = replicas[partition_of(vblock.hash)]
                referenced[h.hex()] = {n.name for n in holders}
    blocks: dict[str, dict[str, str]] = {n.name: {} for n in cluster.nodes}
    for block, names in referenced.items():
        for node in cluster.nodes:
            if node.name in names and (path := _block_path(node, block)) is not None:
                blocks[node.name][block] = _content_hash(path)
    return ReplicaState(roots, blocks, referenced, pending, problems)


async def wait_converged(cluster: Cluster, *, timeout_s: float) -> tuple[int | None, ReplicaState]:
    """Polls the replicas until they agree.

    Returns:
        The runner's ``time.monotonic_ns()`` when they were first seen agreeing (None if
        not within ``timeout_s``), and the last state read.
    """
    state = await anyio.to_thread.run_sync(read_replicas, cluster)
    with anyio.move_on_after(timeout_s):
        while state.anomalies():
            await anyio.sleep(_POLL_S)
            state = await anyio.to_thread.run_sync(read_replicas, cluster)
        return time.monotonic_ns(), state
    return None, state

"""One node of kv_app, a shared-notes store built on garage_table (no S3 anywhere).

Run three of these (``demo.py`` does) and they form a cluster that keeps every note on all
three nodes, answers from a quorum of two, and repairs a node that was down::

    KV_APP_RPC_SECRET=<64 hex digits> python node.py --meta-dir /tmp/a
    KV_APP_RPC_SECRET=... python node.py --meta-dir /tmp/b --bootstrap <id of a>@127.0.0.1:<port>

What this file shows an embedder, top to bottom:

1. **The table.** A :class:`Note` lives on a board (partition key: all notes of a board
   are stored together, on the same replicas) under a title (sort key). Its content is an
   ``LwwMap`` of named fields, so concurrent edits of *different* fields on different
   nodes both survive the merge, and edits of the same field keep the newest. Clearing
   every field is a delete: such a note is a **tombstone**. :class:`NoteSchema` declares
   the table, and its ``updated`` hook keeps a count of live notes per board in the same
   db transaction as each change.
2. **The node.** The transport (NetApp), full-mesh peering, the cluster layout and its
   gossip (LayoutManager, System), the quorum helper (RpcHelper), the local store
   (TableData on sqlite), the replicated table (Table), and anti-entropy (TableSyncer run
   by a SyncWorker, with a MerkleWorker keeping the Merkle trees up to date), all started
   as services in one task group, stopped before the db is closed.
3. **A control surface.** JSON lines on stdin, one JSON reply per line on stdout (logs go
   to stderr). End of input, ``{"op": "quit"}``, SIGINT or SIGTERM stop the node cleanly.
   Operations (every reply has ``"ok"``; errors come as ``{"ok": false, "error": ...}``):

   ==========  ====================================  =========================================
   op          arguments                             does
   ==========  ====================================  =========================================
   status      (none)                                id, layout version, peers, local counts
   layout      ``nodes``: [hex id, ...]              assigns and applies a layout (rf = 3)
   put         ``board``, ``title``, ``fields``      quorum write (a field set to null clears)
   delete      ``board``, ``title``                  quorum write of a tombstone
   get         ``board``, ``title``                  quorum read (repairs stale replicas)
   list        ``board``                             quorum range read of the board
   local       ``board``                             this replica's copy only (no network)
   quit        (none)                                stops the node
   ==========  ====================================  =========================================

The first line a node prints is ``{"event": "ready", "id": ..., "addr": "host:port"}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final, final

import anyio
import anyio.abc
import anyio.to_thread

from garage_rpc import (
    LayoutManager,
    NetApp,
    NodeKey,
    NodeRole,
    Peering,
    PeeringConfig,
    ReplicationParams,
    RequestStrategy,
    System,
)
from garage_table import (
    DeletedFilter,
    EnumerationOrder,
    MerkleWorker,
    StringKey,
    SyncWorker,
    Table,
    TableData,
    TableEntry,
    TableSchema,
    TableShardedReplication,
    TableSyncer,
)
from garage_util.background import BackgroundRunner
from garage_util.clock import now_msec
from garage_util.crdt import LwwMap
from garage_util.data import FixedBytes32
from garage_util.db import Db, open_db
from garage_util.errors import GarageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_util.db import Transaction, Tree

logger = logging.getLogger("kv_app.node")

#: Every note on every node: three nodes, three copies, quorums of two.
REPLICATION_FACTOR: Final = 3
#: The cluster's shared secret comes from the environment, not the command line (which
#: other users of the machine can read in ``ps``).
SECRET_ENV: Final = "KV_APP_RPC_SECRET"
#: Peering timings for a demo on one machine: a stopped node is noticed within a second and
#: a restarted one reconnected within a few tenths (Garage pings every 15 s, over the WAN).
PEERING: Final = PeeringConfig(
    ping_interval_s=0.2,
    ping_timeout_s=1.0,
    max_failed_pings=2,
    retry_interval_s=0.2,
    max_retries=10_000,
    loop_interval_s=0.05,
)
#: Status (and so layout digests) every second, so a node that missed the layout push
#: pulls it quickly (Garage: 10 s).
STATUS_INTERVAL_S: Final = 1.0
#: Quorum calls give up on a replica after 5 s: on 127.0.0.1 an answer takes milliseconds.
STRATEGY: Final = RequestStrategy(timeout_s=5.0)
#: A full anti-entropy pass every 10 s, and 1 s after start (Garage: 10 min and 20 s).
#: A peer (re)connecting or a layout change also triggers one at once (see ``_trigger_syncs``).
SYNC_INTERVAL_S: Final = 10.0
SYNC_FIRST_DELAY_S: Final = 1.0
#: On stop, a worker step still running after this long is cancelled (Garage: 8 s); a
#: sync step waiting on a peer that just died would otherwise hold the stop that long.
EXIT_DEADLINE_S: Final = 2.0
#: The capacity given to each node in the layout; equal capacities, so equal shares.
NODE_CAPACITY: Final = 1 << 30
#: Prefix of the keys of the live-notes count tree (a board's name may be empty).
_COUNT_PREFIX: Final = b"board:"
#: A board listing returns at most this many notes (one quorum range read).
LIST_LIMIT: Final = 10_000


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True, slots=True)
class Note(TableEntry[StringKey, StringKey]):
    """A note: named text fields, each a last-writer-wins register.

    Attributes:
        board: the partition key (a board's notes are stored together).
        title: the sort key (notes of a board are listed by title).
        fields: ``field name -> text``; ``None`` is a cleared field. A note whose fields
            are all cleared is deleted (a tombstone).
    """

    # The stored format's marker; a v2 would set PREVIOUS = Note and define migrate().
    VERSION_MARKER: ClassVar[bytes] = b"KvAppNote1"

    board: str
    title: str
    fields: LwwMap[str, str | None]

    def partition_key(self) -> StringKey:
        return StringKey(self.board)

    def sort_key(self) -> StringKey:
        return StringKey(self.title)

    def is_tombstone(self) -> bool:
        return all(text is None for _, text in self.fields.items())

    def merge(self, other: Note) -> Note:
        """The join of two versions of one note: field by field, the newest write wins."""
        if (self.board, self.title) != (other.board, other.title):
            raise ValueError("cannot merge two different notes")
        fields = self.fields.merge(other.fields)
        return self if fields is self.fields else Note(self.board, self.title, fields)

    def text(self) -> dict[str, str]:
        """The fields that are set, by name."""
        return {name: text for name, text in self.fields.items() if text is not None}


class NoteSchema(TableSchema[StringKey, StringKey, Note, DeletedFilter]):
    """The notes table, and a per-board count of live notes kept by its ``updated`` hook.

    Args:
        db: the node's metadata db (the count lives in its own tree there).
    """

    TABLE_NAME: ClassVar[str] = "kv_app_notes"
    PARTITION_KEY = StringKey
    SORT_KEY = StringKey
    ENTRY = Note

    def __init__(self, db: Db) -> None:
        self.live_counts: Tree = db.open_tree(f"{self.TABLE_NAME}:live_per_board")

    def updated(self, tx: Transaction, old: Note | None, new: Note | None) -> None:
        # Runs inside the transaction that changed the note: the count can never disagree
        # with the store, whatever crashes. Deterministic and db-only, as the hook must be.
        was = old is not None and not old.is_tombstone()
        now = new is not None and not new.is_tombstone()
        if was == now:
            return
        note = new if new is not None else old
        assert note is not None  # the table never calls the hook with neither
        key = _COUNT_PREFIX + note.board.encode()  # prefixed: db keys cannot be empty
        raw = tx.get(self.live_counts, key)
        count = (0 if raw is None else int.from_bytes(raw, "big")) + (1 if now else -1)
        if count:
            tx.insert(self.live_counts, key, count.to_bytes(8, "big"))
        else:
            tx.remove(self.live_counts, key)

    def live_notes(self) -> dict[str, int]:
        """Live (non-deleted) notes per board on this replica (a blocking db read)."""
        return {
            k.removeprefix(_COUNT_PREFIX).decode(): int.from_bytes(v, "big")
            for k, v in self.live_counts.range()
        }


def note_json(note: Note) -> dict[str, object]:
    """How a note is shown to the control client."""
    return {"title": note.title, "fields": note.text(), "deleted": note.is_tombstone()}


# ------------------------------------------------------------------------------ the node


class CommandError(Exception):
    """A control command that is malformed or cannot be done (sent back as an error)."""


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """What a node needs to start.

    Attributes:
        meta_dir: its metadata directory: node key, cluster layout, sqlite db.
        secret: the cluster's 32-byte RPC secret.
        port: the TCP port to listen on (0: any free port).
        bootstrap: ``(node id, (host, port))`` of nodes to join.
    """

    meta_dir: Path
    secret: bytes
    port: int
    bootstrap: tuple[tuple[FixedBytes32, tuple[str, int]], ...]


@final
class Node:
    """The services of one node, and the control operations on them.

    Build it with :meth:`open` (it opens the db), run it with :meth:`run`, close it with
    :meth:`close` once :meth:`run` has returned.
    """

    def __init__(self, options: NodeOptions, key: NodeKey, db: Db) -> None:
        self.db = db
        self.netapp = NetApp(key, options.secret)
        self.peering = Peering(self.netapp, bootstrap_peers=options.bootstrap, config=PEERING)
        # The layout is persisted in meta_dir: a restarted node knows it before any peer.
        self.layout = LayoutManager(
            self.netapp, replication_factor=REPLICATION_FACTOR, metadata_dir=options.meta_dir
        )
        # System exchanges statuses; a peer with another layout digest gets pulled from.
        self.system = System(
            self.netapp,
            self.peering,
            replication_factor=REPLICATION_FACTOR,
            layout=self.layout,
            status_interval_s=STATUS_INTERVAL_S,
        )
        self.rpc = self.system.rpc_helper()
        self.schema = NoteSchema(db)
        replication = TableShardedReplication(
            lambda: self.layout.helper, ReplicationParams(REPLICATION_FACTOR)
        )
        self.data: TableData[Note] = TableData(self.schema, replication, db, node_id=self.netapp.id)
        # With the layout manager, writes in flight hold back acknowledging a new layout.
        self.table = Table(
            self.schema,
            replication,
            self.data,
            self.netapp,
            self.rpc,
            strategy=STRATEGY,
            layout=self.layout,
        )
        self.sync = SyncWorker(
            TableSyncer(self.data, self.netapp),
            interval_s=SYNC_INTERVAL_S,
            first_delay_s=SYNC_FIRST_DELAY_S,
        )
        self.runner = BackgroundRunner(exit_deadline_s=EXIT_DEADLINE_S)
        self.runner.spawn_worker(MerkleWorker(self.data))
        self.runner.spawn_worker(self.sync)
        self._port = options.port
        # A peer that (re)connects may have missed writes, or we may have: sync now.
        self.netapp.on_connected(lambda info: self.sync.add_full_sync())

    @classmethod
    async def open(cls, options: NodeOptions) -> Node:
        """Loads (or creates) the node key and opens the db in ``options.meta_dir``.

        The constructor then opens the table's trees: a few short db calls, made once at
        startup before the node serves anything.
        """
        key = await anyio.to_thread.run_sync(NodeKey.load_or_create, options.meta_dir)
        db = await anyio.to_thread.run_sync(open_db, options.meta_dir / "db")
        try:
            return cls(options, key, db)
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Closes the db. Only once :meth:`run` has returned: no thread may still use it."""
        self.db.close()

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Starts every service, reports the address it listens on, and runs until
        cancelled."""
        async with anyio.create_task_group() as tg:
            addr = await tg.start(self.netapp.run, ("127.0.0.1", self._port))
            assert addr is not None  # we gave a bind address
            for service in (self.peering.run, self.system.run, self.rpc.run, self.table.run):
                await tg.start(service)
            await tg.start(self.runner.run)
            tg.start_soon(self._trigger_syncs)
            task_status.started(addr)

    async def stop_workers(self) -> None:
        """Lets each background worker finish its step (for at most ``EXIT_DEADLINE_S``)
        and stop; call it before cancelling :meth:`run`, for a graceful stop."""
        await self.runner.shutdown()

    async def _trigger_syncs(self) -> None:
        # Garage syncs every table when a new layout version moves partitions. Only a new
        # version counts: the history also changes when nodes acknowledge versions, which
        # says nothing about where data must be.
        version = self.layout.helper.current.version
        while True:
            await self.layout.wait_changed()
            if self.layout.helper.current.version != version:
                version = self.layout.helper.current.version
                self.sync.add_full_sync()

    # -------------------------------------------------------------- operations

    async def handle(self, request: dict[str, object]) -> dict[str, object]:
        """Runs one control command; returns the reply's fields (``ok`` is added later)."""
        match request.get("op"):
            case "status":
                return await self.status()
            case "layout":
                version = await self.apply_layout([_node_id(n) for n in _list(request, "nodes")])
                return {"layout_version": version}
            case "put":
                fields = _dict(request, "fields")
                note = await self.put(_str(request, "board"), _str(request, "title"), fields)
                return {"note": note_json(note)}
            case "delete":
                deleted = await self.delete(_str(request, "board"), _str(request, "title"))
                return {"deleted": deleted}
            case "get":
                got = await self.table.get(
                    StringKey(_str(request, "board")), StringKey(_str(request, "title"))
                )
                return {"note": None if got is None else note_json(got)}
            case "list":
                notes = await self.table.get_range(
                    StringKey(_str(request, "board")), filter=DeletedFilter.ANY, limit=LIST_LIMIT
                )
                return {"notes": [note_json(n) for n in notes]}
            case "local":
                return {"notes": [note_json(n) for n in await self.local(_str(request, "board"))]}
            case op:
                raise CommandError(f"unknown op {op!r}")

    async def status(self) -> dict[str, object]:
        """What a driver needs to wait on: peers, layout, and this replica's contents."""

        def local_counts() -> tuple[int, dict[str, int], int]:
            return (
                self.data.store.len(),
                self.schema.live_notes(),
                self.data.merkle_updater.todo_len(),
            )

        stored, live, merkle_todo = await anyio.to_thread.run_sync(local_counts)
        return {
            "id": self.netapp.id.hex(),
            "layout_version": self.layout.helper.current.version,
            "peers": sorted(p.hex() for p in self.peering.up_peers() if p != self.netapp.id),
            "stored": stored,
            "live": live,
            "merkle_todo": merkle_todo,
            "full_syncs": self.sync.syncs_done,
        }

    async def apply_layout(self, nodes: list[FixedBytes32]) -> int:
        """Gives each node a role in its own zone and applies the layout (``garage layout
        assign`` then ``apply``); gossip takes it to the other nodes."""
        history = self.layout.history
        now = now_msec()
        for i, node in enumerate(nodes):
            history = history.stage_role(node, NodeRole(f"zone-{i}", NODE_CAPACITY), now)
        version = history.current.version + 1
        applied, _summary = await anyio.to_thread.run_sync(
            history.apply_staged_changes, version, now
        )
        await self.layout.update(applied, push_to=self.peering.up_peers())
        return version

    async def put(self, board: str, title: str, fields: dict[str, object]) -> Note:
        """Sets (or, with None, clears) fields of a note, with a quorum write."""
        texts: dict[str, str | None] = {}
        for name, text in fields.items():
            if text is not None and not isinstance(text, str):
                raise CommandError(f"field {name!r} must be a string or null")
            texts[name] = text
        return await self._write(board, title, texts)

    async def delete(self, board: str, title: str) -> bool:
        """Clears every field of a note: writes its tombstone. False if there was none."""
        current = await self.table.get(StringKey(board), StringKey(title))
        if current is None or current.is_tombstone():
            return False
        await self._write(board, title, dict.fromkeys(current.fields.keys()), current)
        return True

    async def _write(
        self, board: str, title: str, texts: dict[str, str | None], current: Note | None = None
    ) -> Note:
        # Read, then write a *mutator*: a note holding only the changed fields, stamped
        # newer than what the quorum read returned (the logical clock), so it wins over
        # the value it replaces even if this node's clock lags. Each replica merges it into
        # its copy: fields that others changed meanwhile are kept, never overwritten.
        if current is None:
            current = await self.table.get(StringKey(board), StringKey(title))
        base: LwwMap[str, str | None] = LwwMap() if current is None else current.fields
        now = now_msec()
        changes: LwwMap[str, str | None] = LwwMap()
        for name, text in sorted(texts.items()):
            changes = changes.merge(base.update_mutator(name, text, now))
        mutator = Note(board, title, changes)
        await self.table.insert(mutator)
        return mutator if current is None else current.merge(mutator)

    async def local(self, board: str) -> list[Note]:
        """This replica's notes of a board, from its own store: no quorum, no repair."""
        raw = await anyio.to_thread.run_sync(
            lambda: self.data.read_range(
                StringKey(board), None, None, LIST_LIMIT, EnumerationOrder.FORWARD
            )
        )
        return [self.data.decode_entry(value) for value in raw]


# ------------------------------------------------------------------------------ control


def _str(request: dict[str, object], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str):
        raise CommandError(f"{name!r} must be a string")
    return value


def _list(request: dict[str, object], name: str) -> list[object]:
    value = request.get(name)
    if not isinstance(value, list):
        raise CommandError(f"{name!r} must be a list")
    return list(value)


def _dict(request: dict[str, object], name: str) -> dict[str, object]:
    value = request.get(name)
    if not isinstance(value, dict):
        raise CommandError(f"{name!r} must be an object")
    return {str(k): v for k, v in value.items()}


def _node_id(value: object) -> FixedBytes32:
    if not isinstance(value, str):
        raise CommandError("node ids are hex strings")
    try:
        return FixedBytes32.from_hex(value)
    except ValueError as exc:
        raise CommandError(f"bad node id {value!r}: {exc}") from None


def _write_line(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


async def reply(obj: dict[str, object]) -> None:
    """Writes one JSON line on stdout (in a thread: a full pipe must not block the loop)."""
    await anyio.to_thread.run_sync(_write_line, obj)


async def serve_commands(node: Node) -> None:
    """Answers JSON-line commands from stdin until it ends or says ``quit``."""
    while True:
        # abandon_on_cancel: a SIGTERM must not wait for a line that never comes.
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return  # end of input: whoever started us is gone or done
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise CommandError("a command is a JSON object")
            if request.get("op") == "quit":
                await reply({"ok": True})
                return
            answer = await node.handle(request)
        except Exception as exc:  # any failure is the command's answer, not the node's end
            expected = isinstance(exc, CommandError | GarageError)  # bad input, no quorum...
            logger.info("command failed: %s", exc, exc_info=not expected)
            await reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        else:
            await reply({"ok": True, **answer})


async def wait_for_signal() -> None:
    """Returns at the first SIGINT or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s: stopping", signal.Signals(signum).name)
            return


async def main_async(options: NodeOptions) -> None:
    """Opens the node, serves commands until told to stop, then stops the workers, then
    the services, and only then closes the db (their worker threads must be done with it)."""
    node = await Node.open(options)
    try:
        async with anyio.create_task_group() as tg:
            addr = await tg.start(node.run)
            await reply({"event": "ready", "id": node.netapp.id.hex(), "addr": _fmt(addr)})
            async with anyio.create_task_group() as control:
                # Whichever comes first, end of commands or a signal, stops the node.
                for wait_stop in (functools.partial(serve_commands, node), wait_for_signal):
                    control.start_soon(_then_cancel, wait_stop, control.cancel_scope)
            await node.stop_workers()
            tg.cancel_scope.cancel()
    finally:
        node.close()
    logger.info("node stopped")


async def _then_cancel(fn: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
    await fn()
    scope.cancel()


def _fmt(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


def _parse_peer(text: str) -> tuple[FixedBytes32, tuple[str, int]]:
    node, _, addr = text.partition("@")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ID@HOST:PORT, got {text!r}")
    return FixedBytes32.from_hex(node), (host, int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one node of the kv_app notes store.")
    parser.add_argument("--meta-dir", type=Path, required=True, help="node key, layout, db")
    parser.add_argument("--port", type=int, default=0, help="RPC port (0: any free port)")
    parser.add_argument(
        "--bootstrap", type=_parse_peer, action="append", default=[], help="ID@HOST:PORT"
    )
    args = parser.parse_args(argv)
    secret_hex = os.environ.get(SECRET_ENV)
    if secret_hex is None:
        parser.error(f"set {SECRET_ENV} to the cluster's secret (64 hex digits)")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = NodeOptions(
        args.meta_dir, bytes.fromhex(secret_hex), args.port, tuple(args.bootstrap)
    )
    anyio.run(main_async, options, backend="trio")
    return 0


if __name__ == "__main__":
    sys.exit(main())

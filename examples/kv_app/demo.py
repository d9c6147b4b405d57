"""kv_app demo: three notes nodes as OS processes; one is stopped, misses writes, and is
caught up by anti-entropy when it comes back.

Run it from the repository root::

    uv run python examples/kv_app/demo.py

It starts ``node.py`` three times on 127.0.0.1 (each with its own metadata directory in a
temporary directory), gives the cluster layout to one node and lets gossip spread it,
writes on one node and reads on another, edits one note concurrently from two nodes,
stops a node, keeps writing (quorums of 2 out of 3 still answer), restarts it, and waits
until its local copy (read without the network, so read repair cannot help) equals the
others'. It prints what happens, ends with a ``CHECK OK`` line, and exits with status 0;
if a check fails it prints ``CHECK FAILED``, the end of each node's log, and exits with 1.
Every node process and the temporary directory are removed in both cases.

The nodes are driven through their stdin/stdout control lines (see ``node.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, final

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from anyio.abc import ByteSendStream, Process

NODE_SCRIPT: Final = Path(__file__).resolve().parent / "node.py"
#: node.py reads the cluster secret from this variable.
SECRET_ENV: Final = "KV_APP_RPC_SECRET"
#: The whole demo normally takes a few seconds; give up (and clean up) well before a minute.
DEMO_TIMEOUT_S: Final = 45.0
#: A node imports, opens its db and listens within a second or two.
START_TIMEOUT_S: Final = 20.0
#: One control command (a quorum call at worst) answers in milliseconds.
COMMAND_TIMEOUT_S: Final = 15.0
#: A node stopped with end-of-input exits within a second; after this it is killed.
STOP_TIMEOUT_S: Final = 10.0
#: Longest control line accepted from a node (a board listing of a few hundred notes).
MAX_LINE_BYTES: Final = 16 << 20
#: How often the driver polls the nodes' status while waiting for something.
POLL_S: Final = 0.1
#: Notes written while node c is down.
WRITES_WHILE_DOWN: Final = 40
BOARDS: Final = ("groceries", "todo")


class DemoError(Exception):
    """A step of the demo did not do what it should."""


def say(text: str) -> None:
    """Prints one line of the demo's story."""
    print(text, flush=True)


@final
class NodeProcess:
    """One ``node.py`` process and its control lines."""

    def __init__(self, name: str, process: Process, id_hex: str, addr: str) -> None:
        self.name = name
        self.id = id_hex
        self.addr = addr
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin: ByteSendStream = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(
        cls,
        name: str,
        meta_dir: Path,
        *,
        log: IO[bytes],
        env: Mapping[str, str],
        bootstrap: Sequence[NodeProcess] = (),
    ) -> NodeProcess:
        """Starts a node and waits for its ``ready`` line."""
        command = [sys.executable, str(NODE_SCRIPT), "--meta-dir", str(meta_dir)]
        for peer in bootstrap:
            command += ["--bootstrap", f"{peer.id}@{peer.addr}"]
        process = await anyio.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
        )
        try:
            with anyio.fail_after(START_TIMEOUT_S):
                assert process.stdout is not None
                ready = json.loads(
                    await BufferedByteReceiveStream(process.stdout).receive_until(
                        b"\n", MAX_LINE_BYTES
                    )
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.aclose()
            raise
        return cls(name, process, str(ready["id"]), str(ready["addr"]))

    @property
    def short_id(self) -> str:
        return self.id[:16]

    async def call(self, op: str, **args: object) -> dict[str, object]:
        """Sends one command and returns its reply.

        Raises:
            DemoError: the node answered with an error, or stopped.
        """
        with anyio.fail_after(COMMAND_TIMEOUT_S):
            await self._stdin.send(json.dumps({"op": op, **args}).encode() + b"\n")
            try:
                line = await self._stdout.receive_until(b"\n", MAX_LINE_BYTES)
            except anyio.IncompleteRead:
                raise DemoError(f"node {self.name} stopped while answering {op!r}") from None
        answer: dict[str, object] = json.loads(line)
        if not answer.get("ok"):
            raise DemoError(f"node {self.name}: {op} failed: {answer.get('error')}")
        return answer

    async def stop(self) -> None:
        """Stops the node: end of input makes it stop its services and close its db.
        A node that does not exit in time is killed."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._stdin.aclose()
            with anyio.move_on_after(STOP_TIMEOUT_S):
                await self._process.wait()
            if self._process.returncode is None:
                say(f"node {self.name} did not stop in {STOP_TIMEOUT_S} s: killing it")
                self._process.kill()
            await self._process.aclose()

    # ------------------------------------------------------------------ queries

    async def status(self) -> dict[str, object]:
        return await self.call("status")

    async def peers(self) -> list[str]:
        peers = (await self.status())["peers"]
        assert isinstance(peers, list)
        return [str(p) for p in peers]

    async def local(self, board: str) -> list[object]:
        """This node's own copy of a board (no quorum, no read repair)."""
        notes = (await self.call("local", board=board))["notes"]
        assert isinstance(notes, list)
        return notes


async def wait_for(what: str, check: Callable[[], Awaitable[bool]]) -> float:
    """Polls ``check`` until it is true; returns how long that took, in seconds."""
    start = anyio.current_time()
    while not await check():  # noqa: ASYNC110  # polling other processes' state
        await anyio.sleep(POLL_S)
    elapsed = anyio.current_time() - start
    say(f"   ... {what} ({elapsed:.1f} s)")
    return elapsed


def show(note: object) -> str:
    """A note as the demo prints it."""
    if not isinstance(note, dict):
        return "(no such note)"
    if note.get("deleted"):
        return f"{note['title']}: (deleted)"
    return f"{note['title']}: {json.dumps(note['fields'], sort_keys=True)}"


async def snapshot(node: NodeProcess) -> dict[str, list[object]]:
    """Every board as this node holds it locally."""
    return {board: await node.local(board) for board in BOARDS}


async def run_demo(tmp: Path, logs: dict[str, IO[bytes]]) -> None:
    """The story. Raises DemoError (or TimeoutError) when a check fails."""
    env = {**os.environ, SECRET_ENV: secrets.token_bytes(32).hex()}
    nodes: dict[str, NodeProcess] = {}

    async def start(name: str, bootstrap: Sequence[NodeProcess]) -> NodeProcess:
        node = await NodeProcess.start(
            name, tmp / name, log=logs[name], env=env, bootstrap=bootstrap
        )
        nodes[name] = node
        return node

    try:
        say(f"== starting 3 nodes on 127.0.0.1 (metadata in {tmp})")
        a = await start("a", ())
        b = await start("b", [a])
        c = await start("c", [a])
        for node in (a, b, c):
            say(f"   node {node.name}: id {node.short_id}... listening on {node.addr}")

        async def full_mesh() -> bool:
            return all([len(await n.peers()) == 2 for n in (a, b, c)])

        await wait_for("peering: every node connected to the two others", full_mesh)

        say("== layout: one zone per node, replication factor 3, given to node a only")
        version = (await a.call("layout", nodes=[a.id, b.id, c.id]))["layout_version"]

        async def layout_everywhere() -> bool:
            return all([(await n.status())["layout_version"] == version for n in (a, b, c)])

        await wait_for(f"gossip spread layout version {version} to b and c", layout_everywhere)

        say("== write on one node, read on another")
        await a.call("put", board="groceries", title="milk", fields={"body": "2 litres"})
        say("   a: put groceries/milk")
        got = (await b.call("get", board="groceries", title="milk"))["note"]
        say(f"   b: get -> {show(got)}")
        if not isinstance(got, dict) or got.get("fields") != {"body": "2 litres"}:
            raise DemoError(f"b read {got!r} instead of what a wrote")

        say("== concurrent edits of one note from two nodes (an LwwMap merges fields)")
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: a.call("put", board="groceries", title="eggs", fields={"body": "a dozen"})
            )
            tg.start_soon(
                lambda: b.call("put", board="groceries", title="eggs", fields={"by": "bob"})
            )
        got = (await c.call("get", board="groceries", title="eggs"))["note"]
        say(f"   a sets body, b sets by; c: get -> {show(got)}")
        if not isinstance(got, dict) or got.get("fields") != {"body": "a dozen", "by": "bob"}:
            raise DemoError(f"the concurrent edits did not both survive: {got!r}")

        say("== stop node c")
        await c.stop()
        del nodes["c"]

        async def c_is_down() -> bool:
            return all([c.id not in await n.peers() for n in (a, b)])

        await wait_for("a and b see c down", c_is_down)

        say(f"== keep writing while c is down ({WRITES_WHILE_DOWN} notes, an edit, a delete)")
        for i in range(WRITES_WHILE_DOWN):
            writer = (a, b)[i % 2]
            text = f"task {i} (written on {writer.name})"
            await writer.call("put", board="todo", title=f"note-{i:02d}", fields={"body": text})
        await b.call("put", board="groceries", title="milk", fields={"body": "1 litre"})
        await a.call("delete", board="groceries", title="eggs")
        listed = (await b.call("list", board="groceries"))["notes"]
        assert isinstance(listed, list)
        say(f"   quorum writes ok with 2 of 3 replicas; b: list groceries -> {len(listed)} notes")
        for note in listed:
            say(f"      {show(note)}")

        say("== restart node c (same key, same db, layout from its disk)")
        c = await start("c", [a, b])
        before = await c.status()
        say(f"   c is back on {c.addr}; right after restart it stores {before['stored']} notes")
        expected = await snapshot(a)
        if await snapshot(b) != expected:
            raise DemoError("a and b disagree although both took every write")

        async def c_caught_up() -> bool:
            return await snapshot(c) == expected

        await wait_for("anti-entropy (Merkle sync) brought c up to date", c_caught_up)
        after = await c.status()
        live = after["live"]
        if live != {"groceries": 1, "todo": WRITES_WHILE_DOWN}:
            raise DemoError(f"c's live-note counts (the updated hook's) are wrong: {live!r}")
        counts = json.dumps(live, sort_keys=True)
        say(f"   c stores {after['stored']} notes; live notes per board (updated hook): {counts}")

        say("== quorum reads on c")
        for title in ("milk", "eggs"):
            got = (await c.call("get", board="groceries", title=title))["note"]
            say(f"   c: get groceries/{title} -> {show(got)}")
        got = (await c.call("get", board="todo", title="note-07"))["note"]
        say(f"   c: get todo/note-07 -> {show(got)}")

        stored_total = sum(len(v) for v in expected.values())
        say(
            f"CHECK OK: restarted node c caught up by anti-entropy: {stored_total}/"
            f"{stored_total} notes identical on a, b and c"
        )
    finally:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for node in nodes.values():
                    tg.start_soon(node.stop)
        say(f"== stopped nodes {', '.join(sorted(nodes))}")


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file."""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(f"      {line}" for line in text[-lines:])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kv_app-") as tmp_dir:
        tmp = Path(tmp_dir)
        log_paths = {name: tmp / f"{name}.log" for name in "abc"}
        try:
            with contextlib.ExitStack() as stack:
                logs: dict[str, IO[bytes]] = {
                    name: stack.enter_context(path.open("ab")) for name, path in log_paths.items()
                }
                anyio.run(_with_deadline, tmp, logs, backend="trio")
        except Exception as exc:  # the demo's verdict: any failure is reported the same way
            if isinstance(exc, DemoError | TimeoutError):
                say(f"CHECK FAILED: {exc or f'timed out after {DEMO_TIMEOUT_S} s'}")
            else:
                say(f"CHECK FAILED: unexpected error\n{traceback.format_exc()}")
            for name, path in log_paths.items():
                say(f"   last lines of node {name}'s log:\n{tail(path)}")
            return 1
        finally:
            say(f"== removing {tmp}")
    return 0


async def _with_deadline(tmp: Path, logs: dict[str, IO[bytes]]) -> None:
    with anyio.fail_after(DEMO_TIMEOUT_S):
        await run_demo(tmp, logs)


if __name__ == "__main__":
    sys.exit(main())

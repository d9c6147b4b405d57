"""The RPC port under attack: garbage, silence, half handshakes, replays, floods, a huge
frame, and a real node with the wrong ``rpc_secret``.

Fault-testing §3.9 (Garage's secret handshake; MinIO GHSA-xh8f on internode paths): a
client that does not know the network key never gets a byte back (the server checks the
first message's HMAC before answering), one that stalls is dropped by the handshake
timeout (:data:`garage_rpc.net.DEFAULT_HANDSHAKE_TIMEOUT_S`), a recorded handshake replayed
fails at its third message (the server's ephemeral key changed), and even a peer that
holds the secret cannot make the node allocate a 4 GiB message. A node configured with
another ``rpc_secret`` never joins: ``garage status`` on the good node does not list it,
and the intruder logs why. Afterwards the node's descriptor count is back near its
baseline and S3 still answers. The handshake itself is tested in tests/rpc/net/.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import pytest
from tests.abuse.harness import CANARY_BUCKET, Node
from tests.api.conftest import free_port
from tests.polling import wait_until

from garage.cli import main as garage_cli
from garage_rpc.net import DEFAULT_HANDSHAKE_TIMEOUT_S, NodeId, NodeKey
from garage_rpc.net._framing import PRIO_NORMAL, chunk_header, encode_request_head
from garage_rpc.net._session import Hello, open_secure_channel
from garage_rpc.net._shs import CLIENT_HELLO_LEN, SERVER_ACCEPT_LEN, SERVER_HELLO_LEN, ShsClient

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import SocketStream

#: Safety net for the node to drop a stalled connection (its handshake timeout is 10 s).
_DROP_DEADLINE_S: Final = DEFAULT_HANDSHAKE_TIMEOUT_S * 3
#: How far above its baseline the node's descriptor count may settle.
_FD_SLACK: Final = 30
#: Generous bound on memory growth: a 4 GiB allocation would be far above it.
_RSS_BOUND_KIB: Final = 200 * 1024
GARAGE: Final = Path(sys.executable).parent / "garage"


@pytest.fixture(scope="module", autouse=True)
def _fds_and_memory_come_back(node: Node) -> Iterator[None]:
    fds, rss = node.fd_count(), node.rss_kib()
    yield
    assert node.rss_kib() - rss < _RSS_BOUND_KIB
    anyio.run(
        lambda: wait_until(
            lambda: node.fd_count() <= fds + _FD_SLACK,
            "the node's descriptor count is back to its baseline",
            timeout_s=_DROP_DEADLINE_S,
        )
    )
    assert node.client().head_object(Bucket=CANARY_BUCKET, Key="canary/inline.bin")


async def _connect(node: Node) -> SocketStream:
    return await anyio.connect_tcp("127.0.0.1", node.rpc_port)


async def _everything_until_closed(stream: SocketStream) -> bytes:
    """All the node sends until it closes the connection."""
    out = bytearray()
    with anyio.fail_after(_DROP_DEADLINE_S):
        while True:
            try:
                out += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return bytes(out)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "payload",
    [
        os.urandom(1024),
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" + b"\x00" * 64,
        (2**32).to_bytes(8, "big") + b"\xff" * 56,  # a 2^32 length prefix, then nothing
        b"\x00" * CLIENT_HELLO_LEN,
    ],
    ids=["random", "http", "length-2^32", "zeros"],
)
async def test_garbage_gets_no_answer(node: Node, payload: bytes) -> None:
    async with await _connect(node) as stream:
        await stream.send(payload)
        assert await _everything_until_closed(stream) == b""


@pytest.mark.slow
@pytest.mark.anyio
async def test_silent_and_half_handshakes_are_dropped(node: Node) -> None:
    """Nothing, half a hello, and a valid hello then silence: all dropped by the handshake
    timeout, the last after the server's own hello only."""
    key = NodeKey.generate()
    client = ShsClient(node.rpc_secret, key, node.node_id, ephemeral_secret=os.urandom(32))
    hello = client.start()
    sent = {"nothing": b"", "half a hello": hello[:32], "a valid hello": hello}
    got: dict[str, bytes] = {}

    async def one(name: str, data: bytes) -> None:
        async with await _connect(node) as stream:
            if data:
                await stream.send(data)
            got[name] = await _everything_until_closed(stream)

    async with anyio.create_task_group() as tg:
        for name, data in sent.items():
            tg.start_soon(one, name, data)
    assert got["nothing"] == got["half a hello"] == b""
    assert len(got["a valid hello"]) == SERVER_HELLO_LEN


@pytest.mark.anyio
async def test_a_replayed_handshake_fails_at_its_third_message(node: Node) -> None:
    key = NodeKey.generate()
    client = ShsClient(node.rpc_secret, key, node.node_id, ephemeral_secret=os.urandom(32))
    recorded = []
    async with await _connect(node) as stream:
        recorded.append(client.start())
        await stream.send(recorded[0])
        auth = client.receive_data(await _receive_exactly(stream, SERVER_HELLO_LEN))
        recorded.append(auth)
        await stream.send(auth)
        client.receive_data(await _receive_exactly(stream, SERVER_ACCEPT_LEN))
        assert client.done  # the recorded handshake was a good one
    async with await _connect(node) as stream:
        await stream.send(recorded[0])
        fresh_hello = await _receive_exactly(stream, SERVER_HELLO_LEN)
        await stream.send(recorded[1])
        assert await _everything_until_closed(stream) == b""  # no accept
    assert fresh_hello[32:] != b""


async def _receive_exactly(stream: SocketStream, n: int) -> bytes:
    out = bytearray()
    with anyio.fail_after(_DROP_DEADLINE_S):
        while len(out) < n:
            out += await stream.receive(n - len(out))
    return bytes(out)


@pytest.mark.anyio
async def test_a_4_gib_message_head_is_refused_without_allocating(node: Node) -> None:
    """Even a peer holding the secret: a request announcing a 2^32 - 1 byte message is
    refused as soon as the length is read (the largest u32; 2^32 does not fit the field)."""
    rss = node.rss_kib()
    async with await _connect(node) as raw:
        with anyio.fail_after(_DROP_DEADLINE_S):
            channel = await open_secure_channel(
                raw, network_key=node.rpc_secret, node_key=NodeKey.generate(),
                server_id=NodeId(node.node_id), hello=Hello(),
            )  # fmt: skip
        head = encode_request_head(PRIO_NORMAL, "garage_rpc/system.rs/SystemRpc", 0xFFFF_FFFF,
                                   has_stream=False)  # fmt: skip
        await channel.send(chunk_header(0, len(head) + 1024, more=True) + head + b"m" * 1024)
        with anyio.move_on_after(DEFAULT_HANDSHAKE_TIMEOUT_S):
            answer = await channel.receive()
            assert answer[:4] == (0).to_bytes(4, "big"), answer[:16]  # an error for call 0
        await channel.aclose()
    assert node.rss_kib() - rss < _RSS_BOUND_KIB


@pytest.mark.anyio
async def test_a_thousand_quick_connections(node: Node) -> None:
    fds = node.fd_count()
    with anyio.fail_after(120):
        for i in range(1000):
            stream = await _connect(node)
            if i % 2:
                await stream.send(os.urandom(16))
            await stream.aclose()
    await wait_until(
        lambda: node.fd_count() <= fds + _FD_SLACK,
        "the node's descriptor count is back to its baseline",
        timeout_s=_DROP_DEADLINE_S,
    )


# ---------------------------------------------------------------- a node with the wrong secret


def _status_ids(node: Node) -> list[str]:
    """The node ids ``garage status`` lists on the good node."""
    import json

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GARAGE_")}
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = garage_cli(["-c", str(node.s3.data_dir / "garage.toml"), "--json", "status"])
    finally:
        os.environ.update(saved)
    assert code == 0, err.getvalue()
    return [n["id"] for n in json.loads(out.getvalue())["nodes"]]


@pytest.mark.slow
def test_a_node_with_the_wrong_secret_never_joins(node: Node, tmp_path: Path) -> None:
    good = bytes(node.node_id).hex()
    cfg = tmp_path / "garage.toml"
    rpc_port = free_port()
    cfg.write_text(
        f'metadata_dir = "{tmp_path / "meta"}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'replication_factor = 1\nrpc_secret = "{secrets.token_hex(32)}"\n'
        f'rpc_bind_addr = "127.0.0.1:{rpc_port}"\n'
        f'bootstrap_peers = ["{good}@127.0.0.1:{node.rpc_port}"]\n'
        f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{free_port()}"\n'
    )
    intruder_id = NodeKey.load_or_create(tmp_path / "meta").node_id.hex()  # before it starts
    log = tmp_path / "intruder.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
    with log.open("wb") as err:
        intruder = subprocess.Popen(
            [str(GARAGE), "-c", str(cfg), "server"],
            stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True,
        )  # fmt: skip
    try:

        def complained() -> bool:
            assert intruder.poll() is None, log.read_text()
            return re.search(rf"{good[:16]}.*rpc_secret", log.read_text()) is not None

        try:
            anyio.run(lambda: wait_until(complained, "the intruder logs why", timeout_s=60))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{log.read_text()[-3000:]}") from None
        assert _status_ids(node) == [good]
        assert intruder_id not in _status_ids(node)
    finally:
        intruder.send_signal(signal.SIGTERM)
        try:
            intruder.wait(timeout=30)
        finally:
            if intruder.poll() is None:
                os.killpg(intruder.pid, signal.SIGKILL)
                intruder.wait()
    line = next(ln for ln in log.read_text().splitlines() if "rpc_secret" in ln)
    assert "WARNING" in line, line


def test_s3_still_answers(s3: Any) -> None:
    """After everything above (the module's finaliser checks descriptors and memory)."""
    assert s3.head_object(Bucket=CANARY_BUCKET, Key="canary/one-block.bin")["ContentLength"]

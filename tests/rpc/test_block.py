"""NetApp.block: a node refuses every connection with a blocked peer (both directions)."""

from __future__ import annotations

import anyio
import pytest

from garage_rpc.net import NetApp, NodeKey, RpcError

pytestmark = pytest.mark.anyio
SECRET = bytes(range(32))


async def test_blocking_a_peer_cuts_and_refuses_connections_until_unblocked() -> None:
    a, b = NetApp(NodeKey.generate(), SECRET), NetApp(NodeKey.generate(), SECRET)
    async with anyio.create_task_group() as tg:
        addr_a = await tg.start(a.run, ("127.0.0.1", 0))
        addr_b = await tg.start(b.run, ("127.0.0.1", 0))
        assert addr_a is not None
        assert addr_b is not None
        await b.connect(a.id, addr_a)
        a.block(b.id)
        with anyio.fail_after(5):
            while b.is_connected(a.id) or a.is_connected(b.id):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        with pytest.raises(RpcError):
            await b.connect(a.id, addr_a)  # a refuses it after the handshake
        with pytest.raises(RpcError, match="blocked"):
            await a.connect(b.id, addr_b)  # a does not even try
        assert not a.is_connected(b.id)
        a.unblock(b.id)
        await b.connect(a.id, addr_a)
        with anyio.fail_after(5):  # a registers its side just after b's connect returns
            while not a.is_connected(b.id):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()

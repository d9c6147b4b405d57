"""The layout manager: persistence, and acknowledging versions only when no write needs
an older one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from garage_rpc.layout import LayoutHistory, NodeRole
from garage_rpc.layout_manager import LAYOUT_FILE, LayoutManager, LayoutMismatchError
from garage_rpc.net import NetApp, NodeKey

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def applied(history: LayoutHistory, nodes: list[NodeKey], version: int) -> LayoutHistory:
    for i, key in enumerate(nodes):
        history = history.stage_role(key.node_id, NodeRole(f"z{i}", 10**9, ()), now_ms=version)
    return history.apply_staged_changes(version, now_ms=version)[0]


async def test_a_write_in_flight_holds_back_acknowledging_a_newer_version() -> None:
    keys = [NodeKey.generate() for _ in range(4)]
    me = NetApp(keys[0], bytes(32))
    manager = LayoutManager(me, replication_factor=3)
    await manager.update(applied(LayoutHistory.new(3), keys[:3], 1))
    await manager.ack_versions()
    assert manager.history.update_trackers.ack_map.get(me.id, 0) == 1

    with manager.write_in_flight() as helper:
        assert helper.current.version == 1  # this write targets version 1's node sets
        await manager.update(applied(manager.history, keys[3:], 2))
        assert not await manager.ack_versions()  # version 2 must wait for the write
        assert manager.history.update_trackers.ack_map.get(me.id, 0) == 1
    assert await manager.ack_versions()
    assert manager.history.update_trackers.ack_map.get(me.id, 0) == 2


async def test_the_layout_is_persisted_and_its_replication_factor_checked(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(3)]
    manager = LayoutManager(NetApp(keys[0], bytes(32)), replication_factor=3, metadata_dir=tmp_path)
    await manager.update(applied(LayoutHistory.new(3), keys, 1))
    assert (tmp_path / LAYOUT_FILE).exists()
    again = LayoutManager(NetApp(keys[0], bytes(32)), replication_factor=3, metadata_dir=tmp_path)
    assert again.history == manager.history
    with pytest.raises(LayoutMismatchError, match="replication_factor = 3"):
        LayoutManager(NetApp(keys[0], bytes(32)), replication_factor=2, metadata_dir=tmp_path)


async def test_an_advertised_change_is_forwarded_to_the_other_peers() -> None:
    """A -> B -> C in a line (A and C not connected): a layout A advertises to B reaches
    C through B, without a status exchange."""
    keys = [NodeKey.generate() for _ in range(3)]
    secret = bytes(32)
    nets = [NetApp(k, secret) for k in keys]
    managers = [LayoutManager(n, replication_factor=3) for n in nets]
    async with anyio.create_task_group() as tg:
        addrs = [await tg.start(n.run, ("127.0.0.1", 0)) for n in nets]
        await nets[0].connect(nets[1].id, addrs[1])
        await nets[1].connect(nets[2].id, addrs[2])
        assert not nets[0].is_connected(nets[2].id)
        await managers[0].update(applied(LayoutHistory.new(3), keys, 1), push_to=[nets[1].id])
        with anyio.fail_after(10):
            while managers[2].history.current.version != 1:
                await managers[2].wait_changed()
        assert managers[1].history.current.version == 1
        tg.cancel_scope.cancel()

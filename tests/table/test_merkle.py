"""Merkle tries: node encoding, canonical shape, the update core, and the todo worker."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.polling import wait_until
from tests.table.conftest import KvEntry, StaticReplication, node_id

from garage_table._merkle import (
    EMPTY_NODE_HASH,
    MerkleEmpty,
    MerkleIntermediate,
    MerkleLeaf,
    MerkleNode,
    MerkleNodeKey,
    MerkleUpdater,
    MerkleWorker,
    merkle_update_item,
)
from garage_table.schema import StringKey
from garage_util.background import BackgroundRunner, WorkerState
from garage_util.data import HASH_LEN, FixedBytes32, Hash, blake2sum
from garage_util.db import Db, Transaction, open_db
from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator

    from garage_table._data import TableData

REPLICATION = StaticReplication([node_id(1)])


def h(n: int) -> Hash:
    """A recognisable value hash."""
    return FixedBytes32(bytes([n]) * HASH_LEN)


# ------------------------------------------------------------------------------ oracle


def canonical_nodes(
    items: dict[bytes, Hash], partition_of: Callable[[bytes], int]
) -> dict[bytes, bytes]:
    """The ``merkle_tree`` contents the canonical shape prescribes for ``items``, built
    directly from its definition (independent of the update algorithm)."""
    out: dict[bytes, bytes] = {}
    partitions: dict[int, list[tuple[bytes, bytes, Hash]]] = {}
    for key, value_hash in items.items():
        partitions.setdefault(partition_of(key), []).append((blake2sum(key), key, value_hash))

    def build(partition: int, prefix: bytes, group: list[tuple[bytes, bytes, Hash]]) -> Hash:
        node: MerkleNode
        if len(group) == 1:
            node = MerkleLeaf(group[0][1], group[0][2])
        else:
            i = len(prefix)
            children = []
            for byte in sorted({kh[i] for kh, _, _ in group}):
                sub = [e for e in group if e[0][i] == byte]
                children.append((byte, build(partition, prefix + bytes([byte]), sub)))
            node = MerkleIntermediate(tuple(children))
        data = node.encode()
        out[MerkleNodeKey(partition, prefix).encode()] = data
        return blake2sum(data)

    for partition, group in partitions.items():
        build(partition, b"", group)
    return out


def partition_of_key(key: bytes) -> int:
    return REPLICATION.partition_of(FixedBytes32(key[:HASH_LEN]))


def dump(db_tree_items: Iterator[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(db_tree_items)


class DictStore:
    """A MerkleNodeStore over a dict: the update core with no db at all."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.nodes.get(key)

    def insert(self, key: bytes, value: bytes) -> None:
        self.nodes[key] = value

    def remove(self, key: bytes) -> None:
        self.nodes.pop(key, None)


# Tree keys in three partitions, including groups whose khash share one or two leading
# bytes, so that splits several levels deep and the collapses back happen often.
def _key_pool() -> list[bytes]:
    pool: list[bytes] = []
    for p in (0, 1, 2):
        pk_hash = bytes([p]) * HASH_LEN
        by_two: dict[bytes, list[bytes]] = {}
        for i in range(2000):
            key = pk_hash + b"k%d" % i
            by_two.setdefault(blake2sum(key)[:2], []).append(key)
        deep = [group for group in by_two.values() if len(group) >= 2][:3]
        pool.extend(key for group in deep for key in group[:2])
        pool.extend(pk_hash + b"s%d" % i for i in range(12))
    return pool


KEY_POOL = _key_pool()
tree_keys = st.sampled_from(KEY_POOL) | st.builds(
    lambda p, sk: bytes([p]) * HASH_LEN + sk, st.integers(0, 2), st.binary(max_size=6)
)
value_hashes = st.integers(0, 255).map(h)


Op = tuple[bytes, Hash | None]


@st.composite
def histories(draw: st.DrawFn, final: dict[bytes, Hash]) -> list[Op]:
    """A random interleaving of writes ending in ``final``: each final item may first be
    written with other values and deleted, and transient items come and go."""
    per_key: list[list[Op]] = []
    for key, value_hash in final.items():
        ops: list[Op] = []
        for _ in range(draw(st.integers(0, 2))):
            ops.append((key, draw(value_hashes)))
            if draw(st.booleans()):
                ops.append((key, None))
        ops.append((key, value_hash))
        per_key.append(ops)
    transient = [k for k in draw(st.lists(tree_keys, max_size=6, unique=True)) if k not in final]
    per_key.extend([(key, draw(value_hashes)), (key, None)] for key in transient)
    out: list[Op] = []
    while per_key:
        i = draw(st.integers(0, len(per_key) - 1))
        out.append(per_key[i].pop(0))
        if not per_key[i]:
            per_key.pop(i)
    return out


def apply_ops(store: DictStore, ops: list[Op]) -> None:
    for key, value_hash in ops:
        merkle_update_item(store, partition_of_key(key), key, value_hash)


# ------------------------------------------------------------------------------ nodes


@pytest.mark.parametrize(
    "node",
    [
        MerkleEmpty(),
        MerkleLeaf(b"some tree key", h(7)),
        MerkleIntermediate(((0, h(1)), (17, h(2)), (255, h(3)))),
    ],
)
def test_node_encoding_round_trips(node: MerkleNode) -> None:
    data = node.encode()
    assert data == pack(node)
    assert MerkleNode.decode(data) == node
    assert node.hash() == blake2sum(data)
    assert unpack(type(node), data) == node


def test_node_encoding_shape() -> None:
    assert msgpack.unpackb(pack(MerkleEmpty())) == "Empty"
    assert msgpack.unpackb(pack(MerkleLeaf(b"k", h(1)))) == {"Leaf": [b"k", bytes(h(1))]}
    assert msgpack.unpackb(pack(MerkleIntermediate(((3, h(1)),)))) == {
        "Intermediate": [[3, bytes(h(1))]]
    }
    assert blake2sum(pack("Empty")) == EMPTY_NODE_HASH


@pytest.mark.parametrize(
    "wire",
    [
        "Full",
        {"Leaf": [b"k"]},
        {"Leaf": [b"k", b"short"]},
        {"Intermediate": [[3, bytes(32)], [3, bytes(32)]]},
        {"Intermediate": [[256, bytes(32)]]},
        {"Other": []},
        {"Leaf": [b"k", bytes(32)], "Intermediate": []},
    ],
)
def test_invalid_nodes_do_not_decode(wire: object) -> None:
    with pytest.raises(DecodeError):
        MerkleNode.decode(pack(wire))


def test_a_variant_field_refuses_another_variant() -> None:
    with pytest.raises(DecodeError):
        unpack(MerkleLeaf, pack(MerkleEmpty()))


def test_node_keys() -> None:
    key = MerkleNodeKey(0x1234, b"\x05")
    assert key.encode() == b"\x12\x34\x05"
    assert MerkleNodeKey.from_bytes(key.encode()) == key
    assert key.add_byte(9) == MerkleNodeKey(0x1234, b"\x05\x09")
    assert key.next_key(b"\x05\x07" + bytes(30)).prefix == b"\x05\x07"
    assert unpack(MerkleNodeKey, pack(key)) == key
    with pytest.raises(ValueError, match="16 bits"):
        MerkleNodeKey(1 << 16)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleNodeKey(0, bytes(33))


def test_intermediate_children_must_be_sorted_and_unique() -> None:
    with pytest.raises(ValueError, match="sorted"):
        MerkleIntermediate(((2, h(1)), (1, h(1))))
    node = MerkleIntermediate(((1, h(1)), (4, h(4))))
    assert node.with_child(2, h(2)).children == ((1, h(1)), (2, h(2)), (4, h(4)))
    assert node.with_child(1, None).children == ((4, h(4)),)
    assert node.child(4) == h(4)
    assert node.child(5) is None


# ------------------------------------------------------------------------------ the core


@given(st.dictionaries(tree_keys, value_hashes, max_size=25), st.data())
def test_canonical_shape_whatever_the_history(
    final: dict[bytes, Hash], data: st.DataObject
) -> None:
    first, second = DictStore(), DictStore()
    apply_ops(first, data.draw(histories(final)))
    apply_ops(second, data.draw(histories(final)))
    expected = canonical_nodes(final, partition_of_key)
    assert first.nodes == expected
    assert second.nodes == expected


@given(st.dictionaries(tree_keys, value_hashes, min_size=1, max_size=25), st.randoms())
def test_emptied_trie_leaves_no_node(final: dict[bytes, Hash], rnd: random.Random) -> None:
    store = DictStore()
    keys = list(final)
    apply_ops(store, [(k, final[k]) for k in keys])
    assert store.nodes
    rnd.shuffle(keys)
    apply_ops(store, [(k, None) for k in keys])
    assert store.nodes == {}


def test_deep_split_and_collapse() -> None:
    """Two keys whose khash share two bytes hang three levels down, and collapse back."""
    a, b = next(
        group[:2]
        for group in _groups_sharing(2)
        if blake2sum(group[0])[2] != blake2sum(group[1])[2]
    )
    store = DictStore()
    p = partition_of_key(a)
    assert merkle_update_item(store, p, a, h(1)) == MerkleLeaf(a, h(1)).hash()
    merkle_update_item(store, p, b, h(2))
    ka = blake2sum(a)
    assert set(store.nodes) == {MerkleNodeKey(p, ka[:n]).encode() for n in (0, 1, 2)} | {
        MerkleNodeKey(p, blake2sum(k)[:3]).encode() for k in (a, b)
    }
    root = MerkleNode.decode(store.nodes[MerkleNodeKey(p).encode()])
    assert isinstance(root, MerkleIntermediate)
    assert [byte for byte, _ in root.children] == [ka[0]]
    # Re-writing the same value is a no-op; removing an absent key too.
    assert merkle_update_item(store, p, b, h(2)) is None
    assert merkle_update_item(store, p, a + b"absent", None) is None
    merkle_update_item(store, p, b, None)
    assert store.nodes == {MerkleNodeKey(p).encode(): MerkleLeaf(a, h(1)).encode()}


def _groups_sharing(n: int) -> Iterator[list[bytes]]:
    groups: dict[bytes, list[bytes]] = {}
    for key in KEY_POOL:
        groups.setdefault(bytes(blake2sum(key)[:n]), []).append(key)
    return (g for g in groups.values() if len(g) >= 2)


def test_root_changes_with_a_value_hash() -> None:
    store = DictStore()
    keys = KEY_POOL[:10]
    for n, key in enumerate(keys):
        merkle_update_item(store, 0, key, h(n))
    root = store.nodes[MerkleNodeKey(0).encode()]
    assert merkle_update_item(store, 0, keys[3], h(200)) is not None
    changed = store.nodes[MerkleNodeKey(0).encode()]
    assert changed != root
    merkle_update_item(store, 0, keys[3], h(3))
    assert store.nodes[MerkleNodeKey(0).encode()] == root


# ------------------------------------------------------------------------------ on a db


@pytest.fixture(scope="module")
def shared_db() -> Iterator[Db]:
    """One sqlite db for the hypothesis tests (examples clear the trees they use)."""
    with tempfile.TemporaryDirectory() as tmp, open_db(Path(tmp), "sqlite") as db:
        yield db


@settings(max_examples=30)
@given(st.dictionaries(tree_keys, value_hashes, max_size=20), st.data())
def test_canonical_shape_in_the_db(
    shared_db: Db, final: dict[bytes, Hash], data: st.DataObject
) -> None:
    updaters = []
    for name in ("first", "second"):
        tree, todo = shared_db.open_tree(f"{name}:merkle_tree"), shared_db.open_tree(f"{name}:todo")
        tree.clear()
        updaters.append(MerkleUpdater(shared_db, tree, todo, REPLICATION))
    for updater in updaters:
        for key, value_hash in data.draw(histories(final)):
            encoded = b"" if value_hash is None else bytes(value_hash)

            def write(
                tx: Transaction, u: MerkleUpdater = updater, k: bytes = key, v: bytes = encoded
            ) -> None:
                u.update_item(tx, k, v)

            shared_db.transaction(write)
    expected = canonical_nodes(final, partition_of_key)
    first, second = (dump(u.merkle_tree.iter()) for u in updaters)
    assert first == second == expected
    for partition in (0, 1, 2):
        roots = {u.root_hash(partition) for u in updaters}
        (root,) = roots
        assert (root == EMPTY_NODE_HASH) == (
            not any(partition_of_key(k) == partition for k in final)
        )
        assert updaters[0].read_node(partition).hash() == root


# ------------------------------------------------------------------------------ todo and worker


def store_items(data: TableData[KvEntry]) -> dict[bytes, Hash]:
    return {k: blake2sum(v) for k, v in data.store.iter()}


def put(data: TableData[KvEntry], pk: str, sk: str, value: str | None, ts: int) -> None:
    data.update_entry(KvEntry.put(pk, sk, value, ts).encode())


def assert_trie_matches_store(data: TableData[KvEntry]) -> None:
    updater = data.merkle_updater
    expected = canonical_nodes(store_items(data), updater.partition_of)
    assert dump(data.merkle_tree.iter()) == expected
    for key in expected:
        partition = MerkleNodeKey.from_bytes(key).partition
        assert updater.root_hash(partition) == blake2sum(
            expected[MerkleNodeKey(partition).encode()]
        )


def test_todo_batches_drain_into_the_canonical_trie(kv_data: TableData[KvEntry]) -> None:
    for i in range(130):
        put(kv_data, f"p{i % 7}", f"s{i}", f"v{i}", ts=1)
    for i in range(0, 130, 3):
        put(kv_data, f"p{i % 7}", f"s{i}", None, ts=2)
    for i in range(0, 130, 9):
        pk, sk = StringKey(f"p{i % 7}"), StringKey(f"s{i}")
        current = kv_data.read_entry(pk, sk)
        assert current is not None
        assert kv_data.delete_if_equal(kv_data.tree_key(pk, sk), current)
    updater = kv_data.merkle_updater
    assert updater.todo_len() == 130
    assert updater.process_todo_batch() == 100
    assert updater.process_todo_batch() == 30
    assert updater.process_todo_batch() == 0
    assert updater.todo_len() == 0
    assert_trie_matches_store(kv_data)


def test_emptied_table_leaves_an_empty_trie(kv_data: TableData[KvEntry]) -> None:
    for i in range(20):
        put(kv_data, "p", f"s{i}", "v", ts=1)
    kv_data.merkle_updater.process_todo_batch()
    assert kv_data.merkle_tree.len() > 0
    for key, value in list(kv_data.store.iter()):
        assert kv_data.delete_if_equal(key, value)
    kv_data.merkle_updater.process_todo_batch()
    assert kv_data.merkle_tree.len() == 0
    assert kv_data.merkle_todo.len() == 0
    partition = kv_data.merkle_updater.partition_of(bytes(StringKey("p").hash()))
    assert kv_data.merkle_updater.root_hash(partition) == EMPTY_NODE_HASH
    assert kv_data.merkle_updater.read_node(partition) == MerkleEmpty()


def test_a_todo_changed_while_applied_is_kept(kv_data: TableData[KvEntry]) -> None:
    put(kv_data, "p", "a", "one", ts=1)
    put(kv_data, "p", "b", "one", ts=1)
    updater = kv_data.merkle_updater
    read = updater.read_todo()
    assert len(read) == 2
    # A newer write to "a" lands between the read and the apply.
    put(kv_data, "p", "a", "two", ts=2)
    assert updater.apply_todo(read) == 1
    key_a = kv_data.tree_key(StringKey("p"), StringKey("a"))
    new_value = kv_data.read_entry(StringKey("p"), StringKey("a"))
    assert new_value is not None
    assert dict(kv_data.merkle_todo.iter()) == {key_a: blake2sum(new_value)}
    # The trie holds the stale hash of "a" for now; the next step catches up.
    assert dump(kv_data.merkle_tree.iter()) != canonical_nodes(
        store_items(kv_data), updater.partition_of
    )
    assert updater.process_todo_batch() == 1
    assert kv_data.merkle_todo.len() == 0
    assert_trie_matches_store(kv_data)


def test_update_item_checks_the_hash_length(kv_data: TableData[KvEntry]) -> None:
    def write(tx: Transaction) -> None:
        kv_data.merkle_updater.update_item(tx, bytes(40), b"short")

    with pytest.raises(ValueError, match="32 bytes"):
        kv_data.db.transaction(write)


@pytest.mark.anyio
async def test_worker_steps(kv_data: TableData[KvEntry]) -> None:
    worker = MerkleWorker(kv_data)
    assert worker.name == "kv Merkle"
    assert await worker.work() == WorkerState.IDLE
    for i in range(150):
        put(kv_data, "p", f"s{i}", "v", ts=1)
    assert await worker.work() == WorkerState.BUSY
    assert worker.status().queue_length == 50
    assert await worker.work() == WorkerState.BUSY
    assert await worker.work() == WorkerState.IDLE
    assert worker.status().queue_length == 0
    assert_trie_matches_store(kv_data)
    # The writes above left a permit: waiting returns at once.
    with anyio.fail_after(5):
        assert await worker.wait_for_work() == WorkerState.BUSY


@pytest.mark.anyio
async def test_worker_in_a_runner_follows_writes(kv_data: TableData[KvEntry]) -> None:
    runner = BackgroundRunner()
    runner.spawn_worker(MerkleWorker(kv_data))
    async with anyio.create_task_group() as tg:
        await tg.start(runner.run)
        for round_ in range(3):
            # Writes from a worker thread (the normal path), then from the loop thread.
            for i in range(40):
                value = None if (i + round_) % 5 == 0 else f"v{round_}"
                await anyio.to_thread.run_sync(
                    put, kv_data, f"p{i % 3}", f"s{i}", value, round_ + 1
                )
            await wait_until(lambda: kv_data.merkle_todo.len() == 0)
            assert_trie_matches_store(kv_data)
            put(kv_data, "p0", "loop-thread", f"v{round_}", round_ + 1)
            await wait_until(lambda: kv_data.merkle_todo.len() == 0)
            assert_trie_matches_store(kv_data)
        await runner.shutdown()

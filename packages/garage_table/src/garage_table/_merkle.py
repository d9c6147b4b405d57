"""Merkle tries over a table's entries, kept up to date from the ``merkle_todo`` tree.

Garage: src/table/merkle.rs. Anti-entropy (``_sync``) compares these tries between
replicas: equal root hashes mean equal partitions, and a walk down the differing children
finds the entries to send, without listing whole partitions.

Theory of operation
-------------------
**Shape.** A table has one trie per partition (``replication.partition_of`` of the first 32
bytes of a tree key: the partition key's hash). Inside it, an entry is placed by
``khash = blake2sum(tree_key)``: the trie branches on the bytes of ``khash``, so entries
spread evenly whatever their keys. The node for byte prefix ``p`` is stored in the
``<table>:merkle_tree`` tree under ``u16 BE partition ‖ p`` (:class:`MerkleNodeKey`) and is

* :class:`MerkleEmpty` when no entry's ``khash`` starts with ``p`` (never stored: absent
  means empty),
* :class:`MerkleLeaf` ``(tree_key, value_hash)`` when exactly one does,
* :class:`MerkleIntermediate` otherwise, listing ``(byte, child hash)`` for every byte ``b``
  such that some ``khash`` starts with ``p + b``, sorted by byte.

That shape is a function of the item set alone (**canonical**), so replicas holding equal
items hold byte-identical tries and equal root hashes, whatever order the writes arrived
in. A node's hash is ``blake2sum`` of its encoding; :data:`EMPTY_NODE_HASH` is the hash of
the empty node.

**Update** (:func:`merkle_update_item`, a pure function over a node store) sets or removes
one item, top-down from the partition root, rewriting only the nodes on its path:

* Empty + insert: becomes a Leaf.
* Leaf of the same key: its value hash is replaced (no-op if equal), or it becomes Empty.
* Leaf of another key + insert: becomes an Intermediate; both items are re-inserted one
  byte deeper (which recurses again while their ``khash`` share that byte).
* Intermediate: recurse into the child for ``khash[len(p)]``, then set or drop that child's
  hash. If exactly one child remains and it is a Leaf, the leaf moves up to ``p`` (its old
  node is deleted); a lone Intermediate child stays (``p`` still covers two or more items).

**The todo queue.** Writers never touch the trie. Every change of a table entry writes, in
the same transaction, ``merkle_todo[tree_key] = blake2sum(new bytes)`` (or ``b""`` for a
deletion), so the todo is never missing a change the store has. :class:`MerkleWorker`
drains it in the background: it reads up to 100 todo items, then in ONE transaction
applies each to the trie and deletes its todo entry **only if it still holds the value that
was applied** (compare-and-delete). A write that lands between the read and the
transaction changes the todo value, so its entry survives and the next step applies the
newer hash. The trie therefore lags the store but always converges to it; sync tolerates
the lag (a peer's newer items simply arrive as differences).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, Self, final

import anyio
import anyio.to_thread

from garage_util.background import Worker, WorkerState, WorkerStatus
from garage_util.data import HASH_LEN, FixedBytes32, Hash, blake2sum
from garage_util.encode import pack, unpack

if TYPE_CHECKING:
    from collections.abc import Sequence

    from garage_util.db import Db, Transaction, Tree

    from ._notify import Notifier
    from .replication import TableReplication

__all__ = [
    "EMPTY_NODE_HASH",
    "MERKLE_BATCH_SIZE",
    "MERKLE_IDLE_WAKEUP_S",
    "STATUS_RECOUNT_S",
    "MerkleEmpty",
    "MerkleIntermediate",
    "MerkleLeaf",
    "MerkleNode",
    "MerkleNodeKey",
    "MerkleNodeStore",
    "MerkleSource",
    "MerkleUpdater",
    "MerkleWorker",
    "merkle_update_item",
]

logger = logging.getLogger(__name__)

# Todo items applied per worker step, in one transaction. Garage's MerkleWorker takes 100:
# one step then holds the db write lock for a few milliseconds (each item rewrites the
# ~log256(n) nodes on its path), short enough not to stall foreground writes, long enough
# to amortise the commit and the thread hand-off.
MERKLE_BATCH_SIZE: Final = 100

# Garage's MerkleWorker wakes every 60 s even without a notification: a safety net that
# bounds how long a lost wake-up can delay the trie (the todo itself is never lost).
MERKLE_IDLE_WAKEUP_S: Final = 60.0

# Counting the todo is O(n) on sqlite: a worker draining a large backlog recounts it for
# its status at most this often, so the count costs a few percent of the work, not O(n^2).
STATUS_RECOUNT_S: Final = 10.0

# A node key is the partition as an u16, big-endian, then the prefix bytes.
_PARTITION_BYTES: Final = 2
_MAX_PARTITION: Final = (1 << (8 * _PARTITION_BYTES)) - 1


# ------------------------------------------------------------------------------ nodes


class MerkleNode:
    """A node of a Merkle trie: :class:`MerkleEmpty`, :class:`MerkleIntermediate` or
    :class:`MerkleLeaf`.

    Nodes encode canonically with :mod:`garage_util.encode` (``pack(node)``), as a tagged
    value: ``"Empty"``, ``{"Intermediate": [[byte, hash], ...]}`` or
    ``{"Leaf": [tree_key, value_hash]}``. A field or message typed ``MerkleNode`` decodes
    to the right variant. The encoding carries no version marker: it is hashed into every
    root hash, and the trie is a cache that can be rebuilt from the store, so a future
    format change means rebuilding the tries rather than migrating them.
    """

    __slots__ = ()

    def __to_wire__(self) -> object:
        raise NotImplementedError  # every variant defines it

    @classmethod
    def __from_wire__(cls, obj: object, type_args: tuple[object, ...]) -> MerkleNode:
        node = _node_from_wire(obj)
        if not isinstance(node, cls):
            raise TypeError(f"expected a {cls.__name__}, got a {type(node).__name__}")
        return node

    def encode(self) -> bytes:
        """The canonical bytes stored in the ``merkle_tree`` and hashed."""
        return pack(self)

    @classmethod
    def decode(cls, data: bytes) -> MerkleNode:
        """Decodes stored or received node bytes.

        Raises:
            DecodeError: the bytes are not a valid node.
        """
        node: MerkleNode = unpack(MerkleNode, data)
        return node

    def hash(self) -> Hash:
        """``blake2sum`` of the encoding: what the parent node records."""
        return blake2sum(self.encode())


@final
@dataclass(frozen=True, slots=True)
class MerkleEmpty(MerkleNode):
    """No item under this prefix. Never stored: an absent node is empty."""

    def __to_wire__(self) -> object:
        return "Empty"


@final
@dataclass(frozen=True, slots=True)
class MerkleIntermediate(MerkleNode):
    """Two or more items under this prefix, grouped by their next ``khash`` byte.

    Attributes:
        children: ``(byte, child hash)`` for every non-empty child, sorted by byte.

    Raises:
        ValueError: children unsorted, repeated, or with a byte outside 0..255.
    """

    children: tuple[tuple[int, Hash], ...]

    def __post_init__(self) -> None:
        prev = -1
        for byte, child_hash in self.children:
            if not prev < byte <= 0xFF:
                raise ValueError("Intermediate children must have sorted, unique bytes 0..255")
            if len(child_hash) != HASH_LEN:
                raise ValueError("Intermediate child hashes must be 32 bytes")
            prev = byte

    def __to_wire__(self) -> object:
        return {"Intermediate": [[b, bytes(h)] for b, h in self.children]}

    def child(self, byte: int) -> Hash | None:
        """The hash of the child at ``byte``, or None when it is empty."""
        for b, h in self.children:
            if b == byte:
                return h
        return None

    def with_child(self, byte: int, child_hash: Hash | None) -> MerkleIntermediate:
        """This node with the child at ``byte`` set to ``child_hash`` (None removes it)."""
        rest = [(b, h) for b, h in self.children if b != byte]
        if child_hash is not None:
            rest.append((byte, child_hash))
            rest.sort(key=_first)
        return MerkleIntermediate(tuple(rest))


@final
@dataclass(frozen=True, slots=True)
class MerkleLeaf(MerkleNode):
    """Exactly one item under this prefix.

    Attributes:
        tree_key: the item's key in the table's store.
        value_hash: ``blake2sum`` of the item's stored bytes.
    """

    tree_key: bytes
    value_hash: Hash

    def __to_wire__(self) -> object:
        return {"Leaf": [self.tree_key, bytes(self.value_hash)]}


def _first(child: tuple[int, Hash]) -> int:
    return child[0]


def _node_from_wire(obj: object) -> MerkleNode:
    """Builds a node from its msgpack-native structure (TypeError/ValueError if invalid)."""
    if obj == "Empty":
        return MerkleEmpty()
    if type(obj) is not dict or len(obj) != 1:
        raise TypeError("a Merkle node is 'Empty' or a one-entry map")
    ((tag, body),) = obj.items()
    if type(body) is not list:
        raise TypeError(f"the body of a Merkle {tag!r} node must be an array")
    if tag == "Intermediate":
        children: list[tuple[int, Hash]] = []
        for child in body:
            if (
                type(child) is not list
                or len(child) != 2
                or type(child[0]) is not int
                or type(child[1]) is not bytes
            ):
                raise TypeError("an Intermediate child is a [byte, 32-byte hash] pair")
            children.append((child[0], FixedBytes32(child[1])))
        return MerkleIntermediate(tuple(children))
    if tag == "Leaf":
        if len(body) != 2 or type(body[0]) is not bytes or type(body[1]) is not bytes:
            raise TypeError("a Leaf is a [tree_key bytes, 32-byte hash] pair")
        return MerkleLeaf(body[0], FixedBytes32(body[1]))
    raise ValueError(f"unknown Merkle node kind {tag!r}")


#: The hash of the empty node: the root hash of an empty partition, never stored.
EMPTY_NODE_HASH: Final[Hash] = MerkleEmpty().hash()


@dataclass(frozen=True, slots=True)
class MerkleNodeKey:
    """Where a node lives: a partition and a prefix of ``khash`` bytes.

    Attributes:
        partition: the trie's partition (0..65535; see ``TableReplication.partition_of``).
        prefix: the ``khash`` bytes leading to the node (empty for the root).

    Raises:
        ValueError: the partition does not fit an u16, or the prefix exceeds 32 bytes.
    """

    partition: int
    prefix: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.partition <= _MAX_PARTITION:
            raise ValueError(f"Merkle partition {self.partition} does not fit in 16 bits")
        if len(self.prefix) > HASH_LEN:
            raise ValueError(f"a Merkle prefix has at most {HASH_LEN} bytes")

    def encode(self) -> bytes:
        """The node's key in the ``merkle_tree``: u16 BE partition ‖ prefix."""
        return self.partition.to_bytes(_PARTITION_BYTES, "big") + self.prefix

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parses a ``merkle_tree`` key.

        Raises:
            ValueError: the key is shorter than the partition or too long.
        """
        if len(data) < _PARTITION_BYTES:
            raise ValueError("a Merkle node key starts with a 2-byte partition")
        return cls(int.from_bytes(data[:_PARTITION_BYTES], "big"), bytes(data[_PARTITION_BYTES:]))

    def add_byte(self, byte: int) -> Self:
        """The key of the child at ``byte``."""
        return type(self)(self.partition, self.prefix + bytes((byte,)))

    def next_key(self, khash: bytes) -> Self:
        """The key of the child on the path of ``khash`` (which must extend the prefix)."""
        return self.add_byte(khash[len(self.prefix)])


# ------------------------------------------------------------------------------ the core


class MerkleNodeStore(Protocol):
    """The bytes map the update algorithm reads and writes (a transaction on a tree)."""

    def get(self, key: bytes) -> bytes | None:
        """The stored bytes under ``key``, or None."""
        ...

    def insert(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        ...

    def remove(self, key: bytes) -> None:
        """Delete ``key`` if present."""
        ...


def _read(store: MerkleNodeStore, key: MerkleNodeKey) -> MerkleNode:
    data = store.get(key.encode())
    return MerkleEmpty() if data is None else MerkleNode.decode(data)


def _put(store: MerkleNodeStore, key: MerkleNodeKey, node: MerkleNode) -> Hash:
    """Store ``node`` (removing it if empty) and return its hash."""
    if isinstance(node, MerkleEmpty):
        store.remove(key.encode())
        return EMPTY_NODE_HASH
    data = node.encode()
    store.insert(key.encode(), data)
    return blake2sum(data)


def merkle_update_item(
    store: MerkleNodeStore, partition: int, tree_key: bytes, value_hash: Hash | None
) -> Hash | None:
    """Set (``value_hash``) or remove (None) one item of a partition's trie.

    The sans-I/O core: deterministic, and keeps the trie canonical (see the module
    docstring). Run it inside one transaction so that the path is rewritten atomically.

    Args:
        store: the ``merkle_tree`` (through a transaction), or any bytes map.
        partition: the item's partition.
        tree_key: the item's key in the table's store.
        value_hash: ``blake2sum`` of the item's stored bytes, or None if it was deleted.

    Returns:
        The new root hash of the partition, or None when the trie did not change.
    """
    khash = blake2sum(tree_key)
    return _update_rec(store, MerkleNodeKey(partition), tree_key, khash, value_hash)


def _update_rec(
    store: MerkleNodeStore,
    key: MerkleNodeKey,
    tree_key: bytes,
    khash: Hash,
    value_hash: Hash | None,
) -> Hash | None:
    """Update the subtree at ``key``; its new hash, or None if it did not change."""
    i = len(key.prefix)
    node = _read(store, key)
    new: MerkleNode
    if isinstance(node, MerkleEmpty):
        if value_hash is None:
            return None
        new = MerkleLeaf(tree_key, value_hash)
    elif isinstance(node, MerkleLeaf):
        if node.tree_key == tree_key:
            if value_hash == node.value_hash:
                return None
            new = MerkleEmpty() if value_hash is None else MerkleLeaf(tree_key, value_hash)
        else:
            if value_hash is None:
                return None  # removing an item that is not there
            if i == HASH_LEN:
                raise AssertionError("two tree keys with the same blake2 hash")
            # Both items go one level down (possibly into the same child, which splits
            # again): this prefix now covers two items.
            other_khash = blake2sum(node.tree_key)
            both = ((node.tree_key, other_khash, node.value_hash), (tree_key, khash, value_hash))
            split = MerkleIntermediate(())
            for k, kh, vh in both:
                child_hash = _update_rec(store, key.next_key(kh), k, kh, vh)
                if child_hash is not None:
                    split = split.with_child(kh[i], child_hash)
            new = split
    elif isinstance(node, MerkleIntermediate):
        child = key.next_key(khash)
        child_hash = _update_rec(store, child, tree_key, khash, value_hash)
        if child_hash is None:
            return None
        node = node.with_child(khash[i], None if child_hash == EMPTY_NODE_HASH else child_hash)
        new = _collapse(store, key, node)
    else:  # pragma: no cover - the three variants are exhaustive
        raise TypeError(f"unknown Merkle node {node!r}")
    return _put(store, key, new)


def _collapse(store: MerkleNodeStore, key: MerkleNodeKey, node: MerkleIntermediate) -> MerkleNode:
    """The canonical form of an Intermediate after one of its children changed."""
    if not node.children:
        # Cannot happen in a canonical trie (an Intermediate covers two items and one
        # update removes at most one), as in Garage; recover rather than store it.
        logger.warning("Merkle: intermediate node at %r lost all its children", key)
        return MerkleEmpty()
    if len(node.children) > 1:
        return node
    only = key.add_byte(node.children[0][0])
    sub = _read(store, only)
    if isinstance(sub, MerkleLeaf):
        # One item left under this prefix: its leaf moves up here.
        store.remove(only.encode())
        return sub
    if isinstance(sub, MerkleEmpty):
        logger.warning("Merkle: intermediate node at %r points to an empty child", key)
        return MerkleEmpty()
    return node  # a lone Intermediate child: this prefix still covers two items or more


# ------------------------------------------------------------------------------ updater


@final
class _TxNodes:
    """A :class:`MerkleNodeStore` over one tree, through a transaction."""

    __slots__ = ("_tree", "_tx")

    def __init__(self, tx: Transaction, tree: Tree) -> None:
        self._tx = tx
        self._tree = tree

    def get(self, key: bytes) -> bytes | None:
        return self._tx.get(self._tree, key)

    def insert(self, key: bytes, value: bytes) -> None:
        self._tx.insert(self._tree, key, value)

    def remove(self, key: bytes) -> None:
        self._tx.remove(self._tree, key)


@final
class MerkleUpdater:
    """A table's Merkle tries and their todo queue (``TableData.merkle_updater``).

    Every method is synchronous and short; from async code run them through
    ``anyio.to_thread.run_sync``.

    Args:
        db: the metadata db holding both trees.
        merkle_tree: the ``<table>:merkle_tree`` tree (the nodes).
        merkle_todo: the ``<table>:merkle_todo`` tree (tree key -> value hash or ``b""``).
        replication: gives the partition of a tree key.
    """

    __slots__ = ("_db", "_replication", "merkle_todo", "merkle_tree")

    def __init__(
        self, db: Db, merkle_tree: Tree, merkle_todo: Tree, replication: TableReplication
    ) -> None:
        self._db = db
        self._replication = replication
        self.merkle_tree = merkle_tree
        """The tree of nodes, keyed by :meth:`MerkleNodeKey.encode`."""
        self.merkle_todo = merkle_todo
        """The todo queue: tree key -> value hash (``b""`` for a deletion)."""

    def partition_of(self, tree_key: bytes) -> int:
        """The trie an item belongs to: the partition of its partition-key hash."""
        return self._replication.partition_of(FixedBytes32(tree_key[:HASH_LEN]))

    def update_item(self, tx: Transaction, tree_key: bytes, value_hash: bytes) -> None:
        """Apply one item to its partition's trie, inside ``tx``.

        Args:
            tx: the transaction to write the nodes in.
            tree_key: the item's key in the store.
            value_hash: ``blake2sum`` of the item's stored bytes, or ``b""`` if it was
                deleted (the todo tree's format).

        Raises:
            ValueError: ``value_hash`` is neither empty nor 32 bytes.
        """
        if value_hash:
            new_hash: Hash | None = FixedBytes32(value_hash)
        else:
            new_hash = None
        partition = self.partition_of(tree_key)
        merkle_update_item(_TxNodes(tx, self.merkle_tree), partition, tree_key, new_hash)

    def read_node(self, partition: int, prefix: bytes = b"") -> MerkleNode:
        """The committed node at ``prefix`` of ``partition``'s trie (Empty if absent).

        Raises:
            DecodeError: the stored node is corrupt.
        """
        data = self.merkle_tree.get(MerkleNodeKey(partition, prefix).encode())
        return MerkleEmpty() if data is None else MerkleNode.decode(data)

    def root_hash(self, partition: int) -> Hash:
        """The hash of ``partition``'s root node (:data:`EMPTY_NODE_HASH` when empty)."""
        data = self.merkle_tree.get(MerkleNodeKey(partition).encode())
        return EMPTY_NODE_HASH if data is None else blake2sum(data)

    def read_todo(self, limit: int = MERKLE_BATCH_SIZE) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` todo items ``(tree_key, value_hash or b"")``, in key order."""
        items: list[tuple[bytes, bytes]] = []
        if limit <= 0:
            return items
        for item in self.merkle_todo.range():
            items.append(item)
            if len(items) >= limit:
                break
        return items

    def apply_todo(self, items: Sequence[tuple[bytes, bytes]]) -> int:
        """Apply todo items read earlier, and compare-and-delete them, in one transaction.

        An item whose todo value changed since it was read (a newer write) is still
        applied, but its todo entry stays, so the newer value is applied later.

        Returns:
            How many todo entries were deleted.
        """
        if not items:
            return 0

        def txn(tx: Transaction) -> int:
            deleted = 0
            for tree_key, value_hash in items:
                self.update_item(tx, tree_key, value_hash)
                if tx.get(self.merkle_todo, tree_key) == value_hash:
                    tx.remove(self.merkle_todo, tree_key)
                    deleted += 1
                else:
                    logger.debug("Merkle todo item changed while being applied; kept")
            return deleted

        return self._db.transaction(txn)

    def process_todo_batch(self, limit: int = MERKLE_BATCH_SIZE) -> int:
        """Read up to ``limit`` todo items and apply them (:meth:`apply_todo`).

        Returns:
            How many items were read (0 when the todo is empty).
        """
        items = self.read_todo(limit)
        self.apply_todo(items)
        return len(items)

    def todo_len(self) -> int:
        """How many items wait in the todo (sqlite counts them: O(n))."""
        return self.merkle_todo.len()


# ------------------------------------------------------------------------------ worker


class MerkleSource(Protocol):
    """What :class:`MerkleWorker` needs of a table (a ``TableData`` provides it)."""

    @property
    def name(self) -> str:
        """The table's name."""
        ...

    @property
    def merkle_updater(self) -> MerkleUpdater:
        """The table's tries and todo."""
        ...

    @property
    def merkle_todo_notify(self) -> Notifier:
        """Notified after every commit that wrote to the todo."""
        ...


@final
class MerkleWorker(Worker):
    """Drains a table's ``merkle_todo`` into its tries, for a ``BackgroundRunner``.

    Each step applies up to :data:`MERKLE_BATCH_SIZE` items in a worker thread. When the
    todo is empty the worker is idle until a write notifies it, or 60 s pass.

    Args:
        data: the table whose tries to maintain.
    """

    __slots__ = ("_counted_at", "_name", "_notify", "_queue_length", "_updater")

    def __init__(self, data: MerkleSource) -> None:
        self._updater = data.merkle_updater
        self._notify: Notifier = data.merkle_todo_notify
        self._name = f"{data.name} Merkle"
        self._queue_length: int | None = None
        self._counted_at = -math.inf

    @property
    def name(self) -> str:
        return self._name

    def status(self) -> WorkerStatus:
        """Reports the todo length, as last counted by a step (at most every 10 s)."""
        return WorkerStatus(queue_length=self._queue_length)

    async def work(self) -> WorkerState:
        processed = await anyio.to_thread.run_sync(
            self._updater.process_todo_batch, MERKLE_BATCH_SIZE
        )
        if not processed:
            self._queue_length = 0
            return WorkerState.IDLE
        now = anyio.current_time()
        if now - self._counted_at >= STATUS_RECOUNT_S:
            self._counted_at = now
            self._queue_length = await anyio.to_thread.run_sync(self._updater.todo_len)
        return WorkerState.BUSY

    async def wait_for_work(self) -> WorkerState:
        with anyio.move_on_after(MERKLE_IDLE_WAKEUP_S):
            await self._notify.wait()
        return WorkerState.BUSY

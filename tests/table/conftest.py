"""Shared fixtures of the table tests: a key-value test table, a static replication, dbs.

Test modules import the types from here (``from tests.table.conftest import KvEntry``;
pytest's importlib mode registers this module under that name):

- :class:`KvEntry`: a key-value entry (partition key and sort key are :class:`StringKey`)
  whose value is an ``Lww[str | None]``; a ``None`` value is the tombstone.
- :class:`KvSchema`: its schema (table ``"kv"`` unless named otherwise), with an optional
  ``updated`` hook to observe or extend writes.
- :class:`StaticReplication`: a fixed list of nodes storing every partition
  (partition = first hash byte, as sharded tables do).

Fixtures: ``engine`` (sqlite and lmdb), ``db`` (a fresh db per test), ``node_ids``
(three node ids), ``replication`` and ``kv_data`` (a ``TableData`` of the kv table on the
first node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import pytest

from garage_table._data import TableData
from garage_table.replication import SyncPartition, SyncPartitions
from garage_table.schema import DeletedFilter, StringKey, TableEntry, TableSchema
from garage_util.crdt import Lww
from garage_util.data import HASH_LEN, FixedBytes32, Hash, Uuid
from garage_util.db import Db, Transaction, open_db

if TYPE_CHECKING:
    from pathlib import Path

#: Partitions of the static replication: one per first hash byte, as sharded tables.
NB_PARTITIONS = 256


@dataclass(frozen=True, slots=True)
class KvEntry(TableEntry[StringKey, StringKey]):
    """A test entry: ``(pk, sk) -> Lww[str | None]``; a ``None`` value is a tombstone."""

    VERSION_MARKER: ClassVar[bytes] = b"Tkv1"

    pk: str
    sk: str
    value: Lww[str | None]

    @classmethod
    def put(cls, pk: str, sk: str, value: str | None, ts: int) -> KvEntry:
        """An entry holding ``value`` written at ``ts`` (None: a tombstone)."""
        return cls(pk, sk, Lww(ts, value))

    def partition_key(self) -> StringKey:
        return StringKey(self.pk)

    def sort_key(self) -> StringKey:
        return StringKey(self.sk)

    def is_tombstone(self) -> bool:
        return self.value.v is None

    def merge(self, other: KvEntry) -> KvEntry:
        if (self.pk, self.sk) != (other.pk, other.sk):
            raise ValueError("cannot merge entries of different keys")
        merged = self.value.merge(other.value)
        return self if merged is self.value else KvEntry(self.pk, self.sk, merged)


#: An ``updated`` hook: ``(tx, old, new)``.
Hook = Callable[[Transaction, KvEntry | None, KvEntry | None], None]


class KvSchema(TableSchema[StringKey, StringKey, KvEntry, DeletedFilter]):
    """The schema of the kv test table, with an optional ``updated`` hook.

    Args:
        name: the table name (tests that need two tables in one db give another one).
        hook: called by ``updated`` inside the write transaction.
    """

    TABLE_NAME: ClassVar[str] = "kv"
    PARTITION_KEY = StringKey
    SORT_KEY = StringKey
    ENTRY = KvEntry

    def __init__(self, name: str = "kv", hook: Hook | None = None) -> None:
        # An instance attribute shadows the class default, so tests can name tables freely.
        self.TABLE_NAME = name  # type: ignore[misc]  # ClassVar set per test instance
        self.hook = hook

    def updated(self, tx: Transaction, old: KvEntry | None, new: KvEntry | None) -> None:
        if self.hook is not None:
            self.hook(tx, old, new)


class StaticReplication:
    """Every partition stored by the same nodes, in the given order (the first leads GC)."""

    def __init__(self, nodes: list[Uuid]) -> None:
        self.nodes = list(nodes)

    def storage_nodes(self, hash: Hash) -> list[Uuid]:
        return list(self.nodes)

    def read_nodes(self, hash: Hash) -> list[Uuid]:
        return list(self.nodes)

    def read_quorum(self) -> int:
        return len(self.nodes) // 2 + 1

    def write_sets(self, hash: Hash) -> list[list[Uuid]]:
        return [list(self.nodes)]

    def write_quorum(self) -> int:
        return len(self.nodes) // 2 + 1

    def partition_of(self, hash: Hash) -> int:
        return hash[0]

    def sync_partitions(self) -> SyncPartitions:
        nodes = tuple(self.nodes)
        parts = tuple(
            SyncPartition(
                partition=p,
                first_hash=FixedBytes32(bytes([p]) + bytes(HASH_LEN - 1)),
                last_hash=FixedBytes32(bytes([p]) + b"\xff" * (HASH_LEN - 1)),
                storage_sets=(nodes,),
            )
            for p in range(NB_PARTITIONS)
        )
        return SyncPartitions(layout_version=1, partitions=parts)


def node_id(n: int) -> Uuid:
    """A recognisable node id: 32 bytes of ``n``."""
    return FixedBytes32(bytes([n]) * HASH_LEN)


@pytest.fixture(params=["sqlite", "lmdb"])
def engine(request: pytest.FixtureRequest) -> str:
    """The db engine; tests using it (or ``db``) run once per engine."""
    name: str = request.param
    return name


@pytest.fixture
def db(engine: str, tmp_path: Path) -> Iterator[Db]:
    """A fresh db of ``engine``, closed after the test."""
    with open_db(tmp_path / "meta", engine) as opened:
        yield opened


@pytest.fixture
def node_ids() -> list[Uuid]:
    """Three node ids; the first is "us" and leads every partition's GC."""
    return [node_id(1), node_id(2), node_id(3)]


@pytest.fixture
def replication(node_ids: list[Uuid]) -> StaticReplication:
    """The three nodes storing everything."""
    return StaticReplication(node_ids)


@pytest.fixture
def kv_data(db: Db, replication: StaticReplication, node_ids: list[Uuid]) -> TableData[KvEntry]:
    """The kv table on the first node, with no hook, clock fixed at 1000 ms."""
    return TableData(KvSchema(), replication, db, node_id=node_ids[0], clock_ms=lambda: 1000)

"""The local data path: merges, the store/todo/hook atomicity, GC records, compare-and-delete,
range reads, and the cross-thread wake-ups."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import anyio
import anyio.to_thread
import pytest
from tests.table.conftest import KvEntry, KvSchema, StaticReplication

from garage_table._data import TableData
from garage_table._notify import Notifier
from garage_table.schema import (
    DeletedFilter,
    EnumerationOrder,
    StringKey,
    TableEntry,
    TableSchema,
)
from garage_util.crdt import Lww
from garage_util.data import HASH_LEN, FixedBytes32, Hash, Uuid, blake2sum
from garage_util.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from garage_util.db import Db, Transaction

FORWARD, REVERSE = EnumerationOrder.FORWARD, EnumerationOrder.REVERSE


def entry(pk: str, sk: str, value: str | None, ts: int = 1) -> KvEntry:
    return KvEntry.put(pk, sk, value, ts)


def key_of(e: KvEntry) -> bytes:
    return bytes(e.partition_key().hash()) + e.sort_key().sort_key()


def make_data(
    db: Db,
    replication: StaticReplication,
    me: Uuid,
    hook: Callable[[Transaction, KvEntry | None, KvEntry | None], None] | None = None,
    name: str = "kv",
) -> TableData[KvEntry]:
    return TableData(KvSchema(name, hook), replication, db, node_id=me, clock_ms=lambda: 1000)


# ------------------------------------------------------------------------------ updates


def test_trees_have_garage_names(kv_data: TableData[KvEntry], db: Db) -> None:
    assert set(db.list_trees()) >= {
        "kv:table",
        "kv:merkle_tree",
        "kv:merkle_todo",
        "kv:insert_queue",
        "kv:gc_todo_v2",
    }
    assert kv_data.name == "kv"


def test_new_entry_is_stored_with_its_todo(kv_data: TableData[KvEntry]) -> None:
    e = entry("p", "s", "v")
    assert kv_data.update_entry(e.encode()) == e
    assert kv_data.read_entry(StringKey("p"), StringKey("s")) == e.encode()
    assert dict(kv_data.merkle_todo.iter()) == {key_of(e): blake2sum(e.encode())}
    assert kv_data.merkle_todo_notify.pending


def test_updates_merge_as_crdts(kv_data: TableData[KvEntry]) -> None:
    kv_data.update_entry(entry("p", "s", "old", ts=5).encode())
    kv_data.merkle_todo.clear()
    # An older write loses: nothing changes, nothing is recorded.
    assert kv_data.update_entry(entry("p", "s", "older", ts=4).encode()) is None
    assert kv_data.merkle_todo.len() == 0
    # A newer one wins.
    newer = entry("p", "s", "new", ts=6)
    assert kv_data.update_entry(newer.encode()) == newer
    # Same timestamp: both replicas keep the same winner whatever the order.
    a, b = entry("p", "t", "aaa", ts=9), entry("p", "t", "bbb", ts=9)
    kv_data.update_many([a.encode(), b.encode()])
    first = kv_data.read_entry(StringKey("p"), StringKey("t"))
    kv_data.delete_if_equal(key_of(a), first or b"")
    kv_data.update_many([b.encode(), a.encode()])
    assert kv_data.read_entry(StringKey("p"), StringKey("t")) == first


def test_unchanged_write_returns_none_and_writes_no_todo(kv_data: TableData[KvEntry]) -> None:
    e = entry("p", "s", "v")
    assert kv_data.update_many([e.encode(), e.encode()]) == [e, None]
    kv_data.merkle_todo.clear()
    assert kv_data.update_entry(e.encode()) is None
    assert kv_data.update_entry_with(StringKey("p"), StringKey("s"), lambda old: old) is None
    assert kv_data.update_entry_with(StringKey("p"), StringKey("s"), lambda old: None) is None
    assert kv_data.merkle_todo.len() == 0


def test_update_entry_with_is_a_read_modify_write(kv_data: TableData[KvEntry]) -> None:
    seen: list[KvEntry | None] = []

    def bump(old: KvEntry | None) -> KvEntry:
        seen.append(old)
        base = old or entry("p", "s", "", ts=0)
        return base.merge(entry("p", "s", (base.value.v or "") + "+", ts=base.value.ts + 1))

    pk, sk = StringKey("p"), StringKey("s")
    first = kv_data.update_entry_with(pk, sk, bump)
    second = kv_data.update_entry_with(pk, sk, bump)
    assert seen == [None, first]
    assert second == entry("p", "s", "++", ts=2)
    assert kv_data.decode_entry(kv_data.read_entry(pk, sk) or b"") == second


def test_update_entry_with_refuses_other_keys(kv_data: TableData[KvEntry]) -> None:
    with pytest.raises(ValueError, match="other keys"):
        kv_data.update_entry_with(StringKey("p"), StringKey("s"), lambda _: entry("p", "x", "v"))
    assert kv_data.store.len() == 0
    assert kv_data.merkle_todo.len() == 0


def test_undecodable_input_is_refused(kv_data: TableData[KvEntry]) -> None:
    with pytest.raises(DecodeError):
        kv_data.update_entry(b"not an entry")
    assert kv_data.store.len() == 0


# ------------------------------------------------------------------------------ the hook


def test_hook_sees_old_and_new_and_commits_with_the_change(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    calls: list[tuple[KvEntry | None, KvEntry | None]] = []
    side = db.open_tree("side")

    def hook(tx: Transaction, old: KvEntry | None, new: KvEntry | None) -> None:
        calls.append((old, new))
        tx.insert(side, b"count", bytes([len(calls)]))

    data = make_data(db, replication, node_ids[0], hook)
    v1, v2 = entry("p", "s", "1", ts=1), entry("p", "s", "2", ts=2)
    data.update_entry(v1.encode())
    data.update_entry(v1.encode())  # unchanged: no hook call
    data.update_entry(v2.encode())
    assert data.delete_if_equal(key_of(v2), v2.encode())
    assert calls == [(None, v1), (v1, v2), (v2, None)]
    assert side.get(b"count") == bytes([3])


def test_a_failing_hook_writes_nothing(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    side = db.open_tree("side")
    fail = False

    def hook(tx: Transaction, old: KvEntry | None, new: KvEntry | None) -> None:
        tx.insert(side, b"written", b"1")
        if fail:
            raise RuntimeError("hook failed")

    data = make_data(db, replication, node_ids[0], hook)
    e = entry("p", "s", "v")
    data.update_entry(e.encode())
    data.merkle_todo.clear()
    side.clear()
    fail = True
    with pytest.raises(RuntimeError, match="hook failed"):
        data.update_entry(entry("p", "s", None, ts=2).encode())
    with pytest.raises(RuntimeError, match="hook failed"):
        data.delete_if_equal(key_of(e), e.encode())
    assert data.read_entry(StringKey("p"), StringKey("s")) == e.encode()
    assert data.merkle_todo.len() == 0
    assert data.gc_todo.len() == 0
    assert side.len() == 0


# ------------------------------------------------------------------------------ GC records


def test_tombstone_on_the_first_storage_node_is_recorded_for_gc(
    kv_data: TableData[KvEntry],
) -> None:
    kv_data.update_entry(entry("p", "s", "v").encode())
    assert kv_data.gc_todo.len() == 0
    tombstone = entry("p", "s", None, ts=2)
    kv_data.update_entry(tombstone.encode())
    stored = kv_data.read_entry(StringKey("p"), StringKey("s"))
    assert stored == tombstone.encode()
    gc_key = (1000).to_bytes(8, "big") + key_of(tombstone)
    assert dict(kv_data.gc_todo.iter()) == {gc_key: blake2sum(stored)}
    assert kv_data.gc_todo_len() == 1


def test_tombstone_on_another_node_is_not_recorded(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    data = make_data(db, replication, node_ids[1])
    data.update_entry(entry("p", "s", None).encode())
    assert data.store.len() == 1
    assert data.gc_todo.len() == 0


# ------------------------------------------------------------------------------ deletes


def test_delete_if_equal_only_when_equal(kv_data: TableData[KvEntry]) -> None:
    e = entry("p", "s", "v")
    key = key_of(e)
    assert not kv_data.delete_if_equal(key, e.encode())  # absent
    kv_data.update_entry(e.encode())
    kv_data.merkle_todo.clear()
    assert not kv_data.delete_if_equal(key, entry("p", "s", "other").encode())
    assert kv_data.store.len() == 1
    assert kv_data.merkle_todo.len() == 0
    assert kv_data.delete_if_equal(key, e.encode())
    assert kv_data.store.len() == 0
    assert dict(kv_data.merkle_todo.iter()) == {key: b""}


def test_delete_if_equal_hash_only_when_equal(kv_data: TableData[KvEntry]) -> None:
    e = entry("p", "s", "v")
    key = key_of(e)
    kv_data.update_entry(e.encode())
    kv_data.merkle_todo.clear()
    assert not kv_data.delete_if_equal_hash(key, blake2sum(b"something else"))
    assert not kv_data.delete_if_equal_hash(key + b"x", blake2sum(e.encode()))
    assert kv_data.store.len() == 1
    assert kv_data.merkle_todo.len() == 0
    assert kv_data.delete_if_equal_hash(key, blake2sum(e.encode()))
    assert kv_data.store.len() == 0
    assert dict(kv_data.merkle_todo.iter()) == {key: b""}


# ------------------------------------------------------------------------------ migrations


@dataclass(frozen=True, slots=True)
class OldKv(TableEntry[StringKey, StringKey]):
    """The first format of :class:`NewKv`: a plain string value."""

    VERSION_MARKER: ClassVar[bytes] = b"Tkv0"

    pk: str
    sk: str
    value: str

    def partition_key(self) -> StringKey:
        return StringKey(self.pk)

    def sort_key(self) -> StringKey:
        return StringKey(self.sk)

    def merge(self, other: OldKv) -> OldKv:
        return max(self, other, key=lambda e: e.value)


@dataclass(frozen=True, slots=True)
class NewKv(TableEntry[StringKey, StringKey]):
    """The current format: the value became an Lww register (migrated at timestamp 0)."""

    VERSION_MARKER: ClassVar[bytes] = b"Tkv9"
    PREVIOUS: ClassVar[type[OldKv]] = OldKv

    pk: str
    sk: str
    value: Lww[str]

    @classmethod
    def migrate(cls, previous: object) -> NewKv:
        assert isinstance(previous, OldKv)
        return cls(previous.pk, previous.sk, Lww(0, previous.value))

    def partition_key(self) -> StringKey:
        return StringKey(self.pk)

    def sort_key(self) -> StringKey:
        return StringKey(self.sk)

    def merge(self, other: NewKv) -> NewKv:
        return NewKv(self.pk, self.sk, self.value.merge(other.value))


class NewKvSchema(TableSchema[StringKey, StringKey, NewKv, DeletedFilter]):
    TABLE_NAME: ClassVar[str] = "migrating"
    ENTRY = NewKv


def test_an_entry_in_an_old_format_is_rewritten(
    db: Db, replication: StaticReplication, node_ids: list[Uuid]
) -> None:
    data = TableData(NewKvSchema(), replication, db, node_id=node_ids[0])
    old_bytes = OldKv("p", "s", "v").encode()
    assert old_bytes.startswith(b"Tkv0")
    key = bytes(StringKey("p").hash()) + b"s"
    data.store.insert(key, old_bytes)
    same = NewKv("p", "s", Lww(0, "v"))
    assert data.decode_entry(old_bytes) == same
    # Merging an equal value changes only the encoding: it is rewritten and recorded.
    assert data.update_entry(same.encode()) == same
    assert data.store.get(key) == same.encode()
    assert dict(data.merkle_todo.iter()) == {key: blake2sum(same.encode())}


# ------------------------------------------------------------------------------ queue_insert


def test_queue_insert_merges_inside_the_callers_transaction(kv_data: TableData[KvEntry]) -> None:
    a1, a2, b = entry("q", "a", "1", ts=1), entry("q", "a", "2", ts=2), entry("q", "b", "x")

    def enqueue(tx: Transaction) -> None:
        kv_data.queue_insert(tx, a2)
        kv_data.queue_insert(tx, a1)
        kv_data.queue_insert(tx, b)

    pending_before = kv_data.insert_queue_notify.pending
    kv_data.db.transaction(enqueue)
    assert (pending_before, kv_data.insert_queue_notify.pending) == (False, True)
    assert dict(kv_data.insert_queue.iter()) == {key_of(a2): a2.encode(), key_of(b): b.encode()}
    assert kv_data.insert_queue_len() == 2

    def enqueue_then_abort(tx: Transaction) -> None:
        kv_data.queue_insert(tx, entry("q", "c", "x"))
        tx.abort("no")

    with pytest.raises(Exception, match="aborted"):
        kv_data.db.transaction(enqueue_then_abort)
    assert kv_data.insert_queue_len() == 2


# ------------------------------------------------------------------------------ read_range


@dataclass(frozen=True, slots=True)
class RawKey:
    """A partition key with a chosen hash, to test partitions next to each other."""

    raw: bytes

    def hash(self) -> Hash:
        return FixedBytes32(self.raw)


@pytest.fixture
def populated(kv_data: TableData[KvEntry]) -> TableData[KvEntry]:
    for pk in ("a", "b", "c"):
        for i in range(8):
            value = None if i % 3 == 0 else f"{pk}{i}"
            kv_data.update_entry(entry(pk, f"k{i}", value).encode())
        kv_data.update_entry(entry(pk, "", "empty sort key").encode())
    return kv_data


def model_range(
    data: TableData[KvEntry],
    pk: str,
    start: str | None,
    filter: DeletedFilter | None,
    limit: int,
    order: EnumerationOrder,
) -> list[bytes]:
    rows = sorted(
        (e.sk, v)
        for v in (v for _, v in data.store.iter())
        if (e := data.decode_entry(v)).pk == pk
        and (filter is None or filter.apply(e.is_tombstone()))
    )
    if order is REVERSE:
        rows.reverse()
    if start is not None:
        rows = [r for r in rows if (r[0] >= start if order is FORWARD else r[0] <= start)]
    return [v for _, v in rows[: max(limit, 0)]]


@pytest.mark.parametrize("order", [FORWARD, REVERSE])
@pytest.mark.parametrize("filter", [None, *DeletedFilter])
def test_read_range_matches_a_model(
    populated: TableData[KvEntry], order: EnumerationOrder, filter: DeletedFilter | None
) -> None:
    for pk in ("a", "b", "z"):
        for start in (None, "", "k0", "k4", "k45", "k7", "k9", "j"):
            for limit in (0, 1, 3, 100):
                got = populated.read_range(
                    StringKey(pk), None if start is None else StringKey(start), filter, limit, order
                )
                assert got == model_range(populated, pk, start, filter, limit, order), (
                    pk,
                    start,
                    limit,
                )


@pytest.mark.parametrize("engine", ["sqlite"])
def test_read_range_stays_in_adjacent_partitions(kv_data: TableData[KvEntry]) -> None:
    low = bytes(HASH_LEN - 1) + b"\x05"
    mid = bytes(HASH_LEN - 1) + b"\x06"
    top = b"\xff" * HASH_LEN
    for prefix in (low, mid, top):
        for sk in (b"", b"a", b"\xff\xff"):
            kv_data.store.insert(prefix + sk, prefix[-1:] + sk)
    for prefix in (low, mid, top):
        expected = [prefix[-1:] + sk for sk in (b"", b"a", b"\xff\xff")]
        pk = RawKey(prefix)
        assert kv_data.read_range(pk, None, None, 10, FORWARD) == expected
        assert kv_data.read_range(pk, None, None, 10, REVERSE) == expected[::-1]
        assert kv_data.read_range(pk, StringKey("a"), None, 10, REVERSE) == expected[1::-1]
        assert kv_data.read_range(pk, StringKey("a"), None, 10, FORWARD) == expected[1:]


# ------------------------------------------------------------------------------ Notifier


@pytest.mark.anyio
async def test_notify_before_wait_is_kept_and_coalesced() -> None:
    notifier = Notifier()
    notifier.notify()
    notifier.notify()
    with anyio.fail_after(5):
        await notifier.wait()
    assert not notifier.pending
    with anyio.move_on_after(0.05) as scope:
        await notifier.wait()
    assert scope.cancelled_caught


async def _woken_by(notify_from: Callable[[Notifier], Awaitable[object]]) -> None:
    """A task waiting on a notifier is woken by ``notify_from(notifier)``."""
    notifier = Notifier()
    woken = anyio.Event()

    async def waiter() -> None:
        await notifier.wait()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set()
            await notify_from(notifier)
            await woken.wait()
    assert not notifier.pending


@pytest.mark.anyio
async def test_notify_from_the_loop_thread_wakes() -> None:
    async def in_loop(notifier: Notifier) -> None:
        notifier.notify()

    await _woken_by(in_loop)


@pytest.mark.anyio
async def test_notify_from_a_worker_thread_wakes() -> None:
    async def in_worker_thread(notifier: Notifier) -> None:
        await anyio.to_thread.run_sync(notifier.notify)

    await _woken_by(in_worker_thread)


@pytest.mark.anyio
async def test_notify_from_a_foreign_thread_wakes() -> None:
    threads: list[threading.Thread] = []

    async def in_foreign_thread(notifier: Notifier) -> None:
        # Not joined here: notify() waits for the event loop, which must keep running.
        thread = threading.Thread(target=notifier.notify)
        threads.append(thread)
        thread.start()

    await _woken_by(in_foreign_thread)
    await anyio.to_thread.run_sync(threads[0].join)


def test_notify_after_the_loop_ended_is_dropped() -> None:
    notifier = Notifier()

    async def wait_then_leave_a_waiter() -> None:
        with anyio.move_on_after(0.01):
            await notifier.wait()

    anyio.run(wait_then_leave_a_waiter)
    thread = threading.Thread(target=notifier.notify)
    thread.start()
    thread.join(5)
    assert notifier.pending


@pytest.mark.anyio
async def test_cancelled_wait_keeps_later_notifications() -> None:
    notifier = Notifier()
    with anyio.move_on_after(0.01):
        await notifier.wait()
    notifier.notify()
    with anyio.fail_after(5):
        await notifier.wait()


@pytest.mark.anyio
async def test_writes_in_a_worker_thread_wake_the_merkle_waiter(
    kv_data: TableData[KvEntry],
) -> None:
    woken = anyio.Event()

    async def waiter() -> None:
        await kv_data.merkle_todo_notify.wait()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(kv_data.update_entry, entry("p", "s", "v").encode())
            await woken.wait()

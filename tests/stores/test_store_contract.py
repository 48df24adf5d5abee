"""One contract, every store: the rules of :class:`TaskStore` (service/stores/base.py),
here adding, idempotency, the queue bound, listing, counting and eviction;
test_store_lifecycle.py has the life of a task. Both run against every backend
(conftest.py's ``store``).

Records handed back may be copies (SQLite, the copying store), so the tests always read a
record again through the store and compare fields, never identities.
"""

from __future__ import annotations

import pytest

from service.models import TERMINAL, Status, TaskError
from service.stores import ListQuery, TaskStore, open_store
from service.stores.base import QueueBoundReached

from .contract import NOW, claim, fetch, ids, new, succeed

# -- adding and reading ------------------------------------------------------------------

async def test_add_then_get_round_trips_every_field(store: TaskStore) -> None:
    (added,) = await store.add([new(owner="o", key="k", priority=3)])
    got = await fetch(store, added.id)
    for field in ("id", "name", "args", "kwargs", "status", "priority", "owner", "timeout",
                  "idempotency_key", "request_hash", "created_at", "max_attempts", "seq",
                  "attempts", "cancel_requested", "progress", "result", "error"):
        assert getattr(got, field) == getattr(added, field), field
    assert got.args == [1, {"x": [2**70]}]  # beyond 64 bits, still an int


async def test_get_unknown_is_none(store: TaskStore) -> None:
    assert await store.get("nope") is None


async def test_add_assigns_growing_seq_never_reused(store: TaskStore) -> None:
    first = await store.add([new(), new()])
    second = await store.add([new()])
    seqs = [r.seq for r in first + second]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] > 0
    await store.request_cancel(second[0].id, NOW)
    assert await store.delete(second[0].id)
    (third,) = await store.add([new()])
    assert third.seq > seqs[-1]


async def test_add_nothing_is_fine(store: TaskStore) -> None:
    assert await store.add([]) == []
    assert await store.page(ListQuery()) == []


async def test_add_keeps_the_order_of_the_batch(store: TaskStore) -> None:
    records = [new(name=f"n{i}") for i in range(5)]
    added = await store.add(records)
    assert [r.id for r in added] == [r.id for r in records]


async def test_scheduled_records_are_added_scheduled(store: TaskStore) -> None:
    (added,) = await store.add([new(scheduled_at=NOW + 50)])
    got = await fetch(store, added.id)
    assert (got.status, got.scheduled_at) == (Status.SCHEDULED, NOW + 50)


# -- idempotency -------------------------------------------------------------------------

async def test_idempotency_key_returns_the_stored_record(store: TaskStore) -> None:
    (first,) = await store.add([new(owner="x", key="k")])
    again = new(owner="x", key="k")
    (answer,) = await store.add([again])
    assert answer.id == first.id != again.id
    assert answer.request_hash == "hk"
    assert len(await ids(store)) == 1


async def test_idempotency_is_per_owner(store: TaskStore) -> None:
    mine, theirs, anonymous = await store.add([new(owner="x", key="k"),
                                               new(owner="y", key="k"), new(key="k")])
    assert len({mine.id, theirs.id, anonymous.id}) == 3
    answers = await store.add([new(owner="y", key="k"), new(key="k"), new(owner="x", key="j")])
    assert [a.id for a in answers[:2]] == [theirs.id, anonymous.id]
    assert answers[2].id not in {mine.id, theirs.id, anonymous.id}
    assert len(await ids(store)) == 4


async def test_idempotency_key_twice_in_one_batch_is_one_record(store: TaskStore) -> None:
    added = await store.add([new(key="k"), new(key="k")])
    assert added[0].id == added[1].id
    assert len(await ids(store)) == 1


async def test_idempotency_key_is_forgotten_with_its_record(store: TaskStore) -> None:
    (first,) = await store.add([new(owner="x", key="k")])
    await store.request_cancel(first.id, NOW)
    assert await store.delete(first.id)
    (second,) = await store.add([new(owner="x", key="k")])
    assert second.id != first.id
    assert await ids(store) == [second.id]


# -- the queue bound ---------------------------------------------------------------------

async def test_queue_bound_counts_queued_and_scheduled(store: TaskStore) -> None:
    await store.add([new(), new(scheduled_at=NOW + 9)], max_pending=2)
    with pytest.raises(QueueBoundReached):
        await store.add([new()], max_pending=2)
    await store.add([new()], max_pending=None)  # no bound given, none applies
    assert (await store.count_by_status())[Status.QUEUED] == 2


async def test_queue_bound_is_all_or_nothing(store: TaskStore) -> None:
    await store.add([new()], max_pending=3)
    with pytest.raises(QueueBoundReached):
        await store.add([new(), new(), new()], max_pending=3)
    assert len(await ids(store)) == 1
    await store.add([new(), new()], max_pending=3)
    assert len(await ids(store)) == 3


async def test_running_and_finished_records_leave_room(store: TaskStore) -> None:
    await store.add([new(), new(), new()], max_pending=3)
    _running, done = await claim(store, limit=2)
    await succeed(store, done)
    await store.add([new(), new()], max_pending=3)
    assert (await store.count_by_status())[Status.QUEUED] == 3


async def test_repeating_a_stored_key_at_the_bound_answers_the_record(store: TaskStore) -> None:
    (first,) = await store.add([new(key="k")], max_pending=1)
    (again,) = await store.add([new(key="k")], max_pending=1)
    assert again.id == first.id


# -- listing and counting ----------------------------------------------------------------

async def test_delete_only_forgets_finished_records(store: TaskStore) -> None:
    keep, gone, queued = await store.add([new(), new(), new(priority=-1)])
    await store.request_cancel(gone.id, NOW)
    assert await store.delete(queued.id) is False
    assert await store.delete(gone.id) is True
    assert await store.delete(gone.id) is False
    assert await store.delete("nope") is False
    assert await store.get(gone.id) is None
    assert await ids(store) == [queued.id, keep.id]


async def test_page_is_newest_first_with_limit_and_before_seq(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(7)])
    newest_first = [r.id for r in reversed(records)]
    assert await ids(store) == newest_first
    assert await ids(store, limit=3) == newest_first[:3]
    assert await ids(store, limit=3, before_seq=records[4].seq) == newest_first[3:6]
    assert await ids(store, before_seq=records[0].seq) == []


async def test_paging_skips_deleted_records(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(5)])
    for gone in (records[3], records[1]):
        await store.request_cancel(gone.id, NOW)
        await store.delete(gone.id)
    assert await ids(store, limit=2) == [records[4].id, records[2].id]
    assert await ids(store, before_seq=records[2].seq) == [records[0].id]


async def test_page_filters_by_status_name_and_owner(store: TaskStore) -> None:
    a = await store.add([new("a", owner="x"), new("b", owner="x"), new("a", owner="y"),
                         new("a")])
    running = await claim(store, limit=3)
    await succeed(store, running[0])
    await succeed(store, running[2], status=Status.FAILED)
    assert await ids(store, name="a") == [a[3].id, a[2].id, a[0].id]
    assert await ids(store, owner="x") == [a[1].id, a[0].id]
    assert await ids(store, statuses=frozenset({Status.QUEUED})) == [a[3].id]
    assert await ids(store, statuses=frozenset({Status.RUNNING})) == [a[1].id]
    assert await ids(store, statuses=frozenset(TERMINAL)) == [a[2].id, a[0].id]
    assert await ids(store, name="a", owner="x") == [a[0].id]
    assert await ids(store, name="a", statuses=frozenset({Status.FAILED}), owner="y") == [
        a[2].id]
    assert await ids(store, name="zzz") == []
    assert await ids(store, statuses=frozenset()) == []


async def test_filtered_page_fills_its_limit(store: TaskStore) -> None:
    records = await store.add([new("a" if i % 3 == 0 else "b") for i in range(30)])
    wanted = [r.id for r in reversed(records) if r.name == "a"]
    assert await ids(store, name="a", limit=4) == wanted[:4]
    assert await ids(store, name="a", limit=4, before_seq=records[15].seq) == [
        r.id for r in reversed(records[:15]) if r.name == "a"][:4]


async def test_active_status_filters_page_with_before_seq_and_owner(store: TaskStore) -> None:
    records = await store.add([new(owner="x" if i % 2 else None) for i in range(12)])
    running = await claim(store, limit=8)
    for record in running[::2]:
        await succeed(store, record)
    current = {r.id: r for r in await store.page(ListQuery(limit=100))}
    active = frozenset({Status.QUEUED, Status.RUNNING})
    expected = [r.id for r in reversed(records) if current[r.id].status in active]
    assert await ids(store, statuses=active) == expected
    assert await ids(store, statuses=active, limit=3) == expected[:3]
    middle = records[6].seq
    assert await ids(store, statuses=active, before_seq=middle) == [
        r.id for r in reversed(records[:6]) if current[r.id].status in active]
    assert await ids(store, statuses=frozenset({Status.RUNNING}), owner="x") == [
        r.id for r in reversed(records)
        if current[r.id].status is Status.RUNNING and r.owner == "x"]


async def test_count_by_status(store: TaskStore) -> None:
    records = await store.add([new(owner="x"), new(owner="x"), new(owner="y"), new()])
    first, _second = await claim(store, limit=2)
    await succeed(store, first)
    counts = await store.count_by_status()
    assert set(counts) == set(Status)
    assert counts == {Status.QUEUED: 2, Status.SCHEDULED: 0, Status.WAITING: 0, Status.RUNNING: 1,
                      Status.SUCCEEDED: 1, Status.FAILED: 0, Status.CANCELLED: 0}
    mine = await store.count_by_status("x")
    assert set(mine) == set(Status)
    assert (mine[Status.QUEUED], mine[Status.RUNNING], mine[Status.SUCCEEDED]) == (0, 1, 1)
    assert sum((await store.count_by_status("nobody")).values()) == 0
    await store.delete(records[0].id)
    assert (await store.count_by_status())[Status.SUCCEEDED] == 0
    assert (await store.count_by_status("x"))[Status.SUCCEEDED] == 0


# -- eviction ----------------------------------------------------------------------------

async def test_evict_by_ttl_drops_only_terminal_records_finished_before(
    store: TaskStore,
) -> None:
    old, fresh, queued, running = await store.add([new(), new(), new(), new(priority=1)])
    await store.request_cancel(old.id, 100.0)
    await store.request_cancel(fresh.id, 300.0)
    await claim(store)
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 1
    assert await store.get(old.id) is None
    for kept in (fresh, queued, running):
        assert await store.get(kept.id) is not None
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 0


async def test_evict_by_count_drops_oldest_finished_first(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(6)])
    for at, index in enumerate((1, 3, 4, 0, 2), start=1):  # finishing out of seq order
        await store.request_cancel(records[index].id, float(at))
    assert await store.evict(finished_before=0.0, keep_at_most=2) == 3
    assert await ids(store) == [records[5].id, records[2].id, records[0].id]
    assert (await store.count_by_status())[Status.CANCELLED] == 2


async def test_evict_never_drops_unfinished_records(store: TaskStore) -> None:
    await store.add([new() for _ in range(5)])
    await claim(store, limit=2)
    assert await store.evict(finished_before=10**12, keep_at_most=0) == 0
    assert len(await ids(store)) == 5


async def test_evict_to_zero(store: TaskStore) -> None:
    records = await store.add([new(), new()])
    for record in records:
        await store.request_cancel(record.id, 1.0)
    assert await store.evict(finished_before=0.0, keep_at_most=0) == 2
    assert await ids(store) == []


async def test_many_records_and_evictions_keep_paging_right(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(3000)])
    for record in records[:2990]:
        await store.request_cancel(record.id, 1.0)
    assert await store.evict(finished_before=2.0, keep_at_most=10**6) == 2990
    assert await ids(store) == [r.id for r in reversed(records[2990:])]
    assert await ids(store, limit=3, before_seq=records[2995].seq) == [
        r.id for r in reversed(records[2992:2995])]


# -- the rest ----------------------------------------------------------------------------

async def test_cursor_key_is_stable(store: TaskStore) -> None:
    key = await store.cursor_key()
    assert len(key) >= 32
    assert await store.cursor_key() == key


async def test_pending_records_at_the_end(store: TaskStore) -> None:
    queued, scheduled, running = await store.add([new(), new(scheduled_at=NOW + 50),
                                                  new(priority=1)])
    await claim(store)
    await store.abandon_pending(NOW, TaskError("Interrupted", "the end"))
    statuses = {r.id: (await fetch(store, r.id)).status for r in (queued, scheduled, running)}
    if store.durable:  # they run on the next start
        assert statuses == {queued.id: Status.QUEUED, scheduled.id: Status.SCHEDULED,
                            running.id: Status.RUNNING}
    else:
        assert statuses == {queued.id: Status.FAILED, scheduled.id: Status.FAILED,
                            running.id: Status.RUNNING}
        assert (await fetch(store, queued.id)).error == TaskError("Interrupted", "the end")


@pytest.mark.parametrize("url", ["memory", "", "sqlite:/x.db",
                                 "sqlite://host/x.db", "sqlite:///", "sqlite:///:memory:",
                                 "sqlite:///x.db?nope=1", "sqlite:///x.db?busy_timeout=soon",
                                 "sqlite:///x.db?synchronous=off", "redis://",
                                 "redis://localhost/zero", "redis://localhost:port/0",
                                 "redis://localhost/0?nope=1",
                                 "redis://localhost/0?socket_timeout=0",
                                 "redis://localhost/0?max_connections=many",
                                 "redis://localhost/0?prefix="])
def test_unknown_store_urls_are_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="OFFLOAD_STORE") as failure:
        open_store(url)
    assert repr(url) in str(failure.value)


def test_unsupported_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"memory://.*sqlite:///"):
        open_store("postgres://db/tasks")


def test_store_flags() -> None:
    assert open_store("memory://").durable is False
    assert open_store("MEMORY://").shared is False
    sqlite = open_store("sqlite:///tasks.db")
    assert (sqlite.durable, sqlite.shared) == (True, True)
    redis = open_store("redis://localhost:6379/0")
    assert (redis.durable, redis.shared) == (True, True)

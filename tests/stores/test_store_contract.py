"""One contract, every store. Add a backend by adding its URL to ``STORE_URLS``.

Durable stores hand back copies, so the tests always ``save`` after changing a record and
compare records by their fields, never by identity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.models import TERMINAL, Status, TaskRecord
from service.stores import ListQuery, TaskStore, open_store

STORE_URLS = [
    pytest.param("memory://", id="memory"),
    # pytest.param("sqlite:///{tmp}/tasks.db", id="sqlite"),
]


@pytest.fixture(params=STORE_URLS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    opened = open_store(request.param.format(tmp=tmp_path))
    await opened.open()
    yield opened
    await opened.close()


def new(name: str = "t", owner: str | None = None, key: str | None = None,
        created_at: float = 100.0) -> TaskRecord:
    return TaskRecord(name=name, args=[1, {"x": [2**70]}], kwargs={"k": "v"}, owner=owner,
                      idempotency_key=key, request_hash=None if key is None else "h" + key,
                      created_at=created_at, max_attempts=2)


async def added(store: TaskStore, *records: TaskRecord) -> list[TaskRecord]:
    await store.add(list(records))
    return list(records)


async def finish(store: TaskStore, record: TaskRecord, at: float,
                 status: Status = Status.SUCCEEDED) -> None:
    record.move(Status.RUNNING)
    record.attempts = 1
    record.started_at = at - 1
    record.move(status)
    record.finished_at = at
    record.result = {"done": at}
    await store.save(record)


async def ids(store: TaskStore, **query: object) -> list[str]:
    return [r.id for r in await store.page(ListQuery(**query))]  # type: ignore[arg-type]


async def test_add_then_get_round_trips_every_field(store: TaskStore) -> None:
    (record,) = await added(store, new(owner="o", key="k"))
    got = await store.get(record.id)
    assert got is not None
    for field in ("id", "name", "args", "kwargs", "status", "priority", "owner",
                  "idempotency_key", "request_hash", "created_at", "max_attempts", "seq"):
        assert getattr(got, field) == getattr(record, field), field


async def test_get_unknown_is_none(store: TaskStore) -> None:
    assert await store.get("nope") is None


async def test_add_assigns_growing_seq(store: TaskStore) -> None:
    first = await added(store, new(), new())
    second = await added(store, new())
    seqs = [r.seq for r in first + second]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] > 0


async def test_add_nothing_is_fine(store: TaskStore) -> None:
    await store.add([])
    assert await store.page(ListQuery()) == []


async def test_save_persists_changes(store: TaskStore) -> None:
    (record,) = await added(store, new())
    await finish(store, record, at=200.0, status=Status.FAILED)
    got = await store.get(record.id)
    assert got is not None
    assert got.status is Status.FAILED
    assert got.finished_at == 200.0
    assert got.result == {"done": 200.0}
    assert got.attempts == 1


async def test_delete(store: TaskStore) -> None:
    keep, gone = await added(store, new(), new())
    assert await store.delete(gone.id) is True
    assert await store.delete(gone.id) is False
    assert await store.get(gone.id) is None
    assert await ids(store) == [keep.id]


async def test_page_is_newest_first_with_limit_and_before_seq(store: TaskStore) -> None:
    records = await added(store, *(new() for _ in range(7)))
    newest_first = [r.id for r in reversed(records)]
    assert await ids(store) == newest_first
    assert await ids(store, limit=3) == newest_first[:3]
    assert await ids(store, limit=3, before_seq=records[4].seq) == newest_first[3:6]
    assert await ids(store, before_seq=records[0].seq) == []


async def test_paging_skips_deleted_records(store: TaskStore) -> None:
    records = await added(store, *(new() for _ in range(5)))
    await store.delete(records[3].id)
    await store.delete(records[1].id)
    assert await ids(store, limit=2) == [records[4].id, records[2].id]
    assert await ids(store, before_seq=records[2].seq) == [records[0].id]


async def test_page_filters_by_status_name_and_owner(store: TaskStore) -> None:
    a = await added(store, new("a", owner="x"), new("b", owner="x"), new("a", owner="y"),
                    new("a"))
    await finish(store, a[0], at=1.0)
    await finish(store, a[2], at=2.0, status=Status.FAILED)
    assert await ids(store, name="a") == [a[3].id, a[2].id, a[0].id]
    assert await ids(store, owner="x") == [a[1].id, a[0].id]
    assert await ids(store, statuses=frozenset({Status.QUEUED})) == [a[3].id, a[1].id]
    assert await ids(store, statuses=frozenset(TERMINAL)) == [a[2].id, a[0].id]
    assert await ids(store, name="a", owner="x") == [a[0].id]
    assert await ids(store, name="a", statuses=frozenset({Status.FAILED}), owner="y") == [
        a[2].id]
    assert await ids(store, name="zzz") == []


async def test_filtered_page_fills_its_limit(store: TaskStore) -> None:
    records = await added(store, *(new("a" if i % 3 == 0 else "b") for i in range(30)))
    wanted = [r.id for r in reversed(records) if r.name == "a"]
    assert await ids(store, name="a", limit=4) == wanted[:4]


async def test_count_by_status(store: TaskStore) -> None:
    records = await added(store, new(owner="x"), new(owner="x"), new(owner="y"), new())
    await finish(store, records[0], at=1.0)
    records[1].move(Status.RUNNING)
    await store.save(records[1])
    counts = await store.count_by_status()
    assert set(counts) == set(Status)
    assert counts[Status.QUEUED] == 2
    assert counts[Status.RUNNING] == 1
    assert counts[Status.SUCCEEDED] == 1
    assert counts[Status.CANCELLED] == 0
    mine = await store.count_by_status("x")
    assert set(mine) == set(Status)
    assert (mine[Status.QUEUED], mine[Status.RUNNING], mine[Status.SUCCEEDED]) == (0, 1, 1)
    await store.delete(records[0].id)
    assert (await store.count_by_status())[Status.SUCCEEDED] == 0


async def test_find_idempotent_is_per_owner_and_forgets_deleted(store: TaskStore) -> None:
    mine, theirs, _ = await added(store, new(owner="x", key="k"), new(owner="y", key="k"),
                                  new(owner="x"))
    found = await store.find_idempotent("x", "k")
    assert found is not None
    assert found.id == mine.id
    assert found.request_hash == "hk"
    found = await store.find_idempotent("y", "k")
    assert found is not None
    assert found.id == theirs.id
    assert await store.find_idempotent(None, "k") is None
    assert await store.find_idempotent("x", "other") is None
    await finish(store, mine, at=1.0)
    await store.delete(mine.id)
    assert await store.find_idempotent("x", "k") is None


async def test_find_idempotent_without_owner(store: TaskStore) -> None:
    (record,) = await added(store, new(key="k"))
    found = await store.find_idempotent(None, "k")
    assert found is not None
    assert found.id == record.id


async def test_evict_by_ttl_drops_only_terminal_records_finished_before(
    store: TaskStore,
) -> None:
    old, fresh, active, running = await added(store, new(), new(), new(), new())
    await finish(store, old, at=100.0)
    await finish(store, fresh, at=300.0, status=Status.CANCELLED)
    running.move(Status.RUNNING)
    await store.save(running)
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 1
    assert await store.get(old.id) is None
    for kept in (fresh, active, running):
        assert await store.get(kept.id) is not None
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 0


async def test_evict_by_count_drops_oldest_finished_first(store: TaskStore) -> None:
    records = await added(store, *(new() for _ in range(6)))
    for at, record in enumerate(records[:5], start=1):
        await finish(store, record, at=float(at))
    assert await store.evict(finished_before=0.0, keep_at_most=2) == 3
    remaining = await ids(store)
    assert remaining == [records[5].id, records[4].id, records[3].id]  # the queued one stays
    assert (await store.count_by_status())[Status.SUCCEEDED] == 2


async def test_evict_never_drops_unfinished_records(store: TaskStore) -> None:
    await added(store, *(new() for _ in range(5)))
    assert await store.evict(finished_before=10**12, keep_at_most=0) == 0
    assert len(await ids(store)) == 5


async def test_evict_to_zero(store: TaskStore) -> None:
    records = await added(store, new(), new())
    for record in records:
        await finish(store, record, at=1.0)
    assert await store.evict(finished_before=0.0, keep_at_most=0) == 2
    assert await ids(store) == []


async def test_unfinished_lists_queued_scheduled_and_running(store: TaskStore) -> None:
    queued, scheduled, running, done = await added(store, new(), new(), new(), new())
    scheduled.status = Status.SCHEDULED
    scheduled.scheduled_at = 500.0
    await store.save(scheduled)
    running.move(Status.RUNNING)
    await store.save(running)
    await finish(store, done, at=1.0)
    unfinished = {r.id: r.status for r in await store.unfinished()}
    assert unfinished == {queued.id: Status.QUEUED, scheduled.id: Status.SCHEDULED,
                          running.id: Status.RUNNING}


async def test_many_records_and_deletes_keep_paging_right(store: TaskStore) -> None:
    records = await added(store, *(new() for _ in range(3000)))
    for record in records[:2990]:
        await finish(store, record, at=1.0)
    assert await store.evict(finished_before=2.0, keep_at_most=10**6) == 2990
    assert await ids(store) == [r.id for r in reversed(records[2990:])]
    assert await ids(store, limit=3, before_seq=records[2995].seq) == [
        r.id for r in reversed(records[2992:2995])]


@pytest.mark.parametrize("url", ["redis://localhost", "memory", "", "sqlite:/x.db"])
def test_unknown_store_urls_are_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="OFFLOAD_STORE"):
        open_store(url)


def test_memory_store_is_not_durable() -> None:
    assert open_store("memory://").durable is False
    assert open_store("MEMORY://").durable is False


async def test_active_status_filters_page_with_before_seq_and_owner(store: TaskStore) -> None:
    records = await added(store, *(new(owner="x" if i % 2 else None) for i in range(12)))
    for i, record in enumerate(records):
        if i % 3 == 0:
            await finish(store, record, at=float(i))
        elif i % 3 == 1:
            record.move(Status.RUNNING)
            await store.save(record)
    active = frozenset({Status.QUEUED, Status.RUNNING})
    expected = [r.id for r in reversed(records) if r.status in active]
    assert await ids(store, statuses=active) == expected
    assert await ids(store, statuses=active, limit=3) == expected[:3]
    middle = records[6].seq
    assert await ids(store, statuses=active, before_seq=middle) == [
        r.id for r in reversed(records[:6]) if r.status in active]
    assert await ids(store, statuses=frozenset({Status.RUNNING}), owner="x") == [
        r.id for r in reversed(records) if r.status is Status.RUNNING and r.owner == "x"]
    counts = await store.count_by_status("x")
    assert counts[Status.RUNNING] == sum(
        1 for r in records if r.owner == "x" and r.status is Status.RUNNING)

"""What only the SQLite store promises, part one: one file shared by store objects, a
write returned is a write committed, group commit, a busy database waited out.

Two store objects on one file stand for two processes (each has its own connections and
writer thread); test_sqlite_files.py also runs two real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.models import Progress, Status
from service.stores import SQLiteStore, StoreUnavailable
from service.stores.base import Outcome, QueueBoundReached

from .sqlite_helpers import (
    NOW,
    assert_counts_match,
    locked,
    new,
    raw,
    request,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(db: str) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db)
    await opened.open()
    yield opened
    await opened.close()


# -- one file, two store objects ---------------------------------------------------------

async def test_concurrent_claims_from_two_stores_never_overlap(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    added = await first.add([new() for _ in range(300)])
    claimed: list[str] = []

    async def drain(store: SQLiteStore, worker: str) -> None:
        while records := await store.claim(request(worker, limit=3)):
            claimed.extend(r.id for r in records)

    await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(pair * 4)))
    assert sorted(claimed) == sorted(r.id for r in added)
    assert first.commits > 0
    assert second.commits > 0


async def test_idempotency_holds_across_stores(pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    answers = await asyncio.gather(*(s.add([new(key="k")]) for s in pair * 5))
    assert len({a[0].id for a in answers}) == 1
    (again,) = await second.add([new(key="k")])
    assert again.id == answers[0][0].id
    assert sum((await first.count_by_status()).values()) == 1


async def test_limits_and_the_queue_bound_hold_across_stores(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    await first.add([new("a"), new("a"), new("b")], max_pending=4)
    with pytest.raises(QueueBoundReached):
        await second.add([new(), new()], max_pending=4)
    (running,) = await first.claim(request(limits={"a": 1}))
    assert running.name == "a"
    assert [r.name for r in await second.claim(request(limit=5, limits={"a": 1}))] == ["b"]


async def test_a_cancel_reaches_the_store_that_runs_the_task(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    await first.add([new()])
    (running,) = await first.claim(request())
    answer = await second.request_cancel(running.id, NOW)
    assert answer is not None
    assert answer.cancel_requested
    assert await first.renew("w", [running.id], NOW, 30.0) == {running.id: True}
    settled = await first.settle(running, "w", Outcome(Status.SCHEDULED, NOW, scheduled_at=NOW))
    assert settled is not None
    assert settled.status is Status.CANCELLED


async def test_changes_since_reports_the_other_stores_changes(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    cursor, nothing = await second.changes_since(None)
    assert nothing == []
    one, two, gone = await first.add([new(), new(), new()])
    (running,) = await first.claim(request())
    cursor, changes = await second.changes_since(cursor)
    assert {r.id: (k, r.status) for k, r in changes} == {  # adds too: new work for runners
        one.id: ("status", Status.RUNNING), two.id: ("status", Status.QUEUED),
        gone.id: ("status", Status.QUEUED)}

    await first.save_progress(running, "w", Progress(1, 3))
    await first.flush()
    cursor, changes = await second.changes_since(cursor)
    assert [(k, r.id, r.progress) for k, r in changes] == [("progress", one.id,
                                                            Progress(1, 3))]

    await first.request_cancel(one.id, NOW)
    await first.save_progress(running, "w", Progress(2, 3))
    await first.flush()
    await first.request_cancel(gone.id, NOW)
    await first.delete(gone.id)
    cursor, changes = await second.changes_since(cursor)
    assert [(k, r.id, r.cancel_requested, r.progress) for k, r in changes] == [
        ("status", one.id, True, Progress(1, 3)),  # each change, as of that change
        ("progress", one.id, True, Progress(2, 3))]

    (theirs,) = await second.claim(request("w2"))
    assert theirs.id == two.id
    cursor, changes = await second.changes_since(cursor)
    assert changes == []
    _, changes = await first.changes_since(0)
    assert [(k, r.id) for k, r in changes] == [("status", two.id)]


async def test_a_claim_reports_first_the_changes_its_reader_has_not_yet_read(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    # a record the other store changed last (here: added; a release from dependencies is
    # the same), claimed here before this store's feed reader reads that change: this
    # store's listener gets the change first, then the claim, and the reader skips it
    first, second = pair
    seen: list[tuple[str, str, Status]] = []
    second.on_change = lambda kind, record: seen.append((kind, record.id, record.status))
    cursor, _ = await second.changes_since(None)
    one, two = await first.add([new(), new()])
    (claimed,) = await second.claim(request("w2"))
    assert claimed.id == one.id
    assert seen == [("status", one.id, Status.QUEUED), ("status", one.id, Status.RUNNING)]
    _, changes = await second.changes_since(cursor)
    assert [(k, r.id, r.status) for k, r in changes] == [("status", two.id, Status.QUEUED)]


async def test_a_claim_reports_first_the_unread_changes_of_records_it_made_due(
        pair: tuple[SQLiteStore, SQLiteStore]) -> None:
    first, second = pair
    seen: list[tuple[str, Status]] = []
    second.on_change = lambda kind, record: seen.append((kind, record.status))
    cursor, _ = await second.changes_since(None)
    due = dataclasses.replace(new(), status=Status.SCHEDULED, scheduled_at=NOW - 1)
    await first.add([due])  # due: the next claim makes it queued
    assert await second.claim(request("w2", excluded=frozenset({"t"}))) == []
    assert seen == [("status", Status.SCHEDULED), ("status", Status.QUEUED)]
    _, changes = await second.changes_since(cursor)
    assert changes == []


async def test_every_store_signs_cursors_with_one_key(
        pair: tuple[SQLiteStore, SQLiteStore], db: str) -> None:
    first, second = pair
    key = await first.cursor_key()
    assert len(key) == 32
    assert await second.cursor_key() == key
    third = SQLiteStore(db)
    await third.open()
    assert await third.cursor_key() == key
    await third.close()


# -- durability --------------------------------------------------------------------------

async def test_records_survive_reopening(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    queued, running = await store.add([new(), new()])
    await store.claim(request(limit=1))
    await store.close()
    await store.close()  # twice is fine
    again = SQLiteStore(db)
    await again.open()
    assert (await again.get(queued.id)).status is Status.RUNNING  # type: ignore[union-attr]
    assert (await again.get(running.id)).status is Status.QUEUED  # type: ignore[union-attr]
    await again.close()
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental


async def test_an_add_returns_once_it_is_committed(store: SQLiteStore, db: str) -> None:
    added = await asyncio.gather(*(store.add([new()]) for _ in range(20)))
    with raw(db) as conn:  # another connection, as another process would look
        for (record,) in added:
            assert conn.execute("SELECT status FROM tasks WHERE id = ?",
                                (record.id,)).fetchone() == ("queued",)


async def test_concurrent_writes_share_commits(store: SQLiteStore) -> None:
    before = store.commits
    added = await asyncio.gather(*(store.add([new()]) for _ in range(500)))
    assert len({a[0].id for a in added}) == 500
    assert store.commits - before < 50
    assert sum((await store.count_by_status()).values()) == 500


async def test_one_failing_write_leaves_the_others_of_its_batch(store: SQLiteStore) -> None:
    await store.add([new()], max_pending=1)
    results = await asyncio.gather(store.add([new()], max_pending=1), store.add([new()]),
                                   store.add([new()]), return_exceptions=True)
    assert isinstance(results[0], QueueBoundReached)
    assert all(isinstance(r, list) for r in results[1:])
    assert (await store.count_by_status())[Status.QUEUED] == 3


async def test_an_idle_claim_takes_no_transaction(store: SQLiteStore) -> None:
    before = store.commits
    for _ in range(5):
        assert await store.claim(request()) == []
        assert await store.reclaim("w", NOW, 30.0) == []
    await store.flush()
    assert store.commits == before


async def test_counts_follow_every_change(store: SQLiteStore, db: str) -> None:
    records = await store.add([new(owner=f"o{i % 3}" if i % 4 else None) for i in range(40)])
    running = await store.claim(request(limit=20))
    for record in running[:10]:
        await store.settle(record, "w", Outcome(Status.SUCCEEDED, NOW))
    for record in running[10:15]:
        await store.settle(record, "w", Outcome(Status.SCHEDULED, NOW, scheduled_at=NOW + 1))
    for record in records[30:]:
        await store.request_cancel(record.id, NOW)
    assert await store.evict(finished_before=0.0, keep_at_most=3) == 17
    with raw(db) as conn:
        assert_counts_match(conn)
    counts = await store.count_by_status()
    assert sum(counts.values()) == 40 - 17
    assert counts[Status.SCHEDULED] == 5


async def test_a_claim_queued_after_an_add_sees_it(store: SQLiteStore) -> None:
    for _ in range(20):  # in one batch with the add or in the next, never before it
        (added,), claimed = await asyncio.gather(store.add([new()]), store.claim(request()))
        assert [r.id for r in claimed] == [added.id]


async def test_a_claim_its_caller_gave_up_goes_back(store: SQLiteStore) -> None:
    (added,) = await store.add([new()])
    claiming = asyncio.ensure_future(store.claim(request()))
    await asyncio.sleep(0)  # the claim is queued to the writer
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    await store.flush()  # after every write queued before it, the hand-back included
    await store.flush()
    got = await store.get(added.id)
    assert got is not None
    assert (got.status, got.attempts, got.lease_owner) == (Status.QUEUED, 0, None)
    (claimed,) = await store.claim(request())
    assert claimed.attempts == 1


# -- other processes holding the lock ----------------------------------------------------

async def test_a_write_waits_out_a_busy_database(db: str) -> None:
    store = SQLiteStore(db, busy_timeout=20)
    await store.open()
    with locked(db) as release:
        adding = asyncio.ensure_future(store.add([new()]))
        await wait_for(lambda: store.busy_retries >= 2)  # past SQLite's own busy timeout
        release.set()
        (added,) = await adding
    assert await store.get(added.id) is not None
    await store.close()


async def test_a_database_locked_too_long_is_unavailable_not_locked(db: str) -> None:
    store = SQLiteStore(db, busy_timeout=10)
    await store.open()
    with locked(db), pytest.raises(StoreUnavailable, match=db) as failure:
        await store.add([new()])
    assert "database is locked" not in str(failure.value)
    (added,) = await store.add([new()])  # and writes work again once it is free
    assert added.seq > 0
    await store.close()



"""The change feed of the shared stores (SQLite, Redis) carries every change, in order, with
the record as of that change: a reader in another process sees each progress update and
each status between two of its reads, not only the latest (issue 9). Two store objects
on one real file or one real redis-server, as two processes would have."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.models import Progress, Status, TaskError
from service.stores import SQLiteStore, TaskStore, open_store
from service.stores.base import Outcome
from tests.redis_server import RedisServer, fresh_prefix

from .contract import LEASE, NOW, claim, fetch, flush, new

ERROR = TaskError("ValueError", "try again")


@pytest.fixture(params=["sqlite", "redis"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path
               ) -> AsyncIterator[tuple[TaskStore, TaskStore]]:
    """A writer and a reader: two store objects on one file or one server and prefix."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/tasks.db"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix={fresh_prefix()}"
    writer, reader = open_store(url), open_store(url)
    await writer.open()
    await reader.open()
    yield writer, reader
    await writer.close()
    await reader.close()


async def test_a_reader_sees_each_change_in_order_with_its_own_values(
        pair: tuple[TaskStore, TaskStore]) -> None:
    writer, reader = pair
    cursor, _ = await reader.changes_since(None)
    (added,) = await writer.add([new()])
    (first,) = await claim(writer)
    for n in range(1, 6):
        assert await writer.save_progress(first, "w", Progress(n, 5, f"step {n}"))
    retry = Outcome(Status.SCHEDULED, NOW + 1, error=ERROR, scheduled_at=NOW + 2)
    assert await writer.settle(first, "w", retry) is not None
    (second,) = await claim(writer, now=NOW + 3)
    assert await writer.save_progress(second, "w", Progress(6, 6))
    await flush(writer)
    assert await writer.settle(second, "w", Outcome(Status.SUCCEEDED, NOW + 4,
                                                    result={"big": "x" * 1000})) is not None

    _, changes = await reader.changes_since(cursor)  # one read: everything since the cursor
    assert {r.id for _, r in changes} == {added.id}
    seen = [(kind, r.status, r.attempts, r.progress and r.progress.current, r.error,
             r.finished_at, r.result) for kind, r in changes]
    statuses = [s for kind, s, *_ in seen if kind == "status"]
    assert statuses[:3] == [Status.QUEUED, Status.RUNNING, Status.SCHEDULED]
    assert statuses[-2:] == [Status.RUNNING, Status.SUCCEEDED]  # promoted to queued between
    progress = [(a, p) for kind, _, a, p, *_ in seen if kind == "progress"]
    assert progress == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (2, 6)]
    assert [(k, s) for k, s, *_ in seen[1:7]] == [("status", Status.RUNNING)] + [
        ("progress", Status.RUNNING)] * 5  # the updates of attempt 1 come before its retry
    retried = next(r for k, r in changes if r.status is Status.SCHEDULED)
    assert (retried.attempts, retried.error, retried.scheduled_at) == (1, ERROR, NOW + 2)
    assert (retried.progress, retried.lease_owner) == (Progress(5, 5, "step 5"), None)
    started = [r for k, r in changes if k == "status" and r.status is Status.RUNNING]
    assert [(r.attempts, r.started_at, r.lease_owner, r.progress) for r in started] == [
        (1, NOW, "w", None), (2, NOW + 3, "w", None)]
    for _, record in changes[:-1]:  # none before the end has the result or an end time
        assert (record.result, record.finished_at, record.terminal) == (None, None, False)
        assert (record.args, record.name) == (added.args, added.name)
    assert changes[-1][1] == await fetch(reader, added.id)  # the last is the record now
    assert changes[-1][1].result == {"big": "x" * 1000}


async def test_a_cancel_request_is_seen_in_its_place(
        pair: tuple[TaskStore, TaskStore]) -> None:
    writer, reader = pair
    cursor, _ = await reader.changes_since(None)
    await writer.add([new()])
    (running,) = await claim(writer)
    assert await writer.save_progress(running, "w", Progress(1))
    await flush(writer)
    assert await writer.request_cancel(running.id, NOW) is not None
    assert await writer.save_progress(running, "w", Progress(2))  # the runner has not heard
    await flush(writer)
    assert await writer.renew("w", [running.id], NOW, LEASE) == {running.id: True}
    _, changes = await reader.changes_since(cursor)
    assert [(k, r.status, r.cancel_requested, r.progress and r.progress.current)
            for k, r in changes] == [
        ("status", Status.QUEUED, False, None), ("status", Status.RUNNING, False, None),
        ("progress", Status.RUNNING, False, 1), ("status", Status.RUNNING, True, 1),
        ("progress", Status.RUNNING, True, 2)]


async def test_a_file_of_the_previous_version_opens_and_its_feed_reads(tmp_path: Path) -> None:
    """A file whose change feed has no ``state`` column (made by the previous version,
    its entries written without one) opens, gains the column, and reads on."""
    path = tmp_path / "old.db"
    made = SQLiteStore(str(path))
    await made.open()
    (old,) = await made.add([new()])
    await made.close()
    conn = sqlite3.connect(path)
    with conn:  # the previous version's table: as it made it, with its entries
        conn.execute("CREATE TABLE old_changes (n INTEGER PRIMARY KEY, task_id TEXT NOT NULL,"
                     " kind TEXT NOT NULL, writer TEXT NOT NULL)")
        conn.execute("INSERT INTO old_changes SELECT n, task_id, kind, writer FROM changes")
        conn.execute("DROP TABLE changes")
        conn.execute("ALTER TABLE old_changes RENAME TO changes")
    conn.close()

    writer, reader = SQLiteStore(str(path)), SQLiteStore(str(path))
    await writer.open()
    await reader.open()
    try:
        _, changes = await reader.changes_since(0)  # the old entry: the record as it is now
        assert [(k, r.id, r.status) for k, r in changes] == [("status", old.id, Status.QUEUED)]
        cursor, _ = await reader.changes_since(None)
        (running,) = await claim(writer)
        assert await writer.save_progress(running, "w", Progress(1))
        assert await writer.save_progress(running, "w", Progress(2))
        await flush(writer)
        _, changes = await reader.changes_since(cursor)
        assert [(k, r.status, r.progress and r.progress.current) for k, r in changes] == [
            ("status", Status.RUNNING, None), ("progress", Status.RUNNING, 1),
            ("progress", Status.RUNNING, 2)]
    finally:
        await writer.close()
        await reader.close()

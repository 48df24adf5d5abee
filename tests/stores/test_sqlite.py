"""What only the SQLite store promises: one file shared by store objects and processes,
durability, group commit, clear errors for bad files, bounded growth, indexed queries.

Two store objects on one file stand for two processes (each has its own connections and
writer thread); one test also runs two real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.models import Progress, Status, TaskRecord
from service.stores import SQLiteStore, StoreOpenError, StoreUnavailable, open_store
from service.stores import sqlite_ops as ops
from service.stores import sqlite_reads as reads
from service.stores.base import ClaimRequest, ListQuery, Outcome, QueueBoundReached
from service.stores.sqlite_writer import Tx

NOW = 1000.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


@pytest.fixture
async def pair(db: str) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    first, second = SQLiteStore(db), SQLiteStore(db)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def store(db: str) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db)
    await opened.open()
    yield opened
    await opened.close()


def new(name: str = "t", key: str | None = None, size: int = 0) -> TaskRecord:
    return TaskRecord(name=name, args=["x" * size], idempotency_key=key, created_at=NOW)


def request(worker: str = "w", limit: int = 1, **options: object) -> ClaimRequest:
    return ClaimRequest(worker, NOW, 30.0, limit, **options)  # type: ignore[arg-type]


def raw(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


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
    assert [(k, r.id, r.status) for k, r in changes] == [("status", one.id, Status.RUNNING)]

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
    assert [(k, r.id) for k, r in changes] == [("status", one.id)]  # status outranks progress
    assert changes[0][1].cancel_requested
    assert changes[0][1].progress == Progress(2, 3)

    (theirs,) = await second.claim(request("w2"))
    assert theirs.id == two.id
    cursor, changes = await second.changes_since(cursor)
    assert changes == []
    _, changes = await first.changes_since(0)
    assert [(k, r.id) for k, r in changes] == [("status", two.id)]


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

@contextmanager
def locked(path: str) -> Iterator[threading.Event]:
    """Another connection holds the write lock until the event is set."""
    release, taken = threading.Event(), threading.Event()

    def hold() -> None:
        conn = raw(path)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait()
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        yield release
    finally:
        release.set()
        thread.join()


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


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


# -- bad files ---------------------------------------------------------------------------

async def open_fails(path: str, **options: object) -> str:
    store = SQLiteStore(path, **options)  # type: ignore[arg-type]
    with pytest.raises(StoreOpenError) as failure:
        await store.open()
    message = str(failure.value)
    assert path in message
    return message


def scribble(path: str, at: int, data: bytes) -> None:
    with open(path, "r+b" if os.path.exists(path) else "wb") as file:
        file.seek(at)
        file.write(data)


def size(path: str) -> int:
    return sum(os.path.getsize(path + end) for end in ("", "-wal") if os.path.exists(path + end))


async def test_a_file_that_is_not_a_database(db: str) -> None:
    scribble(db, 0, os.urandom(8192))
    assert "not an SQLite database" in await open_fails(db)


async def test_a_corrupt_database(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.add([new(size=300) for _ in range(400)])
    await store.close()
    scribble(db, 4096 * 12, b"\xa5" * 4096 * 8)  # damage pages in the middle, not the header
    assert "corrupt" in await open_fails(db)


async def test_a_missing_directory(tmp_path: Path) -> None:
    assert "does not exist" in await open_fails(str(tmp_path / "nowhere" / "tasks.db"))
    (tmp_path / "file").write_text("")
    assert "does not exist" in await open_fails(str(tmp_path / "file" / "tasks.db"))


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """No writing there, even for root (an immutable file or directory then)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


async def test_a_directory_that_cannot_be_written(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with unwritable(folder):
        assert "cannot be written" in await open_fails(str(folder / "tasks.db"))


async def test_a_read_only_file(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    with unwritable(Path(db)):
        assert "read-only" in await open_fails(db)


async def test_a_full_disk_at_start(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.add([new(size=500) for _ in range(50)])
    await store.close()
    with raw(db) as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
    assert "disk is full" in await open_fails(db, max_page_count=pages)


async def test_a_full_disk_while_running_keeps_what_was_accepted(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    kept = await store.add([new(size=100) for _ in range(20)])
    await store.close()
    with raw(db) as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
    store = SQLiteStore(db, max_page_count=pages + 40)
    await store.open()

    async def fill() -> None:
        for _ in range(100):
            kept.extend(await store.add([new(size=4000)]))

    with pytest.raises(StoreUnavailable, match="disk is full"):
        await fill()
    for record in kept:
        assert await store.get(record.id) is not None
    (running,) = await store.claim(request())  # what needs no new page still works
    await store.close()
    again = SQLiteStore(db)
    await again.open()
    assert sum((await again.count_by_status()).values()) == len(kept)
    assert (await again.get(running.id)).status is Status.RUNNING  # type: ignore[union-attr]
    await again.close()
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_open_store_maps_sqlalchemy_urls(tmp_path: Path) -> None:
    relative = open_store("sqlite:///data/tasks.db")
    absolute = open_store(f"sqlite:///{tmp_path}/tasks.db?synchronous=full&busy_timeout=99")
    assert isinstance(relative, SQLiteStore)
    assert isinstance(absolute, SQLiteStore)
    assert relative.path == "data/tasks.db"
    assert absolute.path == f"{tmp_path}/tasks.db"
    assert (absolute.options.synchronous, absolute.options.busy_timeout) == ("FULL", 99)
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore("x.db", synchronous="OFF")  # type: ignore[arg-type]


# -- growth and indexes ------------------------------------------------------------------

async def test_the_file_stops_growing_under_endless_load(db: str) -> None:
    store = SQLiteStore(db)
    await store.open()
    sizes = []
    for _ in range(40):
        await store.add([new(size=2000) for _ in range(100)])
        for record in await store.claim(request(limit=100)):
            await store.save_progress(record, "w", Progress(1))
            await store.settle(record, "w", Outcome(Status.SUCCEEDED, NOW, result="y" * 2000))
        await store.evict(finished_before=0.0, keep_at_most=200)
        sizes.append(size(db))
    await store.close()
    assert max(sizes[20:]) <= max(sizes[:20]) * 1.1, sizes


async def test_free_pages_go_back_to_the_file_system(store: SQLiteStore, db: str) -> None:
    records = await store.add([new(size=3000) for _ in range(1000)])
    await asyncio.gather(*(store.request_cancel(r.id, 1.0) for r in records))
    with raw(db) as conn:
        (before,) = conn.execute("PRAGMA page_count").fetchone()
        assert await store.evict(finished_before=2.0, keep_at_most=0) == 1000
        (after,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    assert after < before - 500
    assert free < before // 2


def plans(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    return {sql: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            for sql in statements if sql.split()[0].upper() in ("SELECT", "UPDATE", "DELETE",
                                                                "WITH")}


async def test_queries_read_indexes_not_the_table(store: SQLiteStore, db: str) -> None:
    await store.add([new("common") for _ in range(300)] + [new("rare")])
    await store.claim(request(limit=2))
    seen: list[str] = []
    with raw(db) as conn:
        conn.set_trace_callback(seen.append)
        for query in (ListQuery(statuses=frozenset({Status.FAILED})), ListQuery(name="rare"),
                      ListQuery(name="rare", owner="o", before_seq=9),
                      ListQuery(owner="o", statuses=frozenset({Status.RUNNING})),
                      ListQuery(statuses=frozenset({Status.QUEUED, Status.RUNNING}),
                                before_seq=50)):
            reads.page(conn, query)
        reads.count_by_status(conn, None)
        reads.next_due(conn)
        reads.nothing_to_evict(conn, NOW, 10)
        reads.no_expired_lease(conn, NOW)
        conn.set_trace_callback(None)
        for sql, plan in plans(conn, seen).items():
            assert not any(line.startswith("SCAN tasks") for line in plan), (sql, plan)
            assert any(line.startswith("SEARCH") for line in plan), (sql, plan)


async def test_a_claim_behind_blocked_names_seeks_by_name(store: SQLiteStore, db: str) -> None:
    await store.add([new("blocked") for _ in range(100)] + [new("free")])
    seen: list[str] = []
    with raw(db) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_trace_callback(seen.append)
        (record,) = ops.claim(Tx(conn, "test"), request(excluded={"blocked"}))
        conn.set_trace_callback(None)
        conn.execute("ROLLBACK")
        assert record.name == "free"
        named = [plan for sql, plan in plans(conn, seen).items()
                 if "tasks_ready_by_name" in sql]
        assert named
        for plan in named:
            assert not any(line.startswith("SCAN tasks") for line in plan), plan


# -- real processes ----------------------------------------------------------------------

async def test_two_processes_hammering_one_file(db: str, tmp_path: Path) -> None:
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.stores.hammer", db, str(out), "3", f"p{i}",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i, out in enumerate(outs)]
    logs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 120)
    for process, (stdout, stderr) in zip(processes, logs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert b"locked" not in stdout + stderr
    reports = [json.loads(text) for text in map(Path.read_text, outs)]
    for report in reports:
        assert report["errors"] == []
    added = [i for report in reports for i in report["added"]]
    claimed = [i for report in reports for i in report["claimed"]]
    assert len(claimed) == len(set(claimed)), "a record was claimed twice"
    assert len(added) == len(set(added))

    store = SQLiteStore(db)
    await store.open()
    while records := await store.claim(request("drain", limit=500)):
        await asyncio.gather(*(store.settle(record, "drain", Outcome(Status.SUCCEEDED, NOW))
                               for record in records))
    await store.close()
    with raw(db) as conn:
        rows = {task_id: (status, attempts) for task_id, status, attempts in conn.execute(
            "SELECT id, status, attempts FROM tasks")}
        assert set(rows) == set(added)
        for task_id in added:  # ran exactly once, or was cancelled before it ran
            assert rows[task_id] in {("succeeded", 1), ("cancelled", 0)}, rows[task_id]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

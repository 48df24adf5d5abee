"""What only the SQLite store promises, part two: clear errors for bad files and a full
disk, bounded growth, queries that read indexes, and two real processes on one file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.models import Progress, Status
from service.stores import SQLiteStore, StoreUnavailable, open_store
from service.stores import sqlite_ops as ops
from service.stores import sqlite_reads as reads
from service.stores.base import ListQuery, Outcome
from service.stores.sqlite_writer import Tx

from .sqlite_helpers import (
    NOW,
    assert_counts_match,
    new,
    open_fails,
    plans,
    raw,
    request,
    scribble,
    size,
    unwritable,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(db: str) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db)
    await opened.open()
    yield opened
    await opened.close()


# -- bad files ---------------------------------------------------------------------------

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
        assert_counts_match(conn)

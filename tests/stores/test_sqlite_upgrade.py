"""An SQLite file of schema version 1 (before ``waiting`` and ``depends_on``) is upgraded
in place when a store opens it: its records, counts and numbering are kept."""

from __future__ import annotations

import sqlite3

from service.models import Status
from service.stores import SQLiteStore

from .contract import claim, fetch, new, succeed

# The tasks table as version 1 made it (its status check without 'waiting').
V1_TASKS = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    args TEXT NOT NULL, kwargs TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'scheduled', 'running', 'succeeded',
                                           'failed', 'cancelled')),
    priority INTEGER NOT NULL, progress TEXT, result TEXT, error TEXT,
    attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL, timeout REAL, created_at REAL NOT NULL,
    scheduled_at REAL, started_at REAL, finished_at REAL, owner TEXT, idempotency_key TEXT,
    request_hash TEXT, lease_owner TEXT, lease_expires REAL)
"""


def make_v1(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")
    conn.execute("INSERT INTO meta VALUES ('schema', 1)")
    conn.execute(V1_TASKS)
    conn.execute("CREATE TABLE counts (scope TEXT NOT NULL, status TEXT NOT NULL, "
                 "n INTEGER NOT NULL, PRIMARY KEY (scope, status)) WITHOUT ROWID")
    for seq, status in ((1, "succeeded"), (7, "queued")):
        conn.execute("INSERT INTO tasks VALUES (?, ?, 'add', '[2, 3]', '{}', ?, 0, NULL, "
                     "NULL, NULL, 0, 1, 0, NULL, 100.0, NULL, NULL, NULL, NULL, NULL, NULL, "
                     "NULL, NULL)", (seq, f"task-{seq}-{'x' * 17}", status))
        conn.execute("INSERT INTO counts VALUES ('', ?, 1)", (status,))
    conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'tasks'")  # 8, 9 evicted
    conn.commit()
    conn.close()


async def test_a_version_1_file_is_upgraded_and_keeps_its_records(db: str) -> None:
    make_v1(db)
    store = SQLiteStore(db)
    await store.open()
    try:
        kept = await fetch(store, f"task-7-{'x' * 17}")
        assert (kept.status, kept.args, kept.depends_on, kept.receives) == (
            Status.QUEUED, [2, 3], [], None)
        counts = await store.count_by_status()
        assert (counts[Status.QUEUED], counts[Status.SUCCEEDED]) == (1, 1)
        first, after = new("first"), new("then")
        after.status, after.depends_on = Status.WAITING, [first.id]
        _, waiting = await store.add([first, after])
        assert first.seq == 10  # numbering goes on after the last seq handed out
        assert waiting.status is Status.WAITING
        for record in await claim(store, limit=5):  # the old queued one, and first
            await succeed(store, record)
        assert (await fetch(store, after.id)).status is Status.QUEUED
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (2,)
    finally:
        conn.close()

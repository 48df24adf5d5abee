"""Helpers of the SQLite store tests."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.models import TaskRecord
from service.stores import SQLiteStore, StoreOpenError
from service.stores.base import ClaimRequest

NOW = 1000.0


def new(name: str = "t", key: str | None = None, size: int = 0, owner: str | None = None
        ) -> TaskRecord:
    return TaskRecord(name=name, args=["x" * size], idempotency_key=key, created_at=NOW,
                      owner=owner)


def request(worker: str = "w", limit: int = 1, **options: object) -> ClaimRequest:
    return ClaimRequest(worker, NOW, 30.0, limit, **options)  # type: ignore[arg-type]


def raw(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


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


def assert_counts_match(conn: sqlite3.Connection) -> None:
    """The counts the triggers keep are the counts of the rows, for all and per owner."""
    kept = {(scope, status): n for scope, status, n in conn.execute(
        "SELECT scope, status, n FROM counts") if n}
    real = {("", status): n for status, n in conn.execute(
        "SELECT status, count(*) FROM tasks GROUP BY status")}
    real.update((("o:" + owner, status), n) for owner, status, n in conn.execute(
        "SELECT owner, status, count(*) FROM tasks WHERE owner IS NOT NULL "
        "GROUP BY owner, status"))
    assert kept == real


def plans(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    return {sql: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            for sql in statements if sql.split()[0].upper() in ("SELECT", "UPDATE", "DELETE",
                                                                "WITH")}

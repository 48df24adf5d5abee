"""Fixtures of the store tests: every backend for the contract suite, and SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.stores import SQLiteStore, TaskStore, open_store

from .contract import Events
from .copying import CopyingStore

STORES = [
    pytest.param(lambda tmp: open_store("memory://"), id="memory"),
    pytest.param(lambda tmp: open_store(f"sqlite:///{tmp}/tasks.db"), id="sqlite"),
    pytest.param(lambda tmp: CopyingStore(), id="copying"),
]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """An open store of each backend in turn (SQLite modules have one of their own)."""
    make: Callable[[Path], TaskStore] = request.param
    opened = make(tmp_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def events(store: TaskStore) -> Events:
    """Every change the store reports to its listener, in order."""
    seen: Events = []
    store.on_change = lambda kind, record: seen.append((kind, record))
    return seen


@pytest.fixture
def db(tmp_path: Path) -> str:
    """The path of an SQLite store's file (none there yet)."""
    return str(tmp_path / "tasks.db")


@pytest.fixture
async def pair(db: str) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two store objects on one file: as two processes would have."""
    first, second = SQLiteStore(db), SQLiteStore(db)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()

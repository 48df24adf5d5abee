"""Fixtures of the store tests: every backend for the contract suite, and SQLite files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.stores import RedisStore, SQLiteStore, TaskStore, open_store
from tests.redis_server import RedisServer, fresh_prefix, redis_server

from .contract import Events
from .copying import CopyingStore

__all__ = ["redis_server"]  # the session's redis-server, for the Redis tests


def _redis(request: pytest.FixtureRequest) -> TaskStore:
    server = request.getfixturevalue("redis_server")
    return open_store(f"{server.url}?prefix={fresh_prefix()}")


STORES = [
    pytest.param(lambda tmp, request: open_store("memory://"), id="memory"),
    pytest.param(lambda tmp, request: open_store(f"sqlite:///{tmp}/tasks.db"), id="sqlite"),
    pytest.param(lambda tmp, request: CopyingStore(), id="copying"),
    pytest.param(lambda tmp, request: _redis(request), id="redis"),
]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """An open store of each backend in turn (SQLite modules have one of their own; Redis
    ones share the session's server, each test under a key prefix of its own)."""
    make: Callable[[Path, pytest.FixtureRequest], TaskStore] = request.param
    opened = make(tmp_path, request)
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


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A Redis store of its own (a fresh key prefix) on the session's redis-server."""
    opened = open_store(f"{redis_server.url}?prefix={fresh_prefix()}")
    assert isinstance(opened, RedisStore)
    await opened.open()
    yield opened
    await opened.close()

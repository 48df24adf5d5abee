"""The store's small named values (``get_meta``, ``put_meta``, ``compare_and_set_meta``,
service/stores/base.py): what schedules keep their shared state in.

They are optional. Over every backend of conftest.py's ``store``: a store whose
``supports_meta`` is true keeps the whole contract; one whose ``supports_meta`` is false
refuses each call with a clear NotImplementedError (so a store that does not have them yet
keeps working for everything else, and turning the flag on runs these tests over it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from service.stores import SQLiteStore, TaskStore, open_store
from service.stores.base import ListQuery
from service.stores.memory import MemoryStore


def test_the_built_in_durable_and_embedded_stores_keep_named_values() -> None:
    assert MemoryStore.supports_meta
    assert SQLiteStore.supports_meta
    assert not TaskStore.supports_meta  # the base: off unless a store says so


async def _refused(call: Awaitable[object]) -> None:
    with pytest.raises(NotImplementedError, match="keeps no named values"):
        await call


async def check_or_refused(store: TaskStore, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` if the store keeps named values; else check that each call is refused."""
    if store.supports_meta:
        await body()
        return
    await _refused(store.get_meta("k"))
    await _refused(store.put_meta("k", b"v"))
    await _refused(store.compare_and_set_meta("k", None, b"v"))


async def test_put_then_get(store: TaskStore) -> None:
    async def body() -> None:
        assert await store.get_meta("schedule:a") is None
        await store.put_meta("schedule:a", b"one")
        assert await store.get_meta("schedule:a") == b"one"
        await store.put_meta("schedule:a", b"two")  # replaces
        assert await store.get_meta("schedule:a") == b"two"
        await store.put_meta("schedule:b", b"\x00\xff")  # any bytes
        assert await store.get_meta("schedule:b") == b"\x00\xff"
        assert await store.get_meta("schedule:a") == b"two"
    await check_or_refused(store, body)


async def test_compare_and_set(store: TaskStore) -> None:
    async def body() -> None:
        assert await store.compare_and_set_meta("k", None, b"first")  # absent: expected None
        assert not await store.compare_and_set_meta("k", None, b"again")
        assert not await store.compare_and_set_meta("k", b"wrong", b"x")
        assert await store.get_meta("k") == b"first"
        assert await store.compare_and_set_meta("k", b"first", b"second")
        assert await store.get_meta("k") == b"second"
    await check_or_refused(store, body)


async def test_compare_and_set_lets_one_of_many_racers_win(store: TaskStore) -> None:
    async def body() -> None:
        await store.put_meta("k", b"0")
        won = await asyncio.gather(*(store.compare_and_set_meta("k", b"0", str(i).encode())
                                     for i in range(1, 21)))
        assert sum(won) == 1
        assert await store.get_meta("k") == str(won.index(True) + 1).encode()
    await check_or_refused(store, body)


async def test_named_values_are_no_tasks(store: TaskStore) -> None:
    async def body() -> None:
        await store.put_meta("schema", b"mine")  # a key the SQLite store uses for itself
        await store.put_meta("cursor_key", b"mine")
        assert await store.get_meta("schema") == b"mine"
        assert await store.page(ListQuery()) == []
        assert sum((await store.count_by_status()).values()) == 0
        assert len(await store.cursor_key()) >= 16  # its own key, not ours
        assert await store.cursor_key() != b"mine"
    await check_or_refused(store, body)


async def test_sqlite_values_are_shared_by_processes_and_survive_a_restart(
        pair: tuple[SQLiteStore, SQLiteStore], db: str) -> None:
    first, second = pair
    await first.put_meta("k", b"v")
    assert await second.get_meta("k") == b"v"
    assert await second.compare_and_set_meta("k", b"v", b"w")
    assert not await first.compare_and_set_meta("k", b"v", b"x")  # the other one won
    reopened = open_store(f"sqlite:///{db}")
    await reopened.open()
    try:
        assert await reopened.get_meta("k") == b"w"
    finally:
        await reopened.close()

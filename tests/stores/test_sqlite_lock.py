"""The lock the SQLite store's writers take turns by (service/stores/sqlite_lock.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.stores import SQLiteStore, StoreUnavailable
from service.stores.sqlite_lock import WriterLock

from .sqlite_helpers import new

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def locks(tmp_path: Path) -> Iterator[tuple[WriterLock, WriterLock]]:
    path = str(tmp_path / "tasks.db-lock")
    first, second = WriterLock(path), WriterLock(path)
    yield first, second
    first.close()
    second.close()


def test_one_holder_at_a_time(locks: tuple[WriterLock, WriterLock]) -> None:
    first, second = locks
    assert first.acquire(0)
    assert not second.acquire(0.05)
    first.release()
    assert second.acquire(5)
    assert not first.acquire(0)
    second.release()


def test_a_waiting_writer_gets_it_when_it_is_released(
        locks: tuple[WriterLock, WriterLock]) -> None:
    first, second = locks
    assert first.acquire(0)
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(second.acquire(30)))
    waiter.start()
    first.release()
    waiter.join()
    assert answers == [True]
    second.release()


def test_a_writer_that_gave_up_does_not_keep_it(locks: tuple[WriterLock, WriterLock]) -> None:
    first, second = locks
    assert first.acquire(0)
    assert not second.acquire(0.01)  # its helper goes on waiting for the kernel
    first.release()
    assert second.acquire(5)  # the helper's turn serves the next wish
    second.release()
    assert first.acquire(5)  # and nobody holds it for a writer that left
    first.release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = str(tmp_path / "tasks.db-lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    lock = WriterLock(path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert not lock.acquire(0.05)
        holder.kill()
        holder.wait()
        assert lock.acquire(5)
        lock.release()
    finally:
        holder.kill()
        holder.wait()
        lock.close()


# forking is what this test is about; the child only closes a file and exits
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_lets_go_of_it(locks: tuple[WriterLock, WriterLock]) -> None:
    first, second = locks
    assert first.acquire(0)
    child = os.fork()
    if child == 0:  # the child: its copy of the lock's file must be closed
        try:
            os.fstat(first._fd)
            os._exit(1)
        except OSError:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    first.release()
    assert second.acquire(5)
    second.release()


async def test_a_writer_behind_a_frozen_one_is_told_so(db: str) -> None:
    store = SQLiteStore(db, busy_timeout=10)
    await store.open()
    frozen = WriterLock(db + "-lock")
    assert frozen.acquire(0)
    try:
        with pytest.raises(StoreUnavailable, match="busy for too long"):
            await store.add([new()])
    finally:
        frozen.release()
        frozen.close()
    assert await store.add([new()])
    await store.close()


async def test_store_objects_on_one_file_take_turns(pair: tuple[SQLiteStore, SQLiteStore]
                                                    ) -> None:
    results = await asyncio.gather(*(store.add([new()]) for store in pair * 100))
    assert len({added.id for (added,) in results}) == 200
    assert sum((await pair[0].count_by_status()).values()) == 200

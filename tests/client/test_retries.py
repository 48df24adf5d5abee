"""Retries after ``Retry-After``, on real 429s and 503s.

A 429: a server that runs one task at a time and queues one more; a task held by a gate
file keeps the queue full until the test opens the gate. A 503: a server on an SQLite file
that another program keeps locked (``BEGIN IMMEDIATE`` from the test), so the service
cannot write and answers 503 with ``Retry-After: 5``. In both, the test opens the way only
once the client has logged its retry: the retried request then succeeds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from service.client import (
    AsyncOffloadClient,
    OffloadClient,
    QueueFullError,
    RemoteTaskHandle,
    ServiceUnavailable,
    StoreUnavailableError,
)
from service.errors import QueueFull, StoreUnavailable
from service.models import Status

from ..e2e.server import Server, finish, start
from .conftest import MODULES, WAIT, RetryLog

pytestmark = pytest.mark.e2e
RETRY_SEEN = 30.0  # seconds to wait for the client's first retry (Retry-After is 1 or 5)


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One task runs at a time and one more may wait: two tasks and the queue is full."""
    running = start(tmp_path_factory.mktemp("busy-server"), OFFLOAD_TASK_MODULES=MODULES,
                    OFFLOAD_MAX_CONCURRENCY="1", OFFLOAD_MAX_QUEUE="1",
                    OFFLOAD_SHUTDOWN_GRACE="2")
    try:
        yield running
    finally:
        finish(running)


class FullQueue:
    """The busy server's queue held full: a running task behind a gate, one queued."""

    def __init__(self, client: OffloadClient, gate: Path) -> None:
        self.gate = gate
        self.held = client.submit("journal_run", "held", 120.0, str(gate))
        for event in self.held.events():  # running: the next one waits in the queue
            if event.record.status is Status.RUNNING:
                break
        self.queued = client.submit("add", 1, 2)

    def release(self) -> None:
        self.gate.touch()


@pytest.fixture
def full_queue(busy_server: Server, tmp_path: Path) -> Iterator[FullQueue]:
    with OffloadClient(busy_server.base_url, retries=0) as client:
        queue = FullQueue(client, tmp_path / "gate")
        try:
            yield queue
        finally:
            queue.release()
            assert queue.held.result(WAIT) == "held"
            assert queue.queued.result(WAIT) == 3


def test_retries_off_raises_queue_full_at_once(busy_server: Server, full_queue: FullQueue,
                                               retry_log: RetryLog) -> None:
    with OffloadClient(busy_server.base_url, retries=0) as client, \
            pytest.raises(QueueFull) as caught:
        client.submit("add", 2, 2)
    error = caught.value
    assert isinstance(error, QueueFullError)
    assert error.status == 429
    assert error.code == "queue-full"
    assert error.retry_after >= 1
    assert retry_log.messages == []


def test_retries_are_bounded_in_number(busy_server: Server, full_queue: FullQueue,
                                       retry_log: RetryLog) -> None:
    with OffloadClient(busy_server.base_url, retries=1) as client, \
            pytest.raises(QueueFull):
        client.submit("add", 2, 2)
    assert len(retry_log.messages) == 1
    assert "answered 429" in retry_log.messages[0]


def test_retries_are_bounded_in_time(busy_server: Server, full_queue: FullQueue,
                                     retry_log: RetryLog) -> None:
    # Retry-After is at least 1 s: more than this client may wait in all
    with OffloadClient(busy_server.base_url, retries=5, max_retry_wait=0.5) as client, \
            pytest.raises(QueueFull):
        client.submit("add", 2, 2)
    assert retry_log.messages == []


def test_a_429_is_retried_after_retry_after(busy_server: Server, full_queue: FullQueue,
                                            retry_log: RetryLog) -> None:
    with OffloadClient(busy_server.base_url, retries=10) as client, \
            ThreadPoolExecutor(1) as pool:
        submitted: Future[RemoteTaskHandle] = pool.submit(client.submit, "add", 20, 22)
        assert retry_log.retried.wait(RETRY_SEEN), "the client never retried"
        full_queue.release()  # the queue drains; a retry gets in
        handle = submitted.result(WAIT)
        assert handle.result(WAIT) == 42
    assert "answered 429" in retry_log.messages[0]


async def test_the_async_client_retries_a_429(busy_server: Server, full_queue: FullQueue,
                                              retry_log: RetryLog) -> None:
    async with AsyncOffloadClient(busy_server.base_url, retries=10) as client:
        submitting = asyncio.create_task(client.submit("add", 1, 41))
        seen = await asyncio.to_thread(retry_log.retried.wait, RETRY_SEEN)
        assert seen, "the client never retried"
        full_queue.release()
        handle = await submitting
        assert await handle.result(WAIT) == 42


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server on an SQLite file whose writes give up after about a second when another
    program holds the database's write lock."""
    tmp = tmp_path_factory.mktemp("sqlite-server")
    db = tmp / "offload.db"
    running = start(tmp, OFFLOAD_TASK_MODULES=MODULES, OFFLOAD_SHUTDOWN_GRACE="2",
                    OFFLOAD_STORE=f"sqlite:///{db}?busy_timeout=100")
    try:
        yield running, db
    finally:
        finish(running)


class Locked:
    """Another program holding the SQLite database's write lock until released."""

    def __init__(self, db: Path) -> None:
        self._conn = sqlite3.connect(db, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("BEGIN IMMEDIATE")
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._conn.execute("ROLLBACK")
                self._conn.close()


def test_a_503_is_retried_after_retry_after(sqlite_server: tuple[Server, Path],
                                            retry_log: RetryLog) -> None:
    server, db = sqlite_server
    with OffloadClient(server.base_url, retries=0) as plain:
        locked = Locked(db)
        try:
            with pytest.raises(StoreUnavailable) as caught:  # what a client without retries sees
                plain.submit("add", 1, 2)
            assert isinstance(caught.value, ServiceUnavailable)
            assert isinstance(caught.value, StoreUnavailableError)
            assert caught.value.status == 503
            assert caught.value.headers["Retry-After"] == "5"

            with OffloadClient(server.base_url, retries=3) as client, \
                    ThreadPoolExecutor(1) as pool:
                submitted = pool.submit(client.submit, "add", 2, 3)
                assert retry_log.retried.wait(RETRY_SEEN), "the client never retried"
                assert "answered 503" in retry_log.messages[0]
                locked.release()  # the store can write again
                handle = submitted.result(WAIT)
                assert handle.result(WAIT) == 5
        finally:
            locked.release()

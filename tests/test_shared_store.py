"""Two services, one store: two :class:`TaskService` objects over one SQLite file, or one
Redis server, in one test, standing for two worker processes. Whatever one does, the other
sees through the store alone: cancel, wait, events, idempotency, cursors, limits and
leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from service import TaskService
from service.demo import add
from service.errors import QueueFull
from service.models import Status, Submission
from service.stores import TaskStore, open_store
from tests import sample_tasks
from tests.conftest import TEST_MODULES, settings
from tests.redis_server import RedisServer, fresh_prefix, redis_server
from tests.sample_tasks import gate

__all__ = ["redis_server"]  # the session's redis-server, for the Redis variants

Pair = tuple[TaskService, TaskService]


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One store's URL: an SQLite file, or a prefix of its own on the session's Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix={fresh_prefix()}"


@pytest.fixture
async def make_pair(store_url: str) -> AsyncIterator[Callable[..., Any]]:
    made: list[TaskService] = []

    async def build(**overrides: Any) -> Pair:
        services = []
        for _ in range(2):
            config = settings(poll_interval=0.01, **overrides)
            store: TaskStore = open_store(store_url)
            assert store.shared
            service = TaskService(config, store=store)
            for module in TEST_MODULES:
                service.register_module(module)
            await service.start()
            made.append(service)
            services.append(service)
        return services[0], services[1]

    yield build
    for held in sample_tasks.gates.values():
        held.open()
    for service in made:
        await service.stop(grace=0.5)


async def holder_of(pair: Pair, task_id: str) -> TaskService:
    """The service whose runner holds the task (it is running)."""
    async with asyncio.timeout(5):
        while True:
            for service in pair:
                if service.runner.job(task_id) is not None:
                    return service
            await asyncio.sleep(0.005)  # polling the runners' tables, not a task's end


async def test_a_cancel_reaches_the_task_wherever_it_runs(make_pair: Any) -> None:
    a, b = await make_pair()
    record, _ = await a.submit(Submission("sleep", [30]))
    holder = await holder_of((a, b), record.id)
    other = b if holder is a else a
    cancelled = await other.cancel(record.id)
    assert cancelled.cancel_requested
    done = await other.wait(record.id, 5)
    assert done.status is Status.CANCELLED


async def test_waiters_and_streams_wake_for_the_other_service(make_pair: Any) -> None:
    a, b = await make_pair(max_concurrency=1)
    first, _ = await a.submit(Submission("wait_for_release", ["one"]))
    await gate("one").wait_started()
    _, subscription = await b.subscribe(first.id)
    assert subscription is not None
    waiting = asyncio.create_task(b.wait(first.id, 10))
    gate("one").open()
    async with asyncio.timeout(5):
        events = [event async for event in subscription]
        done = await waiting
    assert done.status is Status.SUCCEEDED
    assert events[-1].terminal
    assert events[-1].task["status"] == "succeeded"


async def test_progress_made_by_one_is_streamed_by_the_other(make_pair: Any) -> None:
    a, b = await make_pair()
    record, _ = await a.submit(Submission("count", [3, 0.05]))
    _, subscription = await b.subscribe(record.id)
    assert subscription is not None
    async with asyncio.timeout(10):
        events = [event async for event in subscription]
    progress = [e.task["progress"]["current"] for e in events if e.kind == "progress"]
    assert progress == sorted(progress)  # coalesced perhaps, never backwards
    assert events[-1].task["result"] == 3


async def test_one_idempotency_key_is_one_task_across_services(make_pair: Any) -> None:
    a, b = await make_pair()
    submission = Submission("add", [1, 2])
    answers = await asyncio.gather(*(
        service.submit(submission, idempotency_key="k", request_hash="h")
        for service in (a, b, a, b)))
    assert len({record.id for record, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False, False, False, True]


async def test_a_cursor_made_by_one_is_read_by_the_other(make_pair: Any) -> None:
    a, b = await make_pair()
    submitted = await a.submit_many([Submission("add", [i, i]) for i in range(7)])
    seen: list[str] = []
    page, cursor = await a.list(limit=3)
    seen += [r.id for r in page]
    while cursor is not None:
        page, cursor = await (b if len(seen) % 2 else a).list(limit=3, cursor=cursor)
        seen += [r.id for r in page]
    assert seen == [r.id for r in reversed(submitted)]


async def test_the_queue_bound_holds_across_services(make_pair: Any) -> None:
    a, b = await make_pair(max_queue=3)
    await a.submit_many([Submission("add", [1, 1], delay=60)] * 2)
    await b.submit(Submission("add", [1, 1], delay=60))
    with pytest.raises(QueueFull):
        await a.submit(Submission("add", [1, 1], delay=60))


async def test_a_type_limit_holds_across_services(make_pair: Any) -> None:
    a, b = await make_pair()
    await a.submit(Submission("one_at_a_time", ["x"]))
    await gate("x").wait_started()
    second, _ = await b.submit(Submission("one_at_a_time", ["y"]))
    for service in (b, a):  # each runner claims what it may, now: not the second
        await service.runner._fill()
    assert (await b.get(second.id)).status is Status.QUEUED
    gate("x").open()
    await gate("y").wait_started()
    gate("y").open()
    assert (await a.wait(second.id, 5)).status is Status.SUCCEEDED


async def test_each_task_runs_once_and_work_spreads(make_pair: Any) -> None:
    a, b = await make_pair()
    records = await a.submit_many([Submission("add", [i, 1]) for i in range(200)])
    results = [await b.wait(r.id, 10) for r in records]
    assert [r.result for r in results] == [i + 1 for i in range(200)]
    assert all(r.attempts == 1 for r in results)


async def test_a_service_on_the_store_runs_a_task_through_the_library_api(
        make_service: Callable[..., TaskService], store_url: str) -> None:
    service = make_service(store=store_url)
    await service.start()
    assert service.store.durable
    handle = await add.submit(2, 3)
    assert await handle.result(timeout=10) == 5


async def test_the_other_service_s_handle_sees_the_result(make_pair: Any) -> None:
    a, b = await make_pair()
    record, _ = await a.submit(Submission("add", [2, 3]))
    handle = b.handle(record.id)
    assert await handle.result(timeout=10) == 5
    done = await a.get(record.id)
    assert (done.status, done.attempts, done.result) == (Status.SUCCEEDED, 1, 5)

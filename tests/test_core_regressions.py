"""Regression tests for bugs found by the state machine (tests/test_core_state_machine.py),
each shrunk to the few steps that show it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from service import TaskService
from service.errors import QueueFull, StoreUnavailable
from service.models import ACTIVE, Status, Submission, TaskRecord
from service.stores import MemoryStore
from service.stores.base import ChangeKind, ListQuery
from tests import state_tasks
from tests.conftest import settings
from tests.sample_tasks import gate
from tests.test_core import DurableMemoryStore


@pytest.fixture(autouse=True)
def _fresh_latches() -> Iterator[None]:
    state_tasks.reset()
    yield
    state_tasks.release_all()


def durable_service(store: DurableMemoryStore) -> TaskService:
    service = TaskService(settings(task_modules=("tests.state_tasks",)), store=store)
    service.register_module("tests.state_tasks")
    return service


async def test_thread_attempt_cut_off_at_shutdown_stays_cancelled() -> None:
    store = DurableMemoryStore()
    service = durable_service(store)
    await service.start()
    record, _ = await service.submit(Submission("held_thread_idempotent", ["k"]))
    latch = state_tasks.latch("k")
    assert await asyncio.to_thread(latch.started.wait, 5), "the task did not start"
    await service.stop(grace=0)
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.status is Status.QUEUED  # handed back for the next run: right
    assert latch.contexts[1].cancel_requested  # the attempt still running must see the stop


@pytest.mark.parametrize("filler", ["queued", "waiting"])
async def test_a_retry_does_not_take_the_queue_past_its_bound(filler: str) -> None:
    service = TaskService(settings(max_concurrency=2, max_queue=1))
    service.register_module("tests.state_tasks")
    service.register_module("tests.sample_tasks")
    await service.start()
    try:
        holder, _ = await service.submit(Submission("one_at_a_time", ["x"]))  # slot and type
        await gate("x").wait_started()
        retrying, _ = await service.submit(Submission("held_slow_retry", ["r"]))  # 2nd slot
        assert await asyncio.to_thread(state_tasks.latch("r").started.wait, 5)
        # The queue is full: a task queued behind the holder, or one waiting for it.
        await service.submit(Submission("one_at_a_time", ["y"]) if filler == "queued"
                             else Submission("echo", [1], depends_on=[holder.id]))
        assert (await service.stats())["counts"][filler] == 1
        assert (await service.stats())["queue_depth"] == 1
        record, subscription = await service.subscribe(retrying.id)
        assert subscription is not None
        state_tasks.latch("r").give("retry")
        async with asyncio.timeout(5):
            async for event in subscription:
                if event.task["status"] != "running":
                    break
        subscription.close()
        record = await service.get(retrying.id)
        assert record.status is Status.FAILED  # a retry would have been past the bound
        assert record.error is not None
        assert record.error.message.endswith("(not retried: the queue is full)")
        assert (await service.stats())["queue_depth"] <= service.settings.max_queue
    finally:
        await service.stop(grace=0)


async def test_work_requeued_at_shutdown_is_kept_and_holds_back_new_work() -> None:
    # Accepted work is never dropped, even when a restart finds more of it than the bound
    # admits: new submissions wait (QueueFull) until the queue is back under it.
    store = DurableMemoryStore()
    first = TaskService(settings(max_concurrency=1, max_queue=1), store=store)
    first.register_module("tests.state_tasks")
    await first.start()
    await first.submit(Submission("held_idempotent", ["a"]))  # running
    assert await asyncio.to_thread(state_tasks.latch("a").started.wait, 5)
    await first.submit(Submission("quick_add", [1, 2]))  # queued: the queue is full
    await first.stop(grace=0)
    assert len(await store.page(ListQuery(statuses=ACTIVE))) == 2  # both kept: right
    second = TaskService(settings(max_concurrency=1, max_queue=1), store=store)
    second.register_module("tests.state_tasks")
    await second.start()
    try:
        # both taken back, past the bound of 1: one runs at once, the other waits
        stats = await second.stats()
        assert stats["queue_depth"] + stats["counts"]["running"] == 2  # type: ignore[index]
        with pytest.raises(QueueFull):
            await second.submit(Submission("quick_add", [2, 2]))
    finally:
        state_tasks.release_all()
        await second.stop(grace=0)


async def test_success_after_a_retry_clears_the_error() -> None:
    service = TaskService(settings())
    service.register_module("tests.sample_tasks")
    await service.start()
    try:
        record, _ = await service.submit(Submission("flaky", [2]))
        done = await service.wait(record.id, 5)
        assert (done.status, done.attempts, done.result) == (Status.SUCCEEDED, 2, 2)
        assert done.error is None
        assert done.to_json()["error"] is None
    finally:
        await service.stop(grace=0)


class FlakyFeedStore(MemoryStore):
    """A shared store whose change feed is down for its first ``down_for`` reads."""

    shared = True

    def __init__(self, down_for: int) -> None:
        super().__init__()
        self.down_for = down_for
        self.reads = 0
        self.back = asyncio.Event()

    async def changes_since(self, cursor: int | None
                            ) -> tuple[int, list[tuple[ChangeKind, TaskRecord]]]:
        self.reads += 1
        if self.reads <= self.down_for:
            raise StoreUnavailable("the store went away")
        if self.reads > self.down_for + 1:
            self.back.set()  # one good read after the outage has been handled
        return 0, []


async def test_a_store_that_is_down_is_logged_once_not_every_poll(
        caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyFeedStore(down_for=20)
    service = TaskService(settings(poll_interval=0.001), store=store)
    await service.start()
    try:
        await asyncio.wait_for(store.back.wait(), 10)
    finally:
        await service.stop()
    said = [r.getMessage() for r in caplog.records if "store's changes" in r.getMessage()]
    assert len(said) == 2, said
    assert said[0].startswith("reading the store's changes failed")
    assert said[1].startswith("reading the store's changes works again")
    assert store.reads > 20

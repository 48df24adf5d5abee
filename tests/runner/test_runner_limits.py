"""What the runner may start and when: concurrency and per-type limits, executor capacity,
priority then FIFO, the queue bound; and how it stops: grace, interruption, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from service import TaskService, current_task
from service.demo import add
from service.errors import NotRunning, QueueFull, ShuttingDown
from service.models import Status
from tests import sample_tasks as st
from tests.runner import runner_tasks as rt
from tests.sample_tasks import gate

from .helpers import Factory, first_progress, pid_alive, started

# -- limits and order ---------------------------------------------------------------------


async def test_global_concurrency_limit(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=2)
    handles = [await st.wait_for_release.submit(key) for key in "abc"]
    await gate("a").wait_started()
    await gate("b").wait_started()
    stats = await service.stats()
    assert (stats["running"], stats["queued"], stats["capacity"]) == (2, 1, 2)
    assert (await service.get(handles[2].id)).status is Status.QUEUED
    gate("a").open()
    await gate("c").wait_started()
    gate("b").open()
    gate("c").open()
    for handle in handles:
        assert (await handle.wait(timeout=5)).status is Status.SUCCEEDED


async def test_per_type_limit_leaves_other_types_free(svc: TaskService) -> None:
    first = await st.one_at_a_time.submit("one1")
    second = await st.one_at_a_time.submit("one2")
    other = await st.wait_for_release.submit("other")
    await gate("one1").wait_started()
    await gate("other").wait_started()  # another type is not held back
    assert (await svc.get(second.id)).status is Status.QUEUED
    gate("one1").open()
    await gate("one2").wait_started()
    gate("one2").open()
    gate("other").open()
    for handle in (first, second, other):
        assert (await handle.wait(timeout=5)).status is Status.SUCCEEDED


async def test_a_full_executor_leaves_the_others_free(make_service: Factory) -> None:
    service = await started(make_service, thread_workers=1)
    first = await st.thread_ignores_cancel.submit("t1")
    second = await st.thread_ignores_cancel.submit("t2")
    await gate("t1").wait_started()
    assert await (await add.submit(2, 2)).result(timeout=5) == 4  # async work is not held
    assert (await service.get(second.id)).status is Status.QUEUED  # no thread is free
    gate("t1").open()
    await gate("t2").wait_started()
    gate("t2").open()
    for handle in (first, second):
        assert (await handle.wait(timeout=5)).status is Status.SUCCEEDED


async def test_priority_then_fifo(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=1)
    holder = await st.wait_for_release.submit("hold")
    await gate("hold").wait_started()
    order = [("low1", -1), ("a", 0), ("high1", 5), ("b", 0), ("high2", 5), ("low2", -1)]
    handles = [await st.record_order.submit_with([key], priority=p) for key, p in order]
    assert (await service.stats())["queued"] == 6
    gate("hold").open()
    for handle in [holder, *handles]:
        await handle.wait(timeout=5)
    assert st.execution_order == ["high1", "high2", "a", "b", "low1", "low2"]


async def test_a_due_retry_goes_back_to_its_place_before_newer_work(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=1)

    @service.task(name="fails_first", retries=1, retry_backoff=0)
    async def fails_first() -> None:
        attempt = current_task().attempt
        st.execution_order.append(f"retried:{attempt}")
        if attempt == 1:
            await gate("first").hold()
            raise ConnectionError("once")

    retried = await fails_first.submit()
    await gate("first").wait_started()
    later = [await st.record_order.submit(key) for key in ("x", "y")]
    gate("first").open()  # attempt 1 fails; its retry is due at once and older than x, y
    assert (await retried.wait(timeout=5)).status is Status.SUCCEEDED
    for handle in later:
        await handle.wait(timeout=5)
    assert st.execution_order == ["retried:1", "retried:2", "x", "y"]
    assert (await service.stats())["queue_depth"] == 0


async def test_queue_bound_counts_queued_and_delayed(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=1, max_queue=3)
    await st.wait_for_release.submit("hold")  # running: does not count
    await gate("hold").wait_started()
    await add.submit(1, 1)
    await add.submit_with([1, 1], delay=60)
    await st.flaky.submit_with([1], delay=60)
    with pytest.raises(QueueFull) as caught:
        await add.submit(1, 2)
    assert caught.value.retry_after >= 1
    with pytest.raises(QueueFull):
        await add.map([(1, 2)])
    stats = await service.stats()
    assert stats["queue_depth"] == 3
    assert stats["queued"] == 1
    total = sum(stats["counts"].values())
    assert total == 4  # nothing was stored for the refused submissions
    gate("hold").open()


async def test_queue_bound_with_delayed_tasks_only(make_service: Factory) -> None:
    await started(make_service, max_queue=2)
    first = await add.submit_with([1, 1], delay=60)
    await add.submit_with([2, 2], delay=60)
    with pytest.raises(QueueFull):
        await add.submit(3, 3)
    await first.cancel()  # room again
    assert await (await add.submit(3, 3)).result(timeout=5) == 6


async def test_queue_bound_is_all_or_nothing_for_batches(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=1, max_queue=5)
    await st.wait_for_release.submit("hold")
    await gate("hold").wait_started()
    with pytest.raises(QueueFull):
        await add.map([(i, i) for i in range(6)])
    assert len(await add.map([(i, i) for i in range(5)])) == 5
    counts = (await service.stats())["counts"]
    assert counts["queued"] == 5
    assert sum(counts.values()) == 6  # the refused batch left nothing behind
    gate("hold").open()


# -- shutdown -----------------------------------------------------------------------------


async def test_running_task_finishing_within_grace_succeeds(make_service: Factory) -> None:
    service = await started(make_service)
    async_task = await st.wait_for_release.submit("a")
    thread_task = await st.thread_wait_for_release.submit("t")
    await gate("a").wait_started()
    await gate("t").wait_started()
    gate("a").open()  # released, but it has not run on yet when stop begins
    gate("t").open()
    await service.stop(grace=5)
    for handle in (async_task, thread_task):
        record = await service.get(handle.id)
        assert record.status is Status.SUCCEEDED, record.error


@pytest.mark.parametrize("kind", ["async", "thread", "process"])
async def test_task_exceeding_grace_ends_failed_interrupted(make_service: Factory,
                                                           kind: str) -> None:
    service = await started(make_service)
    if kind == "async":
        handle = await st.wait_for_release.submit("x")
        await gate("x").wait_started()
    elif kind == "thread":
        handle = await st.thread_ignores_cancel.submit("x")
        await gate("x").wait_started()
    else:
        handle = await rt.spin_reporting_pid.submit()
        pid = int((await first_progress(service, handle.id)).task["progress"]["current"])
    await service.stop(grace=0.1)
    record = await service.get(handle.id)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "Interrupted"
    assert record.finished_at is not None
    if kind != "thread":  # a thread that ignores its stop runs on (and is still counted)
        assert service.runner.running == 0
    if kind == "process":
        assert not pid_alive(pid)
    if kind == "thread":
        gate("x").open()


async def test_shutdown_ends_queued_and_scheduled_tasks_in_the_memory_store(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=1)
    running = await st.wait_for_release.submit("hold")
    await gate("hold").wait_started()
    queued = await st.record_order.submit("queued")
    delayed = await st.record_order.submit_with(["delayed"], delay=60)
    await service.stop(grace=0.05)
    for handle in (running, queued, delayed):
        record = await service.get(handle.id)
        assert record.status is Status.FAILED
        assert record.error is not None
        assert record.error.type == "Interrupted"
    assert st.execution_order == []
    counts = (await service.stats())["counts"]
    assert counts["running"] == counts["queued"] == counts["scheduled"] == 0
    assert (await service.stats())["accepting"] is False


async def test_retry_due_during_shutdown_is_not_left_pending(make_service: Factory) -> None:
    service = await started(make_service)
    handle = await rt.gate_then_fail.submit("r")
    await gate("r").wait_started()
    stopping = asyncio.create_task(service.stop(grace=5))
    # call_soon is FIFO: stop() takes its first step (and starts draining) before the gate
    # opens; the attempt then fails during the grace period and asks for a retry.
    asyncio.get_running_loop().call_soon(gate("r").open)
    await stopping
    record = await service.get(handle.id)
    assert record.terminal, record.status
    assert record.status is Status.FAILED
    assert record.attempts == 1


async def test_submit_after_stop_is_shutting_down(make_service: Factory) -> None:
    service = await started(make_service)
    await service.stop()
    with pytest.raises(ShuttingDown):
        await add.submit(1, 2)
    with pytest.raises(ShuttingDown):
        await add.map([(1, 2)])


async def test_stop_is_idempotent_and_pending_waiters_wake(make_service: Factory) -> None:
    service = await started(make_service)
    handle = await st.wait_for_release.submit("w")
    await gate("w").wait_started()
    waiter = asyncio.create_task(handle.wait(timeout=10))
    await service.stop(grace=0.05)
    await service.stop()
    record = await waiter
    assert record.status is Status.FAILED


async def test_a_stopped_service_cannot_start_again(make_service: Factory) -> None:
    service = await started(make_service)
    await service.stop(grace=0)
    with pytest.raises(NotRunning):
        await service.start()

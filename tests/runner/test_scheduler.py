"""One task's path through the scheduler, through the library API: run, cancel, time out,
retry, crash, report progress, respect the limits, shut down."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

from service import TaskService, current_task
from service.demo import add, blocking_sleep, cpu
from service.errors import QueueFull, ShuttingDown, TaskAlreadyTerminal
from service.events import EventHub, TaskEvent
from service.metrics import Metrics
from service.models import Status, Submission, TaskRecord
from service.registry import BoundCall, TaskType
from service.runner.job import Job
from service.runner.process_pool import ProcessExecutor
from service.runner.scheduler import Scheduler
from service.stores import MemoryStore
from tests import sample_tasks as st
from tests.conftest import TEST_MODULES, settings
from tests.runner import runner_tasks as rt
from tests.sample_tasks import gate

RUNNER_TASKS = "tests.runner.runner_tasks"
Factory = Callable[..., TaskService]


@pytest.fixture
async def svc(make_service: Factory) -> TaskService:
    """A started service with the demo, sample and runner tasks."""
    service = make_service()
    service.register_module(RUNNER_TASKS)
    await service.start()
    return service


async def started(make_service: Factory, **overrides: Any) -> TaskService:
    service = make_service(**overrides)
    service.register_module(RUNNER_TASKS)
    await service.start()
    return service


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def first_progress(service: TaskService, task_id: str) -> TaskEvent:
    """The first progress event of a task (subscribe before it can report anything)."""
    _, subscription = await service.subscribe(task_id)
    assert subscription is not None
    try:
        async with asyncio.timeout(10):
            async for event in subscription:
                if event.kind == "progress":
                    return event
    finally:
        subscription.close()
    raise AssertionError("the task ended without reporting progress")


# -- running ------------------------------------------------------------------------------


async def test_async_thread_and_process_tasks_return_their_results(svc: TaskService) -> None:
    handles = [await add.submit(2, 3), await blocking_sleep.submit(0.01),
               await cpu.submit(1000)]
    assert [await h.result(timeout=10) for h in handles] == [
        5, 0.01, sum(i * i for i in range(1000))]
    for handle in handles:
        record = await svc.get(handle.id)
        assert record.status is Status.SUCCEEDED
        assert record.attempts == 1
        assert record.started_at is not None
        assert record.finished_at is not None
        assert record.created_at <= record.started_at <= record.finished_at
        assert record.error is None


async def test_process_task_gets_json_arguments_even_when_coerced(svc: TaskService) -> None:
    handle = await rt.weekday.submit("2024-01-01")  # a Monday, validated as a date
    assert await handle.result(timeout=10) == 1


async def test_thread_task_runs_off_the_event_loop(svc: TaskService) -> None:
    assert await (await rt.thread_ident.submit()).result(timeout=5) != threading.get_ident()
    blocked = await st.thread_ignores_cancel.submit("block")
    await gate("block").wait_started()
    assert await (await add.submit(1, 1)).result(timeout=5) == 2  # the loop is free
    gate("block").open()
    assert await blocked.result(timeout=5) == "block"


async def test_process_task_runs_in_another_process_at_lower_priority(
    svc: TaskService,
) -> None:
    assert await (await st.process_pid.submit()).result(timeout=10) != os.getpid()
    expected = min(19, os.nice(0) + svc.settings.process_nice)
    assert await (await rt.process_niceness.submit()).result(timeout=10) == expected


async def test_process_tasks_yield_the_cpu_to_normal_processes(svc: TaskService) -> None:
    assert await (await rt.process_scheduler_policy.submit()).result(timeout=10) == (
        os.SCHED_IDLE)
    # and enter the kernel every millisecond of CPU, where a waiting request can have it
    assert await (await rt.process_cpu_timer_interval.submit()).result(timeout=10) == 0.001


async def test_idle_priority_is_a_setting(make_service: Factory) -> None:
    await started(make_service, process_idle_priority=False)
    policy = await (await rt.process_scheduler_policy.submit()).result(timeout=10)
    assert policy == os.sched_getscheduler(0) != os.SCHED_IDLE
    assert await (await rt.process_cpu_timer_interval.submit()).result(timeout=10) == 0


async def test_process_task_error_keeps_its_type_and_message(svc: TaskService) -> None:
    handle = await st.process_raises.submit("boom")
    record = await handle.wait(timeout=10)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert (record.error.type, record.error.message) == ("ValueError", "boom")
    assert "process_raises" in (record.error.traceback or "")
    assert await (await st.process_pid.submit()).result(timeout=10) > 0  # worker reused


async def test_result_that_is_not_json_fails_with_type_error(svc: TaskService) -> None:
    record = await (await st.returns_not_json.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TypeError"
    assert record.result is None


async def test_result_with_a_lone_surrogate_fails(svc: TaskService) -> None:
    record = await (await rt.returns_lone_surrogate.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TypeError"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_non_finite_result_fails(svc: TaskService, value: float) -> None:
    async def non_finite() -> float:
        return value

    task_fn = svc.task(name=f"non_finite_{value}")(non_finite)
    record = await (await task_fn.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TypeError"


@pytest.mark.parametrize("kind", ["nan", "set", "deep"])
async def test_process_result_that_is_not_json_fails_like_the_others(svc: TaskService,
                                                                      kind: str) -> None:
    record = await (await rt.process_returns.submit(kind)).wait(timeout=10)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TypeError"
    assert "not a JSON value" in record.error.message


async def test_process_task_may_print(svc: TaskService) -> None:
    assert await (await rt.process_prints.submit(5)).result(timeout=10) == 5
    assert await (await rt.process_prints.submit(6)).result(timeout=10) == 6


async def test_cancelled_error_raised_by_the_task_itself_is_its_failure(
    svc: TaskService,
) -> None:
    record = await (await rt.raises_cancelled_error.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "CancelledError"
    assert await (await add.submit(1, 1)).result(timeout=5) == 2


async def test_result_beyond_64_bits_succeeds(svc: TaskService) -> None:
    assert await (await st.big_int.submit(40)).result(timeout=5) == int("9" * 40)
    assert await (await cpu.submit(4_000_000)).result(timeout=20) > 2**64  # the SPEC's trap


# -- cancelling ---------------------------------------------------------------------------


async def test_cancel_queued_task_never_starts(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=1)
    holder = await st.wait_for_release.submit("hold")
    await gate("hold").wait_started()
    queued = await st.record_order.submit("never")
    record = await queued.cancel()
    assert record.status is Status.CANCELLED
    assert record.started_at is None
    assert record.attempts == 0
    gate("hold").open()
    await holder.wait(timeout=5)
    assert await (await st.record_order.submit("after")).result(timeout=5) == "after"
    assert st.execution_order == ["after"]
    assert (await service.stats())["queued"] == 0


async def test_cancel_scheduled_task_never_starts(svc: TaskService) -> None:
    delayed = await st.record_order.submit_with(["never"], delay=0.05)
    assert delayed.status is Status.SCHEDULED
    assert (await svc.stats())["queue_depth"] == 1
    record = await delayed.cancel()
    assert record.status is Status.CANCELLED
    assert (await svc.stats())["queue_depth"] == 0
    later = await st.record_order.submit_with(["later"], delay=0.1)
    assert await later.result(timeout=5) == "later"
    assert st.execution_order == ["later"]


async def test_cancel_while_waiting_to_retry(svc: TaskService) -> None:
    handle = await rt.fails_once_then_waits_long.submit()
    _, subscription = await svc.subscribe(handle.id)
    assert subscription is not None
    async with asyncio.timeout(5):
        async for event in subscription:
            if event.task["status"] == "scheduled":
                break
    subscription.close()
    assert (await svc.stats())["queue_depth"] == 1
    record = await handle.cancel()
    assert record.status is Status.CANCELLED
    assert record.attempts == 1
    assert (await svc.stats())["queue_depth"] == 0


async def test_delayed_task_runs_after_its_delay(svc: TaskService) -> None:
    handle = await add.submit_with([1, 1], delay=0.05)
    record = await handle.wait(timeout=5)
    assert record.status is Status.SUCCEEDED
    assert record.scheduled_at is not None
    assert record.started_at is not None
    assert record.started_at >= record.scheduled_at


async def test_cancel_running_async_task(svc: TaskService) -> None:
    handle = await st.wait_for_release.submit("a")
    await gate("a").wait_started()
    await handle.cancel()
    record = await handle.wait(timeout=5)
    assert record.status is Status.CANCELLED
    assert record.cancel_requested
    assert record.result is None
    assert record.error is None


async def test_cancel_running_thread_task_waits_for_the_function(svc: TaskService) -> None:
    handle = await rt.thread_notes_cancel.submit("t")
    await gate("t").wait_started()
    record = await handle.cancel()
    assert record.cancel_requested
    assert record.status is Status.RUNNING
    await gate("t/noticed").wait_started()  # the function saw cancel_requested() == True
    with pytest.raises(TimeoutError):
        await handle.wait(timeout=0.1)  # still running: the function has not returned
    assert (await svc.get(handle.id)).status is Status.RUNNING
    gate("t").open()
    record = await handle.wait(timeout=5)
    assert record.status is Status.CANCELLED
    assert record.result is None  # its return value is discarded


async def test_cancel_running_process_task_kills_it_and_pool_recovers(
    svc: TaskService,
) -> None:
    handle = await rt.spin_reporting_pid.submit()
    pid = int((await first_progress(svc, handle.id)).task["progress"]["current"])
    assert pid_alive(pid)
    await handle.cancel()
    record = await handle.wait(timeout=5)
    assert record.status is Status.CANCELLED
    assert not pid_alive(pid)
    new_pid = await (await st.process_pid.submit()).result(timeout=10)
    assert new_pid != pid


async def test_cancel_of_a_finished_task_is_refused(svc: TaskService) -> None:
    handle = await add.submit(1, 2)
    await handle.wait(timeout=5)
    with pytest.raises(TaskAlreadyTerminal):
        await handle.cancel()


# -- timeouts -----------------------------------------------------------------------------


async def test_async_task_times_out(svc: TaskService) -> None:
    record = await (await st.slow_with_type_timeout.submit(30)).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"
    assert "0.2" in record.error.message


async def test_submission_timeout_overrides_the_types_longer(svc: TaskService) -> None:
    handle = await rt.gate_with_type_timeout.submit_with(["long"], timeout=30)
    await gate("long").wait_started()
    with pytest.raises(TimeoutError):
        await handle.wait(timeout=0.3)  # the type's 0.1 s passed; the task still runs
    gate("long").open()
    assert await handle.result(timeout=5) == "long"


async def test_submission_timeout_overrides_the_types_shorter(svc: TaskService) -> None:
    handle = await st.wait_for_release.submit_with(["short"], timeout=0.05)
    record = await handle.wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"
    assert record.timeout == 0.05


async def test_process_task_looping_forever_is_killed_on_timeout(svc: TaskService) -> None:
    pid = await (await st.process_pid.submit()).result(timeout=10)  # the one idle worker
    handle = await st.spin_forever.submit_with([], timeout=0.3)  # runs in that worker
    record = await handle.wait(timeout=10)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"
    assert not pid_alive(pid)
    assert await (await st.process_pid.submit()).result(timeout=10) != pid


async def test_thread_task_past_its_timeout_fails_when_it_returns(svc: TaskService) -> None:
    handle = await st.thread_wait_for_release.submit_with(["slow"], timeout=0.05)
    record = await handle.wait(timeout=5)  # the function saw cancel_requested() and returned
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"
    assert record.result is None


# -- retries ------------------------------------------------------------------------------


async def test_retry_succeeds_on_the_third_attempt(svc: TaskService) -> None:
    handle = await st.flaky.submit(3)
    record = await handle.wait(timeout=5)
    assert record.status is Status.SUCCEEDED
    assert record.result == 3
    assert record.attempts == 3
    assert record.max_attempts == 4
    assert record.error is None  # the earlier attempts' errors were seen while it waited


async def test_retry_goes_through_scheduled_with_the_last_error(svc: TaskService) -> None:
    handle = await st.flaky.submit(2)
    _, subscription = await svc.subscribe(handle.id)
    assert subscription is not None
    async with asyncio.timeout(5):
        events = [(e.task["status"], e.task["attempts"], e.task["error"])
                  async for e in subscription]
    statuses = [s for s, _, _ in events]
    assert statuses == ["running", "scheduled", "queued", "running", "succeeded"]
    scheduled = events[1]
    assert scheduled[1] == 1
    assert scheduled[2] == {
        "type": "ConnectionError", "message": "attempt 1 failed"}


async def test_non_matching_exception_fails_at_once(svc: TaskService) -> None:
    record = await (await st.fails_with.submit("value")).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.type == "ValueError"


async def test_matching_exception_is_retried_until_exhausted(svc: TaskService) -> None:
    record = await (await st.fails_with.submit("connection")).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 3 == record.max_attempts
    assert record.error is not None
    assert record.error.type == "ConnectionError"


async def test_exhausted_retries_fail_with_the_last_error(svc: TaskService) -> None:
    record = await (await rt.always_fails.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 4
    assert record.error is not None
    assert record.error.message == "attempt 4 failed"


async def test_timeout_is_retried_like_an_error(make_service: Factory) -> None:
    service = await started(make_service)

    async def slow() -> None:
        await asyncio.Event().wait()

    slow_task = service.task(name="slow_retried", timeout=0.02, retries=1, retry_backoff=0)(slow)
    record = await (await slow_task.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 2
    assert record.error is not None
    assert record.error.type == "TimeoutError"


def backoff_job(attempts: int, retry_backoff: float | None) -> Job:
    async def fn() -> None:
        return None

    record = TaskRecord(name="b", attempts=attempts)
    return Job(record, TaskType("b", fn, "async", retry_backoff=retry_backoff),
               BoundCall((), {}))


@pytest.mark.parametrize(("attempts", "low", "high"), [
    (1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (5, 5.0, 10.0), (30, 5.0, 10.0),
])
def test_backoff_doubles_with_jitter_and_is_capped(attempts: int, low: float,
                                                   high: float) -> None:
    scheduler = Scheduler(MemoryStore(), EventHub(), Metrics(dict),
                          settings(retry_backoff=1.0, retry_backoff_max=10.0))
    delays = [scheduler._backoff(backoff_job(attempts, None)) for _ in range(300)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 4  # jitter: not one fixed value


def test_backoff_uses_the_types_own_base() -> None:
    scheduler = Scheduler(MemoryStore(), EventHub(), Metrics(dict), settings(retry_backoff=100.0))
    assert all(0.05 <= scheduler._backoff(backoff_job(2, 0.1)) <= 0.2 for _ in range(50))
    assert scheduler._backoff(backoff_job(3, 0.0)) == 0.0


# -- crashes ------------------------------------------------------------------------------


async def test_worker_exit_fails_only_that_task(svc: TaskService) -> None:
    survivor = await rt.sleep_reporting_pid.submit(0.3)
    await first_progress(svc, survivor.id)  # it runs, in another worker
    crashed = await st.exit_process.submit(7)
    record = await crashed.wait(timeout=10)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "WorkerCrashed"
    assert "exit code 7" in record.error.message
    assert await survivor.result(timeout=10) > 0
    assert await (await cpu.submit(10)).result(timeout=10) == 285


async def test_worker_killed_while_idle_is_replaced(svc: TaskService) -> None:
    pid = await (await st.process_pid.submit()).result(timeout=10)
    pool = svc.scheduler._executors["process"]
    assert isinstance(pool, ProcessExecutor)
    (idle,) = pool._idle
    os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, between two tasks
    await idle.process.wait()
    new_pid = await (await st.process_pid.submit()).result(timeout=10)
    assert new_pid != pid


# -- progress -----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [st.progress_steps, st.thread_progress, st.process_progress],
                         ids=["async", "thread", "process"])
async def test_progress_reaches_the_record_and_subscribers(svc: TaskService, fn: Any) -> None:
    handle = await fn.submit(3)
    _, subscription = await svc.subscribe(handle.id)
    assert subscription is not None
    async with asyncio.timeout(10):
        events = [event async for event in subscription]
    progress = [e.task["progress"] for e in events if e.kind == "progress"]
    assert [p["current"] for p in progress] == [1, 2, 3]
    assert all(p["total"] == 3 for p in progress)
    assert events[-1].kind == "status"
    assert events[-1].task["status"] == "succeeded"
    record = await handle.wait(timeout=1)
    assert record.progress is not None
    assert (record.progress.current, record.progress.total) == (3, 3)


async def test_progress_of_a_running_task_is_visible_before_it_ends(svc: TaskService) -> None:
    handle = await rt.progress_then_gate.submit("p")
    await gate("p").wait_started()
    record = await svc.get(handle.id)
    assert record.status is Status.RUNNING
    assert record.progress is not None
    assert record.progress.message == "half"
    gate("p").open()
    await handle.wait(timeout=5)


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


# -- internal failures --------------------------------------------------------------------


class BrokenSaveStore(MemoryStore):
    """Fails to save one task's record in one status: an internal error, not the task's."""

    def __init__(self, name: str, status: Status) -> None:
        super().__init__()
        self.broken = (name, status)

    async def save(self, record: TaskRecord) -> None:
        if (record.name, record.status) == self.broken:
            raise OSError("disk on fire")
        await super().save(record)


@pytest.mark.parametrize(("name", "args", "status"), [
    ("echo", ["x"], Status.RUNNING), ("flaky", [2], Status.SCHEDULED),
    ("echo", ["x"], Status.SUCCEEDED),
])
async def test_internal_crash_is_logged_frees_the_slot_and_ends_the_task(
    caplog: pytest.LogCaptureFixture, name: str, args: list[Any], status: Status,
) -> None:
    service = TaskService(settings(max_concurrency=1), store=BrokenSaveStore(name, status))
    for module in TEST_MODULES:
        service.register_module(module)
    await service.start()
    try:
        with caplog.at_level(logging.ERROR, logger="offload"):
            submitted, _ = await service.submit(Submission(name, args))
            async with asyncio.timeout(3):  # its waiters hear of its end (no 30 s wait)
                broken = await service.handle(submitted.id).wait(timeout=30)
            after = await add.submit(1, 2)
            assert await after.result(timeout=5) == 3  # the only slot was given back
        assert broken.terminal  # never left running
        if status is not Status.SUCCEEDED:
            assert broken.status is Status.FAILED
            assert broken.error is not None
            assert broken.error.type == "Interrupted"
        stats = await service.stats()
        assert (stats["queue_depth"], stats["running"]) == (0, 0)
        crash_logs = [r for r in caplog.records if "crashed" in r.getMessage()]
        assert crash_logs, caplog.text
        assert "disk on fire" in caplog.text
    finally:
        await service.stop(grace=0.1)


async def test_a_crash_log_names_the_task_whose_path_broke_not_the_workers_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = TaskService(settings(max_concurrency=1),
                          store=BrokenSaveStore("echo", Status.SUCCEEDED))
    for module in TEST_MODULES:
        service.register_module(module)
    await service.start()
    try:
        first, _ = await service.submit(Submission("wait_for_release", ["crash-first"]))
        broken, _ = await service.submit(Submission("echo", ["x"]))  # same worker, next
        await gate("crash-first").wait_started()
        worker = service.scheduler.job(first.id).runner  # type: ignore[union-attr]
        assert worker is not None
        with caplog.at_level(logging.ERROR, logger="offload"):
            gate("crash-first").open()
            await asyncio.wait([worker], timeout=5)  # its crash is logged once it ends
        crash_logs = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
        assert len(crash_logs) == 1, caplog.text
        assert broken.id in crash_logs[0]
        assert first.id not in crash_logs[0]
    finally:
        await service.stop(grace=0.1)


async def test_cancel_right_after_the_pump_picked_the_task(
    make_service: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # A free slot: the submit hands the task to a new worker, and a cancel arrives in the
    # same turn of the loop, before that worker's first step: cancelled, quietly, once.
    service = await started(make_service, max_concurrency=1)
    second, _ = await service.submit(Submission("add", [1, 2]))
    assert service.scheduler.running == 1  # picked by the pump, not yet begun
    assert second.status is Status.QUEUED
    events = service.hub.subscribe(second.id)
    await service.cancel(second.id)
    done = await service.wait(second.id, timeout=5)
    assert done.status is Status.CANCELLED
    assert done.attempts == 0
    assert [e.task["status"] async for e in events] == ["cancelled"]
    third, _ = await service.submit(Submission("add", [2, 2]))  # the slot came back
    assert (await service.wait(third.id, timeout=5)).result == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_worker_runs_the_next_queued_tasks_in_its_slot(make_service: Factory) -> None:
    service = await started(make_service, max_concurrency=1)
    rt.WORKERS_SEEN.clear()
    first, _ = await service.submit(Submission("wait_for_release", ["first"]))
    later = [(await service.submit(Submission("note_worker")))[0] for _ in range(3)]
    await gate("first").wait_started()
    worker = service.scheduler.job(first.id).runner  # type: ignore[union-attr]
    gate("first").open()
    for record in later:
        await service.wait(record.id, timeout=5)
    assert worker is not None
    assert [worker] * 3 == rt.WORKERS_SEEN  # no asyncio task of their own
    assert (await service.stats())["running"] == 0


async def test_a_burst_of_short_tasks_lets_the_loop_run_other_callbacks(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_queue=20_000, max_concurrency=4)
    records = [(await service.submit(Submission("add", [i, 1])))[0] for i in range(20_000)]
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: seen.append(sum(r.terminal for r in records)))
    await service.wait(records[-1].id, timeout=60)
    assert len(seen) == 1
    assert seen[0] < len(records)  # it ran while the burst was still going
    assert all(r.result == i + 1 for i, r in enumerate(records))


async def test_a_task_that_cancels_itself_leaves_the_next_task_on_its_slot_alone(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=1)

    async def cancel_myself() -> int:
        await service.cancel(current_task().task_id)
        return 1  # no await after the cancel: it must not land in the next task

    async def after() -> str:
        await asyncio.sleep(0)
        return "ok"

    first = await service.task(name="cancel_myself")(cancel_myself).submit()
    nexts = [await service.task(name="after")(after).submit() for _ in range(2)]
    assert (await first.wait(5)).status is Status.CANCELLED
    assert [await handle.result(5) for handle in nexts] == ["ok", "ok"]
    assert service.scheduler.running == 0


async def test_a_task_that_cancels_itself_is_cancelled_at_its_next_await(
    make_service: Factory,
) -> None:
    service = await started(make_service)
    reached = []

    async def cancel_then_wait() -> None:
        await service.cancel(current_task().task_id)
        await asyncio.Event().wait()
        reached.append("after the await")

    handle = await service.task(name="cancel_then_wait")(cancel_then_wait).submit()
    assert (await handle.wait(5)).status is Status.CANCELLED
    assert reached == []


async def test_a_task_that_survives_its_timeout_can_still_be_cancelled(
    make_service: Factory,
) -> None:
    service = await started(make_service)
    in_cleanup = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # the timeout's cancel, swallowed: a slow cleanup
            in_cleanup.set()
            await asyncio.Event().wait()

    handle = await service.task(name="stubborn", timeout=0.05)(stubborn).submit()
    await asyncio.wait_for(in_cleanup.wait(), 5)
    await handle.cancel()  # a second stop: a second cancel reaches the cleanup
    record = await handle.wait(5)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "TimeoutError"  # the first reason stays the reason


async def test_jobs_finished_in_one_pass_of_the_loop_share_one_budget(
    make_service: Factory,
) -> None:
    # With a millisecond for each of 100 workers a pass could run thousands of tasks; with
    # one millisecond shared, about what fits in it plus one task per worker.
    service = await started(make_service, max_queue=20_000, max_concurrency=100)
    records = [(await service.submit(Submission("add", [i, 1])))[0] for i in range(20_000)]
    finished_by_pass: list[int] = []
    loop = asyncio.get_running_loop()

    def count() -> None:
        finished_by_pass.append(sum(r.terminal for r in records))
        if finished_by_pass[-1] < len(records):
            loop.call_soon(count)

    loop.call_soon(count)
    await service.wait(records[-1].id, timeout=60)
    steps = [b - a for a, b in itertools.pairwise(finished_by_pass)]
    assert max(steps) < 1_000, max(steps)


def test_tracebacks_are_formatted_without_parsing_source() -> None:
    # Python 3.11 draws ^^^ markers by parsing source with ast, which is not thread-safe.
    import traceback as tb

    from service.runner.outcome import format_traceback

    def boom() -> None:
        raise ValueError("bad")

    try:
        boom()
    except ValueError as exc:
        caught = exc
    original = tb._extract_caret_anchors_from_line_segment  # type: ignore[attr-defined]
    calls: list[object] = []
    tb._extract_caret_anchors_from_line_segment = lambda s: calls.append(s)  # type: ignore
    try:
        text = format_traceback(caught)
    finally:
        tb._extract_caret_anchors_from_line_segment = original  # type: ignore[attr-defined]
    assert calls == []
    assert text.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("bad")' in text
    assert text.endswith("ValueError: bad\n")


async def test_a_stopped_service_cannot_start_again(make_service: Factory) -> None:
    from service.errors import NotRunning

    service = await started(make_service)
    await service.stop(grace=0)
    with pytest.raises(NotRunning):
        await service.start()


class HeldRetrySaveStore(MemoryStore):
    """A store whose save of a retry waits until the test lets it go (as a database may)."""

    def __init__(self) -> None:
        super().__init__()
        self.saving_retry = asyncio.Event()
        self.release = asyncio.Event()

    async def save(self, record: TaskRecord) -> None:
        if record.status is Status.SCHEDULED and not self.release.is_set():
            self.saving_retry.set()
            await self.release.wait()
        await super().save(record)


async def test_cancel_while_a_retry_is_being_saved() -> None:
    store = HeldRetrySaveStore()
    service = TaskService(settings(), store=store)
    service.register_module("tests.sample_tasks")
    await service.start()
    try:
        record, _ = await service.submit(Submission("flaky", [3]))
        async with asyncio.timeout(5):
            await store.saving_retry.wait()
        cancelled = await service.cancel(record.id)
        store.release.set()
        done = await service.wait(record.id, timeout=5)
        assert cancelled.status is done.status is Status.CANCELLED
        assert service.scheduler.pending == 0
        again, _ = await service.submit(Submission("echo", [2]))  # the books still balance
        assert (await service.wait(again.id, timeout=5)).result == 2
        assert service.scheduler.pending == 0
    finally:
        store.release.set()
        await service.stop(grace=0)

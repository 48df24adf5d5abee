"""One task's path through the runner, through the library API: run in each executor,
cancel (queued, scheduled, retrying, running), time out.

Retries, crashes and progress are in test_runner_retries.py; limits, order and shutdown in
test_runner_limits.py; store failures and the runner's own steps in test_runner_internals.py;
each attempt's isolation (issue 11) in test_isolation.py.
"""

from __future__ import annotations

import os
import threading

import pytest

from service import TaskService
from service.demo import add, blocking_sleep, cpu
from service.errors import TaskAlreadyTerminal
from service.models import Status
from tests import sample_tasks as st
from tests.runner import runner_tasks as rt
from tests.sample_tasks import gate

from .helpers import Factory, first_progress, pid_alive, started, statuses_until

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
        assert (record.lease_owner, record.lease_expires) == (None, None)  # lease given up


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


async def test_process_tasks_are_only_niced_by_default(svc: TaskService) -> None:
    policy = await (await rt.process_scheduler_policy.submit()).result(timeout=10)
    assert policy == os.sched_getscheduler(0) != os.SCHED_IDLE
    assert await (await rt.process_cpu_timer_interval.submit()).result(timeout=10) == 0


async def test_idle_priority_is_an_opt_in_setting(make_service: Factory) -> None:
    await started(make_service, process_idle_priority=True)
    assert await (await rt.process_scheduler_policy.submit()).result(timeout=10) == (
        os.SCHED_IDLE)


async def test_the_yield_timer_is_an_opt_in_setting(make_service: Factory) -> None:
    await started(make_service, process_yield_timer=True)
    assert await (await rt.process_cpu_timer_interval.submit()).result(timeout=10) > 0


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
    assert await statuses_until(svc, handle.id, "scheduled") == ["running", "scheduled"]
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


async def test_a_delayed_task_is_queued_when_its_time_comes_even_with_no_free_slot(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=1)
    holder = await st.wait_for_release.submit("hold")
    await gate("hold").wait_started()
    delayed = await st.record_order.submit_with(["later"], delay=0.05)
    statuses = await statuses_until(service, delayed.id, "queued")
    assert statuses == ["queued"]  # no longer delayed: waiting for a slot, like any other
    record = await service.get(delayed.id)
    assert (record.status, (await service.stats())["queued"]) == (Status.QUEUED, 1)
    assert (await service.get(holder.id)).status is Status.RUNNING  # no slot came free
    gate("hold").open()
    assert await delayed.result(timeout=5) == "later"


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


"""What user code holds: @task functions and handles on submitted tasks."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service import (
    Settings,
    TaskCancelled,
    TaskFailed,
    TaskFunction,
    TaskHandle,
    TaskService,
    task,
)
from service.demo import add, fail
from service.errors import InvalidSubmission, NotRunning, UnknownTaskType
from service.handles import collect_tasks, gather_results
from service.models import Status
from tests import sample_tasks as st
from tests.sample_tasks import gate

Factory = Callable[..., TaskService]


def test_decorator_forms_and_defaults() -> None:
    @task
    async def plain(x: int) -> int:
        """Doc of plain."""
        return x

    @task(name="renamed", executor="thread", timeout=3, retries=2, concurrency=4,
          idempotent=True, retry_on=(KeyError,), retry_backoff=0.5)
    def configured() -> None:
        return None

    @task
    def threaded() -> int:
        return 1

    assert isinstance(plain, TaskFunction)
    assert plain.name == "plain"
    assert plain.task_type.executor == "async"
    assert plain.__doc__ == "Doc of plain."
    assert plain.__name__ == "plain"
    assert plain.task_type.description == "Doc of plain."
    assert threaded.task_type.executor == "thread"
    t = configured.task_type
    assert (configured.name, t.executor, t.timeout, t.retries, t.max_attempts) == (
        "renamed", "thread", 3, 2, 3)
    assert (t.concurrency, t.idempotent, t.retry_on, t.retry_backoff) == (
        4, True, (KeyError,), 0.5)


def test_decorator_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="async def"):
        task(executor="process")(add.task_type.fn)
    with pytest.raises(ValueError, match="retries"):
        task(retries=-1)(lambda: None)


async def test_calling_a_task_function_runs_it_here() -> None:
    @task
    def triple(x: int) -> int:
        return 3 * x

    assert await add(2, 3) == 5
    assert triple(2) == 6


async def test_submit_of_a_task_no_service_registered_names_the_task_type() -> None:
    @task
    async def lonely() -> None:
        return None

    with pytest.raises(UnknownTaskType, match=r"lonely.* is not registered.*OFFLOAD_TASK_MODULES"):
        await lonely.submit()
    with pytest.raises(UnknownTaskType) as caught:
        await lonely.map([()])
    assert [e.field for e in caught.value.errors] == ["name"]


async def test_submit_to_a_service_not_started_is_not_running() -> None:
    @task
    async def idle() -> None:
        return None

    TaskService(Settings()).register(idle)
    with pytest.raises(NotRunning):
        await idle.submit()


async def test_submit_returns_a_handle_at_once(service: TaskService) -> None:
    handle = await st.wait_for_release.submit("h")
    assert isinstance(handle, TaskHandle)
    assert handle.status is Status.QUEUED
    assert handle.id in repr(handle)
    await gate("h").wait_started()
    assert (await handle.refresh()).status is Status.RUNNING
    assert handle.status is Status.RUNNING
    gate("h").open()
    assert await handle.result(timeout=5) == "h"
    assert handle.status is Status.SUCCEEDED


async def test_submit_keyword_arguments(service: TaskService) -> None:
    assert await (await add.submit(a=4, b=5)).result(timeout=5) == 9
    assert await (await add.submit(4, b=6)).result(timeout=5) == 10


async def test_submit_validates_at_submit_time(service: TaskService) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await add.submit(1, "two")
    assert [e.field for e in caught.value.errors] == ["args.1"]
    with pytest.raises(InvalidSubmission):
        await st.echo.submit({1, 2})


async def test_submit_with_options(service: TaskService) -> None:
    handle = await add.submit_with([1], {"b": 2}, delay=30, priority=3, timeout=9)
    record = handle.record
    assert record is not None
    assert record.status is Status.SCHEDULED
    assert (record.priority, record.timeout, record.kwargs) == (3, 9, {"b": 2})
    assert (await handle.cancel()).status is Status.CANCELLED


async def test_wait_times_out_with_timeout_error(service: TaskService) -> None:
    handle = await st.wait_for_release.submit("slow")
    with pytest.raises(TimeoutError):
        await handle.wait(timeout=0.05)
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0.01)
    gate("slow").open()
    assert (await handle.wait(timeout=5)).status is Status.SUCCEEDED


async def test_result_of_a_failed_task_raises_task_failed(service: TaskService) -> None:
    handle = await fail.submit("it broke")
    with pytest.raises(TaskFailed) as caught:
        await handle.result(timeout=5)
    assert caught.value.error.type == "RuntimeError"
    assert caught.value.error.message == "it broke"
    assert "RuntimeError: it broke" in str(caught.value)


async def test_result_of_a_cancelled_task_raises_task_cancelled(service: TaskService) -> None:
    handle = await st.wait_for_release.submit("c")
    await gate("c").wait_started()
    record = await handle.cancel()
    assert record.cancel_requested
    with pytest.raises(TaskCancelled):
        await handle.result(timeout=5)


async def test_map_submits_all_in_order(service: TaskService) -> None:
    handles = await add.map([(1, 1), (2, 2), (3, 3)])
    assert await gather_results(handles, timeout=5) == [2, 4, 6]
    assert len({h.id for h in handles}) == 3


async def test_map_is_all_or_nothing(service: TaskService) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await add.map([(1, 1), (1, "x"), (2,)])
    assert {e.field for e in caught.value.errors} == {"tasks.1.args.1"}
    assert (await service.list())[0] == []


async def test_handle_by_id(service: TaskService) -> None:
    submitted = await add.submit(1, 2)
    handle = service.handle(submitted.id)
    assert handle.status is None
    assert await handle.result(timeout=5) == 3


async def test_service_task_decorator_registers_and_binds(make_service: Factory) -> None:
    service = make_service()

    @service.task(retries=1)
    async def double(x: int) -> int:
        return 2 * x

    assert "double" in service.registry
    await service.start()
    handle = await double.submit(21)
    assert await handle.result(timeout=5) == 42
    assert (await service.get(handle.id)).max_attempts == 2


async def test_a_task_submits_to_the_last_service_that_registered_it(
    make_service: Factory,
) -> None:
    first, second = make_service(), make_service()
    await first.start()
    await second.start()
    handle = await add.submit(1, 1)  # make_service registers in order: second is last
    await second.get(handle.id)
    with pytest.raises(Exception, match=handle.id):
        await first.get(handle.id)


def test_collect_tasks_takes_only_tasks_defined_in_the_module() -> None:
    module = types.ModuleType("fake_tasks")

    def own() -> None:
        return None

    own.__module__ = "fake_tasks"
    module.own = task(own)  # type: ignore[attr-defined]
    module.imported = add  # type: ignore[attr-defined]
    module.not_a_task = own  # type: ignore[attr-defined]
    assert [t.name for t in collect_tasks(module)] == ["own"]


async def test_gather_results_raises_for_a_failed_one(service: TaskService) -> None:
    handles = [await add.submit(1, 1), await fail.submit("no")]
    with pytest.raises(TaskFailed):
        await gather_results(handles, timeout=5)
    await asyncio.gather(*(h.wait(5) for h in handles))


async def test_ready_successful_and_failed_read_the_last_snapshot(service: TaskService) -> None:
    handle = await st.wait_for_release.submit("snap")
    await gate("snap").wait_started()
    assert (handle.ready(), handle.successful(), handle.failed()) == (False, False, False)
    gate("snap").open()
    await handle.wait(5)
    assert (handle.ready(), handle.successful(), handle.failed()) == (True, True, False)
    failing = await fail.submit("boom")
    with pytest.raises(TaskFailed):
        await failing.result(5)
    assert (failing.ready(), failing.successful(), failing.failed()) == (True, False, True)
    assert not service.handle(handle.id).ready()  # made from an id alone: nothing seen yet


async def test_celery_names_delay_and_apply_async(service: TaskService) -> None:
    assert await (await add.delay(2, 3)).result(5) == 5
    later = await add.apply_async((2,), {"b": 5}, countdown=60, priority=3)
    assert later.status is Status.SCHEDULED
    assert later.record is not None
    assert later.record.priority == 3
    at = datetime.now(UTC) + timedelta(seconds=60)
    scheduled = await add.apply_async([1, 1], eta=at)
    assert scheduled.record is not None
    assert scheduled.record.scheduled_at is not None
    assert abs(scheduled.record.scheduled_at - at.timestamp()) < 5
    with pytest.raises(ValueError, match="not both"):
        await add.apply_async((1, 1), countdown=1, eta=at)
    with pytest.raises(ValueError, match="aware"):
        await add.apply_async((1, 1), eta=datetime.now())

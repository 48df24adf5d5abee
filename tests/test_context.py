"""Inside a task: progress reports, cancellation checks, the current task's context."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from service import TaskService, cancel_requested, current_task, report_progress
from service.context import TaskContext, make_progress
from service.errors import TaskCancelled
from service.models import Progress, Status, Submission


def test_outside_a_task_there_is_no_context() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        current_task()
    with pytest.raises(RuntimeError):
        report_progress(1)
    with pytest.raises(RuntimeError):
        cancel_requested()


@pytest.mark.parametrize(("args", "ok"), [
    ((1,), True), ((1.5, 3, "m"), True), ((0, None, None), True),
    (("1",), False), ((True,), False), ((float("nan"),), False), ((1, float("inf")), False),
    ((1, "3"), False), ((1, 2, 3), False), ((None,), False), ((10**400,), False),
])
def test_make_progress_checks_types(args: tuple[Any, ...], ok: bool) -> None:
    if ok:
        assert isinstance(make_progress(*args), Progress)
    else:
        with pytest.raises(TypeError):
            make_progress(*args)


async def test_context_in_the_loop_thread_calls_the_sink_directly() -> None:
    seen: list[Progress] = []
    flag = [False]
    context = TaskContext("id", 2, seen.append, lambda: flag[0],
                          lambda fn: pytest.fail("not from the loop thread"))
    context.progress(1, 2, "x")
    assert seen == [Progress(1, 2, "x")]
    assert context.attempt == 2
    assert not context.cancel_requested
    context.raise_if_cancelled()
    flag[0] = True
    assert context.cancel_requested
    with pytest.raises(TaskCancelled):
        context.raise_if_cancelled()


async def test_context_in_another_thread_goes_through_the_loop() -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[Progress, int]] = []
    arrived = asyncio.Event()

    def sink(progress: Progress) -> None:
        seen.append((progress, threading.get_ident()))
        arrived.set()

    context = TaskContext("id", 1, sink, lambda: False, loop.call_soon_threadsafe)
    await asyncio.to_thread(context.progress, 3, 4)
    await asyncio.wait_for(arrived.wait(), 5)
    assert seen == [(Progress(3, 4), threading.get_ident())]


async def test_bad_progress_fails_the_task(service: TaskService) -> None:
    async def bad_progress() -> None:
        report_progress("half")  # type: ignore[arg-type]

    service.task(name="bad_progress")(bad_progress)
    record, _ = await service.submit(Submission("bad_progress"))
    done = await service.wait(record.id, 5)
    assert done.status is Status.FAILED
    assert done.error is not None
    assert done.error.type == "TypeError"


async def test_current_task_knows_its_id_and_attempt(service: TaskService) -> None:
    async def who_am_i() -> list[Any]:
        context = current_task()
        return [context.task_id, context.attempt, cancel_requested()]

    service.task(name="who_am_i")(who_am_i)
    record, _ = await service.submit(Submission("who_am_i"))
    assert (await service.wait(record.id, 5)).result == [record.id, 1, False]


async def test_context_does_not_leak_between_tasks_or_to_the_caller(
    service: TaskService,
) -> None:
    def thread_id() -> str:
        return current_task().task_id

    service.task(name="thread_id")(thread_id)
    records = await service.submit_many([Submission("thread_id")] * 5)
    for record in records:
        assert (await service.wait(record.id, 5)).result == record.id
    with pytest.raises(RuntimeError):
        current_task()

"""Each task runs as if it were alone (issue 11): every attempt in an asyncio task of its
own, in a fresh ``contextvars.Context``; thread and process tasks in a fresh context too."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from service import TaskService, current_task
from service.handles import TaskFunction
from service.models import Status
from tests.runner import runner_tasks as rt
from tests.sample_tasks import gate

from .helpers import Factory, started

ONE_OF_EACH = {"max_concurrency": 1, "thread_workers": 1, "process_workers": 1}


@pytest.fixture
async def one_slot(make_service: Factory) -> TaskService:
    """One slot, one thread, one worker process: tasks run one after the other on the same
    thread and in the same process, where a leak would show."""
    return await started(make_service, **ONE_OF_EACH)


async def saw(fn: TaskFunction, value: str) -> str | None:
    """Run a context_* task that sets ``value``: what it saw before it set it."""
    answer = await (await fn.submit(value)).result(timeout=10)
    seen = answer[0] if isinstance(answer, list) else answer  # a process task adds its pid
    assert seen is None or isinstance(seen, str)
    return seen


@pytest.mark.parametrize("fn", [rt.context_async, rt.context_thread],
                         ids=["async", "thread"])
async def test_a_context_var_set_by_a_task_is_not_seen_by_the_next(
    one_slot: TaskService, fn: TaskFunction,
) -> None:
    assert [await saw(fn, f"v{i}") for i in range(4)] == [None] * 4


async def test_a_context_var_set_by_a_process_task_is_not_seen_by_the_next(
    one_slot: TaskService,
) -> None:
    answers = [await (await rt.context_process.submit(f"v{i}")).result(timeout=10)
               for i in range(4)]
    assert [seen for seen, _ in answers] == [None] * 4
    assert len({pid for _, pid in answers}) == 1  # all in one worker process, reused


async def test_no_executor_sees_what_another_set(one_slot: TaskService) -> None:
    fns = [rt.context_async, rt.context_thread, rt.context_process]
    for i, (first, second) in enumerate(itertools.product(fns, repeat=2)):
        assert await saw(first, f"first{i}") is None
        assert await saw(second, f"second{i}") is None, (first.name, second.name)


async def test_what_the_submitter_set_does_not_reach_tasks(make_service: Factory) -> None:
    token = rt.LEAKED.set("the submitter's")
    try:
        await started(make_service, **ONE_OF_EACH)
        assert await saw(rt.context_async, "a") is None
        assert await saw(rt.context_thread, "t") is None
    finally:
        rt.LEAKED.reset(token)


async def test_tasks_running_together_each_keep_their_own_value(svc: TaskService) -> None:
    @svc.task(name="set_then_hold")
    async def set_then_hold(value: str) -> list[str | None]:
        before = rt.LEAKED.get()
        rt.LEAKED.set(value)
        await gate(value).hold()
        return [before, rt.LEAKED.get()]

    handles = [await set_then_hold.submit(key) for key in ("a", "b", "c")]
    for key in ("a", "b", "c"):
        await gate(key).wait_started()  # all three have set their value, and wait
    for key in ("b", "a", "c"):
        gate(key).open()
    assert [await h.result(timeout=5) for h in handles] == [[None, "a"], [None, "b"],
                                                            [None, "c"]]


async def test_every_attempt_has_an_asyncio_task_of_its_own(one_slot: TaskService) -> None:
    seen: list[tuple[str, int, asyncio.Task[Any] | None]] = []  # kept: no id is reused

    @one_slot.task(name="note_task", retries=2, retry_backoff=0)
    async def note_task(fail_until: int) -> None:
        context = current_task()
        seen.append((context.task_id, context.attempt, asyncio.current_task()))
        if context.attempt < fail_until:
            raise ConnectionError("again")

    handles = [await note_task.submit(n) for n in (3, 1, 2, 1)]
    for handle in handles:
        assert (await handle.wait(timeout=5)).status is Status.SUCCEEDED
    assert len(seen) == 3 + 1 + 2 + 1
    tasks = [task for _, _, task in seen]
    assert None not in tasks
    assert len(set(map(id, tasks))) == len(tasks)  # every attempt, retries included
    dispatcher = [t for t in asyncio.all_tasks() if t.get_name() == "offload:dispatcher"]
    assert len(dispatcher) == 1
    assert dispatcher[0] not in tasks


class Session:
    """Stands in for a database session: it notes the tasks that used it."""

    def __init__(self) -> None:
        self.used_by: list[str] = []


class ScopedSessions:
    """A session registry keyed on the current asyncio task, as SQLAlchemy's documented
    ``async_scoped_session(factory, scopefunc=asyncio.current_task)`` keeps one."""

    def __init__(self) -> None:
        self.registry: dict[asyncio.Task[Any] | None, Session] = {}

    def __call__(self) -> Session:
        return self.registry.setdefault(asyncio.current_task(), Session())


async def test_a_session_registry_keyed_on_the_current_task_gives_each_task_its_own(
    make_service: Factory,
) -> None:
    service = await started(make_service, max_concurrency=2)
    sessions = ScopedSessions()

    @service.task(name="uses_a_session")
    async def uses_a_session(hold: bool) -> None:
        session = sessions()
        session.used_by.append(current_task().task_id)
        if hold:
            await gate(current_task().task_id).hold()
        sessions().used_by.append(current_task().task_id)  # the same session again

    held = await uses_a_session.submit(True)
    await gate(held.id).wait_started()
    quick = [await uses_a_session.submit(False) for _ in range(5)]  # one after the other
    for handle in quick:
        await handle.wait(timeout=5)
    gate(held.id).open()
    await held.wait(timeout=5)
    ids = {held.id, *(h.id for h in quick)}
    assert len(sessions.registry) == len(ids)  # one session per task
    for session in sessions.registry.values():
        assert len(session.used_by) == 2
        assert len(set(session.used_by)) == 1  # never another task's
    assert {s.used_by[0] for s in sessions.registry.values()} == ids

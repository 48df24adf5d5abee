"""The library's workflows: chain, group and chord results, failure propagation,
cancelling a workflow, bounds, and each step a normal task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service import QueueFull, TaskCancelled, TaskFailed, TaskService, chain, chord, group
from service.demo import add, fail
from service.errors import InvalidSubmission, UnknownTaskType
from service.models import Status, Submission
from service.schedules import Schedule, ScheduleError
from tests import workflow_tasks as wt
from tests.redis_server import RedisServer, fresh_prefix, redis_server
from tests.sample_tasks import gate, wait_for_release

__all__ = ["redis_server"]  # the session's redis-server, for the Redis store's variants

Factory = Callable[..., TaskService]
LONG_CHAIN = 1100  # links: beyond Python's default recursion limit (1000), so a cascade
                   # that recursed once per link would fail here


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store's URL: memory, an SQLite file, a prefix of its own on a real Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return f"{server.url}?prefix={fresh_prefix()}"
    return "memory://"


@pytest.fixture
async def svc(make_service: Factory) -> TaskService:
    service = make_service(max_chain=5, max_group=4)
    service.register_module("tests.workflow_tasks")
    await service.start()
    return service


async def test_a_chain_passes_each_result_on(svc: TaskService) -> None:
    handle = await chain(add.s(2, 3), add.s(10), wt.double.s()).submit()
    assert await handle.result(timeout=10) == 30
    steps = [await step.refresh() for step in handle.steps]
    assert [s.args for s in steps] == [[2, 3], [5, 10], [15]]
    assert [s.status for s in steps] == [Status.SUCCEEDED] * 3
    assert handle.id == steps[-1].id  # the workflow is its last task
    assert steps[1].depends_on == [steps[0].id]
    assert steps[2].progress is not None  # each step is a normal task, progress too


async def test_pipe_and_immutable_signatures(svc: TaskService) -> None:
    handle = await (add.s(1, 1) | add.si(5, 5) | add.s(1)).submit()
    assert await handle.result(timeout=10) == 11


async def test_a_group_gives_every_result_in_order(svc: TaskService) -> None:
    handle = await group(add.s(i, i) for i in range(4)).submit()
    assert await handle.result(timeout=10) == [0, 2, 4, 6]
    assert len(set(handle.ids)) == 4
    assert handle.ready()


async def test_a_group_has_an_id_and_a_status_of_its_own(svc: TaskService) -> None:
    handle = await group(wt.released_number.s("g-id", 7), add.s(1, 1)).submit()
    assert handle.id not in handle.ids
    assert [step.id for step in handle.steps] == [*handle.ids, handle.id]
    own = await svc.get(handle.id)
    assert (own.name, own.status, own.depends_on) == ("offload.group", Status.WAITING,
                                                      handle.ids)
    assert handle.status is Status.WAITING
    assert not handle.ready()
    await gate("g-id").wait_started()
    gate("g-id").open()
    record = await svc.wait(handle.id, 10)  # what GET /tasks/{id}?wait= does
    assert (record.status, record.result) == (Status.SUCCEEDED, [7, 2])
    assert record.args == [[7, 2]]  # as a chord's callback: the list, in member order
    assert await handle.result(timeout=10) == [7, 2]
    assert handle.ready()
    assert (await handle.wait()).id == handle.id


async def test_the_group_task_is_hidden_and_refused_by_name(svc: TaskService) -> None:
    assert "offload.group" not in svc.registry
    assert "offload.group" not in [t.name for t in svc.registry]
    assert svc.registry.get("offload.group").internal  # but every service can run it
    with pytest.raises(UnknownTaskType):
        await svc.submit(Submission("offload.group", [[1, 2]]))
    with pytest.raises(InvalidSubmission) as caught:  # in a batch too, depends_on or not
        await svc.submit_many([Submission("add", [1, 2]),
                               Submission("offload.group", [], depends_on=[0])])
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("tasks.1.name", "no task type named 'offload.group'")]
    with pytest.raises(ValueError, match=r"offload\.group"):
        svc.registry.override_rate_limits({"offload.group": None})
    with pytest.raises(ScheduleError, match="no task named"):
        Schedule.of("joins", "offload.group", every=60).check_task(svc.registry)
    assert (await svc.list())[0] == []


async def test_a_failed_member_cancels_the_group_and_is_raised(svc: TaskService) -> None:
    handle = await group(wt.released_number.s("g-late", 1), fail.s("early")).submit()
    record = await handle.wait(timeout=10)  # the group ends with the failure ...
    assert record.status is Status.CANCELLED
    assert record.error is not None
    assert record.error.type == "DependencyFailed"
    assert handle.ids[1] in record.error.message
    assert "RuntimeError: early" in record.error.message
    assert (await handle.handles[0].refresh()).status is Status.RUNNING  # ... not later
    gate("g-late").open()
    with pytest.raises(TaskFailed, match="early"):  # the member's own error
        await handle.result(timeout=10)
    assert (await handle.handles[0].refresh()).status is Status.SUCCEEDED


async def test_a_group_raises_for_the_first_member_in_order(svc: TaskService) -> None:
    handle = await group(add.s(1, 1), fail.s("one"), fail.s("two")).submit()
    with pytest.raises(TaskFailed, match="one"):
        await handle.result(timeout=10)


async def test_group_result_keeps_its_timeout(svc: TaskService) -> None:
    handle = await group(wt.released_number.s("g-slow", 1), fail.s("fast")).submit()
    with pytest.raises(TimeoutError):  # the first member is still running
        await handle.result(timeout=0.2)
    gate("g-slow").open()
    with pytest.raises(TaskFailed, match="fast"):
        await handle.result(timeout=10)


async def test_a_chord_calls_back_with_the_list_of_results(svc: TaskService) -> None:
    handle = await chord([add.s(1, 1), add.s(2, 2), wt.double.s(5)], wt.tsum.s(plus=1)).submit()
    assert await handle.result(timeout=10) == 2 + 4 + 10 + 1
    callback = await handle.refresh()
    assert callback.args == [[2, 4, 10]]
    assert callback.depends_on == [s.id for s in handle.steps[:3]]


async def test_a_failed_step_cancels_the_rest_and_is_raised(svc: TaskService) -> None:
    handle = await chain(add.s(1, 2), fail.si("broken"), add.s(1), add.s(2)).submit()
    with pytest.raises(TaskFailed, match="broken"):
        await handle.result(timeout=10)
    third, fourth = [await step.refresh() for step in handle.steps[2:]]
    assert third.status is Status.CANCELLED
    assert third.error is not None
    assert third.error.type == "DependencyFailed"
    assert handle.steps[1].id in third.error.message
    assert fourth.status is Status.CANCELLED
    assert handle.steps[2].id in (fourth.error.message if fourth.error else "")


async def test_a_failed_member_cancels_the_chord_callback(svc: TaskService) -> None:
    handle = await chord([add.s(1, 1), fail.s("member")], wt.tsum.s()).submit()
    with pytest.raises(TaskFailed, match="member"):
        await handle.result(timeout=10)
    assert (await handle.refresh()).status is Status.CANCELLED


async def test_cancelling_a_workflow_cancels_its_unfinished_steps(svc: TaskService) -> None:
    handle = await chain(wait_for_release.s("wf-cancel"), add.s(1), add.s(2)).submit()
    await gate("wf-cancel").wait_started()
    record = await handle.cancel()
    assert record.status is Status.CANCELLED
    with pytest.raises(TaskCancelled):
        await handle.result(timeout=10)
    first = await handle.steps[0].wait(10)
    assert first.status is Status.CANCELLED  # the running step was stopped


async def test_cancelling_a_group(svc: TaskService) -> None:
    handle = await group(wait_for_release.s("wf-g1"), wt.released_number.s("wf-g2", 2)
                         ).submit()
    await gate("wf-g1").wait_started()
    record = await handle.cancel()
    assert record.status is Status.CANCELLED
    assert (await handle.wait(timeout=10)).status is Status.CANCELLED
    members = [await member.wait(10) for member in handle.handles]
    assert [m.status for m in members] == [Status.CANCELLED] * 2  # the running one too
    with pytest.raises(TaskCancelled):
        await handle.result()


async def test_cancelling_the_group_task_alone(svc: TaskService) -> None:
    handle = await group(add.s(1, 1), add.s(2, 2)).submit()
    await svc.cancel(handle.id)  # what POST /tasks/{id}/cancel of the group's id does
    with pytest.raises(TaskCancelled, match=f"group {handle.id}"):
        await handle.result(timeout=10)


async def test_waiting_on_the_workflow_id_waits_for_the_whole(svc: TaskService) -> None:
    handle = await chain(wait_for_release.s("wf-id"), wt.shout.s()).submit()
    assert (await svc.get(handle.id)).status is Status.WAITING
    gate("wf-id").open()
    record = await svc.wait(handle.id, 10)  # what GET /tasks/{id}?wait= does
    assert record.status is Status.SUCCEEDED
    assert record.result == "WF-ID"


async def test_bounds_on_chains_and_groups(svc: TaskService) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await chain(*[add.s(1, 1)] + [add.s(1)] * 5).submit()
    assert caught.value.errors[0].field == "chain"
    with pytest.raises(InvalidSubmission) as caught:
        await group(add.s(i, i) for i in range(5)).submit()
    assert caught.value.errors[0].field == "group"
    with pytest.raises(InvalidSubmission):
        await chord([add.s(i, i) for i in range(5)], wt.tsum.s()).submit()
    assert await chain(*[add.s(1, 1)] + [add.s(1)] * 4).submit()


async def test_steps_are_checked_when_submitted(svc: TaskService) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await chain(add.s(1, 2), add.s("ten")).submit()
    assert [e.field for e in caught.value.errors] == ["tasks.1.args.0"]
    with pytest.raises(InvalidSubmission) as caught:
        await chain(add.s(1, 2), wt.nothing.s()).submit()
    assert [e.field for e in caught.value.errors] == ["tasks.1.args"]
    with pytest.raises(TypeError):
        chain(add.s(1, 2), "add")  # type: ignore[arg-type]
    assert (await svc.list())[0] == []  # nothing was submitted


async def test_a_chain_and_a_chord_on_a_durable_store(make_service: Factory,
                                                       tmp_path: Path) -> None:
    service = make_service(store=f"sqlite:///{tmp_path}/tasks.db")
    service.register_module("tests.workflow_tasks")
    await service.start()
    chained = await chain(add.s(2, 3), add.s(10), wt.double.s()).submit()
    assert await chained.result(timeout=10) == 30
    chorded = await chord([add.s(1, 1), wt.double.s(5)], wt.tsum.s()).submit()
    assert await chorded.result(timeout=10) == 12
    broken = await chain(fail.s("on disk"), add.s(1)).submit()
    with pytest.raises(TaskFailed, match="on disk"):
        await broken.result(timeout=10)


async def _long_chain(service: TaskService, head: str, links: int) -> list[str]:
    """``links`` tasks after ``head``, each submitted alone (as over HTTP) and depending on
    the one before, each getting its result and adding 1."""
    ids = [head]
    for _ in range(links):
        record, _ = await service.submit(Submission(
            "add", [1], depends_on=[ids[-1]], receives="result"))
        ids.append(record.id)
    return ids


async def test_a_long_chain_across_submissions_is_released_link_by_link(
        make_service: Factory, any_store: str) -> None:
    service = make_service(store=any_store)
    service.register_module("tests.workflow_tasks")
    await service.start()
    head = await wt.released_number.submit("long-release", 0)
    ids = await _long_chain(service, head.id, 200)
    assert (await service.get(ids[-1])).status is Status.WAITING
    gate("long-release").open()
    last = await service.wait(ids[-1], 60)
    assert (last.status, last.result) == (Status.SUCCEEDED, 200)


async def test_cancelling_the_head_of_a_long_chain_cancels_every_link(
        make_service: Factory, any_store: str) -> None:
    service = make_service(store=any_store)
    service.register_module("tests.workflow_tasks")
    await service.start()
    head = await wt.released_number.submit("long-cancel", 0)
    ids = await _long_chain(service, head.id, LONG_CHAIN)
    await gate("long-cancel").wait_started()
    await head.cancel()
    last = await service.wait(ids[-1], 60)  # one cascade, in the head's settle
    assert last.status is Status.CANCELLED
    assert last.error is not None
    assert last.error.type == "DependencyFailed"
    assert ids[-2] in last.error.message  # each link names the one it waited for
    counts = (await service.stats())["counts"]
    assert isinstance(counts, dict)
    assert (counts["cancelled"], counts["waiting"]) == (LONG_CHAIN + 1, 0)


async def test_the_queue_bound_bounds_a_chain_across_submissions(
        make_service: Factory) -> None:
    service = make_service(max_queue=50)
    service.register_module("tests.workflow_tasks")
    await service.start()
    head = await wt.released_number.submit("long-bound", 0)
    await gate("long-bound").wait_started()  # running: no longer counts toward the bound
    ids = await _long_chain(service, head.id, 50)
    with pytest.raises(QueueFull):
        await _long_chain(service, ids[-1], 1)


async def test_a_group_on_every_store(make_service: Factory, any_store: str) -> None:
    service = make_service(store=any_store)
    service.register_module("tests.workflow_tasks")
    await service.start()
    handle = await group(add.s(1, 2), wt.double.s(5), wt.shout.s("x")).submit()
    record = await service.wait(handle.id, 10)
    assert (record.name, record.status, record.result) == (
        "offload.group", Status.SUCCEEDED, [3, 10, "X"])
    broken = await group(add.s(1, 2), fail.s("stored")).submit()
    ended = await service.wait(broken.id, 10)
    assert ended.status is Status.CANCELLED
    assert ended.error is not None
    assert broken.ids[1] in ended.error.message
    with pytest.raises(TaskFailed, match="stored"):
        await broken.result(timeout=10)

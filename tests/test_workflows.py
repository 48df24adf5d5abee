"""The library's workflows: chain, group and chord results, failure propagation,
cancelling a workflow, bounds, and each step a normal task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service import TaskCancelled, TaskFailed, TaskService, chain, chord, group
from service.demo import add, fail
from service.errors import InvalidSubmission
from service.models import Status
from tests import workflow_tasks as wt
from tests.sample_tasks import gate, wait_for_release

Factory = Callable[..., TaskService]


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
    handle = await group(wait_for_release.s("wf-g1"), add.s(1, 1)).submit()
    await gate("wf-g1").wait_started()
    await handle.cancel()
    records = await handle.wait(timeout=10)
    assert records[0].status is Status.CANCELLED
    with pytest.raises(TaskCancelled):
        await handle.result()


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

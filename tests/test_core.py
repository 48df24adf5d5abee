"""The task service through its library API: submitting, looking up, waiting, deleting,
listing, stats, eviction, idempotency, recovery and shutdown of stored work."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from service import TaskService
from service.errors import (
    BadQuery,
    IdempotencyConflict,
    InvalidSubmission,
    NotRunning,
    QueueFull,
    TaskAlreadyTerminal,
    TaskNotFound,
    TaskStillActive,
    UnknownTaskType,
)
from service.models import ACTIVE, Status, Submission, TaskRecord
from service.stores import MemoryStore
from service.stores.base import ClaimRequest, ListQuery
from tests.conftest import TEST_MODULES, settings
from tests.sample_tasks import gate

Factory = Callable[..., TaskService]
RUNNER_TASKS = "tests.runner.runner_tasks"


def fields(exc: pytest.ExceptionInfo[InvalidSubmission]) -> set[str]:
    return {e.field for e in exc.value.errors}


async def submit(service: TaskService, name: str, *args: Any, **kwargs: Any) -> TaskRecord:
    record, created = await service.submit(Submission(name, list(args), kwargs))
    assert created
    return record


# -- submitting ---------------------------------------------------------------------------


async def test_submit_returns_at_once_with_a_queued_record(service: TaskService) -> None:
    record = await submit(service, "wait_for_release", "k")
    assert record.status is Status.QUEUED
    assert record.args == ["k"]
    assert record.kwargs == {}
    assert record.max_attempts == 1
    assert record.attempts == 0
    assert record.created_at > 0
    await gate("k").wait_started()
    gate("k").open()
    done = await service.wait(record.id, timeout=5)
    assert done.status is Status.SUCCEEDED
    assert done.result == "k"


async def test_submit_before_start_is_refused(make_service: Factory) -> None:
    service = make_service()
    with pytest.raises(NotRunning):
        await service.submit(Submission("add", [1, 2]))


async def test_unknown_task_name(service: TaskService) -> None:
    with pytest.raises(UnknownTaskType) as caught:
        await service.submit(Submission("nope"))
    assert fields(caught) == {"name"}


async def test_bad_arguments_name_the_field(service: TaskService) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await service.submit(Submission("add", [1], {"b": "x", "c": 3}))
    assert fields(caught) == {"kwargs.b", "kwargs.c"}
    assert (await service.stats())["queue_depth"] == 0


@pytest.mark.parametrize(("args", "kwargs", "field"), [
    ([{1, 2}], {}, "args"), ([float("nan")], {}, "args"), ([], {"value": {1: 2}}, "kwargs"),
    ([], {"value": float("inf")}, "kwargs"), ([object()], {}, "args"),
    (["\ud800"], {}, "args"), ([], {"value": {"\udc00": 1}}, "kwargs"),
])
async def test_arguments_must_be_json(service: TaskService, args: list[Any],
                                      kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await service.submit(Submission("echo", args, kwargs))
    assert fields(caught) == {field}
    with pytest.raises(InvalidSubmission):
        await service.submit(Submission("echo", args, kwargs), idempotency_key="k")


@pytest.mark.parametrize(("options", "field"), [
    ({"delay": -1}, "delay"), ({"delay": float("nan")}, "delay"), ({"delay": 10**9}, "delay"),
    ({"timeout": 0}, "timeout"), ({"timeout": -1}, "timeout"),
    ({"timeout": float("inf")}, "timeout"), ({"priority": 2**31}, "priority"),
    ({"priority": -(2**31) - 1}, "priority"),
])
async def test_bad_options_name_the_field(service: TaskService, options: dict[str, Any],
                                          field: str) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await service.submit(Submission("add", [1, 2], **options))
    assert fields(caught) == {field}


async def test_submission_options_reach_the_record(service: TaskService) -> None:
    record, _ = await service.submit(Submission("add", [1, 2], delay=30, priority=-7,
                                                timeout=4.5))
    assert record.status is Status.SCHEDULED
    assert record.scheduled_at is not None
    assert record.scheduled_at >= record.created_at + 29
    assert (record.priority, record.timeout) == (-7, 4.5)
    await service.cancel(record.id)


async def test_type_timeout_is_the_default(service: TaskService) -> None:
    record = await submit(service, "slow_with_type_timeout", 0)
    assert record.timeout == 0.2
    assert (await service.wait(record.id, 5)).status is Status.SUCCEEDED


# -- idempotency --------------------------------------------------------------------------


async def test_same_key_and_body_returns_the_original(service: TaskService) -> None:
    first, created = await service.submit(Submission("add", [1, 2]), idempotency_key="k1")
    again, created_again = await service.submit(Submission("add", [1, 2]),
                                                idempotency_key="k1")
    assert created
    assert not created_again
    assert again.id == first.id
    await service.wait(first.id, 5)
    after, created_after = await service.submit(Submission("add", [1, 2]),
                                                idempotency_key="k1")
    assert after.id == first.id
    assert not created_after
    assert after.status is Status.SUCCEEDED
    assert len((await service.list())[0]) == 1


async def test_same_key_with_another_body_conflicts(service: TaskService) -> None:
    await service.submit(Submission("add", [1, 2]), idempotency_key="k")
    for other in (Submission("add", [2, 1]), Submission("add", [1, 2], priority=1),
                  Submission("echo", [1])):
        with pytest.raises(IdempotencyConflict):
            await service.submit(other, idempotency_key="k")


async def test_keys_are_per_owner(service: TaskService) -> None:
    mine, _ = await service.submit(Submission("add", [1, 2]), owner="a", idempotency_key="k")
    theirs, created = await service.submit(Submission("add", [5, 5]), owner="b",
                                           idempotency_key="k")
    assert created
    assert theirs.id != mine.id


async def test_caller_supplied_request_hash_decides(service: TaskService) -> None:
    first, _ = await service.submit(Submission("add", [1, 2]), idempotency_key="k",
                                    request_hash="body-1")
    again, created = await service.submit(Submission("add", [1, 2]), idempotency_key="k",
                                          request_hash="body-1")
    assert again.id == first.id
    assert not created
    with pytest.raises(IdempotencyConflict):
        await service.submit(Submission("add", [1, 2]), idempotency_key="k",
                             request_hash="body-2")


async def test_key_is_free_again_once_the_record_is_gone(service: TaskService) -> None:
    first, _ = await service.submit(Submission("add", [1, 2]), idempotency_key="k")
    await service.wait(first.id, 5)
    await service.delete(first.id)
    second, created = await service.submit(Submission("add", [3, 4]), idempotency_key="k")
    assert created
    assert second.id != first.id


async def test_concurrent_submissions_with_one_key_make_one_task(service: TaskService) -> None:
    results = await asyncio.gather(*(
        service.submit(Submission("add", [1, 2]), idempotency_key="same") for _ in range(20)))
    assert len({record.id for record, _ in results}) == 1
    assert sum(created for _, created in results) == 1


# -- batches ------------------------------------------------------------------------------


async def test_submit_many_in_order(service: TaskService) -> None:
    records = await service.submit_many([Submission("add", [i, i]) for i in range(5)])
    assert [r.args for r in records] == [[i, i] for i in range(5)]
    results = [(await service.wait(r.id, 5)).result for r in records]
    assert results == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(("bad", "field"), [
    (Submission("add", [1], {"b": "x"}), "tasks.1.kwargs.b"),
    (Submission("nope"), "tasks.1.name"),
    (Submission("add", [1, 2], delay=-5), "tasks.1.delay"),
    (Submission("echo", [{1}]), "tasks.1.args"),
])
async def test_submit_many_is_all_or_nothing(service: TaskService, bad: Submission,
                                             field: str) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        await service.submit_many([Submission("add", [1, 2]), bad, Submission("add", [3, 4])])
    assert fields(caught) == {field}
    assert (await service.list())[0] == []
    assert sum((await service.stats())["counts"].values()) == 0
    assert (await service.stats())["queue_depth"] == 0


async def test_submit_many_limit(make_service: Factory) -> None:
    service = make_service(max_batch=3)
    await service.start()
    with pytest.raises(InvalidSubmission) as caught:
        await service.submit_many([Submission("add", [1, 2])] * 4)
    assert fields(caught) == {"tasks"}
    assert len(await service.submit_many([Submission("add", [1, 2])] * 3)) == 3
    assert await service.submit_many([]) == []


# -- looking up, waiting ------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["", "x", "../etc/passwd", "a" * 24, "a" * 200, "é" * 24])
async def test_unknown_or_malformed_ids_are_not_found(service: TaskService,
                                                      task_id: str) -> None:
    with pytest.raises(TaskNotFound):
        await service.get(task_id)
    with pytest.raises(TaskNotFound):
        await service.wait(task_id, 0.01)
    with pytest.raises(TaskNotFound):
        await service.cancel(task_id)
    with pytest.raises(TaskNotFound):
        await service.delete(task_id)


async def test_other_owners_tasks_are_not_found(service: TaskService) -> None:
    record, _ = await service.submit(Submission("add", [1, 2]), owner="alice")
    assert (await service.get(record.id, owner="alice")).id == record.id
    assert (await service.get(record.id)).id == record.id  # no owner: the embedding app
    for call in (service.get(record.id, owner="bob"), service.wait(record.id, 1, owner="bob"),
                 service.cancel(record.id, owner="bob"), service.delete(record.id, owner="bob"),
                 service.subscribe(record.id, owner="bob")):
        with pytest.raises(TaskNotFound):
            await call


async def test_wait_with_timeout_returns_the_record_as_it_is(service: TaskService) -> None:
    record = await submit(service, "wait_for_release", "w")
    await gate("w").wait_started()
    still = await service.wait(record.id, timeout=0.05)
    assert still.status is Status.RUNNING
    assert (await service.wait(record.id, timeout=0)).status is Status.RUNNING
    gate("w").open()
    assert (await service.wait(record.id, timeout=5)).status is Status.SUCCEEDED
    assert (await service.wait(record.id, timeout=0)).status is Status.SUCCEEDED


async def test_many_waiters_all_wake(service: TaskService) -> None:
    record = await submit(service, "wait_for_release", "many")
    waiters = [asyncio.create_task(service.wait(record.id, 5)) for _ in range(10)]
    await gate("many").wait_started()
    gate("many").open()
    assert {r.status for r in await asyncio.gather(*waiters)} == {Status.SUCCEEDED}


async def test_subscribe_to_a_finished_task_gives_no_stream(service: TaskService) -> None:
    record = await submit(service, "add", 1, 2)
    await service.wait(record.id, 5)
    now, subscription = await service.subscribe(record.id)
    assert now.status is Status.SUCCEEDED
    assert subscription is None


# -- cancel and delete --------------------------------------------------------------------


async def test_cancel_rules(service: TaskService) -> None:
    record = await submit(service, "add", 1, 2)
    await service.wait(record.id, 5)
    with pytest.raises(TaskAlreadyTerminal):
        await service.cancel(record.id)
    delayed, _ = await service.submit(Submission("add", [1, 2], delay=60))
    assert (await service.cancel(delayed.id)).status is Status.CANCELLED
    with pytest.raises(TaskAlreadyTerminal):
        await service.cancel(delayed.id)


async def test_delete_rules(service: TaskService) -> None:
    active = await submit(service, "wait_for_release", "d")
    with pytest.raises(TaskStillActive):
        await service.delete(active.id)
    delayed, _ = await service.submit(Submission("add", [1, 2], delay=60))
    with pytest.raises(TaskStillActive):
        await service.delete(delayed.id)
    gate("d").open()
    await service.wait(active.id, 5)
    await service.delete(active.id)
    with pytest.raises(TaskNotFound):
        await service.get(active.id)
    with pytest.raises(TaskNotFound):
        await service.delete(active.id)
    assert [r.id for r in (await service.list())[0]] == [delayed.id]
    await service.cancel(delayed.id)


# -- listing and stats --------------------------------------------------------------------


async def test_list_pages_newest_first_with_a_cursor(service: TaskService) -> None:
    records = await service.submit_many([Submission("add", [i, i]) for i in range(7)])
    expected = [r.id for r in reversed(records)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        items, cursor = await service.list(limit=3, cursor=cursor)
        seen += [r.id for r in items]
        pages += 1
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3


async def test_last_full_page_has_no_next_cursor(service: TaskService) -> None:
    await service.submit_many([Submission("add", [i, i]) for i in range(6)])
    first, cursor = await service.list(limit=3)
    assert cursor is not None
    second, cursor = await service.list(limit=3, cursor=cursor)
    assert len(second) == 3
    assert cursor is None
    assert not {r.id for r in first} & {r.id for r in second}


async def test_cursor_pages_stay_stable_when_new_tasks_arrive(service: TaskService) -> None:
    old = await service.submit_many([Submission("add", [i, i]) for i in range(4)])
    first, cursor = await service.list(limit=2)
    await service.submit_many([Submission("add", [9, 9])] * 3)
    second, _ = await service.list(limit=2, cursor=cursor)
    assert [r.id for r in first + second] == [r.id for r in reversed(old)]


async def test_list_filters(service: TaskService) -> None:
    ok = await submit(service, "add", 1, 2)
    bad = await submit(service, "fail", "x")
    mine, _ = await service.submit(Submission("echo", [1]), owner="me")
    for record in (ok, bad, mine):
        await service.wait(record.id, 5)
    ids = lambda items: [r.id for r in items]  # noqa: E731
    assert ids((await service.list(statuses=["failed"]))[0]) == [bad.id]
    assert ids((await service.list(statuses=["failed", "succeeded"]))[0]) == [
        mine.id, bad.id, ok.id]
    assert ids((await service.list(name="add"))[0]) == [ok.id]
    assert ids((await service.list(owner="me"))[0]) == [mine.id]
    assert ids((await service.list(owner="me", statuses=["failed"]))[0]) == []


@pytest.mark.parametrize("query", [
    {"statuses": ["done"]}, {"statuses": ["QUEUED"]}, {"limit": 0}, {"limit": 1001},
    {"limit": -1}, {"cursor": "forged"}, {"cursor": ""}, {"cursor": "A" * 500},
])
async def test_bad_list_queries(service: TaskService, query: dict[str, Any]) -> None:
    with pytest.raises(BadQuery):
        await service.list(**query)


async def test_cursor_of_another_service_is_refused(service: TaskService,
                                                    make_service: Factory) -> None:
    other = make_service()
    await other.start()
    await other.submit_many([Submission("add", [1, 1])] * 3)
    _, cursor = await other.list(limit=1)
    assert cursor is not None
    with pytest.raises(BadQuery):
        await service.list(cursor=cursor)


async def test_stats_counts_equal_list_counts(service: TaskService) -> None:
    await service.submit_many([Submission("add", [1, 2])] * 3 + [Submission("fail", ["x"])])
    await submit(service, "wait_for_release", "s")
    delayed, _ = await service.submit(Submission("add", [1, 2], delay=60))
    await gate("s").wait_started()
    for record in (await service.list(statuses=["queued"]))[0]:
        await service.wait(record.id, 5)
    stats = await service.stats()
    for status in Status:
        listed = (await service.list(statuses=[status.value], limit=1000))[0]
        assert stats["counts"][status.value] == len(listed), status
    assert stats["counts"]["succeeded"] == 3
    assert stats["counts"]["failed"] == 1
    assert stats["counts"]["running"] == 1
    assert stats["counts"]["scheduled"] == 1
    assert stats["running"] == 1
    assert stats["queue_depth"] == 1
    assert stats["capacity"] == service.settings.max_concurrency
    assert stats["max_queue"] == service.settings.max_queue
    assert stats["uptime_seconds"] >= 0
    assert stats["accepting"] is True
    owner_stats = await service.stats(owner="nobody")
    assert sum(owner_stats["counts"].values()) == 0
    gate("s").open()
    await service.cancel(delayed.id)


# -- eviction -----------------------------------------------------------------------------


async def test_ttl_eviction_drops_only_records_past_their_ttl(make_service: Factory) -> None:
    service = make_service(result_ttl=0.1)
    await service.start()
    early = await submit(service, "add", 1, 2)
    await service.wait(early.id, 5)
    late = await submit(service, "sleep", 0.15)  # finishes after early's TTL has passed
    assert (await service.wait(late.id, 5)).status is Status.SUCCEEDED
    assert await service.evict() == 1  # what the sweeper calls (not each task's path)
    with pytest.raises(TaskNotFound):
        await service.get(early.id)
    assert (await service.get(late.id)).result == 0.15


async def test_ttl_eviction_by_the_sweeper(make_service: Factory) -> None:
    service = make_service(result_ttl=0.05, sweep_interval=0.02)
    evicted = asyncio.Event()
    evict = service.store.evict

    async def watched(finished_before: float, keep_at_most: int) -> int:
        count = await evict(finished_before, keep_at_most)
        if count:
            evicted.set()
        return count

    service.store.evict = watched  # type: ignore[method-assign]
    await service.start()
    record = await submit(service, "add", 1, 2)
    await service.wait(record.id, 5)
    await asyncio.wait_for(evicted.wait(), 5)
    with pytest.raises(TaskNotFound):
        await service.get(record.id)


async def test_max_records_keeps_the_newest(make_service: Factory) -> None:
    service = make_service(max_records=3, max_concurrency=1)
    await service.start()
    records = await service.submit_many([Submission("add", [i, i]) for i in range(8)])
    await service.wait(records[-1].id, 5)  # one slot: the others ended before it
    assert await service.evict() == 5
    kept = [r.id for r in (await service.list())[0]]
    assert kept == [r.id for r in reversed(records[-3:])]


class SweepSignalStore(MemoryStore):
    """Tells each eviction pass to whoever waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.evicted: asyncio.Queue[int] = asyncio.Queue()

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        count = await super().evict(finished_before, keep_at_most)
        self.evicted.put_nowait(count)
        return count


async def test_a_busy_service_sweeps_before_its_interval() -> None:
    # no timed sweep within the test: only the count of finished records can start one
    store = SweepSignalStore()
    service = TaskService(settings(max_records=10, sweep_interval=3600, max_concurrency=1),
                          store)
    service.register_module("service.demo")
    await service.start()
    try:
        for _ in range(3):  # 100 finished records (the least that starts a sweep) a round
            records = await service.submit_many([Submission("add", [1, 2])] * 100)
            await service.wait(records[-1].id, 5)  # one slot: the others ended before it
            async with asyncio.timeout(5):
                assert await store.evicted.get() > 0
            assert (await service.stats())["counts"]["succeeded"] == 10
    finally:
        await service.stop(grace=0.1)


async def test_unfinished_tasks_are_never_evicted(make_service: Factory) -> None:
    service = make_service(max_records=1, result_ttl=0)
    await service.start()
    delayed, _ = await service.submit(Submission("add", [1, 2], delay=60))
    for _ in range(3):
        await service.wait((await submit(service, "add", 1, 2)).id, 5)
        await service.evict()
    assert (await service.get(delayed.id)).status is Status.SCHEDULED
    await service.cancel(delayed.id)


async def test_memory_stays_flat_under_many_tasks(make_service: Factory) -> None:
    service = make_service(max_records=10)
    await service.start()
    for _ in range(4):
        records = await service.submit_many([Submission("add", [1, 2])] * 1000)
        # listen before any of them can finish: most records are evicted soon after
        subscriptions = [service.hub.subscribe(r.id) for r in records]
        async with asyncio.timeout(20):
            for subscription in subscriptions:
                assert [e async for e in subscription][-1].task["status"] == "succeeded"
        await service.evict()
    store = service.store
    assert isinstance(store, MemoryStore)
    assert sum((await service.stats())["counts"].values()) == 10
    assert len(store._records) == 10
    assert all(len(index.ids) <= 2 * 10 + 1024 + 1 for index in store._order.values())
    assert not any(store._with_status[s] for s in ACTIVE)
    assert len(store._finished) == 10
    assert len(store._status_of) == 10
    assert service.runner._jobs == {}
    assert service.hub._finished == {}
    assert service.hub.listener_count() == 0
    assert service.runner.running == 0


# -- recovery and shutdown with a durable store --------------------------------------------


class DurableMemoryStore(MemoryStore):
    """Stands in for a durable store: the core's rules differ only by this flag."""

    durable = True


def durable_service(store: MemoryStore, **overrides: Any) -> TaskService:
    service = TaskService(settings(**overrides), store=store)
    for module in (*TEST_MODULES, RUNNER_TASKS):
        service.register_module(module)
    return service


async def left_behind(store: MemoryStore, name: str, status: Status,
                      args: list[Any]) -> TaskRecord:
    """A record as a process that died would leave it: queued, due, or running under a lease
    that has expired."""
    scheduled = status is Status.SCHEDULED
    running = status is Status.RUNNING  # first in line, so that the claim below takes it
    record = TaskRecord(name=name, args=args, created_at=1.0, priority=1 if running else 0,
                        status=Status.SCHEDULED if scheduled else Status.QUEUED,
                        scheduled_at=0.0 if scheduled else None)
    (record,) = await store.add([record])
    if running:
        (record,) = await store.claim(ClaimRequest("dead-worker", now=2.0, lease=1.0,
                                                   limits={}, excluded=set()))
    return record


async def test_start_takes_back_work_left_by_an_earlier_run() -> None:
    store = DurableMemoryStore()
    queued = await left_behind(store, "add", Status.QUEUED, [1, 2])
    scheduled = await left_behind(store, "add", Status.SCHEDULED, [2, 2])
    rerun = await left_behind(store, "idempotent_echo", Status.RUNNING, [5])
    cut_off = await left_behind(store, "echo", Status.RUNNING, [5])
    unknown = await left_behind(store, "gone_away", Status.QUEUED, [])
    bad_args = await left_behind(store, "add", Status.QUEUED, ["x"])
    service = durable_service(store)
    await service.start()
    try:
        assert (await service.wait(queued.id, 5)).result == 3
        assert (await service.wait(scheduled.id, 5)).result == 4
        again = await service.wait(rerun.id, 5)
        assert again.status is Status.SUCCEEDED
        assert again.attempts == 2
        for record in (cut_off, unknown, bad_args):
            done = await service.wait(record.id, 5)
            assert done.status is Status.FAILED
            assert done.error is not None
            assert done.error.type == "Interrupted"
        assert (await service.stats())["counts"]["running"] == 0
    finally:
        await service.stop(grace=0.1)


async def test_durable_shutdown_keeps_pending_and_idempotent_work() -> None:
    store = DurableMemoryStore()
    service = durable_service(store, max_concurrency=2)
    await service.start()
    idem = await submit(service, "idempotent_gate", "i")
    other = await submit(service, "wait_for_release", "o")
    await gate("i").wait_started()
    await gate("o").wait_started()
    queued = await submit(service, "add", 1, 2)
    delayed, _ = await service.submit(Submission("add", [1, 2], delay=60))
    await service.stop(grace=0.05)
    statuses = {r.id: r.status for r in await store.page(ListQuery(statuses=ACTIVE))}
    assert statuses == {idem.id: Status.QUEUED, queued.id: Status.QUEUED,
                        delayed.id: Status.SCHEDULED}
    cut_off = await store.get(other.id)
    assert cut_off is not None
    assert cut_off.status is Status.FAILED
    assert cut_off.error is not None
    assert cut_off.error.type == "Interrupted"


class SlowAddStore(MemoryStore):
    """A store whose ``add`` awaits (as a real database does) until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.adding = asyncio.Event()
        self.go = asyncio.Event()

    async def add(self, records: Any, max_pending: int | None = None) -> list[TaskRecord]:
        self.adding.set()
        await self.go.wait()
        return await super().add(records, max_pending)


async def test_task_stored_while_stopping_is_not_left_queued() -> None:
    store = SlowAddStore()
    service = TaskService(settings(), store=store)
    service.register_module("service.demo")
    await service.start()
    submitting = asyncio.create_task(service.submit(Submission("add", [1, 2])))
    await store.adding.wait()
    stopping = asyncio.create_task(service.stop(grace=0.1))  # while it is being stored
    await asyncio.sleep(0)
    assert not stopping.done()
    store.go.set()
    record, _ = await submitting
    await stopping
    done = await service.wait(record.id, 5)
    assert done.status is Status.SUCCEEDED  # accepted before the stop: run in the grace


async def test_stop_before_start_and_twice_is_harmless(make_service: Factory) -> None:
    service = make_service()
    await service.stop()
    await service.start()
    await service.stop()
    await service.stop()
    assert not service.started


async def test_a_full_queue_refuses_a_batch_before_checking_its_tasks(
        make_service: Factory) -> None:
    service = make_service(max_queue=3)
    await service.start()
    await service.submit_many([Submission("add", [1, 2], delay=60)] * 2)
    with pytest.raises(InvalidSubmission):  # room for one more: a bad task is refused as such
        await service.submit_many([Submission("add", [1])])
    with pytest.raises(QueueFull):  # no room for two: refused as a whole, unread
        await service.submit_many([Submission("add", [1, 2]), Submission("nope")])
    assert (await service.stats())["queue_depth"] == 2


async def test_metrics_count_what_happened(make_service: Factory) -> None:
    service = make_service(max_queue=2)
    await service.start()
    for record in await service.submit_many([Submission("add", [1, 2])] * 2):
        await service.wait(record.id, 5)
    failed = await submit(service, "fail", "x")
    await service.wait(failed.id, 5)
    flaky = await submit(service, "flaky", 2)
    await service.wait(flaky.id, 5)
    await service.submit_many([Submission("add", [1, 2], delay=60)] * 2)
    with pytest.raises(QueueFull):
        await service.submit(Submission("add", [1, 2]))
    text = (await service.metrics_exposition()).decode()
    assert 'offload_tasks_submitted_total{task="add"} 4.0' in text
    assert 'offload_tasks_finished_total{status="succeeded",task="add"} 2.0' in text
    assert 'offload_tasks_finished_total{status="failed",task="fail"} 1.0' in text
    assert 'offload_tasks_retried_total{task="flaky"} 1.0' in text
    assert 'offload_submissions_rejected_total{reason="queue_full"} 1.0' in text
    assert 'offload_task_duration_seconds_count{task="flaky"} 2.0' in text
    assert "offload_queue_depth 2.0" in text
    assert "offload_running 0.0" in text
    assert f"offload_capacity {float(service.settings.max_concurrency)}" in text


class LaggingStore(MemoryStore):
    """``get`` answers with the record as it was when asked, after a round trip to the loop
    (as a database does): the task may change meanwhile."""

    async def get(self, task_id: str) -> TaskRecord | None:
        record = await super().get(task_id)
        snapshot = copy.deepcopy(record)
        await asyncio.sleep(0)  # the round trip, during which the task runs to its end
        return snapshot


async def lagging_service() -> TaskService:
    service = TaskService(settings(), store=LaggingStore())
    for module in TEST_MODULES:
        service.register_module(module)
    await service.start()
    return service


# add ends during the first look; progress_steps(1) takes two loop turns, so it ends during
# the second look (after wait() has started to listen)
@pytest.mark.parametrize(("name", "args"), [("add", [1, 2]), ("progress_steps", [1])])
async def test_wait_sees_a_task_that_ends_while_it_looks(name: str, args: list[Any]) -> None:
    service = await lagging_service()
    try:
        record = await submit(service, name, *args)
        async with asyncio.timeout(5):  # not the 30 s of the wait: the end is not missed
            done = await service.wait(record.id, timeout=30)
        assert done.status is Status.SUCCEEDED
    finally:
        await service.stop(grace=0.1)


async def test_subscription_ends_for_a_task_that_ends_while_it_looks() -> None:
    service = await lagging_service()
    try:
        record = await submit(service, "add", 1, 2)
        now, subscription = await service.subscribe(record.id)
        async with asyncio.timeout(5):
            if subscription is not None:
                events = [event async for event in subscription]
                assert events[-1].terminal
            else:
                assert now.terminal
    finally:
        await service.stop(grace=0.1)

"""One contract, every store: ``depends_on``. A waiting record is released in the same
step as its last dependency succeeds and cancelled in the same step as one ends otherwise
(service/stores/dependencies.py)."""

from __future__ import annotations

import dataclasses

import pytest

from service.models import Status, TaskError, TaskRecord
from service.stores import TaskStore
from service.stores.base import Outcome, QueueBoundReached
from service.stores.dependencies import DEPENDENCY_FAILED, UnknownDependency

from .contract import NOW, Events, claim, fetch, ids, new


def after(*dependencies: TaskRecord, receives: str | None = None, name: str = "then",
          owner: str | None = None) -> TaskRecord:
    record = new(name, owner=owner)
    record.status = Status.WAITING
    record.depends_on = [d.id for d in dependencies]
    record.receives = receives  # type: ignore[assignment]
    record.args = ["own"]
    return record


async def run(store: TaskStore, record: TaskRecord, status: Status = Status.SUCCEEDED,
              result: object = None) -> TaskRecord:
    """Claim ``record`` (it must be the best startable one) and settle it."""
    (claimed,) = await claim(store)
    assert claimed.id == record.id
    settled = await store.settle(claimed, "w", Outcome(status, NOW + 1, result=result))
    assert settled is not None
    return settled


async def test_a_waiting_record_starts_once_its_dependency_succeeds(store: TaskStore) -> None:
    first = new("first")
    _, waiting = await store.add([first, after(first)])
    assert waiting.status is Status.WAITING
    stored = await fetch(store, waiting.id)
    assert stored.status is Status.WAITING
    assert stored.depends_on == [first.id]
    (claimed,) = await claim(store, limit=5)  # the waiting one is not startable
    assert claimed.id == first.id
    await store.settle(claimed, "w", Outcome(Status.SUCCEEDED, NOW + 1, result=5))
    released = await fetch(store, waiting.id)
    assert released.status is Status.QUEUED
    assert released.args == ["own"]  # it receives nothing unless asked
    (second,) = await claim(store)
    assert second.id == waiting.id


async def test_a_chain_step_receives_the_result_first(store: TaskStore) -> None:
    first = new("first")
    _, step = await store.add([first, after(first, receives="result")])
    await run(store, first, result={"big": 2**70})
    released = await fetch(store, step.id)
    assert released.args == [{"big": 2**70}, "own"]
    assert released.receives == "result"


async def test_a_chord_callback_receives_every_result_in_order(store: TaskStore) -> None:
    a, b, c = new("a"), new("b"), new("c")
    added = await store.add([a, b, c, after(c, a, b, receives="results")])
    callback = added[3]
    for record, result in ((a, 1), (c, None), (b, "two")):
        (claimed,) = await claim(store, excluded={"a", "b", "c"} - {record.name})
        await store.settle(claimed, "w", Outcome(Status.SUCCEEDED, NOW + 1, result=result))
        expected = Status.QUEUED if record is b else Status.WAITING
        assert (await fetch(store, callback.id)).status is expected
    assert (await fetch(store, callback.id)).args == [[None, 1, "two"], "own"]


@pytest.mark.parametrize("ending", [Status.FAILED, Status.CANCELLED])
async def test_a_dependency_that_does_not_succeed_cancels_its_dependants(
        store: TaskStore, ending: Status) -> None:
    first = new("first")
    _, child, grandchild = await store.add([first, child_ := after(first), after(child_)])
    (claimed,) = await claim(store)
    outcome = Outcome(ending, NOW + 2, error=None)
    await store.settle(claimed, "w", outcome)
    for record, cause in ((child, first), (grandchild, child)):
        ended = await fetch(store, record.id)
        assert ended.status is Status.CANCELLED
        assert ended.finished_at == NOW + 2
        assert ended.error is not None
        assert ended.error.type == DEPENDENCY_FAILED
        assert cause.id in ended.error.message
    assert await claim(store) == []


async def test_the_error_says_how_the_dependency_failed(store: TaskStore) -> None:
    first = new("first")
    _, child = await store.add([first, after(first)])
    (claimed,) = await claim(store)
    await store.settle(claimed, "w", Outcome(Status.FAILED, NOW + 1,
                                             error=TaskError("ValueError", "bad input")))
    error = (await fetch(store, child.id)).error
    assert error is not None
    assert error.message == f"dependency {first.id} (first) failed (ValueError: bad input)"


async def test_cancelling_a_dependency_cancels_what_waits_for_it(store: TaskStore) -> None:
    first = new("first")
    _, child, grandchild = await store.add([first, child_ := after(first), after(child_)])
    await store.request_cancel(first.id, NOW + 3)
    for record in (child, grandchild):
        ended = await fetch(store, record.id)
        assert ended.status is Status.CANCELLED
        assert ended.finished_at == NOW + 3


async def test_cancelling_a_waiting_record_cancels_it_and_its_dependants(
        store: TaskStore) -> None:
    first = new("first")
    _, child, grandchild = await store.add([first, child_ := after(first), after(child_)])
    cancelled = await store.request_cancel(child.id, NOW)
    assert cancelled is not None
    assert cancelled.status is Status.CANCELLED
    assert (await fetch(store, grandchild.id)).status is Status.CANCELLED
    await run(store, first)  # its dependency still runs, and frees nothing
    assert (await fetch(store, child.id)).status is Status.CANCELLED


async def test_a_retry_of_a_dependency_releases_nothing(store: TaskStore) -> None:
    first = new("first")
    _, child = await store.add([first, after(first)])
    (claimed,) = await claim(store)
    await store.settle(claimed, "w", Outcome(Status.SCHEDULED, NOW, scheduled_at=NOW + 5))
    assert (await fetch(store, child.id)).status is Status.WAITING
    (again,) = await claim(store, now=NOW + 5)
    await store.settle(again, "w", Outcome(Status.SUCCEEDED, NOW + 6))
    assert (await fetch(store, child.id)).status is Status.QUEUED


async def test_a_dependency_that_succeeded_before_counts_as_done(store: TaskStore) -> None:
    first = new("first")
    await store.add([first])
    await run(store, first, result=7)
    (child,) = await store.add([after(first, receives="result")])
    assert child.status is Status.QUEUED
    assert (await fetch(store, child.id)).args == [7, "own"]
    (claimed,) = await claim(store)
    assert claimed.id == child.id


async def test_a_dependency_that_ended_otherwise_cancels_the_new_record_at_once(
        store: TaskStore) -> None:
    first = new("first")
    await store.add([first])
    await run(store, first, Status.FAILED)
    (child,) = await store.add([after(first)])
    stored = await fetch(store, child.id)
    assert stored.status is Status.CANCELLED
    assert stored.error is not None
    assert first.id in stored.error.message


async def test_an_evicted_dependency_has_left_its_result_behind(store: TaskStore) -> None:
    a, b = new("a"), new("b")
    _, _, callback = await store.add([a, b, after(a, b, receives="results")])
    await run(store, a, result="from a")
    assert await store.evict(NOW + 100, 0) == 1  # a is gone; the callback still waits
    await run(store, b, result="from b")
    assert (await fetch(store, callback.id)).args == [["from a", "from b"], "own"]


@pytest.mark.parametrize("where", ["unknown", "other owner"])
async def test_an_unknown_dependency_adds_nothing(store: TaskStore, where: str) -> None:
    (theirs,) = await store.add([new("theirs", owner="them")])
    missing = new("missing") if where == "unknown" else theirs
    batch = [new("x", owner="me"), new("y", owner="me"), after(missing, owner="me")]
    batch[2].depends_on = [batch[0].id, missing.id]
    with pytest.raises(UnknownDependency) as caught:
        await store.add(batch)
    assert (caught.value.index, caught.value.position) == (2, 1)
    assert await store.get(batch[0].id) is None
    assert await ids(store) == [theirs.id]


async def test_records_of_one_call_may_depend_on_later_ones(store: TaskStore) -> None:
    last = new("last")
    first = after(last)
    added = await store.add([first, last])
    assert [r.status for r in added] == [Status.WAITING, Status.QUEUED]
    await run(store, last)
    assert (await fetch(store, first.id)).status is Status.QUEUED


async def test_waiting_records_count_toward_the_queue_bound(store: TaskStore) -> None:
    first = new("first")
    await store.add([first, after(first)])
    counts = await store.count_by_status()
    assert counts[Status.WAITING] == 1
    with pytest.raises(QueueBoundReached):
        await store.add([new()], max_pending=2)
    assert await ids(store, statuses=frozenset({Status.WAITING}))
    assert await store.next_due() is None


async def test_a_release_and_a_cascade_are_reported(store: TaskStore, events: Events) -> None:
    first, other = new("first"), new("other")
    _, _, child, cancelled = await store.add([first, other, after(first), after(other)])
    events.clear()
    await run(store, first)
    await store.request_cancel(other.id, NOW)
    seen = [(record.id, record.status) for kind, record in events if kind == "status"]
    assert (child.id, Status.QUEUED) in seen
    assert (cancelled.id, Status.CANCELLED) in seen
    assert seen.index((first.id, Status.SUCCEEDED)) < seen.index((child.id, Status.QUEUED))


async def test_depends_on_is_kept_as_given(store: TaskStore) -> None:
    a, b = new("a"), new("b")
    _, _, child = await store.add([a, b, after(b, a)])
    stored = await fetch(store, child.id)
    assert stored.depends_on == [b.id, a.id]
    assert stored.receives is None
    plain = await fetch(store, a.id)
    assert plain.depends_on == []
    assert plain.receives is None
    assert dataclasses.replace(stored).to_json()["depends_on"] == [b.id, a.id]

"""One contract, every store: the life of a task (claim, cancel, settle, leases, progress,
listeners), against every backend (conftest.py's ``store``). Progress may be written late:
``flush`` waits for it where a store has such a method.
"""

from __future__ import annotations

import dataclasses

import pytest

from service.models import Progress, Status, TaskError
from service.stores import TaskStore
from service.stores.base import Outcome

from .contract import LEASE, NOW, Events, claim, fetch, flush, new, succeed

# -- claiming ----------------------------------------------------------------------------

async def test_claim_takes_highest_priority_then_oldest(store: TaskStore) -> None:
    low, high, low2, high2 = await store.add([new(priority=0), new(priority=5),
                                              new(priority=0), new(priority=5)])
    order = [r.id for r in await claim(store, limit=3)]
    assert order == [high.id, high2.id, low.id]
    assert [r.id for r in await claim(store, limit=3)] == [low2.id]
    assert await claim(store) == []


async def test_claim_starts_an_attempt_under_a_lease(store: TaskStore) -> None:
    (added,) = await store.add([new()])
    (claimed,) = await claim(store, worker="w1")
    assert claimed.id == added.id
    for record in (claimed, await fetch(store, added.id)):
        assert record.status is Status.RUNNING
        assert record.attempts == 1
        assert record.started_at == NOW
        assert record.progress is None
        assert record.lease_owner == "w1"
        assert record.lease_expires == NOW + LEASE


async def test_claim_with_nothing_to_do(store: TaskStore) -> None:
    assert await claim(store, limit=5) == []
    await store.add([new()])
    assert await claim(store, limit=0) == []


async def test_scheduled_records_start_only_when_due(store: TaskStore) -> None:
    later, sooner = await store.add([new(scheduled_at=NOW + 20), new(scheduled_at=NOW + 10)])
    assert await store.next_due() == NOW + 10
    assert await claim(store, now=NOW + 9) == []
    (first,) = await claim(store, now=NOW + 10)
    assert first.id == sooner.id
    assert await store.next_due() == NOW + 20
    (second,) = await claim(store, now=NOW + 30)
    assert second.id == later.id
    assert await store.next_due() is None


async def test_due_records_take_their_turn_by_priority_and_seq(store: TaskStore) -> None:
    queued, due = await store.add([new(), new(priority=1, scheduled_at=NOW - 1)])
    assert [r.id for r in await claim(store, limit=2)] == [due.id, queued.id]


async def test_next_due_without_scheduled_records(store: TaskStore) -> None:
    assert await store.next_due() is None
    await store.add([new()])
    assert await store.next_due() is None


async def test_claim_skips_excluded_names(store: TaskStore) -> None:
    _a, b = await store.add([new("a"), new("b")])
    assert [r.id for r in await claim(store, limit=2, excluded={"a"})] == [b.id]


async def test_claim_respects_limits_counting_running_records(store: TaskStore) -> None:
    a1, a2, b = await store.add([new("a"), new("a"), new("b")])
    (first,) = await claim(store, limits={"a": 1})
    assert first.id == a1.id
    assert [r.id for r in await claim(store, limit=5, limits={"a": 1})] == [b.id]
    await succeed(store, first)
    assert [r.id for r in await claim(store, limits={"a": 1})] == [a2.id]


async def test_one_claim_of_several_respects_limits_among_its_picks(store: TaskStore) -> None:
    records = await store.add([new("a"), new("a"), new("a"), new("b")])
    claimed = await claim(store, limit=4, limits={"a": 2, "b": 5})
    assert [r.id for r in claimed] == [records[0].id, records[1].id, records[3].id]


async def test_claim_finds_work_behind_many_names_that_cannot_start(store: TaskStore) -> None:
    await store.add([new("blocked", priority=9) for _ in range(60)])
    await store.add([new("capped", priority=5) for _ in range(60)])
    (wanted,) = await store.add([new("free")])
    claimed = await claim(store, limit=2, excluded={"blocked"}, limits={"capped": 0})
    assert [r.id for r in claimed] == [wanted.id]


async def test_one_claim_takes_no_more_of_a_pool_than_its_free_slots(store: TaskStore) -> None:
    # "p1" and "p2" share one executor with 2 free slots here; "a" is not pooled
    records = await store.add([new("p1", priority=9), new("p2", priority=9),
                               new("p1", priority=9), new("a"), new("a"), new("a")])
    claimed = await claim(store, limit=5, pools=[(("p1", "p2"), 2)])
    assert [r.id for r in claimed] == [records[i].id for i in (0, 1, 3, 4, 5)]
    (last,) = await claim(store, limit=5, pools=[(("p1", "p2"), 1)])
    assert last.id == records[2].id


async def test_a_used_up_pool_leaves_the_rest_claimable(store: TaskStore) -> None:
    await store.add([new("p", priority=9) for _ in range(60)])
    (wanted,) = await store.add([new("a")])
    assert [r.id for r in await claim(store, limit=3, pools=[(("p",), 0)])] == [wanted.id]


async def test_claimed_records_are_not_claimed_again(store: TaskStore) -> None:
    added = await store.add([new() for _ in range(10)])
    first = await claim(store, limit=4, worker="w1")
    second = await claim(store, limit=10, worker="w2")
    assert sorted(r.id for r in first + second) == sorted(r.id for r in added)


# -- cancelling --------------------------------------------------------------------------

async def test_cancel_a_queued_record(store: TaskStore) -> None:
    (added,) = await store.add([new()])
    cancelled = await store.request_cancel(added.id, NOW)
    assert cancelled is not None
    got = await fetch(store, added.id)
    for record in (cancelled, got):
        assert record.status is Status.CANCELLED
        assert record.finished_at == NOW
        assert record.cancel_requested
    assert await claim(store) == []


async def test_cancel_a_scheduled_record(store: TaskStore) -> None:
    (added,) = await store.add([new(scheduled_at=NOW + 5)])
    await store.request_cancel(added.id, NOW)
    assert (await fetch(store, added.id)).status is Status.CANCELLED
    assert await store.next_due() is None
    assert await claim(store, now=NOW + 10) == []


async def test_cancel_a_running_record_asks_its_runner(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    answer = await store.request_cancel(running.id, NOW)
    assert answer is not None
    assert answer.status is Status.RUNNING
    assert answer.cancel_requested
    assert await store.renew("w", [running.id], NOW, LEASE) == {running.id: True}
    settled = await store.settle(running, "w", Outcome(Status.CANCELLED, NOW + 1))
    assert settled is not None
    assert settled.status is Status.CANCELLED


async def test_cancel_leaves_finished_records_alone(store: TaskStore) -> None:
    (added,) = await store.add([new()])
    (running,) = await claim(store)
    await succeed(store, running, at=NOW + 1)
    answer = await store.request_cancel(added.id, NOW + 2)
    assert answer is not None
    assert (answer.status, answer.finished_at) == (Status.SUCCEEDED, NOW + 1)
    got = await fetch(store, added.id)
    assert (got.status, got.cancel_requested) == (Status.SUCCEEDED, False)


async def test_cancel_unknown_is_none(store: TaskStore) -> None:
    assert await store.request_cancel("nope", NOW) is None


@pytest.mark.parametrize("handed_back", [Status.SCHEDULED, Status.QUEUED])
async def test_a_cancel_requested_record_never_runs_again(store: TaskStore,
                                                          handed_back: Status) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    await store.request_cancel(running.id, NOW)
    error = TaskError("Boom", "failed")
    settled = await store.settle(running, "w", Outcome(handed_back, NOW + 2, error=error,
                                                       scheduled_at=NOW + 3))
    assert settled is not None
    assert (settled.status, settled.finished_at) == (Status.CANCELLED, NOW + 2)
    assert (await fetch(store, running.id)).status is Status.CANCELLED
    assert await claim(store, now=NOW + 10) == []


# -- settling ----------------------------------------------------------------------------

async def test_settle_success(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    settled = await store.settle(running, "w", Outcome(Status.SUCCEEDED, NOW + 1,
                                                       result={"n": 2**80}))
    got = await fetch(store, running.id)
    for record in (settled, got):
        assert record is not None
        assert record.status is Status.SUCCEEDED
        assert record.result == {"n": 2**80}
        assert record.finished_at == NOW + 1
        assert record.error is None
        assert (record.lease_owner, record.lease_expires) == (None, None)


async def test_settle_failure_keeps_the_error(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    error = TaskError("ValueError", "bad", "Traceback ...")
    await store.settle(running, "w", Outcome(Status.FAILED, NOW + 1, error=error))
    got = await fetch(store, running.id)
    assert got.status is Status.FAILED
    assert got.error == error


async def test_settle_for_a_retry_schedules_the_next_attempt(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    error = TaskError("Flaky", "try again")
    settled = await store.settle(running, "w", Outcome(Status.SCHEDULED, NOW + 1, error=error,
                                                       scheduled_at=NOW + 5))
    assert settled is not None
    got = await fetch(store, running.id)
    assert (got.status, got.scheduled_at, got.error) == (Status.SCHEDULED, NOW + 5, error)
    assert got.finished_at is None
    assert await store.next_due() == NOW + 5
    assert await claim(store, now=NOW + 4) == []
    (again,) = await claim(store, now=NOW + 5, worker="w2")
    assert (again.attempts, again.lease_owner, again.error) == (2, "w2", error)


async def test_settle_handing_back_queues_it_again(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    await store.settle(running, "w", Outcome(Status.QUEUED, NOW + 1))
    got = await fetch(store, running.id)
    assert (got.status, got.lease_owner) == (Status.QUEUED, None)
    (again,) = await claim(store)
    assert again.attempts == 2


async def test_settle_is_conditional(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store, worker="w")
    done = Outcome(Status.SUCCEEDED, NOW + 1)
    assert await store.settle(running, "other", done) is None
    stale = dataclasses.replace(running, attempts=0)
    assert await store.settle(stale, "w", done) is None
    assert (await fetch(store, running.id)).status is Status.RUNNING
    assert await store.settle(running, "w", done) is not None
    failed = Outcome(Status.FAILED, NOW + 2, error=TaskError("X", "late"))
    assert await store.settle(running, "w", failed) is None
    got = await fetch(store, running.id)
    assert (got.status, got.finished_at) == (Status.SUCCEEDED, NOW + 1)


async def test_settle_of_a_record_never_claimed_is_none(store: TaskStore) -> None:
    (queued,) = await store.add([new()])
    assert await store.settle(queued, "w", Outcome(Status.SUCCEEDED, NOW)) is None
    assert (await fetch(store, queued.id)).status is Status.QUEUED


async def test_settle_to_a_forbidden_status_is_an_error(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    with pytest.raises(ValueError, match="running"):
        await store.settle(running, "w", Outcome(Status.RUNNING, NOW))
    assert (await fetch(store, running.id)).status is Status.RUNNING


# -- leases ------------------------------------------------------------------------------

async def test_renew_extends_held_leases_and_drops_lost_ones(store: TaskStore) -> None:
    await store.add([new(), new(), new()])
    mine, cancelled, other = await claim(store, limit=2, worker="w") + await claim(
        store, worker="w2")
    await store.request_cancel(cancelled.id, NOW)
    held = await store.renew("w", [mine.id, cancelled.id, other.id, "nope"], NOW + 5, LEASE)
    assert held == {mine.id: False, cancelled.id: True}
    assert (await fetch(store, mine.id)).lease_expires == NOW + 5 + LEASE
    assert (await fetch(store, other.id)).lease_expires == NOW + LEASE
    await succeed(store, mine)
    assert await store.renew("w", [mine.id], NOW + 6, LEASE) == {}
    assert await store.renew("w", [], NOW + 6, LEASE) == {}


async def test_reclaim_takes_only_expired_leases(store: TaskStore) -> None:
    await store.add([new(), new()])
    (old,) = await claim(store, worker="dead", now=NOW)
    (fresh,) = await claim(store, worker="alive", now=NOW + 20)
    assert await store.reclaim("me", NOW + LEASE, LEASE) == []  # expires at, not before
    taken = await store.reclaim("me", NOW + LEASE + 1, LEASE)
    assert [r.id for r in taken] == [old.id]
    assert (taken[0].lease_owner, taken[0].lease_expires) == ("me", NOW + 2 * LEASE + 1)
    assert taken[0].attempts == 1
    assert (await fetch(store, fresh.id)).lease_owner == "alive"
    assert await store.settle(old, "dead", Outcome(Status.SUCCEEDED, NOW)) is None
    assert await store.settle(taken[0], "me", Outcome(Status.FAILED, NOW + 32)) is not None
    assert await store.renew("dead", [old.id], NOW + 40, LEASE) == {}


# -- progress ----------------------------------------------------------------------------

async def test_progress_is_stored_and_never_goes_backwards(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    for step in range(1, 6):
        assert await store.save_progress(running, "w", Progress(step, 5, f"step {step}"))
    await flush(store)
    assert (await fetch(store, running.id)).progress == Progress(5, 5, "step 5")
    assert await store.save_progress(running, "w", Progress(6, 9))
    await flush(store)
    assert (await fetch(store, running.id)).progress == Progress(6, 9)


async def test_progress_saved_before_settling_survives_it(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    for step in range(1, 4):
        await store.save_progress(running, "w", Progress(step, 3))
    await succeed(store, running)
    await flush(store)
    assert (await fetch(store, running.id)).progress == Progress(3, 3)


async def test_progress_of_an_attempt_not_held_is_refused(store: TaskStore) -> None:
    await store.add([new()])
    (claimed,) = await claim(store, worker="w")
    running = dataclasses.replace(claimed)  # this attempt, whatever becomes of the record
    assert not await store.save_progress(running, "other", Progress(1))
    await store.settle(running, "w", Outcome(Status.SCHEDULED, NOW, scheduled_at=NOW))
    assert not await store.save_progress(running, "w", Progress(2))
    (again,) = await claim(store, worker="w")
    assert not await store.save_progress(running, "w", Progress(3))  # the first attempt's
    assert await store.save_progress(again, "w", Progress(4))
    await flush(store)
    assert (await fetch(store, again.id)).progress == Progress(4)


async def test_a_new_attempt_starts_without_progress(store: TaskStore) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    await store.save_progress(running, "w", Progress(1, 2))
    await store.settle(running, "w", Outcome(Status.QUEUED, NOW))
    (again,) = await claim(store)
    await flush(store)
    assert again.progress is None
    assert (await fetch(store, again.id)).progress is None


# -- listeners ---------------------------------------------------------------------------

async def test_every_change_is_reported_at_once(store: TaskStore, events: Events) -> None:
    (added,) = await store.add([new()])
    events.clear()  # adding a record is not a change of one
    (running,) = await claim(store)
    assert [(k, r.id, r.status) for k, r in events] == [("status", added.id, Status.RUNNING)]
    await store.save_progress(running, "w", Progress(1, 2))
    kind, record = events[-1]
    assert (kind, record.progress) == ("progress", Progress(1, 2))
    await store.request_cancel(added.id, NOW)
    kind, record = events[-1]
    assert (kind, record.cancel_requested) == ("status", True)
    await store.settle(running, "w", Outcome(Status.CANCELLED, NOW + 1))
    kind, record = events[-1]
    assert (kind, record.status) == ("status", Status.CANCELLED)


async def test_cancel_of_a_queued_record_is_reported(store: TaskStore, events: Events) -> None:
    (added,) = await store.add([new()])
    events.clear()
    await store.request_cancel(added.id, NOW)
    assert [(k, r.id, r.status) for k, r in events] == [("status", added.id,
                                                         Status.CANCELLED)]


async def test_refused_changes_are_not_reported(store: TaskStore, events: Events) -> None:
    await store.add([new()])
    (running,) = await claim(store)
    events.clear()
    await store.settle(running, "other", Outcome(Status.SUCCEEDED, NOW))
    await store.save_progress(running, "other", Progress(1))
    assert events == []


async def test_a_store_reports_none_of_its_own_changes_as_others(store: TaskStore) -> None:
    cursor, changes = await store.changes_since(None)
    assert changes == []
    (added,) = await store.add([new()])
    await claim(store)
    await store.request_cancel(added.id, NOW)
    _, changes = await store.changes_since(cursor)
    assert changes == []



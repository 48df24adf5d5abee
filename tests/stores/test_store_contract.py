"""One contract, every store: the rules of :class:`TaskStore` (service/stores/base.py).

Records handed back may be copies (SQLite, the copying store), so the tests always read a
record again through the store and compare fields, never identities. Progress may be
written late: ``flush`` waits for it where a store has such a method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.models import TERMINAL, Progress, Status, TaskError, TaskRecord
from service.stores import ListQuery, TaskStore, open_store
from service.stores.base import ChangeKind, ClaimRequest, Outcome, QueueBoundReached

from .copying import CopyingStore

NOW = 1000.0
LEASE = 30.0

STORES = [
    pytest.param(lambda tmp: open_store("memory://"), id="memory"),
    pytest.param(lambda tmp: open_store(f"sqlite:///{tmp}/tasks.db"), id="sqlite"),
    pytest.param(lambda tmp: CopyingStore(), id="copying"),
]

Events = list[tuple[ChangeKind, TaskRecord]]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    make: Callable[[Path], TaskStore] = request.param
    opened = make(tmp_path)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def events(store: TaskStore) -> Events:
    seen: Events = []
    store.on_change = lambda kind, record: seen.append((kind, record))
    return seen


def new(name: str = "t", owner: str | None = None, key: str | None = None,
        priority: int = 0, scheduled_at: float | None = None) -> TaskRecord:
    return TaskRecord(name=name, args=[1, {"x": [2**70]}], kwargs={"k": "v"}, owner=owner,
                      idempotency_key=key, request_hash=None if key is None else "h" + key,
                      created_at=100.0, max_attempts=3, priority=priority, timeout=5.0,
                      status=Status.QUEUED if scheduled_at is None else Status.SCHEDULED,
                      scheduled_at=scheduled_at)


async def claim(store: TaskStore, limit: int = 1, worker: str = "w", now: float = NOW,
                **options: object) -> list[TaskRecord]:
    return await store.claim(ClaimRequest(worker, now, LEASE, limit, **options))  # type: ignore[arg-type]


async def succeed(store: TaskStore, record: TaskRecord, at: float = NOW + 1,
                  worker: str = "w", status: Status = Status.SUCCEEDED) -> TaskRecord:
    settled = await store.settle(record, worker, Outcome(status, at, result={"done": at}))
    assert settled is not None
    return settled


async def fetch(store: TaskStore, task_id: str) -> TaskRecord:
    record = await store.get(task_id)
    assert record is not None
    return record


async def ids(store: TaskStore, **query: object) -> list[str]:
    return [r.id for r in await store.page(ListQuery(**query))]  # type: ignore[arg-type]


async def flush(store: TaskStore) -> None:
    """Wait for coalesced progress to be written (stores that write at once have none)."""
    flushing = getattr(store, "flush", None)
    if flushing is not None:
        await flushing()


# -- adding and reading ------------------------------------------------------------------

async def test_add_then_get_round_trips_every_field(store: TaskStore) -> None:
    (added,) = await store.add([new(owner="o", key="k", priority=3)])
    got = await fetch(store, added.id)
    for field in ("id", "name", "args", "kwargs", "status", "priority", "owner", "timeout",
                  "idempotency_key", "request_hash", "created_at", "max_attempts", "seq",
                  "attempts", "cancel_requested", "progress", "result", "error"):
        assert getattr(got, field) == getattr(added, field), field
    assert got.args == [1, {"x": [2**70]}]  # beyond 64 bits, still an int


async def test_get_unknown_is_none(store: TaskStore) -> None:
    assert await store.get("nope") is None


async def test_add_assigns_growing_seq_never_reused(store: TaskStore) -> None:
    first = await store.add([new(), new()])
    second = await store.add([new()])
    seqs = [r.seq for r in first + second]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] > 0
    await store.request_cancel(second[0].id, NOW)
    assert await store.delete(second[0].id)
    (third,) = await store.add([new()])
    assert third.seq > seqs[-1]


async def test_add_nothing_is_fine(store: TaskStore) -> None:
    assert await store.add([]) == []
    assert await store.page(ListQuery()) == []


async def test_add_keeps_the_order_of_the_batch(store: TaskStore) -> None:
    records = [new(name=f"n{i}") for i in range(5)]
    added = await store.add(records)
    assert [r.id for r in added] == [r.id for r in records]


async def test_scheduled_records_are_added_scheduled(store: TaskStore) -> None:
    (added,) = await store.add([new(scheduled_at=NOW + 50)])
    got = await fetch(store, added.id)
    assert (got.status, got.scheduled_at) == (Status.SCHEDULED, NOW + 50)


# -- idempotency -------------------------------------------------------------------------

async def test_idempotency_key_returns_the_stored_record(store: TaskStore) -> None:
    (first,) = await store.add([new(owner="x", key="k")])
    again = new(owner="x", key="k")
    (answer,) = await store.add([again])
    assert answer.id == first.id != again.id
    assert answer.request_hash == "hk"
    assert len(await ids(store)) == 1


async def test_idempotency_is_per_owner(store: TaskStore) -> None:
    mine, theirs, anonymous = await store.add([new(owner="x", key="k"),
                                               new(owner="y", key="k"), new(key="k")])
    assert len({mine.id, theirs.id, anonymous.id}) == 3
    answers = await store.add([new(owner="y", key="k"), new(key="k"), new(owner="x", key="j")])
    assert [a.id for a in answers[:2]] == [theirs.id, anonymous.id]
    assert answers[2].id not in {mine.id, theirs.id, anonymous.id}
    assert len(await ids(store)) == 4


async def test_idempotency_key_twice_in_one_batch_is_one_record(store: TaskStore) -> None:
    added = await store.add([new(key="k"), new(key="k")])
    assert added[0].id == added[1].id
    assert len(await ids(store)) == 1


async def test_idempotency_key_is_forgotten_with_its_record(store: TaskStore) -> None:
    (first,) = await store.add([new(owner="x", key="k")])
    await store.request_cancel(first.id, NOW)
    assert await store.delete(first.id)
    (second,) = await store.add([new(owner="x", key="k")])
    assert second.id != first.id
    assert await ids(store) == [second.id]


# -- the queue bound ---------------------------------------------------------------------

async def test_queue_bound_counts_queued_and_scheduled(store: TaskStore) -> None:
    await store.add([new(), new(scheduled_at=NOW + 9)], max_pending=2)
    with pytest.raises(QueueBoundReached):
        await store.add([new()], max_pending=2)
    await store.add([new()], max_pending=None)  # no bound given, none applies
    assert (await store.count_by_status())[Status.QUEUED] == 2


async def test_queue_bound_is_all_or_nothing(store: TaskStore) -> None:
    await store.add([new()], max_pending=3)
    with pytest.raises(QueueBoundReached):
        await store.add([new(), new(), new()], max_pending=3)
    assert len(await ids(store)) == 1
    await store.add([new(), new()], max_pending=3)
    assert len(await ids(store)) == 3


async def test_running_and_finished_records_leave_room(store: TaskStore) -> None:
    await store.add([new(), new(), new()], max_pending=3)
    _running, done = await claim(store, limit=2)
    await succeed(store, done)
    await store.add([new(), new()], max_pending=3)
    assert (await store.count_by_status())[Status.QUEUED] == 3


async def test_repeating_a_stored_key_at_the_bound_answers_the_record(store: TaskStore) -> None:
    (first,) = await store.add([new(key="k")], max_pending=1)
    (again,) = await store.add([new(key="k")], max_pending=1)
    assert again.id == first.id


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
    assert events[-1][0] == "progress"
    assert events[-1][1].progress == Progress(1, 2)
    await store.request_cancel(added.id, NOW)
    assert events[-1][0] == "status"
    assert events[-1][1].cancel_requested
    await store.settle(running, "w", Outcome(Status.CANCELLED, NOW + 1))
    assert (events[-1][0], events[-1][1].status) == ("status", Status.CANCELLED)


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


# -- listing and counting ----------------------------------------------------------------

async def test_delete_only_forgets_finished_records(store: TaskStore) -> None:
    keep, gone, queued = await store.add([new(), new(), new(priority=-1)])
    await store.request_cancel(gone.id, NOW)
    assert await store.delete(queued.id) is False
    assert await store.delete(gone.id) is True
    assert await store.delete(gone.id) is False
    assert await store.delete("nope") is False
    assert await store.get(gone.id) is None
    assert await ids(store) == [queued.id, keep.id]


async def test_page_is_newest_first_with_limit_and_before_seq(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(7)])
    newest_first = [r.id for r in reversed(records)]
    assert await ids(store) == newest_first
    assert await ids(store, limit=3) == newest_first[:3]
    assert await ids(store, limit=3, before_seq=records[4].seq) == newest_first[3:6]
    assert await ids(store, before_seq=records[0].seq) == []


async def test_paging_skips_deleted_records(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(5)])
    for gone in (records[3], records[1]):
        await store.request_cancel(gone.id, NOW)
        await store.delete(gone.id)
    assert await ids(store, limit=2) == [records[4].id, records[2].id]
    assert await ids(store, before_seq=records[2].seq) == [records[0].id]


async def test_page_filters_by_status_name_and_owner(store: TaskStore) -> None:
    a = await store.add([new("a", owner="x"), new("b", owner="x"), new("a", owner="y"),
                         new("a")])
    running = await claim(store, limit=3)
    await succeed(store, running[0])
    await succeed(store, running[2], status=Status.FAILED)
    assert await ids(store, name="a") == [a[3].id, a[2].id, a[0].id]
    assert await ids(store, owner="x") == [a[1].id, a[0].id]
    assert await ids(store, statuses=frozenset({Status.QUEUED})) == [a[3].id]
    assert await ids(store, statuses=frozenset({Status.RUNNING})) == [a[1].id]
    assert await ids(store, statuses=frozenset(TERMINAL)) == [a[2].id, a[0].id]
    assert await ids(store, name="a", owner="x") == [a[0].id]
    assert await ids(store, name="a", statuses=frozenset({Status.FAILED}), owner="y") == [
        a[2].id]
    assert await ids(store, name="zzz") == []
    assert await ids(store, statuses=frozenset()) == []


async def test_filtered_page_fills_its_limit(store: TaskStore) -> None:
    records = await store.add([new("a" if i % 3 == 0 else "b") for i in range(30)])
    wanted = [r.id for r in reversed(records) if r.name == "a"]
    assert await ids(store, name="a", limit=4) == wanted[:4]
    assert await ids(store, name="a", limit=4, before_seq=records[15].seq) == [
        r.id for r in reversed(records[:15]) if r.name == "a"][:4]


async def test_active_status_filters_page_with_before_seq_and_owner(store: TaskStore) -> None:
    records = await store.add([new(owner="x" if i % 2 else None) for i in range(12)])
    running = await claim(store, limit=8)
    for record in running[::2]:
        await succeed(store, record)
    current = {r.id: r for r in await store.page(ListQuery(limit=100))}
    active = frozenset({Status.QUEUED, Status.RUNNING})
    expected = [r.id for r in reversed(records) if current[r.id].status in active]
    assert await ids(store, statuses=active) == expected
    assert await ids(store, statuses=active, limit=3) == expected[:3]
    middle = records[6].seq
    assert await ids(store, statuses=active, before_seq=middle) == [
        r.id for r in reversed(records[:6]) if current[r.id].status in active]
    assert await ids(store, statuses=frozenset({Status.RUNNING}), owner="x") == [
        r.id for r in reversed(records)
        if current[r.id].status is Status.RUNNING and r.owner == "x"]


async def test_count_by_status(store: TaskStore) -> None:
    records = await store.add([new(owner="x"), new(owner="x"), new(owner="y"), new()])
    first, _second = await claim(store, limit=2)
    await succeed(store, first)
    counts = await store.count_by_status()
    assert set(counts) == set(Status)
    assert counts == {Status.QUEUED: 2, Status.SCHEDULED: 0, Status.RUNNING: 1,
                      Status.SUCCEEDED: 1, Status.FAILED: 0, Status.CANCELLED: 0}
    mine = await store.count_by_status("x")
    assert set(mine) == set(Status)
    assert (mine[Status.QUEUED], mine[Status.RUNNING], mine[Status.SUCCEEDED]) == (0, 1, 1)
    assert sum((await store.count_by_status("nobody")).values()) == 0
    await store.delete(records[0].id)
    assert (await store.count_by_status())[Status.SUCCEEDED] == 0
    assert (await store.count_by_status("x"))[Status.SUCCEEDED] == 0


# -- eviction ----------------------------------------------------------------------------

async def test_evict_by_ttl_drops_only_terminal_records_finished_before(
    store: TaskStore,
) -> None:
    old, fresh, queued, running = await store.add([new(), new(), new(), new(priority=1)])
    await store.request_cancel(old.id, 100.0)
    await store.request_cancel(fresh.id, 300.0)
    await claim(store)
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 1
    assert await store.get(old.id) is None
    for kept in (fresh, queued, running):
        assert await store.get(kept.id) is not None
    assert await store.evict(finished_before=200.0, keep_at_most=1000) == 0


async def test_evict_by_count_drops_oldest_finished_first(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(6)])
    for at, index in enumerate((1, 3, 4, 0, 2), start=1):  # finishing out of seq order
        await store.request_cancel(records[index].id, float(at))
    assert await store.evict(finished_before=0.0, keep_at_most=2) == 3
    assert await ids(store) == [records[5].id, records[2].id, records[0].id]
    assert (await store.count_by_status())[Status.CANCELLED] == 2


async def test_evict_never_drops_unfinished_records(store: TaskStore) -> None:
    await store.add([new() for _ in range(5)])
    await claim(store, limit=2)
    assert await store.evict(finished_before=10**12, keep_at_most=0) == 0
    assert len(await ids(store)) == 5


async def test_evict_to_zero(store: TaskStore) -> None:
    records = await store.add([new(), new()])
    for record in records:
        await store.request_cancel(record.id, 1.0)
    assert await store.evict(finished_before=0.0, keep_at_most=0) == 2
    assert await ids(store) == []


async def test_many_records_and_evictions_keep_paging_right(store: TaskStore) -> None:
    records = await store.add([new() for _ in range(3000)])
    for record in records[:2990]:
        await store.request_cancel(record.id, 1.0)
    assert await store.evict(finished_before=2.0, keep_at_most=10**6) == 2990
    assert await ids(store) == [r.id for r in reversed(records[2990:])]
    assert await ids(store, limit=3, before_seq=records[2995].seq) == [
        r.id for r in reversed(records[2992:2995])]


# -- the rest ----------------------------------------------------------------------------

async def test_cursor_key_is_stable(store: TaskStore) -> None:
    key = await store.cursor_key()
    assert len(key) >= 32
    assert await store.cursor_key() == key


async def test_pending_records_at_the_end(store: TaskStore) -> None:
    queued, scheduled, running = await store.add([new(), new(scheduled_at=NOW + 50),
                                                  new(priority=1)])
    await claim(store)
    await store.abandon_pending(NOW, TaskError("Interrupted", "the end"))
    statuses = {r.id: (await fetch(store, r.id)).status for r in (queued, scheduled, running)}
    if store.durable:  # they run on the next start
        assert statuses == {queued.id: Status.QUEUED, scheduled.id: Status.SCHEDULED,
                            running.id: Status.RUNNING}
    else:
        assert statuses == {queued.id: Status.FAILED, scheduled.id: Status.FAILED,
                            running.id: Status.RUNNING}
        assert (await fetch(store, queued.id)).error == TaskError("Interrupted", "the end")


@pytest.mark.parametrize("url", ["redis://localhost", "memory", "", "sqlite:/x.db",
                                 "sqlite://host/x.db", "sqlite:///", "sqlite:///:memory:",
                                 "sqlite:///x.db?nope=1", "sqlite:///x.db?busy_timeout=soon",
                                 "sqlite:///x.db?synchronous=off"])
def test_unknown_store_urls_are_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="OFFLOAD_STORE") as failure:
        open_store(url)
    assert repr(url) in str(failure.value)


def test_unsupported_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"memory://.*sqlite:///"):
        open_store("postgres://db/tasks")


def test_store_flags() -> None:
    assert open_store("memory://").durable is False
    assert open_store("MEMORY://").shared is False
    sqlite = open_store("sqlite:///tasks.db")
    assert (sqlite.durable, sqlite.shared) == (True, True)

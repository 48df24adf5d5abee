"""The service-wide feed: ids, the resume buffer, bounded queues, owners, the stream limit,
closing, and a hot path that costs nothing while nobody reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import ClassVar

import pytest

from service import TaskService, feed
from service.errors import ShuttingDown
from service.events import EventHub
from service.feed import Feed, FeedEvent, FeedReader, Reset, TooManyReaders
from service.models import JSON, Progress, Status, Submission, TaskRecord


class CountingRecord(TaskRecord):
    """A record that counts how often it is turned into JSON (the cost of an event)."""

    encoded: ClassVar[int] = 0

    def to_json(self, include_traceback: bool = False) -> dict[str, JSON]:
        CountingRecord.encoded += 1
        return super().to_json(include_traceback)


def record(owner: str | None = None, status: Status = Status.RUNNING) -> TaskRecord:
    return TaskRecord(name="t", status=status, owner=owner)


def status_events(feed_: Feed, records: list[TaskRecord]) -> None:
    for each in records:
        feed_.publish("status", each)


def progress(feed_: Feed, task: TaskRecord, current: int) -> None:
    task.progress = Progress(current, 100)
    feed_.publish("progress", task)


async def read_all(reader: FeedReader) -> list[FeedEvent | Reset]:
    """Everything queued for the reader now (it is not waited for: idle 0)."""
    found: list[FeedEvent | Reset] = []
    while (item := await reader.next(0)) is not None:
        found.append(item)
    return found


def task_ids(items: list[FeedEvent | Reset]) -> list[str]:
    return [item.task_id for item in items if isinstance(item, FeedEvent)]


async def test_publishing_with_no_reader_records_and_encodes_nothing() -> None:
    hub = EventHub()
    task = CountingRecord(name="t", status=Status.RUNNING)
    CountingRecord.encoded = 0
    for _ in range(100):
        hub.publish("status", task)
    assert not hub.feed.armed
    assert CountingRecord.encoded == 0  # neither the feed nor a per-task listener encoded it
    reader = hub.feed.subscribe()
    assert await read_all(reader) == []  # nothing from before it came
    reader.close()


async def test_an_event_is_encoded_once_with_one_id_for_every_reader() -> None:
    hub = EventHub()
    readers = [hub.feed.subscribe() for _ in range(5)]
    task = CountingRecord(name="t", status=Status.RUNNING)
    CountingRecord.encoded = 0
    hub.publish("status", task)
    hub.publish("progress", task)
    assert CountingRecord.encoded == 2
    received = [await read_all(reader) for reader in readers]
    first = received[0]
    assert all(len(items) == 2 for items in received)
    assert all(items[i] is first[i] for items in received for i in range(2))  # shared
    events = [item for item in first if isinstance(item, FeedEvent)]
    assert [e.kind for e in events] == ["status", "progress"]
    assert json.loads(events[0].data)["id"] == task.id
    for reader in readers:
        reader.close()
    assert hub.listener_count() == 0


async def test_ids_increase_and_differ_between_feeds() -> None:
    one, two = Feed(), Feed()
    reader_one, reader_two = one.subscribe(), two.subscribe()
    status_events(one, [record() for _ in range(12)])
    status_events(two, [record()])
    ids = [e.id for e in await read_all(reader_one) if isinstance(e, FeedEvent)]
    seqs = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 12
    (other,) = await read_all(reader_two)
    assert isinstance(other, FeedEvent)
    assert other.id.split("-")[0] != ids[0].split("-")[0]


async def test_a_reader_with_an_owner_sees_only_that_owners_tasks() -> None:
    feed_ = Feed()
    alice, bob, everyone = feed_.subscribe("alice"), feed_.subscribe("bob"), feed_.subscribe()
    tasks = [record("alice"), record("bob"), record(None), record("alice")]
    status_events(feed_, tasks)
    assert task_ids(await read_all(alice)) == [tasks[0].id, tasks[3].id]
    assert task_ids(await read_all(bob)) == [tasks[1].id]
    assert task_ids(await read_all(everyone)) == [t.id for t in tasks]


async def test_a_reader_resumes_after_the_last_id_it_saw() -> None:
    feed_ = Feed(buffer=100)
    first = feed_.subscribe("alice")
    before = [record("alice"), record("bob"), record("alice")]
    status_events(feed_, before)
    seen = await read_all(first)
    first.close()
    last = seen[-1]
    assert isinstance(last, FeedEvent)
    missed = [record("alice"), record("bob"), record("alice")]
    status_events(feed_, missed)  # while it was away

    again = feed_.subscribe("alice", last.id)
    later = record("alice")
    feed_.publish("status", later)
    assert task_ids(await read_all(again)) == [missed[0].id, missed[2].id, later.id]


async def test_resuming_at_the_newest_id_misses_nothing_and_repeats_nothing() -> None:
    feed_ = Feed(buffer=0)  # no buffer: resuming from the newest event still works
    reader = feed_.subscribe()
    feed_.publish("status", record())
    (last,) = await read_all(reader)
    reader.close()
    assert isinstance(last, FeedEvent)
    again = feed_.subscribe(None, last.id)
    assert await read_all(again) == []


@pytest.mark.parametrize("last_id", ["", "nonsense", "abc-1", "-0", "-99", "-1x", "-²",
                                     "x" * 5000])
async def test_an_unknown_id_cannot_resume(last_id: str) -> None:
    # "-..." is taken after this feed's own prefix: a seq it never gave, or no number
    feed_ = Feed()
    first = feed_.subscribe()
    status_events(feed_, [record()])
    (seen,) = await read_all(first)
    assert isinstance(seen, FeedEvent)
    epoch = seen.id.rsplit("-", 1)[0]
    reader = feed_.subscribe(None, last_id.replace("-", f"{epoch}-", 1))
    later = record()
    feed_.publish("status", later)
    items = await read_all(reader)
    assert items[0] == Reset("cannot-resume")
    assert task_ids(items[1:]) == [later.id]  # and then live


async def test_ids_of_another_process_or_an_evicted_past_cannot_resume() -> None:
    feed_, elsewhere = Feed(buffer=3), Feed()
    mine, theirs = feed_.subscribe(), elsewhere.subscribe()
    status_events(feed_, [record()])
    status_events(elsewhere, [record()])
    (oldest,) = await read_all(mine)
    (foreign,) = await read_all(theirs)
    assert isinstance(oldest, FeedEvent)
    assert isinstance(foreign, FeedEvent)
    status_events(feed_, [record() for _ in range(4)])  # the buffer keeps the 3 newest
    recent = await read_all(mine)
    assert isinstance(recent[0], FeedEvent)

    assert (await read_all(feed_.subscribe(None, foreign.id)))[0] == Reset("cannot-resume")
    assert (await read_all(feed_.subscribe(None, oldest.id)))[0] == Reset("cannot-resume")
    # the oldest id whose successors are all still held resumes
    resumed = await read_all(feed_.subscribe(None, recent[0].id))
    assert [e.id for e in resumed if isinstance(e, FeedEvent)] == [
        e.id for e in recent[1:] if isinstance(e, FeedEvent)]


async def test_the_buffer_stops_a_while_after_the_last_reader_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    feed_ = Feed()
    reader = feed_.subscribe()
    status_events(feed_, [record()])
    (seen,) = await read_all(reader)
    assert isinstance(seen, FeedEvent)
    reader.close()
    status_events(feed_, [record()])  # within the window: recorded
    assert feed_.armed
    monkeypatch.setattr(feed, "RESUME_WINDOW", -1.0)  # the window has passed
    status_events(feed_, [record(), record()])
    assert not feed_.armed  # and the buffer is gone
    items = await read_all(feed_.subscribe(None, seen.id))
    assert items == [Reset("cannot-resume")]  # events went by unrecorded


async def test_a_reader_that_does_not_read_is_reset_and_its_queue_stays_bounded() -> None:
    feed_ = Feed(buffer=50, queue=10)
    slow, keeping_up = feed_.subscribe(), feed_.subscribe()
    tasks = [record() for _ in range(1000)]
    for i, task in enumerate(tasks):
        feed_.publish("status", task)
        assert slow.queued() <= 10
        if i % 5 == 0:
            await read_all(keeping_up)
    assert slow.queued() <= 10
    items = await read_all(slow)
    assert items[0] == Reset("fell-behind")
    assert 1 <= len(items) - 1 <= 10
    assert task_ids(items)[-1] == tasks[-1].id  # it goes on live, with the newest
    feed_.publish("status", record())
    assert len(await read_all(slow)) == 1  # no second reset: it has caught up
    assert Reset("fell-behind") not in await read_all(keeping_up)


async def test_progress_is_coalesced_and_no_status_is_dropped() -> None:
    feed_ = Feed(queue=20)
    reader = feed_.subscribe()
    tasks = [record() for _ in range(5)]
    published: list[str] = []
    for step in range(200):  # far more events than the queue holds
        task = tasks[step % 5]
        progress(feed_, task, step)
        if step % 20 == 0:  # 10 status changes, never coalesced
            feed_.publish("status", task)
            published.append(f"{task.id}@{step}")
    items = await read_all(reader)
    assert Reset("fell-behind") not in items
    statuses = [item for item in items if isinstance(item, FeedEvent) and item.kind == "status"]
    received = [f"{e.task_id}@{json.loads(e.data)['progress']['current']}" for e in statuses]
    assert received == published
    latest = {e.task_id: json.loads(e.data)["progress"]["current"]
              for e in items if isinstance(e, FeedEvent) and e.kind == "progress"}
    assert latest == {task.id: 195 + i for i, task in enumerate(tasks)}  # the newest of each
    ids = [int(e.id.rsplit("-", 1)[1]) for e in items if isinstance(e, FeedEvent)]
    assert ids == sorted(ids)  # still in order


async def test_a_status_beyond_the_bound_comes_through_a_reset_never_silently() -> None:
    feed_ = Feed(queue=3)
    reader = feed_.subscribe()
    tasks = [record() for _ in range(4)]
    status_events(feed_, tasks)
    assert reader.queued() == 1  # the fourth found the queue full: it is all that is left
    items = await read_all(reader)
    assert items[0] == Reset("fell-behind")
    assert task_ids(items) == [tasks[3].id]


async def test_the_number_of_readers_is_bounded() -> None:
    feed_ = Feed(max_readers=2)
    first, second = feed_.subscribe(), feed_.subscribe("x")
    with pytest.raises(TooManyReaders):
        feed_.subscribe()
    first.close()
    third = feed_.subscribe()
    assert feed_.reader_count() == 2
    second.close()
    third.close()
    third.close()  # twice: no harm
    assert feed_.reader_count() == 0


async def test_closing_ends_readers_after_what_they_were_handed() -> None:
    feed_ = Feed()
    reader = feed_.subscribe()
    last = record(status=Status.FAILED)
    feed_.publish("status", last)
    feed_.close()
    assert not reader.finished
    assert task_ids([item for item in [await reader.next(1)] if item is not None]) == [last.id]
    assert reader.finished
    assert await reader.next(None) is None  # at once, though told to wait for ever
    with pytest.raises(ShuttingDown):
        feed_.subscribe()


async def test_an_idle_reader_gets_none_when_its_keepalive_is_due() -> None:
    reader = Feed().subscribe()
    assert await reader.next(0.01) is None
    assert not reader.finished


async def test_the_service_feeds_every_change_and_closes_the_feed_when_drained(
        make_service: Callable[..., TaskService]) -> None:
    service = make_service(events_queue=500, max_event_streams=3)
    await service.start()
    assert service.hub.feed.reader_count() == 0
    reader = service.hub.feed.subscribe()
    record_, _ = await service.submit(Submission("count", [3, 0.0]))
    done = await service.wait(record_.id, 10)
    assert done.status is Status.SUCCEEDED
    items = await read_all(reader)
    kinds = [(e.kind, json.loads(e.data)["status"]) for e in items if isinstance(e, FeedEvent)]
    assert kinds[0] == ("status", "queued")
    assert kinds[-1] == ("status", "succeeded")
    assert ("progress", "running") in kinds
    await service.stop()
    assert reader.finished
    reader.close()
    assert service.hub.listener_count() == 0


def big_record(size: int) -> TaskRecord:
    """A task whose JSON is about ``size`` bytes (its arguments)."""
    return TaskRecord(name="t", status=Status.RUNNING, args=["x" * size])


async def test_the_resume_buffer_is_bounded_in_bytes_too() -> None:
    bound = 50_000
    feed_ = Feed(buffer=1000, max_bytes=bound)
    watcher = feed_.subscribe()
    first = big_record(10_000)
    feed_.publish("status", first)
    [seen] = await read_all(watcher)
    assert isinstance(seen, FeedEvent)
    status_events(feed_, [big_record(10_000) for _ in range(20)])
    assert 0 < feed_._buffered <= bound  # by count alone it would hold all 21 (210 KB)
    assert len(feed_._buffer) < 21

    resumed = feed_.subscribe(last_event_id=seen.id)  # what followed it has left

    assert await read_all(resumed) == [Reset("cannot-resume")]


async def test_one_event_larger_than_the_bound_is_still_kept_and_delivered() -> None:
    feed_ = Feed(max_bytes=1_000)
    reader = feed_.subscribe()
    feed_.publish("status", big_record(5_000))
    [event] = await read_all(reader)
    assert isinstance(event, FeedEvent)
    assert len(feed_._buffer) == 1


async def test_a_reader_falls_behind_by_bytes_before_it_does_by_count() -> None:
    feed_ = Feed(queue=1000, max_bytes=50_000)
    slow = feed_.subscribe()
    tasks = [big_record(10_000) for _ in range(12)]
    status_events(feed_, tasks)

    items = await read_all(slow)

    assert items[0] == Reset("fell-behind")
    assert 1 <= len(items) - 1 <= 5  # the newest events, within the bytes bound
    assert task_ids(items)[-1] == tasks[-1].id

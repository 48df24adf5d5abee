"""The memory store's start queue (``StartQueue``): priority then FIFO across task names,
per-name limits and excluded names, a retry back in its place, cancelled records skipped and
compacted away, and scheduled records by due time with stale entries skipped."""

from __future__ import annotations

import itertools

from service.models import Status, TaskRecord
from service.stores.base import PoolRoom
from service.stores.memory_queue import REBUILD_SLACK, StartQueue

_seq = itertools.count(1)


def record(label: str, priority: int = 0, name: str = "t") -> TaskRecord:
    """A queued record, numbered like the store numbers them (growing seq)."""
    return TaskRecord(name=name, args=[label], priority=priority, seq=next(_seq))


def queued(*records: TaskRecord) -> StartQueue:
    queue = StartQueue()
    for r in records:
        queue.push(r)
    return queue


def take(queue: StartQueue, limits: dict[str, int] | None = None,
         excluded: frozenset[str] = frozenset()) -> TaskRecord | None:
    """What a claim does with one record: pop the best, mark it running and count it."""
    best = queue.pop_best(limits or {}, excluded, PoolRoom(()))
    if best is not None:
        best.move(Status.RUNNING)
        queue.running_by_name[best.name] += 1
    return best


def take_all(queue: StartQueue, limits: dict[str, int] | None = None,
             excluded: frozenset[str] = frozenset()) -> list[str]:
    labels = []
    while (best := take(queue, limits, excluded)) is not None:
        labels.append(str(best.args[0]))
    return labels


def finish(queue: StartQueue, r: TaskRecord) -> None:
    r.move(Status.SUCCEEDED)
    queue.running_by_name[r.name] -= 1


def cancel(queue: StartQueue, r: TaskRecord) -> None:
    """What the store does when a queued record is cancelled."""
    r.move(Status.CANCELLED)
    queue.dropped(r)


def retry(queue: StartQueue, r: TaskRecord) -> None:
    """A running record handed back to the queue (due retry, or work given back)."""
    r.move(Status.QUEUED)
    queue.running_by_name[r.name] -= 1
    queue.push(r)


def lane_size(queue: StartQueue, name: str) -> int:
    return queue._lanes[name].size()


# -- order --------------------------------------------------------------------------------


def test_priority_first_then_fifo() -> None:
    queue = queued(*(record(label, priority) for label, priority in [
        ("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 10)]))
    assert take_all(queue) == ["f", "b", "d", "a", "c", "e"]
    assert queue.pop_best({}, frozenset(), PoolRoom(())) is None
    assert queue.running_by_name["t"] == 6


def test_priority_and_fifo_hold_across_task_names() -> None:
    queue = queued(record("a1"), record("o1", name="other"), record("a2", 3),
                   record("o2", 3, name="other"))
    assert take_all(queue) == ["a2", "o2", "a1", "o1"]


def test_an_empty_queue_has_nothing_to_start() -> None:
    queue = StartQueue()
    assert queue.pop_best({}, frozenset(), PoolRoom(())) is None
    assert queue.next_due() is None
    assert queue.due(1e12) == []


# -- limits and exclusions ------------------------------------------------------------------


def test_a_name_at_its_limit_does_not_block_other_names() -> None:
    s1, s2 = record("s1", 9, name="single"), record("s2", 9, name="single")
    queue = queued(s1, s2, record("x1"))
    assert take_all(queue, {"single": 1}) == ["s1", "x1"]
    finish(queue, s1)
    assert take_all(queue, {"single": 1}) == ["s2"]


def test_a_limit_counts_what_runs_of_that_name() -> None:
    queue = queued(*(record(str(i), name="pair") for i in range(4)))
    assert take_all(queue, {"pair": 2}) == ["0", "1"]
    assert queue.running_by_name["pair"] == 2
    assert take_all(queue, {"pair": 3}) == ["2"]  # a higher limit (another process's view)
    assert take_all(queue, {}) == ["3"]  # no limit


def test_excluded_names_wait_and_keep_their_place() -> None:
    p1, p2 = record("p1", name="crunch"), record("p2", name="crunch")
    queue = queued(p1, p2, record("a1"))
    assert take_all(queue, excluded=frozenset({"crunch"})) == ["a1"]  # its executor is full
    assert take_all(queue) == ["p1", "p2"]


def test_a_blocked_better_record_does_not_hold_back_a_startable_worse_one() -> None:
    queue = queued(record("t", 100, name="resize"), record("a", 0))
    assert take_all(queue, excluded=frozenset({"resize"})) == ["a"]
    assert take_all(queue, {"resize": 0}) == []
    assert take_all(queue) == ["t"]


# -- retries --------------------------------------------------------------------------------


def test_a_retry_goes_back_to_its_place() -> None:
    a, b = record("a"), record("b")
    queue = queued(a)
    assert take(queue) is a
    queue.push(b)
    retry(queue, a)  # a keeps its original place (seq): before b, submitted after it
    assert take_all(queue) == ["a", "b"]


def test_a_retry_goes_between_earlier_and_later_records() -> None:
    first, second, third = record("first"), record("second"), record("third")
    queue = queued(second)
    assert take(queue) is second
    queue.push(first)  # numbered before second (added in another order, e.g. by a peer)
    queue.push(third)
    retry(queue, second)
    assert take_all(queue) == ["first", "second", "third"]


def test_a_retry_of_higher_priority_goes_first_whatever_its_age() -> None:
    old, new, urgent = record("old"), record("new"), record("urgent", 7)
    queue = queued(old, urgent)
    assert take(queue) is urgent
    queue.push(new)
    retry(queue, urgent)
    assert take_all(queue) == ["urgent", "old", "new"]


# -- cancelled (dead) records ----------------------------------------------------------------


def test_cancelled_records_are_skipped_wherever_they_are() -> None:
    a, b, c, d = record("a"), record("b"), record("c"), record("d", name="other")
    queue = queued(a, b, c, d)
    cancel(queue, b)  # in the middle
    cancel(queue, a)  # at the head
    cancel(queue, d)  # the only one of its name
    assert take_all(queue) == ["c"]
    assert lane_size(queue, "t") == 0


def test_cancelled_records_behind_a_blocked_head_are_compacted_away() -> None:
    # One record holds the only slot of its name and another waits at the head: without a
    # compaction every cancelled record below it would stay in the lane, with its arguments.
    queue = queued(record("running"))
    assert take(queue) is not None
    queue.push(record("head", priority=10))
    for i in range(2000):
        doomed = record(f"c{i}")
        queue.push(doomed)
        cancel(queue, doomed)
    assert lane_size(queue, "t") <= 2 * REBUILD_SLACK + 2
    assert take_all(queue, {"t": 1}) == []
    assert take_all(queue) == ["head"]


def test_a_compaction_keeps_the_order_of_the_live_records() -> None:
    live = [record(f"live{i}", priority=i % 3) for i in range(10)]
    queue = queued(*live)
    for i in range(3 * REBUILD_SLACK):
        doomed = record(f"c{i}", priority=i % 3)
        queue.push(doomed)
        cancel(queue, doomed)
    assert lane_size(queue, "t") < 3 * REBUILD_SLACK  # compacted at least once
    expected = [str(r.args[0]) for r in sorted(live, key=lambda r: (-r.priority, r.seq))]
    assert take_all(queue) == expected


# -- scheduled records --------------------------------------------------------------------


def scheduled(label: str, at: float, name: str = "t") -> TaskRecord:
    r = record(label, name=name)
    r.status, r.scheduled_at = Status.SCHEDULED, at
    return r


def delayed(*records: TaskRecord) -> StartQueue:
    queue = StartQueue()
    for r in records:
        queue.delay(r)
    return queue


def test_scheduled_records_come_due_in_time_order() -> None:
    late, early, middle = scheduled("late", 30.0), scheduled("early", 10.0), scheduled("m", 20.0)
    queue = delayed(late, early, middle)
    assert queue.next_due() == 10.0
    assert queue.due(5.0) == []
    assert queue.due(20.0) == [early, middle]  # due at exactly its time, too
    assert queue.next_due() == 30.0
    assert queue.due(100.0) == [late]
    assert queue.next_due() is None
    # due() hands them out: not queued here
    assert queue.pop_best({}, frozenset(), PoolRoom(())) is None


def test_records_due_at_the_same_time_come_in_seq_order() -> None:
    records = [scheduled(str(i), 5.0) for i in range(5)]
    queue = delayed(*reversed(records))
    assert queue.due(5.0) == records


def test_a_cancelled_scheduled_record_is_a_stale_entry_skipped() -> None:
    gone, kept = scheduled("gone", 1.0), scheduled("kept", 2.0)
    queue = delayed(gone, kept)
    gone.move(Status.CANCELLED)  # the store leaves its entry in the heap
    assert queue.next_due() == 2.0
    assert queue.due(10.0) == [kept]


def test_a_record_scheduled_again_leaves_its_old_entry_stale() -> None:
    r = scheduled("r", 1.0)
    queue = delayed(r)
    assert queue.due(1.0) == [r]
    r.move(Status.QUEUED)
    queue.push(r)
    assert take(queue) is r
    r.move(Status.SCHEDULED)  # a retry
    r.scheduled_at = 50.0
    queue.running_by_name["t"] -= 1
    queue.delay(r)
    assert queue.next_due() == 50.0
    assert queue.due(49.0) == []
    assert queue.due(50.0) == [r]
    assert queue.due(1e9) == []  # handed out once only


def test_a_due_record_queued_again_takes_its_place_by_priority_and_seq() -> None:
    old = scheduled("old", 1.0)
    queue = delayed(old)
    newer = record("newer")
    queue.push(newer)
    for r in queue.due(1.0):  # what a claim does with what came due
        r.move(Status.QUEUED)
        queue.push(r)
    assert take_all(queue) == ["old", "newer"]

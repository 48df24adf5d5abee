"""The ready queue: priority then FIFO, within global, per-type and per-executor limits."""

from __future__ import annotations

import itertools
from typing import Any

from service.models import TaskRecord
from service.registry import BoundCall, Executor, TaskType
from service.runner.job import Job
from service.runner.ready_queue import ReadyQueue

_seq = itertools.count(1)
_types: dict[tuple[str, Executor, int | None], TaskType] = {}


async def _async_fn() -> None:
    return None


def _plain_fn() -> None:
    return None


def task_type(name: str, executor: Executor = "async", concurrency: int | None = None
              ) -> TaskType:
    key = (name, executor, concurrency)
    if key not in _types:
        fn: Any = _async_fn if executor == "async" else _plain_fn
        _types[key] = TaskType(name, fn, executor, concurrency=concurrency)
    return _types[key]


def job(label: str, priority: int = 0, kind: TaskType | None = None) -> Job:
    record = TaskRecord(name=(kind or task_type("t")).name, args=[label], priority=priority,
                        seq=next(_seq))
    return Job(record, kind or task_type("t"), BoundCall((), {}))


def queue(limit: int = 100, **capacity: int) -> ReadyQueue:
    return ReadyQueue(limit, {"async": 100, "thread": 100, "process": 100} | capacity)


def labels(jobs: list[Job]) -> list[str]:
    return [j.record.args[0] for j in jobs]


def pop_all(q: ReadyQueue) -> list[Job]:
    popped = []
    while (j := q.pop_startable()) is not None:
        popped.append(j)
    return popped


def test_priority_first_then_fifo() -> None:
    q = queue()
    for label, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 10)]:
        q.push(job(label, priority))
    assert len(q) == 6
    assert labels(pop_all(q)) == ["f", "b", "d", "a", "c", "e"]
    assert len(q) == 0
    assert q.running == 6


def test_priority_and_fifo_hold_across_task_types() -> None:
    q = queue()
    other = task_type("other")
    q.push(job("a1"))
    q.push(job("o1", kind=other))
    q.push(job("a2", 3))
    q.push(job("o2", 3, kind=other))
    assert labels(pop_all(q)) == ["a2", "o2", "a1", "o1"]


def test_global_limit_and_release() -> None:
    q = queue(limit=2)
    jobs = [job(str(i)) for i in range(4)]
    for j in jobs:
        q.push(j)
    first = pop_all(q)
    assert labels(first) == ["0", "1"]
    assert q.running == 2
    assert len(q) == 2
    q.release(first[0])
    assert labels(pop_all(q)) == ["2"]
    assert q.pop_startable() is None


def test_per_type_limit_does_not_block_other_types() -> None:
    q = queue()
    single = task_type("single", concurrency=1)
    q.push(job("s1", 9, kind=single))
    q.push(job("s2", 9, kind=single))
    q.push(job("x1"))
    started = pop_all(q)
    assert labels(started) == ["s1", "x1"]
    q.release(started[0])
    assert labels(pop_all(q)) == ["s2"]


def test_per_executor_capacity() -> None:
    q = queue(process=1)
    crunch = task_type("crunch", "process")
    q.push(job("p1", kind=crunch))
    q.push(job("p2", kind=crunch))
    q.push(job("a1"))
    started = pop_all(q)
    assert labels(started) == ["p1", "a1"]
    q.release(started[0])
    assert labels(pop_all(q)) == ["p2"]


def test_a_blocked_better_job_does_not_hold_back_a_startable_worse_one() -> None:
    q = queue(thread=0)
    resize = task_type("resize", "thread")
    q.push(job("t", 100, kind=resize))
    q.push(job("a", 0))
    assert labels(pop_all(q)) == ["a"]
    assert len(q) == 1


def test_discard_skips_the_job_and_counts_once() -> None:
    q = queue()
    a, b, c = job("a"), job("b"), job("c")
    for j in (a, b, c):
        q.push(j)
    q.discard(b)
    q.discard(b)
    assert len(q) == 2
    q.discard(a)  # at the head of the heap
    assert labels(pop_all(q)) == ["c"]
    assert len(q) == 0


def test_drain_returns_waiting_jobs_only() -> None:
    q = queue(limit=1)
    a, b, c = job("a"), job("b"), job("c")
    for j in (a, b, c):
        q.push(j)
    assert q.pop_startable() is a
    q.discard(b)
    assert labels(q.drain()) == ["c"]
    assert len(q) == 0
    assert c.dequeued
    assert q.pop_startable() is None


def test_a_job_pushed_again_runs_again_in_its_place() -> None:
    q = queue()
    a, b = job("a"), job("b")
    q.push(a)
    assert q.pop_startable() is a
    q.release(a)
    q.push(b)
    q.push(a)  # a retry keeps its original place (seq) in the FIFO order
    assert labels(pop_all(q)) == ["a", "b"]


def test_cancelled_jobs_behind_a_blocked_head_do_not_pile_up() -> None:
    # One job holds the only slot and another waits at the head: without a rebuild every
    # cancelled job below it would stay in the heap, with its arguments, for ever.
    q = queue(limit=1)
    q.push(job("running"))
    assert q.pop_startable() is not None
    q.push(job("head", priority=10))
    for i in range(2000):
        cancelled = job(f"c{i}")
        q.push(cancelled)
        q.discard(cancelled)
    assert len(q) == 1
    assert sum(lane.size() for lane in q._lanes.values()) < 200


def test_a_job_pushed_again_goes_between_later_and_earlier_ones() -> None:
    q = queue(limit=1)
    first, second, third = job("first"), job("second"), job("third")
    q.push(second)
    assert q.pop_startable() is second
    q.release(second)
    q.push(first)  # pushed again below: it was submitted before the others
    q.push(third)
    q.push(second)
    order = []
    while (popped := q.pop_startable()) is not None:
        order.append(popped)
        q.release(popped)
    assert labels(order) == ["first", "second", "third"]

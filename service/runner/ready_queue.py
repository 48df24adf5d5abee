"""Queued jobs in priority-then-FIFO order, released only within the concurrency limits."""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, deque

from ..registry import Executor
from .job import Job

REBUILD_SLACK = 64


class _Lane:
    """The queued jobs of one task type: a FIFO per priority level, and a heap of the
    levels present (most tasks share one level, so a push and a pop cost O(1))."""

    __slots__ = ("dead", "levels", "order")

    def __init__(self) -> None:
        self.levels: dict[int, deque[Job]] = {}
        self.order: list[int] = []  # heap of -priority, one entry per level present
        self.dead = 0  # discarded jobs still in the FIFOs

    def push(self, job: Job) -> None:
        key = -job.record.priority
        fifo = self.levels.get(key)
        if fifo is None:
            fifo = self.levels[key] = deque()
            heapq.heappush(self.order, key)
        if fifo and fifo[-1].record.seq > job.record.seq:  # a retry: back to its place
            fifo.insert(bisect.bisect(fifo, job.record.seq, key=_seq_of), job)
        else:
            fifo.append(job)

    def head(self) -> Job | None:
        """The best job still queued (discarded ones at the front are dropped on the way)."""
        while self.order:
            fifo = self.levels[self.order[0]]
            while fifo and fifo[0].dequeued:
                fifo.popleft()
                self.dead = max(0, self.dead - 1)
            if fifo:
                return fifo[0]
            del self.levels[heapq.heappop(self.order)]
        return None

    def pop(self) -> Job:
        return self.levels[self.order[0]].popleft()

    def size(self) -> int:
        return sum(len(fifo) for fifo in self.levels.values())

    def compact(self) -> None:
        for key, fifo in list(self.levels.items()):
            self.levels[key] = deque(job for job in fifo if not job.dequeued)
        self.dead = 0


def _seq_of(job: Job) -> int:
    return job.record.seq


class ReadyQueue:
    """One lane per task type, so a type at its own limit never blocks the others."""

    def __init__(self, max_concurrency: int, executor_capacity: dict[Executor, int]) -> None:
        self.max_concurrency = max_concurrency
        self._executor_capacity = executor_capacity
        self._lanes: dict[str, _Lane] = {}
        self._size = 0
        self.running = 0
        self._running_by_type: Counter[str] = Counter()
        self._running_by_executor: Counter[Executor] = Counter()

    def __len__(self) -> int:
        return self._size

    def push(self, job: Job) -> None:
        job.dequeued = False
        lane = self._lanes.get(job.task_type.name)
        if lane is None:
            lane = self._lanes[job.task_type.name] = _Lane()
        lane.push(job)
        self._size += 1

    def discard(self, job: Job) -> None:
        """Take a queued job out; it is skipped later instead of searched for now, unless
        dead jobs pile up behind a head that cannot start (then the lane is compacted, so
        that cancelled jobs do not stay in memory)."""
        if job.dequeued:
            return
        job.dequeued = True
        self._size -= 1
        lane = self._lanes[job.task_type.name]
        lane.dead += 1
        if lane.dead > REBUILD_SLACK and lane.dead * 2 > lane.size():
            lane.compact()

    def pop_startable(self) -> Job | None:
        """The best job that may start now, counted as running; None if none may."""
        if self.running >= self.max_concurrency or not self._size:
            return None
        best: _Lane | None = None
        best_key = (0, 0)
        for lane in self._lanes.values():
            head = lane.head()
            if head is not None and self._may_start(head):
                key = (-head.record.priority, head.record.seq)
                if best is None or key < best_key:
                    best, best_key = lane, key
        if best is None:
            return None
        job = best.pop()
        job.dequeued = True
        self._size -= 1
        self._count(job, +1)
        return job

    def release(self, job: Job) -> None:
        """A job that ``pop_startable`` returned has finished running."""
        self._count(job, -1)

    def drain(self) -> list[Job]:
        """Empty the queue, returning the jobs that were still waiting."""
        jobs = [job for lane in self._lanes.values() for fifo in lane.levels.values()
                for job in fifo if not job.dequeued]
        self._lanes.clear()
        self._size = 0
        for job in jobs:
            job.dequeued = True
        return jobs

    def _may_start(self, job: Job) -> bool:
        task_type = job.task_type
        if task_type.concurrency is not None and (
            self._running_by_type[task_type.name] >= task_type.concurrency
        ):
            return False
        executor = task_type.executor
        return self._running_by_executor[executor] < self._executor_capacity[executor]

    def _count(self, job: Job, delta: int) -> None:
        self.running += delta
        self._running_by_type[job.task_type.name] += delta
        self._running_by_executor[job.task_type.executor] += delta

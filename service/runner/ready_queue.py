"""Queued jobs in priority-then-FIFO order, released only within the concurrency limits."""

from __future__ import annotations

import heapq
from collections import Counter

from ..registry import Executor
from .job import Job

_Entry = tuple[int, int, Job]
REBUILD_SLACK = 64


class ReadyQueue:
    """One heap per task type, so a type at its own limit never blocks the others."""

    def __init__(self, max_concurrency: int, executor_capacity: dict[Executor, int]) -> None:
        self.max_concurrency = max_concurrency
        self._executor_capacity = executor_capacity
        self._lanes: dict[str, list[_Entry]] = {}
        self._dead: Counter[str] = Counter()  # discarded entries still in each lane
        self._size = 0
        self.running = 0
        self._running_by_type: Counter[str] = Counter()
        self._running_by_executor: Counter[Executor] = Counter()

    def __len__(self) -> int:
        return self._size

    def push(self, job: Job) -> None:
        job.dequeued = False
        priority, seq = job.sort_key
        heapq.heappush(self._lanes.setdefault(job.task_type.name, []), (priority, seq, job))
        self._size += 1

    def discard(self, job: Job) -> None:
        """Take a queued job out; its heap entry is skipped later instead of searched for now,
        unless dead entries pile up behind a head that cannot start (then the lane is rebuilt,
        so that cancelled jobs do not stay in memory)."""
        if job.dequeued:
            return
        job.dequeued = True
        self._size -= 1
        name = job.task_type.name
        self._dead[name] += 1
        lane = self._lanes[name]
        if self._dead[name] > REBUILD_SLACK and self._dead[name] * 2 > len(lane):
            lane[:] = [entry for entry in lane if not entry[2].dequeued]
            heapq.heapify(lane)
            self._dead[name] = 0

    def pop_startable(self) -> Job | None:
        """The best job that may start now, counted as running; None if none may."""
        if self.running >= self.max_concurrency:
            return None
        best: list[_Entry] | None = None
        for lane in self._lanes.values():
            self._drop_discarded(lane)
            if lane and self._may_start(lane[0][2]) and (best is None or lane[0] < best[0]):
                best = lane
        if best is None:
            return None
        job = heapq.heappop(best)[2]
        job.dequeued = True
        self._size -= 1
        self._count(job, +1)
        return job

    def release(self, job: Job) -> None:
        """A job that ``pop_startable`` returned has finished running."""
        self._count(job, -1)

    def drain(self) -> list[Job]:
        """Empty the queue, returning the jobs that were still waiting."""
        jobs = [entry[2] for lane in self._lanes.values() for entry in lane
                if not entry[2].dequeued]
        self._lanes.clear()
        self._dead.clear()
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

    def _drop_discarded(self, lane: list[_Entry]) -> None:
        while lane and lane[0][2].dequeued:
            job = heapq.heappop(lane)[2]
            if self._dead[job.task_type.name] > 0:
                self._dead[job.task_type.name] -= 1

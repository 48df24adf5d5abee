"""The memory store's startable records: priority-then-FIFO lanes, and delayed ones by time."""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, deque
from collections.abc import Collection, Mapping

from ..models import Status, TaskRecord
from .base import PoolRoom

REBUILD_SLACK = 64


class _Lane:
    """The queued records of one task name: a FIFO per priority level, and a heap of the
    levels present (most tasks share one level, so a push and a pop cost O(1)).

    A record that stops being queued (cancelled) stays in its FIFO until it reaches the
    front or the lane is compacted: it is skipped by its status, not searched for."""

    __slots__ = ("dead", "levels", "order")

    def __init__(self) -> None:
        self.levels: dict[int, deque[TaskRecord]] = {}
        self.order: list[int] = []  # heap of -priority, one entry per level present
        self.dead = 0

    def push(self, record: TaskRecord) -> None:
        key = -record.priority
        fifo = self.levels.get(key)
        if fifo is None:
            fifo = self.levels[key] = deque()
            heapq.heappush(self.order, key)
        if fifo and fifo[-1].seq > record.seq:  # a retry: back to its place
            fifo.insert(bisect.bisect(fifo, record.seq, key=_seq_of), record)
        else:
            fifo.append(record)

    def head(self) -> TaskRecord | None:
        """The best record still queued (dead ones at the front are dropped on the way)."""
        while self.order:
            fifo = self.levels[self.order[0]]
            while fifo and fifo[0].status is not Status.QUEUED:
                fifo.popleft()
                self.dead = max(0, self.dead - 1)
            if fifo:
                return fifo[0]
            del self.levels[heapq.heappop(self.order)]
        return None

    def pop(self) -> TaskRecord:
        return self.levels[self.order[0]].popleft()

    def size(self) -> int:
        return sum(len(fifo) for fifo in self.levels.values())

    def compact(self) -> None:
        for key, fifo in list(self.levels.items()):
            self.levels[key] = deque(r for r in fifo if r.status is Status.QUEUED)
        self.dead = 0


def _seq_of(record: TaskRecord) -> int:
    return record.seq


class StartQueue:
    """One lane per task name, so a name at its limit never blocks the others; and the
    scheduled records in a heap by due time (stale entries skipped when read)."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._delayed: list[tuple[float, int, TaskRecord]] = []
        self.running_by_name: Counter[str] = Counter()

    def push(self, record: TaskRecord) -> None:
        """A record that became queued."""
        lane = self._lanes.get(record.name)
        if lane is None:
            lane = self._lanes[record.name] = _Lane()
        lane.push(record)

    def delay(self, record: TaskRecord) -> None:
        """A record that became scheduled (it has a ``scheduled_at``)."""
        heapq.heappush(self._delayed, (record.scheduled_at or 0.0, record.seq, record))

    def dropped(self, record: TaskRecord) -> None:
        """A queued record left the queue by another way than :meth:`pop` (cancelled)."""
        lane = self._lanes.get(record.name)
        if lane is not None:
            lane.dead += 1
            if lane.dead > REBUILD_SLACK and lane.dead * 2 > lane.size():
                lane.compact()

    def next_due(self) -> float | None:
        delayed = self._delayed
        while delayed and not _still_delayed(delayed[0]):
            heapq.heappop(delayed)
        return delayed[0][0] if delayed else None

    def due(self, now: float) -> list[TaskRecord]:
        """Take the scheduled records due by ``now`` out of the heap (the caller queues them)."""
        taken = []
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            entry = heapq.heappop(delayed)
            if _still_delayed(entry):
                taken.append(entry[2])
        return taken

    def pop_best(self, limits: Mapping[str, int], excluded: Collection[str],
                 pools: PoolRoom) -> TaskRecord | None:
        """The best queued record whose name may start, taken out; None if there is none."""
        best: _Lane | None = None
        best_key = (0, 0)
        for name, lane in self._lanes.items():
            if name in excluded or not pools.allows(name):
                continue
            limit = limits.get(name)
            if limit is not None and self.running_by_name[name] >= limit:
                continue
            head = lane.head()
            if head is not None:
                key = (-head.priority, head.seq)
                if best is None or key < best_key:
                    best, best_key = lane, key
        return None if best is None else best.pop()


def _still_delayed(entry: tuple[float, int, TaskRecord]) -> bool:
    at, _, record = entry
    return record.status is Status.SCHEDULED and record.scheduled_at == at

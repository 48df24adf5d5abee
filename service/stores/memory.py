"""The embedded default store: plain dictionaries, records kept by reference."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Sequence

from ..models import TERMINAL, Status, TaskRecord
from .base import ListQuery, TaskStore

_COMPACT_SLACK = 1024


class MemoryStore(TaskStore):
    """Records in this process only: fast, and gone when the process ends."""

    durable = False

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._status_of: dict[str, Status] = {}
        self._counts: Counter[Status] = Counter()
        # Parallel lists in seq order, for cursor paging; deleted ids are skipped and
        # compacted away now and then instead of removed one by one.
        self._order_ids: list[str] = []
        self._order_seqs: list[int] = []
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._idempotency: dict[tuple[str | None, str], str] = {}
        self._next_seq = 1

    async def add(self, records: Sequence[TaskRecord]) -> None:
        for record in records:
            record.seq = self._next_seq
            self._next_seq += 1
            self._records[record.id] = record
            self._order_ids.append(record.id)
            self._order_seqs.append(record.seq)
            self._track(record)
            if record.idempotency_key is not None:
                self._idempotency[(record.owner, record.idempotency_key)] = record.id

    async def save(self, record: TaskRecord) -> None:
        if record.id in self._records:
            self._track(record)

    def _track(self, record: TaskRecord) -> None:
        previous = self._status_of.get(record.id)
        if previous is record.status:
            return
        if previous is not None:
            self._counts[previous] -= 1
        self._counts[record.status] += 1
        self._status_of[record.id] = record.status
        if record.status in TERMINAL:
            self._finished[record.id] = record.finished_at or 0.0

    async def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    async def delete(self, task_id: str) -> bool:
        record = self._records.pop(task_id, None)
        if record is None:
            return False
        self._counts[self._status_of.pop(task_id)] -= 1
        self._finished.pop(task_id, None)
        if record.idempotency_key is not None:
            self._idempotency.pop((record.owner, record.idempotency_key), None)
        if len(self._order_ids) > 2 * len(self._records) + _COMPACT_SLACK:
            self._compact()
        return True

    def _compact(self) -> None:
        kept = [(s, i) for s, i in zip(self._order_seqs, self._order_ids, strict=True)
                if i in self._records]
        self._order_seqs = [s for s, _ in kept]
        self._order_ids = [i for _, i in kept]

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        start = len(self._order_seqs)
        if query.before_seq is not None:
            start = bisect_left(self._order_seqs, query.before_seq)
        items: list[TaskRecord] = []
        for index in range(start - 1, -1, -1):
            record = self._records.get(self._order_ids[index])
            if record is not None and _matches(record, query):
                items.append(record)
                if len(items) >= query.limit:
                    break
        return items

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        if owner is None:
            return {status: self._counts[status] for status in Status}
        counts = Counter(r.status for r in self._records.values() if r.owner == owner)
        return {status: counts[status] for status in Status}

    async def find_idempotent(self, owner: str | None, key: str) -> TaskRecord | None:
        task_id = self._idempotency.get((owner, key))
        return None if task_id is None else self._records.get(task_id)

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        evicted = 0
        while self._finished:
            task_id, finished_at = next(iter(self._finished.items()))
            if finished_at >= finished_before and len(self._finished) <= keep_at_most:
                break
            await self.delete(task_id)
            evicted += 1
        return evicted

    async def unfinished(self) -> list[TaskRecord]:
        return [r for r in self._records.values() if r.status not in TERMINAL]


def _matches(record: TaskRecord, query: ListQuery) -> bool:
    if query.owner is not None and record.owner != query.owner:
        return False
    if query.name is not None and record.name != query.name:
        return False
    return query.statuses is None or record.status in query.statuses

"""The embedded default store: plain dictionaries, records kept by reference."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence

from ..models import ACTIVE, TERMINAL, Status, TaskRecord
from .base import ListQuery, TaskStore

_COMPACT_SLACK = 1024
_EVERYONE = "\x00everyone"  # the key of the indexes over all owners (no owner id looks so)


class _SeqIndex:
    """Ids in ``seq`` order for cursor paging. Deleted ids are skipped when read and
    compacted away now and then, instead of removed one by one."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.seqs: list[int] = []

    def append(self, seq: int, task_id: str) -> None:
        self.ids.append(task_id)
        self.seqs.append(seq)

    def newest_first(self, before_seq: int | None) -> Iterator[str]:
        start = len(self.seqs) if before_seq is None else bisect_left(self.seqs, before_seq)
        return (self.ids[i] for i in range(start - 1, -1, -1))

    def compact_if_sparse(self, live: int, alive: dict[str, TaskRecord]) -> None:
        if len(self.ids) > 2 * live + _COMPACT_SLACK:
            kept = [(s, i) for s, i in zip(self.seqs, self.ids, strict=True) if i in alive]
            self.seqs = [s for s, _ in kept]
            self.ids = [i for _, i in kept]


class MemoryStore(TaskStore):
    """Records in this process only: fast, and gone when the process ends.

    Every query is served from an index, so that listing and counting stay cheap with the
    default 100,000 records: counts per owner, ids in order per owner, and the ids of the
    active statuses (few, usually), which a filter on them reads instead of everything.
    """

    durable = False

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._status_of: dict[str, Status] = {}
        self._counts: dict[str, Counter[Status]] = {_EVERYONE: Counter()}
        self._order: dict[str, _SeqIndex] = {_EVERYONE: _SeqIndex()}
        self._active: dict[Status, set[str]] = {status: set() for status in ACTIVE}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._idempotency: dict[tuple[str | None, str], str] = {}
        self._next_seq = 1

    async def add(self, records: Sequence[TaskRecord]) -> None:
        everyone = self._order[_EVERYONE]
        for record in records:
            record.seq = seq = self._next_seq
            self._next_seq += 1
            self._records[record.id] = record
            everyone.append(seq, record.id)
            if record.owner is not None:
                self._order.setdefault(record.owner, _SeqIndex()).append(seq, record.id)
            self._track(record)
            if record.idempotency_key is not None:
                self._idempotency[(record.owner, record.idempotency_key)] = record.id

    async def save(self, record: TaskRecord) -> None:
        if record.id in self._records:
            self._track(record)

    def _track(self, record: TaskRecord) -> None:
        """Move the record's count and index entries from its last saved status to its
        status now (on every save: the task path's hottest store code)."""
        status = record.status
        previous = self._status_of.get(record.id)
        if previous is status:
            return
        self._status_of[record.id] = status
        counts = self._counts[_EVERYONE]
        counts[status] += 1
        if previous is not None:
            counts[previous] -= 1
            if previous in ACTIVE:
                self._active[previous].discard(record.id)
        if status in ACTIVE:
            self._active[status].add(record.id)
        elif status in TERMINAL:
            self._finished[record.id] = record.finished_at or 0.0
        if record.owner is not None:
            owned = self._counts.get(record.owner)
            if owned is None:
                owned = self._counts[record.owner] = Counter()
            owned[status] += 1
            if previous is not None:
                owned[previous] -= 1

    def _uncount(self, record: TaskRecord, status: Status) -> None:
        self._counts[_EVERYONE][status] -= 1
        if record.owner is not None:
            self._counts[record.owner][status] -= 1
        if status in ACTIVE:
            self._active[status].discard(record.id)

    async def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    async def delete(self, task_id: str) -> bool:
        record = self._records.pop(task_id, None)
        if record is None:
            return False
        self._uncount(record, self._status_of.pop(task_id))
        self._finished.pop(task_id, None)
        if record.idempotency_key is not None:
            self._idempotency.pop((record.owner, record.idempotency_key), None)
        for key in _keys(record):
            live = sum(self._counts[key].values())
            self._order[key].compact_if_sparse(live, self._records)
        return True

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        candidates: Iterator[TaskRecord | None]
        if query.statuses is not None and query.statuses <= ACTIVE:
            candidates = self._newest_active(query)
        else:
            index = self._order.get(_EVERYONE if query.owner is None else query.owner,
                                    _SeqIndex())
            candidates = (self._records.get(i) for i in index.newest_first(query.before_seq))
        items: list[TaskRecord] = []
        for record in candidates:
            if record is not None and _matches(record, query):
                items.append(record)
                if len(items) >= query.limit:
                    break
        return items

    def _newest_active(self, query: ListQuery) -> Iterator[TaskRecord | None]:
        assert query.statuses is not None
        chosen = [self._records[i] for status in query.statuses for i in self._active[status]]
        if query.before_seq is not None:
            chosen = [r for r in chosen if r.seq < query.before_seq]
        return iter(sorted(chosen, key=lambda r: r.seq, reverse=True))

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        counts = self._counts.get(_EVERYONE if owner is None else owner, Counter())
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


def _keys(record: TaskRecord) -> tuple[str, ...]:
    return (_EVERYONE,) if record.owner is None else (_EVERYONE, record.owner)


def _matches(record: TaskRecord, query: ListQuery) -> bool:
    if query.owner is not None and record.owner != query.owner:
        return False
    if query.name is not None and record.name != query.name:
        return False
    return query.statuses is None or record.status in query.statuses

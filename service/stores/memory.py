"""The embedded default store: plain dictionaries in this process, records kept by reference.

Records it hands out are its own objects (no copies, for speed): callers read them and
change them only through the store's methods.
"""

from __future__ import annotations

import secrets
from collections import ChainMap, Counter, OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence

from ..models import ALLOWED_MOVES, TERMINAL, Progress, Status, TaskError, TaskRecord
from ..rate_limits import RateLimit
from .base import ClaimRequest, ListQuery, Outcome, PoolRoom, QueueBoundReached, TaskStore
from .dependencies import DependencyBook, check_known, released_args
from .memory_index import EVERYONE, SeqIndex, index_keys, index_of, matches
from .memory_queue import StartQueue
from .rate_room import StartRoom, earliest_start, log_start, nth_newest

STATUS_SORT_RATIO = 8  # sort a status's records when they are at most 1/8 of all records
STATUS_SORT_MIN = 4096


class MemoryStore(TaskStore):
    """Records in this process only: fast, and gone when the process ends.

    Every query is served from an index, so that listing and counting stay cheap with the
    default 100,000 records: counts per owner, ids in order per owner, per name, and the
    ids of the active statuses (few, usually), which a filter on them reads instead.
    """

    durable = False
    shared = False
    supports_meta = True

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._status_of: dict[str, Status] = {}
        self._counts: dict[str, Counter[Status]] = {EVERYONE: Counter()}
        self._order: dict[str, SeqIndex] = {EVERYONE: SeqIndex()}
        self._by_name: dict[str, SeqIndex] = {}
        self._named: Counter[str] = Counter()
        self._with_status: dict[Status, set[str]] = {status: set() for status in Status}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._idempotency: dict[tuple[str | None, str], str] = {}
        self._queue = StartQueue()
        self._next_seq = 1
        self._key = secrets.token_bytes(32)
        self._meta: dict[str, bytes] = {}
        self._deps = DependencyBook()
        self._starts: dict[str, list[float]] = {}  # per rate-limited name, oldest first

    # -- the front ------------------------------------------------------------------------

    async def add(self, records: Sequence[TaskRecord], max_pending: int | None = None
                  ) -> list[TaskRecord]:
        answer = list(records)
        fresh: list[int] = []
        batch: dict[tuple[str | None, str], TaskRecord] = {}
        for index, record in enumerate(records):
            key = record.idempotency_key
            if key is None:
                fresh.append(index)
                continue
            known = self._idempotency.get((record.owner, key))
            first = self._records[known] if known is not None else batch.get((record.owner, key))
            if first is not None:
                answer[index] = first
            else:
                batch[(record.owner, key)] = record
                fresh.append(index)
        if max_pending is not None and self._pending() + len(fresh) > max_pending:
            raise QueueBoundReached(f"{max_pending} tasks are queued or scheduled")
        check_known(records, fresh, self._records.get)
        self._admit([records[index] for index in fresh])
        return answer

    def _admit(self, fresh: list[TaskRecord]) -> None:
        """Insert new records; each waiting one is queued or cancelled at once if its
        dependencies allow, else booked to wait."""
        for record in fresh:
            if record.status is Status.WAITING:
                break
        else:  # nothing waits: the common case, without the book's look-ups
            for record in fresh:
                self._insert(record)
            return
        known = ChainMap({record.id: record for record in fresh}, self._records)
        ended = []
        for record in fresh:
            if record.status is Status.WAITING:
                status, value = self._deps.admit(record, known)
                if status is Status.QUEUED:
                    assert isinstance(value, list)
                    record.args = released_args(record.receives, value, record.args)
                elif status is Status.CANCELLED:
                    record.error = value if isinstance(value, TaskError) else None
                    record.finished_at = record.created_at
                    ended.append(record)
                record.status = status
            self._insert(record)
        for record in ended:  # records of this call may wait for it
            self._ended(record, record.created_at)

    def _pending(self) -> int:
        counts = self._counts[EVERYONE]
        return counts[Status.QUEUED] + counts[Status.SCHEDULED] + counts[Status.WAITING]

    def _ended(self, record: TaskRecord, now: float) -> None:
        """``record`` has just become terminal: release or cancel the records waiting for
        it, and theirs in turn (see :mod:`.dependencies`)."""
        todo = [record]
        while todo:
            ending = self._deps.ended(todo.pop())
            for task_id, results in ending.released:
                waiter = self._records[task_id]
                waiter.args = released_args(waiter.receives, results, waiter.args)
                waiter.move(Status.QUEUED)
                self._track(waiter)
                self._queue.push(waiter)
                self._changed("status", waiter)
            for task_id, error in ending.cancelled:
                waiter = self._records[task_id]
                waiter.move(Status.CANCELLED)
                waiter.error = error
                waiter.finished_at = now
                self._track(waiter)
                self._changed("status", waiter)
                todo.append(waiter)

    def _insert(self, record: TaskRecord) -> None:
        record.seq = seq = self._next_seq
        self._next_seq += 1
        self._records[record.id] = record
        self._order[EVERYONE].append(seq, record.id)
        if record.owner is not None:
            index_of(self._order, record.owner).append(seq, record.id)
        index_of(self._by_name, record.name).append(seq, record.id)
        self._named[record.name] += 1
        self._track(record)
        if record.idempotency_key is not None:
            self._idempotency[(record.owner, record.idempotency_key)] = record.id
        if record.status is Status.QUEUED:
            self._queue.push(record)
        elif record.status is Status.SCHEDULED:
            self._queue.delay(record)
        self._changed("status", record)

    async def get(self, task_id: str) -> TaskRecord | None:
        return self._records.get(task_id)

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        candidates: Iterator[TaskRecord | None]
        if self._few_with_status(query):
            candidates = self._newest_with_status(query)
        else:
            if query.name is not None:
                index = self._by_name.get(query.name, SeqIndex())
            else:
                owner = EVERYONE if query.owner is None else query.owner
                index = self._order.get(owner, SeqIndex())
            candidates = (self._records.get(i) for i in index.newest_first(query.before_seq))
        items: list[TaskRecord] = []
        for record in candidates:
            if record is not None and matches(record, query):
                items.append(record)
                if len(items) >= query.limit:
                    break
        return items

    def _few_with_status(self, query: ListQuery) -> bool:
        """Whether the records of the wanted statuses are few enough to sort, rather than
        walk every record newest first until a page is full (a rare status among many)."""
        if query.statuses is None:
            return False
        wanted = sum(len(self._with_status[status]) for status in query.statuses)
        return wanted * STATUS_SORT_RATIO <= len(self._records) or wanted <= STATUS_SORT_MIN

    def _newest_with_status(self, query: ListQuery) -> Iterator[TaskRecord | None]:
        assert query.statuses is not None
        chosen = [self._records[i] for status in query.statuses
                  for i in self._with_status[status]]
        if query.before_seq is not None:
            chosen = [r for r in chosen if r.seq < query.before_seq]
        return iter(sorted(chosen, key=lambda r: r.seq, reverse=True))

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        counts = self._counts.get(EVERYONE if owner is None else owner, Counter())
        return {status: counts[status] for status in Status}

    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        record = self._records.get(task_id)
        if record is None or record.terminal:
            return record
        record.cancel_requested = True
        if record.status is Status.RUNNING:
            self._changed("status", record)
            return record
        was_queued = record.status is Status.QUEUED
        record.move(Status.CANCELLED)
        record.finished_at = now
        self._track(record)
        if was_queued:
            self._queue.dropped(record)
        self._deps.forget(record.id)
        self._changed("status", record)
        self._ended(record, now)
        return record

    async def delete(self, task_id: str) -> bool:
        record = self._records.get(task_id)
        if record is None or not record.terminal:
            return False
        del self._records[task_id]
        self._uncount(record, self._status_of.pop(task_id))
        self._finished.pop(task_id, None)
        if record.idempotency_key is not None:
            self._idempotency.pop((record.owner, record.idempotency_key), None)
        for key in index_keys(record):
            live = sum(self._counts[key].values())
            self._order[key].compact_if_sparse(live, self._records)
        self._named[record.name] -= 1
        if self._named[record.name]:
            self._by_name[record.name].compact_if_sparse(self._named[record.name], self._records)
        else:  # the last of its name: the index goes too (names come and go with modules)
            del self._named[record.name], self._by_name[record.name]
        return True

    async def cursor_key(self) -> bytes:
        return self._key

    async def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    async def put_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = bytes(value)

    async def compare_and_set_meta(self, key: str, expected: bytes | None, value: bytes
                                   ) -> bool:
        if self._meta.get(key) != expected:  # no await in between: atomic on the loop
            return False
        self._meta[key] = bytes(value)
        return True

    # -- the runner -----------------------------------------------------------------------

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        for due in self._queue.due(request.now):
            due.move(Status.QUEUED)
            self._track(due)
            self._queue.push(due)
            self._changed("status", due)
        claimed: list[TaskRecord] = []
        pools = (StartRoom(request, self._starts_of) if request.rates
                 else PoolRoom(request.pools))
        while len(claimed) < request.limit:
            record = self._queue.pop_best(request.limits, request.excluded, pools)
            if record is None:
                break
            pools.take(record.name)
            record.move(Status.RUNNING)
            record.attempts += 1
            record.started_at = request.now
            record.progress = None
            record.lease_owner = request.worker
            record.lease_expires = request.now + request.lease
            self._queue.running_by_name[record.name] += 1
            rate = request.rates.get(record.name)
            if rate is not None:
                log_start(self._starts.setdefault(record.name, []), request.now, rate.starts)
            self._track(record)
            claimed.append(record)
            self._changed("status", record)
        return claimed

    async def next_due(self) -> float | None:
        return self._queue.next_due()

    async def next_start(self, rates: Mapping[str, RateLimit], now: float) -> float | None:
        return earliest_start(
            rates, lambda name, n: nth_newest(self._starts.get(name, []), n), now)

    def _starts_of(self, name: str, newest: int) -> list[float]:
        return self._starts.get(name, [])[-newest:]

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        stored = self._held(record, worker)
        if stored is None:
            return None
        status = outcome.status
        if status not in TERMINAL and stored.cancel_requested:
            status = Status.CANCELLED
        if status not in ALLOWED_MOVES[Status.RUNNING]:
            raise ValueError(f"a running task cannot settle as {status}")
        stored.move(status)
        stored.lease_owner = stored.lease_expires = None
        stored.error = outcome.error
        self._queue.running_by_name[stored.name] -= 1
        if status in TERMINAL:
            stored.result = outcome.result
            stored.finished_at = outcome.at
        self._track(stored)
        if status is Status.SCHEDULED:
            stored.scheduled_at = outcome.scheduled_at
            self._queue.delay(stored)
        elif status is Status.QUEUED:
            self._queue.push(stored)
        self._changed("status", stored)
        if status in TERMINAL and self._deps.awaited(stored.id):
            self._ended(stored, outcome.at)
        return stored

    def _held(self, record: TaskRecord, worker: str) -> TaskRecord | None:
        stored = self._records.get(record.id)
        if (stored is None or stored.status is not Status.RUNNING
                or stored.attempts != record.attempts or stored.lease_owner != worker):
            return None
        return stored

    async def save_progress(self, record: TaskRecord, worker: str, progress: Progress) -> bool:
        stored = self._held(record, worker)
        if stored is None:
            return False
        stored.progress = progress
        self._changed("progress", stored)
        return True

    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        held = {}
        for task_id in task_ids:
            record = self._records.get(task_id)
            if (record is not None and record.status is Status.RUNNING
                    and record.lease_owner == worker):
                record.lease_expires = now + lease
                held[task_id] = record.cancel_requested
        return held

    async def reclaim(self, worker: str, now: float, lease: float) -> list[TaskRecord]:
        taken = []
        for task_id in self._with_status[Status.RUNNING]:
            record = self._records[task_id]
            if record.lease_expires is not None and record.lease_expires < now:
                record.lease_owner = worker
                record.lease_expires = now + lease
                taken.append(record)
        return taken

    async def abandon_pending(self, now: float, error: TaskError) -> None:
        for status in (Status.QUEUED, Status.SCHEDULED, Status.WAITING):
            for task_id in list(self._with_status[status]):
                record = self._records[task_id]
                self._deps.forget(task_id)
                record.move(Status.FAILED)
                record.error = TaskError(error.type, error.message)
                record.finished_at = now
                self._track(record)
                self._changed("status", record)

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        evicted = 0
        while self._finished:
            task_id, finished_at = next(iter(self._finished.items()))
            if finished_at >= finished_before and len(self._finished) <= keep_at_most:
                break
            await self.delete(task_id)
            evicted += 1
        return evicted

    # -- indexes --------------------------------------------------------------------------

    def _track(self, record: TaskRecord) -> None:
        """Move the record's count and index entries from its last tracked status to its
        status now (on every change: the task path's hottest store code)."""
        status = record.status
        previous = self._status_of.get(record.id)
        if previous is status:
            return
        self._status_of[record.id] = status
        counts = self._counts[EVERYONE]
        counts[status] += 1
        if previous is not None:
            counts[previous] -= 1
            self._with_status[previous].discard(record.id)
        self._with_status[status].add(record.id)
        if status in TERMINAL:
            self._finished[record.id] = record.finished_at or 0.0
        if record.owner is not None:
            owned = self._counts.get(record.owner)
            if owned is None:
                owned = self._counts[record.owner] = Counter()
            owned[status] += 1
            if previous is not None:
                owned[previous] -= 1

    def _uncount(self, record: TaskRecord, status: Status) -> None:
        self._counts[EVERYONE][status] -= 1
        if record.owner is not None:
            self._counts[record.owner][status] -= 1
        self._with_status[status].discard(record.id)


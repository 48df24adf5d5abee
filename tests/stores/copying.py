"""A test store that shares no record object with its callers.

It wraps a :class:`MemoryStore` and deep-copies every record on the way in and on the way
out (answers and ``on_change`` alike), as a store that keeps records elsewhere must. Code
that changes a record it was handed and expects the store to see it, or that expects two
answers to be the same object, fails against it.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

from service.models import Progress, Status, TaskError, TaskRecord
from service.rate_limits import RateLimit
from service.stores.base import (
    ChangeKind,
    ClaimRequest,
    ListQuery,
    Outcome,
    TaskStore,
)
from service.stores.memory import MemoryStore

T = TypeVar("T")


def _copy(value: T) -> T:
    return copy.deepcopy(value)


class CopyingStore(TaskStore):
    """A :class:`MemoryStore` behind deep copies (see the module's docstring)."""

    durable = MemoryStore.durable
    shared = MemoryStore.shared

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.inner.on_change = self._relay

    def _relay(self, kind: ChangeKind, record: TaskRecord) -> None:
        self._changed(kind, _copy(record))

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def add(self, records: Sequence[TaskRecord], max_pending: int | None = None
                  ) -> list[TaskRecord]:
        return _copy(await self.inner.add(_copy(list(records)), max_pending))

    async def get(self, task_id: str) -> TaskRecord | None:
        return _copy(await self.inner.get(task_id))

    async def page(self, query: ListQuery) -> list[TaskRecord]:
        return _copy(await self.inner.page(query))

    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        return await self.inner.count_by_status(owner)

    async def request_cancel(self, task_id: str, now: float) -> TaskRecord | None:
        return _copy(await self.inner.request_cancel(task_id, now))

    async def delete(self, task_id: str) -> bool:
        return await self.inner.delete(task_id)

    async def cursor_key(self) -> bytes:
        return await self.inner.cursor_key()

    async def claim(self, request: ClaimRequest) -> list[TaskRecord]:
        return _copy(await self.inner.claim(request))

    async def next_due(self) -> float | None:
        return await self.inner.next_due()

    async def next_start(self, rates: Mapping[str, RateLimit], now: float) -> float | None:
        return await self.inner.next_start(dict(rates), now)

    async def settle(self, record: TaskRecord, worker: str, outcome: Outcome
                     ) -> TaskRecord | None:
        return _copy(await self.inner.settle(_copy(record), worker, _copy(outcome)))

    async def save_progress(self, record: TaskRecord, worker: str, progress: Progress) -> bool:
        return await self.inner.save_progress(_copy(record), worker, _copy(progress))

    async def renew(self, worker: str, task_ids: Collection[str], now: float, lease: float
                    ) -> dict[str, bool]:
        return await self.inner.renew(worker, list(task_ids), now, lease)

    async def reclaim(self, worker: str, now: float, lease: float) -> list[TaskRecord]:
        return _copy(await self.inner.reclaim(worker, now, lease))

    async def abandon_pending(self, now: float, error: TaskError) -> None:
        await self.inner.abandon_pending(now, _copy(error))

    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        return await self.inner.evict(finished_before, keep_at_most)

    async def changes_since(self, cursor: int | None
                            ) -> tuple[int, list[tuple[ChangeKind, TaskRecord]]]:
        return _copy(await self.inner.changes_since(cursor))

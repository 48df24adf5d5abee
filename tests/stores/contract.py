"""Helpers of the store contract suite (see test_store_contract.py)."""

from __future__ import annotations

from service.models import Status, TaskRecord
from service.stores import ListQuery, TaskStore
from service.stores.base import ChangeKind, ClaimRequest, Outcome

NOW = 1000.0
LEASE = 30.0

Events = list[tuple[ChangeKind, TaskRecord]]


def new(name: str = "t", owner: str | None = None, key: str | None = None,
        priority: int = 0, scheduled_at: float | None = None) -> TaskRecord:
    return TaskRecord(name=name, args=[1, {"x": [2**70]}], kwargs={"k": "v"}, owner=owner,
                      idempotency_key=key, request_hash=None if key is None else "h" + key,
                      created_at=100.0, max_attempts=3, priority=priority, timeout=5.0,
                      status=Status.QUEUED if scheduled_at is None else Status.SCHEDULED,
                      scheduled_at=scheduled_at)


async def claim(store: TaskStore, limit: int = 1, worker: str = "w", now: float = NOW,
                **options: object) -> list[TaskRecord]:
    return await store.claim(ClaimRequest(worker, now, LEASE, limit, **options))  # type: ignore[arg-type]


async def succeed(store: TaskStore, record: TaskRecord, at: float = NOW + 1,
                  worker: str = "w", status: Status = Status.SUCCEEDED) -> TaskRecord:
    settled = await store.settle(record, worker, Outcome(status, at, result={"done": at}))
    assert settled is not None
    return settled


async def fetch(store: TaskStore, task_id: str) -> TaskRecord:
    record = await store.get(task_id)
    assert record is not None
    return record


async def ids(store: TaskStore, **query: object) -> list[str]:
    return [r.id for r in await store.page(ListQuery(**query))]  # type: ignore[arg-type]


async def flush(store: TaskStore) -> None:
    """Wait for coalesced progress to be written (stores that write at once have none)."""
    flushing = getattr(store, "flush", None)
    if flushing is not None:
        await flushing()


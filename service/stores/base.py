"""The storage contract. Stores only persist; the rules live in the core (saq's split)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..models import Status, TaskRecord


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page of tasks, newest first. ``before_seq`` continues after a previous page."""

    statuses: frozenset[Status] | None = None
    name: str | None = None
    owner: str | None = None
    limit: int = 50
    before_seq: int | None = None


class TaskStore(ABC):
    """Where task records live. One contract, one test suite, every backend.

    Records handed to a store belong to the core: a store must not change them except to
    assign ``seq`` in :meth:`add`.
    """

    durable: bool = False
    """True when a record survives a restart of the process (a 202 means it is stored)."""

    async def open(self) -> None:
        """Connect, create tables, etc. Called once before use."""

    async def close(self) -> None:
        """Release resources. Called once at shutdown."""

    @abstractmethod
    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Store new records, all or none, assigning each a growing ``seq``."""

    @abstractmethod
    async def save(self, record: TaskRecord) -> None:
        """Persist the current state of a record that was added before."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The record with that id, or None."""

    @abstractmethod
    async def delete(self, task_id: str) -> bool:
        """Forget a record; False if there was none."""

    @abstractmethod
    async def page(self, query: ListQuery) -> list[TaskRecord]:
        """Up to ``query.limit`` records matching the query, newest (highest seq) first."""

    @abstractmethod
    async def count_by_status(self, owner: str | None = None) -> dict[Status, int]:
        """How many records have each status (every status present, zeros included)."""

    @abstractmethod
    async def find_idempotent(self, owner: str | None, key: str) -> TaskRecord | None:
        """The record submitted by ``owner`` under ``Idempotency-Key: key``, if still kept."""

    @abstractmethod
    async def evict(self, finished_before: float, keep_at_most: int) -> int:
        """Drop terminal records finished before a time, then the oldest beyond a count."""

    @abstractmethod
    async def unfinished(self) -> list[TaskRecord]:
        """Records left queued, scheduled or running by an earlier process (durable stores)."""

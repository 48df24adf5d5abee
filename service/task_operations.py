"""What a :class:`~service.core.TaskService` does with one accepted task, by its id: look
it up, wait for its end, follow its changes, cancel it, delete it."""

from __future__ import annotations

import time

from .dispatch import Dispatch
from .errors import TaskAlreadyTerminal, TaskNotFound, TaskStillActive
from .events import EventHub, Subscription, wait_until_set
from .models import TaskRecord, looks_like_task_id
from .stores.base import TaskStore


class TaskOperations:
    """The by-id operations of :class:`~service.core.TaskService` (mixed into it): they
    need only its store, event hub and dispatch. An ``owner`` given to any of them hides
    the tasks of other owners (as not found)."""

    store: TaskStore
    hub: EventHub
    dispatch: Dispatch

    async def get(self, task_id: str, owner: str | None = None) -> TaskRecord:
        """The task's record; :class:`TaskNotFound` if there is none the owner may see."""
        record = await self.store.get(task_id) if looks_like_task_id(task_id) else None
        if record is None or (owner is not None and record.owner != owner):
            raise TaskNotFound(task_id)
        return record

    async def wait(self, task_id: str, timeout: float | None, owner: str | None = None
                   ) -> TaskRecord:
        """The record once terminal, or as it is when ``timeout`` seconds have passed."""
        record = await self.get(task_id, owner)
        if record.terminal or timeout == 0:
            return record
        finished = self.hub.expect_terminal(task_id)  # listen, then look again: no end
        try:                                          # can slip between the two
            record = await self.get(task_id, owner)
        except TaskNotFound:
            self.hub.forget(task_id)  # deleted meanwhile: nothing will ever end it
            raise
        if not record.terminal:
            await wait_until_set(finished, timeout)
            record = await self.store.get(task_id) or record
        return record

    async def cancel(self, task_id: str, owner: str | None = None) -> TaskRecord:
        """Cancel a task that has not finished; :class:`TaskAlreadyTerminal` otherwise."""
        record = await self.get(task_id, owner)
        if not record.terminal:
            record = await self.store.request_cancel(task_id, time.time()) or record
            if record.cancel_requested:  # else it ended meanwhile, on its own
                self.dispatch.cancelled(record)
                return record
        raise TaskAlreadyTerminal(f"task {task_id} is already {record.status}")

    async def delete(self, task_id: str, owner: str | None = None) -> None:
        """Forget a finished task's record; :class:`TaskStillActive` if it is not finished."""
        record = await self.get(task_id, owner)
        if not record.terminal or not await self.store.delete(task_id):
            raise TaskStillActive(f"task {task_id} is {record.status}; cancel it first")
        self.hub.forget(task_id)

    async def subscribe(self, task_id: str, owner: str | None = None
                        ) -> tuple[TaskRecord, Subscription | None]:
        """The record now, and a subscription to its changes (None if it is terminal)."""
        record = await self.get(task_id, owner)
        if record.terminal:
            return record, None
        subscription = self.hub.subscribe(task_id)  # listen, then look again (see wait)
        try:
            record = await self.get(task_id, owner)
        except BaseException:
            subscription.close()
            raise
        if record.terminal:
            subscription.close()
            return record, None
        return record, subscription

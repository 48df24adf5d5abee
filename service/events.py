"""Fan-out of task changes to listeners (event streams) and waiters (``wait``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .feed import Feed
from .models import JSON, TaskRecord

EventKind = Literal["status", "progress"]
LISTENER_BUFFER = 256


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One change of one task: its kind and the whole task object at that moment."""

    kind: EventKind
    task: dict[str, JSON]
    terminal: bool


class EventHub:
    """Per-task listeners, terminal waiters and the service-wide :class:`Feed`. Costs one
    dict look-up and one flag check when nobody listens."""

    def __init__(self, include_traceback: bool = False, feed: Feed | None = None) -> None:
        self._include_traceback = include_traceback
        self.feed = feed if feed is not None else Feed(include_traceback=include_traceback)
        self._listeners: dict[str, set[asyncio.Queue[TaskEvent]]] = {}
        self._finished: dict[str, asyncio.Event] = {}

    def publish(self, kind: EventKind, record: TaskRecord) -> None:
        """Tell listeners of ``record`` about a change; wake waiters when it is terminal."""
        if self.feed.armed:
            self.feed.publish(kind, record)
        queues = self._listeners.get(record.id)
        if queues:
            event = TaskEvent(kind, record.to_json(self._include_traceback), record.terminal)
            for queue in queues:
                _put_dropping_oldest(queue, event)
        if record.terminal:
            # Every listener has its last event queued; one that never reads it (a client
            # gone before its stream began) must not keep the queue alive.
            self._listeners.pop(record.id, None)
            waiter = self._finished.pop(record.id, None)
            if waiter is not None:
                waiter.set()

    def expect_terminal(self, task_id: str) -> asyncio.Event:
        """The event set once the task is published terminal (or forgotten), listening from
        now on: look at the record *after* this, then wait with :func:`wait_until_set`."""
        return self._finished.setdefault(task_id, asyncio.Event())

    async def wait_terminal(self, task_id: str, timeout: float | None) -> bool:
        """Wait until ``publish`` sees the task terminal; False when ``timeout`` passes first.

        Only a terminal event published after this call counts (see :meth:`expect_terminal`).
        """
        return await wait_until_set(self.expect_terminal(task_id), timeout)

    def subscribe(self, task_id: str) -> Subscription:
        """Start listening now (synchronously, so no change is missed); iterate to read."""
        return Subscription(self, task_id)

    def forget(self, task_id: str) -> None:
        """Drop a waiter nobody will ever wake (the record was deleted or evicted)."""
        waiter = self._finished.pop(task_id, None)
        if waiter is not None:
            waiter.set()

    def listener_count(self) -> int:
        """Open subscriptions: of one task each, and readers of the feed."""
        return sum(len(q) for q in self._listeners.values()) + self.feed.reader_count()

    def _attach(self, task_id: str, queue: asyncio.Queue[TaskEvent]) -> None:
        self._listeners.setdefault(task_id, set()).add(queue)

    def _detach(self, task_id: str, queue: asyncio.Queue[TaskEvent]) -> None:
        queues = self._listeners.get(task_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._listeners[task_id]


class Subscription:
    """The events of one task, until and including its terminal one. Close when done."""

    def __init__(self, hub: EventHub, task_id: str) -> None:
        self._hub = hub
        self._task_id = task_id
        self._queue: asyncio.Queue[TaskEvent] = asyncio.Queue(LISTENER_BUFFER)
        self._done = False
        hub._attach(task_id, self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> TaskEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event.terminal:
            self.close()
        return event

    async def next(self, timeout: float | None) -> TaskEvent | None:
        """The next event, or None when ``timeout`` passes first (for keep-alives)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._hub._detach(self._task_id, self._queue)


async def wait_until_set(event: asyncio.Event, timeout: float | None) -> bool:
    """True once ``event`` is set; False when ``timeout`` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


CANCEL_AGAIN = 1.0  # seconds before a loop that outlived its cancel is cancelled again


async def cancel_loops(loops: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel background loops and wait until each has ended. A loop is cancelled again
    while it runs on: a cancel that lands in a loop's own wait may be swallowed (on Python
    3.11 ``asyncio.timeout`` can turn it into its own timeout), and a stop must not hang."""
    pending = {loop for loop in loops if not loop.done()}
    while pending:
        for loop in pending:
            loop.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN)
    await asyncio.gather(*loops, return_exceptions=True)


def _put_dropping_oldest(queue: asyncio.Queue[TaskEvent], event: TaskEvent) -> None:
    # A slow reader loses old progress, never the newest state (the terminal event is last).
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)

"""Getting each startable record a Celery message, with nothing lost (web and worker side).

The rule: before a record becomes startable (a submission: in the same step as the record,
``add_planned``), the process that makes it so plans its message in the store
(:class:`~service.stores.dispatch.DispatchStore`), then sends it. The
plan entry goes only when a worker starts the record (``claim_by_id`` drops it in the same
step) or finds it ended. So a process that dies before sending, a broker that is down, and
a broker that loses a message (Redis killed while it hands one out) all leave an entry,
and the dispatcher loop of a web process sends the message again when the entry's time
comes: ``OFFLOAD_CELERY_RESEND`` seconds after the send, then as long again as the record
has waited (a long backlog costs a few extra messages per task, which workers drop).
Scheduled records (a delay, a retry's wait) are planned for their time. Messages are only
sent for records that may start now: no Celery countdown, so no message waits in a
worker's memory (the Redis transport hands those out again after its visibility timeout).
A type whose concurrency or rate limit holds a start back is *gated* in the store: its
waiting records' messages are dropped, and the gate wakes those that may start, in queue
order, when a start may be allowed (see :mod:`~service.stores.dispatch`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ..dispatch import Add, Dispatch
from ..events import wait_until_set
from ..models import Status, TaskRecord
from ..rate_limits import RateLimit
from ..registry import Registry
from ..runner.runner import Runner
from ..settings import Settings
from ..stores.base import Outcome, TaskStore
from ..stores.dispatch import DispatchStore
from .config import make_celery
from .publisher import Publisher

log = logging.getLogger("offload.celery")
POLL = 0.2  # seconds at most between two passes of the dispatcher loop
WAITING_RECHECK = 60.0  # seconds between two looks at a record waiting for others
BATCH = 500  # plan entries taken at once


class Dispatcher:
    """Plans, sends and clears: what web processes and workers share."""

    def __init__(self, store: DispatchStore, records: TaskStore, publisher: Publisher,
                 resend: float) -> None:
        self.store = store
        self.records = records
        self.publisher = publisher
        self.resend = resend
        self._background: set[asyncio.Task[Any]] = set()

    async def admit(self, records: Sequence[TaskRecord], add: Add) -> list[TaskRecord]:
        """Add the records with their messages' plan in one step, then send (in the
        background: the caller's answer never waits for the broker) those that may start
        now."""
        now = time.time()
        stored = await add({r.id: self._plan_time(r, now) for r in records})
        fresh = [s for s, r in zip(stored, records, strict=True) if s.id == r.id]
        self.spawn(self.send([r for r in fresh if r.status is Status.QUEUED], replan=False))
        return stored

    async def send(self, records: Sequence[TaskRecord], clear: Sequence[str] = (),
                   replan: bool = True) -> None:
        """Send these records' messages now; plan each again for when it is sent anew if
        no worker has started it by then (``replan``: else its entry's time stands; an
        entry a worker has already cleared stays cleared), and forget the plans of
        ``clear``."""
        if records and await self.publisher.send(records) and replan:
            now = time.time()
            await self.store.plan_dispatch({r.id: now + self._wait_after(r, now)
                                            for r in records}, planned_only=True)
        if clear:
            await self.store.dispatched(clear)

    async def send_released(self, records: Sequence[TaskRecord]) -> None:
        """Send the messages of records just released from their dependencies, each
        planned (if it is still planned) to be sent again after ``resend``: they have
        just become startable, however long they waited."""
        now = time.time()
        await self.store.plan_dispatch({r.id: now + self.resend for r in records},
                                       planned_only=True)
        await self.send(records, replan=False)

    def _wait_after(self, record: TaskRecord, now: float) -> float:
        """How long a sent message may go unclaimed: ``resend``, or as long as the record
        has been startable (so a long backlog costs a few messages per task, no flood)."""
        since = max(t for t in (record.created_at, record.scheduled_at, record.started_at)
                    if t is not None)
        return max(self.resend, now - since)

    def _plan_time(self, record: TaskRecord, now: float) -> float:
        if record.status is Status.SCHEDULED and record.scheduled_at is not None:
            return record.scheduled_at
        if record.status is Status.WAITING:
            return now + WAITING_RECHECK
        return now + self.resend

    async def requeue(self, record: TaskRecord, outcome: Outcome,
                      settle: Callable[[], Awaitable[TaskRecord | None]]
                      ) -> TaskRecord | None:
        """A runner's settle that makes a record startable again (a retry or a hand-back):
        planned first, sent after (a retry's wait is left to the dispatcher loop)."""
        at = outcome.scheduled_at if outcome.status is Status.SCHEDULED else None
        await self.store.plan_dispatch({record.id: at or time.time() + self.resend})
        settled = await settle()
        if settled is not None and settled.status is Status.QUEUED:
            await self.send([settled], replan=False)
        elif settled is not None and settled.terminal:  # a cancel came first
            await self.store.dispatched([record.id])
        return settled

    async def send_due(self) -> int:
        """One pass over the plan's due entries; how many it took."""
        now = time.time()
        taken = await self.store.take_dispatch(now, BATCH, now + self.resend)
        if taken.woken:  # planned already: a lost one is sent again after the resend
            await self.send(taken.woken, replan=False)
        if not taken.ids:
            return 0
        found = await asyncio.gather(*(self.records.get(task_id) for task_id in taken.ids))
        gone, later, ready = [], {}, []
        for task_id, record in zip(taken.ids, found, strict=True):
            if record is None or record.terminal:
                gone.append(task_id)
            elif record.status is Status.WAITING:
                later[task_id] = now + WAITING_RECHECK
            elif record.status is Status.SCHEDULED and (record.scheduled_at or 0.0) > now:
                later[task_id] = record.scheduled_at or now
            elif record.status is not Status.RUNNING:  # running: looked at again later
                ready.append(record)
        if later:
            await self.store.plan_dispatch(later)
        await self.send(ready, gone)
        return len(taken.ids)

    async def open_gate(self, name: str, limit: int | None, rate: RateLimit | None) -> None:
        """A task of ``name`` ended or a queued one was cancelled: if its type's gate is
        closed, the records that may start now (under ``limit`` and ``rate``) and have no
        message out are woken, and their messages sent from here."""
        now = time.time()
        await self.send(await self.store.open_gate(name, now, now + self.resend, limit, rate),
                        replan=False)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def settle_background(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("sending task messages failed; they are sent again from the store's "
                    "dispatch plan: %s", task.exception())


class CeleryDispatch(Dispatch):
    """The web side of Celery mode: records go to the store, then to Celery workers."""

    name = "celery"
    runner_claims = False

    def __init__(self, settings: Settings, store: TaskStore, registry: Registry) -> None:
        if not isinstance(store, DispatchStore):
            raise ValueError(f"OFFLOAD_CELERY_BROKER needs a store that Celery workers "
                             f"share: OFFLOAD_STORE=redis://host:6379/0, not "
                             f"{settings.store!r}")
        self.dispatcher = Dispatcher(store, store, Publisher(make_celery(settings)),
                                     settings.celery_resend)
        self.registry = registry
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self, runner: Runner) -> None:
        runner.requeuing = self.dispatcher.requeue
        self._loop = asyncio.create_task(self._send_due(), name="offload:celery-dispatch")

    async def admit(self, records: Sequence[TaskRecord], add: Add) -> list[TaskRecord]:
        return await self.dispatcher.admit(records, add)

    def cancelled(self, record: TaskRecord) -> None:
        if self._stopping:  # the publisher is closing; a worker's claim sees the cancel
            return
        self.dispatcher.spawn(self.dispatcher.publisher.revoke(record.id))
        if record.status is Status.CANCELLED:  # ended unstarted, its message revoked:
            # Celery drops it unseen, so the turn it may have had is passed on from here
            self.dispatcher.spawn(self.dispatcher.open_gate(
                record.name, self.registry.concurrency_limits().get(record.name),
                self.registry.rate_limits().get(record.name)))

    async def _send_due(self) -> None:
        failing = False
        while not self._stopping:
            upcoming: float | None = None
            try:
                while await self.dispatcher.send_due() == BATCH:
                    pass
                upcoming = await self.dispatcher.store.next_dispatch()
            except Exception as exc:
                if not failing:
                    log.warning("sending planned task messages failed (%s); trying again "
                                "every %gs", exc, POLL)
                failing = True
            else:
                failing = False
            wait = POLL if upcoming is None else min(max(upcoming - time.time(), 0.0), POLL)
            await wait_until_set(self._wake, wait)

    async def stop(self) -> None:
        # a flag, not only a cancel: on Python 3.11 a cancel that lands as the loop's
        # timeout expires is swallowed by asyncio.timeout, and the loop would go on
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.dispatcher.settle_background()
        self.dispatcher.publisher.close()

"""The core's state machine, its machinery: how it runs a :class:`TaskService` on a store,
acts on it (the bodies of the rules), waits for rest and observes. The rules themselves,
the promises (invariants) and the stores it runs on are in tests/test_core_state_machine.py,
whose docstring tells how it works."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis.stateful import RuleBasedStateMachine

from service import TaskService
from service.errors import (
    IdempotencyConflict,
    QueueFull,
    TaskAlreadyTerminal,
    TaskNotFound,
    TaskStillActive,
)
from service.models import PENDING, Status, Submission, TaskRecord
from service.stores import MemoryStore, TaskStore
from tests import state_tasks

from .core_machine_model import AT_REST_AHEAD, CORE, SETTLE_LIMIT, STOP_LIMIT, Kind, Snap, Tracked

T = TypeVar("T")


@dataclass(frozen=True)
class StoreKind:
    """Where records live, per generation: ``reopen(workdir, previous)`` returns the store
    for the next run of the service. A durable store must return one that sees what the
    previous run wrote (e.g. the same database file under ``workdir``)."""

    name: str
    reopen: Callable[[Path, TaskStore | None], TaskStore]


MEMORY = StoreKind("memory", lambda workdir, previous: MemoryStore())


class CoreMachine(RuleBasedStateMachine):
    """The task service under random operations: no rules here (see the test module)."""

    store_kind: ClassVar[StoreKind] = MEMORY

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.changed = asyncio.Event()
        self.workdir = Path(tempfile.mkdtemp(prefix="offload-state-"))
        self.tracked: dict[str, Tracked] = {}
        self.order: list[str] = []  # every id ever accepted, in order
        self.counter = 0
        self.generation = 0
        self.store: TaskStore | None = None
        self.evicted_finished: list[str] = []  # finish times of the records evicted
        state_tasks.reset(self._poke)
        self.service = self._run(self._start())

    @property
    def durable(self) -> bool:
        return self.service.store.durable

    def _queue_bound(self) -> int:
        """Queued plus scheduled never exceed max_queue: admission refuses at the bound and a
        retry that would pass it fails instead. One exception, by design: work a durable store
        hands back at shutdown is all taken back at the next start (accepted work is never
        dropped), so the queue may then pass the bound by what was running."""
        return CORE.max_queue + (CORE.max_concurrency if self.durable else 0)

    # -- plumbing -----------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def _poke(self) -> None:
        """A held task started or stopped waiting (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the test is over
            self.loop.call_soon_threadsafe(self.changed.set)

    async def _start(self) -> TaskService:
        self.generation += 1
        self.store = self.store_kind.reopen(self.workdir, self.store)
        service = TaskService(CORE, store=self.store)
        service.register_module("tests.state_tasks")
        publish = service.hub.publish

        def publish_and_poke(kind: Any, record: TaskRecord) -> None:
            publish(kind, record)
            self.changed.set()

        service.hub.publish = publish_and_poke  # type: ignore[method-assign]
        await service.start()
        self.service = service
        for tracked in self._present():
            if not tracked.last.terminal:
                record, tracked.subscription = await service.subscribe(tracked.id)
                tracked.records.append(Snap.of_record(record))
        await self._settle()
        return service

    def teardown(self) -> None:
        try:
            self._run(asyncio.wait_for(self.service.stop(grace=0), STOP_LIMIT))
        finally:
            state_tasks.release_all()
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self._run(asyncio.wait(pending))
            self.loop.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _present(self) -> list[Tracked]:
        return [t for t in self.tracked.values() if t.fate == "present"]

    def _pick(self, candidates: list[Tracked], pick: int) -> Tracked | None:
        return candidates[pick % len(candidates)] if candidates else None

    def _give(self, pick: int, verdict: str) -> None:
        """Hand a verdict to one of the held tasks that are running (at rest: waiting)."""
        tracked = self._pick([t for t in self._present()
                              if t.kind.held and t.last.status is Status.RUNNING], pick)
        if tracked is not None:
            self._run(self._decide(tracked, verdict))

    # -- coming to rest, and looking ------------------------------------------------------

    async def _settle(self) -> None:
        """Wait (on events, not on a clock) until every task is at rest, then observe."""
        deadline = self.loop.time() + SETTLE_LIMIT
        while True:
            self.changed.clear()  # before looking: a change while we look wakes us
            await self._check_bounds()
            restless = await self._restless()
            if not restless:
                break
            remaining = deadline - self.loop.time()
            assert remaining > 0, f"tasks never came to rest: {restless}"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        await self._observe()

    async def _restless(self) -> dict[str, str]:
        records = {t.id: await self.service.store.get(t.id) for t in self._present()}
        running = [self.tracked[i] for i, r in records.items()
                   if r is not None and r.status is Status.RUNNING]
        full = len(running) >= CORE.max_concurrency
        threads_full = sum(t.kind.thread for t in running) >= CORE.thread_workers
        now = time.time()
        restless = {}
        for task_id, record in records.items():
            tracked = self.tracked[task_id]
            if record is None or record.terminal:
                continue
            if record.status is Status.SCHEDULED:
                at_rest = (record.scheduled_at or 0.0) - now > AT_REST_AHEAD
            elif record.status is Status.QUEUED:
                at_rest = full or (tracked.kind.thread and threads_full)
            else:
                at_rest = (tracked.kind.held and not tracked.short_timeout
                           and not record.cancel_requested
                           and state_tasks.latch(tracked.key).waiting(record.attempts))
            if not at_rest:
                restless[task_id] = f"{tracked.kind.name} {record.status.value}"
        return restless

    async def _observe(self) -> None:
        """Read every known task's record and events. Records leave the store only when a
        rule deletes or evicts them: one gone otherwise is a failure."""
        for tracked in self._present():
            await self._drain(tracked)
            record = await self.service.store.get(tracked.id)
            assert record is not None, (
                f"{tracked.id} vanished, last seen {tracked.last}, though nothing deleted or "
                f"evicted it")
            snap = Snap.of_record(record)
            if snap != tracked.last:
                tracked.records.append(snap)

    async def _drain(self, tracked: Tracked) -> None:
        """Take the events waiting in the task's subscription (never waits for more)."""
        subscription = tracked.subscription
        while subscription is not None:
            event = await subscription.next(0)
            if event is None:
                return
            tracked.events.append(Snap.of_event(event))
            if event.terminal:
                tracked.subscription = subscription = None

    async def _check_bounds(self) -> None:
        """Limits that hold at every moment, not only at rest."""
        assert self.service.runner.running <= CORE.max_concurrency, self.service.runner.running
        counts = await self.service.store.count_by_status()
        pending = counts[Status.QUEUED] + counts[Status.SCHEDULED]
        assert pending <= self._queue_bound(), counts
        assert counts[Status.RUNNING] <= CORE.max_concurrency, counts

    # -- rule bodies ----------------------------------------------------------------------

    def _key_holder(self, owner: str | None, key: str | None) -> Tracked | None:
        if key is None:
            return None
        return next((t for t in self._present()
                     if t.owner == owner and t.idempotency_key == key), None)

    async def _submit(self, kind: Kind, key: str, submission: Submission, owner: str | None,
                      idempotency_key: str | None) -> str | None:
        holder = self._key_holder(owner, idempotency_key)
        pending = sum(t.last.status in PENDING for t in self._present())
        try:
            record, created = await self.service.submit(
                submission, owner=owner, idempotency_key=idempotency_key)
        except IdempotencyConflict:
            assert holder is not None
            assert holder.submission != submission
            return None
        except QueueFull:
            assert holder is None
            assert pending >= CORE.max_queue, pending
            return None
        if holder is not None:
            assert holder.submission == submission, "a different body was not refused"
            assert (record.id, created) == (holder.id, False)
            return holder.id
        assert created
        assert pending < CORE.max_queue, f"accepted with {pending} pending"
        subscription = self.service.hub.subscribe(record.id)  # before anything can change
        expected = Status.SCHEDULED if submission.delay else Status.QUEUED
        assert (record.status, record.attempts, record.owner) == (expected, 0, owner)
        assert (record.priority, record.timeout) == (submission.priority, submission.timeout)
        tracked = Tracked(record.id, kind, key, submission, owner, idempotency_key,
                          record.max_attempts, self.generation, subscription=subscription)
        assert tracked.max_attempts == (state_tasks.RETRIES + 1 if kind.held else 1)
        tracked.records.append(Snap.of_record(record))
        self.tracked[record.id] = tracked
        self.order.append(record.id)
        await self._settle()
        return record.id

    def _visible(self, tracked: Tracked, as_owner: str | None) -> bool:
        return tracked.fate == "present" and as_owner in (None, tracked.owner)

    async def _cancel(self, tracked: Tracked, as_owner: str | None) -> None:
        before = tracked.last
        visible = self._visible(tracked, as_owner)
        try:
            record = await self.service.cancel(tracked.id, owner=as_owner)
        except TaskNotFound:
            assert not visible, f"{tracked.id} not found"
            return
        except TaskAlreadyTerminal:
            assert visible
            assert before.terminal, before
            return
        assert visible
        assert not before.terminal, before
        assert record.id == tracked.id
        tracked.cancelled = True
        await self._settle()
        assert tracked.last.status is Status.CANCELLED, tracked.last

    async def _delete(self, tracked: Tracked, as_owner: str | None) -> None:
        before = tracked.last
        visible = self._visible(tracked, as_owner)
        try:
            await self.service.delete(tracked.id, owner=as_owner)
        except TaskNotFound:
            assert not visible, f"{tracked.id} not found"
            return
        except TaskStillActive:
            assert visible
            assert not before.terminal, before
            return
        assert visible
        assert before.terminal, before
        tracked.fate = "deleted"
        tracked.subscription = None
        await self._settle()

    async def _decide(self, tracked: Tracked, verdict: str) -> None:
        before = tracked.last
        queue_full = sum(t.last.status in PENDING for t in self._present()) >= CORE.max_queue
        refused = verdict == "retry" and before.attempts < tracked.max_attempts and queue_full
        tracked.retry_refused |= refused
        state_tasks.latch(tracked.key).give(verdict)
        tracked.verdicts.append(verdict)
        await self._settle()
        after = tracked.last
        if verdict == "succeed":
            assert (after.status, after.result) == (Status.SUCCEEDED, tracked.key), after
        elif verdict == "fail" or before.attempts >= tracked.max_attempts or refused:
            error = "ValueError" if verdict == "fail" else "ConnectionError"
            assert (after.status, after.error) == (Status.FAILED, error), after
            if refused:  # a retry would have taken the queue past its bound
                assert after.message.endswith("(not retried: the queue is full)"), after
        else:  # retried: running its next attempt, or queued behind full capacity
            assert after.error == "ConnectionError", after
            assert (after.status, after.attempts) in {
                (Status.RUNNING, before.attempts + 1), (Status.QUEUED, before.attempts)}, after

    async def _finished(self) -> list[tuple[float, str]]:
        """(finished_at, id) of every terminal record the store holds, oldest first."""
        finished = []
        for tracked in self._present():
            record = await self.service.store.get(tracked.id)
            if record is not None and record.terminal and record.finished_at is not None:
                finished.append((record.finished_at, tracked.id))
        return sorted(finished)

    async def _evict(self, pick: int) -> None:
        # the sweeper's pass: nothing is past the TTL, so only the oldest beyond max_records
        finished = await self._finished()
        over = max(0, len(finished) - CORE.max_records)
        assert await self.service.evict() == over, (over, finished)
        await self._forget_evicted()
        finished = await self._finished()
        assert len(finished) <= CORE.max_records, finished
        # what the sweeper does when the clock reads cutoff + result_ttl:
        index = pick % (len(finished) + 1)
        cutoff = finished[index][0] if index < len(finished) else time.time() + 1
        doomed = {task_id for at, task_id in finished if at < cutoff}
        count = await self.service.store.evict(cutoff, CORE.max_records)
        assert count == len(doomed), (count, doomed)
        assert await self._forget_evicted() == doomed
        await self._settle()

    async def _forget_evicted(self) -> set[str]:
        """Mark the records the store no longer has as evicted (each seen terminal)."""
        gone = set()
        for tracked in self._present():
            if await self.service.store.get(tracked.id) is not None:
                continue
            await self._drain(tracked)
            done = tracked.seen_terminal()
            assert done is not None, f"{tracked.id} evicted while {tracked.last.status}"
            assert done.finished is not None
            self.evicted_finished.append(done.finished)
            tracked.fate = "evicted"
            tracked.subscription = None
            gone.add(tracked.id)
        return gone

    async def _restart(self) -> None:
        old = self.service
        durable = old.store.durable
        before = {t.id: t.last for t in self._present()}
        await asyncio.wait_for(old.stop(grace=0), STOP_LIMIT)
        assert not old.started
        for tracked in self._present():
            await self._drain(tracked)  # what the old service published while stopping
            was = before[tracked.id]
            if was.terminal:
                continue
            handed_back = was.attempts <= tracked.max_attempts  # started max_attempts + 1
            if durable and was.status is Status.RUNNING and tracked.kind.idempotent and (
                    handed_back):                                   # times at most
                tracked.requeued += 1
                assert tracked.events, "no event for the hand-back"
                assert tracked.events[-1].status is Status.QUEUED, tracked.events[-1]
            elif not durable or was.status is Status.RUNNING:
                tracked.interrupted = True
                done = tracked.seen_terminal()
                assert done is not None
                assert (done.status, done.error) == (Status.FAILED, "Interrupted"), done
            if not durable:
                assert tracked.seen_terminal() is not None
        if not durable:  # the records end with the service
            for tracked in self._present():
                tracked.fate = "lost"
                tracked.subscription = None
        self.service = await self._start()


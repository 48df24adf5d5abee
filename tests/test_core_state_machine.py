"""A stateful property test of the core: Hypothesis drives a :class:`TaskService` through
random sequences of submit, cancel, delete, complete, fail, retry, time out, evict and
restart, and checks the service's promises after every step.

How it does without sleeps: every task either finishes at once or is *held*
(tests/state_tasks.py) until a rule hands it a verdict. After each rule the machine waits, on
events and not on a clock, until every task is at rest (terminal; held and waiting for a
verdict; queued behind full capacity; or scheduled far ahead) and then records what it sees.
A task that should move and does not within ``SETTLE_LIMIT`` is itself a failure. Rules have
no preconditions, so the rules Hypothesis draws never depend on thread timing.

Stores: the machine gets its store from a :class:`StoreKind`, once per run of the service
(a *generation*). The memory store starts empty on each run, so a restart drops every record;
a durable store hands the next run what the last one left, and the machine then expects
queued work to run again and interrupted work to be re-queued or failed. ``DURABLE_STAND_IN``
(a memory store flagged durable, kept across restarts) exercises those rules today; the SQLite
store plugs in as one more :class:`StoreKind` and one more test class (see the end of file).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service import TaskService
from service.errors import (
    IdempotencyConflict,
    QueueFull,
    TaskAlreadyTerminal,
    TaskNotFound,
    TaskStillActive,
)
from service.events import Subscription, TaskEvent
from service.models import (
    ALLOWED_MOVES,
    PENDING,
    TERMINAL,
    Status,
    Submission,
    TaskRecord,
    isoformat,
)
from service.settings import Settings
from service.stores import MemoryStore, TaskStore
from tests import state_tasks

T = TypeVar("T")

CORE = Settings(
    task_modules=("tests.state_tasks",), max_concurrency=3, thread_workers=2,
    process_workers=1, max_queue=5, max_records=4, result_ttl=3600.0, shutdown_grace=0.0,
    retry_backoff=0.001, sweep_interval=3600.0,  # the machine evicts by TTL itself
)
SHORT = 0.002  # a delay or timeout that passes while the machine waits for rest
LONG = 3600.0  # one that never passes during a test
AT_REST_AHEAD = 60.0  # a task scheduled further ahead than this is at rest
SETTLE_LIMIT = 5.0  # seconds tasks get to come to rest before that is a failure
PAGE = 3  # list() page size: small, so that paging with the cursor is exercised
OWNERS = (None, "alice")
STOP_LIMIT = 30.0



# -- stores -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreKind:
    """Where records live, per generation: ``reopen(workdir, previous)`` returns the store
    for the next run of the service. A durable store must return one that sees what the
    previous run wrote (e.g. the same database file under ``workdir``)."""

    name: str
    reopen: Callable[[Path, TaskStore | None], TaskStore]


class DurableMemoryStore(MemoryStore):
    """Stands in for a durable store: kept across restarts, flagged durable."""

    durable = True


MEMORY = StoreKind("memory", lambda workdir, previous: MemoryStore())
DURABLE_STAND_IN = StoreKind(
    "durable stand-in", lambda workdir, previous: previous or DurableMemoryStore())


# -- what the machine knows about each task ------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A sort of task the machine submits."""

    name: str
    held: bool = False
    thread: bool = False
    idempotent: bool = False

    def args(self, key: str, n: int) -> list[Any]:
        if self.held:
            return [key]
        if self.name == "quick_fail":
            return [f"boom {key}"]
        return [n, n + 1]


KINDS = (
    Kind("quick_add"), Kind("thread_add", thread=True), Kind("quick_fail"),
    Kind("held", held=True), Kind("held_thread", held=True, thread=True),
    Kind("held_idempotent", held=True, idempotent=True),
    Kind("held_thread_idempotent", held=True, thread=True, idempotent=True),
)
HELD_KINDS = tuple(k for k in KINDS if k.held)
RANK = {Status.SCHEDULED: 0, Status.QUEUED: 1, Status.RUNNING: 2}


@dataclass(frozen=True)
class Snap:
    """One observation of a task, from its record or from an event."""

    status: Status
    attempts: int
    finished: str | None  # RFC 3339, as in events
    result: Any = None
    error: str | None = None  # the error's type
    message: str = ""  # the error's message

    @classmethod
    def of_record(cls, record: TaskRecord) -> Snap:
        error = record.error
        return cls(record.status, record.attempts, isoformat(record.finished_at),
                   record.result, error.type if error else None, error.message if error else "")

    @classmethod
    def of_event(cls, event: TaskEvent) -> Snap:
        task = event.task
        error = task["error"]
        return cls(Status(task["status"]), task["attempts"], task["finished_at"],
                   task["result"], error["type"] if error else None,
                   error["message"] if error else "")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def progress_key(self) -> tuple[float, int]:
        """Grows with every status move: a retry or a re-queue belongs to the next attempt."""
        if self.terminal:
            return (math.inf, 0)
        ahead = 0 if self.status is Status.RUNNING else 1
        return (self.attempts + ahead, RANK[self.status])


@dataclass
class Tracked:
    id: str
    kind: Kind
    key: str
    submission: Submission
    owner: str | None
    idempotency_key: str | None
    max_attempts: int
    generation: int
    fate: str = "present"  # present | deleted | evicted (by max_records or TTL) | lost
    records: list[Snap] = field(default_factory=list)
    events: list[Snap] = field(default_factory=list)
    subscription: Subscription | None = None
    verdicts: list[str] = field(default_factory=list)
    cancelled: bool = False
    retry_refused: bool = False  # a retry was refused because the queue was full
    interrupted: bool = False  # a stop cut it off where that may fail it (Interrupted)
    requeued: int = 0  # times a stop handed it back to the queue (durable, idempotent)

    @property
    def last(self) -> Snap:
        return self.records[-1]

    @property
    def short_timeout(self) -> bool:
        return self.submission.timeout is not None and self.submission.timeout < LONG

    def seen_terminal(self) -> Snap | None:
        for snap in (*self.records, *self.events):
            if snap.terminal:
                return snap
        return None


def _reachable() -> dict[Status, frozenset[Status]]:
    closure = {}
    for start in Status:
        seen: set[Status] = set()
        todo = [start]
        while todo:
            for nxt in ALLOWED_MOVES[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[start] = frozenset(seen)
    return closure


REACHABLE = _reachable()


# -- the machine --------------------------------------------------------------------------


class CoreMachine(RuleBasedStateMachine):
    """The task service under random operations; see the module docstring."""

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
        self.evicted_finished: list[str] = []  # finish times of records max_records evicted
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
        """Read every known task's record and events; a record gone unasked was evicted."""
        for tracked in self._present():
            await self._drain(tracked)
            record = await self.service.store.get(tracked.id)
            if record is None:
                tracked.fate = "evicted"
                done = tracked.seen_terminal()
                assert done is not None, f"{tracked.id} vanished while {tracked.last.status}"
                assert done.finished is not None
                self.evicted_finished.append(done.finished)
                continue
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
        scheduler = self.service.scheduler
        assert scheduler.pending <= self._queue_bound(), scheduler.pending
        assert scheduler.running <= CORE.max_concurrency, scheduler.running
        counts = await self.service.store.count_by_status()
        pending = counts[Status.QUEUED] + counts[Status.SCHEDULED]
        assert pending <= self._queue_bound(), counts
        assert counts[Status.RUNNING] <= CORE.max_concurrency, counts

    # -- rules ----------------------------------------------------------------------------

    @rule(kind=st.sampled_from(KINDS), n=st.integers(0, 3), priority=st.integers(-2, 2),
          delay=st.sampled_from([None, None, None, 0.0, SHORT, LONG]),
          timeout=st.sampled_from([None, None, None, None, SHORT, LONG]),
          owner=st.sampled_from(OWNERS), idempotency_key=st.sampled_from([None, None, "k1", "k2"]),
          again=st.booleans())
    def submit(self, kind: Kind, n: int, priority: int, delay: float | None,
               timeout: float | None, owner: str | None, idempotency_key: str | None,
               again: bool) -> None:
        """Submit a task; with ``again``, repeat the submission that holds the key."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, kind.args(key, n), {}, delay, priority, timeout)
        holder = self._key_holder(owner, idempotency_key)
        if again and holder is not None:
            kind, key, submission = holder.kind, holder.key, holder.submission
        self._run(self._submit(kind, key, submission, owner, idempotency_key))

    @rule(kind=st.sampled_from(HELD_KINDS), priority=st.integers(-2, 2),
          owner=st.sampled_from(OWNERS))
    def submit_held(self, kind: Kind, priority: int, owner: str | None) -> None:
        """A held task, no options: it runs and waits for a verdict (or for capacity)."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, [key], {}, None, priority, None)
        self._run(self._submit(kind, key, submission, owner, None))

    @rule(kind=st.sampled_from(HELD_KINDS), priority=st.integers(-2, 2))
    def time_out(self, kind: Kind, priority: int) -> None:
        """A held task with a short timeout: it fails with TimeoutError once it runs."""
        key = f"t{self.counter}"
        self.counter += 1
        submission = Submission(kind.name, [key], {}, None, priority, SHORT)
        task_id = self._run(self._submit(kind, key, submission, None, None))
        if task_id is not None:
            last = self.tracked[task_id].last
            assert last.status is Status.QUEUED or (
                last.status is Status.FAILED and last.error == "TimeoutError"), last

    # No preconditions: which rules may run must not depend on timing, or Hypothesis sees
    # "flaky data generation". A rule with nothing to act on does nothing.

    @rule(pick=st.integers(0, 255), as_owner=st.sampled_from([None, None, "alice", "bob"]))
    def cancel(self, pick: int, as_owner: str | None) -> None:
        """Cancel any task ever accepted (gone ones must be not found)."""
        tracked = self._pick([self.tracked[i] for i in self.order], pick)
        if tracked is not None:
            self._run(self._cancel(tracked, as_owner))

    @rule(pick=st.integers(0, 255), as_owner=st.sampled_from([None, None, "alice", "bob"]))
    def delete(self, pick: int, as_owner: str | None) -> None:
        """Delete any task ever accepted (only finished ones may go)."""
        tracked = self._pick([self.tracked[i] for i in self.order], pick)
        if tracked is not None:
            self._run(self._delete(tracked, as_owner))

    @rule(pick=st.integers(0, 255))
    def complete(self, pick: int) -> None:
        """Let a running held task return."""
        self._give(pick, "succeed")

    @rule(pick=st.integers(0, 255))
    def fail(self, pick: int) -> None:
        """Make a running held task raise an error that is not retried."""
        self._give(pick, "fail")

    @rule(pick=st.integers(0, 255))
    def retry(self, pick: int) -> None:
        """Make a running held task raise a retryable error."""
        self._give(pick, "retry")

    @rule(pick=st.integers(0, 255))
    def evict(self, pick: int) -> None:
        """The sweeper at a controlled moment: records finished before a chosen time go."""
        self._run(self._evict(pick))

    @rule()
    def restart(self) -> None:
        """Stop the service (no grace) and start a new one on the next generation's store."""
        self._run(self._restart())

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
        if tracked.fate == "present":
            assert tracked.last.status is Status.CANCELLED, tracked.last
        else:  # finished, then evicted by max_records at once
            done = tracked.seen_terminal()
            assert done is not None
            assert done.status is Status.CANCELLED, done

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
        after = tracked.last if tracked.fate == "present" else tracked.seen_terminal()
        assert after is not None
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

    async def _evict(self, pick: int) -> None:
        assert await self.service.scheduler.evict() == 0  # max_records already holds
        finished: list[tuple[float, str]] = []
        for tracked in self._present():
            record = await self.service.store.get(tracked.id)
            if record is not None and record.terminal and record.finished_at is not None:
                finished.append((record.finished_at, tracked.id))
        finished.sort()
        index = pick % (len(finished) + 1)
        cutoff = finished[index][0] if index < len(finished) else time.time() + 1
        doomed = {task_id for at, task_id in finished if at < cutoff}
        # what the sweeper does when the clock reads cutoff + result_ttl:
        count = await self.service.store.evict(cutoff, CORE.max_records)
        assert count == len(doomed), (count, doomed)
        for task_id in doomed:
            assert await self.service.store.get(task_id) is None
            await self._drain(self.tracked[task_id])
            self.tracked[task_id].fate = "evicted"
            self.tracked[task_id].subscription = None
        await self._settle()

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
            if durable and was.status is Status.RUNNING and tracked.kind.idempotent:
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

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def statuses_only_move_forward(self) -> None:
        for tracked in self.tracked.values():
            for source, snaps in (("record", tracked.records), ("events", tracked.events)):
                for earlier, later in itertools.pairwise(snaps):
                    assert earlier.progress_key() <= later.progress_key(), (
                        tracked.id, source, earlier, later)
                    assert earlier.status == later.status or (
                        later.status in REACHABLE[earlier.status]), (source, earlier, later)
                    assert earlier.attempts <= later.attempts, (source, earlier, later)

    @invariant()
    def terminal_status_never_changes(self) -> None:
        for tracked in self.tracked.values():
            ends = [s for s in (*tracked.records, *tracked.events) if s.terminal]
            assert len(set(ends)) <= 1, (tracked.id, ends)
            for snaps in (tracked.records, tracked.events):
                if any(s.terminal for s in snaps):
                    first = next(i for i, s in enumerate(snaps) if s.terminal)
                    assert all(s == snaps[first] for s in snaps[first:]), snaps

    @invariant()
    def accepted_ids_are_found_until_evicted_or_deleted(self) -> None:
        self._run(self._check_found())

    async def _check_found(self) -> None:
        for tracked in self.tracked.values():
            if tracked.fate == "present":
                assert (await self.service.get(tracked.id)).id == tracked.id
                continue
            if tracked.fate == "evicted":
                assert tracked.seen_terminal() is not None, tracked
            if tracked.fate == "lost":
                assert not self.durable
            try:
                await self.service.get(tracked.id)
            except TaskNotFound:
                continue
            raise AssertionError(f"{tracked.fate} task {tracked.id} is still found")

    @invariant()
    def evicted_records_are_the_oldest(self) -> None:
        kept = [t.last.finished for t in self._present() if t.last.terminal]
        if kept and self.evicted_finished:
            assert max(self.evicted_finished) <= min(kept), (self.evicted_finished, kept)

    @invariant()
    def finished_records_within_max_records(self) -> None:
        counts = self._run(self.service.store.count_by_status())
        assert sum(counts[s] for s in TERMINAL) <= CORE.max_records, counts

    @invariant()
    def stats_counts_equal_the_list(self) -> None:
        self._run(self._check_stats())

    async def _check_stats(self) -> None:
        for owner in OWNERS:
            stats = await self.service.stats(owner=owner)
            listed = await self._list_all(owner)
            seqs = [record.seq for record in listed]
            assert seqs == sorted(set(seqs), reverse=True), "not newest first, or repeated"
            counted = {status.value: 0 for status in Status}
            for record in listed:
                counted[record.status.value] += 1
            assert stats["counts"] == counted, (owner, stats["counts"], counted)
            expected = {t.id for t in self._present() if owner in (None, t.owner)}
            assert {record.id for record in listed} == expected
        counts = (await self.service.stats())["counts"]
        pending, _ = await self.service.list(statuses=["queued", "scheduled"], limit=1000)
        assert len(pending) == counts["queued"] + counts["scheduled"]

    async def _list_all(self, owner: str | None) -> list[TaskRecord]:
        items: list[TaskRecord] = []
        cursor: str | None = None
        while True:
            page, cursor = await self.service.list(owner=owner, limit=PAGE, cursor=cursor)
            assert len(page) <= PAGE
            items += page
            if cursor is None:
                return items
            assert len(page) == PAGE, "a short page with a next cursor"

    @invariant()
    def queue_within_its_bound(self) -> None:
        counts = self._run(self.service.store.count_by_status())
        pending = counts[Status.QUEUED] + counts[Status.SCHEDULED]
        assert self.service.scheduler.pending == pending <= self._queue_bound(), (
            self.service.scheduler.pending, counts)

    @invariant()
    def running_within_max_concurrency(self) -> None:
        counts = self._run(self.service.store.count_by_status())
        running = [t for t in self._present() if t.last.status is Status.RUNNING]
        assert self.service.scheduler.running == counts[Status.RUNNING] == len(running)
        assert len(running) <= CORE.max_concurrency
        assert sum(t.kind.thread for t in running) <= CORE.thread_workers

    @invariant()
    def outcomes_have_a_cause(self) -> None:
        """Every end is one the machine caused: a verdict, a cancel, a timeout, a stop."""
        for tracked in self.tracked.values():
            last = tracked.seen_terminal() or tracked.records[-1]
            assert last.attempts <= tracked.max_attempts + tracked.requeued, (tracked, last)
            assert (last.finished is not None) == last.terminal, last
            if last.status is Status.CANCELLED:
                assert tracked.cancelled, tracked
            elif last.status is Status.SUCCEEDED:
                assert last.result == _expected_result(tracked), (tracked, last)
                assert last.error is None, (tracked, last)
            elif last.status is Status.FAILED:
                assert last.error in _possible_errors(tracked, last), (tracked, last)
            if not last.terminal:
                assert tracked.fate in ("present", "lost"), tracked


def _expected_result(tracked: Tracked) -> Any:
    if tracked.kind.held:
        assert tracked.verdicts[-1:] == ["succeed"], tracked.verdicts
        return tracked.key
    a, b = tracked.submission.args
    return a + b


def _possible_errors(tracked: Tracked, last: Snap) -> set[str]:
    errors = set()
    if tracked.interrupted:
        errors.add("Interrupted")
    if tracked.short_timeout:
        errors.add("TimeoutError")
    if tracked.kind.name == "quick_fail":
        errors.add("RuntimeError")
    if "fail" in tracked.verdicts:
        errors.add("ValueError")
    out_of_attempts = last.attempts >= tracked.max_attempts or tracked.retry_refused
    if tracked.verdicts[-1:] == ["retry"] and out_of_attempts:
        errors.add("ConnectionError")
    return errors


# -- the test cases -----------------------------------------------------------------------

# Bounded and seeded: the same sequences every run. Sized to keep this file well under 40 s.
RUNS = settings(max_examples=100, stateful_step_count=60, derandomize=True, database=None,
                deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=False)


@RUNS
class MemoryStoreMachine(CoreMachine):
    store_kind = MEMORY


@RUNS
class DurableStoreMachine(CoreMachine):
    store_kind = DURABLE_STAND_IN


TestCoreWithMemoryStore = MemoryStoreMachine.TestCase
TestCoreWithDurableStore = DurableStoreMachine.TestCase
# With the SQLite store (issue 4): one more kind, one more case, e.g.
#   SQLITE = StoreKind("sqlite", lambda workdir, previous: open_store(f"sqlite:///{workdir}/t.db"))
#   @RUNS
#   class SQLiteStoreMachine(CoreMachine):
#       store_kind = SQLITE
#   TestCoreWithSQLiteStore = SQLiteStoreMachine.TestCase

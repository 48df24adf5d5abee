"""The framework-free task service: submit, look up, wait, cancel, delete, list, stats.

Embed it in any asyncio program::

    service = TaskService()
    service.register(my_task)
    await service.start()
    handle = await my_task.submit(3)
    print(await handle.result())
    await service.stop()
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import CodeType
from typing import Any, overload

from typing_extensions import Unpack

from .admission import pending, prepare
from .cursor import CursorCodec
from .dispatch import make_dispatch
from .errors import (
    FieldError,
    IdempotencyConflict,
    InvalidSubmission,
    NotRunning,
    QueueFull,
    ShuttingDown,
)
from .events import EventHub, cancel_loops
from .feed import Feed
from .handles import Decorator, TaskFunction, TaskHandle, TaskOptions, collect_tasks
from .handles import task as declare_task
from .links import link
from .listing import next_page, page_query
from .logs import task_event
from .metrics import Metrics
from .models import JSON, TERMINAL, Status, Submission, TaskError, TaskRecord
from .registry import Registry
from .runner.runner import Runner
from .scheduler import Clock, Scheduler
from .schedules import Schedule, ScheduleOptions
from .settings import Settings
from .stores import open_store
from .stores.base import ChangeKind, QueueBoundReached, TaskStore
from .stores.dependencies import UnknownDependency
from .stores.dispatch import DispatchStore
from .task_operations import TaskOperations
from .upkeep import Sweeper, follow_changes
from .watchdog import LoopWatchdog

log = logging.getLogger("offload")


class TaskService(TaskOperations):
    """The front of Offload: accepts, reads and cancels tasks through a store, and runs them
    with a :class:`Runner` that talks to the same store (and nothing else). What it does
    with one task by id (get, wait, cancel, ...) is in :class:`TaskOperations`."""

    def __init__(self, settings: Settings | None = None, store: TaskStore | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings or Settings()
        self.registry = Registry()
        self.store = store or open_store(self.settings.store)
        self.store.on_change = self._on_change
        self.hub = EventHub(self.settings.expose_tracebacks, Feed(
            self.settings.events_buffer, self.settings.events_queue,
            self.settings.max_event_streams, self.settings.expose_tracebacks,
            self.settings.events_max_bytes))
        self.metrics = Metrics(self._gauges)
        self.dispatch = make_dispatch(self.settings, self.store, self.registry)
        """Where accepted records go: this process's runner, or Celery workers."""
        self.runner = Runner(self.store, self.registry, self.metrics, self.settings,
                             claiming=self.dispatch.runner_claims)
        self.scheduler = Scheduler(self.store, self._submit_tick, clock)
        """The schedules' loop (see :meth:`schedule`); ``clock`` is its time (tests)."""
        for schedule in self.settings.schedules:
            self.scheduler.add(schedule)
        self._cursors = CursorCodec()
        self._counts: dict[Status, int] = dict.fromkeys(Status, 0)
        self._loops: list[asyncio.Task[None]] = []
        self._admitting: set[asyncio.Future[None]] = set()
        self.watchdog: LoopWatchdog | None = None
        self._started_at: float | None = None
        self._stopping = False
        self._drained: asyncio.Future[None] | None = None
        self._stopped = False
        self.sweeper = Sweeper(self.evict, self.settings.sweep_interval,
                               self.settings.max_records)

    # -- registering ----------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> TaskFunction: ...
    @overload
    def task(self, fn: None = None, /, **options: Unpack[TaskOptions]) -> Decorator: ...
    def task(self, fn: Callable[..., Any] | None = None, /,
             **options: Unpack[TaskOptions]) -> TaskFunction | Decorator:
        """Register a function as a task type; see :func:`service.task` for the options."""
        def register(function: Callable[..., Any]) -> TaskFunction:
            return self.register(declare_task(**options)(function))
        return register(fn) if fn is not None else register

    def register(self, task: TaskFunction) -> TaskFunction:
        """Add a task (e.g. one made with :func:`service.task`) and bind it to this service."""
        self.registry.add(task.task_type)
        task.bind(self)
        return task

    def register_module(self, module_name: str) -> list[TaskFunction]:
        """Import a module and register every task defined in it."""
        module = importlib.import_module(module_name)
        return [self.register(task) for task in collect_tasks(module)]

    def schedule(self, name: str, task: TaskFunction | str,
                 **options: Unpack[ScheduleOptions]) -> Schedule:
        """Run ``task`` periodically, like Celery beat but with no process of its own::

            service.schedule("nightly", report, cron="0 3 * * *", timezone="Europe/Paris")
            service.schedule("poll", poll, every=30, args=["https://example.org"])

        ``cron`` (five fields, in ``timezone``, UTC by default) or ``every`` (seconds);
        fixed ``args``/``kwargs``, checked against the task's signature at start;
        ``missed`` ("skip" or "latest") and ``overlap`` (False): see
        :class:`~service.schedules.Schedule`. Each tick runs once in the whole deployment.
        Declare schedules before :meth:`start`."""
        task_name = task if isinstance(task, str) else task.name
        return self.scheduler.add(Schedule.of(name, task_name, **options))

    async def _submit_tick(self, submission: Submission, key: str) -> tuple[TaskRecord, bool]:
        # TaskService's own submit, not a subclass's (eager mode would wait for the task)
        return await TaskService.submit(self, submission, idempotency_key=key)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started_at is not None and not self._stopping

    async def start(self) -> None:
        """Open the store and start the runner (which first takes over expired leases)."""
        if self._stopping:
            raise NotRunning("a stopped task service cannot start again: make a new one")
        if self._started_at is not None:
            return
        self.scheduler.check(self.registry)
        if self.settings.rate_limits:
            self.registry.override_rate_limits(dict(self.settings.rate_limits))
        await self.store.open()
        self._cursors = CursorCodec(await self.store.cursor_key())
        await self.dispatch.start(self.runner)
        await self.runner.reclaim()
        self._started_at = time.monotonic()
        self.runner.start()
        self.scheduler.start()
        self._loops.append(asyncio.create_task(self.sweeper.run(), name="offload:sweeper"))
        if self.store.shared:
            self._loops.append(asyncio.create_task(self._follow(), name="offload:feed"))
        if self.settings.loop_lag_threshold > 0:
            self.watchdog = LoopWatchdog(
                self.settings.loop_lag_threshold, self._loop_task_code,
                self.metrics.loop_lag.observe,
                lambda name: self.metrics.loop_blocked.labels(name).inc())
            self.watchdog.start()

    async def drain(self, grace: float | None = None) -> None:
        """Refuse new work; give running tasks ``grace`` seconds; stop what is left. Reads,
        waits and streams keep working until :meth:`stop` (a server drains first, while it
        still answers its clients, and stops once their connections are closed)."""
        if self._started_at is None:
            return
        if self._drained is None:
            self._stopping = True
            self._drained = asyncio.ensure_future(self._drain(grace))
        await asyncio.shield(self._drained)

    async def _drain(self, grace: float | None) -> None:
        grace = self.settings.shutdown_grace if grace is None else grace
        try:
            await self.scheduler.stop()  # no tick submits past this point
            await asyncio.gather(*self._admitting)  # accepted before the stop: not lost
            await self.runner.drain(grace)
            await self.dispatch.stop()
            if not self.store.durable:  # nothing will ever run what is left: say so
                await self.store.abandon_pending(time.time(), TaskError(
                    "Interrupted", "the service shut down before the task ran"))
        finally:
            self.hub.feed.close()  # its streams end once they have sent these last changes

    async def stop(self, grace: float | None = None) -> None:
        """Drain (see :meth:`drain`), then close the store."""
        if self._started_at is None or self._stopped:
            return
        await self.drain(grace)
        if self._stopped:
            return
        self._stopped = True
        if self.watchdog is not None:
            await self.watchdog.stop()
        await cancel_loops(self._loops)
        await self.store.close()

    def _loop_task_code(self) -> dict[CodeType, str]:
        """The code of every task that runs on the loop, for the watchdog to name."""
        codes = ((getattr(inspect.unwrap(t.fn), "__code__", None), t.name)
                 for t in self.registry if t.executor == "async")
        return {code: name for code, name in codes if code is not None}

    def _on_change(self, kind: ChangeKind, record: TaskRecord) -> None:
        """Every change the store reports, made here or (through the feed) elsewhere."""
        self.hub.publish(kind, record)
        self.runner.notice(record)
        if kind == "status" and record.status in TERMINAL:
            self.sweeper.finished()

    async def evict(self) -> int:
        """Drop terminal records past ``result_ttl`` or beyond ``max_records``."""
        cutoff = time.time() - self.settings.result_ttl
        return await self.store.evict(cutoff, self.settings.max_records)

    async def _follow(self) -> None:
        """Hand changes made by other processes to waiters, streams and the runner."""
        await follow_changes(self.store, self._on_change, self.settings.poll_interval)

    # -- submitting -----------------------------------------------------------------------

    async def submit(
        self, submission: Submission, *, owner: str | None = None,
        idempotency_key: str | None = None, request_hash: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Accept one task. Returns the record and whether it is new (False: an earlier
        submission with the same idempotency key, which the store keeps unique)."""
        record = self._prepare(submission, owner, idempotency_key, request_hash)
        (stored,) = await self._admit([record])
        if stored.id == record.id:  # ours (a store may answer with a copy)
            return stored, True
        if stored.request_hash != record.request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with another body")
        return stored, False

    async def submit_many(
        self, submissions: Sequence[Submission], *, owner: str | None = None,
        most: int | None = None,
    ) -> list[TaskRecord]:
        """Accept all of the tasks or none of them; errors name the failing index. An
        integer in a ``depends_on`` is the index of another of them. ``most``: the bound
        on their number (``OFFLOAD_MAX_BATCH`` by default)."""
        most = self.settings.max_batch if most is None else most
        if len(submissions) > most:
            raise InvalidSubmission([FieldError("tasks", f"at most {most} tasks in one batch")])
        if len(submissions) > 1:  # a full queue refuses a batch before the work of checking it
            await self._refuse_when_full(len(submissions))
        records = []
        for index, submission in enumerate(submissions):
            try:
                records.append(self._prepare(submission, owner, batch_size=len(submissions)))
            except InvalidSubmission as exc:
                raise exc.prefixed(f"tasks.{index}") from None
        if any(s.depends_on for s in submissions):
            link(records, submissions, self.settings.max_chain)
        return await self._admit(records, in_batch=True)

    def _prepare(self, submission: Submission, owner: str | None,
                 idempotency_key: str | None = None, request_hash: str | None = None,
                 batch_size: int | None = None) -> TaskRecord:
        return prepare(self.registry, self.settings, submission, owner, idempotency_key,
                       request_hash, batch_size)

    async def _refuse_when_full(self, adding: int) -> None:
        """Raise :class:`QueueFull` if ``adding`` more would take the queue past its bound
        now (the store's own check, when it adds, is still the one that counts)."""
        counts = await self.store.count_by_status()
        if pending(counts) + adding > self.settings.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self.settings.max_queue, self.settings.poll_after)

    async def _add(self, records: list[TaskRecord], plan: Mapping[str, float] | None = None
                   ) -> list[TaskRecord]:
        if plan is None:
            return await self.store.add(records, self.settings.max_queue)
        assert isinstance(self.store, DispatchStore)  # CeleryDispatch checked it at start
        return await self.store.add_planned(records, self.settings.max_queue, plan)

    async def _admit(self, records: list[TaskRecord], in_batch: bool = False
                     ) -> list[TaskRecord]:
        if not self.started:
            raise ShuttingDown("the service is shutting down") if self._stopping else NotRunning(
                "the task service has not been started")
        admitting = asyncio.get_running_loop().create_future()
        self._admitting.add(admitting)
        try:
            stored = await self.dispatch.admit(records, functools.partial(self._add, records))
        except QueueBoundReached:
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self.settings.max_queue, self.settings.poll_after) from None
        except UnknownDependency as exc:  # not stored, or not the caller's: alike
            field = f"depends_on.{exc.position}"
            raise InvalidSubmission([FieldError(
                f"tasks.{exc.index}.{field}" if in_batch else field,
                f"no task {exc.task_id}")], "unknown dependency") from None
        finally:
            self._admitting.discard(admitting)
            admitting.set_result(None)
        for record in records:
            task_event(log, logging.DEBUG, "task_submitted", record, "accepted")
            self.metrics.of(record.name).submitted += 1
        self.runner.wake()
        return stored

    # -- reading ----------------------------------------------------------------------------

    async def list(
        self, *, statuses: Sequence[str] = (), name: str | None = None,
        owner: str | None = None, limit: int = 50, cursor: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """A page of tasks, newest first, and the cursor of the next page (or None)."""
        query = page_query(self._cursors, self.settings.max_page, statuses=statuses,
                           name=name, owner=owner, limit=limit, cursor=cursor)
        return next_page(await self.store.page(query), query, self._cursors)

    async def stats(self, owner: str | None = None) -> dict[str, JSON]:
        """Counts by status, queue depth, running, capacity and uptime."""
        counts = await self.store.count_by_status(owner)
        # The gauges are deployment-wide: a caller's own counts do not make them.
        self._counts = counts if owner is None else await self.store.count_by_status()
        uptime = 0.0 if self._started_at is None else time.monotonic() - self._started_at
        return {
            "counts": {status.value: counts[status] for status in Status},
            **self._gauges(),
            "max_queue": self.settings.max_queue,
            "uptime_seconds": round(uptime, 3),
            "accepting": self.started,
            "runner": self.dispatch.name,
        }

    def _gauges(self) -> dict[str, float]:
        """Queue depth as last read from the store (deployment-wide); running and capacity
        of this process's runner."""
        counts = self._counts
        return {"queue_depth": pending(counts),
                "queued": counts[Status.QUEUED],
                "running": self.runner.running, "capacity": self.runner.capacity}

    async def metrics_exposition(self) -> bytes:
        """The Prometheus text, with the store's counts read now."""
        self._counts = await self.store.count_by_status()
        return self.metrics.exposition()

    def handle(self, task_id: str) -> TaskHandle:
        """A handle on a task by id (no check that it exists until it is used)."""
        return TaskHandle(self, task_id)


__all__ = ["Submission", "TaskService"]

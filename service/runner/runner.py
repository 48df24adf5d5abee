"""The runner: claims startable work from the store and runs each attempt in a task of its own.

claim (running, leased) -> attempt (executor) -> settle (succeeded | failed | cancelled | retry).
The runner shares nothing with the front but the store: what it runs it claimed, what it
learns of a task (a cancel request) it learns from the store's changes or its lease renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..events import cancel_loops, wait_until_set
from ..metrics import Metrics
from ..models import PENDING, Progress, Status, TaskError, TaskRecord
from ..registry import Executor as ExecutorName
from ..registry import Registry
from ..settings import Settings
from ..stores.base import ClaimRequest, Outcome, TaskStore
from .attempt import BROKEN, Attempt, interrupted
from .executors import AsyncExecutor, Executor, ThreadExecutor
from .job import Job, StopReason
from .process_pool import ProcessExecutor

log = logging.getLogger("offload.runner")
STOP_WAIT = 5.0  # seconds cancelled async/process tasks get to unwind at shutdown
BLOCKED_POLL = 0.05  # seconds between claims while due work waits behind a type's limit
RATE_MIN_WAIT = 0.001  # seconds: a start a rate allows "now" is claimed after at least this
SHARED_STORE_POLL = 1.0  # seconds between claims on a shared store with nothing new heard
STORE_RETRY = 0.25  # seconds before claiming again after the store failed


Settle = Callable[[], Awaitable[TaskRecord | None]]
Requeuing = Callable[[TaskRecord, Outcome, Settle], Awaitable[TaskRecord | None]]


def new_worker_id() -> str:
    """Names this runner in leases: host, process and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Runner:
    """Claims work within this process's limits, runs it, and settles it in the store."""

    def __init__(self, store: TaskStore, registry: Registry, metrics: Metrics,
                 settings: Settings, claiming: bool = True) -> None:
        self._store = store
        self.claiming = claiming
        """False: this process starts no record of its own accord (Celery mode): a web
        process only queues due records and takes over dead leases; a Celery worker runs
        the records handed to :meth:`run_claimed`."""
        self.requeuing: Requeuing | None = None
        """Wraps each settle that makes a record startable again (a retry, or a hand-back
        by the interruption rule): Celery mode plans and sends its message around it."""
        self.renew_every = settings.lease / 3
        self._registry = registry
        self._metrics = metrics
        self._settings = settings
        self.worker = new_worker_id()
        self._executors: dict[ExecutorName, Executor] = {
            "async": AsyncExecutor(settings.max_concurrency),
            "thread": ThreadExecutor(settings.thread_workers),
            "process": ProcessExecutor(settings.process_workers, settings.process_nice,
                                       settings.process_idle_priority,
                                       settings.process_yield_timer),
        }
        self._busy: Counter[ExecutorName] = Counter()
        self._jobs: dict[str, Job] = {}
        self._attempt = Attempt(self._executors, metrics, settings, self._on_progress)
        self._wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._cancelled_early: set[tuple[str, int]] = set()  # claimed here, not yet started
        self._due: float | None = None  # the earliest scheduled_at, as last read

    @property
    def running(self) -> int:
        return len(self._jobs)

    @property
    def capacity(self) -> int:
        return self._settings.max_concurrency if self.claiming else 0

    def job(self, task_id: str) -> Job | None:
        return self._jobs.get(task_id)

    # -- claiming ---------------------------------------------------------------------------

    def start(self, dispatch: bool = True) -> None:
        """Start claiming (see ``claiming``) and keeping leases. ``dispatch=False`` (a
        Celery worker's runner): only renew the leases of what it runs."""
        self._loops = [asyncio.create_task(self._keep_leases(reclaim=dispatch),
                                           name="offload:leases")]
        if dispatch:
            self._loops.append(asyncio.create_task(self._dispatch(), name="offload:dispatcher"))

    def wake(self) -> None:
        """Look for startable work now (something was added, became due or finished)."""
        self._wakeup.set()

    def notice(self, record: TaskRecord) -> None:
        """A change in the store (made here or by another process)."""
        if record.status in PENDING:
            self.wake()
        elif record.cancel_requested and record.status is Status.RUNNING:
            job = self._jobs.get(record.id)
            if job is not None and job.record.attempts == record.attempts:
                self.stop(job, "cancel")
            elif job is None and record.lease_owner == self.worker:  # its claim returns
                self._cancelled_early.add((record.id, record.attempts))

    async def _dispatch(self) -> None:
        while not self._draining:
            self._wakeup.clear()
            try:
                await self._sleep(await self._fill())
            except Exception:  # the store failed: nothing else may come to wake us
                log.exception("claiming tasks from the store failed")
                await wait_until_set(self._wakeup, STORE_RETRY)

    async def _sleep(self, blocked: bool) -> None:
        # New work from other processes comes through the store's change feed; the poll
        # is a safety net (a feed read that failed), so it can be slow.
        timeout: float | None = SHARED_STORE_POLL if self._store.shared else None
        # room or not: a record whose delay has passed is queued then (see _fill)
        self._due = due = await self._store.next_due()
        if due is not None:
            wait = max(due - time.time(), BLOCKED_POLL if blocked else 0.0)
            timeout = wait if timeout is None else min(timeout, wait)
        rates = self._registry.rate_limits()
        if rates:  # a type its rate holds back may start again at a known time
            allowed = await self._store.next_start(rates, time.time())
            if allowed is not None:
                wait = max(allowed - time.time(), RATE_MIN_WAIT)
                timeout = wait if timeout is None else min(timeout, wait)
        await wait_until_set(self._wakeup, timeout)

    async def _fill(self) -> bool:
        """Claim and start work while there is room; True if startable work was left."""
        while not self._draining:
            excluded, pools, limit = self._room()
            if limit <= 0:
                if self._due is not None and self._due <= time.time():
                    self._due = None  # a claim of none still makes what came due queued
                    await self._store.claim(ClaimRequest(
                        self.worker, time.time(), self._settings.lease, limit=0))
                return False
            records = await self._store.claim(ClaimRequest(
                self.worker, time.time(), self._settings.lease, limit,
                self._registry.concurrency_limits(), excluded, pools,
                rates=self._registry.rate_limits()))
            for record in records:
                self._start(record)
            if len(records) < limit:  # a pool holds only an executor with less room than limit
                return bool(excluded or pools) or self._registry.concurrency_limits() != {}
        return False

    def _room(self) -> tuple[frozenset[str], list[tuple[tuple[str, ...], int]], int]:
        """The names that cannot start here now, the free slots each executor shares among
        its names, and how many records may be claimed in all."""
        free = self._settings.max_concurrency - len(self._jobs) if self.claiming else 0
        excluded: list[str] = []
        pools: list[tuple[tuple[str, ...], int]] = []
        for name, executor in self._executors.items():
            names = self._registry.names_run_by(name)
            room = executor.capacity - self._busy[name]
            if room <= 0:
                excluded.extend(names)
            elif names and room < free:
                pools.append((names, room))
        return frozenset(excluded), pools, free

    def _start(self, record: TaskRecord) -> None:
        key = (record.id, record.attempts)
        cancelled = key in self._cancelled_early
        self._cancelled_early.discard(key)
        job = self._attempt.prepare(record, self._registry)
        if isinstance(job, Outcome):  # unknown type or arguments it no longer takes
            self._spawn(self._store.settle(record, self.worker, job))
            return
        if cancelled:  # it starts stopped: its code never runs
            job.stop_reason = "cancel"
        self._jobs[record.id] = job
        self._busy[job.task_type.executor] += 1
        # a task of its own, in a fresh context: nothing one task sets leaks into another
        job.task = asyncio.create_task(self._run(job), name=f"offload:{record.id}",
                                       context=contextvars.Context())
        job.task.add_done_callback(_report_crash)

    async def run_claimed(self, record: TaskRecord) -> TaskRecord | None:
        """Run a record claimed elsewhere (a Celery worker's ``claim_by_id``) as if this
        runner had claimed it; the record as its settle left it (None if none applied)."""
        self._start(record)
        job = self._jobs.get(record.id)
        if job is None or job.task is None:  # settled at once (its type is unknown here)
            await asyncio.gather(*self._background, return_exceptions=True)
            return await self._store.get(record.id)
        await asyncio.wait([job.task])
        return job.ended

    def use_executor(self, name: ExecutorName, executor: Executor) -> None:
        """Run the tasks of one executor kind with another executor (before any runs)."""
        self._executors[name] = executor

    # -- running ----------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        try:
            result = await self._attempt.run(job, self.stop)
            await self._finish(job, self._attempt.outcome(job, result, self._store.durable))
        except BaseException:
            await asyncio.shield(self._give_up(job))
            raise
        finally:
            job.disarm()
            del self._jobs[job.record.id]
            self._busy[job.task_type.executor] -= 1
            self.wake()

    async def _finish(self, job: Job, outcome: Outcome) -> None:
        if job.stop_reason == "lost":
            log.warning("task %s: this runner lost its lease; its result is dropped",
                        job.record.id)
            return
        if job.progress_writer is not None:  # progress written first: it never goes back
            await job.progress_writer
        if job.settled:
            return
        if outcome.status is Status.SCHEDULED and not await self._room_for_retry():
            assert outcome.error is not None
            outcome.status = Status.FAILED
            outcome.error.message += " (not retried: the queue is full)"
        job.settled = True
        job.ended = record = await self._settle(job.record, outcome)
        if record is not None:
            self._attempt.finished(record)

    async def _room_for_retry(self) -> bool:
        counts = await self._store.count_by_status()
        if sum(counts[status] for status in PENDING) < self._settings.max_queue:
            return True
        self._metrics.rejected.labels("retry_queue_full").inc()
        return False

    async def _give_up(self, job: Job) -> None:
        """An internal error cut the task's path: it must not stay running. (Tried even
        if a settle was begun: it may have failed, and a settle that went through makes
        this one a no-op.)"""
        job.settled = True
        with contextlib.suppress(Exception):
            await self._store.settle(job.record, self.worker, Outcome(
                Status.FAILED, time.time(), error=TaskError("Interrupted", BROKEN)))

    async def _settle(self, record: TaskRecord, outcome: Outcome) -> TaskRecord | None:
        def settle() -> Awaitable[TaskRecord | None]:
            return self._store.settle(record, self.worker, outcome)

        if outcome.status in PENDING and self.requeuing is not None:
            return await self.requeuing(record, outcome, settle)
        return await settle()

    def _on_progress(self, job: Job, progress: Progress) -> None:
        if job.settled or job.stop_reason is not None:
            return
        job.progress.append(progress)  # each one in order, one writer per job
        if job.progress_writer is None:
            job.progress_writer = asyncio.create_task(self._write_progress(job))

    async def _write_progress(self, job: Job) -> None:
        try:
            while job.progress:
                progress = job.progress.popleft()
                await self._store.save_progress(job.record, self.worker, progress)
        except Exception:
            log.exception("task %s: saving its progress failed", job.record.id)
        finally:
            job.progress_writer = None

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, job: Job, reason: StopReason) -> None:
        """Cut an attempt off: a cancel, a timeout, a shutdown or a lost lease."""
        job.stop_reason = job.stop_reason or reason
        if job.task is not None and job.task is asyncio.current_task():
            # The task stops itself: its own call must return first, so the cancel comes
            # at its next await (if it is still in its code by then), not inside this call.
            asyncio.get_running_loop().call_soon(self._cancel_task, job)
        else:
            self._cancel_task(job)

    def _cancel_task(self, job: Job) -> None:
        # Only while in the task's own code: the runner's own steps run to their end.
        if (job.in_code and job.task is not None
                and self._executors[job.task_type.executor].cancellable):
            job.cancels_sent += 1
            job.task.cancel()

    async def _keep_leases(self, reclaim: bool = True) -> None:
        """Renew this runner's leases; take over those of runners that died."""
        while True:
            try:
                await self._renew()
                if reclaim:
                    await self.reclaim()
            except Exception:
                log.exception("renewing leases failed")
            await asyncio.sleep(self.renew_every)

    async def _renew(self) -> None:
        sent = list(self._jobs)
        if not sent:
            return
        held = await self._store.renew(self.worker, sent, time.time(), self._settings.lease)
        for task_id in sent:
            job = self._jobs.get(task_id)
            if job is None or job.settled:
                continue
            if task_id not in held:
                self.stop(job, "lost")
            elif held[task_id]:
                self.stop(job, "cancel")

    async def reclaim(self) -> None:
        """Settle, by the interruption rule, running records whose runner died."""
        now = time.time()
        for record in await self._store.reclaim(self.worker, now, self._settings.lease):
            outcome = interrupted(record, self._registry.is_idempotent(record.name),
                                  self._store.durable, "its worker stopped while it ran")
            log.warning("task %s %s: its worker died; %s", record.name, record.id,
                        "re-queued" if outcome.status is Status.QUEUED else "marked failed")
            await self._settle(record, outcome)

    async def drain(self, grace: float) -> None:
        """Stop claiming, give running tasks ``grace`` seconds, then stop the rest."""
        self._draining = True
        self.wake()
        await cancel_loops(self._loops)
        tasks = {j.task for j in self._jobs.values() if j.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        late = list(self._jobs.values())
        for job in late:
            self.stop(job, "shutdown")
        cancelled = {j.task for j in late if j.task is not None and j.cancels_sent}
        if cancelled:
            await asyncio.wait(cancelled, timeout=STOP_WAIT)
        for job in late:
            if not job.settled:  # a thread that would not stop: not left running
                job.settled = True
                await self._settle(job.record, interrupted(
                    job.record, job.task_type.idempotent, self._store.durable,
                    "the service shut down while the task ran"))
        for executor in self._executors.values():
            await executor.close()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_report_crash)


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("offload internal task %s crashed", task.get_name(), exc_info=task.exception())



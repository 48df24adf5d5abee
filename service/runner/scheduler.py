"""The scheduler: when each task starts, and the short phases of one task's path.

begin (running) -> attempt (executor) -> settle (succeeded | failed | cancelled | retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from .. import jsonutil
from ..context import TaskContext
from ..errors import QueueFull, ResultTooLarge, ShuttingDown
from ..events import EventHub
from ..logs import task_event
from ..metrics import Metrics
from ..models import JSON, Progress, Status, TaskError
from ..registry import Executor as ExecutorName
from ..settings import Settings
from ..stores import TaskStore
from .executors import AsyncExecutor, Executor, ThreadExecutor
from .job import Job, StopReason
from .outcome import Outcome, describe_error, log_outcome, retryable
from .process_pool import ProcessExecutor
from .ready_queue import ReadyQueue
from .turns import LoopTurns

log = logging.getLogger("offload.scheduler")
STOP_WAIT = 5.0  # seconds cancelled async/process tasks get to unwind at shutdown


class Scheduler:
    """Starts queued jobs within the limits, runs them, and records what happened."""

    def __init__(self, store: TaskStore, hub: EventHub, metrics: Metrics,
                 settings: Settings) -> None:
        self._store = store
        self._hub = hub
        self._metrics = metrics
        self._settings = settings
        self._executors: dict[ExecutorName, Executor] = {
            "async": AsyncExecutor(settings.max_concurrency),
            "thread": ThreadExecutor(settings.thread_workers),
            "process": ProcessExecutor(settings.process_workers, settings.process_nice,
                                       settings.process_idle_priority),
        }
        capacity = {name: e.capacity for name, e in self._executors.items()}
        self._queue = ReadyQueue(settings.max_concurrency, capacity)
        self._jobs: dict[str, Job] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._scheduled = 0
        self._reserved = 0
        self._draining = False
        self._turns = LoopTurns()

    # -- counts ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Queued plus scheduled (delayed or waiting to retry) plus being submitted."""
        return len(self._queue) + self._scheduled + self._reserved

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._queue.running

    @property
    def capacity(self) -> int:
        return self._queue.max_concurrency

    def job(self, task_id: str) -> Job | None:
        return self._jobs.get(task_id)

    # -- admission --------------------------------------------------------------------------

    def reserve(self, count: int) -> None:
        """Hold room for ``count`` tasks about to be stored; raise if there is none."""
        if self._draining:
            raise ShuttingDown("the service is shutting down")
        if self.pending + count > self._settings.max_queue:
            self._metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self._settings.max_queue, self._settings.poll_after)
        self._reserved += count

    def unreserve(self, count: int) -> None:
        self._reserved -= count

    def enqueue(self, job: Job, reserved: bool = True) -> None:
        """Take charge of a stored job: queue it now, or at its ``scheduled_at``."""
        if reserved:
            self._reserved -= 1
        self._jobs[job.record.id] = job
        if self._draining:  # stored while stop() began (a store that awaits): left pending
            self._spawn(self._leave_pending(job))
        elif job.record.status is Status.SCHEDULED:
            self._arm_delay(job)
        else:
            self._queue.push(job)
            self._pump()

    def _arm_delay(self, job: Job) -> None:
        self._scheduled += 1
        delay = max(0.0, (job.record.scheduled_at or 0.0) - time.time())
        job.timer = asyncio.get_running_loop().call_later(delay, self._on_delay_over, job)

    def _on_delay_over(self, job: Job) -> None:
        job.timer = None
        self._scheduled -= 1
        job.record.move(Status.QUEUED)
        self._queue.push(job)
        self._spawn(self._save_status(job))
        self._pump()

    # -- starting ---------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self._draining and (job := self._queue.pop_startable()) is not None:
            # a fresh context: the run must not inherit the request that happened to pump
            worker = asyncio.create_task(self._work(job), name=f"offload:{job.record.id}",
                                         context=contextvars.Context())
            job.runner = worker
            worker.add_done_callback(_report_crash)

    async def _work(self, job: Job) -> None:
        """Run jobs one after another while startable ones wait: a burst of short tasks
        costs one asyncio task per slot, not one per task."""
        worker = asyncio.current_task()
        assert worker is not None
        try:
            while True:
                try:
                    await self._run(job)
                finally:
                    if job.runner is worker:  # a retry may already have a runner of its own
                        job.runner = None
                if worker.cancelling():  # from outside, while the job settled: honour it
                    raise asyncio.CancelledError
                if self._turns.spent():
                    await asyncio.sleep(0)  # the loop's other callbacks run
                next_job = None if self._draining else self._queue.pop_startable()
                if next_job is None:
                    return
                job = next_job
                job.runner = worker
        except BaseException:
            self._pump()  # this worker is gone: others take the queue
            raise

    async def _run(self, job: Job) -> None:
        try:
            if not job.settled:  # else cancelled after the pump picked it, before it began
                await self._settle(job, await self._run_once(job))
        except BaseException:
            worker = asyncio.current_task()
            if worker is not None:  # a worker runs many jobs: name the one whose path broke
                worker.set_name(f"offload:{job.record.id}")
            await asyncio.shield(self._give_up(job))
            raise  # logged by _report_crash, with that name
        finally:  # whatever happens (even a store error), the slot is given back
            self._queue.release(job)

    async def _give_up(self, job: Job) -> None:
        """An internal error (e.g. the store failed) cut the task's path: it must not stay
        running, and its waiters must hear of its end even if the store cannot."""
        if job.timer is not None and job.record.status is Status.SCHEDULED:
            self._scheduled -= 1  # its retry was armed
        job.disarm()
        record = job.record
        if not record.terminal:
            record.status = Status.FAILED  # allowed from every non-terminal status
            record.error = TaskError("Interrupted", "an internal error stopped the task")
            record.finished_at = time.time()
        job.settled = True
        self._jobs.pop(record.id, None)
        self._hub.publish("status", record)
        with contextlib.suppress(Exception):
            await self._store.save(record)

    async def _run_once(self, job: Job) -> Outcome:
        """Mark the job running, then make one attempt."""
        record = job.record
        record.move(Status.RUNNING)
        record.attempts += 1
        record.started_at = time.time()
        if record.timeout is not None:
            loop = asyncio.get_running_loop()
            job.timer = loop.call_later(record.timeout, self._stop, job, "timeout")
        task_event(log, logging.DEBUG, "task_started", record, "started")
        try:
            await self._save_status(job)
            return await self._attempt(job)
        except asyncio.CancelledError:  # from outside (the loop is closing): a shutdown
            job.stop_reason = job.stop_reason or "shutdown"
            return Outcome()

    async def _attempt(self, job: Job) -> Outcome:
        loop = asyncio.get_running_loop()
        context = TaskContext(job.record.id, job.record.attempts,
                              lambda progress: self._on_progress(job, progress),
                              lambda: job.stop_reason is not None or job.record.cancel_requested,
                              loop.call_soon_threadsafe,
                              job.task_type.name)
        executor = self._executors[job.task_type.executor]
        if job.stop_reason is not None:  # cancelled while it was being marked running
            return Outcome()
        started = time.perf_counter()
        job.attempting, job.cancels_sent = True, 0
        try:
            value = await executor.run(job, context)
            self._check_result(value)
            return Outcome(value=value)
        except asyncio.CancelledError as exc:
            if job.stop_reason is not None:
                return Outcome()
            if _being_cancelled(job.cancels_sent):  # by another (the loop is closing)
                raise
            return Outcome(error=exc)  # raised by the task's own code: its failure
        except Exception as exc:
            return Outcome(error=exc)
        finally:
            job.attempting = False
            _uncancel(job.cancels_sent)  # the worker runs other jobs next: none may linger
            elapsed = time.perf_counter() - started
            self._metrics.of(job.task_type.name).observe(elapsed)

    def _check_result(self, value: JSON) -> None:
        if value is None:
            return
        jsonutil.check(value)
        if isinstance(value, str | list | tuple | dict):  # numbers are small: not encoded
            size = len(jsonutil.dumps(value))
            if size > self._settings.max_result:
                raise ResultTooLarge(f"the result is {size} bytes of JSON, more than "
                                     f"OFFLOAD_MAX_RESULT ({self._settings.max_result})")

    def _on_progress(self, job: Job, progress: Progress) -> None:
        if job.record.status is Status.RUNNING and not job.settled:
            job.record.progress = progress
            self._hub.publish("progress", job.record)
            if self._store.durable:
                self._spawn(self._store.save(job.record))

    # -- settling ---------------------------------------------------------------------------

    async def _settle(self, job: Job, outcome: Outcome) -> None:
        job.disarm()
        if job.settled:  # already interrupted at shutdown while its thread ran on
            return
        reason = job.stop_reason
        if reason == "cancel":
            await self._finalize(job, Status.CANCELLED)
        elif reason == "shutdown":
            await self.interrupt(job, "the service shut down while the task ran")
        elif reason == "timeout":
            limit = job.record.timeout
            await self._fail_or_retry(job, TimeoutError(f"task exceeded its timeout of {limit}s"))
        elif outcome.error is not None:
            await self._fail_or_retry(job, outcome.error)
        else:
            job.record.result = outcome.value
            job.record.error = None  # an earlier attempt's error is history now
            await self._finalize(job, Status.SUCCEEDED)

    async def _fail_or_retry(self, job: Job, exc: BaseException) -> None:
        record = job.record
        record.error = describe_error(exc)
        if record.attempts >= record.max_attempts or not retryable(job.task_type, exc):
            await self._finalize(job, Status.FAILED)
            return
        if self.pending >= self._settings.max_queue:  # a retry waits in the queue too
            self._metrics.rejected.labels("retry_queue_full").inc()
            record.error.message += " (not retried: the queue is full)"
            await self._finalize(job, Status.FAILED)
            return
        record.move(Status.SCHEDULED)
        record.scheduled_at = time.time() + self._backoff(job)
        record.cancel_requested = False
        job.stop_reason = None
        self._metrics.of(record.name).retried += 1
        delay = record.scheduled_at - time.time()
        task_event(log, logging.INFO, "task_retry", record,
                   f"attempt {record.attempts} failed ({record.error.type}), retry in {delay:.2f}s",
                   error_type=record.error.type, error_message=record.error.message)
        await self._save_status(job)
        if job.settled or record.status is not Status.SCHEDULED:
            return  # cancelled (or stopped) while the save was awaited
        if not self._draining:  # armed after the save: the retry cannot overtake it
            self._arm_delay(job)
        else:  # failed during the grace period: no run left in this process
            await self._leave_pending(job)

    def _backoff(self, job: Job) -> float:
        base = job.task_type.retry_backoff
        base = self._settings.retry_backoff if base is None else base
        exponential = base * 2.0 ** (job.record.attempts - 1)
        return min(self._settings.retry_backoff_max, exponential) * random.uniform(0.5, 1.0)

    async def interrupt(self, job: Job, why: str) -> None:
        """Cut off by shutdown or crash: back to the queue if that is safe, else failed."""
        if self._store.durable and job.task_type.idempotent:
            job.record.move(Status.QUEUED)
            job.record.cancel_requested = False
            job.settled = True
            self._jobs.pop(job.record.id, None)
            await self._save_status(job)
            return
        job.record.error = TaskError("Interrupted", why)
        await self._finalize(job, Status.FAILED)

    async def _finalize(self, job: Job, status: Status) -> None:
        record = job.record
        record.move(status)
        record.finished_at = time.time()
        job.settled = True
        self._jobs.pop(record.id, None)
        self._metrics.of(record.name).finish(status)
        log_outcome(record)
        await self._save_status(job)
        await self.evict()

    async def evict(self) -> int:
        """Drop terminal records past ``result_ttl`` or beyond ``max_records``."""
        cutoff = time.time() - self._settings.result_ttl
        return await self._store.evict(cutoff, self._settings.max_records)

    async def _save_status(self, job: Job) -> None:
        """Persist a status change, then tell listeners (they never see an unsaved state)."""
        await self._store.save(job.record)
        self._hub.publish("status", job.record)

    # -- cancelling and stopping ------------------------------------------------------------

    async def cancel(self, job: Job) -> None:
        """Cancel a queued, scheduled or running job (running: see the executor's rules)."""
        status = job.record.status
        if status is Status.QUEUED:
            self._queue.discard(job)
            await self._finalize(job, Status.CANCELLED)
        elif status is Status.SCHEDULED:
            if job.timer is not None:  # armed, so counted (a retry is armed after its save)
                self._scheduled -= 1
            job.disarm()
            await self._finalize(job, Status.CANCELLED)
        elif status is Status.RUNNING:
            self._stop(job, "cancel")
            await self._store.save(job.record)

    def _stop(self, job: Job, reason: StopReason) -> None:
        job.timer = None if reason == "timeout" else job.timer
        job.stop_reason = job.stop_reason or reason
        job.record.cancel_requested = True
        if job.runner is not None and job.runner is asyncio.current_task():
            # The task stops itself: its own call must return first, so the cancel comes
            # at its next await (if it is still in its code by then), not inside this call.
            asyncio.get_running_loop().call_soon(self._cancel_runner, job)
        else:
            self._cancel_runner(job)

    def _cancel_runner(self, job: Job) -> None:
        # Only while it is in the task's own code: the worker's own steps run to their end.
        if (job.attempting and job.runner is not None
                and self._executors[job.task_type.executor].cancellable):
            job.cancels_sent += 1
            job.runner.cancel()

    async def drain(self, grace: float) -> None:
        """Stop starting work, give running tasks ``grace`` seconds, then stop the rest."""
        self._draining = True
        for job in self._queue.drain() + self._take_scheduled():
            await self._leave_pending(job)
        runners = {j.runner for j in self._jobs.values() if j.runner is not None}
        if runners:
            await asyncio.wait(runners, timeout=grace)
        late = [j for j in self._jobs.values() if j.runner is not None and not j.settled]
        for job in late:
            self._stop(job, "shutdown")
        cancelled = {j.runner for j in late
                     if j.runner is not None and self._executors[j.task_type.executor].cancellable}
        if cancelled:
            await asyncio.wait(cancelled, timeout=STOP_WAIT)
        for job in late:
            if not job.settled:  # a thread that would not stop: its record must not stay running
                await self.interrupt(job, "the service shut down while the task ran")
        for executor in self._executors.values():
            await executor.close()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _take_scheduled(self) -> list[Job]:
        jobs = [j for j in self._jobs.values() if j.record.status is Status.SCHEDULED]
        for job in jobs:
            job.disarm()
        self._scheduled = 0
        return jobs

    async def _leave_pending(self, job: Job) -> None:
        if self._store.durable:
            self._jobs.pop(job.record.id, None)  # stays queued/scheduled on disk
            return
        job.record.error = TaskError("Interrupted", "the service shut down before the task ran")
        await self._finalize(job, Status.FAILED)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_report_crash)


def _uncancel(times: int) -> None:
    task = asyncio.current_task()
    if task is not None:
        for _ in range(times):
            task.uncancel()


def _being_cancelled(ours: int) -> bool:
    """Cancelled more often than the scheduler itself did (``ours``): by the loop's owner."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > ours


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("offload internal task %s crashed", task.get_name(), exc_info=task.exception())

"""One attempt of a claimed record: binding it, running it in its executor, and what the
store is told at its end (the retry, timeout and interruption rules live here)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from .. import jsonutil
from ..context import TaskContext
from ..errors import InvalidSubmission, ResultTooLarge
from ..logs import task_event
from ..metrics import Metrics
from ..models import JSON, Progress, Status, TaskError, TaskRecord
from ..registry import Executor as ExecutorName
from ..registry import Registry
from ..settings import Settings
from ..stores.base import Outcome
from .executors import Executor
from .job import Job, StopReason
from .outcome import AttemptResult, describe_error, log_outcome, retryable

log = logging.getLogger("offload.runner")
Stopper = Callable[[Job, StopReason], None]


class Attempt:
    """The steps of one attempt that do not depend on where the work came from."""

    def __init__(self, executors: dict[ExecutorName, Executor], metrics: Metrics,
                 settings: Settings, on_progress: Callable[[Job, Progress], None]) -> None:
        self._executors = executors
        self._metrics = metrics
        self._settings = settings
        self._on_progress = on_progress

    def prepare(self, record: TaskRecord, registry: Registry) -> Job | Outcome:
        """The job for a claimed record, or, if this process cannot run it (its type or
        its arguments are gone), the failure to settle it with."""
        try:
            task_type = registry.get(record.name)
            call = task_type.bind(record.args, record.kwargs)
        except InvalidSubmission as exc:
            return Outcome(Status.FAILED, time.time(),
                           error=TaskError("Interrupted", f"cannot run: {exc}"))
        return Job(record, task_type, call.args, call.kwargs)

    async def run(self, job: Job, stop: Stopper) -> AttemptResult:
        """Run the task's code once; a stop (cancel, timeout, shutdown) ends it early."""
        record = job.record
        loop = asyncio.get_running_loop()
        if record.timeout is not None:
            job.timer = loop.call_later(record.timeout, stop, job, "timeout")
        if job.stop_reason is not None:  # stopped between its claim and now
            return AttemptResult()
        context = TaskContext(record.id, record.attempts,
                              lambda progress: self._on_progress(job, progress),
                              lambda: job.stop_reason is not None,
                              loop.call_soon_threadsafe, job.task_type.name)
        executor = self._executors[job.task_type.executor]
        task_event(log, logging.DEBUG, "task_started", record, "started")
        started = time.perf_counter()
        job.in_code = True
        try:
            value = await executor.run(job, context)
            self._check_result(value)
            return AttemptResult(value=value)
        except asyncio.CancelledError as exc:
            return self._cancelled(job, exc)
        except Exception as exc:
            return AttemptResult(error=exc)
        finally:
            job.in_code = False
            self._metrics.of(job.task_type.name).observe(time.perf_counter() - started)

    @staticmethod
    def _cancelled(job: Job, exc: asyncio.CancelledError) -> AttemptResult:
        task = asyncio.current_task()
        assert task is not None
        for _ in range(job.cancels_sent):  # ours, and handled: the settle may await again
            task.uncancel()
        if task.cancelling():  # from outside (the loop is closing): a shutdown
            job.stop_reason = job.stop_reason or "shutdown"
            raise exc
        if job.stop_reason is not None:
            return AttemptResult()
        return AttemptResult(error=exc)  # raised by the task's own code: its failure

    def _check_result(self, value: JSON) -> None:
        if value is None:
            return
        jsonutil.check(value)
        if isinstance(value, str | list | tuple | dict):  # numbers are small: not encoded
            size = len(jsonutil.dumps(value))
            if size > self._settings.max_result:
                raise ResultTooLarge(f"the result is {size} bytes of JSON, more than "
                                     f"OFFLOAD_MAX_RESULT ({self._settings.max_result})")

    # -- what the store is told -------------------------------------------------------------

    def outcome(self, job: Job, result: AttemptResult, durable: bool) -> Outcome:
        """The end of the attempt, by the reason it stopped or what it produced."""
        now = time.time()
        reason = job.stop_reason
        if reason == "cancel":
            return Outcome(Status.CANCELLED, now)
        if reason == "shutdown":
            return interrupted(job.record, job.task_type.idempotent, durable,
                               "the service shut down while the task ran")
        if reason == "timeout":
            limit = job.record.timeout
            return self._fail_or_retry(job, TimeoutError(f"task exceeded its timeout of "
                                                         f"{limit}s"), now)
        if result.error is not None:
            return self._fail_or_retry(job, result.error, now)
        return Outcome(Status.SUCCEEDED, now, result=result.value)

    def _fail_or_retry(self, job: Job, exc: BaseException, now: float) -> Outcome:
        record, error = job.record, describe_error(exc)
        if record.attempts >= record.max_attempts or not retryable(job.task_type, exc):
            return Outcome(Status.FAILED, now, error=error)
        base = job.task_type.retry_backoff
        base = self._settings.retry_backoff if base is None else base
        delay = min(self._settings.retry_backoff_max, base * 2.0 ** (record.attempts - 1))
        return Outcome(Status.SCHEDULED, now, error=error,
                       scheduled_at=now + delay * random.uniform(0.5, 1.0))

    def finished(self, record: TaskRecord) -> None:
        """Count and log what the store settled."""
        if record.status is Status.SCHEDULED:
            self._metrics.of(record.name).retried += 1
            assert record.error is not None
            delay = (record.scheduled_at or 0.0) - time.time()
            task_event(log, logging.INFO, "task_retry", record,
                       f"attempt {record.attempts} failed ({record.error.type}), retry in "
                       f"{delay:.2f}s", error_type=record.error.type,
                       error_message=record.error.message)
        elif record.terminal:
            self._metrics.of(record.name).finish(record.status)
            log_outcome(record)


def interrupted(record: TaskRecord, idempotent: bool, durable: bool, why: str) -> Outcome:
    """Cut off by a shutdown or a crash: run again if that is safe, else failed. A task is
    started at most ``max_attempts + 1`` times, so one that kills its process every time
    does not loop for ever."""
    now = time.time()
    if durable and idempotent and record.attempts <= record.max_attempts:
        return Outcome(Status.QUEUED, now)
    return Outcome(Status.FAILED, now, error=TaskError("Interrupted", why))


BROKEN = "an internal error stopped the task"

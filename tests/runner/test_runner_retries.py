"""Retries and their backoff, the interruption rule, worker process crashes, progress."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from service import TaskService, current_task, report_progress
from service.demo import cpu
from service.metrics import Metrics
from service.models import Status, TaskRecord
from service.registry import TaskType
from service.runner.attempt import Attempt, interrupted
from service.runner.job import Job
from service.runner.process_pool import ProcessExecutor
from tests import sample_tasks as st
from tests.conftest import settings
from tests.runner import runner_tasks as rt
from tests.sample_tasks import gate

from .helpers import Factory, first_progress, started, statuses_until

# -- retries ------------------------------------------------------------------------------


async def test_retry_succeeds_on_the_third_attempt(svc: TaskService) -> None:
    handle = await st.flaky.submit(3)
    record = await handle.wait(timeout=5)
    assert record.status is Status.SUCCEEDED
    assert record.result == 3
    assert record.attempts == 3
    assert record.max_attempts == 4
    assert record.error is None  # the earlier attempts' errors were seen while it waited


async def test_retry_goes_through_scheduled_with_the_last_error(svc: TaskService) -> None:
    handle = await st.flaky.submit(2)
    _, subscription = await svc.subscribe(handle.id)
    assert subscription is not None
    async with asyncio.timeout(5):
        events = [(e.task["status"], e.task["attempts"], e.task["error"])
                  async for e in subscription if e.kind == "status"]
    statuses = [s for s, _, _ in events]
    assert statuses == ["running", "scheduled", "queued", "running", "succeeded"]
    scheduled = events[1]
    assert scheduled[1] == 1
    assert scheduled[2] == {
        "type": "ConnectionError", "message": "attempt 1 failed"}


async def test_retry_is_scheduled_one_backoff_after_the_failure(svc: TaskService) -> None:
    handle = await rt.fails_once_then_waits_long.submit()  # retry_backoff=60: first wait 30-60 s
    assert await statuses_until(svc, handle.id, "scheduled") == ["running", "scheduled"]
    record = await svc.get(handle.id)
    assert record.scheduled_at is not None
    assert record.started_at is not None
    assert 30.0 <= record.scheduled_at - record.started_at <= 61.0
    assert (record.lease_owner, record.lease_expires) == (None, None)
    assert await svc.store.next_due() == record.scheduled_at


async def test_non_matching_exception_fails_at_once(svc: TaskService) -> None:
    record = await (await st.fails_with.submit("value")).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.type == "ValueError"


async def test_matching_exception_is_retried_until_exhausted(svc: TaskService) -> None:
    record = await (await st.fails_with.submit("connection")).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 3 == record.max_attempts
    assert record.error is not None
    assert record.error.type == "ConnectionError"


async def test_exhausted_retries_fail_with_the_last_error(svc: TaskService) -> None:
    record = await (await rt.always_fails.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 4
    assert record.error is not None
    assert record.error.message == "attempt 4 failed"


async def test_timeout_is_retried_like_an_error(make_service: Factory) -> None:
    service = await started(make_service)

    async def slow() -> None:
        await asyncio.Event().wait()

    slow_task = service.task(name="slow_retried", timeout=0.02, retries=1, retry_backoff=0)(slow)
    record = await (await slow_task.submit()).wait(timeout=5)
    assert record.status is Status.FAILED
    assert record.attempts == 2
    assert record.error is not None
    assert record.error.type == "TimeoutError"


async def _noop() -> None:
    return None


def backoff_job(attempts: int, retry_backoff: float | None) -> Job:
    record = TaskRecord(name="b", attempts=attempts, max_attempts=100)
    return Job(record, TaskType("b", _noop, "async", retries=99, retry_backoff=retry_backoff),
               (), {})


def backoff(job: Job, **overrides: Any) -> float:
    """The delay ``Attempt._fail_or_retry`` gives a retry of the job, read off its outcome."""
    attempt = Attempt({}, Metrics(dict), settings(**overrides), lambda job, progress: None)
    outcome = attempt._fail_or_retry(job, ConnectionError("down"), 1000.0)
    assert outcome.status is Status.SCHEDULED
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == ("ConnectionError", "down")
    assert outcome.scheduled_at is not None
    return outcome.scheduled_at - 1000.0


@pytest.mark.parametrize(("attempts", "low", "high"), [
    (1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (5, 5.0, 10.0), (30, 5.0, 10.0),
])
def test_backoff_doubles_with_jitter_and_is_capped(attempts: int, low: float,
                                                   high: float) -> None:
    delays = [backoff(backoff_job(attempts, None), retry_backoff=1.0, retry_backoff_max=10.0)
              for _ in range(300)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 4  # jitter: not one fixed value


def test_backoff_uses_the_types_own_base() -> None:
    assert all(0.05 <= backoff(backoff_job(2, 0.1), retry_backoff=100.0) <= 0.2
               for _ in range(50))
    assert backoff(backoff_job(3, 0.0), retry_backoff=100.0) == 0.0


def test_the_last_attempt_and_an_error_not_retried_fail() -> None:
    attempt = Attempt({}, Metrics(dict), settings(), lambda job, progress: None)
    last = backoff_job(100, None)
    assert attempt._fail_or_retry(last, ConnectionError("x"), 1.0).status is Status.FAILED
    picky = Job(TaskRecord(name="p", attempts=1, max_attempts=3),
                TaskType("p", _noop, "async", retries=2, retry_on=(ConnectionError,)), (), {})
    outcome = attempt._fail_or_retry(picky, ValueError("bad"), 1.0)
    assert (outcome.status, outcome.scheduled_at) == (Status.FAILED, None)
    assert outcome.error is not None
    assert outcome.error.type == "ValueError"


# -- the interruption rule ------------------------------------------------------------------


@pytest.mark.parametrize(("durable", "idempotent", "attempts", "status"), [
    (True, True, 1, Status.QUEUED), (True, True, 3, Status.QUEUED),  # max_attempts is 3
    (True, True, 4, Status.FAILED),  # started max_attempts + 1 times: no more
    (True, False, 1, Status.FAILED), (False, True, 1, Status.FAILED),
    (False, False, 1, Status.FAILED),
])
def test_interrupted_work_runs_again_only_if_durable_idempotent_and_not_exhausted(
    durable: bool, idempotent: bool, attempts: int, status: Status,
) -> None:
    record = TaskRecord(name="i", attempts=attempts, max_attempts=3)
    outcome = interrupted(record, idempotent, durable, "why")
    assert outcome.status is status
    if status is Status.FAILED:
        assert outcome.error is not None
        assert (outcome.error.type, outcome.error.message) == ("Interrupted", "why")
    else:
        assert outcome.error is None


# -- crashes ------------------------------------------------------------------------------


async def test_worker_exit_fails_only_that_task(svc: TaskService) -> None:
    survivor = await rt.sleep_reporting_pid.submit(0.3)
    await first_progress(svc, survivor.id)  # it runs, in another worker
    crashed = await st.exit_process.submit(7)
    record = await crashed.wait(timeout=10)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type == "WorkerCrashed"
    assert "exit code 7" in record.error.message
    assert await survivor.result(timeout=10) > 0
    assert await (await cpu.submit(10)).result(timeout=10) == 285


async def test_worker_killed_while_idle_is_replaced(svc: TaskService) -> None:
    pid = await (await st.process_pid.submit()).result(timeout=10)
    pool = svc.runner._executors["process"]
    assert isinstance(pool, ProcessExecutor)
    (idle,) = pool._idle
    os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, between two tasks
    await idle.process.wait()
    new_pid = await (await st.process_pid.submit()).result(timeout=10)
    assert new_pid != pid


# -- progress -----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [st.progress_steps, st.thread_progress, st.process_progress],
                         ids=["async", "thread", "process"])
async def test_progress_reaches_the_record_and_subscribers(svc: TaskService, fn: Any) -> None:
    handle = await fn.submit(3)
    _, subscription = await svc.subscribe(handle.id)
    assert subscription is not None
    async with asyncio.timeout(10):
        events = [event async for event in subscription]
    progress = [e.task["progress"] for e in events if e.kind == "progress"]
    assert [p["current"] for p in progress] == [1, 2, 3]
    assert all(p["total"] == 3 for p in progress)
    assert events[-1].kind == "status"
    assert events[-1].task["status"] == "succeeded"
    record = await handle.wait(timeout=1)
    assert record.progress is not None
    assert (record.progress.current, record.progress.total) == (3, 3)


async def test_progress_of_a_running_task_is_visible_before_it_ends(svc: TaskService) -> None:
    handle = await rt.progress_then_gate.submit("p")
    await gate("p").wait_started()
    record = await svc.get(handle.id)
    assert record.status is Status.RUNNING
    assert record.progress is not None
    assert record.progress.message == "half"
    gate("p").open()
    await handle.wait(timeout=5)


async def test_a_retry_starts_without_the_last_attempts_progress(svc: TaskService) -> None:
    @svc.task(name="progress_then_fail_once", retries=1, retry_backoff=0)
    async def progress_then_fail_once() -> int:
        attempt = current_task().attempt
        if attempt == 1:
            report_progress(1, 2, "first")
            raise ConnectionError("again")
        await gate("second").hold()
        return attempt

    handle = await progress_then_fail_once.submit()
    await gate("second").wait_started()
    record = await svc.get(handle.id)
    assert (record.status, record.attempts, record.progress) == (Status.RUNNING, 2, None)
    gate("second").open()
    assert await handle.result(timeout=5) == 2

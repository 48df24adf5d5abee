"""More tasks for the runner and core tests (a module, so process workers can import it)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import os
import signal
import threading
import time
from typing import Any

from service import cancel_requested, current_task, report_progress, task
from tests.sample_tasks import gate


@task(executor="process")
def weekday(day: datetime.date) -> int:
    """Process: its argument is coerced to a date, which has no JSON form."""
    return day.isoweekday()


@task(executor="process")
def spin_reporting_pid() -> None:
    """Process: reports its pid as progress, then loops until killed."""
    report_progress(os.getpid())
    while True:
        pass


@task(executor="process")
def sleep_reporting_pid(seconds: float) -> int:
    """Process: reports its pid, sleeps, returns the pid."""
    report_progress(os.getpid())
    time.sleep(seconds)
    return os.getpid()


@task(timeout=0.1)
async def gate_with_type_timeout(key: str) -> str:
    await gate(key).hold()
    return key


@task
def thread_notes_cancel(key: str) -> str:
    """Thread: waits for a cancel request, says so on gate ``key/noticed``, then blocks
    until its own gate opens."""
    g = gate(key)
    g.started.set()
    while not cancel_requested():
        g.released.wait(0.005)
    gate(f"{key}/noticed").started.set()
    g.released.wait(30)
    return "result of a cancelled task"


@task(retries=2, retry_on=(ConnectionError,), retry_backoff=0.01)
async def gate_then_fail(key: str) -> None:
    """Async: waits for its gate, then fails with a retryable error."""
    await gate(key).hold()
    raise ConnectionError(f"attempt {current_task().attempt} failed")


@task(retries=3, retry_backoff=0.01)
async def always_fails() -> None:
    raise ConnectionError(f"attempt {current_task().attempt} failed")


@task
async def progress_then_gate(key: str) -> str:
    report_progress(1, 2, "half")
    await gate(key).hold()
    return key


@task
def thread_reports_attempt() -> int:
    return current_task().attempt


@task
def thread_ident() -> int:
    return threading.get_ident()


@task(executor="process")
def process_niceness() -> int:
    return os.nice(0)


WORKERS_SEEN: list[asyncio.Task[Any] | None] = []  # kept alive: no id is reused


@task
async def note_worker() -> None:
    WORKERS_SEEN.append(asyncio.current_task())


@task(executor="process")
def process_scheduler_policy() -> int:
    return os.sched_getscheduler(0)


@task(executor="process")
def process_cpu_timer_interval() -> float:
    return signal.getitimer(signal.ITIMER_VIRTUAL)[1]


@task(idempotent=True)
async def idempotent_echo(value: int) -> int:
    return value


@task(idempotent=True)
async def idempotent_gate(key: str) -> str:
    await gate(key).hold()
    return key


@task(executor="process")
def process_returns(kind: str) -> object:
    """Process: returns a value that has no JSON form."""
    return {"nan": float("nan"), "set": {1, 2}, "deep": _nested(300)}[kind]


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@task(executor="process")
def process_prints(n: int) -> int:
    """Process: writes to stdout, which must not corrupt the worker's protocol."""
    print("hello from the worker\n{\"ok\": 666}")
    return n


@task
async def raises_cancelled_error() -> None:
    """Async: its own code raises CancelledError (nobody cancelled it)."""
    raise asyncio.CancelledError("not from Offload")


@task(retries=1, retry_backoff=60)
async def fails_once_then_waits_long() -> None:
    raise ConnectionError("first attempt failed")


@task
async def returns_lone_surrogate() -> str:
    return "\ud800"


LEAKED: contextvars.ContextVar[str | None] = contextvars.ContextVar("offload_test_leaked",
                                                                   default=None)
"""Set by the context_* tasks: no other task may ever see what one of them set."""


@task
async def context_async(value: str) -> str | None:
    """Async: sets LEAKED to ``value``; returns what it saw before."""
    seen = LEAKED.get()
    LEAKED.set(value)
    return seen


@task
def context_thread(value: str) -> str | None:
    """Thread: sets LEAKED to ``value``; returns what it saw before."""
    seen = LEAKED.get()
    LEAKED.set(value)
    return seen


@task(executor="process")
def context_process(value: str) -> list[Any]:
    """Process: sets LEAKED to ``value``; returns what it saw before, and its worker's pid."""
    seen = LEAKED.get()
    LEAKED.set(value)
    return [seen, os.getpid()]

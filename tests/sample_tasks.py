"""Tasks used by the tests (importable by process workers, so they live in a module)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from service import cancel_requested, current_task, report_progress, task

# Events the tests can wait on instead of sleeping: a task sets "<name>" when it started.
started: dict[str, threading.Event] = {}
release: dict[str, threading.Event] = {}


def _event(table: dict[str, threading.Event], key: str) -> threading.Event:
    return table.setdefault(key, threading.Event())


def reset_events() -> None:
    started.clear()
    release.clear()


@task
async def wait_for_release(key: str) -> str:
    """Async: signals it started, then waits until the test releases it."""
    _event(started, key).set()
    while not _event(release, key).is_set():
        await asyncio.sleep(0.005)
    return key


@task
def thread_wait_for_release(key: str) -> str:
    """Thread: signals it started, then waits for release or cancellation."""
    _event(started, key).set()
    while not _event(release, key).is_set():
        if cancel_requested():
            return "saw cancel"
        time.sleep(0.005)
    return key


@task
def thread_ignores_cancel(key: str) -> str:
    """Thread: never checks for cancellation; returns when released."""
    _event(started, key).set()
    _event(release, key).wait(30)
    return key


@task(executor="process")
def spin_forever() -> None:
    """Process: a CPU loop that never ends (only a kill stops it)."""
    while True:
        pass


@task(executor="process")
def exit_process(code: int = 3) -> None:
    """Process: kills its own worker process."""
    os._exit(code)


@task(executor="process")
def process_pid() -> int:
    return os.getpid()


@task(executor="process")
def process_progress(n: int) -> int:
    for i in range(1, n + 1):
        report_progress(i, n)
    return n


@task(executor="process")
def process_raises(message: str) -> None:
    raise ValueError(message)


attempts: dict[str, int] = {}


@task(retries=3, retry_backoff=0.01)
async def flaky(key: str, succeed_on: int) -> int:
    """Fails until its ``succeed_on``-th attempt, then returns the attempt number."""
    attempt = current_task().attempt
    if attempt < succeed_on:
        raise ConnectionError(f"attempt {attempt} failed")
    return attempt


@task(retries=2, retry_on=(ConnectionError,), retry_backoff=0.01)
async def fails_with(kind: str) -> None:
    if kind == "connection":
        raise ConnectionError("network down")
    raise ValueError("bad value")


@task
async def returns_not_json() -> Any:
    return {1, 2, 3}


@task
async def big_int(digits: int) -> int:
    return int("9" * digits)


@task(timeout=0.2)
async def slow_with_type_timeout(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task(concurrency=1)
async def one_at_a_time(key: str) -> str:
    _event(started, key).set()
    while not _event(release, key).is_set():
        await asyncio.sleep(0.005)
    return key


@task
async def record_order(key: str, order: list[str] | None = None) -> str:
    execution_order.append(key)
    return key


execution_order: list[str] = []


@task
async def progress_steps(n: int) -> int:
    for i in range(1, n + 1):
        report_progress(i, n, f"step {i}")
        await asyncio.sleep(0)
    return n


@task
def thread_progress(n: int) -> int:
    for i in range(1, n + 1):
        report_progress(i, n)
    return n


@task
async def echo(value: Any) -> Any:
    return value

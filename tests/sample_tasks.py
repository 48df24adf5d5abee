"""Tasks used by the tests (importable by process workers, so they live in a module)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from service import cancel_requested, current_task, report_progress, task


class Gate:
    """Lets a test wait until a task has started, and tell it when to finish. No sleeps."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.released = threading.Event()  # for thread tasks
        self.released_async = asyncio.Event()  # for async tasks (same loop as the test)

    async def wait_started(self, timeout: float = 10) -> None:
        if not await asyncio.to_thread(self.started.wait, timeout):
            raise TimeoutError("the task did not start")

    async def hold(self) -> None:
        """For async tasks: mark started, then wait until the test opens the gate."""
        self.started.set()
        await self.released_async.wait()

    def open(self) -> None:
        """Release the task (call from the event loop's thread)."""
        self.released.set()
        self.released_async.set()


gates: dict[str, Gate] = {}


def gate(key: str) -> Gate:
    """The gate named ``key`` (made on first use, inside the running loop)."""
    return gates.setdefault(key, Gate())


def reset_gates() -> None:
    for existing in gates.values():
        existing.released.set()  # never leave a thread task blocked after a test
    gates.clear()


@task
async def wait_for_release(key: str) -> str:
    """Async: marks its gate started, then waits until the test opens it."""
    await gate(key).hold()
    return key


@task
def thread_wait_for_release(key: str) -> str:
    """Thread: marks its gate started, then waits for the gate or for a cancel request."""
    g = gate(key)
    g.started.set()
    while not g.released.wait(0.005):
        if cancel_requested():
            return "saw cancel"
    return key


@task
def thread_ignores_cancel(key: str) -> str:
    """Thread: never checks for cancellation; returns when its gate opens."""
    g = gate(key)
    g.started.set()
    g.released.wait(30)
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


@task(retries=3, retry_backoff=0.01)
async def flaky(succeed_on: int) -> int:
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
    await gate(key).hold()
    return key


execution_order: list[str] = []


@task
async def record_order(key: str) -> str:
    execution_order.append(key)
    return key


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

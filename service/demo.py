"""The demo tasks of the standalone service (names and signatures are part of the SPEC)."""

from __future__ import annotations

import asyncio
import time

from .context import report_progress
from .handles import task


@task
async def long_task() -> str:
    """The tutorial's slow job: ten seconds of waiting, then "done"."""
    await asyncio.sleep(10)
    return "done"


@task
async def sleep(seconds: float) -> float:
    """Sleep without blocking anything; returns the seconds slept."""
    await asyncio.sleep(seconds)
    return seconds


@task
async def add(a: int, b: int) -> int:
    """Add two integers at once."""
    return a + b


@task
async def fail(message: str) -> None:
    """Raise RuntimeError(message): a task that always fails."""
    raise RuntimeError(message)


@task
async def count(n: int, delay: float = 0.1) -> int:
    """Count to n, reporting progress after each step of ``delay`` seconds."""
    for i in range(1, n + 1):
        await asyncio.sleep(delay)
        report_progress(i, n, f"step {i} of {n}")
    return n


@task
def blocking_sleep(seconds: float) -> float:
    """A plain time.sleep, run in a worker thread so the event loop stays free."""
    time.sleep(seconds)
    return seconds


@task(executor="process")
def cpu(n: int) -> int:
    """CPU-bound work in a separate process: the sum of i*i for i below n."""
    return sum(i * i for i in range(n))

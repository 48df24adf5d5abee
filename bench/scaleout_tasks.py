"""Offload's twins of ``bench/celery_app.py``'s tasks, for the Celery-mode scenarios (B10,
``bench/scaleout.py``): ``OFFLOAD_TASK_MODULES=bench.scaleout_tasks`` on the web processes,
the Celery workers and the submitting library process alike.

``add`` is the add of ``service.demo`` (what B2 runs); ``stamp`` returns
``time.perf_counter()`` when it starts, on the system-wide monotonic clock (CLOCK_MONOTONIC),
so a stamp taken in a worker's pool process compares with one taken in the submitter.
Both are ``async def``, as Offload's own tasks are: the worker runs them on its event loop.
"""

from __future__ import annotations

import time

from service import task


@task
async def add(a: int, b: int) -> int:
    """Add two integers at once."""
    return a + b


@task
async def stamp() -> float:
    """When the task started (``time.perf_counter()``)."""
    return time.perf_counter()

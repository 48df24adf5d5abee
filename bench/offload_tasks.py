"""Offload task module for the library-level scenarios (B4, B5).

``noop`` does nothing (B4: the cost of a task's path, not of its work); ``stamp`` returns
``time.perf_counter()`` when it starts (B5: submit-to-start latency).
"""

from __future__ import annotations

import time

from service import task


@task
async def noop() -> None:
    """Nothing at all."""


@task
async def stamp() -> float:
    """When the task started (``time.perf_counter()``)."""
    return time.perf_counter()

"""Tasks that misbehave on purpose, for the loop watchdog's tests."""

from __future__ import annotations

import asyncio
import time

from service import task


@task
async def blocks_the_loop(seconds: float) -> float:
    """The classic mistake: a blocking call inside an async def task."""
    time.sleep(seconds)  # noqa: ASYNC251 (the mistake under test)
    return seconds


@task
async def behaves(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds

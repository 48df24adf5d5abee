"""A rate-limited task for the end-to-end tests, loaded by the real server."""

from __future__ import annotations

import asyncio
import os

from service import task


@task(rate_limit="5/s")
async def limited_call(seconds: float) -> int:
    """At most 5 starts in any second, in the whole deployment: returns the worker's pid."""
    await asyncio.sleep(seconds)
    return os.getpid()

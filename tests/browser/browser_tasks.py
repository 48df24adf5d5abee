"""Tasks of the browser tests, loaded by the real server through OFFLOAD_TASK_MODULES."""

from __future__ import annotations

from service import task


@task
async def echo(value: str) -> str:
    """Return the value as given (the tests give it HTML and script)."""
    return value

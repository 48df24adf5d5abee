"""Extra tasks for the HTTP API tests (see ``WEB_MODULES`` in this folder's conftest)."""

from __future__ import annotations

from service import report_progress, task

from ..sample_tasks import gate


@task
async def progress_then_wait(key: str, n: int) -> int:
    """Reports progress 1..n of n, marks its gate started, then waits for the gate."""
    for i in range(1, n + 1):
        report_progress(i, n, f"step {i}")
    await gate(key).hold()
    return n


@task
async def returns_infinity() -> float:
    """A result that has no JSON form."""
    return float("inf")


@task
async def keyword_only(*, size: int, label: str = "x") -> str:
    """Takes keyword-only arguments."""
    return label * size

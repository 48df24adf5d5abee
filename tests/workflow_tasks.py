"""Tasks for the workflow tests (chains, groups, chords)."""

from __future__ import annotations

from service import report_progress, task
from tests.sample_tasks import gate


@task
async def tsum(numbers: list[int], plus: int = 0) -> int:
    """The sum of a chord's results."""
    return sum(numbers) + plus


@task
async def double(n: int) -> int:
    report_progress(1, 1, "doubled")
    return 2 * n


@task
async def nothing() -> None:
    """Takes no argument: cannot receive a result."""


@task
async def shout(text: str) -> str:
    return text.upper()


@task
async def released_number(key: str, n: int) -> int:
    """Holds until the test opens the gate ``key``, then returns ``n``."""
    await gate(key).hold()
    return n

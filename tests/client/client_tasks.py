"""Tasks of the client tests, loaded by their servers through OFFLOAD_TASK_MODULES."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from service import report_progress, task

GATE_POLL = 0.02  # seconds between two looks at a gate file, inside the task
GATE_LIMIT = 60.0  # seconds a task waits for its gate at most


@task
async def gated_count(n: int, gate: str) -> int:
    """Wait until the file ``gate`` exists, then report progress 1..n of n at once: a test
    that opened the task's event stream before opening the gate sees every step."""
    deadline = time.monotonic() + GATE_LIMIT
    while not _is_open(gate):
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(GATE_POLL)
    for step in range(1, n + 1):
        report_progress(step, n, f"step {step} of {n}")
        await asyncio.sleep(0)  # each report is its own event
    return n


def _is_open(gate: str) -> bool:
    return Path(gate).exists()

"""Tasks for the Celery-mode tests, journaled like ``tests.e2e.durable_tasks`` (loaded with
it: ``OFFLOAD_TASK_MODULES=service.demo,tests.e2e.durable_tasks,tests.celery.celery_tasks``).

Each holds until a gate file exists or until it is stopped, so a test decides when it ends.
"""

from __future__ import annotations

import time

from service import cancel_requested, chain, current_task, task
from service.demo import add
from tests.e2e.durable_tasks import _is_open, _record

HOLD_LIMIT = 120.0  # seconds: a task the test forgot ends by itself


@task(executor="process")
def spin(key: str) -> int:
    """Journal a start, then compute until killed (it never looks at cancel)."""
    _record(key, "start")
    deadline, turns = time.monotonic() + HOLD_LIMIT, 0
    while time.monotonic() < deadline:
        turns += sum(i * i for i in range(1000)) & 1
    _record(key, "end")
    return turns


@task(executor="thread")
def polite(key: str, gate: str = "") -> str:
    """A thread task: journal a start, hold until cancelled (journaled) or the gate opens."""
    _record(key, "start")
    deadline = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < deadline:
        if cancel_requested():
            _record(key, "saw-cancel")
            return "cancelled"
        if gate and _is_open(gate):
            break
        time.sleep(0.02)  # a thread task's own pace, not a wait in the test
    _record(key, "end")
    return key


@task(executor="thread")
def stubborn(key: str) -> str:
    """A thread task that never looks at cancel: journal a start, then hold."""
    _record(key, "start")
    deadline = time.monotonic() + HOLD_LIMIT
    while time.monotonic() < deadline:
        time.sleep(0.02)
    _record(key, "end")
    return key


@task(retries=2, retry_backoff=0.1)
async def flaky(key: str, failures: int) -> int:
    """Fail the first ``failures`` attempts (RuntimeError), then return the attempt."""
    _record(key, "start")
    attempt = current_task().attempt
    if attempt <= failures:
        raise RuntimeError(f"{key}: attempt {attempt} fails")
    return attempt


@task
async def fan_out(n: int) -> list[str]:
    """Submit ``n`` adds (i + i) from inside a task; their ids."""
    return [(await add.submit(i, i)).id for i in range(n)]


@task
async def chain_inside(a: int, b: int) -> str:
    """Submit a chain from inside a task: add(a, b), then add(that, 10); the chain's id."""
    return (await chain(add.s(a, b), add.s(10)).submit()).id


@task
async def wait_inside() -> int:
    """Wait for another task's result inside a task (refused on a Celery worker)."""
    handle = await add.submit(1, 2)
    result: int = await handle.result(10)
    return result

"""Tasks that go wrong on purpose, for the fault-injection tests (test_faults.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from service import cancel_requested, report_progress, task


@task
def thread_raises(message: str) -> None:
    raise ValueError(message)


@task
def thread_hangs() -> str:
    """Never finishes by itself: only a cancel request (a timeout makes one) ends it."""
    while not cancel_requested():
        time.sleep(0.005)
    return "gave up"


@task
def thread_returns_not_json() -> Any:
    return object()


@task(executor="process")
def process_returns_not_json() -> Any:
    return {1, 2, 3}


@task(executor="process")
def process_hangs() -> None:
    """A sleep that never ends: only killing the worker stops it."""
    while True:
        time.sleep(1)


@task(executor="process")
def process_kills_itself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


BAD_PROGRESS: dict[str, tuple[Any, Any, Any]] = {
    "current is a string": ("three", None, None),
    "current is NaN": (float("nan"), None, None),
    "total is infinite": (1, float("inf"), None),
    "current is a bool": (True, None, None),
    "message is a number": (1, 2, 5),
    "current is beyond a float": (10**400, None, None),
}


@task
async def async_bad_progress(kind: str) -> str:
    report_progress(*BAD_PROGRESS[kind])
    return "not reached"


@task
def thread_bad_progress(kind: str) -> str:
    report_progress(*BAD_PROGRESS[kind])
    return "not reached"


@task(executor="process")
def process_bad_progress(kind: str) -> str:
    report_progress(*BAD_PROGRESS[kind])
    return "not reached"


@task
async def survives_bad_progress() -> str:
    """Catches the error of a bad progress call and goes on: the task's own choice."""
    with contextlib.suppress(TypeError):
        report_progress("three")  # type: ignore[arg-type]
    report_progress(2, 2, "done")
    return "ok"


@task
async def returns_big(size: int) -> str:
    return "x" * size


@task(executor="process", retries=2, retry_backoff=0.01)
def process_returns_big(size: int) -> str:
    return "x" * size


@task
def thread_returns_big_tuple(size: int) -> tuple[str, ...]:
    return tuple("x" for _ in range(size))

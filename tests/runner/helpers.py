"""Shared helpers of the runner tests: a started service, and ways to watch a task."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from service import TaskService
from service.events import TaskEvent

RUNNER_TASKS = "tests.runner.runner_tasks"
Factory = Callable[..., TaskService]


async def started(make_service: Factory, **overrides: Any) -> TaskService:
    """A started service with the demo, sample and runner tasks, and custom settings."""
    service = make_service(**overrides)
    service.register_module(RUNNER_TASKS)
    await service.start()
    return service


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def first_progress(service: TaskService, task_id: str) -> TaskEvent:
    """The first progress event of a task (subscribe before it can report anything)."""
    _, subscription = await service.subscribe(task_id)
    assert subscription is not None
    try:
        async with asyncio.timeout(10):
            async for event in subscription:
                if event.kind == "progress":
                    return event
    finally:
        subscription.close()
    raise AssertionError("the task ended without reporting progress")


async def statuses_until(service: TaskService, task_id: str, status: str) -> list[str]:
    """The statuses a task's events report, up to the first ``status`` (or its end)."""
    _, subscription = await service.subscribe(task_id)
    assert subscription is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for event in subscription:
                if event.kind == "status":
                    seen.append(str(event.task["status"]))
                    if seen[-1] == status:
                        break
    finally:
        subscription.close()
    return seen

"""Helpers of the end-to-end tests: submit, wait through the API, look at processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx

from .sse import Event, events

WAIT = 20  # seconds a ?wait= may hold; every task the tests wait for ends well before
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


async def submit(client: httpx.AsyncClient, name: str, *args: Any, **options: Any
                 ) -> dict[str, Any]:
    """POST /tasks; ``options`` are more fields of the body (kwargs, delay, ...)."""
    response = await client.post("/tasks", json={"name": name, "args": list(args), **options})
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_terminal(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}", params={"wait": WAIT})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert task["status"] in TERMINAL, task
    return task


async def worker_pid(client: httpx.AsyncClient, task_id: str) -> int:
    """The pid a ``spin_reporting_pid`` task reports as its first progress message."""
    return int(await first_progress_message(client, task_id))


async def first_progress_message(client: httpx.AsyncClient, task_id: str) -> str:
    async with asyncio.timeout(15), client.stream("GET", f"/tasks/{task_id}/events") as stream:
        async for event in events(stream):
            progress = event.task["progress"]
            if progress is not None:
                assert event.task["status"] == "running"
                return str(progress["message"])
    raise AssertionError("the event stream closed before the task reported its pid")


def is_terminal(event: Event) -> bool:
    return event.task["status"] in TERMINAL


def threads_of(pid: int) -> list[int]:
    return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]


def nice_of(pid: int, thread: int | None = None) -> int:
    """The nice value of a process's main thread, or of one of its threads (on Linux a
    nice value is a thread's)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of proc(5); fields[0] is field 3


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


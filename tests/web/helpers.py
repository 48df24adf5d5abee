"""Small helpers shared by the HTTP API tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any

from quart import Response
from quart.typing import TestClientProtocol as Client

TASK_FIELDS = {
    "id", "name", "status", "args", "kwargs", "priority", "progress", "result", "error",
    "attempts", "max_attempts", "cancel_requested", "created_at", "scheduled_at",
    "started_at", "finished_at",
}
TERMINAL = {"succeeded", "failed", "cancelled"}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(client: Client, name: str, *args: Any,
                 headers: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """POST /tasks and return the task object; fails unless the answer is 202."""
    body: dict[str, Any] = {"name": name, "args": list(args), **options}
    response = await client.post("/tasks", json=body, headers=headers or {})
    assert response.status_code == 202, await response.get_data(as_text=True)
    task: dict[str, Any] = await response.get_json()
    return task


async def get_task(client: Client, task_id: str, *, wait: float | None = None,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    path = f"/tasks/{task_id}" + ("" if wait is None else f"?wait={wait}")
    response = await client.get(path, headers=headers or {})
    assert response.status_code == 200, await response.get_data(as_text=True)
    task: dict[str, Any] = await response.get_json()
    return task


async def finished(client: Client, task_id: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The task once terminal (GET ?wait=, no sleeping); fails if it is not within 10 s."""
    task = await get_task(client, task_id, wait=10, headers=headers)
    assert task["status"] in TERMINAL, task
    return task


async def problem(response: Response, status: int) -> dict[str, Any]:
    """Check an RFC 9457 problem response and return its body."""
    text = await response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/problem+json", response.content_type
    body: dict[str, Any] = await response.get_json(force=True)
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"] == "about:blank"  # one style: the code says which problem
    assert re.fullmatch(r"[a-z]+(?:-[a-z]+)*", body["code"]), body
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    """The ``field`` of each entry of a validation problem's ``errors``."""
    return [e["field"] for e in body.get("errors") or []]


async def ids_listed(client: Client, query: str = "",
                     headers: dict[str, str] | None = None) -> list[str]:
    response = await client.get(f"/tasks?limit=1000{query}", headers=headers or {})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return [t["id"] for t in (await response.get_json())["items"]]


async def until_status(client: Client, task_id: str, status: str, timeout: float = 10,
                       headers: dict[str, str] | None = None) -> None:
    """Follow the task's event stream until it reports ``status`` (for tasks no gate reaches,
    such as process tasks); fails if the stream ends or ``timeout`` passes first."""
    wanted = f'"status":"{status}"'
    text = ""
    async with client.request(f"/tasks/{task_id}/events", headers=headers or {}) as connection:
        await connection.send_complete()
        async with asyncio.timeout(timeout):
            while wanted not in text:
                chunk = await connection.receive()
                assert chunk, f"the stream ended without {wanted}: {text}"
                text += chunk.decode()
        await connection.disconnect()


HANG_GUARD = 60.0  # seconds: a request still unanswered by then hangs the server


async def answered(request: Awaitable[Response]) -> Response:
    """The answer to a hostile request. Not a timing test (the machine is shared): a
    request the service chews on without end fails here instead of hanging the suite;
    what it answers, and that the service is healthy after, the callers check."""
    async with asyncio.timeout(HANG_GUARD):
        return await request


async def assert_healthy(client: Client) -> None:
    """After an attack: /healthz answers, and a normal task still runs to its result."""
    assert (await client.get("/healthz")).status_code == 200
    task = await finished(client, (await submit(client, "add", 2, 3))["id"])
    assert task["status"] == "succeeded", task
    assert task["result"] == 5

"""GET /tasks/{id}/events: Server-Sent Events until the terminal one."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

import httpx
from quart.testing.connections import TestHTTPConnection as Connection
from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import TASK_FIELDS, bearer, problem, submit

Event = tuple[str, dict[str, Any]]


def parse(stream: str) -> tuple[list[Event], list[str]]:
    """The (event, data) pairs of an SSE stream, and its comment lines."""
    events: list[Event] = []
    comments: list[str] = []
    for frame in stream.split("\n\n"):
        kind, data = "message", []
        for line in frame.splitlines():
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event:"):
                kind = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
        if data:
            events.append((kind, json.loads("\n".join(data))))
    return events, comments


def open_stream(client: Client, task_id: str, headers: dict[str, str] | None = None
                ) -> AbstractAsyncContextManager[Connection]:
    connection = client.request(f"/tasks/{task_id}/events", headers=headers or {})
    return cast(AbstractAsyncContextManager[Connection], connection)


async def read_until(connection: Connection, done: str, timeout: float = 5) -> str:
    """Read chunks until ``done`` appears in the text read so far."""
    text = ""
    async with asyncio.timeout(timeout):
        while done not in text:
            text += (await connection.receive()).decode()
    return text


async def read_to_end(connection: Connection, timeout: float = 5) -> str:
    """Read until the app has finished the response (the stream is closed)."""
    text = ""
    async with asyncio.timeout(timeout):
        while True:
            chunk = await connection.receive()
            if not chunk:
                return text
            text += chunk.decode()


async def test_stream_on_a_terminal_task_sends_one_status_event_and_closes(
    client: Client,
) -> None:
    created = await submit(client, "add", 2, 5)
    await client.get(f"/tasks/{created['id']}?wait=10")

    response = await asyncio.wait_for(client.get(f"/tasks/{created['id']}/events"), 5)

    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events, _ = parse(await response.get_data(as_text=True))
    assert [kind for kind, _ in events] == ["status"]
    task = events[0][1]
    assert task.keys() >= TASK_FIELDS
    assert task["status"] == "succeeded"
    assert task["result"] == 7


async def test_stream_on_a_scheduled_task_ends_when_it_is_cancelled(client: Client) -> None:
    created = await submit(client, "progress_then_wait", "sse", 3, delay=30)
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        first = await read_until(connection, "\n\n")
        assert connection.status_code == 200
        assert connection.headers is not None
        assert connection.headers["Content-Type"].startswith("text/event-stream")
        assert connection.headers["Cache-Control"] == "no-cache"
        await client.post(f"/tasks/{created['id']}/cancel")
        rest = await read_to_end(connection)

    events, _ = parse(first + rest)
    assert [(kind, task["status"]) for kind, task in events] == [
        ("status", "scheduled"), ("status", "cancelled")]


async def test_stream_follows_a_running_task_to_the_end(client: Client) -> None:
    created = await submit(client, "wait_for_release", "follow")
    await gate("follow").wait_started()
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        first = await read_until(connection, "\n\n")
        gate("follow").open()
        rest = await read_to_end(connection)

    events, _ = parse(first + rest)
    assert [kind for kind, _ in events] == ["status", "status"]
    assert events[0][1]["status"] == "running"
    assert events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["result"] == "follow"
    assert events[-1][1]["id"] == created["id"]


async def test_progress_events_carry_the_whole_task(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    await submit(client, "wait_for_release", "first")  # holds the only slot
    await gate("first").wait_started()
    created = await submit(client, "progress_then_wait", "prog", 3)
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        text = await read_until(connection, "\n\n")  # subscribed while queued
        gate("first").open()
        text += await read_until(connection, '"current":3')
        gate("prog").open()
        text += await read_to_end(connection)

    events, _ = parse(text)
    statuses = [t["status"] for kind, t in events if kind == "status"]
    progress = [t for kind, t in events if kind == "progress"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [t["progress"]["current"] for t in progress] == [1, 2, 3]
    for task in progress:
        assert task.keys() >= TASK_FIELDS
        assert task["status"] == "running"
        assert task["progress"]["total"] == 3
    assert progress[0]["progress"]["message"] == "step 1"
    assert events[-1][1]["progress"] == {"current": 3, "total": 3, "message": "step 3"}


async def statuses_seen(client: Client, name: str, *args: Any) -> list[dict[str, Any]]:
    """Open a stream on a queued task (the only slot is held), let it run; its status events."""
    await submit(client, "wait_for_release", "slot")
    await gate("slot").wait_started()
    created = await submit(client, name, *args)
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        text = await read_until(connection, "\n\n")
        gate("slot").open()
        text += await read_to_end(connection)
    return [task for kind, task in parse(text)[0] if kind == "status"]


async def test_stream_of_a_failing_task_ends_with_its_error(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)

    tasks = await statuses_seen(client, "fail", "nope")

    assert [t["status"] for t in tasks] == ["queued", "running", "failed"]
    assert tasks[-1]["error"] == {"type": "RuntimeError", "message": "nope"}


async def test_stream_shows_a_retry_as_scheduled_with_the_error(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)

    tasks = await statuses_seen(client, "flaky", 2)

    assert [t["status"] for t in tasks] == [
        "queued", "running", "scheduled", "queued", "running", "succeeded"]
    assert tasks[2]["error"]["type"] == "ConnectionError"
    assert tasks[-1]["attempts"] == 2


async def test_progress_events_of_thread_and_process_tasks(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    for name in ("thread_progress", "process_progress"):
        await submit(client, "wait_for_release", f"hold-{name}")
        await gate(f"hold-{name}").wait_started()
        created = await submit(client, name, 3)
        async with open_stream(client, created["id"]) as connection:
            await connection.send_complete()
            text = await read_until(connection, "\n\n")
            gate(f"hold-{name}").open()
            text += await read_to_end(connection, timeout=10)

        events, _ = parse(text)
        progress = [t["progress"]["current"] for kind, t in events if kind == "progress"]
        assert progress == [1, 2, 3], name
        assert events[-1][1]["status"] == "succeeded"
        assert events[-1][1]["result"] == 3


async def test_idle_stream_sends_keep_alive_comments(make_client: MakeClient) -> None:
    client = await make_client(sse_keepalive=0.02)
    created = await submit(client, "wait_for_release", "idle")
    await gate("idle").wait_started()
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        text = await read_until(connection, ": keep-alive")
        gate("idle").open()
        text += await read_to_end(connection)

    events, comments = parse(text)
    assert "keep-alive" in comments
    assert events[-1][1]["status"] == "succeeded"


async def test_disconnected_client_stops_listening(client: Client) -> None:
    created = await submit(client, "wait_for_release", "leave")
    await gate("leave").wait_started()
    hub = client.app.extensions["offload"].service.hub
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        await read_until(connection, "\n\n")
        assert hub.listener_count() == 1
        await connection.disconnect()

    assert hub.listener_count() == 0


async def test_events_of_unknown_task_are_404(client: Client) -> None:
    await problem(await client.get("/tasks/" + "c" * 24 + "/events"), 404)


async def test_events_of_another_tokens_task_are_404(make_client: MakeClient) -> None:
    client = await make_client(api_tokens=("t1", "t2"))
    created = await submit(client, "add", 1, 1, headers=bearer("t1"))

    response = await client.get(f"/tasks/{created['id']}/events", headers=bearer("t2"))

    await problem(response, 404)


async def test_stream_ends_when_the_service_stops(make_client: MakeClient) -> None:
    client = await make_client()
    created = await submit(client, "add", 1, 1, delay=30)
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        text = await read_until(connection, "\n\n")
        await client.app.extensions["offload"].service.stop(grace=0.1)
        text += await read_to_end(connection)

    events, _ = parse(text)
    assert events[-1][1]["status"] == "failed"
    assert events[-1][1]["error"]["type"] == "Interrupted"


async def test_stream_through_httpx_asgi_transport(client: Client) -> None:
    created = await submit(client, "add", 3, 4)
    await client.get(f"/tasks/{created['id']}?wait=10")
    asgi_app: Any = client.app
    transport = httpx.ASGITransport(app=asgi_app)

    async with httpx.AsyncClient(transport=transport, base_url="http://offload") as http:
        response = await http.get(f"/tasks/{created['id']}/events", timeout=5)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events, _ = parse(response.text)
    assert [(kind, task["result"]) for kind, task in events] == [("status", 7)]


async def test_stream_outlives_quarts_response_timeout(make_client: MakeClient) -> None:
    client = await make_client(sse_keepalive=0.02)
    client.app.config["RESPONSE_TIMEOUT"] = 0.05  # a normal response would be cut here
    created = await submit(client, "wait_for_release", "long-stream")
    await gate("long-stream").wait_started()
    async with open_stream(client, created["id"]) as connection:
        await connection.send_complete()
        text = await read_until(connection, "\n\n")
        for _ in range(5):  # 5 keep-alives at 0.02 s: past the 0.05 s response timeout
            text += await read_until(connection, ": keep-alive")
        gate("long-stream").open()
        text += await read_to_end(connection)

    assert parse(text)[0][-1][1]["status"] == "succeeded"

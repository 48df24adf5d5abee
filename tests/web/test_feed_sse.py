"""GET /events through the app: framing, owners, resuming, the stream limit, leaving
clients, and the end of the stream when the service drains."""

from __future__ import annotations

import asyncio
import gc
import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, cast

from quart import Quart
from quart.testing.connections import TestHTTPConnection as Connection
from quart.typing import TestClientProtocol as Client

from service import Offload
from service.web.feed import stream_events

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import TASK_FIELDS, bearer, finished, problem, submit


@dataclass(frozen=True)
class Event:
    id: str | None
    kind: str
    data: dict[str, Any]


def parse(stream: str) -> tuple[list[Event], list[str]]:
    """The events of an SSE text, and its comment lines (as an EventSource reads them)."""
    events: list[Event] = []
    comments: list[str] = []
    for frame in stream.split("\n\n"):
        event_id, kind, data = None, "message", []
        for line in frame.splitlines():
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                comments.append(value.strip())
            elif field == "id":
                event_id = value
            elif field == "event":
                kind = value
            elif field == "data":
                data.append(value)
        if data:
            events.append(Event(event_id, kind, json.loads("\n".join(data))))
    return events, comments


def open_feed(client: Client, headers: dict[str, str] | None = None
              ) -> AbstractAsyncContextManager[Connection]:
    return cast(AbstractAsyncContextManager[Connection],
                client.request("/events", headers=headers or {}))


async def read_until(connection: Connection, done: str, timeout: float = 10) -> str:
    text = ""
    async with asyncio.timeout(timeout):
        while done not in text:
            text += (await connection.receive()).decode()
    return text


async def read_to_end(connection: Connection, timeout: float = 10) -> str:
    text = ""
    async with asyncio.timeout(timeout):
        while chunk := await connection.receive():
            text += chunk.decode()
    return text


def hub_of(client: Client) -> Any:
    return client.app.extensions["offload"].service.hub


async def test_the_feed_streams_every_change_of_every_task(client: Client) -> None:
    async with open_feed(client) as connection:
        await connection.send_complete()
        first = await read_until(connection, "\n\n")
        created = await submit(client, "progress_steps", 2)
        text = first + await read_until(connection, '"succeeded"')
        await connection.disconnect()

    assert connection.status_code == 200
    assert connection.headers is not None
    assert connection.headers["Content-Type"].startswith("text/event-stream")
    assert connection.headers["Cache-Control"] == "no-store"
    assert connection.headers["X-Accel-Buffering"] == "no"
    assert first.startswith("retry: 2000\n")
    events, _ = parse(text)
    assert all(e.data["id"] == created["id"] for e in events)
    assert [e.data["status"] for e in events if e.kind == "status"] == [
        "queued", "running", "succeeded"]
    assert [e.data["progress"]["current"] for e in events if e.kind == "progress"] == [1, 2]
    assert events[-1].data.keys() >= TASK_FIELDS
    assert events[-1].data["result"] == 2
    ids = [e.id for e in events]
    assert None not in ids
    assert len(set(ids)) == len(ids)


async def test_with_tokens_a_stream_carries_only_its_tokens_tasks(
        make_client: MakeClient) -> None:
    client = await make_client(api_tokens=("t1", "t2"))
    await problem(await client.get("/events"), 401)
    async with open_feed(client, bearer("t1")) as connection:
        await connection.send_complete()
        others = await submit(client, "add", 1, 1, headers=bearer("t2"))
        await finished(client, others["id"], bearer("t2"))
        mine = await submit(client, "add", 2, 2, headers=bearer("t1"))
        text = await read_until(connection, '"succeeded"')
        await connection.disconnect()

    events, _ = parse(text)
    assert {e.data["id"] for e in events} == {mine["id"]}
    assert others["id"] not in text


async def test_a_reconnecting_reader_resumes_after_its_last_event(client: Client) -> None:
    async with open_feed(client) as connection:
        await connection.send_complete()
        seen = await submit(client, "add", 1, 2)
        events, _ = parse(await read_until(connection, '"succeeded"'))
        await connection.disconnect()
    last_id = events[-1].id
    assert last_id is not None
    missed = await finished(client, (await submit(client, "add", 3, 4))["id"])

    async with open_feed(client, {"Last-Event-ID": last_id}) as connection:
        await connection.send_complete()
        text = await read_until(connection, '"succeeded"')
        await connection.disconnect()

    events, _ = parse(text)
    assert "reset" not in [e.kind for e in events]
    assert {e.data["id"] for e in events} == {missed["id"]}
    assert seen["id"] not in text
    assert [e.data["status"] for e in events] == ["queued", "running", "succeeded"]


async def test_a_reader_that_cannot_resume_is_told_so_and_continues_live(
        client: Client) -> None:
    async with open_feed(client, {"Last-Event-ID": "0123abcd-7"}) as connection:
        await connection.send_complete()
        text = await read_until(connection, "cannot-resume")
        created = await submit(client, "add", 1, 1)
        text += await read_until(connection, '"succeeded"')
        await connection.disconnect()

    events, _ = parse(text)
    assert (events[0].kind, events[0].data) == ("reset", {"reason": "cannot-resume"})
    assert events[-1].data["id"] == created["id"]


async def test_streams_beyond_the_limit_are_429_with_retry_after(
        make_client: MakeClient) -> None:
    client = await make_client(max_event_streams=1)
    async with open_feed(client) as connection:
        await connection.send_complete()
        await read_until(connection, "\n\n")
        response = await client.get("/events")
        body = await problem(response, 429)
        assert int(response.headers["Retry-After"]) > 0
        assert "event streams" in body["detail"]
        await connection.disconnect()
    async with open_feed(client) as connection:  # the slot is free again
        await connection.send_complete()
        assert (await read_until(connection, "\n\n")).startswith("retry:")
        await connection.disconnect()


async def test_a_client_that_leaves_is_forgotten(client: Client) -> None:
    hub = hub_of(client)
    for _ in range(3):
        async with open_feed(client) as connection:
            await connection.send_complete()
            await read_until(connection, "\n\n")
            assert hub.listener_count() == 1
            await connection.disconnect()
        assert hub.listener_count() == 0


async def test_an_idle_stream_sends_keep_alive_comments(make_client: MakeClient) -> None:
    client = await make_client(sse_keepalive=0.02)
    async with open_feed(client) as connection:
        await connection.send_complete()
        text = await read_until(connection, ": keep-alive\n\n")
        await connection.disconnect()
    assert "keep-alive" in parse(text)[1]


async def test_streams_end_when_the_service_drains(make_client: MakeClient) -> None:
    client = await make_client()
    running = await submit(client, "wait_for_release", "drain-feed")
    await gate("drain-feed").wait_started()
    service = client.app.extensions["offload"].service
    async with open_feed(client) as connection:
        await connection.send_complete()
        await read_until(connection, "\n\n")
        await service.drain(grace=0.1)
        text = await read_to_end(connection)  # the stream ends: the service drained

    events, _ = parse(text)
    assert events[-1].data["id"] == running["id"]  # after the last change it saw
    assert events[-1].data["error"]["type"] == "Interrupted"
    assert hub_of(client).listener_count() == 0
    response = await client.get("/events")  # a drained service opens no new stream
    await problem(response, 503)
    assert response.headers["Retry-After"]


async def test_the_feed_is_in_the_openapi_document(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    operation = spec["paths"]["/events"]["get"]
    assert operation["operationId"] == "streamEvents"
    answer = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert answer["properties"]["event"]["enum"] == ["status", "progress", "reset"]
    assert "id" in answer["properties"]
    assert [p["name"] for p in operation["parameters"]] == ["Last-Event-ID"]
    too_many = operation["responses"]["429"]
    assert "application/problem+json" in too_many["content"]
    assert "Retry-After" in too_many["headers"]


async def test_the_embedded_feed_is_under_the_prefix() -> None:
    app = Quart(__name__)
    Offload(app)
    async with app.test_app() as started:
        client = started.test_client()
        connection = cast(AbstractAsyncContextManager[Connection],
                          client.request("/offload/events"))
        async with connection as stream:
            await stream.send_complete()
            assert (await read_until(stream, "\n\n")).startswith("retry:")
            await stream.disconnect()
        assert (await client.get("/events")).status_code == 404  # the host's space


async def test_a_stream_whose_body_never_began_is_forgotten(client: Client) -> None:
    # A client may leave between the view's answer and the first chunk of its body: the
    # body generator is then dropped without ever running (so without its finally).
    hub = hub_of(client)
    async with client.app.test_request_context("/events"):
        response = await stream_events()
        assert hub.listener_count() == 1
    del response
    gc.collect()
    assert hub.listener_count() == 0

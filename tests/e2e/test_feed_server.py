"""GET /events on the real server: a stream on either of two workers (one SQLite file) sees
the tasks the other runs; a reader that stops reading is reset, not buffered without end;
a stream ends when the server stops, after the last changes, without holding the exit.
The last test runs on the module's server in both modes (see conftest.py), embedded and
in Celery mode (the dashboard's feed of tasks that Celery workers run)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import CLIENT_TIMEOUT
from .durable_tasks import starts
from .helpers import TERMINAL, submit, wait_terminal
from .server import HOST, REPO, Server, server_env, spawn, wait_ready
from .sqlite_helpers import (
    WAIT,
    key_prefix,
    pinned_pool,
    serving,
    start_sqlite,
    wait_for_workers,
)

pytestmark = pytest.mark.e2e
MODULES = "service.demo,tests.e2e.durable_tasks"
GRACE = 1.0  # OFFLOAD_SHUTDOWN_GRACE of the server stopped below
MARGIN = 5.0  # seconds for Hypercorn to stop and the processes to exit
GRACEFUL_TIMEOUT: float = tomllib.loads((REPO / "hypercorn.toml").read_text())[
    "graceful_timeout"]


@dataclass(frozen=True)
class FeedEvent:
    id: str | None
    kind: str
    data: dict[str, Any]


def frame_of(text: str) -> FeedEvent | None:
    """One SSE frame (the text between two blank lines) as an event; None for a frame with
    no data (the ``retry:`` line, a keep-alive comment)."""
    event_id, kind, data = None, "message", []
    for line in text.split("\n"):
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)
    return FeedEvent(event_id, kind, json.loads("\n".join(data))) if data else None


async def feed_events(response: httpx.Response) -> AsyncIterator[FeedEvent]:
    """The events of an open ``GET /events`` response, until the server ends it."""
    text = ""
    async for chunk in response.aiter_text():
        text += chunk
        *frames, text = text.split("\n\n")
        for frame in frames:
            if (event := frame_of(frame)) is not None:
                yield event


async def read_until_all_ended(response: httpx.Response, task_ids: set[str]
                               ) -> list[FeedEvent]:
    """The stream's events until each of ``task_ids`` was seen terminal."""
    seen: list[FeedEvent] = []
    left = set(task_ids)
    async with asyncio.timeout(WAIT):
        async for event in feed_events(response):
            seen.append(event)
            if event.kind == "status" and event.data["status"] in TERMINAL:
                left.discard(event.data["id"])
                if not left:
                    return seen
    raise AssertionError(f"the stream ended before these tasks did: {left}")


async def test_a_stream_on_either_worker_sees_the_tasks_the_other_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    server = start_sqlite(tmp_path, tmp_path / "offload.db", runs, "--workers", "2",
                          name="feed-two-workers")
    with serving(server):
        await wait_for_workers(server, 2)
        prefix, count = key_prefix(), 6
        async with (pinned_pool(server) as pool,
                    httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http):
            sides = [pinned[0] for pinned in pool.values()]
            async with (sides[0].http.stream("GET", "/events") as first,
                        sides[1].http.stream("GET", "/events") as second):
                for side, stream in zip(sides, (first, second), strict=True):
                    assert stream.status_code == 200  # both readers are subscribed now
                    side.check(stream)
                tasks = [await submit(http, "journal_run", f"{prefix}{i}", 0.1)
                         for i in range(count)]
                ids = {task["id"] for task in tasks}
                received = await asyncio.gather(read_until_all_ended(first, ids),
                                                read_until_all_ended(second, ids))

    runner = {run.id: run.pid for run in starts(runs, prefix)}
    assert set(runner) == ids
    crossed = 0
    for side, events in zip(sides, received, strict=True):
        numbers = [int((e.id or "").rsplit("-", 1)[1]) for e in events]
        assert numbers == sorted(numbers), "ids increase within a stream"
        assert "reset" not in {e.kind for e in events}
        ended = {e.data["id"]: e.data for e in events
                 if e.kind == "status" and e.data["status"] in TERMINAL}
        for task_id, pid in runner.items():
            assert ended[task_id]["status"] == "succeeded", ended[task_id]
            crossed += pid != side.pid
    assert crossed == count, "each task was seen by the stream on the worker that did not run it"


async def raw_feed(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``GET /events`` on a connection with a tiny receive buffer, its answer left unread:
    once the kernel's and asyncio's buffers are full the server cannot send any more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /events HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def chunked_events(reader: asyncio.StreamReader) -> AsyncIterator[FeedEvent]:
    """The events of a raw chunked ``text/event-stream`` answer (each event is one chunk)."""
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    text = ""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        text += (await reader.readexactly(size + 2))[:-2].decode()
        *frames, text = text.split("\n\n")
        for frame in frames:
            if (event := frame_of(frame)) is not None:
                yield event


async def test_a_reader_that_stops_reading_is_reset_and_goes_on_live(tmp_path: Path) -> None:
    queue, tasks, size = 16, 240, 30_000  # 720 events of some 30 KB: far beyond the buffers
    env = server_env(OFFLOAD_TASK_MODULES=MODULES, OFFLOAD_EVENTS_QUEUE=str(queue),
                     OFFLOAD_EVENTS_BUFFER="50")
    server = spawn(tmp_path, env, name="feed-slow-reader")
    with serving(server):
        wait_ready(server)
        reader, writer = await raw_feed(server)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:
            for batch in range(tasks // 20):
                body = {"tasks": [{"name": "journal_run", "args": [f"{batch}-{i}-" + "x" * size]}
                                  for i in range(20)]}
                response = await http.post("/tasks/batch", json=body)
                assert response.status_code == 202, response.text
            last = response.json()["items"][-1]
            await wait_terminal(http, last["id"])
            marker = await submit(http, "add", 40, 2)  # published while the reader reads

            received: list[FeedEvent] = []
            async with asyncio.timeout(WAIT):
                async for event in chunked_events(reader):
                    received.append(event)
                    if event.data.get("id") == marker["id"] and event.data["status"] in TERMINAL:
                        break
        writer.close()

    resets = [i for i, e in enumerate(received) if e.kind == "reset"]
    assert resets, "the reader was never told it fell behind"
    assert all(received[i].data == {"reason": "fell-behind"} for i in resets)
    assert len(received) < 3 * tasks, "what it could not take was dropped, not kept"
    after = received[resets[-1] + 1:]
    assert after[-1].data["id"] == marker["id"]  # and it went on live
    assert after[-1].data["result"] == 42


async def test_a_stream_ends_after_the_last_changes_when_the_server_stops(
        tmp_path: Path) -> None:
    env = server_env(OFFLOAD_TASK_MODULES=MODULES, OFFLOAD_SHUTDOWN_GRACE=str(GRACE))
    server = spawn(tmp_path, env, name="feed-stopped")
    try:
        wait_ready(server)
        async with (httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http,
                    http.stream("GET", "/events") as stream):
            events = feed_events(stream)
            running = await submit(http, "sleep", 600)
            async with asyncio.timeout(WAIT):
                async for event in events:
                    if event.data.get("status") == "running":
                        break
            sent = time.monotonic()
            server.terminate()
            async with asyncio.timeout(GRACE + GRACEFUL_TIMEOUT + MARGIN):
                rest = [event async for event in events]  # a cut stream would raise here
        code = await asyncio.to_thread(server.wait_exit, GRACE + GRACEFUL_TIMEOUT + MARGIN)
    finally:
        if server.process.poll() is None:
            server.kill()

    assert code == 0, f"exit code {code} {time.monotonic() - sent:.1f}s after SIGTERM"
    last = rest[-1]
    assert (last.kind, last.data["id"], last.data["status"]) == (
        "status", running["id"], "failed")
    assert last.data["error"]["type"] == "Interrupted"
    output = server.output()
    assert "Traceback" not in output, output[-4000:]


async def test_a_stream_on_the_module_server_sees_each_task_to_its_end(
        client: httpx.AsyncClient, runs: Path) -> None:
    """``GET /events`` on the module's server, embedded or in Celery mode (the web process
    serving the stream runs nothing; a worker runs the tasks): every task through to its
    end, ids increasing, no reset."""
    prefix, count = key_prefix(), 4
    async with client.stream("GET", "/events") as stream:
        assert stream.status_code == 200  # subscribed now
        tasks = [await submit(client, "journal_run", f"{prefix}{i}", 0.1) for i in range(count)]
        ids = {task["id"] for task in tasks}
        events = await read_until_all_ended(stream, ids)
    numbers = [int((e.id or "").rsplit("-", 1)[1]) for e in events]
    assert numbers == sorted(numbers), "ids increase within a stream"
    assert "reset" not in {e.kind for e in events}
    ended = {e.data["id"]: e.data for e in events
             if e.kind == "status" and e.data["status"] in TERMINAL}
    assert {task_id: (task["status"], task["result"]) for task_id, task in ended.items()} == {
        task["id"]: ("succeeded", f"{prefix}{i}") for i, task in enumerate(tasks)}
    assert {run.id for run in starts(runs, prefix)} == ids

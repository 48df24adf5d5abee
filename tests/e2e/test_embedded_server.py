"""An app that embeds Offload, served by the real server: the host's routes answer as the
host wrote them, Offload's API lives under ``/offload``, and a SIGTERM drains Offload's
service of that app (its running task ends ``Interrupted``, a ``?wait=`` client gets it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server import STARTUP_DEADLINE, Server, server_env, spawn
from .sse import events

pytestmark = pytest.mark.e2e
APP = "tests.e2e.host_app:app"


def wait_ready(server: Server, path: str = "/offload/readyz") -> None:
    """Poll Offload's readiness under its prefix until it answers 200."""
    end = time.monotonic() + STARTUP_DEADLINE
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < end:
            assert server.process.poll() is None, server.output_tail()
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a starting server's readiness, not waiting for a task
    server.kill()
    raise AssertionError(f"not ready within {STARTUP_DEADLINE}s:\n{server.output_tail()}")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Server]:
    env = server_env(OFFLOAD_TASK_MODULES="service.demo", OFFLOAD_SHUTDOWN_GRACE="1")
    server = spawn(tmp_path, env, "--app", APP, name="embedded")
    try:
        wait_ready(server)
        yield server
    finally:
        if server.process.poll() is None:
            server.kill()


async def test_the_host_keeps_its_routes_and_offload_serves_under_its_prefix(
        embedded: Server) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url, timeout=30) as client:
        home = await client.get("/")
        nan = await client.post("/echo", content=b'{"a": NaN}',
                                headers={"Content-Type": "application/json"})
        started = await client.post("/sum", json={"a": 2, "b": 3})
        task_id = started.json()["task_id"]
        done = await client.get(f"/offload/tasks/{task_id}", params={"wait": 10})
        refused = await client.post("/offload/tasks", content=b'{"name": "total", "args": [NaN]}',
                                    headers={"Content-Type": "application/json"})
        root_paths = [(await client.get(p)).status_code
                      for p in ("/stats", "/metrics", "/healthz", "/tasks", "/openapi.json")]
        spec = (await client.get("/offload/openapi.json")).json()

    assert home.text == "the host's home"
    assert nan.status_code == 200
    assert nan.content == b'{"got":{"a":NaN}}\n'
    assert started.status_code == 202
    assert done.json()["result"] == 5
    assert refused.status_code == 400
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert root_paths == [404] * 5
    assert "/offload/tasks" in spec["paths"]


async def test_sigterm_drains_the_embedded_service(embedded: Server) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url, timeout=30) as client:
        submitted = await client.post("/offload/tasks", json={"name": "sleep", "args": [30]})
        task_id = submitted.json()["id"]
        async with client.stream("GET", f"/offload/tasks/{task_id}/events") as stream:
            async for event in events(stream):
                if event.task["status"] == "running":
                    break
        waiting = asyncio.create_task(
            client.get(f"/offload/tasks/{task_id}", params={"wait": 30}))
        embedded.terminate()
        answer = await waiting

    code = await asyncio.to_thread(embedded.wait_exit, 30)
    assert answer.status_code == 200
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"]["type"] == "Interrupted"
    assert code == 0, embedded.output_tail()

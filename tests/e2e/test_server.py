"""The real server (``make run``'s Hypercorn command) driven over HTTP: one server for the
module, each test leaves nothing running behind it. Each test runs against the embedded
server and against a Celery-mode deployment (see conftest.py): there, the web process runs
no task, so a task is ``queued`` until a worker starts it (docs/celery.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings

from .conftest import CeleryBackend
from .helpers import (
    TERMINAL,
    alive,
    first_progress_message,
    is_terminal,
    nice_of,
    submit,
    threads_of,
    wait_terminal,
    worker_pid,
)
from .server import Server
from .sqlite_helpers import wait_until
from .sse import Event, events

pytestmark = pytest.mark.e2e


async def running_now(client: httpx.AsyncClient, task_id: str, mode: str) -> dict[str, Any]:
    """The task, running: at once in the embedded server (its runner starts a task as it
    is accepted); in Celery mode once a worker has started it (its event stream says so)."""
    task: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
    if mode == "embedded":
        assert task["status"] == "running", task
        return task
    assert task["status"] in {"queued", "running"}, task
    async with asyncio.timeout(15), client.stream("GET", f"/tasks/{task_id}/events") as stream:
        async for event in events(stream):
            assert event.task["status"] not in TERMINAL, event.task
            if event.task["status"] == "running":
                return event.task
    raise AssertionError("the event stream closed before the task ran")


def runner_pid(server: Server, mode: str, request: pytest.FixtureRequest) -> int:
    """The process whose tasks' process tasks run in a child: the server, or in Celery
    mode the worker (its prefork pool processes run them)."""
    if mode == "celery":
        backend: CeleryBackend = request.getfixturevalue("celery_backend")
        return backend.worker.pid
    return server.pid


async def test_seed_process_route_answers_202_at_once_while_the_job_runs(
    client: httpx.AsyncClient, mode: str,
) -> None:
    response = await client.get("/process")

    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"task_id", "status"}
    assert body["status"] in {"queued", "running"}
    location = response.headers["Location"]
    assert location == f"/tasks/{body['task_id']}"
    task = await running_now(client, body["task_id"], mode)
    assert task["name"] == "long_task"  # the answer came while the job (10 s) runs on

    assert (await client.post(f"{location}/cancel")).status_code == 202  # leave nothing running
    assert (await wait_terminal(client, body["task_id"]))["status"] == "cancelled"


async def test_thread_task_succeeds_and_healthz_answers_while_it_blocks(
    client: httpx.AsyncClient, mode: str, tmp_path: Path,
) -> None:
    gate = tmp_path / "release"
    task = await submit(client, "block_until_released", str(gate))
    try:
        await running_now(client, task["id"], mode)

        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        # the task blocks its thread until released: /healthz was answered while it ran
        assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "running"
    finally:
        gate.touch()  # release it, whatever happened: leave nothing running

    done = await wait_terminal(client, task["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == str(gate)


async def test_process_task_succeeds_under_the_real_server_with_an_exact_big_result(
    client: httpx.AsyncClient,
) -> None:
    # Hypercorn's workers are daemonic: multiprocessing refuses to start children there.
    n = 5_000_000
    task = await submit(client, "cpu", n)
    done = await wait_terminal(client, task["id"])

    assert done["status"] == "succeeded", done
    expected = (n - 1) * n * (2 * n - 1) // 6  # the sum of i*i for i below n
    assert expected > 2**64
    assert done["result"] == expected
    assert isinstance(done["result"], int)


async def test_process_tasks_run_at_a_lower_cpu_priority(
    client: httpx.AsyncClient, server: Server, mode: str, request: pytest.FixtureRequest
) -> None:
    task = await submit(client, "spin_reporting_thread")
    try:
        pid, thread = map(int, (await first_progress_message(client, task["id"])).split())
        niceness = nice_of(pid, thread)
        others = {nice_of(pid, other) for other in threads_of(pid) if other != thread}
    finally:
        assert (await client.post(f"/tasks/{task['id']}/cancel")).status_code == 202
        assert (await wait_terminal(client, task["id"]))["status"] == "cancelled"
    own = nice_of(runner_pid(server, mode, request))
    assert niceness == min(19, own + Settings().process_nice), \
        "process tasks run at a lower CPU priority"
    if mode == "celery":  # in a pool process, only the task's thread: the others (the
        # event loop's, which renews the lease, and Celery's own) keep the worker's priority
        assert others == {own}


async def test_cancel_of_a_running_process_task_kills_its_worker_and_the_pool_runs_on(
    client: httpx.AsyncClient, mode: str,
) -> None:
    task = await submit(client, "spin_reporting_pid")
    pid = await worker_pid(client, task["id"])

    cancel = await client.post(f"/tasks/{task['id']}/cancel")
    assert cancel.status_code == 202, cancel.text
    done = await wait_terminal(client, task["id"])
    assert done["status"] == "cancelled", done
    if mode == "embedded":
        assert not alive(pid), f"the worker process {pid} still runs after the cancel"
    else:  # a Celery pool process ends once the record is settled (docs/celery.md, Cancel)
        await wait_until(lambda: not alive(pid), f"the pool process {pid} ends", 30)

    after = await submit(client, "cpu", 1000)
    finished = await wait_terminal(client, after["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == sum(i * i for i in range(1000))


async def test_event_stream_sends_each_progress_of_count_and_closes_after_the_terminal_event(
    client: httpx.AsyncClient, mode: str,
) -> None:
    n = 5
    response = await client.post("/tasks", json={"name": "count", "kwargs": {"n": n,
                                                                           "delay": 0.1}})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]

    received: list[Event] = []
    async with asyncio.timeout(15), client.stream("GET", f"/tasks/{task_id}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for event in events(stream):
            received.append(event)
    # the loop ended: the server closed the stream by itself

    first, last = received[0], received[-1]
    assert first.kind == "status"
    assert last.kind == "status"
    assert last.task["status"] == "succeeded"
    assert last.task["result"] == n
    assert all(not is_terminal(e) for e in received[:-1]), "nothing follows the terminal event"
    already = int(first.task["progress"]["current"]) if first.task["progress"] else 0
    progress = [e.task["progress"]["current"] for e in received if e.kind == "progress"]
    if mode == "embedded":
        assert progress == list(range(already + 1, n + 1)), "every step, in order, none missed"
    else:  # the web process reads a worker's changes from the Redis store's feed, one per
        # task and read (status outranks progress: docs/store-design.md, "The change feed")
        assert progress == sorted(set(progress)), "in order, none twice"
        assert set(progress) <= set(range(already + 1, n + 1))
        assert last.task["progress"]["current"] == n, "the last step is in the end state"
    assert already < n, "the stream was opened before the task finished"
    assert {e.task["id"] for e in received} == {task_id}

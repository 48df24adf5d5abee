"""The real server (``make run``'s Hypercorn command) driven over HTTP: one server for the
module, each test leaves nothing running behind it."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from service.settings import Settings

from .helpers import alive, is_terminal, nice_of, submit, wait_terminal, worker_pid
from .server import Server
from .sse import Event, events

pytestmark = pytest.mark.e2e


async def test_seed_process_route_answers_202_at_once_while_the_job_runs(
    client: httpx.AsyncClient,
) -> None:
    started = time.perf_counter()
    response = await client.get("/process")
    elapsed = time.perf_counter() - started

    assert response.status_code == 202, response.text
    assert elapsed < 1.0, f"GET /process took {elapsed:.3f}s; the job itself takes 10 s"
    body = response.json()
    assert set(body) == {"task_id", "status"}
    assert body["status"] in {"queued", "running"}
    location = response.headers["Location"]
    assert location == f"/tasks/{body['task_id']}"
    task = (await client.get(location)).json()
    assert task["name"] == "long_task"
    assert task["status"] == "running"

    assert (await client.post(f"{location}/cancel")).status_code == 202  # leave nothing running
    assert (await wait_terminal(client, body["task_id"]))["status"] == "cancelled"


async def test_thread_task_succeeds_and_healthz_answers_while_it_blocks(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client, "blocking_sleep", 2.0)
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "running"

    started = time.perf_counter()
    health = await client.get("/healthz")
    elapsed = time.perf_counter() - started
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert elapsed < 1.0, f"/healthz took {elapsed:.3f}s while a thread task blocked"
    # the task still blocks its thread: /healthz was answered while it ran, not after
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "running"

    done = await wait_terminal(client, task["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == 2.0


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


async def test_cancel_of_a_running_process_task_kills_its_worker_and_the_pool_runs_on(
    client: httpx.AsyncClient, server: Server
) -> None:
    task = await submit(client, "spin_reporting_pid")
    pid = await worker_pid(client, task["id"])
    lower = min(19, nice_of(server.pid) + Settings().process_nice)
    assert nice_of(pid) == lower, "process tasks run at a lower CPU priority"

    cancel = await client.post(f"/tasks/{task['id']}/cancel")
    assert cancel.status_code == 202, cancel.text
    done = await wait_terminal(client, task["id"])
    assert done["status"] == "cancelled", done
    assert not alive(pid), f"the worker process {pid} still runs after the cancel"

    after = await submit(client, "cpu", 1000)
    finished = await wait_terminal(client, after["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == sum(i * i for i in range(1000))


async def test_event_stream_sends_each_progress_of_count_and_closes_after_the_terminal_event(
    client: httpx.AsyncClient,
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
    assert progress == list(range(already + 1, n + 1)), "every step, in order, none missed"
    assert already < n, "the stream was opened before the task finished"
    assert {e.task["id"] for e in received} == {task_id}

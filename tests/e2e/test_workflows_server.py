"""Library workflows on a real server and an SQLite file: a chain (with result passing), a
chord and groups, submitted through the library inside the server, survive ``kill -9`` of
that server; after the restart each one's id, a group's too, is waited on over HTTP with
``GET /tasks/{id}?wait=``. The group's own task (``offload.group``) is hidden from
``GET /task-types`` and the OpenAPI document, refused by name, and renders like any task.

Which step ran, and how often, comes from the runs journal of ``durable_tasks``; the
gated steps hold until the test creates the gate file (nothing is timed). Those tests are
about one server's SQLite file and its library, so they run in the embedded service only
(tasks that submit others on Celery workers: tests/celery/test_celery_submit_inside.py).
The last test, over HTTP only, runs on the module's server in both modes (see conftest.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from .durable_tasks import starts_by_key
from .sqlite_helpers import (
    CLIENT_TIMEOUT,
    MODULES,
    WAIT,
    serving,
    start_sqlite,
    timestamp,
    wait_until,
)
from .sse import events

pytestmark = pytest.mark.e2e

WORKFLOW_MODULES = f"{MODULES},tests.e2e.workflow_server_tasks"
GATED = ("wf-head", "wf-c1", "wf-c2", "wf-g1")  # idempotent: each runs again after the kill


async def call(http: httpx.AsyncClient, method: str, path: str, **options: Any
               ) -> dict[str, Any]:
    response = await http.request(method, path, **options)
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """``GET /tasks/{id}?wait=``: the task once it has ended."""
    return await call(http, "GET", f"/tasks/{task_id}", params={"wait": WAIT})


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT)


async def submit_in_server(http: httpx.AsyncClient, runs: Path, gate: Path
                           ) -> dict[str, Any]:
    """The server's own library submits the workflows (the ``start_workflows`` task);
    returns their ids once every gated first step runs."""
    started = await call(http, "POST", "/tasks",
                         json={"name": "start_workflows", "args": ["wf", str(gate)]})
    done = await wait_for(http, started["id"])
    assert done["status"] == "succeeded", done
    await wait_until(lambda: {*GATED, "wf-doomed"} <= set(starts_by_key(runs)),
                     "every gated first step started")
    ids: dict[str, Any] = done["result"]
    own = await call(http, "GET", f"/tasks/{ids['group']}")
    assert (own["name"], own["status"], own["depends_on"]) == (
        "offload.group", "waiting", ids["group_members"])
    assert (await call(http, "GET", f"/tasks/{ids['chain']}"))["status"] == "waiting"
    return ids


async def test_library_workflows_survive_kill_9_of_the_server_that_accepted_them(
        tmp_path: Path) -> None:
    db, runs, gate = tmp_path / "offload.db", tmp_path / "runs.jsonl", tmp_path / "gate"
    first = start_sqlite(tmp_path, db, runs, name="before", OFFLOAD_LEASE="1",
                         OFFLOAD_TASK_MODULES=WORKFLOW_MODULES)
    with serving(first):
        async with client(first.base_url) as http:
            ids = await submit_in_server(http, runs, gate)
        first.kill()  # kill -9 of the whole server while the first steps run

    second = start_sqlite(tmp_path, db, runs, name="after", OFFLOAD_LEASE="1",
                          OFFLOAD_TASK_MODULES=WORKFLOW_MODULES)
    with serving(second):
        async with client(second.base_url) as http:
            await check_after_restart(http, runs, gate, ids)
            await check_the_group_task_is_internal(http, ids["group"])
    started = starts_by_key(runs)
    assert len(started["wf-doomed"]) == 1  # cut off, not idempotent: never again
    assert all(len(started[key]) == 2 for key in GATED)


async def check_after_restart(http: httpx.AsyncClient, runs: Path, gate: Path,
                              ids: dict[str, Any]) -> None:
    doomed = await wait_for(http, ids["doomed"])  # its member was cut off: failed
    assert doomed["status"] == "cancelled", doomed
    assert doomed["error"]["type"] == "DependencyFailed"
    assert ids["doomed_members"][0] in doomed["error"]["message"]
    assert "Interrupted" in doomed["error"]["message"]
    await wait_until(lambda: all(len(starts_by_key(runs).get(key, [])) == 2
                                 for key in GATED), "the idempotent first steps run again")
    for waiting in (ids["chain"], ids["chord"], ids["group"]):
        assert (await call(http, "GET", f"/tasks/{waiting}"))["status"] == "waiting"
    await asyncio.to_thread(gate.touch)  # release every gated step
    chained = await wait_for(http, ids["chain"])
    assert (chained["status"], chained["result"]) == ("succeeded", "wf-head-two-three")
    second_step = await call(http, "GET", f"/tasks/{ids['chain_steps'][1]}")
    assert second_step["args"] == ["wf-head", "-two"]  # the head's result, passed on
    grouped = await wait_for(http, ids["group"])
    assert (grouped["status"], grouped["result"]) == ("succeeded", ["wf-g1", "wf-g2"])
    chorded = await wait_for(http, ids["chord"])
    assert (chorded["status"], chorded["result"]) == ("succeeded", "wf-c1+wf-c2")


async def check_the_group_task_is_internal(http: httpx.AsyncClient, group_id: str) -> None:
    types = await call(http, "GET", "/task-types")
    assert "offload.group" not in [t["name"] for t in types["items"]]
    assert "start_workflows" in [t["name"] for t in types["items"]]
    document = (await http.get("/openapi.json")).text
    assert "start_workflows" in document  # the names a submission may give ...
    assert "offload.group" not in document  # ... do not include it
    refused = await http.post("/tasks", json={"name": "offload.group", "args": [[1, 2]]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"field": "name", "message": "no task type named 'offload.group'"}]
    batch = await http.post("/tasks/batch", json={"tasks": [
        {"name": "add", "args": [1, 2]},
        {"name": "offload.group", "args": [], "depends_on": [0]}]})
    assert batch.status_code == 422, batch.text
    assert batch.json()["errors"][0]["field"] == "tasks.1.name"
    listed = await call(http, "GET", "/tasks", params={"name": "offload.group"})
    assert group_id in [t["id"] for t in listed["items"]]
    async with http.stream("GET", f"/tasks/{group_id}/events") as stream:
        seen = [event async for event in events(stream)]
    assert [(e.kind, e.task["status"]) for e in seen] == [("status", "succeeded")]


async def test_a_batch_graph_runs_and_the_group_type_stays_internal(
        client: httpx.AsyncClient) -> None:
    """Over HTTP, on the module's server in both modes (embedded, and in Celery mode with
    the steps on a worker): in a batch whose tasks depend on each other by index, a step
    starts once its dependency has ended, and one whose dependency failed is cancelled
    without running; ``offload.group`` cannot be submitted by name."""
    batch = await call(client, "POST", "/tasks/batch", json={"tasks": [
        {"name": "add", "args": [1, 2]},
        {"name": "add", "args": [3, 4], "depends_on": [0]},
        {"name": "fail", "args": ["boom"]},
        {"name": "add", "args": [5, 6], "depends_on": [1, 2]}]})
    first, second, failing, last = batch["items"]
    assert second["depends_on"] == [first["id"]]
    done = await wait_for(client, second["id"])
    assert (done["status"], done["result"]) == ("succeeded", 7)
    assert timestamp(done["started_at"]) >= timestamp(
        (await wait_for(client, first["id"]))["finished_at"])
    assert (await wait_for(client, failing["id"]))["status"] == "failed"
    cancelled = await wait_for(client, last["id"])
    assert (cancelled["status"], cancelled["error"]["type"]) == ("cancelled", "DependencyFailed")
    assert cancelled["started_at"] is None
    types = await call(client, "GET", "/task-types")
    assert "offload.group" not in [t["name"] for t in types["items"]]
    refused = await client.post("/tasks", json={"name": "offload.group", "args": [[1, 2]]})
    assert refused.status_code == 422, refused.text

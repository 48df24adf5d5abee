"""A task on a Celery worker submits other tasks through the library API, as it would in
one process: ``add.submit()`` and ``chain(...).submit()`` inside a task. The tasks it
submits get their messages and run on the workers; waiting for one inside a task is
refused with an error that says why (as Celery refuses ``result.get()`` in a task)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import submit, wait_terminal

pytestmark = pytest.mark.e2e


async def test_a_task_submits_tasks_that_the_workers_run(client: httpx.AsyncClient) -> None:
    parent = await wait_terminal(client, (await submit(client, "fan_out", 4))["id"])
    assert parent["status"] == "succeeded", parent
    children = [await wait_terminal(client, task_id) for task_id in parent["result"]]
    assert [(c["name"], c["status"], c["result"]) for c in children] == [
        ("add", "succeeded", i + i) for i in range(4)]
    assert all(c["created_at"] >= parent["started_at"] for c in children)


async def test_a_task_submits_a_chain(client: httpx.AsyncClient) -> None:
    parent = await wait_terminal(client, (await submit(client, "chain_inside", 2, 3))["id"])
    assert parent["status"] == "succeeded", parent
    last = await wait_terminal(client, parent["result"])  # a chain's id is its last step's
    assert (last["status"], last["result"]) == ("succeeded", 15)
    (first_id,) = last["depends_on"]
    first = await wait_terminal(client, first_id)
    assert (first["status"], first["result"]) == ("succeeded", 5)


async def test_waiting_inside_a_task_is_refused_with_the_reason(
        client: httpx.AsyncClient) -> None:
    parent = await wait_terminal(client, (await submit(client, "wait_inside"))["id"])
    assert parent["status"] == "failed", parent
    assert parent["error"]["type"] == "WaitInsideWorker"
    assert "deadlock" in parent["error"]["message"]
    assert "chain" in parent["error"]["message"]

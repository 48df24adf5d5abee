"""POST /tasks/{id}/cancel and DELETE /tasks/{id}."""

from __future__ import annotations

from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import (
    TASK_FIELDS,
    finished,
    get_task,
    ids_listed,
    problem,
    submit,
    until_status,
)

# -- cancel -----------------------------------------------------------------------------------

async def test_cancel_a_queued_task_is_202_and_it_never_starts(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    await submit(client, "wait_for_release", "hold")
    await gate("hold").wait_started()
    queued = await submit(client, "add", 1, 2)

    response = await client.post(f"/tasks/{queued['id']}/cancel")

    assert response.status_code == 202
    task = await response.get_json()
    assert task.keys() >= TASK_FIELDS
    assert task["id"] == queued["id"]
    assert task["status"] == "cancelled"
    gate("hold").open()
    after = await finished(client, queued["id"])
    assert after["status"] == "cancelled"
    assert after["started_at"] is None
    assert after["attempts"] == 0


async def test_cancel_a_scheduled_task(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 2, delay=30)

    response = await client.post(f"/tasks/{scheduled['id']}/cancel")

    assert response.status_code == 202
    body = await response.get_json()
    assert (body["status"], body["cancel_requested"]) == ("cancelled", True)
    assert (await get_task(client, scheduled["id"]))["status"] == "cancelled"


async def test_cancel_a_running_async_task(client: Client) -> None:
    running = await submit(client, "wait_for_release", "async-cancel")
    await gate("async-cancel").wait_started()

    response = await client.post(f"/tasks/{running['id']}/cancel")

    assert response.status_code == 202
    assert (await response.get_json())["cancel_requested"] is True
    task = await finished(client, running["id"])
    assert task["status"] == "cancelled"
    assert task["result"] is None


async def test_cancel_a_running_thread_task_that_checks(client: Client) -> None:
    running = await submit(client, "thread_wait_for_release", "thread-cancel")
    await gate("thread-cancel").wait_started()

    response = await client.post(f"/tasks/{running['id']}/cancel")

    assert response.status_code == 202
    body = await response.get_json()
    assert body["cancel_requested"] is True
    task = await finished(client, running["id"])
    assert task["status"] == "cancelled"
    assert task["result"] is None  # the function returned "saw cancel": discarded


async def test_cancel_a_running_process_task(client: Client) -> None:
    running = await submit(client, "spin_forever")
    await until_status(client, running["id"], "running")  # no gate reaches a process

    response = await client.post(f"/tasks/{running['id']}/cancel")

    assert response.status_code == 202
    assert (await finished(client, running["id"]))["status"] == "cancelled"


async def test_cancel_a_finished_task_is_409(client: Client) -> None:
    done = await finished(client, (await submit(client, "add", 1, 1))["id"])

    body = await problem(await client.post(f"/tasks/{done['id']}/cancel"), 409)

    assert "succeeded" in body["detail"]
    assert (await get_task(client, done["id"]))["status"] == "succeeded"


async def test_cancel_twice_is_409_the_second_time(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 2, delay=30)
    assert (await client.post(f"/tasks/{scheduled['id']}/cancel")).status_code == 202

    await problem(await client.post(f"/tasks/{scheduled['id']}/cancel"), 409)


async def test_cancel_unknown_task_is_404(client: Client) -> None:
    await problem(await client.post("/tasks/" + "d" * 24 + "/cancel"), 404)


async def test_cancel_with_get_is_405(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 2, delay=30)

    await problem(await client.get(f"/tasks/{scheduled['id']}/cancel"), 405)


# -- delete -----------------------------------------------------------------------------------

async def test_delete_a_finished_task_is_204_and_forgets_it(client: Client) -> None:
    done = await finished(client, (await submit(client, "add", 1, 1))["id"])

    response = await client.delete(f"/tasks/{done['id']}")

    assert response.status_code == 204
    assert await response.get_data() == b""
    await problem(await client.get(f"/tasks/{done['id']}"), 404)
    assert done["id"] not in await ids_listed(client)


async def test_delete_a_failed_and_a_cancelled_task(client: Client) -> None:
    failed = await finished(client, (await submit(client, "fail", "x"))["id"])
    cancelled = await submit(client, "add", 1, 1, delay=30)
    await client.post(f"/tasks/{cancelled['id']}/cancel")

    assert (await client.delete(f"/tasks/{failed['id']}")).status_code == 204
    assert (await client.delete(f"/tasks/{cancelled['id']}")).status_code == 204


async def test_delete_a_running_task_is_409(client: Client) -> None:
    running = await submit(client, "wait_for_release", "del-running")
    await gate("del-running").wait_started()

    await problem(await client.delete(f"/tasks/{running['id']}"), 409)

    assert (await get_task(client, running["id"]))["status"] == "running"


async def test_delete_a_scheduled_task_is_409(client: Client) -> None:
    scheduled = await submit(client, "add", 1, 1, delay=30)

    await problem(await client.delete(f"/tasks/{scheduled['id']}"), 409)


async def test_delete_a_queued_task_is_409(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    await submit(client, "wait_for_release", "del-hold")
    await gate("del-hold").wait_started()
    queued = await submit(client, "add", 1, 1)

    await problem(await client.delete(f"/tasks/{queued['id']}"), 409)


async def test_delete_twice_is_404_the_second_time(client: Client) -> None:
    done = await finished(client, (await submit(client, "add", 1, 1))["id"])
    await client.delete(f"/tasks/{done['id']}")

    await problem(await client.delete(f"/tasks/{done['id']}"), 404)


async def test_delete_unknown_task_is_404(client: Client) -> None:
    await problem(await client.delete("/tasks/" + "e" * 24), 404)


async def test_deleted_task_leaves_the_stats(client: Client) -> None:
    done = await finished(client, (await submit(client, "add", 1, 1))["id"])
    before = (await (await client.get("/stats")).get_json())["counts"]["succeeded"]

    await client.delete(f"/tasks/{done['id']}")

    after = (await (await client.get("/stats")).get_json())["counts"]["succeeded"]
    assert after == before - 1

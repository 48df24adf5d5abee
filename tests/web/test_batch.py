"""POST /tasks/batch: all or nothing, in submission order, failing index named."""

from __future__ import annotations

from typing import Any

from quart.typing import TestClientProtocol as Client

from ..sample_tasks import gate
from .conftest import MakeClient
from .helpers import TASK_FIELDS, error_fields, finished, ids_listed, problem, submit


def adds(count: int, **options: Any) -> list[dict[str, Any]]:
    return [{"name": "add", "args": [i, i], **options} for i in range(count)]


async def test_batch_is_202_with_the_tasks_in_submission_order(client: Client) -> None:
    tasks = [{"name": "add", "args": [1, 2]}, {"name": "sleep", "kwargs": {"seconds": 0}},
             {"name": "fail", "args": ["x"], "priority": 3}]

    response = await client.post("/tasks/batch", json={"tasks": tasks})

    assert response.status_code == 202
    assert "Retry-After" in response.headers
    items = (await response.get_json())["items"]
    assert [t["name"] for t in items] == ["add", "sleep", "fail"]
    assert items[2]["priority"] == 3
    for item in items:
        assert item.keys() >= TASK_FIELDS
    assert len({t["id"] for t in items}) == 3
    results = [(await finished(client, t["id"]))["status"] for t in items]
    assert results == ["succeeded", "succeeded", "failed"]


async def test_batch_tasks_are_listed_newest_last_submitted_first(client: Client) -> None:
    response = await client.post("/tasks/batch", json={"tasks": adds(3, delay=30)})
    ids = [t["id"] for t in (await response.get_json())["items"]]

    assert await ids_listed(client) == ids[::-1]


async def test_bad_arguments_at_one_index_reject_the_whole_batch(client: Client) -> None:
    tasks = adds(5, delay=30)
    tasks[3] = {"name": "add", "kwargs": {"a": 1, "b": "two"}}

    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)

    assert error_fields(body) == ["tasks.3.kwargs.b"]
    assert await ids_listed(client) == []


async def test_unknown_name_at_one_index_names_it(client: Client) -> None:
    tasks = adds(3)
    tasks[2] = {"name": "nope"}

    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)

    assert error_fields(body) == ["tasks.2.name"]
    assert await ids_listed(client) == []


async def test_malformed_entry_names_its_index(client: Client) -> None:
    tasks: list[Any] = adds(3)
    tasks[1] = {"args": [1, 2]}

    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)

    assert error_fields(body) == ["tasks.1.name"]


async def test_bad_option_in_an_entry_names_its_index(client: Client) -> None:
    tasks = adds(3)
    tasks[2]["delay"] = 10**9

    body = await problem(await client.post("/tasks/batch", json={"tasks": tasks}), 422)

    assert error_fields(body) == ["tasks.2.delay"]
    assert await ids_listed(client) == []


async def test_entry_that_is_not_an_object_names_its_index(client: Client) -> None:
    body = await problem(await client.post("/tasks/batch",
                                           json={"tasks": [adds(1)[0], "add"]}), 422)

    assert error_fields(body) == ["tasks.1"]


async def test_empty_batch_is_422(client: Client) -> None:
    await problem(await client.post("/tasks/batch", json={"tasks": []}), 422)


async def test_batch_body_must_be_an_object_with_tasks(client: Client) -> None:
    await problem(await client.post("/tasks/batch", json=adds(2)), 422)
    await problem(await client.post("/tasks/batch", json={"items": adds(2)}), 422)


async def test_1000_tasks_are_accepted(client: Client) -> None:
    response = await client.post("/tasks/batch", json={"tasks": adds(1000, delay=30)})

    assert response.status_code == 202
    assert len((await response.get_json())["items"]) == 1000


async def test_1001_tasks_are_422_and_none_is_created(client: Client) -> None:
    response = await client.post("/tasks/batch", json={"tasks": adds(1001, delay=30)})

    body = await problem(response, 422)
    assert error_fields(body) == ["tasks"]
    assert await ids_listed(client) == []


async def test_max_batch_setting_is_the_limit(make_client: MakeClient) -> None:
    client = await make_client(max_batch=3)

    assert (await client.post("/tasks/batch", json={"tasks": adds(3)})).status_code == 202
    await problem(await client.post("/tasks/batch", json={"tasks": adds(4)}), 422)


async def test_batch_that_does_not_fit_the_queue_is_429_and_creates_nothing(
    make_client: MakeClient,
) -> None:
    client = await make_client(max_queue=3)
    await submit(client, "add", 1, 1, delay=30)

    response = await client.post("/tasks/batch", json={"tasks": adds(3, delay=30)})

    await problem(response, 429)
    assert "Retry-After" in response.headers
    assert len(await ids_listed(client)) == 1
    assert (await client.post("/tasks/batch", json={"tasks": adds(2, delay=30)})).status_code == 202


async def test_batch_while_draining_is_503(make_client: MakeClient) -> None:
    client = await make_client()
    await client.app.extensions["offload"].service.stop(grace=0.1)

    await problem(await client.post("/tasks/batch", json={"tasks": adds(2)}), 503)


async def test_batch_not_json_is_415_and_malformed_is_400(client: Client) -> None:
    await problem(await client.post("/tasks/batch", data=b"{}",
                                    headers={"Content-Type": "text/plain"}), 415)
    await problem(await client.post("/tasks/batch", data=b"{",
                                    headers={"Content-Type": "application/json"}), 400)


async def test_batch_runs_alongside_a_running_task(make_client: MakeClient) -> None:
    client = await make_client(max_concurrency=1)
    await submit(client, "wait_for_release", "batch-hold")
    await gate("batch-hold").wait_started()

    response = await client.post("/tasks/batch", json={"tasks": adds(2)})

    items = (await response.get_json())["items"]
    assert [t["status"] for t in items] == ["queued", "queued"]
    gate("batch-hold").open()
    assert [(await finished(client, t["id"]))["result"] for t in items] == [0, 2]

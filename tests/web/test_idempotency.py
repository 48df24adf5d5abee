"""Idempotency-Key on POST /tasks: same key and body, same task; per token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import MakeClient
from .helpers import bearer, finished, ids_listed, problem

BODY = {"name": "add", "args": [1, 2], "delay": 30}


async def post(client: Client, key: str | None, body: Any = None,
               headers: dict[str, str] | None = None) -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    return await client.post("/tasks", json=BODY if body is None else body,
                             headers={**extra, **(headers or {})})


async def test_first_submission_with_a_key_is_202(client: Client) -> None:
    response = await post(client, "k-1")

    assert response.status_code == 202
    assert (await response.get_json())["status"] == "scheduled"


async def test_same_key_and_body_returns_the_original_task_with_200(client: Client) -> None:
    first = await post(client, "k-1")
    again = await post(client, "k-1")

    assert again.status_code == 200
    original = await first.get_json()
    assert (await again.get_json())["id"] == original["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert await ids_listed(client) == [original["id"]]


async def test_replay_shows_the_task_as_it_is_now(client: Client) -> None:
    body = {"name": "add", "args": [2, 2]}
    first = await (await post(client, "k-now", body)).get_json()
    await finished(client, first["id"])

    again = await post(client, "k-now", body)

    assert again.status_code == 200
    assert (await again.get_json())["result"] == 4


async def test_json_equal_body_with_other_key_order_and_spacing_is_a_replay(
    client: Client,
) -> None:
    first = await (await post(client, "k-eq")).get_json()
    raw = b'{ "delay" : 30, "args" : [1, 2],\n "name" : "add" }'

    again = await client.post("/tasks", data=raw, headers={"Idempotency-Key": "k-eq",
                                                           "Content-Type": "application/json"})

    assert again.status_code == 200
    assert (await again.get_json())["id"] == first["id"]


async def test_same_key_with_another_body_is_422(client: Client) -> None:
    first = await (await post(client, "k-2")).get_json()

    response = await post(client, "k-2", {"name": "add", "args": [1, 3], "delay": 30})

    body = await problem(response, 422)
    assert "Idempotency-Key" in body["detail"]
    assert await ids_listed(client) == [first["id"]]


async def test_another_key_makes_another_task(client: Client) -> None:
    first = await (await post(client, "k-a")).get_json()
    second = await post(client, "k-b")

    assert second.status_code == 202
    assert (await second.get_json())["id"] != first["id"]


async def test_no_key_makes_a_new_task_each_time(client: Client) -> None:
    one = await (await post(client, None)).get_json()
    two = await (await post(client, None)).get_json()

    assert one["id"] != two["id"]


async def test_keys_are_per_token(make_client: MakeClient) -> None:
    client = await make_client(api_tokens=("t1", "t2"))
    first = await post(client, "shared", headers=bearer("t1"))
    other = await post(client, "shared", headers=bearer("t2"))
    other_body = await post(client, "shared", {"name": "add", "args": [5, 5]},
                            headers=bearer("t2"))

    assert first.status_code == 202
    assert other.status_code == 202
    assert (await other.get_json())["id"] != (await first.get_json())["id"]
    await problem(other_body, 422)  # t2's own key, now with another body


async def test_key_is_free_again_once_the_record_is_deleted(client: Client) -> None:
    body = {"name": "add", "args": [1, 1]}
    first = await (await post(client, "k-del", body)).get_json()
    await finished(client, first["id"])
    await client.delete(f"/tasks/{first['id']}")

    again = await post(client, "k-del", body)

    assert again.status_code == 202
    assert (await again.get_json())["id"] != first["id"]


async def test_concurrent_submissions_with_one_key_make_one_task(client: Client) -> None:
    responses = await asyncio.gather(*(post(client, "k-race") for _ in range(10)))

    ids = {(await r.get_json())["id"] for r in responses}
    assert len(ids) == 1
    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]


async def test_rejected_submission_does_not_take_the_key(client: Client) -> None:
    await problem(await post(client, "k-bad", {"name": "add", "args": [1]}), 422)

    assert (await post(client, "k-bad")).status_code == 202


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there", "new\x7fline"])
async def test_unusable_key_is_400(client: Client, key: str) -> None:
    await problem(await post(client, key), 400)


async def test_longest_key_is_accepted(client: Client) -> None:
    assert (await post(client, "k" * 255)).status_code == 202


async def test_batch_refuses_an_idempotency_key(client: Client) -> None:
    response = await client.post("/tasks/batch", json={"tasks": [BODY]},
                                 headers={"Idempotency-Key": "k"})

    await problem(response, 400)
    assert await ids_listed(client) == []


async def test_replay_while_the_queue_is_full_returns_the_original(
    make_client: MakeClient,
) -> None:
    client = await make_client(max_queue=1)
    first = await (await post(client, "k-full")).get_json()
    assert (await post(client, None)).status_code == 429

    again = await post(client, "k-full")

    assert again.status_code == 200
    assert (await again.get_json())["id"] == first["id"]
